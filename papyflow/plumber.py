"""``Plumber``: a Dagger with a runtime: start, run, pause, stop, wait.

::

    new/stopped --start(datas)--> started --run()--> running --pause()--> paused
                                                        |   <--run()---    |
                                                  (inputs end)           stop()
                                                        v                  v
                                                    finished --stop()--> stopped

``run`` pulls the results of the output Pipers in a thread of its own, so the
caller stays free to ``pause``, ``wait`` or watch ``stats``. ``stop`` takes no
new input item, then lets every item already taken flow to the end, so that
each has its result (and tracked Pipers report it) before the NuMaps stop.
"""

from __future__ import annotations

import enum
import logging
import operator
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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
    """An input that can be closed: after ``close()`` it ends, and takes no more items.

    An input that raises gives a PiperError for that item, as a failed item of
    a Piper would be (a generator then ends; other iterators go on), until it
    has raised ``numap.INPUT_FAILURES_IN_ROW`` times in a row: then it ends, and
    ``broken`` holds its last exception.
    """

    __slots__ = ("_last_failed", "_source", "_streak", "broken", "closed", "failed", "taken")

    def __init__(self, source: Iterable[Any]) -> None:
        self._source = iter(source)
        self.closed = False
        self.taken = 0
        self.failed = 0
        # Failures in a row, counted on failures only (nothing more per good item):
        # the streak goes on when the item before also failed.
        self._streak = 0
        self._last_failed = -2
        self.broken: BaseException | None = None

    def __iter__(self) -> _Gate:
        return self

    def __next__(self) -> Any:
        if self.closed:
            raise StopIteration
        try:
            item = next(self._source)
        except StopIteration:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed input item fails alone
            item = PiperError(exc)
            self.failed += 1
            self._streak = self._streak + 1 if self._last_failed == self.taken - 1 else 1
            self._last_failed = self.taken
            if self._streak >= INPUT_FAILURES_IN_ROW:
                self.closed = True
                self.broken = exc
        self.taken += 1
        return item

    def __length_hint__(self) -> int:
        # What is left of the input, if it tells (NuMap sizes batches by it).
        return 0 if self.closed else operator.length_hint(self._source, 0)

    def close(self) -> None:
        self.closed = True


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
    seconds) and ``'pipers_tracked'`` (per tracked Piper: a list with one
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
        self._pausing = False  # read per result by the pulling thread
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._results: dict[Piper, int] = {}
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
        self._results = {piper: 0 for piper in self.get_outputs()}
        self._pausing = False
        self._done.clear()
        self._error = None
        self._run_seconds = 0.0
        self._started_at = time.time()
        self._finished_at = None
        self.state = State.STARTED
        log.info("pipeline started: %d pipers, %d inputs", len(self), len(datas))

    def run(self) -> None:
        """Pull results from the output Pipers in a background thread (again after pause)."""
        self._expect("run", State.STARTED, State.PAUSED)
        self._pausing = False
        self.state = State.RUNNING
        self._thread = threading.Thread(target=self._pull, name="papyflow-plumber", daemon=True)
        self._thread.start()
        log.info("pipeline running")

    def pause(self) -> None:
        """Stop pulling results; parallel Pipers go on until their buffers are full."""
        self._expect("pause", State.RUNNING)
        self._pausing = True
        if self._thread is not None:
            self._thread.join()
        if self.state is State.RUNNING:
            self.state = State.PAUSED
        log.info("pipeline %s", self.state.value)

    def stop(self, forced: bool = False) -> None:
        """Take no more input; let every item already taken through; stop all NuMaps."""
        self._expect("stop", State.PAUSED, State.FINISHED)
        for gate in self._gates:
            gate.close()
        if self.state is State.PAUSED:
            self._drain()
        super().stop(forced=forced)
        self.state = State.STOPPED
        log.info("pipeline stopped: %s", self._stats_line())

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
        began = time.monotonic()
        try:
            finished = self._pull_rounds(pausable=True)
        except BaseException as exc:  # noqa: BLE001 - reported by wait()
            log.exception("pipeline failed")
            self._error = exc
            finished = True
        if finished and self._error is None:
            self._error = self._broken_input()
        self._run_seconds += time.monotonic() - began
        if finished:
            self._finished_at = time.time()
            self.state = State.FINISHED
            self._done.set()
            log.info("pipeline finished: %s", self._stats_line())

    def _pull_rounds(self, pausable: bool) -> bool:
        """Take one result of each output Piper per round; True once all have ended."""
        active: list[tuple[Piper, Iterator[Any]]] = [(p, iter(p)) for p in self.get_outputs()]
        counts = self._results
        if len(active) == 1:  # the usual case, kept to a short loop per item
            piper, results = active[0]
            count = counts[piper]
            try:
                for _ in results:
                    count += 1
                    if not count & 255:
                        counts[piper] = count
                    if pausable and self._pausing:
                        return False
            finally:
                counts[piper] = count
            return True
        while active:
            if pausable and self._pausing:
                return False
            still = []
            for piper, results in active:
                try:
                    result = next(results)
                except StopIteration:
                    continue
                if isinstance(result, PiperError):
                    log.debug("%s: failed item: %r", piper.name, result)
                counts[piper] += 1
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

    def _drain(self) -> None:
        began = time.monotonic()
        self._pull_rounds(pausable=False)
        self._run_seconds += time.monotonic() - began
        self._finished_at = time.time()

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
        atomic_write_text(Path(filename), text)

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
            "results": dict(self._results),
            "pipers": {p: p.stats.as_dict() for p in self.postorder()},
            "pipers_tracked": {p: list(p.tracked) for p in self.postorder() if p.track},
        }

    def _stats_line(self) -> str:
        results = sum(self._results.values())
        errors = sum(p.stats.errors for p in self.graph)
        return f"{results} results, {errors} failed items, {self._run_seconds:.2f} s"
