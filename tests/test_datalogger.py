"""DataLogger: the reference's example, the file layout, the bound of the queue, the Plumber adapter."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import multiprocess
import numpy as np
import pytest

from numap import NuMap
from papyflow import Piper, Plumber
from papyflow.datalogger import (
    DataLogger,
    DuplicatePackageError,
    LoggerClosedError,
    LogPackage,
    LogQueue,
    Phase,
    compress_logs,
    log_results,
    serialize,
)
from papyflow.datalogger import compress as compress_module
from papyflow.datalogger.package import npy_header
from tests.pipeline_helpers import inc

pytestmark = pytest.mark.timeout(60)

FORK = multiprocess.get_context("fork")


def _npy(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.npy"))


def test_the_reference_example(tmp_path):
    logger = DataLogger(output_directory=tmp_path, instance_name="my_name")
    assert logger.output_directory == tmp_path / "my_name_data_log"
    assert logger.output_directory.is_dir()
    logger.start()
    queue = logger.input_queue
    first, second = time.perf_counter_ns(), time.perf_counter_ns() + 1
    queue.put(LogPackage(1, first, np.array([1, 2, 3, 4, 5], dtype=np.uint8)))
    queue.put(LogPackage(1, second, np.array([6, 7, 8, 9, 10], dtype=np.uint8)))
    logger.shutdown()
    files = list(tmp_path.glob("**/*.npy"))
    assert sorted(f.name for f in files) == [f"1_{first:020d}.npy", f"1_{second:020d}.npy"]
    assert np.load(logger.output_directory / f"1_{first:020d}.npy").tolist() == [1, 2, 3, 4, 5]
    logger.compress_logs(remove_sources=True)
    assert not list(tmp_path.glob("**/*.npy"))
    [archive] = tmp_path.glob("**/*.npz")
    assert archive.name == "1_data_log.npz"
    with np.load(archive) as data:
        assert sorted(data.files) == [f"1_{first:020d}", f"1_{second:020d}"]
        assert data[f"1_{second:020d}"].tolist() == [6, 7, 8, 9, 10]


def test_the_npy_header_is_what_numpy_writes_and_reads(tmp_path):
    for size in (0, 1, 63, 64, 1000, 10**7):
        header = npy_header(size)
        assert len(header) % 64 == 0
        path = tmp_path / "a.npy"
        path.write_bytes(header + bytes(range(256)) * (size // 256) + bytes(size % 256))
        array = np.load(path, mmap_mode="r")
        assert array.dtype == np.uint8 and array.shape == (size,)


@pytest.mark.parametrize("bad, message", [
    ({"source_id": 256}, "source_id: expected an integer in [0, 255], got 256"),
    ({"source_id": 1.0}, "source_id: expected an integer in [0, 255], got 1.0 (float)"),
    ({"time_stamp": -1}, "time_stamp: expected an integer in [0, 18446744073709551615], got -1"),
    ({"serialized_data": np.zeros(3, np.int32)}, "expected a uint8 NumPy array, got int32"),
    ({"serialized_data": [1, 2]}, "expected a uint8 NumPy array or a bytes-like object, got list"),
])
def test_a_package_names_the_field_that_is_wrong(bad, message):
    fields = {"source_id": 1, "time_stamp": 2, "serialized_data": np.zeros(2, np.uint8)} | bad
    with pytest.raises((TypeError, ValueError)) as info:
        LogPackage(**fields)
    assert message in str(info.value)


def test_a_package_takes_numpy_integers_and_bytes():
    package = LogPackage(np.uint8(7), np.uint64(2**64 - 1), b"\x01\x02")
    assert package.source_id == 7 and type(package.source_id) is int
    assert package.serialized_data.dtype == np.uint8
    assert package.file_name == "7_18446744073709551615.npy"
    two_d = LogPackage(1, 1, np.arange(6, dtype=np.uint8).reshape(2, 3).T)
    assert two_d.serialized_data.tolist() == [0, 3, 1, 4, 2, 5]
    import array

    for bytes_like in (array.array("B", b"ab"), memoryview(b"a-b-")[::2], bytearray(b"ab")):
        assert LogPackage(1, 1, bytes_like).serialized_data.tobytes() == b"ab"
    # A record: equal when its fields are, and hashable (the data compared, not hashed).
    assert LogPackage(1, 1, b"ab") == LogPackage(1, 1, np.frombuffer(b"ab", np.uint8))
    assert LogPackage(1, 1, b"ab") != LogPackage(1, 1, b"ac")
    assert len({LogPackage(1, 1, b"ab"), LogPackage(1, 1, b"ab"), LogPackage(1, 2, b"")}) == 2


def test_the_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="process_count must be an integer >= 1, got 0"):
        DataLogger(tmp_path, process_count=0)
    with pytest.raises(ValueError, match="instance_name"):
        DataLogger(tmp_path, instance_name="a/b")
    with pytest.raises(ValueError, match="instance_name"):
        DataLogger(tmp_path, instance_name="a\0b")
    with pytest.raises(TypeError, match="output_directory must be a path"):
        DataLogger(5)
    for bad in (0, -1.0, math.inf, math.nan, True, "5"):
        with pytest.raises(ValueError, match="saver_timeout must be a number of seconds > 0"):
            DataLogger(tmp_path, saver_timeout=bad)


def test_put_before_start_and_after_shutdown_is_refused(tmp_path):
    logger = DataLogger(tmp_path)
    package = LogPackage(1, 1, b"x")
    with pytest.raises(LoggerClosedError):
        logger.input_queue.put(package)
    with pytest.raises(TypeError, match="expected a LogPackage, got tuple"):
        logger.input_queue.put((1, 1, b"x"))
    logger.start()
    assert logger.phase is Phase.RUNNING
    logger.input_queue.put(package)
    logger.shutdown()
    assert logger.phase is Phase.STOPPED
    with pytest.raises(LoggerClosedError):
        logger.input_queue.put(LogPackage(1, 2, b"y"))
    assert [p.name for p in _npy(logger.output_directory)] == [f"1_{1:020d}.npy"]
    logger.shutdown()  # a second shutdown does nothing


def test_a_logger_restarts_and_works_as_a_context_manager(tmp_path):
    logger = DataLogger(tmp_path, process_count=2, thread_count=2)
    for run in range(2):
        with logger:
            for stamp in range(100):
                logger.input_queue.put(LogPackage(run, stamp, np.full(10, stamp, np.uint8)))
    assert len(_npy(logger.output_directory)) == 200
    stats = logger.statistics()
    assert (stats.received, stats.saved, stats.failed, stats.held) == (100, 100, 0, 0)


def _produce(queue: LogQueue, source: int, count: int, size: int) -> None:
    for stamp in range(count):
        queue.put(LogPackage(source, stamp, np.full(size, stamp % 251, np.uint8)))


@pytest.mark.parametrize("size", [16, 3 << 20])
def test_several_processes_and_threads_lose_nothing(tmp_path, size):
    count = 2000 if size < 1000 else 6
    logger = DataLogger(tmp_path, process_count=2, thread_count=3, queue_bytes=8 << 20)
    logger.start()
    producers = [FORK.Process(target=_produce, args=(logger.input_queue, s, count, size))
                 for s in (1, 2)]
    for process in producers:
        process.start()
    threads = [threading.Thread(target=_produce, args=(logger.input_queue, s, count, size))
               for s in (3, 4)]
    for thread in threads:
        thread.start()
    for process in producers:
        process.join()
    for thread in threads:
        thread.join()
    assert all(p.exitcode == 0 for p in producers)
    logger.shutdown()
    files = _npy(logger.output_directory)
    assert len(files) == 4 * count
    for source in (1, 4):
        for stamp in (0, count - 1):
            data = np.load(logger.output_directory / f"{source}_{stamp:020d}.npy")
            assert data.shape == (size,) and (data == stamp % 251).all()
    assert not [p for p in logger.output_directory.iterdir() if p.suffix != ".npy"]


def test_the_queue_is_bounded_so_a_stalled_disk_blocks_producers(tmp_path):
    logger = DataLogger(tmp_path, process_count=1, thread_count=1, queue_size=8)
    logger.start()
    [saver] = logger.saver_pids
    os.kill(saver, signal.SIGSTOP)  # a disk that does not answer
    done = []

    def produce():
        for stamp in range(300):
            logger.input_queue.put(LogPackage(1, stamp, np.zeros(20_000, np.uint8)))
            done.append(stamp)

    thread = threading.Thread(target=produce)
    try:
        thread.start()
        time.sleep(1.0)
        blocked_at = len(done)
        assert blocked_at < 100, "put should block once the bound is reached"
        held = logger.statistics().held
        # The bound, plus what one read of a socket may bring (at most 256 KiB).
        assert held <= 8 + (1 << 18) // 20_000 + 1
    finally:
        os.kill(saver, signal.SIGCONT)
    thread.join(30)
    logger.shutdown()
    assert len(done) == 300
    assert len(_npy(logger.output_directory)) == 300


def _join_or_kill(processes) -> None:
    """Wait up to 30 s for each process to end; kill one still running then."""
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()


def _put_many(queue: LogQueue, source: int, ready) -> None:
    packages = [LogPackage(source, stamp, np.zeros(20_000, np.uint8)) for stamp in range(40)]
    ready.wait()
    for package in packages:
        queue.put(package)


def test_many_producers_at_the_bound_add_one_read_not_one_read_each(tmp_path):
    # Sixteen producers with bytes waiting, a disk that does not answer: once a read
    # reaches the bound, the others in that round of events are not read (each used
    # to bring what its socket held: 44 to 88 packages held for a bound of 8).
    logger = DataLogger(tmp_path, process_count=1, thread_count=1, queue_size=8,
                        saver_timeout=None)
    logger.start()
    [saver] = logger.saver_pids
    ready = FORK.Barrier(17)
    producers = [FORK.Process(target=_put_many, args=(logger.input_queue, source, ready))
                 for source in range(16)]
    os.kill(saver, signal.SIGSTOP)
    try:
        for producer in producers:
            producer.start()
        ready.wait(20)
        time.sleep(1.0)  # time for every producer's bytes to come, were they read
        # The bound, plus what one read of a socket may bring (at most 256 KiB).
        assert logger.statistics().held <= 8 + (1 << 18) // 20_000 + 1
    finally:
        os.kill(saver, signal.SIGCONT)
        _join_or_kill(producers)
        logger.shutdown()
    assert [producer.exitcode for producer in producers] == [0] * 16
    assert len(_npy(logger.output_directory)) == 16 * 40


def _put_large(queue: LogQueue, source: int, size: int, ready) -> None:
    package = LogPackage(source, 1, np.full(size, source, np.uint8))
    ready.wait()
    queue.put(package)


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_large_packages_sent_at_once_hold_one_beyond_the_bound_not_one_each(tmp_path):
    # Four producers send a package larger than the bound at once, to a disk that does
    # not answer: the logger takes one whole and leaves the others in their sockets
    # (each used to get a buffer of its package's size, filled as its bytes came).
    size = 16 * 2**20
    logger = DataLogger(tmp_path, process_count=1, thread_count=1, queue_bytes=2**20,
                        saver_timeout=None)
    logger.start()
    [saver] = logger.saver_pids
    ready = FORK.Barrier(5)  # the four put at once
    producers = [FORK.Process(target=_put_large, args=(logger.input_queue, source, size, ready))
                 for source in range(4)]
    os.kill(saver, signal.SIGSTOP)
    try:
        before = _resident_bytes()
        for producer in producers:
            producer.start()
        ready.wait(20)
        deadline = time.monotonic() + 20
        while logger.statistics().received < 1:
            assert time.monotonic() < deadline, "no package came"
            time.sleep(0.01)
        time.sleep(1.0)  # time for the others' bytes to come, were they read
        assert _resident_bytes() - before < 2 * size
        assert logger.statistics().received == 1
    finally:
        os.kill(saver, signal.SIGCONT)
        _join_or_kill(producers)
        logger.shutdown()
    assert [producer.exitcode for producer in producers] == [0] * 4
    for source in range(4):
        data = np.load(logger.output_directory / f"{source}_{1:020d}.npy")
        assert data.size == size and (data == source).all()


def test_compressing_twice_keeps_both_runs(tmp_path):
    logger = DataLogger(tmp_path)
    with logger:
        for stamp in range(5):
            logger.input_queue.put(LogPackage(2, stamp, np.full(3, stamp, np.uint8)))
    first = logger.compress_logs(remove_sources=True)
    assert list(first) == [2]
    with logger:
        for stamp in range(5, 8):
            logger.input_queue.put(LogPackage(2, stamp, np.full(3, stamp, np.uint8)))
        logger.input_queue.put(LogPackage(9, 1, np.full(3, 1, np.uint8)))
    archives = compress_logs(logger.output_directory)  # keeps the sources
    assert sorted(archives) == [2, 9]
    assert len(_npy(logger.output_directory)) == 4
    with np.load(archives[2]) as data:
        assert sorted(data.files) == [f"2_{s:020d}" for s in range(8)]
        assert data[f"2_{6:020d}"].tolist() == [6, 6, 6]
    assert not list(logger.output_directory.glob(".*"))


def test_compressing_never_replaces_an_archived_package(tmp_path):
    logger = DataLogger(tmp_path, thread_count=1)
    with logger:
        logger.input_queue.put(LogPackage(1, 5, b"first"))
        logger.input_queue.put(LogPackage(1, 6, b"same"))
    logger.compress_logs(remove_sources=True)
    with logger:  # the same names again: one with other bytes, one the same
        logger.input_queue.put(LogPackage(1, 5, b"second"))
        logger.input_queue.put(LogPackage(1, 6, b"same"))
        logger.input_queue.put(LogPackage(1, 7, b"new"))
    with pytest.raises(DuplicatePackageError, match="time stamp 5") as raised:
        logger.compress_logs(remove_sources=True)
    assert [(s, t) for s, t, _ in raised.value.clashes] == [(1, 5)]
    # the file was written and is kept: the error says so, not "was not written"
    assert "is in the archive 1_data_log.npz already, with other contents; this file was " \
        "left out of the archive and kept" in str(raised.value)
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args
    with np.load(logger.output_directory / "1_data_log.npz") as archive:
        got = {key: archive[key].tobytes() for key in archive.files}
    assert got == {f"1_{5:020d}": b"first", f"1_{6:020d}": b"same", f"1_{7:020d}": b"new"}
    kept = _npy(logger.output_directory)  # the clashing file stays, the others went in
    assert [p.name for p in kept] == [f"1_{5:020d}.npy"]
    assert np.load(kept[0]).tobytes() == b"second"


def test_serialize_keeps_bytes_of_arrays_and_pickles_the_rest():
    assert serialize(np.array([1, 2], dtype=np.uint16)).tolist() == [1, 0, 2, 0]
    assert serialize(b"ab").tolist() == [97, 98]
    value = {"a": [1, 2.5]}
    assert pickle.loads(serialize(value).tobytes()) == value


def test_serialize_keeps_the_mask_of_a_masked_array():
    # Its raw bytes hold the data under the mask too: the mask was lost in silence.
    value = np.ma.array([1, 2, 3], mask=[False, True, False])
    back = pickle.loads(serialize(value).tobytes())
    assert isinstance(back, np.ma.MaskedArray)
    assert back.mask.tolist() == [False, True, False] and back.data.tolist() == [1, 2, 3]


def test_log_results_is_picklable_and_validates(tmp_path):
    logger = DataLogger(tmp_path)
    worker = log_results(logger, 3)
    clone = pickle.loads(pickle.dumps(worker))
    assert clone.source_id == 3 and repr(clone.queue) == repr(logger.input_queue)
    with pytest.raises(ValueError, match="source_id"):
        log_results(logger, 300)
    with pytest.raises(TypeError, match="expected a DataLogger"):
        log_results(object(), 1)
    with pytest.raises(TypeError, match="serializer must be callable, got str"):
        log_results(logger, 1, serializer="pickle")  # checked now, not as every item fails


_EXIT_WITHOUT_SHUTDOWN = """
import sys
from papyflow.datalogger import DataLogger, LogPackage
logger = DataLogger(sys.argv[1], instance_name="left", thread_count=1)
logger.start()
for stamp in range(int(sys.argv[2])):
    logger.input_queue.put(LogPackage(1, stamp, b"x" * 100))
