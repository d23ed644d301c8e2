"""``Archive`` and ``restore``: objects saved as Python source that rebuilds them.

An archive is a module. It imports what it needs, binds every inserted name, and
deletes its private helpers at the end, so executing it in a fresh dict leaves
exactly the inserted names (plus the functions' globals, which must stay)::

    # Written by papyflow.archive: run it, or papyflow.archive.restore() it.
    import numpy as _numpy

    _list = ['a', 'b']
    l = [1, 2, 3, _list]
    d = {'l0': _list, 'l': l, 's': 'hi'}
    a = _numpy.array([1.0, 2.0], dtype='float64')

    del _list, _numpy
    __all__ = ['l', 'd', 'a']

Large arrays go to a side ``.npz`` file that the module opens relative to its own
``__file__``; see :meth:`Archive.save`.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import linecache
import math
import os
import sys
import textwrap
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._build import Builder
from ._emit import Emitted, emit
from ._files import atomic_write_text, write_arrays
from ._nodes import name_problem
from ._recipes import import_path
from .errors import ArchiveError, DuplicateError

__all__ = ["Archive", "compose", "get_imports", "repr_", "restore", "run"]

HEADER = ("# Written by papyflow.archive. Run it, or load it with "
          "papyflow.archive.restore(path);\n"
          "# either way it executes code: restore only archives you trust.\n")

_counter = itertools.count(1)


class Archive:
    """Archival tool: collect named objects, write them as executable Python source.

    >>> a = Archive()
    >>> a.insert(x=3)
    'x'
    >>> a.insert(y=[1, 2], z=(3, 4))
    ['y', 'z']
    >>> restore(str(a))
    {'x': 3, 'y': [1, 2], 'z': (3, 4)}

    The archive keeps references to the inserted objects; the source reflects
    their state when it is generated (``str()``, :meth:`source`, :meth:`save`), or
    when :meth:`make_persistent` took a snapshot.

    Parameters (all keyword-only):

    ``array_threshold``
        Numpy arrays with more elements than this are stored in a side data file
        (``.npz``) rather than written out. Default: no threshold.
    ``datafile``
        Where that data file goes. :meth:`save` defaults it to the source's name
        with ``.npz``, next to it; for ``str()``/:meth:`source` it must be given,
        and the source then names its absolute path.
    ``check_on_insert``
        Check at :meth:`insert` that each object can be archived (raising
        :class:`CycleError` or :class:`UnarchivableError` there, not later).
    ``allow_dill``
        Whether objects with no other recipe (a closure over a lock, a lambda
        typed at the prompt) may be stored as a dill pickle inside the source.
    """

    def __init__(self, *, array_threshold: float = math.inf,
                 datafile: str | os.PathLike[str] | None = None,
                 check_on_insert: bool = False, allow_dill: bool = True) -> None:
        if isinstance(array_threshold, bool) or not isinstance(array_threshold, int | float) \
                or not array_threshold >= 0:
            raise ValueError(f"array_threshold must be a number >= 0, got {array_threshold!r}")
        if datafile is not None and not isinstance(datafile, str | os.PathLike):
            raise TypeError(f"datafile must be a path or None, got {type(datafile).__name__}")
        self.array_threshold = array_threshold
        self.datafile = None if datafile is None else os.fspath(datafile)
        self.check_on_insert = bool(check_on_insert)
        self.allow_dill = bool(allow_dill)
        self._objects: dict[str, object] = {}
        self._snapshot: str | None = None

    # -- content ------------------------------------------------------------------------------

    def insert(self, **objects: object) -> str | list[str]:
        """Add objects under the given names; return the name, or the list of names.

        Raises :class:`DuplicateError` for a name already inserted and ``ValueError``
        for a name that a module cannot bind (not an identifier, a keyword, a dunder,
        or not in NFKC normal form, which the parser would change).
        """
        if not objects:
            raise TypeError("insert() needs at least one name=object")
        for name in objects:
            problem = name_problem(name)
            if problem is not None:
                raise ValueError(f"cannot insert under the name {name!r}: {problem}")
            if name in self._objects:
                raise DuplicateError(name)
        if self.check_on_insert:
            Builder(array_threshold=math.inf, external=False,
                    allow_dill=self.allow_dill).build(objects)
        self._objects.update(objects)
        self._snapshot = None
        names = list(objects)
        return names[0] if len(names) == 1 else names

    @property
    def names(self) -> tuple[str, ...]:
        """The inserted names, in insertion order."""
        return tuple(self._objects)

    def __contains__(self, name: object) -> bool:
        return name in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def __repr__(self) -> str:
        return f"<Archive of {list(self._objects)}>"

    # -- source -------------------------------------------------------------------------------

    def source(self) -> str:
        """The archive as Python source (large arrays written to ``datafile`` first)."""
        if self._snapshot is not None:
            return self._snapshot
        if self.datafile is None:
            return self._render(None, None)
        target = Path(self.datafile).absolute()
        return self._render(str(target), target)

    __str__ = source

    def make_persistent(self) -> str:
        """Generate the source now and keep it: later changes to the objects no longer
        show, until the next :meth:`insert`. Returns the source."""
        self._snapshot = None
        self._snapshot = self.source()
        return self._snapshot

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the archive to ``path`` (atomically), its large arrays beside it.

        The data file is ``datafile`` if given (relative to ``path``'s directory),
        else ``path`` with the suffix ``.npz``; the source opens it relative to its
        own location, so the two files can move together. Returns ``path``.
        """
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save the archive to {str(path)!r}: its "
                                    f"directory does not exist")
        relative = self.datafile or path.with_suffix(".npz").name
        if Path(relative).name == path.name and not Path(relative).is_absolute():
            relative = path.name + ".npz"  # never the archive's own name
        text = (self._snapshot if self._snapshot is not None
                else self._render(relative, path.parent / relative))
        atomic_write_text(path, text)
        return path

    def _render(self, reference: str | None, target: Path | None) -> str:
        emitted = self._emit(reference)
        if emitted.arrays:
            assert target is not None
            write_arrays(target, emitted.arrays)
        return compose(emitted, list(self._objects))

    def _emit(self, reference: str | None) -> Emitted:
        builder = Builder(array_threshold=self.array_threshold,
                          external=reference is not None, allow_dill=self.allow_dill)
        return emit(builder.build(self._objects), datafile=reference)


