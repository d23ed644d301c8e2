"""Reading an output from the cache: finding the committed pieces, verifying what is read.

::

    find_pieces(base) ── scan the folder, delete stale temporary files,
         │               verify every committed index (checksum, runs, footer),
         │               keep the sets whose pieces are all committed
         ▼
    CacheReader ──► UnitTable of the units in the requested range (runs of all pieces)
         │
         └─ record(p) / batch(a, b) ──► _Piece.read(offset, size): the blocks holding
                                         those bytes are read and their checksums
                                         verified before any byte is handed out

A small record is read with the whole block it lies in, kept as a window for
the next records; a record that has blocks of its own is read straight into
a buffer of its own (the arrays unpacked from it use that memory, no copy).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ._atomic import is_stale, remove_quietly
from ._cache_format import (
    FOOTER,
    RUN_DTYPE,
    DataHeader,
    Footer,
    PieceFiles,
    base_of,
    check_runs,
    parse_footer,
    parse_header,
    scan,
)
from ._checksums import Checksums, hash_blocks, hash_later, read_checksums
from ._json_codec import record_from_json
from ._units import UnitTable
from .errors import CacheError, CorruptCacheError, MissingCacheFileError

__all__ = ["CacheReader", "IndexedPiece", "find_pieces"]

_RETRIES = 3  # rescans when a writer's commit removes files under our feet
_OWN_BUFFER_FROM = 1 << 16  # records of this many bytes or more get a buffer of their own
_READ_SLICE = 4 << 20  # a long read goes in slices of this size, each hashed as the next is read


def _truncated(path: str, size: int, offset: int, got: int) -> CorruptCacheError:
    return CorruptCacheError(f"{path}: truncated: the file ends at byte {offset + got}, "
                             f"{size} bytes were expected from byte {offset}", path, offset + got)


def _read_exactly(fd: int, path: str, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` of ``fd``.

    Raises:
        CorruptCacheError: the file ends first.
    """
    data = os.pread(fd, size, offset)
    got = len(data)
    if 0 < got < size:  # a very long read comes in several
        chunks = [data]
        while got < size:
            more = os.pread(fd, size - got, offset + got)
            if not more:
                break
            chunks.append(more)
            got += len(more)
        data = b"".join(chunks)
    if got != size:
        raise _truncated(path, size, offset, got)
    return data


def _read_into(fd: int, path: str, view: memoryview, offset: int) -> None:
    """Fill ``view`` with the bytes at ``offset`` of ``fd``.

    Raises:
        CorruptCacheError: the file ends first.
    """
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            raise _truncated(path, len(view), offset, got)
        got += n


class _Replaced(MissingCacheFileError):
    """A committed piece was replaced while it was being opened (a writer committed
    a new version of its range): the reader lists the pieces again."""


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    """What tells one file from another put under the same name later (a rename
    changes ``st_ctime``, so a new file on a reused inode differs too)."""
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _same_file(path: str, identity: tuple[int, ...]) -> bool:
    """Whether ``path`` is still the file of that identity.

    A writer removes a piece's index before it touches the piece's other
    files (``docs/dataflow.md``, the commit protocol), so the files of a piece
    opened before its index is found unchanged are of the version whose
    index was read.
    """
    try:
        return _identity(os.stat(path)) == identity
    except FileNotFoundError:
        return False


def _replaced(index_path: str) -> _Replaced:
    return _Replaced(f"{index_path}: replaced by a writer while it was being opened (a new "
                     "version was committed; listed again, in vain)", index_path)


@dataclass
class IndexedPiece:
    """A committed piece whose index was read and verified; ``identity`` is that of
    the index file read."""

    files: PieceFiles
    footer: Footer
    runs: np.ndarray
    index_bytes: int
    identity: tuple[int, ...] = ()


def _checksums_of(path: str, checksum_path: str) -> Checksums:
    try:
        return read_checksums(path, checksum_path)
    except FileNotFoundError:
        raise MissingCacheFileError(f"{checksum_path}: missing: the checksum file of {path} "
                                    "is not there (the cache was damaged after it was "
                                    "written)", checksum_path) from None


