"""How the system schedules a NuMap's worker processes (``worker_policy``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from numap import NuMap, WorkerLostError
from numap._policy import POLICIES, apply
from papyflow import Piper, Plumber

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"),
                                 reason="scheduling policies are Linux's")]


def thread_policies(_):
    """The scheduling policies of every thread of the calling process, by number."""
    policies = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            policies.add(os.sched_getscheduler(int(tid)))
        except OSError:  # ended meanwhile
            continue
    return sorted(policies)


def pid_and_policies(x):
    time.sleep(0.02)  # the worker is killed while items are left
    return os.getpid(), thread_policies(x)


def inc(x):
    return x + 1


def child_policy(_):
    """The policy a process started by the worker has."""
    done = subprocess.run([sys.executable, "-c",
                           "import os; print(os.sched_getscheduler(0))"],
                          capture_output=True, text=True, timeout=30, check=True)
    return int(done.stdout)


def test_worker_processes_are_batch_work_by_default_and_the_caller_is_left_alone():
    before = thread_policies(None)
    with NuMap(thread_policies, range(4), worker_num=2) as numap:
        assert numap.worker_policy == "batch"
        got = list(numap)
    # every thread of every worker: the one running tasks and the one reading its pipe
    assert got == [[os.SCHED_BATCH]] * 4
    assert thread_policies(None) == before  # the caller's threads are left as they were


@pytest.mark.parametrize(("policy", "number"), [("normal", "SCHED_OTHER"),
                                                 ("idle", "SCHED_IDLE"),
                                                 ("batch", "SCHED_BATCH")])
def test_each_policy_is_what_the_workers_run_under(policy, number):
    with NuMap(thread_policies, range(2), worker_num=2, worker_policy=policy) as numap:
        assert list(numap) == [[getattr(os, number)]] * 2


def test_processes_a_worker_starts_have_its_policy():
    with NuMap(child_policy, range(1), worker_num=1, worker_policy="idle") as numap:
        assert list(numap) == [os.SCHED_IDLE]


def test_a_worker_that_replaces_a_lost_one_has_the_policy_too():
    numap = NuMap(pid_and_policies, range(20), worker_num=1, worker_policy="idle", stride=1)
    try:
        first_pid, policies = numap.next(timeout=30)
        assert policies == [os.SCHED_IDLE]
        os.kill(first_pid, signal.SIGKILL)
        later = []
        for _ in range(19):
            try:
                later.append(numap.next(timeout=30))
            except WorkerLostError:  # the item it was running, if any
                continue
    finally:
        numap.stop()
    replacement = [policies for pid, policies in later if pid != first_pid]
    assert replacement and replacement == [[os.SCHED_IDLE]] * len(replacement)


@pytest.mark.parametrize(("value", "error"), [("fast", ValueError), ("BATCH", ValueError),
                                              ("", ValueError), (3, TypeError),
                                              (None, TypeError)])
def test_a_bad_policy_is_refused_at_once_naming_the_argument(value, error):
    with pytest.raises(error, match="worker_policy"):
        NuMap(worker_num=1, worker_policy=value)


def test_the_policy_is_a_setting_and_is_saved_when_not_the_default(tmp_path):
    idle, default = NuMap(worker_num=1, worker_policy="idle"), NuMap(worker_num=1)
    assert idle.settings["worker_policy"] == "idle"
    assert default.settings["worker_policy"] == "batch"
    plumber = Plumber()
    plumber.add_pipe((Piper(inc, parallel=idle, name="a"), Piper(inc, parallel=default,
                                                                   name="b")))
    path = tmp_path / "pipe.py"
    plumber.save(path)
    lines = [line for line in path.read_text().splitlines() if "= NuMap(" in line]
    assert ["worker_policy='idle'" in line for line in lines] == [True, False]
    assert not any("worker_policy='batch'" in line for line in lines)
    again = Plumber()
    again.load(path)
    assert sorted(p.imap.settings["worker_policy"] for p in again.postorder()) == \
        ["batch", "idle"]


def test_a_refused_policy_leaves_the_thread_as_it_was(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert apply("idle") is False
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    monkeypatch.delattr(os, "SCHED_IDLE")
    assert apply("idle") is False


def test_every_policy_names_a_policy_of_this_system():
    assert all(hasattr(os, name) for name in POLICIES.values())


def test_a_worker_server_s_processes_follow_its_policy(servers):
    default = servers.start(workers=1)
    idle = servers.start(workers=1, extra=("--policy", "idle"))
    for server, number in ((default, os.SCHED_BATCH), (idle, os.SCHED_IDLE)):
        with NuMap(thread_policies, range(2), worker_num=0,
                   worker_remote=((server.address, 1),)) as numap:
            assert list(numap) == [[number]] * 2


def test_the_server_refuses_an_unknown_policy():
    from numap.worker import WorkerServer

    done = subprocess.run([sys.executable, "-m", "numap.worker", "serve", "--bind",
                           "tcp://127.0.0.1:0", "--policy", "fast"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--policy" in done.stderr and "'fast'" in done.stderr
    with pytest.raises(ValueError, match="worker_policy"):
        WorkerServer("tcp://127.0.0.1:0", workers=1, worker_policy="fast")
