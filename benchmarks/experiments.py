"""Experiment benchmarks: the bundled toy experiment at 100x its size, on 1 and 2 worker
processes, and rerun from its cache.

Run from the repository root::

    python -m benchmarks experiments            # about 2-3 minutes
    python -m benchmarks experiments --quick    # 10x the size, a smoke test

The experiment is ``examples/toy/experiment.json`` on a copy of
``examples/toy/prefix`` whose database sets are scaled: 10x the clients and
10x the samples per client (4 x 10 -> 40 x 100 samples per set, 160,000
scores). Its two ``preprocess`` blocks are made the heavy ones with the
algorithm's ``layers`` parameter (each sample goes through that many layers of
a fixed network: about 1 ms of CPU per sample at the default 300 layers).

Scenarios, each run in a fresh subprocess (imports done before the clock):

``scaling``
    The experiment without a cache on a process NuMap of 1, then of 2
    workers. Reported: the whole run, and the heavy blocks alone (from the
    first result of either ``preprocess`` Piper to the last of both). The
    peer: the same computation as a hand-written loop in one process (the
    view's data, then each algorithm's ``process`` called directly, no
    framework), which shows what the framework costs.
``cache``
    The experiment with an empty cache (2 workers), then again with the cache
    it filled (nothing to compute: the analyzer's result is read back); both
    in-process and as ``papyflow experiment run`` from a fresh interpreter
    (interpreter start and imports included).

Repeats are interleaved; the best repeat counts. Markdown goes to stdout,
progress to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.machine import machine_info, machine_line

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "examples" / "toy"
HEAVY = ("preprocess_train", "preprocess_test")
TIMEOUT = 900


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scaled_copy(root: Path, factor: int, layers: int) -> tuple[Path, Path]:
    """A copy of the toy prefix with ``factor`` x the clients and the samples per client,
    and the toy declaration with ``layers`` on both preprocess blocks."""
    prefix = root / "prefix"
    shutil.copytree(TOY / "prefix", prefix)
    database = prefix / "databases" / "toy" / "1.json"
    declaration = json.loads(database.read_text())
    for protocol in declaration["protocols"]:
        for dataset in protocol["sets"]:
            dataset["parameters"]["clients"] *= factor
            dataset["parameters"]["samples"] *= factor
    database.write_text(json.dumps(declaration, indent=4))
    experiment = json.loads((TOY / "experiment.json").read_text())
    for block in HEAVY:
        experiment["blocks"][block]["parameters"] = {"layers": layers}
    path = root / "experiment.json"
    path.write_text(json.dumps(experiment, indent=4))
    return prefix, path


# -- one measurement, in a subprocess ----------------------------------------------------


def one(prefix: str, declaration: str, workers: int, cache: str | None, index: str) -> dict:
    """Run the experiment once here; times and the result (called in a fresh process)."""
    from numap import NuMap
    from papyflow.blocks.experiment import Experiment

    began = time.perf_counter()
    experiment = Experiment(prefix, declaration)
    numap = NuMap(worker_type="process", worker_num=workers) if workers else False
    plumber, pipers = experiment.build(numap, index_folder=index, cache=cache)
    plumber.start(plumber.inputs())
    plumber.run()
    plumber.wait()
    stats = plumber.stats["pipers"]
    plumber.stop()
    wall = time.perf_counter() - began
    (record,) = plumber.results()["eer"]
    heavy = [stats[pipers[f"{name}.features"]] for name in HEAVY
             if f"{name}.features" in pipers]
    span = max(s["last"] for s in heavy) - min(s["first"] for s in heavy) if heavy else None
    return {"wall": wall, "heavy": span, "eer": float(record.eer),
            "ran": sorted(k for k, v in plumber.plan.items() if v == "run")}


class _Unit:
    """What a hand-written loop gives the toy code as one input: ``data`` and the unit's end."""

    def __init__(self, data: Any, done: bool = True) -> None:
        self.data = data
        self.done = done

    def isDataUnitDone(self) -> bool:
        return self.done


class _Inputs(dict):
    def __init__(self, more: bool, **units: _Unit) -> None:
        super().__init__(units)
        self.more = more

    def hasMoreData(self) -> bool:
        return self.more


class _Output:
    def __init__(self) -> None:
        self.written: list[Any] = []

    def write(self, data: dict) -> None:
        self.written.append(SimpleNamespace(**data))


