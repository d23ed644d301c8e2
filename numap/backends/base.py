"""The contract between NuMap's scheduler and a pool of workers.

The scheduler decides *what* runs: it pulls items, groups them into batches,
bounds what is held, and orders results. A backend decides *where*: it owns the
workers and moves batches to them and results back. The only words they share
are in this module:

- a :class:`Lane` is one place batches are sent to (a worker process, a pool
  of threads, later a remote host or an executor) and holds at most
  ``capacity`` batches at a time;
- the scheduler hands a backend a :class:`Batch`; the backend answers through
  the :class:`Sink` with one :class:`Done` per batch, or tells it that a lane
  was lost with the batches it held;
- ``prepare`` runs in the scheduler's feeding thread before a batch is bound
  to a lane (serialising there keeps it off the result path).

A new backend (remote hosts, a ``concurrent.futures.Executor``) implements
:class:`Backend` and leaves the scheduler as it is.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from .._execute import ItemFailure, TaskSpec

__all__ = ["Backend", "Batch", "Done", "Lane", "LaneLoss", "Sink"]


@dataclass(slots=True, eq=False)
class Lane:
    """A place batches go to. ``outstanding`` lists its batches in the order sent."""

    name: str
    capacity: int
    outstanding: deque[Batch] = field(default_factory=deque)
    alive: bool = True
    handle: Any = None  # the backend's own object (a process, a queue)

    def has_room(self) -> bool:
        return self.alive and len(self.outstanding) < self.capacity


@dataclass(slots=True, eq=False)
class Batch:
    """Consecutive items ``start .. start + size - 1`` of one task.

    ``items`` are the ones to evaluate. When some positions are not evaluated
    (their upstream item failed, or the item cannot be pickled), ``positions``
    maps each evaluated item to its position in the batch and ``errors`` holds
    the exception of each position left out.
    """

    task: int
    id: int
    start: int
    size: int
    items: list[Any]
    positions: list[int] | None = None
    errors: dict[int, BaseException] | None = None
    # The batch this piece belongs to: a piece is one item, re-run alone after a
    # worker died holding the batch.
    parent: Batch | None = None
    lane: Lane | None = None
    nbytes: int = 0  # size of the items as sent, when the backend serialises them
    # Filled as results come in:
    values: list[Any] | None = None
    remaining: int = 0  # pieces of a split batch not yet done
    dropped: set[int] | None = None  # positions skipped after a timeout
    complete: bool = False

    def leave_out(self, position: int, exc: BaseException) -> None:
        """Do not evaluate the item at ``position``: its result is ``exc``."""
        if self.positions is None:
            self.positions = list(range(len(self.items)))
        index = self.positions.index(position)
        del self.items[index]
        del self.positions[index]
        if self.errors is None:
            self.errors = {}
        self.errors[position] = exc


@dataclass(slots=True)
class Done:
    """A backend's answer for one batch: a value per evaluated item, ``None`` where it failed."""

    batch: Batch
    values: list[Any]
    failures: list[ItemFailure]
    seconds: float  # time spent evaluating, as the worker measured it
    nbytes: int = 0  # bytes the batch and its results took on the wire (0: not measured)


@dataclass(slots=True)
class LaneLoss:
    """Why a lane stopped answering."""

    reason: str
    exitcode: int | None = None
    signal_name: str | None = None
    #: the lane went away (a remote host stopped answering), not because of an
    #: item: its batches are sent again as they are, and no item is blamed
    blameless: bool = False


class Sink(Protocol):
    """What the scheduler offers backends (called from the backends' threads)."""

    def done(self, lane: Lane, done: Done) -> None: ...

    def lost(self, lane: Lane, loss: LaneLoss) -> None: ...


class Backend(abc.ABC):
    """A pool of workers behind a set of lanes."""

    #: how long one batch should take, in seconds: the scheduler sizes batches to it
    target_seconds: ClassVar[float] = 0.005
    #: batches a worker may hold at once (one running, the rest waiting)
    prefetch: ClassVar[int] = 2
    #: how many times ``target_seconds`` a batch may take while much of an
    #: input of known length is left (see the scheduler's guided batches)
    batch_stretch: ClassVar[float] = 1.0

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name

    @abc.abstractmethod
    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        """Start the workers, give them the tasks, and return the lanes.

        From then on the backend reports every batch to ``sink``.
        """

    def prepare(self, batch: Batch) -> Any:
        """Serialise ``batch`` for sending; items that cannot be sent are left out of it."""
        return None

    @abc.abstractmethod
    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        """Hand ``batch`` to ``lane``. A lane that is gone is reported through ``Sink.lost``."""

    def replace(self, lane: Lane) -> Lane | None:
        """Start a fresh lane in place of a lost one; ``None`` if this backend cannot."""
        return None

    @abc.abstractmethod
    def stop(self, forced: bool = False) -> None:
        """Stop every worker and release what the pool holds. Safe to call twice."""
