"""Any ``concurrent.futures.Executor``: one future per batch, through ``submit`` only.

::

    caller thread        feeding thread (scheduler)              the executor's workers
    -------------        --------------------------              ----------------------
    next() <- task       send(): executor.submit(call, box) ---> call(box): run_batch()
    buffers <-----+      (a lane is a slot: one future at most)         |
                  |                                                     |
                  +-- done callback, in a thread of the executor <------+
                      unpack; Sink.done() / Sink.lost()

*The window.* The backend offers ``workers * prefetch`` lanes that hold one
batch each, so no more than that many futures are ever submitted and not
finished: each of ``workers`` workers of the executor has one batch running
and one waiting. The scheduler's buffer bounds what is pulled from the inputs
as with every backend. ``Executor.map`` is never called: it would pull its
whole input at once.

*Tasks.* A task travels as a :class:`_TaskCall`. A thread pool calls it as it
is. An executor that pickles it (a process pool, dask) gets its token and the
dill bytes of its :class:`~numap._execute.TaskSpec`, made once per task; a
worker process loads each task once and keeps the last few, so lambdas and
closures work as with ``worker_type='process'``. Items and results are pickled
by the executor as it always does; in a worker the call pickles its own
results, so that a result or exception that cannot be pickled fails its item
alone instead of the whole future.

*Futures that fail as a whole* (the executor could not pickle an item, dask
gave up on a task with ``KilledWorker``, someone cancelled a future): the
lane is reported lost, and the scheduler runs the batch's items again one by
one; a one-item batch whose future fails gets the executor's exception as its
result. An executor that is broken or shut down (``BrokenExecutor`` from a
future, any ``BrokenExecutor`` or ``RuntimeError`` from ``submit``) takes no
more work: its lanes are not replaced, and once they are all lost every
pending ``next()`` raises ``BrokenPoolError``.

The executor belongs to the caller: ``stop`` cancels the futures not started
and never shuts the executor down.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import itertools
import os
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import dill

from .._errors import format_exception, with_remote_traceback
from .._execute import ItemFailure, TaskSpec, run_batch
from .base import Backend, Batch, Done, Lane, LaneLoss, Sink

__all__ = ["ExecutorBackend", "check_executor", "default_workers"]

# Tasks a worker process keeps loaded (the newest ones).
_KEEP_LOADED = 64


def check_executor(executor: Any) -> cf.Executor:
    """``executor`` itself if it is a ``concurrent.futures.Executor``.

    Raises ValueError when it is missing and TypeError when it is something else.
    """
    if executor is None:
        raise ValueError("worker_type='executor' needs executor=: a concurrent.futures.Executor "
                         "(a ThreadPoolExecutor, a ProcessPoolExecutor, dask's "
                         "client.get_executor(), ...)")
    if not isinstance(executor, cf.Executor):
        raise TypeError(f"executor must be a concurrent.futures.Executor, not "
                        f"{type(executor).__name__}: {executor!r}")
    return executor


def default_workers(executor: cf.Executor) -> int:
    """How many workers ``executor`` has, when it tells (``_max_workers``).

    Raises ValueError, asking for ``worker_num``, when it does not.
    """
    workers = getattr(executor, "_max_workers", None)
    if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        return workers
    raise ValueError(f"worker_num: {type(executor).__name__} does not tell how many workers it "
                     f"has; pass worker_num=<how many batches it runs at once> (for dask: "
                     f"sum(client.nthreads().values()))")


# -- what travels to the executor's workers -------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    """The answer for one batch: a value per item (``None`` where it failed), the failures.

    ``values`` is ``None`` when no item ran (the task's function did not load).
    """

    values: list[Any] | None
    failures: list[ItemFailure]
    seconds: float


class _Items:
    """A batch's items as submitted.

    Opaque on purpose: dask neither walks the list looking for futures nor
    hashes the items to name the task (``__dask_tokenize__``); every
    submission has a key of its own.
    """

    __slots__ = ("items", "key")

    def __init__(self, key: str, items: list[Any]) -> None:
        self.key = key
        self.items = items

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Items, (self.key, self.items))

    def __dask_tokenize__(self) -> str:
        return self.key


class _TaskCall:
    """One task's function as the executor runs it: ``call(box)`` evaluates a batch.

    In this process it calls the function directly and returns an
    :class:`_Outcome`. Pickled, it is its token and the dill bytes of the
    task; the copy a worker loads (``remote``) returns its outcome pickled.
    """

    def __init__(self, token: str, spec: TaskSpec, payload: bytes | None = None,
                 remote: bool = False) -> None:
        self.token = token
        self.spec = spec
        self.remote = remote
        self.__name__ = f"numap-{getattr(spec.func, '__name__', 'task')}"  # dask names tasks so
        self._payload = payload
        self._call: Callable[[Any], Any] | None = None
        self._error: ItemFailure | None = None
        try:
            self._call = spec.caller()
        except Exception as exc:  # in a worker every item of the task fails with it
            if not remote:
                raise
            self._error = _portable(0, exc)

    def payload(self) -> bytes:
        """The task as dill bytes, made once (``recurse``: a function from ``__main__``
        takes the globals it uses, not all of ``__main__``)."""
        if self._payload is None:
            self._payload = dill.dumps(self.spec, protocol=5, recurse=True)
        return self._payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_task, (self.token, self.payload()))

    def __dask_tokenize__(self) -> str:
        return self.token

    def __call__(self, box: _Items) -> _Outcome | bytes:
        if self._error is not None:
            return _pack(_Outcome(None, [self._error], 0.0))
        assert self._call is not None
        values, failures, seconds = run_batch(self._call, box.items)
        if not self.remote:
            return _Outcome(values, failures, seconds)
        return _pack(_Outcome(values, [_portable(f.position, f.exc) for f in failures], seconds))


_loaded: OrderedDict[str, _TaskCall] = OrderedDict()
_loaded_lock = threading.Lock()


def _new_lock() -> None:
    # A child forked while another thread held the lock would wait on it for ever.
    global _loaded_lock
    _loaded_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock)


def _load_task(token: str, payload: bytes) -> _TaskCall:
    """Unpickle a task in a worker; each task is loaded once per process.

    Never raises: a task that does not load fails every item it is given.
    """
    with _loaded_lock:
        call = _loaded.get(token)
        if call is not None:
            _loaded.move_to_end(token)
            return call
    try:
        spec = dill.loads(payload)
    except Exception as exc:  # noqa: BLE001 - the items fail with it, the worker lives
        spec = TaskSpec(_unloadable)
        call = _TaskCall(token, spec, payload, remote=True)
        call._error = _portable(0, RuntimeError(
            f"the task's function could not be loaded in the executor's worker: {exc!r}"))
    else:
        call = _TaskCall(token, spec, payload, remote=True)
    with _loaded_lock:
        _loaded[token] = call
        while len(_loaded) > _KEEP_LOADED:
            _loaded.popitem(last=False)
    return call


def _unloadable(item: Any) -> Any:
    raise AssertionError("a task that did not load is never called")


def _portable(position: int, exc: BaseException) -> ItemFailure:
    """A failure that is sure to be pickled, with the worker's traceback as text."""
    tb = format_exception(exc)
    try:
        pickle.loads(pickle.dumps(exc, protocol=5))
    except Exception:  # noqa: BLE001 - any exception is replaced by one that travels
        exc = RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return ItemFailure(position, exc, tb)


def _pack(outcome: _Outcome) -> bytes:
    """Pickle ``outcome`` in the worker; a value that cannot be pickled fails its item."""
    try:
        return pickle.dumps(outcome, protocol=5)
    except Exception:  # noqa: BLE001 - the culprits are found value by value
        _fail_unpicklable(outcome)
    return pickle.dumps(outcome, protocol=5)


def _fail_unpicklable(outcome: _Outcome) -> None:
    """Replace each value that cannot be pickled by its item's failure."""
    assert outcome.values is not None
    for position, value in enumerate(outcome.values):
        try:
            pickle.dumps(value, protocol=5)
        except Exception as exc:  # noqa: BLE001 - the item's failure
            outcome.values[position] = None
            outcome.failures.append(_portable(position, TypeError(
                f"the result cannot be sent back from the executor's worker: {exc}")))


# -- the backend ---------------------------------------------------------------------------


class ExecutorBackend(Backend):
    """``worker_type='executor'``: batches run on the caller's ``executor``.

    ``workers`` is the parallelism NuMap uses on it: ``workers * prefetch``
    batches in flight at most.
    """

    target_seconds: ClassVar[float] = 0.02
    batch_stretch: ClassVar[float] = 8.0

    def __init__(self, workers: int, name: str, executor: cf.Executor) -> None:
        super().__init__(workers, name)
        self.executor = check_executor(executor)
        self._prefix = uuid.uuid4().hex[:16]
        self._keys = itertools.count()
        self._slots = itertools.count()
        self._calls: dict[int, _TaskCall] = {}
        self._pending: set[cf.Future[Any]] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._broken: str | None = None

    def _describe(self) -> str:
        return type(self.executor).__name__

    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        self.sink = sink
        # A thread pool runs the calls as they are: nothing to pickle.
        local = isinstance(self.executor, cf.ThreadPoolExecutor)
        for tid, spec in tasks.items():
            call = _TaskCall(f"{self._prefix}-task-{tid}", spec)
            if not local:
                try:
                    call.payload()
                except Exception as exc:
                    raise TypeError(f"task {tid}: its function {spec.func!r} cannot be sent to "
                                    f"the workers of {self._describe()}: {exc}") from exc
            self._calls[tid] = call
        return [self._new_lane() for _ in range(self.workers * self.prefetch)]

    def _new_lane(self) -> Lane:
        return Lane(f"{self.name}-slot-{next(self._slots)}", capacity=1)

    def replace(self, lane: Lane) -> Lane | None:
        if self._stopping or self._broken is not None:
            return None
        return self._new_lane()

    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        if not batch.items:  # every position failed upstream: nothing to evaluate
            self.sink.done(lane, Done(batch, [], [], 0.0))
            return
        if self._stopping:
            return
        box = _Items(f"{self._prefix}-{next(self._keys)}", batch.items)
        try:
            future = self.executor.submit(self._calls[batch.task], box)
        except Exception as exc:  # noqa: BLE001 - reported, never raised in the feeder
            self._failed(lane, batch, exc, refused=True)
            return
        with self._lock:
            self._pending.add(future)
            late = self._stopping
        if late:  # stop() ran meanwhile and did not see it
            future.cancel()
        future.add_done_callback(functools.partial(self._finished, lane, batch))

    # -- answers ------------------------------------------------------------------------

    def _finished(self, lane: Lane, batch: Batch, future: cf.Future[Any]) -> None:
        """The future's done callback, in a thread of the executor (or the feeder)."""
        with self._lock:
            self._pending.discard(future)
        if self._stopping:
            return
        exc = (cf.CancelledError(f"the future was cancelled outside {self.name}")
               if future.cancelled() else future.exception())
        if exc is not None:
            self._failed(lane, batch, exc)
            return
        try:
            done = self._done(batch, future.result())
        except Exception as error:  # noqa: BLE001 - a callback that raises would hang the caller
            done = _all_failed(batch, RuntimeError(
                f"{self.name}: the answer of {self._describe()} for a batch of task "
                f"{batch.task} could not be read: {error!r}"))
        self.sink.done(lane, done)

    def _done(self, batch: Batch, answer: _Outcome | bytes) -> Done:
        nbytes = 0
        if isinstance(answer, bytes):  # pickled by a worker (see _TaskCall)
            nbytes = len(answer)
            result: _Outcome = pickle.loads(answer)
            for failure in result.failures:
                with_remote_traceback(failure.exc, failure.traceback or "")
        else:
            result = answer
        if result.values is None:  # no item ran: the task's one failure is every item's
            return _all_failed(batch, result.failures[0].exc, result.failures[0].traceback)
        return Done(batch, result.values, result.failures, result.seconds, nbytes)

    def _failed(self, lane: Lane, batch: Batch, exc: BaseException, refused: bool = False) -> None:
        """The future of ``batch`` failed as a whole, or ``submit`` refused it."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, cf.BrokenExecutor) or (refused and isinstance(exc, RuntimeError)):
            if self._broken is None:  # the first cause is the one worth telling
                self._broken = (f"the executor {self._describe()} "
                                f"{'refused a batch' if refused else 'broke'} ({what})")
            self.sink.lost(lane, LaneLoss(self._broken))
        elif len(batch.items) > 1:
            # The scheduler runs its items again one by one: only the culprit fails.
            self.sink.lost(lane, LaneLoss(
                f"{self._describe()} failed a batch of {len(batch.items)} items as a whole "
                f"({what})"))
        else:
            index = batch.start + (batch.positions[0] if batch.positions else 0)
            exc.add_note(f"{self.name}: raised by {self._describe()} for item {index} of task "
                         f"{batch.task} (its future failed as a whole), not by the function")
            self.sink.done(lane, Done(batch, [None], [ItemFailure(0, exc)], 0.0))

    # -- stopping -----------------------------------------------------------------------

    def stop(self, forced: bool = False) -> None:
        """Cancel the futures not started; the executor itself is left running."""
        with self._lock:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
        # A running call cannot be interrupted here (dask's cancel does stop it); its
        # late answer is ignored.
        for future in pending:
            with contextlib.suppress(Exception):  # a closed dask client: nothing to cancel
                future.cancel()


def _all_failed(batch: Batch, exc: BaseException, tb: str | None = None) -> Done:
    """Every evaluated item of ``batch`` fails with ``exc``."""
    count = len(batch.items)
    return Done(batch, [None] * count, [ItemFailure(i, exc, tb) for i in range(count)], 0.0)
