"""The client side of remote data: an authenticated request channel, and the
:class:`RemoteDataSource` that reads an input through it.

A process that serves data (a :class:`papyflow.execution.MessageHandler`,
bound to a zmq ``ROUTER``) and a process that reads it (a zmq ``REQ`` or
``DEALER`` socket, wrapped in a :class:`RemoteChannel`) talk in requests and
replies. Every conversation starts with the handshake of
:class:`numap._auth.Session`; every later message is a session message (a
header with a sequence number and an HMAC-SHA256 under the session's key)::

    client (RemoteChannel)                     server (MessageHandler)
    HELLO ------------------------------------> checks the key, the time, the nonce
          <------------------------------------ WELCOME     or  [REFUSED, reason]
    REQUEST [command, arguments...] ----------> checks MAC and sequence, then runs it
          <------------------------------------ REPLY [b"ok", ...] | [b"ack"]
                                                      | [b"err", message, kind]
                                                or  [REFUSED, reason]   (unsigned)

Bodies are plain bytes: command names, ASCII numbers, UTF-8 JSON and packed
records (``record.pack()``). Nothing received is ever unpickled, on either
side. A refusal (``REFUSED``) is the one unsigned message: it carries no data
and ends the session. A message larger than :data:`MAX_MESSAGE` bytes is
refused before it is sent, and by the receiver.

Errors seen by a client:

* :class:`~numap._auth.AuthenticationError`: the handshake failed or was
  refused, no WELCOME came within ``handshake_timeout`` (a handler that does
  not recognise the key does not answer with data), a reply failed its
  checks, or the server refused a request;
* :class:`RemoteError`: the server ran the request and reports an error,
  ``kind`` ``"usr"`` (the user's code) or ``"sys"`` (the platform);
* :class:`RemoteTimeoutError`: no reply within ``timeout`` seconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import zmq

from numap._auth import KEY_BYTES, AuthenticationError, Session, load_key, resolve_key

from ..formats.dataformat import DataFormat
from ._sources import RemoteDataSource as _PlainRemoteDataSource

__all__ = ["HANDSHAKE_TIMEOUT", "MAX_MESSAGE", "REFUSED", "REPLY", "REQUEST", "TIMEOUT",
           "AuthenticationError", "RemoteChannel", "RemoteDataSource", "RemoteError",
           "RemoteTimeoutError", "as_channel", "message_size", "resolve_auth"]

MAX_MESSAGE = 64 << 20
"""Bytes: a message (all its frames) larger than this is refused."""

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client waits for the WELCOME before it gives up."""

TIMEOUT = 120.0
"""Seconds a client waits for the reply to a request (a view's or an evaluator's
code may take its time)."""

REQUEST = 3
"""The session message kind of a client's request (HELLO and WELCOME are 1 and 2)."""

REPLY = 4
"""The session message kind of a server's reply."""

REFUSED = b"papyflow-refused"
"""The first frame of the server's unsigned refusal: ``[REFUSED, reason]``."""

Auth = str | os.PathLike[str] | bytes | None
"""How a key is given: the key's bytes, a key file, or ``None`` (``$NUMAP_AUTH``, else no key)."""


class RemoteError(RuntimeError):
    """The other process ran a request and reports an error.

    Attributes:
        kind: ``"usr"`` (the user's code failed) or ``"sys"`` (the platform did).
        message: the other side's message.
    """

    def __init__(self, text: str, kind: str = "sys", message: str = "") -> None:
        super().__init__(text)
        self.kind = kind
        self.message = message or text


class RemoteTimeoutError(RuntimeError, TimeoutError):
    """No reply came in time: the other process is gone, stuck, or dropped the message."""


def resolve_auth(auth: Auth) -> bytes | None:
    """The key ``auth`` gives: its own bytes, the key of a key file, else that of
    ``$NUMAP_AUTH``; ``None`` when there is none.

    Raises:
        ValueError: bytes that are not a key of the right size.
        FileNotFoundError, AuthenticationError: as :func:`numap._auth.load_key`.
    """
    if isinstance(auth, bytes | bytearray):
        if len(auth) != KEY_BYTES:
            raise ValueError(f"auth: a key is {KEY_BYTES} bytes, got {len(auth)}")
        return bytes(auth)
    if auth is None:
        return resolve_key(None)
    return load_key(auth)


