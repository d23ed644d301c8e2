"""Logging for papyflow pipelines, and OS-dependent defaults.

:func:`start_logger` attaches handlers to the ``'papyflow'`` logger, the parent
of every logger the package uses (``papyflow.util`` and so on), so it shows what
a pipeline does without touching the application's root logger.
:func:`get_defaults` measures the pipe and socket buffer sizes of this host.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import tempfile
import time
from typing import IO, Any, cast

from ._check import positive_int

__all__ = ["LOGGER_NAME", "get_defaults", "start_logger"]

LOGGER_NAME = "papyflow"
"""The logger :func:`start_logger` configures."""

_FORMAT = "%(levelname)s %(asctime)s.%(msecs)03d [%(name)s] - %(message)s"
_DATE_FORMAT = "%H:%M:%S"
# Marks the handlers start_logger added, so that a second call replaces them
# (instead of adding duplicates) and leaves handlers added by others alone.
_MARK = "_papyflow_start_logger"


def get_defaults() -> dict[str, Any]:
    """Return a dict of variables and their OS-dependent defaults.

    ``PIPE_BUF`` (bytes a pipe writes atomically), ``TCP_SNDBUF``,
    ``TCP_RCVBUF``, ``UDP_SNDBUF``, ``UDP_RCVBUF`` (socket buffer sizes in
    bytes) and ``TEMP_DIR`` (where temporary files go).
    """
    defaults: dict[str, Any] = {}
    if "PC_PIPE_BUF" in os.pathconf_names:
        read_end, write_end = os.pipe()
        try:
            defaults["PIPE_BUF"] = os.fpathconf(read_end, "PC_PIPE_BUF")
        finally:
            os.close(read_end)
            os.close(write_end)
    else:
        defaults["PIPE_BUF"] = 512  # the POSIX minimum, and what Windows pipes give
    for proto, kind in (("TCP", socket.SOCK_STREAM), ("UDP", socket.SOCK_DGRAM)):
        with socket.socket(socket.AF_INET, kind) as sock:
            defaults[f"{proto}_SNDBUF"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            defaults[f"{proto}_RCVBUF"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    defaults["TEMP_DIR"] = tempfile.gettempdir()
    return defaults


def start_logger(log_to_file: bool = False, log_to_stream: bool | IO[str] = False,
                 log_to_file_level: int | str = logging.INFO,
                 log_to_stream_level: int | str = logging.INFO,
                 log_filename: str | os.PathLike[str] | None = None,
                 log_stream: IO[str] | None = None, log_rotate: bool = True,
                 log_size: int = 524288, log_number: int = 3) -> logging.Logger:
    """Configure the ``'papyflow'`` logger to monitor the execution of pipelines.

    - ``log_to_file``: write messages of ``log_to_file_level`` and above to
      ``log_filename`` (default ``'papyflow.log'``, or
      ``'papyflow_<date>_<time>.log'`` when not rotating). With ``log_rotate``
      the file is rotated at ``log_size`` bytes, keeping ``log_number`` old
      files; without it the file is appended to.
    - ``log_to_stream``: print messages of ``log_to_stream_level`` and above to
      ``log_stream``, or to a stream given as ``log_to_stream`` itself, or to
      standard error.

    Levels are ints (``logging.INFO`` is 20) or names (``'DEBUG'``). A second
    call replaces the handlers of the first (closing its file), so calling it
    again never duplicates messages; ``start_logger()`` with no arguments
    removes them. A call that fails, such as one whose log file cannot be
    opened (an ``OSError`` naming ``log_filename``), leaves the handlers as
    they were. Returns the logger.
    """
    where = "start_logger"
    for name, value in (("log_to_file", log_to_file), ("log_rotate", log_rotate)):
        if not isinstance(value, bool):
            raise TypeError(f"{where}: {name} must be a bool, got {value!r}")
    file_level = _level(where, "log_to_file_level", log_to_file_level)
    stream_level = _level(where, "log_to_stream_level", log_to_stream_level)
    log_size = positive_int(where, "log_size", log_size)
    if isinstance(log_number, bool) or not isinstance(log_number, int) or log_number < 0:
        raise ValueError(f"{where}: log_number must be an int of at least 0, got {log_number!r}")
    stream = _stream(where, log_to_stream, log_stream)
    if log_filename is not None and not isinstance(log_filename, (str, os.PathLike)):
        raise TypeError(f"{where}: log_filename must be a path, got {log_filename!r}")

    # The new handlers are made before the old ones go, so a call that fails
    # (a log file that cannot be opened) leaves the logging that worked.
    added: list[logging.Handler] = []
    if log_to_file:
        to_file = _file_handler(where, log_filename, log_rotate, log_size, log_number)
        to_file.setLevel(file_level)
        added.append(to_file)
    if stream is not None:
        to_stream = logging.StreamHandler(stream)
        to_stream.setLevel(stream_level)
        added.append(to_stream)
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(old)
        old.close()
    formatter = logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT)
    for new in added:
        setattr(new, _MARK, True)
        new.setFormatter(formatter)
        logger.addHandler(new)
    if added:
        # The logger must pass what its most verbose handler wants.
        logger.setLevel(min(h.level for h in added))
    else:
        logger.setLevel(logging.NOTSET)
    return logger


def _file_handler(where: str, log_filename: str | os.PathLike[str] | None, log_rotate: bool,
                  log_size: int, log_number: int) -> logging.FileHandler:
    """Open the log file; an ``OSError`` of the same kind names ``log_filename`` if it fails."""
    if log_rotate:
        filename = os.fspath(log_filename or "papyflow.log")
    else:
        filename = os.fspath(log_filename or f"papyflow_{time.strftime('%Y%m%d_%H%M%S')}.log")
    try:
        if log_rotate:
            return logging.handlers.RotatingFileHandler(
                filename, maxBytes=log_size, backupCount=log_number, encoding="utf-8")
        return logging.FileHandler(filename, "a", encoding="utf-8")
    except OSError as exc:
        # OSError(errno, ...) makes the same subclass (FileNotFoundError and so on).
        raise OSError(exc.errno, f"{where}: log_filename cannot be opened: "
                                 f"{exc.strerror or exc}", filename) from exc


def _level(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a logging level, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        level = logging.getLevelName(value.upper())
        if isinstance(level, int):
            return level
        raise ValueError(f"{where}: {name} {value!r} is not a logging level name")
    raise TypeError(f"{where}: {name} must be a logging level, got {value!r}")


def _stream(where: str, log_to_stream: Any, log_stream: Any) -> IO[str] | None:
    if log_stream is not None and not hasattr(log_stream, "write"):
        raise TypeError(f"{where}: log_stream must be a writable stream, got {log_stream!r}")
    if log_to_stream is False:
        return None
    if log_to_stream is True:
        return log_stream if log_stream is not None else sys.stderr
    if hasattr(log_to_stream, "write"):
        return cast(IO[str], log_to_stream)
    raise TypeError(f"{where}: log_to_stream must be a bool or a writable stream, "
                    f"got {log_to_stream!r}")
