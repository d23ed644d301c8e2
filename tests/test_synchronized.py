"""Synchronized Pipers: inputs of (data, start, end) units read as one synchronization group."""

from __future__ import annotations

import pytest

from numap import NuMap
from papyflow import Piper, PiperError, Plumber, WorkerError
from papyflow.dataflow.units import SyncedInput, Unit, synchronize
from tests.pipeline_helpers import describe_step, label_with_client

IMAGES = [Unit(f"img{i}", i, i) for i in range(6)]
CLIENTS = [Unit("c0", 0, 2), Unit("c1", 3, 5)]


def test_synchronize_follows_the_finest_input_and_keeps_the_coarse_one():
    steps = list(synchronize([IMAGES, CLIENTS]))
    assert [(s.start, s.end) for s in steps] == [(i, i) for i in range(6)]
    assert [s.inbox[1].data for s in steps] == ["c0"] * 3 + ["c1"] * 3
    assert [s.inbox[1].data_same_as_previous for s in steps] == [False, True, True,
                                                                 False, True, True]
    assert all(not s.inbox[0].data_same_as_previous for s in steps)
    assert steps[4].inbox[1] == SyncedInput("c1", 3, 5, True)


@pytest.mark.parametrize(("a", "b", "mixed"), [
    ([(0, 2), (3, 4)], [(0, 4)], [(0, 2), (3, 4)]),
    ([(0, 2), (3, 4)], [(0, 1), (2, 3), (4, 4)], [(0, 1), (2, 2), (3, 3), (4, 4)]),
])
def test_steps_are_the_mixed_data_indices(a, b, mixed):
    steps = synchronize([[Unit("a", *r) for r in a], [Unit("b", *r) for r in b]])
    assert [(s.start, s.end) for s in steps] == mixed


def test_synchronize_is_lazy_on_endless_streams():
    import itertools

    fine = (Unit(i, i, i) for i in itertools.count())
    coarse = (Unit(i, 10 * i, 10 * i + 9) for i in itertools.count())
    steps = synchronize([fine, coarse])
    first = list(itertools.islice(steps, 25))
    assert [s.inbox[1].data for s in first] == [0] * 10 + [1] * 10 + [2] * 5


@pytest.mark.parametrize(("streams", "message"), [
    ([[Unit("a", 0, 1), Unit("a", 3, 4)], [Unit("b", 0, 4)]], "a gap at data index 2"),
    ([[Unit("a", 0, 2), Unit("a", 2, 4)], [Unit("b", 0, 4)]], "an overlap at data index 3"),
    ([[Unit("a", 0, 1)], [Unit("b", 0, 4)]], "input 0 ended at data index 1 but input 1 goes"),
    ([[Unit("a", 0, 4)], [Unit("b", 0, 1)]], "input 1 ended at data index 1 but input 0"),
    ([[Unit("a", 0, 1)], [Unit("b", 0, 1), Unit("b", 2, 2)]], "input 1 goes on with 2..2"),
    ([[("a", 2, 1)]], "0 <= start <= end"),
    ([["not a unit"]], "expected a (data, start, end) unit"),
])
def test_broken_streams_are_named(streams, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        list(synchronize(streams))


def test_a_failure_without_a_range_is_handed_on():
    failure = PiperError("upstream")
    steps = list(synchronize([[Unit(0, 0, 0), failure, Unit(1, 1, 1)], [Unit("c", 0, 1)]]))
    assert steps[1] is failure and len(steps) == 3


def _pipeline(parallel):
    plumber = Plumber()
    step = Piper(describe_step, parallel=parallel, synchronized=True, name="step")
    plumber.add_piper(step)
    return plumber, step


@pytest.mark.parametrize("worker_type", [None, "thread", "process"])
def test_a_synchronized_piper_gets_one_inbox_per_step(worker_type):
    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    step = Piper(describe_step, parallel=numap, synchronized=True, name="step")
    step.connect([IMAGES, CLIENTS])
    step.start()
    out = list(step)
    step.stop()
    assert out == [Unit(((f"img{i}", i, i, False),
                         ("c0" if i < 3 else "c1", 0 if i < 3 else 3, 2 if i < 3 else 5,
                          i not in (0, 3))), i, i) for i in range(6)]


def test_units_flow_through_a_plumber_and_failures_keep_their_range():
    with NuMap(worker_type="thread", worker_num=2) as numap:
        plumber = Plumber()
        images = Piper(lambda inbox: inbox[0], name="images")
        clients = Piper(lambda inbox: inbox[0], name="clients", branch=1)
        label = Piper(label_with_client, parallel=numap, synchronized=True, name="label")
        # a second synchronized Piper reads the first one's units
        again = Piper(describe_step, synchronized=True, name="again", track=True)
        plumber.add_pipe((images, label, again))
        plumber.add_pipe((clients, label))
        plumber.start([IMAGES, CLIENTS])
        plumber.run()
        plumber.wait(timeout=60)
        out = dict(again.tracked[0])
        stats = plumber.stats["pipers"]
        plumber.stop()
    assert out[0] == (("c0:img0", 0, 0, False),)
    assert out[5] == (("c1:img5", 5, 5, False),)
    failed = out[3]
    assert isinstance(failed, PiperError) and isinstance(failed.args[0], WorkerError)
    assert "bad image" in failed.args[0].traceback
    assert stats[label]["errors"] == 1 and stats[label]["results"] == 6


def test_synchronized_needs_consume_one_and_skips_the_rate_rule():
    with pytest.raises(PiperError, match="consume must be 1"):
        Piper(describe_step, synchronized=True, consume=2)
    with pytest.raises(PiperError, match="produce must be 1"):
        Piper(describe_step, synchronized=True, produce=3)
    fast = Piper(describe_step, produce=1, name="fast")
    slow = Piper(describe_step, synchronized=True, spawn=1, name="slow")
    fast.connect([[(x,) for x in range(3)]])
    slow.connect([fast, CLIENTS])  # no produce x spawn check: the rates differ by design


def test_a_saved_pipeline_keeps_synchronized(tmp_path):
    plumber = Plumber()
    plumber.add_piper(Piper(describe_step, synchronized=True, name="step"))
    path = tmp_path / "p.py"
    plumber.save(str(path))
    assert "synchronized=True" in path.read_text()
    loaded = Plumber()
    loaded.load(str(path))
    (piper,) = list(loaded.postorder())
    assert piper.synchronized


def test_the_example_reads_two_rates_as_one_group():
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "pipeline_synchronized.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, check=False,
                          timeout=90)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["second  0: session 'walk' starts", "second  6: session 'run' starts",
                         "second 13: run 35 beats above rest",
                         "second 14: session 'rest' starts"]
    assert any(line.split()[:3] == ["sessions", "3", "0"] for line in lines)
    assert any(line.split()[:3] == ["relative", "18", "0"] for line in lines)
