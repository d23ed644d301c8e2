"""Lists of data-index ranges: mixing them, splitting them, checking them.

A *data unit* covers the data indices ``start..end``, both included. A stream
of units is described by its list of ranges ``[(start, end), ...]``, in
order, each starting right after the previous one ends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["as_ranges", "check_contiguous", "equal_value_ranges", "foundSplitRanges",
           "mixDataIndices"]

Range = tuple[int, int]


def as_ranges(indices: Iterable[Sequence[int]] | np.ndarray) -> np.ndarray:
    """``indices`` as an int64 array of shape ``(n, 2)`` (rows ``start, end``)."""
    array = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices),
                       dtype=np.int64)
    if array.size == 0:
        return np.zeros((0, 2), np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"expected a list of (start, end) ranges, got an array of shape "
                         f"{array.shape}")
    return array


def check_contiguous(starts: np.ndarray, ends: np.ndarray, where: str) -> None:
    """Raise ValueError unless the units tile their span: each ends at or after
    its start and begins right after the previous one.

    ``where`` names the list in the message (a file, an input).
    """
    if not len(starts):
        return
    bad = np.flatnonzero(ends < starts)
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"{where}: unit {k} covers {int(starts[k])}..{int(ends[k])}, "
                         "which ends before it starts")
    wrong = np.flatnonzero(starts[1:] != ends[:-1] + 1)
    if len(wrong):
        k = int(wrong[0]) + 1
        expected = int(ends[k - 1]) + 1
        kind = "a gap" if starts[k] > expected else "an overlap"
        raise ValueError(f"{where}: {kind} at unit {k}: unit {k - 1} ends at "
                         f"{int(ends[k - 1])}, unit {k} covers {int(starts[k])}..{int(ends[k])}")


def _same(a: Any, b: Any) -> bool:
    """Whether two values of an index field are equal (numpy arrays compared whole)."""
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except ValueError:  # containers holding arrays: no single truth value
        return False


def equal_value_ranges(values: Sequence[Any]) -> np.ndarray:
    """The ranges of the runs of consecutive equal values, as an ``(n, 2)`` int64 array.

    This is how the units of a database view's output are made from its index:
    ``values[i]`` is the output's field in entry ``i``, and each run of equal
    values is one unit covering the data indices of the run.

    >>> equal_value_ranges(["a", "a", "b", "a"]).tolist()
    [[0, 1], [2, 2], [3, 3]]
    """
    size = len(values)
    if not size:
        return np.zeros((0, 2), np.int64)
    starts = [0]
    previous = values[0]
    for position in range(1, size):
        value = values[position]
        if not _same(value, previous):
            starts.append(position)
        previous = value
    first = np.array(starts, np.int64)
    last = np.append(first[1:] - 1, size - 1)
    return np.stack([first, last], axis=1)


def mixDataIndices(list_of_data_indices: Sequence[Iterable[Sequence[int]]]) -> list[Range]:
    """The finest list of ranges that every one of the given lists is made of.

    Each list describes one input of a synchronization group. The result
    covers the span all inputs have in common (from the largest first index
    to the smallest last index) and ends a range wherever a unit of any input
    ends, so that every range lies inside exactly one unit of each input.

    >>> mixDataIndices([[(0, 2), (3, 4)], [(0, 4)]])
    [(0, 2), (3, 4)]
    >>> mixDataIndices([[(0, 2), (3, 4)], [(0, 1), (2, 3), (4, 4)]])
    [(0, 1), (2, 2), (3, 3), (4, 4)]

    An empty collection, or one holding an empty list, mixes to ``[]``.
    """
    lists = [as_ranges(indices) for indices in list_of_data_indices]
    if not lists or any(len(ranges) == 0 for ranges in lists):
        return []
    first = max(int(ranges[0, 0]) for ranges in lists)
    last = min(int(ranges[-1, 1]) for ranges in lists)
    if last < first:
        return []
    # A range ends at every unit end, and just before every unit start (the two
    # agree for lists without gaps; taking both keeps odd lists honest).
    cuts = np.unique(np.concatenate([ranges[:, 1] for ranges in lists]
                                    + [ranges[:, 0] - 1 for ranges in lists]))
    cuts = cuts[(cuts >= first) & (cuts < last)]
    ends = np.append(cuts, last)
    starts = np.concatenate(([first], ends[:-1] + 1))
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def foundSplitRanges(lst: Sequence[Iterable[Sequence[int]]], n_split: int) -> list[Range]:
    """Split the span of several inputs' units into at most ``n_split`` ranges
    for parallel processing.

    ``lst`` holds one list of ``(start, end)`` ranges per input. A split may
    only end where a unit of *every* input ends, so that no unit is cut in
    two; among those places, the splits are chosen to hold about the same
    number of mixed units (steps of :func:`mixDataIndices`) each. Fewer than
    ``n_split`` ranges come back when there are fewer places to cut.

    >>> foundSplitRanges([[(0, 1), (2, 3), (4, 5), (6, 7)], [(0, 3), (4, 7)]], 2)
    [(0, 3), (4, 7)]

    Raises:
        ValueError: ``n_split`` is below 1.
    """
    if n_split < 1:
        raise ValueError(f"foundSplitRanges: n_split must be at least 1, not {n_split}")
    lists = [as_ranges(indices) for indices in lst]
    mixed = mixDataIndices(lists)
    if not mixed:
        return []
    first, last = mixed[0][0], mixed[-1][1]
    common = set(lists[0][:, 1].tolist())
    for ranges in lists[1:]:
        common &= set(ranges[:, 1].tolist())
    cut_points = sorted(end for end in common if first <= end < last) + [last]
    mixed_ends = np.array([end for _, end in mixed], np.int64)
    # steps done once a split ending at each cut point is finished
    done = np.searchsorted(mixed_ends, np.array(cut_points, np.int64), side="right")
    total = len(mixed)
    chosen: list[int] = []
    for k in range(1, n_split):
        target = total * k / n_split
        best = int(np.argmin(np.abs(done - target)))
        if cut_points[best] != last and (not chosen or cut_points[best] > chosen[-1]):
            chosen.append(cut_points[best])
    chosen.append(last)
    result: list[Range] = []
    start = first
    for end in chosen:
        result.append((start, end))
        start = end + 1
    return result
