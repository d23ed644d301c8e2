"""Turn suite results (the ``--json`` output) into the markdown used in docs.

``to_markdown(results)`` renders the machine lines and one table per
scenario.  It only reads the plain JSON structure written by
:mod:`benchmarks.suite_numap`, so it works on a saved file::

    import json
    from benchmarks.report import to_markdown
    print(to_markdown(json.load(open("results.json"))))

or from the command line: ``python -m benchmarks.report results.json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks.machine import machine_line, packages_line

MIB = 1024 * 1024

BUSY_PERCENT = 10.0
"""System CPU use above this just before the run earns a warning."""

STATUS_TEXT = {
    "timeout": "timeout",
    "limit": "gave up",
    "error": "error",
    "wrong": "wrong results",
    "skipped": "skipped",
    "not_run": "not run",
}


def to_markdown(results: dict[str, Any]) -> str:
    """Markdown of a whole suite run: header lines, then one table per scenario."""
    parts = [header_markdown(results)]
    parts.extend(scenario_markdown(s) for s in results.get("scenarios", []))
    return "\n\n".join(p for p in parts if p) + "\n"


def header_markdown(results: dict[str, Any]) -> str:
    """Machine, library and run-settings lines."""
    machine = results.get("machine", {})
    lines = [f"# Benchmark suite `{results.get('suite', '?')}`", ""]
    if machine:
        lines.append(machine_line(machine) + "  ")
        pkgs = packages_line(machine)
        if pkgs:
            lines.append(pkgs + "  ")
    load = machine.get("loadavg")
    if load:
        lines.append(
            "Load average (1/5/15 min) before the run: "
            + "/".join(f"{x:.2f}" for x in load)
            + (
                f", after: {'/'.join(f'{x:.2f}' for x in results['loadavg_after'])}"
                if results.get("loadavg_after")
                else ""
            )
            + "  "
        )
    busy = machine.get("busy_percent")
    if busy is not None and busy > BUSY_PERCENT:
        lines.append(
            f"**Warning: the machine was busy ({busy:.0f}% CPU in the second before the run); "
            "other processes compete for the cores and make results noisy.**  "
        )
    mode = "quick (smoke-test sizes)" if results.get("quick") else "full"
    lines.append(
        f"Run: {mode}; best of {plural(results.get('repeat', 0), 'repeat')}, run round robin, "
        "each measurement in a fresh subprocess; times include pool start-up, "
        "exclude imports and pool teardown."
    )
    calib = results.get("calibration")
    if calib:
        lines.append(
            f"CPU item calibrated to {calib['burn_item_s'] * 1000:.2f} ms "
            f"({calib['burn_loops']:,} loop steps)."
        )
    skipped = results.get("unavailable", {})
    for key, reason in sorted(skipped.items()):
        lines.append(f"Note: contender `{key}` skipped: {reason}.")
    return "\n".join(lines)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Best run, spread and status of a row's runs at one size."""
    ok = [r for r in runs if r.get("status") == "ok"]
    notes = sorted({n for r in runs for n in r.get("notes", [])})
    if not ok:
        first = runs[0] if runs else {"status": "not_run"}
        return {
            "status": first.get("status"),
            "best": None,
            "runs": len(runs),
            "notes": notes,
            "error": first.get("error", ""),
            "run": first,
        }
    timed = [r for r in ok if r.get("throughput")]
    if timed:
        best = max(timed, key=lambda r: r["throughput"])
        # A swept row holds runs at several chunksizes: spread is among the best one's.
        same = [r["throughput"] for r in timed if r.get("chunksize") == best.get("chunksize")]
        spread = (best["throughput"] - min(same)) / best["throughput"]
        count = len(same)
    else:
        best = min(ok, key=lambda r: r.get("rss_tree_peak") or 0)
        spread = None
        count = len(ok)
    return {
        "status": "ok",
        "best": best,
        "runs": count,
        "spread": spread,
        "notes": notes,
        "error": "",
        "run": best,
    }


def plural(count: int, noun: str) -> str:
    """``3 repeats``, ``1 repeat``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def fmt_rate(value: float | None) -> str:
    """Throughput with thousands separators and about three significant digits."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio such as ``1.23x``."""
    return "-" if value is None else f"{value:.2f}x"


def fmt_n(n: int) -> str:
    """A count in short form: 10k, 1M, 1,234."""
    for factor, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return f"{n:,}"


