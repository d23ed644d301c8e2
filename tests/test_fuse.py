"""Fusing runs of parallel Pipers that share a NuMap (papyflow._fuse)."""

from __future__ import annotations

import os

import pytest

from numap import NuMap
from papyflow import Piper, PiperError, Plumber, WorkerError
from papyflow._fuse import Fused
from tests.pipeline_helpers import double, fail_on_three, fail_on_trail_three, inc, tag_pid

fail_on_three_after_inc = fail_on_three


def _run(plumber, data):
    plumber.start([data])
    plumber.run()
    plumber.wait(timeout=60)
    out = {p: dict(p.tracked[0]) for p in plumber.stats["pipers_tracked"]}
    stats = plumber.stats["pipers"]
    plumber.stop()
    return out, stats


def test_a_run_of_three_evaluates_each_item_in_one_worker_process():
    with NuMap(worker_type="process", worker_num=2) as numap:
        plumber = Plumber()
        a, b, c = (Piper(tag_pid, parallel=numap, name=n) for n in "abc")
        c.track = True
        plumber.add_pipe((a, b, c))
        out, stats = _run(plumber, range(40))
    assert c._fused == [a, b] and a._fused_into is c and b._fused_into is c
    results = out[c]
    assert sorted(results) == list(range(40))
    for index, trail in results.items():
        assert trail[0] == index
        assert len(trail) == 4 and trail[1] == trail[2] == trail[3] != os.getpid()
    for piper in (a, b, c):
        assert stats[piper]["results"] == 40 and stats[piper]["errors"] == 0


def test_fused_state_and_functions():
    with NuMap(worker_type="thread", worker_num=2) as numap:
        plumber = Plumber()
        a, b, c = (Piper(f, parallel=numap, name=n) for f, n in ((inc, "a"), (double, "b"),
                                                                   (inc, "c")))
        c.track = True
        plumber.add_pipe((a, b, c))
        plumber.start([range(10)])
        assert c._fused == [a, b] and a._fused_into is c and b._fused_into is c
        func = numap._tasks[c.task_ids[0]].spec.func
        assert isinstance(func, Fused) and func.workers == (a.worker, b.worker, c.worker)
        plumber.run()
        plumber.wait(timeout=60)
        assert dict(c.tracked[0]) == {i: (i + 1) * 2 + 1 for i in range(10)}
        plumber.stop()


def test_a_failure_inside_the_run_passes_on_and_is_counted_where_it_arose():
    with NuMap(worker_type="process", worker_num=2) as numap:
        plumber = Plumber()
        a = Piper(tag_pid, parallel=numap, name="a")
        b = Piper(fail_on_trail_three, parallel=numap, name="b")
        c = Piper(tag_pid, parallel=numap, name="c", track=True)
        plumber.add_pipe((a, b, c))
        out, stats = _run(plumber, range(8))
    failed = out[c][3]
    assert isinstance(failed, PiperError) and not hasattr(failed, "stage")
    assert isinstance(failed.args[0], WorkerError)
    assert failed.args[0].function == "fail_on_trail_three"
    assert "three" in failed.args[0].traceback
    assert all(not isinstance(out[c][i], PiperError) for i in range(8) if i != 3)
    assert [stats[p]["errors"] for p in (a, b, c)] == [0, 1, 0]
    assert [stats[p]["results"] for p in (a, b, c)] == [8, 8, 8]


def test_a_failure_in_the_last_piper_is_its_own():
    with NuMap(worker_type="thread", worker_num=2) as numap:
        plumber = Plumber()
        a = Piper(tag_pid, parallel=numap, name="a")
        b = Piper(fail_on_trail_three, parallel=numap, name="b", track=True)
        plumber.add_pipe((a, b))
        out, stats = _run(plumber, range(5))
    assert isinstance(out[b][3], WorkerError)  # tracked as the task returned it, as unfused
    assert [stats[p]["errors"] for p in (a, b)] == [0, 1]


def _two(numap, **upstream):
    a = Piper(inc, parallel=numap, name="a", **upstream)
    b = Piper(double, parallel=numap, name="b", track=True)
    return a, b


@pytest.mark.parametrize("case", ["fanout", "track", "timeout", "debug", "other_numap",
                                  "consume", "produce", "linear"])
def test_runs_that_would_behave_differently_are_not_fused(case):
    with NuMap(worker_type="thread", worker_num=2) as numap, \
            NuMap(worker_type="thread", worker_num=2) as other:
        plumber = Plumber()
        if case == "fanout":
            a, b = _two(numap)
            side = Piper(inc, parallel=numap, name="side")
            plumber.add_pipe((a, b))
            plumber.add_pipe((a, side))
        elif case in ("track", "timeout", "debug"):
            value = {"track": True, "timeout": 30.0, "debug": True}[case]
            a, b = _two(numap, **{case: value})
            plumber.add_pipe((a, b))
        elif case == "other_numap":
            a = Piper(inc, parallel=numap, name="a")
            b = Piper(double, parallel=other, name="b", track=True)
            plumber.add_pipe((a, b))
        elif case == "consume":
            a = Piper(lambda inbox: (inbox[0], 1), parallel=numap, produce=2, name="a")
            b = Piper(lambda inbox: sum(inbox[0]), parallel=numap, consume=2, name="b",
                      track=True)
            plumber.add_pipe((a, b))
        elif case == "produce":
            a = Piper(lambda inbox: (inbox[0], inbox[0]), parallel=numap, produce=2, name="a")
            b = Piper(double, parallel=numap, spawn=2, name="b", track=True)
            plumber.add_pipe((a, b))
        else:
            a = Piper(inc, name="a")
            b = Piper(double, parallel=numap, name="b", track=True)
            plumber.add_pipe((a, b))
        plumber.start([range(6)])
        assert b._fused == [] and a._fused_into is None
        plumber.run()
        plumber.wait(timeout=60)
        plumber.stop()


