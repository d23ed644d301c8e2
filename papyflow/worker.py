"""``Worker``: functions composed left to right, with errors returned as values."""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import PiperError, WorkerError

__all__ = ["Worker"]


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _first_error(inbox: Any) -> PiperError | None:
    """The first PiperError in ``inbox`` (one level deep: ``consume`` nests results)."""
    for item in inbox:
        if isinstance(item, PiperError):
            return item
        if isinstance(item, tuple):  # consume's groups, a synchronized inbox's inputs
            for inner in item:
                if isinstance(inner, PiperError):
                    return inner
    return None


def _keepable(exc: BaseException) -> BaseException | None:
    """``exc`` if it survives a pickle round trip (it may travel between processes)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - whatever fails, the exception stays behind
        return None
    return exc


def _equal(a: Any, b: Any) -> bool:
    """``a == b`` as one bool, into tuples, lists and dicts; arrays by ``numpy.array_equal``."""
    if a is b:
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_equal(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # element-wise == (numpy arrays) has no one truth value
        pass
    import numpy

    try:
        return bool(numpy.array_equal(a, b))
    except (TypeError, ValueError):
        return False


def worker_error(func: Callable[..., Any], inbox: Any, exc: BaseException) -> WorkerError:
    """The WorkerError for ``exc``, raised by ``func`` given ``inbox``."""
    return WorkerError(f"{_name(func)} raised {type(exc).__name__}: {exc}", function=_name(func),
                       inbox=inbox, exception=_keepable(exc),
                       traceback="".join(traceback.format_exception(exc)))


class Worker:
    """A composition of functions, evaluated left to right on an inbox.

    The first function gets the *inbox*, the tuple of upstream results (one per
    upstream Piper); each later function gets a one-item inbox holding the
    previous result. Every function is called as ``f(inbox, *args, **kwargs)``.

    Ways to build one (as in PaPy):

    - ``Worker(func, (a, b))``: one function and its positional arguments
      (``kwargs`` is then its keyword arguments);
    - ``Worker((f1, f2), ((a,), ()), ({}, {'k': 1}))``: functions with one
      arguments tuple and one kwargs dict each;
    - ``Worker(other_worker)``: the same composition;
    - ``Worker((worker1, worker2))``: the compositions joined (Workers among
      functions join with their own steps and arguments too).

    An exception in a function does not escape: the call returns a
    :class:`WorkerError` naming the function, with the inbox and the traceback.
    An inbox holding a :class:`PiperError` (an item that failed upstream) is
    returned as that error without calling anything.

    Two Workers are equal when they compose the same functions with equal
    arguments: compared with ``==``, and numpy arrays (whose ``==`` is
    element-wise) by ``numpy.array_equal``, same shape and same elements.

    >>> def inc(inbox, by=1):
    ...     return inbox[0] + by
    >>> Worker((inc, inc), kwargs=({}, {'by': 10}))((1,))
    12
    """

    __slots__ = ("_steps", "args", "kwargs", "name", "task")

    def __init__(self, functions: Any, arguments: Sequence[Any] | None = None,
                 kwargs: Any = None, name: str | None = None) -> None:
        task, args, kws = self._parse(functions, arguments, kwargs)
        self.task: tuple[Callable[..., Any], ...] = task
        self.args: tuple[tuple[Any, ...], ...] = args
        self.kwargs: tuple[dict[str, Any], ...] = kws
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Worker: name must be a str, got {name!r}")
        self.name = name or "_".join(_name(f) for f in task)
        self._steps = tuple(zip(task, args, kws, strict=True))

    @staticmethod
    def _parse(functions: Any, arguments: Any, kwargs: Any
               ) -> tuple[tuple[Callable[..., Any], ...], tuple[tuple[Any, ...], ...],
                          tuple[dict[str, Any], ...]]:
        if isinstance(functions, Worker):
            if arguments is not None or kwargs is not None:
                raise ValueError("Worker: a Worker brings its own arguments; do not pass "
                                 "arguments or kwargs with it")
            return functions.task, functions.args, functions.kwargs
        if callable(functions):  # one function: arguments is its args tuple
            if arguments is not None and (isinstance(arguments, (str, bytes))
                                          or not isinstance(arguments, Sequence)):
                raise TypeError(f"Worker: arguments of a single function must be a tuple, "
                                f"got {arguments!r}")
            if kwargs is not None and not isinstance(kwargs, Mapping):
                raise TypeError(f"Worker: kwargs of a single function must be a dict, "
                                f"got {kwargs!r}")
            return (functions,), (tuple(arguments or ()),), (dict(kwargs or {}),)
        if isinstance(functions, (str, bytes)) or not isinstance(functions, Sequence):
            raise TypeError(f"Worker: functions must be a callable, a Worker or a sequence of "
                            f"them, got {functions!r}")
        items = list(functions)
        if not items:
            raise ValueError("Worker: functions is empty")
        if all(isinstance(f, Worker) for f in items):
            if arguments is not None or kwargs is not None:
                raise ValueError("Worker: Workers bring their own arguments; do not pass "
                                 "arguments or kwargs with them")
            return (tuple(f for w in items for f in w.task),
                    tuple(a for w in items for a in w.args),
                    tuple(k for w in items for k in w.kwargs))
        for position, func in enumerate(items):
            if not callable(func):
                raise TypeError(f"Worker: functions[{position}] is not callable: {func!r}")
        n = len(items)
        args = Worker._per_function("arguments", arguments, n, tuple, ())
        kws = Worker._per_function("kwargs", kwargs, n, dict, {})
        if not any(isinstance(f, Worker) for f in items):
            return tuple(items), args, kws
        # Workers among functions join with their own steps, so that their
        # failures stay WorkerErrors instead of values handed to the next function.
        task: list[Callable[..., Any]] = []
        task_args: list[tuple[Any, ...]] = []
        task_kws: list[dict[str, Any]] = []
        for position, (func, arg, kw) in enumerate(zip(items, args, kws, strict=True)):
            if not isinstance(func, Worker):
                task.append(func)
                task_args.append(arg)
                task_kws.append(kw)
            elif arg or kw:
                raise ValueError(f"Worker: functions[{position}] is a Worker, which brings its "
                                 f"own arguments; give it () and {{}}")
            else:
                task += func.task
                task_args += func.args
                task_kws += func.kwargs
        return tuple(task), tuple(task_args), tuple(task_kws)

    @staticmethod
    def _per_function(label: str, given: Any, n: int, kind: type, empty: Any) -> tuple[Any, ...]:
        if given is None:
            return tuple(kind(empty) for _ in range(n))
        if isinstance(given, (str, bytes, Mapping)) or not isinstance(given, Sequence):
            raise TypeError(f"Worker: {label} must hold one {kind.__name__} per function, "
                            f"got {given!r}")
        if len(given) != n:
            raise ValueError(f"Worker: {label} has {len(given)} entries for {n} functions")
        out = []
        for position, entry in enumerate(given):
            expected = Mapping if kind is dict else Sequence
            if not isinstance(entry, expected) or isinstance(entry, (str, bytes)):
                raise TypeError(f"Worker: {label}[{position}] must be a {kind.__name__}, "
                                f"got {entry!r}")
            out.append(kind(entry))
        return tuple(out)

    def __call__(self, inbox: Any) -> Any:
        failed = _first_error(inbox)
        if failed is not None:
            return failed
        result = inbox
        first = True
        for func, args, kwargs in self._steps:
            given = result if first else (result,)
            try:
                result = func(given, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - an exception is returned, as a value
                return worker_error(func, given, exc)
            first = False
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Worker):
            return NotImplemented
        return (self.task == other.task and _equal(self.args, other.args)
                and _equal(self.kwargs, other.kwargs))

    def __hash__(self) -> int:
        return hash(self.task)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Worker, (self.task, self.args, self.kwargs, self.name))

    def __repr__(self) -> str:
        return f"Worker({self.name!r}: {', '.join(_name(f) for f in self.task)})"
