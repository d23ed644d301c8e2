"""DataLogger under faults: killed producers and savers lose nothing accepted; a full or
read-only disk, or two packages for one file, is reported at shutdown, never lost in
silence; a put racing shutdown is saved or refused."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import multiprocess
import numpy as np
import psutil
import pytest

from papyflow.datalogger import (
    DataLogger,
    DuplicatePackageError,
    LoggerBrokenError,
    LoggerClosedError,
    LogPackage,
    LogQueue,
    LogWriteError,
    Phase,
    SaverLostError,
    _dispatcher,
    _saver,
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


@contextlib.contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The saver ``pid`` stopped (SIGSTOP: it reads nothing) for the block; continued at
    its end unless the logger killed it meanwhile."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGCONT)


def _exit_codes(producers, timeout: float = 30.0) -> list[int | None]:
    """Each producer's exit code, waiting up to ``timeout`` for it (``None``: still
    running then, and killed)."""
    codes = []
    for process, _ in producers:
        process.join(timeout)
        codes.append(process.exitcode)
        if process.is_alive():
            process.kill()
            process.join()
    return codes


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


def test_a_stopped_saver_holds_up_no_other_saver_and_no_producer(tmp_path):
    # A saver that reads nothing (stopped; likewise one never scheduled) once held the
    # logger's thread in a blocking send: no producer was read and no other saver's
    # acknowledgement either, so the whole logger stood still.
    logger = DataLogger(tmp_path, process_count=2, thread_count=2, saver_timeout=None)
    logger.start()
    stopped, running = logger.saver_pids
    with _stopped(stopped):
        producers = [_start(logger, source, 300, 100_000) for source in (1, 2)]
        assert _exit_codes(producers) == [0, 0], "a producer was held up by the stopped saver"
        _wait_until(lambda: logger.statistics().saved >= 300)
        assert logger.saver_pids == (stopped, running)  # not replaced: no timeout
    logger.shutdown()
    stats = logger.statistics()
    assert stats.saved == 600 and stats.savers_lost == 0
    out = logger.output_directory
    assert _stamps(out, 1) == _stamps(out, 2) == set(range(300))
    _check_files(out)


def test_a_saver_that_makes_no_progress_is_replaced_and_its_packages_saved(tmp_path):
    # (2 s: a saver that works never goes that long without an acknowledgement, even on
    # a loaded machine, so only the stopped one is replaced)
    logger = DataLogger(tmp_path, process_count=2, thread_count=2, saver_timeout=2.0)
    logger.start()
    stopped, _ = logger.saver_pids
    with _stopped(stopped):
        for stamp in range(200):
            logger.input_queue.put(LogPackage(1, stamp, np.full(100_000, stamp % 251, np.uint8)))
        logger.shutdown()  # not held for ever by the stopped saver
    assert not os.path.exists(f"/proc/{stopped}")  # killed and reaped
    stats = logger.statistics()
    assert stats.saved == 200 and stats.failed == 0 and stats.savers_lost == 1
    assert len(logger.saver_pids) == 3
    assert _stamps(logger.output_directory, 1) == set(range(200))
    _check_files(logger.output_directory)
    assert not list(logger.output_directory.glob(".*"))


def test_a_stopped_saver_holds_no_more_than_its_share_of_the_bound(tmp_path):
    # Its batches, at most 2 * thread_count + 1 of them, once held up to the whole bound
    # in bytes (large packages): the logger then stopped reading every producer.
    logger = DataLogger(tmp_path, process_count=2, thread_count=2, queue_bytes=2 << 20,
                        saver_timeout=None)
    logger.start()
    stopped, _ = logger.saver_pids
    try:
        with _stopped(stopped):
            producers = [_start(logger, source, 200, 1 << 20) for source in (1, 2)]
            assert _exit_codes(producers) == [0, 0], \
                "a producer was held up by the stopped saver"
    finally:
        logger.shutdown()
    out = logger.output_directory
    assert _stamps(out, 1) == _stamps(out, 2) == set(range(200))
    assert logger.statistics().savers_lost == 0


def test_a_working_saver_is_not_taken_as_hung_when_the_logger_was_held_up(tmp_path,
                                                                          monkeypatch):
    # The logger's own thread held up past saver_timeout (a C call that keeps the GIL
    # elsewhere in its process, the whole process paused) while the saver acknowledged its
    # batches: those acknowledgements are read before the saver is judged, and it is not
    # killed. Held up here at the worst moment: right after it handed out work.
    real_assign = _dispatcher.Dispatcher._assign
    held = []

    def assign(self):
        real_assign(self)
        if not held and any(saver.inflight for saver in self._savers):
            held.append(True)
            time.sleep(0.6)  # meanwhile the saver writes the batch and acknowledges it

    monkeypatch.setattr(_dispatcher.Dispatcher, "_assign", assign)
    logger = DataLogger(tmp_path, process_count=1, thread_count=1, max_restarts=0,
                        saver_timeout=0.3)
    logger.start()
    for stamp in range(20):
        logger.input_queue.put(LogPackage(1, stamp, np.zeros(1000, np.uint8)))
    logger.shutdown()  # raised LogWriteError (SaverLostError) when the saver was killed
    assert held
    stats = logger.statistics()
    assert stats.savers_lost == 0 and stats.saved == 20


@pytest.mark.parametrize("restarts", [1, 0])
def test_producers_go_on_after_a_hung_saver_is_stopped_at_the_bound(tmp_path, restarts):
    # The only saver stopped, the logger full (it stops reading producers): once the saver
    # is taken as hung, its batches go to the replacement (or fail, with no restart left)
    # and the producers are read again. Before, the logger's thread went on waiting with
    # nothing to wake it, and every put blocked until shutdown().
    logger = DataLogger(tmp_path, process_count=1, thread_count=1, queue_bytes=4 << 20,
                        max_restarts=restarts, saver_timeout=0.5)
    logger.start()
    [stopped] = logger.saver_pids
    with _stopped(stopped):
        producer, accepted = _start(logger, 1, 40, 1 << 20)
        [code] = _exit_codes([(producer, accepted)])
    if restarts:
        assert code == 0, "the producer stayed blocked"
    else:  # no saver left: the next put says so instead of blocking
        assert code == 1 and 0 < accepted.value < 40
    if restarts:
        logger.shutdown()
        assert _stamps(logger.output_directory, 1) == set(range(40))
    else:
        with pytest.raises(LogWriteError) as info:
            logger.shutdown()
        assert len(info.value.failures) == accepted.value


def test_a_duplicate_its_stopped_saver_never_received_whole_is_still_reported(tmp_path):
    # A batch a saver that was taken as hung (or died) never received whole cannot have a
    # file in place: written again, a file there with the same bytes is a duplicate, not
    # that saver's work. Before, every batch it held counted as possibly written.
    logger = DataLogger(tmp_path, process_count=1, max_restarts=1, saver_timeout=0.5)
    logger.start()
    data = np.full(5 << 20, 7, np.uint8)  # more than the link's socket holds
    logger.input_queue.put(LogPackage(1, 0, data))
    _wait_until(lambda: logger.statistics().saved == 1)
    [stopped] = logger.saver_pids
    with _stopped(stopped):
        logger.input_queue.put(LogPackage(1, 0, data))  # the same source, stamp and bytes
        with pytest.raises(LogWriteError) as info:
            logger.shutdown()
    [failure] = info.value.failures
    assert isinstance(failure.error, DuplicatePackageError)
    assert logger.statistics().savers_lost == 1


def test_the_last_hung_saver_reports_its_packages_naming_the_timeout(tmp_path):
    logger = DataLogger(tmp_path, process_count=1, max_restarts=0, saver_timeout=0.5)
    logger.start()
    [saver] = logger.saver_pids
    with _stopped(saver):
        for stamp in range(5):
            logger.input_queue.put(LogPackage(3, stamp, np.zeros(4, np.uint8)))
        with pytest.raises(LogWriteError) as info:
            logger.shutdown()
    assert [f.package.time_stamp for f in info.value.failures] == list(range(5))
    error = info.value.failures[0].error
    assert isinstance(error, SaverLostError)
    assert f"saver process {saver} made no progress for 0.5 s and was stopped" in str(error)


def test_a_full_disk_is_reported_at_shutdown_and_refuses_later_puts(tmp_path, monkeypatch):
    real_writev = os.writev

    def full(fd, buffers):
        if sum(len(b) for b in buffers) > 200:  # only the large packages meet a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_writev(fd, buffers)

    # before start: the forked savers inherit both (files one at a time, from Python)
    monkeypatch.setattr(os, "writev", full)
    monkeypatch.setattr(_saver, "_write_batch", None)
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


@pytest.mark.skipif(_saver._write_batch is None, reason="no compiled writer in this install")
def test_a_write_the_kernel_refuses_in_the_compiled_writer_is_reported(tmp_path):
    # The savers may not write files past 300 bytes: the kernel refuses the large
    # package's file part way (EFBIG), as a disk that fills up would.
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills them
    logger = DataLogger(tmp_path, process_count=1, thread_count=2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, limit[1]))
    try:
        logger.start()  # the savers are forked here, and keep the limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
    queue = logger.input_queue
    queue.put(LogPackage(4, 1, np.zeros(10, np.uint8)))
    queue.put(LogPackage(7, 2, np.arange(250, dtype=np.uint8)))
    queue.put(LogPackage(4, 2, np.ones(10, np.uint8)))
    with pytest.raises(LogWriteError) as info:
        logger.shutdown()
    assert info.value.errno == errno.EFBIG
    [failed] = info.value.failures
    assert failed.error.errno == errno.EFBIG
    assert failed.package.serialized_data.tolist() == list(range(250))
    assert str(failed.error) == f"[Errno {errno.EFBIG}] File too large: '7_{2:020d}.npy'"
    out = logger.output_directory
    assert sorted(p.name for p in out.iterdir()) == [f"4_{1:020d}.npy", f"4_{2:020d}.npy"]
    assert np.load(out / f"4_{2:020d}.npy").tolist() == [1] * 10


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


# -- shutdown racing a put: every put that returned is saved ---------------------------------


def test_a_put_made_while_shutdown_ends_its_connection_is_saved_or_refused(
        tmp_path, monkeypatch):
    # The dispatcher has read this connection for the last time and is about to close
    # it; a put lands now. It must not return for a package that is then thrown away.
    from papyflow.datalogger import _dispatcher

    close_producer = _dispatcher.Dispatcher._close_producer
    outcome: list[object] = []
    late = LogPackage(5, 2, np.arange(3, dtype=np.uint8))

    def put_late():
        try:
            logger.input_queue.put(late)
            outcome.append("returned")
        except LoggerClosedError as exc:
            outcome.append(exc)

    def close_after_a_late_put(self, producer):
        if not outcome:
            thread = threading.Thread(target=put_late)
            thread.start()
            thread.join(30)
        close_producer(self, producer)

    monkeypatch.setattr(_dispatcher.Dispatcher, "_close_producer", close_after_a_late_put)
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    logger.start()
    logger.input_queue.put(LogPackage(5, 1, b"first"))  # opens the connection
    logger.shutdown()
    assert len(outcome) == 1
    saved = (logger.output_directory / late.file_name).exists()
    assert saved == (outcome[0] == "returned")
    assert logger.statistics().received == 1 + saved


@pytest.mark.parametrize("frame_arrives", ["before the last read", "after the last read"])
def test_a_put_that_meets_closing_learns_whether_its_package_was_taken(
        tmp_path, monkeypatch, frame_arrives):
    # The handshake, forced into its two outcomes: a put whose pre-check saw nothing
    # and whose frame then meets CLOSING returns if the logger read the frame before
    # CLOSED, and raises if the frame came after the logger's last read.
    from papyflow.datalogger import _dispatcher, input_queue

    poll, close_producer = input_queue._Link.poll, _dispatcher.Dispatcher._close_producer
    last_read_done, frame_sent = threading.Event(), threading.Event()
    calls = 0
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    stopper = threading.Thread(target=logger.shutdown)

    late = frame_arrives == "after the last read"

    def forced_poll(link):
        nonlocal calls
        calls += 1
        if calls == 1:  # before the frame: nothing to see yet
            poll(link)
            if late:  # the logger reads this connection for the last time, now
                stopper.start()
                assert last_read_done.wait(30)
            return
        # after the frame: the shutdown begins (if not yet); wait for its CLOSING
        if not late:
            stopper.start()
        frame_sent.set()
        assert select.select([link.sock], [], [], 30)[0]
        poll(link)

    def close_when_told(self, producer):
        last_read_done.set()
        frame_sent.wait(30)
        close_producer(self, producer)

    logger.start()
    queue = logger.input_queue
    queue.put(LogPackage(6, 1, b"first"))  # connected, before the patches
    monkeypatch.setattr(input_queue._Link, "poll", forced_poll)
    monkeypatch.setattr(_dispatcher.Dispatcher, "_close_producer", close_when_told)
    package = LogPackage(6, 2, b"second")
    try:
        if not late:
            queue.put(package)
        else:
            with pytest.raises(LoggerClosedError, match="shut down before it took"):
                queue.put(package)
    finally:
        frame_sent.set()
        last_read_done.set()
        if stopper.ident is not None:
            stopper.join(30)
        else:
            logger.shutdown()
    saved = (logger.output_directory / package.file_name).exists()
    assert saved == (not late)
    assert logger.statistics().received == 1 + saved


def test_a_producer_refused_by_a_broken_run_puts_again_after_a_restart(tmp_path):
    # A second LogQueue for the same logger: a producer whose connection outlives
    # shutdown (the logger's own input_queue is closed by shutdown).
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    producer = pickle.loads(pickle.dumps(logger.input_queue))
    logger.start()
    logger.output_directory.rmdir()
    logger.output_directory.write_text("not a directory")
    producer.put(LogPackage(1, 2, b"b"))
    _wait_until(lambda: logger.statistics().failed == 1)
    with pytest.raises(LoggerBrokenError, match="source 1, time stamp 2"):
        producer.put(LogPackage(1, 3, b"c"))
    with pytest.raises(LogWriteError):
        logger.shutdown()
    logger.output_directory.unlink()
    logger.output_directory.mkdir()
    logger.start()
    try:
        producer.put(LogPackage(1, 4, b"d"))  # a new run: not broken
    finally:
        producer.close()
        logger.shutdown()
    assert [p.name for p in logger.output_directory.iterdir()] == [f"1_{4:020d}.npy"]


def test_a_failure_seen_in_the_statistics_was_already_told_to_the_producers(tmp_path,
                                                                          monkeypatch):
    # The notice to the producers goes out before the failure is counted: a slow
    # notice must not let a put that follows the count through.
    from papyflow.datalogger import _dispatcher

    real_tell = _dispatcher.Dispatcher._tell

    def slow_tell(self, producer, message):
        time.sleep(0.3)
        real_tell(self, producer, message)

    monkeypatch.setattr(_dispatcher.Dispatcher, "_tell", slow_tell)
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    producer = pickle.loads(pickle.dumps(logger.input_queue))
    logger.start()
    logger.output_directory.rmdir()
    logger.output_directory.write_text("not a directory")
    try:
        producer.put(LogPackage(1, 2, b"b"))
        _wait_until(lambda: logger.statistics().failed == 1)
        with pytest.raises(LoggerBrokenError, match="source 1, time stamp 2"):
            producer.put(LogPackage(1, 3, b"c"))
    finally:
        producer.close()
        with pytest.raises(LogWriteError):
            logger.shutdown()


# -- one file per source and time stamp: a duplicate is reported, never written over ---------


def test_a_second_package_of_one_source_and_time_stamp_is_reported_not_written_over(tmp_path):
    logger = DataLogger(tmp_path, process_count=1, thread_count=1)
    logger.start()
    logger.input_queue.put(LogPackage(1, 5, np.array([1, 2, 3], np.uint8)))
    logger.input_queue.put(LogPackage(1, 5, np.array([9], np.uint8)))
    with pytest.raises(LogWriteError) as info:
        logger.shutdown()
    assert info.value.errno == errno.EEXIST
    [failed] = info.value.failures
    assert isinstance(failed.error, DuplicatePackageError)
    assert isinstance(failed.error, FileExistsError)
    assert "source 1, time stamp 5 has a file already" in str(info.value)
    assert failed.package.serialized_data.tolist() == [9]
    out = logger.output_directory
    assert [p.name for p in out.iterdir()] == [f"1_{5:020d}.npy"]  # no temporary left
    assert np.load(out / f"1_{5:020d}.npy").tolist() == [1, 2, 3]  # the first one, kept
    stats = logger.statistics()
    assert (stats.received, stats.saved, stats.failed) == (2, 1, 1)


# -- the logger's socket -------------------------------------------------------------------------


def test_a_socket_path_too_long_names_the_path_and_leaks_nothing(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    logger = DataLogger(tmp_path)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match=r"cannot listen at '.*/in': AF_UNIX path too long") as info:
        logger.start()
    assert "TMPDIR" in str(info.value)
    assert set(os.listdir("/proc/self/fd")) <= before
    assert not list(deep.iterdir())  # its private folder removed
    assert logger.phase is Phase.NEW


def test_a_logger_out_of_descriptors_keeps_new_producers_waiting(tmp_path, monkeypatch):
    import errno
    import socket

    real_accept = socket.socket.accept
    refusals = [True] * 5  # the logger's process has no descriptor for a while

    def accept(self):
        if refusals and self.family == socket.AF_UNIX:
            refusals.pop()
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)
    logger = DataLogger(tmp_path, thread_count=1)
    logger.start()
    try:
        logger.input_queue.put(LogPackage(1, 1, b"waited in the backlog"))
    finally:
        logger.shutdown()  # raised LoggerClosedError: the accept error ended the thread
    assert refusals == []
    assert [p.name for p in sorted(logger.output_directory.glob("*.npy"))] == [
        f"1_{1:020d}.npy"]


_KILLED_LOGGER = """
    import os, sys, time
    import numpy as np
    import psutil
    from papyflow.datalogger import DataLogger, LogPackage

    out = sys.argv[1]
    logger = DataLogger(out, process_count=1, thread_count=1)
    logger.start()
    queue = logger.input_queue
    savers = [p.pid for p in psutil.Process().children()]
    parent = os.getpid()

    def producer(name, early):
        # 'early' connects before the logger's process dies, the other only after
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid:
            os.close(ready_w)
            os.read(ready_r, 1)  # its first put has returned, or it will connect later
            os.close(ready_r)
            return pid
        os.close(ready_r)
        outcome = "ended without an outcome"
        try:
            if early:
                queue.put(LogPackage(7 if name == "a" else 8, 1, np.zeros(8, np.uint8)))
            os.write(ready_w, b"!")
            while os.getppid() == parent:  # until the logger's process is gone
                time.sleep(0.01)
            for stamp in range(2, 100_000):
                queue.put(LogPackage(7 if name == "a" else 8, stamp,
                                     np.zeros(4096, np.uint8)))
            outcome = "all puts returned"
        except BaseException as exc:
            outcome = type(exc).__name__ + ": " + str(exc)
        finally:
            with open(os.path.join(out, name + ".tmp"), "w") as file:
                file.write(outcome)
            os.rename(os.path.join(out, name + ".tmp"), os.path.join(out, name + ".txt"))
            os._exit(0)

    producers = [producer("a", True), producer("b", False)]
    print("pids", *savers, flush=True)
    print("producers", *producers, flush=True)
    print("socket", logger._socket_dir, flush=True)
    time.sleep(120)
