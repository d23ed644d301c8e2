"""NuMap on a concurrent.futures.Executor: thread and process pools, and dask when installed.

Every executor here belongs to the test: NuMap never shuts it down, the
fixtures do. The dask cluster listens on the loopback interface only.
"""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import (
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from pathlib import Path

import pytest

import numap
from numap import BrokenPoolError, NuMap, RemoteTraceback, WorkerLostError
from papyflow import Piper, Plumber
from tests.helpers import Counting, add, double, exit_on, fail_on, sleepy, slow_on
from tests.pipeline_helpers import inc

pytestmark = pytest.mark.timeout(60)

EXECUTORS = ("thread", "process", "dask")


# -- executors ------------------------------------------------------------------------------


try:
    import distributed
except ImportError:
    distributed = None
NO_DASK = "dask.distributed is an optional extra (pip install 'papyflow[dask]')"


def local_cluster():
    """Two worker processes of one thread each; every socket on 127.0.0.1, no dashboard."""
    return distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})


@pytest.fixture(scope="module")
def dask_client(request):
    """A dask cluster shared by the module's tests (None without dask), closed at the end.

    A module fixture is set up before the check that no test leaves a process
    behind, so the cluster's processes are not counted against a test.
    """
    if distributed is None:
        yield None
        return
    import psutil

    from multiprocessing import resource_tracker

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    tracker_before = resource_tracker._resource_tracker._pid
    cluster = local_cluster()
    client = distributed.Client(cluster)

    def close():
        client.close()
        cluster.close()
        # multiprocessing's resource tracker, started for dask's spawned processes,
        # is stopped as it expects (killed, it would be reported dead to the next
        # user of spawned processes, which then fails to start them)
        if tracker_before is None and resource_tracker._resource_tracker._pid is not None:
            resource_tracker._resource_tracker._stop()
        # dask's worker processes end a moment after close(): wait for them, so that
        # the tests of the next modules do not count them as theirs
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for p in me.children(recursive=True) if p.pid not in before
                    and p.status() != psutil.STATUS_ZOMBIE]
            if not left:
                return
            time.sleep(0.05)
        for process in left:
            process.kill()

    request.addfinalizer(close)
    yield client


@pytest.fixture(params=EXECUTORS)
def executor(request, dask_client):
    """A two-worker executor of each kind; the test owns it, the fixture shuts it down."""
    if request.param == "dask":
        if dask_client is None:
            pytest.importorskip("distributed", reason=NO_DASK)
        yield dask_client.get_executor()
        return
    pool = (ThreadPoolExecutor(2) if request.param == "thread"
            else ProcessPoolExecutor(2))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def threads():
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def processes():
    pool = ProcessPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


class Watched(Executor):
    """An executor that submits to ``inner`` and counts the futures (no ``_max_workers``)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.submitted = 0
        self.finished = 0
        self.cancelled = 0
        self.most_in_flight = 0
        self.mapped = False
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        future = self.inner.submit(fn, *args, **kwargs)
        with self._lock:
            self.submitted += 1
            self.most_in_flight = max(self.most_in_flight, self.submitted - self.finished)
        future.add_done_callback(self._count)
        return future

    def _count(self, future: Future) -> None:
        with self._lock:
            self.finished += 1
            self.cancelled += future.cancelled()

    def map(self, *args, **kwargs):
        self.mapped = True
        return super().map(*args, **kwargs)


_crash = threading.local()


def crash_on(x, bad=5):
    """``x``; for ``bad``, the executor below fails the whole future holding it."""
    if x == bad:
        _crash.hit = True
    return x


class Crashing(Executor):
    """A thread pool whose future fails as a whole when it ran ``crash_on``'s bad item."""

    def __init__(self) -> None:
        self.inner = ThreadPoolExecutor(2)

    def submit(self, fn, /, *args, **kwargs):
        def run():
            _crash.hit = False
            result = fn(*args, **kwargs)
            if _crash.hit:
                raise RuntimeError("the worker running this batch died")
            return result
        return self.inner.submit(run)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.inner.shutdown(wait, cancel_futures=cancel_futures)


def lock_for(x):
    return threading.Lock() if x == 2 else x


def _collect(nm, n, timeout=30, task=0):
    out = []
    for _ in range(n):
        try:
            out.append(nm.next(timeout=timeout, task=task))
        except Exception as exc:  # noqa: BLE001 - the item's result
            out.append(exc)
    return out


# -- every executor ---------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_results_are_those_of_map(executor, ordered):
    with NuMap(double, range(300), executor=executor, worker_num=2, ordered=ordered) as nm:
        out = list(nm)
    assert (out if ordered else sorted(out)) == [2 * i for i in range(300)]


