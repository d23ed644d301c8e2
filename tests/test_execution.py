"""papyflow.execution: message handlers, remote data sources, the executors, authentication.

Loopback only; every handler, thread and socket a test makes is closed by it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from numap._auth import Session, keygen
from papyflow.blocks.algorithm import Algorithm
from papyflow.blocks.database import Database
from papyflow.dataflow._remote import REFUSED, REQUEST, RemoteChannel
from papyflow.dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    DatabaseOutputDataSource,
    RemoteDataSource,
)
from papyflow.execution import (
    AlgorithmExecutor,
    AuthenticationError,
    DBExecutor,
    LoopExecutor,
    LoopMessageHandler,
    MessageHandler,
    RemoteError,
)
from papyflow.formats.dataformat import DataFormat
from papyflow.helpers import (
    AccessMode,
    create_inputs_from_configuration,
    parse_inputs,
    parse_outputs,
    view_index_filename,
)
from tests.blocks_helpers import declare
from tests.dataflow_helpers import make_prefix, unit_ranges, write_floats

pytestmark = pytest.mark.timeout(60)

TOY = str(Path(__file__).resolve().parents[1] / "examples" / "toy" / "prefix")
FLOAT = "system/float64/1"
NUMBER, LABEL = "test/number/1", "test/label/1"


@pytest.fixture(autouse=True)
def _no_key_and_no_thread_left(monkeypatch):
    monkeypatch.delenv("NUMAP_AUTH", raising=False)
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            t.name.startswith("papyflow") and "MessageHandler" in t.name
            for t in threading.enumerate()):
        time.sleep(0.05)
    left = [t.name for t in threading.enumerate() if "MessageHandler" in t.name]
    assert not left, f"threads left: {left}"


class _Context:
    """A zmq context that keeps every socket it makes, to close them all at the end."""

    def __init__(self):
        self.zmq = zmq.Context()
        self.sockets = []

    def close(self):
        for socket in self.sockets:
            socket.close(linger=0)
        self.zmq.term()


@pytest.fixture
def context():
    ctx = _Context()
    yield ctx
    ctx.close()


def dealer(ctx, address):
    socket = ctx.zmq.socket(zmq.DEALER)
    ctx.sockets.append(socket)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def floats_in_cache(tmp_path, values=(1.0, 2.0, 3.0, 4.0, 5.0)):
    prefix = make_prefix(tmp_path / "prefix")
    filename = str(tmp_path / "cache" / "in.data")
    os.makedirs(os.path.dirname(filename))
    write_floats(prefix, filename, unit_ranges(len(values), 2), list(values))
    return prefix, filename


# -- remote data sources ---------------------------------------------------------------------


def test_a_remote_source_reads_a_cached_source(tmp_path, context):
    prefix, filename = floats_in_cache(tmp_path)
    local, served = CachedDataSource(), CachedDataSource()
    local.setup(filename, prefix)
    served.setup(filename, prefix, unpack=False)
    with MessageHandler(data_sources={"x": served}) as handler:
        assert handler.address.startswith("tcp://127.0.0.1:")
        remote = RemoteDataSource()
        assert remote.setup(dealer(context, handler.address), "x", FLOAT, prefix)
        assert len(remote) == len(local) == 5
        assert remote.data_indices() == local.data_indices()
        assert [(float(d.value), s, e) for d, s, e in remote] == \
            [(float(d.value), s, e) for d, s, e in local]
        assert remote.getAtDataIndex(7)[1:] == (6, 7)
        assert float(remote[-1][0].value) == 5.0
        assert remote.statistics().nb_bytes_read > 0
        with pytest.raises(RemoteError, match="no input 'y'") as caught:
            RemoteDataSource().setup(dealer(context, handler.address), "y", FLOAT, prefix)
        assert caught.value.kind == "sys"
    local.close()
    served.close()


def toy_view_config():
    return {"inputs": {
        "features": {"database": "toy/1", "protocol": "main", "set": "train",
                     "output": "features", "channel": "main"},
        "client": {"database": "toy/1", "protocol": "main", "set": "train",
                   "output": "client", "channel": "main"}}}


def test_a_remote_source_reads_a_database_view(tmp_path, context):
    cache = tmp_path / "cache"
    with DBExecutor(MessageHandler(), TOY, str(cache), toy_view_config()) as executor:
        executor.process()
        view = Database(TOY, "toy/1").view("main", "train")
        view.setup(view_index_filename(str(cache), "toy/1", "main", "train"))
        socket = dealer(context, executor.address)
        for name, dataformat in (("features", "toy/features/1"), ("client", "toy/client/1")):
            local = DatabaseOutputDataSource()
            local.setup(view, name, dataformat, TOY)
            remote = RemoteDataSource()
            remote.setup(socket, name, dataformat, TOY)  # one socket, one session
            assert remote.data_indices() == local.data_indices()
            assert [d.pack() for d, _, _ in remote] == [d.pack() for d, _, _ in local]
        assert len(remote) == 4 and remote[1][1:] == (10, 19)


# -- the commands ----------------------------------------------------------------------------


def test_ifo_get_don_round_trips(tmp_path, context):
    prefix, filename = floats_in_cache(tmp_path)
    source = CachedDataSource()
    source.setup(filename, prefix, unpack=False)
    handler = MessageHandler(data_sources={"x": source})
    handler.start()
    try:
        channel = RemoteChannel(dealer(context, handler.address))
        ok, ranges = channel.request([b"ifo", b"x"])
        assert ok == b"ok" and ranges == b"[[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]"
        ok, start, end, packed = channel.request([b"get", b"x", b"2"])
        assert (start, end) == (b"4", b"5")
        assert DataFormat(prefix, FLOAT).type.unpack(packed).value == 3.0
        with pytest.raises(RemoteError, match="there is no unit 9"):
            channel.request([b"get", b"x", b"9"])
        with pytest.raises(RemoteError, match="unknown command 'zzz'"):
            channel.request([b"zzz"])
        assert channel.request([b"don", b'{"read": 12}']) == [b"ack"]
        handler.join(5)
        assert not handler.is_alive() and handler.statistics == {"read": 12}
    finally:
        handler.destroy()
        source.close()


def test_err_reports_to_the_handler_and_stops_it(context):
    called = []
    with MessageHandler(kill_callback=lambda: called.append(True)) as handler:
        channel = RemoteChannel(dealer(context, handler.address))
        assert channel.request([b"err", b"usr", b"the code failed"]) == [b"ack"]
        handler.join(5)
        assert handler.last_error == ("usr", "the code failed") and called == [True]


@pytest.mark.parametrize("kind", ["usr", "sys"])
def test_send_error_reaches_the_other_side_with_its_kind(tmp_path, context, kind):
    prefix, filename = floats_in_cache(tmp_path)
    source = CachedDataSource()
    source.setup(filename, prefix, unpack=False)
    with MessageHandler(data_sources={"x": source}) as handler:
        remote = RemoteDataSource()
        remote.setup(dealer(context, handler.address), "x", FLOAT, prefix)
        handler.send_error("the view broke", kind)
        with pytest.raises(RemoteError, match="the view broke") as caught:
            remote[0]
        assert caught.value.kind == kind and caught.value.message == "the view broke"
        with pytest.raises(ValueError, match="kind: 'usr' or 'sys'"):
            handler.send_error("x", "bad")
    source.close()


# -- executors --------------------------------------------------------------------------------


def preprocess_config(path):
    return {"algorithm": "toy/preprocess/1", "parameters": {"layers": 2},
            "inputs": {"features": {"database": "toy/1", "protocol": "main", "set": "train",
                                    "output": "features", "channel": "main"}},
            "outputs": {"features": {"path": path, "channel": "main"}}}


def cached_values(prefix, filename):
    source = CachedDataSource()
    assert source.setup(filename, prefix)
    try:
        return [(d.value.tolist(), s, e) for d, s, e in source]
    finally:
        source.close()


def test_an_algorithm_reads_a_view_remotely_and_writes_the_cache(tmp_path, context):
    cache = str(tmp_path / "cache")
    local = AlgorithmExecutor(None, preprocess_config("lo/ca/l"), cache_root=cache, prefix=TOY)
    assert local.process()
    supervisor = MessageHandler()
    with DBExecutor(MessageHandler(), TOY, cache, preprocess_config("x")) as db, supervisor:
        db.process()
        remote = AlgorithmExecutor(dealer(context, supervisor.address),
                                   preprocess_config("re/mo/te"), cache_root=cache,
                                   db_socket=dealer(context, db.address), prefix=TOY)
        assert remote.process()
        supervisor.join(5)
        assert supervisor.statistics["data"]["blocks_written"] == 40
        assert supervisor.statistics["data"]["volume"]["read"] > 0
    expected = cached_values(TOY, os.path.join(cache, "lo/ca/l.data"))
    assert len(expected) == 40
    assert cached_values(TOY, os.path.join(cache, "re/mo/te.data")) == expected


def test_an_algorithm_failure_is_reported_as_usr(tmp_path, context):
    prefix, _ = floats_in_cache(tmp_path)
    declare(Path(prefix), "algorithms", "test/boom/1", {
        "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
        "groups": [{"name": "main", "inputs": {"x": {"type": FLOAT}},
                    "outputs": {"y": {"type": FLOAT}}}]}, """\
        class Algorithm:
            def process(self, inputs, data_loaders, outputs):
                raise ZeroDivisionError("boom")
        """)
    config = {"algorithm": "test/boom/1", "inputs": {"x": {"path": "in"}},
              "outputs": {"y": {"path": "out"}}}
    with MessageHandler() as supervisor:
        executor = AlgorithmExecutor(dealer(context, supervisor.address), config,
                                     cache_root=str(tmp_path / "cache"), prefix=prefix)
        with pytest.raises(Exception, match="boom"):
            executor.process()
        supervisor.join(5)
        assert supervisor.last_error[0] == "usr" and "boom" in supervisor.last_error[1]
    # the input's files are closed too, not left open until garbage collection
    assert [i.data_source.ready for i in executor.input_list] == [False]
    assert not os.path.exists(tmp_path / "cache" / "out.data")
    assert not [p for p in os.listdir(tmp_path / "cache") if p.startswith("out")]


LOOP = {"request": {"type": NUMBER}, "answer": {"type": LABEL}}


def loop_prefix(tmp_path):
    prefix = Path(make_prefix(tmp_path / "prefix"))
    declare(prefix, "dataformats", NUMBER, {"value": "float64"})
    declare(prefix, "dataformats", LABEL, {"label": "int32"})

    def v2(kind, outputs):
        return {"schema_version": 2, "language": "python", "api_version": 2, "type": kind,
                "groups": [{"name": "main", "inputs": {"x": {"type": NUMBER}},
                            "outputs": outputs, "loop": LOOP}]}

    declare(prefix, "algorithms", "test/evaluator/1", v2(
        "sequential_loop_evaluator", {"seen": {"type": NUMBER}}), """\
        class Algorithm:
            def read(self, inputs):
                self.current = inputs["x"].data.value
                return True

            def validate(self, hypothesis):
                return hypothesis.value < 3.5, {"label": int(hypothesis.value * 10)}

            def write(self, outputs, processor_output_name, end_data_index):
                outputs["seen"].write({"value": self.current}, end_data_index)
                return True

            def process(self, inputs, data_loaders, outputs):
                return True
        """)
    declare(prefix, "algorithms", "test/processor/1", v2(
        "sequential_loop_processor", {"y": {"type": NUMBER}}), """\
        class Algorithm:
            def process(self, inputs, data_loaders, outputs, loop_channel):
                ok, answer = loop_channel.validate({"value": inputs["x"].data.value})
                outputs["y"].write({"value": float(answer.label) if ok else -1.0})
                return True
        """)
    return str(prefix)


def loop_inputs(prefix, cache):
    cache.mkdir()
    sink = CachedDataSink()
    sink.setup(str(cache / "x.data"), DataFormat(prefix, NUMBER), 0, 3)
    for k, value in enumerate([1.0, 2.0, 4.0, 3.0]):
        sink.write({"value": value}, k, k)
    sink.close()


EVALUATOR = {"algorithm": "test/evaluator/1", "inputs": {"x": {"path": "x"}},
             "outputs": {"seen": {"path": "seen"}}}


def processor_config(algorithm="test/processor/1", x="x"):
    """A loop processor's configuration: its input ``x`` read from the cache at ``x``."""
    return {"algorithm": algorithm, "inputs": {"x": {"path": x}},
            "outputs": {"y": {"path": "y"}}}


