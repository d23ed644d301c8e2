"""Data I/O: sources and sinks of data units, the binary cache, data indices.

A *data unit* is ``(data, start, end)``: a record covering the data indices
``start..end``, both included. Streams of units feed the inputs of a block
(:mod:`papyflow.dataflow.inputs`) and leave its outputs
(:mod:`papyflow.dataflow.outputs`).

Sources (each a sequence of units: ``len``, ``[p] -> (data, start, end)``):

* :class:`CachedDataSource`: an output stored in the cache;
* :class:`DatabaseOutputDataSource`: an output of a database view;
* :class:`RemoteDataSource`: an input served by another process;
* :class:`MemoryDataSource`: units held in a Python list.

Sinks: :class:`CachedDataSink` (the cache), :class:`StdoutDataSink` (printing).

Index helpers: :func:`mixDataIndices`, :func:`foundSplitRanges`,
:func:`getAllFilenames`, :func:`load_data_index`, :func:`load_data_index_db`,
:func:`data_index_db_path`.

The cache on disk (``docs/dataflow.md`` describes every byte): an output
``<path>/<hash>.data`` is stored in pieces
``<path>/<hash>.<start>.<end>.{data,index,data.checksum,index.checksum}``,
written under temporary names and renamed in an order that never lets a
reader take a half-written version for a whole one; every byte read is
checked against its block's XXH3 checksum.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ._cache_format import base_of
from ._cache_reader import find_pieces
from ._indices import check_contiguous, foundSplitRanges, mixDataIndices
from ._remote import RemoteDataSource
from ._sinks import CachedDataSink, DataSink, StdoutDataSink, WriteStatistics
from ._sources import (
    CachedDataSource,
    DatabaseOutputDataSource,
    DataSource,
    FileInfos,
    MemoryDataSource,
    ReadStatistics,
    UnitBatch,
)
from ._units import UnitTable

__all__ = [
    "CachedDataSink",
    "CachedDataSource",
    "DataSink",
    "DataSource",
    "DatabaseOutputDataSource",
    "FileInfos",
    "MemoryDataSource",
    "ReadStatistics",
    "RemoteDataSource",
    "StdoutDataSink",
    "UnitBatch",
    "WriteStatistics",
    "data_index_db_path",
    "foundSplitRanges",
    "getAllFilenames",
    "load_data_index",
    "load_data_index_db",
    "mixDataIndices",
]


def getAllFilenames(filename: str, start_index: int | None = None,
                    end_index: int | None = None
                    ) -> tuple[list[str], list[str], list[str], list[str]]:
    """The files of the cached output ``filename`` that hold data indices in
    ``start_index..end_index`` (``None``: from the first, to the last).

    Only committed, complete pieces count (their index files are verified on
    the way; stale temporary files are deleted).

    Returns:
        ``(data_filenames, indices_filenames, data_checksum_filenames,
        indices_checksum_filenames)``, each in the order of the data indices.

    Raises:
        CorruptCacheError, MissingCacheFileError: a damaged committed piece.
    """
    pieces, _ = find_pieces(os.fspath(filename))
    chosen = [p.files for p in pieces
              if (start_index is None or p.files.end >= start_index)
              and (end_index is None or p.files.start <= end_index)]
    return ([f.data for f in chosen], [f.index for f in chosen],
            [f.data_checksum for f in chosen], [f.index_checksum for f in chosen])


def load_data_index(cache_root: str, hash_path: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of the units of the output cached as
    ``<cache_root>/<hash_path>`` (``hash_path`` as :func:`papyflow.hash.toPath`
    makes it, ``.data`` included or not).

    Returns an empty list when the cache holds no complete version of it.

    Raises:
        CorruptCacheError, MissingCacheFileError: a damaged committed piece.
    """
    pieces, _ = find_pieces(os.path.join(cache_root, hash_path))
    if not pieces:
        return []
    runs = np.concatenate([p.runs for p in pieces])
    table = UnitTable(runs["start"], runs["end"] - runs["start"] + 1, runs["count"])
    first, last = table.ranges()
    return list(zip(first.tolist(), last.tolist(), strict=True))


def data_index_db_path(cache_root: str, hash_path: str) -> str:
    """Where the ranges of a database view's output are kept:
    ``<cache_root>/<hash_path without .data>.indices.json``.

    :meth:`papyflow.blocks.database.Runner.save_data_indices` writes that file,
    :func:`load_data_index_db` reads it.
    """
    return base_of(os.path.join(cache_root, hash_path)) + ".indices.json"


def load_data_index_db(cache_root: str, hash_path: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of the units of a database view's output.

    A database view that has computed its outputs' ranges keeps them beside
    the output's name, in :func:`data_index_db_path` (``<cache_root>/<hash_path
    without .data>.indices.json``): a JSON list of ``[start, end]`` pairs,
    written by :meth:`papyflow.blocks.database.Runner.save_data_indices`.
    Returns an empty list when the file is not there.

    Raises:
        ValueError: the file is not such a list, or its ranges have a gap or
            an overlap (naming the file).
    """
    path = data_index_db_path(cache_root, hash_path)
    try:
        with open(path, encoding="utf-8") as f:
            ranges = json.load(f)
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    try:
        pairs = [(int(start), int(end)) for start, end in ranges]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected a JSON list of [start, end] pairs") from None
    array = np.array(pairs, np.int64).reshape(-1, 2)
    check_contiguous(array[:, 0], array[:, 1], path)
    return pairs
