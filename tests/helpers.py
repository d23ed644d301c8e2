"""Module-level functions for the tests (picklable by reference in every backend)."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path


def sigint_as_default() -> None:
    """``preexec_fn`` of a child that a test sends SIGINT (Ctrl-C): a shell may start a
    job with SIGINT ignored, an ignored signal stays ignored across exec, and Python
    installs its KeyboardInterrupt handler only on the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hold_or_time(item):
    """``("hold", seconds, marker)``: write this process's pid to ``marker``, then hold
    this interpreter's lock for ``seconds`` (a C call that does not let it go, so the
    worker's thread that reads its pipe cannot run); any other item: when it ran."""
    if item[0] == "hold":
        Path(f"{item[2]}.new").write_text(str(os.getpid()))
        os.replace(f"{item[2]}.new", item[2])  # whole when it appears
        ctypes.PyDLL(None).sleep(item[1])
    return item[0], time.time()


def wait_for(marker, seconds=60.0):
    """Wait until the file ``marker`` exists (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def hold_then_large(marker, seconds, count):
    """Items for :func:`hold_or_time`: a hold of ``seconds``, then, once it began,
    ``count`` arrays of 4 MiB (more than a pipe holds; the first goes to the worker
    that holds its lock)."""
    import numpy as np

    yield "hold", seconds, str(marker)
    wait_for(marker)
    for k in range(count):
        yield "large", np.full(1 << 19, float(k))


def double(x):
    return 2 * x


def add(x, y, z=0):
    return x + y + z


def fail_on(x, bad=(3,)):
    if x in bad:
        raise ValueError(f"bad item {x}")
    return x


def sleepy(x, seconds=0.01):
    time.sleep(seconds)
    return x


def slow_on(x, slow=0, seconds=0.5):
    if x == slow:
        time.sleep(seconds)
    return x


def jitter(x):
    time.sleep(((x * 7919) % 5) / 1000)
    return x


def exit_on(x, bad=5, code=3):
    if x == bad:
        os._exit(code)
    return x


def kill_on(x, bad=5):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def segfault_on(x, bad=5):
    if x == bad:
        import ctypes
        import faulthandler

        faulthandler.disable()  # the crash is the point: no stack dump in the test output
        ctypes.string_at(0)
    return x


def always_exit(x):
    os._exit(1)


def pid(x):
    return os.getpid()


class Counting:
    """An iterator over ``source`` that counts how many items were taken from it."""

    def __init__(self, source):
        self.source = iter(source)
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.source)
        self.taken += 1
        return item


class Raising:
    """An input that raises ``OSError`` on every ``next`` but each ``every``-th, which
    gives that call's number; it ends after ``end`` calls (never, if ``None``)."""

    def __init__(self, every=0, end=None):
        self.calls, self.every, self.end = 0, every, end

    def __iter__(self):
        return self

    def __next__(self):
        self.calls += 1
        if self.end is not None and self.calls > self.end:
            raise StopIteration
        if self.every and self.calls % self.every == 0:
            return self.calls
        raise OSError("connection lost")
