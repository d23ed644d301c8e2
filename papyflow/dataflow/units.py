"""Data units in pipelines: streams of ``(data, start, end)`` synchronized as a group.

A *unit* covers the data indices ``start..end`` (both included). Streams of
units at different rates, such as one unit per image and one per client
spanning all of that client's images, are read together the way the inputs
of a synchronization group are (see :mod:`papyflow.dataflow.inputs`): each
step covers the next range of the mixed indices (``mixDataIndices``), the
finest-grained streams move on to their next unit, and the coarser ones keep
the unit they have, flagged ``data_same_as_previous``.

:func:`synchronize` does this lazily, one step at a time, so that it works on
endless streams; a Piper built with ``synchronized=True`` uses it to make its
inboxes. An item of a stream that is a ``PiperError`` (an upstream failure
without a known range) is handed on as it is and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from ..errors import PiperError

__all__ = ["SyncedInput", "Unit", "synchronize"]


class Unit(NamedTuple):
    """A piece of data covering the data indices ``start`` to ``end``, both included."""

    data: Any
    start: int
    end: int


class SyncedInput(NamedTuple):
    """What one input holds at a step of a synchronization group.

    The names are those of an ``Input``: ``data``, ``data_index`` and
    ``data_index_end`` (the range of the unit, which may be wider than the
    step's), and ``data_same_as_previous`` (the unit was already there at the
    previous step: a coarse input that has not moved on).
    """

    data: Any
    data_index: int
    data_index_end: int
    data_same_as_previous: bool


class SyncStep(NamedTuple):
    """One step of :func:`synchronize`: the inbox and the range of indices it covers."""

    inbox: tuple[SyncedInput, ...]
    start: int
    end: int


def _unit(item: Any, position: int) -> Unit:
    if isinstance(item, Unit):
        unit = item
    elif isinstance(item, tuple) and len(item) == 3:
        unit = Unit(*item)
    else:
        raise TypeError(f"synchronized input {position}: expected a (data, start, end) unit, "
                        f"got {type(item).__name__}: {item!r:.80}")
    start, end = unit.start, unit.end
    if (isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int)
            or not isinstance(end, int) or start < 0 or end < start):
        raise ValueError(f"synchronized input {position}: a unit's range must be two ints "
                         f"with 0 <= start <= end, got ({start!r}, {end!r})")
    return unit


def synchronize(streams: Sequence[Iterable[Any]]) -> Iterator[SyncStep | PiperError]:
    """Steps through ``streams`` of units as one synchronization group.

    The first step starts where the streams' first units start (0, or the
    start of the range a block processes); every other step starts right
    after the previous one ends; a step ends where the first of the current
    units ends. The streams must start at the same index, cover the indices
    without a gap or an overlap, and end at the same index: a stream that
    breaks these rules raises ValueError naming it and the index.
    """
    if not streams:
        raise ValueError("synchronize: needs at least one stream")
    sources = [iter(s) for s in streams]
    current: list[Unit | None] = [None] * len(sources)
    fresh = [True] * len(sources)
    position = -1  # the first index of the next step (-1: where the first units start)
    origin: tuple[int, int] | None = None  # the first stream's first start, and the stream
    while True:
        for k, source in enumerate(sources):
            unit = current[k]
            if unit is not None and unit.end >= position:
                fresh[k] = False
                continue
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    _check_all_ended(sources, current, k, position)
                    return
                if isinstance(item, PiperError):
                    yield item  # a failure without a range: passed on, not placed
                    continue
                unit = _unit(item, k)
                break
            previous = current[k]
            if previous is None:
                if origin is None:
                    origin = (unit.start, k)
                elif unit.start != origin[0]:
                    raise ValueError(f"synchronized input {k} starts at data index "
                                     f"{unit.start}, input {origin[1]} at {origin[0]}")
                expected = origin[0]
            else:
                expected = previous.end + 1
            if unit.start != expected:
                kind = "a gap" if unit.start > expected else "an overlap"
                raise ValueError(f"synchronized input {k}: {kind} at data index {expected}: "
                                 f"the next unit covers {unit.start}..{unit.end}")
            current[k] = unit
            fresh[k] = True
        units = [u for u in current if u is not None]
        if position < 0:
            position = units[0].start
        end = min(u.end for u in units)
        yield SyncStep(tuple(SyncedInput(u.data, u.start, u.end, not f)
                             for u, f in zip(units, fresh, strict=True)), position, end)
        position = end + 1


def _check_all_ended(sources: list[Iterator[Any]], current: list[Unit | None], ended: int,
                     position: int) -> None:
    """Input ``ended`` has no unit at ``position`` (-1: it has no unit at all): the
    others must end there too."""
    stopped = f"ended at data index {position - 1}" if position >= 0 else "has no unit"
    for k, unit in enumerate(current):
        if k != ended and unit is not None and unit.end >= position:
            raise ValueError(f"synchronized input {ended} {stopped} but input {k} goes on "
                             f"to {unit.end}")
    for k, source in enumerate(sources):
        unit = current[k]
        if k == ended or (unit is not None and unit.end >= position):
            continue
        for item in source:  # one unit is enough to tell (the stream may be endless)
            if isinstance(item, PiperError):
                continue
            unit = _unit(item, k)
            raise ValueError(f"synchronized input {ended} {stopped} but input {k} goes on "
                             f"with {unit.start}..{unit.end}")
