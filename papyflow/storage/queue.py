r"""Many processes storing through one writer process.

::

    sender process 0 --request pipe 0--\                      +------------------+
    sender process 1 --request pipe 1---+--> queue writer --> | storage service  |
         ...                           /    (one process)     |  (the HDF5 file) |
    sender process n --request pipe n-/                       +------------------+
          ^                                  |
          +--- reply pipe k (failures) ------+   shared memory: acked[k], failures[k],
                                                 pids[k], broken[k], writer pid and state

A :class:`StorageQueue` is made by the parent before the processes start, for a
known number of senders. Each sender gets its own *slot*: a request pipe, a
reply pipe and its cells in shared memory. One pipe per sender, and not one
``multiprocessing.Queue`` for all, because a process killed in the middle of
a ``put`` leaves a shared queue with a torn message and its lock held, which
stops every other sender and the writer; a torn message in a slot's own pipe
costs only that slot.

**Frames.** Everything that crosses a pipe is a frame: a header (a magic
number, the frame's number in its pipe, 1, 2, ..., and the body's size) and a
pickled record. A reader that finds another magic or number knows the pipe
is garbled and gives up that pipe only. A :class:`_Request` carries its data
pickled apart (``payload``), which the writer unpickles request by request:
data that do not unpickle in the writer fail that request only.

**Senders** (:class:`QueueStorageServiceSender`) frame each ``store`` call as a
:class:`_Request` (numbered ``seq`` = 1, 2, ... per slot) and write it to their
pipe without waiting; ``send_done`` sends :class:`_Done` and waits until the
writer has acknowledged everything. Before each call a sender checks its
``failures`` cell and raises the writer's error (:class:`WriterError`) when
there is one; while it waits (for room in its pipe, for an acknowledgement, for
the report of a failure) it checks that the writer process is alive and
raises :class:`WriterLostError` when it is not, or when it waited its
``timeout``. Before the writer runs, its process is known only when the parent
said which it is (:meth:`StorageQueue.watch_writer`); a sender waits at most
its ``start_timeout`` for a writer that has not started. A sender that gives up in the middle of writing a frame (its
timeout, an interrupt) has torn its pipe: it marks its slot ``broken``, and
every later call raises :class:`WriterLostError` saying so.

**The writer** (:class:`QueueStorageServiceWriter`) reads whatever every pipe
holds and stores the requests in order; when no request is waiting, or
``flush_interval`` has passed, it flushes the file and only then writes
``acked[k]`` = the last ``seq`` of slot ``k`` it processed. A
request that failed is acknowledged too, after its :class:`_Failure` was
counted in ``failures[k]`` and queued for the reply pipe: an acknowledged
request is either in the file (as of the flush) or reported to its sender.
The writer stops when every slot said done (and was sent its failure reports:
it waits up to ``reply_timeout`` for a sender to make room for them) or is
*lost*: its process (``pids[k]``, set by the sender on first use or by the
parent with :meth:`StorageQueue.watch`) died, it never showed up within
``start_timeout`` seconds, or its pipe is broken or garbled. What a lost
sender had fully written to its pipe is still stored; a torn last message is
dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import multiprocessing.connection
import numbers
import os
import pickle
import select
import struct
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from .._processes import alive
from . import pypetconstants as pc
from .errors import (
    NoSuchServiceError,
    RemoteTraceback,
    UnsupportedDataError,
    WriterError,
    WriterLostError,
)
from .hdf5 import HDF5StorageService

__all__ = ["FLUSHING", "STORING", "WAITING", "QueueStorageServiceSender",
           "QueueStorageServiceWriter", "StorageQueue", "WriterReport"]

_MAGIC = b"pfQ\x01"
_HEADER = struct.Struct("<4sqQ")  # magic, the frame's number in its pipe, the body's size
_POLL = 0.1
_CHUNK = 1 << 20
_NOT_STARTED, _RUNNING, _FINISHED, _BROKEN = 0, 1, 2, 3
_TORN, _GARBLED = 1, 2  # broken[k]: the sender tore its pipe; the writer found it garbled
WAITING, STORING, FLUSHING = 0, 1, 2
"""What the writer is doing (``StorageQueue.writer_phase``): a writer killed while
``FLUSHING`` may leave a file HDF5 cannot open; see the HDF5 service's notes."""