def test_a_failing_item_fails_alone_with_its_traceback(executor):
    with NuMap(fail_on, range(8), kwargs={"bad": (3, 6)}, executor=executor,
               worker_num=2) as nm:
        out = _collect(nm, 8)
        with pytest.raises(StopIteration):
            nm.next(timeout=30)
    assert [x for i, x in enumerate(out) if i not in (3, 6)] == [0, 1, 2, 4, 5, 7]
    for i in (3, 6):
        assert isinstance(out[i], ValueError) and str(out[i]) == f"bad item {i}"
    if not isinstance(executor, ThreadPoolExecutor):  # it crossed a process boundary
        assert isinstance(out[3].__cause__, RemoteTraceback)
        assert "fail_on" in str(out[3].__cause__)


def test_chained_tasks_and_a_task_beside_them(executor):
    nm = NuMap(executor=executor, worker_num=2)
    doubled = nm.add_task(double, range(100))
    summed = nm.add_task(add, doubled, args=(1,))
    beside = nm.add_task(double, range(50))
    nm.start()
    try:
        assert list(summed) == [2 * i + 1 for i in range(100)]
        assert list(beside) == [2 * i for i in range(50)]
    finally:
        nm.stop()


def test_a_failed_item_fails_the_chained_task_unevaluated(executor):
    nm = NuMap(executor=executor, worker_num=2)
    checked = nm.add_task(fail_on, range(10), kwargs={"bad": (0, 4)})
    nm.add_task(double, checked)
    nm.start()
    try:
        out = _collect(nm, 10, task=1)
    finally:
        nm.stop()
    assert [out[i] for i in (1, 2, 3, 5, 6, 7, 8, 9)] == [2, 4, 6, 10, 12, 14, 16, 18]
    assert [str(out[i]) for i in (0, 4)] == ["bad item 0", "bad item 4"]


def test_an_endless_input_runs_in_a_bounded_window(executor):
    watched = Watched(executor)
    source = Counting(itertools.count())
    nm = NuMap(double, source, executor=watched, worker_num=2, stride=64, buffer=256)
    try:
        for i in range(3000):
            assert nm.next(timeout=30) == 2 * i
        # Never more futures in flight than the window: 2 per worker.
        assert watched.most_in_flight <= 2 * 2
        # Never more items pulled than were read plus the buffer (and one loan).
        assert source.taken <= 3000 + 256 + 64
        assert not watched.mapped
    finally:
        nm.stop()


# -- thread and process pools -----------------------------------------------------------------


def test_worker_num_defaults_to_the_executors_workers(threads):
    nm = NuMap(executor=threads)
    assert nm.worker_type == "executor" and nm.worker_num == 2
    assert "executor" not in nm.settings and nm.settings["worker_type"] == "executor"


def test_lambdas_and_closures_reach_a_process_pool(processes):
    offset = 10
    with NuMap(lambda x: x + offset, range(20), executor=processes) as nm:
        assert list(nm) == list(range(10, 30))


def test_items_and_results_that_cannot_be_pickled_fail_alone(processes):
    items = [0, 1, threading.Lock(), 3, 4]
    with NuMap(double, items, executor=processes) as nm:
        out = _collect(nm, 5)
    assert [out[i] for i in (0, 1, 3, 4)] == [0, 2, 6, 8]
    assert isinstance(out[2], (TypeError, pickle.PicklingError))
    with NuMap(lock_for, range(5), executor=processes) as nm:
        out = _collect(nm, 5)
    assert [out[i] for i in (0, 1, 3, 4)] == [0, 1, 3, 4]
    assert isinstance(out[2], TypeError) and "cannot be sent back" in str(out[2])


def test_a_future_that_fails_as_a_whole_fails_only_its_culprit():
    crashing = Crashing()
    try:
        # Cheap items: batches of many items, so the culprit's batch is split.
        with NuMap(crash_on, range(2000), executor=crashing, worker_num=2) as nm:
            out = _collect(nm, 2000)
    finally:
        crashing.shutdown(cancel_futures=True)
    assert [x for i, x in enumerate(out) if i != 5] == [i for i in range(2000) if i != 5]
    assert isinstance(out[5], RuntimeError) and "worker running this batch died" in str(out[5])
    assert any("item 5 of task 0" in note for note in out[5].__notes__)


def test_a_broken_process_pool_fails_clearly_and_does_not_hang(processes):
    nm = NuMap(exit_on, itertools.count(), kwargs={"bad": 5}, executor=processes)
    out = []
    began = time.monotonic()
    while time.monotonic() - began < 30:
        try:
            out.append(nm.next(timeout=30))
        except StopIteration:
            break
        except BrokenPoolError as exc:
            out.append(exc)
            break
        except WorkerLostError as exc:
            out.append(exc)
    nm.stop()
    # Items in flight when the pool broke fail with it; then every next() says so.
    assert isinstance(out[-1], BrokenPoolError)
    assert "ProcessPoolExecutor broke (BrokenProcessPool" in str(out[-1])
    assert all(x == i or isinstance(x, (WorkerLostError, BrokenPoolError))
               for i, x in enumerate(out))
    assert 5 not in out


