"""``Piper``: a Worker as a node of a pipeline, evaluated lazily or on a NuMap.

A Piper moves through explicit phases::

    new --connect()--> connected --start()--> started --stop()--> stopped
     ^                     |                                         |
     +----disconnect()-----+-----------------------------------------+

Items flow like this (``consume``, ``spawn`` and ``produce`` as in PaPy)::

    upstream readers --zip--> inboxes --consume--> [split to spawned tasks]
        --> Worker (here, or in a NuMap) --> [merge] --> produce --> Fanout
        --> one reader per downstream Piper (or the Piper's own ``next()``)

``spawn`` and ``stride`` change where and how items are evaluated, never the
order: results leave a Piper in the order its inputs came.
"""

from __future__ import annotations

import enum
import numbers
import operator
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numap
from numap import NuMap

from ._streams import Fanout, _Reader, consume, inboxes, merge, produce, split
from .errors import PiperError, PiperTimeoutError, WorkerError
from .worker import Worker, _first_error, worker_error

__all__ = ["Piper"]

# The types of failed items, checked once per item by linear Pipers.
_PIPER_ERRORS = frozenset({PiperError, PiperTimeoutError})

# Set on an error that ends a Piper's results (see ``_ending``).
_ENDS = "_papyflow_ends"


def _ending(error: BaseException) -> BaseException:
    """Mark ``error`` as the end of a Piper's results, not one item's failure.

    A parallel Piper downstream meets it as the failure of an input item (its
    NuMap pulled the inboxes); the mark tells it to raise the error again, as
    a linear Piper would, instead of passing on one failed item and ending.
    """
    setattr(error, _ENDS, True)
    return error


def _watched(source: Iterator[Any], k: int, ended: list[int]) -> Iterator[Any]:
    """The items of ``source``; ``k`` goes to ``ended`` when it ends."""
    yield from source
    ended.append(k)


class Phase(enum.Enum):
    NEW = "new"
    CONNECTED = "connected"
    STARTED = "started"
    STOPPED = "stopped"


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Piper: {name} must be a positive int, got {value!r}")
    return int(value)


@dataclass(slots=True)
class PiperStats:
    """What a Piper has given out: results, failed items, and when (``time.monotonic``)."""

    results: int = 0
    errors: int = 0
    first: float | None = None  # when its first result came
    last: float | None = None  # when its results ended
    # While a fused run of linear Pipers goes, its Pipers count their results
    # with the last one's (``results`` is set when the run ends).
    follows: PiperStats | None = None
    first_error: BaseException | None = None  # the cause of its first failed item

    def failed(self, error: BaseException) -> None:
        """Count a failed item (only failures pay for this); the first one's cause is kept."""
        self.errors += 1
        if self.first_error is None:
            self.first_error = error

    def as_dict(self) -> dict[str, Any]:
        """The statistics as a dict (``Plumber.stats['pipers']``), counted up to now."""
        seconds = (self.last - self.first) if self.first and self.last else None
        results = self.results if self.follows is None else self.follows.results
        return {"results": results, "errors": self.errors, "first": self.first,
                "last": self.last, "seconds": seconds, "first_error": self.first_error}


class _Inboxes:
    """The inboxes of a parallel Piper, made when its NuMap first reads them.

    With ``spawn`` they are dealt to the spawned tasks in turn; ``part(k)`` is
    what task ``k`` reads.
    """

    def __init__(self, piper: Piper) -> None:
        self._piper = piper
        self._lock = threading.Lock()
        self._parts: list[Iterator[Any]] | None = None

    def part(self, k: int) -> Iterable[Any]:
        return _Part(self, k)

    def length_hint(self) -> int:
        """How many inboxes are left, when the Piper reads one input that tells; else 0."""
        piper = self._piper
        head = piper._fused[0] if piper._fused else piper
        if (piper._fused_into is not None or piper.synchronized or head.spawn != 1
                or head.consume != 1 or len(head._sources) != 1
                or isinstance(head._sources[0], _Reader)):
            return 0
        try:
            return operator.length_hint(head._sources[0], 0)
        except Exception:  # noqa: BLE001 - a hint is only a hint
            return 0

    def get(self, k: int) -> Iterator[Any]:
        with self._lock:
            if self._parts is None:
                stream = self._piper._inboxes()
                spawn = self._piper.spawn
                self._parts = split(stream, spawn) if spawn > 1 else [stream]
            return self._parts[k]


