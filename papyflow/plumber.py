"""``Plumber``: a Dagger with a runtime: start, run, pause, stop, wait.

::

    new/stopped --start(datas)--> started --run()--> running --pause()--> paused
                                                        |   <--run()---    |
                                                  (inputs end)           stop()
                                                        v                  v
                                                    finished --stop()--> stopped

``run`` pulls the results of the output Pipers in a thread of its own, so the
caller stays free to ``pause``, ``wait`` or watch ``stats``. ``pause`` holds the
inputs (no new item is taken) and returns at once; the thread stops pulling
once the result it waits for is in, and waits for ``run`` or ``stop``. ``stop``
closes the inputs, level where they meet at a fan-in Piper, then lets every
item already taken flow to the end, so that each has its result (and tracked
Pipers report it) before the NuMaps stop.
"""

from __future__ import annotations

import enum
import logging
import math
import operator
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from numap import INPUT_FAILURES_IN_ROW

from .dagger import Dagger
from .errors import PiperError, PlumberError
from .piper import Piper

__all__ = ["Plumber"]

log = logging.getLogger("papyflow.plumber")


class State(enum.Enum):
    NEW = "new"
    STARTED = "started"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"


class _Gate:
    """An input that can be held, and closed at a given number of items.

    ``hold()`` (pause) keeps the input from giving another item until
    ``release()``; ``close(limit)`` (stop) lets it give ``limit`` items in all
    and then end (end at once without a limit). An item is counted in ``taken``
    before the gate looks at either, and uncounted while it waits for
    ``release()``: once ``hold()`` has returned, an item counted is being taken
    (it will be given) and an item not counted will look at the limit first,
    so ``stop`` can set the limits from the counts.

    An input that raises gives a PiperError for that item, as a failed item of
    a Piper would be (a generator then ends; other iterators go on), until it
    has raised ``numap.INPUT_FAILURES_IN_ROW`` times in a row: then it ends, and
    ``broken`` holds its last exception.
    """

    __slots__ = ("_checked", "_last_failed", "_limit", "_open", "_source", "_streak", "broken",
                 "closed", "failed", "taken")

    def __init__(self, source: Iterable[Any]) -> None:
        self._source = iter(source)
        self.closed = False
        self.taken = 0
        self.failed = 0
        self._limit = math.inf  # items to give in all: set by close()
        self._open = threading.Event()  # cleared while held
        self._open.set()
        self._checked = False  # held or closed: each item looks at _open and _limit
        # Failures in a row, counted on failures only (nothing more per good item):
        # the streak goes on when the item before also failed.
        self._streak = 0
        self._last_failed = -2
        self.broken: BaseException | None = None

    def __iter__(self) -> _Gate:
        return self

    def __next__(self) -> Any:
        self.taken += 1  # before looking: see the class docstring
        if self._checked and not self._may_take():
            self.taken -= 1
            raise StopIteration
        try:
            item = next(self._source)
        except StopIteration:
            self.taken -= 1
            raise
        except Exception as exc:  # noqa: BLE001 - a failed input item fails alone
            item = PiperError(exc)
            self.failed += 1
            index = self.taken - 1
            self._streak = self._streak + 1 if self._last_failed == index - 1 else 1
            self._last_failed = index
            if self._streak >= INPUT_FAILURES_IN_ROW:
                self.broken = exc
                self.close()
        return item

    def _may_take(self) -> bool:
        if not self._open.is_set():  # held: not taken while it waits for run() or stop()
            self.taken -= 1
            self._open.wait()
            self.taken += 1
        return self.taken <= self._limit

    def __length_hint__(self) -> int:
        # What is left of the input, if it tells (NuMap sizes batches by it).
        left = operator.length_hint(self._source, 0)
        if self.closed:
            left = min(left, max(0, int(self._limit) - self.taken))
        return left

    def hold(self) -> None:
        """Give no item until :meth:`release` (an item being taken is given)."""
        self._checked = True
        self._open.clear()

    def release(self) -> None:
        self._open.set()
        self._checked = self.closed

    def close(self, limit: int | None = None) -> None:
        """End after ``limit`` items in all (``taken`` at most), or at once without one."""
        self._limit = min(self._limit, self.taken if limit is None else limit)
        self.closed = True
        self._checked = True


