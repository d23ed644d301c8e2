"""The queue writer and its senders: many processes, errors raised at the sender,
senders and writers killed with SIGKILL at random moments, a full disk."""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import papyflow.storage._h5 as h5_paths
from papyflow.storage import (
    LEAF,
    LIST,
    TREE,
    Group,
    HDF5StorageService,
    Leaf,
    NoSuchServiceError,
    QueueStorageServiceSender,
    QueueStorageServiceWriter,
    Result,
    StorageQueue,
    UnsupportedDataError,
    WriterError,
    WriterLostError,
    WriterReport,
)
from papyflow.storage.queue import FLUSHING, _Done

pytestmark = pytest.mark.timeout(60)

FORK = multiprocessing.get_context("fork")


def stored_names(filename: str) -> set[str]:
    """The full names of the leaves in the file (which must open)."""
    root = Group()
    HDF5StorageService(filename).load(TREE, root, load_data=False)
    return {node.v_full_name for node in root.walk() if isinstance(node, Result)}


def _send(sender: QueueStorageServiceSender, k: int, n: int, pause: float = 0.0) -> None:
    for i in range(n):
        sender.store(LEAF, Result(f"results.s{k}.r{i}", i, x=np.arange(3) + i))
        if pause:
            time.sleep(pause)
    sender.send_done()


def _writer(filename: str, queue: StorageQueue) -> None:
    QueueStorageServiceWriter(HDF5StorageService(filename), queue).run()


def _start(target: Any, *args: Any) -> Any:
    process = FORK.Process(target=target, args=args)
    process.start()
    return process


def _stop(*processes: Any) -> None:
    for process in processes:
        process.join(20)
        if process.is_alive():
            process.kill()
            process.join()


@pytest.fixture
def filename(tmp_path: Path) -> str:
    return str(tmp_path / "queue.hdf5")