print(logger.input_queue._address)
"""


_DROPPED_WITHOUT_SHUTDOWN = """
import gc, sys
from papyflow.datalogger import DataLogger, LogPackage
def produce():
    logger = DataLogger(sys.argv[1], instance_name="left", thread_count=1)
    logger.start()
    queue = logger.input_queue
    for stamp in range(int(sys.argv[2])):
        queue.put(LogPackage(1, stamp, b"x" * 100))
    return queue  # the logger itself is dropped here
queue = produce()
gc.collect()
print(queue._address)
"""


@pytest.mark.parametrize("script", [_EXIT_WITHOUT_SHUTDOWN, _DROPPED_WITHOUT_SHUTDOWN],
                         ids=["kept", "dropped"])
def test_a_logger_left_running_at_exit_saves_what_it_accepted(tmp_path, script):
    import subprocess
    import sys

    count = 3000
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(count)],
                          check=False, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert len(_npy(tmp_path / "left_data_log")) == count
    assert not Path(done.stdout.strip()).parent.exists()  # the socket's folder is gone


def test_an_exit_handler_in_a_forked_worker_leaves_the_parents_logger_alone(tmp_path):
    logger = DataLogger(tmp_path, thread_count=1)
    logger.start()
    try:
        with NuMap(inc, [(1,), (2,)], worker_type="process", worker_num=1) as results:
            assert list(results) == [2, 3]  # the worker ran its exit handlers as it left
        assert logger.started
        logger.input_queue.put(LogPackage(1, 1, b"still here"))
    finally:
        logger.shutdown()
    assert len(_npy(logger.output_directory)) == 1


def test_a_log_queue_refuses_to_be_written_as_source(tmp_path):
    from papyflow.archive import Archive, UnarchivableError

    archive = Archive(allow_dill=True)
    archive.insert(worker=log_results(DataLogger(tmp_path), 1))
    with pytest.raises(UnarchivableError, match=r"input of a DataLogger of this process "
                                                r"\(a socket it serves while it runs\), which "
                                                r"a saved file cannot hold"):
        archive.source()


def _load_results(directory: Path, source: int) -> list:
    return sorted(pickle.loads(np.load(p).tobytes()) for p in directory.glob(f"{source}_*.npy"))


@pytest.mark.parametrize("parallel", [False, "process"])
def test_a_plumber_logs_a_pipers_results(tmp_path, parallel):
    logger = DataLogger(tmp_path, thread_count=2)
    logger.start()
    numap = NuMap(worker_type="process", worker_num=2) if parallel else False
    try:
        plumber = Plumber()
        compute = Piper(inc, name="compute")
        logged = Piper(log_results(logger, source_id=5), parallel=numap, name="log", track=True)
        plumber.add_pipe((compute, logged))
        plumber.start([range(40)])
        plumber.run()
        plumber.wait(30)
        results = plumber.stats["pipers_tracked"][logged][0]
        plumber.stop()
    finally:
        if numap:
            numap.stop()
        logger.shutdown()
    assert sorted(results.values()) == list(range(1, 41))  # items pass on unchanged
    assert _load_results(logger.output_directory, 5) == list(range(1, 41))


def _put_one(queue: LogQueue, source: int, stamp: int) -> None:
    queue.put(LogPackage(source, stamp, b"abc"))


def test_a_producer_process_reconnects_after_a_restart(tmp_path):
    logger = DataLogger(tmp_path)
    logger.start()
    worker = FORK.Process(target=_put_one, args=(logger.input_queue, 1, 1))
    worker.start()
    worker.join()
    logger.shutdown()
    logger.start()
    # The same queue object, in a child forked while the parent held its lock.
    with logger.input_queue._lock:
        worker = FORK.Process(target=_put_one, args=(logger.input_queue, 1, 2))
        worker.start()
        worker.join(20)
    logger.input_queue.put(LogPackage(1, 3, b"abc"))
    logger.shutdown()
    assert worker.exitcode == 0
    assert len(_npy(logger.output_directory)) == 3


def _log_one(worker) -> None:
    worker([41])


def test_a_child_forked_while_a_stamp_is_taken_still_logs(tmp_path):
    from papyflow.datalogger import input_queue

    logger = DataLogger(tmp_path)
    logger.start()
    worker = log_results(logger, source_id=4)
    try:
        # Forked while another thread of the parent holds the clock's lock.
        with input_queue._clock_lock:
            child = FORK.Process(target=_log_one, args=(worker,))
            child.start()
        child.join(20)
        if child.is_alive():
            child.kill()
            child.join()
    finally:
        logger.shutdown()
    assert child.exitcode == 0
    assert _load_results(logger.output_directory, 4) == [41]


def _log_many(worker, count: int) -> None:
    for value in range(count):
        worker([value])


def test_processes_logging_under_one_source_never_share_a_time_stamp(tmp_path, monkeypatch):
    # A clock that never moves: each stamp meets the other processes' unless they share
    # one (the worker processes of a parallel log Piper all log under its source_id).
    monkeypatch.setattr(time, "time_ns", lambda: 10**18)
    logger = DataLogger(tmp_path, thread_count=2)
    worker = log_results(logger, source_id=6)
    children = []
    try:
        logger.start()
        children = [FORK.Process(target=_log_many, args=(worker, 300)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
        logger.shutdown()
        # A run started again goes on from the last run's stamps (the files are there).
        logger.start()
        children.append(FORK.Process(target=_log_many, args=(worker, 10)))
        children[-1].start()
        children[-1].join(30)
        logger.shutdown()
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
        logger.shutdown()
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert logger.failures == ()
    assert _load_results(logger.output_directory, 6) == sorted(2 * list(range(300))
                                                                 + list(range(10)))


def test_the_logger_itself_does_not_pickle_and_says_what_does(tmp_path):
    logger = DataLogger(tmp_path)
    with pytest.raises(TypeError, match=r"cannot be pickled \(it owns its saver processes and "
                                        r"their socket\): give other processes its "
                                        r"input_queue"):
        pickle.dumps(logger)
    pickle.dumps(logger.input_queue)  # that does


_INTERRUPTED_SHUTDOWN = """
import os, signal, sys, threading
import numpy as np
from papyflow.datalogger import DataLogger, LogPackage
logger = DataLogger(sys.argv[1], instance_name="stopped", process_count=1, thread_count=1)
logger.start()
for stamp in range(int(sys.argv[2])):
    logger.input_queue.put(LogPackage(1, stamp, np.zeros(20_000, np.uint8)))
threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT)).start()
logger.shutdown()  # a Ctrl-C while it waits: the script ends with KeyboardInterrupt
"""


def test_a_ctrl_c_while_shutdown_waits_loses_nothing_accepted(tmp_path):
    import subprocess
    import sys

    count = 4000
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_SHUTDOWN, str(tmp_path),
                           str(count)], check=False, capture_output=True, text=True,
                          timeout=50)
    assert "KeyboardInterrupt" in done.stderr
    # Before, about a tenth was saved: shutdown() had let the exit handler go, and
    # Thread.join(), interrupted, took the logger's running thread for ended.
    assert len(_npy(tmp_path / "stopped_data_log")) == count


def _shutdown_in_child(logger: DataLogger, answer) -> None:
    logger.input_queue.put(LogPackage(2, 1, b"from the child"))
    try:
        logger.shutdown()
    except RuntimeError as error:
        answer.send(str(error))
    else:
        answer.send("returned")


def test_a_forked_child_cannot_shut_the_parents_logger_down(tmp_path):
    logger = DataLogger(tmp_path, thread_count=1)
    logger.start()
    try:
        ours, theirs = multiprocess.get_context("fork").Pipe()
        child = multiprocess.get_context("fork").Process(target=_shutdown_in_child,
                                                        args=(logger, theirs))
        child.start()
        assert ours.poll(30)
        said = ours.recv()
        child.join(30)
        assert "is a fork of it and cannot stop it" in said
        logger.input_queue.put(LogPackage(1, 1, b"the parent's logger still runs"))
    finally:
        logger.shutdown()
    assert len(_npy(logger.output_directory)) == 2  # the child's package too


def _logged(tmp_path: Path, packages: list[tuple[int, int, bytes]]) -> Path:
    logger = DataLogger(tmp_path, thread_count=1)
    with logger:
        for source, stamp, data in packages:
            logger.input_queue.put(LogPackage(source, stamp, data))
    return logger.output_directory


def test_one_compression_at_a_time_in_a_folder(tmp_path):
    import fcntl

    folder = _logged(tmp_path, [(1, 1, b"a"), (1, 2, b"b")])
    leftover = folder / ".1_data_log.npz.4242.0badf00d.tmp"  # of a call that was killed
    leftover.write_bytes(b"half an archive")
    held = os.open(folder, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # another compression runs
    done: list[dict] = []
    worker = threading.Thread(target=lambda: done.append(compress_logs(folder, True)))
    worker.start()
    worker.join(0.5)
    try:
        assert worker.is_alive() and not done  # it waits for the other one
        assert not (folder / "1_data_log.npz").exists()
    finally:
        os.close(held)
    worker.join(30)
    assert list(done[0]) == [1] and not leftover.exists() and not _npy(folder)
    with np.load(folder / "1_data_log.npz") as archive:
        assert sorted(archive.files) == [f"1_{1:020d}", f"1_{2:020d}"]


def test_files_stamped_outside_what_zip_holds_are_compressed(tmp_path):
    folder = _logged(tmp_path, [(1, 1, b"old"), (2, 1, b"future")])
    os.utime(folder / f"1_{1:020d}.npy", (0, 0))  # 1970: a clock never set
    os.utime(folder / f"2_{1:020d}.npy", (7.3e9, 7.3e9))  # after 2107
    archives = compress_logs(folder, remove_sources=True)
    assert sorted(archives) == [1, 2] and not _npy(folder)
    with np.load(archives[2]) as archive:
        assert archive[f"2_{1:020d}"].tobytes() == b"future"


def test_a_corrupt_archive_is_named_and_nothing_is_removed(tmp_path):
    import zipfile

    folder = _logged(tmp_path, [(2, 1, b"kept")])
    (folder / "2_data_log.npz").write_bytes(b"not a zip archive")
    with pytest.raises(zipfile.BadZipFile, match=f"{folder / '2_data_log.npz'}: the archive "
                                                 "to merge the new files into is not a "
                                                 "readable .npz"):
        compress_logs(folder, remove_sources=True)
    assert [p.name for p in _npy(folder)] == [f"2_{1:020d}.npy"]
    assert (folder / "2_data_log.npz").read_bytes() == b"not a zip archive"


@pytest.mark.parametrize(("arguments", "error", "words"), [
    ({"compresslevel": 10}, ValueError, "compresslevel must be None or an int from -1"),
    ({"compresslevel": -2}, ValueError, "compresslevel must be"),
    ({"compresslevel": "9"}, ValueError, "compresslevel must be"),
    ({"compresslevel": True}, ValueError, "compresslevel must be"),
    ({"remove_sources": "no"}, TypeError, "remove_sources must be True or False, got 'no'"),
])
def test_bad_compression_arguments_name_themselves(tmp_path, arguments, error, words):
    folder = _logged(tmp_path, [(1, 1, b"a")])
    with pytest.raises(error, match=words):
        compress_logs(folder, **arguments)
    assert len(_npy(folder)) == 1 and not (folder / "1_data_log.npz").exists()


def test_a_second_stop_writes_into_no_file_that_took_the_pipes_number(tmp_path):
    logger = DataLogger(tmp_path / "log", thread_count=1)
    logger.start()
    logger.input_queue.put(LogPackage(1, 1, b"x"))
    dispatcher = logger._dispatcher
    wake = dispatcher._wake_w
    dispatcher.stop()  # as an interrupted shutdown() leaves it: the thread ends alone
    assert dispatcher.join(30)
    files: list[Any] = []
    with contextlib.ExitStack() as opened:
        while len(files) < 64 and (not files or files[-1].fileno() < wake):
            files.append(opened.enter_context(
                open(tmp_path / f"report{len(files)}", "w+b", buffering=0)))
        assert any(f.fileno() == wake for f in files)  # the number is another file's
        logger.shutdown()  # stops again: before, it wrote a NUL into that file
        for f in files:
            f.seek(0)
            assert f.read() == b""
    assert len(_npy(logger.output_directory)) == 1



def test_numpy_values_are_compression_arguments(tmp_path):
    folder = _logged(tmp_path, [(1, 1, b"a"), (2, 1, b"b")])
    assert sorted(compress_logs(folder, np.True_, np.int64(6))) == [1, 2]
    assert not _npy(folder)


def test_a_damaged_member_of_an_archive_names_the_archive(tmp_path):
    import zipfile

    folder = _logged(tmp_path, [(1, 1, bytes(range(256)) * 64)])
    compress_logs(folder, remove_sources=True)
    archive = folder / "1_data_log.npz"
    data = bytearray(archive.read_bytes())
    data[100:120] = b"\xff" * 20  # inside the deflated member
    archive.write_bytes(bytes(data))
    folder = _logged(tmp_path, [(1, 2, b"new")])
    with pytest.raises(zipfile.BadZipFile, match=f"{archive}: the archive to merge"):
        compress_logs(folder, remove_sources=True)
    assert [p.name for p in _npy(folder)] == [f"1_{2:020d}.npy"]


def test_a_forked_child_that_exits_leaves_the_parents_savers_alone(tmp_path):
    import subprocess

    script = """