class _Part:
    __slots__ = ("_inboxes", "_k")

    def __init__(self, inboxes: _Inboxes, k: int) -> None:
        self._inboxes = inboxes
        self._k = k

    def __iter__(self) -> Iterator[Any]:
        return self._inboxes.get(self._k)

    def __length_hint__(self) -> int:
        return self._inboxes.length_hint()


class Piper:
    """A processing node: a :class:`Worker` applied to each inbox of its upstream Pipers.

    Arguments (as in PaPy):

    - ``worker``: a Worker, a Piper (its Worker is used), a function or a
      sequence of functions or Workers.
    - ``parallel``: ``False`` (evaluate lazily in the thread that reads the
      results) or a :class:`numap.NuMap` (evaluate there; Pipers may share one).
    - ``consume``: inboxes given to the Worker at once; the Worker then gets a
      tuple with one entry per upstream Piper, each a tuple of ``consume``
      consecutive results.
    - ``produce``: items emitted per result: the result's elements, or the
      result repeated when ``repeat`` is true.
    - ``spawn``: tasks of this Piper in its NuMap; they take the inboxes in
      turn. For each upstream Piper ``u``, ``u.produce * u.spawn`` must equal
      ``consume * spawn``.
    - ``timeout``: seconds to wait for a result of a parallel Piper; a late
      result becomes a :class:`PiperTimeoutError` and the Piper goes on.
    - ``branch``: orders Pipers that are not upstream of one another (see Dagger).
    - ``debug``: raise a failed item's PiperError instead of passing it on.
    - ``name``: a name for logs, statistics and saved pipelines.
    - ``track``: keep ``{index: result}`` of each task (see ``tracked``): what
      the Worker returned (a failed item's ``WorkerError``), as a NuMap keeps
      it; a linear Piper keeps one dict per spawned copy too.
    - ``synchronized``: the inputs are streams of ``(data, start, end)`` data
      units, read as one synchronization group
      (:func:`papyflow.dataflow.units.synchronize`) instead of one item from
      each: the Worker gets a tuple with one
      :class:`~papyflow.dataflow.units.SyncedInput` per input, and each result
      leaves as a :class:`~papyflow.dataflow.units.Unit` covering the step's
      indices (a result that is a Unit already keeps its own range).

    A failed item leaves the Piper as a :class:`PiperError` whose ``args[0]``
    is the cause (the :class:`WorkerError`, a timeout, a lost worker process),
    and the Piper goes on with the next item.
    """

    def __init__(self, worker: Any, parallel: NuMap | bool = False, consume: int = 1,
                 produce: int = 1, spawn: int = 1, timeout: float | None = None,
                 branch: Any = None, debug: bool = False, name: str | None = None,
                 track: bool = False, repeat: bool = False,
                 synchronized: bool = False) -> None:
        if isinstance(worker, Piper):
            worker = worker.worker
        self.worker: Worker = worker if isinstance(worker, Worker) else Worker(worker)
        if parallel is not False and not isinstance(parallel, NuMap):
            raise TypeError(f"Piper: parallel must be False or a NuMap, got {parallel!r}")
        self.imap: NuMap | bool = parallel
        self.consume = _count("consume", consume)
        self.produce = _count("produce", produce)
        self.spawn = _count("spawn", spawn)
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, numbers.Real) or timeout <= 0):
            raise ValueError(f"Piper: timeout must be a positive number of seconds, "
                             f"got {timeout!r}")
        self.timeout = timeout
        self.branch = branch
        self.debug = bool(debug)
        self.track = bool(track)
        self.repeat = bool(repeat)
        self.synchronized = bool(synchronized)
        if self.synchronized and self.consume != 1:
            raise PiperError("Piper: a synchronized Piper takes one step of its inputs at a "
                             f"time; consume must be 1, got {self.consume}")
        if self.synchronized and self.produce != 1:
            # produce would split each Unit it gives (data, start, end) into three items
            raise PiperError("Piper: a synchronized Piper gives one Unit per step; produce "
                             f"must be 1, got {self.produce}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Piper: name must be a str, got {name!r}")
        self.name = name or f"{self.worker.name}_{id(self):x}"
        self.phase = Phase.NEW
        self.inbox: list[Any] = []  # upstream Pipers and input iterables, in order
        self.tracked: list[dict[int, Any]] = []  # one {index: result} per task
        self._fanout = Fanout()
        self._own: Iterator[Any] | None = None
        self._sources: list[Any] = []  # upstream readers and input iterables, in order
        self._tasks: list[numap.NuMapTask] = []
        self._fused: list[Piper] = []  # the Pipers whose Workers this one's task runs first
        self._fused_into: Piper | None = None  # the Piper whose task runs this one's Worker
        self._ranges: deque[tuple[int, int] | None] = deque()  # synchronized: steps in flight
        # Set by Plumber.stop: inputs may end unevenly (a synchronized Piper then ends quietly).
        self._stopping = False
        self.stats = PiperStats()

    # -- state ------------------------------------------------------------------

    @property
    def parallel(self) -> bool:
        return self.imap is not False

    @property
    def connected(self) -> bool:
        return self.phase is not Phase.NEW

    @property
    def started(self) -> bool:
        return self.phase is Phase.STARTED

    @property
    def task_ids(self) -> list[int]:
        """This Piper's task numbers in its NuMap (one per spawned copy)."""
        return [t.task for t in self._tasks]

    def _reader(self) -> Iterator[Any]:
        """A new reader of this Piper's results (for a Piper downstream)."""
        if self.phase is Phase.STARTED:
            raise PiperError(f"piper {self.name!r} has started: connect Pipers before start")
        return self._fanout.reader()

    # -- connect ----------------------------------------------------------------

    def connect(self, inbox: Sequence[Any]) -> None:
        """Connect to the upstream Pipers (or input iterables) in ``inbox``, in that order."""
        if self.phase is not Phase.NEW:
            raise PiperError(f"piper {self.name!r} is already connected")
        if isinstance(inbox, (Piper, str, bytes)) or not isinstance(inbox, Sequence):
            raise PiperError(f"piper {self.name!r}: connect takes a sequence of Pipers or "
                             f"input iterables, got {inbox!r}")
        if not inbox:
            raise PiperError(f"piper {self.name!r}: connect needs at least one input")
        for upstream in inbox:
            if isinstance(upstream, Piper) and upstream.phase is Phase.STARTED:
                upstream._reader()  # raises: no reader is added to a started Piper
            if isinstance(upstream, Piper) and not self.synchronized:
                rate = upstream.produce * upstream.spawn
                if rate != self.consume * self.spawn:
                    raise PiperError(
                        f"cannot connect {upstream.name!r} to {self.name!r}: upstream "
                        f"produce x spawn = {upstream.produce} x {upstream.spawn} = {rate}, "
                        f"downstream consume x spawn = {self.consume} x {self.spawn} = "
                        f"{self.consume * self.spawn}; they must be equal")
            elif not isinstance(upstream, Iterable):
                raise PiperError(f"piper {self.name!r}: an input must be a Piper or an "
                                 f"iterable, got {upstream!r}")
        if isinstance(self.imap, NuMap):
            # First: a NuMap that has started refuses the first task, before
            # anything is changed (a reader left on an upstream would keep all
            # of its results for nobody).
            inboxes = _Inboxes(self)
            self._tasks = [self.imap.add_task(self.worker, inboxes.part(k), track=self.track)
                           for k in range(self.spawn)]
            if self.track:
                self.tracked = [self.imap.get_tracked(t.task) for t in self._tasks]
        else:
            self.tracked = [{} for _ in range(self.spawn)] if self.track else []
        # Readers now (each upstream must know how many read it); the streams
        # themselves when the Piper starts, when a reader without company can
        # read its upstream's results directly.
        self._sources = [u._reader() if isinstance(u, Piper) else u for u in inbox]
        self.inbox = list(inbox)
        self.phase = Phase.CONNECTED

    __call__ = connect

    def disconnect(self, forced: bool = False) -> None:
        """Undo :meth:`connect` (a started Piper must be stopped first, unless ``forced``)."""
        if self.phase is Phase.NEW:
            return
        if self.phase is Phase.STARTED:
            if not forced:
                raise PiperError(f"piper {self.name!r} is running: stop it before disconnect")
            self.stop(forced=True)
        if (isinstance(self.imap, NuMap) and self._tasks
                and (not self.imap.started or self.imap.stopped)):
            ours = set(self.task_ids)
            last = len(self.imap._tasks)
            if ours == set(range(last - len(ours), last)):
                self.imap.pop_task(len(ours))
            elif not forced:
                raise PiperError(f"piper {self.name!r}: its tasks are not the last ones of "
                                 f"its NuMap; disconnect the Pipers after it first")
        self._tasks = []
        self._sources = []
        self._fused = []
        self._fused_into = None
        self._own = None
        self._stopping = False
        self.stats = PiperStats()
        self._fanout = Fanout()
        self.inbox = []
        self.tracked = []
        self.phase = Phase.NEW

    # -- start, stop --------------------------------------------------------------

    def start(self, stages: Sequence[int] | None = None) -> None:
        """Make the Piper ready to give results.

        Stage 0 sets up its output; stages 1 and 2 start its NuMap (see
        :meth:`numap.NuMap.start`). Pipers that share a NuMap are started
        upstream first with stages (0, 1), then all with stage (2,).
        """
        if stages is None:
            stages = (0, 1, 2) if self.parallel else (0,)
        if self.phase is Phase.NEW:
            raise PiperError(f"piper {self.name!r}: connect it before start")
        if self.phase is Phase.STOPPED:
            raise PiperError(f"piper {self.name!r} was stopped: disconnect and connect it again")
        if 0 in stages and self._own is None and self.phase is Phase.CONNECTED:
            results = self._results()
            if self.produce > 1:
                results = produce(results, self.produce, self.repeat, self.name,
                                  self._unproduced)
            self._fanout.feed(results)
            if not self._fanout.readers:  # an output Piper: read through next()
                self._own = self._fanout.reader().resolve()
            self.phase = Phase.STARTED
        if isinstance(self.imap, NuMap):
            numap_stages = tuple(s for s in stages if s in (1, 2))
            if numap_stages:
                self.imap.start(stages=numap_stages)

    def stop(self, forced: bool = False, ends: Sequence[int] | None = None) -> None:
        """Stop the Piper and its NuMap (``ends`` and ``forced`` as in NuMap.stop)."""
        if self.phase is Phase.STOPPED or self.phase is Phase.NEW:
            return
        if isinstance(self.imap, NuMap):
            self.imap.stop(ends=ends, forced=forced)
        self.phase = Phase.STOPPED

    # -- results --------------------------------------------------------------------

    def _inboxes(self) -> Iterator[Any]:
        """The inboxes of this Piper: its upstream results zipped, grouped by ``consume``.

        Fused (see ``_fuse``): the inboxes of the run's first Piper, and none
        for the Pipers whose Workers a later Piper's task runs.
        """
        if self._fused_into is not None:
            return iter(())
        head = self._fused[0] if self._fused else self
        sources = [s.resolve() if isinstance(s, _Reader) else iter(s) for s in head._sources]
        if self.synchronized:
            return self._steps(sources)
        stream: Iterator[Any] = inboxes(sources)
        if head.consume > 1:
            stream = consume(stream, head.consume)
        return stream

    def _steps(self, sources: list[Iterator[Any]]) -> Iterator[Any]:
        """A synchronized Piper's inboxes; the range of each goes to ``_ranges``."""
        from .dataflow.units import synchronize  # the dataflow layer, only when used

        ranges = self._ranges
        ended: list[int] = []  # the inputs that have ended
        try:
            for step in synchronize([_watched(s, k, ended) for k, s in enumerate(sources)]):
                if isinstance(step, PiperError):  # an upstream failure without a range
                    ranges.append(None)
                    yield (step,)
                else:
                    ranges.append((step.start, step.end))
                    yield step.inbox
        except Exception as exc:  # a gap, an overlap, an upstream that ended failing
            if not self._stopped_short(exc, ended):
                raise

    def _stopped_short(self, error: BaseException, ended: list[int]) -> bool:
        """Whether ``error`` of a synchronization group only says that Plumber.stop
        cut its inputs short, each where it was (``ended`` lists the inputs that
        ended): the steps they covered have their results, and that is the end.
        Any other error is marked as the end of this Piper's results (``_ending``).
        """
        if ended and self._stopping and not getattr(error, _ENDS, False):
            return True
        _ending(error)
        return False

    def _units(self, results: Iterator[Any]) -> Iterator[Any]:
        """A synchronized Piper's results as Units, each with the range of its step."""
        from .dataflow.units import Unit

        ranges = self._ranges
        for result in results:
            span = ranges.popleft()
            if span is None or isinstance(result, Unit):
                yield result
            else:
                yield Unit(result, *span)
            del result  # (as in _plain)

    def _results(self) -> Iterator[Any]:
        if self.synchronized:
            self._ranges = deque()
            return self._units(self._evaluated())
        return self._evaluated()

    def _evaluated(self) -> Iterator[Any]:
        if isinstance(self.imap, NuMap):
            parts = [self._task_results(self.imap, t) for t in self._tasks]
            return parts[0] if len(parts) == 1 else merge(parts)
        if self._fused_into is not None:  # a later Piper evaluates this one's Worker
            return iter(())
        if self._fused:
            source = self._fused[0]._sources[0]
            return self._plain_run(source.resolve() if isinstance(source, _Reader)
                                   else iter(source))
        if (self.plain and len(self._sources) == 1 and self.consume == 1 and not self.track
                and not self._reads_units):
            source = self._sources[0]
            return self._plain(source.resolve() if isinstance(source, _Reader) else iter(source))
        return self._linear(self._inboxes())

    @property
    def _reads_units(self) -> bool:
        """Whether an upstream Piper is synchronized: its results are Units, failed ones too."""
        return any(isinstance(u, Piper) and u.synchronized for u in self.inbox)

    @property
    def plain(self) -> bool:
        """Whether the Worker is one function without arguments, and nothing else is asked."""
        worker = self.worker
        return (not self.synchronized and len(worker.task) == 1 and not worker.args[0]
                and not worker.kwargs[0])

    def _plain_run(self, items: Iterator[Any]) -> Iterator[Any]:
        """``_plain`` for a fused run of linear Pipers ending with this one (see ``_fuse``)."""
        run = [*self._fused, self]
        stages = tuple((p.worker.task[0], k) for k, p in enumerate(run))
        stats = [p.stats for p in run]
        own = self.stats
        began = time.monotonic()
        for entry in stats:
            entry.first = began
            entry.follows = None if entry is own else own
        failed = _PIPER_ERRORS
        tracked = self.tracked[0] if self.tracked else None
        last = len(run) - 1
        count = 0
        try:
            for item in items:
                result = item
                if type(item) not in failed:  # failed upstream: passed on, nothing called
                    for func, k in stages:
                        try:
                            result = func((result,))
                        except Exception as exc:  # noqa: BLE001 - the item fails, as a value
                            stats[k].failed(exc)
                            error = worker_error(func, (result,), exc)
                            if k == last and tracked is not None:  # as _linear keeps it
                                tracked[count] = error
                            result = run[k]._failed(error)
                            break
                if tracked is not None:
                    tracked.setdefault(count, result)
                count += 1
                own.results = count  # the others follow it
                yield result
                del item, result  # (as in _plain)
        finally:
            ended = time.monotonic()
            for entry in stats:
                entry.results = count
                entry.last = ended
                entry.follows = None

    def _plain(self, items: Iterator[Any]) -> Iterator[Any]:
        """``_linear`` for the usual case: one function, one upstream Piper, nothing else.

        Every linear Piper pays this loop per item, so it stays this short.
        """
        func = self.worker.task[0]
        stats = self.stats
        stats.first = time.monotonic()
        failed = _PIPER_ERRORS
        for item in items:
            if type(item) in failed:
                result = item  # failed upstream: passed on, nothing called
            else:
                try:
                    result = func((item,))
                except Exception as exc:  # noqa: BLE001 - the item fails, as a value
                    stats.failed(exc)
                    result = self._failed(worker_error(func, (item,), exc))
            stats.results += 1
            yield result
            # Neither held while the next item is awaited: a large array's memory goes
            # as soon as its reader drops it, not one item later.
            del item, result
        stats.last = time.monotonic()

    def _failed(self, cause: BaseException) -> PiperError:
        error = PiperError(cause)
        if self.debug:  # raise, with the original exception (and its traceback) as the cause
            original = cause.exception if isinstance(cause, WorkerError) else cause
            raise _ending(error) from (original or cause)
        return error

    def _unproduced(self, cause: BaseException) -> PiperError:
        """The failure of a result that ``produce`` cannot split: an item failed here."""
        self.stats.failed(cause)
        return self._failed(cause)

    def _broken(self, cause: BaseException) -> PiperError:
        # Not one item's failure: the NuMap would raise it again for every next
        # item, so the stream ends here with it instead of failing without end.
        error = PiperError(f"piper {self.name!r}: its NuMap cannot go on: {cause}")
        _ending(error)
        return error

    def _linear(self, stream: Iterator[Any]) -> Iterator[Any]:
        """Evaluate the Worker here, one inbox at a time, as results are read."""
        worker = self.worker
        tracked = self.tracked or None
        copies = len(self.tracked)
        single = worker.task[0] if (len(worker.task) == 1 and not worker.args[0]
                                    and not worker.kwargs[0]) else None
        stats = self.stats
        stats.first = time.monotonic()
        index = -1
        for inbox in stream:  # (not enumerate: it keeps its last pair, the inbox in it)
            index += 1
            # The usual case, a single plain function, without the Worker's loop.
            if single is not None and _first_error(inbox) is None:
                try:
                    result = single(inbox)
                except Exception as exc:  # noqa: BLE001 - the item fails, as a value
                    result = worker_error(single, inbox, exc)
            else:
                result = worker(inbox)
            if tracked is not None:  # what the Worker gave, as a NuMap keeps it
                tracked[index % copies][index // copies] = result
            if isinstance(result, WorkerError):
                stats.failed(result)
                result = self._failed(result)
            stats.results += 1
            yield result
            del inbox, result  # (as in _plain)
        stats.last = time.monotonic()

    def _task_results(self, imap: NuMap, task: numap.NuMapTask) -> Iterator[Any]:
        """Results of one of this Piper's NuMap tasks, failures as PiperErrors."""
        tid = task.task
        timeout = self.timeout
        stream = iter(imap.get_task(tid))
        stats = self.stats
        if stats.first is None:
            stats.first = time.monotonic()
        if self._fused:
            yield from self._fused_results(stream)
            return
        while True:
            try:
                result = next(stream) if timeout is None else imap.next(timeout, tid)
            except StopIteration:
                stats.last = time.monotonic()
                return
            except numap.BrokenPoolError as exc:
                stats.last = time.monotonic()
                raise self._broken(exc) from exc
            except numap.TimeoutError as exc:
                if not imap.skip:
                    imap._skip_oldest(tid)
                stats.failed(exc)
                result = PiperTimeoutError(exc)
                if self.debug:
                    raise _ending(result) from exc
            except Exception as exc:  # a lost worker, an unpicklable item, an upstream end
                if getattr(exc, _ENDS, False):  # an upstream Piper's results ended so
                    stats.last = time.monotonic()
                    raise
                stats.failed(exc)
                result = self._failed(exc)
            else:
                if isinstance(result, WorkerError):
                    stats.failed(result)
                    result = self._failed(result)
            stats.results += 1
            yield result
            del result  # (as in _plain)

    def _fused_results(self, stream: Iterator[Any]) -> Iterator[Any]:
        """``_task_results`` of a fused run's last Piper: it keeps the run's statistics too."""
        run = self._fused
        stats = self.stats
        for piper in run:
            piper.stats.first = stats.first
        while True:
            try:
                result = next(stream)
            except StopIteration:
                break
            except numap.BrokenPoolError as exc:
                stats.last = time.monotonic()
                raise self._broken(exc) from exc
            except Exception as exc:  # a lost worker, an unpicklable item, an upstream end
                if getattr(exc, _ENDS, False):  # an upstream Piper's results ended so
                    stats.last = time.monotonic()
                    raise
                stats.failed(exc)
                result = self._failed(exc)
            else:
                if isinstance(result, WorkerError):
                    stats.failed(result)
                    result = self._failed(result)
                elif isinstance(result, PiperError) and "stage" in result.__dict__:
                    run[result.__dict__.pop("stage")].stats.failed(result.args[0])
            for piper in run:
                piper.stats.results += 1
            stats.results += 1
            yield result
            del result  # (as in _plain: a large array's segment goes back to its worker)
        stats.last = time.monotonic()
        for piper in run:
            piper.stats.last = stats.last

    def next(self) -> Any:
        """The next result of this (output) Piper; a failed item is a returned PiperError."""
        if self._own is None:
            if self.phase is not Phase.STARTED:
                raise PiperError(f"piper {self.name!r} has not started")
            raise PiperError(f"piper {self.name!r} feeds other Pipers; read those instead")
        return next(self._own)

    __next__ = next

    def __iter__(self) -> Iterator[Any]:
        # The results themselves once started: the fast way to read them.
        return self._own if self._own is not None else self

    def __repr__(self) -> str:
        kind = "parallel" if self.parallel else "linear"
        return f"<Piper {self.name!r} {kind} {self.phase.value}>"
