"""``DataLogger``: saver processes that write every logged package to its own ``.npy`` file.

The pieces: producers put :class:`LogPackage` records to ``input_queue`` (a
:class:`LogQueue`, see :mod:`.input_queue`); the logger's thread (see
:mod:`._dispatcher`) reads them, batches them and hands the batches to
``process_count`` saver processes of ``thread_count`` writer threads each (see
:mod:`._saver`), and keeps every batch until its saver acknowledges it.
"""

from __future__ import annotations

import atexit
import enum
import functools
import math
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import multiprocess

from ._dispatcher import Dispatcher, LoggerStatistics
from .compress import compress_logs
from .errors import FailedPackage, LoggerClosedError, LogWriteError
from .input_queue import CLOCK_NAME, LogQueue, make_clock, read_clock

__all__ = ["DataLogger", "Phase"]

_TEMPORARY_SUFFIX = ".tmp"


class Phase(enum.Enum):
    """Where a logger is in its life: ``start()`` goes NEW/STOPPED -> RUNNING,
    ``shutdown()`` RUNNING -> STOPPED."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


def _shutdown_at_exit(logger: DataLogger, pid: int) -> None:
    """``shutdown()`` a logger still running when its process exits (only in the
    process that started it: a forked child that runs exit handlers, such as a NuMap
    worker, inherits the registration but not the logger). The registration holds the
    logger: one nobody else holds any more still runs, and saves what it accepted."""
    if os.getpid() == pid:
        logger.shutdown()


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DataLogger: {name} must be an integer >= 1, got {value!r}")
    return value


class DataLogger:
    """Saves ``LogPackage`` records sent from any process, one ``.npy`` file each.

    Files go to ``<output_directory>/<instance_name>_data_log/`` (the
    ``output_directory`` property), named ``<source_id>_<time_stamp>.npy``.

    ``process_count`` saver processes with ``thread_count`` writer threads each
    write them. ``queue_size`` (packages) and ``queue_bytes`` bound what the logger
    holds unsaved: beyond either, ``input_queue.put`` blocks. A saver process that
    dies is replaced (at most ``max_restarts`` times, default ``4 * process_count``)
    and its unacknowledged packages are saved by the others. A saver that reads
    nothing (a stopped process) holds up no other saver and no producer; one that
    holds packages and neither takes more bytes nor finishes a batch for
    ``saver_timeout`` seconds (default 60; ``None`` waits for ever) is taken as
    hung and replaced the same way, so that ``shutdown()`` never waits on it for
    ever.

    ``shutdown()`` saves everything put so far, stops the savers, and raises
    :class:`LogWriteError` if any package could not be saved. Call it (or use the
    logger as a context manager) to see that report; a logger still running when
    its process exits normally is shut down then (an exit handler), so that what
    it accepted is saved; a failure is then printed on standard error.
    """

    def __init__(self, output_directory: str | os.PathLike[str],
                 instance_name: str = "data_logger", process_count: int = 1,
                 thread_count: int = 5, *, queue_size: int = 65_536,
                 queue_bytes: int = 256 * 2**20, max_restarts: int | None = None,
                 saver_timeout: float | None = 60.0) -> None:
        if not isinstance(output_directory, (str, os.PathLike)):
            raise TypeError("DataLogger: output_directory must be a path (str or "
                            f"os.PathLike), got {type(output_directory).__name__}")
        if not isinstance(instance_name, str) or not instance_name or os.sep in instance_name \
                or "\0" in instance_name:
            raise ValueError("DataLogger: instance_name must be a non-empty name without "
                             f"{os.sep!r} or NUL, got {instance_name!r}")
        self._process_count = _positive("process_count", process_count)
        self._thread_count = _positive("thread_count", thread_count)
        self._queue_size = _positive("queue_size", queue_size)
        self._queue_bytes = _positive("queue_bytes", queue_bytes)
        if max_restarts is None:
            max_restarts = 4 * process_count
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"DataLogger: max_restarts must be an integer >= 0, got {max_restarts!r}")
        self._max_restarts = max_restarts
        if saver_timeout is not None and (
                isinstance(saver_timeout, bool) or not isinstance(saver_timeout, (int, float))
                or not 0 < saver_timeout < math.inf):
            raise ValueError("DataLogger: saver_timeout must be a number of seconds > 0 or "
                             f"None, got {saver_timeout!r}")
        self._saver_timeout = None if saver_timeout is None else float(saver_timeout)
        self._name = instance_name
        self._directory = Path(output_directory) / f"{instance_name}_data_log"
        self._directory.mkdir(parents=True, exist_ok=True)
        # A private directory (mode 0700) holds the socket: only this user can connect.
        self._socket_dir = Path(tempfile.gettempdir()) / f"papyflow-log-{secrets.token_hex(6)}"
        self._queue = LogQueue(str(self._socket_dir / "in"))
        self._phase = Phase.NEW
        self._last_stamp = 0  # the shared clock's last stamp when the last run ended
        self._dispatcher: Dispatcher | None = None
        self._at_exit: functools.partial[None] | None = None
        self._failures: tuple[FailedPackage, ...] = ()
        self._statistics = LoggerStatistics()
        self._context = multiprocess.get_context("fork" if sys.platform != "win32" else None)

    def __reduce__(self) -> Any:
        # Only its input travels: the logger owns the saver processes and the socket.
        raise TypeError(f"{self!r} cannot be pickled (it owns its saver processes and their "
                        "socket): give other processes its input_queue, which pickles, or "
                        "log_results(logger, source_id) as a Piper's worker")

    def __repr__(self) -> str:
        return (f"DataLogger({str(self._directory)!r}, processes={self._process_count}, "
                f"threads={self._thread_count}, {self._phase.value})")

    @property
    def output_directory(self) -> Path:
        """The directory the log files go to: ``<output_directory>/<instance_name>_data_log``."""
        return self._directory

    @property
    def instance_name(self) -> str:
        """The logger's name, which names its folder (``<instance_name>_data_log``)."""
        return self._name

    @property
    def input_queue(self) -> LogQueue:
        """Where producers put packages; picklable, share it with other processes."""
        return self._queue

    @property
    def phase(self) -> Phase:
        """``Phase.NEW`` before ``start()``, ``RUNNING`` until ``shutdown()``, then
        ``STOPPED`` (until it is started again)."""
        return self._phase

    @property
    def started(self) -> bool:
        """Whether the logger is running (between ``start()`` and ``shutdown()``)."""
        return self._phase is Phase.RUNNING

    @property
    def failures(self) -> tuple[FailedPackage, ...]:
        """Packages the last run could not save (as reported by ``shutdown``)."""
        return self._failures

    @property
    def saver_pids(self) -> tuple[int, ...]:
        """Process ids of the savers started by the current (or last) run."""
        return self._dispatcher.saver_pids if self._dispatcher is not None else ()

    def statistics(self) -> LoggerStatistics:
        """A snapshot of the counters (see :class:`LoggerStatistics`)."""
        if self._dispatcher is not None:
            return self._dispatcher.statistics()
        return self._statistics

    def start(self) -> None:
        """Start the savers and begin accepting packages (no-op when running)."""
        if self._phase is Phase.RUNNING:
            return
        self._socket_dir.mkdir(mode=0o700)
        try:
            # log_results's stamps go on from the last run's (same folder, same files)
            make_clock(str(self._socket_dir / CLOCK_NAME), self._last_stamp)
        except BaseException:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            raise
        dispatcher = Dispatcher(
            address=str(self._socket_dir / "in"), directory=str(self._directory),
            process_count=self._process_count, thread_count=self._thread_count,
            queue_size=self._queue_size, queue_bytes=self._queue_bytes,
            max_restarts=self._max_restarts, saver_timeout=self._saver_timeout,
            context=self._context)
        try:
            dispatcher.start()
        except BaseException:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            raise
        self._dispatcher = dispatcher
        self._failures = ()
        self._phase = Phase.RUNNING
        # Registered after multiprocess's own exit handler, so it runs before that one
        # terminates the (daemonic) savers.
        self._at_exit = functools.partial(_shutdown_at_exit, self, os.getpid())
        atexit.register(self._at_exit)

    def shutdown(self) -> None:
        """Save every package put so far, stop the savers, then report failures.

        Puts that returned before this call are saved (or reported); puts made
        afterwards raise :class:`LoggerClosedError`. Raises :class:`LogWriteError`
        (an ``OSError``) naming every package that could not be saved; they stay
        available as ``failures``. A no-op when the logger is not running; a
        ``RuntimeError`` in a forked child, whose copy of the logger cannot stop it.
        Interrupted while it waits (Ctrl-C), the logger runs on: call it again, or
        the exit handler does.
        """
        dispatcher = self._dispatcher
        if self._phase is not Phase.RUNNING or dispatcher is None:
            return
        started_by = self._at_exit.args[1] if self._at_exit is not None else os.getpid()
        if os.getpid() != started_by:
            raise RuntimeError(
                f"DataLogger.shutdown(): the logger runs in process {started_by}, which "
                f"started it; this process ({os.getpid()}) is a fork of it and cannot stop "
                "it. What this process put is saved when that one shuts the logger down")
        dispatcher.stop()
        dispatcher.join()
        # Only now: interrupted while it waited (Ctrl-C), the logger still runs, and the
        # exit handler (or another shutdown()) saves what it accepted.
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
            self._at_exit = None
        self._phase = Phase.STOPPED
        self._statistics = dispatcher.statistics()
        self._failures = tuple(dispatcher.failures)
        self._queue.close()
        self._last_stamp = max(self._last_stamp, read_clock(str(self._socket_dir / CLOCK_NAME)))
        shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._remove_temporaries(dispatcher.saver_pids)
        if dispatcher.crash is not None and not self._failures:
            raise LoggerClosedError("the data logger's thread failed") from dispatcher.crash
        if self._failures:
            error = LogWriteError(self._failures)
            raise error from self._failures[0].error

    def _remove_temporaries(self, pids: tuple[int, ...]) -> None:
        """Remove the temporary files that killed savers left behind."""
        tags = tuple(f".{pid}-" for pid in pids)
        try:
            with os.scandir(self._directory) as entries:
                names = [entry.name for entry in entries]
        except OSError:  # the directory is gone (and reported by the failures)
            return
        for name in names:
            if name.startswith(".") and name.endswith(_TEMPORARY_SUFFIX) and any(
                    tag in name for tag in tags):
                try:
                    os.unlink(self._directory / name)
                except OSError:
                    pass

    def compress_logs(self, remove_sources: bool = False,
                      compresslevel: int | None = None) -> dict[int, Path]:
        """Compress the ``.npy`` files into one ``<source_id>_data_log.npz`` per source.

        Meant for after ``shutdown()``; while the logger runs, only the files
        already present are compressed. See :func:`papyflow.datalogger.compress_logs`.
        """
        return compress_logs(self._directory, remove_sources, compresslevel)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __del__(self) -> None:
        # A running logger is held by its exit handler until shutdown(); one collected
        # while running anyway (at the interpreter's end): stop its thread.
        dispatcher = getattr(self, "_dispatcher", None)
        phase = getattr(self, "_phase", None)
        # By name: at the interpreter's end this module's globals (Phase) may be gone.
        if getattr(phase, "name", None) == "RUNNING" and dispatcher is not None:
            dispatcher.stop()
