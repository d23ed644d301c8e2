"""The worker server: one zmq ROUTER socket in front of N local worker processes.

::

    clients (DEALER) --tcp--> ROUTER: check each message (numap._auth.Session)
                                 |   TASK: kept per client, sent to a worker before its first batch
                                 |   BATCH: queued; a free worker process (at most 2 batches
                                 |          each) gets it through its pipe
                                 v
                       worker processes (numap.backends.process._worker_main)
                                 |   RESULT through the pipe
                                 v
                      ROUTER --> the client that sent the batch (signed)

The main loop does all socket and pipe work in one thread and never unpickles
anything: only the worker processes do, and only what came in a message whose
signature checked out. It never waits on a worker's pipe either: what a pipe
cannot take yet waits in the server and goes when the pipe has room, so a
worker process that reads nothing for a while (a long call that holds its
interpreter's lock) delays only its own batches, never the other clients nor
the server's answers. Task and batch numbers are renumbered on the way in
(clients pick their own) and back on the way out.

A worker process that dies fails the batches it held (``WorkerLostError``
naming this host and the process) and is replaced. A client that says BYE, or
that the server has not heard from for ``CLIENT_TIMEOUT`` seconds, is
forgotten: its queued batches are dropped, and results still coming for it
are thrown away. The server goes on serving the next client.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import multiprocess
import zmq

from .._auth import AuthenticationError, Session
from .._errors import WorkerLostError
from .._policy import DEFAULT as DEFAULT_POLICY
from .._policy import check as check_policy
from .._remote import CLIENT_TIMEOUT, LIMITS, MAX_MESSAGE, Message, is_loopback
from .._wire import (
    _HEADER,
    Channel,
    Frame,
    Kind,
    encode,
    framed,
    peek,
    pipe,
    write_some,
)
from ..backends.process import _failure, _worker_main

__all__ = ["WorkerServer"]

log = logging.getLogger("numap.worker")

PREFETCH = 2  # batches a worker process holds at once
_POLL_MS = 200
_ROOM_WAIT = 0.05  # seconds the loop waits, at most, for room in a full pipe of a worker


@dataclass(eq=False)
class _Client:
    identity: bytes
    session: Session
    label: str
    last_heard: float
    tasks: dict[int, int] = field(default_factory=dict)  # client task -> server task


@dataclass(eq=False)
class _Job:
    """A batch of a client, renumbered for the workers."""

    client: bytes
    task: int  # the client's numbers
    batch: int
    server_task: int
    parts: list[Any]


@dataclass(eq=False)
class _Process:
    process: Any
    inbox: Channel  # non-blocking: see _to_worker
    outbox: Channel
    loaded: set[int] = field(default_factory=set)
    held: deque[int] = field(default_factory=deque)
    unsent: deque[memoryview] = field(default_factory=deque)  # for the inbox, once it has room


def _at_least_one(name: str, value: object) -> int:
    """``value`` if it is an int of at least 1, else a TypeError or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _retag(parts: list[Any], task: int, batch: int) -> list[Any]:
    """A :mod:`numap._wire` frame with other task and batch numbers."""
    first = memoryview(parts[0])
    kind, codec, _, _, seconds = _HEADER.unpack_from(first)
    return [_HEADER.pack(kind, codec, task, batch, seconds) + first[_HEADER.size:],
            *parts[1:]]


