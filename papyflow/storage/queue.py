r"""Many processes storing through one writer process.

::

    sender process 0 --request pipe 0--\                      +------------------+
    sender process 1 --request pipe 1---+--> queue writer --> | storage service  |
         ...                           /    (one process)     |  (the HDF5 file) |
    sender process n --request pipe n-/                       +------------------+
          ^                                  |
          +--- reply pipe k (failures) ------+   shared memory: acked[k], failures[k],
                                                 pids[k], writer pid and state

A :class:`StorageQueue` is made by the parent before the processes start, for a
known number of senders. Each sender gets its own *slot*: a request pipe, a
reply pipe and its cells in shared memory. One pipe per sender, and not one
``multiprocessing.Queue`` for all, because a process killed in the middle of
a ``put`` leaves a shared queue with a torn message and its lock held, which
stops every other sender and the writer; a torn message in a slot's own pipe
costs only that slot.

**Senders** (:class:`QueueStorageServiceSender`) frame each ``store`` call as a
:class:`_Request` (numbered ``seq`` = 1, 2, ... per slot) and write it to their
pipe without waiting; ``send_done`` sends :class:`_Done` and waits until the
writer has acknowledged everything. Before each call a sender checks its
``failures`` cell and raises the writer's error (:class:`WriterError`) when
there is one; while it waits it checks that the writer process is alive and
raises :class:`WriterLostError` when it is not.

**The writer** (:class:`QueueStorageServiceWriter`) reads whatever every pipe
holds and stores the requests in order; when no request is waiting, or
``flush_interval`` has passed, it flushes the file and only then writes
``acked[k]`` = the last ``seq`` of slot ``k`` it processed. A
request that failed is acknowledged too, after its :class:`_Failure` was put
in the reply pipe and ``failures[k]`` counted: an acknowledged request is
either in the file (as of the flush) or reported to its sender. The writer
stops when every slot said done or is *lost*: its process (``pids[k]``, set by
the sender on first use or by the parent with :meth:`StorageQueue.watch`) died,
or it never showed up within ``start_timeout`` seconds. What a lost sender had
fully written to its pipe is still stored; a torn last message is dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
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
from .errors import NoSuchServiceError, RemoteTraceback, WriterError, WriterLostError
from .hdf5 import HDF5StorageService

__all__ = ["FLUSHING", "STORING", "WAITING", "QueueStorageServiceSender",
           "QueueStorageServiceWriter", "StorageQueue", "WriterReport"]

_HEADER = struct.Struct("<Q")
_POLL = 0.1
_CHUNK = 1 << 20
_NOT_STARTED, _RUNNING, _FINISHED, _BROKEN = 0, 1, 2, 3
WAITING, STORING, FLUSHING = 0, 1, 2
"""What the writer is doing (``StorageQueue.writer_phase``): a writer killed while
``FLUSHING`` may leave a file HDF5 cannot open; see the HDF5 service's notes."""


# -- what crosses the pipes ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    """One ``store`` call of a sender."""

    seq: int
    msg: str
    stuff: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


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
        exc = pickle.loads(self.exception) if self.exception is not None else None
        if exc is not None:
            exc.__cause__ = RemoteTraceback(self.tb)
        what = (f"the queue writer failed on message #{self.seq} ({self.msg})"
                if self.seq >= 0 else "the queue writer stopped")
        kind = WriterLostError if self.seq < 0 else WriterError
        error = kind(f"{what}: {self.text}", exception=exc, message=self.msg, seq=self.seq)
        error.__cause__ = exc if exc is not None else RemoteTraceback(self.tb)
        return error


def _frame(item: Any) -> bytes:
    body = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _unframe(buffer: bytearray) -> Iterator[Any]:
    """Take the complete frames out of ``buffer``; a torn one stays."""
    start = 0
    while len(buffer) - start >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, start)
        end = start + _HEADER.size + size
        if end > len(buffer):
            break
        yield pickle.loads(memoryview(buffer)[start + _HEADER.size:end])
        start = end
    del buffer[:start]


# -- the channel -----------------------------------------------------------------------------


