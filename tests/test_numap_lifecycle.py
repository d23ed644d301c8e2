"""Stopping: stop(), a with block, garbage collection and Ctrl-C leave no process behind."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from numap import NuMap
from tests.helpers import Counting, double, pid, sigint_as_default, sleepy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]


def _gone(pids, seconds=10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(45)  # stop() waiting for the 600 s calls runs into it
def test_stop_ends_the_workers_even_in_a_long_call():
    nm = NuMap(sleepy, range(10), kwargs={"seconds": 600}, worker_num=2)
    time.sleep(0.3)
    pids = [p.pid for p in _workers()]
    assert len(pids) == 2
    nm.stop()
    assert _gone(pids)
    with pytest.raises(StopIteration):
        nm.next()


def test_stop_twice_is_harmless(worker_type):
    nm = NuMap(double, range(5), worker_type=worker_type, worker_num=1)
    nm.stop()
    nm.stop(forced=True)


def test_with_block_stops_on_exit_and_on_error():
    with NuMap(pid, range(4), worker_num=2) as nm:
        pids = set(nm)
    assert len(pids) >= 1 and _gone(pids)
    with pytest.raises(KeyError), NuMap(pid, range(4), worker_num=2) as nm:
        pids = {nm.next(timeout=10)}
        raise KeyError("boom")
    assert _gone(pids)


def test_garbage_collection_stops_the_workers():
    nm = NuMap(pid, range(100), worker_num=2)
    pids = {nm.next(timeout=10)}
    del nm
    gc.collect()
    assert _gone(pids)


def test_dropping_the_iterator_of_a_finished_run_stops_the_workers():
    pids = set(NuMap(pid, range(50), worker_num=2))
    assert _gone(pids)


def test_stop_with_ends_evaluates_what_was_pulled_and_no_more(worker_type):
    source = Counting(range(10_000))
    seen = []
    nm = NuMap(worker_type=worker_type, worker_num=2, stride=4, buffer=8)
    nm.add_task(double, source)
    nm.start()
    seen.append(nm.next(timeout=10))
    time.sleep(0.1)
    taken = source.taken
    nm.stop(ends=[0])
    assert source.taken == taken <= 1 + 8 + 4
    with pytest.raises(StopIteration):
        nm.next()
    assert seen == [0]


def _run_script(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_default)  # noqa: PLW1509


def _worker_pids(proc: subprocess.Popen) -> list[int]:
    line = proc.stdout.readline()
    assert line.startswith("pids"), line + proc.stderr.read()
    return [int(p) for p in line.split()[1:]]


SCRIPT = """
    import os, sys, time, psutil
    from numap import NuMap

    def work(x):  # defined in __main__: travels by value
        time.sleep(60)
        return x

    nm = NuMap(work, range(100), worker_num=2)
    time.sleep(0.5)
    print("pids", *[p.pid for p in psutil.Process().children()], flush=True)
    nm.next()
"""


def test_ctrl_c_leaves_no_worker_behind():
    proc = _run_script(SCRIPT)
    try:
        pids = _worker_pids(proc)
        assert len(pids) == 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert "KeyboardInterrupt" in err
        assert _gone(pids)
    finally:
        proc.kill()
        proc.communicate()


def test_workers_leave_when_the_parent_is_killed():
    proc = _run_script(SCRIPT)
    try:
        pids = _worker_pids(proc)
        proc.kill()
        proc.communicate()
        assert _gone(pids)
    finally:
        proc.kill()
        proc.communicate()


def test_functions_defined_in_main_work_in_processes():
    proc = _run_script("""
        from numap import NuMap
        def square(x):
            return x * x
        print(list(NuMap(square, range(5), worker_num=2)))
        print(list(NuMap(lambda x: -x, range(3), worker_num=2)))
    """)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split("\n")[:2] == ["[0, 1, 4, 9, 16]", "[0, -1, -2]"]


def test_no_descriptor_or_thread_is_leaked(worker_type):
    import threading

    from numap import WorkerLostError
    from tests.helpers import exit_on

    list(NuMap(double, range(10), worker_type=worker_type, worker_num=2))  # warm up
    gc.collect()
    fds, threads = psutil.Process().num_fds(), threading.active_count()
    for _ in range(5):
        assert list(NuMap(double, range(100), worker_type=worker_type, worker_num=2)) == [
            2 * i for i in range(100)]
    if worker_type == "process":
        with NuMap(exit_on, range(20), worker_num=2) as nm:
            for _ in range(20):
                try:
                    nm.next(timeout=30)
                except WorkerLostError:
                    pass
    gc.collect()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert psutil.Process().num_fds() <= fds
    assert threading.active_count() <= threads


def _register_exit_note(x, folder):
    import atexit

    atexit.register(_note_pid, folder, "worker")
    return os.getpid()


def _note_pid(folder, who):
    with open(os.path.join(folder, f"{who}-{os.getpid()}"), "w") as handle:
        handle.write(who)


def test_a_worker_runs_its_own_exit_handlers_and_not_the_parents(tmp_path):
    import atexit

    atexit.register(_note_pid, str(tmp_path), "parent")
    try:
        nm = NuMap(_register_exit_note, range(4), args=(str(tmp_path),), worker_num=2)
        pids = set(nm)
        nm.stop()
        assert _gone(pids)
    finally:
        atexit.unregister(_note_pid)
    # every worker that registered a handler ran it when it left; none ran the parent's
    assert sorted(os.listdir(tmp_path)) == sorted(f"worker-{p}" for p in pids)


def _with_extra(x, extra):
    return x


@pytest.mark.timeout(60)
@pytest.mark.parametrize("local", [0, 1], ids=["remote", "local-and-remote"])
def test_a_start_that_fails_leaks_no_descriptor(local):
    # The task cannot be sent (dill cannot pickle a generator): start fails before it
    # connects, and whatever the pool opened before that is closed again.
    gc.collect()
    fds = psutil.Process().num_fds()
    for _ in range(3):
        with pytest.raises(TypeError, match="cannot be sent"):
            NuMap(_with_extra, [1], args=((i for i in ()),), worker_num=local,
                  worker_remote=(("127.0.0.1:9", 1),))
    gc.collect()
    assert psutil.Process().num_fds() <= fds


def test_a_numap_started_again_keeps_no_stopped_pool_alive():
    import weakref

    nm = NuMap(worker_type="thread", worker_num=1)
    pools = []
    for _ in range(3):
        nm.add_task(double, range(5))
        nm.start()
        pools.append(weakref.ref(nm._scheduler))
        assert list(nm) == [2 * i for i in range(5)]
        nm.stop()
        nm.pop_task(True)
    gc.collect()
    assert [pool() for pool in pools] == [None, None, None]


@pytest.mark.timeout(60)
def test_a_thread_worker_may_stop_its_own_numap():
    nm = NuMap(worker_type="thread", worker_num=2)
    raised = []

    def stops_on_three(x):
        if x == 3:
            try:
                nm.stop()
            except Exception as error:  # noqa: BLE001 - what the test looks for
                raised.append(error)
        return x

    nm.add_task(stops_on_three, range(10))
    nm.start()
    assert set(nm) <= set(range(10))
    deadline = time.monotonic() + 10
    while not nm._scheduler.stopped and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raised == []  # "cannot join current thread" stopped it half-way
    assert nm._scheduler.stopped
