"""DataLogger under faults: killed producers and savers lose nothing accepted; a full or
read-only disk is reported at shutdown, never lost in silence."""

from __future__ import annotations

import errno
import os
import random
import signal
import time
from pathlib import Path

import multiprocess
import numpy as np
import pytest

from papyflow.datalogger import (
    DataLogger,
    LoggerBrokenError,
    LogPackage,
    LogQueue,
    LogWriteError,
    SaverLostError,
)

pytestmark = pytest.mark.timeout(60)

FORK = multiprocess.get_context("fork")


def _produce(queue: LogQueue, source: int, count: int, size: int, accepted) -> None:
    """Put ``count`` packages; ``accepted`` counts the puts that returned."""
    for stamp in range(count):
        queue.put(LogPackage(source, stamp, np.full(size, stamp % 251, np.uint8)))
        accepted.value = stamp + 1


def _wait_until(condition, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _stamps(directory: Path, source: int) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in directory.glob(f"{source}_*.npy")}


def _check_files(directory: Path) -> None:
    """Every file whole: np.load reads it and its bytes are what the producer sent."""
    for path in directory.glob("*.npy"):
        data = np.load(path)
        stamp = int(path.stem.split("_")[1])
        assert (data == stamp % 251).all(), path


def _start(logger: DataLogger, source: int, count: int, size: int):
    accepted = FORK.Value("q", 0, lock=False)
    process = FORK.Process(target=_produce,
                           args=(logger.input_queue, source, count, size, accepted))
    process.start()
    return process, accepted


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("size", [100, 300_000])
def test_a_killed_producer_loses_nothing_it_put(tmp_path, seed, size):
    rng = random.Random(seed)
    logger = DataLogger(tmp_path, process_count=2, thread_count=2)
    logger.start()
    victim, accepted = _start(logger, 1, 10**6, size)
    survivor, _ = _start(logger, 2, 300, size)
    _wait_until(lambda: accepted.value > 10)
    time.sleep(rng.uniform(0.0, 0.3))
    os.kill(victim.pid, signal.SIGKILL)
    victim.join()
    survivor.join(30)
    assert survivor.exitcode == 0
    logger.shutdown()
    out = logger.output_directory
    # Every put that returned is saved (one more may be: killed between put and count).
    assert _stamps(out, 1) >= set(range(accepted.value))
    assert _stamps(out, 2) == set(range(300))
    _check_files(out)
    assert not list(out.glob(".*"))  # no temporary file left


@pytest.mark.parametrize("seed", range(3))
def test_killed_savers_lose_nothing(tmp_path, seed):
    rng = random.Random(seed)
    logger = DataLogger(tmp_path, process_count=2, thread_count=2, queue_size=2000)
    logger.start()
    producers = [_start(logger, source, 3000, size) for source, size in ((1, 50), (2, 100_000))]
    killed: set[int] = set()
    for round_ in range(3):  # kill a living saver, three times over
        _wait_until(lambda: logger.statistics().saved > 0)
        time.sleep(rng.uniform(0.0, 0.2))
        living = [pid for pid in logger.saver_pids if pid not in killed]
        assert len(living) == 2
        victim = rng.choice(living)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
        _wait_until(lambda lost=round_ + 1: logger.statistics().savers_lost == lost)
    for process, _ in producers:
        process.join(40)
        assert process.exitcode == 0
    logger.shutdown()
    stats = logger.statistics()
    assert stats.savers_lost == 3 and stats.failed == 0
    out = logger.output_directory
    assert _stamps(out, 1) == set(range(3000))
    assert _stamps(out, 2) == set(range(3000))
    _check_files(out)
    assert not list(out.glob(".*"))  # the killed savers' temporary files are gone


def test_savers_that_keep_dying_are_reported_not_lost(tmp_path):
    logger = DataLogger(tmp_path, process_count=1, max_restarts=0)
    logger.start()
    [saver] = logger.saver_pids
    os.kill(saver, signal.SIGSTOP)
    for stamp in range(5):
        logger.input_queue.put(LogPackage(3, stamp, np.zeros(4, np.uint8)))
    _wait_until(lambda: logger.statistics().received == 5)
    os.kill(saver, signal.SIGKILL)
    with pytest.raises(LogWriteError) as info:
        logger.shutdown()
    assert len(info.value.failures) == 5
    assert isinstance(info.value.failures[0].error, SaverLostError)
    assert "source 3, time stamp 0" in str(info.value)
    assert [f.package.time_stamp for f in logger.failures] == list(range(5))


