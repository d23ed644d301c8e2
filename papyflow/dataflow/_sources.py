"""Data sources: where the units of an input come from.

Every source is a sequence of units ``(data, start, end)``: ``len(source)``,
``source[p]`` (``p`` counts units, negative from the end), iteration,
:meth:`DataSource.getAtDataIndex`. The units' ranges are kept as runs
(:class:`~papyflow.dataflow._units.UnitTable`), so that a million units of
one index each cost a few numbers, not a million tuples.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, Self

import numpy as np

from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ._cache_reader import CacheReader
from ._indices import check_contiguous, equal_value_ranges
from ._units import UnitTable
from .errors import MissingCacheFileError

__all__ = [
    "CachedDataSource",
    "DataSource",
    "DatabaseOutputDataSource",
    "FileInfos",
    "MemoryDataSource",
    "ReadStatistics",
    "RemoteDataSource",
    "UnitBatch",
]


class FileInfos(NamedTuple):
    """Where one unit of a cached output is: the piece (``file_index``, counted
    among the pieces the source reads), the unit's data indices, and its
    record's ``offset`` and ``size`` in bytes in that piece's data file (the
    length prefix of a varying-size record included)."""

    file_index: int
    start_index: int
    end_index: int
    offset: int
    size: int


class ReadStatistics(NamedTuple):
    """What a source has read: bytes (data, index and checksum verification
    included) and seconds spent."""

    nb_bytes_read: int
    read_duration: float


class UnitBatch:
    """Many units at once: ``data``, their records as a structured array (of
    the record type's ``batch_dtype``), and ``start`` and ``end``, their
    ranges as int64 arrays, computed from the index when first asked for.

    Unpacks like a unit: ``data, start, end = batch``.
    """

    __slots__ = ("_end", "_first", "_start", "_stop", "_units", "data")

    def __init__(self, data: np.ndarray, units: UnitTable, first: int, stop: int) -> None:
        self.data = data
        self._units = units
        self._first = first
        self._stop = stop
        self._start: np.ndarray | None = None
        self._end: np.ndarray | None = None

    def _ranges(self) -> None:
        self._start, self._end = self._units.ranges(self._first, self._stop)

    @property
    def start(self) -> np.ndarray:
        """The first data index of each unit."""
        if self._start is None:
            self._ranges()
        assert self._start is not None
        return self._start

    @property
    def end(self) -> np.ndarray:
        """The last data index of each unit."""
        if self._end is None:
            self._ranges()
        assert self._end is not None
        return self._end

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.data
        yield self.start
        yield self.end

    def __repr__(self) -> str:
        return f"<UnitBatch of {len(self)} units>"


def load_dataformat(prefix: Any, name: str,
                    dataformat_cache: dict[str, DataFormat] | None) -> DataFormat:
    """The dataformat ``name``; ValueError naming its problems when it is not valid."""
    if dataformat_cache is not None and name in dataformat_cache:
        dataformat = dataformat_cache[name]
    else:
        dataformat = DataFormat(prefix, name, dataformat_cache=dataformat_cache)
    if not dataformat.valid:
        raise ValueError(f"dataformat {name!r} does not load: {'; '.join(dataformat.errors)}")
    return dataformat


class DataSource(abc.ABC):
    """Base class of the sources of data units.

    A source is a sequence of units ``(data, start, end)``, each covering the
    data indices ``start..end``, each starting right after the previous one
    ends. Subclasses fill :attr:`units` in their ``setup`` and implement
    :meth:`_get`.
    """

    def __init__(self) -> None:
        self.units = UnitTable.from_ranges([])
        self.nb_bytes_read = 0
        self.read_duration = 0.0
        self.ready = False

    # -- the sequence -----------------------------------------------------------------------

    def _describe(self) -> str:
        return type(self).__name__

    def __len__(self) -> int:
        return len(self.units)

    def _position(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"{self._describe()}: units are numbered by int, not "
                            f"{type(index).__name__}")
        size = len(self.units)
        position = int(index) + size if index < 0 else int(index)
        if not 0 <= position < size:
            span = f" (data indices {self.units.first_index}..{self.units.last_index})" \
                if size else ""
            raise IndexError(f"{self._describe()}: unit {index} is out of range: the source "
                             f"has {size} units{span}")
        return position

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        """The unit at position ``index``: ``(data, start, end)``."""
        return self._get(self._position(index))

    @abc.abstractmethod
    def _get(self, position: int) -> tuple[Any, int, int]:
        """The unit at ``position`` (already checked to be in range)."""

    def __iter__(self) -> Iterator[tuple[Any, int, int]]:
        for position in range(len(self.units)):
            yield self._get(position)

    def first_data_index(self) -> int:
        """The first data index of the first unit.

        Raises:
            IndexError: the source has no unit.
        """
        self._nonempty()
        return self.units.first_index

    def last_data_index(self) -> int:
        """The last data index of the last unit.

        Raises:
            IndexError: the source has no unit.
        """
        self._nonempty()
        return self.units.last_index

    def _nonempty(self) -> None:
        if not len(self.units):
            raise IndexError(f"{self._describe()}: the source has no unit")

    def data_indices(self) -> list[tuple[int, int]]:
        """The ``(start, end)`` range of every unit, in order."""
        starts, ends = self.units.ranges()
        return list(zip(starts.tolist(), ends.tolist(), strict=True))

    def getAtDataIndex(self, data_index: int) -> tuple[Any, int, int]:
        """The unit that holds the data index ``data_index``.

        Raises:
            IndexError: no unit holds it; the message gives the source's range.
        """
        position = self.units.position_of(int(data_index))
        if position < 0:
            span = f"{self.units.first_index}..{self.units.last_index}" if len(self.units) \
                else "nothing"
            raise IndexError(f"{self._describe()}: data index {data_index} is outside the "
                             f"available range {span}")
        return self._get(position)

    def statistics(self) -> ReadStatistics:
        """Bytes read and seconds spent reading so far."""
        return ReadStatistics(self.nb_bytes_read, self.read_duration)

    def reset(self) -> None:
        """Forget the state of reading (buffers), keeping the source set up."""

    def close(self) -> None:
        """Release what the source holds; it has no unit afterwards."""
        self.units = UnitTable.from_ranges([])
        self.ready = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        size = len(self.units)
        span = f", data indices {self.units.first_index}..{self.units.last_index}" \
            if size else ""
        return f"<{self._describe()}: {size} units{span}>"


class MemoryDataSource(DataSource):
    """A source of units held in memory: ``MemoryDataSource([(data, start, end), ...])``.

    Handy for tests and for feeding inputs from Python objects. The units must
    follow each other without a gap or an overlap (ValueError otherwise).
    """

    def __init__(self, units: Iterable[tuple[Any, int, int]] = ()) -> None:
        super().__init__()
        self.setup(units)

    def setup(self, units: Iterable[tuple[Any, int, int]]) -> bool:
        """Hold these units (replacing any held before)."""
        items = list(units)
        ranges = np.array([(start, end) for _, start, end in items], np.int64).reshape(-1, 2)
        check_contiguous(ranges[:, 0], ranges[:, 1], "MemoryDataSource")
        self._data = [data for data, _, _ in items]
        self.units = UnitTable.from_ranges(ranges)
        self.ready = True
        return True

    def _get(self, position: int) -> tuple[Any, int, int]:
        start, end = self.units.range(position)
        return self._data[position], start, end


class _Infos(Sequence[FileInfos]):
    """The :class:`FileInfos` of a cached source's units, made when asked for."""

    def __init__(self, reader: CacheReader) -> None:
        self._reader = reader

    def __len__(self) -> int:
        return len(self._reader.units)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        units = self._reader.units
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"unit {index} is out of range: {len(self)} units")
        run, j = units.locate(position)
        start, end = units.range(position)
        stride = int(units.extra["stride"][run])
        return FileInfos(int(units.extra["piece"][run]), start, end,
                         int(units.extra["offset"][run]) + j * stride, stride)