def declare_processor(prefix, name, code):
    """A processor algorithm ``name``: test/processor/1's declaration with ``code``."""
    declaration = json.loads((Path(prefix) / "algorithms/test/processor/1.json").read_text())
    declare(Path(prefix), "algorithms", name, declaration, code)


@contextlib.contextmanager
def running_evaluator(prefix, cache):
    """The evaluator of EVALUATOR, set up and serving; closed at the end."""
    loop = LoopExecutor(LoopMessageHandler(), EVALUATOR, cache_root=str(cache), prefix=prefix)
    try:
        assert loop.setup() and loop.prepare() and loop.process()
        yield loop
    finally:
        loop.close()


def processor_of(loop, config, cache, prefix, context):
    """An AlgorithmExecutor for ``config`` that talks to ``loop``."""
    return AlgorithmExecutor(None, config, cache_root=str(cache),
                             loop_socket=dealer(context, loop.address), prefix=prefix)


def test_a_loop_validates_through_the_loop_executor(tmp_path, context):
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    evaluator_config = {"algorithm": "test/evaluator/1", "inputs": {"x": {"path": "x"}},
                        "outputs": {"seen": {"path": "seen"}}}
    processor_config = {"algorithm": "test/processor/1", "inputs": {"x": {"path": "x"}},
                        "outputs": {"y": {"path": "y"}}, "loop": evaluator_config}
    loop = LoopExecutor(LoopMessageHandler(), processor_config, cache_root=str(cache),
                        prefix=prefix)
    try:
        assert loop.setup() and loop.prepare() and loop.process()
        processor = AlgorithmExecutor(None, processor_config, cache_root=str(cache),
                                      loop_socket=dealer(context, loop.address),
                                      prefix=prefix)
        assert processor.process()
        assert loop.wait(5)
        assert loop.message_handler.finished
    finally:
        loop.close()
    y = cached_values(prefix, str(cache / "y.data"))
    assert y == [(10.0, 0, 0), (20.0, 1, 1), (-1.0, 2, 2), (30.0, 3, 3)]
    seen = cached_values(prefix, str(cache / "seen.data"))
    assert seen == [(1.0, 0, 0), (2.0, 1, 1), (4.0, 2, 2), (3.0, 3, 3)]


