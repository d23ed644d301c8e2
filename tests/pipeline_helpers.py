"""Module-level worker functions for the pipeline tests (picklable by reference)."""

from __future__ import annotations

import os
import time


def inc(inbox, by=1):
    return inbox[0] + by


def double(inbox):
    return inbox[0] * 2


def add(inbox):
    return sum(inbox)


def fail_on_three(inbox):
    if inbox[0] == 3:
        raise ValueError("three")
    return inbox[0]


def pair(inbox):
    return (inbox[0], -inbox[0])


def group_sum(inbox):
    # consume=n: inbox[0] holds n consecutive results of the one upstream piper
    return sum(inbox[0])


def nap(inbox, seconds=0.0):
    time.sleep(seconds)
    return inbox[0]


def slow_on_two(inbox):
    if inbox[0] == 2:
        time.sleep(1.0)
    return inbox[0]


def exit_on_four(inbox):
    if inbox[0] == 4:
        os._exit(1)
    return inbox[0]


def sleep_for(inbox):
    time.sleep(inbox[0])
    return inbox[0]


def tag_pid(inbox):
    # appends the evaluating process to the item's trail: (x, pid, pid, ...)
    item = inbox[0]
    trail = item if isinstance(item, tuple) else (item,)
    return (*trail, os.getpid())


def fail_on_trail_three(inbox):
    if inbox[0][0] == 3:
        raise ValueError("three")
    return inbox[0]


def describe_step(inbox):
    # a synchronized inbox: one SyncedInput per input
    return tuple((i.data, i.data_index, i.data_index_end, i.data_same_as_previous)
                 for i in inbox)


def label_with_client(inbox):
    image, client = inbox
    if image.data == "img3":
        raise ValueError("bad image")
    return f"{client.data}:{image.data}"


def exit_now(inbox):
    # The worker process ends at once: its item is lost, and so is every
    # worker that takes over, until the NuMap gives up.
    os._exit(3)
