"""The logger's own thread: reads every producer's socket, hands batches to savers, and
keeps each batch until a saver acknowledges it.

::

    producer processes         dispatcher thread (in the logger's process)     saver processes
    ------------------         -------------------------------------------     ---------------
    LogQueue.put: sendall  --> socket i -> cut whole frames into batches
      (one socket each)          -> pending (deque) -> send to the least
                                 loaded saver, kept in its `inflight`  ----->  write files,
                               ack: forget the batch (saved), or keep   <-----  then Ack
                                 its failed frames for shutdown()
                               saver death (sentinel), or no progress for
                                 saver_timeout (stopped): its `inflight`
                                 batches go back to `pending`; a new
                                 saver is started

Sends to savers never block (see :class:`._saver.DispatcherLink`): a saver that
takes no bytes (stopped, or never scheduled) holds its own batches, at most
``2 * thread_count + 1``, and no one else's; the others and the producers go on.
With work in hand and neither an acknowledgement nor a byte taken for
``saver_timeout`` seconds, it is taken as hung: killed, its batches redone by
the others.

No loss: a batch leaves the dispatcher's memory only with its acknowledgement,
which a saver sends after its last file is in place; a saver's death costs a
second write of its unacknowledged batches (marked so: a file already there with
the same bytes is the dead saver's), never a package. At shutdown each connection
ends with a handshake (``CLOSING``, read until nothing more, ``CLOSED`` with the
count of frames taken; see :mod:`.input_queue`), so a put that returned is saved
and one that came too late raises. The bound: while the
dispatcher holds ``queue_size`` packages or ``queue_bytes`` bytes (pending and
in flight), it stops reading the sockets, and producers block in ``put``; a
frame larger than a read buffer is received only while it fits in what is left
of the bound or no other such frame is being received (its producer is not read
meanwhile), so that many producers of large frames hold one beyond the bound.

Errors: a frame a saver could not write comes back in its acknowledgement; the
dispatcher keeps it (package and error), writes a ``BROKEN`` notice to every
producer (so their next ``put`` raises ``LoggerBrokenError``) and goes on saving
the rest.
``DataLogger.shutdown`` raises ``LogWriteError`` naming every such package.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import pickle
import selectors
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._saver import Ack, DispatcherLink, Kind, SaverLink, frames, run_saver
from .errors import FailedPackage, RemoteTraceback, SaverLostError
from .package import FRAME, TAKEN, LogPackage, Notice, file_name, notice

__all__ = ["Dispatcher", "LoggerStatistics"]

_CHUNK = 1 << 18          # the receive buffer of a producer (larger frames get their own)
_BATCH_PACKAGES = 512     # a batch holds at most this many frames ...
_BATCH_BYTES = 1 << 20    # ... or this many bytes (a larger frame is a batch alone)
_DRAIN_GRACE = 2.0        # at shutdown, how long a half-received frame is waited for
_ACCEPT_PAUSE = 0.1       # out of descriptors: how long new producers wait in the backlog
# accept() errors that say this process has no room for another connection now
_NO_ROOM = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_NOTICE_BYTES = 4000      # a BROKEN notice's text is cut to this many bytes
_UNIX_PATH = 108          # sun_path of a Unix socket address (Linux), terminating zero included
_STOP_GRACE = 5.0         # how long savers get to exit after Stop

_HEAD = FRAME.size


def _cannot_listen(address: str, exc: OSError) -> OSError:
    """``exc`` from binding the logger's socket, naming the socket and the cause."""
    cause = exc.strerror or str(exc)
    message = f"the data logger cannot listen at {address!r}: {cause}"
    if len(os.fsencode(address)) >= _UNIX_PATH:
        message += (f" (the path has {len(os.fsencode(address))} bytes; a Unix socket's "
                    f"path holds at most {_UNIX_PATH - 1}: point TMPDIR to a shorter folder)")
    return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def _array(data: memoryview) -> np.ndarray:
    """A copy of ``data`` as a ``uint8`` array (the batch it points into is dropped)."""
    return np.frombuffer(bytes(data), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class LoggerStatistics:
    """A snapshot of the logger's counters (packages unless said otherwise).

    ``received``: taken from producers; ``saved``: written and renamed;
    ``failed``: could not be saved (reported by ``shutdown``); ``held`` /
    ``held_bytes``: received, not yet saved (at most the queue bound, plus one
    frame); ``producers``: open producer connections; ``torn``: partial frames
    dropped because their producer died (or was interrupted) inside ``put``, so
    never accepted; ``savers_lost``: saver processes that died and were replaced.
    """

    received: int = 0
    saved: int = 0
    failed: int = 0
    held: int = 0
    held_bytes: int = 0
    producers: int = 0
    torn: int = 0
    savers_lost: int = 0


@dataclass(slots=True, eq=False)
class _Batch:
    """Whole frames, as received, waiting for a saver's acknowledgement."""

    id: int
    data: bytes | bytearray
    count: int
    redo: bool = False   # a saver that died had it: some of its files may be there
    sent_by: int = 0     # its saver has it whole once its link has sent this many bytes


@dataclass(slots=True, eq=False)
class _Producer:
    """One producer connection, the frames it has half sent, and how many it sent whole."""

    sock: socket.socket
    buf: bytearray
    taken: int = 0   # whole frames received (told the producer in CLOSED)
    filled: int = 0
    big: bytearray | None = None   # one frame larger than ``buf``, being received
    big_filled: int = 0
    # Such a frame's start is in ``buf``, waiting for room for it (see
    # ``Dispatcher._room_for``); the connection is not read meanwhile.
    waiting: bool = False

    def partial(self) -> bool:
        return self.filled > 0 or self.big is not None


@dataclass(slots=True, eq=False)
class _Saver:
    process: Any
    link: DispatcherLink
    inflight: dict[int, _Batch] = field(default_factory=dict)
    progress: float = 0.0    # when it last took bytes or acknowledged (or got work, idle)
    hung: bool = False       # stopped by the logger: no progress for saver_timeout

    def held_bytes(self) -> int:
        return sum(len(batch.data) for batch in self.inflight.values())


# Every saver process of this process's loggers (from before it starts to after it is
# joined), for a forked child to disown them.
_SAVER_PROCESSES: weakref.WeakSet[Any] = weakref.WeakSet()


# Every dispatcher of this process that holds descriptors (from start() to its end),
# for a forked child to close its copies of them.
_DISPATCHERS: weakref.WeakSet[Dispatcher] = weakref.WeakSet()

# Held (by every thread that forks, see _before_fork) from the moment a dispatcher
# makes a descriptor to the moment it is where a forked child finds it (the listener
# in _listener, a producer's connection in _producers, a saver's link in _spawning or
# _savers): a child forked in between would keep a copy nobody closes. Reentrant: a
# fork in a signal handler of a thread that holds it does not wait for itself.
_FORK_LOCK = threading.RLock()


def _close_quietly(fd: int) -> None:
    """Close ``fd`` unless it is -1 (none); one already gone is no error."""
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _before_fork() -> None:
    _FORK_LOCK.acquire()


def _after_fork_in_parent() -> None:
    _FORK_LOCK.release()


def _in_forked_child() -> None:
    """In a child made by ``os.fork`` (a saver too): let go of what belongs to the
    parent's loggers.

    - The parent's savers are not its children. It inherits multiprocess's set of
      them, and at its exit multiprocess would terminate the daemonic ones.
    - Its copies of each dispatcher's descriptors are closed. Kept open, they
      would outlive the parent's process: a listening socket that takes
      connections nobody accepts (a producer's put then waits for ever), and
      the logger's ends of the savers' and producers' connections, whose other
      ends then never see the logger go.
    """
    from multiprocess import process

    global _FORK_LOCK
    _FORK_LOCK = threading.RLock()  # the parent's was held by the forking thread
    for saver_process in list(_SAVER_PROCESSES):
        process._children.discard(saver_process)
    for dispatcher in list(_DISPATCHERS):
        dispatcher._forget()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_in_forked_child)


