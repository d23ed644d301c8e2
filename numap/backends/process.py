"""Worker processes: one lane per process, each with a pipe in and a pipe out.

::

    caller thread          feeding thread (scheduler)        worker process i
    -------------          --------------------------        ----------------
    next() <- task         prepare(): pickle the batch       reader thread: inbox -> queue
    buffers <-----+        send(): inbox i ----------------> main thread: run_batch(),
                  |                                          outbox i --+
                  +-- getter thread: poll() on every outbox <-----------+
                      and every process sentinel; unpickle;
                      Sink.done() / Sink.lost()

Why one pipe pair per worker, and not one queue that all workers share: a
worker that dies while it holds a shared queue's lock blocks every other
worker, and nobody knows which items it held. With its own pipes the scheduler
knows exactly which batches each worker holds, and a death costs only those.

A worker's reader thread reads ahead (at most ``prefetch`` batches, which the
scheduler guarantees), so sending never waits for a busy worker. A worker that
reads nothing (a long call that holds its interpreter's lock, so that its reader
thread cannot run) fills its pipe; a frame its pipe has no room for goes to a
writer thread of that worker's own, so the feeding thread never waits on one
worker's pipe while the others starve (see ``ProcessBackend._write``). The
reader thread also sees the end of its inbox at once: when NuMap stops or the
parent dies, the worker exits even in the middle of a long call (a parent that
died leaves its shared-memory segments to its workers, which remove them as
they leave). It also gives back at once the worker's shared-memory segments
that the parent dropped (FREE frames): the parent's getter thread sends them as
soon as a result is dropped, so that the worker makes its next arrays in
segments whose lines are still cached.

Functions travel once per task (dill); items and results are pickled by the
C pickler with large buffers out of band (see :mod:`numap._wire`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import queue
import select
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import multiprocess

from .. import _shm
from .._errors import format_exception, with_remote_traceback
from .._execute import ItemFailure, TaskSpec, run_batch
from .._heap import KEEP_FREED
from .._heap import keep_freed as set_keep_freed
from .._policy import DEFAULT as DEFAULT_POLICY
from .._policy import apply as set_policy
from .._shm import Pool, forget_inherited, new_prefix, sweep, worker_prefix
from .._shm import available as shm_available
from .._wire import (
    Channel,
    Codec,
    Kind,
    Pickled,
    carries_segments,
    decode,
    encode,
    frame_bytes,
    message_bytes,
    peek,
    pickled,
    pipe,
    segment_names,
)
from .base import Backend, Batch, Done, Lane, LaneLoss, Sink

__all__ = ["ProcessBackend", "prepare_batch", "spread"]

# How long stop() lets workers leave on their own before it terminates them.
_GRACE = 1.0
# How long the getter waits for a batch being sent before it tells a worker of its
# dropped segments (it tries again after that; see _tell_freed_now).
_TELL_WAIT = 0.05

# The parent-side pipe ends of every worker of every NuMap in this process. A
# new worker closes them all: a worker that kept another NuMap's inbox open
# would keep that NuMap's workers from seeing the end of their inboxes.
_PARENT_FDS: set[int] = set()
_FDS_LOCK = threading.Lock()


def _own(*fds: int) -> None:
    with _FDS_LOCK:
        _PARENT_FDS.update(fds)


def _close_owned(channel: Channel) -> None:
    """Close a parent-side pipe end. Under the lock a fork is never given a stale number."""
    with _FDS_LOCK:
        _PARENT_FDS.discard(channel.fd)
        channel.close()


@dataclass(slots=True, eq=False)
class _Worker:
    """The parent's handles on one worker process."""

    process: Any
    inbox: Channel  # parent writes
    outbox: Channel  # parent reads
    ready: threading.Condition  # on the backend's send lock: frames behind (see _write)
    pid: int = 0
    pool: str = ""  # the name prefix of its pool's segments (see worker_prefix)
    # The parent's segments sent to it that it has not given back: if it dies,
    # nobody else will.
    segments: set[str] = field(default_factory=set)
    # Frames its pipe had no room for, in order, for its writer thread (see
    # ProcessBackend._write); every frame after one of them waits behind it.
    behind: deque[list[Any]] = field(default_factory=deque)
    writer: threading.Thread | None = None
    writing: bool = False  # the writer thread has a frame in hand, outside the lock
    gone: bool = False  # its inbox is closed, or closes once the writer's frame is out


