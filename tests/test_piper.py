"""Piper: linear and parallel evaluation, consume, produce, spawn, timeouts, failures."""

from __future__ import annotations

import pytest

from numap import NuMap
from papyflow import Piper, PiperError, Worker, WorkerError
from papyflow.errors import PiperTimeoutError
from papyflow.piper import Phase
from tests.pipeline_helpers import (
    add,
    double,
    exit_on_four,
    fail_on_three,
    group_sum,
    inc,
    nap,
    pair,
    slow_on_two,
)


def _run(*pipers, data):
    """Connect pipers in a line to data, start them, return the last one's results."""
    first, *rest = pipers
    first.connect([data])
    for upstream, piper in zip(pipers, rest):
        piper.connect([upstream])
    for piper in pipers:
        piper.start(stages=(0, 1) if piper.parallel else (0,))
    for piper in pipers:
        if piper.parallel:
            piper.start(stages=(2,))
    return list(pipers[-1])


@pytest.fixture(params=[None, "thread", "process"])
def parallel(request):
    """False (linear), or a fresh NuMap of each kind, stopped after the test."""
    if request.param is None:
        yield False
        return
    with NuMap(worker_type=request.param, worker_num=2) as nm:
        yield nm


def test_a_function_sequence_or_worker_makes_the_worker():
    assert Piper(inc).worker == Worker(inc)
    assert Piper([inc, double]).worker == Worker((inc, double))
    assert Piper(Piper(double)).worker == Worker(double)


def test_results_in_order(parallel):
    assert _run(Piper(inc, parallel=parallel), Piper(double, parallel=parallel),
                data=range(20)) == [2 * (i + 1) for i in range(20)]


def test_a_failed_item_comes_out_as_piper_error_and_the_piper_goes_on(parallel):
    out = _run(Piper(fail_on_three, parallel=parallel), Piper(inc, parallel=parallel),
               data=range(6))
    assert out[:3] == [1, 2, 3] and out[4:] == [5, 6]
    error = out[3]
    assert isinstance(error, PiperError)
    assert isinstance(error.args[0], WorkerError)
    assert error.args[0].function == "fail_on_three"


