"""Shared fixtures: both backends, worker servers on loopback, and a check that no test
leaves a process behind."""

from __future__ import annotations

import gc
import time

import psutil
import pytest

from tests.remote_helpers import Servers

BACKENDS = ("thread", "process")


@pytest.fixture(params=BACKENDS)
def worker_type(request: pytest.FixtureRequest) -> str:
    """Run the test once per backend."""
    return request.param


@pytest.fixture
def servers(tmp_path):
    """Starts ``numap-worker`` servers on loopback (:class:`Servers`); stops them after."""
    started = Servers(tmp_path)
    yield started
    started.close()


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Fail a test that leaves a worker process running."""
    before = {p.pid for p in _children()}
    yield
    gc.collect()
    deadline = time.monotonic() + 5.0
    while True:
        left = [p for p in _children() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"worker processes left behind: {[p.pid for p in left]}"
