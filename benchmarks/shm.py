"""Large numpy arrays through process pipelines: shared memory against the pickled path.

Run from the repository root::

    python -m benchmarks shm            # about 1-2 minutes
    python -m benchmarks shm --quick    # a smoke test

Scenarios, for 8 MiB and 64 MiB float64 arrays (16 distinct arrays, cycled),
2 worker processes:

``pipeline``
    A papyflow pipeline of two parallel Pipers on one NuMap (run as one task:
    an array goes to a worker and back once). Stage functions that work in
    place (``a += 1``, then ``a *= 2``) and stage functions that make new
    arrays (``a + 1``, then ``a * 2``).
``chained``
    A NuMap with two chained tasks (an array goes to a worker and back twice),
    in place.

Each runs with ``shared_memory`` at its default (arrays of 1 MiB or more
through shared memory) and with ``shared_memory=None`` (the pickled path
through the pipe), in a fresh process, from the start to the last result.
The reference bandwidth is ``numpy.copy`` into a new array (the allocation
counted, as any copy pays it), best of 10: of the same 16 arrays in turn (the
memory's bandwidth, what the pipeline moves) and of one array again and again
(an 8 MiB one stays in cache), see :func:`copy_bandwidth`. A second reference
is the memory work of each scenario alone: two processes side by side doing,
with no messages at all, what the shared-memory path does to each array (the
stages, then the stages and the copies into segments), see :func:`ceiling`.
A last measurement is what numap's numpy allocator in the workers costs where it
moves nothing: a small-array operation, and random access over a large array it
made, against numpy's own handler (see :func:`handler_cost`).
Repeats are interleaved; the best counts. Markdown goes to stdout, progress to
stderr. The copies into segments take streaming stores from the size numap
picks on this machine (the header says which); ``NUMAP_STREAM_FROM=BYTES`` in
the environment sets it for the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info, machine_line

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600
MiB = 1 << 20
WORKERS = 2  # worker processes of every NuMap here


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_in_place(inbox):
    a = inbox[0]
    a += 1.0
    return a


def scale_in_place(inbox):
    a = inbox[0]
    a *= 2.0
    return a


def add_new(inbox):
    return inbox[0] + 1.0


def scale_new(inbox):
    return inbox[0] * 2.0


def add_item(a):
    a += 1.0
    return a


def scale_item(a):
    a *= 2.0
    return a


def one(scenario: str, mib: int, count: int, shared: bool) -> dict:
    """One run in this (fresh) process."""
    import numpy as np

    from numap import NuMap
    from papyflow import Piper, Plumber

    arrays = [np.full(mib * MiB // 8, float(k)) for k in range(16)]
    numap = NuMap(worker_num=WORKERS, **({} if shared else {"shared_memory": None}))

    def feed():
        for k in range(count):
            yield arrays[k % 16]

    began = time.perf_counter()
    if scenario == "chained":
        first = numap.add_task(add_item, feed())
        second = numap.add_task(scale_item, first)
        numap.start()
        got = sum(1 for _ in second)
        numap.stop()
    else:
        stages = (add_in_place, scale_in_place) if scenario == "pipeline" else \
            (add_new, scale_new)  # pipeline-new
        last = Piper(stages[1], parallel=numap)
        plumber = Plumber()
        plumber.add_pipe((Piper(stages[0], parallel=numap), last))
        plumber.start([feed()])
        plumber.run()
        plumber.wait()
        got = plumber.stats["pipers"][last]["results"]
        plumber.stop()
    seconds = time.perf_counter() - began
    assert got == count, (got, count)
    return {"rate": count * mib * MiB / seconds}


def copy_bandwidth(mib: int, repeat: int = 10) -> dict[str, float]:
    """Bytes per second of ``numpy.copy`` into a new array (the allocation counted, as a
    copy pays it), best of ``repeat`` after a warm-up, two ways:

    ``stream``
        copying the 16 distinct arrays the pipeline is fed, in turn: 8 MiB x 16
        does not fit in a last-level cache of 32 MiB (the AMD EPYC benchmark
        machine's), so there this is the memory's copy bandwidth, what moving
        the pipeline's arrays can be held against;
    ``one``
        copying one array again and again: an 8 MiB array stays in the
        last-level cache, so this is the cache's bandwidth.
    """
    import numpy as np

    arrays = [np.full(mib * MiB // 8, float(k)) for k in range(16)]
    rates = {}
    for label, sources in (("stream", arrays), ("one", arrays[:1] * 16)):
        best = float("inf")
        for k in range(repeat + 1):
            began = time.perf_counter()
            for source in sources:
                copied = np.copy(source)
                del copied
            seconds = time.perf_counter() - began
            if k:
                best = min(best, seconds)
        rates[label] = len(sources) * mib * MiB / best
    return rates


# The memory work each array costs on the shared-memory path: copies into a
# segment and the two stages (see ceiling()).
_WORK = {
    # the parent's copy in; the stages; the result goes back in its segment
    "pipeline": ("copy", add_item, scale_item),
    # the parent's copy in; the stages, whose new arrays numpy makes in reused segments
    # (numap's allocator in the workers): the result goes back in its own
    "pipeline-new": ("copy", lambda a: a + 1.0, lambda a: a * 2.0),
    # the parent's copy in, a stage, the parent's copy of the result for the next task, a stage
    "chained": ("copy", add_item, "copy", scale_item),
}


def _ceiling_process(scenario: str, mib: int, rounds: int, transport: bool, start: Any,
                     out: Any) -> None:
    import numpy as np

    from numap._heap import KEEP_FREED, keep_freed

    keep_freed(KEEP_FREED)  # the C allocator's settings of a NuMap's worker processes
    allocator = _install_allocator("ceiling")  # and numpy's: new arrays in segments
    arrays = [np.full(mib * MiB // 8, float(k)) for k in range(16)]
    segments = [np.empty_like(a) for a in arrays]  # reused, as a pool reuses its segments
    for array, segment in zip(arrays, segments):  # touch every page before the clock
        np.copyto(segment, array)
    start.wait()
    began = time.perf_counter()
    for _ in range(rounds):
        for array, segment in zip(arrays, segments):
            memory_work(scenario, array, segment, transport)
    out.put(time.perf_counter() - began)
    if allocator is not None:
        allocator.close()  # no segment left behind


def _install_allocator(label: str) -> Any:
    """numap's numpy allocator installed in this process as in a NuMap worker (arrays
    of 1 MiB or more in reused shared-memory segments); the module, or ``None`` where
    this install has none."""
    from numap._shm import KEEP_FREE, allocator_available

    if not allocator_available():
        return None
    from numap import _alloc

    _alloc.install(f"numap-{label}-{os.getpid()}-a", MiB, KEEP_FREE)
    return _alloc


def handler_cost(installed: bool) -> dict[str, float]:
    """What numap's numpy allocator costs where it is not what moves the arrays, in this
    (fresh) process, with it ``installed`` or with numpy's own handler, best of 7:
    ``small_ns``, a small-array operation (``a + 1.0`` on 8 elements, which makes
    arrays under the allocator's threshold), and ``gather_ms``, a random gather of
    4,000,000 items from a 512 MiB array made here (in a segment, with normal pages,
    when ``installed``; private memory, which may get huge pages, otherwise)."""
    import numpy as np

    allocator = _install_allocator("cost") if installed else None
    small = np.ones(8)
    best_small = float("inf")
    for _ in range(7):
        began = time.perf_counter()
        for _ in range(200_000):
            small + 1.0
        best_small = min(best_small, (time.perf_counter() - began) / 200_000)
    big = np.ones(512 * MiB // 8)
    picks = np.random.default_rng(0).integers(0, big.size, 4_000_000)
    best_gather = float("inf")
    for _ in range(7):
        began = time.perf_counter()
        big[picks].sum()
        best_gather = min(best_gather, time.perf_counter() - began)
    del big
    if allocator is not None:
        allocator.close()
    return {"small_ns": best_small * 1e9, "gather_ms": best_gather * 1e3}


def copy_in(mib: int, repeat: int = 10) -> dict[str, float]:
    """Bytes per second of the NuMap's copy of an item into a segment
    (``numap._shm._copy``), the 16 distinct arrays in turn into 16 mapped
    segments, best of ``repeat`` after a warm-up: with numap's streaming copy and
    with numpy's (which the NuMap takes below :data:`numap._shm.STREAM_FROM`), on
    one thread (``stream_1``, ``numpy_1``) and in two halves on two threads
    (``stream_2``, ``numpy_2``, as the NuMap's own process splits a streaming copy
    of 4 MiB or more; it does not split numpy's)."""
    import mmap

    import numpy as np

    from numap import _shm

    sources = [np.full(mib * MiB // 8, float(k)).view(np.uint8) for k in range(16)]
    maps = [mmap.mmap(-1, mib * MiB) for _ in sources]  # shared memory, as a segment is
    targets = [np.frombuffer(m, dtype=np.uint8) for m in maps]
    streaming, stream_from = _shm._copy_bytes, _shm.STREAM_FROM
    rates = {}
    try:
        # Whatever the size, the copy this measure names, split on two threads as
        # the NuMap splits a streaming copy (numpy's put in the streaming one's place).
        _shm.STREAM_FROM = 0
        for label, copy in (("stream", streaming), ("numpy", _shm._copy_array)):
            _shm._copy_bytes = copy
            for threads in (1, 2):
                best = float("inf")
                for k in range(repeat + 1):
                    began = time.perf_counter()
                    for target, source in zip(targets, sources, strict=True):
                        _shm._copy(target, source, threads == 2)
                    if k:
                        best = min(best, time.perf_counter() - began)
                rates[f"{label}_{threads}"] = 16 * mib * MiB / best
    finally:
        _shm._copy_bytes, _shm.STREAM_FROM = streaming, stream_from
    del targets, target  # the views first: a mapping with views cannot close
    for m in maps:
        m.close()
    return rates


def memory_work(scenario: str, array: Any, segment: Any, transport: bool) -> Any:
    """What the shared-memory path does to ``array`` in ``scenario``, with no messages:
    its stages, and with ``transport`` its copies (into ``segment``, the stand-in
    for a reused segment); the result."""
    import numpy as np

    for work in _WORK[scenario]:
        if work != "copy":
            array = work(array)
        elif transport:
            np.copyto(segment, array)
            array = segment
    return array


def ceiling(scenario: str, mib: int, rounds: int, transport: bool) -> float:
    """Bytes of arrays per second two processes reach doing, side by side and with no
    messages at all, the memory work that the shared-memory path does per array:
    the two stages and, with ``transport``, the copies into segments the path pays
    (see ``_WORK``). Each process works on its own 16 arrays, as the two workers do;
    with 2 cores and memory shared by both, this is what the design allows here."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(2), ctx.Queue()
    processes = [ctx.Process(target=_ceiling_process,
                             args=(scenario, mib, rounds, transport, start, out))
                 for _ in range(2)]
    for process in processes:
        process.start()
    try:
        seconds = max(out.get(timeout=TIMEOUT) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return 2 * rounds * 16 * mib * MiB / seconds


def _measure(scenario: str, mib: int, count: int, shared: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.shm", "--one", scenario, str(mib), str(count),
               "on" if shared else "off"]
    return _run(command)


def streaming_line() -> str:
    """Which copies into segments take streaming stores in this run's processes."""
    from numap import _shm

    if _shm._copy_bytes is None:
        return "Copies into segments: numpy's (numap's compiled copy is not built)."
    # the choice the run's processes make when they import numap, from the same inputs
    choice = _shm.stream_choice()
    if choice.given is not None:
        why = f"{_shm.STREAM_FROM_VARIABLE}={choice.given}"
        if choice.raised:
            why += ", raised to the compiled copy's floor"
    elif choice.cache is None:
        why = "no last-level cache reported that every CPU of this process shares"
    elif choice.raised:
        why = f"the compiled copy's floor; the last-level cache is {_size(choice.cache)}"
    else:
        why = f"an eighth of the last-level cache of {_size(choice.cache)}"
    return f"Copies into segments take streaming stores from {_size(choice.nbytes)} ({why})."


def split_line(workers: int = WORKERS) -> str:
    """Whether the NuMap's process splits its streaming copies (a CPU to spare)."""
    from numap import _shm

    cpus = _shm.usable_cpus()
    verdict = "in two halves on two threads" if _shm.spare_cpu(workers) else "on one thread"
    return (f"The NuMap's process makes a streaming copy of 4 MiB or more {verdict} "
            f"({cpus} CPUs for {workers} workers and its feeding thread).")


def _size(nbytes: int) -> str:
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB else f"{nbytes / 1024:.0f} KiB"


def _measure_ceiling(scenario: str, mib: int, rounds: int, transport: bool) -> float:
    command = [sys.executable, "-m", "benchmarks.shm", "--ceiling", scenario, str(mib),
               str(rounds), "on" if transport else "off"]
    return _run(command)["rate"]


def _run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


SCENARIOS = {
    "pipeline": "papyflow pipeline, 2 Pipers on one NuMap, in place",
    "pipeline-new": "papyflow pipeline, 2 Pipers on one NuMap, new arrays",
    "chained": "NuMap, 2 chained tasks, in place",
}


def _print_copy_in(repeat: int) -> None:
    """The copy into segments with and without streaming stores, best of ``repeat``
    runs each in a fresh process."""
    rows: list[dict] = []
    for k in range(repeat):
        _log(f"copy into segments: repeat {k + 1}/{repeat}")
        rows.append(_run([sys.executable, "-m", "benchmarks.shm", "--copy-in-one"]))
    best = {mib: {key: max(r[str(mib)][key] for r in rows) for key in rows[0][str(mib)]}
            for mib in (8, 64)}
    print(f"The NuMap's copy of an item into a segment, 16 distinct arrays into 16 mapped "
          f"segments (best of {repeat}, each in a fresh process), GB/s: " + "; ".join(
              f"{mib} MiB: streaming stores {rate['stream_1'] / 1e9:.2f} on one thread, "
              f"{rate['stream_2'] / 1e9:.2f} on two; numpy's copy {rate['numpy_1'] / 1e9:.2f} "
              f"and {rate['numpy_2'] / 1e9:.2f}" for mib, rate in best.items()) + ".\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks shm")
    parser.add_argument("--quick", action="store_true", help="fewer arrays, one repeat")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--handler", choices=("numpy", "numap"), help=argparse.SUPPRESS)
    parser.add_argument("--copy-in-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--copy-in", action="store_true",
                        help="only the copy of items into segments, streaming against numpy")
    args = parser.parse_args(argv)
    if args.copy_in_one:
        print(json.dumps({str(mib): copy_in(mib) for mib in (8, 64)}))
        return 0
    if args.copy_in:
        _print_copy_in(1 if args.quick else args.repeat)
        return 0
    if args.handler:
        print(json.dumps(handler_cost(args.handler == "numap")))
        return 0
    if args.one:
        scenario, mib, count, shared = args.one
        print(json.dumps(one(scenario, int(mib), int(count), shared == "on")))
        return 0
    if args.ceiling:
        scenario, mib, rounds, transport = args.ceiling
        print(json.dumps({"rate": ceiling(scenario, int(mib), int(rounds), transport == "on")}))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    repeat = 1 if args.quick else args.repeat
    # ~10 GB a run: the workers' start and the first (fresh) segments are a small part
    sizes = {8: 60 if args.quick else 1200, 64: 8 if args.quick else 150}
    info = machine_info(("numpy",))
    print(f"# Benchmark suite `shm`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; {WORKERS} worker processes; "
          f"best of {repeat}.  ")
    print(f"{streaming_line()}  ")
    print(f"{split_line()}\n")
    began = time.monotonic()
    # The references are measured again in every repeat, as the pipelines are, and
    # the best is kept: this machine's memory bandwidth drifts over minutes.
    copies: dict[int, dict[str, float]] = {}
    rounds = {8: 2 if args.quick else 12, 64: 1 if args.quick else 2}
    runs: dict[tuple[str, int, bool], list[dict]] = {}
    ceilings: dict[tuple[str, int, bool], float] = {}
    for k in range(repeat):
        for mib in sizes:
            _log(f"numpy.copy {mib} MiB: repeat {k + 1}/{repeat}")
            rates = copy_bandwidth(mib)
            copies[mib] = {label: max(rate, copies.get(mib, {}).get(label, 0.0))
                           for label, rate in rates.items()}
        for scenario in SCENARIOS:
            for mib, count in sizes.items():
                for shared in (False, True):
                    _log(f"{scenario} {mib} MiB {'shared' if shared else 'pickled'}: "
                         f"repeat {k + 1}/{repeat}")
                    runs.setdefault((scenario, mib, shared), []).append(
                        _measure(scenario, mib, count, shared))
                for transport in (False, True):
                    rate = _measure_ceiling(scenario, mib, rounds[mib], transport)
                    key = (scenario, mib, transport)
                    ceilings[key] = max(ceilings.get(key, 0.0), rate)
    targets = []
    for scenario, title in SCENARIOS.items():
        print(f"## `{scenario}`: {title}\n")
        print("| array | path | GB/s (best) | vs pickled | % of `numpy.copy`, the same "
              "16 arrays | % of `numpy.copy`, one array in cache | % of its memory work "
              "alone | spread |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for mib in sizes:
            pickled = max(r["rate"] for r in runs[(scenario, mib, False)])
            for shared in (False, True):
                rows = runs[(scenario, mib, shared)]
                best = max(rows, key=lambda r: r["rate"])
                worst = min(r["rate"] for r in rows)
                copy = copies[mib]
                print(f"| {mib} MiB | {'shared memory' if shared else 'pickled (pipe)'} | "
                      f"{best['rate'] / 1e9:.2f} | {best['rate'] / pickled:.2f}x | "
                      f"{best['rate'] / copy['stream'] * 100:.0f}% | "
                      f"{best['rate'] / copy['one'] * 100:.0f}% | "
                      + (f"{best['rate'] / ceilings[(scenario, mib, True)] * 100:.0f}% | "
                         if shared else "| ")
                      + f"{(best['rate'] - worst) / best['rate'] * 100:.0f}% |")
                if shared:
                    # one decimal: the target is judged on this table
                    targets.append((f"{scenario}, {mib} MiB", f"{best['rate'] / pickled:.2f}x",
                                    f"{best['rate'] / copy['stream'] * 100:.1f}%",
                                    f"{best['rate'] / copy['one'] * 100:.1f}%"))
        print()
        print("Its memory work alone (2 processes side by side, each on its own 16 "
              "arrays, no messages), GB/s of arrays: " + "; ".join(
                  f"{mib} MiB: the stages {ceilings[(scenario, mib, False)] / 1e9:.2f}, the "
                  f"stages and the copies into segments "
                  f"{ceilings[(scenario, mib, True)] / 1e9:.2f}" for mib in sizes) + ".\n")
    print(f"`numpy.copy` into a new array (allocation included), best of 10 in each of "
          f"the {repeat} repeats: " + "; ".join(
        f"{mib} MiB: the same 16 arrays in turn {rate['stream'] / 1e9:.2f} GB/s, one array "
        f"again and again {rate['one'] / 1e9:.2f} GB/s" for mib, rate in copies.items())
        + ".\n")
    costs: dict[str, list[dict]] = {"numpy": [], "numap": []}
    for _ in range(1 if args.quick else 3):
        for handler, rows in costs.items():
            _log(f"numpy's memory handler: {handler}'s")
            rows.append(_run([sys.executable, "-m", "benchmarks.shm", "--handler",
                                        handler]))
    cost = {h: {k: min(r[k] for r in rows) for k in rows[0]} for h, rows in costs.items()}
    print("numap's allocator where it does not move arrays (each in a fresh process, best "
          f"of {len(costs['numpy'])}): a small-array operation (`a + 1.0`, 8 elements) "
          f"{cost['numpy']['small_ns']:.0f} ns with numpy's own handler, "
          f"{cost['numap']['small_ns']:.0f} ns with numap's; a random gather of 4,000,000 "
          f"items from a 512 MiB array {cost['numpy']['gather_ms']:.1f} ms in private "
          f"memory, {cost['numap']['gather_ms']:.1f} ms in a segment.\n")
    _print_copy_in(repeat)
    print("## Targets (≥ 3x the pickled path, ≥ 30% of `numpy.copy`)\n")
    print("| scenario | vs pickled | % of `numpy.copy`, the same 16 arrays "
          "| % of `numpy.copy`, one array in cache |")
    print("| --- | --- | --- | --- |")
    for row in targets:
        print("| " + " | ".join(row) + " |")
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
