"""Executor benchmark: NuMap on a dask cluster against dask's own ``client.map``.

Run from the repository root (needs ``pip install 'papyflow[dask]'``)::

    python -m benchmarks.executor            # about a minute
    python -m benchmarks.executor --quick    # small sizes, a smoke test

The cluster: ``LocalCluster`` with 2 worker processes of 1 thread each, every
socket on 127.0.0.1. Contenders, on the same cluster and the same items:

``dask``
    ``client.map(func, items, pure=False)`` and ``as_completed(...,
    with_results=True)``: one dask task per item, results as they finish.
``NuMap``
    ``NuMap(func, items, executor=client.get_executor(), worker_num=2)``:
    one future per batch, results in input order (and a row with
    ``ordered=False``).

Workloads: ``cpu``, a pure-Python loop calibrated to about 2 ms per item
(``benchmarks.workloads.spin``), 2,000 items; ``cheap``, ``x + 1``, 2,000
items (what a task costs, nothing else). Throughput is items per second of
the whole map, start to last result; repeats are interleaved and the best
counts.

Memory: NuMap over an endless input (``itertools.count()``), ``x + 1``,
reading 100,000 results; the parent's resident memory after 10,000 and after
100,000 results, and its peak. ``client.map`` cannot take an endless input:
it submits every item at once. Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

from benchmarks.machine import machine_info, machine_line
from benchmarks.rss import self_maxrss_bytes
from benchmarks.workloads import calibrate_burn, inc, spin
from numap import NuMap

WORKERS = 2
ITEM_SECONDS = 0.002
MiB = 1 << 20


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_cluster() -> tuple[Any, Any]:
    """A local dask cluster (2 processes x 1 thread, loopback only, no dashboard) and a client."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=WORKERS, processes=True, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
    return Client(cluster), cluster


# -- contenders: each maps func over items and returns the sum of the results ---------------


def with_dask(client: Any, func: Callable[..., Any], items: list[int],
              kwargs: dict[str, Any]) -> int:
    from distributed import as_completed

    futures = client.map(func, items, pure=False, **kwargs)
    total = sum(result for _, result in as_completed(futures, with_results=True))
    del futures
    return total


def with_numap(client: Any, func: Callable[..., Any], items: list[int],
               kwargs: dict[str, Any], ordered: bool = True) -> int:
    with NuMap(func, items, kwargs=kwargs, executor=client.get_executor(),
               worker_num=WORKERS, ordered=ordered) as results:
        return sum(results)


def timed(run: Callable[..., int], *args: Any) -> tuple[float, int]:
    """Seconds of ``run(*args)``, and what it returned."""
    began = time.perf_counter()
    total = run(*args)
    return time.perf_counter() - began, total


def throughput(client: Any, workloads: dict[str, tuple[Callable[..., Any], list[int],
                                                          dict[str, Any]]],
               repeat: int) -> dict[str, dict[str, float]]:
    """Best seconds of each contender on each workload, repeats interleaved."""
    contenders: dict[str, Callable[..., int]] = {
        "dask client.map + as_completed": with_dask,
        "NuMap on client.get_executor()": with_numap,
        "NuMap, ordered=False": lambda *a: with_numap(*a, ordered=False),
    }
    best: dict[str, dict[str, float]] = {w: {} for w in workloads}
    for name, (func, items, kwargs) in workloads.items():
        expected = sum(x + 1 for x in items)
        for run in contenders.values():  # warm-up: imports in the workers
            run(client, func, items[:50], kwargs)
        for k in range(repeat):
            for label, run in contenders.items():
                _log(f"{name}: repeat {k + 1}/{repeat}, {label}")
                seconds, total = timed(run, client, func, items, kwargs)
                assert total == expected, (label, total, expected)
                best[name][label] = min(best[name].get(label, float("inf")), seconds)
    return best


