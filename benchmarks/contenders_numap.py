"""NuMap as a contender: library defaults except ``worker_type`` and ``worker_num``.

Follows the protocol of :mod:`benchmarks.job`.  The context manager stops the
workers on exit, also when the consumer stopped early.
"""

from __future__ import annotations

from typing import Any

from benchmarks.job import Job


def _numap(job: Job, worker_type: str) -> dict[str, Any]:
    """Map ``job.func`` over ``job.items`` with a default-configured NuMap."""
    from numap import NuMap

    with NuMap(job.func, job.items, worker_type=worker_type, worker_num=job.workers) as nm:
        return job.consume(nm)


def numap_process(job: Job) -> dict[str, Any]:
    """NuMap with worker processes."""
    return _numap(job, "process")


def numap_thread(job: Job) -> dict[str, Any]:
    """NuMap with worker threads."""
    return _numap(job, "thread")
