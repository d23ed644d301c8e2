"""The data-index ranges of a data source's units, kept as runs.

A source may hold millions of units of equal length (one data index each,
say): a :class:`UnitTable` stores them as *runs* (``count`` units, the first
covering ``start..end``, each as long as the first) and answers the
questions of a data source (how many units, the range of unit ``p``, the
unit holding data index ``i``) without listing every unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["UnitTable"]


class UnitTable:
    """Units in order, each starting right after the previous one ends.

    Args:
        starts: first data index of each run's first unit.
        lengths: data indices per unit, in each run.
        counts: units in each run.
        extra: further per-run columns carried along, sliced with the runs by
            :meth:`sub`; a column ``offset`` moves by ``stride`` per unit left
            out of a run.
    """

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, counts: np.ndarray,
                 extra: dict[str, np.ndarray] | None = None) -> None:
        self.starts = np.asarray(starts, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.extra = extra or {}
        self.cumulative = np.cumsum(self.counts)  # units up to and including each run
        self.afters = self.starts + self.lengths * self.counts  # first index after each run
        self._size = int(self.cumulative[-1]) if len(self.counts) else 0
        self._run = -1  # the run of the last lookup, and its first position
        self._run_first = 0
        self._run_stop = 0

    @classmethod
    def from_ranges(cls, ranges: Iterable[Sequence[int]] | np.ndarray,
                    extra: dict[str, np.ndarray] | None = None) -> UnitTable:
        """A table of explicit ``(start, end)`` ranges (one run each, unless ``extra``
        is empty, in which case equal consecutive lengths share a run)."""
        array = np.asarray(ranges if isinstance(ranges, np.ndarray) else list(ranges),
                           np.int64).reshape(-1, 2)
        starts, ends = array[:, 0], array[:, 1]
        lengths = ends - starts + 1
        if extra:
            return cls(starts, lengths, np.ones(len(starts), np.int64), extra)
        if not len(starts):
            return cls(starts, lengths, lengths)
        firsts = np.concatenate(([0], np.flatnonzero(lengths[1:] != lengths[:-1]) + 1))
        counts = np.diff(np.append(firsts, len(starts)))
        return cls(starts[firsts], lengths[firsts], counts)

    def __len__(self) -> int:
        return self._size

    def locate(self, position: int) -> tuple[int, int]:
        """``(run, unit within the run)`` of unit ``position`` (``0 <= position < len``)."""
        if not self._run_first <= position < self._run_stop:
            run = int(np.searchsorted(self.cumulative, position, side="right"))
            self._run = run
            self._run_first = int(self.cumulative[run - 1]) if run else 0
            self._run_stop = int(self.cumulative[run])
        return self._run, position - self._run_first

    def range(self, position: int) -> tuple[int, int]:
        """``(start, end)`` of unit ``position``."""
        run, j = self.locate(position)
        length = int(self.lengths[run])
        start = int(self.starts[run]) + j * length
        return start, start + length - 1

    def position_of(self, data_index: int) -> int:
        """The position of the unit holding ``data_index``, or -1."""
        if not self._size or data_index < self.starts[0] or data_index >= self.afters[-1]:
            return -1
        run = int(np.searchsorted(self.afters, data_index, side="right"))
        before = int(self.cumulative[run - 1]) if run else 0
        return before + (data_index - int(self.starts[run])) // int(self.lengths[run])

    @property
    def first_index(self) -> int:
        return int(self.starts[0])

    @property
    def last_index(self) -> int:
        return int(self.afters[-1]) - 1

    def ranges(self, first: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Starts and ends of the units at positions ``first..stop-1``, as int64 arrays."""
        stop = self._size if stop is None else stop
        table = self.sub(first, stop) if (first, stop) != (0, self._size) else self
        counts, lengths = table.counts, table.lengths
        total = len(table)
        if len(counts) == 1:
            starts = int(table.starts[0]) + np.arange(total, dtype=np.int64) * int(lengths[0])
            return starts, starts + (int(lengths[0]) - 1)
        each = np.repeat(lengths, counts)
        within = np.arange(total, dtype=np.int64) - np.repeat(table.cumulative - counts, counts)
        starts = np.repeat(table.starts, counts) + within * each
        return starts, starts + each - 1

    def window(self, first_index: int | None, last_index: int | None) -> tuple[int, int]:
        """Positions ``(first, stop)`` of the units that hold some index in
        ``first_index..last_index`` (``None``: from the first, to the last)."""
        if not self._size:
            return 0, 0
        lo = self.first_index if first_index is None else max(first_index, self.first_index)
        hi = self.last_index if last_index is None else min(last_index, self.last_index)
        if hi < lo:
            return 0, 0
        return self.position_of(lo), self.position_of(hi) + 1

    def sub(self, first: int, stop: int) -> UnitTable:
        """The table of the units at positions ``first..stop-1``."""
        if stop <= first:
            return UnitTable(self.starts[:0], self.lengths[:0], self.counts[:0],
                             {k: v[:0] for k, v in self.extra.items()})
        run0, j0 = self.locate(first)
        run1, j1 = self.locate(stop - 1)
        runs = slice(run0, run1 + 1)
        starts = self.starts[runs].copy()
        counts = self.counts[runs].copy()
        lengths = self.lengths[runs]
        extra = {k: v[runs].copy() for k, v in self.extra.items()}
        if run0 == run1:
            counts[0] = j1 - j0 + 1
        else:
            counts[0] -= j0
            counts[-1] = j1 + 1
        starts[0] += j0 * lengths[0]
        if "offset" in extra and "stride" in extra:  # records of the units left out
            extra["offset"][0] += j0 * extra["stride"][0]
        return UnitTable(starts, lengths, counts, extra)
