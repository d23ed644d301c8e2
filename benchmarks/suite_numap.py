"""The ``numap`` suite: NuMap against the standard library and its peers.

For every selected scenario the suite runs each table row in a fresh
subprocess (:mod:`benchmarks._one`), ``repeat`` times, round robin: repeat 1
of every row, then repeat 2 of every row (starting one row later), and so on,
so slow drifts of the machine's speed hit all contenders alike.  The best
repeat is reported.

Rows with ``sweep=True`` try every chunksize of
:data:`benchmarks.scenarios.SWEEP_CHUNKSIZES` on the first repeat and keep the
fastest for the later repeats.  Measurements are memoized by (contender,
chunksize, size, repeat), so a sweep reuses the run of a fixed-chunksize row.
A run that failed, or that took longer than :data:`SLOW_S`, is not repeated
(one long run is precise enough, and it keeps the suite's wall time bounded).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks import report, workloads
from benchmarks.machine import machine_info
from benchmarks.registry import CONTENDERS
from benchmarks.scenarios import SCENARIOS, Row, Scenario, sweep_candidates
from benchmarks.subproc import run_child

ROOT = Path(__file__).resolve().parent.parent
"""Repository root: the measuring subprocesses run from here."""

SLOW_S = 15.0
"""Runs longer than this are not repeated."""

QUICK_SLOW_S = 3.0
"""The same limit under ``--quick``."""

CPU_ITEM_S = 0.005
"""Target duration of one CPU-bound item, serial."""

PROBE_TIMEOUT_S = 60.0

PACKAGES = ("numpy", "psutil", "multiprocess", "dill", "joblib", "mpire", "pypeln")


@dataclass(frozen=True)
class Settings:
    """Command-line settings of one suite run."""

    quick: bool = False
    repeat: int = 3
    only: tuple[str, ...] = ()
    json_path: Path | None = None
    exclude: tuple[str, ...] = ()


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the markdown."""
    print(message, file=sys.stderr, flush=True)


