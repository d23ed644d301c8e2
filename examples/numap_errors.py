"""Failures in NuMap: exceptions per item, timeouts, and a worker process that dies."""

import os
import time

import numap
from numap import NuMap


def invert(x):
    return 1 / x


def nap(x):
    time.sleep(0.5 if x == 0 else 0)
    return x


def crash_on_three(x):
    if x == 3:
        os._exit(1)  # the worker process dies here
    return x


def take(results, n):
    out = []
    for _ in range(n):
        try:
            out.append(results.next(timeout=30))
        except Exception as exc:  # each failed item raises its own exception
            out.append(f"{type(exc).__name__}: {exc}")
    return out


if __name__ == "__main__":
    # The exception of an item is raised for that item; the next item goes on.
    with NuMap(invert, [1, 0, 4], worker_num=2) as results:
        print(take(results, 3))

    # A result that misses its timeout: kept for later (skip=False) ...
    with NuMap(nap, [0, 1], worker_type="thread", worker_num=2) as results:
        try:
            results.next(timeout=0.05)
        except numap.TimeoutError:
            print("late, kept:", results.next(timeout=5), results.next(timeout=5))

    # ... or dropped (skip=True).
    with NuMap(nap, [0, 1], worker_type="thread", worker_num=2, skip=True) as results:
        try:
            results.next(timeout=0.05)
        except numap.TimeoutError:
            print("late, dropped; next is", results.next(timeout=5))

    # A worker process that dies fails the item it was running; the others are re-run.
    with NuMap(crash_on_three, range(6), worker_num=2) as results:
        for line in take(results, 6):
            print(line)
