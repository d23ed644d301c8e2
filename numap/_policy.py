"""How the system schedules a NuMap's worker processes (``worker_policy``).

A NuMap's own process is the one that feeds every worker: its feeding thread
pickles each batch and copies each large array into shared memory, one item
after another, while the workers compute in parallel. With as many workers as
cores, a worker that a message wakes takes the core of the thread that wrote
it (the system favours a task that was waiting), and the next item is late
for every worker.

Worker processes are therefore scheduled as batch work by default
(``SCHED_BATCH`` on Linux): their priority is unchanged (the same share of the
CPU against every other process, and their nice value is left alone), but a
worker that wakes up waits for the running thread's turn to end instead of
taking its core at once. ``'normal'`` leaves them as any process is scheduled;
``'idle'`` runs them only on CPU time nothing else wants (``SCHED_IDLE``), for
a pipeline that must never slow the rest of the machine.

The policy is set in each worker process before it starts any thread, so every
thread of it has it, and so do the processes it starts. Where the system has
no such policy (not Linux), or refuses it, the workers run as it schedules
them by default; nothing else changes.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT", "POLICIES", "apply", "check"]

POLICIES: dict[str, str] = {"batch": "SCHED_BATCH", "normal": "SCHED_OTHER",
                            "idle": "SCHED_IDLE"}
"""The values of ``worker_policy``, and the system's policy each one sets."""

DEFAULT = "batch"
"""The default ``worker_policy`` of a NuMap."""


def check(policy: object) -> str:
    """``policy`` if it is one of :data:`POLICIES`; else ``TypeError`` or ``ValueError``
    naming ``worker_policy``."""
    if not isinstance(policy, str):
        raise TypeError(f"worker_policy must be a str, not {type(policy).__name__}: "
                        f"{policy!r}")
    if policy not in POLICIES:
        raise ValueError(f"worker_policy must be one of {', '.join(map(repr, POLICIES))}, "
                         f"got {policy!r}")
    return policy


def apply(policy: str) -> bool:
    """Schedule the calling thread (and the threads and processes it starts from now on)
    by ``policy``; whether the system took it."""
    number = getattr(os, POLICIES[policy], None)
    if number is None or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, number, os.sched_param(0))
    except OSError:  # refused (a sandbox): the default stays
        return False
    return True
