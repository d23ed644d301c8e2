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

The logger writes *notices* back on each connection (see :class:`.package.Notice`).
When it fails to save a package it writes ``BROKEN`` to every producer; the next
``put`` of each producer reads it and raises :class:`LoggerBrokenError`, until
that run of the logger ends (a logger started again starts unbroken). A put to a
logger that was shut down (or never started) raises :class:`LoggerClosedError`.

The end of a run, a handshake that loses no put that returned::

    logger (shutdown)                          producer (put)
    CLOSING to every connection
    read each connection until it has          before sending: CLOSING came? then
      nothing more (whole frames only)           this run is over: reconnect or raise
    CLOSED(n): n frames taken from it;         after sendall: CLOSING came? then wait
      then close it                              for CLOSED(n); the frame is the
                                                 logger's if n counts it, else put
                                                 raises LoggerClosedError

A frame whose ``sendall`` returned before ``CLOSING`` was written is in the
socket when the logger reads it after writing ``CLOSING``, so ``n`` counts it;
a frame that arrives later finds ``CLOSING`` waiting, and its put learns from
``n`` whether it was taken. A put pays one ``poll(0)`` before and one after its
``sendall`` (a ``recv`` only when a notice came); it waits for the logger only
while a shutdown runs.

The shared clock: packages that ``log_results`` stamps itself (``time.time_ns()``)
must differ in time stamp even when several processes log under one source
(the worker processes of a parallel Piper), since the stamp names the file. A
run of the logger keeps the last stamp given in a file of 8 bytes beside its
socket (:func:`make_clock`); each producer opens it, and takes the next stamp
under a POSIX record lock (``lockf``), which the kernel lets go when its holder
dies and which a forked child does not inherit.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import threading
import time

import numpy as np

from .errors import LoggerBrokenError, LoggerClosedError
from .package import FRAME, NOTICE, TAKEN, LogPackage, Notice

__all__ = ["CLOCK_NAME", "LogQueue", "make_clock", "read_clock"]

# Frames up to this size are sent in one piece (header and payload joined).
_JOIN_BELOW = 1 << 16

CLOCK_NAME = "clock"
"""The shared clock's file, beside the logger's socket."""

_CLOCK = struct.Struct("<Q")

# A record lock is this process's, whichever thread took it, and closing any descriptor
# of the file lets it go: the threads of a process take the clock (and close its
# descriptors) under this lock.
_clock_lock = threading.Lock()
_last_stamp = 0  # the last stamp this process gave, whatever the logger
# Clock descriptors of links dropped without close(), closed under the lock.
_orphans: list[int] = []


def _reset_clock_lock() -> None:
    """In a forked child: a new lock (the parent's may have been copied while held)."""
    global _clock_lock
    _clock_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_clock_lock)


def _close_orphans() -> None:
    """Close the clock descriptors of dropped links (with ``_clock_lock`` held)."""
    while _orphans:
        try:
            os.close(_orphans.pop())
        except OSError:
            pass