def test_debug_raises_instead():
    piper = Piper(fail_on_three, debug=True)
    piper.connect([range(6)])
    piper.start()
    assert [piper.next() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(PiperError):
        piper.next()


def test_consume_groups_consecutive_inboxes(parallel):
    summer = Piper(group_sum, parallel=parallel, consume=3)
    # each group: inbox = ((x1, x2, x3),); the last group is shorter
    assert _run(summer, data=range(1, 8)) == [1 + 2 + 3, 4 + 5 + 6, 7]

def test_produce_upstream_and_consume_downstream_regroup():
    # produce=2 upstream, consume=2 downstream: the rule holds, the pairs regroup
    assert _run(Piper(pair, produce=2), Piper(group_sum, consume=2),
                data=range(4)) == [0, 0, 0, 0]


def test_produce_emits_the_elements_and_repeat_the_result(parallel):
    piper = Piper(pair, parallel=parallel, produce=2)
    assert _run(piper, data=range(3)) == [0, 0, 1, -1, 2, -2]
    repeated = Piper(inc, produce=3, repeat=True)
    assert _run(repeated, data=range(2)) == [1, 1, 1, 2, 2, 2]


def test_produce_needs_results_of_that_length():
    piper = Piper(inc, produce=2)
    piper.connect([range(2)])
    piper.start()
    out = list(piper)
    assert len(out) == 4 and all(isinstance(x, PiperError) for x in out)
    assert "produce=2 needs a sequence" in str(out[0].args[0])


def test_a_result_that_produce_cannot_split_is_counted_where_it_failed(parallel):
    # Each failed result is one failed item of this Piper, emitted produce times.
    piper = Piper(nap, parallel=parallel, produce=2)
    out = _run(piper, data=[(1, 2), 3, (4, 5, 6)])
    assert out[:2] == [1, 2] and all(isinstance(x, PiperError) for x in out[2:])
    assert len(out) == 6
    assert (piper.stats.results, piper.stats.errors) == (3, 2)


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_spawned_copies_take_turns_and_the_order_is_kept(worker_type):
    parallel = NuMap(worker_type=worker_type, worker_num=2)
    splitter = Piper(pair, parallel=parallel, produce=2)
    spawned = Piper(inc, parallel=parallel, spawn=2)
    assert _run(splitter, spawned, data=range(4)) == [1, 1, 2, 0, 3, -1, 4, -2]
    assert len(spawned.task_ids) == 2
    parallel.stop()


def test_the_product_rule_is_checked_at_connect():
    up = Piper(pair, produce=2)
    with pytest.raises(PiperError, match=r"produce x spawn = 2 x 1 = 2.*consume x spawn = 1 x 1"):
        Piper(inc).connect([up])
    Piper(group_sum, consume=2).connect([up])  # 2 x 1 == 2 x 1


def test_timeout_makes_a_piper_timeout_error_and_the_piper_goes_on():
    # stride=1: one item per batch, so no other item waits behind the slow one
    with NuMap(worker_type="thread", worker_num=2, stride=1, buffer=4) as nm:
        piper = Piper(slow_on_two, parallel=nm, timeout=0.2)
        piper.connect([range(5)])
        piper.start()
        out = list(piper)
    assert out[:2] == [0, 1] and out[3:] == [3, 4]
    assert isinstance(out[2], PiperTimeoutError)
    assert isinstance(out[2].args[0], TimeoutError)


def test_a_lost_worker_process_is_a_piper_error():
    with NuMap(worker_type="process", worker_num=2) as nm:
        piper = Piper(exit_on_four, parallel=nm)
        piper.connect([range(8)])
        piper.start()
        out = list(piper)
    assert [x for i, x in enumerate(out) if i != 4] == [0, 1, 2, 3, 5, 6, 7]
    assert isinstance(out[4], PiperError) and "exited with code 1" in str(out[4].args[0])


def test_fan_out_buffers_only_what_the_slowest_reader_needs():
    source = Piper(inc)
    left, right = Piper(double), Piper(inc)
    source.connect([range(1000)])
    left.connect([source])
    right.connect([source])
    for piper in (source, left, right):
        piper.start()
    assert [left.next() for _ in range(100)] == [2 * (i + 1) for i in range(100)]
    assert len(source._fanout) == 100  # right has read none yet
    assert [right.next() for _ in range(60)] == [i + 2 for i in range(60)]
    assert len(source._fanout) == 40
    assert list(right)[-1] == 1001
    assert len(source._fanout) == 900  # left still needs them
    assert len(list(left)) == 900 and len(source._fanout) == 0


def test_fan_in_zips_the_upstream_results():
    a, b = Piper(inc), Piper(double)
    total = Piper(add)
    a.connect([range(5)])
    b.connect([range(5)])
    total.connect([a, b])
    for piper in (a, b, total):
        piper.start()
    assert list(total) == [(i + 1) + 2 * i for i in range(5)]


def test_tracking_keeps_index_to_result(parallel):
    piper = Piper(inc, parallel=parallel, track=True)
    piper.connect([range(5)])
    piper.start()
    assert list(piper) == [1, 2, 3, 4, 5]
    assert piper.tracked == [{i: i + 1 for i in range(5)}]


@pytest.mark.parametrize("linear_run", [False, True])
def test_tracking_is_the_same_linear_or_parallel_spawned_or_failed(parallel, linear_run):
    # One dict per spawned copy, and a failed item as the Worker returned it
    # (its WorkerError), whether the Piper is linear, parallel, or ends a fused run.
    spawn = 1 if linear_run else 2
    head = Piper(inc, parallel=parallel if linear_run else False, spawn=spawn, name="head")
    piper = Piper(fail_on_three, parallel=parallel, track=True, spawn=spawn, name="tracked")
    out = _run(head, piper, data=range(-1, 5))
    assert [isinstance(r, PiperError) for r in out] == [i == 3 for i in range(6)]
    if linear_run:
        kept = piper.tracked[0]
    else:
        assert [sorted(t) for t in piper.tracked] == [[0, 1, 2], [0, 1, 2]]
        kept = {2 * k + copy: r for copy, t in enumerate(piper.tracked) for k, r in t.items()}
    assert [kept[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    assert isinstance(kept[3], WorkerError) and "three" in str(kept[3])


def test_phases_and_their_errors():
    piper = Piper(inc)
    with pytest.raises(PiperError, match="connect it before start"):
        piper.start()
    with pytest.raises(PiperError, match="has not started"):
        piper.next()
    piper.connect([range(3)])
    assert piper.phase is Phase.CONNECTED
    with pytest.raises(PiperError, match="already connected"):
        piper.connect([range(3)])
    piper.start()
    assert piper.started and list(piper) == [1, 2, 3]
    with pytest.raises(PiperError, match="running"):
        piper.disconnect()
    piper.stop()
    with pytest.raises(PiperError, match="was stopped"):
        piper.start()
    piper.disconnect()
    assert piper.phase is Phase.NEW
    piper.connect([range(2)])
    piper.start()
    assert list(piper) == [1, 2]


def test_a_piper_that_feeds_others_is_not_read_directly():
    up, down = Piper(inc), Piper(double)
    up.connect([range(2)])
    down.connect([up])
    up.start()
    with pytest.raises(PiperError, match="feeds other Pipers"):
        up.next()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"parallel": 3}, TypeError, "parallel must be False or a NuMap"),
    ({"consume": 0}, ValueError, "consume must be a positive int"),
    ({"produce": "2"}, ValueError, "produce must be a positive int"),
    ({"spawn": -1}, ValueError, "spawn must be a positive int"),
    ({"timeout": 0}, ValueError, "timeout must be a positive number"),
    ({"name": 5}, TypeError, "name must be a str"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        Piper(inc, **kwargs)


def test_connect_checks_its_inbox():
    with pytest.raises(PiperError, match="sequence of Pipers"):
        Piper(inc).connect(Piper(inc))
    with pytest.raises(PiperError, match="at least one input"):
        Piper(inc).connect([])
    with pytest.raises(PiperError, match="a Piper or an iterable"):
        Piper(inc).connect([42])


def test_pipers_share_a_numap_and_stage_starts():
    with NuMap(worker_type="process", worker_num=2) as nm:
        first = Piper(nap, parallel=nm)
        second = Piper(inc, parallel=nm)
        assert _run(first, second, data=range(50)) == [i + 1 for i in range(50)]
        assert first.task_ids == [0] and second.task_ids == [1]


def _units_upper(inbox):
    return inbox[0].data.upper()


def _label_or_fail(inbox):
    image, client = inbox
    if image.data == "img3":
        raise ValueError("bad image")
    return f"{client.data}:{image.data}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_type", [None, "thread"])
@pytest.mark.parametrize("reader", [None, "thread"])
def test_a_failed_unit_passes_through_the_piper_after_a_synchronized_one(worker_type, reader):
    # A failed step leaves as Unit(PiperError, ...): the Piper reading it passes
    # the failure on (linear or parallel alike) instead of calling its function.
    from papyflow.dataflow.units import Unit

    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    after_map = NuMap(worker_type=reader, worker_num=2) if reader else False
    images = [Unit(f"img{i}", i, i) for i in range(6)]
    clients = [Unit("c0", 0, 2), Unit("c1", 3, 5)]
    label = Piper(_label_or_fail, parallel=numap, synchronized=True, name="label")
    upper = Piper(_units_upper, parallel=after_map, name="upper")
    label.connect([images, clients])
    upper.connect([label])
    try:
        for piper in (label, upper):
            piper.start(stages=(0, 1) if piper.parallel else (0,))
        for piper in (label, upper):
            if piper.parallel:
                piper.start(stages=(2,))
        out = list(upper)
    finally:
        for m in (numap, after_map):
            if m:
                m.stop()
    assert out[:3] == ["C0:IMG0", "C0:IMG1", "C0:IMG2"]
    assert isinstance(out[3], PiperError) and isinstance(out[3].args[0], WorkerError)
    assert "bad image" in str(out[3].args[0])
    assert upper.stats.errors == 0 and label.stats.errors == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("worker_type", [None, "thread"])
def test_a_gap_in_the_units_of_a_synchronized_piper_is_raised_named(worker_type):
    from papyflow.dataflow.units import Unit

    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    step = Piper(add, parallel=numap, synchronized=True, name="step")
    step.connect([[Unit(1, 0, 1), Unit(2, 3, 4)], [Unit(3, 0, 4)]])
    try:
        step.start()
        with pytest.raises(ValueError, match="a gap at data index 2"):
            list(step)
    finally:
        if numap:
            numap.stop()


def test_a_connect_that_fails_leaves_no_reader_on_its_upstream():
    # A reader left behind would keep every result of the upstream Piper for nobody.
    with NuMap(worker_type="thread", worker_num=1) as running:
        running.add_task(abs, [1])
        running.start()
        upstream = Piper(inc, name="upstream")
        upstream.connect([range(3)])
        with pytest.raises(RuntimeError, match="after start"):
            Piper(inc, parallel=running, spawn=1).connect([upstream])
        upstream.start()  # read directly: nothing else reads it
        assert list(upstream) == [1, 2, 3]
