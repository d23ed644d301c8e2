"""Data loaders and views, the other data sources, and the I/O statistics."""

from __future__ import annotations

import json

import pytest

from papyflow.dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    DatabaseOutputDataSource,
    MemoryDataSource,
    RemoteDataSource,
)
from papyflow.dataflow.data_loaders import DataLoader, DataLoaderList, DataView
from papyflow.dataflow.inputs import Input, InputGroup, InputList
from papyflow.dataflow.outputs import Output, OutputList, SynchronizationListener
from papyflow.dataflow.stats import io_statistics, update
from tests.dataflow_helpers import fmt, make_prefix, unit_ranges, write_floats


def loader():
    data_loader = DataLoader("main")
    data_loader.add("image", MemoryDataSource([(f"img{i}", i, i) for i in range(6)]))
    data_loader.add("client", MemoryDataSource([("c0", 0, 2), ("c1", 3, 5)]))
    return data_loader


def test_a_loader_reads_any_step_of_its_group():
    data_loader = loader()
    assert data_loader.input_names() == ["image", "client"]
    assert data_loader.count() == len(data_loader) == 6
    assert data_loader.count("client") == 2
    assert (data_loader.data_index_start, data_loader.data_index_end) == (0, 5)
    assert data_loader[4] == ({"image": "img4", "client": "c1"}, 4, 4)
    assert data_loader[0] == ({"image": "img0", "client": "c0"}, 0, 0)
    assert data_loader[-1][1:] == (5, 5)
    assert [d["client"] for d, _, _ in data_loader] == ["c0"] * 3 + ["c1"] * 3
    with pytest.raises(IndexError, match="step 6 is out of range"):
        data_loader[6]
    with pytest.raises(KeyError, match="no input 'nope'"):
        data_loader.count("nope")
    with pytest.raises(ValueError, match="already has an input 'image'"):
        data_loader.add("image", MemoryDataSource())
    data_loader.reset()
    assert data_loader[1][0]["image"] == "img1"


def test_a_view_holds_the_steps_inside_one_unit():
    data_loader = loader()
    view = data_loader.view("client", 1)
    assert isinstance(view, DataView)
    assert (view.data_index_start, view.data_index_end) == (3, 5)
    assert view.count() == len(view) == 3
    assert view.count("image") == 3 and view.count("client") == 1
    assert view[0] == ({"image": "img3", "client": "c1"}, 3, 3)
    assert [s for _, s, _ in view] == [3, 4, 5]
    with pytest.raises(IndexError, match=r"data view 3\.\.5: step 3 is out of range"):
        view[3]
    assert data_loader.view("client", 2) is None
    assert data_loader.view("image", 2).count() == 1


def test_a_loader_over_cached_sources(tmp_path):
    prefix = make_prefix(tmp_path / "prefix")
    write_floats(prefix, str(tmp_path / "fine.data"), unit_ranges(6))
    write_floats(prefix, str(tmp_path / "coarse.data"), unit_ranges(2, length=3))
    data_loader = DataLoader("main")
    for name in ("fine", "coarse"):
        source = CachedDataSource()
        source.setup(str(tmp_path / f"{name}.data"), prefix)
        data_loader.add(name, source)
    data, start, end = data_loader[4]
    assert (float(data["fine"].value), float(data["coarse"].value), start, end) == \
        (4.0, 3.0, 4, 4)


def test_the_list_of_loaders():
    loaders = DataLoaderList()
    assert loaders.main_loader is None
    main, other = loader(), DataLoader("models")
    other.add("model", MemoryDataSource([("m", 0, 5)]))
    loaders.add(main)
    loaders.add(other)
    assert loaders.main_loader is main and loaders.secondaries() == [other]
    assert loaders["models"] is other and loaders[0] is main and len(loaders) == 2
    assert list(loaders) == [main, other]
    assert loaders.loaderOf("model") is other and loaders.loaderOf("client") is main
    assert loaders.loaderOf("nope") is None
    with pytest.raises(KeyError, match="no data loader 'x'"):
        loaders["x"]
    with pytest.raises(ValueError, match="already has a data loader 'main'"):
        loaders.add(DataLoader("main"))


# -- other sources ------------------------------------------------------------------------------


def test_memory_sources_refuse_gaps():
    with pytest.raises(ValueError, match="MemoryDataSource: a gap at unit 1"):
        MemoryDataSource([("a", 0, 1), ("b", 3, 3)])
    empty = MemoryDataSource()
    assert len(empty) == 0 and empty.data_indices() == []
    with pytest.raises(IndexError, match="no unit"):
        empty.first_data_index()
    with pytest.raises(IndexError, match="outside the available range nothing"):
        empty.getAtDataIndex(0)


class View:
    def __init__(self):
        self.asked = []

    def get(self, output, index):
        self.asked.append((output, index))
        return {"value": index * 10}

    def data_indices(self, output):
        return [(0, 1), (2, 2), (3, 5)]


