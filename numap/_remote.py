"""What a remote worker server and its clients share: message kinds, limits, addresses.

Every message after the handshake is a :class:`numap._auth.Session` message
whose body is a :mod:`numap._wire` frame (``TASK``, ``BATCH``, ``RESULT``)
or nothing (``PING``, ``PONG``, ``BYE``)::

    client                                   server
    HELLO ---------------------------------> check the key, the time, the nonce
          <--------------------------------- WELCOME   (or DENIED: reason, unsigned)
          <--------------------------------- LIMITS    (the largest message taken)
    TASK  (task id, function: dill) -------> kept for this client
    BATCH (task id, batch id, items) ------> queued, run by a free worker process
          <--------------------------------- RESULT (batch id, values, failures)
    PING  (every HEARTBEAT s) -------------> PONG
    BYE   (the client stops) --------------> its queued batches are dropped

A client that hears nothing for ``heartbeat_timeout`` seconds counts the
server lost; a server forgets a client it has not heard from for
:data:`CLIENT_TIMEOUT` seconds.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct

__all__ = ["CLIENT_TIMEOUT", "HANDSHAKE_TIMEOUT", "HEARTBEAT", "HEARTBEAT_TIMEOUT",
           "MAX_MESSAGE", "Message", "endpoint", "is_loopback"]

HEARTBEAT = 1.0  # seconds between a client's PINGs
HEARTBEAT_TIMEOUT = 6.0  # seconds of silence after which a client counts its server lost
HANDSHAKE_TIMEOUT = 8.0  # seconds a client waits for WELCOME
CLIENT_TIMEOUT = 30.0  # seconds of silence after which a server forgets a client
MAX_MESSAGE = 1 << 30  # bytes; larger messages are refused (the peer is disconnected)
DEFAULT_PORT = 5555


class Message(enum.IntEnum):
    """The kinds of session messages (the HELLO and WELCOME of the handshake are 1 and 2)."""

    TASK = 3
    BATCH = 4
    RESULT = 5
    PING = 6
    PONG = 7
    BYE = 8
    DENIED = 9  # unsigned: the handshake or a message failed its checks
    LIMITS = 10  # server -> client, right after WELCOME: the largest message it takes


LIMITS = struct.Struct("<Q")


def endpoint(address: str) -> str:
    """``'host:port'`` (or ``'host'``, or a full ``tcp://`` address) as a zmq endpoint.

    Raises:
        ValueError: not ``host[:port]`` with a port in 1..65535.
    """
    text = address.strip()
    text = text.removeprefix("tcp://")
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, str(DEFAULT_PORT)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a worker address must be 'host:port' (port 1-65535), got "
                         f"{address!r}")
    shown = f"[{host}]" if ":" in host else host
    return f"tcp://{shown}:{int(port)}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) means this machine only."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback
                                   for a in addresses)