def compose(emitted: Emitted, names: list[str], header: str = HEADER) -> str:
    """The module text: imports, data, body, then ``del`` of the helpers and ``__all__``."""
    parts = [header.rstrip("\n")]
    if emitted.imports:
        parts.append("\n".join(emitted.imports))
    body = emitted.statements()
    if body:
        parts.append("\n".join(body))
    tail = []
    if emitted.temps:
        tail.append(_wrapped_statement("del ", emitted.temps))
    tail.append(_wrapped_statement("__all__ = [", [repr(n) for n in names], "]"))
    parts.append("\n".join(tail))
    return "\n\n".join(parts) + "\n"


def _wrapped_statement(head: str, names: list[str], tail: str = "") -> str:
    one = head + ", ".join(names) + tail
    if len(one) <= 96:
        return one
    lines = textwrap.wrap(", ".join(names), 88, break_long_words=False,
                          break_on_hyphens=False)
    if tail:
        return head + "\n" + "".join(f"    {line}\n" for line in lines) + tail
    return head + "(\n" + "".join(f"    {line}\n" for line in lines) + ")"


# -- restore ----------------------------------------------------------------------------------

def restore(archive: str | os.PathLike[str],
            env: Mapping[str, object] | None = None) -> dict[str, Any]:
    """Execute an archive and return its names and objects.

    ``archive`` is the source text (a ``str``, as ``str(Archive)`` gives) or the
    path of a saved archive (a ``pathlib.Path`` or other path object; a plain
    ``str`` is always taken as source). ``env`` adds names to the namespace the
    archive runs in. The result holds the names the archive lists in ``__all__``.

    Restoring runs the archive's code: restore only archives you trust.
    Exceptions the archive raises (a module it imports is missing, its data file
    is gone) propagate with a note naming the archive.
    """
    if isinstance(archive, os.PathLike):
        path = Path(archive)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(f"no archive at {str(path)!r}") from None
        filename = str(path.absolute())
    elif isinstance(archive, str):
        text = archive
        filename = f"<archive {next(_counter)}>"
        if "def " in text or "lambda" in text:
            # A name linecache knows, so that inspect.getsource() works on the functions
            # the archive defines and they can be archived again by their source. (Only
            # then: linecache keeps the text for the life of the process.)
            linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True),
                                         filename)
    else:
        raise TypeError(f"archive must be source text (str) or a path, got "
                        f"{type(archive).__name__}")
    if env is not None and not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping or None, got {type(env).__name__}")
    try:
        return run(text, filename, env, file=isinstance(archive, os.PathLike))
    except Exception as exc:
        if isinstance(archive, str) and _names_a_file(archive):
            exc.add_note(f"the str {archive!r} was run as source; it names a file: to restore "
                         f"that file, pass a path object, restore(pathlib.Path({archive!r}))")
        raise


def _names_a_file(text: str) -> bool:
    """Whether ``text`` (given as source) is rather the path of an existing file."""
    if "\n" in text.strip() or "\0" in text:
        return False
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):
        return False


