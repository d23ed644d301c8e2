"""numap's numpy allocator: worker processes make large arrays in shared memory.

The allocator sets numpy's memory handler of a whole process, so its own tests
run in fresh interpreters; the NuMap tests run it in NuMap's workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import numap._alloc  # noqa: F401 - built with the project: a missing build fails here
from numap import NuMap, _shm, _wire
from numap._shm import SHM_FOLDER

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


def ours() -> list[str]:
    prefix = f"numap-{os.getpid()}-"
    return [name for name in os.listdir(SHM_FOLDER) if name.startswith(prefix)]


def fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter with the allocator installed as ``A`` (prefix
    ``P``, threshold 1 MiB, keeping 8 MiB of free segments); what it prints last, as JSON."""
    head = textwrap.dedent("""
        import atexit, json, os, sys
        import numpy as np
        import numap._alloc as A
        P = f"numap-test-{os.getpid()}-a"
        A.install(P, 1 << 20, 8 << 20)
        atexit.register(A.close)  # no name left behind
        def names():
            return sorted(n for n in os.listdir("/dev/shm") if n.startswith(P))
    """)
    done = subprocess.run([sys.executable, "-c", head + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=50, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the allocator alone ----------------------------------------------------------------


def test_large_arrays_are_made_in_segments_and_small_ones_are_not():
    got = fresh("""
        big = np.ones(MIB := (1 << 20) // 8)      # exactly 1 MiB: the threshold
        small = np.ones(MIB - 1)
        address = big.__array_interface__["data"][0]
        whole = A.block(address, big.nbytes)
        part = A.block(address, big.nbytes - 8)   # not the whole segment
        other = A.block(small.__array_interface__["data"][0], small.nbytes)
        big += 1
        print(json.dumps({"whole": whole, "part": part, "other": other, "names": names(),
                          "sum": float(big.sum()), "stats": A.stats()}))
    """)
    assert got["whole"][0].endswith("a0") and got["whole"][1] >= MIB
    assert got["part"] is None and got["other"] is None
    assert len(got["names"]) == 1 and got["sum"] == 2.0 * MIB / 8
    assert got["stats"]["used"] == 1 and got["stats"]["made"] == 1


def test_a_freed_segment_is_reused_and_zeros_are_zeros_there():
    got = fresh("""
        dirty = np.full((1 << 21) // 8, 7.0)
        del dirty                                # its segment is kept, with the sevens
        zeros = np.zeros((1 << 21) // 8)         # calloc: the reused segment is cleared
        stats, count = A.stats(), len(names())
        print(json.dumps({"max": float(np.abs(zeros).max()), "stats": stats,
                          "names": count}))
    """)
    assert got["max"] == 0.0
    assert got["stats"]["made"] == 1 and got["stats"]["reused"] == 1
    assert got["names"] == 1


def test_of_the_free_segments_that_fit_the_last_allocated_is_reused():
    # A scratch array made for each item (the second segment here) is written last and
    # freed first; a result given back by its receiver (the first) is freed later, but
    # was written long before: the next array goes where the lines are still cached.
    got = fresh("""
        def name(a):
            return A.block(a.__array_interface__["data"][0], a.nbytes)[0]
        result = np.ones((2 << 20) // 8)         # a result, lent to its receiver
        scratch = np.ones((2 << 20) // 8)        # an intermediate array, made after it
        first, second = name(result), name(scratch)
        del scratch                              # freed first
        del result                               # freed last (given back)
        again = np.ones((2 << 20) // 8)
        bigger = np.ones((3 << 20) // 8)         # only a fresh segment fits it
        print(json.dumps({"first": first, "second": second, "again": name(again),
                          "stats": A.stats()}))
    """)
    assert got["again"] == got["second"] != got["first"]
    assert got["stats"]["made"] == 3 and got["stats"]["reused"] == 1


def test_free_segments_beyond_keep_are_removed():
    got = fresh("""
        arrays = [np.ones((3 << 20) // 8) for _ in range(6)]   # 6 x 3 MiB
        del arrays                               # keeping at most 8 MiB of them
        stats = A.stats()
        print(json.dumps({"stats": stats, "names": len(names())}))
    """)
    assert got["stats"]["spare_bytes"] <= 8 * MIB
    assert got["stats"]["removed"] == 6 - got["stats"]["spare"]
    assert got["names"] == got["stats"]["spare"]


def test_a_resized_array_keeps_its_values():
    got = fresh("""
        a = np.arange((1 << 20) // 8, dtype=np.float64)
        a.resize(3 * a.size, refcheck=False)     # realloc: a bigger segment, the values copied
        grown = A.block(a.__array_interface__["data"][0], a.nbytes) is not None
        head = float(a[: (1 << 20) // 8].sum())
        a.resize(10, refcheck=False)             # below the threshold: the C library
        print(json.dumps({"grown": grown, "head": head, "tail": a.tolist(),
                          "stats": A.stats()}))
    """)
    n = MIB // 8
    assert got["grown"] and got["head"] == n * (n - 1) / 2
    assert got["tail"] == [float(k) for k in range(10)]
    assert got["stats"]["used"] == 0


def test_a_lent_segment_waits_for_its_receiver():
    got = fresh("""
        a = np.ones((1 << 20) // 8)
        address = a.__array_interface__["data"][0]
        name = A.block(address, a.nbytes)[0]
        A.lend(address)
        del a                                     # numpy frees it: still the receiver's
        before = A.stats()
        unknown = A.give_back("/no-such-segment")
        back = A.give_back(name)                  # now it is free for reuse
        again = A.give_back(name)                 # given back once only
        b = np.ones((1 << 20) // 8)
        print(json.dumps({"before": before, "after": A.stats(), "unknown": unknown,
                          "back": back, "again": again}))
    """)
    assert got["before"]["used"] == 1 and got["before"]["spare"] == 0
    assert not got["unknown"] and got["back"] and not got["again"]
    assert got["after"]["reused"] == 1 and got["after"]["made"] == 1


def test_close_removes_the_names_and_stops_allocating():
    got = fresh("""
        kept = np.ones((1 << 20) // 8)
        spare = np.ones((1 << 20) // 8)
        del spare
        A.close()
        after = names()
        kept += 1                                 # its mapping stays while it lives
        later = np.ones((1 << 20) // 8)
        print(json.dumps({"after": after, "kept": float(kept[0]), "stats": A.stats(),
                          "later": A.block(later.__array_interface__["data"][0],
                                           later.nbytes)}))
    """)
    assert got["after"] == [] and got["kept"] == 2.0
    assert got["later"] is None and got["stats"]["active"] == 0


def test_a_forked_child_gets_copies_of_the_arrays_as_with_private_memory():
    got = fresh("""
        a = np.full((1 << 20) // 8, 3.0)
        b = np.full((1 << 20) // 8, 5.0)
        spare = np.ones((1 << 20) // 8)
        del spare
        read, write = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:                              # the child
            a[:] = 99.0                           # its own copy
            c = np.ones((1 << 20) // 8)           # from the C library here
            inside = A.block(c.__array_interface__["data"][0], c.nbytes) is not None
            os.read(go_r, 1)                      # the parent has reused b's segment
            os.write(write, json.dumps([float(b[0]), float(a[0]), inside]).encode())
            del a, b
            os._exit(0)
        del b
        again = np.full((1 << 20) // 8, 42.0)     # b's segment, reused
        os.write(go_w, b"x")
        child = json.loads(os.read(read, 1000))
        os.waitpid(pid, 0)
        print(json.dumps({"child": child, "parent_a": float(a[0]), "names": len(names()),
                          "stats": A.stats()}))
    """)
    assert got["child"] == [5.0, 99.0, False]  # its b unchanged, its a its own
    assert got["parent_a"] == 3.0
    assert got["names"] == 3 and got["stats"]["active"] == 1


def test_a_child_forked_while_a_segment_is_lent_runs():
    got = fresh("""
        a = np.full((1 << 20) // 8, 3.0)
        address = a.__array_interface__["data"][0]
        name = A.block(address, a.nbytes)[0]
        A.lend(address)
        del a                                     # lent only: no array of ours on it
        pid = os.fork()
        if pid == 0:
            b = np.ones((1 << 21) // 8)
            os._exit(0 if float(b.sum()) == (1 << 21) // 8 else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status), "back": A.give_back(name),
                          "stats": A.stats()}))
    """)
    assert got["code"] == 0 and got["back"] and got["stats"]["spare"] == 1


def test_a_child_forked_while_a_live_segment_is_lent_frees_its_copy():
    # (a message is being pickled in one thread while another forks)
    got = fresh("""
        a = np.full((8 << 20) // 8, 3.0)
        address = a.__array_interface__["data"][0]
        A.block(address, a.nbytes)
        A.lend(address)                           # named by a message, still live
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            before = A.stats()["used"]
            value = float(a[0])
            del a                                 # its private copy goes
            os.write(w, json.dumps([before, value, A.stats()["used"]]).encode())
            os._exit(0)
        child = json.loads(os.read(r, 1000))
        os.waitpid(pid, 0)
        print(json.dumps({"child": child, "parent": A.stats()["used"]}))
    """)
    assert got["child"] == [1, 3.0, 0] and got["parent"] == 1


def test_making_objects_in_the_allocator_functions_never_deadlocks():
    # A Python object made by block() or stats() may run the garbage collector, which
    # may free an array in a segment: the allocator's lock must not be held then.
    got = fresh("""
        import gc

        class Cycle:
            def __init__(self):
                self.me = self                    # freed by the collector only
                self.data = np.ones((1 << 20) // 8)

        a = np.ones((1 << 20) // 8)
        address = a.__array_interface__["data"][0]
        calls = 0
        for threshold in range(1, 6):
            for call, args in ((A.block, (address, a.nbytes)), (A.stats, ())):
                gc.disable()
                gc.collect()
                Cycle()
                gc.set_threshold(threshold)
                gc.enable()
                call(*args)
                calls += 1
        gc.set_threshold(700)
        gc.collect()
        print(json.dumps({"calls": calls, "stats": A.stats()}))
    """)
    assert got["calls"] == 10 and got["stats"]["used"] == 1


def test_close_then_install_never_names_a_removed_segment():
    got = fresh("""
        kept = np.ones((1 << 20) // 8)
        A.close()
        A.install(P, 1 << 20, 8 << 20)
        address = kept.__array_interface__["data"][0]
        old = A.block(address, kept.nbytes)       # its name is gone: never named again
        del kept                                  # unmapped, not reused
        new = np.ones((1 << 20) // 8)
        name = A.block(new.__array_interface__["data"][0], new.nbytes)[0]
        print(json.dumps({"old": old, "there": name[1:] in names(), "stats": A.stats()}))
    """)
    assert got["old"] is None and got["there"]
    assert got["stats"]["reused"] == 0 and got["stats"]["made"] == 2


def test_no_room_in_dev_shm_falls_back_to_the_c_library():
    got = fresh("""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
        a = np.full((1 << 21) // 8, 2.0)
        print(json.dumps({"sum": float(a.sum()), "names": names(), "stats": A.stats()}))
    """)
    assert got["sum"] == 2.0 * 2 * MIB / 8 and got["names"] == []
    assert got["stats"]["fallbacks"] == 1 and got["stats"]["used"] == 0


def test_install_checks_its_arguments():
    got = fresh("""
        errors = []
        for args in (("x" * 200, 1, 1), ("", 1, 1), ("a/b", 1, 1), ("p", 0, 1), ("p", -1, 1),
                     ("p", 1, -1), ("p", 2 ** 64, 1), ("p", "1", 1)):
            try:
                A.install(*args)
                errors.append(None)
            except (ValueError, OverflowError, TypeError) as error:
                errors.append(f"{type(error).__name__}: {error}")
        print(json.dumps(errors))
    """)
    assert all("prefix must be 1 to" in e for e in got[:3]), got
    assert "threshold must be at least 1 byte, got 0" in got[3]
    assert "threshold must be at least 1 byte, got -1" in got[4]
    assert "keep must not be negative" in got[5]
    assert got[6].startswith("OverflowError") and got[7].startswith("TypeError")


def test_an_array_growing_past_the_threshold_moves_to_a_segment():
    got = fresh("""
        a = np.ones(100)
        a.resize((1 << 21) // 8, refcheck=False)  # from the C library to a segment
        grown = A.block(a.__array_interface__["data"][0], a.nbytes) is not None
        b = np.fromiter((float(k) for k in range((1 << 21) // 8)), dtype=np.float64)
        print(json.dumps({"grown": grown, "head": a[:100].tolist(), "b": float(b.sum()),
                          "stats": A.stats()}))
    """)
    n = 2 * MIB // 8
    assert got["grown"] and got["head"] == [1.0] * 100
    assert got["b"] == n * (n - 1) / 2 and got["stats"]["used"] == 2


def test_large_zeros_stay_lazy_in_the_c_library():
    got = fresh("""
        big = np.zeros((256 << 20) // 8)          # above 64 MiB: zero pages when touched
        small = np.zeros((2 << 20) // 8)
        print(json.dumps({"big": A.block(big.__array_interface__["data"][0], big.nbytes),
                          "small": A.block(small.__array_interface__["data"][0],
                                           small.nbytes) is not None}))
    """)
    assert got["big"] is None and got["small"]


# -- in NuMap's workers ---------------------------------------------------------------------


def plus_one(a):
    return a + 1.0


def segment_of(array) -> str | None:
    lease = _shm.RECEIVER.lease_of(memoryview(array))
    return None if lease is None else lease.name


def test_new_arrays_come_back_in_the_workers_segments_without_a_copy():
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(8)]
    with NuMap(plus_one, arrays, worker_num=2) as numap:
        out = list(numap)
        names = [segment_of(a) for a in out]
        assert [float(a[0]) for a in out] == [k + 1.0 for k in range(8)]
        assert all(name is not None and "-a" in name.rsplit("w", 1)[1] for name in names), names
        del out
    assert ours() == []


def test_shared_arrays_false_copies_new_arrays_into_segments():
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(4)]
    with NuMap(plus_one, arrays, worker_num=1, shared_arrays=False) as numap:
        assert numap.settings["shared_arrays"] is False
        out = list(numap)
        names = [segment_of(a) for a in out]
    assert [float(a[0]) for a in out] == [1.0, 2.0, 3.0, 4.0]
    assert all(name is not None and "-a" not in name.rsplit("w", 1)[1] for name in names), names
    with pytest.raises(TypeError, match="shared_arrays must be True or False"):
        NuMap(worker_num=1, shared_arrays="yes")


