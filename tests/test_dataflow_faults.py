"""A damaged cache is an error naming the file and the place; a killed writer leaves
the previous version or nothing, never a torn one."""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from papyflow.dataflow import _atomic, _cache_reader
from papyflow.dataflow._cache_format import RUN_DTYPE
from papyflow.dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    getAllFilenames,
    load_data_index,
)
from papyflow.dataflow.errors import (
    CacheError,
    CorruptCacheError,
    MissingCacheFileError,
)
from tests.dataflow_helpers import (
    files_of,
    fmt,
    make_prefix,
    rewrite_index,
    unit_ranges,
    write_floats,
)


@pytest.fixture
def prefix(tmp_path):
    return make_prefix(tmp_path / "prefix")


@pytest.fixture
def cache(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


def read_values(filename, prefix, **options):
    source = CachedDataSource()
    if not source.setup(str(filename), prefix, **options):
        return None
    try:
        return [float(d.value) for d, _, _ in source]
    finally:
        source.close()


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_the_data_names_the_file_bytes_and_indices(prefix, cache):
    float64 = fmt(prefix, "system/float64/1")
    rows = np.zeros(400_000, float64.type.batch_dtype)
    rows["value"] = np.arange(400_000.0)
    sink = CachedDataSink()
    sink.setup(str(cache / "out.data"), float64, 0, 399_999)
    sink.write_batch(rows, np.arange(400_000))
    sink.close()
    data = cache / "out.0.399999.data"
    header = data.read_bytes().index(b"\n") + 1
    flip_bit(data, header + 8 * 300_000 + 3, bit=5)  # inside the record of data index 300000
    source = CachedDataSource()
    assert source.setup(str(cache / "out.data"), prefix)
    assert float(source[1000][0].value) == 1000.0  # the undamaged blocks read fine
    with pytest.raises(CorruptCacheError) as caught:
        source.getAtDataIndex(300_000)
    message = str(caught.value)
    assert str(data) in message and "checksum mismatch in bytes" in message
    first, last = map(int, re.search(r"data indices (\d+)\.\.(\d+)", message).groups())
    assert first <= 300_000 <= last and last - first < 140_000  # one block, not the file
    assert caught.value.path == str(data) and caught.value.offset <= header + 8 * 300_000
    with pytest.raises(CorruptCacheError, match="checksum mismatch"):
        source.read_batch(first - 1, first + 1)
    source.close()


def test_a_flipped_bit_in_the_header_or_the_index(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(5))
    flip_bit(cache / "out.0.4.data", 10)
    with pytest.raises(CorruptCacheError, match=r"out\.0\.4\.data: checksum mismatch in bytes "
                                                r"0 to 255 \(the header\)"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    write_floats(prefix, str(cache / "out.data"), unit_ranges(5))
    flip_bit(cache / "out.0.4.index", 3)
    with pytest.raises(CorruptCacheError, match=r"out\.0\.4\.index: checksum mismatch in "
                                                "bytes 0 to"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    with pytest.raises(CorruptCacheError):
        load_data_index(str(cache), "out.data")


def test_every_flipped_byte_of_every_file_is_an_error_naming_the_file(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), [(0, 2), (3, 3), (4, 4), (5, 5)])
    for name in files_of(cache):
        path = cache / name
        original = path.read_bytes()
        checked = name.removesuffix(".checksum")
        for offset in range(len(original)):
            for bit in (0, 5):  # bit 5 turns "a" into "A" in a checksum file
                flip_bit(path, offset, bit)
                try:
                    with pytest.raises(CorruptCacheError) as caught:
                        read_values(cache / "out.data", prefix)
                    assert name in str(caught.value) or checked in str(caught.value)
                finally:
                    path.write_bytes(original)


@pytest.mark.parametrize("moment", ["after listing", "between an index and its checksums"])
@pytest.mark.parametrize("new_ranges", [[(0, 0), (1, 3)], [(0, 0), (1, 1), (2, 3)]])
def test_a_reader_opening_while_a_writer_commits_sees_one_version(prefix, cache, monkeypatch,
                                                                    moment, new_ranges):
    # the new version has the same file names; with the same data size, its
    # records would read with the old ranges, otherwise as a damaged cache
    filename = str(cache / "out.data")
    write_floats(prefix, filename, [(0, 1), (2, 3)], [1.0, 2.0])
    new_values = [10.0 * (k + 1) for k in range(len(new_ranges))]
    commits = []

    def commit() -> None:
        if not commits:
            commits.append(1)
            write_floats(prefix, filename, new_ranges, new_values)

    if moment == "after listing":
        find_pieces = _cache_reader.find_pieces

        def racing_find_pieces(name):
            found = find_pieces(name)
            commit()
            return found

        monkeypatch.setattr(_cache_reader, "find_pieces", racing_find_pieces)
    else:
        checksums_of = _cache_reader._checksums_of

        def racing_checksums_of(path, checksum_path):
            if checksum_path.endswith(".index.checksum"):
                commit()
            return checksums_of(path, checksum_path)

        monkeypatch.setattr(_cache_reader, "_checksums_of", racing_checksums_of)
    source = CachedDataSource()
    assert source.setup(filename, prefix)
    assert [(float(d.value), start, end) for d, start, end in source] == \
        [(value, *r) for value, r in zip(new_values, new_ranges, strict=True)]
    source.close()


def test_readers_beside_a_writer_rewriting_see_whole_versions(prefix, cache):
    filename = str(cache / "out.data")
    versions = [([(0, 1), (2, 3)], [1.0, 2.0]), ([(0, 0), (1, 3)], [10.0, 20.0]),
                ([(0, 0), (1, 1), (2, 3)], [100.0, 200.0, 300.0])]
    wholes = [[(v, *r) for v, r in zip(values, ranges, strict=True)]
              for ranges, values in versions]
    write_floats(prefix, filename, *versions[0], sync=False)
    stop = threading.Event()

    def rewrite() -> None:
        k = 0
        while not stop.is_set():
            k += 1
            write_floats(prefix, filename, *versions[k % 3], sync=False)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            source = CachedDataSource()
            try:
                if source.setup(filename, prefix):  # False: caught between versions
                    read = [(float(d.value), start, end) for d, start, end in source]
                    assert read in wholes
            except MissingCacheFileError:
                pass  # replaced three times over while opening: said so, never torn
            finally:
                source.close()
    finally:
        stop.set()
        writer.join()


def test_a_truncated_file_names_where_it_ends(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(10))
    data = cache / "out.0.9.data"
    size = data.stat().st_size
    os.truncate(data, size - 5)
    with pytest.raises(CorruptCacheError, match=rf"out\.0\.9\.data: truncated: the file ends "
                                                rf"at byte {size - 5}, it was written with "
                                                rf"{size} bytes") as caught:
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    assert caught.value.offset == size - 5
    write_floats(prefix, str(cache / "out.data"), unit_ranges(10))
    index = cache / "out.0.9.index"
    os.truncate(index, index.stat().st_size - 1)
    with pytest.raises(CorruptCacheError, match=r"out\.0\.9\.index: truncated"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    write_floats(prefix, str(cache / "out.data"), unit_ranges(10))
    with open(data, "ab") as f:
        f.write(b"extra")
    with pytest.raises(CorruptCacheError, match=rf"5 bytes after byte {size}"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)


def test_a_truncated_checksum_file(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(3))
    checksum = cache / "out.0.2.data.checksum"
    checksum.write_bytes(checksum.read_bytes()[:-4])
    with pytest.raises(CorruptCacheError, match=r"out\.0\.2\.data\.checksum: line \d+"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)


@pytest.mark.parametrize("which", ["data.checksum", "index.checksum"])
def test_a_missing_checksum_file_names_it(prefix, cache, which):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(3))
    (cache / f"out.0.2.{which}").unlink()
    with pytest.raises(MissingCacheFileError, match=rf"out\.0\.2\.{which}: missing"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    with pytest.raises(FileNotFoundError):  # also the builtin
        CachedDataSource().setup(str(cache / "out.data"), prefix)


def test_a_missing_data_file_names_it(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(3))
    (cache / "out.0.2.data").unlink()
    with pytest.raises(MissingCacheFileError, match=r"out\.0\.2\.data: missing"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)


def _runs(*rows):
    return np.array(list(rows), RUN_DTYPE)


def test_an_index_with_a_gap_or_an_overlap_names_the_unit(prefix, cache):
    # units 0..9 of one index each, records of 8 bytes after a 256-byte header
    write_floats(prefix, str(cache / "out.data"), unit_ranges(10))
    index = str(cache / "out.0.9.index")
    rewrite_index(index, _runs((0, 0, 4, 256, 8), (5, 5, 6, 288, 8)))  # 4 is missing
    with pytest.raises(CorruptCacheError, match=r"out\.0\.9\.index: a gap at unit 4: unit 3 "
                                                r"ends at 3, unit 4 covers 5\.\.5"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    rewrite_index(index, _runs((0, 0, 5, 256, 8), (4, 4, 5, 296, 8)))  # 4 twice
    with pytest.raises(CorruptCacheError, match=r"an overlap at unit 5: unit 4 ends at 4, "
                                                r"unit 5 covers 4\.\.4"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)
    rewrite_index(index, _runs((0, 0, 5, 256, 8), (5, 5, 5, 300, 8)))  # records misplaced
    with pytest.raises(CorruptCacheError, match=r"run 1 \(unit 5\) places its records at "
                                                "byte 300"):
        CachedDataSource().setup(str(cache / "out.data"), prefix)


def test_overlapping_versions_of_different_writers_are_refused(prefix, cache):
    write_floats(prefix, str(cache / "a.data"), unit_ranges(10))
    write_floats(prefix, str(cache / "b.data"), unit_ranges(5, start=5))
    for name in os.listdir(cache):
        if name.startswith("b."):
            os.rename(cache / name, cache / ("a." + name[2:]))
    with pytest.raises(CorruptCacheError, match=r"a\.5\.9\.index: covers 5\.\.9, which "
                                                r"overlaps .*a\.0\.9\.index"):
        CachedDataSource().setup(str(cache / "a.data"), prefix)


def test_holes_between_pieces_are_named(prefix, cache):
    write_floats(prefix, str(cache / "a.data"), unit_ranges(5))
    write_floats(prefix, str(cache / "a.data"), unit_ranges(5, start=10))
    assert read_values(cache / "a.data", prefix, start_index=10, end_index=14) == \
        [10.0, 11.0, 12.0, 13.0, 14.0]
    with pytest.raises(IndexError, match=r"data indices 3\.\.12 are not all in the cache, "
                                         r"which holds 0\.\.14; 5\.\.9 are missing"):
        CachedDataSource().setup(str(cache / "a.data"), prefix, 3, 12)
    assert len(getAllFilenames(str(cache / "a.data"))[0]) == 2


def test_stale_temporary_files_are_ignored_and_cleaned(prefix, cache, tmp_path):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(3))
    dead = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    dead.start()
    dead.join()
    host = _atomic.new_session().split(".")[1]
    stale = cache / f"out.tmp.{host}.{dead.pid}.abc123.0.data"
    alive = cache / f"out.tmp.{host}.{os.getpid()}.abc124.0.data"
    remote_old = cache / "out.tmp.otherhost.1.abc125.0.index"
    remote_new = cache / "out.tmp.otherhost.1.abc126.0.index"
    for path in (stale, alive, remote_old, remote_new):
        path.write_bytes(b"half a file")
    old = time.time() - _atomic.STALE_AFTER - 10
    os.utime(remote_old, (old, old))
    assert read_values(cache / "out.data", prefix) == [0.0, 1.0, 2.0]
    left = set(files_of(cache))
    assert stale.name not in left and remote_old.name not in left
    assert alive.name in left and remote_new.name in left


def test_a_set_of_pieces_counts_only_when_all_are_committed(prefix, cache):
    write_floats(prefix, str(cache / "out.data"), unit_ranges(30), max_file_size=256 + 80)
    indexes = sorted(n for n in files_of(cache) if n.endswith(".index"))
    assert len(indexes) == 3
    (cache / indexes[1]).unlink()  # as a writer killed while renaming the index files
    assert read_values(cache / "out.data", prefix) is None
    assert load_data_index(str(cache), "out.data") == []


def test_errors_are_of_the_cache_family():
    assert issubclass(CorruptCacheError, CacheError) and issubclass(CorruptCacheError,
                                                                     ValueError)
    assert issubclass(MissingCacheFileError, CacheError)
    assert issubclass(MissingCacheFileError, FileNotFoundError)


# -- a writer killed at random moments ---------------------------------------------------------

UNITS = 60


def _write_versions(filename: str, prefix: str, first_version: int, sync: bool) -> None:
    """Write versions first_version, first_version + 1, ... of the output, forever."""
    dataformat = fmt(prefix, "system/float64/1")
    version = first_version
    while True:
        sink = CachedDataSink()
        sink.setup(filename, dataformat, 0, UNITS - 1, max_file_size=256 + 8 * 7, sync=sync)
        for k in range(UNITS):
            sink.write({"value": version * 1000.0 + k}, k, k)
        sink.close()
        version += 1


def test_a_writer_killed_at_random_points_leaves_a_whole_version_or_nothing(prefix, cache):
    """Kill writers at random moments, many times: every reader sees a complete earlier
    version (all units of one version) or nothing, and no temporary file survives."""
    filename = str(cache / "out.data")
    context = multiprocessing.get_context("fork")
    rng = random.Random(5)
    seen: list[int | None] = []
    deadline = time.monotonic() + 6.0
    rounds = 0
    while rounds < 40 and time.monotonic() < deadline:
        writer = context.Process(target=_write_versions,
                                 args=(filename, prefix, 1 + 1000 * rounds, rounds % 2 == 0),
                                 daemon=True)
        writer.start()
        try:
            time.sleep(rng.uniform(0.0, 0.06))
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.join()
        values = read_values(filename, prefix)
        if values is None:
            seen.append(None)
        else:
            version = int(values[0] // 1000)
            assert values == [version * 1000.0 + k for k in range(UNITS)], values
            assert version <= 1000 * rounds + 999
            seen.append(version)
        assert not [n for n in files_of(cache) if ".tmp." in n]  # stale files cleaned
        rounds += 1
    assert rounds >= 10
    assert any(v is not None for v in seen)  # some versions were complete


@pytest.mark.parametrize("algorithm", ["crc32", "sha256"])
def test_checksum_files_of_older_algorithms_are_read_and_verified(prefix, cache, algorithm):
    import hashlib
    import zlib

    def digest(block: bytes) -> str:
        if algorithm == "crc32":
            return zlib.crc32(block).to_bytes(4, "big").hex()
        return hashlib.sha256(block).hexdigest()

    write_floats(prefix, str(cache / "out.data"), unit_ranges(3), [1.0, 2.0, 3.0])
    for name in ("out.0.2.data", "out.0.2.index"):
        path, checksum = cache / name, cache / f"{name}.checksum"
        head, *lines = checksum.read_text().splitlines()
        assert head.split()[2] == "xxh3_64"
        content, start, rewritten = path.read_bytes(), 0, []
        for line in lines:
            end = int(line.split()[0])
            rewritten.append(f"{end} {digest(content[start:end])}")
            start = end
        size = head.split()[3]
        checksum.write_text("\n".join([f"papyflow-checksum 1 {algorithm} {size}", *rewritten])
                            + "\n")
    assert read_values(cache / "out.data", prefix) == [1.0, 2.0, 3.0]
    data = cache / "out.0.2.data"
    flip_bit(data, len(data.read_bytes()) - 2)
    with pytest.raises(CorruptCacheError, match="checksum mismatch"):
        read_values(cache / "out.data", prefix)