class StorageQueue:
    """The pipes and shared cells between ``senders`` senders and one writer.

    Make it in the parent before starting the processes, and hand each process
    its sender (:meth:`sender`) and the writer its queue when they start (it
    holds pipes and shared memory, which travel only that way).
    ``ctx`` is a ``multiprocessing`` context (the default one when ``None``).
    """

    def __init__(self, senders: int, ctx: Any = None) -> None:
        if senders < 1:
            raise ValueError(f"a StorageQueue needs at least one sender, got {senders}")
        ctx = ctx or multiprocessing.get_context()
        self.n = senders
        self._requests = [ctx.Pipe(duplex=False) for _ in range(senders)]
        self._replies = [ctx.Pipe(duplex=False) for _ in range(senders)]
        self.acked = ctx.Array("q", senders, lock=False)
        self.failures = ctx.Array("q", senders, lock=False)
        self.pids = ctx.Array("q", senders, lock=False)
        self.writer_pid = ctx.Value("q", 0, lock=False)
        self.writer_state = ctx.Value("b", _NOT_STARTED, lock=False)
        self.writer_phase = ctx.Value("b", WAITING, lock=False)

    def sender(self, slot: int) -> QueueStorageServiceSender:
        """The sender of slot ``slot`` (0 ... ``senders - 1``), for one process."""
        if not 0 <= slot < self.n:
            raise IndexError(f"slot {slot} out of 0..{self.n - 1}")
        return QueueStorageServiceSender(self, slot)

    def watch(self, slot: int, pid: int) -> None:
        """Tell the writer that process ``pid`` sends on ``slot`` (so that it notices
        the process dying even before it sent anything)."""
        self.pids[slot] = pid

    def close(self) -> None:
        """Close this process's ends of every pipe."""
        for pair in (*self._requests, *self._replies):
            for end in pair:
                end.close()


# -- the sender ----------------------------------------------------------------------------