class _Loader:
    def __init__(self, models: list[Any], clients: list[Any]) -> None:
        self.rows = [({"model": m, "model_client": c}, k, k)
                     for k, (m, c) in enumerate(zip(models, clients, strict=True))]

    def loaderOf(self, name: str) -> _Loader:
        return self

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> Any:
        return self.rows[k]


def serial(prefix: str, layers: int) -> dict:
    """The same computation as a hand-written loop over the toy code, in one process:
    the views' data, then each algorithm's ``process`` called directly."""
    began = time.perf_counter()
    modules = {}
    for name, path in (("view", "databases/toy/1.py"),
                       *((n, f"algorithms/toy/{n}/1.py") for n in
                         ("preprocess", "enroll", "score", "eer"))):
        spec = importlib.util.spec_from_file_location(f"toy_{name}", Path(prefix) / path)
        assert spec is not None and spec.loader is not None
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    sets = json.loads((Path(prefix) / "databases/toy/1.json").read_text())
    data = {}
    for dataset in sets["protocols"][0]["sets"]:
        view = modules["view"].Samples()
        objs = view.index(None, dataset["parameters"])
        view.setup(None, dataset["parameters"], objs)
        samples = []
        for k, entry in enumerate(objs):
            vector = SimpleNamespace(**view.get("features", k))
            client = SimpleNamespace(**view.get("client", k))
            last = k + 1 == len(objs) or objs[k + 1].client != entry.client
            samples.append((vector, client, last))
        data[dataset["name"]] = samples
    preprocessed = {}
    for name, samples in data.items():
        algorithm = modules["preprocess"].Algorithm()
        algorithm.setup({"layers": layers})
        output = _Output()
        for vector, _, _ in samples:
            algorithm.process(_Inputs(True, features=_Unit(vector)), None,
                              {"features": output})
        preprocessed[name] = output.written
    enroll = modules["enroll"].Algorithm()
    enroll.setup({})
    models = _Output()
    clients = []
    for vector, (_, client, last) in zip(preprocessed["train"], data["train"], strict=True):
        enroll.process(_Inputs(True, features=_Unit(vector), client=_Unit(client, last)),
                       None, {"model": models})
        if last:
            clients.append(client)
    score = modules["score"].Algorithm()
    score.prepare(_Loader(models.written, clients))
    scores = _Output()
    for vector, (_, client, _) in zip(preprocessed["test"], data["test"], strict=True):
        score.process(_Inputs(True, probe=_Unit(vector), client=_Unit(client)), None,
                      {"scores": scores})
    eer = modules["eer"].Algorithm()
    eer.setup({})
    result = _Output()
    for k, row in enumerate(scores.written):
        eer.process(_Inputs(k + 1 < len(scores.written), scores=_Unit(row)), None, result)
    (record,) = result.written
    return {"wall": time.perf_counter() - began, "eer": float(record.eer)}


def _measure(args: list[str], mode: str = "--one") -> dict:
    command = [sys.executable, "-m", "benchmarks.experiments", mode, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _command_line(prefix: Path, declaration: Path, cache: Path, index: Path) -> float:
    """Seconds of ``papyflow experiment run`` from a fresh interpreter."""
    command = [sys.executable, "-m", "papyflow", "experiment", "run", str(declaration),
               "--prefix", str(prefix), "--cache", str(cache), "--workers", "2",
               "--index-folder", str(index), "--no-progress"]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                          check=False)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


# -- the suite ---------------------------------------------------------------------------


def _best(rows: list[dict], key: str) -> float:
    return min(row[key] for row in rows)


