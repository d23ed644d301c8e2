"""Shared-key authentication of the messages between remote workers and their clients.

A key file holds one random 32-byte key, readable by its owner only::

    # numap worker key: HMAC-SHA256. Keep it secret; give it to the hosts that may talk.
    numap-hmac-sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Every conversation starts with a handshake that makes a key for that session
alone, so that no message of another session can be replayed into it::

    client -> HELLO   (version, client nonce, time)            signed with the key
    server -> WELCOME (client nonce, server nonce)             signed with the key
    session key = HMAC(key, "session" | client nonce | server nonce)

Then every message carries a sequence number, one counter per direction, and
an HMAC-SHA256 of its direction, its header and all its parts under the
session key. A
receiver checks the MAC (in constant time) before it looks at the body, and
takes a sequence number only once and in order: a forged, altered, replayed or
reordered message raises :class:`AuthenticationError` and is never unpickled.
A HELLO older than :data:`HELLO_WINDOW` seconds, or seen before, is refused.

Without a key (a worker bound to loopback only, and its clients), the same
framing runs with an all-zero MAC; sequence numbers are still checked.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["AUTH_ENV", "AuthenticationError", "Session", "keygen", "load_key",
           "resolve_key"]

AUTH_ENV = "NUMAP_AUTH"
"""The environment variable naming a client's key file when ``remote_auth`` is not given."""

KEY_BYTES = 32
HELLO_WINDOW = 120.0  # seconds a HELLO may be old (or ahead: clocks differ)
PROTOCOL = 1
_MAGIC = b"NUMAPKEY"
_KIND = "numap-hmac-sha256"
_HEADER = struct.Struct("<BQ")  # message kind, sequence number
_MAC = 32
_HELLO = struct.Struct("<H16sd")  # protocol version, client nonce, time
_WELCOME = struct.Struct("<16s16s")  # client nonce, server nonce
_ZERO_MAC = bytes(_MAC)


class AuthenticationError(Exception):
    """A peer could not prove it holds the key, or a message failed its checks."""


# -- key files ---------------------------------------------------------------------------


def keygen(path: str | os.PathLike[str]) -> Path:
    """Write a new key file at ``path``, readable and writable by its owner only (0600).

    Raises:
        FileExistsError: ``path`` exists (a key is never overwritten).
    """
    target = Path(path)
    key = secrets.token_hex(KEY_BYTES)
    text = (f"# numap worker key: HMAC-SHA256. Keep it secret; give it to the hosts that "
            f"may talk.\n{_KIND} {key}\n")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"key file {target} exists: numap never overwrites a key; "
                              "remove it first or choose another path") from None
    with os.fdopen(fd, "w", encoding="ascii") as stream:
        os.fchmod(stream.fileno(), 0o600)
        stream.write(text)
    return target


def load_key(path: str | os.PathLike[str]) -> bytes:
    """The key in the key file ``path``.

    Raises:
        FileNotFoundError: no such file.
        AuthenticationError: the file is readable or writable by others (its
            mode must be 0600 or stricter), or does not hold a key.
    """
    target = Path(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"key file {target} not found (make one with "
                                f"'numap-worker keygen {target}')") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthenticationError(f"key file {target} is open to others (mode "
                                  f"{stat.S_IMODE(info.st_mode):04o}): run 'chmod 600 "
                                  f"{target}'")
    for line in target.read_text(encoding="ascii", errors="replace").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == _KIND:
            try:
                key = bytes.fromhex(words[1])
            except ValueError:
                break
            if len(key) == KEY_BYTES:
                return key
            break
    raise AuthenticationError(f"key file {target} holds no {_KIND} key of {KEY_BYTES} bytes "
                              f"(make one with 'numap-worker keygen PATH')")


def resolve_key(remote_auth: str | os.PathLike[str] | None) -> bytes | None:
    """The key named by ``remote_auth``, else by ``$NUMAP_AUTH``; ``None`` when neither is set."""
    path = remote_auth if remote_auth is not None else os.environ.get(AUTH_ENV) or None
    return None if path is None else load_key(path)


# -- sessions ----------------------------------------------------------------------------


class _SeenHellos:
    """Client nonces of recent HELLOs, so that a replayed HELLO is refused."""

    def __init__(self) -> None:
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, nonce: bytes, now: float) -> bool:
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - 2 * HELLO_WINDOW:
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


_SEEN = _SeenHellos()


def _mac(key: bytes, parts: Sequence[Any]) -> bytes:
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        view = memoryview(part).cast("B")
        digest.update(struct.pack("<Q", view.nbytes))
        digest.update(view)
    return digest.digest()