def _read_index(files: PieceFiles) -> IndexedPiece:
    with open(files.index, "rb") as f:
        blob = f.read()
        identity = _identity(os.fstat(f.fileno()))
    try:
        checksums = _checksums_of(files.index, files.index_checksum)
        checksums.check_size(len(blob))
        checksums.verify(blob, 0, range(len(checksums.ends)))
    except CacheError:  # the checksum file read may be that of a newer index
        if not _same_file(files.index, identity):
            raise _replaced(files.index) from None
        raise
    footer = parse_footer(files.index, blob)
    if (footer.start, footer.end) != (files.start, files.end):
        raise CorruptCacheError(f"{files.index}: the footer describes the piece "
                                f"{footer.start}..{footer.end}, the file name "
                                f"{files.start}..{files.end}", files.index,
                                len(blob) - FOOTER.size)
    runs = np.frombuffer(blob, RUN_DTYPE, footer.runs)
    return IndexedPiece(files, footer, runs, len(blob), identity)


def find_pieces(filename: str) -> tuple[list[IndexedPiece], int]:
    """The committed pieces of the output ``filename``, in order, and the bytes read.

    Stale temporary files are deleted on the way. Pieces of a set that is not
    wholly committed (its writer was killed while committing) are left out.

    Raises:
        CorruptCacheError, MissingCacheFileError: a committed piece is damaged,
            or two complete sets overlap.
    """
    base = base_of(filename)
    for attempt in range(_RETRIES):
        listing = scan(base)
        for path, temp in listing.temporaries:
            if is_stale(path, temp):
                remove_quietly(path)
        try:
            indexed = [_read_index(PieceFiles(base, start, end))
                       for (start, end), present in sorted(listing.pieces.items())
                       if "index" in present]
            break
        except (FileNotFoundError, MissingCacheFileError):
            if attempt == _RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))  # a writer is committing: look again
    sets: dict[tuple[int, int], list[IndexedPiece]] = {}
    for piece in indexed:
        sets.setdefault((piece.footer.set_start, piece.footer.set_end), []).append(piece)
    complete: list[IndexedPiece] = []
    for (set_start, set_end), members in sets.items():
        expected = set_start
        for piece in members:  # sorted by start
            if piece.files.start != expected:
                break
            expected = piece.files.end + 1
        else:
            if expected == set_end + 1:
                complete.extend(members)
    complete.sort(key=lambda p: p.files.start)
    for before, after in itertools.pairwise(complete):
        if after.files.start <= before.files.end:
            raise CorruptCacheError(f"{after.files.index}: covers {after.files.start}.."
                                    f"{after.files.end}, which overlaps {before.files.index} "
                                    f"({before.files.start}..{before.files.end})",
                                    after.files.index)
    return complete, sum(p.index_bytes for p in indexed)