def fmt_mib(value: float | None) -> str:
    """Bytes as MiB."""
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def status_cell(summary: dict[str, Any], row: dict[str, Any], timeout_s: float | None) -> str:
    """Table cell for a row that produced no valid measurement."""
    status = summary["status"]
    if row.get("never_returns") and status in ("timeout", "limit"):
        return f"never returned (> {timeout_s:g} s)" if timeout_s else "never returned"
    if status == "timeout" and timeout_s:
        return f"timeout (> {timeout_s:g} s)"
    return STATUS_TEXT.get(status, str(status))


def row_notes(row: dict[str, Any], size: int | None, summary: dict[str, Any] | None) -> str:
    """Notes column: chosen chunksize, ordering, failures, stragglers."""
    if row.get("skipped"):
        return str(row["skipped"])
    notes = static_notes(row)
    if row.get("sweep") and size is not None:
        best = summary.get("best") if summary else None
        if best is not None:
            tried = ", ".join(str(c) for c in row.get("sweep_results", {}).get(str(size), {}))
            notes.insert(0, f"chunksize={best.get('chunksize')} (tried {tried})")
    notes.extend(size_notes(summary))
    return "; ".join(dict.fromkeys(notes))


def static_notes(row: dict[str, Any]) -> list[str]:
    """Notes that hold for a row whatever its runs: ordering, configuration."""
    notes = [] if row.get("ordered", True) else ["results unordered"]
    return notes + list(row.get("notes", []))


def size_notes(summary: dict[str, Any] | None) -> list[str]:
    """Notes about the runs at one size: error text (unless the cell says it all)."""
    if summary is None:
        return []
    notes = []
    if summary.get("error") and summary.get("status") != "timeout":
        notes.append(str(summary["error"]).splitlines()[0][:160])
    notes.extend(summary.get("notes", []))
    alive = (summary.get("best") or {}).get("children_after")
    if alive:
        notes.append(f"{alive} worker process(es) still alive when the map returned")
    return notes


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table; the first column is left aligned, the others right."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 2) + [":---"]) + "|")
    lines.extend("| " + " | ".join(cells) + " |" for cells in body)
    return "\n".join(lines)


def scenario_markdown(scenario: dict[str, Any]) -> str:
    """Heading and table of one scenario."""
    if scenario.get("unit") == "memory":
        return memory_markdown(scenario)
    return throughput_markdown(scenario)


