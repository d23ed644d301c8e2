"""What NuMap returns: the same as map, in order or as finished, over one or many tasks."""

from __future__ import annotations

import itertools
import threading
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numap import NuMap
from tests.helpers import Counting, add, double, jitter, sleepy


def test_one_task_equals_map(worker_type):
    data = list(range(1000))
    assert list(NuMap(double, data, worker_type=worker_type, worker_num=2)) == list(
        map(double, data))


def test_lambda_and_closure_work_in_any_backend(worker_type):
    offset = 10
    with NuMap(lambda x: x + offset, range(5), worker_type=worker_type, worker_num=2) as nm:
        assert list(nm) == [10, 11, 12, 13, 14]


def test_args_and_kwargs(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2)
    nm.add_task(add, range(4), args=(10,), kwargs={"z": 100})
    nm.start()
    assert list(nm) == [110, 111, 112, 113]
    nm.stop()


def test_empty_input(worker_type):
    assert list(NuMap(double, [], worker_type=worker_type, worker_num=2)) == []


def test_ordered_false_gives_every_result(worker_type):
    data = range(60)
    with NuMap(jitter, data, worker_type=worker_type, worker_num=3, ordered=False,
               stride=3) as nm:
        out = list(nm)
    assert sorted(out) == list(data)


def test_ordered_results_follow_the_input_despite_jitter(worker_type):
    with NuMap(jitter, range(60), worker_type=worker_type, worker_num=3, stride=3) as nm:
        assert list(nm) == list(range(60))


def test_unordered_results_come_as_they_finish():
    # item 0 sleeps, item 1 does not: with ordered=False item 1 comes first
    nm = NuMap(worker_type="thread", worker_num=2, ordered=False, stride=2)
    nm.add_task(lambda x: sleepy(x, 0.5 if x == 0 else 0), [0, 1])
    nm.start()
    assert nm.next(timeout=5) == 1
    assert nm.next(timeout=5) == 0
    nm.stop()


@pytest.mark.parametrize("stride, buffer", [(1, 1), (1, 3), (2, 2), (5, 7), (64, 64)])
def test_any_stride_and_buffer(worker_type, stride, buffer):
    with NuMap(double, range(50), worker_type=worker_type, worker_num=2,
               stride=stride, buffer=buffer) as nm:
        assert list(nm) == [2 * i for i in range(50)]


def test_many_tasks_share_one_pool(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2, stride=4)
    t0 = nm.add_task(double, range(20))
    t1 = nm.add_task(add, range(20), args=(1,))
    t2 = nm.add_task(str, range(20))
    nm.start()
    out = list(zip(t0, t1, t2))
    nm.stop()
    assert out == [(2 * i, i + 1, str(i)) for i in range(20)]


def test_get_task_and_next_with_task_number(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2)
    nm.add_task(double, range(3))
    nm.add_task(add, range(3), args=(100,))
    nm.start()
    assert [nm.next(task=1) for _ in range(3)] == [100, 101, 102]
    assert list(nm.get_task(0)) == [0, 2, 4]
    with pytest.raises(StopIteration):
        nm.next(task=1)
    nm.stop()


def test_chained_tasks_on_one_numap(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2, stride=8)
    first = nm.add_task(double, range(100))
    second = nm.add_task(add, first, args=(1,))
    third = nm.add_task(str, second)
    nm.start()
    assert list(third) == [str(2 * i + 1) for i in range(100)]
    nm.stop()


def test_chained_tasks_across_numaps():
    with NuMap(worker_type="process", worker_num=2) as up, \
            NuMap(worker_type="thread", worker_num=2) as down:
        first = up.add_task(double, range(50))
        up.start()
        down.add_task(add, first, args=(1,))
        down.start()
        assert list(down) == [2 * i + 1 for i in range(50)]


def test_two_stage_start(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=1)
    nm.add_task(double, [1, 2])
    nm.start(stages=(1,))
    assert nm.started
    got = []
    consumer = threading.Thread(target=lambda: got.extend(nm))
    consumer.start()  # blocks until stage 2
    consumer.join(0.2)
    assert consumer.is_alive() and got == []
    nm.start(stages=(2,))
    consumer.join(10)
    assert got == [2, 4]
    nm.stop()


