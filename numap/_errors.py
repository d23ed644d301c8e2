"""The exceptions NuMap raises, and how a worker's traceback travels with one.

Each subclasses the builtin a caller already catches: ``numap.TimeoutError`` is a
``TimeoutError``, a lost worker is a ``RuntimeError``.
"""

from __future__ import annotations

import builtins
import traceback

__all__ = [
    "BrokenPoolError",
    "NuMapError",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerLostError",
    "with_remote_traceback",
]


class NuMapError(Exception):
    """Base of the errors NuMap itself raises (not the ones your function raises)."""


class TimeoutError(NuMapError, builtins.TimeoutError):  # noqa: A001 - the reference's name
    """No result came within the timeout given to ``NuMap.next`` or ``add_task``."""


class WorkerLostError(NuMapError, RuntimeError):
    """A worker process died while it evaluated this item.

    Attributes: ``exitcode`` (the process exit code, negative for a signal),
    ``signal_name`` (``'SIGKILL'`` and so on, or ``None``), ``worker`` (its name),
    ``task`` and ``index`` (which item of which task it was running).
    """

    def __init__(self, message: str, *, exitcode: int | None = None,
                 signal_name: str | None = None, worker: str = "",
                 task: int | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.signal_name = signal_name
        self.worker = worker
        self.task = task
        self.index = index


class BrokenPoolError(NuMapError, RuntimeError):
    """The pool cannot go on (for example every fresh worker died at once); pending items fail."""


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process.

    NuMap sets it as the ``__cause__`` of the exception it re-raises, so a
    printed traceback shows where the error happened in the worker.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def with_remote_traceback(exc: BaseException, tb: str) -> BaseException:
    """Attach the worker's formatted traceback ``tb`` to ``exc`` as its cause."""
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


def format_exception(exc: BaseException) -> str:
    """The full formatted traceback of ``exc``, as a worker sends it home."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