def running_total(a, _kept={}):  # noqa: B006 - the worker's own state, on purpose
    total = _kept.get("total")
    if total is None:
        total = _kept["total"] = np.zeros_like(a)  # made in a segment by the allocator
    total += a
    return total


def test_an_array_the_worker_keeps_goes_back_as_a_copy():
    arrays = [np.full(2 * MIB // 8, 1.0) for _ in range(5)]
    # one item per batch: the results of one batch would be one array, pickled once
    with NuMap(running_total, arrays, worker_num=1, stride=1) as numap:
        out = list(numap)  # the worker changed its total after returning each one
        assert [float(a[0]) for a in out] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert not any(np.shares_memory(out[0], a) for a in out[1:])


def total_as_a_view(a, _kept={}):  # noqa: B006 - the worker's own state, on purpose
    total = _kept.get("total")
    if total is None:
        total = _kept["total"] = np.zeros_like(a)
    total += a
    # the same bytes through objects that are not arrays: still the kept total
    return np.frombuffer(memoryview(total), dtype=total.dtype)


def test_a_kept_array_returned_through_other_objects_goes_back_as_a_copy():
    arrays = [np.full(2 * MIB // 8, 1.0) for _ in range(5)]
    with NuMap(total_as_a_view, arrays, worker_num=1, stride=1) as numap:
        out = list(numap)
        assert [float(a[0]) for a in out] == [1.0, 2.0, 3.0, 4.0, 5.0]


def forks_a_scribbler(x):
    made = x * 2.0  # in a segment
    pid = os.fork()
    if pid == 0:  # a helper process with its own copy
        made[:] = -1.0
        os._exit(0)
    os.waitpid(pid, 0)
    return made


def test_a_task_that_forks_keeps_its_arrays_its_own():
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(3)]
    with NuMap(forks_a_scribbler, arrays, worker_num=1) as numap:
        assert [float(a[0]) for a in numap] == [0.0, 2.0, 4.0]
    assert ours() == []


def in_segments(item):
    from numap import _alloc

    def placed(a):
        return _alloc.block(a.__array_interface__["data"][0], a.nbytes) is not None

    small = [np.ones(4) for _ in range(50)]  # 32 bytes each
    return [sum(map(placed, small)), placed(np.ones(128 * 1024 // 8)), _alloc.stats()["active"]]


def test_small_arrays_never_get_a_segment_whatever_the_threshold():
    # below 64 KiB an array travels in the pickle anyway: a segment would only cost
    assert _shm.SMALLEST_ALLOCATED == _wire.OUT_OF_BAND_MIN
    with NuMap(in_segments, [np.ones(MIB)], worker_num=1, shared_memory=1) as numap:
        assert list(numap) == [[0, True, 1]]


def test_numpy_keeps_its_own_handler_until_large_arrays_come():
    # numpy's own handler is faster on small arrays: a worker that never sees a large
    # one never changes it
    with NuMap(in_segments, [np.ones(8), np.ones(8)], worker_num=1, stride=1) as numap:
        assert [r[2] for r in numap] == [0, 0]
    # a large result, then the next batch has numpy make large arrays in segments
    with NuMap(made_large, [1, 2, 3], worker_num=1, stride=1) as numap:
        out = list(numap)
        assert [segment_of(a) is not None for a in out] == [True, True, True]
        assert ["-a" in segment_of(a).rsplit("w", 1)[1] for a in out] == [False, True, True]


def made_large(n):
    return np.full(2 * MIB // 8, float(n))


def dies_on_three(a):
    if a[0] == 3.0 and not os.environ.get("NUMAP_TEST_SURVIVE"):
        os._exit(1)
    return a + 1.0


def test_a_dead_workers_segments_are_removed():
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(6)]
    numap = NuMap(dies_on_three, arrays, worker_num=2)
    got = []
    for _ in range(6):
        try:
            got.append(float(next(numap)[0]))
        except StopIteration:
            break
        except Exception:  # noqa: BLE001 - the item that killed its worker
            got.append(None)
    numap.stop()
    assert got == [1.0, 2.0, 3.0, None, 5.0, 6.0]
    assert ours() == []


def waits_for_a_segment_back(a):
    """The first item: a new array, sent back in a segment of this worker's allocator.
    The next: waits (at most 20 s) until the parent has given that segment back, while
    this call runs; then says whether it came, and where its own new array is made."""
    from numap import _alloc

    if a[0] == 0.0:
        return a + 1.0
    deadline = time.monotonic() + 20
    while _alloc.stats()["spare"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    came = _alloc.stats()["spare"] > 0
    made = a + 1.0
    found = _alloc.block(made.__array_interface__["data"][0], made.nbytes)
    return came, None if found is None else "/" + found[0].lstrip("/")


@pytest.mark.parametrize("sending", [False, True],
                         ids=["dropped", "dropped while a batch is being sent"])
def test_a_dropped_result_goes_back_to_its_worker_while_it_is_busy(sending):
    # The worker reuses a segment while its lines are still in the cache only if it
    # hears of the drop at once: not with the next batch sent to it, nor after the
    # call it is in. A drop while a batch is being sent (here: the send lock held a
    # while) is told once the send is over, though no batch is sent after it.
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(2)]
    with NuMap(waits_for_a_segment_back, arrays, worker_num=1, stride=1) as numap:
        results = iter(numap)
        first = next(results)
        name = segment_of(first)
        assert name is not None and float(first[0]) == 1.0
        del first  # (the stream lets go of it with the next call)
        if sending:  # the drop comes while the send lock is held, for 0.3 s
            send_lock = numap._scheduler.backend._send_lock
            send_lock.acquire()
            threading.Timer(0.3, send_lock.release).start()
        came, where = next(results)
    assert came, "the dropped result's segment did not reach its worker during the call"
    assert where == name



def passed_on(inbox):
    return inbox[0]


_ANSWER: list = []  # where the worker writes its answer (set before the workers fork)


def waits_in_a_piper(inbox):
    answer = waits_for_a_segment_back(inbox[0])
    if isinstance(answer, tuple):
        with open(_ANSWER[0], "w") as out:
            json.dump(answer, out)
        return None
    return answer


@pytest.mark.parametrize("stages", [1, 2], ids=["one Piper", "two Pipers on one NuMap"])
def test_a_pipeline_drops_a_result_before_it_awaits_the_next(stages, tmp_path, monkeypatch):
    # The Plumber and its Pipers hold no result while they wait for the next one:
    # the worker gets the segment back during the call that makes the next result.
    from papyflow import Piper, Plumber

    monkeypatch.setattr(sys.modules[__name__], "_ANSWER", [str(tmp_path / "answer.json")])
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(2)]
    with NuMap(worker_num=1, stride=1) as mapped:
        pipers = [Piper(passed_on, parallel=mapped) for _ in range(stages - 1)]
        pipers.append(Piper(waits_in_a_piper, parallel=mapped))
        plumber = Plumber()
        plumber.add_pipe(tuple(pipers))
        plumber.start([iter(arrays)])
        plumber.run()
        plumber.wait(timeout=60)
        results = plumber.stats["pipers"][pipers[-1]]["results"]
        plumber.stop()
    came, where = json.loads((tmp_path / "answer.json").read_text())
    assert results == 2
    assert came, "the first result was held by the pipeline while the second was made"
    assert where.endswith("-a0")


# -- an item's segment, borrowed for the arrays made after it -----------------------------


def test_a_borrowed_segment_takes_the_next_array_and_stays_its_pools():
    got = fresh("""
        import mmap
        from multiprocessing import shared_memory
        segment = shared_memory.SharedMemory(create=True, size=2 << 20)  # another pool's
        mapping = mmap.mmap(-1, 2 << 20)          # as Python maps a received segment
        address = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
        name = "/" + segment.name
        small = A.borrow("/elsewhere", address, 4096)   # under the threshold: not taken
        taken = A.borrow(name, address, len(mapping))
        a = np.full((2 << 20) // 8, 3.0)          # its first choice
        inside = a.__array_interface__["data"][0] == address
        block = A.block(address, a.nbytes)        # goes back as it is, named as its pool's
        live = A.borrowed()                       # an array is on it: kept, and named
        A.lend(address)
        del a                                     # a message took it back to its pool
        lent = A.borrowed()                       # forgotten now
        b = np.ones((2 << 20) // 8)               # so the next array is made elsewhere
        elsewhere = b.__array_interface__["data"][0] != address
        del b
        again = A.borrow(name, address, len(mapping))
        c = np.ones((2 << 20) // 8)
        del c                                     # freed: forgotten too, never unmapped
        free = A.borrowed()
        mapping[:1] = b"x"
        A.close()
        exists = os.path.exists("/dev/shm/" + segment.name)   # never removed here
        segment.close()
        segment.unlink()
        assert block[0] == name
        print(json.dumps({"small": small, "taken": taken, "inside": inside, "block": block,
                          "live": live, "lent": lent, "elsewhere": elsewhere, "again": again,
                          "free": free, "exists": exists}))
    """)
    assert not got["small"] and got["taken"] and got["again"]
    assert got["inside"] and got["block"][1] == 2 * MIB
    assert got["live"] == [got["block"][0]] and got["lent"] == [] and got["free"] == []
    assert got["elsewhere"] and got["exists"]


def made_new(inbox):
    return inbox[0] + 1.0


def doubled(inbox):
    return inbox[0] * 2.0


def _fused(stages, arrays):
    """The results of ``stages`` (parallel Pipers on one process NuMap) over ``arrays``,
    and the names of the segments they came back in."""
    from papyflow import Piper, Plumber

    with NuMap(worker_num=1, stride=1) as mapped:
        pipers = [Piper(stage, parallel=mapped) for stage in stages]
        pipers[-1].track = True
        plumber = Plumber()
        plumber.add_pipe(tuple(pipers))
        plumber.start([iter(arrays)])
        plumber.run()
        plumber.wait(timeout=60)
        out = plumber.stats["pipers_tracked"][pipers[-1]][0]
        names = [segment_of(a) if isinstance(a, np.ndarray) else None for a in out.values()]
        values = [out[k] for k in range(len(arrays))]
        plumber.stop()
    return values, names


def test_fused_stages_make_the_last_array_in_the_items_own_segment():
    # The item is let go once the first stage has made its array; the second makes its
    # own where the item was (its lines just read), and it goes back in that segment,
    # as an item changed in place does: the worker keeps a segment fewer.
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(6)]
    values, names = _fused((made_new, doubled), arrays)
    assert [(float(a[0]), float(a[-1])) for a in values] == [((k + 1.0) * 2,) * 2
                                                              for k in range(6)]
    own = [n for n in names if n is not None and "-w" not in n]
    assert len(own) >= 5, names  # (the first may come before the worker borrows)
    del values
    assert ours() == []


_KEPT: list = []


def keeps_its_array(inbox):
    kept = inbox[0] * 2.0  # made where the item was: that segment is not given back yet
    _KEPT.append((kept, float(kept[0])))
    return all(float(k[0]) == v and float(k[-1]) == v for k, v in _KEPT)


def test_an_array_kept_in_a_borrowed_segment_is_never_written_over():
    # The worker keeps the array it made where an item was: that segment must not go
    # back to the NuMap, which would copy a later item into it.
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(8)]
    values, _ = _fused((made_new, keeps_its_array), arrays)
    assert values == [True] * 8
    assert ours() == []


def forks_a_scribbling_child(inbox):
    return forks_a_scribbler(inbox[0])  # its array made where the item was


def test_a_fused_stage_that_forks_keeps_its_array_its_own():
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(3)]
    values, _ = _fused((made_new, forks_a_scribbling_child), arrays)
    assert [(float(a[0]), float(a[-1])) for a in values] == [((k + 1.0) * 2,) * 2
                                                              for k in range(3)]
    del values
    assert ours() == []
