"""Large arrays to and from worker processes through shared memory: right values, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import numpy as np
import pytest

from numap import NuMap
from numap._shm import SHM_FOLDER
from tests.helpers import sigint_as_default

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not os.path.isdir(SHM_FOLDER), reason="no /dev/shm here")]

MIB = 1 << 20


def ours(pid: int | None = None) -> list[str]:
    """The segments of NuMaps of this process (or of ``pid``)."""
    prefix = f"numap-{os.getpid() if pid is None else pid}-"
    return [name for name in os.listdir(SHM_FOLDER) if name.startswith(prefix)]


def doubled(a):
    return a * 2


def in_place(a):
    a += 1
    return a


def described(a):
    total = len(a) if a.dtype == object else float(a.sum())
    return (a.dtype.str, a.shape, total, a.flags.writeable)


def pid_and_array(a):
    return os.getpid(), a


def dies_on_three(a):
    if a[0] == 3:
        os._exit(1)
    return a


def test_arrays_go_and_come_back_right():
    arrays = [np.arange(MIB // 8, dtype=np.float64) + k for k in range(6)]
    with NuMap(doubled, arrays, worker_num=2) as numap:
        out = list(numap)
    for k, got in enumerate(out):
        assert np.array_equal(got, arrays[k] * 2)
        assert got.flags.writeable
    del out
    assert ours() == []


def test_every_kind_of_array_survives():
    arrays = [np.ones((256, 1024), dtype=np.float32),  # 2-d, 1 MiB
              np.arange(2 * MIB // 8, dtype=np.int64)[::2],  # not contiguous
              np.asfortranarray(np.ones((512, 512))),  # Fortran order, 2 MiB
              np.zeros(10),  # small: through the pipe
              np.array(["a", "bb"] * 100_000, dtype=object)]  # objects: in the pickle
    with NuMap(described, arrays, worker_num=2) as numap:
        got = list(numap)
    assert got == [(a.dtype.str, a.shape, len(a) if a.dtype == object else float(a.sum()),
                    True) for a in arrays]


def test_a_read_only_array_arrives_read_only_as_through_pickle():
    frozen = np.ones(MIB // 8)
    frozen.flags.writeable = False
    with NuMap(described, [frozen, np.ones(MIB // 8)], worker_num=1) as numap:
        assert [flags for *_, flags in numap] == [False, True]  # in the worker
    with NuMap(pid_and_array, [frozen], worker_num=1) as numap:
        (_, back), = list(numap)
    assert not back.flags.writeable and np.array_equal(back, frozen)  # and back here
    del back
    assert ours() == []


def test_an_array_changed_in_place_comes_back_and_the_input_is_untouched():
    source = np.zeros(2 * MIB // 8)
    with NuMap(in_place, [source, source + 10], worker_num=1) as numap:
        first, second = list(numap)
    assert np.all(first == 1) and np.all(second == 11)
    assert np.all(source == 0)  # the worker changed its copy, not ours
    first[:] = 5  # ours to change
    assert np.all(second == 11)


_TOTAL = []


def running_total(a):
    # Keeps the first array it was given as its running total, and adds to it in place.
    if not _TOTAL:
        _TOTAL.append(a)
    else:
        _TOTAL[0] += a
    return _TOTAL[0]


def worker_segments() -> list[str]:
    return [name for name in ours() if "w" in name.rsplit("-", 2)[1]]


def test_an_array_the_worker_keeps_and_changes_later_comes_back_as_a_copy():
    # Each result is the total so far, as through the pipe; not one array that the
    # worker goes on changing under the caller.
    with NuMap(running_total, [np.ones(MIB // 8) for _ in range(5)], worker_num=1,
               stride=1) as numap:
        out = [a for a in numap]
    assert [float(a[0]) for a in out] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert not any(np.shares_memory(out[0], a) for a in out[1:])


def two_views_of_the_item(a):
    return a, a.reshape(-1), a.T


def two_views_of_a_new_array(a):
    b = a + 1.0  # made by numap's allocator in a segment of the worker's
    return b, b.T


@pytest.mark.parametrize("func", [two_views_of_the_item, two_views_of_a_new_array])
def test_arrays_over_one_segment_come_back_as_their_own_as_through_pickle(func):
    items = [np.arange(256 * 1024, dtype=np.float64).reshape(256, 1024) for _ in range(3)]
    with NuMap(func, items, worker_num=1) as numap:
        for got, item in zip(numap, items, strict=True):
            expected = func(item.copy())
            for k, array in enumerate(got):
                assert np.array_equal(array, expected[k])
                assert not any(np.shares_memory(array, other) for other in got[k + 1:])
            got[0][0, 0] = -1.0  # changes no other
            assert all(array.flat[0] != -1.0 for array in got[1:])


def test_an_array_changed_in_place_goes_back_without_a_copy():
    with NuMap(in_place, [np.zeros(MIB // 8) for _ in range(6)], worker_num=2) as numap:
        out = list(numap)
        assert worker_segments() == []  # every result is in the segment its item came in
    assert [float(a[0]) for a in out] == [1.0] * 6


def test_results_stay_valid_after_stop():
    numap = NuMap(doubled, [np.ones(MIB // 8) * k for k in range(4)], worker_num=2)
    out = list(numap)
    numap.stop()
    assert ours() == []
    assert [float(a[0]) for a in out] == [0.0, 2.0, 4.0, 6.0]
    out[0][:] = 7.0  # still mapped, writable
    assert float(out[0].sum()) == 7.0 * (MIB // 8)


def test_segments_are_reused_while_results_are_dropped():
    counts = []
    numap = NuMap(doubled, (np.ones(MIB // 8) for _ in range(200)), worker_num=2,
                  stride=2, buffer=4)
    for k, _ in enumerate(numap):
        if k % 20 == 19:
            counts.append(len(ours()))
    numap.stop()
    assert max(counts) <= 20, counts  # bounded: segments come back and are used again
    assert ours() == []


def test_shared_memory_none_sends_everything_through_the_pipe():
    seen = []
    numap = NuMap(doubled, (np.ones(2 * MIB // 8) for _ in range(20)), worker_num=2,
                  shared_memory=None)
    for value in numap:
        seen.append(len(ours()))
        assert float(value[0]) == 2.0
    numap.stop()
    assert set(seen) == {0}


def test_a_smaller_threshold_takes_smaller_arrays():
    numap = NuMap(doubled, [np.ones(16 * 1024)] * 4, worker_num=1, shared_memory=64 * 1024)
    first = next(iter(numap))
    assert len(ours()) >= 1  # 128 KiB arrays went through segments
    assert float(first[0]) == 2.0
    numap.stop()
    assert ours() == []


def test_a_worker_that_dies_leaves_no_segment():
    arrays = [np.full(MIB // 8, float(k)) for k in range(8)]
    numap = NuMap(dies_on_three, arrays, worker_num=2)
    out = []
    stream = iter(numap)
    while True:
        try:
            out.append(float(next(stream)[0]))
        except StopIteration:
            break
        except Exception as error:  # noqa: BLE001 - the lost item's failure
            out.append(type(error).__name__)
    numap.stop()
    assert out == [0.0, 1.0, 2.0, "WorkerLostError", 4.0, 5.0, 6.0, 7.0]
    assert ours() == []


USING_SEGMENTS = """
import numpy as np, time
from numap import NuMap

