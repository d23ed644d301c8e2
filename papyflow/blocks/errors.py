"""The errors of blocks: user code that failed, and parameters that do not fit.

::

    BlockError (RuntimeError)              code of a block (algorithm, library, view)
                                           raised, or answered something it must not
    ParameterError (ValueError)            a parameter value an algorithm refuses:
    │                                      wrong type, out of range, not a choice
    └── UnknownParameterError (KeyError)   a parameter the algorithm does not declare

A bad *declaration* never raises: the asset loads with ``valid == False`` and
its ``errors`` say what is wrong and where (see :mod:`papyflow.blocks.library`
and :mod:`papyflow.blocks.algorithm`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BlockError", "ParameterError", "UnknownParameterError"]


class BlockError(RuntimeError):
    """Code of a block raised (or broke a rule of the block API).

    The message names the block (module, class and file), the method and,
    when user code raised, ends with the formatted traceback of the original
    exception, which is also kept as ``__cause__`` (in the process where it
    happened: the traceback text travels with the message when the error is
    pickled, the cause does not).

    Attributes:
        block: what ran, e.g. ``"user_algo_1.Algorithm (<prefix>/algorithms/user/algo/1.py)"``.
        method: the method that failed (``"process"``), or ``"<module>"`` when
            loading the code failed.
        traceback: the formatted traceback of the user's exception; ``""``
            when the failure is not an exception (a wrong return value).
        data_index: ``(start, end)``, the data indices being processed when a
            sequential algorithm's ``process()`` failed; ``None`` otherwise.
    """

    data_index: tuple[int, int] | None = None

    def __init__(self, message: str, *, block: str = "", method: str = "",
                 traceback: str = "") -> None:
        super().__init__(message)
        self.block = block
        self.method = method
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state does not survive the default exception pickling.
        return (_rebuild, (type(self), self.args, self.__dict__))


class ParameterError(ValueError):
    """A value an algorithm does not accept for one of its parameters.

    Attributes ``algorithm`` (its name) and ``parameter`` (the parameter's name).
    """

    def __init__(self, message: str, *, algorithm: str = "", parameter: str = "") -> None:
        super().__init__(message)
        self.algorithm = algorithm
        self.parameter = parameter

    def __str__(self) -> str:
        # KeyError (a base of UnknownParameterError) would quote the message.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class UnknownParameterError(ParameterError, KeyError):
    """A parameter the algorithm does not declare.

    A ``ValueError`` like every parameter error, and a ``KeyError`` too, which
    is what a lookup of an unknown name raises.
    """


def _rebuild(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error
