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
from collections.abc import Iterable
from typing import Any

from ._errors import BrokenPoolError, StalledError, TimeoutError, WorkerLostError
from ._tasks import Raise, TaskState
from .backends.base import Backend, Batch, Done, Lane, LaneLoss

__all__ = ["Scheduler"]

# A consumer that waits this long on a full buffer that nobody drains gets StalledError.
STALL_SECONDS = 5.0
# Weight of the newest measurement in a task's seconds-per-item estimate.
_SMOOTHING = 0.5


class Scheduler:
    """Runs the tasks of one NuMap on one backend. Its methods are thread-safe."""

    def __init__(self, backend: Backend, tasks: list[TaskState], *, stride: int, buffer: int,
                 max_batch: int, ordered: bool, skip: bool, name: str) -> None:
        self.backend = backend
        self.tasks = tasks
        self.stride = stride
        self.buffer = buffer
        self.max_batch = max_batch
        self.ordered = ordered
        self.skip = skip
        self.name = name
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # the feeder waits here
        self._results = threading.Condition(self._lock)  # consumers wait here
        self.held = 0
        self._lanes: list[Lane] = []
        self._resend: deque[Batch] = deque()
        self._ids = itertools.count()
        self._turn = 0
        self._quota = stride
        self._feeder_waiting = False
        self._changes = 0  # bumped on every event a stalled consumer could be waiting for
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
        self._feeder = threading.Thread(target=self._feed, daemon=True,
                                        name=f"{self.name}-feeder")
        self._feeder.start()

    def drain(self, ends: Iterable[int]) -> None:
        """Stop pulling inputs; let the items pulled flow through, discarding ``ends``' results."""
        with self._lock:
            self._draining = True
            self._space.notify_all()
        for tid in ends:
            state = self.tasks[tid]
            while True:
                try:
                    next(state.cur)
                    continue
                except StopIteration:
                    pass
                try:
                    self.next_chunk(state, None, True)
                except StopIteration:
                    break
                except BaseException:  # noqa: BLE001 - draining discards failures too
                    if self.stopped or self._broken is not None:
                        break

    def stop(self, forced: bool = False) -> None:
        """Stop feeding, stop the workers and wake every waiting consumer."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
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
                task.cur = iter(())
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
                batch = step if isinstance(step, Batch) else self._pull(*step)
                if batch is None:
                    continue
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

    def _next_step(self) -> Batch | tuple[TaskState, int] | None:
        """Under the lock: the next batch to send, or an input to pull from, or None to stop."""
        while not self.stopping and self._broken is None:
            if self._free_lane() is not None:
                if self._resend:
                    return self._resend.popleft()
                step = self._weave()
                if step is not None:
                    return step
            self._feeder_waiting = True
            self._changes += 1
            self._results.notify_all()
            self._space.wait()
            self._feeder_waiting = False
        return None

    def _weave(self) -> Batch | tuple[TaskState, int] | None:
        for _ in range(len(self.tasks) + 1):
            task = self.tasks[self._turn]
            if self._quota > 0 and not task.exhausted:
                step = self._take(task)
                if step is not None:
                    return step
            self._turn = (self._turn + 1) % len(self.tasks)
            self._quota = self.stride
        return None

    def _take(self, task: TaskState) -> Batch | tuple[TaskState, int] | None:
        size = min(self._batch_size(task), self._quota)
        upstream = task.upstream
        if upstream is None:
            if self._draining:
                self._end_input(task)
                return None
            room = self.buffer - self.held
            if room <= 0:
                return None
            size = min(size, room)
            self.held += size  # reserved; what the input does not give back is returned
            self._quota -= size
            return task, size
        if upstream.ready_count == 0:
            if upstream.finished() and not upstream.cur_size:
                self._end_input(task)
            return None
        # Chaining: the items keep the credits they hold upstream.
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
        count = len(items) + len(errors)
        upstream.ready_count -= count
        self._quota -= count
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

    def _pull(self, task: TaskState, size: int) -> Batch | None:
        """Outside the lock: pull up to ``size`` items from an external input."""
        source = task.source
        assert source is not None
        values: list[Any] = []
        errors: dict[int, BaseException] = {}
        ended = False
        while len(values) + len(errors) < size:
            want = size - len(values) - len(errors)
            before = len(values)
            try:
                # extend keeps the items islice gave before an exception.
                values.extend(itertools.islice(source, want))
            except Exception as exc:  # noqa: BLE001 - an input's error is that item's result
                errors[len(values) + len(errors)] = exc
                continue
            if len(values) - before < want:
                ended = True
                break
        with self._lock:
            count = len(values) + len(errors)
            self.held -= size - count
            if ended:
                self._end_input(task)
            if self.stopping or count == 0:
                self.held -= count
                return None
            return self._new_batch(task, values, errors)

    def _end_input(self, task: TaskState) -> None:
        task.exhausted = True
        self._changes += 1
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
        if task.per_item <= 0:
            return self.max_batch
        return max(1, min(self.max_batch, int(self.backend.target_seconds / task.per_item)))

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
                positions = batch.positions or range(batch.size)
                for position, value in zip(positions, done.values, strict=False):
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
        if self.ordered:
            undelivered = task.undelivered
            while undelivered:
                first = next(iter(undelivered.values()))
                if not first.complete:
                    break
                del undelivered[first.id]
                self._emit(task, first)
        else:
            del task.undelivered[batch.id]
            self._emit(task, batch)

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
        batch.items = []  # the inputs are no longer needed
        self._changes += 1
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
            self._losses_in_row += 1
            if batches:
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
                      suspect=True, parent=batch)
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
            self._changes += 1
            self._space.notify_all()
            self._results.notify_all()
        finally:
            if not locked:
                self._lock.release()

    # -- the consumer side ------------------------------------------------------

    def next_chunk(self, task: TaskState, timeout: float | None, block: bool) -> Any:
        """Hand the consumer the next chunk of ``task`` and return its first result.

        Called when the consumer has read its chunk to the end: its credits go
        back to the buffer first.
        """
        with self._lock:
            if task.cur_size:
                self.held -= task.cur_size
                task.cur_size = 0
                self._space.notify()
            deadline = None if timeout is None else time.monotonic() + timeout
            stall_mark: tuple[int, float] | None = None
            while True:
                if task.ready:
                    chunk = task.ready.popleft()
                    if isinstance(chunk, Raise):
                        task.ready_count -= 1
                        self.held -= 1
                        self._space.notify()
                        raise chunk.exc
                    task.ready_count -= len(chunk)
                    task.cur = iter(chunk)
                    task.cur_size = len(chunk)
                    return next(task.cur)
                if self.stopped or self.stopping or task.finished():
                    raise StopIteration
                if self._broken is not None:
                    raise BrokenPoolError(str(self._broken)) from self._broken
                if not block:
                    self._timed_out(task, 0.0)
                if deadline is None:
                    stall_mark = self._check_stall(task, stall_mark)
                    self._results.wait(STALL_SECONDS if stall_mark else None)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._timed_out(task, timeout or 0.0)
                    self._results.wait(remaining)

    def _timed_out(self, task: TaskState, timeout: float) -> None:
        if self.skip:
            self._drop_oldest(task)
        raise TimeoutError(f"{self.name}: no result of task {task.id} within {timeout} s")

    def _drop_oldest(self, task: TaskState) -> None:
        for batch in task.undelivered.values():
            dropped = batch.dropped or set()
            for position in range(batch.size):
                if position not in dropped:
                    dropped.add(position)
                    batch.dropped = dropped
                    return

    def _check_stall(self, task: TaskState, mark: tuple[int, float] | None
                     ) -> tuple[int, float] | None:
        """Raise StalledError when nothing can ever bring ``task`` a result."""
        stalled = (self.feeding and self._feeder_waiting and self.held >= self.buffer
                   and not self._resend and not any(lane.outstanding for lane in self._lanes))
        if not stalled:
            return None
        now = time.monotonic()
        if mark is None or mark[0] != self._changes:
            return (self._changes, now)
        if now - mark[1] < STALL_SECONDS * 0.99:
            return mark
        holders = ", ".join(f"task {t.id}: {t.ready_count}" for t in self.tasks if t.ready_count)
        raise StalledError(
            f"{self.name}: task {task.id} waits for results, but the buffer "
            f"({self.buffer} items) is full of results nobody takes ({holders}). Consume "
            f"the tasks in step, or give the NuMap a larger buffer.")
