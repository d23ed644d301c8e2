"""Plumber: the runtime state machine, statistics, tracking, and nothing lost on stop."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from numap import NuMap
from papyflow import DaggerError, Piper, PiperError, Plumber, PlumberError, Worker
from tests.helpers import Raising, sigint_as_default
from tests.pipeline_helpers import (
    add,
    double,
    exit_now,
    fail_on_three,
    inc,
    nap,
    pair,
    sleep_for,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _line(parallel=False, track=True):
    p = Plumber()
    a = Piper(inc, parallel=parallel, name="a")
    b = Piper(double, parallel=parallel, name="b", track=track)
    p.add_pipe((a, b))
    return p, a, b


@pytest.mark.parametrize("worker_type", [None, "thread", "process"])
def test_run_to_the_end_and_report(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    p, a, b = _line(parallel=nm)
    p.start([range(50)])
    p.run()
    p.wait(timeout=60)
    stats = p.stats
    assert stats["state"] == "finished"
    assert stats["results"] == {b: 50}
    assert stats["inputs_taken"] == [50]
    assert stats["pipers"][a]["results"] == 50 and stats["pipers"][b]["errors"] == 0
    assert stats["pipers_tracked"][b] == [{i: 2 * (i + 1) for i in range(50)}]
    p.stop()
    assert p.state.value == "stopped"


def test_failed_items_are_counted_and_the_run_goes_on():
    p = Plumber()
    a, b = Piper(fail_on_three, name="a"), Piper(inc, name="b", track=True)
    p.add_pipe((a, b))
    p.start([range(6)])
    p.run()
    p.wait(30)
    tracked = p.stats["pipers_tracked"][b][0]
    assert isinstance(tracked[3], PiperError)
    assert [tracked[i] for i in (0, 1, 2, 4, 5)] == [1, 2, 3, 5, 6]
    assert p.stats["pipers"][a]["errors"] == 1
    p.stop()


def test_fan_out_and_fan_in_through_a_plumber():
    with NuMap(worker_type="process", worker_num=2) as nm:
        p = Plumber()
        src = Piper(inc, parallel=nm, name="src")
        left = Piper(double, parallel=nm, name="left", branch=1)
        right = Piper(inc, parallel=nm, name="right", branch=2)
        sink = Piper(add, name="sink", track=True)
        p.add_pipes([(src, left, sink), (src, right, sink)])
        p.start([range(20)])
        p.run()
        p.wait(60)
        assert p.stats["pipers_tracked"][sink][0] == {
            i: 2 * (i + 1) + (i + 2) for i in range(20)}
        p.stop()


def test_pause_then_stop_loses_nothing_that_was_taken():
    with NuMap(worker_type="thread", worker_num=2, stride=4, buffer=8) as nm:
        p = Plumber()
        a = Piper(nap, parallel=nm, name="a", track=True)
        b = Piper(inc, name="b", track=True)
        p.add_pipe((a, b))
        p.start([itertools.count()])  # endless
        p.run()
        while p.stats["results"][b] < 20:
            pass
        p.pause()
        assert p.state.value == "paused"
        p.stop()
        taken = p.stats["inputs_taken"][0]
        tracked = p.stats["pipers_tracked"][b][0]
        assert taken >= 20
        assert tracked == {i: i + 1 for i in range(taken)}  # every taken item has its result
        assert p.stats["pipers_tracked"][a][0] == {i: i for i in range(taken)}


_STARTED = threading.Event()
_RELEASE = threading.Event()


def _held(inbox):
    """Evaluates its item only once the test lets it (thread workers share these)."""
    _STARTED.set()
    assert _RELEASE.wait(60)
    return inbox[0]


@pytest.mark.parametrize("parallel", [False, True])
def test_pause_returns_at_once_and_the_item_in_flight_is_kept(parallel):
    _STARTED.clear()
    _RELEASE.clear()
    with NuMap(worker_type="thread", worker_num=1, stride=1) as nm:
        p = Plumber()
        a = Piper(_held, parallel=nm if parallel else False, name="a", track=True)
        p.add_piper(a)
        p.start([range(100)])
        p.run()
        assert _STARTED.wait(30)  # the first item is being evaluated, and cannot finish
        pausing = threading.Thread(target=p.pause)
        pausing.start()
        pausing.join(30)  # a pause that waited for the held item would never return
        returned = not pausing.is_alive()
        _RELEASE.set()  # let the item in flight (and a stuck pause) end
        pausing.join(30)
        assert returned and p.state.value == "paused"
        taken = p.stats["inputs_taken"][0]
        if not parallel:  # the Plumber's own thread holds the one item it took
            assert taken == 1
        p.stop()
        # nothing was taken after the pause, and every item taken has its result
        assert p.stats["inputs_taken"][0] == taken
        assert p.stats["pipers_tracked"][a] == [{i: i for i in range(taken)}]


# A paused pipeline whose one item in flight is held, and a stop() that a Ctrl-C
# interrupts while it waits for that item; each script goes on from there.
_CTRL_C_IN_STOP = """
    import os, signal, threading
    from numap import NuMap
    from papyflow import Piper, Plumber, PlumberError

    started, release = threading.Event(), threading.Event()

    def held(inbox):
        started.set()
        assert release.wait(60)
        return inbox[0]

    with NuMap(worker_type="thread", worker_num=1, stride=1) as nm:
        p = Plumber()
        a = Piper(held, parallel=nm, name="a", track=True)
        p.add_piper(a)
        p.start([range(100)])
        p.run()
        assert started.wait(30)
        p.pause()
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            p.stop()  # waits for the held items: the Ctrl-C comes meanwhile
        except KeyboardInterrupt:
            print("interrupted", p.state.value, flush=True)
