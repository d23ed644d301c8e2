"""``Inlet``: one task's external input, pulled in a thread of its own.

The feeding thread must never wait on an input: an input may be slow (a file
being written, a socket), or may itself wait on results that only the feeding
thread can bring about (a pipeline reading its own NuMap through wrappers).
So each task whose iterable is not an earlier task of the same NuMap gets an
inlet thread. The feeder *asks* it for items (after reserving their credits in
the buffer) and *takes* whatever has arrived; the inlet never pulls an item
it was not asked for, so laziness holds.

``deque.extend(islice(source, n))`` appends each item the moment the source
yields it, in C: the feeder can take the first items of a slow chunk while the
inlet still waits for the rest.
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ._errors import BrokenPoolError

__all__ = ["INPUT_FAILURES_IN_ROW", "Inlet"]

_FAILED = object()  # the place of an item whose pulling raised

INPUT_FAILURES_IN_ROW = 100
"""An input that raises this many times in a row, without an item in between, is
broken (a closed file, a lost connection) and ends: it would fail items for ever."""


def _raising(exc: BaseException) -> Iterator[Any]:
    raise exc
    yield  # a generator that raises at once


class Inlet:
    """Pulls ``source`` on request. All attributes are guarded by the scheduler's lock."""

    def __init__(self, source: Iterable[Any], lock: threading.Lock,
                 space: threading.Condition, name: str) -> None:
        self.source = source
        self.feed: deque[Any] = deque()  # pulled and not yet taken
        self.want = 0  # asked for and not yet pulled (their credits are reserved)
        self.piece = 1  # items pulled between two reports to the feeder
        self.unfilled = 0  # credits of asked items the input ended without giving
        self.taken = 0  # items handed to the feeder
        self.ended = False  # the input is exhausted
        self.expected: int | None = None  # the input's length, if it tells it
        self.closed = False
        self._errors: dict[int, BaseException] = {}  # input index -> what pulling it raised
        self._in_row = 0  # failures since the last item the input gave
        self._lock = lock
        self._wake = threading.Condition(lock)
        self._space = space
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{name}-inlet")

    def start(self) -> None:
        self._thread.start()

    def ask(self, n: int, piece: int | None = None) -> None:
        """Under the lock: pull ``n`` more items, saying so after every ``piece`` of them."""
        self.want += n
        self.piece = piece or n
        self._wake.notify()

    def close(self) -> None:
        """Under the lock: pull nothing more."""
        self.closed = True
        self._wake.notify()

    def take(self, n: int) -> tuple[list[Any], dict[int, BaseException]]:
        """Under the lock: up to ``n`` of the items that have arrived, and the failed positions."""
        feed = self.feed
        n = min(n, len(feed))
        # Popped one by one, never read through an iterator over the feed: the inlet
        # thread appends outside the lock, and an item appended between making such an
        # iterator and reading it fails the read ("deque mutated during iteration"),
        # which killed the feeding thread and broke the NuMap. Appends only add to the
        # right; the ``n`` items on the left are ours.
        popleft = feed.popleft
        items = [popleft() for _ in itertools.repeat(None, n)]
        first = self.taken
        self.taken += n
        errors: dict[int, BaseException] = {}
        if self._errors:
            for index in [i for i in self._errors if first <= i < first + n]:
                errors[index - first] = self._errors.pop(index)
            items = [item for item in items if item is not _FAILED]
        return items, errors

    def _run(self) -> None:
        feed = self.feed
        try:
            source = iter(self.source)
        except BaseException as exc:  # noqa: BLE001 - the task's first item fails with it
            source = _raising(exc)
        hint = 0
        for told in (self.source, source):  # the iterable may know when its iterator does not
            try:
                hint = operator.length_hint(told, 0)
            except Exception:  # noqa: BLE001 - a hint is only a hint
                hint = 0
            if hint > 0:
                break
        if hint > 0:
            with self._lock:
                self.expected = hint
        while True:
            with self._lock:
                while self.want <= 0 and not self.closed:
                    self._wake.wait()
                if self.closed:
                    return
                # A piece at a time (about a batch): the feeder hears of each one,
                # even when the input is slow to give the rest.
                n = min(self.want, self.piece)
                start = self.taken + len(feed)
            error: BaseException | None = None
            try:
                feed.extend(itertools.islice(source, n))
            except BaseException as exc:  # noqa: BLE001 - an input's error is that item's result
                error = exc
            with self._lock:
                got = self.taken + len(feed) - start
                if error is not None:
                    self._errors[start + got] = error
                    feed.append(_FAILED)
                    self._in_row = 1 if got else self._in_row + 1
                    got += 1
                    # An upstream NuMap that broke would raise for ever, and so
                    # would an input that raises again and again. One that raises
                    # SystemExit (or another BaseException) means to end.
                    ended = (isinstance(error, BrokenPoolError)
                             or not isinstance(error, Exception))
                    if self._in_row >= INPUT_FAILURES_IN_ROW:
                        error.add_note(f"numap: the input raised {INPUT_FAILURES_IN_ROW} "
                                       f"times in a row and was closed")
                        ended = True
                else:
                    if got:
                        self._in_row = 0
                    ended = got < n
                self.want -= got
                if ended:
                    self.ended = True
                    self.unfilled += self.want
                    self.want = 0
                self._space.notify_all()
                if ended:
                    return