# -- helpers -----------------------------------------------------------------------------------


def test_the_configuration_is_checked_field_by_field():
    specs = parse_inputs(toy_view_config()["inputs"])
    assert specs["client"].from_database and specs["client"].output == "client"
    assert parse_outputs({"o": {"path": "a/b"}})["o"].path == "a/b"
    with pytest.raises(ValueError, match=r"inputs.x: missing field 'path'"):
        parse_inputs({"x": {"channel": "main"}})
    with pytest.raises(ValueError, match=r"inputs.x: missing field 'set'"):
        parse_inputs({"x": {"database": "toy/1", "protocol": "main", "output": "o"}})
    with pytest.raises(ValueError, match=r"inputs.x.colour: unknown field"):
        parse_inputs({"x": {"path": "p", "colour": 1}})
    with pytest.raises(ValueError, match=r"outputs.o.path: expected a non-empty string"):
        parse_outputs({"o": {"path": 3}})
    with pytest.raises(TypeError, match=r"inputs.x: expected an object, got int"):
        parse_inputs({"x": 3})
    assert AccessMode.REMOTE == 2 and AccessMode.NONE == 0


def test_access_modes_and_missing_inputs(tmp_path):
    algorithm = Algorithm(TOY, "toy/preprocess/1")
    config = preprocess_config("out")
    with pytest.raises(ValueError, match=r"inputs.features: db_access is NONE"):
        create_inputs_from_configuration(config, algorithm, TOY, str(tmp_path))
    with pytest.raises(ValueError, match=r"inputs.features: db_access is REMOTE but no "
                                         r"socket"):
        create_inputs_from_configuration(config, algorithm, TOY, str(tmp_path),
                                         db_access=AccessMode.REMOTE)
    with pytest.raises(ValueError, match=r"inputs.features: missing"):
        create_inputs_from_configuration({"inputs": {}}, algorithm, TOY, str(tmp_path))
    with pytest.raises(ValueError, match=r"inputs.other: algorithm 'toy/preprocess/1' has "
                                         r"no such input"):
        create_inputs_from_configuration({"inputs": {"other": {"path": "p"}}}, algorithm,
                                         TOY, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"inputs.features: the cache holds no"):
        create_inputs_from_configuration({"inputs": {"features": {"path": "nothing"}}},
                                         algorithm, TOY, str(tmp_path),
                                         cache_access=AccessMode.LOCAL)
    with pytest.raises(ValueError, match=r"must stay inside the cache root"):
        create_inputs_from_configuration({"inputs": {"features": {"path": "../up"}}},
                                         algorithm, TOY, str(tmp_path),
                                         cache_access=AccessMode.LOCAL)
    inputs, loaders = create_inputs_from_configuration(
        config, algorithm, TOY, str(tmp_path), db_access=AccessMode.LOCAL)
    assert len(inputs["features"].data_source) == 40 and len(loaders) == 0
    assert inputs.main_group.synchronization_listener is not None