def probe(statement: str) -> str:
    """Run ``statement`` in a fresh interpreter; '' if it works, else why not."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", statement],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return f"`{statement}` did not finish within {PROBE_TIMEOUT_S:g} s"
    if proc.returncode == 0:
        return ""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    if last.startswith("ModuleNotFoundError: No module named"):
        return last.split("named", 1)[1].strip(" '\"") + " not installed"
    return f"`{statement}` failed: {last}"


def unavailable_contenders(scenarios: list[Scenario]) -> dict[str, str]:
    """Contenders of ``scenarios`` that cannot run here, with the reason."""
    reasons: dict[str, str] = {}
    checked: dict[str, str] = {}
    for scenario in scenarios:
        for row in scenario.rows:
            info = CONTENDERS[row.contender]
            if not info.requires or info.key in reasons:
                continue
            if info.requires not in checked:
                checked[info.requires] = probe(info.requires)
            if checked[info.requires]:
                reasons[info.key] = checked[info.requires]
    return reasons


class Measurer:
    """Run (and memoize) single measurements of one scenario."""

    def __init__(self, scenario: Scenario, settings: Settings, env: dict[str, str]) -> None:
        self.scenario = scenario
        self.settings = settings
        self.env = env
        self.cache: dict[tuple[str, int | None, int, int], dict[str, Any]] = {}
        self.rss_cap_mib = int(min(8 * 1024, 0.4 * psutil.virtual_memory().total / 2**20))

    def timeout_s(self, never_returns: bool) -> float:
        """Child deadline for a row."""
        s, quick = self.scenario, self.settings.quick
        if never_returns:
            return s.quick_never_returns_timeout_s if quick else s.never_returns_timeout_s
        return s.quick_timeout_s if quick else s.timeout_s

    def should_repeat(self, contender: str, chunksize: int | None, size: int) -> bool:
        """Whether the first run of this configuration earned a repeat."""
        first = self.cache.get((contender, chunksize, size, 0))
        if first is None:
            return True
        slow = QUICK_SLOW_S if self.settings.quick else SLOW_S
        return bool(first["status"] == "ok" and first["wall_s"] <= slow)

    def measure(
        self,
        contender: str,
        chunksize: int | None,
        size: int,
        repeat: int,
        never_returns: bool = False,
    ) -> dict[str, Any]:
        """One run in a fresh subprocess (or the memoized one)."""
        key = (contender, chunksize, size, repeat)
        if key in self.cache:
            return self.cache[key]
        deadline = self.timeout_s(never_returns)
        args = [self.scenario.name, contender, str(size)]
        if chunksize is not None:
            args += ["--chunksize", str(chunksize)]
        args += [
            "--interval",
            "0.01" if self.scenario.unit == "memory" else "0.05",
            "--deadline",
            f"{deadline:g}",
            "--rss-cap-mib",
            str(self.rss_cap_mib),
        ]
        outcome = run_child(args, deadline + 15.0, ROOT, self.env)
        payload = outcome.payload or {}
        status = payload.get("status") or ("timeout" if outcome.timed_out else "error")
        error = payload.get("error", "")
        if not outcome.payload and not outcome.timed_out:
            tail = [ln for ln in outcome.stderr_tail.splitlines() if ln.strip()]
            error = f"exit code {outcome.returncode}: {tail[-1] if tail else 'no output'}"
        run = {
            "repeat": repeat,
            "chunksize": chunksize,
            "status": status,
            "error": error,
            "wall_s": outcome.wall_s,
            "elapsed_s": payload.get("elapsed_s"),
            "teardown_s": payload.get("teardown_s"),
            "throughput": None,
            "rss_start": payload.get("rss_start"),
            "rss_self_peak": payload.get("rss_self_peak"),
            "rss_tree_peak": payload.get("rss_tree_peak"),
            "max_children": payload.get("max_children"),
            "children_after": payload.get("children_after"),
            "pulled_ahead": payload.get("pulled_ahead"),
            "pulled_after_stop": payload.get("pulled_after_stop"),
            "notes": outcome.notes,
        }
        if status == "error" and payload.get("traceback"):
            run["traceback"] = payload["traceback"]
        if status == "error" and outcome.stderr_tail:
            run["stderr_tail"] = outcome.stderr_tail
        elapsed = payload.get("elapsed_s")
        if status == "ok" and elapsed and self.scenario.unit != "memory":
            if self.scenario.unit == "MiB/s":
                run["throughput"] = size * workloads.ARRAY_BYTES / 2**20 / elapsed
            else:
                run["throughput"] = size / elapsed
        self.cache[key] = run
        shown = report.fmt_rate(run["throughput"]) + f" {self.scenario.unit}"
        if self.scenario.unit == "memory" and status == "ok":
            shown = f"tree peak {report.fmt_mib(run['rss_tree_peak'])}"
        if status != "ok":
            shown = f"{status}: {error}"[:200]
        cs = "" if chunksize is None else f" chunksize={chunksize}"
        log(
            f"  [{self.scenario.name} N={size:,} r{repeat + 1}] "
            f"{CONTENDERS[contender].label}{cs}: {shown} ({outcome.wall_s:.1f} s)"
        )
        return run


def _row_result(row: Row, skipped: str) -> dict[str, Any]:
    info = CONTENDERS[row.contender]
    return {
        "key": row.key,
        "label": row.label,
        "contender": row.contender,
        "chunksize": row.chunksize,
        "sweep": row.sweep,
        "never_returns": row.never_returns,
        "ordered": info.ordered,
        "skipped": skipped,
        "sweep_pick": {},
        "sweep_results": {},
        "notes": [row.note] if row.note else [],
        "sizes": {},
    }


class ScenarioRun:
    """Round-robin measurement of every row of one scenario."""

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        unavailable: dict[str, str],
        env: dict[str, str],
    ) -> None:
        self.scenario = scenario
        self.sizes = scenario.quick_sizes if settings.quick else scenario.sizes
        self.repeats = 1 if scenario.single_repeat else settings.repeat
        self.measurer = Measurer(scenario, settings, env)
        self.rows = {
            row.key: _row_result(row, unavailable.get(row.contender, "")) for row in scenario.rows
        }
        self.active = [row for row in scenario.rows if row.contender not in unavailable]
        self.picked: dict[tuple[str, int], int] = {}
        """Chunksize picked by the sweep on the first repeat, per (row key, size)."""

    def runs(self, row: Row, size: int) -> list[dict[str, Any]]:
        """The list of runs of ``row`` at ``size`` (in the result structure)."""
        runs: list[dict[str, Any]] = self.rows[row.key]["sizes"][str(size)]["runs"]
        return runs

    def run(self) -> dict[str, Any]:
        """Measure all sizes, repeats and rows; return the scenario's results."""
        for size in self.sizes:
            for result in self.rows.values():
                result["sizes"][str(size)] = {"runs": []}
            for r in range(self.repeats):
                shift = r % max(1, len(self.active))
                for row in self.active[shift:] + self.active[:shift]:
                    self.step(row, size, r)
            for row in self.active:
                if row.sweep:
                    self.collect_sweep(row, size)
        for result in self.rows.values():
            result["notes"] = list(dict.fromkeys(result["notes"]))
        return {
            "name": self.scenario.name,
            "title": self.scenario.title,
            "unit": self.scenario.unit,
            "workers": self.scenario.workers,
            "sizes": list(self.sizes),
            "repeats": self.repeats,
            "baseline": self.scenario.baseline,
            "extra_baselines": list(self.scenario.extra_baselines),
            "ideal": self.scenario.ideal,
            "timeout_s": self.measurer.timeout_s(False),
            "never_returns_timeout_s": self.measurer.timeout_s(True),
            "rows": list(self.rows.values()),
        }

    def step(self, row: Row, size: int, r: int) -> None:
        """Repeat ``r`` of ``row`` at ``size``, unless it is not worth running."""
        m = self.measurer
        if row.never_returns:
            if r > 0:
                return
            if size != self.sizes[0]:
                first = self.runs(row, self.sizes[0])
                if not first or first[0]["status"] != "ok":
                    self.rows[row.key]["notes"].append(f"not run for N > {self.sizes[0]:,}")
                    return
        if row.sweep:
            if r == 0:
                self.sweep(row, size)
            elif (row.key, size) in self.picked:
                cs = self.picked[(row.key, size)]
                if m.should_repeat(row.contender, cs, size):
                    self.runs(row, size).append(m.measure(row.contender, cs, size, r))
            return
        if r > 0 and not m.should_repeat(row.contender, row.chunksize, size):
            return
        run = m.measure(row.contender, row.chunksize, size, r, row.never_returns)
        self.runs(row, size).append(run)

    def sweep(self, row: Row, size: int) -> None:
        """First repeat of a swept row: try every candidate chunksize, pick the fastest."""
        tried = {
            str(cs): self.measurer.measure(row.contender, cs, size, 0)["throughput"]
            for cs in sweep_candidates(size)
        }
        self.rows[row.key]["sweep_results"][str(size)] = tried
        good = {int(cs): v for cs, v in tried.items() if v}
        if good:
            pick = max(good, key=lambda cs: good[cs])
            self.picked[(row.key, size)] = pick
            self.rows[row.key]["sweep_pick"][str(size)] = pick

    def collect_sweep(self, row: Row, size: int) -> None:
        """Give a swept row every run at a candidate chunksize.

        That includes repeats measured for a fixed-chunksize row of the same
        contender, so the swept row's table value is the best over chunksizes.
        """
        candidates = set(sweep_candidates(size))
        self.rows[row.key]["sizes"][str(size)]["runs"] = [
            run
            for (contender, cs, n, _), run in self.measurer.cache.items()
            if contender == row.contender and n == size and cs in candidates
        ]


