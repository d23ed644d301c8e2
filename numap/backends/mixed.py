"""Local worker processes and remote workers in one pool (``worker_num`` and ``worker_remote``).

Both kinds of lane take the same BATCH frames (see :func:`numap.backends.process.prepare_batch`),
so a batch is prepared once and goes wherever the scheduler finds room; each
lane is served by the backend that made it. A lost local worker is replaced;
a lost remote host is not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._execute import TaskSpec
from .base import Backend, Batch, Lane, Sink
from .process import ProcessBackend, prepare_batch
from .remote import RemoteBackend, _Host

__all__ = ["MixedBackend"]


class MixedBackend(Backend):
    """``local`` worker processes and ``remote`` lanes behind one set of lanes."""

    target_seconds: ClassVar[float] = RemoteBackend.target_seconds
    batch_stretch: ClassVar[float] = RemoteBackend.batch_stretch

    def __init__(self, local: ProcessBackend, remote: RemoteBackend) -> None:
        super().__init__(local.workers + remote.workers, local.name)
        self.local = local
        self.remote = remote

    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        lanes = self.remote.start(tasks, sink)  # first: a refused key fails before forking
        try:
            lanes += self.local.start(tasks, sink)
        except BaseException:
            self.remote.stop(forced=True)
            raise
        return lanes

    def _owner(self, lane: Lane) -> Backend:
        return self.remote if isinstance(lane.handle, _Host) else self.local

    def prepare(self, batch: Batch) -> Any:
        return prepare_batch(batch)

    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        self._owner(lane).send(lane, batch, prepared)

    def replace(self, lane: Lane) -> Lane | None:
        return self._owner(lane).replace(lane)

    def stop(self, forced: bool = False) -> None:
        try:
            self.remote.stop(forced)
        finally:
            self.local.stop(forced)
