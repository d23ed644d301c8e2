"""NuMap's arguments: defaults, validation and the rules of its lifecycle."""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import threading
import time
from collections import deque
from typing import Any

import pytest

from numap import NuMap
from tests.helpers import double


def test_defaults():
    nm = NuMap()
    assert nm.worker_type == "process"
    assert nm.worker_num == len(os.sched_getaffinity(0))
    assert nm.worker_remote == ()
    assert re.fullmatch(r"numap_\d+", nm.name) and nm.name == f"numap_{id(nm)}"
    assert nm.ordered is True and nm.skip is False
    assert nm.stride >= 1 and nm.buffer >= nm.stride
    assert not nm.started


@pytest.mark.parametrize("kwargs, message", [
    ({"func": double}, "iterable is missing"),
    ({"iterable": [1]}, "func is missing"),
    ({"worker_type": "fiber"}, "worker_type"),
    ({"worker_num": 0}, "worker_num"),
    ({"worker_num": -2}, "worker_num"),
    ({"stride": 0}, "stride"),
    ({"buffer": 0}, "buffer"),
    ({"stride": 4, "buffer": 2}, r"buffer \(2\) must not be smaller than stride \(4\)"),
    ({"worker_remote": [("localhost",)]}, "worker_remote"),
    ({"worker_remote": [("localhost:99999", 2)]}, "worker_remote"),
    ({"worker_remote": [("localhost", 2)], "worker_type": "thread"}, "worker_remote"),
])
def test_bad_values_raise_value_error_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NuMap(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"worker_num": "2"}, "worker_num"),
    ({"worker_num": True}, "worker_num"),
    ({"stride": 1.5}, "stride"),
    ({"buffer": "8"}, "buffer"),
    ({"ordered": 1}, "ordered"),
    ({"skip": "no"}, "skip"),
    ({"name": 3}, "name"),
    ({"worker_num": 0, "worker_remote": [("127.0.0.1:5555", 1)], "remote_auth": 123},
     "remote_auth"),
])
def test_bad_types_raise_type_error_naming_the_argument(kwargs, message):
    with pytest.raises(TypeError, match=message):
        NuMap(**kwargs)


def test_add_task_checks_its_arguments():
    nm = NuMap(worker_type="thread", worker_num=1)
    with pytest.raises(TypeError, match="func must be callable"):
        nm.add_task(42, [1])
    with pytest.raises(TypeError, match="iterable must be iterable"):
        nm.add_task(double, 42)
    with pytest.raises(TypeError, match="args must be a tuple"):
        nm.add_task(double, [1], args=5)
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        nm.add_task(double, [1], kwargs=[1])
    with pytest.raises(ValueError, match="timeout must not be negative"):
        nm.add_task(double, [1], timeout=-1)
    with pytest.raises(TypeError, match="timeout must be a number"):
        nm.add_task(double, [1], timeout="1")


def test_task_changes_after_start_raise_runtime_error():
    with NuMap(double, [1, 2], worker_type="thread", worker_num=1) as nm:
        with pytest.raises(RuntimeError, match="cannot add a task after start"):
            nm.add_task(double, [3])
        with pytest.raises(RuntimeError, match="cannot pop a task after start"):
            nm.pop_task(1)
        assert list(nm) == [2, 4]


def test_next_before_start_raises_runtime_error():
    nm = NuMap(worker_type="thread", worker_num=1)
    task = nm.add_task(double, [1])
    with pytest.raises(RuntimeError, match=r"next\(\) before start"):
        nm.next()
    with pytest.raises(RuntimeError, match=r"next\(\) before start"):
        next(task)


def test_a_numap_without_tasks_says_so_when_iterated():
    nm = NuMap(worker_type="thread", worker_num=1)
    with pytest.raises(RuntimeError, match="there is no task"):
        iter(nm)
    with pytest.raises(RuntimeError, match="there is no task"):
        next(nm)  # not an IndexError


def test_start_needs_a_task_and_valid_stages():
    nm = NuMap(worker_type="thread", worker_num=1)
    with pytest.raises(RuntimeError, match="at least one task"):
        nm.start()
    nm.add_task(double, [1])
    with pytest.raises(ValueError, match="stages"):
        nm.start(stages=(3,))
    with pytest.raises(RuntimeError, match="stage 2 needs stage 1"):
        nm.start(stages=(2,))


def test_pop_task():
    nm = NuMap(worker_type="thread", worker_num=1)
    for i in range(3):
        nm.add_task(double, [i])
    nm.pop_task(1)
    with pytest.raises(ValueError, match="only 2 tasks"):
        nm.pop_task(3)
    nm.pop_task(True)
    with pytest.raises(RuntimeError, match="at least one task"):
        nm.start()
    nm.add_task(double, [5])
    nm.start()
    assert list(nm) == [10]
    nm.stop()


