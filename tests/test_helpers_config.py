"""papyflow.helpers: channels of an execution configuration, the range of remote inputs,
malformed replies, and what an error in the middle leaves open.

Loopback only; every handler and socket a test makes is closed by it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zmq

from papyflow.blocks.algorithm import Algorithm
from papyflow.dataflow._remote import RemoteChannel, RemoteError
from papyflow.dataflow.data import CachedDataSource, RemoteDataSource
from papyflow.execution import DBExecutor, MessageHandler
from papyflow.helpers import (
    AccessMode,
    create_inputs_from_configuration,
    create_outputs_from_configuration,
    group_channels,
)
from tests.blocks_helpers import declare
from tests.dataflow_helpers import make_prefix, unit_ranges, write_floats

pytestmark = pytest.mark.timeout(60)

TOY = str(Path(__file__).resolve().parents[1] / "examples" / "toy" / "prefix")
FLOAT = "system/float64/1"


def _two_groups(prefix: Path, kind: str, names: tuple[str | None, str | None]) -> Algorithm:
    """An algorithm of ``kind`` with groups ``a`` (the main one, output ``o``) and ``b``."""
    groups: list[dict] = [{"inputs": {"a": {"type": FLOAT}, "a2": {"type": FLOAT}},
                           "outputs": {"o": {"type": FLOAT}}},
                          {"inputs": {"b": {"type": FLOAT}}}]
    for group, name in zip(groups, names, strict=True):
        if name is not None:
            group["name"] = name
    name = f"test/{kind}_{'_'.join(n or 'x' for n in names)}/1"
    declare(prefix, "algorithms", name, {
        "schema_version": 2, "language": "python", "api_version": 2, "type": kind,
        "groups": groups}, "class Algorithm:\n    def process(self, *args, **kwargs):\n"
                           "        return True\n")
    algorithm = Algorithm(str(prefix), name)
    assert algorithm.valid, algorithm.errors
    return algorithm


@pytest.fixture
def block(tmp_path):
    """``(prefix, cache)``: cached inputs ``a``, ``a2`` (4 units) and ``b`` (2 units)."""
    prefix = make_prefix(tmp_path / "prefix")
    cache = tmp_path / "cache"
    cache.mkdir()
    write_floats(prefix, str(cache / "a.data"), unit_ranges(4))
    write_floats(prefix, str(cache / "a2.data"), unit_ranges(4))
    write_floats(prefix, str(cache / "b.data"), unit_ranges(2, 2))
    return Path(prefix), cache


def _config(channels: dict[str, str | None], block_channel: str | None = None) -> dict:
    inputs = {}
    for name, channel in channels.items():
        inputs[name] = {"path": name} if channel is None else {"path": name, "channel": channel}
    config: dict = {"inputs": inputs, "outputs": {"o": {"path": "o"}}}
    if block_channel is not None:
        config["channel"] = block_channel
    return config


def _open(config, algorithm, cache):
    return create_inputs_from_configuration(config, algorithm, algorithm.prefix, str(cache),
                                            cache_access=AccessMode.LOCAL)


# -- channels --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sequential", "autonomous"])
def test_groups_and_loaders_are_named_after_the_configurations_channels(block, kind):
    prefix, cache = block
    # BEAT's channels are the toolchain's, not the algorithm's group names
    algorithm = _two_groups(prefix, kind, ("main", "extra"))
    config = _config({"a": "train", "a2": "train", "b": "models"}, "train")
    inputs, loaders = _open(config, algorithm, cache)
    assert group_channels(config, algorithm) == ["train", "models"]
    if kind == "sequential":
        assert inputs.main_group.channel == "train"
        assert inputs.group("train") is inputs.main_group
        assert [loader.channel for loader in loaders] == ["models"]
    else:
        assert len(inputs) == 0
        assert [loader.channel for loader in loaders] == ["train", "models"]
        assert loaders.main_loader.channel == "train"
    assert loaders["models"].input_names() == ["b"]
    assert loaders.loaderOf("b") is loaders["models"]


@pytest.mark.parametrize("kind", ["sequential", "autonomous"])
def test_unnamed_groups_without_channels_get_distinct_channels(block, kind):
    prefix, cache = block
    algorithm = _two_groups(prefix, kind, (None, None))
    inputs, loaders = _open(_config({"a": None, "a2": None, "b": None}), algorithm, cache)
    channels = [inputs.main_group.channel] if kind == "sequential" else []
    channels += [loader.channel for loader in loaders]
    assert channels == ["main", "groups[1]"]


def test_without_channels_groups_keep_their_names_and_the_block_channel_names_the_main(
        block):
    prefix, cache = block
    algorithm = _two_groups(prefix, "sequential", ("probes", "models"))
    inputs, loaders = _open(_config({"a": None, "a2": None, "b": None}), algorithm, cache)
    assert inputs.main_group.channel == "probes" and loaders[0].channel == "models"
    config = _config({"a": None, "a2": None, "b": None}, "test")
    assert group_channels(config, algorithm) == ["test", "models"]
    # an input without a channel is on the one its group's other inputs give
    assert group_channels(_config({"a": "x", "a2": None, "b": None}), algorithm) == \
        ["x", "models"]


def test_inconsistent_channels_are_errors_naming_the_field(block):
    prefix, cache = block
    algorithm = _two_groups(prefix, "sequential", ("main", "models"))
    name = algorithm.name
    with pytest.raises(ValueError, match=r"^inputs\.a2\.channel: 'test' differs from "
                                         r"'train', the channel of input 'a': .*groups\[0\]"):
        _open(_config({"a": "train", "a2": "test", "b": "models"}), algorithm, cache)
    with pytest.raises(ValueError, match=r"^inputs\.b\.channel: groups\[1\] of "
                                         rf"'{name}' is on channel 'train', the channel of "
                                         r"groups\[0\]"):
        _open(_config({"a": "train", "a2": "train", "b": "train"}), algorithm, cache)
    with pytest.raises(ValueError, match=r"^channel: the block's channel 'unknown' is not "
                                         r"that of its main group \(groups\[0\] .* on "
                                         r"'train'\)$"):
        _open(_config({"a": "train", "a2": "train", "b": "models"}, "unknown"), algorithm,
              cache)
    with pytest.raises(ValueError, match=r"^channel: the block's channel 'models' .*; "
                                         r"'models' is the channel of groups\[1\]"):
        _open(_config({"a": "train", "a2": "train", "b": "models"}, "models"), algorithm,
              cache)
    with pytest.raises(ValueError, match=r"^channel: expected a non-empty string, got 3"):
        _open(_config({"a": None, "a2": None, "b": None}, 3), algorithm, cache)


def test_an_output_on_another_channel_than_the_blocks_is_an_error(block):
    prefix, cache = block
    algorithm = _two_groups(prefix, "sequential", ("main", "models"))
    config = _config({"a": "train", "a2": "train", "b": "models"}, "train")
    inputs, loaders = _open(config, algorithm, cache)
    config["outputs"] = {"o": {"path": "o", "channel": "models"}}
    with pytest.raises(ValueError, match=r"^outputs\.o\.channel: 'models' is not the "
                                         r"block's channel 'train'"):
        create_outputs_from_configuration(config, algorithm, str(prefix), str(cache), inputs,
                                          loaders)
    del config["channel"]  # the main group's channel, then
    with pytest.raises(ValueError, match=r"^outputs\.o\.channel: 'models' is not the "
                                         r"block's channel 'train'"):
        create_outputs_from_configuration(config, algorithm, str(prefix), str(cache), inputs,
                                          loaders)
    config["outputs"] = {"o": {"path": "o", "channel": "train"}}
    outputs, sinks = create_outputs_from_configuration(config, algorithm, str(prefix),
                                                       str(cache), inputs, loaders)
    assert [output.name for output in outputs] == ["o"]
    for sink in sinks:
        sink.close()
    for input_ in inputs:
        input_.data_source.close()
    for loader in loaders:
        loader._source("b").close()


# -- errors in the middle --------------------------------------------------------------------


def _open_files() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_inputs_opened_before_a_failing_one_are_closed(block):
    prefix, cache = block
    algorithm = _two_groups(prefix, "sequential", ("main", "models"))
    before = _open_files()
    with pytest.raises(FileNotFoundError, match=r"^inputs\.b: the cache holds no"):
        _open({"inputs": {"a": {"path": "a"}, "a2": {"path": "a2"}, "b": {"path": "no"}}},
              algorithm, cache)
    assert [f for f in _open_files() - before if f.startswith(str(cache))] == []


def test_a_results_fields_are_named_result():
    algorithm = Algorithm(TOY, "toy/eer/1")
    assert algorithm.valid and algorithm.isAnalyzer
    config = {"range": [0, 3], "result": {"path": "r", "colour": "red"}}
    with pytest.raises(ValueError, match=r"^result\.colour: unknown field"):
        create_outputs_from_configuration(config, algorithm, TOY, "cache")
    with pytest.raises(ValueError, match=r"^result\.path: expected a non-empty string"):
        create_outputs_from_configuration({"range": [0, 3], "result": {"path": ""}},
                                          algorithm, TOY, "cache")


@pytest.mark.parametrize(("output", "message"), [
    ("nothere", (r"the set main/train of toy/1 has no output 'nothere' \(outputs: client, "
                 r"features\)")),
    ("client", (r"'client' of toy/1 main/train is of dataformat 'toy/client/1'; the "
                r"algorithm reads 'features' as 'toy/features/1'")),
])
def test_a_database_input_names_an_output_of_its_format(tmp_path, output, message):
    config = {"inputs": {"features": {"database": "toy/1", "protocol": "main",
                                      "set": "train", "output": output}}}
    algorithm = Algorithm(TOY, "toy/preprocess/1")
    with pytest.raises(ValueError, match=rf"^inputs\.features\.output: {message}"):
        create_inputs_from_configuration(config, algorithm, TOY, str(tmp_path / "cache"),
                                         db_access=AccessMode.LOCAL)


# -- remote inputs ---------------------------------------------------------------------------


@pytest.fixture
def context():
    ctx = zmq.Context()
    sockets: list[zmq.Socket] = []

    def dealer(address: str) -> zmq.Socket:
        socket = ctx.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(address)
        sockets.append(socket)
        return socket

    yield dealer
    for socket in sockets:
        socket.close(linger=0)
    ctx.term()


def test_a_remote_source_keeps_the_units_of_its_range(block, context):
    prefix, cache = block
    filename = str(cache / "pairs.data")
    write_floats(str(prefix), filename, unit_ranges(5, 2), [1.0, 2.0, 3.0, 4.0, 5.0])
    served = CachedDataSource()
    served.setup(filename, str(prefix), unpack=False)
    try:
        with MessageHandler(data_sources={"x": served}) as handler:
            channel = RemoteChannel(context(handler.address))
            remote = RemoteDataSource()
            remote.setup(channel, "x", FLOAT, str(prefix), start_index=3, end_index=6)
            assert remote.data_indices() == [(2, 3), (4, 5), (6, 7)]
            assert [(float(d.value), s, e) for d, s, e in remote] == \
                [(2.0, 2, 3), (3.0, 4, 5), (4.0, 6, 7)]
            assert remote.getAtDataIndex(7)[1:] == (6, 7)
            with pytest.raises(IndexError, match=r"remote input 'x'.*data indices 3\.\.12 "
                                                 r"are outside the range served, 0\.\.9"):
                RemoteDataSource().setup(channel, "x", FLOAT, str(prefix), start_index=3,
                                         end_index=12)
            channel.request([b"don"])
    finally:
        served.close()


def test_a_configurations_range_restricts_a_database_input_read_remotely(tmp_path, context):
    config = {"algorithm": "toy/preprocess/1", "range": [10, 19],
              "inputs": {"features": {"database": "toy/1", "protocol": "main", "set": "train",
                                      "output": "features", "channel": "main"}},
              "outputs": {"features": {"path": "pr/ep", "channel": "main"}}}
    algorithm = Algorithm(TOY, "toy/preprocess/1")
    cache = str(tmp_path / "cache")
    local, _ = create_inputs_from_configuration(config, algorithm, TOY, cache,
                                                db_access=AccessMode.LOCAL)
    expected = local["features"].data_source.data_indices()
    assert expected[0] == (10, 10) and expected[-1] == (19, 19)
    with DBExecutor(MessageHandler(), TOY, cache, config) as executor:
        # the executor serves only the range, too
        assert executor.data_sources["features"].data_indices() == expected
        executor.process()
        channel = RemoteChannel(context(executor.address))
        remote, _ = create_inputs_from_configuration(config, algorithm, TOY, cache,
                                                     db_access=AccessMode.REMOTE,
                                                     socket=channel)
        source = remote["features"].data_source
        assert source.data_indices() == expected
        assert [d.pack() for d, _, _ in source] == \
            [d.pack() for d, _, _ in local["features"].data_source]
        channel.request([b"don"])


class _Garbage:
    """A "socket" whose replies are fixed: ``ifo`` gets ``ifo``, anything else ``get``."""

    def __init__(self, ifo: list[bytes], get: list[bytes]) -> None:
        self.replies = {b"ifo": ifo, b"get": get}
        self.command = b""

    def send_multipart(self, parts: list[bytes]) -> None:
        self.command = parts[0]

    def recv_multipart(self) -> list[bytes]:
        return self.replies[self.command]


@pytest.mark.parametrize(("ifo", "get", "message"), [
    ([b"ok"], [], r"malformed reply to ifo: 0 frames after 'ok', not 1"),
    ([b"ok", b"{x"], [], r"malformed reply to ifo: not JSON"),
    ([b"ok", b"[[1]]"], [], r"malformed reply to ifo: expected a JSON list of \[start, end\]"),
    ([b"ok", b"[[0, 0]]"], [b"ok", b"0"], r"malformed reply to get: 1 frames after 'ok'"),
    ([b"ok", b"[[0, 0]]"], [b"ok", b"a", b"b", b"x"],
     r"malformed reply to get: unit 0: the range b'a'..b'b' is not two numbers"),
    ([b"ok", b"[[0, 0]]"], [b"ok", b"0", b"0", b"xy"],
     r"malformed reply to get: unit 0: the record does not unpack"),
])
def test_a_malformed_reply_is_a_remote_error_naming_the_input(tmp_path, ifo, get, message):
    prefix = make_prefix(tmp_path / "prefix")
    source = RemoteDataSource()
    with pytest.raises(RemoteError, match=rf"^remote input 'x': a {message}"):
        source.setup(_Garbage(ifo, get), "x", FLOAT, prefix)
        source[0]
