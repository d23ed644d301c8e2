"""Peak resident memory of a process and of its whole process tree.

:class:`PeakRss` polls ``psutil`` from a daemon thread.  The process's own
peak is also read from ``getrusage(RUSAGE_SELF).ru_maxrss`` (exact, kernel
tracked); the tree peak (process plus all descendants, summed RSS) can only be
sampled.  Summed RSS counts pages shared after ``fork`` once per process, so it
over-states the true footprint in the same way for every fork-based pool.

An optional cap turns a runaway contender into a clean result: when the tree
exceeds ``cap_bytes`` the ``on_cap`` callback is invoked (once) from the
sampler thread with a short reason and the sampler.

Sampling needs the GIL for every ``/proc`` read, so while the sampled process
runs a tight pure-Python loop samples come late: the tree peak is then a lower
bound.  The process's own peak (``ru_maxrss``) is always exact.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable

import psutil


def self_maxrss_bytes() -> int:
    """Kernel-tracked peak RSS of the calling process, in bytes (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """Sample own and tree RSS every ``interval_s`` seconds in a daemon thread."""

    def __init__(
        self,
        interval_s: float = 0.01,
        cap_bytes: int | None = None,
        on_cap: Callable[[str, PeakRss], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.cap_bytes = cap_bytes
        self.on_cap = on_cap
        self._started = 0.0
        self.self_peak = 0
        self.tree_peak = 0
        self.max_children = 0
        self.samples = 0
        self._proc = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def start(self) -> PeakRss:
        """Take a first sample and start the sampler thread."""
        self._started = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def running_s(self) -> float:
        """Seconds since :meth:`start`."""
        return time.monotonic() - self._started

    def stop(self) -> None:
        """Stop sampling and take a last sample."""
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> int:
        """Record one sample and return the current tree RSS in bytes."""
        own = self._rss(self._proc)
        tree = own
        try:
            children = self._proc.children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            tree += self._rss(child)
        self.self_peak = max(self.self_peak, own)
        self.tree_peak = max(self.tree_peak, tree)
        self.max_children = max(self.max_children, len(children))
        self.samples += 1
        return tree

    @staticmethod
    def _rss(proc: psutil.Process) -> int:
        """RSS of ``proc`` in bytes, 0 if it vanished meanwhile."""
        try:
            return int(proc.memory_info().rss)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            tree = self.sample()
            if self.cap_bytes is not None and tree > self.cap_bytes and self.on_cap is not None:
                self.on_cap(f"process tree exceeded {self.cap_bytes / 2**20:.0f} MiB RSS", self)
                return
