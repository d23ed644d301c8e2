"""Record benchmarks: packing and unpacking papyflow records against their peers.

Run from the repository root (with the ``bench`` extra installed)::

    python -m benchmarks formats            # about a minute and a half on 2 cores
    python -m benchmarks formats --quick    # smaller sizes, fewer repeats

Scenarios (each a pack + unpack round trip):

``scalars``
    One record of 10 scalar fields (ints of every width, floats, a bool).
    Peers: ``pickle`` protocol 5 and ``msgpack`` of the equivalent dict of
    plain Python numbers, and a one-row numpy structured array
    (``tobytes`` / ``frombuffer``).
``array``
    One record holding an 8 MiB float64 array. Yardstick: ``numpy.copy`` of
    the array. Peers: numpy's own bytes round trip (``tobytes`` +
    ``frombuffer().copy()``, the same two copies papyflow makes), pickle 5 of
    ``{"v": array}``, msgpack of the array's bytes. papyflow is measured with
    its default ``unpack`` (arrays are read-only views of the packed bytes,
    which cannot change) and with ``copy=True`` (writable copies). Each contender runs in a fresh process
    (the allocator's state decides whether a fresh 8 MiB block page-faults,
    and it depends on what ran before), once with glibc's defaults and once
    told to keep freed memory.
``batch``
    100,000 records of a fixed-size type (the 10 scalars, plus a variant with
    a fixed 4x4 float32 array). papyflow one record at a time, papyflow's
    batch path from a structured array (``pack_batch`` / ``unpack_batch``)
    and from a list of record objects, against a structured array's
    ``tobytes`` / ``frombuffer``.

Apart from ``array``, every contender is timed in this process; repeats are
interleaved round robin across contenders and the best repeat is reported
(this machine's speed drifts). Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.machine import machine_info, machine_line, packages_line
from papyflow.formats.baseformat import baseformat, make_type

try:
    import msgpack
except ImportError:  # pragma: no cover - reported in the tables
    msgpack = None

# -- timing ---------------------------------------------------------------------------------


def _run(func: Callable[[], Any], number: int) -> float:
    began = time.perf_counter()
    for _ in range(number):
        func()
    return time.perf_counter() - began


def calibrate(func: Callable[[], Any], seconds: float) -> int:
    """Calls of ``func`` that take about ``seconds``."""
    number = 1
    while True:
        took = _run(func, number)
        if took >= seconds / 4 or number >= 1 << 24:
            return max(1, int(number * seconds / max(took, 1e-9)))
        number *= 4


def measure(contenders: dict[str, Callable[[], Any]], repeat: int, seconds: float,
            label: str) -> dict[str, float]:
    """Best seconds per call of each contender; repeats interleaved round robin."""
    numbers = {name: calibrate(func, seconds) for name, func in contenders.items()}
    best = {name: float("inf") for name in contenders}
    names = list(contenders)
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            per_call = _run(contenders[name], numbers[name]) / numbers[name]
            best[name] = min(best[name], per_call)
        print(f"  [{label} r{r + 1}] " + ", ".join(
            f"{name}: {_time(best[name])}" for name in names), file=sys.stderr)
    return best


def _time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:,.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.2f} µs"
    return f"{seconds * 1e3:,.2f} ms"


def table(rows: dict[str, float], baseline: str, speed_header: str,
          scale: float = 1.0, unit: str = "round trips/s") -> str:
    """A markdown table: time, throughput, and speed relative to ``baseline``."""
    lines = [f"| Contender | time | {unit} | {speed_header} |", "|:---|---:|---:|---:|"]
    for name, seconds in rows.items():
        lines.append(f"| {name} | {_time(seconds)} | {scale / seconds:,.0f} | "
                     f"{rows[baseline] / seconds:.2f}x |")
    return "\n".join(lines)


# -- the record types ------------------------------------------------------------------------

SCALAR_FIELDS = {"a": "int8", "b": "int16", "c": "int32", "d": "int64", "e": "uint8",
                 "f": "uint32", "g": "float32", "h": "float64", "i": "float64", "j": "bool"}
Scalars = make_type("bench/scalars/1", SCALAR_FIELDS)
WithPatch = make_type("bench/patch/1", {**SCALAR_FIELDS, "patch": [4, 4, "float32"]})
Big = make_type("bench/array/1", {"v": [0, "float64"]})


def scalar_record(i: int, cls: type[baseformat] = Scalars) -> baseformat:
    values: dict[str, Any] = {
        "a": i % 100, "b": -i % 30000, "c": i * 7, "d": -i * 1_000_003, "e": i % 256, "f": i,
        "g": i / 4, "h": i * 0.5, "i": -1.25 * i, "j": bool(i % 2)}
    if cls is WithPatch:
        values["patch"] = np.full((4, 4), i % 1000, np.float32)
    return cls(**values)


def plain_dict(record: baseformat) -> dict[str, Any]:
    """The equivalent dict of plain Python numbers (what pickle and msgpack get)."""
    return {name: value.item() for name, value in record.as_dict().items()}


# -- scenarios ------------------------------------------------------------------------------------


def scalars(repeat: int, seconds: float) -> tuple[dict[str, float], str]:
    record = scalar_record(12345)
    plain = plain_dict(record)
    data = record.pack()
    assert Scalars.unpack(data) == record
    row = np.frombuffer(data, Scalars.batch_dtype, 1).copy()
    contenders: dict[str, Callable[[], Any]] = {
        "papyflow pack + unpack": lambda: Scalars.unpack(record.pack()),
        "pickle 5 (dict of Python numbers)": lambda: pickle.loads(pickle.dumps(plain, 5)),
    }
    if msgpack is not None:
        contenders["msgpack (dict of Python numbers)"] = \
            lambda: msgpack.unpackb(msgpack.packb(plain))
    dtype = Scalars.batch_dtype
    contenders["numpy 1-row structured tobytes + frombuffer"] = \
        lambda: np.frombuffer(row.tobytes(), dtype)
    contenders["papyflow pack only"] = record.pack
    contenders["papyflow unpack only"] = lambda: Scalars.unpack(data)
    best = measure(contenders, repeat, seconds, "scalars")
    ratio = best["pickle 5 (dict of Python numbers)"] / best["papyflow pack + unpack"]
    note = (f"Target: at least as fast as pickle 5 of the equivalent dict: "
            f"**{ratio:.2f}x** its speed ({'met' if ratio >= 1 else 'missed'}).")
    return best, note


def _array_contenders(size: int) -> dict[str, Callable[[], Any]]:
    values = np.random.default_rng(1).random(size // 8)
    record = Big(v=values)
    data = record.pack()
    assert np.array_equal(Big.unpack(data).v, values)
    wrapped = {"v": values}
    contenders: dict[str, Callable[[], Any]] = {
        "numpy.copy (yardstick)": lambda: np.copy(values),
        "papyflow pack + unpack (default: a view of the bytes)":
            lambda: Big.unpack(record.pack()),
        "papyflow pack + unpack(copy=True)": lambda: Big.unpack(record.pack(), copy=True),
        "numpy tobytes + frombuffer().copy()":
            lambda: np.frombuffer(values.tobytes(), np.float64).copy(),
        "pickle 5 of {'v': array}": lambda: pickle.loads(pickle.dumps(wrapped, 5)),
    }
    if msgpack is not None:
        contenders["msgpack of the array's bytes, frombuffer().copy()"] = lambda: np.frombuffer(
            msgpack.unpackb(msgpack.packb({"v": values.tobytes()}))["v"], np.float64).copy()
    return contenders


ARRAY_NAMES = tuple(_array_contenders(64))
GLIBC_KEEP = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
"""glibc told to keep freed memory: fresh 8 MiB blocks do not page-fault anew."""


def _one_array(name: str, size: int, repeat: int, seconds: float) -> None:
    """In a fresh process: time one contender of ``array``, print one JSON line."""
    func = _array_contenders(size)[name]
    number = calibrate(func, seconds)
    best = min(_run(func, number) / number for _ in range(repeat))
    print(json.dumps({"name": name, "seconds": best}))


def array(rounds: int, repeat: int, seconds: float, size: int,
          keep_memory: bool) -> dict[str, float]:
    """Each contender in a fresh process: what ran before cannot change the
    allocator's state (which decides whether an 8 MiB block page-faults).
    ``rounds`` rounds over all contenders, interleaved; the best is kept."""
    env = {**os.environ, **(GLIBC_KEEP if keep_memory else {})}
    best = {name: float("inf") for name in ARRAY_NAMES}
    label = "array, memory kept" if keep_memory else "array"
    for r in range(rounds):
        order = ARRAY_NAMES[r % len(ARRAY_NAMES):] + ARRAY_NAMES[:r % len(ARRAY_NAMES)]
        for name in order:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.formats", "--one-array", name, "--size",
                 str(size), "--repeat", str(repeat), "--seconds", str(seconds)],
                capture_output=True, text=True, timeout=300, env=env, check=False)
            if done.returncode != 0:
                print(f"  {name}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            seconds_per_call = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            best[name] = min(best[name], seconds_per_call)
            print(f"  [{label} r{r + 1}] {name}: {_time(seconds_per_call)}", file=sys.stderr)
    return {name: t for name, t in best.items() if t < float("inf")}


def batch(cls: type[baseformat], count: int, repeat: int, seconds: float,
          label: str) -> dict[str, float]:
    records = [scalar_record(i, cls) for i in range(count)]
    rows = cls.to_batch(records)
    data = cls.pack_batch(rows)
    size = cls.packed_size
    assert size is not None and data == b"".join(r.pack() for r in records)
    plain = np.ascontiguousarray(rows)
    dtype = cls.batch_dtype

    def one_by_one() -> list[baseformat]:
        packed = b"".join([r.pack() for r in records])
        return [cls.unpack(packed[i:i + size]) for i in range(0, len(packed), size)]

    contenders: dict[str, Callable[[], Any]] = {
        "papyflow one record at a time (pack, unpack)": one_by_one,
        "papyflow batch: pack_batch(array) + unpack_batch":
            lambda: cls.unpack_batch(cls.pack_batch(rows)),
        "numpy structured tobytes + frombuffer": lambda: np.frombuffer(plain.tobytes(), dtype),
        "papyflow batch from records: pack_batch(list) + unpack_batch":
            lambda: cls.unpack_batch(cls.pack_batch(records)),
        "papyflow records -> records: pack_batch(list) + from_batch":
            lambda: cls.from_batch(cls.unpack_batch(cls.pack_batch(records))),
    }
    return measure(contenders, repeat, seconds, label)


# -- the report ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print markdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks formats")
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="repeats (default 7, 3 with --quick)")
    parser.add_argument("--one-array", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=8 << 20, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_array:
        _one_array(args.one_array, args.size, args.repeat or 7, args.seconds or 0.2)
        return 0
    repeat = args.repeat or (3 if args.quick else 7)
    seconds = args.seconds or (0.05 if args.quick else 0.2)
    count = 10_000 if args.quick else 100_000
    size = 8 << 20
    info = machine_info(("numpy", "msgpack"))
    load = "/".join(f"{x:.2f}" for x in info["loadavg"])
    print(f"# Benchmark suite `formats`\n\n{machine_line(info)}  \n{packages_line(info)}  \n"
          f"Load average (1/5/15 min) before the run: {load}; CPU busy over the last "
          f"second: {info['busy_percent']:.0f}%\n")
    print(f"Best of {repeat} interleaved repeats, each at least {seconds:g} s of calls; "
          "time per pack + unpack round trip.\n")

    best, note = scalars(repeat, seconds)
    print("## `scalars`: one record of 10 scalar fields\n")
    print(table(best, "papyflow pack + unpack", "speed vs papyflow"))
    print(f"\n{note}\n", flush=True)

    rounds = 1 if args.quick else 3
    for keep in (False, True):
        best = array(rounds, max(2, repeat // rounds), seconds, size, keep)
        if keep:
            print("Again with glibc told to keep freed memory (`MALLOC_TRIM_THRESHOLD_=1GiB "
                  "MALLOC_MMAP_THRESHOLD_=32MiB`), so that the fresh 8 MiB blocks of a round "
                  "trip do not page-fault anew every time:\n")
        else:
            print(f"## `array`: one record holding a {size >> 20} MiB float64 array\n")
            print(f"Each contender in a fresh process, {rounds} rounds interleaved; the "
                  "best is kept.\n")
        print(table(best, "numpy.copy (yardstick)", "speed vs numpy.copy", size / 2**20,
                    "MiB/s"))
        yardstick = best["numpy.copy (yardstick)"]
        ratio = yardstick / best["papyflow pack + unpack (default: a view of the bytes)"]
        copied = yardstick / best["papyflow pack + unpack(copy=True)"]
        print(f"\nTarget: at least 50% of numpy.copy's speed: default unpack **{ratio:.0%}** "
              f"({'met' if ratio >= 0.5 else 'missed'}); with copy=True (two copies) "
              f"**{copied:.0%}**.\n", flush=True)

    for cls, name in ((Scalars, "10 scalars"), (WithPatch, "10 scalars + a 4x4 float32 array")):
        best = batch(cls, count, repeat, seconds, f"batch {cls._name}")
        print(f"## `batch`: {count:,} records of {name} ({cls.packed_size} bytes each)\n")
        print(table(best, "papyflow one record at a time (pack, unpack)", "speed vs one by one",
                    count, "records/s"))
        one = best["papyflow one record at a time (pack, unpack)"]
        fast = best["papyflow batch: pack_batch(array) + unpack_batch"]
        numpy_ = best["numpy structured tobytes + frombuffer"]
        print(f"\nTargets: batch path at least 10x one by one: **{one / fast:.0f}x** "
              f"({'met' if one / fast >= 10 else 'missed'}); within 3x of numpy: "
              f"**{fast / numpy_:.2f}x** numpy's time "
              f"({'met' if fast / numpy_ <= 3 else 'missed'}).\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