@dataclass
class _Piece:
    """An open data file of a piece, verified block by block as it is read."""

    files: PieceFiles
    fd: int
    checksums: Checksums
    header: DataHeader
    runs: np.ndarray
    window_start: int = 0
    window: bytes = b""
    nb_bytes_read: int = 0
    describe: Callable[[int, int], str] = field(init=False)

    def __post_init__(self) -> None:
        self.describe = self._describe

    def _describe(self, start: int, stop: int) -> str:
        """The data indices of the records in bytes ``[start, stop)``."""
        runs = self.runs
        if stop <= int(runs["offset"][0]):
            return "the header"
        k0 = max(0, int(np.searchsorted(runs["offset"], start, side="right")) - 1)
        k1 = max(0, int(np.searchsorted(runs["offset"], stop - 1, side="right")) - 1)
        first_offset, last_offset = max(start, int(runs["offset"][k0])), stop - 1
        j0 = (first_offset - int(runs["offset"][k0])) // int(runs["stride"][k0])
        j1 = (last_offset - int(runs["offset"][k1])) // int(runs["stride"][k1])
        j1 = min(j1, int(runs["count"][k1]) - 1)
        length0 = int(runs["end"][k0] - runs["start"][k0]) + 1
        length1 = int(runs["end"][k1] - runs["start"][k1]) + 1
        first = int(runs["start"][k0]) + j0 * length0
        last = int(runs["start"][k1]) + (j1 + 1) * length1 - 1
        return f"data indices {first}..{last}"

    def read(self, offset: int, size: int, own: bool) -> memoryview:
        """The verified bytes ``[offset, offset + size)`` of the data file.

        With ``own``, they are read (with the rest of their blocks) into a new
        writable buffer that the caller keeps; otherwise they are a view of
        the window, the blocks last read, which the next read may replace.
        """
        window_offset = offset - self.window_start
        if not own and window_offset >= 0 and window_offset + size <= len(self.window):
            return memoryview(self.window)[window_offset:window_offset + size]
        blocks = self.checksums.blocks(offset, offset + size)
        first, _ = self.checksums.bounds(blocks[0])
        _, stop = self.checksums.bounds(blocks[-1])
        if own:
            buffer = np.empty(stop - first, np.uint8)  # not zeroed: every byte is read into
            self._read_verified(buffer.data, first, blocks)
            return buffer.data[offset - first:offset - first + size]
        window = _read_exactly(self.fd, self.files.data, stop - first, first)
        self.nb_bytes_read += stop - first
        self.checksums.verify(window, first, blocks, self.describe)
        self.window_start, self.window = first, window
        return memoryview(window)[offset - first:offset - first + size]

    def _read_verified(self, view: memoryview, first: int, blocks: range) -> None:
        """Read ``blocks`` (starting at byte ``first``) into ``buffer`` and verify them.

        A long read goes in slices: the pool hashes each slice while the next
        one is read, and this thread hashes the last.
        """
        checksums = self.checksums
        pending: list[tuple[list[int], Future[list[bytes]] | list[bytes]]] = []
        group: list[int] = []
        group_start = first
        try:
            for k in blocks:
                group.append(k)
                end = checksums.bounds(k)[1]
                if end - group_start < _READ_SLICE and k != blocks[-1]:
                    continue
                _read_into(self.fd, self.files.data, view[group_start - first:end - first],
                           group_start)
                self.nb_bytes_read += end - group_start
                todo = checksums.unverified(range(group[0], group[-1] + 1))
                if todo:
                    parts = [(view[checksums.bounds(j)[0] - first:
                                   checksums.bounds(j)[1] - first],) for j in todo]
                    if k == blocks[-1]:
                        pending.append((todo, hash_blocks(parts, 0,
                                                          algorithm=checksums.algorithm)))
                    else:
                        pending.append((todo, hash_later(parts, checksums.algorithm)))
                group, group_start = [], end
        finally:
            results = [(todo, digests if isinstance(digests, list) else digests.result())
                       for todo, digests in pending]
        for todo, digests in results:
            checksums.check(todo, digests, self.describe)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.window = b""


def _open_piece(indexed: IndexedPiece) -> _Piece:
    files = indexed.files
    try:
        checksums = _checksums_of(files.data, files.data_checksum)
        try:
            fd = os.open(files.data, os.O_RDONLY)
        except FileNotFoundError:
            raise MissingCacheFileError(f"{files.data}: missing: the data file of the "
                                        f"committed piece {files.index}", files.data) from None
    except MissingCacheFileError:
        if not _same_file(files.index, indexed.identity):
            raise _replaced(files.index) from None
        raise
    if not _same_file(files.index, indexed.identity):  # what was opened may be newer
        os.close(fd)
        raise _replaced(files.index)
    try:
        checksums.check_size(os.fstat(fd).st_size)
        if checksums.size != indexed.footer.data_size:
            raise CorruptCacheError(f"{files.index}: records a data file of "
                                    f"{indexed.footer.data_size} bytes, {files.data_checksum} "
                                    f"one of {checksums.size}", files.index)
        first_block = checksums.bounds(0)
        head = _read_exactly(fd, files.data, first_block[1], 0)
        checksums.verify(head, 0, range(1), lambda a, b: "the header")
        newline = head.find(b"\n")
        if newline < 0:
            raise CorruptCacheError(f"{files.data}: no header line at byte 0", files.data, 0)
        header = parse_header(files.data, head[:newline + 1])
        check_runs(files.index, indexed.runs, indexed.footer, header.size)
        if header.record_size is not None:
            odd = np.flatnonzero(indexed.runs["stride"] != header.record_size)
            if len(odd):
                raise CorruptCacheError(f"{files.index}: run {int(odd[0])} places records "
                                        f"{int(indexed.runs['stride'][odd[0]])} bytes apart, "
                                        f"{files.data} holds records of "
                                        f"{header.record_size} bytes", files.index,
                                        int(odd[0]) * RUN_DTYPE.itemsize)
    except BaseException:
        os.close(fd)
        raise
    piece = _Piece(files, fd, checksums, header, indexed.runs)
    piece.nb_bytes_read = first_block[1]
    return piece