def _spread(rows: list[dict], key: str) -> str:
    values = [row[key] for row in rows]
    return f"{(max(values) - min(values)) / min(values) * 100:.0f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks experiments")
    parser.add_argument("--quick", action="store_true", help="10x the size, one repeat")
    parser.add_argument("--repeat", type=int, default=3, metavar="N", help="repeats (default 3)")
    parser.add_argument("--layers", type=int, default=300, metavar="L",
                        help="layers of the preprocess blocks (default 300)")
    parser.add_argument("--serial", nargs=2, metavar=("PREFIX", "LAYERS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--one", nargs=5, metavar=("PREFIX", "JSON", "WORKERS", "CACHE",
                                                    "INDEX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serial:
        print(json.dumps(serial(args.serial[0], int(args.serial[1]))))
        return 0
    if args.one:
        prefix, declaration, workers, cache, index = args.one
        result = one(prefix, declaration, int(workers), None if cache == "-" else cache, index)
        print(json.dumps(result))
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    factor = 3 if args.quick else 10  # 3 x 3 ~ 10x, 10 x 10 = 100x
    repeat = 1 if args.quick else args.repeat
    info = machine_info(("numpy",))
    print(f"# Benchmark suite `experiments`\n\n{machine_line(info)}  ")
    print(f"Load average (1/5/15 min) before the run: "
          f"{'/'.join(f'{x:.2f}' for x in info['loadavg'])}  ")
    print(f"Run: {'quick' if args.quick else 'full'}; the toy experiment at {factor * factor}x "
          f"({4 * factor} clients x {10 * factor} samples per set), preprocess layers "
          f"{args.layers}; best of {repeat}.\n")
    root = Path(tempfile.mkdtemp(prefix="papyflow-bench-experiments-"))
    began = time.monotonic()
    try:
        prefix, declaration = scaled_copy(root, factor, args.layers)
        index = root / "index"
        index.mkdir()
        common = [str(prefix), str(declaration)]
        _log("warming up (the views' indices)")
        _measure([*common, "1", "-", str(index)])
        scaling: dict[int, list[dict]] = {1: [], 2: []}
        first: list[dict] = []
        cached: list[dict] = []
        cli_first: list[dict] = []
        cli_cached: list[dict] = []
        loops: list[dict] = []
        for k in range(repeat):
            _log(f"hand-written loop: repeat {k + 1}/{repeat}")
            loops.append(_measure([str(prefix), str(args.layers)], "--serial"))
            for workers in (1, 2):
                _log(f"scaling: repeat {k + 1}/{repeat}, {workers} worker(s)")
                scaling[workers].append(_measure([*common, str(workers), "-", str(index)]))
            _log(f"cache: repeat {k + 1}/{repeat}")
            cache = root / f"cache-{k}"
            first.append(_measure([*common, "2", str(cache), str(index)]))
            cached.append(_measure([*common, "2", str(cache), str(index)]))
            assert cached[-1]["ran"] == [], cached[-1]
            cache = root / f"cli-cache-{k}"
            cli_first.append({"wall": _command_line(prefix, declaration, cache, index)})
            cli_cached.append({"wall": _command_line(prefix, declaration, cache, index)})
        results = {1: scaling[1], 2: scaling[2]}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    eers = {round(row["eer"], 9)
            for rows in (*results.values(), first, cached, loops) for row in rows}
    loop = _best(loops, "wall")
    print("## scaling\n")
    print("| contender | whole run (s) | vs the hand-written loop | spread | heavy blocks (s) | "
          "spread |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| hand-written loop, one process | {loop:.2f} | 1.00x | {_spread(loops, 'wall')} "
          "| - | - |")
    for workers, rows in results.items():
        print(f"| papyflow, {workers} worker{'s' if workers > 1 else ''} | "
              f"{_best(rows, 'wall'):.2f} | {loop / _best(rows, 'wall'):.2f}x | "
              f"{_spread(rows, 'wall')} | {_best(rows, 'heavy'):.2f} | "
              f"{_spread(rows, 'heavy')} |")
    heavy = _best(results[1], "heavy") / _best(results[2], "heavy")
    whole = _best(results[1], "wall") / _best(results[2], "wall")
    print(f"\n2 workers against 1: heavy blocks {heavy:.2f}x, whole run {whole:.2f}x.\n")
    print("## cache\n")
    print("| run | in-process (s) | spread | `papyflow experiment run` (s) | spread |")
    print("| --- | --- | --- | --- | --- |")
    for label, rows, cli in (("empty cache", first, cli_first),
                             ("fully cached rerun", cached, cli_cached)):
        print(f"| {label} | {_best(rows, 'wall'):.3f} | {_spread(rows, 'wall')} | "
              f"{_best(cli, 'wall'):.2f} | {_spread(cli, 'wall')} |")
    rerun = _best(cached, "wall") / _best(first, "wall")
    rerun_cli = _best(cli_cached, "wall") / _best(cli_first, "wall")
    print(f"\nA fully cached rerun takes {rerun * 100:.1f}% of the first run in-process, "
          f"{rerun_cli * 100:.1f}% as a command.\n")
    print("## Targets\n")
    print("| scenario | target | measured |")
    print("| --- | --- | --- |")
    print(f"| heavy blocks, 2 workers against 1 | ≥ 1.7x | {heavy:.2f}x |")
    print(f"| fully cached rerun | < 10% of the first run | {rerun * 100:.1f}% in-process, "
          f"{rerun_cli * 100:.1f}% as a command |")
    print(f"\nEqual error rates seen: {sorted(eers)} (one value: every run agrees).")
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