def make_clock(path: str, last: int) -> None:
    """Create the shared clock's file at ``path``, its last stamp ``last``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, _CLOCK.pack(last))
    finally:
        os.close(fd)


def read_clock(path: str) -> int:
    """The last stamp the shared clock at ``path`` gave (0 when it cannot be read)."""
    with _clock_lock:  # closing the file lets go a lock another thread of ours holds
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return 0
        try:
            data = os.read(fd, _CLOCK.size)
        finally:
            os.close(fd)
    return _CLOCK.unpack(data)[0] if len(data) == _CLOCK.size else 0


class _Link:
    """One process's connection to the logger, and the notices it has received."""

    __slots__ = ("broken", "clock_fd", "clock_path", "closing", "inbox", "lock", "pid",
                 "poller", "sent", "sock", "taken")

    def __init__(self, address: str) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.sent = 0                   # frames sent whole on this connection
        self.broken: str | None = None  # BROKEN came: why puts are refused
        self.closing = False            # CLOSING came, or the connection ended
        self.taken: int | None = None   # CLOSED came: frames the logger took
        self.inbox = bytearray()        # a notice received in part
        self.clock_path = os.path.join(os.path.dirname(address), CLOCK_NAME)
        self.clock_fd = -1              # the shared clock, opened at the first stamp
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise LoggerClosedError(f"the data logger at {address} is not running") from exc
        # poll(0) first: cheaper than a recv that fails, and a put makes two such checks
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)

    def stamp(self) -> int:
        """``time.time_ns()``, but later than every stamp given before by this process
        and by every producer of this run of the logger (its shared clock)."""
        global _last_stamp
        with _clock_lock:
            _close_orphans()
            if self.clock_fd < 0:
                try:
                    self.clock_fd = os.open(self.clock_path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError as exc:  # the logger has shut down meanwhile
                    raise LoggerClosedError("the data logger was shut down") from exc
            fd = self.clock_fd
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                data = os.pread(fd, _CLOCK.size, 0)
                shared = _CLOCK.unpack(data)[0] if len(data) == _CLOCK.size else 0
                stamp = max(time.time_ns(), shared + 1, _last_stamp + 1)
                os.pwrite(fd, _CLOCK.pack(stamp), 0)
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            _last_stamp = stamp
        return stamp

    def close(self) -> None:
        self.sock.close()
        if self.clock_fd >= 0:
            with _clock_lock:
                _orphans.append(self.clock_fd)
                self.clock_fd = -1
                _close_orphans()

    def __del__(self) -> None:
        # Not closed here: the collector may run in a thread that holds the clock's lock.
        if getattr(self, "clock_fd", -1) >= 0:
            _orphans.append(self.clock_fd)

    def poll(self) -> None:
        """Take in the notices that have come, without waiting."""
        if self.taken is not None or not self.poller.poll(0):
            return
        while self.taken is None:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not self._take(data):
                return

    def settle(self) -> int | None:
        """Wait for ``CLOSED``: the frames the logger took (``None``: it ended unsaid)."""
        while self.taken is None:
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not self._take(data):
                break
        return self.taken

    def _take(self, data: bytes) -> bool:
        """Read the notices in ``data``; ``False`` at the end of the connection."""
        if not data:
            self.closing = True
            return False
        inbox = self.inbox
        inbox += data
        while len(inbox) >= NOTICE.size:
            kind, size = NOTICE.unpack_from(inbox)
            end = NOTICE.size + size
            if len(inbox) < end:
                break
            body = bytes(inbox[NOTICE.size:end])
            del inbox[:end]
            if kind == Notice.BROKEN:
                if self.broken is None:
                    self.broken = body.decode("utf-8", "replace")
            elif kind == Notice.CLOSING:
                self.closing = True
            elif kind == Notice.CLOSED:
                self.closing = True
                (self.taken,) = TAKEN.unpack(body)
        return True


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

    def archive_1(self) -> tuple[str, dict[str, object], list[tuple[str, str, str]]]:
        """Refuse to be written as source (``Plumber.save``, ``papyflow.archive``).

        A LogQueue is a connection to a logger running in this process: the file
        would name a socket that is gone when it runs, and every ``put`` would fail.
        """
        raise TypeError(f"{self!r} is the input of a DataLogger of this process (a socket "
                        "it serves while it runs), which a saved file cannot hold; make the "
                        "DataLogger (and log_results) in the file that runs the pipeline "
                        "instead")

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
        running, or shut down before it took the package, and
        :class:`LoggerBrokenError` after it failed to save a package.
        """
        if not isinstance(package, LogPackage):
            raise TypeError(f"LogQueue.put: expected a LogPackage, got {type(package).__name__}")
        self._put(package, package.time_stamp)

    def _put_stamped(self, package: LogPackage) -> int:
        """Put ``package`` under a time stamp of the logger's shared clock instead of its
        own (see :meth:`_Link.stamp`: unique among every producer of this run); the
        stamp it went under."""
        return self._put(package, None)

    def _put(self, package: LogPackage, time_stamp: int | None) -> int:
        payload = package.serialized_data
        for _ in range(2):
            link = self._connect()
            with link.lock:
                link.poll()
                if not link.closing:
                    if link.broken is not None:
                        raise LoggerBrokenError(link.broken)
                    # Stamped by the clock of the run this connection reaches.
                    stamp = link.stamp() if time_stamp is None else time_stamp
                    header = FRAME.pack(stamp, payload.size, package.source_id)
                    self._send(link, header, payload)
                    return stamp
            # This connection belongs to a run of the logger that shut down (broken
            # or not: a new run starts afresh). If the logger was started again, a
            # new connection reaches it; if not, connecting fails.
            self._drop(link)
        raise LoggerClosedError("the data logger was shut down")

    def _send(self, link: _Link, header: bytes, payload: np.ndarray) -> None:
        try:
            if payload.size < _JOIN_BELOW:
                link.sock.sendall(header + payload.tobytes())
            else:
                link.sock.sendall(header)
                link.sock.sendall(payload.data)
            link.sent += 1
            link.poll()
            # CLOSING before the frame was read: the logger's count decides.
            taken = link.settle() if link.closing else link.sent
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._drop(link)
            raise LoggerClosedError("the data logger was shut down") from exc
        except BaseException:
            # Interrupted in the middle of a frame (or of the handshake): this stream
            # is torn. The logger drops a partial frame; the next put opens a new
            # connection.
            self._drop(link)
            raise
        if taken is None or taken < link.sent:
            self._drop(link)
            raise LoggerClosedError("the data logger shut down before it took this package")

    def _drop(self, link: _Link) -> None:
        with self._lock:
            if self._link is link:
                self._link = None
        link.close()

    def close(self) -> None:
        """Close this process's connection (the next ``put`` reopens one).

        Waits for a ``put`` in progress in another thread (``DataLogger.shutdown``
        calls this once the logger is done, when such a put ends at once): its
        socket is not closed under it.
        """
        link = self._link
        if link is not None and link.pid == os.getpid():
            with link.lock:
                self._drop(link)
