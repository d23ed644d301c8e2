"""Fusing runs of parallel Pipers that share a NuMap into one task.

A pipe ``a -> b -> c`` of parallel Pipers on one NuMap would send every item
to a worker process three times, and bring it back to this process three
times. When nothing else reads the results in between, the three Workers can
just as well run one after the other in the worker: ``c``'s task then
evaluates ``a``, ``b`` and ``c`` on each inbox of ``a``, and the tasks of
``a`` and ``b`` get no items. The results are the same, failures included: a
Worker that fails makes the item a ``PiperError`` that the later Workers pass
on unevaluated, as they would between separate tasks.

A Piper ``down`` is fused onto its upstream Piper ``up`` only when the run
behaves exactly as it would unfused:

- both are parallel on the same NuMap, and ``down`` reads only ``up``, with
  ``consume == 1``, ``spawn == 1``, no ``timeout``;
- ``up`` has ``produce == 1``, ``spawn == 1``, no ``timeout`` and no
  ``track``, and ``down`` is its only reader;
- neither is in ``debug`` mode (a debug Piper raises where it fails), nor
  ``synchronized`` (its inboxes and results carry data-index ranges).

The statistics of the fused Pipers are kept as if they ran apart: each counts
every item that passes it, and the errors that arose in it.

Runs of *linear* Pipers are fused the same way, when each is a single
function without arguments (the plain case) with ``consume``, ``produce`` and
``spawn`` of 1, no ``debug``, no ``track`` but on the last one, and the
downstream one is the only reader: the last Piper of the run calls the functions one after the other in
one loop, instead of one generator per Piper handing each item to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numap import NuMap

from .errors import PiperError, WorkerError
from .piper import Phase, Piper

__all__ = ["Fused", "fuse_runs"]


class Fused:
    """The Workers of a run of fused Pipers, applied in turn to each inbox.

    Returns the last Worker's result; an item that fails at stage ``k`` (not
    the last) comes back as a ``PiperError`` of the ``WorkerError``, marked
    with ``stage = k`` for the statistics.
    """

    __slots__ = ("workers",)

    def __init__(self, workers: Sequence[Any]) -> None:
        self.workers = tuple(workers)

    def __call__(self, inbox: Any) -> Any:
        return self._on(self.workers[0](inbox))

    def call_taking(self, items: list[Any], position: int) -> Any:
        """``self(items[position])``, the inbox taken out of ``items`` and let go once the
        first Worker is done with it: in a worker process, a large array of the inbox
        that nothing else holds is freed before the next Worker makes its arrays, which
        may then be made in its place (see :func:`numap._execute.run_batch`)."""
        return self._on(self._first_taking(items, position))

    def _first_taking(self, items: list[Any], position: int) -> Any:
        inbox = items[position]
        items[position] = None
        return self.workers[0](inbox)

    def _on(self, result: Any) -> Any:
        """The later Workers, in turn, on the first one's ``result``."""
        workers = self.workers
        for stage in range(1, len(workers)):
            if isinstance(result, WorkerError):
                error = PiperError(result)
                error.__dict__["stage"] = stage - 1  # read and removed by the last Piper
                return error
            if isinstance(result, PiperError):  # failed before the run: passed on
                return result
            result = workers[stage]((result,))
        return result

    def __reduce__(self) -> tuple[Any, ...]:
        return (Fused, (self.workers,))

    def __repr__(self) -> str:
        return f"Fused({', '.join(repr(w) for w in self.workers)})"


def _fusable(up: Piper, down: Piper) -> bool:
    return (down.parallel and up.parallel and down.imap is up.imap
            and len(down.inbox) == 1 and down.inbox[0] is up
            and down.consume == 1 and down.spawn == 1 and down.timeout is None
            and not down.debug and not down.synchronized and not up.synchronized
            and up.produce == 1 and up.spawn == 1 and up.timeout is None
            and not up.track and not up.debug
            and up._fanout.readers == 1)


def _fusable_linear(up: Piper, down: Piper) -> bool:
    return (not down.parallel and not up.parallel
            and len(down.inbox) == 1 and down.inbox[0] is up
            and down.plain and up.plain and down.consume == 1 and down.spawn == 1
            and not down.debug
            and up.produce == 1 and up.spawn == 1 and not up.track and not up.debug
            and len(up._sources) == 1 and up.consume == 1 and not up._reads_units
            and up._fanout.readers == 1)


def fuse_runs(order: Sequence[Piper]) -> None:
    """Fuse every run of fusable Pipers in ``order`` (upstream first), before start.

    The last Piper of a run takes over: its NuMap task gets the run's Workers
    and reads the inboxes of the run's first Piper.
    """
    for down in order:
        if down.phase is not Phase.CONNECTED or not down.inbox:
            continue
        up = down.inbox[0]
        if not isinstance(up, Piper) or up.phase is not Phase.CONNECTED:
            continue
        parallel = _fusable(up, down)
        if not parallel and not _fusable_linear(up, down):
            continue
        run = [*up._fused, up] if up._fused else [up]
        up._fused = []
        for piper in run:
            piper._fused_into = down
        down._fused = run
        if parallel and isinstance(down.imap, NuMap):
            workers = [p.worker for p in run] + [down.worker]
            down.imap._replace_func(down._tasks[0].task, Fused(workers))
