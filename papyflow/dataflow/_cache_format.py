"""The layout of the cache files: names, the data header, the index runs and footer.

An output cached under ``<base>.data`` is stored in *pieces*, each covering
the data indices ``start..end`` with four files (``docs/dataflow.md`` has the
whole story)::

    <base>.<start>.<end>.data             a header line, then the records
    <base>.<start>.<end>.index            the units' ranges (runs), then a footer
    <base>.<start>.<end>.data.checksum    block checksums of the data file
    <base>.<start>.<end>.index.checksum   block checksums of the index file

The pieces written by one sink form a *set*; each index footer records the
range of its set, so that a reader takes a set only when all its pieces are
there.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._atomic import TempName, parse_temp
from .errors import CorruptCacheError

__all__ = [
    "DATA_SUFFIX",
    "FOOTER",
    "HEADER_ALIGN",
    "RUN_DTYPE",
    "DataHeader",
    "Footer",
    "PieceFiles",
    "base_of",
    "check_runs",
    "encode_header",
    "parse_footer",
    "parse_header",
    "scan",
]

DATA_SUFFIX = ".data"
SUFFIXES = ("data", "index", "data.checksum", "index.checksum")
FORMAT_VERSION = 1
HEADER_ALIGN = 64
"""The header of a binary data file is padded with spaces to a multiple of
this many bytes, so that records start aligned."""

RUN_DTYPE = np.dtype([("start", "<i8"), ("end", "<i8"), ("count", "<i8"),
                      ("offset", "<i8"), ("stride", "<i8")])
"""One run of the index: ``count`` consecutive units, the first covering
``start..end``, each as long as the first; their records start at ``offset``
in the data file, ``stride`` bytes apart."""

INDEX_MAGIC = b"PFINDEX1"
FOOTER = struct.Struct("<qqqqqqq8s")
"""The index footer: runs, units, start, end, set start, set end, data file
size, magic."""

_PIECE = re.compile(r"(\d+)\.(\d+)\.(data|index|data\.checksum|index\.checksum)")


def base_of(filename: str | os.PathLike[str]) -> str:
    """The name of an output's files without the piece range: ``x.data`` -> ``x``."""
    name = os.fspath(filename)
    return name.removesuffix(DATA_SUFFIX)


@dataclass(frozen=True)
class PieceFiles:
    """The four file names of the piece ``start..end`` of the output ``base``."""

    base: str
    start: int
    end: int

    def path(self, suffix: str) -> str:
        """``<base>.<start>.<end>.<suffix>``."""
        return f"{self.base}.{self.start}.{self.end}.{suffix}"

    @property
    def data(self) -> str:
        return self.path("data")

    @property
    def index(self) -> str:
        return self.path("index")

    @property
    def data_checksum(self) -> str:
        return self.path("data.checksum")

    @property
    def index_checksum(self) -> str:
        return self.path("index.checksum")

    def all(self) -> tuple[str, str, str, str]:
        """The four names, the index (the commit mark) first."""
        return self.index, self.data, self.data_checksum, self.index_checksum


@dataclass
class Scan:
    """What one listing of an output's folder found."""

    pieces: dict[tuple[int, int], set[str]]
    """for each piece range, the suffixes of the files present"""
    temporaries: list[tuple[str, TempName]]


def scan(base: str) -> Scan:
    """List the piece files and temporary files of the output ``base``."""
    folder, stem = os.path.split(base)
    lead = stem + "."
    pieces: dict[tuple[int, int], set[str]] = {}
    temporaries: list[tuple[str, TempName]] = []
    try:
        entries = os.listdir(folder or ".")
    except FileNotFoundError:
        return Scan(pieces, temporaries)
    for entry in entries:
        if not entry.startswith(lead):
            continue
        rest = entry[len(lead):]
        match = _PIECE.fullmatch(rest)
        if match is not None:
            key = (int(match[1]), int(match[2]))
            pieces.setdefault(key, set()).add(match[3])
            continue
        temp = parse_temp(rest)
        if temp is not None:
            temporaries.append((os.path.join(folder, entry), temp))
    return Scan(pieces, temporaries)


# -- the data header ------------------------------------------------------------------------


@dataclass(frozen=True)
class DataHeader:
    """The first line of a data file."""

    encoding: str
    dataformat: str
    dataformat_hash: str
    record_size: int | None
    """bytes of every record of a fixed-size format written in binary (records
    then have no length prefix); ``None`` otherwise"""
    declaration: dict[str, Any] | None
    """the declaration of an anonymous dataformat (one without a name to load)"""
    size: int
    """bytes of the header, padding and newline included"""


def encode_header(encoding: str, dataformat: str, dataformat_hash: str,
                  record_size: int | None, declaration: dict[str, Any] | None) -> bytes:
    """The header line of a data file, padded to :data:`HEADER_ALIGN` bytes."""
    fields: dict[str, Any] = {
        "papyflow": "cache-data",
        "version": FORMAT_VERSION,
        "encoding": encoding,
        "dataformat": dataformat,
        "dataformat_hash": dataformat_hash,
        "record_size": record_size,
    }
    if declaration is not None:
        fields["declaration"] = declaration
    text = json.dumps(fields, separators=(", ", ": ")).encode()
    padding = -(len(text) + 1) % HEADER_ALIGN if encoding == "binary" else 0
    return text + b" " * padding + b"\n"


