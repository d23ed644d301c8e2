"""Data sinks: where the units written by an output go.

A sink takes units ``(data, start, end)`` in order. :class:`CachedDataSink`
stores them in the cache (see :mod:`papyflow.dataflow._cache_writer` for the
commit protocol), :class:`StdoutDataSink` prints them.
"""

from __future__ import annotations

import abc
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, Self, TextIO

import numpy as np

from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ._cache_format import PieceFiles
from ._cache_writer import CacheWriter

__all__ = ["CachedDataSink", "DataSink", "StdoutDataSink", "WriteStatistics", "as_record"]


class WriteStatistics(NamedTuple):
    """What a sink has written: bytes (index and checksums included) and seconds spent."""

    nb_bytes_written: int
    write_duration: float


def as_record(record_type: type[baseformat], data: Any, where: str) -> baseformat:
    """``data`` as a record of ``record_type``.

    A record of that type is taken as it is; a dict is cast with
    ``same_kind`` casting and must give every field; bytes must be one packed
    record.

    Raises:
        TypeError: another kind of object (``where`` names the sink).
        FieldValueError, DecodeError: a dict or bytes that do not make a record.
    """
    if isinstance(data, record_type):
        return data
    if isinstance(data, Mapping):
        return record_type.from_dict(data, casting="same_kind", add_defaults=False)
    if isinstance(data, bytes | bytearray | memoryview):
        return record_type.unpack(data)
    raise TypeError(f"{where}: expected a {record_type._name} record, a dict of its fields "
                    f"or its packed bytes, got {type(data).__name__}")