def test_get_task_rejects_unknown_tasks():
    nm = NuMap(worker_type="thread", worker_num=1)
    nm.add_task(double, [1])
    with pytest.raises(ValueError, match="no task 1"):
        nm.get_task(1)
    with pytest.raises(TypeError, match="task must be an int"):
        nm.get_task("0")
    with pytest.raises(ValueError, match="was not added with track=True"):
        nm.get_tracked(0)


def test_a_stopped_numap_starts_again_only_with_new_tasks(worker_type):
    nm = NuMap(double, [1, 2], worker_type=worker_type, worker_num=1)
    assert nm.next(timeout=10) == 2
    nm.stop()
    assert nm.stopped
    with pytest.raises(RuntimeError, match="starts again only after"):
        nm.start()
    with pytest.raises(RuntimeError, match=r"pop_task\(True\) first"):
        nm.add_task(double, [3])
    nm.pop_task(True)
    assert not nm.started and not nm.stopped
    nm.add_task(double, [5, 6])
    nm.start()
    assert list(nm) == [10, 12]
    nm.stop()


def test_repr_names_the_numap():
    nm = NuMap(worker_type="thread", worker_num=2, name="mine")
    assert "'mine'" in repr(nm) and "thread x2" in repr(nm) and "new" in repr(nm)


def test_resize_follows_an_automatic_stride_and_keeps_a_given_one():
    automatic = NuMap(worker_type="thread", worker_num=2)
    automatic.resize(5)
    assert automatic.worker_num == 5 and automatic.stride == 5 * 4096
    assert automatic.buffer == automatic.stride  # automatic buffer: stride x (tasks + 1)
    given = NuMap(worker_type="thread", worker_num=2, stride=10, buffer=40)
    given.resize(3)
    assert (given.worker_num, given.stride, given.buffer) == (3, 10, 40)
    bounded = NuMap(worker_type="thread", worker_num=1, buffer=5000)
    bounded.resize(4)
    assert bounded.stride == 5000  # an automatic stride stays within a given buffer
    assert bounded.settings["stride"] is None  # still automatic when saved


def test_resize_is_refused_after_start_and_checks_its_argument():
    with NuMap(abs, [-1, -2], worker_type="thread", worker_num=2) as started:
        with pytest.raises(RuntimeError, match="cannot resize after start"):
            started.resize(4)
        assert started.worker_num == 2
        assert list(started) == [1, 2]
    with pytest.raises(ValueError, match="worker_num"):
        NuMap(worker_type="thread").resize(0)
    with pytest.raises(TypeError, match="worker_num"):
        NuMap(worker_type="thread").resize("2")


def test_a_given_buffer_bounds_an_automatic_stride():
    # Only the buffer is given: the automatic stride (4096 per worker) fits in it, as it
    # does after resize(), instead of a ValueError about a stride nobody gave.
    nm = NuMap(worker_type="thread", worker_num=2, buffer=100)
    assert (nm.stride, nm.buffer) == (100, 100)
    assert nm.settings["stride"] is None
    with NuMap(double, range(500), worker_type="thread", worker_num=2, buffer=10) as small:
        assert list(small) == [2 * x for x in range(500)]


@pytest.mark.timeout(60)
def test_a_bad_timeout_of_next_names_it_and_loses_no_result():
    with NuMap(double, range(3), worker_type="thread", worker_num=1) as nm:
        with pytest.raises(TypeError, match="next: timeout must be a number"):
            nm.next(timeout="1")
        with pytest.raises(ValueError, match="next: timeout must not be negative"):
            nm.next(timeout=-1)
        with pytest.raises(TypeError, match="get_task: timeout must be a number"):
            nm.get_task(0, timeout="1")
        assert list(nm) == [0, 2, 4]  # the task's stream is still whole


def test_an_exception_while_waiting_for_a_chunk_does_not_end_the_stream(monkeypatch):
    # Ctrl-C (or any error) while next() waits must not end the task for good.
    with NuMap(double, range(3), worker_type="thread", worker_num=1) as nm:
        real = nm._next_chunk
        calls = []

        def interrupted(*args):
            if not calls:
                calls.append(1)
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(nm, "_next_chunk", interrupted)
        with pytest.raises(KeyboardInterrupt):
            nm.next()
        assert list(nm) == [0, 2, 4]