# -- what crosses the pipes ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    """One ``store`` call of a sender; ``payload`` is its pickled ``(stuff, args, kwargs)``."""

    seq: int
    msg: str
    payload: bytes

    @classmethod
    def of(cls, seq: int, msg: str, stuff: Any, args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> _Request:
        return cls(seq, msg, pickle.dumps((stuff, args, kwargs),
                                          protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        """``(stuff, args, kwargs)``.

        Raises:
            UnsupportedDataError: the data do not unpickle here.
        """
        try:
            stuff, args, kwargs = pickle.loads(self.payload)
        except Exception as exc:
            raise UnsupportedDataError(
                f"the data of message #{self.seq} ({self.msg}) do not unpickle in the queue "
                f"writer: {type(exc).__name__}: {exc}") from exc
        return stuff, args, kwargs


@dataclasses.dataclass(frozen=True, slots=True)
class _Done:
    """The sender will send nothing more; ``last_seq`` is its last request."""

    last_seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Failure:
    """The writer could not store request ``seq`` (-1: the writer itself failed).

    ``exception`` is the pickled exception (``None`` when it does not pickle),
    ``text`` its one-line description, ``tb`` its formatted traceback.
    """

    seq: int
    msg: str
    exception: bytes | None
    text: str
    tb: str

    @classmethod
    def of(cls, seq: int, msg: str, exc: BaseException) -> _Failure:
        blob: bytes | None
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - an exception that does not travel: its text does
            blob = None
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(seq, msg, blob, f"{type(exc).__name__}: {exc}", tb[-30000:])

    def error(self) -> WriterError:
        """The exception the sender raises: ``WriterLostError`` when the writer itself
        failed (``seq`` -1), else ``WriterError``."""
        exc = None
        if self.exception is not None:
            with contextlib.suppress(Exception):  # it unpickled in the writer, maybe not here
                exc = pickle.loads(self.exception)
        if exc is not None:
            exc.__cause__ = RemoteTraceback(self.tb)
        what = (f"the queue writer failed on message #{self.seq} ({self.msg})"
                if self.seq >= 0 else "the queue writer stopped")
        kind = WriterLostError if self.seq < 0 else WriterError
        error = kind(f"{what}: {self.text}", exception=exc, message=self.msg, seq=self.seq)
        error.__cause__ = exc if exc is not None else RemoteTraceback(self.tb)
        return error


def _frame(number: int, item: Any) -> bytes:
    """Frame ``item`` as frame ``number`` of its pipe."""
    body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(_MAGIC, number, len(body)) + body


def _ready(fd: int, event: int, timeout: float) -> bool:
    """Whether ``fd`` is ready for ``event`` (``select.POLLIN``, ``POLLOUT``) within
    ``timeout`` seconds (poll, not select: a process may hold fds past 1024)."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(timeout * 1000))


class _Garbled(Exception):
    """A pipe holds something else than the next frame."""


def _header(buffer: bytearray, number: int, start: int = 0) -> int:
    """The body size of frame ``number``, whose header is at ``start`` in ``buffer``."""
    magic, found, size = _HEADER.unpack_from(buffer, start)
    if magic != _MAGIC or found != number:
        raise _Garbled(f"expected frame #{number}, found the header "
                       f"{bytes(buffer[start:start + _HEADER.size])!r}")
    return int(size)


def _record(data: Any, kinds: tuple[type, ...], what: str) -> Any:
    """Unpickle one of our own records, which must be one of ``kinds``; ``_Garbled``
    (naming ``what``) for anything else, since only garbage fails here."""
    try:
        item = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - our own records: only garbage fails
        raise _Garbled(f"{what} does not unpickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(item, kinds):
        raise _Garbled(f"{what} holds a {type(item).__name__}")
    return item


def _unframe(buffer: bytearray, number: int, kinds: tuple[type, ...],
             ) -> tuple[list[Any], str | None]:
    """Take the complete frames out of ``buffer``, numbered from ``number + 1`` on, each
    one of ``kinds``; a torn last one stays. Also returns why the rest of the buffer
    is garbled (then the buffer is emptied), or ``None``."""
    items: list[Any] = []
    start = 0
    try:
        while len(buffer) - start >= _HEADER.size:
            size = _header(buffer, number + len(items) + 1, start)
            end = start + _HEADER.size + size
            if end > len(buffer):
                break
            items.append(_record(memoryview(buffer)[start + _HEADER.size:end], kinds,
                                 f"frame #{number + len(items) + 1}"))
            start = end
    except _Garbled as garbled:
        buffer.clear()
        return items, str(garbled)
    del buffer[:start]
    return items, None


def _seconds(where: str, name: str, value: Any, *, none: bool = True) -> float | None:
    """``value``, checked to be a number of seconds above 0 (or ``None``, when ``none``;
    0 too when it is not: a flush interval of 0 flushes after every request)."""
    if value is None and none:
        return None
    seconds = float(value) if isinstance(value, numbers.Real) and \
        not isinstance(value, bool) else math.nan
    if not (0 < seconds if none else 0 <= seconds) or not seconds < math.inf:
        allowed = "above 0 or None" if none else "of 0 or more"
        raise ValueError(f"{where}: {name} must be a number of seconds {allowed}, "
                         f"got {value!r}")
    return seconds


# -- the channel -----------------------------------------------------------------------------


class StorageQueue:
    """The pipes and shared cells between ``senders`` senders and one writer.

    Make it in the parent before starting the processes, and hand each process
    its sender (:meth:`sender`) and the writer its queue when they start (it
    holds pipes and shared memory, which travel only that way).
    ``ctx`` is a ``multiprocessing`` context (the default one when ``None``).
    """

    def __init__(self, senders: int, ctx: Any = None) -> None:
        given: Any = senders  # numpy ints too: not int to the type checker
        if isinstance(given, bool) or not isinstance(given, numbers.Integral) or \
                int(given) < 1:
            raise ValueError(f"a StorageQueue needs a number of senders (an int of at least "
                             f"1), got {senders!r}")
        senders = int(given)
        ctx = ctx or multiprocessing.get_context()
        self.n = senders
        self._requests = [ctx.Pipe(duplex=False) for _ in range(senders)]
        self._replies = [ctx.Pipe(duplex=False) for _ in range(senders)]
        self.acked = ctx.Array("q", senders, lock=False)
        self.failures = ctx.Array("q", senders, lock=False)
        self.pids = ctx.Array("q", senders, lock=False)
        self.broken = ctx.Array("b", senders, lock=False)
        """Per slot: 0, or why its pipe is unusable (torn by its sender, garbled)."""
        self.writer_pid = ctx.Value("q", 0, lock=False)
        self.writer_state = ctx.Value("b", _NOT_STARTED, lock=False)
        self.writer_phase = ctx.Value("b", WAITING, lock=False)

    def __getstate__(self) -> dict[str, Any]:
        # Pipes and shared cells travel only to a process being started: say so, rather
        # than let pickle fail on a ctypes class (a NuMap worker, a queue, a file...).
        if not _spawning():
            raise TypeError(
                "a StorageQueue (and its senders) can be given to a process only as it "
                "starts (Process(args=...)): its pipes and shared memory cannot be pickled "
                "for anything else, such as a NuMap worker or a queue; store from a process "
                "that got its sender so, or from the parent (a linear Piper that reads the "
                "results)")
        return self.__dict__

    def sender(self, slot: int, *, timeout: float | None = None,
               start_timeout: float | None = 60.0) -> QueueStorageServiceSender:
        """The sender of slot ``slot`` (0 ... ``senders - 1``), for one process (see
        :class:`QueueStorageServiceSender` for the timeouts)."""
        slot = self._slot(slot)
        return QueueStorageServiceSender(self, slot, timeout, start_timeout=start_timeout)

    def _slot(self, slot: Any) -> int:
        if isinstance(slot, bool) or not isinstance(slot, numbers.Integral):
            raise TypeError(f"slot must be an int, got {slot!r}")
        number = int(slot)
        if not 0 <= number < self.n:
            raise IndexError(f"slot {slot} out of 0..{self.n - 1}")
        return number

    @staticmethod
    def _pid(where: str, pid: Any) -> int:
        if isinstance(pid, bool) or not isinstance(pid, numbers.Integral) or int(pid) <= 0:
            raise ValueError(f"{where}: pid must be a process id (an int above 0), "
                             f"got {pid!r}")
        return int(pid)

    def watch_writer(self, pid: int) -> None:
        """Tell the senders that process ``pid`` is the writer's, once it started: a
        sender then notices it dying even before it runs the writer (a writer process
        that fails while it opens its storage, say), and waits for it while it lives
        (``start_timeout`` is for a writer nobody named)."""
        pid = self._pid("watch_writer", pid)
        if self.writer_state.value == _NOT_STARTED:
            self.writer_pid.value = pid

    def watch(self, slot: int, pid: int) -> None:
        """Tell the writer that process ``pid`` sends on ``slot`` (so that it notices
        the process dying even before it sent anything)."""
        self.pids[self._slot(slot)] = self._pid("watch", pid)

    def close(self) -> None:
        """Close this process's ends of every pipe."""
        for pair in (*self._requests, *self._replies):
            for end in pair:
                end.close()


def _spawning() -> bool:
    """Whether this pickling is for a process being started (``multiprocessing`` or
    ``multiprocess``, whichever context made it)."""
    import sys

    for name in ("multiprocessing.context", "multiprocess.context"):
        module = sys.modules.get(name)
        if module is not None and module.get_spawning_popen() is not None:
            return True
    return False


# -- the sender ----------------------------------------------------------------------------


class QueueStorageServiceSender:
    """Stands in for the storage service in a worker process: ``store`` calls go to
    the writer. Loading is not supported.

    ``timeout`` bounds each wait (for room in the pipe, for acknowledgements, for
    the report of a failure): ``None`` waits as long as the writer lives.
    ``start_timeout`` bounds such a wait while no writer has started (its
    ``run()`` not called yet) and the parent did not name its process
    (:meth:`StorageQueue.watch_writer`; a named one is waited for while it
    lives): ``None`` waits for ever.
    A ``store`` that times out in the middle of a message leaves its slot
    unusable (the pipe holds a torn message): every later call raises
    :class:`WriterLostError`.
    """

    def __init__(self, queue: StorageQueue, slot: int, timeout: float | None = None, *,
                 start_timeout: float | None = 60.0) -> None:
        self.queue = queue
        self.slot = slot
        self.timeout = _seconds("QueueStorageServiceSender", "timeout", timeout)
        self.start_timeout = _seconds("QueueStorageServiceSender", "start_timeout",
                                      start_timeout)
        self._seq = 0
        self._frames = 0  # frames written to the request pipe
        self._failures_seen = 0
        self._torn = ""  # how this sender tore its pipe, when it did
        self._done = False  # send_done() sent its message: the writer reads no more
        self._pid = 0
        self._lock = threading.Lock()
        self._replies = bytearray()  # what was read of the reply pipe and not yet raised

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("queue", "slot", "timeout", "start_timeout",
                                               "_seq", "_frames", "_failures_seen", "_torn",
                                               "_done")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = 0
        self._lock = threading.Lock()
        self._replies = bytearray()

    @property
    def sent(self) -> int:
        """How many requests this sender sent."""
        return self._seq

    @property
    def acknowledged(self) -> int:
        """How many of them the writer processed (stored and flushed, or reported)."""
        return int(self.queue.acked[self.slot])

    def _attach(self) -> None:
        if self._pid != os.getpid():  # first use in this process (after a fork, too)
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self.queue.pids[self.slot] = self._pid
            os.set_blocking(self._request_end.fileno(), False)
            # Never block on a report: a writer that is gone would leave us waiting for ever.
            os.set_blocking(self._reply_end.fileno(), False)

    @property
    def _request_end(self) -> multiprocessing.connection.Connection:
        return self.queue._requests[self.slot][1]

    @property
    def _reply_end(self) -> multiprocessing.connection.Connection:
        return self.queue._replies[self.slot][0]

    def _check_usable(self) -> None:
        broken = self.queue.broken[self.slot]
        if broken:
            why = self._torn or ("a sender of this slot gave up in the middle of a message"
                                 if broken == _TORN else
                                 "the queue writer found its pipe garbled and gave it up")
            raise WriterLostError(f"slot {self.slot} is unusable: {why}")

    def _check(self) -> None:
        """Raise the writer's next unreported failure of this slot, if any."""
        self._check_usable()
        if self.queue.failures[self.slot] > self._failures_seen:
            failure = self._read_failure()
            self._failures_seen += 1
            raise failure.error()
        if self.queue.writer_state.value == _BROKEN:
            raise WriterLostError("the queue writer stopped with an error")

    def _read_failure(self) -> _Failure:
        """The next failure report; the writer counted it, so it is in the pipe or on its
        way. What was read stays buffered when waiting fails."""
        number = self._failures_seen + 1
        began = time.monotonic()
        self._fill(_HEADER.size, number, began)
        try:
            size = _header(self._replies, number)
        except _Garbled as garbled:
            raise WriterLostError(f"the queue writer's reply pipe is garbled: {garbled}") \
                from None
        self._fill(_HEADER.size + size, number, began)
        body = bytes(self._replies[_HEADER.size:_HEADER.size + size])
        del self._replies[:_HEADER.size + size]
        try:
            failure: _Failure = _record(body, (_Failure,), f"the queue writer's reply #{number}")
        except _Garbled as garbled:
            raise WriterLostError(str(garbled)) from None
        return failure

    def _fill(self, size: int, number: int, began: float) -> None:
        """Read the reply pipe until ``size`` bytes are buffered."""
        fd = self._reply_end.fileno()
        while len(self._replies) < size:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:  # counted before written: it is on its way
                chunk = None
            if chunk:
                self._replies += chunk
                continue
            if chunk == b"":
                raise WriterLostError("the queue writer's reply pipe closed")
            # The writer writes a report before it stops: once it stopped, what is not
            # in the pipe will not come.
            if self._writer_lost() and not _ready(fd, select.POLLIN, 0):
                raise WriterLostError(
                    f"the queue writer stopped before it delivered failure report #{number} "
                    f"of slot {self.slot} (it waits reply_timeout seconds for a sender to "
                    "read its reports)")
            if self.timeout is not None and time.monotonic() - began > self.timeout:
                raise WriterLostError(f"waited {self.timeout} s for failure report #{number} "
                                      "of the queue writer")
            _ready(fd, select.POLLIN, _POLL)

    def _writer_lost(self) -> bool:
        state = self.queue.writer_state.value
        pid = self.queue.writer_pid.value
        if state == _NOT_STARTED:  # gone only if the parent said which process it is
            return pid != 0 and not alive(pid)
        return state != _RUNNING or not alive(pid)

    def _waited_too_long(self, began: float) -> None:
        if self._writer_lost():
            self._check()  # a failure that explains it comes first
            never = self.queue.writer_state.value == _NOT_STARTED
            raise WriterLostError(
                f"the queue writer is gone{' before it started' if never else ''}: "
                f"{self.acknowledged} of {self._seq} requests of slot {self.slot} were "
                "acknowledged")
        waited = time.monotonic() - began
        if self.queue.writer_state.value == _NOT_STARTED and self.queue.writer_pid.value == 0 \
                and self.start_timeout is not None and waited > self.start_timeout:
            raise WriterLostError(
                f"no queue writer started in {self.start_timeout} s (start_timeout): no "
                f"QueueStorageServiceWriter.run() on this queue; {self._seq} requests of slot "
                f"{self.slot} wait unacknowledged")
        if self.timeout is not None and time.monotonic() - began > self.timeout:
            raise WriterLostError(f"waited {self.timeout} s for the queue writer")

    def _send(self, item: _Request | _Done) -> None:
        """Write ``item`` as the next frame; a frame left half-written breaks the slot."""
        self._check_usable()
        whole = _frame(self._frames + 1, item)
        frame = memoryview(whole)
        fd = self._request_end.fileno()
        began = time.monotonic()
        try:
            while frame:
                try:
                    frame = frame[os.write(fd, frame):]
                    began = time.monotonic()  # the timeout bounds a wait for room
                except BlockingIOError:
                    _ready(fd, select.POLLOUT, _POLL)
                    self._waited_too_long(began)
        except BaseException as exc:
            if len(frame) == len(whole):
                raise  # nothing of it went out: the pipe is as it was
            # The pipe holds a torn frame, which nothing can follow: the slot is done for.
            what = "a request" if isinstance(item, _Request) else "its done message"
            self._torn = (f"a store gave up after writing {len(whole) - len(frame)} of "
                          f"{len(whole)} bytes of {what} ({type(exc).__name__}: {exc})")
            self.queue.broken[self.slot] = _TORN
            if isinstance(exc, WriterError):
                raise WriterLostError(f"{exc}; slot {self.slot} is unusable now: its pipe "
                                      "holds a torn message") from exc
            raise
        self._frames += 1

    def store(self, msg: str, stuff_to_store: Any, *args: Any, **kwargs: Any) -> None:
        """Send a store request to the writer and return at once.

        Raises:
            NoSuchServiceError: ``msg`` is not a store message.
            WriterError: an earlier request of this sender failed in the writer, or
                this sender said it is done (``send_done``), so nothing more of it
                would be stored.
            WriterLostError: the writer is gone, or this sender's slot is unusable.
        """
        if not isinstance(msg, str) or msg not in pc.STORE_MESSAGES:
            raise NoSuchServiceError(f"store: no such message {msg!r}")
        with self._lock:
            if self._done:
                raise WriterError(f"store: sender {self.slot} said it is done (send_done()); "
                                  f"the writer stores nothing more of it", message=msg)
            self._attach()
            self._check()
            # Data that do not pickle raise here, before anything is sent.
            request = _Request.of(self._seq + 1, msg, stuff_to_store, args, kwargs)
            self._send(request)
            self._seq = request.seq

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: a sender only stores."""
        raise NoSuchServiceError("the queue sender cannot load; load from the file")

    def wait_acknowledged(self) -> None:
        """Wait until the writer processed everything sent; raise its failures."""
        with self._lock:
            self._attach()
            began = time.monotonic()
            while True:
                # The writer counts a failure before it acknowledges the request: look at
                # the acknowledgement first, then at the failures.
                acknowledged = self.acknowledged
                self._check()
                if acknowledged >= self._seq:
                    return
                time.sleep(0.001 if time.monotonic() - began < 0.05 else _POLL / 4)
                if self.acknowledged < self._seq:
                    self._waited_too_long(began)

    def send_done(self) -> None:
        """Tell the writer this sender is done and wait until it processed everything.

        Raises:
            WriterError: a request of this sender failed in the writer (the first
                one not yet raised).
            WriterLostError: the writer died before acknowledging everything, or this
                sender's slot is unusable.
        """
        with self._lock:
            self._attach()
            if not self._done:
                self._send(_Done(self._seq))
                self._done = True
        self.wait_acknowledged()


# -- the writer ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WriterReport:
    """What :meth:`QueueStorageServiceWriter.run` did: requests ``stored`` and
    ``failed``, the slots that said ``done`` and those ``lost`` (their process died
    or never came, or their pipe broke)."""

    stored: int
    failed: int
    done: tuple[int, ...]
    lost: tuple[int, ...]


@dataclasses.dataclass(slots=True)
class _Slot:
    index: int
    connection: multiprocessing.connection.Connection
    reply_fd: int
    buffer: bytearray = dataclasses.field(default_factory=bytearray)
    frames: int = 0  # frames taken from the request pipe
    last_seq: int = 0
    flushed_seq: int = 0
    done_at: int | None = None
    backlog: list[bytes] = dataclasses.field(default_factory=list)  # reports to write
    stalled: float | None = None  # when the backlog last moved, while it waits for room
    garbled: str = ""  # why the request pipe cannot be read on, when it cannot


class QueueStorageServiceWriter:
    """Takes the requests of every sender of ``queue`` and stores them with
    ``storage_service`` until every sender is done or lost.

    ``start_timeout``: how long a slot whose process is unknown (no request yet,
    not watched) may stay silent before it is given up (``None``: forever).
    ``flush_interval``: while requests keep coming, the file is flushed (and the
    requests acknowledged) at least this often, in seconds; it is flushed at
    once whenever no request is waiting.
    ``reply_timeout``: a sender that said done is given its failure reports
    before the writer lets it go; when its reply pipe stays full this long (its
    process lives but does not read), the rest are dropped and the sender raises
    :class:`WriterLostError` when it comes to them (``None``: wait as long as the
    sender lives).
    """

    def __init__(self, storage_service: Any, queue: StorageQueue, *,
                 start_timeout: float | None = 60.0, flush_interval: float = 0.02,
                 reply_timeout: float | None = 30.0) -> None:
        if not isinstance(queue, StorageQueue):
            raise TypeError(f"QueueStorageServiceWriter: queue must be a StorageQueue, got "
                            f"{type(queue).__name__}")
        self.storage_service = storage_service
        self.queue = queue
        where = "QueueStorageServiceWriter"
        self.start_timeout = _seconds(where, "start_timeout", start_timeout)
        _seconds(where, "flush_interval", flush_interval, none=False)
        self.flush_interval = flush_interval
        self.reply_timeout = _seconds(where, "reply_timeout", reply_timeout)
        self.stored = 0
        self.failed = 0

    def run(self) -> WriterReport:
        """Serve the senders; returns what happened.

        Raises what opening the storage raised (the senders get it as
        :class:`WriterLostError`), and ``RuntimeError`` when the queue was served
        already: a queue has one writer, which runs once (its senders said done or
        were lost; a writer run again would wait for them for ever).
        """
        queue = self.queue
        if queue.writer_state.value != _NOT_STARTED:
            raise RuntimeError("QueueStorageServiceWriter.run: this StorageQueue has had its "
                               "writer already (a queue is served once, by one writer); "
                               "make a new StorageQueue for new senders")
        queue.writer_pid.value = os.getpid()
        queue.writer_state.value = _RUNNING
        slots = {k: _Slot(k, queue._requests[k][0], queue._replies[k][1].fileno())
                 for k in range(queue.n)}
        for slot in slots.values():
            os.set_blocking(slot.connection.fileno(), False)
            os.set_blocking(slot.reply_fd, False)
        try:
            with self._session():
                report = self._serve(slots)
        except BaseException as exc:
            failure = _Failure.of(-1, "", exc)
            for slot in slots.values():
                with contextlib.suppress(OSError):
                    self._reply(slot, time.monotonic())
                    if not slot.backlog:  # else a report is half-written: nothing can follow
                        frame = _frame(queue.failures[slot.index] + 1, failure)
                        if os.write(slot.reply_fd, frame) == len(frame):
                            queue.failures[slot.index] += 1
            queue.writer_state.value = _BROKEN
            raise
        queue.writer_state.value = _FINISHED
        return report

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        service = self.storage_service
        if isinstance(service, HDF5StorageService):
            with service.opened():
                autoflush, service.autoflush = service.autoflush, False
                try:
                    yield
                finally:
                    service.autoflush = autoflush
        else:
            yield

    def _flush(self) -> None:
        flush = getattr(self.storage_service, "flush", None)
        if flush is not None:
            flush()

    def _serve(self, slots: dict[int, _Slot]) -> WriterReport:
        queue = self.queue
        began = last_flush = checked = time.monotonic()
        self.stored = self.failed = 0
        active = dict(slots)
        unflushed: dict[int, _Slot] = {}  # slots with requests stored since the last flush
        done: list[int] = []
        lost: list[int] = []
        while active:
            queue.writer_phase.value = WAITING
            ready = self._wait(active, 0 if unflushed else _POLL)
            batch: list[tuple[_Slot, _Request]] = []
            for slot in ready:
                self._read(slot)
                for request in self._take(slot):
                    batch.append((slot, request))
                    unflushed[slot.index] = slot
            queue.writer_phase.value = STORING
            failures = self._store(batch)
            now = time.monotonic()
            if unflushed and (not ready or now - last_flush >= self.flush_interval):
                # Nothing more is waiting, or the interval is up: flush, then acknowledge.
                queue.writer_phase.value = FLUSHING
                try:
                    self._flush()
                except Exception as exc:  # noqa: BLE001 - reported to every sender waiting
                    for slot in unflushed.values():
                        failures.append((slot, _Failure.of(slot.last_seq, "flush", exc)))
                        self.failed += 1
                queue.writer_phase.value = STORING
                for slot in unflushed.values():
                    slot.flushed_seq = slot.last_seq
                unflushed.clear()
                last_flush = now
            for slot, failure in failures:
                # Counted before it is written, and before the request is acknowledged.
                number = queue.failures[slot.index] + 1
                slot.backlog.append(_frame(number, failure))
                queue.failures[slot.index] = number
            now = time.monotonic()
            for slot in active.values():
                self._reply(slot, now)
                queue.acked[slot.index] = slot.flushed_seq
            for k, slot in list(active.items()):
                if slot.done_at is not None and slot.flushed_seq >= slot.done_at \
                        and not self._owes_reports(slot, now):
                    done.append(k)
                    del active[k]
            if now - checked >= _POLL or not ready:
                checked = now
                for k, slot in list(active.items()):
                    gone = self._gone(slot, now - began)
                    if gone is not None:
                        (done if gone == "done" else lost).append(k)
                        del active[k]
                        unflushed.pop(k, None)
        queue.writer_phase.value = WAITING
        return WriterReport(self.stored, self.failed, tuple(sorted(done)), tuple(sorted(lost)))

    def _wait(self, active: dict[int, _Slot], timeout: float) -> list[_Slot]:
        """The slots whose request pipe holds something, after waiting up to ``timeout``
        for one to, or for room in a reply pipe with reports waiting."""
        poller = select.poll()
        readers = {}
        for slot in active.values():
            fd = slot.connection.fileno()
            readers[fd] = slot
            poller.register(fd, select.POLLIN)
            if slot.backlog:
                poller.register(slot.reply_fd, select.POLLOUT)
        events = poller.poll(timeout * 1000)
        return [readers[fd] for fd, _ in events if fd in readers]

    def _owes_reports(self, slot: _Slot, now: float) -> bool:
        """Whether failure reports still wait for room in the slot's reply pipe, and
        may still get it."""
        if not slot.backlog:
            return False
        if self.reply_timeout is not None and slot.stalled is not None \
                and now - slot.stalled > self.reply_timeout:
            slot.backlog.clear()  # its sender raises WriterLostError when it comes to them
            return False
        return True

    def _store(self, batch: list[tuple[_Slot, _Request]]) -> list[tuple[_Slot, _Failure]]:
        failures = []
        for slot, request in batch:
            try:
                stuff, args, kwargs = request.unpack()
                self.storage_service.store(request.msg, stuff, *args, **kwargs)
                self.stored += 1
            except Exception as exc:  # noqa: BLE001 - any failure goes back to its sender
                failures.append((slot, _Failure.of(request.seq, request.msg, exc)))
                self.failed += 1
            slot.last_seq = request.seq
        return failures

    def _read(self, slot: _Slot) -> None:
        fd = slot.connection.fileno()
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                return
            if not slot.garbled:
                slot.buffer += chunk
            if len(chunk) < _CHUNK:
                return

    def _take(self, slot: _Slot) -> list[_Request]:
        """The complete requests in the slot's buffer; notes the done message and
        whether the pipe is garbled."""
        if slot.garbled:
            return []
        items, garbled = _unframe(slot.buffer, slot.frames, (_Request, _Done))
        slot.frames += len(items)
        if garbled is not None:
            slot.garbled = garbled
        requests = []
        for item in items:
            if isinstance(item, _Done):
                slot.done_at = item.last_seq
            else:
                requests.append(item)
        return requests

    def _reply(self, slot: _Slot, now: float) -> None:
        """Write what the reply pipe takes of the slot's failure reports."""
        while slot.backlog:
            frame = slot.backlog[0]
            try:
                written = os.write(slot.reply_fd, frame)
            except BlockingIOError:
                written = 0
            if written or slot.stalled is None:
                slot.stalled = now
            if written < len(frame):
                slot.backlog[0] = frame[written:]
                return  # the sender reads them as it raises them; later
            slot.backlog.pop(0)
        slot.stalled = None

    def _gone(self, slot: _Slot, waited: float) -> str | None:
        """``"lost"`` when the slot's process is dead or never came, or its pipe is
        broken; ``"done"`` when it died after saying so; ``None`` while it lives.
        What the pipe holds of whole messages is served first."""
        broken = bool(self.queue.broken[slot.index] or slot.garbled)
        if not broken:
            pid = self.queue.pids[slot.index]
            if pid == 0:
                late = self.start_timeout is not None and waited > self.start_timeout
                return "lost" if late else None
            if alive(pid):
                return None
        self._read(slot)
        requests = [(slot, request) for request in self._take(slot)]
        self._store(requests)  # failures: nobody is left to tell
        self.queue.writer_phase.value = FLUSHING
        self._flush()
        self.queue.writer_phase.value = STORING
        slot.flushed_seq = slot.last_seq
        self.queue.acked[slot.index] = slot.flushed_seq
        slot.buffer.clear()  # a torn last message
        slot.backlog.clear()
        if slot.garbled:
            self.queue.broken[slot.index] = _GARBLED
        if broken or slot.garbled:
            return "lost"
        return "done" if slot.done_at is not None and slot.last_seq >= slot.done_at else "lost"
