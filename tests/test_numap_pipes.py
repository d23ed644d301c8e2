"""A worker that reads nothing (a long call that holds its interpreter's lock) fills
its pipe: the NuMap must not wait on that pipe, or every other worker waits too."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import psutil
import pytest

from numap import NuMap, WorkerLostError
from tests.helpers import hold_or_time, hold_then_large, wait_for


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(90)
def test_a_worker_that_reads_nothing_holds_up_no_other_worker(tmp_path):
    # Pickled through the pipe (shared_memory=None), each item is larger than a pipe:
    # a blocking write to the holding worker held up the other one for the whole hold.
    marker = tmp_path / "holding"
    with NuMap(hold_or_time, hold_then_large(marker, 4, 40), worker_num=2,
               shared_memory=None) as numap:
        out = list(numap)
    held_until = next(t for kind, t in out if kind == "hold")
    assert [kind for kind, _ in out] == ["hold"] + ["large"] * 40
    ran_meanwhile = sum(1 for kind, t in out if kind == "large" and t < held_until)
    # A feeding thread that waits on the holding worker's pipe lets the other run 1.
    assert ran_meanwhile >= 30, ran_meanwhile


@pytest.mark.timeout(90)
def test_stop_while_a_large_item_waits_for_a_worker_that_reads_nothing(tmp_path):
    marker = tmp_path / "holding"
    gc.collect()
    threads = threading.active_count()
    numap = NuMap(hold_or_time, hold_then_large(marker, 60, 8), worker_num=2,
                  shared_memory=None)
    wait_for(marker)
    time.sleep(0.5)  # the large items are sent meanwhile, one waiting for its pipe
    pids = [p.pid for p in _workers()]
    assert len(pids) == 2
    numap.stop()  # the holding worker is ended, and what waited for its pipe dropped
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)
    deadline = time.monotonic() + 10
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads


@pytest.mark.timeout(90)
def test_a_worker_killed_while_a_large_item_waits_for_its_pipe_is_replaced(tmp_path):
    marker = tmp_path / "holding"
    numap = NuMap(hold_or_time, hold_then_large(marker, 60, 12), worker_num=2,
                  shared_memory=None)
    wait_for(marker)
    time.sleep(0.5)  # the large items are sent meanwhile, some waiting for its pipe
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the holding worker
    out = []
    for _ in range(13):
        try:
            out.append(numap.next(timeout=30)[0])
        except WorkerLostError:
            out.append("lost")
    numap.stop()
    assert out == ["lost"] + ["large"] * 12