def test_the_example_runs():
    script = Path(__file__).resolve().parents[1] / "examples" / "execution_remote_view.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=50, check=False)
    assert done.returncode == 0, done.stderr
    assert "40 units written" in done.stdout and "'blocks_written': 40" in done.stdout


# -- authentication ----------------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path):
    return keygen(tmp_path / "key")


def test_binding_beyond_loopback_needs_a_key():
    with pytest.raises(ValueError, match=r"host_address '0.0.0.0' is not a loopback"):
        MessageHandler("0.0.0.0")
    with pytest.raises(ValueError, match=r"host_address 'tcp://192.0.2.1:5000' is not"):
        MessageHandler("tcp://192.0.2.1:5000")


def test_an_address_in_use_is_an_os_error_naming_it():
    handler = MessageHandler()
    try:
        with pytest.raises(OSError, match=rf"host_address '{handler.address}': cannot bind"):
            MessageHandler(handler.address)
    finally:
        handler.destroy()


def test_a_db_executor_that_fails_frees_its_handler_address(tmp_path):
    handler = MessageHandler()
    config = {"algorithm": "toy/preprocess/1",
              "inputs": {"features": {"database": "toy/1", "protocol": "main", "set": "nope",
                                      "output": "features"}},
              "outputs": {"features": {"path": "pr/ep"}}}
    with pytest.raises(KeyError, match="no set 'nope'"):
        DBExecutor(handler, TOY, str(tmp_path / "cache"), config)
    MessageHandler(handler.address).destroy()  # the address is free again