class CachedDataSource(DataSource):
    """The units of an output stored in the cache (see ``docs/dataflow.md``).

    Call :meth:`setup` first. Every byte handed out was verified against its
    checksum; a damaged file raises
    :class:`~papyflow.dataflow.errors.CorruptCacheError` naming the file, the
    bytes and the data indices.
    """

    def __init__(self) -> None:
        super().__init__()
        self._reader: CacheReader | None = None
        self.filename: str | None = None
        self.prefix: Any = None
        self.dataformat: DataFormat | None = None
        self.unpack = True

    def _describe(self) -> str:
        return f"cached output {self.filename}" if self.filename else "CachedDataSource"

    def setup(self, filename: str, prefix: Any, start_index: int | None = None,
              end_index: int | None = None, unpack: bool = True, *,
              dataformat_cache: dict[str, DataFormat] | None = None) -> bool:
        """Open the cached output ``filename`` (``<path>/<hash>.data``) for reading.

        Args:
            filename: the output's name in the cache; its files are the pieces
                ``<path>/<hash>.<start>.<end>.data`` (and the index and
                checksum files beside them).
            prefix: where the records' dataformat is looked up.
            start_index: the first data index wanted (``None``: from the first
                in the cache). The source holds every unit that has some index
                in ``start_index..end_index``.
            end_index: the last data index wanted (``None``: to the last).
            unpack: hand out records (``True``) or their packed bytes.
            dataformat_cache: as for :class:`~papyflow.formats.dataformat.DataFormat`.

        Returns:
            ``True``; ``False`` when the cache holds no complete version of the
            output (none was written, or its writer died before committing).

        Raises:
            IndexError: the range asked for is not wholly in the cache (the
                message names it and what the cache holds).
            CorruptCacheError: a damaged file (checksum, size, index).
            MissingCacheFileError: a committed piece lacks a file.
            ValueError: the records' dataformat does not load, or differs from
                the one they were written with.
        """
        self.close()
        self.filename = str(filename)
        self.prefix = prefix
        try:
            reader = CacheReader(self.filename, prefix, start_index, end_index,
                                 dataformat_cache)
        except MissingCacheFileError:
            raise
        except FileNotFoundError:
            return False
        self._reader = reader
        self.units = reader.units
        self.dataformat = reader.dataformat
        self.unpack = unpack
        self.ready = True
        return True

    @property
    def infos(self) -> Sequence[FileInfos]:
        """The :class:`FileInfos` of every unit (a lazy sequence)."""
        if self._reader is None:
            return []
        return _Infos(self._reader)

    def _get(self, position: int) -> tuple[Any, int, int]:
        assert self._reader is not None
        return self._reader.record(position, self.unpack)

    def read_batch(self, start: int = 0, stop: int | None = None) -> UnitBatch:
        """The units at positions ``start..stop-1`` at once, as a :class:`UnitBatch`.

        The fast path for fixed-size formats written in binary: one read and
        one vectorized unpack for all, no record object per unit. The array
        is writable and independent of the source.

        Raises:
            TypeError: the format is not fixed-size, or the cache is JSON.
            IndexError: positions outside ``0..len(self)``.
        """
        if self._reader is None:
            raise ValueError(f"{self._describe()}: not set up")
        size = len(self.units)
        stop = size if stop is None else stop
        if not 0 <= start <= stop <= size:
            raise IndexError(f"{self._describe()}: units {start}..{stop - 1} are out of "
                             f"range: the source has {size} units")
        return UnitBatch(self._reader.batch(start, stop), self.units, start, stop)

    def statistics(self) -> ReadStatistics:
        """Bytes read (data, index, checksums) and seconds spent, since ``setup``."""
        if self._reader is None:
            return ReadStatistics(self.nb_bytes_read, self.read_duration)
        return ReadStatistics(self._reader.bytes_read, self._reader.read_duration)

    def reset(self) -> None:
        """Drop the blocks kept from the last reads (the files stay open)."""
        if self._reader is not None:
            for piece in self._reader.pieces:
                piece.window, piece.window_start = b"", 0

    def close(self) -> None:
        """Close the files; the statistics stay."""
        if self._reader is not None:
            self.nb_bytes_read, self.read_duration = self.statistics()
            self._reader.close()
            self._reader = None
        super().close()