def test_two_sender_processes_one_writer(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    senders = [_start(_send, queue.sender(k), k, 200) for k in range(2)]
    try:
        report = QueueStorageServiceWriter(HDF5StorageService(filename), queue).run()
    finally:
        _stop(*senders)
    assert report == WriterReport(stored=400, failed=0, done=(0, 1), lost=())
    assert [p.exitcode for p in senders] == [0, 0]
    assert len(stored_names(filename)) == 400
    back = Result("results.s1.r199")
    HDF5StorageService(filename).load(LEAF, back)
    assert back["r199"] == 199 and np.array_equal(back["x"], np.arange(3) + 199)


_SPAWNED_SENDER = """
import multiprocessing, sys
from papyflow.storage import HDF5StorageService, QueueStorageServiceWriter, StorageQueue
from tests.test_storage_queue import _send

if __name__ == "__main__":
    spawn = multiprocessing.get_context("spawn")
    queue = StorageQueue(1, spawn)
    sender = spawn.Process(target=_send, args=(queue.sender(0), 0, 5))
    sender.start()
    print(QueueStorageServiceWriter(HDF5StorageService(sys.argv[1]), queue).run())
    sender.join()
"""


def test_a_sender_goes_to_a_spawned_process_and_nowhere_else(filename: str) -> None:
    import pickle
    import subprocess
    import sys

    # In a child interpreter: spawning starts a resource tracker that outlives the test.
    script = Path(filename).with_name("spawned.py")
    script.write_text(_SPAWNED_SENDER, encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, str(script), filename], check=False,
                          capture_output=True, text=True, timeout=50, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "WriterReport(stored=5, failed=0, done=(0,), lost=())"
    # Anything else (a NuMap worker's task, a queue, a file) is told why, not a ctypes error.
    queue = StorageQueue(1, FORK)
    for what in (queue, queue.sender(0)):
        with pytest.raises(TypeError, match=r"can be given to a process only as it starts "
                                            r"\(Process\(args=\.\.\.\)\)"):
            pickle.dumps(what)


def test_writer_in_its_own_process(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_writer, filename, queue)
    try:
        sender = queue.sender(0)
        sender.store(LIST, [(LEAF, Result("a.b", 1)), (LEAF, Result("a.c", 2))])
        _send(sender, 0, 50)
        assert sender.acknowledged == sender.sent == 51
    finally:
        _stop(writer)
    assert writer.exitcode == 0
    assert len(stored_names(filename)) == 52


def _threaded_writer(service: Any, queue: StorageQueue, **options: Any,
                     ) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(QueueStorageServiceWriter(service, queue, **options).run())
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_errors_in_the_writer_are_raised_at_the_sender(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    sender = queue.sender(0)
    sender.store(LEAF, Result("results.good", 1))
    sender.store(LEAF, Result("results.bad", [1, "mixed"]))
    sender.store(LEAF, Result("results.after", 2))
    # The writer starts once all three are in the pipe: a writer already running may
    # report the failure before the third store, which then raises it instead (below).
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    with pytest.raises(WriterError) as caught:
        sender.send_done()
    error = caught.value
    assert error.seq == 2 and error.message == LEAF
    assert isinstance(error.exception, UnsupportedDataError)
    assert error.__cause__ is error.exception
    assert "homogeneous" in str(error) and "_values.py" in str(error.exception.__cause__)
    sender.send_done()  # the error was raised once; the rest went through
    thread.join(10)
    assert outcome == [WriterReport(stored=2, failed=1, done=(0,), lost=())]
    assert stored_names(filename) == {"results.good", "results.after"}


def test_a_failure_the_writer_reported_is_raised_by_the_next_store(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    sender = queue.sender(0)
    sender.store(LEAF, Result("results.bad", [1, "mixed"]))
    deadline = time.monotonic() + 30
    while queue.failures[0] < 1:  # the writer counted the failure
        assert time.monotonic() < deadline, "the writer never reported the failure"
        time.sleep(0.005)
    with pytest.raises(WriterError) as caught:
        sender.store(LEAF, Result("results.refused", 2))
    assert caught.value.seq == 1 and "homogeneous" in str(caught.value)
    assert sender.sent == 1  # the store that raised sent nothing
    sender.store(LEAF, Result("results.after", 3))  # raised once: the sender goes on
    sender.send_done()
    thread.join(10)
    assert outcome == [WriterReport(stored=1, failed=1, done=(0,), lost=())]
    assert stored_names(filename) == {"results.after"}


def test_a_store_after_send_done_is_refused_at_once(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    done, other = queue.sender(0), queue.sender(1)
    other.store(LEAF, Result("results.other", 0))
    done.store(LEAF, Result("results.first", 1))
    done.send_done()
    with pytest.raises(WriterError, match=r"sender 0 said it is done"):
        done.store(LEAF, Result("results.late", 2))  # would never be stored
    assert done.sent == 1
    done.send_done()  # again: nothing more to say, nothing to wait for
    other.send_done()
    thread.join(10)
    assert outcome == [WriterReport(stored=2, failed=0, done=(0, 1), lost=())]
    assert stored_names(filename) == {"results.other", "results.first"}


def test_a_queue_is_served_once(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = QueueStorageServiceWriter(HDF5StorageService(filename), queue)
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    sender = queue.sender(0)
    sender.store(LEAF, Result("results.only", 1))
    sender.send_done()
    thread.join(10)
    assert outcome == [WriterReport(stored=1, failed=0, done=(0,), lost=())]
    # its sender, alive, said done: a second run had nothing to wait for, and waited for ever
    again = threading.Thread(target=lambda: outcome.append(_raised(writer.run)), daemon=True)
    again.start()
    again.join(10)
    assert not again.is_alive()
    assert isinstance(outcome[1], RuntimeError) and "served once" in str(outcome[1])
    assert stored_names(filename) == {"results.only"}


def _raised(call: Any) -> BaseException | None:
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - handed to the test to check
        return error
    return None


def test_unknown_messages_and_loading_are_refused_by_the_sender() -> None:
    queue = StorageQueue(1, FORK)
    sender = queue.sender(0)
    with pytest.raises(NoSuchServiceError):
        sender.store("TRAJECTORY", None)
    with pytest.raises(NoSuchServiceError, match=r"no such message \['LEAF'\]"):
        sender.store(["LEAF"], Result("a.b", 1))  # unhashable: not a TypeError of a set
    with pytest.raises(NoSuchServiceError):
        sender.load(LEAF, Result("a.b"))
    assert sender.sent == 0
    queue.close()


def test_a_full_disk_is_an_error_at_the_sender(filename: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = h5_paths.new_dataset

    def new_dataset(parent: Any, name: str, data: Any) -> None:
        if name == "big":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(parent, name, data)

    monkeypatch.setattr("papyflow.storage._values.new_dataset", new_dataset)
    queue = StorageQueue(1, FORK)
    thread, _ = _threaded_writer(HDF5StorageService(filename), queue)
    sender = queue.sender(0)
    sender.store(LEAF, Result("results.small", 1))
    sender.store(LEAF, Result("results.large", ok=1, big=[0.0] * 10))
    with pytest.raises(WriterError) as caught:
        sender.wait_acknowledged()
    assert isinstance(caught.value.exception, OSError)
    assert caught.value.exception.errno == errno.ENOSPC
    sender.send_done()
    thread.join(10)
    assert stored_names(filename) == {"results.small"}  # nothing half-written


def test_a_failing_flush_is_an_error_at_every_sender_of_the_batch(filename: str) -> None:
    class FullDisk(HDF5StorageService):
        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    queue = StorageQueue(1, FORK)
    thread, outcome = _threaded_writer(FullDisk(filename), queue)
    sender = queue.sender(0)
    sender.store(LEAF, Result("results.r", 1))
    with pytest.raises(WriterError, match="No space left"):
        sender.send_done()
    thread.join(10)
    assert outcome[0].failed == 1


def test_a_writer_that_cannot_open_the_file_stops_every_sender(tmp_path: Path) -> None:
    queue = StorageQueue(2, FORK)
    missing = str(tmp_path / "no" / "such" / "folder" / "x.h5")
    thread, outcome = _threaded_writer(HDF5StorageService(missing), queue)
    thread.join(10)
    assert isinstance(outcome[0], OSError)
    for k in range(2):
        with pytest.raises(WriterLostError, match="writer stopped"):
            queue.sender(k).store(LEAF, Result("a.b", 1))


def test_a_sender_that_never_comes_is_given_up(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    sender = _start(_send, queue.sender(0), 0, 10)
    try:
        report = QueueStorageServiceWriter(HDF5StorageService(filename), queue,
                                           start_timeout=1.0).run()
    finally:
        _stop(sender)
    assert report.done == (0,) and report.lost == (1,)


def test_a_killed_sender_does_not_block_the_writer(filename: str) -> None:
    queue = StorageQueue(3, FORK)
    victim = _start(_send, queue.sender(1), 1, 100_000)
    queue.watch(1, victim.pid)
    survivors = [_start(_send, queue.sender(k), k, 300, 0.001) for k in (0, 2)]
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    time.sleep(random.uniform(0.2, 0.8))
    os.kill(victim.pid, signal.SIGKILL)
    try:
        thread.join(40)
    finally:
        _stop(victim, *survivors)
    (report,) = outcome
    assert report.done == (0, 2) and report.lost == (1,)
    assert [p.exitcode for p in survivors] == [0, 0]
    names = stored_names(filename)
    assert {f"results.s{k}.r{i}" for k in (0, 2) for i in range(300)} <= names
    from_victim = {n for n in names if n.startswith("results.s1.")}
    assert from_victim == {f"results.s1.r{i}" for i in range(len(from_victim))}
    assert queue.acked[1] == len(from_victim) > 0


def test_a_sender_killed_before_its_first_message_is_noticed(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    victim = _start(time.sleep, 60)
    queue.watch(1, victim.pid)
    victim.kill()
    survivor = _start(_send, queue.sender(0), 0, 20)
    try:
        report = QueueStorageServiceWriter(HDF5StorageService(filename), queue,
                                           start_timeout=None).run()
    finally:
        _stop(victim, survivor)
    assert report.lost == (1,) and report.done == (0,) and report.stored == 20


def _send_until_lost(sender: QueueStorageServiceSender, k: int) -> None:
    i = 0
    try:
        while True:
            sender.store(LEAF, Result(f"results.s{k}.r{i}", i, x=np.arange(4)))
            i += 1
    except WriterLostError:
        os._exit(3)


@pytest.mark.parametrize("moment", ["early", "random-1", "random-2", "random-3"])
def test_a_killed_writer_keeps_what_it_acknowledged(filename: str, moment: Any) -> None:
    """HDF5 promises a consistent file as of the last flush unless the writer dies
    *while flushing*: then the file may not open. Anything else fails the test. A
    kill that tore a file in a flush is tried again, on a new file, at another moment."""
    for attempt in range(_KILL_ATTEMPTS):
        target = filename if attempt == 0 else f"{filename}.{attempt}"
        if _kill_writer_and_check(target, 0.05 if moment == "early" and attempt == 0
                                  else random.uniform(0.1, 1.5)):
            return
    pytest.skip(f"the writer was killed in the middle of an HDF5 flush {_KILL_ATTEMPTS} "
                f"times (see the docs)")


_KILL_ATTEMPTS = 5


def _kill_writer_and_check(filename: str, after: float) -> bool:
    """Kill a queue writer under full load ``after`` seconds in, and check the file
    holds what it acknowledged; ``False`` if the kill tore the file in a flush."""
    queue = StorageQueue(2, FORK)
    writer = _start(_writer, filename, queue)
    senders = [_start(_send_until_lost, queue.sender(k), k) for k in range(2)]
    time.sleep(after)
    writer.kill()
    writer.join(10)
    acked = list(queue.acked)
    phase = queue.writer_phase.value
    try:
        for sender in senders:  # the survivors notice, and finish
            sender.join(20)
        assert [p.exitcode for p in senders] == [3, 3]
    finally:
        _stop(writer, *senders)
    try:
        names = stored_names(filename)
    except (OSError, RuntimeError, KeyError):
        assert phase == FLUSHING, "a file torn outside a flush"
        return False
    for k in range(2):
        assert {f"results.s{k}.r{i}" for i in range(acked[k])} <= names
    # And a writer started afresh appends to it.
    HDF5StorageService(filename).store(LEAF, Result("results.after", 1))
    assert "results.after" in stored_names(filename)
    return True


def test_a_writer_killed_between_flushes_keeps_everything_acknowledged(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_writer, filename, queue)
    sender = queue.sender(0)
    try:
        for batch in range(3):
            for i in range(100):
                sender.store(LEAF, Result(f"results.b{batch}.r{i}", i))
            sender.wait_acknowledged()
        assert queue.writer_phase.value != FLUSHING
        writer.kill()
        writer.join(10)
    finally:
        _stop(writer)
    assert stored_names(filename) == {f"results.b{b}.r{i}" for b in range(3)
                                      for i in range(100)}


def test_send_done_raises_when_the_writer_is_gone(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_writer, filename, queue)
    sender = queue.sender(0)
    sender.store(LEAF, Result("a.b", 1))
    sender.wait_acknowledged()
    writer.kill()
    writer.join(10)
    sender.store(LEAF, Result("a.c", 1))  # into the pipe: nobody will take it
    with pytest.raises(WriterLostError, match="1 of 2"):
        sender.send_done()
    assert stored_names(filename) == {"a.b"}


@pytest.mark.timeout(30)  # without its timeout, the sender would wait for ever
def test_a_sender_with_a_timeout_stops_waiting(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    sender = QueueStorageServiceSender(queue, 0, timeout=0.3)
    queue.writer_state.value = 1  # a writer that says it runs ...
    queue.writer_pid.value = os.getpid()  # ... and lives, but never reads
    sender.store(LEAF, Result("a.b", 1))
    with pytest.raises(WriterLostError, match="waited 0.3"):
        sender.send_done()
    queue.close()


def _writer_that_fails_to_start(filename: str, queue: StorageQueue) -> None:
    QueueStorageServiceWriter(HDF5StorageService(filename, file_title=5), queue).run()


def test_a_writer_that_dies_before_it_runs_is_noticed_once_watched(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_writer_that_fails_to_start, filename, queue)  # a TypeError: exits
    queue.watch_writer(writer.pid)
    sender = queue.sender(0)
    sender.store(LEAF, Result("a.b", 1))
    with pytest.raises(WriterLostError, match="gone before it started: 0 of 1 requests"):
        sender.send_done()
    _stop(writer)
    assert writer.exitcode == 1


@pytest.mark.timeout(30)  # before, the sender waited for ever
def test_a_sender_waits_start_timeout_for_a_writer_that_never_runs(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_writer_that_fails_to_start, filename, queue)  # not watched
    sender = queue.sender(0, start_timeout=0.5)
    sender.store(LEAF, Result("a.b", 1))
    began = time.monotonic()
    with pytest.raises(WriterLostError, match=r"no queue writer started in 0\.5 s "
                                              r"\(start_timeout\).*1 requests of slot 0"):
        sender.wait_acknowledged()
    assert time.monotonic() - began >= 0.5
    _stop(writer)
    stuffed = queue.sender(0, start_timeout=0.5)  # a pipe filled up waits no longer either
    with pytest.raises(WriterLostError, match="start_timeout"):
        for k in range(10_000):
            stuffed.store(LEAF, Result(f"a.c{k}", "x" * 1000))
    queue.close()


def _late_writer(filename: str, queue: StorageQueue, delay: float) -> None:
    time.sleep(delay)  # slow imports or setup in the writer's process
    QueueStorageServiceWriter(HDF5StorageService(filename), queue).run()


def test_a_watched_writer_is_waited_for_while_it_lives(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    writer = _start(_late_writer, filename, queue, 1.5)
    queue.watch_writer(writer.pid)
    sender = queue.sender(0, start_timeout=0.3, timeout=np.float32(30))  # numpy numbers too
    sender.store(LEAF, Result("results.x", 1))
    sender.send_done()  # past start_timeout: the named writer lives, so it is waited for
    _stop(writer)
    assert writer.exitcode == 0 and stored_names(filename) == {"results.x"}
    for pid in (0, -1, "abc", None, True):
        with pytest.raises(ValueError, match="watch_writer: pid must be a process id"):
            queue.watch_writer(pid)
    queue.close()


@pytest.mark.parametrize(("make", "words"), [
    (lambda q: q.sender(0, start_timeout=0), "start_timeout must be a number of seconds above 0"),
    (lambda q: q.sender(0, timeout=-1), "timeout must be a number of seconds above 0"),
    (lambda q: QueueStorageServiceSender(q, 0, timeout="5"), "timeout must be"),
    (lambda q: QueueStorageServiceWriter(None, q, start_timeout=float("nan")), "start_timeout"),
    (lambda q: QueueStorageServiceWriter(None, q, reply_timeout=True), "reply_timeout must"),
    (lambda q: q.sender(0, timeout=np.bool_(True)), "timeout must be"),
    (lambda q: QueueStorageServiceWriter(None, q, flush_interval=None),
     "flush_interval must be a number of seconds of 0 or more, got None"),
])
def test_bad_timeouts_are_refused_naming_them(make: Any, words: str) -> None:
    queue = StorageQueue(1, FORK)
    with pytest.raises(ValueError, match=words):
        make(queue)
    QueueStorageServiceWriter(None, queue, flush_interval=0)  # flush after every request
    QueueStorageServiceWriter(None, queue, start_timeout=np.int64(60),
                              flush_interval=np.float32(0.02))
    queue.close()


@pytest.mark.parametrize(("make", "error", "words"), [
    (lambda q: q.watch(0, -3), ValueError, r"watch: pid must be a process id .* got -3"),
    (lambda q: q.watch(0, "12"), ValueError, "watch: pid must be a process id"),
    (lambda q: q.watch(5, 12), IndexError, r"slot 5 out of 0\.\.0"),
    (lambda q: q.sender("0"), TypeError, "slot must be an int, got '0'"),
    (lambda q: StorageQueue("2", FORK), ValueError, "number of senders .* got '2'"),
    (lambda q: StorageQueue(True, FORK), ValueError, "number of senders .* got True"),
    (lambda q: QueueStorageServiceWriter(None, "queue"), TypeError,
     "queue must be a StorageQueue, got str"),
])
def test_bad_queue_arguments_are_refused_naming_them(make: Any, error: type,
                                                     words: str) -> None:
    queue = StorageQueue(1, FORK)
    with pytest.raises(error, match=words):
        make(queue)
    assert list(queue.pids) == [0]  # a pid of -3 the writer would take for a dead sender
    queue.watch(np.int64(0), np.int32(12))
    assert list(queue.pids) == [12]
    queue.close()


# -- failure reports, torn and garbled pipes ------------------------------------------------

# A bad data name: the request fits in a pipe (64 KiB), its report (the name thrice) does not.
_HUGE_REPORT = {"/" + "n" * 30_000: 1}


def _send_one_that_fails(sender: QueueStorageServiceSender) -> None:
    sender.store(LEAF, Leaf("results.bad", _HUGE_REPORT))
    try:
        sender.send_done()
    except WriterError as error:
        os._exit(0 if error.seq == 1 and "bad data name" in str(error) else 4)
    os._exit(5)


def test_a_failure_report_larger_than_the_pipe_reaches_its_sender(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    sender = _start(_send_one_that_fails, queue.sender(0))
    try:
        report = QueueStorageServiceWriter(HDF5StorageService(filename), queue).run()
    finally:
        _stop(sender)
    assert report == WriterReport(stored=0, failed=1, done=(0,), lost=())
    assert sender.exitcode == 0


def _fail_many(sender: QueueStorageServiceSender, n: int, sent: Any) -> None:
    for i in range(n):
        sender.store(LEAF, Result(f"results.bad{i}", [1, "mixed"]))
    sent.set()
    raised = []
    while True:
        try:
            sender.send_done()
            break
        except WriterError as error:
            raised.append(error.seq)
    os._exit(0 if raised == list(range(1, n + 1)) else 4)


def test_more_failure_reports_than_the_pipe_holds_reach_their_sender(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    sent = FORK.Event()
    sender = _start(_fail_many, queue.sender(0), 60, sent)
    try:
        assert sent.wait(30)  # every request waits in the pipe: one batch, 60 reports
        report = QueueStorageServiceWriter(HDF5StorageService(filename), queue).run()
    finally:
        _stop(sender)
    assert report == WriterReport(stored=0, failed=60, done=(0,), lost=())
    assert sender.exitcode == 0


def test_a_sender_that_does_not_read_its_reports_is_let_go(filename: str) -> None:
    queue = StorageQueue(1, FORK)
    sender = queue.sender(0)
    sender.store(LEAF, Leaf("results.bad", _HUGE_REPORT))
    sender._send(_Done(sender.sent))  # done, and reads nothing while the writer runs
    report = QueueStorageServiceWriter(HDF5StorageService(filename), queue,
                                       reply_timeout=0.5).run()
    assert report == WriterReport(stored=0, failed=1, done=(0,), lost=())
    with pytest.raises(WriterLostError, match="before it delivered failure report #1"):
        sender.send_done()  # and does not wait for ever for the rest of it
    queue.close()


def test_a_store_that_gives_up_mid_message_costs_only_its_slot(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    torn = QueueStorageServiceSender(queue, 0, timeout=0.3)
    with pytest.raises(WriterLostError, match="waited 0.3 s.*slot 0 is unusable now"):
        torn.store(LEAF, Result("results.big", np.zeros(100_000)))  # no writer reads yet
    assert torn.sent == 0
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    for call in (lambda: torn.store(LEAF, Result("results.small", 1)), torn.send_done,
                 lambda: queue.sender(0).store(LEAF, Result("results.small", 1))):
        with pytest.raises(WriterLostError, match="slot 0 is unusable"):
            call()
    _send(queue.sender(1), 1, 5)
    thread.join(30)
    assert outcome == [WriterReport(stored=5, failed=0, done=(1,), lost=(0,))]
    assert stored_names(filename) == {f"results.s1.r{i}" for i in range(5)}


def test_a_garbled_pipe_costs_only_its_slot(filename: str) -> None:
    queue = StorageQueue(2, FORK)
    garbled = queue.sender(0)
    garbled.store(LEAF, Result("results.before", 1))
    # What no sender writes: a length, and as many bytes that are no pickle.
    os.write(queue._requests[0][1].fileno(), struct.pack("<Q", 23) + b"no pickle, nor a header")
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    _send(queue.sender(1), 1, 3)
    thread.join(30)
    assert outcome == [WriterReport(stored=4, failed=0, done=(1,), lost=(0,))]
    assert stored_names(filename) == {"results.before"} | {f"results.s1.r{i}" for i in range(3)}
    with pytest.raises(WriterLostError, match="slot 0 is unusable: .*garbled"):
        garbled.send_done()


def _cannot_rebuild() -> None:
    raise RuntimeError("cannot be rebuilt in the writer")


class _BreaksInTheWriter:
    """Pickles, and fails to unpickle."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _cannot_rebuild, ()


def test_data_that_do_not_unpickle_in_the_writer_fail_only_their_request(filename: str,
                                                                        ) -> None:
    queue = StorageQueue(2, FORK)
    bad = queue.sender(0)
    bad.store(LEAF, Result("results.odd", 1, thing=_BreaksInTheWriter()))
    bad.store(LEAF, Result("results.after", 2))
    # started after both stores, so the failure can only come at send_done (see
    # test_errors_in_the_writer_are_raised_at_the_sender)
    thread, outcome = _threaded_writer(HDF5StorageService(filename), queue)
    with pytest.raises(WriterError) as caught:
        bad.send_done()
    error = caught.value
    assert type(error) is WriterError and error.seq == 1 and error.message == LEAF
    assert isinstance(error.exception, UnsupportedDataError)
    assert "do not unpickle" in str(error) and "cannot be rebuilt" in str(error)
    bad.send_done()
    _send(queue.sender(1), 1, 2)
    thread.join(30)
    assert outcome == [WriterReport(stored=3, failed=1, done=(0, 1), lost=())]
    assert stored_names(filename) == {"results.after", "results.s1.r0", "results.s1.r1"}