class QueueStorageServiceSender:
    """Stands in for the storage service in a worker process: ``store`` calls go to
    the writer. Loading is not supported.

    ``timeout`` bounds each wait (for room in the pipe, for acknowledgements):
    ``None`` waits as long as the writer lives.
    """

    def __init__(self, queue: StorageQueue, slot: int, timeout: float | None = None) -> None:
        self.queue = queue
        self.slot = slot
        self.timeout = timeout
        self._seq = 0
        self._failures_seen = 0
        self._pid = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("queue", "slot", "timeout", "_seq",
                                               "_failures_seen")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = 0
        self._lock = threading.Lock()

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

    @property
    def _request_end(self) -> multiprocessing.connection.Connection:
        return self.queue._requests[self.slot][1]

    @property
    def _reply_end(self) -> multiprocessing.connection.Connection:
        return self.queue._replies[self.slot][0]

    def _check(self) -> None:
        """Raise the writer's next unreported failure of this slot, if any."""
        if self.queue.failures[self.slot] > self._failures_seen:
            failure = self._read_failure()
            self._failures_seen += 1
            raise failure.error()
        if self.queue.writer_state.value == _BROKEN:
            raise WriterLostError("the queue writer stopped with an error")

    def _read_failure(self) -> _Failure:
        end = self._reply_end
        fd = end.fileno()
        header = self._read_exactly(fd, _HEADER.size)
        (size,) = _HEADER.unpack(header)
        return pickle.loads(self._read_exactly(fd, size))

    def _read_exactly(self, fd: int, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = os.read(fd, size - len(data))
            except BlockingIOError:  # counted before written: it is on its way
                select.select([fd], [], [], _POLL)
                if self._writer_lost():
                    raise WriterLostError("the queue writer died while reporting a failure") \
                        from None
                continue
            if not chunk:
                raise WriterLostError("the queue writer's reply pipe closed")
            data += chunk
        return bytes(data)

    def _writer_lost(self) -> bool:
        state = self.queue.writer_state.value
        if state == _NOT_STARTED:
            return False
        return state != _RUNNING or not alive(self.queue.writer_pid.value)

    def _waited_too_long(self, began: float) -> None:
        if self._writer_lost():
            self._check()  # a failure that explains it comes first
            raise WriterLostError(
                f"the queue writer is gone: {self.acknowledged} of {self._seq} requests of "
                f"slot {self.slot} were acknowledged")
        if self.timeout is not None and time.monotonic() - began > self.timeout:
            raise WriterLostError(f"waited {self.timeout} s for the queue writer")

    def _send(self, item: Any) -> None:
        frame = memoryview(_frame(item))
        fd = self._request_end.fileno()
        began = time.monotonic()
        while frame:
            try:
                frame = frame[os.write(fd, frame):]
            except BlockingIOError:
                select.select([], [fd], [], _POLL)
                if frame:
                    self._waited_too_long(began)

    def store(self, msg: str, stuff_to_store: Any, *args: Any, **kwargs: Any) -> None:
        """Send a store request to the writer and return at once.

        Raises:
            NoSuchServiceError: ``msg`` is not a store message.
            WriterError: an earlier request of this sender failed in the writer.
            WriterLostError: the writer is gone.
        """
        if msg not in pc.STORE_MESSAGES:
            raise NoSuchServiceError(f"store: no such message {msg!r}")
        with self._lock:
            self._attach()
            self._check()
            self._seq += 1
            try:
                self._send(_Request(self._seq, msg, stuff_to_store, args, kwargs))
            except BaseException:
                self._seq -= 1  # a request that does not pickle was never sent
                raise

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported: a sender only stores."""
        raise NoSuchServiceError("the queue sender cannot load; load from the file")

    def wait_acknowledged(self) -> None:
        """Wait until the writer processed everything sent; raise its failures."""
        with self._lock:
            self._attach()
            began = time.monotonic()
            while True:
                self._check()
                if self.acknowledged >= self._seq:
                    return
                time.sleep(0.001 if time.monotonic() - began < 0.05 else _POLL / 4)
                if self.acknowledged < self._seq:
                    self._waited_too_long(began)

    def send_done(self) -> None:
        """Tell the writer this sender is done and wait until it processed everything.

        Raises:
            WriterError: a request of this sender failed in the writer (the first
                one not yet raised).
            WriterLostError: the writer died before acknowledging everything.
        """
        with self._lock:
            self._attach()
            self._send(_Done(self._seq))
        self.wait_acknowledged()


# -- the writer ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WriterReport:
    """What :meth:`QueueStorageServiceWriter.run` did: requests ``stored`` and
    ``failed``, the slots that said ``done`` and those ``lost`` (their process died
    or never came)."""

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
    last_seq: int = 0
    flushed_seq: int = 0
    done_at: int | None = None
    backlog: list[bytes] = dataclasses.field(default_factory=list)


class QueueStorageServiceWriter:
    """Takes the requests of every sender of ``queue`` and stores them with
    ``storage_service`` until every sender is done or lost.

    ``start_timeout``: how long a slot whose process is unknown (no request yet,
    not watched) may stay silent before it is given up (``None``: forever).
    ``flush_interval``: while requests keep coming, the file is flushed (and the
    requests acknowledged) at least this often, in seconds; it is flushed at
    once whenever no request is waiting.
    """

    def __init__(self, storage_service: Any, queue: StorageQueue, *,
                 start_timeout: float | None = 60.0, flush_interval: float = 0.02) -> None:
        self.storage_service = storage_service
        self.queue = queue
        self.start_timeout = start_timeout
        self.flush_interval = flush_interval
        self.stored = 0
        self.failed = 0

    def run(self) -> WriterReport:
        """Serve the senders; returns what happened.

        Raises what opening the storage raised (the senders get it as
        :class:`WriterLostError`).
        """
        queue = self.queue
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
            failure = _frame(_Failure.of(-1, "", exc))
            for slot in slots.values():
                with contextlib.suppress(OSError):
                    os.write(slot.reply_fd, failure)
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
            by_fd = {slot.connection: slot for slot in active.values()}
            queue.writer_phase.value = WAITING
            ready = multiprocessing.connection.wait(list(by_fd), timeout=0 if unflushed
                                                    else _POLL)
            batch: list[tuple[_Slot, _Request]] = []
            for connection in ready:
                slot = by_fd[connection]  # type: ignore[index]
                self._read(slot)
                for item in _unframe(slot.buffer):
                    if isinstance(item, _Done):
                        slot.done_at = item.last_seq
                    else:
                        batch.append((slot, item))
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
                slot.backlog.append(_frame(failure))
                queue.failures[slot.index] += 1
            for slot in active.values():
                self._reply(slot)
                queue.acked[slot.index] = slot.flushed_seq
            for k, slot in list(active.items()):
                if slot.done_at is not None and slot.flushed_seq >= slot.done_at:
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

    def _store(self, batch: list[tuple[_Slot, _Request]]) -> list[tuple[_Slot, _Failure]]:
        failures = []
        for slot, request in batch:
            try:
                self.storage_service.store(request.msg, request.stuff, *request.args,
                                           **request.kwargs)
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
            slot.buffer += chunk
            if len(chunk) < _CHUNK:
                return

    def _reply(self, slot: _Slot) -> None:
        while slot.backlog:
            frame = slot.backlog[0]
            try:
                written = os.write(slot.reply_fd, frame)
            except BlockingIOError:
                return  # the sender reads them as it raises them; later
            if written < len(frame):
                slot.backlog[0] = frame[written:]
                return
            slot.backlog.pop(0)

    def _gone(self, slot: _Slot, waited: float) -> str | None:
        """``"lost"`` when the slot's process is dead or never came, ``"done"`` when it
        died after saying so; ``None`` while it lives. What a dead sender had
        fully written to its pipe is served first."""
        pid = self.queue.pids[slot.index]
        if pid == 0:
            late = self.start_timeout is not None and waited > self.start_timeout
            return "lost" if late else None
        if alive(pid):
            return None
        self._read(slot)
        requests = []
        for item in _unframe(slot.buffer):
            if isinstance(item, _Done):
                slot.done_at = item.last_seq
            else:
                requests.append((slot, item))
        self._store(requests)  # failures: nobody is left to tell
        self.queue.writer_phase.value = FLUSHING
        self._flush()
        self.queue.writer_phase.value = STORING
        slot.flushed_seq = slot.last_seq
        self.queue.acked[slot.index] = slot.flushed_seq
        slot.buffer.clear()  # a torn last message
        return "done" if slot.done_at is not None and slot.last_seq >= slot.done_at else "lost"
