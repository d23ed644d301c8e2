"""Worker threads: one lane, fed by a queue that every thread reads.

Threads share the caller's memory, so nothing is pickled: a batch is the list
of items itself. One shared queue balances the load perfectly; a thread cannot
die the way a process can, so this backend never reports a lost lane.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, ClassVar

from .._execute import TaskSpec, run_batch
from .base import Backend, Batch, Done, Lane, Sink

__all__ = ["ThreadBackend"]


class ThreadBackend(Backend):
    """``worker_type='thread'``: ``workers`` daemon threads in this process."""

    target_seconds: ClassVar[float] = 0.001

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._calls: dict[int, Any] = {}
        self._lane: Lane | None = None

    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        self.sink = sink
        self._calls = {tid: spec.caller() for tid, spec in tasks.items()}
        self._lane = Lane(f"{self.name}-threads", capacity=self.workers * self.prefetch)
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{self.name}-worker-{i}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return [self._lane]

    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        self._queue.put(batch)

    def _work(self) -> None:
        get, calls, lane, done = self._queue.get, self._calls, self._lane, self.sink.done
        assert lane is not None
        while (batch := get()) is not None:
            values, failures, seconds = run_batch(calls[batch.task], batch.items)
            done(lane, Done(batch, values, failures, seconds))
            del batch, values, failures  # the results are the consumer's now, not held here

    def stop(self, forced: bool = False) -> None:
        for _ in self._threads:
            self._queue.put(None)
        # A thread busy in a long call cannot be interrupted; it is a daemon
        # and its late result is ignored by the stopped scheduler.
        current = threading.current_thread()  # a task's function may stop its own NuMap
        for thread in self._threads:
            if thread is not current:
                thread.join(0 if forced else 0.2)
        self._threads.clear()
