"""Worker servers for the remote tests: started as their own process groups, always stopped."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    """A running ``numap-worker serve`` (its own process group: its workers too)."""

    process: subprocess.Popen[str]
    address: str  # host:port
    endpoint: str

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


class Servers:
    """Starts servers on loopback; :meth:`close` stops them and checks nothing is left."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []

    def start(self, workers: int = 2, key: Path | None = None,
              bind: str = "tcp://127.0.0.1:0", extra: tuple[str, ...] = ()) -> Server:
        command = [sys.executable, "-m", "numap.worker", "serve", "--bind", bind,
                   "--workers", str(workers), *extra]
        if key is not None:
            command += ["--auth", str(key)]
        # Functions of importable modules travel by reference: the server must be able
        # to import the test modules, as a real server imports the user's modules.
        here = Path(__file__).resolve().parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True, env=env)
        server = Server(process, "", "")
        self.started.append(server)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline() if ready else ""
        if " on tcp://" not in line:
            process.kill()
            raise RuntimeError(f"the worker server did not start: {line!r} "
                               f"{process.stderr.read() if process.stderr else ''}")
        server.endpoint = line.split(" on ", 1)[1].split()[0]
        server.address = server.endpoint[len("tcp://"):]
        return server

    def close(self) -> None:
        for server in self.started:
            server.signal(signal.SIGCONT)  # a frozen one must see its SIGTERM
            server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for server in self.started:
            try:
                server.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                server.signal(signal.SIGKILL)
                server.process.wait(5)
            # its worker processes leave when their inboxes close
            while server.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if server.alive():
                server.signal(signal.SIGKILL)
                time.sleep(0.2)
            for stream in (server.process.stdout, server.process.stderr):
                if stream is not None:
                    stream.close()
        leftover = [s.process.pid for s in self.started if s.alive()]
        self.started.clear()
        assert not leftover, f"worker server process groups left running: {leftover}"
