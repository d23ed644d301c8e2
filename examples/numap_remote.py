"""Remote workers on this machine: a keyed ``numap-worker`` server on loopback, and a
NuMap using it beside one local worker process.

Run it with ``python examples/numap_remote.py``. It starts the server itself
(as ``python -m numap.worker serve``), in a temporary folder holding a fresh
key, and stops it at the end. On real hosts you start the servers yourself:
see ``docs/distributed.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numap import NuMap
from numap._auth import AuthenticationError, keygen


def collatz_steps(n):
    """How many steps the Collatz sequence of ``n`` takes to reach 1 (CPU work)."""
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


def where(n):
    time.sleep(0.005)  # a little work, so that every worker gets some
    return os.getpid()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        key = keygen(Path(folder) / "worker.key")
        server = subprocess.Popen(
            [sys.executable, "-m", "numap.worker", "serve", "--bind", "tcp://127.0.0.1:0",
             "--workers", "2", "--auth", str(key)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline()  # numap-worker: serving 2 ... on tcp://...
            if " on tcp://" not in line:
                raise SystemExit(f"the worker server did not start: {line!r}")
            address = line.split(" on tcp://", 1)[1].split()[0]
            print(f"server: {address}")
            with NuMap(collatz_steps, range(1, 20001), worker_num=0,
                       worker_remote=((address, 2),), remote_auth=key) as steps:
                longest = max(zip(steps, range(1, 20001)))
            print(f"longest Collatz sequence below 20,001: {longest[1]} ({longest[0]} steps)")
            with NuMap(where, range(200), worker_num=1, worker_remote=((address, 2),),
                       remote_auth=key) as pids:
                print(f"worker processes used, local and remote: {len(set(pids))}")
            try:
                NuMap(abs, [-1], worker_num=0, worker_remote=((address, 1),))
            except AuthenticationError as error:
                print(f"without the key: {type(error).__name__}: {error}")
        finally:
            server.terminate()
            server.wait(10)
            server.stdout.close()


if __name__ == "__main__":
    main()