def test_a_database_output_source(tmp_path):
    view = View()
    source = DatabaseOutputDataSource()
    assert source.setup(view, "out", "system/float64/1", str(tmp_path))
    assert source.data_indices() == [(0, 1), (2, 2), (3, 5)]
    data, start, end = source[2]
    assert (float(data.value), start, end) == (30.0, 3, 5)
    assert view.asked == [("out", 3)]
    packed = DatabaseOutputDataSource()
    packed.setup(view, "out", "system/float64/1", str(tmp_path), 2, 4, pack=True,
                 data_indices=[(0, 1), (2, 2), (3, 5), (6, 6)])
    assert [(s, e) for _, s, e in packed] == [(2, 2), (3, 5)]
    assert packed[0][0] == fmt(str(tmp_path), "system/float64/1").type(value=20).pack()
    assert packed.statistics().nb_bytes_read == 3 * 8  # three units read, packed
    with pytest.raises(IndexError, match=r"data indices 2\.\.9 are outside its range 0\.\.5"):
        DatabaseOutputDataSource().setup(view, "out", "system/float64/1", str(tmp_path), 2, 9)
    with pytest.raises(TypeError, match="pass data_indices"):
        DatabaseOutputDataSource().setup(object(), "out", "system/float64/1", str(tmp_path))
    with pytest.raises(ValueError, match="database output 'out': a gap at unit 1"):
        DatabaseOutputDataSource().setup(view, "out", "system/float64/1", str(tmp_path),
                                         data_indices=[(0, 1), (3, 3)])
    with pytest.raises(ValueError, match="does not load"):
        DatabaseOutputDataSource().setup(view, "out", "system/nope/1", str(tmp_path))


class Server:
    """Answers a RemoteDataSource's requests from a local source, in process."""

    def __init__(self, sources, refuse=False):
        self.sources = sources
        self.refuse = refuse
        self.reply = None

    def send_multipart(self, parts):
        kind, name, *rest = parts
        source = self.sources[name.decode()]
        if self.refuse:
            self.reply = [b"err", b"no such input"]
        elif kind == b"ifo":
            self.reply = [b"ok", json.dumps(source.data_indices()).encode()]
        else:
            data, start, end = source[int(rest[0])]
            self.reply = [b"ok", str(start).encode(), str(end).encode(), data.pack()]

    def recv_multipart(self):
        return self.reply


def test_a_remote_source(tmp_path):
    prefix = make_prefix(tmp_path / "prefix")
    T = fmt(prefix, "system/float64/1").type
    local = MemoryDataSource([(T(value=k), 2 * k, 2 * k + 1) for k in range(4)])
    remote = RemoteDataSource()
    assert remote.setup(Server({"x": local}), "x", "system/float64/1", prefix)
    assert remote.data_indices() == local.data_indices()
    assert [float(d.value) for d, _, _ in remote] == [0.0, 1.0, 2.0, 3.0]
    assert remote.getAtDataIndex(5)[1:] == (4, 5)
    assert remote.statistics().nb_bytes_read == 5 * 8 and remote.network_wait_time > 0
    raw = RemoteDataSource()
    raw.setup(Server({"x": local}), "x", "system/float64/1", prefix, unpack=False)
    assert raw[1][0] == T(value=1).pack()
    with pytest.raises(RuntimeError, match="remote input 'x': the server refused ifo: no such"):
        RemoteDataSource().setup(Server({"x": local}, refuse=True), "x",
                                 "system/float64/1", prefix)


# -- statistics ----------------------------------------------------------------------------------


def test_io_statistics_count_bytes_and_units(tmp_path):
    prefix = make_prefix(tmp_path / "prefix")
    write_floats(prefix, str(tmp_path / "in.data"), unit_ranges(4))
    shared = CachedDataSource()
    shared.setup(str(tmp_path / "in.data"), prefix)
    listener = SynchronizationListener()
    group = InputGroup("main", listener)
    group.add(Input("a", "system/float64/1", shared))
    group.add(Input("b", "system/float64/1", MemoryDataSource([(1, 0, 3)])))
    inputs = InputList()
    inputs.add(group)
    sink = CachedDataSink()
    sink.setup(str(tmp_path / "out.data"), fmt(prefix, "system/float64/1"), 0, 3)
    outputs = OutputList()
    outputs.add(Output("o", sink, listener))
    while group.hasMoreData():
        group.next()
        outputs["o"].write({"value": 1.0})
    outputs["o"].close()
    configuration = {"inputs": {"a": {"path": "ab/cd/in"}}, "outputs": {"o": {"path": "ef/out"}},
                     "result": {"path": "gh/result"}}
    stats = io_statistics(configuration, inputs, outputs)
    assert stats["blocks"] == {"read": 5, "write": 4}
    assert stats["volume"]["read"] == shared.statistics().nb_bytes_read > 0
    assert stats["volume"]["write"] == sink.statistics().nb_bytes_written > 0
    assert stats["time"]["read"] > 0 and stats["time"]["write"] > 0
    assert stats["network"] == {"wait_time": 0.0}
    assert stats["files"] == [{"hash": "ab/cd/in", "type": "input", "name": "a"},
                              {"hash": "ef/out", "type": "output", "name": "o"},
                              {"hash": "gh/result", "type": "output", "name": "result"}]
    assert io_statistics({})["volume"] == {"read": 0, "write": 0}
    shared.close()


def test_update_adds_only_what_is_there():
    total = {"volume": {"read": 10, "write": 1}, "time": {"read": 0.5}, "files": [1]}
    update(total, {"volume": {"read": 5, "new": 3}, "time": {"read": 0.25},
                   "files": [2], "other": 9})
    assert total == {"volume": {"read": 15, "write": 1}, "time": {"read": 0.75},
                     "files": [1, 2]}