def test_an_executor_shut_down_by_its_owner_breaks_the_numap():
    pool = ThreadPoolExecutor(1)
    nm = NuMap(sleepy, itertools.count(), kwargs={"seconds": 0.01}, executor=pool)
    try:
        assert nm.next(timeout=30) == 0
        pool.shutdown(wait=False, cancel_futures=True)
        with pytest.raises(BrokenPoolError, match="refused a batch"):
            while True:
                try:
                    nm.next(timeout=30)
                except (WorkerLostError, CancelledError):  # in flight at the shutdown
                    pass
    finally:
        nm.stop()
        pool.shutdown(wait=True)


def test_timeouts_and_skip(threads):
    with NuMap(slow_on, range(6), kwargs={"slow": 0, "seconds": 0.5}, executor=threads,
               skip=True) as nm:
        with pytest.raises(numap.TimeoutError):
            nm.next(timeout=0.05)
        assert list(nm) == [1, 2, 3, 4, 5]  # item 0 was skipped
    with NuMap(slow_on, range(3), kwargs={"slow": 0, "seconds": 0.3}, executor=threads) as nm:
        with pytest.raises(numap.TimeoutError):
            nm.next(timeout=0.05)
        assert list(nm) == [0, 1, 2]  # kept for a later call


def test_stop_cancels_the_futures_not_started_and_leaves_the_executor_running():
    pool = ThreadPoolExecutor(1)
    watched = Watched(pool)
    try:
        nm = NuMap(sleepy, range(100), kwargs={"seconds": 0.05}, executor=watched, worker_num=2)
        assert nm.next(timeout=30) == 0
        nm.stop()
        deadline = time.monotonic() + 10
        while watched.finished < watched.submitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watched.cancelled >= 1  # waiting in the pool's queue: never ran
        assert watched.finished == watched.submitted
        assert pool.submit(double, 21).result(timeout=10) == 42  # still the caller's
    finally:
        pool.shutdown(wait=True)


def test_a_plumber_runs_on_an_executor_numap(threads):
    nm = NuMap(executor=threads, worker_num=2)
    p = Plumber()
    a = Piper(inc, parallel=nm, name="a")
    b = Piper(inc, parallel=nm, name="b", track=True)
    p.add_pipe((a, b))
    p.start([range(50)])
    p.run()
    p.wait(timeout=30)
    assert p.stats["state"] == "finished"
    assert p.stats["pipers_tracked"][b] == [{i: i + 2 for i in range(50)}]
    p.stop()
    assert threads.submit(double, 1).result(timeout=10) == 2


# -- argument errors ------------------------------------------------------------------------


def test_executor_type_without_an_executor_names_the_argument():
    with pytest.raises(ValueError, match="executor="):
        NuMap(worker_type="executor")


def test_an_executor_that_is_not_one_names_the_argument():
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        NuMap(worker_type="executor", executor=object())


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_an_executor_with_another_worker_type_is_refused(threads, worker_type):
    with pytest.raises(ValueError, match="executor= goes with worker_type='executor'"):
        NuMap(worker_type=worker_type, executor=threads)


def test_an_executor_that_does_not_tell_its_size_needs_worker_num(threads):
    with pytest.raises(ValueError, match="worker_num"):
        NuMap(executor=Watched(threads))
    assert NuMap(executor=Watched(threads), worker_num=3).worker_num == 3


# -- dask: a worker that dies ---------------------------------------------------------------


@pytest.mark.slow
def test_a_dask_worker_that_dies_fails_its_item_and_the_run_goes_on():
    pytest.importorskip("distributed", reason=NO_DASK)
    import dask
    # Without retries, dask fails a task at the first death of its worker (KilledWorker).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = local_cluster()
        client = distributed.Client(cluster)
        try:
            with NuMap(exit_on, range(400), kwargs={"bad": 300},
                       executor=client.get_executor(), worker_num=2) as nm:
                out = _collect(nm, 400, timeout=60)
        finally:
            client.close()
            cluster.close()
    assert type(out[300]).__name__ == "KilledWorker"
    assert any("item 300 of task 0" in note for note in out[300].__notes__)
    # A batch the dying worker held alongside it may fail as well: no retries were allowed.
    failed = [i for i, x in enumerate(out) if x != i]
    assert 300 in failed and len(failed) <= 3


# -- the example ----------------------------------------------------------------------------


def test_the_example_runs():
    example = Path(__file__).resolve().parent.parent / "examples" / "numap_executor.py"
    done = subprocess.run([sys.executable, str(example)], check=False, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "first five of an endless input: [0, 1, 2, 3, 4]" in done.stdout
    assert ("dask: [2568, 2571" in done.stdout if distributed is not None
            else "dask: not installed" in done.stdout)
