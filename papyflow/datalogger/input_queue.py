"""The producers' side of the logger: a queue-like object any process can put packages to.

Each producing process opens its own Unix-domain stream socket to the logger
(lazily, at its first ``put``; a forked child opens its own), and ``put`` writes
one frame to it with ``sendall``. Why not a shared ``multiprocessing.Queue``: its
``put`` returns before a feeder thread has written anything, so a producer killed
just after ``put`` loses the package; and a process killed while it holds the
queue's lock blocks every other producer. Here ``put`` returns once the whole
frame is in the kernel's socket buffer, which outlives the producer; a producer
killed in the middle of ``put`` leaves a partial frame that the logger discards
(that put never returned) and harms nobody else.

The bound: the logger stops reading sockets while it holds ``queue_size``
packages or ``queue_bytes`` bytes not yet saved, so the socket buffers fill and
``put`` blocks until savers catch up. Each producer's socket buffer adds at most
the kernel's send buffer size (``net.core.wmem_default``, about 200 KiB).

When the logger fails to save a package it writes a notice to every producer's
socket; the next ``put`` of each producer reads it and raises
:class:`LoggerBrokenError`. A put to a logger that was shut down (or never
started) raises :class:`LoggerClosedError`.
"""

from __future__ import annotations

import os
import socket
import threading

import numpy as np

from .errors import LoggerBrokenError, LoggerClosedError
from .package import FRAME, LogPackage

__all__ = ["LogQueue"]

# Frames up to this size are sent in one piece (header and payload joined).
_JOIN_BELOW = 1 << 16


class _Link:
    """One process's connection to the logger."""

    __slots__ = ("broken", "lock", "pid", "sock")

    def __init__(self, address: str) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.broken: str | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise LoggerClosedError(f"the data logger at {address} is not running") from exc

    def notice(self) -> str | None:
        """The logger's notice: ``None`` (none), ``""`` (it closed the connection), or
        why it refuses puts."""
        if self.broken is None:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            except OSError:
                data = b""
            self.broken = data.decode("utf-8", "replace") if data else ""
        return self.broken


class LogQueue:
    """Where producers put :class:`LogPackage` records (``DataLogger.input_queue``).

    Picklable: hand it to other processes (``multiprocess`` children, NuMap workers);
    each connects on its first ``put``. Thread-safe.
    """

    __slots__ = ("_address", "_link", "_lock", "_pid")

    def __init__(self, address: str) -> None:
        self._address = address
        self._link: _Link | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __getstate__(self) -> str:
        return self._address

    def __setstate__(self, address: str) -> None:
        self.__init__(address)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"LogQueue({self._address!r})"

    def _connect(self) -> _Link:
        link = self._link
        pid = os.getpid()
        if link is not None and link.pid == pid:
            return link
        if self._pid != pid:
            # First use in a forked child: the lock may have been copied while held,
            # and the connection is the parent's. Both are replaced, not touched.
            self._lock = threading.Lock()
            self._pid = pid
            self._link = None
        with self._lock:
            if self._link is None:
                self._link = _Link(self._address)
            return self._link

    def put(self, package: LogPackage) -> None:
        """Send ``package`` to the logger; blocks while the logger's buffer is full.

        Returns once the package is in the logger's hands (the kernel's socket
        buffer): it will be saved, or reported by ``shutdown``, even if this process
        dies right after. Raises :class:`LoggerClosedError` when the logger is not
        running and :class:`LoggerBrokenError` after it failed to save a package.
        """
        if not isinstance(package, LogPackage):
            raise TypeError(f"LogQueue.put: expected a LogPackage, got {type(package).__name__}")
        payload = package.serialized_data
        header = FRAME.pack(package.time_stamp, payload.size, package.source_id)
        for _ in range(2):
            link = self._connect()
            with link.lock:
                notice = link.notice()
                if notice:
                    raise LoggerBrokenError(notice)
                if notice is None:
                    self._send(link, header, payload)
                    return
            # The logger closed this connection when it shut down. If it was started
            # again, a new connection reaches it; if not, connecting fails.
            self._drop(link)
        raise LoggerClosedError("the data logger was shut down")

    def _send(self, link: _Link, header: bytes, payload: np.ndarray) -> None:
        try:
            if payload.size < _JOIN_BELOW:
                link.sock.sendall(header + payload.tobytes())
            else:
                link.sock.sendall(header)
                link.sock.sendall(payload.data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._drop(link)
            raise LoggerClosedError("the data logger was shut down") from exc
        except BaseException:
            # Interrupted in the middle of a frame: this stream is torn. The logger
            # drops the partial frame; the next put opens a new connection.
            self._drop(link)
            raise

    def _drop(self, link: _Link) -> None:
        with self._lock:
            if self._link is link:
                self._link = None
        link.sock.close()

    def close(self) -> None:
        """Close this process's connection (the next ``put`` reopens one)."""
        link = self._link
        if link is not None and link.pid == os.getpid():
            self._drop(link)
