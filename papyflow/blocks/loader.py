"""Loading the code of a block as a module, and running its methods safely.

:func:`load_module` executes a ``.py`` file in a *fresh* module: it is not
put in ``sys.modules`` and nothing is shared between two loads of the same
file, so two algorithms (or two versions of one) never see each other's
state. The libraries the code uses are bound in the module before its code
runs, each under its alias::

    lib = load_module("user_algo_1", ".../algorithms/user/algo/1.py",
                      {"base": Library(prefix, "user/base/1")})
    lib.base.helper(...)                  # the library's module, loaded first

:func:`run` calls a method of user code and turns whatever it raises into one
error class, by default :class:`~papyflow.blocks.errors.BlockError`, whose
message names the block (module, class and file), the method and carries
the original traceback; the original exception is its ``__cause__``. A
missing optional method (see :data:`OPTIONAL_METHODS`) is not called: its
default answer is returned instead.
"""

from __future__ import annotations

import os
import traceback as _traceback
import types
from collections.abc import Callable, Mapping
from typing import Any

from .errors import BlockError

__all__ = ["OPTIONAL_METHODS", "load_module", "run"]

OPTIONAL_METHODS: Mapping[str, Any] = types.MappingProxyType({
    "setup": True,
    "prepare": True,
    "read": True,
    "write": True,
})
"""Methods a block's class may leave out, and what :func:`run` returns for them
when it does: ``setup`` and ``prepare`` succeed, a loop evaluator's ``read`` and
``write`` have nothing to do."""

_MISSING = object()


def load_module(name: str, path: str | os.PathLike[str],
                uses: Mapping[str, Any] | None) -> types.ModuleType:
    """Execute the Python file ``path`` as a new module named ``name`` and return it.

    Args:
        name: the module's ``__name__``: a Python name (dotted parts allowed).
        path: the ``.py`` file.
        uses: alias to library, each bound in the module before its code
            runs. A library is a module already loaded, an object with a
            ``load()`` method that returns one (a
            :class:`~papyflow.blocks.library.Library`), or a mapping
            ``{"path": file, "uses": {...}}`` as
            :meth:`~papyflow.blocks.library.Library.uses_dict` makes, loaded
            recursively.

    Raises:
        ValueError: ``name`` is not a Python name.
        TypeError: an entry of ``uses`` is none of the above.
        OSError: the file cannot be read.
        BlockError: the code does not compile or raises while it runs; the
            message names the file and carries the traceback (method
            ``"<module>"``).
    """
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"module name {name!r} is not a Python name")
    filename = os.fspath(path)
    module = types.ModuleType(name)
    module.__file__ = filename
    for alias, used in (uses or {}).items():
        setattr(module, alias, _library_module(name, alias, used))
    with open(filename, "rb") as stream:
        source = stream.read()
    block = f"{name} ({filename})"
    try:
        code = compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:  # ValueError: null bytes in the source
        text = "".join(_traceback.format_exception_only(error)).rstrip()
        raise BlockError(f"{block}: the code does not compile:\n\n{text}", block=block,
                         method="<module>", traceback=text) from error
    try:
        exec(code, module.__dict__)  # noqa: S102 - running block code is the point
    except Exception as error:
        raise _translate(BlockError, block, "<module>", error,
                         f"{block}: loading the code raised") from error
    return module


def _library_module(name: str, alias: str, used: Any) -> types.ModuleType:
    """The module to bind under ``alias`` for an entry of ``uses``."""
    if isinstance(used, types.ModuleType):
        return used
    load = getattr(used, "load", None)
    if callable(load):
        module = load()
        if not isinstance(module, types.ModuleType):
            raise TypeError(f"uses[{alias!r}].load() gave a {type(module).__name__}, "
                            "not a module")
        return module
    if isinstance(used, Mapping) and "path" in used:
        return load_module(f"{name}.{alias}", used["path"], used.get("uses") or {})
    raise TypeError(f"uses[{alias!r}]: expected a module, a Library or a mapping "
                    f"{{'path': ..., 'uses': ...}}, not {type(used).__name__}")


def run(obj: Any, method: str, exc: type[Exception] | None = None,
        *args: Any, **kwargs: Any) -> Any:
    """Return ``obj.method(*args, **kwargs)``, turning a failure of user code into ``exc``.

    Args:
        obj: the object of user code (an instance, a class or a module; a
            module's "method" may be a class, which is then instantiated).
        method: the name of the method.
        exc: the exception class raised for a failure, called with the
            message; by default :class:`~papyflow.blocks.errors.BlockError`
            (which also gets the ``block``, ``method`` and ``traceback``
            attributes).
        *args, **kwargs: passed to the method unchanged.

    Returns:
        What the method returns; for a method ``obj`` does not have that is
        in :data:`OPTIONAL_METHODS`, the default given there.

    Raises:
        exc: the method raised an ``Exception`` (the message names the
            block, the method, the exception and ends with its traceback;
            ``__cause__`` is the exception), or ``obj`` has no such method
            and it is not optional. ``KeyboardInterrupt`` and ``SystemExit``
            go through unchanged.
    """
    exc_class: type[Exception] = BlockError if exc is None else exc
    try:
        function: Any = getattr(obj, method, _MISSING)
    except Exception as error:  # a property or __getattr__ of user code
        block = _describe(obj, None)
        raise _translate(exc_class, block, method, error,
                         f"{block}: looking up {method}() raised") from error
    if function is _MISSING:
        if method in OPTIONAL_METHODS:
            return OPTIONAL_METHODS[method]
        block = _describe(obj, None)
        raise _make(exc_class, f"{block}: has no method {method}()", block, method, "")
    try:
        return function(*args, **kwargs)
    except Exception as error:
        block = _describe(obj, function)
        raise _translate(exc_class, block, method, error,
                         f"{block}: {method}() raised") from error


def _translate(exc_class: type[Exception], block: str, method: str, error: BaseException,
               what: str) -> Exception:
    """``exc_class`` for ``error``, raised in user code below the caller's frame."""
    # The first frame is the caller's own (run or load_module): the user's code starts after.
    tb = error.__traceback__.tb_next if error.__traceback__ is not None else None
    text = "".join(_traceback.format_exception(type(error), error, tb)).rstrip()
    message = f"{what} {type(error).__name__}: {error}\n\n{text}"
    return _make(exc_class, message, block, method, text)


def _make(exc_class: type[Exception], message: str, block: str, method: str,
          traceback: str) -> Exception:
    if issubclass(exc_class, BlockError):
        return exc_class(message, block=block, method=method, traceback=traceback)
    return exc_class(message)


def _describe(obj: Any, function: Callable[..., Any] | None) -> str:
    """The block ``obj`` belongs to: ``module.Class (file)``, or ``module (file)``."""
    if isinstance(obj, types.ModuleType):
        filename = getattr(obj, "__file__", None)
        return f"{obj.__name__} ({filename})" if filename else obj.__name__
    cls = obj if isinstance(obj, type) else type(obj)
    name = f"{cls.__module__}.{cls.__qualname__}"
    filename = _file_of(function) if function is not None else None
    if filename is None:
        for member in vars(cls).values():
            filename = _file_of(member)
            if filename is not None:
                break
    return f"{name} ({filename})" if filename else name


def _file_of(function: Any) -> str | None:
    """The file a function (or bound method) was compiled from, if it tells."""
    function = getattr(function, "__func__", function)
    code = getattr(function, "__code__", None)
    return code.co_filename if isinstance(code, types.CodeType) else None