def _interrupt_on(code_name: str, line_text: str) -> Any:
    """A trace function that raises KeyboardInterrupt once, as a Ctrl-C would, when
    the function ``code_name`` of numap is about to run the line holding ``line_text``."""
    fired = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and not fired and line_text in linecache.getline(
                frame.f_code.co_filename, frame.f_lineno):
            fired.append(1)
            raise KeyboardInterrupt
        return local

    def calls(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_name == code_name and "numap" in frame.f_code.co_filename:
            return local
        return None

    return calls


def test_a_ctrl_c_as_a_chunk_is_asked_for_does_not_end_the_stream():
    with NuMap(double, range(4), worker_type="thread", worker_num=1) as nm:
        assert nm.next() == 0
        sys.settrace(_interrupt_on("__next__", "numap = self._numap"))
        try:
            with pytest.raises(KeyboardInterrupt):
                nm.next()
        finally:
            sys.settrace(None)
        assert list(nm) == [2, 4, 6]  # before, the stream ended here: []


class _TakenThenInterrupted(deque):
    """A task's ready chunks, whose first ``popleft`` is interrupted as it returns."""

    interrupted = False

    def popleft(self) -> Any:
        chunk = super().popleft()
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt  # a Ctrl-C handled as the call returns
        return chunk


def test_a_ctrl_c_as_a_chunk_is_taken_loses_no_result():
    with NuMap(double, range(6), worker_type="thread", worker_num=1, stride=1) as nm:
        assert nm.next() == 0
        state = nm._tasks[0]
        deadline = time.monotonic() + 20
        while not state.ready and time.monotonic() < deadline:  # a chunk waits to be taken
            time.sleep(0.01)
        state.ready = _TakenThenInterrupted(state.ready)
        with pytest.raises(KeyboardInterrupt):
            nm.next()
        assert list(nm) == [2, 4, 6, 8, 10]  # before, the interrupted chunk was lost


def _interrupt_at_call(code_name: str, file_part: str) -> Any:
    """A trace function that raises KeyboardInterrupt once as the function ``code_name``
    of a numap file is entered: where a Ctrl-C lands at a function's first step."""
    fired = []

    def calls(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if not fired and event == "call" and code.co_name == code_name and \
                file_part in code.co_filename:
            fired.append(1)
            raise KeyboardInterrupt
        return None

    return calls


def _results_after(nm: NuMap, trace: Any, call: Any) -> list[Any]:
    sys.settrace(trace)
    try:
        with contextlib.suppress(KeyboardInterrupt, TimeoutError):
            call()
    finally:
        sys.settrace(None)
    return [nm.next(timeout=20) for _ in range(3)]


def test_a_ctrl_c_as_a_taken_chunk_returns_loses_no_result():
    with NuMap(double, range(6), worker_type="thread", worker_num=1, stride=1) as nm:
        assert nm.next() == 0
        deadline = time.monotonic() + 20
        while not nm._tasks[0].ready and time.monotonic() < deadline:
            time.sleep(0.01)
        # The chunk is taken and counted; the lock's exit as it returns is interrupted.
        after = _results_after(nm, _interrupt_on("next_chunk", "return chunk"), nm.next)
        assert after + list(nm) == [2, 4, 6, 8, 10]


def test_a_ctrl_c_at_the_first_step_of_the_streams_source_ends_nothing_for_next():
    with NuMap(double, range(6), worker_type="thread", worker_num=1) as nm:
        assert nm.next() == 0
        after = _results_after(nm, _interrupt_at_call("__next__", "numap/_tasks.py"), nm.next)
        assert after + [nm.next(timeout=20), nm.next(timeout=20)] == [2, 4, 6, 8, 10]
        with pytest.raises(StopIteration):
            nm.next()


def test_a_ctrl_c_as_the_chain_takes_an_error_chunk_does_not_end_iteration():
    gate = threading.Event()

    def held(x: int) -> int:
        gate.wait(20)
        return 2 * x

    with NuMap(held, range(4), worker_type="thread", worker_num=1) as nm:
        sys.settrace(_interrupt_at_call("__iter__", "numap/_tasks.py"))
        try:
            # A chunk that raises (a Raise before): TimeoutError; before, the Ctrl-C as
            # the chain took it (KeyboardInterrupt here, never out of the test).
            with pytest.raises((TimeoutError, KeyboardInterrupt)):
                nm.next(timeout=0.05)
        finally:
            sys.settrace(None)
        gate.set()
        assert list(nm) == [0, 2, 4, 6]  # before, the stream had ended: []


def _fails_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("item 2")
    return 10 * x


def test_a_ctrl_c_as_an_error_chunk_is_advanced_keeps_the_items_error():
    fired = []

    def at_raise(frame: Any, event: str, arg: Any) -> Any:  # where a Ctrl-C is handled
        if not fired and event == "call" and frame.f_code.co_name == "__next__" and \
                type(frame.f_locals.get("self")).__name__ == "Raise":
            fired.append(1)
            raise KeyboardInterrupt
        return None

    got: list[Any] = []
    with NuMap(_fails_on_two, range(5), worker_type="thread", worker_num=1, stride=5) as nm:
        got += [nm.next(timeout=20), nm.next(timeout=20)]
        sys.settrace(at_raise)
        try:
            with pytest.raises(KeyboardInterrupt):
                nm.next(timeout=20)
        finally:
            sys.settrace(None)
        with pytest.raises(ValueError, match="item 2"):  # before, the error was spent
            nm.next(timeout=20)
        got += list(nm)
    assert fired and got == [0, 10, 30, 40]
