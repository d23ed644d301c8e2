"""Files that are never seen half-written, and a lock that threads and processes share.

Every file is written to a temporary name in its own directory and renamed over
its target (``os.replace`` is atomic on POSIX), so a reader sees the old file or
the new one, never a mixture. The lock is an ``fcntl.flock`` on a lock file: each
acquisition opens the file anew, and flock locks belong to the open file, so two
threads of one process exclude each other just as two processes do.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import numpy as np

from .errors import LockTimeoutError

__all__ = ["FileLock", "atomic_write", "atomic_write_text", "temporary_target", "write_arrays"]

# atomic_write's temporary for target 'x.py' is '.x.py.<random>.tmp' (tempfile's
# random part: letters, digits and '_').
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]+\.tmp")


def _umask() -> int:
    # os.umask can only be read by setting it; done once, at import.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)``: to a temporary name, then renamed.

    The file gets the mode of the file it replaces, or the usual mode of a new file
    (mkstemp's private 0600 would surprise whoever shares the directory).
    """
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temporary_target(name: str) -> str | None:
    """The name of the file that :func:`atomic_write`'s temporary ``name`` was to
    become, or None if ``name`` is not named as such a temporary.

    A temporary outlives its write only when the writer was killed; whoever knows
    that no write is under way (a lock holder) may remove it.
    """
    match = _TEMPORARY.fullmatch(name)
    return None if match is None else match["target"]


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]


class FileLock:
    """An exclusive lock on ``path``, waited for at most ``timeout`` seconds.

    Other processes and other ``FileLock`` objects are kept out by the flock; the
    threads sharing this object by a thread lock taken first. Not reentrant; any
    thread may release it (a data set may be closed from another thread).
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`LockTimeoutError` after ``timeout`` seconds."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise self._timed_out()
        try:
            self._fd = self._flock(deadline)
        except BaseException:
            self._thread_lock.release()
            raise

    def _flock(self, deadline: float) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise self._timed_out() from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            except BaseException:
                os.close(fd)
                raise

    def _timed_out(self) -> LockTimeoutError:
        return LockTimeoutError(f"the lock {str(self.path)!r} is still held by another "
                                f"writer after {self.timeout} s (timeout={self.timeout})")

    def release(self) -> None:
        """Give the lock back; releasing a lock not held does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
