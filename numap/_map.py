"""``NuMap``: the public face of the scheduler, with the reference's names and meanings."""

from __future__ import annotations

import atexit
import numbers
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Self

from ._auth import resolve_key
from ._execute import TaskSpec
from ._heap import KEEP_FREED
from ._policy import DEFAULT as DEFAULT_POLICY
from ._policy import check as check_policy
from ._remote import endpoint
from ._scheduler import Scheduler
from ._shm import usable_cpus
from ._tasks import NuMapTask, Raise, TaskState, make_stream
from .backends.base import Backend
from .backends.executor import ExecutorBackend, check_executor, default_workers
from .backends.mixed import MixedBackend
from .backends.process import ProcessBackend
from .backends.remote import RemoteBackend
from .backends.thread import ThreadBackend

__all__ = ["NuMap"]

WORKER_TYPES: dict[str, type[Backend]] = {"process": ProcessBackend, "thread": ThreadBackend,
                                          "executor": ExecutorBackend}

SHARED_MEMORY = 1 << 20
"""The default ``shared_memory``: arrays of at least 1 MiB cross to worker processes
through shared memory."""

# Items per worker in the default stride: room for batches of that many cheap items.
_STRIDE_PER_WORKER = 4096
# With the automatic buffer, the most bytes of items (as pickled) held at once.
_MEMORY = 256 * 2**20