def parse_header(path: str, line: bytes) -> DataHeader:
    """Parse the header line (newline included) of the data file ``path``."""
    try:
        fields = json.loads(line)
        if not isinstance(fields, dict) or fields.get("papyflow") != "cache-data":
            raise ValueError("not a papyflow cache data file")
        if fields.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {fields.get('version')!r}, this papyflow reads "
                             f"version {FORMAT_VERSION}")
        encoding = fields["encoding"]
        if encoding not in ("binary", "json"):
            raise ValueError(f"unknown encoding {encoding!r}")
        size = fields["record_size"]
        if size is not None and (type(size) is not int or size <= 0):
            raise ValueError(f"bad record size {size!r}")
        declaration = fields.get("declaration")
        return DataHeader(encoding, str(fields["dataformat"]), str(fields["dataformat_hash"]),
                          size, declaration if isinstance(declaration, dict) else None,
                          len(line))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCacheError(f"{path}: bad header line at byte 0: {exc}", path, 0) from None


# -- the index --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Footer:
    """The end of an index file."""

    runs: int
    units: int
    start: int
    end: int
    set_start: int
    set_end: int
    data_size: int


def encode_footer(footer: Footer) -> bytes:
    return FOOTER.pack(footer.runs, footer.units, footer.start, footer.end, footer.set_start,
                       footer.set_end, footer.data_size, INDEX_MAGIC)


def parse_footer(path: str, blob: bytes | memoryview) -> Footer:
    """The footer at the end of the index file ``path`` (whose bytes are ``blob``)."""
    if len(blob) < FOOTER.size:
        raise CorruptCacheError(f"{path}: {len(blob)} bytes, too short for an index "
                                f"(its footer alone has {FOOTER.size})", path, 0)
    offset = len(blob) - FOOTER.size
    *numbers, magic = FOOTER.unpack_from(blob, offset)
    if magic != INDEX_MAGIC:
        raise CorruptCacheError(f"{path}: no index footer at byte {offset}", path, offset)
    footer = Footer(*numbers)
    if footer.runs < 0 or footer.runs * RUN_DTYPE.itemsize != offset:
        raise CorruptCacheError(f"{path}: the footer at byte {offset} counts {footer.runs} "
                                f"runs, the file holds {offset / RUN_DTYPE.itemsize:g}",
                                path, offset)
    if not footer.set_start <= footer.start <= footer.end <= footer.set_end:
        raise CorruptCacheError(f"{path}: the footer at byte {offset} places the piece "
                                f"{footer.start}..{footer.end} outside its set "
                                f"{footer.set_start}..{footer.set_end}", path, offset)
    return footer


def check_runs(path: str, runs: np.ndarray, footer: Footer, data_start: int) -> None:
    """Raise CorruptCacheError unless the runs of ``path`` tile the piece's range
    without a gap or an overlap, and its data bytes without a hole."""
    if not len(runs):
        raise CorruptCacheError(f"{path}: an index without any unit", path, 0)
    starts, ends, counts = runs["start"], runs["end"], runs["count"]
    offsets, strides = runs["offset"], runs["stride"]
    first_units = np.concatenate(([0], np.cumsum(counts)[:-1]))
    bad = np.flatnonzero((counts <= 0) | (ends < starts) | (strides <= 0))
    if len(bad):
        k = int(bad[0])
        raise CorruptCacheError(f"{path}: run {k} (unit {int(first_units[k])}) is invalid: "
                                f"units {int(starts[k])}..{int(ends[k])}, count "
                                f"{int(counts[k])}, stride {int(strides[k])}",
                                path, k * RUN_DTYPE.itemsize)
    lengths = ends - starts + 1
    after = starts + counts * lengths  # the first index after each run
    wrong = np.flatnonzero(starts[1:] != after[:-1])
    if len(wrong):
        k = int(wrong[0]) + 1
        unit = int(first_units[k])
        kind = "a gap" if starts[k] > after[k - 1] else "an overlap"
        raise CorruptCacheError(f"{path}: {kind} at unit {unit}: unit {unit - 1} ends at "
                                f"{int(after[k - 1]) - 1}, unit {unit} covers "
                                f"{int(starts[k])}..{int(ends[k])}",
                                path, k * RUN_DTYPE.itemsize)
    if int(starts[0]) != footer.start or int(after[-1]) - 1 != footer.end:
        raise CorruptCacheError(f"{path}: the units cover {int(starts[0])}.."
                                f"{int(after[-1]) - 1}, the piece is {footer.start}.."
                                f"{footer.end}", path, 0)
    if int(counts.sum()) != footer.units:
        raise CorruptCacheError(f"{path}: the runs hold {int(counts.sum())} units, the "
                                f"footer counts {footer.units}", path, 0)
    data_after = offsets + counts * strides
    holes = np.flatnonzero(offsets[1:] != data_after[:-1])
    if int(offsets[0]) != data_start or len(holes) or int(data_after[-1]) != footer.data_size:
        k = int(holes[0]) + 1 if len(holes) else 0
        raise CorruptCacheError(f"{path}: run {k} (unit {int(first_units[k])}) places its "
                                f"records at byte {int(offsets[k])} of the data file, which "
                                "does not follow the previous records", path,
                                k * RUN_DTYPE.itemsize)
