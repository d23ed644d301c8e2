"""CPU seconds spent in the steps of a benchmark, counted across processes.

A measuring process calls :func:`start` before it forks its workers; every step
adds its own CPU time with :func:`add`, in whatever process it runs, and the
measuring process reads the sums with :func:`total` and :func:`steps` (how
many steps were counted: a run checks it against the steps it made, so that
a worker the counter did not reach is an error, not a low figure). The
counter lives in shared memory that forked processes inherit. It is kept in a
module of its own, and pickled as a reference to the counter the receiving
process inherited, so that a step function sent to a worker by value (a
function of ``__main__``, which dill pickles with what it uses) reaches the
same counter.
"""

from __future__ import annotations

import multiprocessing
from typing import Any


class _Counter:
    """Two doubles in shared memory, with one lock: CPU seconds and steps counted."""

    def __init__(self) -> None:
        self.shared: Any = multiprocessing.get_context("fork").Array("d", 2)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _inherited, ()


def _inherited() -> _Counter | None:
    return _COUNTER


_COUNTER: _Counter | None = None


def start() -> None:
    """A new counter at zero, for the processes this one forks from now on."""
    global _COUNTER
    _COUNTER = _Counter()


def _shared() -> Any:
    assert _COUNTER is not None, "start() first"
    return _COUNTER.shared


def add(seconds: float) -> None:
    """Count one step that took ``seconds`` of CPU time (a lock around two additions)."""
    shared = _shared()
    with shared.get_lock():
        shared[0] += seconds
        shared[1] += 1


def total() -> float:
    """The CPU seconds counted so far, by every process."""
    return float(_shared()[0])


def steps() -> int:
    """The steps counted so far, by every process."""
    return int(_shared()[1])
