"""What the data logger raises.

``DataLoggerError`` is the family. Beneath it, each names what happened:
``LoggerClosedError`` (a put to a logger that is not running),
``LoggerBrokenError`` (a put to a logger that has failed to save some package),
``LogWriteError`` (packages could not be saved; raised by ``shutdown``), and
``SaverLostError`` (saver processes kept dying, so packages could not be saved).
``DuplicatePackageError`` is why one package could not be saved (its file exists);
it travels inside ``LogWriteError.failures``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DataLoggerError",
    "DuplicatePackageError",
    "FailedPackage",
    "LogWriteError",
    "LoggerBrokenError",
    "LoggerClosedError",
    "RemoteTraceback",
    "SaverLostError",
]


class DataLoggerError(Exception):
    """Base of the errors the data logger raises."""


class LoggerClosedError(DataLoggerError, RuntimeError):
    """A package was put to a logger that was not started, or was shut down."""


class LoggerBrokenError(DataLoggerError, RuntimeError):
    """A package was put to a logger that already failed to save some package.

    The packages it failed on are reported by ``DataLogger.shutdown``; new ones are
    refused so that a producer learns of the failure instead of filling a full disk.
    """


class SaverLostError(DataLoggerError, RuntimeError):
    """Saver processes died more often than the logger restarts them."""


class DuplicatePackageError(DataLoggerError, FileExistsError):
    """A package was not saved: the file of its source and time stamp exists already.

    Two packages of one source with one time stamp name one file (or an earlier
    run left that file in the folder); the file in place is kept as it is, and the
    package is reported (``FailedPackage.error``), never written over it. From
    ``compress_logs``, ``archive`` names the archive that holds another package
    under the file's name: the file is left out of it and kept.
    """

    def __init__(self, source_id: int, time_stamp: int, path: str,
                 archive: str | None = None) -> None:
        if archive is None:  # a saver's: the package never reached a file
            why = ("has a file already (two packages of one source with one time stamp, "
                   "or a file of an earlier run); this package was not written")
        else:  # compress_logs': the file is in place, the archive holds another package
            why = (f"is in the archive {archive} already, with other contents; this file "
                   "was left out of the archive and kept")
        super().__init__(errno.EEXIST, f"source {source_id}, time stamp {time_stamp} {why}",
                         path)
        self.source_id = source_id
        self.time_stamp = time_stamp
        self.archive = archive
        # every (source_id, time_stamp, path) reported (compress_logs may find several)
        self.clashes: list[tuple[int, int, Any]] = [(source_id, time_stamp, path)]

    def __reduce__(self):  # travels pickled from a saver
        return (type(self), (self.source_id, self.time_stamp, self.filename, self.archive))


class RemoteTraceback(Exception):
    """The formatted traceback of an error raised in a saver process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


@dataclass(frozen=True, slots=True)
class FailedPackage:
    """A package that could not be saved, and why.

    ``path`` is the file it was meant for; ``error`` the ``OSError`` (or other
    exception) the saver met, with the saver's traceback as its ``__cause__``;
    ``package`` the ``LogPackage`` itself, kept so the caller can save it elsewhere.
    """

    source_id: int
    time_stamp: int
    path: str
    error: BaseException
    package: object

    def describe(self) -> str:
        """One line: which package, where, and the error."""
        return (f"source {self.source_id}, time stamp {self.time_stamp} "
                f"-> {os.path.basename(self.path)}: {self.error}")


class LogWriteError(DataLoggerError, OSError):
    """Some packages could not be saved (``failures``: a tuple of :class:`FailedPackage`).

    It is an ``OSError``; its ``__cause__`` is the first package's error. The message
    names the first few packages and their errors.
    """

    def __init__(self, failures: tuple[FailedPackage, ...]) -> None:
        shown = "; ".join(f.describe() for f in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        first = failures[0].error if failures else None
        errno = getattr(first, "errno", None)
        message = f"{len(failures)} package(s) could not be saved: {shown}{more}"
        if errno is not None:
            super().__init__(errno, message)
        else:
            super().__init__(message)
        self.failures = failures

    def __str__(self) -> str:
        return self.args[-1] if self.args else ""

    def __reduce__(self):  # pragma: no cover - pickled only by callers
        return (type(self), (self.failures,))
