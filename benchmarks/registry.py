"""Registry of contenders: a stable key, a display label, where the function
lives, and what must be importable for it to run.

The runner never imports a contender's library itself; it probes the
``requires`` statement in a throw-away subprocess and only refers to the
contender function by its ``"module:function"`` target.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from benchmarks.job import Contender


@dataclass(frozen=True)
class ContenderInfo:
    """Static description of one contender."""

    key: str
    label: str
    target: str
    """``"module:function"`` of the contender function."""
    requires: str = ""
    """Python statement that must succeed for the contender to be available.

    The measuring subprocess also runs it before starting the clock, so that
    import time never counts as map time."""
    package: str = ""
    """Distribution name whose version is reported ('' for the standard library)."""
    ordered: bool = True
    """Whether results come back in input order."""


CONTENDERS: dict[str, ContenderInfo] = {
    info.key: info
    for info in (
        ContenderInfo("serial", "map (serial)", "benchmarks.contenders_stdlib:serial_map"),
        ContenderInfo(
            "mp.pool",
            "multiprocessing.Pool.imap",
            "benchmarks.contenders_stdlib:mp_pool_imap",
            requires="import multiprocessing.pool",
        ),
        ContenderInfo(
            "mp.threadpool",
            "multiprocessing.pool.ThreadPool.imap",
            "benchmarks.contenders_stdlib:mp_threadpool_imap",
            requires="import multiprocessing.pool",
        ),
        ContenderInfo(
            "cf.process",
            "ProcessPoolExecutor.map",
            "benchmarks.contenders_stdlib:cf_process_map",
            requires="import concurrent.futures.process",
        ),
        ContenderInfo(
            "cf.thread",
            "ThreadPoolExecutor.map",
            "benchmarks.contenders_stdlib:cf_thread_map",
            requires="import concurrent.futures.thread",
        ),
        ContenderInfo(
            "multiprocess.pool",
            "multiprocess.Pool.imap",
            "benchmarks.contenders_peers:multiprocess_pool_imap",
            requires="import multiprocess",
            package="multiprocess",
        ),
        ContenderInfo(
            "joblib.loky",
            "joblib Parallel (loky, generator)",
            "benchmarks.contenders_peers:joblib_loky",
            requires="from joblib import Parallel, delayed",
            package="joblib",
        ),
        ContenderInfo(
            "joblib.threading",
            "joblib Parallel (threading, generator)",
            "benchmarks.contenders_peers:joblib_threading",
            requires="from joblib import Parallel, delayed",
            package="joblib",
        ),
        ContenderInfo(
            "mpire.process",
            "mpire WorkerPool.imap",
            "benchmarks.contenders_peers:mpire_process",
            requires="from mpire import WorkerPool",
            package="mpire",
        ),
        ContenderInfo(
            "mpire.threading",
            "mpire WorkerPool.imap (threading)",
            "benchmarks.contenders_peers:mpire_threading",
            requires="from mpire import WorkerPool",
            package="mpire",
        ),
        ContenderInfo(
            "pypeln.process",
            "pypeln process.map",
            "benchmarks.contenders_peers:pypeln_process",
            requires="import pypeln",
            package="pypeln",
            ordered=False,
        ),
        ContenderInfo(
            "pypeln.thread",
            "pypeln thread.map",
            "benchmarks.contenders_peers:pypeln_thread",
            requires="import pypeln",
            package="pypeln",
            ordered=False,
        ),
        ContenderInfo(
            "numap.process",
            "NuMap (process)",
            "benchmarks.contenders_numap:numap_process",
            requires="from numap import NuMap",
            package="papyflow",
        ),
        ContenderInfo(
            "numap.thread",
            "NuMap (thread)",
            "benchmarks.contenders_numap:numap_thread",
            requires="from numap import NuMap",
            package="papyflow",
        ),
    )
}


def load(key: str) -> Contender:
    """Import and return the contender function registered under ``key``."""
    module_name, func_name = CONTENDERS[key].target.split(":")
    func: Contender = getattr(importlib.import_module(module_name), func_name)
    return func