def _load_format(path: str, header: DataHeader, prefix: Any,
                 dataformat_cache: dict[str, DataFormat] | None) -> DataFormat:
    if header.declaration is not None:
        dataformat = DataFormat(prefix, header.declaration, dataformat_cache=dataformat_cache)
    elif dataformat_cache is not None and header.dataformat in dataformat_cache:
        dataformat = dataformat_cache[header.dataformat]
    else:
        dataformat = DataFormat(prefix, header.dataformat, dataformat_cache=dataformat_cache)
    if not dataformat.valid:
        raise ValueError(f"{path}: the records are of dataformat {header.dataformat!r}, "
                         f"which does not load: {'; '.join(dataformat.errors)}")
    if dataformat.hash() != header.dataformat_hash:
        raise ValueError(f"{path}: the records were written with another declaration of "
                         f"dataformat {header.dataformat!r} (hash {header.dataformat_hash[:12]}"
                         f"..., the prefix has {dataformat.hash()[:12]}...)")
    return dataformat


class CacheReader:
    """The units of a cached output in ``start_index..end_index`` (``None``: all).

    Raises:
        FileNotFoundError: no complete version of the output is in the cache.
        IndexError: the range asked for is not (wholly) in the cache.
        CorruptCacheError, MissingCacheFileError: damaged files.
    """

    def __init__(self, filename: str, prefix: Any, start_index: int | None = None,
                 end_index: int | None = None,
                 dataformat_cache: dict[str, DataFormat] | None = None) -> None:
        self.filename = os.fspath(filename)
        for name, value in (("start_index", start_index), ("end_index", end_index)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | np.integer)):
                raise TypeError(f"{self.filename}: {name} must be an int or None, "
                                f"not {type(value).__name__}: {value!r}")
        began = time.perf_counter()
        self.pieces: list[_Piece] = []
        for attempt in range(_RETRIES):
            try:
                index_bytes, lo, hi = self._open(start_index, end_index)
                break
            except MissingCacheFileError:
                # a writer committing a new version may have removed the files listed
                self.close()
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        try:
            header = self.pieces[0].header
            for other in self.pieces[1:]:
                if (other.header.encoding, other.header.dataformat_hash) != \
                        (header.encoding, header.dataformat_hash):
                    raise CorruptCacheError(f"{other.files.data}: its header differs from that "
                                            f"of {self.pieces[0].files.data}", other.files.data, 0)
            self.header = header
            self.dataformat = _load_format(self.pieces[0].files.data, header, prefix,
                                           dataformat_cache)
            self.record_type: type[baseformat] = self.dataformat.type
            runs = np.concatenate([p.runs for p in self.pieces])
            pieces = np.concatenate([np.full(len(p.runs), k, np.int64)
                                     for k, p in enumerate(self.pieces)])
            table = UnitTable(runs["start"], runs["end"] - runs["start"] + 1, runs["count"],
                              {"offset": runs["offset"].copy(), "stride": runs["stride"].copy(),
                               "piece": pieces})
            self.units = table.sub(*table.window(lo, hi))
        except BaseException:
            self.close()
            raise
        self._run = -1
        self._run_numbers: tuple[int, int, int, int, _Piece] | None = None
        self.nb_bytes_read = index_bytes
        self.read_duration = time.perf_counter() - began

    def _open(self, start_index: int | None, end_index: int | None) -> tuple[int, int, int]:
        """Find the committed pieces and open those holding ``start_index..end_index``.

        Returns the bytes of index read and the range chosen.
        """
        indexed, index_bytes = find_pieces(self.filename)
        if not indexed:
            raise FileNotFoundError(f"{self.filename}: no complete version of this output is "
                                    "in the cache")
        available = f"{indexed[0].files.start}..{indexed[-1].files.end}"
        holes = [(a.files.end + 1, b.files.start - 1) for a, b in itertools.pairwise(indexed)
                 if b.files.start != a.files.end + 1]
        lo = indexed[0].files.start if start_index is None else start_index
        hi = indexed[-1].files.end if end_index is None else end_index
        if hi < lo:
            raise IndexError(f"{self.filename}: the data index range {lo}..{hi} is empty")
        missing = [(a, b) for a, b in holes if a <= hi and b >= lo]
        if lo < indexed[0].files.start or hi > indexed[-1].files.end or missing:
            gaps = "".join(f"; {a}..{b} are missing" for a, b in holes)
            raise IndexError(f"{self.filename}: data indices {lo}..{hi} are not all in the "
                             f"cache, which holds {available}{gaps}")
        chosen = [p for p in indexed if p.files.start <= hi and p.files.end >= lo]
        try:
            for indexed_piece in chosen:
                self.pieces.append(_open_piece(indexed_piece))
        except BaseException:
            self.close()
            raise
        return index_bytes, lo, hi

    @property
    def bytes_read(self) -> int:
        return self.nb_bytes_read + sum(p.nb_bytes_read for p in self.pieces)

    def _where(self, piece: _Piece, offset: int) -> str:
        return f"{piece.files.data}: the record at byte {offset}"

    def record(self, position: int, unpack: bool) -> tuple[Any, int, int]:
        """The unit at ``position``: ``(record or packed bytes, start, end)``."""
        began = time.perf_counter()
        units = self.units
        run, j = units.locate(position)
        if run != self._run:  # the numbers of a run, as Python ints
            self._run = run
            self._run_numbers = (int(units.starts[run]), int(units.lengths[run]),
                                 int(units.extra["offset"][run]),
                                 int(units.extra["stride"][run]),
                                 self.pieces[int(units.extra["piece"][run])])
        assert self._run_numbers is not None
        first_start, length, first_offset, stride, piece = self._run_numbers
        start = first_start + j * length
        end = start + length - 1
        offset = first_offset + j * stride
        header = piece.header
        own = header.encoding == "binary" and unpack and stride >= _OWN_BUFFER_FROM
        view = piece.read(offset, stride, own)
        try:
            if header.encoding == "json":
                record, line_start, line_end = record_from_json(
                    self.record_type, view, self._where(piece, offset))
                if (line_start, line_end) != (start, end):
                    raise CorruptCacheError(f"{self._where(piece, offset)} covers "
                                            f"{line_start}..{line_end}, the index says "
                                            f"{start}..{end}", piece.files.data, offset)
                data: Any = record if unpack else record.pack()
            else:
                if header.record_size is None:
                    size = int.from_bytes(view[:8], "little")
                    if size != stride - 8:
                        raise CorruptCacheError(f"{self._where(piece, offset)} says it has "
                                                f"{size} bytes, the index {stride - 8}",
                                                piece.files.data, offset)
                    view = view[8:]
                # a buffer of its own backs the arrays as it is; a window is copied from
                data = self.record_type.unpack(view, copy=not own) if unpack else bytes(view)
        except CorruptCacheError:
            raise
        except ValueError as exc:  # DecodeError: a record that does not unpack
            raise CorruptCacheError(f"{self._where(piece, offset)} (data indices {start}.."
                                    f"{end}) does not unpack: {exc}", piece.files.data,
                                    offset) from exc
        self.read_duration += time.perf_counter() - began
        return data, start, end

    def batch(self, first: int, stop: int) -> np.ndarray:
        """The records of the units at positions ``first..stop-1`` as a structured array."""
        began = time.perf_counter()
        size = self.header.record_size
        if self.header.encoding != "binary" or size is None:
            raise TypeError(f"{self.filename}: batches need records of a fixed-size format "
                            f"written in binary; these are "
                            f"{'JSON' if self.header.encoding == 'json' else 'of varying size'}")
        parts = []
        table = self.units.sub(first, stop)
        pieces = table.extra["piece"]
        k = 0
        while k < len(pieces):  # runs of one piece are consecutive: one read per piece
            m = k
            while m + 1 < len(pieces) and pieces[m + 1] == pieces[k]:
                m += 1
            piece = self.pieces[int(pieces[k])]
            offset = int(table.extra["offset"][k])
            count = int(table.counts[k:m + 1].sum())
            view = piece.read(offset, count * size, own=True)
            try:
                parts.append(self.record_type.unpack_batch(view, count))
            except ValueError as exc:  # DecodeError: a bool byte that is not 0 or 1, say
                raise CorruptCacheError(f"{piece.files.data}: the records from byte {offset} "
                                        f"do not unpack: {exc}", piece.files.data,
                                        offset) from exc
            k = m + 1
        self.read_duration += time.perf_counter() - began
        if not parts:
            assert self.record_type.batch_dtype is not None
            return np.zeros(0, self.record_type.batch_dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        for piece in self.pieces:
            piece.close()
        self.pieces = []
