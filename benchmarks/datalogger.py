"""DataLogger benchmarks: many small packages from 2 producer processes, and 1 MiB packages.

Run from the repository root::

    python -m benchmarks.datalogger            # several minutes (8 on the development machine)
    python -m benchmarks.datalogger --quick    # a few seconds, a smoke test

Scenarios (each on a fresh logger in a fresh temporary directory):

``small``
    2 producer processes put ``N`` packages of 64 bytes each as fast as they can
    (targets: 50,000 packages/s). The logger has 2 saver processes.
``large``
    2 producer processes put 1 MiB packages (target: 500 MB/s).

``ceiling``
    A bare loop in one process that only creates, writes and renames ``.npy``
    files of the scenario's size: the file system's rate for the usual way to
    write a file whole (the savers, several threads in several processes, each
    file made unnamed and linked once, may pass it).

Every scenario runs twice per repeat: in the system's temporary folder (on
disk, as a user's log folder usually is) and on a RAM file system (``/dev/shm``
where it exists, or ``--ram-dir``; ``--no-ram`` skips it). The disk rows are
what this disk allows; the RAM rows are the logger's own ceiling, with the
file system taken out of the way.

The clock runs from the release of the producers to the return of
``shutdown()`` (everything saved). Afterwards every package is looked for in
the output (a file of the right name and size); "lost" must be 0. Before
each run, outside the clock, the disk is left to settle (``os.sync()`` and a
second's pause), so that no run pays for the writeback of the one before. The
folders of small files on disk are removed only at the end of the benchmark
(the full run keeps 1.8 million files, about 7.5 GB, in the temporary folder
until then): ext4 passes over inodes freed in the last minute or more when it
picks one for a new file, so a run right after the removal of hundreds of
thousands of files pays several times as much per file. The producers'
``put`` rate alone is reported too. Repeats are interleaved; the best repeat
counts. Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import multiprocess
import numpy as np

from benchmarks.machine import machine_info, machine_line
from papyflow.datalogger import DataLogger, LogPackage
from papyflow.datalogger.package import npy_header

PRODUCERS = 2
SMALL_BYTES = 64
MiB = 1 << 20
LARGE_BYTES = MiB


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _produce(queue, source: int, count: int, size: int, go, took) -> None:
    payload = np.full(size, source, dtype=np.uint8)
    go.wait()
    began = time.perf_counter()
    for stamp in range(count):
        queue.put(LogPackage(source, stamp, payload))
    took.put(time.perf_counter() - began)


def _settle() -> None:
    """Let the disk finish what earlier runs left (their files' writeback, the deletion
    of their folders), so that no scenario pays for the one before it."""
    os.sync()
    time.sleep(1.0)


def run(count: int, size: int, savers: int, threads: int,
        where: str | None = None, keep: list[Path] | None = None) -> dict[str, float]:
    """Put ``count`` packages of ``size`` bytes from each of 2 producers into a logger
    writing under ``where`` (the temporary folder by default); the rates. The run's
    folder is removed afterwards, or added to ``keep`` for the caller to remove later
    (see :func:`main`)."""
    root = Path(tempfile.mkdtemp(prefix="papyflow-bench-datalogger-", dir=where))
    context = multiprocess.get_context("fork")
    _settle()
    try:
        logger = DataLogger(root, process_count=savers, thread_count=threads)
        logger.start()
        go, took = context.Event(), context.Queue()
        producers = [context.Process(target=_produce,
                                     args=(logger.input_queue, source, count, size, go, took))
                     for source in range(1, PRODUCERS + 1)]
        for process in producers:
            process.start()
        time.sleep(0.2)
        began = time.perf_counter()
        go.set()
        put_times = [took.get(timeout=600) for _ in producers]
        for process in producers:
            process.join()
        logger.shutdown()
        elapsed = time.perf_counter() - began
        expected = size + 128 if size < 1 << 16 else None
        found = 0
        with os.scandir(logger.output_directory) as entries:
            for entry in entries:
                if entry.name.endswith(".npy") and (
                        expected is None or entry.stat().st_size == expected):
                    found += 1
        total = count * PRODUCERS
        return {"packages": total, "seconds": elapsed, "rate": total / elapsed,
                "mb_s": total * size / elapsed / 1e6,
                "put_rate": total / max(put_times), "lost": total - found}
    finally:
        _remove(root, keep)


def file_ceiling(count: int, size: int = SMALL_BYTES, where: str | None = None,
                 keep: list[Path] | None = None) -> float:
    """Files per second of a bare loop (one process) that writes files whole the usual
    way under ``where``: create a temporary file, write a ``.npy`` of ``size`` bytes
    of data, rename it (the savers make each file unnamed and link it instead: see
    :class:`papyflow.datalogger._saver.FileWriter`). ``keep``: as for :func:`run`."""
    root = Path(tempfile.mkdtemp(prefix="papyflow-bench-datalogger-", dir=where))
    _settle()
    data = npy_header(size) + bytes(size)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        folder = os.open(root, os.O_RDONLY)
        began = time.perf_counter()
        for stamp in range(count):
            name = f"1_{stamp:020d}.npy"
            fd = os.open(f".{name}.tmp", flags, 0o666, dir_fd=folder)
            os.write(fd, data)
            os.close(fd)
            os.rename(f".{name}.tmp", name, src_dir_fd=folder, dst_dir_fd=folder)
        rate = count / (time.perf_counter() - began)
        os.close(folder)
        return rate
    finally:
        _remove(root, keep)


def _remove(folder: Path, keep: list[Path] | None) -> None:
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        keep.append(folder)


def file_system(path: str) -> str:
    """The type of the file system holding ``path`` (from ``/proc/mounts``), or "?"."""
    real, best, kind = os.path.realpath(path), "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def places(ram_dir: str | None, no_ram: bool) -> list[tuple[str, str]]:
    """``(label, folder)`` of each place the scenarios run: disk, then RAM if any."""
    found = [("disk", tempfile.gettempdir())]
    if no_ram:
        return found
    ram = ram_dir or "/dev/shm"
    if os.path.isdir(ram) and os.access(ram, os.W_OK):
        found.append(("RAM", ram))
    elif ram_dir:
        raise SystemExit(f"--ram-dir {ram_dir!r}: not a writable folder")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.datalogger")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    parser.add_argument("--ram-dir", metavar="DIR",
                        help="the folder on a RAM file system (default /dev/shm)")
    parser.add_argument("--no-ram", action="store_true",
                        help="run on the disk only")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    repeat = 1 if args.quick else args.repeat
    small = 20_000 if args.quick else 200_000   # per producer
    large = 128 if args.quick else 1024         # per producer (MiB)
    scenarios = [
        ("small", f"{SMALL_BYTES} B", small, SMALL_BYTES, 2, 2, "50,000 packages/s"),
        ("large", "1 MiB", large, LARGE_BYTES, 2, 2, "500 MB/s"),
    ]
    where = places(args.ram_dir, args.no_ram)
    info = machine_info(("numpy", "multiprocess"))
    print(f"# Benchmark suite `datalogger`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; {PRODUCERS} producer processes; "
          f"best of {repeat}.\n")
    best: dict[tuple[str, str], dict[str, float]] = {}
    ceiling = {(name, label): 0.0 for name, *_ in scenarios for label, _ in where}
    # The folders of small files on disk are removed only at the end: ext4 does not
    # give a new file an inode freed in the last minute or more, and looks through
    # the freed ones for another, so a run right after the removal of hundreds of
    # thousands of files pays several times as much per file (see docs/benchmarks.md).
    kept: list[Path] = []
    try:
        for attempt in range(repeat):
            for label, folder in where:
                for name, _, count, size, savers, threads, _ in scenarios:
                    keep = kept if label == "disk" and size < MiB else None
                    _log(f"{name}, file system ceiling ({label}): "
                         f"repeat {attempt + 1}/{repeat}")
                    ceiling[(name, label)] = max(ceiling[(name, label)],
                                                 file_ceiling(count // 2, size, folder, keep))
                    _log(f"{name} ({label}): repeat {attempt + 1}/{repeat}")
                    result = run(count, size, savers, threads, folder, keep)
                    key = (name, label)
                    if key not in best or result["seconds"] < best[key]["seconds"] \
                            or result["lost"]:
                        best[key] = result
    finally:
        if kept:
            _log(f"removing the {len(kept)} folders of small files")
        for root in kept:
            shutil.rmtree(root, ignore_errors=True)
    print("| scenario | package | file system | packages | savers x threads | seconds "
          "| packages/s | MB/s | put rate (packages/s) | lost | file system ceiling "
          "| target |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for name, package, _, size, savers, threads, target in scenarios:
        for label, folder in where:
            r = best[(name, label)]
            files = ceiling[(name, label)]
            bound = f"{files:,.0f} files/s" if size < MiB else \
                f"{files * size / 1e6:,.0f} MB/s"
            print(f"| {name} | {package} | {label} ({file_system(folder)}) | "
                  f"{r['packages']:,} | {savers} x {threads} | {r['seconds']:.2f} | "
                  f"{r['rate']:,.0f} | {r['mb_s']:,.0f} | {r['put_rate']:,.0f} | "
                  f"{r['lost']} | {bound} | {target} |")
    print("\nFile system ceiling: a bare loop in one process that creates, writes and "
          "renames files of the package's size (half as many as the scenario's packages): "
          "the file system's rate for the usual way to write a file whole. The logger's "
          "savers may pass it: they write from several processes and threads, each file "
          "made unnamed and linked to its name once, without the GIL.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