def slow(a):
    time.sleep(0.05)
    return a * 2

numap = NuMap(slow, (np.ones(1 << 18) for _ in range(10_000)), worker_num=2)
kept = []  # results held: their segments stay in use
for k, result in enumerate(numap):
    kept.append(result)
    if k == 5:
        print("running", flush=True)
"""


def _left_after(signum: int, tmp_path, **popen) -> list[str]:
    """The segments of a NuMap's process (``USING_SEGMENTS``) still there 10 s after it
    was sent ``signum`` while using segments (removed afterwards, whatever is found)."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(USING_SEGMENTS))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, **popen)
    try:
        assert process.stdout.readline().strip() == "running"
        assert ours(process.pid)  # items in flight, results held
        process.send_signal(signum)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()
        process.stderr.close()
    deadline = time.monotonic() + 10
    while ours(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = ours(process.pid)
    from numap import _shm

    _shm.sweep(f"numap-{process.pid}-")
    return left


def test_ctrl_c_leaves_no_segment(tmp_path):
    assert _left_after(signal.SIGINT, tmp_path, preexec_fn=sigint_as_default) == []


def test_a_parent_killed_leaves_no_segment(tmp_path):
    # Killed with SIGKILL, the NuMap's process cannot clean up: its workers see
    # their parent die and remove its segments before they leave.
    assert _left_after(signal.SIGKILL, tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="no /proc here")
def test_a_worker_tells_a_dying_parent_from_a_stopped_numap(tmp_path, monkeypatch):
    from numap.backends import process as backend

    # A name that ends in ") Z (" as a process's state would: only the fields after
    # the name's last parenthesis count.
    odd = tmp_path / "odd) Z (x"
    odd.symlink_to("/bin/sleep")
    alive = subprocess.Popen([str(odd), "30"])
    dead = subprocess.Popen(["/bin/true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # exited, not yet reaped: a zombie
            with open(f"/proc/{dead.pid}/stat", "rb") as stat:
                if b") Z " in stat.read():
                    break
            time.sleep(0.01)
        for pid, gone in ((alive.pid, False), (dead.pid, True)):
            monkeypatch.setattr(os, "getppid", lambda pid=pid: pid)
            assert backend._parent_gone(pid) is gone
        monkeypatch.setattr(os, "getppid", lambda: 1)  # handed to another parent
        assert backend._parent_gone(alive.pid) is True
    finally:
        alive.kill()
        alive.wait(10)
        dead.wait(10)


def test_a_receiver_lets_go_of_the_segments_their_owner_removed():
    # A kept mapping holds its segment's memory even once the name is gone: the
    # next segment mapped drops the mappings of those removed meanwhile.
    from numap import _shm

    pools = [_shm.Pool(_shm.new_prefix(), 1) for _ in range(2)]
    receiver = _shm.Receiver()
    try:
        dropped = pools[0].put(memoryview(np.ones(MIB // 8)))
        held = pools[0].put(memoryview(np.full(MIB // 8, 3.0)))
        receiver.take(*dropped)  # mapped, the array dropped at once: the mapping stays
        array = receiver.take(*held).view(np.float64)  # this one stays in use
        pools[0].release([dropped[0]])  # freed by its receiver: kept, for the next item
        receiver.take(*pools[1].put(memoryview(np.ones(MIB // 8))))
        assert dropped[0] in receiver._maps and held[0] in receiver._maps
        pools[0].close()  # both removed by their owner
        later = pools[1].put(memoryview(np.ones(MIB // 8)))
        receiver.take(*later)
        assert dropped[0] not in receiver._maps and held[0] not in receiver._maps
        assert later[0] in receiver._maps
        assert float(array[0]) == 3.0  # an array keeps its own mapping
    finally:
        for pool in pools:
            pool.close()
            _shm.sweep(pool.prefix)


def test_a_segment_being_filled_when_numap_stops_is_not_left_behind(monkeypatch):
    # stop() closes the pool while the feeding thread may still be copying an item
    # into a segment it just made: that segment must go too.
    from numap import _shm

    pool = _shm.Pool(_shm.new_prefix(), 1)
    copy = _shm._copy

    def copy_while_stopping(target, source, split):
        copy(target, source, split)
        pool.close()  # stop() runs meanwhile

    monkeypatch.setattr(_shm, "_copy", copy_while_stopping)
    try:
        assert pool.put(memoryview(np.ones(MIB // 8))) is None  # not sent: stopped
        assert ours() == []
    finally:
        _shm.sweep(pool.prefix)


def test_the_pool_reuses_the_last_freed_of_the_segments_that_fit():
    # The last freed is the likeliest to be in the cache still: a copy into it with
    # ordinary stores need not fetch its lines from memory first.
    from numap import _shm

    pool = _shm.Pool(_shm.new_prefix(), 1)
    try:
        item = memoryview(np.ones(MIB // 8))
        names = [pool.put(item)[0] for _ in range(3)]
        larger = pool.put(memoryview(np.ones(MIB // 4 + 1)))[0]  # fits too, but larger
        pool.release([names[1], larger, names[0], names[2]])
        assert [pool.put(item)[0] for _ in range(3)] == [names[2], names[0], names[1]]
        assert pool.put(item)[0] == larger  # the only one left that fits
        assert pool.put(item)[0] not in {*names, larger}  # none left: a new one
    finally:
        pool.close()
        _shm.sweep(pool.prefix)
    assert ours() == []


def test_the_receiver_tells_the_owner_of_each_dropped_segment_until_forgotten():
    # A NuMap's getter is woken this way, to tell the worker at once (see
    # test_numap_alloc.py for the whole way round).
    from numap import _shm

    prefix = _shm.new_prefix()
    pools = [_shm.Pool(f"{prefix}w{n}-", 1) for n in (1, 2)]
    other = _shm.Pool(_shm.new_prefix(), 1)
    told = []
    try:
        sent = [pool.put(memoryview(np.ones(MIB // 8)))
                for pool in (*pools, other) for _ in range(2)]
        for pool in (*pools, other):  # as if made by another process
            _shm._LOCAL.pop(pool.prefix)
        _shm.RECEIVER.notify(f"{prefix}w", lambda: told.append(1))
        arrays = [_shm.RECEIVER.take(*placed) for placed in sent]
        del arrays[5], arrays[4]  # the other NuMap's: nobody is told
        assert told == []
        del arrays[0], arrays[2]  # one of each worker's
        assert told == [1, 1]
        assert _shm.RECEIVER.freed(pools[0].prefix) == [sent[0][0]]
        _shm.RECEIVER.forget(prefix)
        arrays.clear()  # the NuMap is gone: nobody is told
        assert told == [1, 1]
    finally:
        _shm.RECEIVER.forget(prefix)
        for pool in (*pools, other):
            pool.close()
            _shm.sweep(pool.prefix)
    assert ours() == []


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError),
                                          ("1MiB", TypeError), (1.5, TypeError)])
def test_a_bad_threshold_is_refused_naming_the_argument(value, error):
    with pytest.raises(error, match="shared_memory"):
        NuMap(worker_num=1, shared_memory=value)


def dies_on_fives(a):
    if a[0] % 5 == 4:
        os._exit(1)
    return float(a[0])


def test_the_segments_a_dead_worker_held_are_used_again():
    # A worker that dies never says it dropped the arrays it was given: the parent
    # takes their segments back itself, or each death costs /dev/shm one more.
    arrays = [np.full(MIB // 8, float(k)) for k in range(60)]
    numap = NuMap(dies_on_fives, arrays, worker_num=2, stride=1, buffer=2)
    out = []
    stream = iter(numap)
    while True:
        try:
            out.append(next(stream))
        except StopIteration:
            break
        except Exception as error:  # noqa: BLE001 - the items that killed their worker
            out.append(type(error).__name__)
    parents = [name for name in ours() if "w" not in name.rsplit("-", 2)[1]]
    numap.stop()
    assert out == ["WorkerLostError" if k % 5 == 4 else float(k) for k in range(60)]
    assert len(parents) <= 6, parents  # items in flight at once, not one per death
    assert ours() == []


def test_a_replaced_worker_gives_segments_back_too():
    arrays = [np.full(MIB // 8, float(k)) for k in range(200)]
    numap = NuMap(dies_on_three, arrays, worker_num=2, stride=2, buffer=4)
    counts, failed = [], 0
    stream = iter(numap)
    for k in range(200):
        try:
            next(stream)
        except StopIteration:
            break
        except Exception:  # noqa: BLE001 - the item that killed its worker
            failed += 1
        if k % 20 == 19:
            counts.append(len(ours()))
    numap.stop()
    assert failed == 1
    assert max(counts) <= 20, counts  # the replacement's frees reach the parent's pool
    assert ours() == []


def _no_room(fd, offset, size):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def doubled_without_room(a):
    # No file of more than 1 MiB here: /dev/shm refuses the worker's allocator too
    # (ftruncate fails with EFBIG instead of raising SIGXFSZ).
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (MIB, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return a * 2


def test_a_full_dev_shm_sends_arrays_through_the_pipe(monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", _no_room)  # the parent and forked workers
    arrays = [np.full(2 * MIB // 8, float(k)) for k in range(6)]
    with NuMap(doubled_without_room, arrays, worker_num=2) as numap:
        out = [float(a[0]) for a in numap]
        assert ours() == []  # no segment could be made: nothing half-made is left
    assert out == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_numpy_is_loaded_only_when_arrays_come():
    # A pipeline of plain Python objects does not pay for numpy (its import, and
    # the threads its BLAS library starts); arrays bring numpy along anyway.
    code = textwrap.dedent("""
        import sys
        import papyflow
        from numap import NuMap
        with NuMap(abs, [-1, -2], worker_num=1) as numap:
            assert list(numap) == [1, 2]
        print("numpy" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _bytes_in_segments() -> int:
    total = 0
    for name in ours():
        try:
            total += os.stat(os.path.join(SHM_FOLDER, name)).st_size
        except FileNotFoundError:  # removed meanwhile
            pass
    return total


def test_arrays_in_shared_memory_count_toward_the_buffer_bound():
    # The automatic buffer holds about 256 MiB of large items; arrays that travel
    # through shared memory count with their size, not with the few bytes that name
    # their segment, or a fast feeder would copy the whole input into /dev/shm.
    arrays = [np.full(MIB, float(k)) for k in range(4)]  # 8 MiB each

    def feed():
        for k in range(200):  # 1.6 GB in all
            yield arrays[k % 4].copy()  # distinct objects: the stage works in place

    peak = 0
    with NuMap(in_place, feed(), worker_num=2) as numap:
        for k, got in enumerate(numap):
            assert got[0] == float(k % 4) + 1
            del got
            time.sleep(0.01)  # a slow consumer: the feeder runs ahead if it may
            peak = max(peak, _bytes_in_segments())
    assert peak <= 450 * MIB, f"{peak / MIB:.0f} MiB of segments at once"
    assert not ours()


def slept_where(a):
    time.sleep(0.001)
    return os.getpid(), float(a[0])


def test_large_items_are_spread_over_every_worker(monkeypatch):
    # The size bound (16 MiB here) holds 16 arrays of 1 MiB: a batch sized for a
    # 1 ms function (about 20 items) would fill it alone, and the other worker
    # would wait for the whole run.
    monkeypatch.setattr("numap._map._MEMORY", 16 * MIB)
    arrays = [np.full(MIB // 8, float(k)) for k in range(200)]
    with NuMap(slept_where, arrays, worker_num=2) as numap:
        out = list(numap)
    assert [first for _, first in out] == [float(k) for k in range(200)]
    counts = sorted(Counter(pid for pid, _ in out).values())
    assert len(counts) == 2 and counts[0] >= 200 // 4, counts


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("nbytes", [1000, (4 << 20) + 13, 9 * MIB + 1])
def test_large_copies_split_in_two_halves_are_exact(nbytes, compiled, monkeypatch):
    from numap import _shm
    from numap._shm import _copy

    if not compiled:  # an install made without a C compiler: numpy copies
        monkeypatch.setattr(_shm, "_copy_bytes", None)
    monkeypatch.setattr(_shm, "STREAM_FROM", 1 << 20)  # these copies stream (and split)
    source = np.random.default_rng(nbytes).integers(0, 256, nbytes, dtype=np.uint8)
    for split in (False, True):
        target = np.zeros(nbytes, dtype=np.uint8)
        _copy(target, source, split)
        assert np.array_equal(target, source)


def test_the_copy_helper_thread_is_made_again_in_a_forked_process(monkeypatch):
    from numap import _shm

    if _shm._copy_bytes is None:
        pytest.skip("only a streaming copy is split, and this install has none")
    monkeypatch.setattr(_shm, "STREAM_FROM", 1 << 20)  # the copies below stream and split
    source = np.arange(5 * MIB, dtype=np.uint8)
    _shm._copy(np.empty_like(source), source, True)  # the helper exists here now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        target = np.empty_like(source)
        _shm._copy(target, source, True)  # the parent's thread is not in this process
        os._exit(0 if np.array_equal(target, source) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