class _View(Protocol):
    def get(self, output: str, index: int) -> Any: ...


def _as_record(record_type: type[baseformat], value: Any, where: str) -> baseformat:
    if isinstance(value, record_type):
        return value
    if isinstance(value, baseformat):  # a record of the same format, loaded elsewhere
        value = value.as_dict()
    if isinstance(value, Mapping):
        return record_type.from_dict(value, casting="same_kind", add_defaults=False)
    raise TypeError(f"{where}: expected a {record_type._name} record or a dict, got "
                    f"{type(value).__name__}")


class DatabaseOutputDataSource(DataSource):
    """The units of one output of a database view.

    The view is any object with ``get(output_name, index)``, returning the
    record (or a dict of its fields) of the unit that starts at data index
    ``index``: a :class:`papyflow.blocks.database.Runner` that is set up, say.
    The units' ranges are, in this order of preference:

    * ``data_indices``, when given;
    * derived from the view's index, when the view has ``objects()`` (the
      entries of its index, in order) and ``get_output_mapping(output_name)``
      (the entries' field that the output follows): each run of consecutive
      entries with equal values of that field is one unit;
    * ``view.data_indices(output_name)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.view: Any = None
        self.output_name = ""
        self.dataformat: DataFormat | None = None
        self.pack = False

    def _describe(self) -> str:
        return f"database output {self.output_name!r}" if self.output_name \
            else "DatabaseOutputDataSource"

    def setup(self, view: _View, output_name: str, dataformat_name: str, prefix: Any,
              start_index: int | None = None, end_index: int | None = None,
              pack: bool = False, *, data_indices: Iterable[Sequence[int]] | None = None,
              dataformat_cache: dict[str, DataFormat] | None = None) -> bool:
        """Read the output ``output_name`` of ``view``, of dataformat ``dataformat_name``.

        Args:
            view: has ``get(output_name, index)``.
            output_name: the output of the view.
            dataformat_name: its dataformat, loaded from ``prefix``.
            prefix: where dataformats are looked up.
            start_index: the first data index wanted (``None``: all); units with
                some index in ``start_index..end_index`` are kept.
            end_index: the last data index wanted.
            pack: hand out packed bytes instead of records.
            data_indices: the ``(start, end)`` ranges of the output's units
                (see the class for where they come from otherwise).
            dataformat_cache: as for :class:`~papyflow.formats.dataformat.DataFormat`.

        Returns:
            ``True``.

        Raises:
            TypeError: no ``data_indices`` and the view cannot give them.
            ValueError: the ranges have a gap or an overlap; the dataformat does
                not load; the index entries lack the output's field.
            IndexError: the range asked for is outside the output's.
        """
        self.close()
        self.view = view
        self.output_name = output_name
        self.pack = pack
        self.dataformat = load_dataformat(prefix, dataformat_name, dataformat_cache)
        self._record_type = self.dataformat.type
        if data_indices is None:
            data_indices = self._indices_of(view, output_name)
        ranges = np.array([tuple(r) for r in data_indices], np.int64).reshape(-1, 2)
        check_contiguous(ranges[:, 0], ranges[:, 1], self._describe())
        table = UnitTable.from_ranges(ranges)
        if len(table) and (start_index is not None or end_index is not None):
            lo = table.first_index if start_index is None else start_index
            hi = table.last_index if end_index is None else end_index
            if lo < table.first_index or hi > table.last_index or hi < lo:
                raise IndexError(f"{self._describe()}: data indices {lo}..{hi} are outside "
                                 f"its range {table.first_index}..{table.last_index}")
            table = table.sub(*table.window(lo, hi))
        self.units = table
        self.ready = True
        return True

    def _indices_of(self, view: Any, output_name: str) -> Iterable[Sequence[int]]:
        """The ranges of the output's units, from the view (see the class)."""
        objects = getattr(view, "objects", None)
        mapping = getattr(view, "get_output_mapping", None)
        if objects is not None and mapping is not None:
            entries = objects()
            field = mapping(output_name)
            try:
                values = [getattr(entry, field) for entry in entries]
            except AttributeError:
                raise ValueError(f"{self._describe()}: the view's index entries have no field "
                                 f"{field!r}") from None
            return equal_value_ranges(values)
        ask = getattr(view, "data_indices", None)
        if ask is None:
            raise TypeError(f"{self._describe()}: pass data_indices, or give a view with "
                            "objects() and get_output_mapping(output_name), or with "
                            "data_indices(output_name)")
        return ask(output_name)

    def _get(self, position: int) -> tuple[Any, int, int]:
        began = time.perf_counter()
        start, end = self.units.range(position)
        record = _as_record(self._record_type, self.view.get(self.output_name, start),
                            f"{self._describe()}, data index {start}")
        data: Any = record
        if self.pack:
            data = record.pack()
            self.nb_bytes_read += len(data)
        self.read_duration += time.perf_counter() - began
        return data, start, end