class WorkerServer:
    """Serve ``workers`` worker processes to NuMap clients at ``bind``.

    Args:
        bind: a zmq TCP endpoint, ``tcp://127.0.0.1:5555`` by default; port 0
            takes a free port (see :attr:`endpoint` after :meth:`start`).
        workers: the number of worker processes (the number of CPUs by default).
        key: the shared key (see :func:`numap._auth.load_key`); required to
            bind to anything but a loopback address.
        max_message: the largest message taken, in bytes; a client sending a
            larger one is disconnected by zmq.
        worker_policy: how the system schedules the worker processes, as a
            NuMap's ``worker_policy`` (``'batch'`` by default: this server's loop
            feeds them, see :mod:`numap._policy`).

    Raises:
        ValueError: a bad endpoint, a non-loopback address without a key,
            ``workers`` or ``max_message`` below 1, or an unknown ``worker_policy``.
        TypeError: ``workers`` or ``max_message`` that is not an int.
    """

    def __init__(self, bind: str = "tcp://127.0.0.1:5555", workers: int | None = None,
                 key: bytes | None = None, *, max_message: int = MAX_MESSAGE,
                 worker_policy: str = DEFAULT_POLICY) -> None:
        if not bind.startswith("tcp://") or ":" not in bind[len("tcp://"):]:
            raise ValueError(f"bind must be a 'tcp://host:port' address, got {bind!r}")
        host = bind[len("tcp://"):].rpartition(":")[0].strip("[]")
        if key is None and not is_loopback(host):
            raise ValueError(f"bind {bind!r} is not a loopback address: a worker server "
                             "reachable from other hosts needs a key (--auth KEYFILE; make "
                             "one with 'numap-worker keygen PATH')")
        self.bind = bind
        self.workers = _at_least_one("workers",
                                     workers if workers is not None else (os.cpu_count() or 1))
        self.key = key
        self.max_message = _at_least_one("max_message", max_message)
        self.worker_policy = check_policy(worker_policy)
        if self.max_message >= 2**63:  # zmq's limit is a signed 64-bit number
            raise ValueError(f"max_message must be below 2**63, got {max_message}")
        self.endpoint = ""
        self.host = socket.gethostname()
        self._context: zmq.Context[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self._processes: list[_Process] = []
        self._clients: dict[bytes, _Client] = {}
        self._tasks: dict[int, tuple[bytes, list[Any]]] = {}  # server task -> client, frame
        self._jobs: dict[int, _Job] = {}  # server batch -> job
        self._queue: deque[int] = deque()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._mp = multiprocess.get_context("fork")

    # -- starting and stopping ---------------------------------------------------------

    def start(self) -> str:
        """Start the worker processes and bind; returns the endpoint bound."""
        for _ in range(self.workers):  # before zmq starts its threads
            self._processes.append(self._spawn())
        self._context = zmq.Context()
        router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        try:
            router.bind(self.bind)
        except zmq.ZMQError as error:
            router.close()
            self.close()
            raise OSError(f"cannot bind {self.bind}: {error}") from error
        self._router = router
        endpoint = router.getsockopt(zmq.LAST_ENDPOINT)
        self.endpoint = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        log.info("serving %d worker processes on %s%s", self.workers, self.endpoint,
                 " (authenticated)" if self.key else " (no key: loopback only)")
        return self.endpoint

    def _spawn(self) -> _Process:
        inbox_r, inbox_w = pipe()
        outbox_r, outbox_w = pipe()
        keep = {inbox_r.fd, outbox_w.fd}
        parent = [fd for p in self._processes for fd in (p.inbox.fd, p.outbox.fd)]
        parent += [inbox_w.fd, outbox_r.fd]
        process = self._mp.Process(target=_worker_main,
                                   args=(inbox_r.fd, outbox_w.fd,
                                         [fd for fd in parent if fd not in keep]),
                                   kwargs={"policy": self.worker_policy},
                                   daemon=True, name="numap-worker-process")
        process.start()
        inbox_r.close()
        outbox_w.close()
        os.set_blocking(inbox_w.fd, False)  # the loop never waits on a worker's pipe
        return _Process(process, inbox_w, outbox_r)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (from a signal handler or another thread)."""
        self._stopping.set()

    def close(self) -> None:
        """Stop the worker processes and close the socket."""
        for worker in self._processes:
            worker.inbox.close()  # the worker leaves when its inbox ends
        for worker in self._processes:
            worker.process.join(1.0)
            if worker.process.exitcode is None:
                with contextlib.suppress(OSError):
                    os.kill(worker.process.pid, signal.SIGKILL)
                worker.process.join(1.0)
            worker.outbox.close()
        self._processes.clear()
        if self._router is not None:
            self._router.close(linger=0)
            self._router = None
        if self._context is not None:
            self._context.term()
            self._context = None

    # -- the loop ----------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called; then close everything."""
        if self._router is None:
            self.start()
        try:
            last_sweep = time.monotonic()
            while not self._stopping.is_set():
                poller = zmq.Poller()
                assert self._router is not None
                poller.register(self._router, zmq.POLLIN)
                watched: dict[int, tuple[_Process, str]] = {}
                for worker in self._processes:
                    watched[worker.outbox.fd] = (worker, "out")
                    watched[worker.process.sentinel] = (worker, "gone")
                    poller.register(worker.outbox.fd, zmq.POLLIN)
                    poller.register(worker.process.sentinel, zmq.POLLIN)
                    if worker.unsent:
                        watched[worker.inbox.fd] = (worker, "in")
                        poller.register(worker.inbox.fd, zmq.POLLOUT)
                events = dict(poller.poll(_POLL_MS))
                if self._router in events:
                    self._read_clients()
                for fd, what in watched.items():
                    if fd in events:
                        worker, kind = what
                        if worker not in self._processes:
                            continue
                        if kind == "out":
                            self._read_worker(worker)
                        elif kind == "in":
                            self._write_worker(worker)
                        else:
                            self._worker_died(worker)
                now = time.monotonic()
                if now - last_sweep > 1.0:
                    last_sweep = now
                    self._forget_silent(now)
                self._dispatch()
        finally:
            self.close()

    # -- clients -------------------------------------------------------------------------

    def _read_clients(self) -> None:
        assert self._router is not None
        for _ in range(256):
            try:
                identity, *parts = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._from_client(identity.bytes, parts)

    def _deny(self, identity: bytes, reason: str) -> None:
        log.warning("refused a client: %s", reason)
        self._clients.pop(identity, None)
        assert self._router is not None
        with contextlib.suppress(zmq.ZMQError):
            self._router.send_multipart([identity, b"DENIED", reason.encode()])

    def _from_client(self, identity: bytes, parts: list[Any]) -> None:
        client = self._clients.get(identity)
        if client is None:
            session = Session(self.key, "handshake")
            try:
                answer = session.welcome(parts)
            except AuthenticationError as error:
                self._deny(identity, str(error))
                return
            label = f"client {identity.hex()[:8]}"
            session.label = label
            self._clients[identity] = _Client(identity, session, label, time.monotonic())
            self._send(identity, answer)
            self._send(identity, session.sign(Message.LIMITS,
                                              [LIMITS.pack(self.max_message)]))
            log.info("%s connected", label)
            return
        try:
            kind, body = client.session.open(parts)
        except AuthenticationError as error:
            self._forget(client, f"{error}")
            self._deny(identity, str(error))
            return
        client.last_heard = time.monotonic()
        if kind == Message.PING:
            self._send(identity, client.session.sign(Message.PONG, []))
        elif kind in (Message.TASK, Message.BATCH):
            try:
                head = peek(body)
            except (IndexError, ValueError, struct.error):  # not a frame: never served
                self._forget(client, "sent a malformed message")
                self._deny(identity, f"a malformed message of kind {kind}")
                return
            if kind == Message.TASK:
                self._add_task(client, head, body)
            else:
                self._add_batch(client, head, body)
        elif kind == Message.BYE:
            self._forget(client, "said goodbye")
        else:
            self._forget(client, f"sent a message of unknown kind {kind}")
            self._deny(identity, f"unknown message kind {kind}")

    def _add_task(self, client: _Client, head: Frame, body: list[Any]) -> None:
        if head.kind is not Kind.TASK:
            return
        server_task = next(self._ids)
        client.tasks[head.task] = server_task
        self._tasks[server_task] = (client.identity, _retag(body, server_task, 0))

    def _add_batch(self, client: _Client, head: Frame, body: list[Any]) -> None:
        server_task = client.tasks.get(head.task)
        if head.kind is not Kind.BATCH or server_task is None:
            return
        server_batch = next(self._ids)
        self._jobs[server_batch] = _Job(client.identity, head.task, head.batch, server_task,
                                        _retag(body, server_task, server_batch))
        self._queue.append(server_batch)

    def _forget(self, client: _Client, why: str) -> None:
        log.info("%s left (%s)", client.label, why)
        self._clients.pop(client.identity, None)
        for server_task in client.tasks.values():
            self._tasks.pop(server_task, None)
        dropped = [b for b, job in self._jobs.items() if job.client == client.identity]
        for server_batch in dropped:
            del self._jobs[server_batch]  # queued ones are skipped, late results dropped

    def _forget_silent(self, now: float) -> None:
        for client in list(self._clients.values()):
            if now - client.last_heard > CLIENT_TIMEOUT:
                self._forget(client, f"silent for {now - client.last_heard:.0f} s")

    def _send(self, identity: bytes, parts: list[Any]) -> None:
        assert self._router is not None
        with contextlib.suppress(zmq.ZMQError):  # a client that left
            self._router.send_multipart([identity, *parts], copy=False)

    # -- worker processes --------------------------------------------------------------------

    def _dispatch(self) -> None:
        for worker in self._processes:
            while self._queue and len(worker.held) < PREFETCH:
                server_batch = self._queue.popleft()
                job = self._jobs.get(server_batch)
                if job is None:
                    continue  # its client left
                task = self._tasks.get(job.server_task)
                if job.server_task not in worker.loaded and task is not None:
                    self._to_worker(worker, task[1])
                    worker.loaded.add(job.server_task)
                if not self._to_worker(worker, job.parts):
                    self._queue.appendleft(server_batch)
                    break  # it died: the sentinel says so
                worker.held.append(server_batch)

    def _to_worker(self, worker: _Process, parts: list[Any]) -> bool:
        """Send a frame to ``worker``'s inbox: what its pipe takes now, the rest when it
        has room (see :meth:`_write_worker`); ``False`` if its pipe is broken."""
        behind = bool(worker.unsent)  # its pipe is full already: this waits behind the rest
        worker.unsent.extend(framed(parts))
        return behind or self._write_worker(worker)

    def _write_worker(self, worker: _Process) -> bool:
        """Write what waits for ``worker``'s inbox, as far as its pipe takes it now;
        ``False`` if the pipe is broken. A worker that is gone keeps nothing unsent:
        its sentinel reports it, and the batches it held go back to the queue or
        fail (see :meth:`_worker_died`)."""
        return write_some(worker.inbox.fd, worker.unsent, _ROOM_WAIT)

    def _read_worker(self, worker: _Process) -> None:
        try:
            parts = worker.outbox.recv()
        except (EOFError, OSError):
            self._worker_died(worker)
            return
        self._deliver(worker, parts)

    def _deliver(self, worker: _Process, parts: list[Any]) -> None:
        """Send the RESULT a worker process wrote to the client of its batch."""
        head = peek(parts)
        with contextlib.suppress(ValueError):
            worker.held.remove(head.batch)
        job = self._jobs.pop(head.batch, None)
        if job is None:
            return  # its client left
        client = self._clients.get(job.client)
        if client is not None:
            self._send(job.client, client.session.sign(Message.RESULT,
                                                       _retag(parts, job.task, job.batch)))

    def _worker_died(self, worker: _Process) -> None:
        # The results it sent before it died are still in the pipe: deliver them first.
        with contextlib.suppress(EOFError, OSError):
            while select.select([worker.outbox.fd], [], [], 0)[0]:
                self._deliver(worker, worker.outbox.recv())
        worker.process.join(1.0)
        code = worker.process.exitcode
        self._processes.remove(worker)
        worker.unsent.clear()
        worker.inbox.close()
        worker.outbox.close()
        how = f"exit code {code}" if code is None or code >= 0 else \
            f"signal {signal.Signals(-code).name}"
        # It runs its batches in order: the first it held was running, the others had
        # not started and go to another worker process as they are.
        running, waiting = list(worker.held)[:1], list(worker.held)[1:]
        self._queue.extendleft(reversed(waiting))
        for server_batch in running:
            job = self._jobs.pop(server_batch, None)
            client = self._clients.get(job.client) if job else None
            if job is None or client is None:
                continue
            error = WorkerLostError(f"worker process {worker.process.pid} on {self.host} "
                                    f"died ({how}) while it held this batch",
                                    exitcode=code, worker=f"{self.host}:{worker.process.pid}",
                                    task=job.task)
            frame = encode(Kind.RESULT, job.task, job.batch, (None, [_failure(0, error)]))
            self._send(job.client, client.session.sign(Message.RESULT, frame))
        log.warning("worker process %d died (%s); starting another", worker.process.pid, how)
        if not self._stopping.is_set():
            self._processes.append(self._spawn())


def serve(bind: str, workers: int | None, key: bytes | None,
          max_message: int = MAX_MESSAGE, worker_policy: str = DEFAULT_POLICY) -> None:
    """Serve until SIGINT or SIGTERM, printing the endpoint first (for scripts and tests)."""
    server = WorkerServer(bind, workers, key, max_message=max_message,
                          worker_policy=worker_policy)
    endpoint = server.start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    print(f"numap-worker: serving {server.workers} worker processes on {endpoint}"
          f"{'' if key else ' (no key: loopback only)'}", flush=True)
    server.serve_forever()
    print("numap-worker: stopped", file=sys.stderr, flush=True)
