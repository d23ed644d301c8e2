"""One object, or one callable, as a snippet of source to paste into text of your own.

This is the archive's machinery without the module around it, for code that
writes Python files itself (``Plumber.save`` writes a pipeline this way): ask for
the snippet of each callable, put the imports at the top of your file, the
statements before first use, and the expression where the object is wanted.

>>> import math
>>> snippet = callable_source(math.sqrt)
>>> snippet.imports, snippet.expression, snippet.how
(('from math import sqrt as _sqrt',), '_sqrt', 'import')

To write several objects into one file, an :class:`~papyflow.archive.Archive` is
usually the better tool: it shares imports and objects between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._build import Builder
from ._emit import emit
from ._nodes import valid_name

__all__ = ["Snippet", "callable_source", "object_source"]


@dataclass(frozen=True)
class Snippet:
    """Source that rebuilds one object.

    ``imports``
        Import lines, to run first (at the top of the file).
    ``statements``
        Lines to run after the imports and before ``expression`` is evaluated:
        the defs of functions written by their source, objects that need more than
        one statement. Often empty.
    ``expression``
        Evaluates to the object once the imports and statements have run.
    ``names``
        Every name the imports and statements bind. Names a function's source
        reads as globals (``np``, a helper) are among them and must stay bound as
        long as the function is used; the snippet binds none of the ``reserved``
        names it was asked to avoid.
    ``how``
        How the object is written: ``'import'`` (by name), ``'source'`` (a
        function's own source), ``'dill'`` (a pickle payload), ``'literal'``,
        ``'container'``, ``'numpy'``, ``'constructor'``, ``'archive_1'`` or
        ``'reduce'`` (the pickle protocol written out).
    """

    imports: tuple[str, ...]
    statements: tuple[str, ...]
    expression: str
    names: tuple[str, ...]
    how: str

    def code(self, target: str) -> str:
        """The whole snippet as one block of source that binds ``target``."""
        if not valid_name(target):
            raise ValueError(f"target must be an identifier, got {target!r}")
        lines = [*self.imports, *self.statements, f"{target} = {self.expression}"]
        return "\n".join(lines) + "\n"


def object_source(obj: object, *, reserved: Iterable[str] = (),
                  allow_dill: bool = True) -> Snippet:
    """The :class:`Snippet` that rebuilds ``obj``, binding none of the ``reserved`` names.

    Raises :class:`~papyflow.archive.CycleError` for an object that refers to
    itself and :class:`~papyflow.archive.UnarchivableError` for one that no recipe
    (nor dill, when allowed) can write.
    """
    reserved = set(reserved)
    bad = sorted(n for n in reserved if not isinstance(n, str))
    if bad:
        raise TypeError(f"reserved must hold names (str), got {bad!r}")
    builder = Builder(array_threshold=math.inf, external=False, allow_dill=allow_dill,
                      reserved=reserved)
    emitted = emit(builder.build({}, [obj]), datafile=None)
    return Snippet(imports=tuple(emitted.imports), statements=tuple(emitted.statements()),
                   expression=emitted.expressions[0],
                   names=tuple(dict.fromkeys(emitted.temps + emitted.bound)),
                   how=emitted.hows[0])


def callable_source(func: Callable[..., object], *, reserved: Iterable[str] = (),
                    allow_dill: bool = True) -> Snippet:
    """The :class:`Snippet` for a callable: a source expression plus what it needs.

    Functions and classes importable by name come back as an import
    (``how='import'``); a function defined in ``__main__``, a lambda or a closure
    as its own source when that source is exact (``how='source'``): the text, once
    compiled, gives the very code the function runs, its closure variables and
    non-literal defaults are passed to a small factory, and the globals it reads
    are bound under their names. Otherwise, when ``allow_dill`` is true, it is a
    dill payload (``how='dill'``). Partials, bound methods and callable objects
    are written like any other object.

    Raises ``TypeError`` when ``func`` is not callable.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    return object_source(func, reserved=reserved, allow_dill=allow_dill)