def test_track_keeps_index_to_result(worker_type):
    nm = NuMap(worker_type=worker_type, worker_num=2)
    nm.add_task(double, range(10), track=True)
    nm.start()
    assert list(nm) == [2 * i for i in range(10)]
    assert nm.get_tracked(0) == {i: 2 * i for i in range(10)}
    assert nm._tasks_tracked[0] is nm.get_tracked(0)
    nm.stop()


def test_track_keeps_exceptions_too():
    nm = NuMap(worker_type="thread", worker_num=1)
    nm.add_task(lambda x: 1 / x, [1, 0, 2], track=True)
    nm.start()
    assert nm.next() == 1.0
    with pytest.raises(ZeroDivisionError):
        nm.next()
    assert nm.next() == 0.5
    tracked = nm.get_tracked()
    assert tracked[0] == 1.0 and isinstance(tracked[1], ZeroDivisionError)
    nm.stop()


def test_input_is_pulled_only_as_the_buffer_frees(worker_type):
    source = Counting(itertools.count())
    nm = NuMap(worker_type=worker_type, worker_num=2, stride=4, buffer=16)
    nm.add_task(double, source)
    nm.start()
    for taken in range(1, 2000):
        assert nm.next(timeout=10) == 2 * (taken - 1)
        assert source.taken <= taken + 16
    nm.stop()


def test_endless_input_with_default_settings_stays_bounded(worker_type):
    source = Counting(itertools.count())
    nm = NuMap(double, source, worker_type=worker_type, worker_num=2)
    for _ in itertools.islice(nm, 50_000):
        pass
    assert source.taken <= 50_000 + nm.buffer
    nm.stop()


def test_iterating_a_numap_iterates_task_zero(worker_type):
    nm = NuMap(double, range(3), worker_type=worker_type, worker_num=1)
    assert next(nm) == 0
    assert list(iter(nm)) == [2, 4]
    nm.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.integers(-1000, 1000), max_size=200),
       stride=st.integers(1, 16), extra=st.integers(0, 16), ordered=st.booleans())
def test_property_same_results_as_map_threads(data, stride, extra, ordered):
    with NuMap(double, data, worker_type="thread", worker_num=3, stride=stride,
               buffer=stride + extra, ordered=ordered) as nm:
        out = list(nm)
    expected = list(map(double, data))
    assert out == expected if ordered else sorted(out) == sorted(expected)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(st.integers(), max_size=300), stride=st.integers(1, 64),
       ordered=st.booleans())
def test_property_same_results_as_map_processes(data, stride, ordered):
    with NuMap(double, data, worker_type="process", worker_num=2, stride=stride,
               ordered=ordered) as nm:
        out = list(nm)
    expected = list(map(double, data))
    assert out == expected if ordered else sorted(out) == sorted(expected)


def test_items_of_a_slow_input_are_sent_as_they_arrive(worker_type):
    # After thousands of cheap items batches are large; an input that then gives
    # one item at a time must still see each result come back before the next.
    import queue

    inbox: queue.Queue = queue.Queue()

    def source():
        while (item := inbox.get()) is not None:
            yield item

    nm = NuMap(double, source(), worker_type=worker_type, worker_num=2)
    for k in range(5000):
        inbox.put(k)
    assert [nm.next(timeout=30) for _ in range(5000)] == [2 * k for k in range(5000)]
    for k in range(5000, 5010):
        inbox.put(k)
        assert nm.next(timeout=30) == 2 * k
    inbox.put(None)
    with pytest.raises(StopIteration):
        nm.next(timeout=30)
    nm.stop()


class _ArrivingFeed(deque):
    """An inlet's feed while its thread goes on pulling: that thread appends outside
    the scheduler's lock, so an item may arrive at any step of the feeder's take.
    Here one arrives at each step: right after an iterator over the feed is made,
    and before each item is popped."""

    def __init__(self, items, arriving):
        super().__init__(items)
        self.arriving = deque(arriving)

    def _arrive(self):
        if self.arriving:
            self.append(self.arriving.popleft())

    def __iter__(self):
        items = super().__iter__()
        self._arrive()
        return items

    def popleft(self):
        self._arrive()
        return super().popleft()