class _Count:
    """The results pulled from one output Piper, set once per result."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Plumber(Dagger):
    """A pipeline with its runtime.

    ``logger_options`` are passed to :func:`papyflow.util.config.start_logger`
    (nothing is configured when empty); the other arguments are those of
    :class:`Dagger`.

    ``stats`` holds ``'state'``, ``'started'``/``'finished'`` (``time.time()``),
    ``'run_time'`` (seconds running), ``'inputs_taken'`` and ``'input_errors'``
    (per input: items taken, and how many of them the input raised instead of
    giving), ``'results'`` (per
    output Piper), ``'pipers'`` (per Piper: results, errors, first, last,
    seconds, and first_error: the cause of its first failed item) and
    ``'pipers_tracked'`` (per tracked Piper: a list with one
    ``{index: result}`` per task).
    """

    def __init__(self, logger_options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if logger_options:
            from .util.config import start_logger
            start_logger(**logger_options)
        self.state = State.NEW
        self._gates: list[_Gate] = []
        self._thread: threading.Thread | None = None
        # Guards the state, which the pulling thread changes too; the thread
        # waits on it while paused.
        self._lock = threading.Condition()
        self._pausing = False  # read per result by the pulling thread
        self._draining = False  # stop() lets the taken items through the pulling thread
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._results: dict[Piper, _Count] = {}  # results pulled, per output Piper
        self._run_seconds = 0.0
        self._started_at: float | None = None
        self._finished_at: float | None = None

    # -- the state machine -------------------------------------------------------

    def _expect(self, action: str, *states: State) -> None:
        if self.state not in states:
            allowed = " or ".join(s.value for s in states)
            raise PlumberError(f"Plumber: cannot {action} a pipeline that is "
                               f"{self.state.value} (only when {allowed})")

    def start(self, datas: Sequence[Iterable[Any]]) -> None:  # type: ignore[override]
        """Connect the input Pipers to ``datas`` (one iterable each, in input order) and start."""
        self._expect("start", State.NEW, State.STOPPED)
        if self.state is State.STOPPED:
            self.disconnect(forced=True)
        if isinstance(datas, (str, bytes)) or not isinstance(datas, Sequence):
            raise PlumberError(f"Plumber: datas must be a sequence of one iterable per input "
                               f"piper, got {datas!r}")
        for position, data in enumerate(datas):
            if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
                raise PlumberError(f"Plumber: datas[{position}] must be an iterable of input "
                                   f"items, got {data!r}")
        self._gates = [_Gate(data) for data in datas]
        try:
            self.connect(self._gates)
            super().start()
        except BaseException:
            self.disconnect(forced=True)
            raise
        self._results = {piper: _Count() for piper in self.get_outputs()}
        self._thread = None
        self._pausing = False
        self._draining = False
        self._done.clear()
        self._error = None
        self._run_seconds = 0.0
        self._started_at = time.time()
        self._finished_at = None
        self.state = State.STARTED
        log.info("pipeline started: %d pipers, %d inputs", len(self), len(datas))

    def run(self) -> None:
        """Pull results from the output Pipers in a background thread (again after pause).

        Not after a ``stop()`` that a Ctrl-C interrupted: that pipeline is paused,
        but its inputs are closed, and only ``stop()`` again ends it.
        """
        with self._lock:
            self._expect("run", State.STARTED, State.PAUSED)
            if self._draining:  # the inputs are closed: it would never be finished
                raise PlumberError("Plumber: cannot run a pipeline whose stop() was "
                                   "interrupted; call stop() again to let the items taken "
                                   "through and stop")
            self._pausing = False
            self.state = State.RUNNING
            for gate in self._gates:
                gate.release()
            if self._thread is None:
                self._thread = threading.Thread(target=self._pull, name="papyflow-plumber",
                                                daemon=True)
                self._thread.start()
            else:  # paused: the thread waits to go on
                self._lock.notify_all()
        log.info("pipeline running")

    def pause(self) -> None:
        """Take no new input item, and stop pulling results once the current one is in.

        Returns at once: an item being evaluated goes on, and its result is
        kept (NuMaps keep theirs in their buffers) for :meth:`run` or
        :meth:`stop`.
        """
        with self._lock:
            self._expect("pause", State.RUNNING)
            self._pausing = True
            for gate in self._gates:
                gate.hold()
            self.state = State.PAUSED
        log.info("pipeline paused")

    def stop(self, forced: bool = False) -> None:
        """Take no more input; let every item already taken through; stop all NuMaps.

        The inputs are closed level first (see :meth:`_levels`): an input behind
        the others that it meets at a fan-in Piper takes the items that pair
        with theirs, so that no item taken is left without a result. A Ctrl-C
        while this waits for them leaves them going through: call ``stop()``
        again to wait for them and stop.
        """
        with self._lock:
            self._expect("stop", State.PAUSED, State.FINISHED)
            if not self._draining:  # else a stop() interrupted while it waited did this
                for gate in self._gates:  # the counts hold still while the limits are set
                    gate.hold()
                for gate, level in zip(self._gates, self._levels(), strict=True):
                    gate.close(level)
                for piper in self.graph:  # inputs closed unevenly end synchronized Pipers
                    piper._stopping = True
                for gate in self._gates:
                    gate.release()
                self._draining = self.state is State.PAUSED and self._thread is not None
                self._pausing = False
                self._lock.notify_all()
            draining = self._draining
        failed = None
        if draining:
            assert self._thread is not None
            # The event, not Thread.join(): a join that a Ctrl-C interrupts takes a
            # running thread for ended on Python 3.11, and stop() called again would
            # then stop the NuMaps under the items still going through.
            self._done.wait()
            self._thread.join()
            failed = self._error  # None while paused: an error ends the thread
        super().stop(forced=forced)
        with self._lock:
            self.state = State.STOPPED
        log.info("pipeline stopped: %s", self._stats_line())
        if failed is not None:
            raise PlumberError(f"Plumber: the pipeline failed while its taken items went "
                               f"through: {failed!r}") from failed

    def wait(self, timeout: float | None = None) -> None:
        """Block until a running pipeline has pulled its last result.

        Raises PlumberError if that takes more than ``timeout`` seconds, or if
        the pipeline is not running.
        """
        if self.state is not State.FINISHED:
            self._expect("wait for", State.RUNNING)
            if not self._done.wait(timeout):
                raise PlumberError(f"Plumber: the pipeline did not finish within {timeout} s")
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise PlumberError(f"Plumber: the pipeline failed: {self._error!r}") from self._error

    # -- pulling results ----------------------------------------------------------

    def _pull(self) -> None:
        """The pulling thread: to the end of the outputs, waiting while paused."""
        while True:
            began = time.monotonic()
            try:
                finished = self._pull_rounds()
            except BaseException as exc:  # reported by wait() or stop()
                log.exception("pipeline failed")
                self._error = exc
                finished = True
            with self._lock:
                self._run_seconds += time.monotonic() - began
                if finished:
                    break
                while self._pausing:  # until run() or stop()
                    self._lock.wait()
        if self._error is None:
            self._error = self._broken_input()
        with self._lock:
            self._finished_at = time.time()
            if not self._draining:  # stop() sets the state itself
                self.state = State.FINISHED
        self._done.set()
        if not self._draining:
            log.info("pipeline finished: %s", self._stats_line())

    def _pull_rounds(self) -> bool:
        """Take one result of each output Piper per round; True once all have ended.

        False when ``pause()`` asked to stop, once the current result is in.
        """
        active: list[tuple[Piper, Iterator[Any]]] = [(p, iter(p)) for p in self.get_outputs()]
        counts = self._results
        if len(active) == 1:  # the usual case, kept to a short loop per item
            piper, results = active[0]
            tally = counts[piper]
            count = tally.n
            for _ in results:
                del _  # not held while the next is awaited (a large array's memory goes)
                count += 1
                tally.n = count  # an attribute: as cheap as counting alone
                if self._pausing:
                    return False
            return True
        while active:
            if self._pausing:
                return False
            still = []
            for piper, results in active:
                try:
                    result = next(results)
                except StopIteration:
                    continue
                if isinstance(result, PiperError):
                    log.debug("%s: failed item: %r", piper.name, result)
                del result
                counts[piper].n += 1
                still.append((piper, results))
            active = still
        return True

    def _broken_input(self) -> BaseException | None:
        """The error of the first input that was closed for raising without end, if any."""
        for number, gate in enumerate(self._gates):
            if gate.broken is not None:
                error = PlumberError(
                    f"Plumber: input {number} raised {INPUT_FAILURES_IN_ROW} times in a row "
                    f"and was closed after {gate.taken} items; the last error: "
                    f"{gate.broken!r}")
                error.__cause__ = gate.broken
                log.error("pipeline failed: %s", error)
                return error
        return None

    def _levels(self) -> list[int]:
        """How many items each input gives in all when the pipeline stops.

        A Piper that reads several others takes one item of each per inbox, so
        inputs that meet at such a Piper must give matching numbers of items:
        the items of one without the others' to pair with would be taken,
        evaluated, and dropped. Along a path the numbers go by ``produce /
        consume`` of each Piper; inputs joined through the graph (synchronized
        Pipers aside: they read their inputs at rates of their own) are brought
        level with the one that went furthest. Inputs that meet nowhere, or
        whose paths disagree (the Piper where they meet would lose items
        anyway), keep the number they have taken.
        """
        inputs = self.get_inputs()
        levels = [gate.taken for gate in self._gates]
        if len(inputs) != len(levels):  # Pipers added since start: they have no input here
            return levels
        done: set[Piper] = set()
        for first in inputs:
            if first in done:
                continue
            rates, agree = self._rates(first)
            members = [k for k, p in enumerate(inputs) if (True, p) in rates]
            done.update(inputs[k] for k in members)
            if not agree or len(members) < 2:
                continue
            # Whole items of each input per unit, and the fewest units that hold them all.
            scale = math.lcm(*(rates[True, inputs[k]].denominator for k in members))
            per_unit = {k: int(rates[True, inputs[k]] * scale) for k in members}
            units = max(-(-levels[k] // per_unit[k]) for k in members)
            for k in members:
                levels[k] = units * per_unit[k]
        return levels

    def _rates(self, first: Piper) -> tuple[dict[tuple[bool, Piper], Fraction], bool]:
        """Items at each point joined to ``first``'s input, per item of that input.

        A point is ``(True, piper)``, the items into a Piper, or ``(False,
        piper)``, the items out of it. Also whether every path gives a point
        the same number.
        """
        graph = self.graph
        rates = {(True, first): Fraction(1)}
        todo = [(True, first)]
        agree = True
        while todo:
            point = todo.pop()
            into, piper = point
            rate = rates[point]
            near: list[tuple[tuple[bool, Piper], Fraction]] = []
            if not piper.synchronized:  # its inputs go at rates of their own
                ratio = Fraction(piper.produce, piper.consume)
                if into:
                    near.append(((False, piper), rate * ratio))
                    near += [((False, up), rate) for up in graph.predecessors(piper)]
                else:
                    near.append(((True, piper), rate / ratio))
            if not into:
                near += [((True, down), rate) for down in graph.successors(piper)
                         if not down.synchronized]
            for other, value in near:
                if other not in rates:
                    rates[other] = value
                    todo.append(other)
                elif rates[other] != value:
                    agree = False
        return rates, agree

    # -- saving and loading -------------------------------------------------------------

    def save(self, filename: str | os.PathLike[str]) -> None:
        """Write a Python file that rebuilds this pipeline (see :mod:`papyflow.pipefile`).

        NuMaps (shared ones stay shared), Workers with their functions and
        arguments, Pipers with every option, the pipes and branches. Functions
        that can be imported are imported; others are written by their source,
        or as a dill payload where the source would not be exact.
        """
        from ._save import pipeline_source
        from .archive._files import atomic_write_text

        try:
            text = pipeline_source(self)
        except Exception as exc:
            raise PlumberError(f"Plumber: cannot save the pipeline to {filename}: {exc}") from exc
        target = Path(filename)
        if not target.parent.is_dir():  # else the error would name a temporary file
            raise PlumberError(f"Plumber: cannot save the pipeline to {filename}: the folder "
                               f"{target.parent} does not exist")
        try:
            atomic_write_text(target, text)
        except OSError as exc:
            raise PlumberError(f"Plumber: cannot save the pipeline to {filename}: "
                               f"{exc.strerror or exc}") from exc

    def load(self, filename: str | os.PathLike[str]) -> None:
        """Add the pipeline of a pipeline file to this (empty) Plumber.

        A file that does not run raises PlumberError naming the file and line.
        """
        from .pipefile import load_file

        if len(self):
            raise PlumberError("Plumber: load into an empty Plumber")
        loaded = load_file(filename).plumber
        graph = loaded.graph
        for piper in sorted(graph.nodes, key=lambda p: graph.nodes[p]["added"]):
            self.add_piper(piper, xtra=graph.nodes[piper]["xtra"])
        for upstream, downstream in graph.edges:
            self.add_pipe((upstream, downstream))

    # -- statistics -----------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the run: see the class docstring."""
        return {
            "state": self.state.value,
            "started": self._started_at,
            "finished": self._finished_at,
            "run_time": self._run_seconds,
            "inputs_taken": [gate.taken for gate in self._gates],
            "input_errors": [gate.failed for gate in self._gates],
            "results": {piper: count.n for piper, count in self._results.items()},
            "pipers": {p: p.stats.as_dict() for p in self.postorder()},
            "pipers_tracked": {p: list(p.tracked) for p in self.postorder() if p.track},
        }

    def _stats_line(self) -> str:
        results = sum(count.n for count in self._results.values())
        errors = sum(p.stats.errors for p in self.graph)
        return f"{results} results, {errors} failed items, {self._run_seconds:.2f} s"
