"""Pipeline benchmarks: papyflow pipelines side by side with their peers.

Run from the repository root (with the ``bench`` extra installed)::

    python -m benchmarks.pipelines            # both scenarios, a few minutes on 2 cores
    python -m benchmarks.pipelines --quick    # smaller sizes, a smoke test
    python -m benchmarks.pipelines --repeat 7 --skip-linear \
        --contenders "papyflow;one pool, chunksize 100"    # two contenders, more repeats

Scenarios:

``stages``
    Three CPU-bound steps of about 0.5 ms each (a calibrated pure-Python loop)
    over 20,000 items on 2 worker processes. papyflow: a Plumber of three
    parallel Pipers sharing one NuMap. Peers: pypeln's process stages, and
    three chained ``multiprocessing.Pool.imap`` calls (one pool shared, and
    one pool per stage; the better is reported), each at its best chunksize.
``linear``
    Five trivial linear Pipers (``inbox[0] + 1``) over 1,000,000 items, run by
    a Plumber, against the same five functions as a plain chain of generators.

Every measurement of ``stages`` runs in a fresh subprocess, its imports done
before the clock starts; repeats are interleaved across contenders and the
best repeat is reported (this machine's speed drifts), with the median.
Each step also adds the CPU time it spent to a counter in shared memory, so
that a run tells how fast the steps themselves ran in it (CPU per step) apart
from how much of the two cores the contender kept busy with them (cores busy
in steps: the steps' CPU over the wall time). Throughput is the cores busy
in steps divided by the CPU time of an item's three steps; the cores busy is
what the contender's own machinery decides, the CPU per step mostly this
machine's speed at that moment (the best repeat is also the one whose steps
ran fastest). Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from benchmarks import _stepcpu
from benchmarks.machine import machine_info, machine_line, packages_line

# -- the work ---------------------------------------------------------------------

LOOPS = 1  # set by calibrate(): loop iterations that take about 0.5 ms


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def calibrate(seconds: float = 0.0005) -> int:
    """Loop iterations that take about ``seconds`` here (best of a few tries)."""
    n = 20_000
    best = min(_timed(lambda: _spin(n)) for _ in range(5))
    return max(1, int(n * seconds / best))


def _timed(func: Callable[[], Any]) -> float:
    began = time.perf_counter()
    func()
    return time.perf_counter() - began


def _work() -> None:
    """The ~0.5 ms of work of one step, its CPU time counted (see
    :mod:`benchmarks._stepcpu`; about 1 µs a step, the same for every contender)."""
    began = time.thread_time()
    _spin(LOOPS)
    _stepcpu.add(time.thread_time() - began)


def step(x: int) -> int:
    """One ~0.5 ms step (plain function: for the pools and pypeln)."""
    _work()
    return x + 1


def step_inbox(inbox: tuple[int, ...]) -> int:
    """The same step as a papyflow worker function."""
    _work()
    return inbox[0] + 1


def _set_loops(n: int) -> None:
    global LOOPS
    LOOPS = n


# -- contenders of the stages scenario ------------------------------------------------


def run_serial(items: int) -> list[int]:
    return [step(step(step(x))) for x in range(items)]


def run_papyflow(items: int) -> list[int]:
    from numap import NuMap
    from papyflow import Piper, Plumber

    with NuMap(worker_type="process", worker_num=2) as numap:
        plumber = Plumber()
        pipers = [Piper(step_inbox, parallel=numap, name=f"step{i}") for i in range(3)]
        pipers[-1].track = True
        plumber.add_pipe(pipers)
        plumber.start([range(items)])
        plumber.run()
        plumber.wait()
        tracked = plumber.stats["pipers_tracked"][pipers[-1]][0]
        plumber.stop()
    return [tracked[i] for i in range(items)]


def _pool_chained(items: int, chunksize: int, shared: bool) -> list[int]:
    ctx = multiprocessing.get_context("fork")
    if shared:
        with ctx.Pool(2) as pool:
            first = pool.imap(step, range(items), chunksize)
            second = pool.imap(step, first, chunksize)
            return list(pool.imap(step, second, chunksize))
    with ctx.Pool(2) as a, ctx.Pool(2) as b, ctx.Pool(2) as c:
        return list(c.imap(step, b.imap(step, a.imap(step, range(items), chunksize),
                                         chunksize), chunksize))


def run_pypeln(items: int, workers: int) -> list[int]:
    import pypeln as pl

    stage: Iterable[int] = range(items)
    for _ in range(3):
        stage = pl.process.map(step, stage, workers=workers, maxsize=100)
    return sorted(stage)  # pypeln gives results as they finish


CONTENDERS: dict[str, Callable[[int], list[int]]] = {
    "serial": run_serial,
    "papyflow (3 Pipers, one shared NuMap)": run_papyflow,
    "Pool.imap x3, one pool, chunksize 1": lambda n: _pool_chained(n, 1, True),
    "Pool.imap x3, one pool, chunksize 10": lambda n: _pool_chained(n, 10, True),
    "Pool.imap x3, one pool, chunksize 100": lambda n: _pool_chained(n, 100, True),
    "Pool.imap x3, a pool per stage, chunksize 10": lambda n: _pool_chained(n, 10, False),
    "Pool.imap x3, a pool per stage, chunksize 100": lambda n: _pool_chained(n, 100, False),
    "pypeln process x3, 1 worker per stage": lambda n: run_pypeln(n, 1),
    "pypeln process x3, 2 workers per stage": lambda n: run_pypeln(n, 2),
}


def _one(name: str, items: int, loops: int) -> None:
    """In a fresh subprocess: time one contender, print one JSON line (with the CPU
    seconds its steps took, in whatever processes they ran). Every contender forks
    its workers, so that they share the counter: pypeln starts its processes with
    multiprocessing's default method, which is set to fork here. A run whose
    steps were not all counted fails."""
    _set_loops(loops)
    multiprocessing.set_start_method("fork", force=True)
    _stepcpu.start()
    # Import time is not map time (as in the numap suite): what a contender
    # imports is imported before the clock starts.
    if name.startswith("pypeln"):
        import pypeln  # noqa: F401
    if name.startswith("papyflow"):
        import numap  # noqa: F401
        import papyflow  # noqa: F401
    began = time.perf_counter()
    out = CONTENDERS[name](items)
    seconds = time.perf_counter() - began
    ok = out == [x + 3 for x in range(items)]
    steps, counted = 3 * items, _stepcpu.steps()
    if counted != steps:
        raise SystemExit(f"{name}: {counted} of {steps} steps had their CPU time counted "
                         f"(a worker the counter did not reach?)")
    print(json.dumps({"name": name, "seconds": seconds, "ok": ok,
                      "step_cpu": _stepcpu.total(), "steps": steps}))


def stages(items: int, repeats: int, loops: int,
           only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The best repeat of each contender (its row from :func:`_one`), with the median
    throughput and the median of its cores busy in steps over all repeats."""
    best: dict[str, dict[str, Any]] = {}
    rates: dict[str, list[float]] = {}
    busy: dict[str, list[float]] = {}
    names = [n for n in CONTENDERS if n == "serial" or not only or any(o in n for o in only)]
    for repeat in range(repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.pipelines", "--one", name,
                 "--items", str(items), "--loops", str(loops)],
                check=False, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                print(f"  {name}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
                best.setdefault(name, {"name": name, "seconds": None, "ok": False})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rates.setdefault(name, []).append(items / row["seconds"])
            busy.setdefault(name, []).append(row["step_cpu"] / row["seconds"])
            print(f"  [stages r{repeat + 1}] {name}: {items / row['seconds']:,.0f} items/s, "
                  f"{row['step_cpu'] / row['steps'] * 1e6:.1f} µs of CPU per step, "
                  f"{busy[name][-1]:.3f} cores busy in steps", file=sys.stderr)
            if name not in best or (best[name]["seconds"] or 1e9) > row["seconds"]:
                best[name] = row
    for name, row in best.items():
        if name in rates:
            row["median_rate"] = statistics.median(rates[name])
            row["median_busy"] = statistics.median(busy[name])
    return [best[name] for name in names]


# -- the linear scenario -----------------------------------------------------------------


def inc(inbox: tuple[int, ...]) -> int:
    return inbox[0] + 1


def _generators(items: int) -> int:
    chain: Iterator[int] = iter(range(items))
    for _ in range(5):
        chain = (inc((x,)) for x in chain)
    return sum(1 for _ in chain)


def _plumber(items: int) -> int:
    from papyflow import Piper, Plumber

    plumber = Plumber()
    last = Piper(inc, name="inc4")
    plumber.add_pipe([Piper(inc, name=f"inc{i}") for i in range(4)] + [last])
    plumber.start([range(items)])
    plumber.run()
    plumber.wait()
    count = plumber.stats["results"][last]
    plumber.stop()
    return count


def linear(items: int, repeats: int) -> dict[str, float]:
    best = {"generators": float("inf"), "plumber": float("inf")}
    for repeat in range(repeats):
        for name, func in (("generators", _generators), ("plumber", _plumber)):
            began = time.perf_counter()
            count = func(items)
            seconds = time.perf_counter() - began
            assert count == items, (name, count)
            print(f"  [linear r{repeat + 1}] {name}: {items / seconds:,.0f} items/s",
                  file=sys.stderr)
            best[name] = min(best[name], seconds)
    return best


# -- the report --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipelines")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--contenders", default="", metavar="TEXT;...",
                        help="stages: only the contenders whose names contain one of these "
                             "texts, separated by ';' (serial always runs)")
    parser.add_argument("--skip-linear", action="store_true", help="run only stages")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=20_000, help=argparse.SUPPRESS)
    parser.add_argument("--loops", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        _one(args.one, args.items, args.loops)
        return 0
    items = 2_000 if args.quick else 20_000
    linear_items = 100_000 if args.quick else 1_000_000
    loops = calibrate()
    info = machine_info(("numpy", "multiprocess", "dill", "pypeln"))
    print(f"# Benchmark suite `pipelines`\n\n{machine_line(info)}  \n{packages_line(info)}\n")
    only = tuple(t.strip() for t in args.contenders.split(";") if t.strip())
    rows = stages(items, args.repeat, loops, only)
    serial = next(r for r in rows if r["name"] == "serial")["seconds"]
    print(f"## `stages`: 3 steps of ~0.5 ms, {items:,} items, 2 worker processes\n")
    print(f"Best of {args.repeat} repeats, each in a fresh process; time from start to "
          f"the last result. CPU per step and cores busy in steps are the best "
          f"repeat's; the median columns are over all repeats.\n")
    print("| Contender | items/s | vs serial | items/s, median | µs of CPU per step | "
          "cores busy in steps | cores busy, median | results |")
    print("|:---|---:|---:|---:|---:|---:|---:|:---|")
    for row in rows:
        if row["seconds"] is None:
            print(f"| {row['name']} | failed | | | | | | |")
            continue
        print(f"| {row['name']} | {items / row['seconds']:,.0f} | "
              f"{serial / row['seconds']:.2f}x | {row['median_rate']:,.0f} | "
              f"{row['step_cpu'] / row['steps'] * 1e6:.1f} | "
              f"{row['step_cpu'] / row['seconds']:.3f} | {row['median_busy']:.3f} | "
              f"{'ok' if row['ok'] else 'WRONG'} |")
    if args.skip_linear:
        return 0
    best = linear(linear_items, args.repeat)
    print(f"\n## `linear`: 5 trivial Pipers over {linear_items:,} items\n")
    print("| Contender | items/s | time vs generators |")
    print("|:---|---:|---:|")
    for name in ("generators", "plumber"):
        print(f"| {'chain of generators' if name == 'generators' else 'papyflow Plumber'} | "
              f"{linear_items / best[name]:,.0f} | {best[name] / best['generators']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
