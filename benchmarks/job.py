"""The unit of work handed to a contender, and the type of a contender.

A contender is a plain function taking a :class:`Job`.  It builds its pool,
maps ``job.func`` over ``job.items`` with ``job.workers`` workers, hands the
lazy result iterator to ``job.consume`` *while the pool is alive*, shuts the
pool down, and returns whatever ``consume`` returned.  Consuming inside the pool
lets a scenario stop early (``itertools.islice``) and still have the pool torn
down by the contender's own, idiomatic exit path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Consume = Callable[[Iterable[Any]], dict[str, Any]]


@dataclass
class Job:
    """Everything a contender needs for one measured map."""

    func: Callable[[Any], Any]
    items: Iterator[Any]
    workers: int
    consume: Consume
    chunksize: int | None = None
    length: int | None = None
    """Number of input items when known up front (``None`` for endless input)."""


Contender = Callable[[Job], dict[str, Any]]