class Dispatcher:
    """Owns the listening socket, the saver processes and every unsaved package."""

    def __init__(self, *, address: str, directory: str, process_count: int,
                 thread_count: int, queue_size: int, queue_bytes: int,
                 max_restarts: int, saver_timeout: float | None, context: Any) -> None:
        self._address = address
        self._directory = directory
        self._process_count = process_count
        self._thread_count = thread_count
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._restarts_left = max_restarts
        self._context = context
        self._max_inflight = 2 * thread_count + 1
        # A saver's share of the bytes held, so that one that reads nothing (stopped)
        # never holds so much that the logger stops reading producers: the others go on.
        self._max_inflight_bytes = max(1, queue_bytes // (process_count + 1))
        self._saver_timeout = saver_timeout

        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        # Held to write a wake-up and to close the pipe: once the thread has closed it,
        # its descriptor's number may be another file's (a stop() then writes nothing).
        self._wake_lock = threading.Lock()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._producers: dict[int, _Producer] = {}
        self._reading = True
        self._receiving = 0  # bytes of the large frames being received (``_Producer.big``)
        self._waiters = 0  # producers whose large frame waits for room (``_Producer.waiting``)
        self._savers: list[_Saver] = []
        self._spawning: DispatcherLink | None = None  # a saver's link while it starts
        self._saver_pids: list[int] = []
        self._pending: collections.deque[_Batch] = collections.deque()
        self._next_id = 0
        self._stopping = False
        self._drain_deadline = 0.0
        self._broken: str | None = None
        self.failures: list[FailedPackage] = []
        self.crash: BaseException | None = None
        self._stats = dict.fromkeys(LoggerStatistics.__slots__, 0)
        self._thread = threading.Thread(target=self._run, name="data-logger", daemon=True)
        # Set as the thread ends. Waited on instead of Thread.join(), which a Ctrl-C can
        # leave believing a running thread has ended (Python 3.11 releases its lock).
        self._finished = threading.Event()

    # -- the caller's side -------------------------------------------------------------

    def start(self) -> None:
        with _FORK_LOCK:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                try:
                    listener.bind(self._address)
                except OSError as exc:
                    raise _cannot_listen(self._address, exc) from exc
                listener.listen(256)
                listener.setblocking(False)
            except BaseException:
                listener.close()
                self._close_all()  # the wake-up pipe and the selector
                raise
            self._listener = listener
            _DISPATCHERS.add(self)
        self._accept_paused_until: float | None = None  # see _accept
        self._listening = True  # the listener is in the selector
        self._selector.register(listener, selectors.EVENT_READ, (self._accept, None))
        self._selector.register(self._wake_r, selectors.EVENT_READ, (self._woken, None))
        try:
            for _ in range(self._process_count):
                self._spawn()
        except BaseException:
            self._stop_savers()
            self._close_all()
            raise
        try:
            self._thread.start()
        except BaseException:  # no thread (out of threads, say): nothing may stay behind
            self._stop_savers()
            self._close_all()
            raise

    def stop(self) -> None:
        """Ask the thread to save what producers sent so far, then to stop the savers."""
        self._stopping = True
        with self._wake_lock:
            if self._wake_w < 0:  # the thread has ended and closed the pipe
                return
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the thread has done its work; whether it has."""
        return self._finished.wait(timeout)

    def statistics(self) -> LoggerStatistics:
        stats = dict(self._stats)
        stats["producers"] = len(self._producers)
        return LoggerStatistics(**stats)

    @property
    def saver_pids(self) -> tuple[int, ...]:
        """Every saver process ever started (the living ones are the last ones)."""
        return tuple(self._saver_pids)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
            self._stop_savers()
        except BaseException as exc:  # noqa: BLE001 - reported by shutdown, never silent
            self.crash = exc
            self._fail_everything(exc)
            self._stop_savers()
        finally:
            try:
                self._close_all()
            finally:
                self._finished.set()

    def _loop(self) -> None:
        select = self._selector.select
        while True:
            self._set_reading(self._below_bound())
            if self._waiters:
                self._admit_waiting()
            timeout = None
            if self._stopping:
                if self._listener is not None:
                    self._close_listener()
                    self._drain_deadline = time.monotonic() + _DRAIN_GRACE
                    # Before the last reads: a frame sent after them meets CLOSING.
                    closing = notice(Notice.CLOSING)
                    for producer in self._producers.values():
                        self._tell(producer, closing)
                self._drain()
                if not self._producers and not self._pending and not any(
                        s.inflight for s in self._savers):
                    return
                timeout = 0.05
            self._assign()
            stopped, due = self._stop_hung_savers()
            if stopped:
                # Its batches are pending again (or failed): read and assign anew.
                continue
            if due is not None:
                timeout = due if timeout is None else min(timeout, due)
            if self._accept_paused_until is not None:
                left = self._accept_paused_until - time.monotonic()
                if left <= 0:
                    self._resume_accepting()
                else:
                    timeout = left if timeout is None else min(timeout, left)
            for key, _ in select(timeout):
                handler, argument = key.data
                handler(argument)
            self._assign()

    # -- producers -----------------------------------------------------------------------

    def _accept(self, _: object) -> None:
        assert self._listener is not None
        while True:
            producer: _Producer | None = None
            with _FORK_LOCK:  # until the connection is in _producers (see _FORK_LOCK)
                try:
                    sock, _address = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as error:
                    if error.errno not in _NO_ROOM:
                        raise
                else:
                    producer = _Producer(sock, bytearray(_CHUNK))
                    self._producers[sock.fileno()] = producer
            if producer is None:
                # No descriptor for another producer now: the connected ones go on, the
                # new one waits in the backlog; try again in a moment (not at once: the
                # listener stays readable, and the loop would spin).
                if self._listening:
                    self._selector.unregister(self._listener)
                    self._listening = False
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
                return
            sock.setblocking(False)
            if self._reading:
                self._selector.register(sock, selectors.EVENT_READ, (self._receive, producer))
            if self._broken is not None:
                self._tell(producer, self._broken_notice())

    def _below_bound(self) -> bool:
        """Whether the packages and bytes held leave room to read producers."""
        stats = self._stats
        return stats["held"] < self._queue_size and stats["held_bytes"] < self._queue_bytes

    def _set_reading(self, reading: bool) -> None:
        if reading == self._reading:
            return
        self._reading = reading
        for producer in self._producers.values():
            if producer.waiting:  # not read until there is room for its frame
                continue
            if reading:
                self._selector.register(producer.sock, selectors.EVENT_READ,
                                        (self._receive, producer))
            else:
                self._selector.unregister(producer.sock)

    def _receive(self, producer: _Producer) -> bool | None:
        """One read from ``producer``: ``True`` data came, ``False`` none, ``None`` it closed."""
        if producer.sock.fileno() == -1:  # closed earlier in this round of events
            return None
        if producer.waiting:  # its buffer may be full: no read until its frame has room
            return False
        if producer.big is None and not self._below_bound():
            # At the bound: another producer's read in this round of events filled it.
            # (A large frame goes on: its buffer is there already.)
            return False
        if producer.big is not None:
            view = memoryview(producer.big)[producer.big_filled:]
        else:
            view = memoryview(producer.buf)[producer.filled:]
        try:
            count = producer.sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            count = 0
        finally:
            view.release()
        if count == 0:
            self._close_producer(producer)
            return None
        if producer.big is not None:
            producer.big_filled += count
            if producer.big_filled == len(producer.big):
                self._receiving -= len(producer.big)
                self._enqueue(producer.big, 1)
                producer.taken += 1
                producer.big, producer.big_filled = None, 0
        else:
            producer.filled += count
            self._cut(producer)
        return True

    def _cut(self, producer: _Producer) -> None:
        """Move the whole frames at the start of ``producer.buf`` into batches."""
        buf, filled = producer.buf, producer.filled
        unpack = FRAME.unpack_from
        offset = start = count = 0
        length = -1
        with memoryview(buf) as view:
            while filled - offset >= _HEAD:
                length = unpack(buf, offset)[1]
                end = offset + _HEAD + length
                if end > filled:
                    break
                offset, count, length = end, count + 1, -1
                producer.taken += 1
                if count == _BATCH_PACKAGES or offset - start >= _BATCH_BYTES:
                    self._enqueue(bytes(view[start:offset]), count)
                    start, count = offset, 0
            if count:
                self._enqueue(bytes(view[start:offset]), count)
            rest = filled - offset
            if rest and offset:
                buf[:rest] = view[offset:filled]
        producer.filled = rest
        if rest and length >= 0 and _HEAD + length > len(buf):
            # A frame larger than the buffer: received straight into its own, once there
            # is room for it.
            if self._room_for(_HEAD + length):
                self._receive_big(producer, _HEAD + length)
            else:
                producer.waiting = True
                self._waiters += 1
                if self._reading:
                    self._selector.unregister(producer.sock)

    def _room_for(self, size: int) -> bool:
        """Whether a large frame of ``size`` bytes may be received now: while the bound
        allows reading, and it either fits in the bound with what is held and being
        received, or is the only one being received (so the logger holds at most the
        bound and one large frame, however many producers send large frames at once)."""
        if not self._reading:
            return False
        return self._receiving == 0 or \
            self._stats["held_bytes"] + self._receiving + size <= self._queue_bytes

    def _receive_big(self, producer: _Producer, size: int) -> None:
        """Receive ``producer``'s next frame, whose start is in its ``buf``, into its own."""
        big = bytearray(size)
        big[:producer.filled] = memoryview(producer.buf)[:producer.filled]
        producer.big, producer.big_filled, producer.filled = big, producer.filled, 0
        self._receiving += size

    def _admit_waiting(self) -> None:
        """Read again each producer whose large frame waited, as room comes for it."""
        for producer in self._producers.values():
            if not producer.waiting:
                continue
            size = _HEAD + FRAME.unpack_from(producer.buf)[1]
            if not self._room_for(size):
                return  # in the order they connected: the first one waiting goes first
            self._receive_big(producer, size)
            producer.waiting = False
            self._waiters -= 1
            if self._stopping:  # the grace for a frame being sent starts now for this one
                self._drain_deadline = max(self._drain_deadline,
                                           time.monotonic() + _DRAIN_GRACE)
            self._selector.register(producer.sock, selectors.EVENT_READ,
                                    (self._receive, producer))

    def _close_producer(self, producer: _Producer) -> None:
        if producer.partial():
            self._stats["torn"] += 1  # its put never returned: not accepted
        if producer.big is not None:
            self._receiving -= len(producer.big)
        if producer.waiting:
            self._waiters -= 1
        elif self._reading:
            self._selector.unregister(producer.sock)
        del self._producers[producer.sock.fileno()]
        try:
            # shutdown, not only close: forked processes may hold copies of this socket,
            # and the producer must see the end (its next put fails) rather than write
            # into a socket nobody reads.
            producer.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        producer.sock.close()

    def _close_listener(self) -> None:
        assert self._listener is not None
        try:
            os.unlink(self._address)  # first, so that nobody connects any more
        except OSError:
            pass
        # A producer whose connection waits in the backlog may have put a package
        # already (its put returns once the bytes are in the socket): take it in.
        self._accept(None)
        # Out of descriptors: those connections' puts returned, so wait for room a while.
        deadline = time.monotonic() + _DRAIN_GRACE
        while self._accept_paused_until is not None and time.monotonic() < deadline:
            time.sleep(_ACCEPT_PAUSE)
            self._accept_paused_until = None
            self._accept(None)
        if self._listening:
            self._selector.unregister(self._listener)
            self._listening = False
        self._accept_paused_until = None
        self._listener.close()
        self._listener = None

    def _resume_accepting(self) -> None:
        self._accept_paused_until = None
        if self._listener is not None and not self._listening:
            self._selector.register(self._listener, selectors.EVENT_READ, (self._accept, None))
            self._listening = True
        if self._listener is not None:
            self._accept(None)

    def _drain(self) -> None:
        """At shutdown: read each producer until it has nothing more, then end it."""
        for producer in list(self._producers.values()):
            # one whose large frame waits for room is read once the room is there
            while not producer.waiting and self._below_bound():
                got = self._receive(producer)
                if got is None:
                    break
                if got is False:
                    if not producer.partial() or time.monotonic() > self._drain_deadline:
                        self._tell(producer, notice(Notice.CLOSED, TAKEN.pack(producer.taken)))
                        self._close_producer(producer)
                    break

    def _tell(self, producer: _Producer, message: bytes) -> None:
        """Write a notice to ``producer`` (it reads notices in its next put)."""
        try:
            # Whole or not at all: a connection gets at most three notices (BROKEN,
            # CLOSING, CLOSED; about 4 KiB), far below its socket's buffer.
            producer.sock.send(message)
        except OSError:
            pass  # the producer is gone; the next read of its socket says so

    def _broken_notice(self) -> bytes:
        assert self._broken is not None
        return notice(Notice.BROKEN, self._broken.encode("utf-8")[:_NOTICE_BYTES])

    # -- batches and savers --------------------------------------------------------------

    def _enqueue(self, data: bytes | bytearray, count: int) -> None:
        self._pending.append(_Batch(self._next_id, data, count))
        self._next_id += 1
        stats = self._stats
        stats["received"] += count
        stats["held"] += count
        stats["held_bytes"] += len(data)

    def _assign(self) -> None:
        if self._pending and not self._savers:
            self._fail_everything(SaverLostError(
                "every saver process died and the logger restarts no more savers"))
        while self._pending:
            size = len(self._pending[0].data)
            savers = [s for s in self._savers if not s.inflight or (
                len(s.inflight) < self._max_inflight
                and s.held_bytes() + size <= self._max_inflight_bytes)]
            if not savers:
                return
            saver = min(savers, key=lambda s: (len(s.inflight), s.held_bytes()))
            batch = self._pending.popleft()
            if not saver.inflight:
                saver.progress = time.monotonic()  # its clock starts with work in hand
            saver.inflight[batch.id] = batch
            batch.sent_by = saver.link.post(Kind.REDO if batch.redo else Kind.WORK, batch.id,
                                            batch.data)
            self._send(saver)

    def _send(self, saver: _Saver) -> None:
        """Send ``saver`` what its link has room for; watch the link for room while
        bytes wait (never block on one saver: the others, and the producers, go on)."""
        try:
            if saver.link.flush():
                saver.progress = time.monotonic()
        except OSError:
            self._lost(saver)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if saver.link.waiting else 0)
        key = self._selector.get_key(saver.link.fileno())
        if key.events != events:
            self._selector.modify(key.fileobj, events, key.data)

    def _stop_hung_savers(self) -> tuple[bool, float | None]:
        """Stop each saver that holds work and made no progress for ``saver_timeout``
        (its batches go to the others, as a dead saver's do). Whether one was stopped,
        and how long until the next saver could be due (``None``: none holds work)."""
        if self._saver_timeout is None:
            return False, None
        now = time.monotonic()
        due: float | None = None
        stopped = False
        for saver in list(self._savers):
            if not saver.inflight:
                continue
            left = saver.progress + self._saver_timeout - now
            if left > 0:
                due = left if due is None else min(due, left)
                continue
            # Read what it sent first: the logger's own thread may have been held up
            # (a call that kept the GIL, the whole process paused) while it worked.
            self._link_ready(saver)
            if saver not in self._savers or \
                    saver.progress + self._saver_timeout > time.monotonic():
                continue
            saver.hung = True
            saver.process.kill()
            self._lost(saver)
            stopped = True
        return stopped, due

    def _spawn(self) -> None:
        # The saver is forked: it closes its copies of this dispatcher's descriptors,
        # this link's end included, at once (see _in_forked_child). So does any other
        # child forked meanwhile: the link's end is in _spawning until it is in _savers.
        with _FORK_LOCK:
            parent_end, child_end = socket.socketpair()
            parent, child = DispatcherLink(parent_end), SaverLink(child_end)
            self._spawning = parent
        process = self._context.Process(
            target=run_saver, name=f"data-logger-saver-{len(self._saver_pids)}", daemon=True,
            args=(child, self._directory, self._thread_count))
        _SAVER_PROCESSES.add(process)  # before start(): a fork meanwhile disowns it too
        try:
            process.start()
        except BaseException:
            with _FORK_LOCK:
                self._spawning = None
            parent.close()
            raise
        finally:
            child.close()
        saver = _Saver(process, parent)
        with _FORK_LOCK:
            self._savers.append(saver)
            self._spawning = None
        self._saver_pids.append(process.pid)
        self._selector.register(parent.fileno(), selectors.EVENT_READ, (self._link_ready, saver))
        self._selector.register(process.sentinel, selectors.EVENT_READ, (self._lost, saver))

    def _link_ready(self, saver: _Saver) -> None:
        """``saver``'s link has room for what waits to be sent, or acknowledgements."""
        if saver not in self._savers:
            return
        if saver.link.waiting:
            self._send(saver)
            if saver not in self._savers:
                return
        try:
            messages = saver.link.messages()
        except EOFError:
            self._lost(saver)
            return
        if messages:
            saver.progress = time.monotonic()
        for kind, _, body in messages:
            if kind is not Kind.ACK:  # pragma: no cover - savers send nothing else
                raise RuntimeError(f"a saver sent {kind!r}, not an acknowledgement")
            ack: Ack = pickle.loads(body)
            batch = saver.inflight.pop(ack.batch, None)
            if batch is not None:
                self._settle(batch, ack)

    def _settle(self, batch: _Batch, ack: Ack) -> None:
        stats = self._stats
        stats["held"] -= batch.count
        stats["held_bytes"] -= len(batch.data)
        stats["saved"] += batch.count - len(ack.failures)
        if not ack.failures:
            return
        view = memoryview(batch.data)
        for failure in ack.failures:
            stamp, length, source = FRAME.unpack_from(view, failure.offset)
            start = failure.offset + _HEAD
            error = failure.error
            error.__cause__ = RemoteTraceback(f'\n"""\n{failure.traceback}"""')
            package = LogPackage(source, stamp, _array(view[start:start + length]))
            self._failed(FailedPackage(source, stamp, failure.path, error, package))

    def _failed(self, failed: FailedPackage) -> None:
        self.failures.append(failed)
        if self._broken is None:
            self._broken = (f"the data logger could not save {failed.describe()}; "
                            "DataLogger.shutdown() reports every such package")
            message = self._broken_notice()
            for producer in self._producers.values():
                self._tell(producer, message)
        # Counted once the producers were told: whoever sees the failure in the
        # statistics finds the notice in the next put of every producer.
        self._stats["failed"] += 1

    def _lost(self, saver: _Saver) -> None:
        """A saver died: its unacknowledged batches go back, first in line."""
        if saver not in self._savers:
            return
        self._savers.remove(saver)
        self._selector.unregister(saver.link.fileno())
        self._selector.unregister(saver.process.sentinel)
        saver.process.join(1.0)
        if saver.process.is_alive():
            saver.process.kill()
            saver.process.join()
        saver.link.close()
        for batch in saver.inflight.values():
            # Only a batch it received whole may have files in place already (a saver
            # reads a batch to its end before writing any of it).
            batch.redo = batch.redo or saver.link.sent >= batch.sent_by
        self._pending.extendleft(sorted(saver.inflight.values(), key=lambda b: -b.id))
        saver.inflight.clear()
        try:
            if self._restarts_left > 0:
                self._restarts_left -= 1
                self._spawn()
            elif not self._savers:
                what = (f"made no progress for {self._saver_timeout:g} s and was stopped"
                        if saver.hung else f"died (exit code {saver.process.exitcode})")
                self._fail_everything(SaverLostError(
                    f"saver process {saver.process.pid} {what}, and the logger restarts "
                    "no more savers"))
        finally:
            self._stats["savers_lost"] += 1  # counted once the replacement is there

    def _fail_everything(self, error: BaseException) -> None:
        """Report every package still held as failed with ``error``."""
        batches = list(self._pending)
        for saver in self._savers:
            batches.extend(saver.inflight.values())
            saver.inflight.clear()
        self._pending.clear()
        for batch in batches:
            view = memoryview(batch.data)
            for offset, source, stamp, start, end in frames(view):
                path = os.path.join(self._directory, file_name(source, stamp))
                package = LogPackage(source, stamp, _array(view[start:end]))
                self._failed(FailedPackage(source, stamp, path, error, package))
            self._stats["held"] -= batch.count
            self._stats["held_bytes"] -= len(batch.data)

    def _woken(self, _: object) -> None:
        try:
            os.read(self._wake_r, 4096)
        except OSError:
            pass

    def _stop_savers(self) -> None:
        for saver in self._savers:
            saver.link.post(Kind.STOP, 0)
            try:
                saver.link.flush()  # a saver that takes no bytes is killed after the grace
            except OSError:
                pass
        deadline = time.monotonic() + _STOP_GRACE
        for saver in self._savers:
            saver.process.join(max(0.0, deadline - time.monotonic()))
            if saver.process.is_alive():
                saver.process.kill()
                saver.process.join()
            saver.link.close()
        self._savers.clear()

    def _forget(self) -> None:
        """In a forked child, on its copy of this dispatcher (whose thread did not come
        along): close the copies of the descriptors the logger's process owns, so
        that they end with that process (see :func:`_in_forked_child`)."""
        socks = [producer.sock for producer in self._producers.values()]
        socks += [saver.link.sock for saver in self._savers]
        if self._spawning is not None:
            socks.append(self._spawning.sock)
        if self._listener is not None:
            socks.append(self._listener)
        for fd in [sock.detach() for sock in socks] + [self._wake_r, self._wake_w]:
            _close_quietly(fd)  # detached: the objects no longer own them, closed once
        self._wake_r = self._wake_w = -1  # a stop() here writes nothing
        self._producers, self._savers, self._listener, self._spawning = {}, [], None, None

    def _close_all(self) -> None:
        _DISPATCHERS.discard(self)
        if self._listener is not None:
            self._close_listener()
        for producer in list(self._producers.values()):
            self._close_producer(producer)
        self._selector.close()
        with self._wake_lock:
            for fd in (self._wake_r, self._wake_w):
                _close_quietly(fd)
            self._wake_r = self._wake_w = -1


