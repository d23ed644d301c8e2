"""A task's state between its input and its consumer, and the iterator over its results.

Results reach the consumer as *chunks* in the task's ``ready`` deque: a list of
values (a whole batch, in the usual case) or a :class:`Raise` for an item that
failed. Each task has one ``stream``: ``itertools.chain.from_iterable`` over
its chunks. Taking a result from a chunk then costs no Python call and no
lock; the scheduler is asked for the next chunk once per chunk.

``chain`` drops its source for good when the source raises, but not when the
*current* chunk's iterator raises. So everything the consumer must see as an
exception (a failed item, a timeout, a broken pool) is handed out as a chunk
that raises once when advanced (:class:`Raise`), and the stream goes on after.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, cast

from ._execute import TaskSpec

if TYPE_CHECKING:
    from ._inlet import Inlet
    from ._map import NuMap
    from .backends.base import Batch

__all__ = ["NuMapTask", "Raise", "TaskState"]


class Raise(itertools.count):
    """A chunk that raises ``exc`` the first time it is advanced, then ends.

    A C iterator underneath (it takes only its C ``iter()`` from
    ``itertools.count``): ``itertools.chain`` takes it without running Python
    code, where a Ctrl-C would make chain drop its source and end the stream.
    Advancing it runs Python, where a Ctrl-C is harmless: chain keeps the chunk,
    and ``exc`` is not spent until it was raised.
    """

    __slots__ = ("_done", "exc")
    exc: BaseException
    _done: bool

    def __new__(cls, exc: BaseException) -> Self:
        self = cast(Self, super().__new__(cls))
        self.exc = exc
        self._done = False
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        self._done = True
        raise self.exc

    def __len__(self) -> int:
        return 1


@dataclass(slots=True, eq=False)
class TaskState:
    """Everything the scheduler keeps about one task."""

    id: int
    spec: TaskSpec
    source: Iterable[Any] | None  # an external input, pulled by the task's inlet
    upstream: TaskState | None  # or an earlier task of the same NuMap (chaining)
    timeout: float | None = None
    block: bool = True
    tracked: dict[int, Any] | None = None
    pulled: int = 0  # index of the next input item
    exhausted: bool = False  # the input has ended
    undelivered: dict[int, Batch] = field(default_factory=dict)  # by batch id, oldest first
    ready: deque[list[Any] | Raise] = field(default_factory=deque)
    ready_count: int = 0  # items in ``ready``
    cur_size: int = 0  # items of the chunk being read, released to the buffer after it
    # The chunk taken from ``ready`` and not yet in the consumer's hands: a Ctrl-C on
    # its way there gives it back (Scheduler.give_back).
    handed: list[Any] | Raise | None = None
    # Whether the task's stream ended as streams end (no more results). A stream whose
    # source a Ctrl-C interrupted at its very first step ends too, without this.
    stream_ended: bool = False
    call: tuple[float | None, bool] | None = None  # timeout and block of one next() call
    per_item: float | None = None  # seconds per item, as the workers measured it
    item_bytes: float | None = None  # bytes per item and its result on the wire
    inlet: Inlet | None = None  # pulls ``source`` (made by the scheduler)
    partial_since: float | None = None  # when the feeder first saw a half-filled batch

    def finished(self) -> bool:
        """True when every result of this task has been handed out."""
        return self.exhausted and not self.undelivered and not self.ready


class _Chunks:
    """The source of a task's stream: asks the NuMap for one chunk per call.

    It holds the NuMap, so that a NuMap whose stream is being read stays alive
    (``for x in NuMap(f, xs)`` keeps no other reference). The NuMap holds the
    stream too; the loop is cut when the task ends, and the scheduler's threads
    reach neither, so an abandoned NuMap is still collected.
    """

    __slots__ = ("_numap", "_state")

    def __init__(self, numap: NuMap, state: TaskState) -> None:
        self._numap: NuMap | None = numap
        self._state = state

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> list[Any] | Raise:
        state = self._state
        try:  # all of it: an exception out of here would end the stream for good
            numap = self._numap
            if numap is None:
                raise StopIteration
            timeout, block = state.call or (state.timeout, state.block)
            chunk = numap._next_chunk(state, timeout, block)
            state.handed = None  # in the consumer's hands now (the chain's)
            return chunk
        except StopIteration:
            self._numap = None
            state.stream_ended = True
            raise
        except BaseException as exc:  # noqa: BLE001 - raised once, by a chunk (Ctrl-C too)
            # Raised here, it would end the stream for good (chain drops its source). A
            # chunk taken and not handed over (a Ctrl-C as it came) goes back first.
            if state.handed is not None and self._numap is not None:
                self._numap._give_back(state)
            return Raise(exc)


def make_stream(numap: NuMap, state: TaskState) -> Iterator[Any]:
    """The one iterator over ``state``'s results that every consumer of the task shares."""
    return itertools.chain.from_iterable(_Chunks(numap, state))


class NuMapTask:
    """The iterator over one task's results (the reference's ``_NuMapTask``).

    ``timeout`` and ``block`` apply to each ``next()``; see :meth:`NuMap.next`.
    Iterating it (``for``, ``list``) uses the task's stream directly, which is
    the fast way to read results. Each task is read by one consumer at a time;
    different tasks may be read by different threads.
    """

    __slots__ = ("_numap", "_state", "block", "timeout")

    def __init__(self, numap: NuMap, state: TaskState, timeout: float | None,
                 block: bool) -> None:
        self._numap = numap
        self._state = state
        self.timeout = timeout
        self.block = block

    @property
    def task(self) -> int:
        """The task's number in its NuMap."""
        return self._state.id

    @property
    def numap(self) -> NuMap:
        return self._numap

    def __iter__(self) -> Iterator[Any]:
        state = self._state
        if self.timeout == state.timeout and self.block == state.block:
            return self._numap._streams[state.id]
        return self

    def __next__(self) -> Any:
        return self._numap.next(self.timeout, self._state.id, self.block)

    def __repr__(self) -> str:
        return f"<NuMapTask {self._state.id} of {self._numap.name!r}>"
