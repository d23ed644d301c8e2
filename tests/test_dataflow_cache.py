"""The cache of data units: CachedDataSink writes it, CachedDataSource reads it back."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from papyflow.dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    FileInfos,
    StdoutDataSink,
    getAllFilenames,
)
from tests.dataflow_helpers import files_of, fmt, make_prefix, unit_ranges, write_floats


@pytest.fixture
def prefix(tmp_path):
    return make_prefix(tmp_path / "prefix")


@pytest.fixture
def cache(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


def read_all(filename, prefix, **options):
    source = CachedDataSource()
    assert source.setup(str(filename), prefix, **options)
    try:
        return [(d, s, e) for d, s, e in source]
    finally:
        source.close()


def test_units_round_trip_with_their_ranges(prefix, cache):
    ranges = [(0, 2), (3, 3), (4, 9), (10, 10)]
    write_floats(prefix, str(cache / "out.data"), ranges, [1.5, 2.5, 3.5, 4.5])
    units = read_all(cache / "out.data", prefix)
    assert [(s, e) for _, s, e in units] == ranges
    assert [float(d.value) for d, _, _ in units] == [1.5, 2.5, 3.5, 4.5]
    assert files_of(cache) == ["out.0.10.data", "out.0.10.data.checksum", "out.0.10.index",
                               "out.0.10.index.checksum"]


def test_the_source_is_a_sequence_of_units(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(10, length=2))
    source = CachedDataSource()
    assert source.setup(str(cache / "out.data"), prefix)
    assert len(source) == 10
    assert source.first_data_index() == 0 and source.last_data_index() == 19
    assert source.data_indices()[:3] == [(0, 1), (2, 3), (4, 5)]
    data, start, end = source[3]
    assert (float(data.value), start, end) == (6.0, 6, 7)
    assert source[-1][1:] == (18, 19)
    assert source.getAtDataIndex(13)[1:] == (12, 13)
    assert source.infos[3] == FileInfos(0, 6, 7, source.infos[3].offset, 8)
    assert len(source.infos) == 10
    nb_bytes, seconds = source.statistics()
    assert nb_bytes > 0 and seconds >= 0
    source.reset()
    assert source[0][1:] == (0, 1)
    source.close()
    assert len(source) == 0


def test_reading_outside_the_units_names_the_range(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(5))
    source = CachedDataSource()
    source.setup(str(cache / "out.data"), prefix)
    with pytest.raises(IndexError, match=r"unit 5 is out of range.*5 units.*0\.\.4"):
        source[5]
    with pytest.raises(IndexError, match=r"data index 7 is outside the available range 0\.\.4"):
        source.getAtDataIndex(7)
    with pytest.raises(IndexError, match=r"data indices 3\.\.8 are not all in the cache, "
                                         r"which holds 0\.\.4"):
        CachedDataSource().setup(str(cache / "out.data"), prefix, 3, 8)
    with pytest.raises(IndexError, match=r"20\.\.30"):
        CachedDataSource().setup(str(cache / "out.data"), prefix, 20, 30)
    source.close()


def test_a_missing_output_is_no_error(prefix, cache):
    assert CachedDataSource().setup(str(cache / "nothing.data"), prefix) is False
    assert getAllFilenames(str(cache / "nothing.data")) == ([], [], [], [])


@pytest.mark.parametrize("unpack", [True, False])
def test_sub_ranges_across_split_files(prefix, cache, unpack):
    # 40 units of 3 indices in pieces of at most ~5 records: 8 data files
    filename = str(cache / "out.data")
    ranges = unit_ranges(40, length=3)
    sink = write_floats(prefix, filename, ranges, [float(k) for k in range(40)],
                        max_file_size=256 + 5 * 8)
    assert len(sink.files) == 8
    data_files = getAllFilenames(filename)[0]
    assert len(data_files) == 8 and data_files[0].endswith("out.0.14.data")
    T = fmt(prefix, "system/float64/1").type
    for lo, hi in [(0, 119), (16, 17), (14, 15), (29, 61), (45, 46), (100, 119), (None, 50)]:
        units = read_all(filename, prefix, start_index=lo, end_index=hi, unpack=unpack)
        first = 0 if lo is None else lo // 3
        last = hi // 3
        assert [s for _, s, _ in units] == [3 * k for k in range(first, last + 1)]
        values = [float((d if unpack else T.unpack(d)).value) for d, _, _ in units]
        assert values == [float(k) for k in range(first, last + 1)]
        if not unpack:
            assert all(isinstance(d, bytes) for d, _, _ in units)
    chosen = getAllFilenames(filename, 29, 61)
    assert [os.path.basename(f) for f in chosen[0]] == ["out.15.29.data", "out.30.44.data",
                                                        "out.45.59.data", "out.60.74.data"]
    assert all(f.endswith(".index") for f in chosen[1])
    assert all(f.endswith(".data.checksum") for f in chosen[2])
    assert all(f.endswith(".index.checksum") for f in chosen[3])


def test_records_of_varying_size_and_large_arrays(prefix, cache):
    note = fmt(prefix, "test/note/1")
    sink = CachedDataSink()
    sink.setup(str(cache / "notes.data"), note, 0, 5, max_file_size=3 << 20)
    big = np.arange(600_000, dtype=np.float64)  # 4.8 MB: blocks of its own
    sink.write({"text": "é" * 3, "scores": [1.0, 2.0], "n": 1}, 0, 0)
    sink.write({"text": "", "scores": big, "n": 2}, 1, 3)
    sink.write(note.type(text="last", scores=np.zeros(0), n=3), 4, 5)
    sink.close()
    assert len(sink.files) == 2  # the big record went past 3 MB
    units = read_all(cache / "notes.data", prefix)
    assert [(s, e) for _, s, e in units] == [(0, 0), (1, 3), (4, 5)]
    assert units[0][0].text == "ééé" and list(units[0][0].scores) == [1.0, 2.0]
    assert np.array_equal(units[1][0].scores, big)
    assert units[1][0].scores.flags.writeable  # arrays own a buffer of their own
    assert units[2][0].text == "last" and units[2][0].n == 3
    mid = read_all(cache / "notes.data", prefix, start_index=2, end_index=2)
    assert [(s, e) for _, s, e in mid] == [(1, 3)]


def test_the_batch_path_writes_and_reads_many_units_at_once(prefix, cache):
    sample = fmt(prefix, "test/sample/1")
    n = 50_000
    rows = np.zeros(n, sample.type.batch_dtype)
    rows["time"] = np.arange(n) * 0.5
    rows["value"] = np.arange(n) % 7
    rows["flag"] = np.arange(n) % 2 == 0
    sink = CachedDataSink()
    sink.setup(str(cache / "s.data"), sample, 0, 2 * n - 1, max_file_size=300_000)
    sink.write_batch(rows[:10], np.arange(0, 20, 2), np.arange(1, 20, 2))
    sink.write(sample.type(time=5.0, value=3.0, channel=0, flag=False), 20, 21)
    sink.write_batch(rows[11:], np.arange(22, 2 * n, 2), np.arange(23, 2 * n, 2))
    sink.close()
    assert len(sink.files) == 3
    source = CachedDataSource()
    source.setup(str(cache / "s.data"), str(prefix))
    batch = source.read_batch()
    data, starts, ends = batch
    assert len(batch) == n
    assert np.array_equal(starts, np.arange(0, 2 * n, 2)) and np.array_equal(ends, starts + 1)
    assert np.array_equal(data[11:], rows[11:]) and data["time"][10] == 5.0
    assert data.flags.writeable
    part = source.read_batch(20_000, 20_010)
    assert np.array_equal(part.data, rows[20_000:20_010]) and part.start[0] == 40_000
    # the per-unit path reads the same records
    record, start, end = source[12_345]
    assert record.pack() == sample.type.from_row(rows[12_345]).pack()
    assert (start, end) == (24_690, 24_691)
    with pytest.raises(IndexError, match="out of range"):
        source.read_batch(0, n + 1)
    source.close()
    # a sub-range read as a batch starts at the right record of the right file
    source = CachedDataSource()
    source.setup(str(cache / "s.data"), prefix, 40_001, 40_004)
    assert np.array_equal(source.read_batch().data, rows[20_000:20_003])
    source.close()


def test_batches_of_units_of_one_index(prefix, cache):
    sample = fmt(prefix, "test/sample/1")
    rows = np.zeros(1000, sample.type.batch_dtype)
    rows["channel"] = np.arange(1000)
    sink = CachedDataSink()
    sink.setup(str(cache / "s.data"), sample, 0, 999)
    sink.write_batch(rows, np.arange(1000))
    sink.close()
    source = CachedDataSource()
    source.setup(str(cache / "s.data"), prefix)
    assert source.data_indices()[:2] == [(0, 0), (1, 1)] and len(source) == 1000
    assert np.array_equal(source.read_batch().data["channel"], np.arange(1000))
    source.close()


def test_the_batch_path_needs_a_fixed_size_format(prefix, cache):
    note = fmt(prefix, "test/note/1")
    sink = CachedDataSink()
    sink.setup(str(cache / "n.data"), note, 0, 1)
    sink.write_batch([{"text": "a", "scores": [1.0], "n": 1},
                      note.type(text="b", scores=[], n=2)], [0, 1])  # one by one
    sink.close()
    source = CachedDataSource()
    source.setup(str(cache / "n.data"), prefix)
    assert [d.text for d, _, _ in source] == ["a", "b"]
    with pytest.raises(TypeError, match="fixed-size"):
        source.read_batch()
    source.close()


def test_json_encoding_is_readable_and_reads_back(prefix, cache):
    cplx = fmt(prefix, "test/cplx/1")
    sink = CachedDataSink()
    sink.setup(str(cache / "c.data"), cplx, 5, 7, encoding="json")
    sink.write({"z": 1 + 2j, "zs": [3j, 4], "point": {"x": -3}}, 5, 6)
    sink.write(cplx.type(z=0, zs=[0, 0], point={"x": 1}), 7, 7)
    sink.close()
    lines = (cache / "c.5.7.data").read_text().splitlines()
    assert json.loads(lines[0])["encoding"] == "json"
    assert json.loads(lines[1]) == {"start": 5, "end": 6, "data": {
        "z": [1.0, 2.0], "zs": [[0.0, 3.0], [4.0, 0.0]], "point": {"x": -3}}}
    units = read_all(cache / "c.data", prefix)
    assert units[0][0].z == 1 + 2j and list(units[0][0].zs) == [3j, 4]
    assert units[0][0].point.x == -3 and units[1][1:] == (7, 7)
    packed = read_all(cache / "c.data", prefix, unpack=False)
    assert packed[0][0] == units[0][0].pack()


def test_write_refuses_units_out_of_order_overlapping_or_out_of_range(prefix, cache):
    sink = CachedDataSink()
    sink.setup(str(cache / "o.data"), fmt(prefix, "system/float64/1"), 10, 19)
    with pytest.raises(ValueError, match=r"data indices 11\.\.12: it leaves a gap"):
        sink.write({"value": 1.0}, 11, 12)
    with pytest.raises(ValueError, match=r"data indices 5\.\.12: out of order"):
        sink.write({"value": 1.0}, 5, 12)
    sink.write({"value": 1.0}, 10, 12)
    with pytest.raises(ValueError, match=r"data indices 12\.\.14: out of order or overlapping"):
        sink.write({"value": 1.0}, 12, 14)
    with pytest.raises(ValueError, match=r"data indices 13\.\.12: the range ends before"):
        sink.write({"value": 1.0}, 13, 12)
    with pytest.raises(ValueError, match=r"13\.\.25: beyond the declared range 10\.\.19"):
        sink.write({"value": 1.0}, 13, 25)
    with pytest.raises(ValueError, match=r"unit 1 of the batch.*16\.\.16: it leaves a gap"):
        sink.write_batch([{"value": 1.0}] * 2, [13, 16])
    with pytest.raises(ValueError, match=r"unit 7 of the batch.*20\.\.20: beyond"):
        sink.write_batch([{"value": 1.0}] * 8, np.arange(13, 21))
    sink.write_batch([{"value": 2.0}] * 7, np.arange(13, 20))
    sink.close()
    assert [s for _, s, _ in read_all(cache / "o.data", prefix)] == [10, *range(13, 20)]
    with pytest.raises(ValueError, match="closed"):
        sink.write({"value": 1.0}, 20, 20)
    with pytest.raises(ValueError, match="start_index <= end_index"):
        CachedDataSink().setup(str(cache / "x.data"), fmt(prefix, "system/float64/1"), 5, 4)
    with pytest.raises(ValueError, match="unknown encoding"):
        CachedDataSink().setup(str(cache / "x.data"), fmt(prefix, "system/float64/1"), 0, 4,
                               encoding="xml")


@pytest.mark.parametrize(("start", "end", "name"), [
    (0, 1.9, "end_data_index"), (0.7, 1, "start_data_index"),
    (False, True, "start_data_index"), ("0", "1", "start_data_index")])
def test_write_refuses_data_indices_that_are_not_ints(prefix, cache, start, end, name):
    # int() would turn 1.9 into 1 and commit a wrong range without a word
    sink = CachedDataSink()
    sink.setup(str(cache / "i.data"), fmt(prefix, "system/float64/1"), 0, 9)
    with pytest.raises(TypeError, match=rf"{name} must be an int"):
        sink.write({"value": 1.0}, start, end)
    sink.write({"value": 1.0}, np.int64(0), np.int32(3))  # numpy integers are ints
    sink.close()
    assert [(s, e) for _, s, e in read_all(cache / "i.data", prefix)] == [(0, 3)]
    with pytest.raises(TypeError, match=r"i\.data: start_index must be an int or None, "
                                        r"not str"):
        CachedDataSource().setup(str(cache / "i.data"), prefix, "a", 3)


def test_wrong_data_is_refused_before_anything_is_written(prefix, cache):
    sink = CachedDataSink()
    sink.setup(str(cache / "w.data"), fmt(prefix, "test/sample/1"), 0, 9)
    with pytest.raises(TypeError, match="expected a test/sample/1 record"):
        sink.write(3.5, 0, 0)
    with pytest.raises(ValueError, match="channel"):
        sink.write({"time": 1.0, "value": 1.0, "flag": True}, 0, 0)  # a field is missing
    sink.discard()
    assert files_of(cache) == []


def test_a_rewrite_replaces_the_previous_version(prefix, cache):
    filename = str(cache / "out.data")
    write_floats(prefix, filename, unit_ranges(20), max_file_size=300)
    assert len(getAllFilenames(filename)[0]) > 1
    write_floats(prefix, filename, unit_ranges(10, length=2), [7.0] * 10)
    units = read_all(filename, prefix)
    assert [(s, e) for _, s, e in units] == unit_ranges(10, length=2)
    assert {float(d.value) for d, _, _ in units} == {7.0}
    assert len(files_of(cache)) == 4  # the old pieces are gone


def test_a_sink_closed_without_units_or_by_an_exception_leaves_the_cache_as_it_was(prefix,
                                                                                  cache):
    filename = str(cache / "out.data")
    write_floats(prefix, filename, unit_ranges(3))
    before = files_of(cache)
    sink = CachedDataSink()
    sink.setup(filename, fmt(prefix, "system/float64/1"), 0, 2)
    sink.close()
    with pytest.raises(RuntimeError), CachedDataSink() as other:
        other.setup(filename, fmt(prefix, "system/float64/1"), 0, 2)
        other.write({"value": 9.0}, 0, 0)
        raise RuntimeError("the algorithm failed")
    assert files_of(cache) == before
    assert [float(d.value) for d, _, _ in read_all(filename, prefix)] == [0.0, 1.0, 2.0]


def test_a_sink_that_is_dropped_leaves_no_temporary_file(prefix, cache):
    sink = CachedDataSink()
    sink.setup(str(cache / "out.data"), fmt(prefix, "system/float64/1"), 0, 2)
    sink.write({"value": 9.0}, 0, 0)
    assert any(".tmp." in name for name in files_of(cache))
    del sink
    assert files_of(cache) == []


def test_sink_statistics_and_state(prefix, cache):
    sink = CachedDataSink()
    assert not sink.isConnected()
    sink.setup(str(cache / "out.data"), fmt(prefix, "system/float64/1"), 0, 2, sync=False)
    assert sink.isConnected()
    for k in range(3):
        sink.write({"value": float(k)}, k, k)
    sink.close()
    assert not sink.isConnected()
    nb_bytes, seconds = sink.statistics()
    on_disk = sum(os.path.getsize(cache / name) for name in files_of(cache))
    assert nb_bytes == on_disk and seconds > 0


def test_a_cache_written_with_another_declaration_is_refused(prefix, cache, tmp_path):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(2))
    header = (cache / "out.0.1.data").read_bytes().split(b"\n")[0]
    assert json.loads(header)["dataformat"] == "system/float64/1"
    other = tmp_path / "other"
    (other / "dataformats" / "system" / "float64").mkdir(parents=True)
    (other / "dataformats" / "system" / "float64" / "1.json").write_text('{"value": "int64"}')
    with pytest.raises(ValueError, match="another declaration of dataformat"):
        CachedDataSource().setup(str(cache / "out.data"), str(other))


def test_stdout_sink_prints_units():
    stream = io.StringIO()
    sink = StdoutDataSink()
    assert not sink.isConnected()
    sink.setup(fmt(".", "system/float64/1"), stream=stream)
    assert sink.isConnected()
    sink.write(fmt(".", "system/float64/1").type(value=2.5), 3, 4)
    sink.display_data = False
    sink.write(None, 5, 5)
    assert stream.getvalue().splitlines() == ["(3-4): system/float64/1(value=2.5)", "(5-5)"]


def test_stdout_sink_prints_a_batch_as_records():
    float64 = fmt(".", "system/float64/1")
    rows = np.zeros(2, float64.type.batch_dtype)
    rows["value"] = [1.5, 2.5]
    stream = io.StringIO()
    sink = StdoutDataSink()
    sink.setup(float64, stream=stream)
    sink.write_batch(rows, [0, 1])
    assert stream.getvalue().splitlines() == ["(0-0): system/float64/1(value=1.5)",
                                              "(1-1): system/float64/1(value=2.5)"]
