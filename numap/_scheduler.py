"""The scheduler: weave tasks into batches, bound what is held, order the results.

::

    task inputs ──► feeding thread ──prepare/send──► backend lanes ──► workers
    (external iterables              │                    │
     or earlier tasks)               │ credits            │ Sink.done / Sink.lost
                                     ▼                    ▼
    caller ◄── NuMapTask ◄── task.ready chunks ◄── done(): assemble, reorder

*Credits.* ``held`` counts every item pulled from an input and not yet handed
to the consumer (in flight, finished but waiting for an earlier item, or ready
in a chunk). The feeder pulls only while ``held < buffer``, so an endless input
runs in bounded memory. An item that passes from one task to a chained task
keeps its credit. The consumer returns a chunk's credits when it has read the
whole chunk.

*Weave.* Tasks take turns: a turn gives one task up to ``stride`` items, then
the next task is served. A chained task takes what its upstream task has ready
and never waits for it, so one slow link does not stall the others.

*Batches.* Items travel in batches sized so that one batch takes about the
backend's ``target_seconds`` (measured per task by the workers), at most
``max_batch``: one item at a time for slow functions, hundreds for cheap ones.
When the input tells its length (``operator.length_hint``, as ``range`` and
lists do), batches follow guided self-scheduling: each takes a share of what
is left (``1 / (_GUIDED * lanes)``), up to ``batch_stretch`` times the usual
size while much is left (fewer batches, less work here) and down to a tenth
of it at the end, so that the workers run out of work together.

*Lost workers.* When a lane is lost, the batch it was running is split into
single items run again one by one ("suspects"); a suspect that kills its worker
again fails with :class:`WorkerLostError`. The batches it had not started are
sent again as they are. Many losses in a row with no batch finishing in
between break the pool: everything pending fails with ``BrokenPoolError``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ._errors import BrokenPoolError, TimeoutError, WorkerLostError
from ._inlet import Inlet
from ._tasks import Raise, TaskState
from .backends.base import Backend, Batch, Done, Lane, LaneLoss

__all__ = ["Scheduler"]

# How long the feeder first waits before it looks again at an input with nothing
# ready, and at most; and how long it lets a half-filled batch fill.
_INPUT_POLL = 0.001
_INPUT_POLL_MAX = 0.01
_LINGER = 0.002
_GUIDED = 3  # guided batches take 1 / (_GUIDED * lanes) of the items left
# Weight of the newest measurement in a task's seconds-per-item estimate.
_SMOOTHING = 0.5


class Scheduler:
    """Runs the tasks of one NuMap on one backend. Its methods are thread-safe."""

    def __init__(self, backend: Backend, tasks: list[TaskState], *, stride: int, buffer: int,
                 max_batch: int, ordered: bool, skip: bool, name: str,
                 memory: int | None = None) -> None:
        self.backend = backend
        self.tasks = tasks
        self.stride = stride
        self.buffer = buffer
        # With an automatic buffer, large items also count by size: at most
        # ``memory`` bytes of items are held (but never fewer than keep every
        # worker busy).
        self._memory = memory
        self._floor = 2 * backend.prefetch * max(backend.workers, 1)
        self._limit = buffer
        self.max_batch = max_batch
        self.ordered = ordered
        self.skip = skip
        self.name = name
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # the feeder waits here
        self._results = threading.Condition(self._lock)  # consumers wait here
        for task in tasks:
            if task.source is not None:
                task.inlet = Inlet(task.source, self._lock, self._space,
                                   f"{name}-task-{task.id}")
        self.held = 0
        self._lanes: list[Lane] = []
        self._resend: deque[Batch] = deque()
        self._ids = itertools.count()
        self._turn = 0  # whose turn it is to reserve credits
        self._send_turn = 0  # whose turn it is to send a batch
        self._waiting_on_input = False
        self._losses_in_row = 0
        self._loss_limit = max(8, 4 * backend.workers)
        self._broken: BaseException | None = None
        self._draining = False
        self.feeding = False
        self.stopping = False
        self.stopped = False
        self._feeder: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------

    def start_pool(self) -> None:
        """Stage 1: start the workers and give them the tasks."""
        self._lanes = self.backend.start({t.id: t.spec for t in self.tasks}, self)

    def start_feeding(self) -> None:
        """Stage 2: start the feeding thread."""
        with self._lock:
            self.feeding = True
            self._results.notify_all()
        for task in self.tasks:
            if task.inlet is not None:
                task.inlet.start()
        self._feeder = threading.Thread(target=self._feed, daemon=True,
                                        name=f"{self.name}-feeder")
        self._feeder.start()

    def drain(self, ends: Iterable[Iterator[Any]]) -> None:
        """Stop pulling inputs; let the items pulled flow through, discarding ``ends``' results."""
        with self._lock:
            self._draining = True
            self._space.notify_all()
        for stream in ends:
            while True:
                try:
                    next(stream)
                except StopIteration:
                    break
                except Exception:  # noqa: BLE001 - failed items are discarded; Ctrl-C is not
                    if self.stopped or self._broken is not None:
                        break

    def stop(self, forced: bool = False) -> None:
        """Stop feeding, stop the workers and wake every waiting consumer."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
            for task in self.tasks:
                if task.inlet is not None:
                    task.inlet.close()
            self._space.notify_all()
            self._results.notify_all()
        self.backend.stop(forced)
        if self._feeder is not None and self._feeder is not threading.current_thread():
            self._feeder.join(1.0)
        with self._lock:
            self.stopped = True
            self.held = 0
            for task in self.tasks:
                task.ready.clear()
                task.ready_count = 0
                task.undelivered.clear()
                task.cur_size = 0
            self._results.notify_all()

    # -- the feeding thread ---------------------------------------------------

    def _feed(self) -> None:
        try:
            while True:
                with self._lock:
                    step = self._next_step()
                if step is None:
                    return
                batch = step
                prepared = self.backend.prepare(batch)
                with self._lock:
                    lane = self._free_lane()
                    while lane is None and not self.stopping:
                        self._space.wait()
                        lane = self._free_lane()
                    if lane is None:
                        return
                    batch.lane = lane
                    lane.outstanding.append(batch)
                self.backend.send(lane, batch, prepared)
        except BaseException as exc:  # noqa: BLE001 - a failing feeder must not hang the caller
            self._break(BrokenPoolError(f"{self.name}: the feeding thread failed: {exc!r}"), exc)

    def _next_step(self) -> Batch | None:
        """Under the lock: the next batch to send, or None to stop."""
        idle = 0
        while not self.stopping and self._broken is None:
            self._waiting_on_input = False
            if self._free_lane() is not None:
                if self._resend:
                    return self._resend.popleft()
                batch = self._next_batch()
                if batch is not None:
                    # Ask for what replaces it now, not once the feed has run dry: the
                    # inlet pulls while this batch is prepared and sent.
                    self._reserve()
                    return batch
            if self._reserve():
                continue
            if self._waiting_on_input:
                # An inlet tells us when a chunk is complete, not when its first
                # items arrive: look again soon, less often the longer it takes.
                self._space.wait(min(_INPUT_POLL * 2 ** min(idle, 16), _INPUT_POLL_MAX))
            else:
                self._space.wait()
            idle += 1
        return None

    def _reserve(self) -> bool:
        """Reserve buffer credits for the next task in turn that needs input, and ask its inlet.

        Each task with an external input keeps about two batches asked for
        ahead of what it sends: enough to keep the lanes fed, and no more
        pulled than can be sent soon. Tasks take turns, so that one task does
        not take all the room while another waits. Returns whether it reserved.
        """
        if self._draining:
            return False
        room = self._limit - self.held
        if room <= 0:
            return False
        count = len(self.tasks)
        for step in range(count):
            task = self.tasks[(self._turn + step) % count]
            inlet = task.inlet
            if inlet is None or inlet.ended or inlet.closed:
                continue
            batch = self._batch_size(task)
            wanted = 2 * batch - inlet.want - len(inlet.feed)
            if wanted <= 0:
                continue
            n = min(self.stride, room, wanted)
            self.held += n
            inlet.ask(n, piece=batch)
            self._turn = (self._turn + step + 1) % count
            if self.held >= self._limit:
                # The buffer is full now: a consumer that began waiting before may
                # have to lend (see _lend), or tasks that feed each other through
                # their consumers (fan-out and fan-in on one NuMap) wait for ever.
                self._results.notify_all()
            return True
        return False

    def _next_batch(self) -> Batch | None:
        """A batch of whatever a task has ready, the tasks taking turns."""
        count = len(self.tasks)
        for step in range(count):
            task = self.tasks[(self._send_turn + step) % count]
            if task.exhausted:
                continue
            size = self._batch_size(task)
            batch = (self._take_input(task, size) if task.upstream is None
                     else self._take_upstream(task, size))
            if batch is not None:
                self._send_turn = (self._send_turn + step + 1) % count
                return batch
        return None

    def _take_upstream(self, task: TaskState, size: int) -> Batch | None:
        """Chaining: a batch of the results an earlier task of this NuMap has ready.

        The items keep the credits they hold upstream.
        """
        upstream = task.upstream
        assert upstream is not None
        if upstream.ready_count == 0:
            if upstream.finished() and not upstream.cur_size:
                self._end_input(task)
            return None
        items: list[Any] = []
        errors: dict[int, BaseException] = {}
        while upstream.ready and len(items) + len(errors) < size:
            chunk = upstream.ready[0]
            if isinstance(chunk, Raise):  # a failed upstream item fails here too, unevaluated
                upstream.ready.popleft()
                errors[len(items) + len(errors)] = chunk.exc
                continue
            want = size - len(items) - len(errors)
            if len(chunk) <= want:
                upstream.ready.popleft()
                taken = chunk
            else:
                taken = chunk[:want]
                upstream.ready[0] = chunk[want:]
            items.extend(taken)
        upstream.ready_count -= len(items) + len(errors)
        return self._new_batch(task, items, errors)

    def _new_batch(self, task: TaskState, items: list[Any],
                   errors: dict[int, BaseException]) -> Batch:
        """A batch of the next items of ``task``; ``errors`` holds the positions left out."""
        size = len(items) + len(errors)
        batch = Batch(task.id, next(self._ids), task.pulled, size, items)
        if errors:
            batch.positions = [p for p in range(size) if p not in errors]
            batch.errors = errors
        task.pulled += size
        task.undelivered[batch.id] = batch
        return batch

    def _take_input(self, task: TaskState, size: int) -> Batch | None:
        """A batch of what ``task``'s inlet has pulled."""
        inlet = task.inlet
        assert inlet is not None
        if inlet.unfilled:  # the input ended short of what was asked
            self.held -= inlet.unfilled
            inlet.unfilled = 0
        arrived = len(inlet.feed)
        if self._draining and inlet.want:  # what it is still pulling is abandoned
            self.held -= inlet.want
            inlet.want = 0
        if not arrived:
            if inlet.ended or self._draining:
                inlet.close()
                self._end_input(task)
            elif inlet.want:
                self._waiting_on_input = True
            return None
        if arrived < size and inlet.want and not self._draining:
            # The inlet is still pulling this batch: give it a moment to fill.
            now = time.monotonic()
            if task.partial_since is None:
                task.partial_since = now
            if now - task.partial_since < _LINGER:
                self._waiting_on_input = True
                return None
        task.partial_since = None
        items, errors = inlet.take(size)
        return self._new_batch(task, items, errors)

    def _end_input(self, task: TaskState) -> None:
        task.exhausted = True
        self._results.notify_all()
        self._space.notify_all()

    def _free_lane(self) -> Lane | None:
        best = None
        for lane in self._lanes:
            if lane.has_room() and (best is None or len(lane.outstanding) < len(best.outstanding)):
                best = lane
        return best

    def _batch_size(self, task: TaskState) -> int:
        if task.per_item is None:
            return 1
        # Large items: the held-items bound (set by their size) must fit a batch
        # for every lane, or one worker gets it all and the others wait.
        most = min(self.max_batch, max(1, self._limit // self._floor)) \
            if self._limit < self.buffer else self.max_batch
        if task.per_item <= 0:
            return most
        usual = self.backend.target_seconds / task.per_item
        size = max(1, min(most, int(usual)))
        inlet = task.inlet
        if inlet is None or not inlet.expected or not self._lanes:
            return size
        left = inlet.expected - inlet.taken
        if left <= 0:  # the hint was short: carry on as without one
            return size
        share = left // (_GUIDED * len(self._lanes))
        most = min(most, int(usual * self.backend.batch_stretch))
        least = min(most, max(1, int(usual / 10)))
        return max(1, min(most, max(least, share)))

    # -- results (called by the backend's threads) -----------------------------

    def done(self, lane: Lane, done: Done) -> None:
        batch = done.batch
        with self._lock:
            if self.stopping:
                return
            try:
                lane.outstanding.remove(batch)
            except ValueError:
                return  # a lane declared lost answered late: the batch was sent again
            self._losses_in_row = 0
            task = self.tasks[batch.task]
            if done.values:
                measured = done.seconds / len(done.values)
                task.per_item = measured if task.per_item is None else (
                    _SMOOTHING * measured + (1 - _SMOOTHING) * task.per_item)
                if done.nbytes and self._memory:
                    size = done.nbytes / len(done.values)
                    task.item_bytes = size if task.item_bytes is None else (
                        _SMOOTHING * size + (1 - _SMOOTHING) * task.item_bytes)
                    largest = max(t.item_bytes or 0 for t in self.tasks)
                    self._limit = max(min(self.buffer, int(self._memory / largest)),
                                      min(self.buffer, self._floor))
            errors = dict(batch.errors) if batch.errors else {}
            if done.failures:
                positions = batch.positions
                for failure in done.failures:
                    errors[positions[failure.position] if positions else failure.position] = (
                        failure.exc)
            if batch.positions is None and not errors:
                values = done.values
            else:
                values = [None] * batch.size
                places = batch.positions or range(batch.size)
                for position, value in zip(places, done.values, strict=False):
                    values[position] = value
            self._complete(batch, values, errors)
            self._space.notify()

    def _complete(self, batch: Batch, values: list[Any], errors: dict[int, BaseException]) -> None:
        parent = batch.parent
        if parent is not None:  # a piece of a split batch: one item
            offset = batch.start - parent.start
            assert parent.values is not None
            parent.values[offset] = values[0]
            if 0 in errors:
                parent.errors = parent.errors or {}
                parent.errors[offset] = errors[0]
            parent.remaining -= 1
            if parent.remaining:
                return
            batch, values, errors = parent, parent.values, parent.errors or {}
        batch.values = values
        batch.errors = errors or None
        batch.complete = True
        task = self.tasks[batch.task]
        if batch.id not in task.undelivered:
            return  # every item of it was skipped while it ran
        if self.ordered:
            self._deliver(task)
        else:
            del task.undelivered[batch.id]
            self._emit(task, batch)

    def _deliver(self, task: TaskState) -> None:
        """Ordered: emit the complete batches at the head of ``task``'s order."""
        undelivered = task.undelivered
        while undelivered:
            first = next(iter(undelivered.values()))
            if not first.complete:
                break
            del undelivered[first.id]
            self._emit(task, first)

    def _emit(self, task: TaskState, batch: Batch) -> None:
        values = batch.values
        assert values is not None
        errors, dropped = batch.errors, batch.dropped
        if task.tracked is not None:
            for position, value in enumerate(values):
                task.tracked[batch.start + position] = (
                    errors[position] if errors and position in errors else value)
        if not errors and not dropped:
            if values:
                task.ready.append(values)
                task.ready_count += len(values)
        else:
            run: list[Any] = []
            for position, value in enumerate(values):
                if dropped and position in dropped:
                    self.held -= 1
                elif errors and position in errors:
                    if run:
                        task.ready.append(run)
                        task.ready_count += len(run)
                        run = []
                    task.ready.append(Raise(errors[position]))
                    task.ready_count += 1
                else:
                    run.append(value)
            if run:
                task.ready.append(run)
                task.ready_count += len(run)
        # Neither the inputs nor the results are the batch's any more: a thread that
        # still has the batch (the feeder, until its next one) holds no array of them.
        batch.items = []
        batch.values = None
        self._results.notify_all()

    def lost(self, lane: Lane, loss: LaneLoss) -> None:
        with self._lock:
            if self.stopping:
                return
            lane.alive = False
            if lane in self._lanes:
                self._lanes.remove(lane)
            batches = list(lane.outstanding)
            lane.outstanding.clear()
            if loss.blameless:  # not an item's doing: every batch goes again as it is
                self._resend.extendleft(reversed(batches))
            else:
                self._losses_in_row += 1
            if batches and not loss.blameless:
                head, rest = batches[0], batches[1:]
                self._resend.extendleft(reversed(rest))
                if len(head.items) == 1:
                    self._fail_lost(head, loss)
                else:
                    self._resend.extendleft(reversed(self._split(head)))
            if self._losses_in_row > self._loss_limit:
                self._break(BrokenPoolError(
                    f"{self.name}: {self._losses_in_row} workers were lost in a row, the last "
                    f"because {loss.reason}"), None, locked=True)
                return
            self._space.notify_all()
        new = self.backend.replace(lane)
        with self._lock:
            if new is not None and not self.stopping:
                self._lanes.append(new)
            elif not self._lanes and not self.stopping:
                self._break(BrokenPoolError(f"{self.name}: no worker is left ({loss.reason})"),
                            None, locked=True)
            self._space.notify_all()

    def _split(self, batch: Batch) -> list[Batch]:
        """Pieces of one item each, to find which item killed a worker."""
        positions = batch.positions or list(range(len(batch.items)))
        batch.values = [None] * batch.size
        batch.remaining = len(batch.items)
        batch.errors = dict(batch.errors) if batch.errors else None
        return [Batch(batch.task, next(self._ids), batch.start + position, 1, [item],
                      parent=batch)
                for position, item in zip(positions, batch.items, strict=True)]

    def _fail_lost(self, batch: Batch, loss: LaneLoss) -> None:
        index = batch.start + (batch.positions[0] if batch.positions else 0)
        exc = WorkerLostError(
            f"{loss.reason} while it evaluated item {index} of task {batch.task}",
            exitcode=loss.exitcode, signal_name=loss.signal_name,
            worker=batch.lane.name if batch.lane else "", task=batch.task, index=index)
        errors = dict(batch.errors) if batch.errors else {}
        position = batch.positions[0] if batch.positions else 0
        errors[position] = exc
        values: list[Any] = [None] * batch.size
        self._complete(batch, values, errors)

    def _break(self, exc: BaseException, cause: BaseException | None,
               locked: bool = False) -> None:
        exc.__cause__ = cause
        if not locked:
            self._lock.acquire()
        try:
            if self._broken is None:
                self._broken = exc
                self._space.notify_all()
            self._results.notify_all()
        finally:
            if not locked:
                self._lock.release()

    # -- the consumer side ------------------------------------------------------

    def next_chunk(self, task: TaskState, timeout: float | None, block: bool
                   ) -> list[Any] | Raise:
        """Hand the consumer the next chunk of ``task``; ``StopIteration`` when there is none.

        Called when the consumer has read its chunk to the end: that chunk's
        credits go back to the buffer first. What the consumer must see as an
        exception comes as a :class:`Raise` chunk.
        """
        with self._lock:
            task.handed = None  # the chunk before was handed over: this is a new call
            if task.cur_size:
                self.held -= task.cur_size
                task.cur_size = 0
                self._space.notify()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if task.ready:
                    chunk = task.ready[0]
                    size = len(chunk)
                    try:
                        task.ready.popleft()
                    except BaseException:
                        # A Ctrl-C (raised as the call returns) must not take the chunk
                        # with it: it stays for the next call.
                        if not task.ready or task.ready[0] is not chunk:
                            task.ready.appendleft(chunk)
                        raise
                    # From here until the consumer has it, a Ctrl-C gives it back
                    # (give_back, called by the stream's source).
                    task.handed = chunk
                    task.ready_count -= size
                    task.cur_size = size
                    return chunk
                if self.stopped or self.stopping or task.finished():
                    raise StopIteration
                if self._broken is not None:
                    error = BrokenPoolError(str(self._broken))
                    error.__cause__ = self._broken
                    return Raise(error)
                if not block:
                    return self._timed_out(task, 0.0)
                if self.held >= self._limit:
                    self._lend(task)
                if deadline is None:
                    self._results.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return self._timed_out(task, timeout or 0.0)
                    self._results.wait(remaining)

    def give_back(self, task: TaskState) -> None:
        """Put the chunk :meth:`next_chunk` took for ``task`` back at the head of its
        ready chunks: it never reached the consumer (a Ctrl-C on its way)."""
        with self._lock:
            chunk = task.handed
            if chunk is None:
                return
            task.handed = None
            task.ready.appendleft(chunk)
            task.ready_count += len(chunk)
            task.cur_size = 0
            self._results.notify_all()

    def _timed_out(self, task: TaskState, timeout: float) -> Raise:
        if self.skip:
            self._drop_oldest(task)
        return Raise(TimeoutError(f"{self.name}: no result of task {task.id} within {timeout} s"))

    def skip_oldest(self, task: TaskState) -> None:
        """Drop the oldest pending item of ``task`` (see ``_drop_oldest``)."""
        with self._lock:
            self._drop_oldest(task)

    def _drop_oldest(self, task: TaskState) -> None:
        """Under the lock: skip the oldest item of ``task`` whose result has not come."""
        for batch in task.undelivered.values():
            dropped = batch.dropped or set()
            for position in range(batch.size):
                if position not in dropped:
                    dropped.add(position)
                    batch.dropped = dropped
                    if len(dropped) == batch.size:
                        # Nothing of it is wanted: do not let later results wait for it.
                        del task.undelivered[batch.id]
                        self.held -= batch.size
                        if self.ordered:
                            self._deliver(task)
                        self._space.notify()
                    return

    def _lend(self, task: TaskState) -> None:
        """Under the lock: let a waiting consumer's task pull beyond a full buffer.

        The buffer can be full of results of other tasks that their consumers
        have not reached yet (tasks read out of step, or chunks partly read).
        If nothing is on its way to ``task``, its input (the root of its chain)
        may pull one batch more than the buffer allows, so that a consumer never
        waits for ever; the overdraft is paid back as the results are read.
        """
        root = task
        while True:
            if root.undelivered or (root is not task and root.ready_count):
                return  # something is on its way already
            if root.upstream is None:
                break
            root = root.upstream
        inlet = root.inlet
        if (inlet is None or inlet.ended or inlet.want or inlet.feed or self._draining
                or not self.feeding):
            return
        n = max(1, min(self.max_batch, self.stride))
        self.held += n
        inlet.ask(n)
        self._space.notify()