def message_size(parts: Sequence[Any]) -> int:
    """The bytes of all the frames of a message."""
    return sum(memoryview(part).nbytes for part in parts)


def _text(part: Any) -> str:
    return bytes(part).decode("utf-8", errors="replace")


class RemoteChannel:
    """An authenticated request/reply link to a message handler (see the module).

    Args:
        socket: a pyzmq ``REQ`` or ``DEALER`` socket, connected to the handler.
        auth: the key (see :func:`resolve_auth`); it must be the handler's.
        timeout: seconds to wait for a reply.
        handshake_timeout: seconds to wait for the WELCOME.
        max_message: the largest message, in bytes, sent or taken.

    The handshake happens at the first request. :meth:`request` sends one
    request and returns the reply's body; :meth:`send_multipart` and
    :meth:`recv_multipart` do the same in two calls, so that the channel can
    stand for a socket wherever papyflow expects one (a
    :class:`RemoteDataSource`, a
    :class:`~papyflow.dataflow.outputs.RemotelySyncedOutput`). A channel may
    be shared by threads: one request at a time goes out.
    """

    def __init__(self, socket: zmq.Socket, auth: Auth = None, *, timeout: float = TIMEOUT,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 max_message: int = MAX_MESSAGE) -> None:
        kind = int(socket.getsockopt(zmq.TYPE))
        if kind not in (zmq.REQ, zmq.DEALER):
            raise ValueError(f"socket: a REQ or DEALER socket is needed, got a socket of "
                             f"type {zmq.SocketType(kind).name}")
        self.socket = socket
        self.timeout = float(timeout)
        self.handshake_timeout = float(handshake_timeout)
        self.max_message = int(max_message)
        endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
        self.label = f"message handler {_text(endpoint) if endpoint else '(not connected)'}"
        self.session = Session(resolve_auth(auth), self.label)
        self._envelope: list[bytes] = [b""] if kind == zmq.DEALER else []
        self._fresh = True  # no handshake done on this session yet
        self._lock = threading.Lock()
        self._reply: list[bytes] | None = None
        self.network_wait_time = 0.0

    # -- frames -----------------------------------------------------------------------------

    def _send(self, frames: list[Any]) -> None:
        self.socket.send_multipart([*self._envelope, *frames])

    def _receive(self, what: str, timeout: float) -> list[bytes]:
        began = time.perf_counter()
        ready = self.socket.poll(int(timeout * 1000), zmq.POLLIN)
        self.network_wait_time += time.perf_counter() - began
        if not ready:
            raise RemoteTimeoutError(f"{self.label}: no reply to {what} within {timeout:g} s")
        frames = self.socket.recv_multipart()[len(self._envelope):]
        if frames and frames[0] == REFUSED:
            self._fresh = True  # the server ended the session
            reason = _text(frames[1]) if len(frames) > 1 else "no reason given"
            raise AuthenticationError(f"{self.label} refused {what}: {reason}")
        size = message_size(frames)
        if size > self.max_message:
            raise AuthenticationError(f"{self.label}: a reply of {size} bytes to {what}, "
                                      f"above the limit of {self.max_message}")
        return frames

    def handshake(self) -> None:
        """Run the handshake now (the first request does it otherwise).

        Raises:
            AuthenticationError: refused, a bad WELCOME, or none in time.
        """
        with self._lock:
            self._handshake()

    def _handshake(self) -> None:
        # Session.ready is True as soon as a keyless HELLO is made: only a
        # completed handshake may leave this session in place.
        session = Session(self.session.key, self.label)
        self.session = session
        self._send(session.hello())
        try:
            try:
                answer = self._receive("the handshake", self.handshake_timeout)
            except RemoteTimeoutError:
                raise AuthenticationError(
                    f"{self.label}: no WELCOME within {self.handshake_timeout:g} s: the "
                    "handler is not there, or does not take this key (a handler with a key "
                    "answers only its holders)") from None
            session.accept(answer)
        except BaseException:
            self._fresh = True
            raise
        self._fresh = False

    # -- requests ---------------------------------------------------------------------------

    def request(self, parts: Sequence[bytes]) -> list[bytes]:
        """Send the request ``parts`` (``[command, arguments...]``); return the reply's body.

        Raises:
            AuthenticationError: see the module.
            RemoteError: the server reports an error running the request.
            RemoteTimeoutError: no reply within :attr:`timeout`.
            ValueError: the request is larger than :attr:`max_message`.
        """
        command = _text(parts[0]) if parts else "?"
        size = message_size(parts)
        if size > self.max_message:
            raise ValueError(f"{self.label}: request {command!r} is {size} bytes, above the "
                             f"limit of {self.max_message}")
        with self._lock:
            if self._fresh:
                self._handshake()
            self._send(self.session.sign(REQUEST, list(parts)))
            kind, body = self.session.open(self._receive(f"request {command!r}", self.timeout))
        if kind != REPLY:
            raise AuthenticationError(f"{self.label}: a message of kind {kind} where a reply "
                                      "was due")
        if body[:1] == [b"err"]:
            message = _text(body[1]) if len(body) > 1 else "no message"
            error_kind = _text(body[2]) if len(body) > 2 else "sys"
            raise RemoteError(f"{self.label}: the server refused {command}: {message}",
                              error_kind, message)
        return [bytes(part) for part in body]

    def send_multipart(self, msg_parts: Sequence[bytes]) -> None:
        """Send a request; its reply waits for :meth:`recv_multipart` (see :meth:`request`)."""
        self._reply = self.request(msg_parts)

    def recv_multipart(self) -> list[bytes]:
        """The reply to the last :meth:`send_multipart`.

        Raises:
            RuntimeError: no request is waiting for its reply.
        """
        reply, self._reply = self._reply, None
        if reply is None:
            raise RuntimeError(f"{self.label}: recv_multipart() without a request sent")
        return reply

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(linger=0)

    def __repr__(self) -> str:
        state = "no handshake yet" if self._fresh else "in session"
        return f"<RemoteChannel to {self.label}: {state}>"