_live: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """At interpreter exit (including after Ctrl-C), no worker is left behind."""
    for scheduler in list(_live):
        scheduler.stop(forced=True)


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}: {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_timeout(name: str, timeout: Any) -> None:
    """Raise for a ``timeout`` that is neither ``None`` nor a number of seconds >= 0."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{name}: timeout must be a number, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"{name}: timeout must not be negative, got {timeout}")


def _remote_hosts(worker_remote: Any) -> tuple[tuple[str, int], ...]:
    if not worker_remote:
        return ()
    hosts = []
    for entry in worker_remote:
        if (not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2
                or not isinstance(entry[0], str)):
            raise ValueError(f"worker_remote must hold ('host[:port]', worker_num) pairs, "
                             f"got {entry!r}")
        hosts.append((entry[0], _positive_int("worker_remote worker_num", entry[1])))
    return tuple(hosts)


class NuMap:
    """A lazy, buffered, multi-task parallel map over threads or processes.

    Like ``imap`` it evaluates a function on the items of an iterable lazily;
    unlike it, several tasks (function and iterable pairs) share one pool of
    workers and one buffer, and a task's iterable may be the results of an
    earlier task (chaining).

    Arguments:

    - ``func``, ``iterable``, ``args``, ``kwargs``: if ``func`` and ``iterable``
      are both given, they are added as the first task and the NuMap starts
      itself; giving only one of them is an error.
    - ``worker_type``: ``'process'`` (the default), ``'thread'``, or
      ``'executor'`` (the default when ``executor`` is given).
    - ``worker_num``: how many local workers; the number of CPUs by default.
      With an executor: how many batches it runs at once (NuMap keeps twice
      as many submitted); its ``_max_workers`` by default.
    - ``worker_remote``: ``(('host:port', n), ...)``: ``n`` workers on each
      ``numap-worker`` server, beside the ``worker_num`` local ones (give
      ``worker_num=0`` for remote workers only). See ``docs/distributed.md``.
    - ``shared_memory``: arrays (out-of-band pickle buffers) of at least this
      many bytes travel to and from local worker processes through shared
      memory instead of the pipe; ``None`` never. 1 MiB by default.
    - ``keep_freed``: bytes of freed memory each local worker process keeps
      for reuse (glibc's allocator: blocks up to 32 MiB come from its heap,
      trimmed only above this), so that stages making new large arrays reuse
      pages instead of faulting in fresh zeroed ones; ``None`` leaves the
      allocator as it is. 128 MiB by default.
    - ``shared_arrays``: arrays of at least ``shared_memory`` bytes that the
      tasks make in local worker processes are made in shared memory (numpy's
      memory handler of the worker process), so that a result goes back
      without a copy (``True``, the default, where numap's compiled allocator
      is installed); ``False``: they are made in private memory and copied into
      shared memory when sent. See ``docs/storage.md``.
    - ``worker_policy``: how the system schedules the local worker processes:
      ``'batch'`` (the default: their priority unchanged, but a worker that
      wakes up does not take the core of the running thread, which is often
      this process's thread feeding the workers), ``'normal'``, or ``'idle'``
      (only CPU time nothing else wants). Linux only; elsewhere the system's
      default. See ``docs/storage.md``.
    - ``remote_auth``: the key file shared with the servers (``$NUMAP_AUTH``
      by default; none for servers on loopback without a key).
    - ``stride``: the most items of one task asked for at a time, and the
      largest batch per worker; 4096 per worker by default.
    - ``buffer``: the most items held at once, in flight or finished and not yet
      consumed; at least ``stride``. Automatic by default: ``stride * (tasks +
      1)``, and no more than about 256 MiB of large items.
    - ``ordered``: results in input order (``True``) or as they finish.
    - ``skip``: when ``next`` times out, drop the late result (``True``) or keep
      it for a later call (``False``).
    - ``name``: a name for logs and saved pipelines; ``'numap_<id>'`` by default.
    - ``executor``: a ``concurrent.futures.Executor`` the batches are submitted
      to, one future per batch (``worker_type='executor'``). It stays the
      caller's: ``stop()`` cancels the futures not started and leaves it running.

    >>> from numap import NuMap
    >>> list(NuMap(abs, [-1, -2, 3], worker_type='thread', worker_num=2))
    [1, 2, 3]
    """

    def __init__(self, func: Callable[..., Any] | None = None,
                 iterable: Iterable[Any] | None = None,
                 args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 worker_type: str | None = None, worker_num: int | None = None,
                 worker_remote: Sequence[tuple[str, int]] | None = None,
                 stride: int | None = None, buffer: int | None = None, ordered: bool = True,
                 skip: bool = False, name: str | None = None,
                 executor: Executor | None = None,
                 remote_auth: str | os.PathLike[str] | None = None,
                 shared_memory: int | None = SHARED_MEMORY,
                 keep_freed: int | None = KEEP_FREED, shared_arrays: bool = True,
                 worker_policy: str = DEFAULT_POLICY) -> None:
        if worker_type is None:
            worker_type = "process" if executor is None else "executor"
        if worker_type not in WORKER_TYPES:
            raise ValueError(f"worker_type must be one of {sorted(WORKER_TYPES)}, "
                             f"got {worker_type!r}")
        if worker_type == "executor":
            self.executor: Executor | None = check_executor(executor)
        elif executor is not None:
            raise ValueError(f"executor= goes with worker_type='executor', not {worker_type!r}")
        else:
            self.executor = None
        self.worker_remote = _remote_hosts(worker_remote)
        self._given_worker_num = worker_num  # None: as many as where it runs (settings)
        if worker_num is None:
            worker_num = usable_cpus() if self.executor is None else default_workers(self.executor)
        self.worker_num = _positive_int("worker_num", worker_num,
                                        minimum=0 if self.worker_remote else 1)
        if self.worker_remote:
            if worker_type != "process":
                raise ValueError("worker_remote needs worker_type='process'")
            for address, _ in self.worker_remote:
                try:
                    endpoint(address)
                except ValueError as error:
                    raise ValueError(f"worker_remote: {error}") from None
        if remote_auth is not None and not isinstance(remote_auth, (str, os.PathLike)):
            raise TypeError(f"remote_auth must be the path of a key file, not "
                            f"{type(remote_auth).__name__}: {remote_auth!r}")
        # The key is read now: a missing or open key file fails here, not at start.
        self._remote_key = resolve_key(remote_auth) if self.worker_remote else None
        self.remote_auth = None if remote_auth is None else os.fspath(remote_auth)
        self.shared_memory = None if shared_memory is None else \
            _positive_int("shared_memory", shared_memory)
        self.keep_freed = None if keep_freed is None else \
            _positive_int("keep_freed", keep_freed, minimum=0)
        if not isinstance(shared_arrays, bool):
            raise TypeError(f"shared_arrays must be True or False, not "
                            f"{type(shared_arrays).__name__}: {shared_arrays!r}")
        self.shared_arrays = shared_arrays
        self.worker_policy = check_policy(worker_policy)
        self.worker_type = worker_type
        self.stride = (_STRIDE_PER_WORKER * self._all_workers if stride is None
                       else _positive_int("stride", stride))
        self._buffer = None if buffer is None else _positive_int("buffer", buffer)
        if stride is None and self._buffer is not None:
            self.stride = min(self.stride, self._buffer)  # an automatic stride fits the buffer
        if self._buffer is not None and self._buffer < self.stride:
            raise ValueError(f"buffer ({self._buffer}) must not be smaller than stride "
                             f"({self.stride})")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool, got {ordered!r}")
        if not isinstance(skip, bool):
            raise TypeError(f"skip must be a bool, got {skip!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self.ordered = ordered
        self.skip = skip
        self.name = name if name is not None else f"numap_{id(self)}"
        # As given (None: automatic), so that a saved pipeline rebuilds the same NuMap.
        self._given_stride = stride
        self._tasks: list[TaskState] = []
        self._streams: list[Iterator[Any]] = []  # one per task, shared by its consumers
        self._scheduler: Scheduler | None = None
        self._stages: set[int] = set()
        self._start_lock = threading.Lock()
        self._tasks_tracked: dict[int, dict[int, Any]] = {}
        self._finalizer: weakref.finalize | None = None
        if (func is None) != (iterable is None):
            missing = "iterable" if iterable is None else "func"
            raise ValueError(f"NuMap: func and iterable go together; {missing} is missing")
        if func is not None and iterable is not None:
            self.add_task(func, iterable, args, kwargs)
            self.start()

    # -- tasks ----------------------------------------------------------------

    @property
    def buffer(self) -> int:
        """The most items held at once (automatic until given or started)."""
        if self._buffer is not None:
            return self._buffer
        return self.stride * (len(self._tasks) + 1)

    @property
    def _all_workers(self) -> int:
        """Local and remote workers together."""
        return self.worker_num + sum(n for _, n in self.worker_remote)

    def _backend(self) -> Backend:
        """The pool the scheduler runs on: local, remote, both, or an executor."""
        if self.executor is not None:
            return ExecutorBackend(self.worker_num, self.name, self.executor)
        if not self.worker_remote:
            if self.worker_type == "process":
                return self._process_backend()
            return WORKER_TYPES[self.worker_type](self.worker_num, self.name)
        remote = RemoteBackend(sum(n for _, n in self.worker_remote), self.name,
                               self.worker_remote, self._remote_key)
        if not self.worker_num:
            return remote
        return MixedBackend(self._process_backend(), remote)

    def _process_backend(self) -> ProcessBackend:
        """The local worker processes, with this NuMap's settings for them."""
        return ProcessBackend(self.worker_num, self.name, self.shared_memory, self.keep_freed,
                              self.shared_arrays, self.worker_policy)

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this NuMap (automatic ones as ``None``).

        An automatic ``worker_num`` stays automatic: a NuMap rebuilt on another
        machine has as many workers as that machine has CPUs.

        An ``executor`` is not among them (it cannot be saved): a NuMap rebuilt
        from the settings of one with ``worker_type='executor'`` needs it again.
        """
        return {"worker_type": self.worker_type, "worker_num": self._given_worker_num,
                "worker_remote": self.worker_remote or None, "remote_auth": self.remote_auth,
                "shared_memory": self.shared_memory, "keep_freed": self.keep_freed,
                "shared_arrays": self.shared_arrays, "worker_policy": self.worker_policy,
                "stride": self._given_stride,
                "buffer": self._buffer, "ordered": self.ordered, "skip": self.skip,
                "name": self.name}

    @property
    def started(self) -> bool:
        """True once the pool has started (stage 1)."""
        return 1 in self._stages

    @property
    def stopped(self) -> bool:
        """True once stop() was called (until all tasks are popped)."""
        return self._scheduler is not None and self._scheduler.stopping

    def resize(self, worker_num: int) -> None:
        """Use ``worker_num`` local workers instead; only before start.

        An automatic ``stride`` (``stride=None``) follows the new number of
        workers, kept within a ``buffer`` given to the constructor; a given
        ``stride`` stays as it is. Raises RuntimeError once started, ValueError
        for a ``worker_num`` below 1 and TypeError for one that is not an int.
        """
        worker_num = _positive_int("worker_num", worker_num)
        if self.started:
            raise RuntimeError(f"{self.name}: cannot resize after start "
                               f"(it has {self.worker_num} workers)")
        self.worker_num = self._given_worker_num = worker_num
        if self._given_stride is None:
            stride = _STRIDE_PER_WORKER * self._all_workers
            self.stride = stride if self._buffer is None else min(stride, self._buffer)

    def add_task(self, func: Callable[..., Any], iterable: Iterable[Any],
                 args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 timeout: float | None = None, block: bool = True,
                 track: bool = False) -> NuMapTask:
        """Add a task: ``func(item, *args, **kwargs)`` for each item of ``iterable``.

        Returns the task's result iterator, which may be the ``iterable`` of a
        later task of this or another NuMap. ``timeout`` and ``block`` are the
        defaults of that iterator's ``next`` (see :meth:`next`). With ``track``
        the results (or exceptions) are also kept as ``{index: result}`` in
        ``get_tracked(task)``.
        """
        if self.started:
            raise RuntimeError(f"{self.name}: cannot add a task after start"
                               + (" (pop_task(True) first to reuse it)" if self.stopped else ""))
        if not callable(func):
            raise TypeError(f"add_task: func must be callable, got {func!r}")
        upstream = None
        source = None
        if isinstance(iterable, NuMapTask) and iterable.numap is self:
            upstream = iterable._state
        elif isinstance(iterable, Iterable) or hasattr(type(iterable), "__getitem__"):
            source = iterable  # iter() is called when the task starts, in its inlet
        else:
            raise TypeError(f"add_task: iterable must be iterable, got "
                            f"{type(iterable).__name__}")
        if args is None:
            args = ()
        elif isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
            raise TypeError(f"add_task: args must be a tuple, got {args!r}")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, Mapping):
            raise TypeError(f"add_task: kwargs must be a dict, got {kwargs!r}")
        _check_timeout("add_task", timeout)
        tid = len(self._tasks)
        state = TaskState(tid, TaskSpec(func, tuple(args), dict(kwargs)), source, upstream,
                          timeout=timeout, block=bool(block), tracked={} if track else None)
        self._streams.append(make_stream(self, state))
        if state.tracked is not None:
            self._tasks_tracked[tid] = state.tracked
        self._tasks.append(state)
        return NuMapTask(self, state, timeout, bool(block))

    def pop_task(self, number: int | bool) -> None:
        """Remove the last ``number`` tasks, or all of them if ``number`` is ``True``.

        Before start, or after stop: a stopped NuMap whose tasks are all popped
        is new again, and takes new tasks and a new start.
        """
        if self.started and not self.stopped:
            raise RuntimeError(f"{self.name}: cannot pop a task after start")
        if number is True:
            number = len(self._tasks)
        number = _positive_int("number", number)
        if number > len(self._tasks):
            raise ValueError(f"pop_task: there are only {len(self._tasks)} tasks, "
                             f"cannot pop {number}")
        for _ in range(number):
            state = self._tasks.pop()
            self._streams.pop()
            self._tasks_tracked.pop(state.id, None)
        if self.stopped and not self._tasks:
            self._scheduler = None
            self._stages = set()

    def get_task(self, task: int = 0, timeout: float | None = None,
                 block: bool = True) -> NuMapTask:
        """An iterator over the results of task number ``task``."""
        _check_timeout("get_task", timeout)
        return NuMapTask(self, self._state(task), timeout, block)

    def get_tracked(self, task: int = 0) -> dict[int, Any]:
        """The ``{index: result}`` kept for a task added with ``track=True``."""
        state = self._state(task)
        if state.tracked is None:
            raise ValueError(f"{self.name}: task {task} was not added with track=True")
        return state.tracked

    def _state(self, task: int) -> TaskState:
        if isinstance(task, bool) or not isinstance(task, int):
            raise TypeError(f"task must be an int, got {task!r}")
        if not 0 <= task < len(self._tasks):
            raise ValueError(f"{self.name}: there is no task {task} "
                             f"({len(self._tasks)} tasks)")
        return self._tasks[task]

    # -- results --------------------------------------------------------------

    def next(self, timeout: float | None = None, task: int = 0, block: bool = True) -> Any:
        """The next result of task ``task``.

        Raises the exception the function raised for that item (with the
        worker's traceback), ``numap.TimeoutError`` if no result comes within
        ``timeout`` seconds (or at once when ``block`` is false), and
        ``StopIteration`` when the task has no more results.
        """
        state = self._state(task)
        _check_timeout("next", timeout)
        state.call = (timeout, block)
        try:
            try:
                return next(self._streams[task])
            except StopIteration:
                if state.stream_ended:
                    raise
            # The stream ended early: a Ctrl-C came as it called its source, which
            # itertools.chain then dropped. A new stream goes on from the same place.
            self._streams[task] = make_stream(self, state)
            return next(self._streams[task])
        finally:
            state.call = None

    def _next_chunk(self, state: TaskState, timeout: float | None, block: bool
                    ) -> list[Any] | Raise:
        scheduler = self._scheduler
        if scheduler is None:
            return Raise(RuntimeError(f"{self.name}: next() before start()"))
        return scheduler.next_chunk(state, timeout, block)

    def _give_back(self, state: TaskState) -> None:
        """Put back the chunk of ``state`` taken and not handed over (a Ctrl-C)."""
        if self._scheduler is not None:
            self._scheduler.give_back(state)

    def _replace_func(self, task: int, func: Callable[..., Any]) -> None:
        """Give task ``task`` another function, before start (papyflow fuses Pipers so)."""
        if self.started:
            raise RuntimeError(f"{self.name}: cannot change a task after start")
        if not callable(func):
            raise TypeError(f"_replace_func: func must be callable, got {func!r}")
        state = self._state(task)
        state.spec = TaskSpec(func, state.spec.args, state.spec.kwargs)

    def _skip_oldest(self, task: int) -> None:
        """Drop the oldest pending item of ``task``: its result is discarded when it comes.

        What ``skip=True`` does after a timeout, for a caller that decides per call.
        """
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.skip_oldest(self._state(task))

    def __iter__(self) -> Iterator[Any]:
        """Task 0's results (its stream: the fast way to read them)."""
        if not self._tasks:
            raise RuntimeError(f"{self.name}: there is no task to iterate over")
        return self._streams[0]

    def __next__(self) -> Any:
        """Task 0's next result."""
        if not self._streams:
            raise RuntimeError(f"{self.name}: there is no task to take a result of")
        return next(self._streams[0])

    # -- lifecycle ------------------------------------------------------------

    def start(self, stages: Sequence[int] = (1, 2)) -> None:
        """Start the workers (stage 1) and the feeding of tasks (stage 2).

        Pipers that share a NuMap start it in two steps: every piper adds its
        tasks, then stage 1 and stage 2 run once.
        """
        for stage in stages:
            if stage not in (1, 2):
                raise ValueError(f"start: stages are 1 and 2, got {stage!r}")
        with self._start_lock:
            if self._scheduler is not None and self._scheduler.stopping:
                raise RuntimeError(f"{self.name}: a stopped NuMap starts again only after "
                                   f"pop_task(True) and new tasks")
            if 1 in stages and 1 not in self._stages:
                if not self._tasks:
                    raise RuntimeError(f"{self.name}: start() needs at least one task")
                backend = self._backend()
                scheduler = Scheduler(
                    backend, self._tasks, stride=self.stride, buffer=self.buffer,
                    max_batch=max(1, self.stride // max(self._all_workers, 1)),
                    ordered=self.ordered, skip=self.skip, name=self.name,
                    memory=_MEMORY if self._buffer is None else None)
                try:
                    scheduler.start_pool()
                except BaseException:
                    backend.stop(forced=True)  # what it opened before it failed
                    raise
                self._scheduler = scheduler
                self._stages.add(1)
                _live.add(scheduler)
                self._finalizer = weakref.finalize(self, scheduler.stop, True)
            if 2 in stages and 2 not in self._stages:
                if 1 not in self._stages or self._scheduler is None:
                    raise RuntimeError(f"{self.name}: stage 2 needs stage 1 first")
                self._scheduler.start_feeding()
                self._stages.add(2)

    def stop(self, ends: Sequence[int] | None = None, forced: bool = False) -> None:
        """Stop the workers and the feeding; iteration then ends.

        With ``ends`` (the numbers of the tasks whose results nobody inside the
        NuMap consumes), stopping first stops pulling inputs and waits until
        every item already pulled has been evaluated, discarding the results of
        those tasks. Without it, pending items are discarded at once; with
        ``forced`` workers are terminated without waiting for them to leave.
        """
        scheduler = self._scheduler
        if scheduler is None or scheduler.stopping:
            return
        if ends is not None:
            ends = [self._state(t).id for t in ends]
            if 2 in self._stages:
                scheduler.drain([self._streams[t] for t in ends])
        scheduler.stop(forced)
        _live.discard(scheduler)
        if self._finalizer is not None:  # it held the stopped pool (a NuMap may start again)
            self._finalizer.detach()
            self._finalizer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(forced=exc_info[0] is not None)

    def __repr__(self) -> str:
        state = ("stopped" if self._scheduler is not None and self._scheduler.stopping
                 else "started" if self.started else "new")
        return (f"<NuMap {self.name!r} {self.worker_type} x{self.worker_num}, "
                f"{len(self._tasks)} tasks, {state}>")
