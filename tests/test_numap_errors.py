"""Failures: an item's exception comes back with its traceback, and the run goes on."""

from __future__ import annotations

import traceback

import pytest

import numap
from numap import NuMap, RemoteTraceback
from tests.helpers import Counting, Raising, double, fail_on, sleepy, slow_on


def _formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_an_exception_is_raised_for_its_item_and_the_run_goes_on(worker_type):
    nm = NuMap(fail_on, range(6), worker_type=worker_type, worker_num=2)
    results = []
    for _ in range(6):
        try:
            results.append(nm.next(timeout=10))
        except ValueError as exc:
            results.append(exc)
    with pytest.raises(StopIteration):
        nm.next()
    nm.stop()
    assert results[:3] == [0, 1, 2] and results[4:] == [4, 5]
    error = results[3]
    assert isinstance(error, ValueError) and str(error) == "bad item 3"
    # The worker's traceback travels with it: the failing function is named.
    assert "fail_on" in _formatted(error)
    if worker_type == "process":
        assert isinstance(error.__cause__, RemoteTraceback)
        assert 'raise ValueError(f"bad item {x}")' in str(error.__cause__)


def test_errors_in_a_big_batch_keep_every_other_result(worker_type):
    bad = set(range(0, 5000, 97))
    nm = NuMap(fail_on, range(5000), kwargs={"bad": bad}, worker_type=worker_type,
               worker_num=2)
    nm_task = iter(nm)
    out = []
    for _ in range(5000):
        try:
            out.append(next(nm_task))
        except ValueError:
            out.append(None)
    nm.stop()
    assert out == [None if i in bad else i for i in range(5000)]


def test_an_unpicklable_exception_still_comes_back(worker_type):
    def boom(x):
        class Local(Exception):
            def __init__(self, a, b):  # cannot be rebuilt from its args
                super().__init__(f"{a}-{b}")
        raise Local(x, x)

    with (NuMap(boom, [1], worker_type=worker_type, worker_num=1) as nm,
          pytest.raises(Exception, match="1-1") as info):
        nm.next(timeout=10)
    assert "boom" in _formatted(info.value)


def test_a_failed_upstream_item_fails_downstream_without_a_call(worker_type):
    calls = []
    nm = NuMap(worker_type=worker_type, worker_num=2)
    first = nm.add_task(fail_on, range(6))
    nm.add_task(double if worker_type == "process" else (lambda x: calls.append(x) or 2 * x),
                first)
    nm.start()
    out = []
    second = nm.get_task(1)
    for _ in range(6):
        try:
            out.append(next(second))
        except ValueError as exc:
            out.append(str(exc))
    nm.stop()
    assert out == [0, 2, 4, "bad item 3", 8, 10]
    if worker_type == "thread":
        assert sorted(calls) == [0, 1, 2, 4, 5]


def test_an_input_that_raises_fails_that_item_and_ends(worker_type):
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    nm = NuMap(double, source(), worker_type=worker_type, worker_num=2)
    assert nm.next(timeout=10) == 2
    assert nm.next(timeout=10) == 4
    with pytest.raises(OSError, match="disk gone"):
        nm.next(timeout=10)
    with pytest.raises(StopIteration):
        nm.next(timeout=10)
    nm.stop()


class _ExitingInput:
    """An iterator (not a generator) that gives two items, then raises SystemExit."""

    def __init__(self):
        self.calls = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.calls += 1
        if self.calls > 2:
            raise SystemExit(3)
        return self.calls


@pytest.mark.timeout(60)
def test_an_input_that_raises_systemexit_fails_that_item_and_ends(worker_type):
    source = _ExitingInput()
    nm = NuMap(double, source, worker_type=worker_type, worker_num=2)
    assert nm.next(timeout=10) == 2
    assert nm.next(timeout=10) == 4
    with pytest.raises(SystemExit):
        nm.next(timeout=10)  # not a wait for ever: the input's thread must not die silently
    with pytest.raises(StopIteration):
        nm.next(timeout=10)
    assert source.calls == 3
    nm.stop()


def test_an_input_that_raises_without_end_is_closed(worker_type):
    limit = numap.INPUT_FAILURES_IN_ROW
    source = Raising()
    nm = NuMap(double, source, worker_type=worker_type, worker_num=2)
    for k in range(limit):
        with pytest.raises(OSError, match="connection lost") as raised:
            nm.next(timeout=10)
    assert raised.value.__notes__ == [
        f"numap: the input raised {limit} times in a row and was closed"]
    with pytest.raises(StopIteration):
        nm.next(timeout=10)
    assert source.calls == limit  # nothing pulled after it was closed
    nm.stop()


