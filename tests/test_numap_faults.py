"""A worker process that dies is detected, its item fails clearly, the others are run again."""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
import time

import psutil
import pytest

from numap import BrokenPoolError, NuMap, WorkerLostError
from tests.helpers import always_exit, exit_on, kill_on, segfault_on, sleepy


def _collect(nm, n):
    out = []
    for _ in range(n):
        try:
            out.append(nm.next(timeout=30))
        except WorkerLostError as exc:
            out.append(exc)
    return out


@pytest.mark.parametrize("func, expected", [
    (exit_on, "exited with code 3"),
    (kill_on, "was killed by SIGKILL"),
    (segfault_on, "was killed by SIGSEGV"),
])
def test_the_item_that_kills_its_worker_fails_and_the_rest_goes_on(func, expected):
    nm = NuMap(func, range(40), worker_num=2)
    out = _collect(nm, 40)
    with pytest.raises(StopIteration):
        nm.next(timeout=30)
    nm.stop()
    assert [x for i, x in enumerate(out) if i != 5] == [i for i in range(40) if i != 5]
    error = out[5]
    assert isinstance(error, WorkerLostError) and isinstance(error, RuntimeError)
    assert expected in str(error) and "item 5 of task 0" in str(error)
    assert error.index == 5 and error.task == 0


def test_a_death_inside_a_large_batch_reruns_its_other_items():
    # Cheap items grow batches to hundreds of items; the killer sits deep inside one.
    nm = NuMap(exit_on, range(20_000), kwargs={"bad": 15_000}, worker_num=2)
    out = _collect(nm, 20_000)
    nm.stop()
    assert isinstance(out[15_000], WorkerLostError)
    assert out[:15_000] == list(range(15_000))
    assert out[15_001:] == list(range(15_001, 20_000))


def test_a_worker_killed_from_outside_is_replaced():
    nm = NuMap(sleepy, range(30), kwargs={"seconds": 0.05}, worker_num=2)
    assert nm.next(timeout=30) == 0
    workers = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    out = _collect(nm, 29)
    nm.stop()
    lost = [x for x in out if isinstance(x, WorkerLostError)]
    assert len(lost) <= 1  # the item it was running, if any
    assert [x for x in out if not isinstance(x, WorkerLostError)] == [
        i for i in range(1, 30) if not lost or i != lost[0].index]


@pytest.mark.timeout(60)
def test_the_thread_that_reads_results_watches_the_pipes_anew_only_when_a_worker_changes(
        monkeypatch):
    # It made a selector of every worker's pipes at each message (5 µs with 2
    # workers, 45 µs with 32); it keeps one until a worker is lost or replaced, and
    # then watches the new worker's pipes (or its results would never be read).
    import select

    made = []
    real_poll = select.poll

    def counting_poll():
        made.append(threading.current_thread().name)
        return real_poll()

    monkeypatch.setattr(select, "poll", counting_poll)
    nm = NuMap(sleepy, range(60), kwargs={"seconds": 0.01}, worker_num=2, stride=2)
    assert nm.next(timeout=30) == 0
    workers = [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]
    os.kill(workers[0].pid, signal.SIGKILL)
    out = _collect(nm, 59)
    nm.stop()
    lost = [x for x in out if isinstance(x, WorkerLostError)]
    assert [x for x in out if not isinstance(x, WorkerLostError)] == [
        i for i in range(1, 60) if not lost or i != lost[0].index]
    made_by_getter = [name for name in made if name.endswith("-getter")]
    assert 2 <= len(made_by_getter) <= 4  # at the start, and after the loss


def test_a_pool_whose_workers_always_die_breaks_instead_of_hanging():
    nm = NuMap(always_exit, range(1000), worker_num=2)
    errors = set()
    while True:
        try:
            nm.next(timeout=30)
        except StopIteration:
            break
        except (WorkerLostError, BrokenPoolError) as exc:
            errors.add(type(exc))
            if isinstance(exc, BrokenPoolError):
                break
    nm.stop()
    assert BrokenPoolError in errors


