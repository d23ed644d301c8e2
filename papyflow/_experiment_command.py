"""``papyflow experiment run FILE.json --prefix DIR [--cache DIR] [--workers N]``.

::

    RunConfig: --config RUN.yaml, options and --set over it --> --save-config RUN.yaml
    Experiment(prefix, FILE.json) --> errors? one line each, exit 2
        --> build(parallel, cache): what is cached is read, the rest runs
        --> the run of ``papyflow run`` (progress bars, Ctrl-C, summary table)
        --> one line per analyzer result record; exit 2 if a block failed

Standard output gets the plan line, the summary table and the results;
progress and errors go to standard error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from numap import NuMap

from .blocks.errors import BlockError
from .blocks.pipers import AlgorithmPiper
from .blocks.run_config import RunConfig, RunConfigError
from .cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    _Failure,
    _is_terminal,
    _Run,
    _summary,
)
from .errors import PiperError

__all__ = ["run_config", "run_experiment"]


def _overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``['block.parameter=value', ...]`` as ``{block: {parameter: typed value}}``."""
    from .structures import parse_parameters

    result: dict[str, dict[str, Any]] = {}
    try:
        parsed = parse_parameters(pairs)
    except ValueError as error:
        raise _Failure(f"--set: {error}") from None
    for key, value in parsed.items():
        block, dot, parameter = key.rpartition(".")
        if not dot or not block or not parameter:
            raise _Failure(f"--set {key}=...: expected BLOCK.PARAMETER=VALUE")
        result.setdefault(block, {})[parameter] = value
    return result


def _show(record: Any) -> str:
    """``eer=0.025 genuine=40 impostor=120``: a result record's fields."""
    fields = record.as_dict() if hasattr(record, "as_dict") else {"value": record}
    return " ".join(f"{key}={_scalar(value)}" for key, value in fields.items())


def _scalar(value: Any) -> str:
    item = value.item() if hasattr(value, "item") and getattr(value, "size", 1) == 1 else value
    return f"{item:.6g}" if isinstance(item, float) else str(item)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run configuration of ``args``: the ``--config`` file's (or the defaults), with
    the options given on the command line over it and ``--set`` over its parameters."""
    try:
        config = RunConfig.read(args.config) if args.config else RunConfig()
        given = {name: value for name, value in (
            ("prefix", args.prefix), ("cache", args.cache), ("workers", args.workers),
            ("index_folder", args.index_folder)) if value is not None}
        if args.no_progress:
            given["progress"] = False
        config = dataclasses.replace(config, **given).with_parameters(
            _overrides(args.overrides))
    except RunConfigError as error:
        raise _Failure(f"--config: {error}" if args.config else str(error)) from None
    if config.prefix is None:
        raise _Failure("no prefix: give --prefix DIR, or prefix in the --config file")
    return config


def run_experiment(args: argparse.Namespace) -> int:
    """Run the experiment of ``args`` (see the module); the exit code."""
    from .blocks.experiment import Experiment

    config = run_config(args)
    assert config.prefix is not None  # run_config() sees to it
    experiment = Experiment(config.prefix, args.file, parameters=config.parameters)
    if not experiment.valid:
        for error in experiment.errors:
            print(f"papyflow experiment: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.save_config:  # once the experiment loads with it
        try:
            config.write(args.save_config)
        except (OSError, ValueError, TypeError) as error:
            raise _Failure(f"--save-config: {error}") from None
    numap = NuMap(worker_type="process", worker_num=config.workers, name="blocks") \
        if config.workers else False
    plumber, _ = experiment.build(numap, index_folder=config.index_folder, cache=config.cache)
    plan = plumber.plan
    ran = sorted({key.rpartition(".")[0] for key, action in plan.items() if action == "run"})
    cached = sorted({key.rpartition(".")[0] for key, action in plan.items()
                     if action == "cached"})
    where = f"cache {config.cache}" if config.cache else "no cache"
    print(f"papyflow experiment: {args.file}: {len(ran)} block(s) to run"
          f"{': ' + ', '.join(ran) if ran else ''}; {len(cached)} from the cache"
          f"{': ' + ', '.join(cached) if cached else ''} ({where})", flush=True)
    run = _Run(plumber, command="experiment")
    outcome = run.execute(plumber.inputs(), progress=config.progress
                          and _is_terminal(sys.stderr))
    print(_summary(args.file, run, outcome), end="", flush=True)
    if outcome == "interrupted":
        return EXIT_INTERRUPTED
    if run.error is not None:
        raise _Failure(f"{args.file}: the experiment failed: {run.error}") from run.error
    try:
        results = plumber.results()
    except PiperError as error:
        headline, trace = _failure(error)
        print(f"papyflow experiment: {args.file}: {headline}", file=sys.stderr)
        for line in trace.rstrip().splitlines():
            print(f"  {line}", file=sys.stderr)
        return EXIT_ERROR
    for name, records in results.items():
        for record in records:
            print(f"{name}: {_show(record)}")
    failed = [p.cache.label for p in plumber.block_pipers.values()
              if isinstance(p, AlgorithmPiper) and p.cache is not None
              and p.cache.error is not None]
    if failed:
        print(f"papyflow experiment: not cached: {', '.join(failed)} (see the warnings)",
              file=sys.stderr)
    return EXIT_OK


def _failure(error: PiperError) -> tuple[str, str]:
    """What failed first (the block, the method, the data indices) and its traceback."""
    while error.args and isinstance(error.args[0], PiperError):
        error = error.args[0]
    where = getattr(error, "origin", None)
    cause = error.args[0] if error.args else error
    original = getattr(cause, "exception", None) or cause  # a WorkerError's exception
    block = f"block {where!r}" if where else "a block"
    message = str(original).splitlines()[0] if str(original) else type(original).__name__
    if isinstance(original, BlockError):
        indices = f" at data indices {original.data_index[0]}..{original.data_index[1]}" \
            if original.data_index else ""
        headline = f"{block} failed in {original.method}(){indices}: {message}"
        return headline, original.traceback
    return f"{block} failed: {message}", getattr(cause, "traceback", "")
