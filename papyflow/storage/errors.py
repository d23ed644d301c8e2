"""What the storage services raise.

Every error is a :class:`StorageError`; each also subclasses the builtin that a
caller would already catch for that situation (``ValueError`` for a bad
message or name, ``TypeError`` for data that cannot be stored, ``OSError`` for
a writer that is gone).
"""

from __future__ import annotations

__all__ = [
    "ItemExistsError",
    "NoSuchServiceError",
    "NotStoredError",
    "RemoteTraceback",
    "StorageError",
    "UnsupportedDataError",
    "WriterError",
    "WriterLostError",
]


class StorageError(Exception):
    """The root of the storage errors."""


class NoSuchServiceError(StorageError, ValueError):
    """The message (or the kind of item given with it) is not understood."""


class UnsupportedDataError(StorageError, TypeError):
    """A value cannot be stored so that it loads back exactly (says which, and why)."""


class ItemExistsError(StorageError, ValueError):
    """The file already holds data under that name (stored data are set in stone;
    use ``UPDATE_LEAF`` to replace a leaf's data)."""


class NotStoredError(StorageError, KeyError, ValueError):
    """The file holds no node or data of that name."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in another process.

    Attached as ``__cause__`` of the original exception, as
    ``concurrent.futures`` does, so that the traceback shows where the writer failed.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class WriterError(StorageError):
    """The queue writer could not store a message of this sender.

    ``exception`` is the writer's exception (also ``__cause__``), ``message``
    the storage message and ``seq`` its number in this sender's stream.
    """

    def __init__(self, text: str, *, exception: BaseException | None = None,
                 message: str = "", seq: int = -1) -> None:
        super().__init__(text)
        self.exception = exception
        self.message = message
        self.seq = seq


class WriterLostError(WriterError, OSError):
    """The writer process is gone (killed, crashed) or never came: what was not
    acknowledged may not be in the file."""
