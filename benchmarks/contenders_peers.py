"""Contenders from third-party libraries: multiprocess, joblib, mpire, pypeln.

Each library is imported inside its function, so a measuring subprocess only
ever loads the library it measures.  Each function follows the protocol of
:mod:`benchmarks.job`.
"""

from __future__ import annotations

import warnings
from typing import Any

from benchmarks.job import Job


def multiprocess_pool_imap(job: Job) -> dict[str, Any]:
    """``multiprocess.Pool.imap`` (the dill-based fork of multiprocessing)."""
    import multiprocess

    with multiprocess.Pool(job.workers) as pool:
        return job.consume(pool.imap(job.func, job.items, job.chunksize or 1))


def joblib_loky(job: Job) -> dict[str, Any]:
    """``joblib.Parallel(n_jobs, return_as='generator')`` on its default loky backend."""
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=job.workers, return_as="generator")
    return job.consume(parallel(delayed(job.func)(x) for x in job.items))


def joblib_threading(job: Job) -> dict[str, Any]:
    """``joblib.Parallel(n_jobs, backend='threading', return_as='generator')``."""
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=job.workers, backend="threading", return_as="generator")
    return job.consume(parallel(delayed(job.func)(x) for x in job.items))


def _mpire_imap(job: Job, **pool_kwargs: Any) -> dict[str, Any]:
    """``mpire.WorkerPool.imap`` with mpire's default chunking.

    mpire derives its default chunk size from the input length, so the length
    is passed as ``iterable_len`` when it is known.  Without it (endless
    input) mpire falls back to chunks of 4 items and warns; the warning is
    silenced here.
    """
    from mpire import WorkerPool  # type: ignore[attr-defined]

    with WorkerPool(n_jobs=job.workers, **pool_kwargs) as pool, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return job.consume(pool.imap(job.func, job.items, iterable_len=job.length))


def mpire_process(job: Job) -> dict[str, Any]:
    """mpire worker processes (its default start method)."""
    return _mpire_imap(job)


def mpire_threading(job: Job) -> dict[str, Any]:
    """mpire worker threads: ``start_method='threading'``, ``use_dill=False``."""
    return _mpire_imap(job, start_method="threading", use_dill=False)


def pypeln_process(job: Job) -> dict[str, Any]:
    """``pypeln.process.map(f, data, workers=n)``; results come unordered."""
    import pypeln as pl

    return job.consume(pl.process.map(job.func, job.items, workers=job.workers))


def pypeln_thread(job: Job) -> dict[str, Any]:
    """``pypeln.thread.map(f, data, workers=n)``; results come unordered."""
    import pypeln as pl

    return job.consume(pl.thread.map(job.func, job.items, workers=job.workers))