@pytest.mark.timeout(60)
def test_stop_while_a_lost_worker_is_being_reported(monkeypatch):
    # The getter reports the worker that died (held here just as it begins);
    # meanwhile stop lists the lanes and reaps their processes. The getter then
    # closed that worker's process object under stop's feet, and stop failed
    # with "process object is closed".
    from numap._scheduler import Scheduler
    from numap.backends import process

    losing, listed, reported = threading.Event(), threading.Event(), threading.Event()
    readable, reap, lost = process._readable, process._reap, Scheduler.lost

    def held_readable(channel):  # first called by the getter's _lost
        if not losing.is_set():
            losing.set()
            listed.wait()
        return readable(channel)

    def reap_once_reported(processes):  # stop has listed the lanes
        listed.set()
        reported.wait()
        reap(processes)

    def lost_and_told(self, lane, loss):
        lost(self, lane, loss)
        reported.set()

    monkeypatch.setattr(process, "_readable", held_readable)
    monkeypatch.setattr(process, "_reap", reap_once_reported)
    monkeypatch.setattr(Scheduler, "lost", lost_and_told)
    nm = NuMap(always_exit, range(10), worker_num=1)
    assert losing.wait(30)
    nm.stop()
    assert reported.is_set()


def test_chained_tasks_survive_a_worker_death():
    nm = NuMap(worker_num=2, stride=16)
    first = nm.add_task(exit_on, range(100), kwargs={"bad": 50})
    nm.add_task(str, first)
    nm.start()
    out = []
    second = nm.get_task(1)
    for _ in range(100):
        try:
            out.append(next(second))
        except WorkerLostError:
            out.append(None)
    nm.stop()
    assert out == [None if i == 50 else str(i) for i in range(100)]


def _own_outbox() -> int:
    """In a worker process: the descriptor its results go back through."""
    frame = sys._getframe()
    while frame.f_code.co_name != "_worker_main":
        frame = frame.f_back
    return frame.f_locals["outbox"].fd


MALFORMED = {
    "no parts": struct.pack("<IQ", 0, 5) + b"12345",
    "a short header": struct.pack("<IQ", 1, 3) + b"abc",
    "an unknown kind": struct.pack("<IQ", 1, 22) + struct.pack("<BBIQd", 99, 0, 0, 0, 0.0),
    "an impossible length": struct.pack("<IQ", 1, 1 << 62),
}


def write_malformed(x, what=""):
    if x == 2:
        os.write(_own_outbox(), MALFORMED[what])
        time.sleep(60)  # it would answer properly later: the parent must not wait for that
    return x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", MALFORMED)
def test_a_malformed_message_from_a_worker_fails_its_item_instead_of_hanging(what):
    nm = NuMap(write_malformed, range(6), kwargs={"what": what}, worker_num=1, stride=1)
    out = _collect(nm, 6)
    nm.stop()
    assert out[:2] + out[3:] == [0, 1, 3, 4, 5]
    assert isinstance(out[2], WorkerLostError) and "malformed message" in str(out[2])
    assert out[2].index == 2


def break_reading(x):
    if x == 0:  # from now on this worker cannot read a batch (as if out of memory)
        from numap import _wire

        def recv(self):
            raise MemoryError("no room for the next batch")

        _wire.Channel.recv = recv
    return x


@pytest.mark.timeout(60)
def test_a_worker_that_cannot_read_its_inbox_any_more_is_lost_instead_of_hanging():
    nm = NuMap(break_reading, range(6), worker_num=1, stride=1)
    out = _collect(nm, 6)
    nm.stop()
    lost = [x for x in out if isinstance(x, WorkerLostError)]
    assert len(lost) <= 1  # the item it held when it left, if any
    assert all("exited with code 1" in str(x) for x in lost)
    assert [x for x in out if not isinstance(x, WorkerLostError)] == [
        i for i in range(6) if not lost or i != lost[0].index]
