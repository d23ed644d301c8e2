"""Remote workers over loopback against local worker processes.

Run from the repository root::

    python -m benchmarks remote            # about 1-2 minutes
    python -m benchmarks remote --quick    # smaller sizes, a smoke test

A ``numap-worker`` server (2 worker processes, with a key, so every message
is signed and checked) runs on 127.0.0.1 for the whole run; each measurement
runs in a fresh client process, imports done before the clock, and times
from the NuMap's creation (connecting and sending the task, or forking the
local workers) to its last result.

Scenarios:

``overhead``
    ``x + 1`` over 1,000,000 ints: per-item cost. Target: remote at most 2x the
    per-item time of 2 local worker processes.
``cpu``
    CPU-bound pure-Python items (2.5 ms each on the development machine), 400 of them: target, 2 remote worker processes
    give at least 90% of the throughput of 2 local ones.

Repeats are interleaved; the best repeat counts. Markdown goes to stdout,
progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import machine_info, machine_line

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plus_one(x: int) -> int:
    return x + 1


def spin(n: int) -> int:
    """Pure-Python CPU work: a few ms for n = 100,000 (2.5 ms on the development machine)."""
    total = 0
    for k in range(n):
        total += k * k % 7
    return total


def one(kind: str, workload: str, count: int, address: str, key: str) -> dict:
    """One run in this (fresh) process: items/s."""
    from numap import NuMap

    func, items = (plus_one, range(count)) if workload == "overhead" else \
        (spin, [100_000] * count)
    remote = {} if kind == "local" else {"worker_num": 0,
                                          "worker_remote": ((address, 2),),
                                          "remote_auth": key}
    began = time.perf_counter()
    numap = NuMap(func, items, **({"worker_num": 2} if kind == "local" else remote))
    got = 0
    for _ in numap:
        got += 1
    seconds = time.perf_counter() - began
    numap.stop()
    assert got == count, (got, count)
    return {"seconds": seconds, "rate": count / seconds}


def _measure(kind: str, workload: str, count: int, address: str, key: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.remote", "--one", kind, workload, str(count),
               address, key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _server(key: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "numap.worker", "serve", "--bind", "tcp://127.0.0.1:0",
         "--workers", "2", "--auth", str(key)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd=ROOT, start_new_session=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if " on tcp://" not in line:
        process.kill()
        raise RuntimeError(f"the worker server did not start: {line!r}")
    return process, line.split(" on tcp://", 1)[1].split()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks remote")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=5, metavar="N", help="repeats (default 5)")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, workload, count, address, key = args.one
        print(json.dumps(one(kind, workload, int(count), address, key)))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    repeat = 1 if args.quick else args.repeat
    sizes = {"overhead": 100_000 if args.quick else 1_000_000, "cpu": 100 if args.quick else 400}
    info = machine_info(("numpy", "pyzmq"))
    print(f"# Benchmark suite `remote`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; a keyed numap-worker server with 2 "
          f"worker processes on 127.0.0.1; best of {repeat}.\n")
    folder = Path(tempfile.mkdtemp(prefix="papyflow-bench-remote-"))
    began = time.monotonic()
    from numap._auth import keygen

    key = keygen(folder / "worker.key")
    server, address = _server(key)
    best: dict[tuple[str, str], list[dict]] = {}
    try:
        for k in range(repeat):
            for workload in ("overhead", "cpu"):
                for kind in ("local", "remote"):
                    _log(f"{workload}: {kind}, repeat {k + 1}/{repeat}")
                    best.setdefault((workload, kind), []).append(
                        _measure(kind, workload, sizes[workload], address, str(key)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    targets = []
    for workload, title in (("overhead", f"`x + 1` over {sizes['overhead']:,} ints"),
                            ("cpu", f"CPU-bound pure-Python items, {sizes['cpu']} of them")):
        print(f"## `{workload}`: {title}, 2 workers\n")
        print("| contender | items/s (best) | µs per item | spread |")
        print("| --- | --- | --- | --- |")
        rates = {}
        for kind, label in (("local", "NuMap, 2 local worker processes"),
                            ("remote", "NuMap, 2 remote worker processes (loopback, key)")):
            rows = best[(workload, kind)]
            rate = max(r["rate"] for r in rows)
            worst = min(r["rate"] for r in rows)
            rates[kind] = rate
            print(f"| {label} | {rate:,.0f} | {1e6 / rate:.2f} | "
                  f"{(rate - worst) / rate * 100:.0f}% |")
        ratio = rates["local"] / rates["remote"]
        print()
        if workload == "overhead":
            targets.append(("remote per-item overhead, `x + 1`", "≤ 2x local",
                            f"{ratio:.2f}x local's time per item"))
        else:
            targets.append(("CPU-bound, 2 remote workers", "≥ 90% of 2 local",
                            f"{rates['remote'] / rates['local'] * 100:.0f}%"))
    print("## Targets\n")
    print("| scenario | target | measured |")
    print("| --- | --- | --- |")
    for row in targets:
        print("| " + " | ".join(row) + " |")
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
