"""The data logger: save byte-serialized data sent from many processes, losing nothing.

Public surface: :class:`DataLogger`, :class:`LogPackage`, :class:`LogQueue`
(``DataLogger.input_queue``), :func:`log_results` (a Piper worker that logs a
pipeline's results), :func:`compress_logs`, and the errors.
"""

from __future__ import annotations

from ._dispatcher import LoggerStatistics
from .adapter import LogResults, log_results, serialize
from .compress import compress_logs
from .errors import (
    DataLoggerError,
    DuplicatePackageError,
    FailedPackage,
    LoggerBrokenError,
    LoggerClosedError,
    LogWriteError,
    SaverLostError,
)
from .input_queue import LogQueue
from .logger import DataLogger, Phase
from .package import LogPackage

__all__ = [
    "DataLogger",
    "DataLoggerError",
    "DuplicatePackageError",
    "FailedPackage",
    "LogPackage",
    "LogQueue",
    "LogResults",
    "LogWriteError",
    "LoggerBrokenError",
    "LoggerClosedError",
    "LoggerStatistics",
    "Phase",
    "SaverLostError",
    "compress_logs",
    "log_results",
    "serialize",
]