"""


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone, and reaped
        return False


def test_producers_and_savers_see_a_killed_logger_process_go(tmp_path):
    # Every process forked from the logger's held copies of its listening socket and
    # of its ends of the savers' and producers' connections: once its process was
    # killed, a producer's put waited for ever (its connection was taken into the
    # backlog of a socket nobody accepts from, or written into one nobody reads), and
    # the saver waited for ever for a batch.
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_LOGGER),
                             str(tmp_path)], stdout=subprocess.PIPE, text=True)
    socket_dir, producers = None, []
    try:
        savers = [int(pid) for pid in proc.stdout.readline().split()[1:]]
        producers = [int(pid) for pid in proc.stdout.readline().split()[1:]]
        socket_dir = proc.stdout.readline().split(maxsplit=1)[1].strip()
        assert savers and len(producers) == 2
        proc.kill()
        proc.wait(30)
        outcomes = [tmp_path / "a.txt", tmp_path / "b.txt"]
        _wait_until(lambda: all(path.exists() for path in outcomes), timeout=30)
        assert [path.read_text().split(":")[0] for path in outcomes] == \
            ["LoggerClosedError"] * 2, [path.read_text() for path in outcomes]
        _wait_until(lambda: not any(_running(pid) for pid in savers), timeout=30)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
        for pid in producers:  # one left waiting (on the code before the mend)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _waits_to_fork(thread: threading.Thread) -> bool:
    """Whether ``thread`` is held in the logger's fork hook (until this thread is done)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "_before_fork":
            return True
        frame = frame.f_back
    return False