def test_a_loop_executor_that_fails_frees_its_handler_address(tmp_path):
    prefix = loop_prefix(tmp_path)
    handler = LoopMessageHandler()
    config = {"algorithm": "test/processor/1", "inputs": {"x": {"path": "x"}},
              "outputs": {"y": {"path": "y"}}}
    with pytest.raises(ValueError, match="not a loop evaluator"):
        LoopExecutor(handler, config, cache_root=str(tmp_path / "cache"), prefix=prefix)
    MessageHandler(handler.address).destroy()  # the address is free again


def test_no_key_or_the_wrong_key_is_refused(tmp_path, context, key_file):
    prefix, filename = floats_in_cache(tmp_path)
    source = CachedDataSource()
    source.setup(filename, prefix, unpack=False)
    other = keygen(tmp_path / "other")
    with MessageHandler(data_sources={"x": source}, auth=key_file) as handler:
        with pytest.raises(AuthenticationError, match="refused the handshake"):
            RemoteDataSource().setup(dealer(context, handler.address), "x", FLOAT, prefix)
        with pytest.raises(AuthenticationError, match="wrong signature"):
            RemoteDataSource().setup(dealer(context, handler.address), "x", FLOAT, prefix,
                                     auth=other)
        remote = RemoteDataSource()  # the right key
        remote.setup(dealer(context, handler.address), "x", FLOAT, prefix, auth=key_file)
        assert len(remote) == 5
    source.close()


