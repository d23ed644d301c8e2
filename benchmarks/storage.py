"""Storage benchmarks: small results into one HDF5 file from two processes.

Run from the repository root::

    python -m benchmarks.storage            # 10,000 results, best of 3
    python -m benchmarks.storage --quick    # 2,000 results, once: a smoke test

Scenarios, each in fresh processes (forked once the imports are done); the clock
runs from the moment every process is ready to the moment the last result is in
the file (flushed) and every process has finished:

``queue``
    two sender processes, one ``QueueStorageServiceWriter`` process: the senders
    send half the results each, then ``send_done`` (waits for the writer).
``lock``
    two processes storing through one ``LockWrapper`` (the file is opened and
    closed by every store, under the lock).
``direct``
    one process, ``HDF5StorageService.opened()``, no other process; the file is
    flushed after every store (the queue writer flushes once per batch).

A result is ``Result(f"results.run_{i:05d}", i)``: one small value (a group and a
dataset in the file).
Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.machine import machine_info, machine_line
from papyflow.storage import (
    LEAF,
    TREE,
    Group,
    HDF5StorageService,
    LockWrapper,
    QueueStorageServiceWriter,
    Result,
    StorageQueue,
)

FORK = multiprocessing.get_context("fork")
TARGET = 5000.0  # results per second through the queue writer, 2 senders


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _result(i: int) -> Result:
    return Result(f"results.run_{i:05d}", i)


def _send(sender: Any, indices: range, ready: Any) -> None:
    ready.wait()
    for i in indices:
        sender.store(LEAF, _result(i))
    sender.send_done()


def _write(filename: str, queue: StorageQueue, ready: Any) -> None:
    writer = QueueStorageServiceWriter(HDF5StorageService(filename), queue)
    ready.wait()
    writer.run()


def _lock_store(wrapper: LockWrapper, indices: range, ready: Any) -> None:
    ready.wait()
    for i in indices:
        wrapper.store(LEAF, _result(i))


def _run(processes: list[Any], ready: Any) -> float:
    for process in processes:
        process.start()
    ready.wait()  # everyone is ready: the clock starts
    began = time.perf_counter()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - began
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"a benchmark process failed: exit codes {failed}")
    return seconds


def queue(filename: str, n: int) -> float:
    """Seconds to store ``n`` results from two senders through the queue writer."""
    channel = StorageQueue(2, FORK)
    ready = FORK.Barrier(4)
    halves = (range(n // 2), range(n // 2, n))
    processes = [FORK.Process(target=_write, args=(filename, channel, ready)),
                 *(FORK.Process(target=_send, args=(channel.sender(k), halves[k], ready))
                   for k in range(2))]
    return _run(processes, ready)


def lock(filename: str, n: int) -> float:
    """Seconds to store ``n`` results from two processes sharing a LockWrapper."""
    wrapper = LockWrapper(HDF5StorageService(filename), FORK.Lock())
    ready = FORK.Barrier(3)
    halves = (range(n // 2), range(n // 2, n))
    processes = [FORK.Process(target=_lock_store, args=(wrapper, halves[k], ready))
                 for k in range(2)]
    return _run(processes, ready)


def direct(filename: str, n: int) -> float:
    """Seconds to store ``n`` results in this process, the file kept open."""
    service = HDF5StorageService(filename)
    began = time.perf_counter()
    with service.opened():
        for i in range(n):
            service.store(LEAF, _result(i))
    return time.perf_counter() - began


SCENARIOS: dict[str, tuple[str, Callable[[str, int], float]]] = {
    "queue": ("queue writer, 2 sender processes", queue),
    "lock": ("LockWrapper, 2 processes", lock),
    "direct": ("one process, file kept open, flushed after every store", direct),
}


def _check(filename: str, n: int) -> None:
    root = Group()
    HDF5StorageService(filename).load(TREE, root, load_data=False)
    count = sum(1 for node in root.walk() if isinstance(node, Result))
    if count != n:
        raise RuntimeError(f"{filename}: {count} results stored, expected {n}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage")
    parser.add_argument("--quick", action="store_true", help="2,000 results, one repeat")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    parser.add_argument("-n", type=int, default=None, metavar="N",
                        help="results per run (default 10,000; 2,000 with --quick)")
    parser.add_argument("--only", default="", metavar="SCENARIO",
                        help=f"comma-separated scenarios (of: {', '.join(SCENARIOS)})")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    only = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    n = args.n or (2000 if args.quick else 10_000)
    repeat = 1 if args.quick else args.repeat
    info = machine_info(("numpy", "h5py"))
    print(f"# Benchmark suite `storage`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; {n:,} small results into one HDF5 "
          f"file (h5py {info['packages']['h5py']}); best of {repeat}.\n")
    root = tempfile.mkdtemp(prefix="papyflow-bench-storage-")
    best: dict[str, list[float]] = {name: [] for name in only}
    try:
        for k in range(repeat):  # interleaved repeats
            for name in only:
                _log(f"{name}: repeat {k + 1}/{repeat}")
                filename = os.path.join(root, f"{name}-{k}.hdf5")
                best[name].append(SCENARIOS[name][1](filename, n))
                _check(filename, n)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("| scenario | results | best (s) | results per second | spread |")
    print("| --- | --- | --- | --- | --- |")
    for name in only:
        times = best[name]
        spread = (max(times) - min(times)) / min(times) * 100
        print(f"| {SCENARIOS[name][0]} | {n:,} | {min(times):.3f} | {n / min(times):,.0f} | "
              f"{spread:.0f}% |")
    if "queue" in best:
        rate = n / min(best["queue"])
        verdict = "met" if rate >= TARGET else "NOT met"
        print(f"\nTarget: at least {TARGET:,.0f} results per second through the queue writer "
              f"from 2 processes: {rate:,.0f}, {verdict}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