def _fork_elsewhere(fd: int, forks: list) -> None:
    """Fork from another thread now, while this one holds the new descriptor ``fd``
    (or once the logger lets it); ``forks`` gets the thread, the child's pid and
    whether the child kept its copy of ``fd``, which it tells in its exit code."""
    inode = os.fstat(fd).st_ino
    pids: list[int] = []

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                kept = os.fstat(fd).st_ino == inode
            except OSError:
                kept = False
            os._exit(int(kept))
        pids.append(pid)

    thread = threading.Thread(target=fork)
    thread.start()
    while thread.is_alive() and not pids and not _waits_to_fork(thread):
        time.sleep(0.001)
    forks.append((thread, pids))


@pytest.mark.parametrize("where", ["listener", "producer", "saver"])
def test_a_child_forked_as_the_logger_makes_a_descriptor_keeps_no_copy(tmp_path, monkeypatch,
                                                                       where):
    # Another thread forked between the moment the logger made a descriptor (its
    # listening socket, a producer's connection, a saver's link) and the moment it was
    # where the fork hook finds it: the child kept its copy, which outlives a killed
    # logger process (a put or a saver then waits for ever).
    forks: list = []
    if where == "listener":
        real_socket = socket.socket

        def make(*args: Any) -> socket.socket:
            sock = real_socket(*args)
            _fork_elsewhere(sock.fileno(), forks)
            return sock

        monkeypatch.setattr(_dispatcher, "socket",
                            types.SimpleNamespace(**{**vars(socket), "socket": make}))
    elif where == "producer":
        real_producer = _dispatcher._Producer

        def producer(sock: socket.socket, buf: bytearray) -> Any:
            _fork_elsewhere(sock.fileno(), forks)
            return real_producer(sock, buf)

        monkeypatch.setattr(_dispatcher, "_Producer", producer)
    else:
        real_saver = _dispatcher._Saver

        def saver(process: Any, link: Any) -> Any:
            _fork_elsewhere(link.fileno(), forks)
            return real_saver(process, link)

        monkeypatch.setattr(_dispatcher, "_Saver", saver)
    logger = DataLogger(tmp_path, thread_count=1)
    logger.start()
    try:
        logger.input_queue.put(LogPackage(1, 1, b"x"))
    finally:
        logger.shutdown()
        kept = []
        for thread, pids in forks:
            thread.join()
            kept += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert kept and not any(kept)
    assert len(list(logger.output_directory.glob("*.npy"))) == 1
