"""Inputs synchronized in groups, and outputs whose units follow the group's steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from papyflow.dataflow._units import UnitTable
from papyflow.dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    DataSink,
    DataSource,
    MemoryDataSource,
    mixDataIndices,
)
from papyflow.dataflow.inputs import Input, InputGroup, InputList
from papyflow.dataflow.outputs import (
    Output,
    OutputList,
    RemotelySyncedOutput,
    SynchronizationListener,
)
from papyflow.dataflow.units import Unit, synchronize
from tests.dataflow_helpers import fmt, make_prefix


def images():
    return MemoryDataSource([(f"img{i}", i, i) for i in range(6)])


def clients():
    return MemoryDataSource([("c0", 0, 2), ("c1", 3, 5)])


def group_of(*sources, listener=None, restricted=True, channel="main"):
    group = InputGroup(channel, listener, restricted_access=restricted)
    for name, source in sources:
        group.add(Input(name, "system/text/1", source))
    return group


class LooseSource(DataSource):
    """A source that does not check its units (as a faulty custom source might)."""

    def __init__(self, units):
        super().__init__()
        self._units = units
        self.units = UnitTable.from_ranges([(s, e) for _, s, e in units], {"k": np.zeros(
            len(units))})

    def __len__(self):
        return len(self._units)

    def _get(self, position):
        return self._units[position]


class ListSink(DataSink):
    """Keeps the units written, in memory."""

    def __init__(self):
        self.units = []
        self.closed = False

    def write(self, data, start_data_index, end_data_index):
        self.units.append((data, start_data_index, end_data_index))

    def isConnected(self):
        return not self.closed

    def close(self):
        self.closed = True


def test_two_inputs_at_different_rates_step_by_step():
    listener = SynchronizationListener()
    group = group_of(("image", images()), ("client", clients()), listener=listener)
    image, client = group["image"], group["client"]
    steps = []
    while group.hasMoreData():
        group.next()
        steps.append((group.data_index, group.data_index_end, image.data, client.data,
                      client.data_same_as_previous, client.hasDataChanged(),
                      image.data_same_as_previous, client.isDataUnitDone(),
                      (listener.data_index_start, listener.data_index_end)))
    assert steps == [
        (0, 0, "img0", "c0", False, True, False, False, (0, 0)),
        (1, 1, "img1", "c0", True, False, False, False, (1, 1)),
        (2, 2, "img2", "c0", True, False, False, True, (2, 2)),
        (3, 3, "img3", "c1", False, True, False, False, (3, 3)),
        (4, 4, "img4", "c1", True, False, False, False, (4, 4)),
        (5, 5, "img5", "c1", True, False, False, True, (5, 5)),
    ]
    assert (image.nb_data_blocks_read, client.nb_data_blocks_read) == (6, 2)
    assert (client.data_index, client.data_index_end) == (3, 5)
    assert image.isDataUnitDone() and not image.hasMoreData()
    with pytest.raises(IndexError, match=r"group 'main' has no more data.*5"):
        group.next()


def test_the_finest_input_may_change_from_step_to_step():
    a = MemoryDataSource([("a0", 0, 1), ("a1", 2, 2), ("a2", 3, 5)])
    b = MemoryDataSource([("b0", 0, 0), ("b1", 1, 3), ("b2", 4, 5)])
    group = group_of(("a", a), ("b", b))
    steps = []
    while group.hasMoreData():
        group.next()
        steps.append((group.data_index, group.data_index_end, group["a"].data, group["b"].data,
                      group["a"].hasDataChanged(), group["b"].hasDataChanged()))
    assert [(s, e) for s, e, *_ in steps] == mixDataIndices([a.data_indices(),
                                                             b.data_indices()])
    assert steps == [(0, 0, "a0", "b0", True, True), (1, 1, "a0", "b1", False, True),
                     (2, 2, "a1", "b1", True, False), (3, 3, "a2", "b1", True, False),
                     (4, 5, "a2", "b2", False, True)]


def test_a_group_that_starts_past_zero():
    group = group_of(("x", MemoryDataSource([("x", 50, 51), ("y", 52, 52)])),
                     ("z", MemoryDataSource([("z", 50, 52)])))
    group.next()
    assert (group.data_index, group.data_index_end) == (50, 51)
    group.next()
    assert (group.data_index, group.data_index_end, group["z"].data_same_as_previous) == \
        (52, 52, True)
    group.restart()
    group.next()
    assert group["x"].data == "x" and group["x"].nb_data_blocks_read == 3


def test_streams_of_units_that_start_past_zero():
    images = [Unit(f"img{i}", i, i) for i in range(10, 13)]
    steps = list(synchronize([images, [Unit("c", 10, 12)]]))
    assert [(s.start, s.end) for s in steps] == [(10, 10), (11, 11), (12, 12)]
    assert [s.inbox[1].data_same_as_previous for s in steps] == [False, True, True]
    with pytest.raises(ValueError, match="input 1 starts at data index 11, input 0 at 10"):
        list(synchronize([[Unit("a", 10, 10)], [Unit("b", 11, 11)]]))
    with pytest.raises(ValueError, match="input 0 has no unit but input 1 goes on with 0..0"):
        list(synchronize([[], [Unit("b", 0, 0)]]))
    assert list(synchronize([[], []])) == []


def test_inputs_that_are_not_synchronized_are_named():
    group = group_of(("short", MemoryDataSource([("s", 0, 4)])),
                     ("long", MemoryDataSource([("l", 0, 4), ("m", 5, 9)])))
    group.next()
    with pytest.raises(ValueError, match="input 'short' ended at data index 4 but input "
                                         "'long' goes on"):
        group.next()
    group = group_of(("a", MemoryDataSource([("a", 0, 4)])),
                     ("b", MemoryDataSource([("b", 1, 4)])))
    with pytest.raises(ValueError, match="input 'b' starts at data index 1, input 'a' at 0"):
        group.next()
    group = group_of(("a", MemoryDataSource([("a", 0, 1), ("a", 2, 3)])),
                     ("b", LooseSource([("b", 0, 1), ("b", 1, 3)])))
    group.next()
    with pytest.raises(ValueError, match="input 'b' has an overlap at data index 2: its next "
                                         r"unit covers 1\.\.3"):
        group.next()
    with pytest.raises(ValueError, match="has no input"):
        InputGroup("empty").next()


def test_restricted_access_keeps_the_inputs_together():
    group = group_of(("image", images()), ("client", clients()))
    with pytest.raises(RuntimeError, match="input 'image'.*restricted access"):
        group["image"].next()
    free = group_of(("image", images()), ("client", clients()), restricted=False)
    free["client"].next()
    free["image"].next()
    assert (free.data_index, free.data_index_end) == (0, 0)
    free["client"].next()
    assert free["client"].data == "c1"
    with pytest.raises(IndexError, match="input 'client' has no more data.*ended at data "
                                         "index 5"):
        free["client"].next()


def test_a_lone_input_reads_its_source():
    alone = Input("x", "system/text/1", clients())
    assert alone.isDataUnitDone() and alone.hasMoreData()
    alone.next()
    alone.next()
    assert (alone.data, alone.data_index, alone.data_index_end) == ("c1", 3, 5)
    assert not alone.hasMoreData()


def test_input_list():
    main = group_of(("image", images()), ("client", clients()))
    models = group_of(("model", MemoryDataSource([("m", 0, 0)])), channel="models",
                      restricted=False)
    inputs = InputList()
    assert inputs.main_group is None
    inputs.add(main)
    inputs.add(models)
    assert inputs.main_group is main and inputs.nbGroups() == 2
    assert len(inputs) == 3
    assert [i.name for i in inputs] == ["image", "client", "model"]
    assert inputs["client"] is main["client"] and inputs[2] is models["model"]
    assert [i.name for i in inputs[0:2]] == ["image", "client"]
    assert inputs.groupOf("model") is models and inputs.groupOf("nope") is None
    assert inputs["model"].group is models
    assert inputs.group("models") is models and inputs.group(0) is main
    assert inputs.hasMoreData()
    assert [i.name for i in main] == ["image", "client"] and main[1].name == "client"
    with pytest.raises(KeyError, match="no input 'nope'.*'image', 'client', 'model'"):
        inputs["nope"]
    with pytest.raises(IndexError, match="input 3 is out of range"):
        inputs[3]
    with pytest.raises(KeyError, match="no input group 'other'"):
        inputs.group("other")
    with pytest.raises(ValueError, match="already has a group 'main'"):
        inputs.add(group_of(("x", images())))
    with pytest.raises(ValueError, match="already has an input 'image'"):
        inputs.add(group_of(("image", images()), channel="again"))
    with pytest.raises(ValueError, match="already has an input 'image'"):
        main.add(Input("image", "system/text/1", images()))


def test_outputs_end_where_the_group_step_ends():
    listener = SynchronizationListener()
    group = group_of(("image", images()), ("client", clients()), listener=listener)
    per_image, per_client = ListSink(), ListSink()
    outputs = OutputList()
    outputs.add(Output("features", per_image, listener))
    outputs.add(Output("summary", per_client, listener))
    features, summary = outputs["features"], outputs["summary"]
    assert not features.isDataMissing()
    while group.hasMoreData():
        group.next()
        features.write(f"f({group['image'].data})")
        assert not features.isDataMissing()
        if group["client"].isDataUnitDone():
            summary.write(f"s({group['client'].data})")  # covers the whole client
        else:
            assert summary.isDataMissing()
    assert per_image.units == [(f"f(img{i})", i, i) for i in range(6)]
    assert per_client.units == [("s(c0)", 0, 2), ("s(c1)", 3, 5)]
    assert (features.nb_data_blocks_written, features.last_written_data_index) == (6, 5)
    assert (summary.nb_data_blocks_written, summary.last_written_data_index) == (2, 5)
    for output in outputs:
        assert output.isConnected()
        output.close()
    assert per_image.closed and not features.isConnected()


def test_a_unit_written_past_the_step_leaves_nothing_missing():
    listener = SynchronizationListener()
    group = group_of(("image", images()), ("client", clients()), listener=listener)
    summary = Output("summary", ListSink(), listener)
    missing = []
    while group.hasMoreData():
        group.next()
        if group["client"].hasDataChanged():  # written at the client's first step
            summary.write(f"s({group['client'].data})", group["client"].data_index_end)
        missing.append(summary.isDataMissing())
    assert missing == [False] * 6


def test_output_end_indices_and_their_errors():
    sink = ListSink()
    output = Output("o", sink, force_start_index=10)
    assert output.last_written_data_index == 9
    with pytest.raises(ValueError, match="output 'o': give end_data_index; without a "
                                         "synchronization listener"):
        output.write("x")
    output.write("a", 12)
    output.write(None, 20)  # nothing
    with pytest.raises(ValueError, match="cannot write a unit ending at data index 11: data "
                                         "up to 12 is written, the next unit starts at 13"):
        output.write("b", 11)
    output.write("c", 13)
    assert sink.units == [("a", 10, 12), ("c", 13, 13)]
    waiting = Output("w", ListSink(), SynchronizationListener())
    with pytest.raises(ValueError, match="has not taken a step yet"):
        waiting.write("x")
    outputs = OutputList()
    outputs.add(output)
    outputs.add(waiting)
    assert len(outputs) == 2 and outputs[1] is waiting and outputs[0:1] == [output]
    with pytest.raises(ValueError, match="already has an output 'o'"):
        outputs.add(Output("o", ListSink()))
    with pytest.raises(KeyError, match="no output 'x'"):
        outputs["x"]


class FakeSocket:
    def __init__(self, answer=(b"ack",)):
        self.sent = []
        self.answer = list(answer)

    def send_multipart(self, parts):
        self.sent.append(list(parts))

    def recv_multipart(self):
        return self.answer


def test_a_remotely_synced_output_reports_each_unit():
    socket = FakeSocket()
    sink = ListSink()
    output = RemotelySyncedOutput("scores", sink, socket)
    output.write("a", 3)
    output.write("b", 4)
    assert socket.sent == [[b"wrt", b"scores", b"3"], [b"wrt", b"scores", b"4"]]
    assert sink.units == [("a", 0, 3), ("b", 4, 4)]
    with pytest.raises(RuntimeError, match="answered"):
        RemotelySyncedOutput("x", ListSink(), FakeSocket([b"err"])).write("a", 0)


def test_the_worked_example_through_the_cache(tmp_path):
    """Two cached inputs at different rates, an output cached per step, read back."""
    prefix = make_prefix(tmp_path / "prefix")
    text = fmt(prefix, "system/text/1")
    for name, units in (("images", [(f"img{i}", i, i) for i in range(6)]),
                        ("clients", [("c0", 0, 2), ("c1", 3, 5)])):
        sink = CachedDataSink()
        sink.setup(str(tmp_path / f"{name}.data"), text, 0, 5)
        for data, start, end in units:
            sink.write({"text": data}, start, end)
        sink.close()
    listener = SynchronizationListener()
    group = InputGroup("main", listener)
    for name in ("images", "clients"):
        source = CachedDataSource()
        source.setup(str(tmp_path / f"{name}.data"), prefix)
        group.add(Input(name, "system/text/1", source))
    sink = CachedDataSink()
    sink.setup(str(tmp_path / "pairs.data"), text, 0, 5)
    output = Output("pairs", sink, listener)
    while group.hasMoreData():
        group.next()
        output.write({"text": f"{group['clients'].data.text}/{group['images'].data.text}"})
    output.close()
    result = CachedDataSource()
    result.setup(str(tmp_path / "pairs.data"), prefix)
    assert [(d.text, s, e) for d, s, e in result] == [
        ("c0/img0", 0, 0), ("c0/img1", 1, 1), ("c0/img2", 2, 2),
        ("c1/img3", 3, 3), ("c1/img4", 4, 4), ("c1/img5", 5, 5)]
    result.close()
    for input_ in group:
        input_.data_source.close()


def test_the_demo_runs():
    demo = Path(__file__).resolve().parent.parent / "examples" / "dataflow_demo.py"
    done = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True,
                          timeout=60, cwd=demo.parent.parent, check=False)
    assert done.returncode == 0, done.stderr
    assert "step 1..1: img1 with c0 (kept)" in done.stdout
    assert "pairs 2..4 read back: [('c0/img2', 2, 2)" in done.stdout
