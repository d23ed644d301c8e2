"""The authentication of remote workers: sessions, and hostile peers on the wire."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import zmq

from numap._auth import AuthenticationError, Session, keygen, load_key
from numap._execute import TaskSpec
from numap._remote import Message
from numap._wire import Codec, Kind, encode
from tests.remote_helpers import Servers

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def _pair(client_key=KEY, server_key=KEY):
    client, server = Session(client_key, "server"), Session(server_key, "client")
    client.accept(server.welcome(client.hello()))
    return client, server


# -- sessions ------------------------------------------------------------------------------------


def test_a_session_carries_messages_both_ways():
    client, server = _pair()
    kind, body = server.open(client.sign(Message.BATCH, [b"items", b"more"]))
    assert (kind, [bytes(b) for b in body]) == (Message.BATCH, [b"items", b"more"])
    kind, body = client.open(server.sign(Message.RESULT, [b"values"]))
    assert (kind, [bytes(b) for b in body]) == (Message.RESULT, [b"values"])


def test_an_altered_message_is_refused():
    client, server = _pair()
    header, _ = client.sign(Message.BATCH, [b"items"])
    with pytest.raises(AuthenticationError, match="wrong signature"):
        server.open([header, b"itemz"])


@pytest.mark.parametrize("how", ["replayed", "reordered"])
def test_a_replayed_or_reordered_message_is_refused(how):
    client, server = _pair()
    first = client.sign(Message.BATCH, [b"one"])
    second = client.sign(Message.BATCH, [b"two"])
    if how == "replayed":
        server.open(first)
        with pytest.raises(AuthenticationError, match="a replayed or lost message"):
            server.open(first)
    else:
        with pytest.raises(AuthenticationError, match="message number 2 where 1 was due"):
            server.open(second)


def test_a_message_of_another_session_is_refused():
    client, _ = _pair()
    _, server = _pair()
    with pytest.raises(AuthenticationError, match="wrong signature"):
        server.open(client.sign(Message.BATCH, [b"x"]))


def test_a_replayed_hello_is_refused():
    client = Session(KEY)
    hello = client.hello()
    Session(KEY).welcome(hello)
    with pytest.raises(AuthenticationError, match="replayed HELLO"):
        Session(KEY).welcome(hello)


def test_a_hello_with_the_wrong_key_or_none_is_refused():
    with pytest.raises(AuthenticationError, match="wrong signature"):
        Session(KEY).welcome(Session(OTHER).hello())
    with pytest.raises(AuthenticationError, match="wrong signature"):
        Session(KEY).welcome(Session(None).hello())
    with pytest.raises(AuthenticationError, match="no key is set here"):
        Session(None).welcome(Session(KEY).hello())


def test_an_old_hello_is_refused(monkeypatch):
    hello = Session(KEY).hello()
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AuthenticationError, match="ago"):
        Session(KEY).welcome(hello)


def test_without_keys_the_framing_still_checks_the_order():
    client, server = _pair(None, None)
    message = client.sign(Message.BATCH, [b"x"])
    server.open(message)
    with pytest.raises(AuthenticationError):
        server.open(message)


def test_a_key_file_round_trip_and_bad_files(tmp_path):
    path = keygen(tmp_path / "k")
    assert len(load_key(path)) == 32
    bad = tmp_path / "bad"
    bad.write_text("numap-hmac-sha256 0123\n")
    bad.chmod(0o600)
    with pytest.raises(AuthenticationError, match="holds no numap-hmac-sha256 key"):
        load_key(bad)
    with pytest.raises(FileNotFoundError, match="numap-worker keygen"):
        load_key(tmp_path / "missing")


# -- hostile peers against a real server ----------------------------------------------------------


class _Touch:
    """Unpickling this creates a file: the proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _record(x: int, path: Path) -> int:
    with open(path, "a") as stream:
        stream.write(f"{x}\n")
    return x


@pytest.fixture
def keyed(tmp_path):
    servers = Servers(tmp_path)
    key = keygen(tmp_path / "worker.key")
    server = servers.start(workers=1, key=key)
    context = zmq.Context()
    sockets = []

    def connect():
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.endpoint)
        sockets.append(sock)
        return sock

    yield server, load_key(key), connect
    for sock in sockets:
        sock.close(linger=0)
    context.term()
    servers.close()


