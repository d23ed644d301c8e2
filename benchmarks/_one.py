"""Measure ONE contender on ONE scenario at ONE size, in this fresh process.

Run by the suite as::

    python -m benchmarks._one <scenario> <contender> <size> [--chunksize N]

It prints exactly one line starting with :data:`RESULT_MARKER` followed by a
JSON object (status, timings, peak RSS, pulled-ahead count, ...) and exits.
Anything else the contender prints is ignored by the parent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil

from benchmarks import workloads
from benchmarks.job import Job
from benchmarks.registry import CONTENDERS, load
from benchmarks.rss import PeakRss, self_maxrss_bytes
from benchmarks.scenarios import SCENARIOS, Scenario

RESULT_MARKER = "@@papyflow-bench@@ "
"""Prefix of the single result line on stdout."""

MIB = 1024 * 1024


def emit(payload: dict[str, Any]) -> None:
    """Print the result line and flush it (the process may be killed right after)."""
    sys.stdout.write(RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def int_key(result: Any) -> int:
    """Value of an integer result."""
    return int(result)


def array_key(result: Any) -> int:
    """Value of an array result (all elements equal; first and last are compared).

    Returns -1, which no checksum can absorb, for a malformed array.
    """
    first, last = float(result[0]), float(result[-1])
    if first != last or not first.is_integer() or len(result) != workloads.ARRAY_LEN:
        return -1
    return int(first)


class Checker:
    """Consume results, time the last one and compute order-sensitive checksums."""

    def __init__(
        self,
        key: Callable[[Any], int],
        limit: int | None,
        pulled: Callable[[], int] | None = None,
        on_mark: Callable[[], object] | None = None,
    ) -> None:
        self.key = key
        self.limit = limit
        self.pulled = pulled
        self.on_mark = on_mark
        """Called after the last result, pool still alive (an extra RSS sample)."""
        self.pulled_at_last: int | None = None
        self.count = 0
        self.total = 0
        self.weighted = 0
        self.t_last = 0.0

    def __call__(self, results: Iterable[Any]) -> dict[str, Any]:
        stream: Iterator[Any] = iter(results)
        if self.limit is not None:
            stream = itertools.islice(stream, self.limit)
        for result in stream:
            value = self.key(result)
            self.count += 1
            self.total += value
            self.weighted += self.count * value
        self.t_last = time.perf_counter()
        if self.pulled is not None:
            self.pulled_at_last = self.pulled()
        if self.on_mark is not None:
            self.on_mark()
        return {"count": self.count}

    @staticmethod
    def expected(n: int) -> tuple[int, int]:
        """Expected (sum, weighted sum) when result ``p`` (0-based) equals ``p + 1``."""
        return n * (n + 1) // 2, n * (n + 1) * (2 * n + 1) // 6


def make_items(scenario: Scenario, size: int) -> tuple[Iterator[Any], int | None]:
    """Input stream of the scenario and its length (``None`` when endless)."""
    if scenario.source == "ints":
        return workloads.ints(size), size
    if scenario.source == "arrays":
        return workloads.arrays(size), size
    if scenario.source == "slow-arrays":
        return workloads.slow_arrays(size), size
    if scenario.source == "endless":
        return workloads.endless(), None
    raise ValueError(f"unknown source {scenario.source!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of one measurement."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._one")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("size", type=int)
    parser.add_argument("--chunksize", type=int, default=None)
    parser.add_argument("--interval", type=float, default=0.01, help="RSS poll period, s")
    parser.add_argument("--rss-cap-mib", type=int, default=None, help="give up above this tree RSS")
    parser.add_argument("--deadline", type=float, default=None, help="give up after this many s")
    return parser.parse_args(argv)


class GiveUp:
    """Report a measurement that will not finish, kill its workers and exit.

    Called from the RSS sampler (cap exceeded) or from a timer thread (deadline
    passed) while the contender is still running in the main thread.
    """

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self.sampler: PeakRss | None = None
        self._lock = threading.Lock()

    def __call__(self, reason: str, sampler: PeakRss | None = None, status: str = "limit") -> None:
        if not self._lock.acquire(blocking=False):
            return
        sampler = sampler or self.sampler
        own = self_maxrss_bytes()
        emit(
            {
                **self.base,
                "status": status,
                "error": reason,
                "elapsed_s": sampler.running_s() if sampler else None,
                "rss_self_peak": own,
                # Sampling lags behind a busy main thread: never report less than our own peak.
                "rss_tree_peak": max(sampler.tree_peak if sampler else 0, own),
            }
        )
        if os.getpgid(0) == os.getpid():
            # Leader of our own process group (started by the suite): take the group down.
            os.killpg(os.getpid(), signal.SIGKILL)
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
        os._exit(3)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print its result line."""
    args = parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    info = CONTENDERS[args.contender]
    base: dict[str, Any] = {
        "scenario": scenario.name,
        "contender": info.key,
        "size": args.size,
        "chunksize": args.chunksize,
        "pid": os.getpid(),
    }
    items, length = make_items(scenario, args.size)
    key = array_key if scenario.source in ("arrays", "slow-arrays") else int_key
    counter = items if isinstance(items, workloads.CountingIterator) else None
    cap = args.rss_cap_mib * MIB if args.rss_cap_mib else None
    give_up = GiveUp(base)
    sampler = PeakRss(args.interval, cap, give_up)
    give_up.sampler = sampler
    checker = Checker(
        key,
        args.size if length is None else None,
        (lambda: counter.pulled) if counter is not None else None,
        sampler.sample,
    )
    job = Job(
        func=getattr(workloads, scenario.func),
        items=items,
        workers=scenario.workers,
        consume=checker,
        chunksize=args.chunksize,
        length=length,
    )
    try:
        # Import the library before the clock starts: import time is not map time.
        exec(info.requires or "pass", {})  # noqa: S102 - a constant from the registry
        contender = load(info.key)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        emit({**base, "status": "error", "error": f"import: {type(exc).__name__}: {exc}"})
        return 1

    start_rss = psutil.Process().memory_info().rss
    deadline = args.deadline if args.deadline is not None else float("inf")
    timer = threading.Timer(deadline, give_up, (f"no result after {deadline:g} s", None, "timeout"))
    timer.daemon = True
    t0 = time.perf_counter()
    sampler.start()
    if args.deadline is not None:
        timer.start()
    try:
        contender(job)
        t_end = time.perf_counter()
    except BaseException as exc:  # noqa: BLE001 - reported, not raised
        timer.cancel()
        sampler.stop()
        emit(
            {
                **base,
                "status": "error",
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "traceback": traceback.format_exc()[-2000:],
                "count": checker.count,
                "elapsed_s": time.perf_counter() - t0,
            }
        )
        return 1
    timer.cancel()
    sampler.stop()
    children_after = len(psutil.Process().children(recursive=True))

    n = args.size
    want_total, want_weighted = Checker.expected(n)
    problems = []
    if checker.count != n:
        problems.append(f"got {checker.count} results, expected {n}")
    elif checker.total != want_total:
        problems.append("wrong values (sum mismatch)")
    elif info.ordered and checker.weighted != want_weighted:
        problems.append("results out of input order")
    elapsed = (checker.t_last or t_end) - t0
    own_peak = max(sampler.self_peak, self_maxrss_bytes())
    payload = {
        **base,
        "status": "wrong" if problems else "ok",
        "error": "; ".join(problems),
        "count": checker.count,
        "elapsed_s": elapsed,
        "total_s": t_end - t0,
        "teardown_s": t_end - (checker.t_last or t_end),
        "rss_start": start_rss,
        "rss_self_peak": own_peak,
        "rss_tree_peak": max(sampler.tree_peak, own_peak),
        "max_children": sampler.max_children,
        "children_after": children_after,
        "pulled": checker.pulled_at_last,
        "pulled_ahead": None if checker.pulled_at_last is None else checker.pulled_at_last - n,
        "pulled_after_stop": None if counter is None else counter.pulled - n,
    }
    emit(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