def run(text: str, filename: str, env: Mapping[str, object] | None = None, *,
        file: bool = True) -> dict[str, Any]:
    """Execute archive ``text`` as if from ``filename``; return the names in its ``__all__``."""
    namespace: dict[str, Any] = {"__name__": "__archive__", "__builtins__": builtins}
    if file:
        namespace["__file__"] = filename
    namespace.update(env or {})
    try:
        # dont_inherit: this module's own `from __future__` must not change the archive.
        code = compile(text, filename, "exec", dont_inherit=True)
        exec(code, namespace)  # noqa: S102 - running the archive is what restoring means
    except BaseException as exc:
        exc.add_note(f"raised while restoring the archive {filename}")
        raise
    names = namespace.get("__all__")
    if isinstance(names, list | tuple):
        missing = [n for n in names if n not in namespace]
        if missing:
            raise ArchiveError(f"the archive {filename} lists {missing} in __all__ but does "
                               f"not bind them")
        return {n: namespace[n] for n in names}
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


# -- helpers from the mmf API -----------------------------------------------------------------

def repr_(obj: object, robust: bool = True) -> str:
    """Return a representation of ``obj``, for objects with an ``archive_1`` method.

    Meant as the ``__repr__`` of such classes: the ``rep`` expression that
    ``archive_1`` returns, with each argument name replaced by the ``repr_`` of its
    value (through the syntax tree, never by text search). Objects without
    ``archive_1`` get their ``repr``. When ``rep`` cannot be used, ``robust=True``
    falls back to ``object.__repr__`` and ``robust=False`` raises ``ArchiveError``.

    >>> class A:
    ...     def __init__(self, x):
    ...         self.x = x
    ...     def archive_1(self):
    ...         return ('A(x=x)', dict(x=self.x), [])
    ...     def __repr__(self):
    ...         return repr_(self)
    >>> A(x=[1])
    A(x=[1])
    """
    method = getattr(type(obj), "archive_1", None)
    if not callable(method) or isinstance(obj, type):
        return repr(obj)
    try:
        rep, args, _ = method(obj)
        args = dict(args.items() if hasattr(args, "items") else args)
        tree = ast.parse(rep.strip(), mode="eval")
        values = {name: ast.parse(repr_(value, robust), mode="eval").body
                  for name, value in args.items()}

        class Substitute(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.AST:
                return values.get(node.id, node) if isinstance(node.ctx, ast.Load) else node

        return ast.unparse(Substitute().visit(tree))
    except Exception as exc:
        if not robust:
            raise ArchiveError(f"cannot represent the {type(obj).__name__} object from its "
                               f"archive_1(): {type(exc).__name__}: {exc}") from exc
        return object.__repr__(obj)


def get_imports(obj: object, env: Mapping[str, object] | None = None
                ) -> list[tuple[str, str | None, str]]:
    """Return ``[(module, iname, uiname)]``: how to import what makes ``obj``.

    For a module, ``(module, None, uiname)`` means ``import module as uiname``; for
    a class, function or method (importable or not: one defined in ``__main__`` or
    a lambda is named all the same) or anything else importable by name it is the
    object itself; for any other object, its class, the constructor that makes it:
    ``from module import iname as uiname``. For a nested class or a method only the
    outermost class is imported (``iname``), and the rest reached by attributes
    from there; a name with ``<locals>`` or ``<lambda>`` in it, which no attribute
    reaches, is given whole. ``uiname`` avoids the names in ``env`` that are bound
    to something else.

    >>> import numpy as np
    >>> get_imports(np.array([1, 2, 3]))
    [('numpy', 'ndarray', 'ndarray')]
    >>> get_imports(np.ndarray.sum)
    [('numpy', 'ndarray', 'ndarray')]
    """
    if isinstance(obj, types.ModuleType):
        module, iname = obj.__name__, None
        uiname = module.rpartition(".")[2]
        target: object = obj
    else:
        target = obj if _names_itself(obj) else type(obj)
        module = _module_of(target)
        qualname = getattr(target, "__qualname__", None) or type(target).__name__
        iname = qualname if "<" in qualname else qualname.partition(".")[0]
        uiname = iname
        if iname != qualname:
            target = getattr(sys.modules.get(module), iname, target)
    if env is not None:
        base, n = uiname, 1
        while uiname in env and env[uiname] is not target:
            uiname = f"{base}_{n}"
            n += 1
    return [(module, iname, uiname)]


# Objects that have a name of their own (a __qualname__), not only their class's.
_DEFINITIONS = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                types.MethodDescriptorType, types.ClassMethodDescriptorType,
                types.WrapperDescriptorType, types.MethodWrapperType)


def _names_itself(obj: object) -> bool:
    """Whether :func:`get_imports` names ``obj`` itself rather than its class."""
    return isinstance(obj, _DEFINITIONS) or import_path(obj) is not None


def _module_of(obj: object) -> str:
    """The module ``obj`` is defined in; a method of a builtin type has none of its
    own (``[].append``, ``str.upper``), so it is its class's module."""
    module = getattr(obj, "__module__", None)
    if isinstance(module, str):
        return module
    owner = getattr(obj, "__objclass__", None) or getattr(obj, "__self__", None)
    if owner is not None and not isinstance(owner, type | types.ModuleType):
        owner = type(owner)
    module = getattr(owner, "__module__", None)
    return module if isinstance(module, str) else "builtins"