def endless_memory(client: Any, first: int, last: int) -> dict[str, float]:
    """RSS of this process after ``first`` and after ``last`` results of an endless map."""
    process = psutil.Process()
    rss: dict[str, float] = {}
    with NuMap(inc, itertools.count(), executor=client.get_executor(),
               worker_num=WORKERS) as results:
        began = time.perf_counter()
        for i, value in enumerate(results, 1):
            assert value == i
            if i == first:
                rss["rss_first"] = process.memory_info().rss
                rss["peak_first"] = self_maxrss_bytes()
            if i == last:
                rss["rss_last"] = process.memory_info().rss
                rss["peak_last"] = self_maxrss_bytes()
                rss["seconds"] = time.perf_counter() - began
                break
    return rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executor")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        import distributed  # noqa: F401 - only to tell it is there
    except ImportError:
        print("dask.distributed is not installed: pip install 'papyflow[dask]'", file=sys.stderr)
        return 2
    n_cpu, n_cheap = (300, 500) if args.quick else (2000, 2000)
    first, last = (2_000, 20_000) if args.quick else (10_000, 100_000)
    repeat = 1 if args.quick else args.repeat
    loops, per_item = calibrate_burn(ITEM_SECONDS)
    info = machine_info(("dask", "distributed", "numpy"))
    print(f"# Benchmark suite `executor`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; dask {info['packages']['distributed']}, "
          f"LocalCluster of {WORKERS} worker processes x 1 thread; best of {repeat}; "
          f"`cpu` items take {per_item * 1000:.2f} ms here ({loops} loops).\n")
    began = time.monotonic()
    client, cluster = start_cluster()
    try:
        workloads = {
            "cpu": (spin, list(range(n_cpu)), {"loops": loops}),
            "cheap": (inc, list(range(n_cheap)), {}),
        }
        best = throughput(client, workloads, repeat)
        _log(f"memory: an endless input, {last} results")
        memory = endless_memory(client, first, last)
    finally:
        client.close()
        cluster.close()
    print("## Throughput\n")
    print("| workload | items | contender | items/s | vs dask |")
    print("| --- | --- | --- | --- | --- |")
    ratios: dict[str, float] = {}
    for name, (_, items, _) in workloads.items():
        dask_rate = len(items) / best[name]["dask client.map + as_completed"]
        for label, seconds in best[name].items():
            rate = len(items) / seconds
            print(f"| {name} | {len(items):,} | {label} | {rate:,.0f} | "
                  f"{rate / dask_rate:.2f}x |")
        ratios[name] = best[name]["dask client.map + as_completed"] / best[name][
            "NuMap on client.get_executor()"]
    print("\n## Memory: an endless input\n")
    print("| results read | parent RSS (MiB) | parent peak RSS (MiB) |")
    print("| --- | --- | --- |")
    print(f"| {first:,} | {memory['rss_first'] / MiB:.1f} | {memory['peak_first'] / MiB:.1f} |")
    print(f"| {last:,} | {memory['rss_last'] / MiB:.1f} | {memory['peak_last'] / MiB:.1f} |")
    growth = (memory["peak_last"] - memory["peak_first"]) / MiB
    print(f"\n{last:,} results of `x + 1` over `itertools.count()` in "
          f"{memory['seconds']:.1f} s ({last / memory['seconds']:,.0f} items/s); the peak grew "
          f"by {growth:.1f} MiB from {first:,} to {last:,} results. `client.map` cannot take "
          f"an endless input: it submits every item at once.\n")
    print("## Targets\n")
    print("| scenario | target | measured |")
    print("| --- | --- | --- |")
    for name in workloads:
        print(f"| throughput, `{name}`, NuMap (ordered) against dask's own | ≥ 0.8x | "
              f"{ratios[name]:.2f}x |")
    print(f"| parent peak RSS, {first:,} → {last:,} results of an endless input | flat | "
          f"+{growth:.1f} MiB |")
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