def _answer(sock, seconds=8.0):
    assert sock.poll(int(seconds * 1000)), "no answer from the server"
    return sock.recv_multipart()


def _malicious(path: Path) -> list:
    return encode(Kind.TASK, 1, 0, _Touch(path), codec=Codec.DILL)


def test_a_peer_without_a_handshake_is_denied_and_its_payload_never_runs(keyed, tmp_path):
    _, _, connect = keyed
    marker = tmp_path / "unpickled"
    sock = connect()
    header = bytes(41)  # kind 0, number 0, an all-zero MAC
    sock.send_multipart([header, *_malicious(marker)])
    reply = _answer(sock)
    assert reply[0] == b"DENIED"
    time.sleep(0.5)
    assert not marker.exists()


def test_a_peer_with_the_wrong_key_is_denied_and_its_payload_never_runs(keyed, tmp_path):
    _, _, connect = keyed
    marker = tmp_path / "unpickled"
    sock = connect()
    session = Session(OTHER)
    sock.send_multipart(session.hello())
    assert _answer(sock)[0] == b"DENIED"
    # pretend the handshake went through and send a signed payload anyway
    session._start(b"\0" * 16, b"\0" * 16)  # as if the handshake had gone through
    sock.send_multipart(session.sign(Message.TASK, _malicious(marker)))
    sock.send_multipart(session.sign(Message.BATCH, encode(Kind.BATCH, 1, 1, [1])))
    assert _answer(sock)[0] == b"DENIED"
    time.sleep(0.5)
    assert not marker.exists()


def _legit_run(sock, key, log: Path) -> list[list[bytes]]:
    """A real session that runs one item; the messages it sent, as sent."""
    session = Session(key)
    sent = [session.hello()]
    sock.send_multipart(sent[0])
    session.accept(_answer(sock))
    session.open(_answer(sock))  # LIMITS
    task = encode(Kind.TASK, 7, 0, TaskSpec(_record, (log,)), codec=Codec.DILL)
    sent.append(session.sign(Message.TASK, task))
    batch = encode(Kind.BATCH, 7, 1, [42])
    sent.append(session.sign(Message.BATCH, batch))
    for message in sent[1:]:
        sock.send_multipart(message)
    kind, _ = session.open(_answer(sock))
    assert kind == Message.RESULT
    return [[bytes(p) for p in message] for message in sent]


def test_replayed_messages_run_nothing(keyed, tmp_path):
    _, key, connect = keyed
    log = tmp_path / "calls"
    sock = connect()
    sent = _legit_run(sock, key, log)
    assert log.read_text() == "42\n"
    # the same BATCH again on the same connection: an old message number
    sock.send_multipart(sent[2])
    assert _answer(sock)[0] == b"DENIED"
    # the whole conversation replayed on a new connection: the HELLO was seen before
    other = connect()
    for message in sent:
        other.send_multipart(message)
    assert _answer(other)[0] == b"DENIED"
    time.sleep(0.5)
    assert log.read_text() == "42\n"  # run once, by the real session only


def test_the_server_goes_on_serving_after_hostile_peers(keyed, tmp_path):
    _, key, connect = keyed
    hostile = connect()
    hostile.send_multipart([b"garbage"])
    assert _answer(hostile)[0] == b"DENIED"
    hostile.send_multipart([bytes(41), pickle.dumps(_Touch(tmp_path / "x"))])
    assert _answer(hostile)[0] == b"DENIED"
    log = tmp_path / "calls"
    _legit_run(connect(), key, log)
    assert log.read_text() == "42\n"
    assert not (tmp_path / "x").exists()



def test_a_message_reflected_to_its_sender_is_refused():
    client, server = _pair()
    message = client.sign(Message.BATCH, [b"x"])
    with pytest.raises(AuthenticationError, match="wrong signature"):
        client.open(message)
    server.open(message)


def test_no_message_goes_before_the_handshake():
    session = Session(None)
    session.hello()
    assert not session.ready
    with pytest.raises(AuthenticationError, match="before the handshake"):
        session.sign(Message.BATCH, [b"x"])