def test_a_full_disk_is_reported_at_shutdown_and_refuses_later_puts(tmp_path, monkeypatch):
    real_writev = os.writev

    def full(fd, buffers):
        if sum(len(b) for b in buffers) > 200:  # only the large packages meet a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", full)  # before start: the forked savers inherit it
    logger = DataLogger(tmp_path, process_count=2, thread_count=2)
    logger.start()
    queue = logger.input_queue
    queue.put(LogPackage(4, 1, np.zeros(10, np.uint8)))
    queue.put(LogPackage(7, 2, np.arange(250, dtype=np.uint8)))
    _wait_until(lambda: logger.statistics().failed == 1)
    with pytest.raises(LoggerBrokenError, match="source 7, time stamp 2"):
        queue.put(LogPackage(4, 3, np.zeros(10, np.uint8)))
    with pytest.raises(LogWriteError) as info:
        logger.shutdown()
    error = info.value
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert "1 package(s) could not be saved: source 7, time stamp 2 -> " \
           f"7_{2:020d}.npy: [Errno 28] No space left on device" in str(error)
    [failed] = error.failures
    assert failed.error.errno == errno.ENOSPC
    assert "writev" in str(failed.error.__cause__)  # the saver's traceback
    assert failed.package.serialized_data.tolist() == list(range(250))
    out = logger.output_directory
    assert [p.name for p in out.iterdir()] == [f"4_{1:020d}.npy"]  # and no temporary file


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_read_only_directory_is_reported_at_shutdown(tmp_path):
    logger = DataLogger(tmp_path)
    logger.output_directory.chmod(0o500)
    try:
        logger.start()
        for stamp in range(3):
            logger.input_queue.put(LogPackage(1, stamp, np.zeros(4, np.uint8)))
        with pytest.raises(LogWriteError, match="3 package.s. could not be saved") as info:
            logger.shutdown()
    finally:
        logger.output_directory.chmod(0o700)
    assert info.value.errno == errno.EACCES
    assert isinstance(info.value.__cause__, PermissionError)


def test_an_output_directory_that_vanished_is_reported_at_shutdown(tmp_path):
    logger = DataLogger(tmp_path)
    logger.start()
    logger.output_directory.rmdir()
    logger.output_directory.write_text("not a directory")  # even root cannot write in it
    for stamp in range(3):
        logger.input_queue.put(LogPackage(1, stamp, np.zeros(4, np.uint8)))
    with pytest.raises(LogWriteError, match="3 package.s. could not be saved") as info:
        logger.shutdown()
    assert info.value.errno == errno.ENOTDIR
    assert isinstance(info.value.__cause__, NotADirectoryError)


def test_a_package_on_a_connection_still_in_the_backlog_at_shutdown_is_saved(
        tmp_path, monkeypatch):
    # A producer's put returns once its bytes are in the socket, which may happen
    # while its connection still waits in the listener's backlog. Forced here: the
    # dispatcher accepts nothing until it closes the listener at shutdown.
    from papyflow.datalogger import _dispatcher

    closing = False
    accept, close_listener = _dispatcher.Dispatcher._accept, _dispatcher.Dispatcher._close_listener

    def accept_only_when_closing(self, key):
        if closing:
            accept(self, key)
        else:
            time.sleep(0.001)  # the listener stays readable: do not spin

    def closing_listener(self):
        nonlocal closing
        closing = True
        close_listener(self)

    monkeypatch.setattr(_dispatcher.Dispatcher, "_accept", accept_only_when_closing)
    monkeypatch.setattr(_dispatcher.Dispatcher, "_close_listener", closing_listener)
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    logger.start()
    try:
        package = LogPackage(3, 7, np.arange(5, dtype=np.uint8))
        logger.input_queue.put(package)  # returns: the bytes wait in the socket
        time.sleep(0.2)
        assert not list(logger.output_directory.glob("*.npy"))  # nothing accepted yet
    finally:
        logger.shutdown()
    saved = logger.output_directory / package.file_name
    assert np.array_equal(np.load(saved), np.arange(5, dtype=np.uint8))