_CHANNELS: weakref.WeakKeyDictionary[Any, RemoteChannel] = weakref.WeakKeyDictionary()
_CHANNELS_LOCK = threading.Lock()


def as_channel(socket: Any, auth: Auth = None) -> Any:
    """What to send requests through: a :class:`RemoteChannel` as it is; a zmq
    socket wrapped in its channel (one per socket, made at the first call and
    shared after: a session belongs to a connection); any other object with
    ``send_multipart`` and ``recv_multipart`` as it is.

    Raises:
        TypeError: ``socket`` is none of these.
    """
    if isinstance(socket, RemoteChannel):
        return socket
    if isinstance(socket, zmq.Socket):
        with _CHANNELS_LOCK:
            channel = _CHANNELS.get(socket)
            if channel is None:
                channel = _CHANNELS[socket] = RemoteChannel(socket, auth)
            return channel
    if callable(getattr(socket, "send_multipart", None)) and \
            callable(getattr(socket, "recv_multipart", None)):
        return socket
    raise TypeError(f"socket: expected a zmq socket or a RemoteChannel, got "
                    f"{type(socket).__name__}")


class RemoteDataSource(_PlainRemoteDataSource):
    """The units of an input served by a message handler in another process.

    ``setup(socket, input_name, dataformat_name, prefix, unpack=True)``, then
    it is a data source like any other: ``len``, ``source[p]``, iteration,
    :meth:`data_indices`, :meth:`getAtDataIndex`. ``socket`` is a zmq ``REQ``
    or ``DEALER`` socket connected to the handler (authenticated through its
    :class:`RemoteChannel`, shared by every source on that socket), a
    :class:`RemoteChannel`, or any object with ``send_multipart`` and
    ``recv_multipart`` speaking the plain requests::

        [b"ifo", name]            -> [b"ok", JSON list of [start, end]]
        [b"get", name, position]  -> [b"ok", start, end, packed record]

    Records arrive packed and are unpacked and checked as from a file; a
    reply of another shape raises :class:`RemoteError` naming the input.
    """

    def __init__(self) -> None:
        super().__init__()
        self._first = 0  # the handler's position of this source's first unit

    def setup(self, socket: Any, input_name: str, dataformat_name: str, prefix: Any,
              unpack: bool = True, *, auth: Auth = None,
              dataformat_cache: dict[str, DataFormat] | None = None,
              start_index: int | None = None, end_index: int | None = None) -> bool:
        """Ask the handler for the units of ``input_name``.

        Args:
            socket: see the class.
            input_name: the name the handler serves the input under.
            dataformat_name: the input's dataformat, loaded from ``prefix``.
            prefix: where dataformats are looked up.
            unpack: hand out records (``True``) or their packed bytes.
            auth: the key, for a zmq socket met for the first time (see
                :func:`resolve_auth`).
            dataformat_cache: as for :class:`~papyflow.formats.dataformat.DataFormat`.
            start_index: the first data index wanted (``None``: from the
                first served); units with some index in
                ``start_index..end_index`` are kept, as for a cached input.
            end_index: the last data index wanted (``None``: to the last).

        Returns:
            ``True``.

        Raises:
            AuthenticationError: the handler refuses this client (in about
                :data:`HANDSHAKE_TIMEOUT` seconds at most).
            RemoteError: the handler has no such input, failed, or sent a
                malformed reply.
            ValueError: the dataformat does not load, or the ranges have a
                gap or an overlap.
            IndexError: ``start_index..end_index`` is not wholly in the
                handler's range of the input.
        """
        self._first = 0
        super().setup(as_channel(socket, auth), input_name, dataformat_name, prefix,
                      unpack, dataformat_cache=dataformat_cache)
        if len(self.units) and (start_index is not None or end_index is not None):
            table = self.units
            lo = table.first_index if start_index is None else start_index
            hi = table.last_index if end_index is None else end_index
            if lo < table.first_index or hi > table.last_index or hi < lo:
                raise IndexError(f"{self._describe()}: data indices {lo}..{hi} are outside "
                                 f"the range served, {table.first_index}..{table.last_index}")
            first, stop = table.window(lo, hi)
            self._first = first
            self.units = table.sub(first, stop)
        return True

    def _describe(self) -> str:
        label = getattr(self.socket, "label", None)
        described = super()._describe()
        return f"{described} from {label}" if self.input_name and label else described

    def _malformed(self, command: bytes, why: str) -> RemoteError:
        return RemoteError(f"{self._describe()}: a malformed reply to {command.decode()}: "
                           f"{why}", "sys")

    def _ask(self, *parts: bytes) -> list[bytes]:
        reply = super()._ask(*parts)
        command = parts[0]
        wanted = 1 if command == b"ifo" else 3
        if len(reply) != wanted:
            raise self._malformed(command, f"{len(reply)} frames after 'ok', not {wanted}")
        if command == b"ifo":
            try:
                ranges = json.loads(reply[0])
            except ValueError as exc:
                raise self._malformed(command, f"not JSON ({exc})") from None
            if not isinstance(ranges, list) or not all(
                    isinstance(pair, list) and len(pair) == 2 and all(
                        isinstance(v, int) and not isinstance(v, bool) for v in pair)
                    for pair in ranges):
                raise self._malformed(command, "expected a JSON list of [start, end] pairs, "
                                               f"got {bytes(reply[0])[:80]!r}")
        return reply

    def _get(self, position: int) -> tuple[Any, int, int]:
        began = time.perf_counter()
        expected = self.units.range(position)
        served = position + self._first
        command = b"get"
        start, end, packed = self._ask(command, str(served).encode())
        try:
            got = int(start), int(end)
        except ValueError:
            raise self._malformed(command, f"unit {served}: the range {bytes(start)[:20]!r}.."
                                           f"{bytes(end)[:20]!r} is not two numbers") from None
        if got != expected:
            raise RemoteError(f"{self._describe()}: asked for unit {served} ({expected[0]}.."
                              f"{expected[1]}), the handler sent {got[0]}..{got[1]}", "sys")
        try:
            data: Any = self._record_type.unpack(packed) if self.unpack else bytes(packed)
        except ValueError as exc:
            raise self._malformed(command, f"unit {served}: the record does not unpack: "
                                           f"{exc}") from None
        self.nb_bytes_read += len(packed)
        self.read_duration += time.perf_counter() - began
        return data, expected[0], expected[1]
