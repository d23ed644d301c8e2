"""Contenders from the standard library: builtin ``map``, ``multiprocessing``
pools and ``concurrent.futures`` executors.

Each function follows the protocol of :mod:`benchmarks.job`.
"""

from __future__ import annotations

from typing import Any

from benchmarks.job import Job


def serial_map(job: Job) -> dict[str, Any]:
    """Builtin ``map`` in the calling process: the serial reference."""
    return job.consume(map(job.func, job.items))


def mp_pool_imap(job: Job) -> dict[str, Any]:
    """``multiprocessing.Pool.imap``; ``with`` terminates the pool on exit."""
    import multiprocessing

    with multiprocessing.Pool(job.workers) as pool:
        return job.consume(pool.imap(job.func, job.items, job.chunksize or 1))


def mp_threadpool_imap(job: Job) -> dict[str, Any]:
    """``multiprocessing.pool.ThreadPool.imap``."""
    from multiprocessing.pool import ThreadPool

    with ThreadPool(job.workers) as pool:
        return job.consume(pool.imap(job.func, job.items, job.chunksize or 1))


def cf_process_map(job: Job) -> dict[str, Any]:
    """``concurrent.futures.ProcessPoolExecutor.map``.

    ``Executor.map`` submits its whole input before returning, so it never
    returns on an endless input.
    """
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(job.workers) as pool:
        return job.consume(pool.map(job.func, job.items, chunksize=job.chunksize or 1))


def cf_thread_map(job: Job) -> dict[str, Any]:
    """``concurrent.futures.ThreadPoolExecutor.map`` (chunksize is ignored for threads)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(job.workers) as pool:
        return job.consume(pool.map(job.func, job.items))