def _index(value: Any, name: str) -> int:
    """``value`` as a data index: an int (or numpy integer), never a bool or a float."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}: {value!r}")
    return int(value)


def _indices(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu" and array.size:
        raise TypeError(f"{name} must be integers, not {array.dtype}")
    return np.asarray(array, np.int64).reshape(-1)


class DataSink(abc.ABC):
    """Interface of the sinks of data units: what an output writes to."""

    @abc.abstractmethod
    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        """Write one unit: ``data`` covering ``start_data_index..end_data_index``."""

    @abc.abstractmethod
    def isConnected(self) -> bool:
        """Whether the sink takes data."""

    def write_batch(self, records: Any, start_indices: Any, end_indices: Any = None) -> None:
        """Write many units at once.

        ``records`` is a structured array of the record type's ``batch_dtype``
        or an iterable of records (or dicts); ``start_indices`` and
        ``end_indices`` (by default the start indices: units of one index
        each) are sequences of ints of the same length. This base version
        writes them one by one; :class:`CachedDataSink` does it in bulk.
        """
        starts = _indices(start_indices, "start_indices")
        ends = starts if end_indices is None else _indices(end_indices, "end_indices")
        items = list(records) if not isinstance(records, np.ndarray) else records
        if not len(items) == len(starts) == len(ends):
            raise ValueError(f"write_batch: {len(items)} records for {len(starts)} start "
                             f"and {len(ends)} end indices")
        record_type = getattr(self, "record_type", None)
        for k, item in enumerate(items):
            if isinstance(item, np.void) and record_type is not None:
                item = record_type.from_row(item)
            self.write(item, int(starts[k]), int(ends[k]))

    def close(self) -> None:
        """Finish writing (nothing to do for this sink)."""

    def statistics(self) -> WriteStatistics:
        """Bytes written and seconds spent writing so far."""
        return WriteStatistics(0, 0.0)


class StdoutDataSink(DataSink):
    """A sink that prints the units it gets, for debugging; the data is not kept.

    Each unit is one line: ``(start-end): <record>``, or ``(start-end)`` alone
    with ``display_data=False``.
    """

    def __init__(self) -> None:
        self.dataformat: DataFormat | None = None
        self.record_type: type[baseformat] | None = None
        self.prefix: Any = None
        self.display_data = True
        self.stream: TextIO | None = None

    def setup(self, dataformat: DataFormat, prefix: Any = None, display_data: bool = True,
              *, stream: TextIO | None = None) -> bool:
        """Print units of ``dataformat`` (to ``stream``, by default ``sys.stdout``).

        ``prefix`` is accepted for symmetry with the other sinks and unused.
        """
        self.dataformat = dataformat
        self.record_type = dataformat.type  # write_batch prints rows as records
        self.prefix = prefix
        self.display_data = display_data
        self.stream = stream
        return True

    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        """Print one unit."""
        line = f"({start_data_index}-{end_data_index})"
        if self.display_data:
            line += f": {data!r}"
        print(line, file=self.stream if self.stream is not None else sys.stdout)

    def isConnected(self) -> bool:
        """Whether the sink is set up."""
        return self.dataformat is not None


class CachedDataSink(DataSink):
    """A sink that stores units in the cache; the default encoding is binary.

    Call :meth:`setup`, write the units in order, then :meth:`close`, which
    commits them: until then a reader sees the previous version of the
    output, if any; a writer that dies leaves no half-written version. Used
    as a context manager, a sink left by an exception is discarded instead.
    See ``docs/dataflow.md`` for the files.
    """

    def __init__(self) -> None:
        self._writer: CacheWriter | None = None
        self.filename: str | None = None
        self.dataformat: DataFormat | None = None
        self.record_type: type[baseformat] | None = None
        self.encoding = "binary"
        self.start_index = 0
        self.end_index = 0
        self.files: list[PieceFiles] = []
        """The pieces committed by :meth:`close`."""
        self._nb_bytes = 0
        self._duration = 0.0

    def _describe(self) -> str:
        return f"cache {self.filename}" if self.filename else "CachedDataSink"

    def setup(self, filename: str, dataformat: DataFormat, start_index: int, end_index: int,
              encoding: str = "binary", *, max_file_size: int | None = 1 << 30,
              sync: bool = True) -> bool:
        """Prepare to write the units of ``start_index..end_index`` to ``filename``.

        Args:
            filename: the output's name in the cache (``<path>/<hash>.data``);
                its pieces are written beside it.
            dataformat: the :class:`~papyflow.formats.dataformat.DataFormat` of
                every record.
            start_index: the first data index: the first unit starts there.
            end_index: the last data index any unit may cover.
            encoding: ``'binary'`` (packed records) or ``'json'`` (one readable
                line per unit, for debugging).
            max_file_size: a data file that reaches this many bytes is closed
                and the next units go to a new piece (``None``: never split).
            sync: fsync the files and the folder before renaming (durability
                against a crash of the machine; the atomicity of the commit
                against a killed process does not depend on it).

        Returns:
            ``True``.

        Raises:
            ValueError: a bad range, encoding or size.
            TypeError: ``dataformat`` is not a DataFormat.
            RuntimeError: the dataformat is not valid.
        """
        if not isinstance(dataformat, DataFormat):
            raise TypeError(f"CachedDataSink.setup: dataformat must be a DataFormat, not "
                            f"{type(dataformat).__name__}")
        if self._writer is not None and not self._writer.closed:
            self._writer.discard()
        self._writer = CacheWriter(str(filename), dataformat, start_index, end_index,
                                   encoding, max_file_size, sync)
        self.filename = str(filename)
        self.dataformat = dataformat
        self.record_type = self._writer.record_type
        self.encoding = encoding
        self.start_index, self.end_index = int(start_index), int(end_index)
        self.files = []
        return True

    def _open_writer(self) -> CacheWriter:
        if self._writer is None or self._writer.closed:
            raise ValueError(f"{self._describe()}: the sink is "
                             f"{'closed' if self._writer else 'not set up'}")
        return self._writer

    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        """Append one unit: ``data`` (a record, a dict of its fields, or packed
        bytes) covering ``start_data_index..end_data_index``.

        Raises:
            ValueError: the unit does not start right after the previous one
                (the first at ``start_index``), ends before it starts, or goes
                beyond ``end_index``; the message names the range.
            TypeError: an index that is not an int (a float is never rounded).
            TypeError, FieldValueError: ``data`` does not make a record.
        """
        began = time.perf_counter()
        writer = self._open_writer()
        record = data if type(data) is writer.record_type else \
            as_record(writer.record_type, data, self._describe())
        writer.write(record, _index(start_data_index, "start_data_index"),
                     _index(end_data_index, "end_data_index"))
        self._duration += time.perf_counter() - began

    def write_batch(self, records: Any, start_indices: Any, end_indices: Any = None) -> None:
        """Write many units at once (see :meth:`DataSink.write_batch`).

        For a fixed-size format in binary the records are packed in one go
        (``pack_batch``) and written in whole blocks; otherwise one by one.

        Raises:
            ValueError: as :meth:`write`, naming the first bad unit of the batch.
        """
        writer = self._open_writer()
        if writer.record_size is None:
            super().write_batch(records, start_indices, end_indices)
            return
        began = time.perf_counter()
        starts = _indices(start_indices, "start_indices")
        ends = None if end_indices is None else _indices(end_indices, "end_indices")
        packed = writer.record_type.batch_buffer(records)  # written before this returns
        count = len(packed) // writer.record_size
        if not count == len(starts) == (len(starts) if ends is None else len(ends)):
            raise ValueError(f"{self._describe()}: write_batch got {count} records for "
                             f"{len(starts)} start and "
                             f"{len(starts) if ends is None else len(ends)} end indices")
        writer.write_batch(packed, starts, ends)
        self._duration += time.perf_counter() - began

    def close(self) -> None:
        """Commit what was written (nothing is changed when no unit was written)."""
        if self._writer is None or self._writer.closed:
            return
        began = time.perf_counter()
        try:
            self.files = self._writer.commit()
        finally:
            self._nb_bytes = self._writer.nb_bytes_written
            self._duration += time.perf_counter() - began

    def discard(self) -> None:
        """Drop what was written: the cache stays as it was."""
        if self._writer is not None:
            self._writer.discard()

    def statistics(self) -> WriteStatistics:
        """Bytes written to the cache (data, index, checksums) and seconds spent."""
        written = self._writer.nb_bytes_written if self._writer is not None else self._nb_bytes
        return WriteStatistics(written, self._duration)

    def isConnected(self) -> bool:
        """Whether the sink is set up and not closed."""
        return self._writer is not None and not self._writer.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()
