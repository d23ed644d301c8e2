"""The shared-memory benchmark's own parts: its pipeline runs and its reference of the
memory work alone (tiny sizes: what is checked is what they compute, not how fast)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks import shm

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("scenario", list(shm.SCENARIOS))
def test_memory_work_is_the_scenarios_arithmetic(scenario):
    for transport in (False, True):
        array = np.full(1024, 3.0)
        segment = np.zeros(1024)
        result = shm.memory_work(scenario, array, segment, transport)
        assert np.array_equal(result, np.full(1024, 8.0))  # (3 + 1) * 2
        if scenario == "pipeline-new":  # the parent's copy in; new arrays after it
            assert result is not segment
            assert np.array_equal(segment, np.full(1024, 3.0 if transport else 0.0))
            continue
        # with transport the stages in place leave the result in the segment, as on
        # the path; without, the segment is never touched
        assert (result is segment) == transport
        assert np.array_equal(segment, np.full(1024, 8.0 if transport else 0.0))

def test_ceiling_runs_two_processes_and_gives_a_rate():
    rate = shm.ceiling("pipeline-new", 1, 1, True)
    assert 0 < rate < float("inf")


@pytest.mark.parametrize("shared", [False, True])
def test_one_run_moves_every_array(shared):
    assert shm.one("pipeline-new", 1, 8, shared)["rate"] > 0


def test_copy_in_measures_both_copies_and_restores_the_streaming_one(monkeypatch):
    from numap import _shm

    compiled = _shm._copy_bytes
    used = []

    def numpy_copy(target, source):
        used.append("numpy")
        target[:] = source

    def streaming_copy(target, source):
        used.append("stream")
        compiled(target, source)

    monkeypatch.setattr(_shm, "_copy_array", numpy_copy)
    if compiled is not None:
        monkeypatch.setattr(_shm, "_copy_bytes", streaming_copy)
    streaming = _shm._copy_bytes
    monkeypatch.setattr(_shm, "STREAM_FROM", 1 << 40)  # no copy here would stream by itself
    rates = shm.copy_in(1, repeat=1)
    assert set(rates) == {"stream_1", "stream_2", "numpy_1", "numpy_2"}
    assert all(0 < rate < float("inf") for rate in rates.values())
    assert _shm._copy_bytes is streaming and _shm.STREAM_FROM == 1 << 40
    if streaming is not None:  # each measure took the copy it names, whatever the threshold
        half = len(used) // 2
        assert set(used[:half]) == {"stream"} and set(used[half:]) == {"numpy"}


def test_the_header_says_which_copies_stream(monkeypatch):
    from numap import _shm

    if _shm._copy_bytes is None:
        assert "not built" in shm.streaming_line()
        return
    monkeypatch.setattr(_shm, "STREAM_FROM", 3 << 20)
    monkeypatch.setenv("NUMAP_STREAM_FROM", "3145728")
    assert shm.streaming_line() == ("Copies into segments take streaming stores from 3.0 MiB "
                                    "(NUMAP_STREAM_FROM=3145728).")
    monkeypatch.setattr(_shm, "STREAM_FROM", 1 << 20)
    monkeypatch.setenv("NUMAP_STREAM_FROM", "0")
    assert shm.streaming_line() == ("Copies into segments take streaming stores from 1.0 MiB "
                                    "(NUMAP_STREAM_FROM=0, raised to the compiled copy's floor).")
    monkeypatch.delenv("NUMAP_STREAM_FROM")
    for cache, why in ((480 << 20, "an eighth of the last-level cache of 480.0 MiB"),
                       (4 << 20, "the compiled copy's floor; the last-level cache is 4.0 MiB"),
                       (512 << 10, "the compiled copy's floor; the last-level cache is 512 KiB"),
                       (None, ("no last-level cache reported that every CPU of this "
                               "process shares"))):
        monkeypatch.setattr(_shm, "last_level_cache", lambda *root, cache=cache: cache)
        monkeypatch.setattr(_shm, "STREAM_FROM", _shm.stream_from({}))
        assert shm.streaming_line().endswith(f"({why}).")


def test_the_split_line_says_whether_a_cpu_is_left_for_a_second_copying_thread(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert shm.split_line() == ("The NuMap's process makes a streaming copy of 4 MiB or more "
                                "on one thread (2 CPUs for 2 workers and its feeding thread).")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert shm.split_line().startswith("The NuMap's process makes a streaming copy of 4 MiB or "
                                       "more in two halves on two threads (8 CPUs")



def test_handler_cost_runs_with_each_handler_and_leaves_no_segment():
    import os

    for handler in ("numpy", "numap"):
        cost = shm._run([sys.executable, "-m", "benchmarks.shm", "--handler", handler])
        assert set(cost) == {"small_ns", "gather_ms"} and min(cost.values()) > 0
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("numap-cost-")]
