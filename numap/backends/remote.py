"""Remote workers: lanes on ``numap-worker`` servers, over zmq.

::

    feeding thread (scheduler)             I/O thread (one per NuMap)            server
    --------------------------             --------------------------            ------
    prepare(): pickle the batch            sends what send() queued, signed ---> runs it
    send(): queue it, wake the I/O  -----> reads RESULTs, checks them,      <--- RESULT
                                           unpickles, Sink.done()
                                           PING every second; a host silent for
                                           heartbeat_timeout s: its lanes are lost

Each ``(host, n)`` of ``worker_remote`` is one connection and ``n`` lanes of
``prefetch`` batches each; the server runs them on its worker processes. The
handshake happens in :meth:`RemoteBackend.start`: a server that refuses the
key raises :class:`~numap._auth.AuthenticationError`, one that does not answer
within ``HANDSHAKE_TIMEOUT`` seconds raises ``ConnectionError``, both naming
the host.

A lost host is *blameless* (see :class:`~numap.backends.base.LaneLoss`): the
batches it held are sent again, as they are, to the lanes left; with none
left, NuMap fails with an error naming the host. Its socket is closed at once,
so a late answer from it (a frozen host that wakes up) is never read: no
result is delivered twice.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import zmq

from .._auth import AuthenticationError, Session
from .._errors import with_remote_traceback
from .._execute import ItemFailure, TaskSpec
from .._remote import (
    HANDSHAKE_TIMEOUT,
    HEARTBEAT,
    HEARTBEAT_TIMEOUT,
    LIMITS,
    MAX_MESSAGE,
    Message,
    endpoint,
)
from .._wire import Codec, Kind, decode, encode, peek
from .base import Backend, Batch, Done, Lane, LaneLoss, Sink
from .process import prepare_batch, spread

__all__ = ["RemoteBackend"]


@dataclass(eq=False)
class _Host:
    address: str  # as the user gave it
    endpoint: str
    socket: Any
    session: Session
    lanes: list[Lane] = field(default_factory=list)
    batches: dict[int, tuple[Lane, Batch]] = field(default_factory=dict)
    last_heard: float = 0.0
    alive: bool = True
    max_message: int = MAX_MESSAGE


class RemoteBackend(Backend):
    """Lanes on remote worker servers (``worker_remote``).

    Args:
        workers: the number of lanes (the sum of the hosts' worker counts).
        name: the NuMap's name.
        hosts: ``((address, n), ...)``, addresses as ``host:port``.
        key: the shared key, or ``None`` (servers on loopback without a key).
        heartbeat_timeout: seconds of silence after which a host is lost.
    """

    target_seconds: ClassVar[float] = 0.02
    batch_stretch: ClassVar[float] = 8.0

    def __init__(self, workers: int, name: str, hosts: tuple[tuple[str, int], ...] = (),
                 key: bytes | None = None,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        super().__init__(workers, name)
        self.hosts_given = hosts
        self.endpoints = [endpoint(address) for address, _ in hosts]
        self.key = key
        self.heartbeat_timeout = heartbeat_timeout
        self._context: zmq.Context[Any] | None = None
        self._hosts: list[_Host] = []
        self._outgoing: deque[tuple[_Host, Lane, Batch, list[Any]]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- starting ---------------------------------------------------------------------

    def start(self, tasks: dict[int, TaskSpec], sink: Sink) -> list[Lane]:
        self.sink = sink
        frames = []
        for tid, spec in tasks.items():
            try:
                frames.append(encode(Kind.TASK, tid, 0, spec, codec=Codec.DILL))
            except Exception as exc:
                raise TypeError(f"task {tid}: its function {spec.func!r} cannot be sent to a "
                                f"remote worker: {exc}") from exc
        self._context = zmq.Context()
        try:
            for (address, count), endpoint in zip(self.hosts_given, self.endpoints,
                                                  strict=True):
                host = self._connect(address, endpoint)
                for frame in frames:
                    host.socket.send_multipart(host.session.sign(Message.TASK, frame),
                                               copy=False)
                for k in range(count):
                    lane = Lane(f"{address}#{k + 1}", capacity=self.prefetch, handle=host)
                    host.lanes.append(lane)
                self._hosts.append(host)
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"{self.name}-remote")
        self._thread.start()
        return [lane for host in self._hosts for lane in host.lanes]

    def _connect(self, address: str, endpoint: str) -> _Host:
        assert self._context is not None
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        sock.connect(endpoint)
        host = _Host(address, endpoint, sock, Session(self.key, f"worker {address}"))
        sock.send_multipart(host.session.hello())
        if not sock.poll(int(HANDSHAKE_TIMEOUT * 1000)):
            sock.close(linger=0)
            raise ConnectionError(f"worker {address} ({endpoint}) did not answer within "
                                  f"{HANDSHAKE_TIMEOUT:.0f} s: is numap-worker serving there, "
                                  "and is the address reachable?")
        parts = sock.recv_multipart()
        if parts and parts[0] == b"DENIED":
            sock.close(linger=0)
            reason = parts[1].decode(errors="replace") if len(parts) > 1 else "no reason"
            raise AuthenticationError(f"worker {address} refused this client: {reason}")
        try:
            host.session.accept(parts)
            if not sock.poll(int(HANDSHAKE_TIMEOUT * 1000)):
                raise ConnectionError(f"worker {address} ({endpoint}) sent no limits after "
                                      "the handshake")
            kind, body = host.session.open(sock.recv_multipart())
            if kind != Message.LIMITS or len(body) != 1 or len(body[0]) != LIMITS.size:
                raise AuthenticationError(f"worker {address}: expected its limits after the "
                                          f"handshake, got a message of kind {kind}")
        except BaseException:
            sock.close(linger=0)
            raise
        (host.max_message,) = LIMITS.unpack(bytes(body[0]))
        host.last_heard = time.monotonic()
        return host

    # -- feeding ---------------------------------------------------------------------------

    def prepare(self, batch: Batch) -> Any:
        return prepare_batch(batch)

    def send(self, lane: Lane, batch: Batch, prepared: Any) -> None:
        if prepared is None:  # nothing left to evaluate
            self.sink.done(lane, Done(batch, [], [], 0.0))
            return
        self._outgoing.append((lane.handle, lane, batch, prepared))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the I/O thread ------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._serve()
        except Exception as exc:  # noqa: BLE001 - an I/O thread that dies must not hang NuMap
            for host in list(self._hosts):
                with contextlib.suppress(Exception):
                    self._lose(host, f"remote worker {host.address}: the I/O thread of "
                                     f"{self.name} failed: {exc!r}")

    def _serve(self) -> None:
        last_ping = 0.0
        while not self._stopping:
            poller = zmq.Poller()
            poller.register(self._wake_r, zmq.POLLIN)
            for host in self._hosts:
                if host.alive:
                    poller.register(host.socket, zmq.POLLIN)
            events = dict(poller.poll(int(HEARTBEAT * 500)))
            if self._wake_r in events:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            self._send_queued()
            for host in self._hosts:
                if host.alive and host.socket in events:
                    self._receive(host)
            now = time.monotonic()
            if now - last_ping >= HEARTBEAT:
                last_ping = now
                for host in self._hosts:
                    if not host.alive:
                        continue
                    if now - host.last_heard > self.heartbeat_timeout:
                        self._lose(host, f"remote worker {host.address} stopped answering "
                                         f"(nothing for {now - host.last_heard:.0f} s)")
                    else:
                        self._post(host, Message.PING, [])
        for host in self._hosts:
            if host.alive:
                self._post(host, Message.BYE, [])

    def _post(self, host: _Host, kind: Message, parts: list[Any]) -> None:
        try:
            host.socket.send_multipart(host.session.sign(kind, parts), copy=False)
        except zmq.ZMQError as error:
            self._lose(host, f"remote worker {host.address}: cannot send: {error}")

    def _send_queued(self) -> None:
        while self._outgoing:
            host, lane, batch, parts = self._outgoing.popleft()
            if not host.alive or not lane.alive:
                continue  # the scheduler sends it again elsewhere
            size = sum(memoryview(part).nbytes for part in parts) + 4096
            if size > host.max_message:
                error = ItemFailure(0, ValueError(
                    f"a batch of {size} bytes is larger than remote worker {host.address} "
                    f"takes ({host.max_message} bytes): make the items smaller, or the "
                    "stride (fewer items per batch)"))
                self.sink.done(lane, Done(batch, [None] * len(batch.items),
                                          [spread(error, i) for i in range(len(batch.items))],
                                          0.0))
                continue
            host.batches[batch.id] = (lane, batch)
            self._post(host, Message.BATCH, parts)

    def _receive(self, host: _Host) -> None:
        for _ in range(256):
            try:
                parts = host.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            host.last_heard = time.monotonic()
            if parts and parts[0].bytes == b"DENIED":
                reason = parts[1].bytes.decode(errors="replace") if len(parts) > 1 else ""
                self._lose(host, f"remote worker {host.address} refused this client: "
                                 f"{reason}")
                return
            try:
                kind, body = host.session.open([p.buffer for p in parts])
            except AuthenticationError as error:
                self._lose(host, f"{error}")
                return
            if kind == Message.RESULT:
                self._result(host, body)

    def _result(self, host: _Host, body: list[Any]) -> None:
        try:
            head = peek(body)
        except (IndexError, ValueError, struct.error):
            return  # signed by the server but not a frame: nothing to deliver it to
        entry = host.batches.pop(head.batch, None)
        if entry is None:
            return  # not ours any more
        lane, batch = entry
        try:
            values, failures = decode(body).payload
        except Exception as exc:  # noqa: BLE001 - its items fail; the I/O thread goes on
            failure = ItemFailure(0, RuntimeError(
                f"the results of a batch from remote worker {host.address} could not be "
                f"unpickled: {exc!r}"))
            self.sink.done(lane, Done(batch, [None] * len(batch.items),
                                      [spread(failure, i) for i in range(len(batch.items))],
                                      0.0))
            return
        for failure in failures:
            with_remote_traceback(failure.exc, failure.traceback or "")
        if values is None:  # the whole batch failed (its worker process died)
            failures = [spread(failures[0], i) for i in range(len(batch.items))]
            values = [None] * len(batch.items)
        nbytes = batch.nbytes + sum(memoryview(part).nbytes for part in body)
        self.sink.done(lane, Done(batch, values, failures, head.seconds, nbytes))

    def _lose(self, host: _Host, reason: str) -> None:
        if not host.alive:
            return
        host.alive = False
        host.socket.close(linger=0)  # nothing late from it is ever read
        host.batches.clear()
        for lane in host.lanes:
            lane.alive = False
            self.sink.lost(lane, LaneLoss(reason, blameless=True))

    # -- stopping ----------------------------------------------------------------------

    def stop(self, forced: bool = False) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._close_all()

    def _close_all(self) -> None:
        for host in self._hosts:
            with contextlib.suppress(zmq.ZMQError):  # a moment for the BYE of a live host
                host.socket.close(linger=200 if host.alive else 0)
            host.alive = False
        self._hosts.clear()
        if self._context is not None:
            self._context.term()
            self._context = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
