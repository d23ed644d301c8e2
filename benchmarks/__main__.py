"""Command line of the benchmark runner: ``python -m benchmarks SUITE [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.registry import CONTENDERS
from benchmarks.scenarios import SCENARIOS

SUITES = ("numap", "pipelines", "formats", "dataflow", "experiments", "remote", "executor",
          "shm", "datalogger", "storage")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure NuMap and its peers side by side; print markdown tables.",
    )
    parser.add_argument("suite", choices=SUITES, help="benchmark suite to run")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    parser.add_argument(
        "--only",
        default="",
        metavar="SCENARIO",
        help=f"comma-separated scenarios to run (of: {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write raw results")
    parser.add_argument(
        "--exclude",
        default="",
        metavar="CONTENDER",
        help=f"comma-separated contenders to leave out (of: {', '.join(CONTENDERS)})",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    args.only = only
    exclude = tuple(key.strip() for key in args.exclude.split(",") if key.strip())
    unknown = [key for key in exclude if key not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contender(s): {', '.join(unknown)}")
    args.exclude = exclude
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pipelines"]:  # a suite of its own: papyflow pipelines and their peers
        from benchmarks.pipelines import main as pipelines

        return pipelines(argv[1:])
    if argv[:1] == ["formats"]:  # a suite of its own: packing records and their peers
        from benchmarks.formats import main as formats

        return formats(argv[1:])
    if argv[:1] == ["dataflow"]:  # a suite of its own: the cache of data units and numpy
        from benchmarks.dataflow import main as dataflow

        return dataflow(argv[1:])
    if argv[:1] == ["experiments"]:  # a suite of its own: the toy experiment, scaled up
        from benchmarks.experiments import main as experiments

        return experiments(argv[1:])
    if argv[:1] == ["remote"]:  # remote workers over loopback against local ones
        from benchmarks.remote import main as remote

        return remote(argv[1:])
    if argv[:1] == ["shm"]:  # large arrays through shared memory against the pipe
        from benchmarks.shm import main as shm

        return shm(argv[1:])
    if argv[:1] == ["datalogger"]:  # the data logger's throughput, without loss
        from benchmarks.datalogger import main as datalogger

        return datalogger(argv[1:])
    if argv[:1] == ["storage"]:  # the HDF5 storage service through its queue writer
        from benchmarks.storage import main as storage

        return storage(argv[1:])
    if argv[:1] == ["executor"]:  # NuMap on a dask cluster against dask's own map
        from benchmarks.executor import main as executor

        return executor(argv[1:])
    args = parse_args(argv)
    from benchmarks.suite_numap import Settings, run_suite

    settings = Settings(
        quick=args.quick,
        repeat=args.repeat,
        only=args.only,
        json_path=args.json,
        exclude=args.exclude,
    )
    run_suite(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