class _Socket(Protocol):
    def send_multipart(self, msg_parts: Sequence[bytes]) -> Any: ...

    def recv_multipart(self) -> list[bytes]: ...


class RemoteDataSource(DataSource):
    """The units of an input served by another process, over a request-reply socket.

    The socket is any object with ``send_multipart`` and ``recv_multipart``
    (a pyzmq ``REQ`` socket, say). Two requests, each answered by
    ``[b"ok", ...]`` or ``[b"err", message]``::

        [b"ifo", name]            -> [b"ok", JSON list of [start, end]]
        [b"get", name, position]  -> [b"ok", start, end, packed record]

    (numbers as ASCII decimal). The process that serves them comes with the
    execution layer; nothing received is unpickled, records are unpacked and
    checked as from a file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.socket: Any = None
        self.input_name = ""
        self.dataformat: DataFormat | None = None
        self.unpack = True
        self.network_wait_time = 0.0

    def _describe(self) -> str:
        return f"remote input {self.input_name!r}" if self.input_name else "RemoteDataSource"

    def _ask(self, *parts: bytes) -> list[bytes]:
        began = time.perf_counter()
        self.socket.send_multipart([parts[0], self.input_name.encode(), *parts[1:]])
        reply = self.socket.recv_multipart()
        self.network_wait_time += time.perf_counter() - began
        if not reply or reply[0] != b"ok":
            why = reply[1].decode(errors="replace") if len(reply) > 1 else repr(reply)
            raise RuntimeError(f"{self._describe()}: the server refused "
                               f"{parts[0].decode()}: {why}")
        return reply[1:]

    def setup(self, socket: _Socket, input_name: str, dataformat_name: str, prefix: Any,
              unpack: bool = True, *,
              dataformat_cache: dict[str, DataFormat] | None = None) -> bool:
        """Ask the server for the units of ``input_name``.

        Returns:
            ``True``.

        Raises:
            RuntimeError: the server answers with an error.
            ValueError: the dataformat does not load, or the ranges have a gap
                or an overlap.
        """
        self.close()
        self.socket = socket
        self.input_name = input_name
        self.unpack = unpack
        self.dataformat = load_dataformat(prefix, dataformat_name, dataformat_cache)
        self._record_type = self.dataformat.type
        (answer,) = self._ask(b"ifo")
        ranges = np.array(json.loads(answer), np.int64).reshape(-1, 2)
        check_contiguous(ranges[:, 0], ranges[:, 1], self._describe())
        self.units = UnitTable.from_ranges(ranges)
        self.ready = True
        return True

    def _get(self, position: int) -> tuple[Any, int, int]:
        began = time.perf_counter()
        start, end, packed = self._ask(b"get", str(position).encode())
        expected = self.units.range(position)
        if (int(start), int(end)) != expected:
            raise RuntimeError(f"{self._describe()}: asked for unit {position} "
                               f"({expected[0]}..{expected[1]}), the server sent "
                               f"{int(start)}..{int(end)}")
        self.nb_bytes_read += len(packed)
        data: Any = self._record_type.unpack(packed) if self.unpack else bytes(packed)
        self.read_duration += time.perf_counter() - began
        return data, expected[0], expected[1]
