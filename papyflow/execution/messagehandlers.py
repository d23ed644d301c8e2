"""Message handlers: threads that serve data and loop requests to other processes.

::

    algorithm process                           this process
    RemoteDataSource --\\                        MessageHandler (a thread, a zmq ROUTER)
    RemotelySyncedOutput -- RemoteChannel ===>    one Session per peer (by zmq identity)
    LoopChannel -------/   (REQ or DEALER)        command -> method -> signed reply
                                                   data sources, a loop executor

A handler binds a ``ROUTER`` socket (to 127.0.0.1 unless told otherwise; to
another address only with a key), takes each peer's handshake, then answers
its session messages one by one in its own thread. The commands:

=========================  ============================  ==================================
request                    reply                         method
=========================  ============================  ==================================
``ifo name``               ``ok, JSON [[start, end]...]``  :meth:`MessageHandler.infos`
``get name position``      ``ok, start, end, record``      :meth:`MessageHandler.get_data`
``don [JSON statistics]``  ``ack``, then the handler ends  :meth:`MessageHandler.done`
``err kind message``       ``ack``, then the handler ends  :meth:`MessageHandler.error`
``val packed request``     ``ok, 1|0, packed answer``      :meth:`LoopMessageHandler.validate`
``wrt name end``           ``ack``                         :meth:`LoopMessageHandler.write`
``red``                    ``ack``                         :meth:`LoopMessageHandler.read`
=========================  ============================  ==================================

Numbers are ASCII decimal, records are packed (``record.pack()``). A request
that fails is answered ``[b"err", message, kind]``: ``usr`` when the user's
code (a view, an evaluator) raised, ``sys`` otherwise. A peer that fails the
handshake or a message's checks (key, MAC, sequence: a replay), or sends more
than ``max_message`` bytes, gets an unsigned ``[REFUSED, reason]`` and loses
its session; none of its bytes is interpreted, let alone unpickled.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Self

import zmq

from numap._auth import AuthenticationError, Session
from numap._remote import is_loopback  # one rule for every server

from ..blocks.errors import BlockError
from ..dataflow._remote import (
    MAX_MESSAGE,
    REFUSED,
    REPLY,
    REQUEST,
    Auth,
    message_size,
    resolve_auth,
)
from ..dataflow._sources import DataSource

__all__ = ["LoopMessageHandler", "MessageHandler", "is_loopback"]

_POLL_MS = 50  # how often the thread looks at its stop flag
_MAX_PEERS = 256  # sessions kept; the oldest is forgotten beyond


def _split_address(host_address: str) -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``tcp://host[:port]`` as ``(host, port or None)``."""
    text = host_address.strip().removeprefix("tcp://")
    host, port = text, None
    if text.startswith("["):  # [::1]:port
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"host_address: expected 'host', 'host:port' or 'tcp://host:port', "
                         f"got {host_address!r}")
    return host, None if port is None else int(port)


class _Failed(Exception):
    """A request that cannot be served: answered ``[err, message, kind]``."""

    def __init__(self, message: str, kind: str = "sys") -> None:
        super().__init__(message)
        self.kind = kind