class ProcessBackend(Backend):
    """``worker_type='process'``: ``workers`` processes started with ``multiprocess``."""

    target_seconds: ClassVar[float] = 0.02
    batch_stretch: ClassVar[float] = 8.0

    def __init__(self, workers: int, name: str, shared_memory: int | None = None,
                 keep_freed: int | None = KEEP_FREED, shared_arrays: bool = True,
                 worker_policy: str = DEFAULT_POLICY) -> None:
        super().__init__(workers, name)
        self.keep_freed = keep_freed
        self.worker_policy = worker_policy
        self.shared_arrays = shared_arrays
        # Large arrays through shared memory (see numap._shm), when the system has it.
        self.segments = Pool(new_prefix(), shared_memory,
                             split_copies=_shm.spare_cpu(workers)) \
            if shared_memory is not None and shm_available() else None
        self._context = multiprocess.get_context("fork" if sys.platform != "win32" else None)
        self._lanes: list[Lane] = []
        self._batches: dict[int, Batch] = {}
        self._task_frames: list[list[Any]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # woken already when full; never waits
        self._send_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._serial = 0
        self._getter: threading.Thread | None = None
        # Changed with the lanes the getter watches (a worker replaced or lost): the
        # getter then registers their pipes anew, instead of at every wait.
        self._lanes_changed = 0

    # -- starting -----------------------------------------------------------

    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        self.sink = sink
        for tid, spec in tasks.items():
            try:
                self._task_frames.append(encode(Kind.TASK, tid, 0, spec, codec=Codec.DILL))
            except Exception as exc:
                self._close_fds()
                raise TypeError(f"task {tid}: its function {spec.func!r} cannot be sent to a "
                                f"worker process: {exc}") from exc
        if self.segments is not None:  # a result dropped here: its worker is told at once
            _shm.RECEIVER.notify(worker_prefix(self.segments.prefix), self._wake)
        try:
            for _ in range(self.workers):
                self._lanes.append(self._start_worker())
        except BaseException:
            self.stop(forced=True)
            raise
        self._getter = threading.Thread(target=self._get_results, daemon=True,
                                        name=f"{self.name}-getter")
        self._getter.start()
        return list(self._lanes)

    def _start_worker(self) -> Lane:
        inbox_r, inbox_w = pipe()
        outbox_r, outbox_w = pipe()
        # The child closes every parent-side descriptor, so that a worker sees
        # the end of its inbox as soon as the parent closes it or dies.
        _own(inbox_w.fd, outbox_r.fd)
        self._serial += 1
        name = f"{self.name}-worker-{self._serial}"
        with _FDS_LOCK:  # no parent-side end is closed (and its number reused) meanwhile
            parent_fds = sorted((_PARENT_FDS | {self._wake_r, self._wake_w})
                                - {inbox_r.fd, outbox_w.fd})
            shm = None if self.segments is None else \
                (self.segments.prefix, self.segments.threshold, self.shared_arrays)
            process = self._context.Process(
                target=_worker_main,
                args=(inbox_r.fd, outbox_w.fd, parent_fds, shm, self.keep_freed,
                      self.worker_policy),
                name=name, daemon=True)
            process.start()
        inbox_r.close()
        outbox_w.close()
        worker = _Worker(process, inbox_w, outbox_r, threading.Condition(self._send_lock),
                         process.pid, "" if self.segments is None else
                         worker_prefix(self.segments.prefix, process.pid))
        lane = Lane(name, capacity=self.prefetch, handle=worker)
        try:
            for frame in self._task_frames:
                inbox_w.send(frame)
        except OSError:
            pass  # it died at once; the getter reports it
        return lane

    def replace(self, lane: Lane) -> Lane | None:
        if self._stopping:
            return None
        with self._send_lock:
            if self._closed:
                return None
            new = self._start_worker()
            self._lanes.append(new)
            self._lanes_changed += 1
        self._wake()
        return new

    # -- feeding ------------------------------------------------------------

    def prepare(self, batch: Batch) -> Any:
        return prepare_batch(batch, self.segments)

    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        if prepared is None:  # nothing left to evaluate
            self.sink.done(lane, Done(batch, [], [], 0.0))
            return
        self._batches[batch.id] = batch
        worker: _Worker = lane.handle
        names = segment_names(prepared) if self.segments is not None else []
        with self._send_lock:
            if self._closed:
                return
            if worker.gone:  # lost already: nobody will give these back
                if names and self.segments is not None:
                    self.segments.release(names)
                return
            worker.segments.update(names)
            self._tell_freed()
            self._write(worker, prepared)

    def _write(self, worker: _Worker, parts: list[Any]) -> None:
        """Send a frame to ``worker`` without waiting on its pipe. Called with the send
        lock held. A frame its pipe has room for is written at once, in one call; a
        larger one goes to the worker's writer thread, and every frame after it waits
        behind it, in order. So a worker that reads nothing (a long call that
        holds its interpreter's lock, whose reader thread then cannot run) holds up
        no other worker, however large its items."""
        if not worker.behind and not worker.writing and \
                message_bytes(parts) <= worker.inbox.room():
            try:
                worker.inbox.send(parts)
            except OSError:
                pass  # the worker is gone: the getter sees its sentinel and reports it
            return
        worker.behind.append(parts)
        if worker.writer is None:
            worker.writer = threading.Thread(target=self._writer, args=(worker,), daemon=True,
                                             name=f"{self.name}-writer-{worker.pid}")
            worker.writer.start()
        else:
            worker.ready.notify()

    def _writer(self, worker: _Worker) -> None:
        """``worker``'s writer thread: write the frames behind, in order, with blocking
        writes outside the send lock, until its inbox is to be closed (then closed here
        if a write was under way, see :meth:`_close_inbox`)."""
        with self._send_lock:
            while True:
                while not worker.behind and not worker.gone:
                    worker.ready.wait()
                if worker.gone:
                    return
                parts = worker.behind.popleft()
                worker.writing = True
                self._send_lock.release()
                try:
                    worker.inbox.send(parts)
                except OSError:
                    pass  # the worker is gone: the getter reports it; _lost closes its inbox
                finally:
                    del parts
                    self._send_lock.acquire()
                    worker.writing = False
                if worker.gone:  # closed meanwhile: left to this thread, which held its fd
                    _close_owned(worker.inbox)
                    return

    def _close_inbox(self, worker: _Worker) -> None:
        """Close ``worker``'s inbox and drop the frames behind (called with the send lock
        held). A write under way keeps the descriptor open until it is done: its writer
        thread closes it then, so that no descriptor number is reused while written to."""
        worker.gone = True
        worker.behind.clear()
        if not worker.writing:
            _close_owned(worker.inbox)
        worker.ready.notify()

    def _tell_freed(self) -> None:
        """Tell each worker which of its segments were dropped here: it reuses them for
        its next arrays, while their lines may still be in the cache (the sooner, the
        fewer segments each worker goes round). Called with the send lock held."""
        if self.segments is None:
            return
        for lane in self._lanes:
            worker: _Worker = lane.handle
            if worker.gone:
                continue
            freed = _shm.RECEIVER.freed(worker.pool)
            if freed:
                self._write(worker, encode(Kind.FREE, 0, 0, freed))

    def _tell_freed_now(self) -> None:
        """:meth:`_tell_freed` from the getter, woken by a drop. While a batch is being
        sent, it waits for the lock a little; a send that takes longer (a worker that
        reads nothing) is not waited for: the getter wakes itself to try again, since
        a drop after that send's own telling would otherwise wait for a send that may
        never come."""
        if self.segments is None:
            return
        if not self._send_lock.acquire(timeout=_TELL_WAIT):
            self._wake()  # again, once the results ready meanwhile are read
            return
        try:
            if not self._closed:
                self._tell_freed()
        finally:
            self._send_lock.release()

    # -- results ------------------------------------------------------------

    def _get_results(self) -> None:
        # One poll object for as long as the lanes stay the same: a selector made
        # at every wait cost 5 µs with 2 workers and 45 µs with 32, at each message.
        changed = self._lanes_changed
        poller, watched = self._watch()
        while not self._stopping:
            if changed != self._lanes_changed:
                changed = self._lanes_changed
                poller, watched = self._watch()
            for fd, _events in poller.poll():
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    self._tell_freed_now()
                    continue
                lane, outbox = watched.get(fd, (None, False))
                if lane is None or not lane.alive:  # gone meanwhile: never ready again
                    with contextlib.suppress(KeyError):
                        poller.unregister(fd)
                    continue
                if self._stopping:
                    break
                if outbox:
                    try:
                        self._receive(lane)
                    except (EOFError, OSError):
                        self._lost(lane)
                    except Exception as exc:  # noqa: BLE001 - not a message numap wrote
                        self._lost(lane, f"sent a malformed message ({exc!r})")
                else:
                    self._lost(lane)

    def _watch(self) -> tuple[Any, dict[int, tuple[Lane, bool]]]:
        """A poll object on the pipe and process of every live lane, and the wake pipe."""
        poller = select.poll()
        watched: dict[int, tuple[Lane, bool]] = {}  # fd -> its lane, whether its outbox
        # A lane added after this copy changes the count again: the next wait sees it.
        for lane in list(self._lanes):
            if not lane.alive:
                continue
            try:
                fds = ((lane.handle.outbox.fd, True), (lane.handle.process.sentinel, False))
            except ValueError:  # its process object is closed: the lane is being stopped
                continue
            for fd, outbox in fds:
                if fd >= 0:
                    watched[fd] = (lane, outbox)
                    poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        return poller, watched

    def _receive(self, lane: Lane) -> None:
        parts = lane.handle.outbox.recv()
        try:
            frame = decode(parts)
        except Exception as exc:
            # The header is plain bytes and intact; the payload is not.
            batch = self._take_batch(lane, peek(parts).batch)
            if batch is not None:
                failure = ItemFailure(0, RuntimeError(
                    f"the results of a batch could not be unpickled: {exc!r}"))
                self.sink.done(lane, Done(batch, [None] * len(batch.items),
                                          [spread(failure, i) for i in range(len(batch.items))],
                                          0.0))
            return
        if frame.kind is Kind.FREE:  # our segments it dropped
            if self.segments is not None:
                lane.handle.segments.difference_update(frame.payload)
                self.segments.release(frame.payload)
            return
        batch = self._take_batch(lane, frame.batch)
        if batch is None:
            return
        values, failures = frame.payload
        for failure in failures:
            with_remote_traceback(failure.exc, failure.traceback or "")
        if values is None:  # the whole batch failed before any item ran
            failures = [spread(failures[0], i) for i in range(len(batch.items))]
            values = [None] * len(batch.items)
        nbytes = batch.nbytes + frame_bytes(parts)
        self.sink.done(lane, Done(batch, values, failures, frame.seconds, nbytes))

    def _take_batch(self, lane: Lane, batch_id: int) -> Batch | None:
        """The batch ``batch_id`` that ``lane`` holds, no longer waited for; ``None`` if
        ``lane`` holds no such batch."""
        batch = self._batches.get(batch_id)
        if batch is None or batch.lane is not lane:
            return None
        del self._batches[batch_id]
        return batch

    def _lost(self, lane: Lane, why: str | None = None) -> None:
        """``lane``'s worker is gone (or, with ``why``, is ended for it): tell the sink."""
        worker: _Worker = lane.handle
        # Results it sent before it died are still in the pipe: take them first.
        if why is None:
            try:
                while _readable(worker.outbox):
                    self._receive(lane)
            except (EOFError, OSError):
                pass
            except Exception as exc:  # noqa: BLE001 - not a message numap wrote
                why = f"sent a malformed message ({exc!r})"
        if why is not None:  # it runs, but what it sends cannot be trusted
            _signal(worker.process, signal.SIGKILL)
        worker.process.join(_GRACE)
        if worker.process.exitcode is None:  # its pipe broke but it still runs: end it
            _signal(worker.process, signal.SIGKILL)
            worker.process.join(_GRACE)
        code = worker.process.exitcode
        name = None
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                name = signal.Signals(-code).name
        if why:
            reason = f"worker process {worker.process.pid} ({lane.name}) {why}"
        elif name:
            reason = f"worker process {worker.process.pid} ({lane.name}) was killed by {name}"
        elif code is None:
            reason = f"worker process {worker.process.pid} ({lane.name}) stopped answering"
        else:
            reason = f"worker process {worker.process.pid} ({lane.name}) exited with code {code}"
        lane.alive = False
        with self._send_lock:
            self._close_inbox(worker)
            _close_owned(worker.outbox)
            # Under the lock, as stop() lists the lanes whose processes it reaps: a lane
            # it has not listed is gone from _lanes with its process closed here; one it
            # has listed keeps its process object open for stop() to reap and close
            # (closed here meanwhile, stop failed with "process object is closed").
            if not self._closed:
                _close(worker.process)
            if lane in self._lanes:
                self._lanes.remove(lane)
            self._lanes_changed += 1
            if self.segments is not None and worker.segments:  # what it held of ours
                self.segments.release(list(worker.segments))
                worker.segments.clear()
        if self.segments is not None:  # what it made and nobody took
            sweep(worker.pool)
            _shm.RECEIVER.forget(worker.pool)
        self.sink.lost(lane, LaneLoss(reason, code, name))

    # -- stopping -----------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def stop(self, forced: bool = False) -> None:
        if self._stopping:
            return
        self._stopping = True  # no lane is replaced from now on
        self._wake()
        if forced:
            for lane in list(self._lanes):
                _signal(lane.handle.process, signal.SIGTERM)
        # Closing the inboxes tells each worker to leave at once.
        if not self._send_lock.acquire(timeout=_GRACE):
            for lane in list(self._lanes):  # the feeder is stuck writing to a frozen worker
                _signal(lane.handle.process, signal.SIGKILL)
            self._send_lock.acquire()
        try:
            # Under the lock no replacement is half started: every worker is in _lanes.
            self._closed = True
            lanes = list(self._lanes)
            for lane in lanes:
                self._close_inbox(lane.handle)
        finally:
            self._send_lock.release()
        _reap([lane.handle.process for lane in lanes])
        for lane in lanes:  # their workers are gone: a write under way has ended
            writer = lane.handle.writer
            if writer is not None and writer is not threading.current_thread():
                writer.join(_GRACE)
        if self._getter is not None and self._getter is not threading.current_thread():
            self._getter.join(_GRACE)
        with self._send_lock:  # where every pipe of a lane is closed, so never twice at once
            for lane in lanes:
                _close_owned(lane.handle.outbox)
                _close(lane.handle.process)
                lane.alive = False
        self._lanes.clear()
        self._batches.clear()
        if self.segments is not None:  # (before the wake pipe closes: nobody wakes it after)
            _shm.RECEIVER.forget(self.segments.prefix)
        self._close_fds()
        if self.segments is not None:  # what was sent and never taken, and the pools
            self.segments.close()
            sweep(self.segments.prefix)

    def _close_fds(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1


def prepare_batch(batch: Batch, segments: Pool | None = None) -> list[Any] | None:
    """``batch`` as the parts of a BATCH frame (see :mod:`numap._wire`), for any worker
    process, local or remote (large arrays in shared memory with ``segments``); items
    that cannot be pickled fail alone (``None``: none left)."""
    try:
        parts = encode(Kind.BATCH, batch.task, batch.id, batch.items, segments=segments)
    except Exception:
        pass
    else:
        batch.nbytes = frame_bytes(parts)  # arrays in shared memory count too
        return parts
    # Find the items that cannot be pickled; they fail alone.
    for position, item in reversed(list(enumerate(batch.items))):
        try:
            encode(Kind.BATCH, batch.task, batch.id, [item])
        except Exception as exc:
            where = batch.positions[position] if batch.positions else position
            batch.leave_out(where, TypeError(
                f"item {batch.start + where} of task {batch.task} cannot be sent to a "
                f"worker process: {exc}"))
    return encode(Kind.BATCH, batch.task, batch.id, batch.items, segments=segments) \
        if batch.items else None


def spread(failure: ItemFailure, position: int) -> ItemFailure:
    """``failure`` as the failure of the item at ``position`` (a whole batch failed)."""
    return ItemFailure(position, failure.exc, failure.traceback)



def _readable(channel: Channel) -> bool:
    return bool(select.select([channel.fd], [], [], 0)[0])


def _signal(process: Any, signum: int) -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if process.is_alive():
            os.kill(process.pid, signum)


def _close(process: Any) -> None:
    """Release the process object's descriptors once it has ended."""
    with contextlib.suppress(ValueError, OSError):
        process.close()


def _reap(processes: list[Any]) -> None:
    """Wait for ``processes`` to end, terminating and then killing the slow ones."""
    for process in processes:
        process.join(_GRACE / max(len(processes), 1))
    for signum in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in processes if p.exitcode is None]
        if not alive:
            return
        for process in alive:
            _signal(process, signum)
        for process in alive:
            process.join(_GRACE)


# -- the worker process ------------------------------------------------------


def _worker_main(inbox_fd: int, outbox_fd: int, parent_fds: list[int],
                 shm: tuple[str, int, bool] | None = None,
                 keep_freed: int | None = KEEP_FREED,
                 policy: str = DEFAULT_POLICY) -> None:
    """Run batches from ``inbox_fd`` and write their results to ``outbox_fd``
    (large arrays of results in shared memory, when ``shm`` gives the prefix, the
    threshold and whether numpy makes large arrays in segments; up to ``keep_freed``
    bytes of freed heap kept for new arrays, see :mod:`numap._heap`), scheduled by
    ``policy`` (see :mod:`numap._policy`)."""
    set_policy(policy)  # first: the reader thread started below has it too
    global _ORPHANED
    if shm is not None:  # if the parent dies without stopping, its segments are ours to remove
        _ORPHANED = (os.getppid(), shm[0])
    if keep_freed is not None:
        set_keep_freed(keep_freed)
    for fd in parent_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    # Ctrl-C goes to the whole process group: the parent handles it and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    forget_inherited()  # the parent's pools and mappings are not ours
    _own_exit_handlers()
    inbox, outbox = Channel(inbox_fd), Channel(outbox_fd)
    segments = None if shm is None else \
        Pool(worker_prefix(shm[0], os.getpid()), shm[1], forward_to=shm[0], allocate=shm[2])
    frames: queue.SimpleQueue[list[memoryview]] = queue.SimpleQueue()

    def read() -> None:
        while True:
            try:
                parts = inbox.recv()
                if segments is None or not _given_back(parts, segments):
                    frames.put(parts)
            except (EOFError, OSError):
                _leave()
            except BaseException:  # noqa: BLE001 - no room for a frame: the parent must know
                traceback.print_exc()
                _leave(1)  # a worker that reads nothing more would hold its batches for ever

    threading.Thread(target=read, daemon=True, name="numap-reader").start()
    calls: dict[int, Callable[[Any], Any] | ItemFailure] = {}
    while True:
        parts = frames.get()
        try:
            frame = decode(parts)
        except Exception as exc:
            head = peek(parts)
            if head.kind is Kind.TASK:  # its batches fail with the reason
                calls[head.task] = _failure(0, RuntimeError(
                    f"the function of task {head.task} cannot be loaded in the worker "
                    f"process: {type(exc).__name__}: {exc}"))
                continue
            # A batch whose items cannot be unpickled here fails as a whole.
            _send(outbox, _pickle_result(head.task, head.batch, None, [_failure(0, exc)],
                                         0.0).parts())
            continue
        if frame.kind is Kind.TASK:
            try:
                calls[frame.task] = frame.payload.caller()
            except Exception as exc:
                calls[frame.task] = _failure(0, exc)
        elif frame.kind is Kind.BATCH:
            call = calls[frame.task]  # its TASK frame always comes first
            if isinstance(call, ItemFailure):  # the task's function did not load here
                _send(outbox, _pickle_result(frame.task, frame.batch, None, [call], 0.0).parts())
                continue
            task, batch = frame.task, frame.batch
            if segments is not None:
                if carries_segments(parts):
                    segments.large_seen = True
                segments.allocate()
            # Items taken out of the batch as they go, when the function can let them go
            # early (fused Pipers): a dropped item's segment may take the next arrays.
            values, failures, seconds = run_batch(
                call, frame.payload, take=segments is not None and segments.allocated is not None)
            del frame, parts  # the items: what the function returned or kept stays alive
            failures = [_failure(f.position, f.exc) for f in failures]
            result = _pickle_result(task, batch, values, failures, seconds)
            del values, failures  # a received array only the result holds may go back as it is
            _send(outbox, result.parts(segments))
            del result
            if shm is not None:  # the items are dropped now: the parent may reuse them
                freed = _shm.RECEIVER.freed(shm[0])
                if segments is not None:  # but those the allocator made arrays in and kept
                    freed = segments.given_back(freed)
                if freed:
                    _send(outbox, encode(Kind.FREE, 0, 0, freed))


def _given_back(parts: list[memoryview], segments: Pool) -> bool:
    """Whether ``parts`` is a FREE frame, its segments given back to ``segments`` now, on
    the reader thread: the call the main thread is in may make its next arrays in
    them. The main loop never sees a FREE frame (one that cannot be decoded goes on
    to it, which reports what is wrong with it)."""
    try:
        if peek(parts).kind is not Kind.FREE:
            return False
        names = decode(parts).payload
    except Exception:  # noqa: BLE001 - the main loop says what is wrong with it
        return False
    segments.release(names)
    return True


_LEAVING = threading.Lock()
# In a worker with shared memory: its parent's pid and the prefix of the parent's
# segments, which the worker removes when it leaves because its parent died.
_ORPHANED: tuple[int, str] | None = None
_PF_EXITING = 0x4  # the kernel's flag of a task that is exiting (/proc/<pid>/stat)


def _own_exit_handlers() -> None:
    """Forget the exit handlers inherited from the parent (they would clean up the
    parent's things: its temporary folders, its servers), so that :func:`_leave`
    runs only those registered in this worker (by the tasks' code)."""
    clear = getattr(atexit, "_clear", None)
    if clear is not None:
        clear()


def _leave(code: int = 0) -> None:
    """End this worker with ``code``: run the exit handlers registered in it, flush, exit.

    Called by the reader thread when the inbox ends (NuMap stops, or the parent
    died) or by the main thread when the outbox is gone; the first caller leaves,
    any other waits here until the process is gone.
    """
    _LEAVING.acquire()
    if _ORPHANED is not None and _parent_gone(_ORPHANED[0]):
        # Nobody else will: a parent that died (SIGKILL, a crash, the OOM killer) left
        # its segments in /dev/shm, where they would hold memory until a reboot.
        sweep(_ORPHANED[1])
    run = getattr(atexit, "_run_exitfuncs", None)
    if run is not None:
        with contextlib.suppress(BaseException):
            run()  # prints the traceback of a failing handler and goes on
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _parent_gone(parent: int) -> bool:
    """Whether this process's parent ``parent`` died or is dying. Its pipes end while
    it exits, a moment before its children are handed to another process, so a
    parent that is exiting counts as gone (its kernel flags say so); one that still
    runs (a NuMap that stopped) does not. Without ``/proc``, only a parent already
    gone is seen."""
    if os.getppid() != parent:
        return True
    try:
        with open(f"/proc/{parent}/stat", "rb") as stat:
            line = stat.read()
        # pid (name) state ppid pgrp session tty tpgid flags ...: the name may hold
        # spaces and parentheses, the fields after its last ")" do not
        fields = line[line.rindex(b")") + 2:].split()
        state, flags = fields[0], int(fields[6])
    except (OSError, ValueError, IndexError):
        return False
    return state in (b"Z", b"X", b"x") or bool(flags & _PF_EXITING)


def _failure(position: int, exc: BaseException) -> ItemFailure:
    """An ItemFailure that is sure to cross back to the parent."""
    tb = format_exception(exc)
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        exc = RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return ItemFailure(position, exc, tb)


def _pickle_result(task: int, batch: int, values: list[Any] | None,
                   failures: list[ItemFailure], seconds: float) -> Pickled:
    """The RESULT frame of a batch, pickled; a value that cannot be pickled becomes that
    item's failure."""
    try:
        return pickled(Kind.RESULT, task, batch, (values, failures), seconds=seconds)
    except Exception:
        # Some value cannot be pickled: it becomes that item's failure.
        assert values is not None
        for position, value in enumerate(values):
            try:
                encode(Kind.RESULT, task, batch, value)
            except Exception as exc:
                values[position] = None
                failures.append(_failure(position, TypeError(
                    f"the result cannot be sent back from the worker process: {exc}")))
        return pickled(Kind.RESULT, task, batch, (values, failures), seconds=seconds)


def _send(outbox: Channel, parts: list[Any]) -> None:
    try:
        outbox.send(parts)
    except OSError:
        _leave()
