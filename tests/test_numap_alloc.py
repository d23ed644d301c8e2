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
from pathlib import Path

import numpy as np
import pytest

import numap._alloc  # noqa: F401 - built with the project: a missing build fails here
from numap import NuMap, _shm
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
        import json, os, sys
        import numpy as np
        import numap._alloc as A
        P = f"numap-test-{os.getpid()}-a"
        A.install(P, 1 << 20, 8 << 20)
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


def test_a_forked_child_leaves_the_parents_segments_alone():
    got = fresh("""
        a = np.full((1 << 20) // 8, 3.0)
        spare = np.ones((1 << 20) // 8)
        del spare
        pid = os.fork()
        if pid == 0:                              # the child frees its copies
            b = np.ones((1 << 20) // 8)           # not in a segment here
            inside = A.block(b.__array_interface__["data"][0], b.nbytes) is not None
            del a
            os._exit(10 + inside)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status), "names": len(names()),
                          "value": float(a.sum()), "stats": A.stats()}))
    """)
    assert got["code"] == 10  # the child allocated from the C library
    assert got["names"] == 2 and got["value"] == 3.0 * MIB / 8
    assert got["stats"]["active"] == 1


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
        for args in (("x" * 200, 1, 1), ("p", 0, 1)):
            try:
                A.install(*args)
            except ValueError as error:
                errors.append(str(error))
        print(json.dumps(errors))
    """)
    assert "prefix longer than" in got[0] and "threshold must be at least 1" in got[1]


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
