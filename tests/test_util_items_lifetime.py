"""A fifo item lives as long as the process that dumped it: it is removed when that
process exits, whichever way (the interpreter's exit, a NuMap worker leaving, a
multiprocessing child), and a reader fails fast, not at its timeout, when the
process is gone."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from numap import NuMap
from papyflow.util.func import dump_item, load_item

FIFO_PREFIX = "tmp_papyflow_fifo_"


def _fifo_in(x, folder):
    return tuple(dump_item((b"item %d" % x,), type="fifo", dir=folder))


def _dump_and_wait(folder, queue, seconds):
    queue.put(tuple(dump_item((b"payload",), type="fifo", dir=folder, timeout=60)))
    time.sleep(seconds)


def test_fifos_of_numap_workers_are_removed_when_the_workers_leave(tmp_path):
    with NuMap(_fifo_in, range(4), args=(str(tmp_path),), worker_type="process",
               worker_num=2) as results:
        locators = list(results)
        assert len(os.listdir(tmp_path)) == 4  # served while the workers live
        assert all(locator[2] > 0 and locator[2] != os.getpid() for locator in locators)
    assert os.listdir(tmp_path) == []
    # at once, not a TimeoutError after waiting for a writer that is gone
    with pytest.raises(FileNotFoundError, match="its process exited"):
        load_item((locators[0],), timeout=30)


def test_a_fifo_served_by_a_live_worker_loads(tmp_path):
    with NuMap(_fifo_in, range(2), args=(str(tmp_path),), worker_type="process",
               worker_num=1) as results:
        assert [load_item((locator,)) for locator in results] == [b"item 0", b"item 1"]


def _child_serving(folder, seconds):
    """A forked child that dumps a fifo item into ``folder`` and lives ``seconds``
    more; the child and the item's locator."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_dump_and_wait, args=(str(folder), queue, seconds))
    child.start()
    return child, queue.get(timeout=30)


def test_fifos_of_a_multiprocessing_child_are_removed_when_it_exits(tmp_path):
    child, locator = _child_serving(tmp_path, 0.2)
    child.join(30)
    assert child.exitcode == 0
    assert os.listdir(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        load_item((locator,), timeout=30)


def test_a_reader_fails_fast_when_the_writer_was_killed(tmp_path):
    # SIGKILL leaves the fifo on disk: the reader finds its writer gone
    child, locator = _child_serving(tmp_path, 60)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert len(os.listdir(tmp_path)) == 1
    # within the grace, not a TimeoutError after the reader's whole timeout
    with pytest.raises(EOFError, match=rf"pid {child.pid}\) has exited"):
        load_item((locator,), timeout=30)
    assert os.listdir(tmp_path) == []  # the reader removed the stale fifo


def test_a_locator_without_the_writers_pid_still_loads(tmp_path):
    locator = dump_item((b"old",), type="fifo", dir=tmp_path)
    assert locator.port == os.getpid()
    assert load_item((("fifo", locator.address, 0, ""),)) == b"old"