class Session:
    """One side of one authenticated conversation (see the module).

    Args:
        key: the shared key, or ``None`` for unauthenticated loopback use.
        label: who the peer is, for messages (``"worker 127.0.0.1:5555"``).
    """

    HELLO = 1
    WELCOME = 2

    def __init__(self, key: bytes | None, label: str = "peer") -> None:
        self.key = key
        self.label = label
        self._session_key: bytes | None = None
        self._nonce = b""
        self._sent = 0
        self._received = 0
        self._ready = False
        # Which way a message goes is signed with it: a message cannot be
        # reflected back to the side that sent it.
        self._out, self._in = b"?", b"?"

    @property
    def ready(self) -> bool:
        """Whether the handshake is done."""
        return self._ready

    # -- the handshake --------------------------------------------------------------

    def hello(self) -> list[bytes]:
        """The client's first message."""
        self._nonce = secrets.token_bytes(16)
        self._out, self._in = b"c", b"s"
        body = _HELLO.pack(PROTOCOL, self._nonce, time.time())
        return self._framed(self.HELLO, [body], self.key)

    def welcome(self, parts: Sequence[Any]) -> list[bytes]:
        """Check a client's HELLO and answer it (the server's side).

        Raises:
            AuthenticationError: a bad signature, another protocol, a HELLO too
                old or seen before, or a peer without the key.
        """
        _, body = self._checked(parts, self.key, expect=self.HELLO, sequence=0)
        if len(body) != 1 or len(body[0]) != _HELLO.size:
            raise AuthenticationError(f"{self.label}: a malformed HELLO")
        version, nonce, sent = _HELLO.unpack(bytes(body[0]))
        if version != PROTOCOL:
            raise AuthenticationError(f"{self.label}: protocol {version}, this worker speaks "
                                      f"{PROTOCOL}")
        now = time.time()
        if abs(now - sent) > HELLO_WINDOW:
            raise AuthenticationError(f"{self.label}: a HELLO from {now - sent:.0f} s ago "
                                      "(a replay, or clocks far apart)")
        if not _SEEN.first_time(nonce, now):
            raise AuthenticationError(f"{self.label}: a replayed HELLO")
        server_nonce = secrets.token_bytes(16)
        self._out, self._in = b"s", b"c"
        answer = self._framed(self.WELCOME, [_WELCOME.pack(nonce, server_nonce)], self.key)
        self._start(nonce, server_nonce)
        return answer

    def accept(self, parts: Sequence[Any]) -> None:
        """Check the server's WELCOME (the client's side).

        Raises:
            AuthenticationError: a bad signature, or an answer to another HELLO.
        """
        _, body = self._checked(parts, self.key, expect=self.WELCOME, sequence=0)
        if len(body) != 1 or len(body[0]) != _WELCOME.size:
            raise AuthenticationError(f"{self.label}: a malformed WELCOME")
        nonce, server_nonce = _WELCOME.unpack(bytes(body[0]))
        if not hmac.compare_digest(nonce, self._nonce):
            raise AuthenticationError(f"{self.label}: a WELCOME that answers another HELLO")
        self._start(nonce, server_nonce)

    def _start(self, client_nonce: bytes, server_nonce: bytes) -> None:
        self._nonce = client_nonce
        if self.key is not None:
            self._session_key = hmac.new(self.key, b"session" + client_nonce + server_nonce,
                                         hashlib.sha256).digest()
        self._sent = self._received = 0
        self._ready = True

    # -- messages -------------------------------------------------------------------

    def sign(self, kind: int, parts: Sequence[Any]) -> list[Any]:
        """``parts`` framed as one message of ``kind``: a header (kind, sequence, MAC) first."""
        if not self._ready:
            raise AuthenticationError(f"{self.label}: no message before the handshake is done")
        self._sent += 1
        header = _HEADER.pack(kind, self._sent)
        mac = _ZERO_MAC if self._session_key is None else \
            _mac(self._session_key, [self._out, header, *parts])
        return [header + mac, *parts]

    def open(self, parts: Sequence[Any]) -> tuple[int, list[Any]]:
        """The kind and body of a received message, once its MAC and sequence check out.

        Raises:
            AuthenticationError: a bad MAC, or a sequence number already seen
                or out of order (a replay).
        """
        if not self._ready:
            raise AuthenticationError(f"{self.label}: a message before the handshake")
        kind, body = self._checked(parts, self._session_key, expect=None,
                                   sequence=self._received + 1, direction=self._in)
        self._received += 1
        return kind, body

    # -- shared -----------------------------------------------------------------------

    def _framed(self, kind: int, parts: list[bytes], key: bytes | None) -> list[bytes]:
        header = _HEADER.pack(kind, 0)
        mac = _ZERO_MAC if key is None else _mac(key, [header, *parts])
        return [header + mac, *parts]

    def _checked(self, parts: Sequence[Any], key: bytes | None, expect: int | None,
                 sequence: int, direction: bytes | None = None) -> tuple[int, list[Any]]:
        if not parts or len(parts[0]) != _HEADER.size + _MAC:
            raise AuthenticationError(f"{self.label}: a message without a valid header")
        first = bytes(parts[0])
        header, mac = first[:_HEADER.size], first[_HEADER.size:]
        body = list(parts[1:])
        if key is not None:
            signed = [header, *body] if direction is None else [direction, header, *body]
            if not hmac.compare_digest(mac, _mac(key, signed)):
                raise AuthenticationError(f"{self.label}: a message with a wrong signature "
                                          "(another key, or altered on the way)")
        elif mac != _ZERO_MAC:
            raise AuthenticationError(f"{self.label}: a signed message, but no key is set "
                                      f"here (give the key file: remote_auth=... or "
                                      f"${AUTH_ENV})")
        kind, number = _HEADER.unpack(header)
        if expect is not None and kind != expect:
            raise AuthenticationError(f"{self.label}: expected message kind {expect}, got "
                                      f"{kind}")
        if number != sequence:
            raise AuthenticationError(f"{self.label}: message number {number} where "
                                      f"{sequence} was due (a replayed or lost message)")
        return kind, body