def _row_by_key(scenario: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The row of ``scenario`` with the given key."""
    rows: list[dict[str, Any]] = scenario["rows"]
    for row in rows:
        if row["key"] == key:
            return row
    return None


def _best_throughput(row: dict[str, Any] | None, size: int) -> float | None:
    if row is None:
        return None
    best = summarize(row.get("sizes", {}).get(str(size), {}).get("runs", []))["best"]
    return None if best is None else best.get("throughput")


def throughput_markdown(scenario: dict[str, Any]) -> str:
    """Table of a throughput scenario (items/s or MiB/s)."""
    size = scenario["sizes"][0]
    unit = scenario["unit"]
    base_row = _row_by_key(scenario, scenario["baseline"])
    base = _best_throughput(base_row, size)
    extras = [(k, _row_by_key(scenario, k)) for k in scenario.get("extra_baselines", [])]
    ideal = scenario.get("ideal")
    header = ["Contender", unit, f"vs {base_row['label'] if base_row else scenario['baseline']}"]
    header += [f"vs {row['label'] if row else key}" for key, row in extras]
    if ideal:
        header.append(f"% of ideal {fmt_rate(ideal)} {unit}")
    header += ["spread", "peak RSS parent / tree", "notes"]
    body = []
    for row in scenario["rows"]:
        runs = row.get("sizes", {}).get(str(size), {}).get("runs", [])
        summary = summarize(runs) if runs else None
        cells = [row["label"]]
        if row.get("skipped") or summary is None:
            cells.append("skipped" if row.get("skipped") else "not run")
            cells += ["-"] * (len(header) - 3)
            cells.append(row_notes(row, size, summary))
            body.append(cells)
            continue
        best = summary["best"]
        if best is None:
            cells.append(status_cell(summary, row, scenario.get("timeout_s")))
            cells += ["-"] * (len(header) - 3)
            cells.append(row_notes(row, size, summary))
            body.append(cells)
            continue
        value = best["throughput"]
        cells.append(fmt_rate(value))
        cells.append(fmt_ratio(value / base if base else None))
        for _, extra_row in extras:
            other = _best_throughput(extra_row, size)
            cells.append(fmt_ratio(value / other if other else None))
        if ideal:
            cells.append(f"{100 * value / ideal:.0f}%")
        spread = summary.get("spread")
        if spread is None or summary["runs"] < 2:
            cells.append("1 run")
        else:
            cells.append(f"{100 * spread:.0f}% of {summary['runs']}")
        cells.append(f"{fmt_mib(best.get('rss_self_peak'))} / {fmt_mib(best.get('rss_tree_peak'))}")
        cells.append(row_notes(row, size, summary))
        body.append(cells)
    title = (
        f"## `{scenario['name']}`: {scenario['title']}\n\n"
        f"N = {size:,} items, {scenario['workers']} workers, best of "
        f"{plural(scenario.get('repeats', 0), 'repeat')}; spread = (best - worst) / best."
    )
    return title + "\n\n" + _table(header, body)


def _memory_cells(
    summary: dict[str, Any], row: dict[str, Any], timeout_s: float | None
) -> list[str]:
    """Parent peak, tree peak and pulled-ahead cells of one row at one N."""
    best = summary["best"]
    if best is None:
        run = summary.get("run") or {}
        stopped = run.get("rss_tree_peak") if summary["status"] in ("timeout", "limit") else None
        return [
            status_cell(summary, row, timeout_s),
            f"({fmt_mib(stopped)} when stopped)" if stopped else "-",
            "-",
        ]
    ahead = best.get("pulled_ahead")
    return [
        fmt_mib(best.get("rss_self_peak")),
        fmt_mib(best.get("rss_tree_peak")),
        "-" if ahead is None else f"{ahead:,}",
    ]


def memory_markdown(scenario: dict[str, Any]) -> str:
    """Table of the memory scenario: peaks per N, pulled-ahead counts, ratios."""
    sizes: list[int] = scenario["sizes"]
    header = ["Contender"]
    for n in sizes:
        header += [f"parent peak {fmt_n(n)}", f"tree peak {fmt_n(n)}", f"pulled ahead {fmt_n(n)}"]
    if len(sizes) > 1:
        a, b = fmt_n(sizes[0]), fmt_n(sizes[-1])
        header += [f"parent {b}/{a}", f"tree {b}/{a}", f"time {b}"]
    header.append("notes")
    not_run: dict[str, Any] = {
        "status": "not_run",
        "best": None,
        "notes": [],
        "error": "",
        "run": {},
    }
    body = []
    for row in scenario["rows"]:
        cells = [row["label"]]
        if row.get("skipped"):
            cells += ["skipped"] + ["-"] * (len(header) - 3) + [row["skipped"]]
            body.append(cells)
            continue
        timeout_s = scenario.get(
            "never_returns_timeout_s" if row.get("never_returns") else "timeout_s"
        )
        notes = static_notes(row)
        summaries: dict[int, dict[str, Any]] = {}
        for n in sizes:
            runs = row.get("sizes", {}).get(str(n), {}).get("runs", [])
            summaries[n] = summarize(runs) if runs else not_run
            cells += _memory_cells(summaries[n], row, timeout_s)
            for note in size_notes(summaries[n]):
                notes.append(note if len(sizes) == 1 else f"{fmt_n(n)}: {note}")
        if len(sizes) > 1:
            lo, hi = summaries[sizes[0]]["best"], summaries[sizes[-1]]["best"]
            for field in ("rss_self_peak", "rss_tree_peak"):
                ok = lo and hi and lo.get(field) and hi.get(field)
                cells.append(fmt_ratio(hi[field] / lo[field]) if ok else "-")
            cells.append(f"{hi['elapsed_s']:.2f} s" if hi else "-")
        cells.append("; ".join(dict.fromkeys(notes)))
        body.append(cells)
    title = (
        f"## `{scenario['name']}`: {scenario['title']}\n\n"
        "Peak RSS of the measuring process (parent, exact `ru_maxrss`) and of it plus "
        "all its workers (tree, summed RSS sampled every 10 ms); pulled ahead = input "
        "items taken from the endless iterator beyond N when the N-th result arrived. "
        f"N = {', '.join(f'{n:,}' for n in sizes)}; one measurement per contender and N."
    )
    return title + "\n\n" + _table(header, body)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report RESULTS.json``: print the markdown."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmarks.report RESULTS.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        print(to_markdown(json.load(fh)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