@pytest.mark.timeout(30)
def test_items_that_arrive_while_the_feeder_takes_are_kept_for_the_next_take():
    # A take that read an iterator over the feed failed when an item came in
    # between ("deque mutated during iteration"): the feeding thread died and the
    # whole NuMap could not go on, though its input was fine.
    from numap._inlet import _FAILED, Inlet

    lock = threading.Lock()
    inlet = Inlet([], lock, threading.Condition(lock), "test")
    failed = OSError("the input raised for item 1")
    inlet.feed = _ArrivingFeed([0, _FAILED, 2], arriving=[3, 4, 5])
    inlet._errors[1] = failed
    with lock:
        first = inlet.take(3)
        second = inlet.take(10)
    assert first == ([0, 2], {1: failed})
    assert second == ([3, 4, 5], {})
    assert inlet.taken == 6 and not inlet.feed


_THIRD_ASKED = threading.Event()
_PREPARE_WAITS: list[bool] = []  # whether item 0's pickling saw the third item asked for


class _SlowToPrepare:
    """An item whose pickling (the feeding thread preparing its batch for a worker
    process) waits, for item 0, until the input has been asked for a third item."""

    def __init__(self, k):
        self.k = k

    def __reduce__(self):
        if self.k == 0:
            _PREPARE_WAITS.append(_THIRD_ASKED.wait(10))
        return (_SlowToPrepare, (self.k,))


def _asked_ahead():
    yield _SlowToPrepare(0)
    yield _SlowToPrepare(1)
    _THIRD_ASKED.set()  # the inlet pulls a third item
    yield from map(_SlowToPrepare, range(2, 6))


def _index(item):
    return item.k


@pytest.mark.timeout(60)
def test_the_inlet_is_asked_for_more_as_soon_as_a_batch_is_taken():
    # Two batches of one item are asked for first. The inlet must be asked for the
    # next one while the first is being prepared, not only once the feed has run
    # dry: before, the input stood still while the feeding thread copied and sent
    # the items it had, and the feeding thread then waited on the input.
    _THIRD_ASKED.clear()
    _PREPARE_WAITS.clear()
    nm = NuMap(worker_type="process", worker_num=2)
    results = nm.add_task(_index, _asked_ahead())
    nm.start()
    try:
        assert list(results) == list(range(6))
    finally:
        nm.stop()
    assert _PREPARE_WAITS == [True]


def test_the_automatic_buffer_holds_large_items_by_size(monkeypatch):
    import time

    import numpy as np

    from numap import _map

    monkeypatch.setattr(_map, "_MEMORY", 8 * 2**20)  # 8 MiB of items
    source = Counting(np.full(2**15, float(i)) for i in range(2000))  # 256 KiB each
    with NuMap(lambda a: a + 1, source, worker_num=2) as nm:
        for i in range(10):
            assert nm.next(timeout=30)[0] == i + 1
        time.sleep(1.0)  # the workers go on until the limit
        # In and out, an item is 512 KiB on the wire: 16 of them fill 8 MiB.
        assert source.taken <= 10 + 16 + 8


def _batch_sizes(monkeypatch, source):
    from numap.backends.process import ProcessBackend

    sizes = []
    send = ProcessBackend.send

    def spy(self, lane, batch, prepared):
        sizes.append(batch.size)
        return send(self, lane, batch, prepared)

    with monkeypatch.context() as patch:
        patch.setattr(ProcessBackend, "send", spy)
        out = list(NuMap(lambda s: sleepy(s, s), source, worker_num=2))
    return out, sizes


def test_an_input_of_known_length_gets_guided_batches(monkeypatch):
    # ~2 ms items: the usual batch is ~10 items (20 ms). With a length, batches
    # start several times larger and end with single items, so the workers
    # finish together; without one, they stay near the usual size.
    items = [0.002] * 300
    out, guided = _batch_sizes(monkeypatch, items)
    assert out == items and sum(guided) == 300
    _, plain = _batch_sizes(monkeypatch, (x for x in items))
    assert sum(plain) == 300
    assert max(guided) >= 25 and max(guided) > 2 * max(plain)
    assert guided[-3:] == [1, 1, 1]
