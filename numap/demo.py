"""NuMap on a bundled example: per-sensor statistics of a CSV file of readings.

Two chained tasks share one pool of worker processes: the first parses blocks
of lines, the second summarises each parsed block. Lines that do not parse come
back as exceptions for their block, and the run goes on.

Run it as ``numap-demo [path/to/readings.csv]`` or ``python -m numap.demo``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from numap import NuMap

DATA = Path(__file__).parent / "data" / "readings.csv"  # ships with the package
BLOCK = 250  # lines per item


def blocks(path: Path) -> Iterator[list[str]]:
    """The data lines of ``path`` in blocks of ``BLOCK`` lines, read lazily."""
    with path.open() as lines:
        next(lines)  # the header
        block: list[str] = []
        for line in lines:
            block.append(line)
            if len(block) == BLOCK:
                yield block
                block = []
        if block:
            yield block


def parse(block: list[str]) -> tuple[list[tuple[str, float]], int]:
    """(sensor, celsius) pairs of a block, and how many lines did not parse."""
    rows, bad = [], 0
    for line in block:
        _, sensor, value = line.rstrip("\n").split(",")
        try:
            rows.append((sensor, float(value)))
        except ValueError:
            bad += 1
    return rows, bad


def summarise(parsed: tuple[list[tuple[str, float]], int]) -> tuple[dict[str, list[float]], int]:
    """Per sensor: [count, sum, sum of squares, min, max] of one block."""
    rows, bad = parsed
    stats: dict[str, list[float]] = {}
    for sensor, value in rows:
        s = stats.setdefault(sensor, [0, 0.0, 0.0, math.inf, -math.inf])
        s[0] += 1
        s[1] += value
        s[2] += value * value
        s[3] = min(s[3], value)
        s[4] = max(s[4], value)
    return stats, bad


def main(argv: list[str] | None = None) -> int:
    """Print the per-sensor table for the file named in ``argv`` (the bundled one by default)."""
    argv = sys.argv if argv is None else argv
    path = Path(argv[1]) if len(argv) > 1 else DATA
    if not path.is_file():
        print(f"numap-demo: no such file: {path}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    totals: dict[str, list[float]] = {}
    bad_lines = items = 0
    with NuMap(worker_type="process", worker_num=2) as numap:
        parsed = numap.add_task(parse, blocks(path))
        summaries = numap.add_task(summarise, parsed)
        numap.start()
        for stats, bad in summaries:
            items += 1
            bad_lines += bad
            for sensor, (n, total, squares, low, high) in stats.items():
                t = totals.setdefault(sensor, [0, 0.0, 0.0, math.inf, -math.inf])
                t[0] += n
                t[1] += total
                t[2] += squares
                t[3] = min(t[3], low)
                t[4] = max(t[4], high)
    seconds = time.perf_counter() - began

    print(f"{'sensor':<8} {'readings':>8} {'mean':>7} {'stdev':>6} {'min':>7} {'max':>7}")
    for sensor, (n, total, squares, low, high) in sorted(totals.items()):
        mean = total / n
        stdev = math.sqrt(max(squares / n - mean * mean, 0.0))
        print(f"{sensor:<8} {n:>8} {mean:>7.2f} {stdev:>6.2f} {low:>7.2f} {high:>7.2f}")
    print(f"{items} blocks of {BLOCK} lines through 2 chained tasks on 2 worker processes "
          f"in {seconds:.2f} s; {bad_lines} lines did not parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