import os, sys
from papyflow.datalogger import DataLogger, LogPackage
logger = DataLogger(sys.argv[1], thread_count=1, process_count=2)
logger.start()
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: multiprocess's exit handler runs in the child
os.waitpid(pid, 0)
for stamp in range(50):
    logger.input_queue.put(LogPackage(1, stamp, b"x"))
logger.shutdown()
print(logger.statistics().savers_lost, logger.statistics().saved)
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False,
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "50"]  # before, the child terminated both savers


def test_a_child_forked_during_a_compression_does_not_hold_the_folder(tmp_path):
    folder = _logged(tmp_path, [(1, 1, b"a")])
    children = []
    real = compress_module._compress

    def forking(*args: Any) -> Any:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
        return real(*args)

    compress_module._compress = forking
    try:
        compress_logs(folder)
    finally:
        compress_module._compress = real
    try:
        again = threading.Thread(target=compress_logs, args=(folder,))
        again.start()
        again.join(10)
        assert not again.is_alive()  # before, it waited for the child's exit
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_thread_that_cannot_start_leaves_no_saver_behind(tmp_path, monkeypatch):
    from papyflow.datalogger import _dispatcher

    def cannot(self: Any) -> None:
        raise RuntimeError("can't start new thread")

    logger = DataLogger(tmp_path, thread_count=1)
    monkeypatch.setattr(_dispatcher.threading.Thread, "start", cannot)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        logger.start()
    monkeypatch.undo()
    assert not multiprocess.active_children()  # before, its saver lived on
    with logger:  # and it starts, and saves, once it can
        logger.input_queue.put(LogPackage(1, 1, b"x"))
    assert len(_npy(logger.output_directory)) == 1
