"""Work functions and input streams shared by every contender.

Every function handed to a pool lives here, at module level, so that all
pools (pickle, dill, cloudpickle and loky alike) can ship it to a worker by
reference.  Each work function maps an input ``x`` to ``x + 1`` (for arrays:
``a + 1``) so a single cheap checksum verifies every scenario.

The CPU-bound loop length is calibrated by the runner and handed to the
measuring subprocess (and thereby to every worker it starts, whatever the start
method) through the environment variable named by :data:`BURN_LOOPS_ENV`.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

BURN_LOOPS_ENV = "PAPYFLOW_BENCH_BURN_LOOPS"
"""Environment variable carrying the calibrated loop count of :func:`burn`."""

DEFAULT_BURN_LOOPS = 100_000
"""Loop count used when no calibration was passed in."""

SLEEP_S = 0.01
"""Duration of one :func:`nap` item."""

ARRAY_BYTES = 4 * 1024 * 1024
"""Size of one array item of the ``arrays`` scenario."""

ARRAY_LEN = ARRAY_BYTES // 8


def _burn_loops() -> int:
    """Return the loop count of :func:`burn` for this process."""
    raw = os.environ.get(BURN_LOOPS_ENV, "")
    return int(raw) if raw.isdigit() else DEFAULT_BURN_LOOPS


_BURN_LOOPS = _burn_loops()


def inc(x: int) -> int:
    """Return ``x + 1``: the cheapest possible item, to expose per-item overhead."""
    return x + 1


def spin(x: int, loops: int) -> int:
    """Run a pure-Python loop of ``loops`` steps, then return ``x + 1``."""
    acc = x
    for i in range(loops):
        acc = (acc * 31 + i) & 0xFFFF
    return x + 1 + (acc < 0)  # acc is never negative: the loop only adds work


def burn(x: int) -> int:
    """CPU-bound item: a calibrated pure-Python loop, then ``x + 1``."""
    return spin(x, _BURN_LOOPS)


def nap(x: int) -> int:
    """I/O-like item: sleep :data:`SLEEP_S` seconds, then return ``x + 1``."""
    time.sleep(SLEEP_S)
    return x + 1


def add_one_array(a: Any) -> Any:
    """Return ``a + 1`` as a fresh array of the same size."""
    return a + 1


def ints(n: int) -> Iterator[int]:
    """Return ``range(n)`` as a plain iterator (no ``len``)."""
    return iter(range(n))


def arrays(n: int) -> Iterator[Any]:
    """Yield ``n`` fresh 4 MiB float64 arrays; array ``i`` is filled with ``i``."""
    import numpy as np

    for i in range(n):
        yield np.full(ARRAY_LEN, float(i), dtype=np.float64)


def slow_arrays(n: int) -> Iterator[Any]:
    """Yield the arrays of :func:`arrays`, each after about 0.5 ms more of pure-Python
    work (a tenth of a :func:`burn` item): an input that takes time to make its
    items, as a parser or a reader does, and holds the GIL meanwhile."""
    loops = max(1, _BURN_LOOPS // 10)
    for array in arrays(n):
        spin(0, loops)
        yield array


class CountingIterator:
    """Wrap an iterator and count how many items were pulled from it."""

    def __init__(self, source: Iterator[Any]) -> None:
        self._source = source
        self.pulled = 0

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Any:
        item = next(self._source)
        self.pulled += 1
        return item


def endless() -> CountingIterator:
    """Return ``itertools.count()`` wrapped in a :class:`CountingIterator`."""
    return CountingIterator(itertools.count())


def calibrate_burn(target_s: float, probes: int = 5, items: int = 10) -> tuple[int, float]:
    """Find the loop count making one :func:`burn` item last ``target_s`` seconds.

    Returns ``(loops, measured seconds per item)``; the measurement is the best
    of ``probes`` runs of ``items`` items each.
    """
    loops = 20_000
    per_item = _time_spin(loops, probes, items)
    for _ in range(3):
        loops = max(1, round(loops * target_s / per_item))
        per_item = _time_spin(loops, probes, items)
    return loops, per_item


def _time_spin(loops: int, probes: int, items: int) -> float:
    """Return the best per-item time of :func:`spin` over ``probes`` runs."""
    best = float("inf")
    for _ in range(probes):
        t0 = time.perf_counter()
        for x in range(items):
            spin(x, loops)
        best = min(best, (time.perf_counter() - t0) / items)
    return best
