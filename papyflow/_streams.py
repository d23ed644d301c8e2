"""The iterators that carry items between Pipers.

A Piper's input is the zip of its upstream Pipers' outputs (one reader each:
``inboxes``), grouped by ``consume``; its output is its results, spread by ``produce`` and
shared by ``Fanout`` among the Pipers downstream. ``split`` and ``merge`` deal
the items of a spawned Piper to its copies and collect them back in order.

These iterators are read from several threads (NuMap inlets, the Plumber), so
the shared ones take a lock per item.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .errors import PiperError

__all__ = ["Fanout", "consume", "inboxes", "merge", "produce", "split"]


class _Shared:
    """A source that several readers take from, one item at a time, under a lock."""

    def __init__(self, source: Iterable[Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._source: Iterator[Any] | None = None if source is None else iter(source)
        self._ended = False

    def _pull(self) -> Any:
        """Under the lock: the source's next item; StopIteration, for good, at its end."""
        if self._ended or self._source is None:
            raise StopIteration
        try:
            return next(self._source)
        except StopIteration:
            self._ended = True
            raise


class Fanout(_Shared):
    """One source read by several readers, each seeing every item once.

    Only the items that the slowest reader has not taken yet are kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._kept: deque[Any] = deque()
        self._first = 0  # index of the oldest kept item
        self._positions: list[int] = []

    def reader(self) -> _Reader:
        """A new reader, starting with the first item (register readers before reading)."""
        with self._lock:
            self._positions.append(self._first)
            return _Reader(self, len(self._positions) - 1)

    @property
    def readers(self) -> int:
        return len(self._positions)

    def feed(self, source: Iterable[Any]) -> None:
        """Set what the readers read."""
        with self._lock:
            self._source = iter(source)

    def resolve(self, reader: _Reader) -> Iterator[Any]:
        """What ``reader`` should read: the source itself when it is the only reader."""
        with self._lock:
            if len(self._positions) == 1 and self._source is not None and not self._kept:
                return self._source
            return reader

    def _next(self, reader: int) -> Any:
        with self._lock:
            position = self._positions[reader]
            offset = position - self._first
            if offset < len(self._kept):
                item = self._kept[offset]
            else:
                item = self._pull()
                self._kept.append(item)
            self._positions[reader] = position + 1
            slowest = min(self._positions)
            while self._first < slowest:
                self._kept.popleft()
                self._first += 1
            return item

    def __len__(self) -> int:
        """Items kept for readers that have not taken them yet."""
        return len(self._kept)


class _Seat:
    """Reader number ``index`` of a shared source: ``next()`` asks ``take(index)``."""

    __slots__ = ("_index", "_take")

    def __init__(self, take: Callable[[int], Any], index: int) -> None:
        self._take = take
        self._index = index

    def __iter__(self) -> _Seat:
        return self

    def __next__(self) -> Any:
        return self._take(self._index)


class _Reader(_Seat):
    """A reader of a :class:`Fanout`."""

    __slots__ = ("_fanout",)

    def __init__(self, fanout: Fanout, index: int) -> None:
        super().__init__(fanout._next, index)
        self._fanout = fanout

    def resolve(self) -> Iterator[Any]:
        """This reader, or its source when nobody else reads it (set up once, before reading)."""
        return self._fanout.resolve(self)


def _inbox(*items: Any) -> tuple[Any, ...]:
    return items


def inboxes(sources: Sequence[Iterator[Any]]) -> Iterator[tuple[Any, ...]]:
    """The inboxes of a Piper: one item of each source in a tuple, until one ends.

    ``zip`` would do the same, but CPython's keeps the tuple it last made to reuse
    it: the last inbox, and its items, would stay alive until the next is made (a
    large input held while the next one is awaited). Each inbox here is a tuple of
    its own, which nothing but its reader keeps.
    """
    return map(_inbox, *sources)


def consume(inbox: Iterable[tuple[Any, ...]], n: int) -> Iterator[tuple[tuple[Any, ...], ...]]:
    """Group ``n`` consecutive inboxes into one: a tuple of ``n`` results per upstream.

    The last group may be shorter when the input ends. A group handed on is not
    kept here while the next is awaited (see :func:`inboxes`).
    """
    it = iter(inbox)
    while True:
        group: list[tuple[Any, ...]] = []
        for _ in range(n):
            try:
                group.append(next(it))
            except StopIteration:
                if group:
                    yield _transposed(group)
                return
        yield _transposed(group)


def _transposed(group: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """``group``'s inboxes as one (a tuple per upstream); ``group`` is emptied."""
    grouped = tuple(zip(*group, strict=True))
    group.clear()
    return grouped


def produce(results: Iterable[Any], n: int, repeat: bool, name: str,
            failed: Callable[[BaseException], PiperError] = PiperError) -> Iterator[Any]:
    """Emit ``n`` items per result: its elements, or the result ``n`` times with ``repeat``.

    A failed result is emitted ``n`` times, so that downstream items stay aligned;
    so is ``failed(cause)`` for a result that does not have ``n`` elements (the
    Piper counts it there: the item failed in that Piper).
    """
    for result in results:
        if repeat or isinstance(result, PiperError):
            for _ in range(n):
                yield result
            continue
        try:
            items = list(result)
        except TypeError as exc:
            items = [failed(TypeError(
                f"piper {name!r}: produce={n} needs a sequence of {n} elements, "
                f"got {type(result).__name__}: {exc}"))] * n
        if len(items) != n:
            items = [failed(ValueError(
                f"piper {name!r}: produce={n} but a result has {len(items)} elements"))] * n
        yield from items


class _Dealer(_Shared):
    """Deals the items of one source to ``n`` readers in turn (item i to reader i % n)."""

    def __init__(self, source: Iterable[Any], n: int) -> None:
        super().__init__(source)
        self._queues: list[deque[Any]] = [deque() for _ in range(n)]
        self._next_reader = 0

    def take(self, reader: int) -> Any:
        with self._lock:
            queue = self._queues[reader]
            while not queue:
                item = self._pull()
                self._queues[self._next_reader].append(item)
                self._next_reader = (self._next_reader + 1) % len(self._queues)
            return queue.popleft()


def split(source: Iterable[Any], n: int) -> list[Iterator[Any]]:
    """``n`` iterators that take the items of ``source`` in turn."""
    dealer = _Dealer(source, n)
    return [_Seat(dealer.take, i) for i in range(n)]


def merge(sources: list[Iterator[Any]]) -> Iterator[Any]:
    """The items of ``sources`` taken in turn: the inverse of :func:`split`."""
    while True:
        for source in sources:
            try:
                item = next(source)
            except StopIteration:
                return
            yield item
