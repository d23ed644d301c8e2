"""Pipers that feed each other through one NuMap with a small buffer: a fan-out and
a fan-in on the same NuMap must not wait for one another for ever when the buffer
is full (a consumer waiting before it filled has to be told to lend)."""

from __future__ import annotations

import pytest

from numap import NuMap
from papyflow import Piper, Plumber


def ident(inbox):
    return inbox[0]


def neg(inbox):
    return -inbox[0]


def join(inbox):
    return inbox


@pytest.mark.parametrize("worker_type", ["thread", "process"])
@pytest.mark.parametrize("buffer", [4, 8])
def test_fan_out_and_fan_in_on_one_small_numap_finish(worker_type, buffer):
    numap = NuMap(worker_type=worker_type, worker_num=2, stride=4, buffer=buffer)
    a = Piper(ident, parallel=numap, name="a")
    b = Piper(ident, parallel=numap, name="b", branch=2)
    c = Piper(neg, parallel=numap, name="c", branch=1)
    d = Piper(join, parallel=numap, name="d", track=True)
    plumber = Plumber()
    plumber.add_pipe((a, b, d))
    plumber.add_pipe((a, c, d))
    plumber.start([range(300)])
    try:
        plumber.run()
        plumber.wait(timeout=60)
        results = plumber.stats["pipers_tracked"][d][0]
        # the fan-in's inbox follows branch order: c (branch 1) before b (branch 2)
        assert [results[i] for i in range(300)] == [(-i, i) for i in range(300)]
    finally:
        if plumber.state.value == "running":
            plumber.pause()
        plumber.stop()
