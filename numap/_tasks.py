"""A task's state between its input and its consumer, and the iterator over its results.

Results reach the consumer as *chunks* in the task's ``ready`` deque: a list of
values (a whole batch, in the usual case) or a :class:`Raise` for an item that
failed. The consumer walks a chunk with a plain list iterator, so taking one
result costs no lock; it comes back to the scheduler once per chunk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._execute import TaskSpec

if TYPE_CHECKING:
    from ._map import NuMap
    from .backends.base import Batch

__all__ = ["Raise", "TaskState", "NuMapTask"]

_EMPTY: Iterator[Any] = iter(())


@dataclass(slots=True, eq=False)
class Raise:
    """A chunk of one failed item: its exception is raised to the consumer."""

    exc: BaseException


@dataclass(slots=True, eq=False)
class TaskState:
    """Everything the scheduler keeps about one task."""

    id: int
    spec: TaskSpec
    source: Iterator[Any] | None  # an external input, pulled by the feeder
    upstream: TaskState | None  # or an earlier task of the same NuMap (chaining)
    timeout: float | None = None
    block: bool = True
    tracked: dict[int, Any] | None = None
    pulled: int = 0  # index of the next input item
    exhausted: bool = False  # the input has ended
    undelivered: dict[int, Batch] = field(default_factory=dict)  # by batch id, oldest first
    ready: deque[list[Any] | Raise] = field(default_factory=deque)
    ready_count: int = 0  # items in ``ready``
    cur: Iterator[Any] = _EMPTY  # the consumer's place in the chunk it is reading
    cur_size: int = 0  # items of that chunk, released to the buffer when it is done
    per_item: float | None = None  # seconds per item, as the workers measured it

    def finished(self) -> bool:
        """True when every result of this task has been handed out."""
        return self.exhausted and not self.undelivered and not self.ready


class NuMapTask:
    """The iterator over one task's results (the reference's ``_NuMapTask``).

    ``timeout`` and ``block`` apply to each ``next()``; see :meth:`NuMap.next`.
    Several tasks can be iterated side by side, each by one thread at a time.
    """

    __slots__ = ("_numap", "_state", "timeout", "block")

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

    def __iter__(self) -> NuMapTask:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._state.cur)
        except StopIteration:
            return self._numap._next_chunk(self._state, self.timeout, self.block)

    def __repr__(self) -> str:
        return f"<NuMapTask {self._state.id} of {self._numap.name!r}>"
