"""Dataflow benchmarks: the cache of data units against numpy files.

Run from the repository root::

    python -m benchmarks dataflow            # about 1-2 minutes
    python -m benchmarks dataflow --quick    # smaller sizes, a smoke test

Scenarios:

``records``
    1,000,000 records of a small fixed-size format (``time`` float64,
    ``value`` float32, ``channel`` uint16, ``flag`` bool: 15 bytes), one
    data index each, written then read through ``CachedDataSink`` and
    ``CachedDataSource``: in bulk (``write_batch`` / ``read_batch``) and one
    unit at a time. numpy: the same records as one structured array,
    ``numpy.save`` / ``numpy.load``.
``stream``
    A 1 GiB stream of 128 records of one 8 MiB float64 array each
    (``system/array_1d_float64/1``), written and read one record at a time.
    numpy: ``numpy.save`` of each array into one open file, ``numpy.load``
    of each in turn.

The cache checksums every byte it writes and verifies every byte it reads,
and by default fsyncs its files before the rename that commits them; numpy
does neither, so each write is also compared with ``numpy.save`` followed by
an fsync (the same durability), and the cache is also measured with
``sync=False``. A diagnostic row gives the speed of the checksum alone.

Method: every write goes to an empty folder (the previous files are removed
outside the timing) after ``os.sync()`` has flushed what earlier steps left
dirty; reads follow their writes and are served from the page cache, as
when a pipeline reads what was just written. Repeats are interleaved across
contenders; the best repeat counts. The one-unit-at-a-time rows of
``records`` run once (they take seconds). Markdown goes to stdout, progress
to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.machine import machine_info, machine_line
from papyflow.dataflow import _checksums
from papyflow.dataflow.data import CachedDataSink, CachedDataSource
from papyflow.formats.dataformat import DataFormat

SAMPLE = {"time": "float64", "value": "float32", "channel": "uint16", "flag": "bool"}
ARRAY = "system/array_1d_float64/1"
MiB = 1 << 20
GiB = 1 << 30


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Bench:
    """A scratch folder, the dataformats, and the timing of one step at a time."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.prefix = os.path.join(root, "prefix")
        path = os.path.join(self.prefix, "dataformats", "bench", "sample", "1.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump(SAMPLE, f)
        self.sample = DataFormat(self.prefix, "bench/sample/1")
        self.array = DataFormat(self.prefix, ARRAY)

    def folder(self, name: str) -> str:
        """An empty folder ``name`` (emptied outside any timing)."""
        path = os.path.join(self.root, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    @staticmethod
    def timed(step: Callable[[], Any]) -> tuple[float, Any]:
        os.sync()  # what earlier steps left dirty is not this step's cost
        began = time.perf_counter()
        result = step()
        return time.perf_counter() - began, result


# -- records --------------------------------------------------------------------------------------


def records_rows(bench: Bench, n: int) -> np.ndarray:
    rows = np.zeros(n, bench.sample.type.batch_dtype)
    rows["time"] = np.arange(n) * 0.001
    rows["value"] = np.sin(np.arange(n, dtype=np.float32))
    rows["channel"] = np.arange(n) % 64
    rows["flag"] = np.arange(n) % 3 == 0
    return rows


def records_round(bench: Bench, rows: np.ndarray, best: dict[str, float],
                  per_unit: bool) -> None:
    """One repeat of every contender of ``records``; keeps each one's best time."""
    n = len(rows)
    indices = np.arange(n)

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for sync in (False, True):
        name = "numpy.save + fsync" if sync else "numpy.save"
        path = os.path.join(bench.folder("np"), "records.npy")

        def save(path: str = path, sync: bool = sync) -> None:
            np.save(path, rows)
            if sync:
                _fsync(path)

        keep(f"write: {name}", bench.timed(save)[0])
    seconds, loaded = bench.timed(lambda: np.load(path))
    assert np.array_equal(loaded, rows)
    keep("read: numpy.load", seconds)
    del loaded

    for sync in (True, False):
        filename = os.path.join(bench.folder("cache"), "records.data")

        def write_batch(filename: str = filename, sync: bool = sync) -> None:
            sink = CachedDataSink()
            sink.setup(filename, bench.sample, 0, n - 1, sync=sync)
            sink.write_batch(rows, indices)
            sink.close()

        label = "" if sync else ", sync=False"
        keep(f"write: CachedDataSink.write_batch{label}", bench.timed(write_batch)[0])

    def read_batch() -> np.ndarray:
        source = CachedDataSource()
        source.setup(filename, bench.prefix)
        data = source.read_batch().data
        source.close()
        return data

    seconds, data = bench.timed(read_batch)
    assert np.array_equal(data, rows)
    keep("read: CachedDataSource.read_batch", seconds)
    del data
    if not per_unit:
        return
    records = bench.sample.type.from_batch(rows)
    filename = os.path.join(bench.folder("cache"), "records.data")

    def write_units() -> None:
        sink = CachedDataSink()
        sink.setup(filename, bench.sample, 0, n - 1)
        for k, record in enumerate(records):
            sink.write(record, k, k)
        sink.close()

    keep("write: CachedDataSink.write, one unit at a time", bench.timed(write_units)[0])

    def read_units() -> int:
        source = CachedDataSource()
        source.setup(filename, bench.prefix)
        count = 0
        for _record, _start, _end in source:
            count += 1
        source.close()
        return count

    seconds, count = bench.timed(read_units)
    assert count == n
    keep("read: CachedDataSource[i], one unit at a time", seconds)


# -- stream ---------------------------------------------------------------------------------------


def stream_round(bench: Bench, arrays: list[np.ndarray], count: int,
                 best: dict[str, float]) -> None:
    """One repeat of every contender of ``stream``; keeps each one's best time."""
    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    records = [bench.array.type(value=a) for a in arrays]
    for sync in (False, True):
        path = os.path.join(bench.folder("np"), "stream.npy")

        def save(path: str = path, sync: bool = sync) -> None:
            with open(path, "wb") as f:
                for k in range(count):
                    np.save(f, arrays[k % len(arrays)])
                if sync:
                    f.flush()
                    os.fsync(f.fileno())

        keep(f"write: numpy.save{' + fsync' if sync else ''}", bench.timed(save)[0])

    def load() -> int:
        with open(path, "rb") as f:
            for k in range(count):
                loaded = np.load(f)
                if k < len(arrays):
                    assert np.array_equal(loaded, arrays[k])
        return count

    keep("read: numpy.load", bench.timed(load)[0])
    for sync in (True, False):
        filename = os.path.join(bench.folder("cache"), "stream.data")

        def write(filename: str = filename, sync: bool = sync) -> None:
            sink = CachedDataSink()
            sink.setup(filename, bench.array, 0, count - 1, sync=sync)
            for k in range(count):
                sink.write(records[k % len(records)], k, k)
            sink.close()

        label = "" if sync else ", sync=False"
        keep(f"write: CachedDataSink.write{label}", bench.timed(write)[0])

    def read() -> int:
        source = CachedDataSource()
        source.setup(filename, bench.prefix)
        for k, (record, _start, _end) in enumerate(source):
            if k < len(arrays):
                assert np.array_equal(record.value, arrays[k])
        source.close()
        return count

    keep("read: CachedDataSource[i]", bench.timed(read)[0])
    blob = np.concatenate(arrays).view(np.uint8)
    blocks = [[blob[i:i + _checksums.BLOCK_SIZE]]
              for i in range(0, len(blob), _checksums.BLOCK_SIZE)]
    seconds, _ = bench.timed(lambda: _checksums.hash_blocks(blocks, len(blob)))
    keep(f"checksum alone ({_checksums.ALGORITHM})", seconds * count / len(arrays))


# -- report ---------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def report_records(n: int, best: dict[str, float], repeat: int) -> list[tuple[str, str, str]]:
    size = n * 15
    print(f"## `records`: {n:,} records of 15 bytes, one data index each\n")
    print(f"{size / MiB:.1f} MiB of records; best of {repeat} repeats (one-unit-at-a-time "
          "rows: one run). Time ratios: lower is better, the target is 3x or less.\n")
    print("| Contender | ms | records/s | time vs numpy | time vs numpy + fsync |")
    print("|:---|---:|---:|---:|---:|")
    summary: list[tuple[str, str, str]] = []
    for kind, base, synced in (("write", "write: numpy.save", "write: numpy.save + fsync"),
                               ("read", "read: numpy.load", None)):
        for name, seconds in best.items():
            if not name.startswith(kind):
                continue
            vs_synced = _ratio(seconds, best[synced]) if synced else ""
            print(f"| {name} | {seconds * 1e3:,.1f} | {n / seconds:,.0f} | "
                  f"{_ratio(seconds, best[base])} | {vs_synced} |")
    write = best["write: CachedDataSink.write_batch"]
    unsynced = best["write: CachedDataSink.write_batch, sync=False"]
    measured = (f"{_ratio(write, best['write: numpy.save'])} of numpy.save, "
                f"{_ratio(write, best['write: numpy.save + fsync'])} of numpy.save + fsync; "
                f"sync=False: {_ratio(unsynced, best['write: numpy.save'])} of numpy.save")
    summary.append(("records, write (batch)", "within 3x of numpy.save", measured))
    read = best["read: CachedDataSource.read_batch"]
    summary.append(("records, read (batch)", "within 3x of numpy.load",
                    f"{_ratio(read, best['read: numpy.load'])}"))
    print()
    return summary


def report_stream(count: int, best: dict[str, float], repeat: int) -> list[tuple[str, str, str]]:
    size = count * 8 * MiB
    print(f"## `stream`: {count} records of one 8 MiB float64 array ({size / GiB:.2f} GiB)\n")
    print(f"Best of {repeat} repeats. Throughput ratios: higher is better, the target is "
          "50% or more.\n")
    print("| Contender | GiB/s | throughput vs numpy | vs numpy + fsync |")
    print("|:---|---:|---:|---:|")
    for name, seconds in best.items():
        if name.startswith("write"):
            base, synced = best["write: numpy.save"], best["write: numpy.save + fsync"]
            print(f"| {name} | {size / GiB / seconds:.2f} | {base / seconds:.0%} | "
                  f"{synced / seconds:.0%} |")
    for name, seconds in best.items():
        if name.startswith(("read", "checksum")):
            base = best["read: numpy.load"]
            print(f"| {name} | {size / GiB / seconds:.2f} | {base / seconds:.0%} | |")
    print()
    write = best["write: CachedDataSink.write"]
    unsynced = best["write: CachedDataSink.write, sync=False"]
    read = best["read: CachedDataSource[i]"]
    measured = (f"{best['write: numpy.save'] / write:.0%} of numpy.save, "
                f"{best['write: numpy.save + fsync'] / write:.0%} of numpy.save + fsync; "
                f"sync=False: {best['write: numpy.save'] / unsynced:.0%} of numpy.save")
    return [("stream, write", "at least 50% of numpy's throughput", measured),
            ("stream, read", "at least 50% of numpy's throughput",
             f"{best['read: numpy.load'] / read:.0%}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dataflow")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeat", type=int, default=5, metavar="N", help="repeats (default 5)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    n = 100_000 if args.quick else 1_000_000
    count = 16 if args.quick else 128
    repeat = 1 if args.quick else args.repeat
    info = machine_info(("numpy",))
    print(f"# Benchmark suite `dataflow`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; files in {tempfile.gettempdir()}; "
          "best of the repeats; reads from the page cache.\n")
    root = tempfile.mkdtemp(prefix="papyflow-bench-dataflow-")
    began = time.monotonic()
    try:
        bench = Bench(root)
        rows = records_rows(bench, n)
        best_records: dict[str, float] = {}
        for k in range(repeat):
            _log(f"records: repeat {k + 1}/{repeat}")
            records_round(bench, rows, best_records, per_unit=k == 0)
        summary = report_records(n, best_records, repeat)
        del rows
        rng = np.random.default_rng(5)
        arrays = [rng.random(MiB) for _ in range(4)]  # 8 MiB each, cycled
        best_stream: dict[str, float] = {}
        for k in range(repeat):
            _log(f"stream: repeat {k + 1}/{repeat}")
            stream_round(bench, arrays, count, best_stream)
        summary += report_stream(count, best_stream, repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("## Targets\n")
    print("| scenario | target | measured |")
    print("| --- | --- | --- |")
    for row in summary:
        print("| " + " | ".join(row) + " |")
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