def run_scenario(
    scenario: Scenario, settings: Settings, unavailable: dict[str, str], env: dict[str, str]
) -> dict[str, Any]:
    """Measure every row of ``scenario`` and return its result structure."""
    return ScenarioRun(scenario, settings, unavailable, env).run()


def write_json(results: dict[str, Any], path: Path | None) -> None:
    """Write the raw results (no-op without a path)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_suite(settings: Settings) -> dict[str, Any]:
    """Run the selected scenarios, printing each table as soon as it is done."""
    started = time.monotonic()
    names = list(settings.only) or list(SCENARIOS)
    scenarios = [SCENARIOS[name] for name in names]
    results: dict[str, Any] = {
        "suite": "numap",
        "quick": settings.quick,
        "repeat": settings.repeat,
        "machine": machine_info(PACKAGES),
        "calibration": None,
        "unavailable": {},
        "scenarios": [],
    }
    log("Probing contenders ...")
    unavailable = unavailable_contenders(scenarios)
    for key in settings.exclude:
        unavailable[key] = "excluded on the command line (--exclude)"
    results["unavailable"] = unavailable
    env = dict(os.environ)
    if any(s.func == "burn" or s.source == "slow-arrays" for s in scenarios):
        log("Calibrating the CPU-bound item ...")
        loops, per_item = workloads.calibrate_burn(CPU_ITEM_S)
        results["calibration"] = {"burn_loops": loops, "burn_item_s": per_item}
        env[workloads.BURN_LOOPS_ENV] = str(loops)
    print(report.header_markdown(results), end="\n\n", flush=True)
    for scenario in scenarios:
        log(f"Scenario {scenario.name}: {scenario.title}")
        t0 = time.monotonic()
        scenario_result = run_scenario(scenario, settings, unavailable, env)
        scenario_result["wall_s"] = time.monotonic() - t0
        results["scenarios"].append(scenario_result)
        print(report.scenario_markdown(scenario_result), end="\n\n", flush=True)
        log(f"Scenario {scenario.name} done in {scenario_result['wall_s']:.0f} s")
        write_json(results, settings.json_path)
    results["wall_s"] = time.monotonic() - started
    results["loadavg_after"] = list(os.getloadavg())
    write_json(results, settings.json_path)
    print(
        f"Total wall time: {results['wall_s']:.0f} s; load average after the run: "
        + "/".join(f"{x:.2f}" for x in results["loadavg_after"]),
        flush=True,
    )
    return results
