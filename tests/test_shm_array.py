"""SharedMemoryArray: the reference's examples, across threads and processes, and its errors."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import secrets
import threading

import multiprocess
import numpy as np
import pytest

from numap import NuMap
from papyflow.shm import SharedMemoryArray

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def name():
    """A fresh buffer name; the buffer is removed after the test whatever happens."""
    chosen = f"papyflow-test-{os.getpid()}-{secrets.token_hex(4)}"
    yield chosen
    SharedMemoryArray(chosen, (1,), np.uint8).destroy()
    assert not os.path.exists(f"/dev/shm/{chosen}")


def test_create_read_write_as_the_reference_shows(name):
    prototype = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint64)
    sma = SharedMemoryArray.create_array(name=name, prototype=prototype)
    assert (sma.name, sma.shape, sma.datatype) == (name, prototype.shape, prototype.dtype)
    assert sma.is_connected
    output = sma.read_data(index=2)
    assert output == np.uint64(3) and isinstance(output, np.uint64)
    output = sma.read_data(index=2, convert_output=True, with_lock=False)
    assert output == 3 and isinstance(output, int)
    assert sma.read_data(index=(0,), convert_output=True) == [1, 2, 3, 4, 5, 6]
    sliced = sma.read_data(index=(1, 4))
    assert isinstance(sliced, np.ndarray) and sliced.tolist() == [2, 3, 4]
    sma.write_data(index=1, data=7)
    sma.write_data(index=1, data=np.uint8(9))
    assert sma.read_data(index=1) == 9
    sma.write_data(index=(1, 3), data=[10, 11], with_lock=False)
    assert sma.read_data(index=(0,), convert_output=True) == [1, 10, 11, 4, 5, 6]
    assert sma.read_data(index=-1, convert_output=True) == 6
    sma.disconnect()
    assert not sma.is_connected
    sma.destroy()


def test_a_slice_read_is_a_copy(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(4, dtype=np.int32))
    taken = sma.read_data((0,))
    sma.write_data(0, 5)
    assert taken[0] == 0
    sma.destroy()


def _concurrent_worker(shared, index):
    shared.connect()
    while shared.read_data(index) < 200:
        value = shared.read_data(index)
        if value % 2 == 0 and value < 200:
            shared.write_data(index, value + 1)
    shared.disconnect()


@pytest.mark.parametrize("library", [multiprocess, multiprocessing])
def test_the_reference_two_process_example(name, library):
    sma = SharedMemoryArray.create_array(name, np.zeros(5, dtype=np.int32))
    context = library.get_context("fork")
    processes = [context.Process(target=_concurrent_worker, args=(sma, i)) for i in range(5)]
    for process in processes:
        process.start()
    while np.any(sma.read_data((0, 5)) < 200):
        for i in range(5):
            value = sma.read_data(i)
            if value % 2 != 0 and value < 200:
                sma.write_data(i, value + 1)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert np.all(sma.read_data((0, 5)) == 200)
    sma.disconnect()
    sma.destroy()


def _add_under_lock(shared, count):
    for _ in range(count):
        shared.connect()
        with shared._locked(True, exclusive=True) as array:  # read-modify-write at once
            array[0] += 1


def test_the_lock_holds_across_threads_and_processes(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(1, dtype=np.int64))
    threads = [threading.Thread(target=_add_under_lock, args=(sma, 500)) for _ in range(3)]
    process = multiprocess.get_context("fork").Process(target=_add_under_lock, args=(sma, 1500))
    process.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    process.join(30)
    assert sma.read_data(0, convert_output=True) == 3000
    sma.destroy()


def _write_pid(index, shared):
    shared.write_data(index, os.getpid())
    return shared.read_data(index, convert_output=True)


def test_numap_workers_reconnect_the_array_they_receive(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(8, dtype=np.int64))
    with NuMap(_write_pid, range(8), args=(sma,), worker_num=2) as numap:
        pids = list(numap)
    assert sma.read_data((0,), convert_output=True) == pids
    assert os.getpid() not in pids
    sma.destroy()


def test_a_two_dimensional_array(name):
    sma = SharedMemoryArray.create_array(name, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert sma.shape == (3, 4)
    assert sma.read_data(1, convert_output=True) == [4.0, 5.0, 6.0, 7.0]
    sma.write_data(2, [0, 0, 0, 0])
    assert sma.read_data((0,)).sum() == sum(range(8))
    sma.destroy()


# -- errors ---------------------------------------------------------------------------------


def test_a_name_in_use_is_refused_unless_asked(name):
    first = SharedMemoryArray.create_array(name, np.zeros(3))
    with pytest.raises(FileExistsError, match=f"named '{name}' exists"):
        SharedMemoryArray.create_array(name, np.zeros(3))
    second = SharedMemoryArray.create_array(name, np.ones(3), exist_ok=True)
    assert second.read_data((0,), convert_output=True) == [1.0, 1.0, 1.0]
    first.disconnect()
    second.destroy()


@pytest.mark.parametrize("bad", ["", "a/b", 7, ".", "..", "x" * 256, "\udcff", "a\ud800"])
def test_a_bad_name_is_refused(bad):
    with pytest.raises(ValueError, match="name must be"):
        SharedMemoryArray.create_array(bad, np.zeros(3))


def test_a_bad_prototype_is_refused(name):
    with pytest.raises(TypeError, match="prototype must be a numpy array"):
        SharedMemoryArray.create_array(name, [1, 2, 3])
    with pytest.raises(TypeError, match="Python objects"):
        SharedMemoryArray.create_array(name, np.array([object()]))
    with pytest.raises(ValueError, match="prototype must have at least one dimension, "
                                         r"got the 0-d array array\(5"):
        SharedMemoryArray.create_array(name, np.array(5, dtype=np.int32))
    # The constructor itself (as unpickling uses it): an object datatype would read its
    # bytes as pointers, a crash.
    with pytest.raises(TypeError, match="holds Python objects"):
        SharedMemoryArray(name, (4,), object)
    with pytest.raises(ValueError, match="negative dimensions"):
        SharedMemoryArray(name, (-3,), np.int64)


@pytest.mark.parametrize(("index", "error", "message"), [
    (6, IndexError, "index 6 is outside"),
    (-7, IndexError, "index -7 is outside"),
    ((0, 9), IndexError, r"slice \(0, 9\) is outside"),
    ((0, 1, 2), ValueError, "a slice index is"),
    ((4, 1), ValueError, r"slice \(4, 1\) .* ends before it starts"),
    ((-2, 1), ValueError, "ends before it starts"),
    ("1", TypeError, "index must be"),
    (1.0, TypeError, "index must be"),
])
def test_a_bad_index_is_refused(name, index, error, message):
    sma = SharedMemoryArray.create_array(name, np.zeros(6, dtype=np.uint64))
    with pytest.raises(error, match=message):
        sma.read_data(index)
    with pytest.raises(error, match=message):
        sma.write_data(index, 1)
    sma.destroy()


@pytest.mark.parametrize(("data", "error", "message"), [
    (1.5, TypeError, "cannot write float64"),
    (-1, ValueError, "does not fit"),
    ("x", TypeError, "cannot write"),
    ([1, 2, 3], ValueError, "cannot write"),
])
def test_data_that_does_not_fit_is_refused(name, data, error, message):
    sma = SharedMemoryArray.create_array(name, np.zeros(6, dtype=np.uint64))
    index = (0, 2) if isinstance(data, list) else 0
    with pytest.raises(error, match=message):
        sma.write_data(index, data)
    assert sma.read_data((0,), convert_output=True) == [0] * 6  # nothing written
    sma.destroy()


@pytest.mark.parametrize(("datatype", "data", "error", "message"), [
    (np.float32, 1e300, ValueError, r"1e\+300 does not fit .* of float32"),
    (np.float16, [1.0, 70000.0], ValueError, "does not fit .* of float16"),
    (np.float16, np.uint64(2**64 - 1), ValueError, "does not fit"),
    (np.complex64, 1e300 + 1j, ValueError, "does not fit"),
    (np.bool_, 5, TypeError, "cannot write int64 data 5 .* of bool"),
    (np.bool_, [1, 0], TypeError, "cannot write int64"),
])
def test_a_value_the_datatype_cannot_hold_is_refused(name, datatype, data, error, message):
    sma = SharedMemoryArray.create_array(name, np.zeros(2, dtype=datatype))
    index = (0, 2) if isinstance(data, list) else 0
    with pytest.raises(error, match=message):
        sma.write_data(index, data)
    assert not sma.read_data((0,)).any()  # nothing written
    zeros = np.zeros(2, dtype=datatype)
    sma.write_data(index, zeros if isinstance(data, list) else zeros[0])  # its own type
    sma.destroy()


def test_reading_without_a_connection_is_a_clear_error(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(3))
    sma.disconnect()
    with pytest.raises(RuntimeError, match="not connected in this process"):
        sma.read_data(0)
    sma.destroy()
    with pytest.raises(FileNotFoundError, match=f"no shared memory buffer named '{name}'"):
        sma.connect()


def test_a_full_dev_shm_is_a_clear_error_and_leaves_nothing(name, monkeypatch):
    import errno

    def no_room(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    with pytest.raises(OSError, match=f"cannot make shared memory buffer '{name}'") as caught:
        SharedMemoryArray.create_array(name, np.zeros(1000))
    assert caught.value.errno == errno.ENOSPC
    assert not os.path.exists(f"/dev/shm/{name}")


def _read_first(shared):
    shared.read_data(0)


def test_a_child_forked_while_another_thread_holds_the_lock_can_use_the_array(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(4, dtype=np.int64))
    held, release = threading.Event(), threading.Event()

    def hold():
        with sma._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        child = multiprocess.get_context("fork").Process(target=_read_first, args=(sma,))
        child.start()  # the child's copy of the lock: held by a thread it does not have
        child.join(20)  # it takes milliseconds; a child that hangs is killed
        if child.exitcode is None:
            child.kill()
            child.join()
    finally:
        release.set()
        holder.join()
    assert child.exitcode == 0
    sma.destroy()


def test_a_structured_array_keeps_its_fields_through_pickle(name):
    datatype = np.dtype([("a", "i4"), ("b", "f8")])
    sma = SharedMemoryArray.create_array(name, np.zeros(3, datatype))
    sma.write_data(1, np.array((3, 4.5), datatype))
    clone = pickle.loads(pickle.dumps(sma))
    assert clone.datatype == datatype
    assert clone.read_data(1, convert_output=True) == (3, 4.5)
    clone.disconnect()
    sma.destroy()


def test_an_empty_slice_takes_empty_data(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(0, dtype=np.int32))
    sma.write_data((0,), [])
    assert sma.read_data((0,)).tolist() == []
    sma.destroy()
    sma = SharedMemoryArray.create_array(name, np.arange(3, dtype=np.int32))
    sma.write_data((1, 1), [])
    with pytest.raises(ValueError, match=r"shape \(0,\) .* the slice has the shape \(2,\)"):
        sma.write_data((0, 2), [])
    assert sma.read_data((0,), convert_output=True) == [0, 1, 2]
    sma.destroy()


def test_disconnect_under_a_reading_thread_gives_only_the_documented_error(name):
    sma = SharedMemoryArray.create_array(name, np.arange(1000, dtype=np.int64))
    other: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                sma.read_data((0,))
                sma.write_data(3, 3)
            except RuntimeError:
                pass  # "not connected": documented
            except Exception as exc:  # noqa: BLE001 - anything else is the defect
                other.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(3000):
            sma.disconnect()
            sma.connect()
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
        sma.destroy()
    assert other == []


def test_records_are_written_only_as_they_are(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(3, [("a", "i4"), ("b", "f8")]))
    try:
        sma.write_data(0, (1, 2.5))
        sma.write_data((1, 3), [(2, 3.5), (3, 4.5)])
        sma.write_data(2, np.array((4, 5.5), dtype=[("a", "i2"), ("b", "f8")]))  # safe cast
        assert sma.read_data((0,), convert_output=True) == [(1, 2.5), (2, 3.5), (4, 5.5)]
        for bad, error, words in (
                (7.9, TypeError, "give a tuple per record"),  # numpy would fill every field
                ((7.9, 1.0), TypeError, "cannot write float64 data"),  # 'a' would be 7
                ((2**40, 1.0), ValueError, "does not fit"),  # 'a' would wrap
                ((1,), ValueError, "has 1 fields"),
                (np.array((1.9, 2.5), dtype=[("a", "f8"), ("b", "f8")]), TypeError,
                 "without changing them")):
            with pytest.raises(error, match=words):
                sma.write_data(0, bad)
        assert sma.read_data(0, convert_output=True) == (1, 2.5)
    finally:
        sma.destroy()


@pytest.mark.parametrize(("prototype", "bad", "error", "words"), [
    (np.zeros(2, np.int32), 2**70, ValueError, "does not fit"),
    (np.zeros(2, np.uint64), [1, 2**64], ValueError, "does not fit"),
    (np.zeros(2, np.int32), np.datetime64("2020-01-01"), TypeError, "cannot write datetime64"),
    (np.array([b"abc", b"def"]), b"abcdefgh", ValueError, "at most 3 characters"),
    # numpy would store the number's text cut to the length: '123', 'Tru'
    (np.array(["abc", "def"]), 1234, TypeError, "cannot write int64"),
    (np.array([b"abc", b"def"]), True, TypeError, "cannot write bool"),
    (np.array(["abc", "def"]), [1.5, 2.5], TypeError, "cannot write float64"),
])
def test_what_would_change_is_refused(name, prototype, bad, error, words):
    sma = SharedMemoryArray.create_array(name, prototype)
    try:
        with pytest.raises(error, match=words):
            sma.write_data(0, bad)
        assert sma.read_data(0) == prototype[0]
    finally:
        sma.destroy()


def test_dates_and_durations_are_written_only_as_they_are(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(2, dtype="M8[s]"))
    try:
        sma.write_data(0, np.datetime64("2020-01-01"))  # days hold in seconds exactly
        sma.write_data(1, np.datetime64("2020-01-01T12:00:01.000"))
        # numpy would store 12:00:00 (cut), and a duration as a date after 1970
        with pytest.raises(ValueError, match=r"does not fit .* \(it would change"):
            sma.write_data(1, np.datetime64("2020-01-01T12:00:00.500"))
        with pytest.raises(TypeError, match="cannot write timedelta64"):
            sma.write_data(1, np.timedelta64(5, "s"))
        assert sma.read_data((0,)).tolist() == [np.datetime64("2020-01-01T00:00:00").item(),
                                                np.datetime64("2020-01-01T12:00:01").item()]
    finally:
        sma.destroy()
    wide = SharedMemoryArray.create_array(name, np.zeros(1, dtype="M8[ns]"))
    try:
        with pytest.raises(ValueError, match="does not fit"):  # numpy would wrap it to 1830
            wide.write_data(0, np.datetime64("3000-01-01"))
        with pytest.raises(TypeError, match="cannot write datetime64"):
            SharedMemoryArray.create_array(name + "d", np.zeros(1, dtype="m8[s]")).write_data(
                0, np.datetime64("2020-01-01"))
        assert wide.read_data(0) == np.datetime64(0, "ns")
    finally:
        wide.destroy()
        SharedMemoryArray(name + "d", (1,), np.uint8).destroy()


def test_dropped_copies_give_their_descriptors_back(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(4, dtype=np.int64))
    pickled = pickle.dumps(sma)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):  # what a NuMap worker does for each item that carries the array
        copy = pickle.loads(pickled)
        assert copy.read_data(0) == 0
        del copy
    assert len(os.listdir("/proc/self/fd")) == before
    sma.destroy()


def test_python_ints_beyond_int64_go_where_they_fit(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(3, dtype=np.uint64))
    sma.write_data((0, 2), [2**63, 1])
    sma.write_data(2, 2**64 - 1)
    assert sma.read_data((0,), convert_output=True) == [2**63, 1, 2**64 - 1]
    with pytest.raises(ValueError, match="does not fit"):
        sma.write_data((0, 2), [2**64, 1])
    with pytest.raises(TypeError, match="cannot write"):
        sma.write_data((0, 2), [2**63, 1.5])
    assert sma.read_data((0,), convert_output=True) == [2**63, 1, 2**64 - 1]
    sma.destroy()
    table = SharedMemoryArray.create_array(name, np.zeros((2, 2), dtype=np.uint64))
    table.write_data((0,), [[2**63, 0], [1, 2**64 - 1]])
    assert table.read_data((0,), convert_output=True) == [[2**63, 0], [1, 2**64 - 1]]
    table.destroy()
    floats = SharedMemoryArray.create_array(name, np.zeros(2, dtype=np.float64))
    floats.write_data(0, 10**20)
    floats.write_data(1, 2**64)
    assert floats.read_data((0,), convert_output=True) == [1e20, float(2**64)]
    with pytest.raises(ValueError, match="does not fit"):
        floats.write_data(0, 10**400)
    floats.destroy()


def test_numpy_numbers_beside_big_ints_are_checked_as_ever(name):
    sma = SharedMemoryArray.create_array(name, np.zeros(2, dtype=np.uint64))
    for data in ([2**63, np.int64(-1)], [2**63, np.int8(-1)]):
        with pytest.raises(TypeError, match="cannot write"):  # never wrapped to 2**64 - 1
            sma.write_data((0,), data)
    assert sma.read_data((0,), convert_output=True) == [0, 0]
    sma.destroy()
    floats = SharedMemoryArray.create_array(name, np.zeros(2, dtype=np.float64))
    for data in ([10**20, np.complex128(1 + 2j)], [10**20, 1 + 2j], [10**20, np.timedelta64(3)]):
        with pytest.raises(TypeError, match=f"cannot write .* to shared memory array '{name}'"):
            floats.write_data((0,), data)
    assert floats.read_data((0,), convert_output=True) == [0.0, 0.0]
    floats.destroy()
    wide = SharedMemoryArray.create_array(name, np.zeros(2, dtype=np.longdouble))
    wide.write_data((0,), [10**400, 2**63 + 1])  # fit a longdouble, exactly
    assert int(wide.read_data(1)) == 2**63 + 1 and wide.read_data(0) > 1e308
    wide.destroy()


def test_a_sequence_is_never_repeated_over_a_longer_slice(name):
    sma = SharedMemoryArray.create_array(name, np.arange(6, dtype=np.int32))
    with pytest.raises(ValueError, match=r"shape \(1,\) at \(2,\) .* the slice has the shape \(4,\)"):
        sma.write_data((2,), [99])
    with pytest.raises(ValueError, match="the element has the shape"):
        sma.write_data(1, [99])
    assert sma.read_data((0,), convert_output=True) == [0, 1, 2, 3, 4, 5]
    sma.write_data((4,), 9)  # a scalar fills the slice, as documented
    assert sma.read_data((0,), convert_output=True) == [0, 1, 2, 3, 9, 9]
    sma.destroy()
    table = SharedMemoryArray.create_array(name, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape \(2,\) .* the slice has the shape \(3, 2\)"):
        table.write_data((0,), [1.0, 2.0])  # one row for three
    table.write_data(1, [1.0, 2.0])  # one row for one
    assert table.read_data((0,), convert_output=True) == [[0, 0], [1, 2], [0, 0]]
    table.destroy()