"""

_STOP_AGAIN = """
        threading.Timer(0.5, release.set).start()
        p.stop()  # again: waits for the items still going through
        taken = p.stats["inputs_taken"][0]
        print("stopped", p.state.value, taken, p.stats["pipers_tracked"][a] == [
            {i: i for i in range(taken)}], flush=True)
"""

_RUN_THEN_STOP_AGAIN = """
        try:
            p.run()  # paused, but its inputs are closed: it would never be finished
            print("ran", p.state.value, flush=True)
        except PlumberError as error:
            print("refused", "call stop() again" in str(error), flush=True)
        release.set()
        p.stop()
        print("stopped", p.state.value, flush=True)
"""


def _after_a_ctrl_c_in_stop(then: str) -> subprocess.CompletedProcess:
    """Run :data:`_CTRL_C_IN_STOP` and ``then`` in a fresh interpreter (SIGINT at its default)."""
    script = textwrap.dedent(_CTRL_C_IN_STOP) + textwrap.indent(textwrap.dedent(then), " " * 4)
    return subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=sigint_as_default)


def test_stop_again_after_a_ctrl_c_while_it_waited_loses_no_taken_item():
    # Python 3.11's Thread.join(), interrupted, took the running pulling thread for
    # ended: the second stop() then stopped the NuMap under the items taken.
    proc = _after_a_ctrl_c_in_stop(_STOP_AGAIN)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0] == "interrupted paused", proc.stdout + proc.stderr
    state, taken, all_kept = lines[1].split()[1:]
    assert (state, all_kept) == ("stopped", "True") and int(taken) >= 1, proc.stdout


def test_run_after_a_ctrl_c_in_stop_is_refused_and_stop_again_ends_the_pipeline():
    # Before, run() took the pipeline back to running; the items drained, it stayed
    # running for ever (never finished), and stop() refused a running pipeline.
    proc = _after_a_ctrl_c_in_stop(_RUN_THEN_STOP_AGAIN)
    assert proc.stdout.split("\n")[:3] == ["interrupted paused", "refused True",
                                           "stopped stopped"], proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr


def _both(inbox):
    return inbox


def _wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("ratio", [1, 2])
def test_stop_brings_inputs_that_meet_level(ratio):
    # Two inputs on NuMaps of their own, each reading ahead as far as its buffer
    # lets it, meet at 'c'. At stop the one behind must take the items that pair
    # with those the other has taken: else those are evaluated, then dropped.
    # With ratio 2, 'a' makes two items of each input item (produce=2) and 'b'
    # one (its 2 spawned tasks make the rule hold): 'b' needs two items per 'a' item.
    with NuMap(worker_type="thread", worker_num=2, buffer=8, stride=2) as slow, \
            NuMap(worker_type="thread", worker_num=2, buffer=256, stride=16) as fast:
        if ratio == 1:
            a = Piper(Worker(nap, (0.002,)), parallel=slow, name="a", branch=1)
        else:
            a = Piper(Worker((nap, pair), ((0.002,), ())), parallel=slow, name="a", branch=1,
                      produce=2)
        b = Piper(inc, parallel=fast, name="b", branch=2, spawn=ratio)
        c = Piper(_both, name="c", consume=ratio, track=True)
        p = Plumber()
        p.add_pipes([(a, c), (b, c)])
        p.start([itertools.count(), itertools.count()])  # endless
        p.run()
        _wait_for(lambda: len(c.tracked[0]) >= 20
                  and p.stats["inputs_taken"][1] > ratio * p.stats["inputs_taken"][0])
        p.pause()
        p.stop()
        taken = p.stats["inputs_taken"]
        assert taken[1] == ratio * taken[0]
        tracked = p.stats["pipers_tracked"][c][0]
        if ratio == 1:
            assert tracked == {i: (i, i + 1) for i in range(taken[0])}
        else:
            assert tracked == {i: ((i, -i), (2 * i + 1, 2 * i + 2)) for i in range(taken[0])}


@pytest.mark.parametrize("delete", ["piper", "pipe"])
def test_a_stopped_pipeline_starts_again_after_a_deletion(delete):
    with NuMap(worker_type="thread", worker_num=2) as nm:
        p = Plumber()
        a = Piper(inc, parallel=nm, name="a")
        b = Piper(double, parallel=nm, name="b", branch=1)
        c = Piper(inc, parallel=nm, name="c", branch=2, track=True)
        p.add_pipes([(a, b), (a, c)])
        p.start([range(3)])
        p.run()
        p.wait(30)
        with pytest.raises(DaggerError, match="while the pipeline runs.*stop it first"):
            p.del_piper(b)
        p.stop()
        if delete == "piper":
            p.del_piper(b)
        else:
            p.del_pipe((a, b))  # b feeds nothing any more: it goes, a stays (it feeds c)
        assert b not in p and not b.connected and a in p
        p.start([range(10, 13)])
        p.run()
        p.wait(30)
        assert p.stats["pipers_tracked"][c] == [{0: 12, 1: 13, 2: 14}]
        p.stop()


def test_pipers_and_pipes_are_added_only_while_the_pipeline_does_not_run():
    with NuMap(worker_type="thread", worker_num=2) as nm:
        p = Plumber()
        a = Piper(inc, parallel=nm, name="a")
        b = Piper(inc, parallel=nm, name="b", branch=1)
        c = Piper(double, parallel=nm, name="c", branch=2)
        p.add_pipes([(a, b), (a, c)])
        release = threading.Event()

        def held():  # keeps the pipeline running (not finished) until released
            yield from range(3)
            release.wait(30)

        p.start([held()])
        # started (not yet running), running, paused: a change would not reach the Pipers
        for step in (lambda: None, p.run, p.pause):
            step()
            with pytest.raises(DaggerError, match=r"cannot add 'd' while the pipeline runs"):
                p.add_pipe((b, Piper(inc, name="d")))
            with pytest.raises(DaggerError, match=r"cannot add the pipe 'b' -> 'c' while"):
                p.add_pipe((b, c))
            assert len(p) == 3 and not p.graph.has_edge(b, c)
            p.add_pipe((a, b))  # nothing new: allowed
        release.set()
        p.stop()
        d = Piper(inc, parallel=nm, name="d", track=True)
        p.add_pipe((b, d))
        p.start([range(3)])
        p.run()
        p.wait(30)
        assert p.stats["pipers_tracked"][d] == [{0: 3, 1: 4, 2: 5}]
        p.stop()


def test_run_again_after_pause():
    with NuMap(worker_type="thread", worker_num=1) as nm:
        p = Plumber()
        a, b = Piper(sleep_for, parallel=nm, name="a"), Piper(inc, name="b")
        p.add_pipe((a, b))
        p.start([[0.005] * 400])  # about 2 s of naps
        p.run()
        p.pause()
        assert p.state.value == "paused" and p.stats["results"][b] < 400
        p.run()
        p.wait(60)
        assert p.stats["results"][b] == 400
        p.stop()


def test_state_rules():
    p = Plumber()
    p.add_pipe((Piper(sleep_for, name="a"),))
    with pytest.raises(PlumberError, match="cannot run a pipeline that is new"):
        p.run()
    with pytest.raises(PlumberError, match="cannot pause a pipeline that is new"):
        p.pause()
    with pytest.raises(PlumberError, match="cannot stop a pipeline that is new"):
        p.stop()
    p.start([[0.3] * 3])
    with pytest.raises(PlumberError, match="cannot start a pipeline that is started"):
        p.start([range(5)])
    with pytest.raises(PlumberError, match="cannot stop a pipeline that is started"):
        p.stop()
    with pytest.raises(PlumberError, match="cannot wait for a pipeline that is started"):
        p.wait(1)
    p.run()
    with pytest.raises(PlumberError, match="cannot stop a pipeline that is running"):
        p.stop()
    p.wait(30)
    p.stop()
    with pytest.raises(PlumberError, match="datas must be a sequence"):
        p.start(iter([range(3)]))
    with pytest.raises(PlumberError, match=r"datas\[0\] must be an iterable"):
        p.start(range(3))


def test_wait_past_its_timeout_raises():
    with NuMap(worker_type="thread", worker_num=1) as nm:
        p = Plumber()
        p.add_pipe((Piper(sleep_for, parallel=nm, name="slow"),))
        p.start([[1.0] * 3])
        p.run()
        with pytest.raises(PlumberError, match="did not finish within 0.2 s"):
            p.wait(0.2)
        p.pause()
        p.stop()


def test_start_again_after_stop_with_new_data():
    with NuMap(worker_type="process", worker_num=2) as nm:
        p, _, b = _line(parallel=nm)
        p.start([range(5)])
        p.run()
        p.wait(30)
        p.stop()
        p.start([range(100, 103)])
        p.run()
        p.wait(30)
        assert p.stats["pipers_tracked"][b] == [{0: 202, 1: 204, 2: 206}]
        p.stop()


def test_logging_through_start_logger(tmp_path):
    log_file = tmp_path / "run.log"
    p = Plumber(logger_options={"log_to_file": True, "log_filename": str(log_file)})
    p.add_pipe((Piper(inc, name="a"),))
    p.start([range(3)])
    p.run()
    p.wait(30)
    p.stop()
    text = log_file.read_text()
    assert "pipeline started" in text and "pipeline finished: 3 results" in text
    for handler in list(logging.getLogger("papyflow").handlers):
        handler.close()
        logging.getLogger("papyflow").removeHandler(handler)


def test_an_input_that_raises_fails_that_item_only():
    def broken():
        yield 1
        yield 2
        raise OSError("disk gone")

    p = Plumber()
    b = Piper(inc, name="b", track=True)
    p.add_pipe((Piper(double, name="a"), b))
    p.start([broken()])
    p.run()
    p.wait(30)
    tracked = p.stats["pipers_tracked"][b][0]
    assert tracked[0] == 3 and tracked[1] == 5
    assert isinstance(tracked[2], PiperError) and "disk gone" in str(tracked[2].args[0])
    p.stop()


def test_wait_reports_a_failed_run_even_after_it_ended():
    p = Plumber()
    p.add_pipe((Piper(fail_on_three, name="a", debug=True),))
    p.start([range(6)])
    p.run()
    p._done.wait(30)  # the run has ended (failed) before wait is called
    with pytest.raises(PlumberError, match="the pipeline failed"):
        p.wait(30)
    p.stop()


@pytest.mark.parametrize("shape", ["one task", "with a timeout", "fused"])
def test_a_numap_that_cannot_go_on_fails_the_run_instead_of_failing_items_without_end(shape):
    # Every worker dies at its first item: after a few lost items the NuMap is
    # broken, and would raise that for every next item there is.
    nm = NuMap(worker_type="process", worker_num=2)
    p = Plumber()
    dies = Piper(exit_now, parallel=nm, name="dies",
                 timeout=30 if shape == "with a timeout" else None)
    p.add_pipe((Piper(inc, parallel=nm, name="first"), dies) if shape == "fused" else (dies,))
    p.start([range(50)])
    p.run()
    with pytest.raises(PlumberError, match="'dies': its NuMap cannot go on") as raised:
        p.wait(60)
    assert isinstance(raised.value.__cause__, PiperError)
    assert "lost in a row" in str(raised.value)
    errors = p.stats["pipers"][dies]["errors"]
    assert 0 < errors < 50  # the items lost before the NuMap gave up, each once
    assert p.stats["pipers"][dies]["results"] == errors
    p.stop()
    assert p.state.value == "stopped"


@pytest.mark.parametrize("parallel", [False, True])
def test_an_input_that_raises_without_end_is_closed_and_fails_the_run(parallel):
    from numap import INPUT_FAILURES_IN_ROW

    nm = NuMap(worker_type="thread", worker_num=2) if parallel else False
    p = Plumber()
    a = Piper(inc, parallel=nm, name="a", track=True)
    p.add_piper(a)
    p.start([Raising()])
    p.run()
    with pytest.raises(PlumberError, match=f"input 0 raised {INPUT_FAILURES_IN_ROW} times in a row"
                       ".*OSError..connection lost") as raised:
        p.wait(30)
    assert isinstance(raised.value.__cause__.__cause__, OSError)
    stats = p.stats
    assert stats["inputs_taken"] == [INPUT_FAILURES_IN_ROW]
    assert stats["input_errors"] == [INPUT_FAILURES_IN_ROW]
    tracked = stats["pipers_tracked"][a][0]
    assert len(tracked) == INPUT_FAILURES_IN_ROW
    assert all(isinstance(r, PiperError) and isinstance(r.args[0], OSError)
               for r in tracked.values())
    p.stop()


def test_an_input_that_raises_now_and_then_goes_on_to_its_end():
    # 3 of every 4 calls raise: never 100 in a row, so every item comes through.
    p = Plumber()
    a = Piper(inc, name="a", track=True)
    p.add_piper(a)
    p.start([Raising(every=4, end=1000)])
    p.run()
    p.wait(30)
    stats = p.stats
    assert stats["inputs_taken"] == [1000] and stats["input_errors"] == [750]
    tracked = stats["pipers_tracked"][a][0]
    assert [tracked[i] for i in range(3, 1000, 4)] == [k + 1 for k in range(4, 1001, 4)]
    assert sum(isinstance(r, PiperError) for r in tracked.values()) == 750
    p.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("upstream", ["linear", "same numap", "other numap"])
def test_a_debug_piper_upstream_of_a_parallel_one_fails_the_run(upstream):
    # The raised PiperError must end the run, not become a failed input item
    # of the parallel Piper downstream (which then ended as if all was well).
    nm = NuMap(worker_type="thread", worker_num=2, stride=1)
    other = NuMap(worker_type="thread", worker_num=2, stride=1)
    up_map = {"linear": False, "same numap": nm, "other numap": other}[upstream]
    a = Piper(fail_on_three, parallel=up_map, debug=True, name="a")
    b = Piper(inc, parallel=nm, name="b", track=True)
    p = Plumber()
    p.add_pipe((a, b))
    p.start([range(8)])
    p.run()
    with pytest.raises(PlumberError, match="three") as raised:
        p.wait(30)
    assert isinstance(raised.value.__cause__, PiperError)
    assert [p.stats["pipers_tracked"][b][0][i] for i in range(3)] == [1, 2, 3]
    p.stop()
    other.stop()


@pytest.mark.timeout(120)
def test_a_numap_that_cannot_go_on_fails_the_run_through_a_parallel_piper_downstream():
    dying = NuMap(worker_type="process", worker_num=2)
    nm = NuMap(worker_type="thread", worker_num=2)
    dies = Piper(exit_now, parallel=dying, name="dies")
    after = Piper(inc, parallel=nm, name="after")
    p = Plumber()
    p.add_pipe((dies, after))
    p.start([range(50)])
    p.run()
    with pytest.raises(PlumberError, match="'dies': its NuMap cannot go on"):
        p.wait(60)
    p.stop()


def _image_label(inbox):
    image, client = inbox
    return f"{client.data}:{image.data}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_type", [None, "thread"])
def test_stop_ends_a_synchronized_piper_whose_inputs_stopped_at_different_indices(worker_type):
    # Stopped mid-way, the images end at index 7 while the client's unit goes on to 9:
    # that is the stop, not a broken input; each image taken has its result.
    from papyflow.dataflow.units import Unit

    reached, go = threading.Event(), threading.Event()

    def images():
        for i in range(1000):
            if i == 7:
                reached.set()
                go.wait(30)
            yield Unit(f"img{i}", i, i)

    clients = (Unit(f"c{c}", 10 * c, 10 * c + 9) for c in range(100))
    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    label = Piper(_image_label, parallel=numap, synchronized=True, name="label", track=True)
    p = Plumber()
    p.add_pipe((Piper(_first, name="images", branch=1), label))
    p.add_pipe((Piper(_first, name="clients", branch=2), label))
    p.start([images(), clients])
    p.run()
    assert reached.wait(30)
    p.pause()
    go.set()
    p.stop()
    assert p.stats["inputs_taken"] == [8, 1]
    assert p.stats["pipers_tracked"][label][0] == {i: f"c0:img{i}" for i in range(8)}
    assert p.state.value == "stopped"


def _first(inbox):
    return inbox[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fused", [True, False])
def test_stats_count_each_result_while_the_pipeline_runs(fused):
    # A slow input: the counts must not wait for a batch of results to move.
    reached, go = threading.Event(), threading.Event()

    def slow():
        for i in range(20):
            if i == 5:
                reached.set()
                go.wait(30)
            yield i

    p = Plumber()
    pipers = [Piper(inc, name=name, track=not fused and name == "b") for name in "abc"]
    p.add_pipe(pipers)
    p.start([slow()])
    p.run()
    assert reached.wait(30)
    running = p.stats  # items 0..4 have gone through; item 5 is being taken
    go.set()
    p.wait(30)
    p.stop()
    assert bool(pipers[2]._fused) is fused
    assert {q.name: s["results"] for q, s in running["pipers"].items()} == dict.fromkeys("abc", 5)
    assert running["results"] == {pipers[2]: 5}
    assert p.stats["results"] == {pipers[2]: 20}


class _Result:
    """A result that can be watched going (a weak reference to it)."""


_made: list = []


def _watched(inbox):
    result = _Result()
    _made.append(weakref.ref(result))
    return result


def _once_the_first_result_is_gone(released):
    yield 0
    deadline = time.monotonic() + 10
    while (not _made or _made[0]() is not None) and time.monotonic() < deadline:
        time.sleep(0.01)
    released.append(bool(_made) and _made[0]() is None)
    yield 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("parallel", [True, False], ids=["on a NuMap", "linear"])
@pytest.mark.parametrize("stages", [1, 2], ids=["one Piper", "two Pipers"])
def test_a_result_is_not_held_while_the_next_is_awaited(stages, parallel):
    # Nothing of the pipeline (the Plumber's count, the Piper's results, the NuMap's
    # feeder and worker threads) keeps a result once it is counted: a large array's
    # memory goes back at once, not when the next result comes (here the next item
    # comes only once the first result is gone). In worker processes the same holds
    # for shared memory: see test_numap_alloc.py.
    _made.clear()
    released: list[bool] = []
    with NuMap(worker_type="thread", worker_num=1, stride=1) as nm:
        pipers = [Piper(_watched if k == stages - 1 else inc, parallel=nm if parallel else False)
                  for k in range(stages)]
        p = Plumber()
        p.add_pipe(tuple(pipers))
        p.start([_once_the_first_result_is_gone(released)])
        p.run()
        p.wait(timeout=30)
        p.stop()
    assert released == [True]
    assert p.stats["pipers"][pipers[-1]]["results"] == 2


def _items_once_the_first_are_gone(released, first):
    for _ in range(first):
        item = _Result()
        _made.append(weakref.ref(item))
        yield item
        del item
    deadline = time.monotonic() + 10
    while any(made() is not None for made in _made) and time.monotonic() < deadline:
        time.sleep(0.01)
    released.append(all(made() is None for made in _made))
    for _ in range(first):
        yield _Result()


def _one(inbox):
    return 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("parallel", [True, False], ids=["on a NuMap", "linear"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
@pytest.mark.parametrize("consume", [1, 2], ids=["one item an inbox", "two items an inbox"])
def test_an_input_item_is_not_held_while_the_next_is_awaited(consume, track, parallel):
    # The inboxes a Piper makes of its inputs keep no item once it is handed on:
    # a large input goes as soon as its result is made, not when the next input
    # comes (here the next inbox's items come only once the first inbox's are gone).
    _made.clear()
    released: list[bool] = []
    with NuMap(worker_type="thread", worker_num=1, stride=1) as nm:
        piper = Piper(_one, parallel=nm if parallel else False, track=track, consume=consume)
        p = Plumber()
        p.add_pipe((piper,))
        p.start([_items_once_the_first_are_gone(released, consume)])
        p.run()
        p.wait(timeout=30)
        p.stop()
    assert released == [True]
    assert p.stats["pipers"][piper]["results"] == 2
    if track:
        assert p.stats["pipers_tracked"][piper][0] == {0: 1, 1: 1}