class MessageHandler(threading.Thread):
    """A thread answering requests for data over zmq (see the module).

    Args:
        host_address: where to bind: ``'127.0.0.1'`` (the default; a free port
            is chosen), ``'host:port'`` or ``'tcp://host:port'``.
        data_sources: the sources served, by input name (see
            :meth:`set_data_sources`).
        kill_callback: called (without arguments, from the handler's thread)
            when a peer reports an error (``err``).
        context: a zmq context to use (by default the handler makes its own
            and terminates it in :meth:`destroy`).
        auth: the key (bytes or a key file; ``None``: ``$NUMAP_AUTH``, else
            no key). Without a key only loopback addresses are allowed.
        max_message: the largest message taken, in bytes.

    Raises:
        ValueError: a bad ``host_address``, or one that is not loopback while
            there is no key (the message names the address).

    Attributes:
        address: the bound endpoint, ``tcp://host:port``: give it to clients.
        statistics: what the peer sent with ``don`` (``None`` before).
        finished: whether a peer said ``don`` (it ended without a failure).
        last_error: ``(kind, message)`` a peer reported with ``err`` (``None``).
        data_sources: the sources served.
    """

    def __init__(self, host_address: str = "127.0.0.1",
                 data_sources: Mapping[str, DataSource] | None = None,
                 kill_callback: Callable[[], Any] | None = None,
                 context: zmq.Context | None = None, *, auth: Auth = None,
                 max_message: int = MAX_MESSAGE) -> None:
        super().__init__(name=f"papyflow {type(self).__name__}", daemon=True)
        host, port = _split_address(host_address)
        self.key = resolve_auth(auth)
        if self.key is None and not is_loopback(host):
            raise ValueError(f"host_address {host_address!r} is not a loopback address: "
                             "binding there needs a key (auth=<key file> or $NUMAP_AUTH), "
                             "or bind to 127.0.0.1")
        self.max_message = int(max_message)
        self.kill_callback = kill_callback
        self.data_sources: dict[str, DataSource] = dict(data_sources or {})
        self.statistics: Any = None
        self.finished = False
        self.last_error: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._own_context = context is None
        self.context = zmq.Context() if context is None else context
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        # A frame above the limit never reaches us: zmq drops the connection.
        self.socket.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        shown = f"[{host}]" if ":" in host else host
        if ":" in host:
            self.socket.setsockopt(zmq.IPV6, 1)
        try:
            if port is None:
                port = self.socket.bind_to_random_port(f"tcp://{shown}")
            else:
                self.socket.bind(f"tcp://{shown}:{port}")
        except zmq.ZMQError as error:
            self._close_sockets()
            raise OSError(f"host_address {host_address!r}: cannot bind: {error}") from None
        self.address = f"tcp://{shown}:{port}"
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()
        self._stop_event = threading.Event()
        self._pending_error: tuple[str, str] | None = None
        self._commands: dict[bytes, Callable[..., list[bytes]]] = {
            b"ifo": self.infos, b"get": self.get_data, b"don": self.done,
            b"err": self.error}

    # -- public controls ------------------------------------------------------------------

    def set_data_sources(self, data_sources: Mapping[str, DataSource]) -> None:
        """Serve these sources (by input name), in place of those served before."""
        with self._lock:
            self.data_sources = dict(data_sources)

    def send_error(self, message: str, kind: str = "usr") -> None:
        """Report an error to the other side: from now on every request is answered
        ``[err, message, kind]``.

        Raises:
            ValueError: ``kind`` is not ``'usr'`` or ``'sys'``.
        """
        if kind not in ("usr", "sys"):
            raise ValueError(f"kind: 'usr' or 'sys', not {kind!r}")
        with self._lock:
            self._pending_error = (kind, str(message))

    def kill(self) -> None:
        """Ask the thread to stop (it closes its socket as it leaves)."""
        self._stop_event.set()

    def destroy(self, timeout: float = 10.0) -> None:
        """Stop the thread, wait for it, close the socket (and the context it made).

        Raises:
            RuntimeError: the thread did not stop within ``timeout`` seconds.
        """
        self.kill()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                raise RuntimeError(f"{self!r}: the thread did not stop within {timeout:g} s")
        self._close_sockets()

    def __enter__(self) -> Self:
        if not self.is_alive() and not self._stop_event.is_set():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def _close_sockets(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.socket.close(linger=0)
        if self._own_context:
            self.context.term()

    # -- the thread -------------------------------------------------------------------------

    def run(self) -> None:
        """Answer requests until :meth:`kill`, ``don`` or ``err``."""
        try:
            while not self._stop_event.is_set():
                if not self.socket.poll(_POLL_MS, zmq.POLLIN):
                    continue
                frames = self.socket.recv_multipart(copy=True)
                self._serve(frames)
        finally:
            self._close_sockets()

    def _serve(self, frames: list[bytes]) -> None:
        # From a REQ (or a DEALER sending an empty first frame): identity, b"", parts.
        if len(frames) < 3 or frames[1] != b"":
            return  # not our framing: nothing to answer to
        identity, parts = frames[0], frames[2:]
        size = message_size(parts)
        if size > self.max_message:
            self._refuse(identity, f"a message of {size} bytes, above the limit of "
                                   f"{self.max_message}")
            return
        if parts[0][:1] == bytes([Session.HELLO]):
            session = Session(self.key, f"peer of {self.address}")
            try:
                welcome = session.welcome(parts)
            except AuthenticationError as error:
                self._refuse(identity, str(error))
                return
            self._sessions[identity] = session
            self._sessions.move_to_end(identity)
            while len(self._sessions) > _MAX_PEERS:
                self._sessions.popitem(last=False)
            self.socket.send_multipart([identity, b"", *welcome])
            return
        known = self._sessions.get(identity)
        if known is None:
            self._refuse(identity, "no handshake: a session starts with HELLO")
            return
        try:
            kind, body = known.open(parts)
            if kind != REQUEST:
                raise AuthenticationError(f"message kind {kind} where a request was due")
        except AuthenticationError as error:
            self._refuse(identity, str(error))
            return
        reply, stop = self._answer(body)
        self.socket.send_multipart([identity, b"", *known.sign(REPLY, reply)])
        if stop:
            self._stop_event.set()

    def _refuse(self, identity: bytes, reason: str) -> None:
        self._sessions.pop(identity, None)
        self.socket.send_multipart([identity, b"", REFUSED, reason.encode("utf-8")])

    def _answer(self, body: list[bytes]) -> tuple[list[bytes], bool]:
        """The reply to a request, and whether the handler stops after sending it."""
        command = body[0] if body else b""
        with self._lock:
            pending = self._pending_error
        if pending is not None and command not in (b"don", b"err"):
            return [b"err", pending[1].encode("utf-8"), pending[0].encode()], False
        method = self._commands.get(command)
        try:
            if method is None:
                known = ", ".join(sorted(c.decode() for c in self._commands))
                raise _Failed(f"unknown command {command.decode(errors='replace')!r} "
                              f"(known: {known})")
            reply = method(*body[1:])
        except _Failed as failure:
            return [b"err", str(failure).encode("utf-8"), failure.kind.encode()], False
        except TypeError as error:  # wrong number of arguments
            return [b"err", f"{command.decode(errors='replace')}: {error}".encode(), b"sys"], \
                False
        except BlockError as error:
            return [b"err", str(error).encode("utf-8"), b"usr"], False
        except Exception as error:  # noqa: BLE001 - any failure is the request's answer
            return [b"err", f"{type(error).__name__}: {error}".encode(), b"sys"], False
        return reply, command in (b"don", b"err")

    # -- the commands -------------------------------------------------------------------------

    def _source(self, name: bytes) -> DataSource:
        input_name = name.decode("utf-8", errors="replace")
        with self._lock:
            source = self.data_sources.get(input_name)
            known = ", ".join(repr(n) for n in self.data_sources) or "none"
        if source is None:
            raise _Failed(f"no input {input_name!r} is served here (inputs: {known})")
        return source

    def infos(self, name: bytes) -> list[bytes]:
        """``ifo name``: the ``(start, end)`` of every unit of the input ``name``, as JSON."""
        return [b"ok", json.dumps(self._source(name).data_indices()).encode()]

    def get_data(self, name: bytes, index: bytes) -> list[bytes]:
        """``get name index``: unit ``index`` (a position) of the input ``name``:
        its start, end and packed record."""
        source = self._source(name)
        if not index.isdigit():
            raise _Failed(f"get: the unit's position must be a number, got "
                          f"{index[:32].decode(errors='replace')!r}")
        position = int(index)
        if position >= len(source):
            raise _Failed(f"get: input {name.decode(errors='replace')!r} has {len(source)} "
                          f"units, there is no unit {position}")
        data, start, end = source[position]
        packed = data if isinstance(data, bytes | bytearray | memoryview) else data.pack()
        return [b"ok", str(start).encode(), str(end).encode(), bytes(packed)]

    def done(self, statistics: bytes | None = None) -> list[bytes]:
        """``don [statistics]``: the peer is done (it may send its statistics as
        JSON); :attr:`finished` is set, the handler acknowledges and stops."""
        if statistics:
            try:
                self.statistics = json.loads(statistics)
            except ValueError:
                raise _Failed("don: the statistics are not JSON") from None
        self.finished = True
        return [b"ack"]

    def error(self, t: bytes, msg: bytes = b"") -> list[bytes]:
        """``err kind message``: the peer failed; kept in :attr:`last_error`, then
        the handler acknowledges, calls ``kill_callback`` and stops."""
        self.last_error = (t.decode("utf-8", errors="replace"),
                           msg.decode("utf-8", errors="replace"))
        if self.kill_callback is not None:
            self.kill_callback()
        return [b"ack"]

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped" if self._closed else "not started"
        return f"<{type(self).__name__} at {self.address}, {state}>"


class LoopMessageHandler(MessageHandler):
    """A message handler that also serves a loop processor: ``val``, ``wrt``, ``red``.

    Call :meth:`setup` (the evaluator's algorithm, to read requests) and
    :meth:`set_executor` (the :class:`~papyflow.execution.loop.LoopExecutor`
    that runs the evaluator) before starting it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor: Any = None
        self.request_type: Any = None
        self._commands.update({b"val": self.validate, b"wrt": self.write, b"red": self.read})

    def setup(self, algorithm: Any, prefix: Any) -> None:
        """Take the loop's request format from ``algorithm`` (an
        :class:`~papyflow.blocks.algorithm.Algorithm` that is a loop evaluator).

        Raises:
            ValueError: the algorithm declares no loop.
        """
        request = algorithm.loop_map.get("request")
        if request is None:
            raise ValueError(f"algorithm {algorithm.name!r} ({algorithm.type}) declares no "
                             "loop")
        self.prefix = prefix
        self.request_type = algorithm.dataformats[request].type

    def set_executor(self, executor: Any) -> None:
        """The loop executor whose ``validate``, ``write`` and ``read`` serve the requests."""
        self.executor = executor

    def _executor(self) -> Any:
        if self.executor is None or self.request_type is None:
            raise _Failed("the loop is not set up: setup() and set_executor() first")
        return self.executor

    def validate(self, result: bytes) -> list[bytes]:
        """``val packed request``: ask the evaluator; answer ``ok, 1|0, packed answer``."""
        executor = self._executor()
        try:
            request = self.request_type.unpack(result)
        except Exception as error:  # noqa: BLE001 - whatever the bytes, a clear refusal
            raise _Failed(f"val: not a packed {self.request_type._name} record: {error}") \
                from None
        is_valid, answer = executor.validate(request)
        return [b"ok", b"1" if is_valid else b"0", answer.pack()]

    def write(self, processor_output_name: bytes, end_data_index: bytes) -> list[bytes]:
        """``wrt name end``: the processor wrote its output ``name`` up to ``end``;
        the evaluator writes its outputs in step."""
        executor = self._executor()
        text = end_data_index.decode(errors="replace")
        if not text.lstrip("-").isdigit():
            raise _Failed(f"wrt: the end data index must be a number, got {text[:32]!r}")
        executor.write(processor_output_name.decode("utf-8", errors="replace"), int(text))
        return [b"ack"]

    def read(self) -> list[bytes]:
        """``red``: the processor takes its next step; the evaluator reads in step."""
        self._executor().read()
        return [b"ack"]
