"""The ``imports`` decorator: import statements that travel with a function.

A function sent to a worker by value (defined in ``__main__``, a lambda, a
closure) arrives without the modules its body uses. Decorating it with
``@imports(['numpy', 'os.path'])`` binds those modules in its globals now and
again in every worker that loads it.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["apply_imports", "imports"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__numap_imports__"


def imports(modules: Sequence[str], forgive: bool = False) -> Callable[[F], F]:
    """Attach import statements to a function definition.

    Each entry of ``modules`` is one import:

    - ``'foo'`` is ``import foo`` and binds ``foo``;
    - ``'foo.oof'`` is ``import foo.oof as oof`` and binds ``oof``;
    - ``'foo,bar'`` tries ``foo`` and, if it cannot be imported, ``bar``, and
      binds the module found under the first alternative's name (``foo``).
      ``'foo.oof,bar.rab'`` binds ``oof``.

    The modules are bound in the module-level namespace (``__globals__``) of the
    decorated function, at decoration time and again in each worker that loads
    the function. A module that cannot be imported raises ``ImportError``, or
    warns when ``forgive`` is true.

    >>> @imports(['os.path'])
    ... def exists(name):
    ...     return path.exists(name)
    >>> exists('.')
    True
    """
    if isinstance(modules, str):
        raise TypeError("imports: 'modules' must be a list of module names, not a string")
    spec = tuple(str(m) for m in modules)

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"imports: cannot decorate {func!r}, it is not callable")
        setattr(func, _ATTRIBUTE, (spec, forgive))
        apply_imports(func)
        return func

    return decorate


def apply_imports(func: Callable[..., Any]) -> None:
    """Bind the modules that ``@imports`` attached to ``func`` in its globals."""
    spec = getattr(func, _ATTRIBUTE, None)
    namespace = getattr(func, "__globals__", None)
    if spec is None or namespace is None:
        return
    modules, forgive = spec
    for entry in modules:
        alternatives = [a.strip() for a in entry.split(",") if a.strip()]
        if not alternatives:
            raise ValueError(f"imports: empty module name in {entry!r}")
        name = alternatives[0].rsplit(".", 1)[-1]
        errors = []
        for dotted in alternatives:
            try:
                namespace[name] = importlib.import_module(dotted)
                break
            except ImportError as exc:
                errors.append(f"{dotted}: {exc}")
        else:
            message = f"imports: could not import {entry!r} ({'; '.join(errors)})"
            if not forgive:
                raise ImportError(message)
            warnings.warn(message, ImportWarning, stacklevel=3)