def test_an_input_that_raises_now_and_then_goes_on_to_its_end(worker_type):
    # 3 of every 4 calls raise: never 100 in a row, so every item comes.
    nm = NuMap(double, Raising(every=4, end=1000), worker_type=worker_type, worker_num=2)
    values, failures = [], 0
    while True:
        try:
            values.append(nm.next(timeout=10))
        except OSError:
            failures += 1
        except StopIteration:
            break
    nm.stop()
    assert values == [2 * k for k in range(4, 1001, 4)]
    assert failures == 750


def test_an_unpicklable_item_fails_alone():
    items = [1, (i for i in ()), 3]  # nothing pickles a generator
    with NuMap(str, items, worker_type="process", worker_num=1) as nm:
        assert nm.next(timeout=10) == "1"
        with pytest.raises(TypeError, match="item 1 of task 0 cannot be sent"):
            nm.next(timeout=10)
        assert nm.next(timeout=10) == "3"


def test_an_unpicklable_result_fails_alone():
    with NuMap(lambda x: (i for i in ()) if x == 1 else x, range(3),
               worker_type="process", worker_num=1) as nm:
        assert nm.next(timeout=10) == 0
        with pytest.raises(TypeError, match="cannot be sent back"):
            nm.next(timeout=10)
        assert nm.next(timeout=10) == 2


def test_an_unpicklable_function_is_named_at_start():
    gen = (i for i in ())
    nm = NuMap(worker_type="process", worker_num=1)
    nm.add_task(lambda x: gen, [1])
    with pytest.raises(TypeError, match="task 0: its function .* cannot be sent"):
        nm.start()


def test_timeout_without_skip_keeps_the_late_result(worker_type):
    nm = NuMap(slow_on, range(3), kwargs={"slow": 0, "seconds": 0.6},
               worker_type=worker_type, worker_num=2, stride=1)
    with pytest.raises(numap.TimeoutError) as info:
        nm.next(timeout=0.05)
    assert isinstance(info.value, TimeoutError)  # the builtin one
    assert nm.next(timeout=10) == 0  # the late result is still there
    assert [nm.next(timeout=10), nm.next(timeout=10)] == [1, 2]
    nm.stop()


def test_timeout_with_skip_drops_the_late_result(worker_type):
    nm = NuMap(slow_on, range(4), kwargs={"slow": 1, "seconds": 0.6},
               worker_type=worker_type, worker_num=2, stride=1, buffer=4, skip=True)
    assert nm.next(timeout=10) == 0
    with pytest.raises(numap.TimeoutError):
        nm.next(timeout=0.05)
    assert [nm.next(timeout=10), nm.next(timeout=10)] == [2, 3]
    with pytest.raises(StopIteration):
        nm.next(timeout=10)
    nm.stop()


def test_timeout_given_to_add_task_applies_to_iteration(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=1)
    task = nm.add_task(sleepy, [0], kwargs={"seconds": 0.6}, timeout=0.05)
    nm.start()
    with pytest.raises(numap.TimeoutError):
        next(task)
    nm.stop()


def test_block_false_raises_at_once_when_nothing_is_ready():
    nm = NuMap(sleepy, [0], kwargs={"seconds": 5}, worker_type="thread", worker_num=1)
    with pytest.raises(numap.TimeoutError):
        nm.next(block=False)  # does not wait for the 5 s call
    assert not nm.get_task(0)._state.ready
    nm.stop()
    nm.stop()


def test_tasks_read_out_of_step_still_flow_within_bounds(worker_type):
    # Task 0's results fill the buffer while only task 1 is read: task 1 still gets
    # its items, and task 0's input is pulled no further than the buffer allows.
    first, second = Counting(range(1000)), Counting(range(1000))
    nm = NuMap(worker_type=worker_type, worker_num=2, stride=2, buffer=6)
    nm.add_task(double, first)
    nm.add_task(double, second)
    nm.start()
    assert [nm.next(task=1, timeout=30) for _ in range(1000)] == [2 * i for i in range(1000)]
    assert first.taken <= 6 + 2
    assert [nm.next(task=0, timeout=30) for _ in range(1000)] == [2 * i for i in range(1000)]
    nm.stop()


def _stops_on(x, bad=frozenset({3, 2000})):
    if x in bad:
        raise StopIteration  # a bug in the function: map would take it for its own end
    return x


@pytest.mark.timeout(60)
def test_a_function_raising_stopiteration_fails_its_item_and_loses_no_other(worker_type):
    # Small batches first, then large ones: neither loses the items after the culprit.
    nm = NuMap(_stops_on, range(4000), worker_type=worker_type, worker_num=2)
    out = []
    stream = nm.get_task(0, timeout=30)
    while True:
        try:
            out.append(next(stream))
        except StopIteration:
            break
        except RuntimeError as error:
            assert "raised StopIteration" in str(error)
            out.append(None)
    nm.stop()
    assert out == [None if i in (3, 2000) else i for i in range(4000)]