def test_the_length_of_the_input_reaches_the_fused_task():
    import operator

    from papyflow._fuse import fuse_runs

    numap = NuMap(worker_type="thread", worker_num=2)
    plumber = Plumber()
    a, b = Piper(inc, parallel=numap, name="a"), Piper(double, parallel=numap, name="b")
    plumber.add_pipe((a, b))
    plumber.connect([range(100)])
    source = {p: numap._tasks[p.task_ids[0]].source for p in (a, b)}
    assert operator.length_hint(source[a]) == 100 and operator.length_hint(source[b]) == 0
    fuse_runs(plumber.postorder())
    assert operator.length_hint(source[b]) == 100 and operator.length_hint(source[a]) == 0
    plumber.disconnect()


def test_a_run_of_linear_pipers_is_one_loop_with_the_same_results_and_statistics():
    plumber = Plumber()
    a = Piper(inc, name="a")
    b = Piper(fail_on_three_after_inc, name="b")
    c = Piper(double, name="c", track=True)
    plumber.add_pipe((a, b, c))
    plumber.start([range(6)])
    assert c._fused == [a, b] and a._fused_into is c and b._fused_into is c
    plumber.run()
    plumber.wait(timeout=60)
    out = dict(c.tracked[0])
    stats = plumber.stats["pipers"]
    plumber.stop()
    assert [out[i] for i in (0, 1, 3, 4)] == [2, 4, 8, 10]
    failed = out[2]  # inc(2) == 3 fails in b; c passes the failure on
    assert isinstance(failed, PiperError) and failed.args[0].function == "fail_on_three"
    assert [stats[p]["errors"] for p in (a, b, c)] == [0, 1, 0]
    assert [stats[p]["results"] for p in (a, b, c)] == [6, 6, 6]


def test_a_linear_run_stops_where_a_piper_is_tracked_or_read_twice():
    plumber = Plumber()
    a = Piper(inc, name="a")
    b = Piper(double, name="b", track=True)
    c = Piper(inc, name="c")
    side = Piper(inc, name="side")
    plumber.add_pipe((a, b, c))
    plumber.add_pipe((a, side))
    plumber.start([range(4)])
    assert a._fused_into is None and b._fused == [] and c._fused == []  # a: two readers
    plumber.run()
    plumber.wait(timeout=60)
    assert dict(b.tracked[0]) == {i: (i + 1) * 2 for i in range(4)}
    plumber.stop()


class _Item:
    """An item whose going can be watched."""


def test_fused_called_taking_lets_the_inbox_go_before_the_next_worker():
    # In a worker process the batch hands each inbox over (numap's run_batch with
    # take): the inbox goes once the first Worker is done with it, so a large array
    # of it is freed before the next Worker makes its own.
    import weakref

    from numap._execute import run_batch
    from papyflow import Worker

    seen = []

    def first(inbox):
        seen.append(weakref.ref(inbox[0]))
        return 1

    def then(inbox):
        return seen[-1]() is None  # the item of this inbox is gone already

    def boom(inbox):
        raise StopIteration  # fails its item, not the batch

    fused = Fused([Worker(first), Worker(then)])
    items = [(_Item(),), (_Item(),)]
    values, failures, _ = run_batch(fused, items, take=True)
    assert values == [True, True] and failures == [] and items == [None, None]
    # the same values as called plainly (where the batch keeps its items)
    items = [(_Item(),)]
    assert run_batch(fused, items)[0] == [False] and items[0] is not None
    assert fused(items[0]) is False
    # a Worker that fails: the item is a PiperError of the stage, as called plainly
    values, failures, _ = run_batch(Fused([Worker(boom), Worker(then)]), [(1,), (2,)],
                                    take=True)
    assert failures == [] and all(isinstance(v, PiperError) and v.stage == 0 for v in values)


class _Taking:
    """A function that takes its items out of the batch, failing some."""

    def __call__(self, item):
        raise AssertionError("called plainly")

    def call_taking(self, items, position):
        item = items[position]
        items[position] = None
        if item == 1:
            raise ValueError("one")
        if item == 2:
            raise StopIteration
        return item * 10


def test_a_batch_taken_item_by_item_fails_items_alone():
    from numap._execute import run_batch

    items = [0, 1, 2, 3]
    values, failures, seconds = run_batch(_Taking(), items, take=True)
    assert values == [0, None, None, 30] and items == [None] * 4 and seconds >= 0
    assert [(f.position, type(f.exc)) for f in failures] == [(1, ValueError), (2, RuntimeError)]
    assert "raised StopIteration" in str(failures[1].exc)
