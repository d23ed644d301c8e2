"""Shared pieces of the dataflow tests: a prefix of dataformats, writing caches."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from papyflow.dataflow import _cache_format, _checksums
from papyflow.dataflow.data import CachedDataSink
from papyflow.formats.dataformat import DataFormat

FORMATS = {
    "test/sample/1": {"time": "float64", "value": "float32", "channel": "uint16",
                      "flag": "bool"},
    "test/note/1": {"text": "string", "scores": [0, "float64"], "n": "int32"},
    "test/cplx/1": {"z": "complex128", "zs": [2, "complex64"], "point": {"x": "int8"}},
}


def make_prefix(root: Path) -> str:
    """A prefix folder holding the test dataformats."""
    for name, declaration in FORMATS.items():
        path = root / "dataformats" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(declaration))
    return str(root)


def fmt(prefix: str, name: str) -> DataFormat:
    dataformat = DataFormat(prefix, name)
    assert dataformat.valid, dataformat.errors
    return dataformat


def write_floats(prefix: str, filename: str, ranges: list[tuple[int, int]],
                 values: list[float] | None = None, **options: Any) -> CachedDataSink:
    """Write units of ``system/float64/1`` over ``ranges`` and commit them."""
    sink = CachedDataSink()
    sink.setup(filename, fmt(prefix, "system/float64/1"), ranges[0][0], ranges[-1][1],
               **options)
    for k, (start, end) in enumerate(ranges):
        sink.write({"value": float(start) if values is None else values[k]}, start, end)
    sink.close()
    return sink


def unit_ranges(n: int, length: int = 1, start: int = 0) -> list[tuple[int, int]]:
    return [(start + k * length, start + (k + 1) * length - 1) for k in range(n)]


def rewrite_index(index_path: str, runs: np.ndarray) -> None:
    """Replace the runs of an index file (keeping its footer, fixing its checksum file),
    to make an index that is wrong yet checksummed."""
    blob = Path(index_path).read_bytes()
    footer = blob[-_cache_format.FOOTER.size:]
    fields = list(_cache_format.FOOTER.unpack(footer))
    fields[0] = len(runs)
    fields[1] = int(runs["count"].sum())
    new = runs.tobytes() + _cache_format.FOOTER.pack(*fields)
    Path(index_path).write_bytes(new)
    digest = _checksums.hash_blocks([[new]], len(new))
    Path(index_path + ".checksum").write_bytes(
        _checksums.format_checksums(len(new), [len(new)], digest))


def files_of(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))
