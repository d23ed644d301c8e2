"""Run one measurement in a fresh subprocess with a hard timeout.

The child gets its own session (so its own process group): on timeout the
whole group - the child and every worker it started - is killed.  After a
normal exit the group is searched for processes left behind; they get a short
grace period, then are killed and counted, so one contender's stragglers can
never disturb the next measurement.  Output goes to temporary files rather
than pipes, so a straggler holding the child's stdout cannot stall the runner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks._one import RESULT_MARKER


@dataclass
class ChildOutcome:
    """What the runner learned from one measuring subprocess."""

    payload: dict[str, Any] | None
    timed_out: bool
    returncode: int | None
    wall_s: float
    stderr_tail: str
    leftovers: int = 0
    """Processes of the child's group still alive after the grace period."""
    notes: list[str] = field(default_factory=list)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def kill_group(pgid: int) -> None:
    """SIGKILL every process of group ``pgid``; ignore an already empty group."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap_group(pgid: int, grace_s: float) -> int:
    """Wait up to ``grace_s`` for group ``pgid`` to empty, then kill it.

    Returns how many processes were still alive when the grace period ended.
    """
    deadline = time.monotonic() + grace_s
    members = group_members(pgid)
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = group_members(pgid)
    if members:
        kill_group(pgid)
    return len(members)


def parse_payload(stdout: str) -> dict[str, Any] | None:
    """Return the last result line of ``stdout`` as a dict, if any."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            try:
                payload: dict[str, Any] = json.loads(line[len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                return None
            return payload
    return None


def run_child(
    args: list[str],
    timeout_s: float,
    cwd: Path,
    env: dict[str, str],
    grace_s: float = 2.0,
) -> ChildOutcome:
    """Run ``python -m benchmarks._one *args`` and collect its outcome."""
    cmd = [sys.executable, "-m", "benchmarks._one", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid)
            proc.wait()
        except BaseException:
            # Ctrl-C or similar: the child sits in its own session, take it down too.
            kill_group(proc.pid)
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        leftovers = reap_group(proc.pid, 0.0 if timed_out else grace_s)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    outcome = ChildOutcome(
        payload=parse_payload(stdout),
        timed_out=timed_out,
        returncode=proc.returncode,
        wall_s=wall,
        stderr_tail=stderr[-1500:],
        leftovers=0 if timed_out else leftovers,
    )
    if timed_out and outcome.payload is not None:
        outcome.notes.append("hung after reporting (killed at timeout)")
    if outcome.leftovers:
        outcome.notes.append(f"{outcome.leftovers} process(es) left behind, killed")
    return outcome