def raw_session(context, address, key=None):
    socket = dealer(context, address)
    session = Session(key)
    socket.send_multipart([b"", *session.hello()])
    assert socket.poll(5000)
    session.accept(socket.recv_multipart()[1:])
    return socket, session


def answer(socket):
    assert socket.poll(5000), "no answer"
    return socket.recv_multipart()[1:]


def test_a_replayed_message_is_refused(tmp_path, context):
    prefix, filename = floats_in_cache(tmp_path)
    source = CachedDataSource()
    source.setup(filename, prefix, unpack=False)
    with MessageHandler(data_sources={"x": source}) as handler:
        socket, session = raw_session(context, handler.address)
        message = session.sign(REQUEST, [b"get", b"x", b"0"])
        socket.send_multipart([b"", *message])
        assert len(session.open(answer(socket))[1]) == 4
        socket.send_multipart([b"", *message])  # again
        refused = answer(socket)
        assert refused[0] == REFUSED and b"replayed" in refused[1]
        assert len(refused) == 2  # no data
    source.close()


class Creates:
    """Unpickled, it would create a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_payload_is_never_unpickled(tmp_path, context, key_file):
    target = tmp_path / "pwned"
    payload = pickle.dumps(Creates(str(target)))
    with MessageHandler(auth=key_file) as keyed, MessageHandler() as open_handler:
        for handler in (keyed, open_handler):
            socket = dealer(context, handler.address)
            for frames in ([payload], [payload, payload], [bytes(41), payload]):
                socket.send_multipart([b"", *frames])
                assert answer(socket)[0] == REFUSED
        # inside an authenticated session: arguments are bytes, never unpickled
        socket, session = raw_session(context, open_handler.address)
        for body in ([payload], [b"get", payload, payload], [b"don", payload]):
            socket.send_multipart([b"", *session.sign(REQUEST, body)])
            _, reply = session.open(answer(socket))
            assert reply[0] == b"err"
    assert not target.exists()


def test_an_oversized_message_is_refused(tmp_path, context):
    with MessageHandler(max_message=4096) as handler:
        channel = RemoteChannel(dealer(context, handler.address), max_message=1 << 20)
        with pytest.raises(AuthenticationError, match="above the limit of 4096"):
            channel.request([b"ifo", b"x" * 3000, b"y" * 3000])
        small = RemoteChannel(dealer(context, handler.address), max_message=4096)
        with pytest.raises(ValueError, match="above the limit of 4096"):
            small.request([b"ifo", b"x" * 5000])
        # one frame above the limit: zmq drops the connection, no answer at all
        huge = RemoteChannel(dealer(context, handler.address), max_message=1 << 20,
                             handshake_timeout=1.0)
        huge.handshake()
        huge.timeout = 1.0
        with pytest.raises(TimeoutError, match="no reply"):
            huge.request([b"ifo", b"z" * 10000])
        assert handler.is_alive()
        assert RemoteChannel(dealer(context, handler.address)).request([b"don"]) == [b"ack"]


def test_a_client_of_a_silent_address_gives_up(context):
    with MessageHandler() as handler:
        address = handler.address
    channel = RemoteChannel(dealer(context, address), handshake_timeout=0.5)
    for _ in range(2):  # the failed handshake is not taken for a done one
        with pytest.raises(AuthenticationError, match="no WELCOME within 0.5 s"):
            channel.request([b"ifo", b"x"])


def test_a_failing_loop_processor_tells_its_evaluator(tmp_path, context):
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    declare_processor(prefix, "test/badprocessor/1", """\
        class Algorithm:
            def process(self, inputs, data_loaders, outputs, loop_channel):
                loop_channel.validate({"value": 1.0})
                raise KeyError("no such thing")
        """)
    with running_evaluator(prefix, cache) as loop:
        processor = processor_of(loop, processor_config("test/badprocessor/1"), cache, prefix,
                                 context)
        with pytest.raises(Exception, match="no such thing"):
            processor.process()
        assert loop.wait(5)
        assert loop.message_handler.last_error[0] == "usr"
    assert not (cache / "y.data").exists()


def test_an_evaluator_whose_processor_failed_commits_nothing(tmp_path, context):
    # The evaluator wrote in step with the processor until it failed: what it
    # wrote is part of an output, which close() must not commit as a whole.
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    declare_processor(prefix, "test/lateprocessor/1", """\
        class Algorithm:
            def process(self, inputs, data_loaders, outputs, loop_channel):
                if inputs["x"].data_index == 2:
                    raise ValueError("sample 2 is unreadable")
                ok, answer = loop_channel.validate({"value": inputs["x"].data.value})
                outputs["y"].write({"value": float(answer.label)})
                return True
        """)
    with running_evaluator(prefix, cache) as loop:
        processor = processor_of(loop, processor_config("test/lateprocessor/1"), cache, prefix,
                                 context)
        with pytest.raises(Exception, match="sample 2 is unreadable"):
            processor.process()
        assert loop.wait(5)
        assert loop.message_handler.last_error[0] == "usr"
        assert not loop.message_handler.finished
    assert sorted(p.name for p in cache.glob("seen*")) == []
    assert sorted(p.name for p in cache.glob("y*")) == []


def test_a_processor_that_fails_to_build_releases_its_evaluator(tmp_path, context):
    # The processor met its evaluator (loop setup), then one of its inputs is
    # missing: the evaluator must hear ``err`` instead of waiting for ever.
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    with running_evaluator(prefix, cache) as loop:
        with pytest.raises(Exception, match="no/such/input"):
            processor_of(loop, processor_config(x="no/such/input"), cache, prefix, context)
        assert loop.wait(30)
        assert loop.message_handler.last_error[0] == "sys"
        assert "no/such/input" in loop.message_handler.last_error[1]
        assert not loop.message_handler.finished
    assert sorted(p.name for p in cache.glob("seen*")) == []


def test_a_processor_whose_outputs_fail_to_commit_releases_its_evaluator(tmp_path, context):
    # Committing the outputs is part of the run: when it fails (a full disk),
    # the evaluator waiting for ``don`` must hear ``err``, not wait forever.
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    with running_evaluator(prefix, cache) as loop:
        processor = processor_of(loop, processor_config(), cache, prefix, context)
        (sink,) = processor.data_sinks

        def full_disk():
            raise OSError(28, "No space left on device")

        sink.close = full_disk
        with pytest.raises(OSError, match="No space left"):
            processor.process()
        assert loop.wait(5)
        assert loop.message_handler.last_error[0] == "sys"
        assert "No space left" in loop.message_handler.last_error[1]
    assert sorted(p.name for p in cache.glob("seen*")) == []
    assert sorted(p.name for p in cache.glob("y*")) == []


def test_a_processor_with_more_steps_than_its_evaluator_is_refused_at_the_step(tmp_path,
                                                                               context):
    # Its fifth step would be judged by an evaluator still on its fourth unit.
    prefix = loop_prefix(tmp_path)
    cache = tmp_path / "cache"
    loop_inputs(prefix, cache)
    sink = CachedDataSink()
    sink.setup(str(cache / "x5.data"), DataFormat(prefix, NUMBER), 0, 4)
    for k, value in enumerate([1.0, 2.0, 4.0, 3.0, 0.5]):
        sink.write({"value": value}, k, k)
    sink.close()
    with running_evaluator(prefix, cache) as loop:
        processor = processor_of(loop, processor_config(x="x5"), cache, prefix, context)
        with pytest.raises(RemoteError, match=r"refused red: .*the evaluator's main group "
                                              r"'main' has no data after data index 3"):
            processor.process()
        assert loop.wait(5)
    assert sorted(p.name for p in cache.glob("seen*")) == []
