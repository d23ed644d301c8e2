"""The pipelines benchmark's own parts: the count of CPU time spent in steps, and
one contender's run (tiny sizes: what is checked is what they report, not how fast)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys

import dill
import pytest

from benchmarks import _stepcpu, pipelines

pytestmark = pytest.mark.timeout(120)


def _add_in_child(seconds: float) -> None:
    _stepcpu.add(seconds)


@pytest.fixture(autouse=True)
def _own_counter(monkeypatch):
    """Each test starts its own counter; none is left set in this process."""
    monkeypatch.setattr(_stepcpu, "_COUNTER", None)


def test_counter_sums_what_forked_processes_add():
    _stepcpu.start()
    _stepcpu.add(0.25)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_add_in_child, args=(0.5,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert _stepcpu.total() == pytest.approx(1.25)
    assert _stepcpu.steps() == 3


def test_counter_pickles_as_the_inherited_one():
    # A step sent by value carries the module's state: the counter must come back
    # as the one this process has, not as a copy nor as an error.
    _stepcpu.start()
    again = dill.loads(dill.dumps(_stepcpu._COUNTER))
    assert again is _stepcpu._COUNTER


def test_counter_refuses_use_before_start():
    assert _stepcpu._COUNTER is None
    for use in (lambda: _stepcpu.add(1.0), _stepcpu.total, _stepcpu.steps):
        with pytest.raises(AssertionError, match="start"):
            use()
    with pytest.raises(AssertionError, match="start"):
        pipelines.step(1)  # a step outside a measuring run is a mistake, not a silent zero


def test_a_run_whose_steps_were_not_all_counted_fails(monkeypatch):
    # As if a contender's workers had not inherited the counter: its steps run
    # uncounted, and the run must fail rather than report a low CPU per step.
    monkeypatch.setitem(pipelines.CONTENDERS, "uncounted",
                        lambda n: [x + 3 for x in range(n)])
    with pytest.raises(SystemExit, match="0 of 30 steps"):
        pipelines._one("uncounted", 10, 100)


@pytest.mark.parametrize("name", ["papyflow (3 Pipers, one shared NuMap)",
                                  "Pool.imap x3, one pool, chunksize 100",
                                  "pypeln process x3, 2 workers per stage",
                                  "serial"])
def test_one_run_counts_the_steps_cpu_in_every_process(name):
    if name.startswith("pypeln"):
        pytest.importorskip("pypeln")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipelines", "--one", name, "--items", "40",
         "--loops", "200"], capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["ok"] is True
    assert row["steps"] == 120
    # Every step ran in a worker process (but serial's) and was counted once: the
    # run checks the count itself (it fails otherwise, see above).
    assert row["step_cpu"] > 0


def test_stages_reports_medians_and_cores_busy():
    rows = pipelines.stages(30, 2, 100, only=("one pool, chunksize 100",))
    assert [r["name"] for r in rows] == ["serial", "Pool.imap x3, one pool, chunksize 100"]
    for row in rows:
        assert row["ok"] is True
        assert row["median_rate"] > 0
        assert row["median_busy"] > 0
