"""The error families of papyflow's pipeline layer.

``WorkerError`` and ``PiperError`` are *values* as much as exceptions: a Worker
returns a ``WorkerError`` instead of raising, and a Piper hands a failed item
downstream as a ``PiperError``, so that one bad item never stops a pipeline.
``DaggerError`` and ``PlumberError`` are raised for mistakes in building or
driving a pipeline.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DaggerCycleError",
    "DaggerError",
    "PiperError",
    "PiperTimeoutError",
    "PlumberError",
    "WorkerError",
]


class WorkerError(Exception):
    """A function of a Worker raised.

    ``args[0]`` is a one-line message. The attributes say what happened:
    ``function`` (the name of the function that raised), ``inbox`` (what that
    function was given), ``exception`` (the original exception, when it could
    be kept) and ``traceback`` (its formatted traceback, always kept).
    """

    def __init__(self, message: str, *, function: str = "", inbox: Any = None,
                 exception: BaseException | None = None, traceback: str = "") -> None:
        super().__init__(message)
        self.function = function
        self.inbox = inbox
        self.exception = exception
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state does not survive the default exception pickling.
        return (_rebuild, (type(self), self.args, self.__dict__))

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PiperError(Exception):
    """An item failed in a Piper. ``args[0]`` is the cause: a ``WorkerError``,
    a ``TimeoutError``, or the error of a lost worker process."""

    @property
    def cause(self) -> Any:
        return self.args[0] if self.args else None


class PiperTimeoutError(PiperError):
    """The result of an item did not come within the Piper's ``timeout``."""


class DaggerError(Exception):
    """A pipeline graph is not valid, or an operation on it cannot be done."""


class DaggerCycleError(DaggerError):
    """A pipe would close a cycle. ``cycle`` lists the pipers on it."""

    def __init__(self, message: str, cycle: list[Any] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle or []


class PlumberError(Exception):
    """A Plumber was asked something its state does not allow, or a pipeline file is bad."""


def _rebuild(cls: type[WorkerError], args: tuple[Any, ...], state: dict[str, Any]) -> WorkerError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
