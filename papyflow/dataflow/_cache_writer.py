"""Writing an output to the cache: pieces under temporary names, then the commit.

::

    write, write_batch ──► current _Piece ──► <base>.tmp.<...>.<n>.data (hashed blocks)
                              │  rolls over at max_file_size      .index (runs)
                              ▼
    commit(): finish every piece (index footer, fsync)
              1. write each piece's two checksum files (temporary names, fsync)
              2. uncommit the old pieces in the declared range: remove their
                 .index files first (fsync the folder), then the rest
              3. rename the data and checksum files to their final names (fsync)
              4. rename the index files to their final names (fsync): the commit

A piece counts (for a reader) once its ``.index`` has its final name, and a
set of pieces only when all its pieces do. Killed anywhere, a writer leaves
the old version whole (before step 2), or nothing that reads as complete
(during steps 2 to 4), or the new version. ``sync=False`` skips the fsyncs:
still safe against a killed process, not against a crash of the machine.
"""

from __future__ import annotations

import os
import struct
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ._atomic import fsync_dir, new_session, remove_quietly
from ._cache_format import (
    RUN_DTYPE,
    Footer,
    PieceFiles,
    base_of,
    encode_footer,
    encode_header,
    scan,
)
from ._checksums import BLOCK_SIZE, format_checksums, hash_blocks
from ._json_codec import record_to_json

__all__ = ["CacheWriter"]

_FRAME = struct.Struct("<Q")  # the byte length before a record of a variable-size format


def _write_all(f: Any, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = f.write(view)
        if not written:  # pragma: no cover - a raw file that writes nothing
            raise OSError(f"{f.name}: write() wrote nothing")
        view = view[written:]


def _cut(parts: Sequence[Any], size: int) -> list[list[memoryview]]:
    """``parts`` (bytes-like) regrouped into blocks of ``size`` bytes (the last shorter)."""
    blocks: list[list[memoryview]] = []
    current: list[memoryview] = []
    room = size
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            take = view[:room]
            current.append(take)
            room -= len(take)
            view = view[len(take):]
            if room == 0:
                blocks.append(current)
                current, room = [], size
    if current:
        blocks.append(current)
    return blocks


_CHUNK = 1 << 16  # elements per step of the checks: their temporaries stay in the cache


def _all_chunked(test: Any, a: np.ndarray, b: np.ndarray, overlap: int = 0) -> bool:
    """Whether ``test(a_chunk, b_chunk)`` holds everywhere, a chunk at a time
    (``overlap`` elements shared between neighbouring chunks)."""
    for i in range(0, max(1, len(a) - overlap), _CHUNK):
        if not bool(test(a[i:i + _CHUNK + overlap], b[i:i + _CHUNK + overlap]).all()):
            return False
    return True


def _consecutive(starts: np.ndarray) -> bool:
    """Whether each start is the previous one plus one."""
    return _all_chunked(lambda s, _: s[1:] - s[:-1] == 1, starts, starts, overlap=1)


class _Parts:
    """A file-like object that keeps what ``pack_into`` writes, without copying it."""

    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.size = 0

    def write(self, data: Any) -> int:
        n = len(data) if isinstance(data, bytes | bytearray) else memoryview(data).nbytes
        self.parts.append(data)
        self.size += n
        return n


class _Piece:
    """One piece being written: its temporary data and index files and their checksums."""

    def __init__(self, base: str, session: str, number: int, header: bytes,
                 sync: bool) -> None:
        self.temp_data = f"{base}.{session}.{number}.data"
        self.temp_index = f"{base}.{session}.{number}.index"
        self.temp_data_checksum = f"{base}.{session}.{number}.data.checksum"
        self.temp_index_checksum = f"{base}.{session}.{number}.index.checksum"
        self.sync = sync
        self.nb_bytes = 0
        self._data = open(self.temp_data, "xb", buffering=0)  # noqa: SIM115 - closed by finish
        try:
            self._index: Any = open(self.temp_index, "xb", buffering=0)  # noqa: SIM115
        except BaseException:
            self._data.close()
            remove_quietly(self.temp_data)
            raise
        self.data_size = 0
        self.data_ends: list[int] = []
        self.data_digests: list[bytes] = []
        self.index_size = 0
        self.index_ends: list[int] = []
        self.index_digests: list[bytes] = []
        self._block = bytearray()
        self._index_buffer = bytearray()
        self.header_size = len(header)
        self._write_blocks([[header]], len(header))
        self.first: int | None = None  # first data index
        self.last = -1                 # last data index
        self.units = 0
        self.runs = 0
        # the open run: start and end of its first unit, count, offset, stride
        self._run: list[int] | None = None

    def temporaries(self) -> list[str]:
        return [self.temp_data, self.temp_index, self.temp_data_checksum,
                self.temp_index_checksum]

    # -- data blocks --------------------------------------------------------------------------

    def _write_blocks(self, blocks: list[list[Any]], size: int) -> None:
        """Write whole blocks (lists of parts) to the data file, hashing them meanwhile."""
        def write() -> None:
            for parts in blocks:
                for part in parts:
                    _write_all(self._data, part)

        digests = hash_blocks(blocks, size, write)
        for parts, digest in zip(blocks, digests, strict=True):
            self.data_size += sum(memoryview(p).nbytes for p in parts)
            self.data_ends.append(self.data_size)
            self.data_digests.append(digest)
        self.nb_bytes += size

    def flush_block(self) -> None:
        if self._block:
            block = self._block
            self._block = bytearray()
            self._write_blocks([[block]], len(block))

    def add_small(self, span: bytes | bytearray, start: int, end: int) -> None:
        """One record (its frame included) that is smaller than a block."""
        offset = self.data_size + len(self._block)
        self._block += span
        self._unit(start, end, offset, len(span))
        if len(self._block) >= BLOCK_SIZE:
            self.flush_block()

    def add_large(self, parts: list[Any], size: int, start: int, end: int) -> None:
        """One record (its frame included) of at least a block: blocks of its own."""
        self.flush_block()
        offset = self.data_size
        self._write_blocks(_cut(parts, BLOCK_SIZE), size)
        self._unit(start, end, offset, size)

    def add_fixed(self, packed: memoryview, record_size: int, starts: np.ndarray,
                  ends: np.ndarray | None) -> None:
        """Many records of ``record_size`` bytes, packed one after the other
        (``ends`` ``None``: units of one data index each)."""
        count = len(starts)
        if record_size >= BLOCK_SIZE:  # large records get blocks of their own
            self.flush_block()
        offset = self.data_size + len(self._block)
        per_block = -(-BLOCK_SIZE // record_size)
        taken = 0
        if self._block:  # top up the open block first
            taken = min(count, -(-(BLOCK_SIZE - len(self._block)) // record_size))
            self._block += packed[:taken * record_size]
            if len(self._block) >= BLOCK_SIZE:
                self.flush_block()
        whole = (count - taken) // per_block
        if whole:
            span = per_block * record_size
            blocks = [[packed[(taken * record_size) + k * span:
                              (taken * record_size) + (k + 1) * span]] for k in range(whole)]
            self._write_blocks(blocks, whole * span)
            taken += whole * per_block
        if taken < count:
            self._block += packed[taken * record_size:count * record_size]
        self._units(starts, ends, offset, record_size)

    # -- index runs -----------------------------------------------------------------------------

    def _unit(self, start: int, end: int, offset: int, stride: int) -> None:
        run = self._run
        if run is not None and end - start == run[1] - run[0] and stride == run[4]:
            run[2] += 1
        else:
            if run is not None:
                self._emit([tuple(run)])
            self._run = [start, end, 1, offset, stride]
        if self.first is None:
            self.first = start
        self.last = end
        self.units += 1

    def _units(self, starts: np.ndarray, ends: np.ndarray | None, offset: int,
               stride: int) -> None:
        """Many consecutive units whose records are ``stride`` bytes apart from ``offset``
        (``ends`` ``None``: units of one data index each)."""
        if ends is None:  # one run
            lengths = np.zeros(1, np.int64)
            breaks = np.zeros(0, np.int64)
        else:
            lengths = ends - starts
            breaks = np.flatnonzero(lengths[1:] != lengths[:-1]) + 1
        firsts = np.concatenate(([0], breaks))
        counts = np.diff(np.append(firsts, len(starts)))
        run = self._run
        begin = 0
        if run is not None and int(lengths[0]) == run[1] - run[0] and stride == run[4]:
            run[2] += int(counts[0])  # the open run goes on
            begin = 1
        if begin < len(firsts):
            if run is not None:
                self._emit([tuple(run)])
            rows = np.zeros(len(firsts) - begin, RUN_DTYPE)
            picked = firsts[begin:]
            rows["start"] = starts[picked]
            rows["end"] = (starts if ends is None else ends)[picked]
            rows["count"] = counts[begin:]
            rows["offset"] = offset + picked * stride
            rows["stride"] = stride
            table: list[Any] = rows.tolist()
            if len(table) > 1:
                self._emit(table[:-1])
            self._run = list(table[-1])
        if self.first is None:
            self.first = int(starts[0])
        self.last = int((starts if ends is None else ends)[-1])
        self.units += len(starts)

    def _emit(self, runs: list[tuple[int, ...]]) -> None:
        self._index_buffer += np.array(runs, RUN_DTYPE).tobytes()
        self.runs += len(runs)
        if len(self._index_buffer) >= BLOCK_SIZE:
            self._flush_index(whole_blocks_only=True)

    def _flush_index(self, whole_blocks_only: bool) -> None:
        buffer = self._index_buffer
        stop = len(buffer) - len(buffer) % BLOCK_SIZE if whole_blocks_only else len(buffer)
        if not stop:
            return
        view = memoryview(buffer)[:stop]
        blocks = _cut([view], BLOCK_SIZE)
        for parts, digest in zip(blocks, hash_blocks(blocks, stop), strict=True):
            for part in parts:
                _write_all(self._index, part)
                self.index_size += len(part)
            self.index_ends.append(self.index_size)
            self.index_digests.append(digest)
        del view, blocks
        self._index_buffer = buffer[stop:]
        self.nb_bytes += stop

    # -- finishing ------------------------------------------------------------------------------

    def close_data(self) -> None:
        """The piece is full (or the sink closes): its data file is done."""
        if self._data.closed:
            return
        self.flush_block()
        if self._run is not None:
            self._emit([tuple(self._run)])
            self._run = None
        self._flush_index(whole_blocks_only=True)
        if self.sync:
            os.fsync(self._data.fileno())
        self._data.close()
        self._index.close()

    def finish(self, set_start: int, set_end: int) -> None:
        """Complete the index with its footer and write both checksum files."""
        assert self.first is not None
        self.close_data()
        footer = Footer(self.runs, self.units, self.first, self.last, set_start, set_end,
                        self.data_size)
        self._index_buffer += encode_footer(footer)
        with open(self.temp_index, "ab", buffering=0) as index:
            self._index = index
            self._flush_index(whole_blocks_only=False)
            if self.sync:
                os.fsync(index.fileno())
        for temp, size, ends, digests in (
                (self.temp_data_checksum, self.data_size, self.data_ends, self.data_digests),
                (self.temp_index_checksum, self.index_size, self.index_ends,
                 self.index_digests)):
            text = format_checksums(size, ends, digests)
            with open(temp, "xb", buffering=0) as f:
                _write_all(f, text)
                if self.sync:
                    os.fsync(f.fileno())
            self.nb_bytes += len(text)

    def abandon(self) -> None:
        for f in (self._data, self._index):
            if not f.closed:
                f.close()


def _discard(pieces: list[_Piece], paths: list[str]) -> None:
    """Close and remove the temporary files of a writer that was not committed."""
    for piece in pieces:
        piece.abandon()
    for path in paths:
        remove_quietly(path)


class CacheWriter:
    """Writes the units of one output for the data indices ``start_index..end_index``.

    Units come in order, each starting right after the previous one ends, the
    first at ``start_index``. :meth:`commit` makes them the cache's version of
    that range; :meth:`discard` (or losing the writer) leaves the cache as it was.
    """

    def __init__(self, filename: str, dataformat: DataFormat, start_index: int,
                 end_index: int, encoding: str = "binary", max_file_size: int | None = None,
                 sync: bool = True) -> None:
        if encoding not in ("binary", "json"):
            raise ValueError(f"unknown encoding {encoding!r}: 'binary' or 'json'")
        for name, value in (("start_index", start_index), ("end_index", end_index)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if not 0 <= start_index <= end_index:
            raise ValueError(f"invalid data index range {start_index}..{end_index}: "
                             "expected 0 <= start_index <= end_index")
        if max_file_size is not None and max_file_size < 1:
            raise ValueError(f"max_file_size must be at least 1 byte, not {max_file_size}")
        self.filename = os.fspath(filename)
        self.base = base_of(self.filename)
        folder = os.path.dirname(self.base)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.dataformat = dataformat
        self.record_type: type[baseformat] = dataformat.type
        self.start_index = int(start_index)
        self.end_index = int(end_index)
        self.encoding = encoding
        self.max_file_size = max_file_size
        self.sync = sync
        size = self.record_type.packed_size
        self.record_size = size if encoding == "binary" and size else None
        anonymous = dataformat.storage is None
        self._header = encode_header(encoding, dataformat.name, dataformat.hash(),
                                     self.record_size, dataformat.data if anonymous else None)
        self._session = new_session()
        self._pieces: list[_Piece] = []
        self._temporaries: list[str] = []
        self._finalizer = weakref.finalize(self, _discard, self._pieces, self._temporaries)
        self.next_index = self.start_index
        self.closed = False

    @property
    def nb_bytes_written(self) -> int:
        """Bytes written to the files so far (data, index, checksums)."""
        return sum(piece.nb_bytes for piece in self._pieces)

    # -- checks ---------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"cache {self.filename}"

    def _check(self, start: int, end: int) -> None:
        if self.closed:
            raise ValueError(f"{self._where()}: the sink is closed")
        if start != self.next_index or end < start or end > self.end_index:
            raise ValueError(self._refusal(start, end, self.next_index))

    def _refusal(self, start: int, end: int, expected: int) -> str:
        """Why the unit ``start..end`` cannot come when ``expected`` is the next index."""
        what = f"{self._where()}: cannot write data indices {start}..{end}"
        if end < start:
            return f"{what}: the range ends before it starts"
        if start < expected:
            written = f"{self.start_index}..{expected - 1}"
            return (f"{what}: out of order or overlapping (indices {written} are written, "
                    f"the next unit starts at {expected})")
        if start > expected:
            return (f"{what}: it leaves a gap (the next unit starts at {expected}; "
                    "units must cover every index)")
        return f"{what}: beyond the declared range {self.start_index}..{self.end_index}"

    # -- writing --------------------------------------------------------------------------------

    def _piece(self) -> _Piece:
        """The piece to write the next unit into (a new one past ``max_file_size``)."""
        if self._pieces:
            piece = self._pieces[-1]
            if self.max_file_size is None or piece.data_size + len(piece._block) \
                    < self.max_file_size:
                return piece
            piece.close_data()
        piece = _Piece(self.base, self._session, len(self._pieces), self._header, self.sync)
        self._pieces.append(piece)
        self._temporaries.extend(piece.temporaries())
        return piece

    def write(self, record: baseformat, start: int, end: int) -> None:
        """Append one unit: ``record`` covering ``start..end``."""
        self._check(start, end)
        piece = self._piece()
        if self.encoding == "json":
            line = record_to_json(record, start, end)
            if len(line) < BLOCK_SIZE:
                piece.add_small(line, start, end)
            else:
                piece.add_large([line], len(line), start, end)
        elif self.record_size is not None and self.record_size < BLOCK_SIZE:
            piece.add_small(record.pack(), start, end)
        else:
            parts = _Parts()
            record.pack_into(parts)
            if self.record_size is None:
                parts.parts.insert(0, _FRAME.pack(parts.size))
                parts.size += _FRAME.size
            if parts.size < BLOCK_SIZE:
                piece.add_small(b"".join(parts.parts), start, end)
            else:
                piece.add_large(parts.parts, parts.size, start, end)
        self.next_index = end + 1

    def write_batch(self, packed: bytes | memoryview, starts: np.ndarray,
                    ends: np.ndarray | None) -> None:
        """Append many units of a fixed-size format: ``packed`` holds their records
        one after the other (as ``pack_batch`` makes them); ``ends`` ``None``
        makes units of one data index each."""
        if self.closed:
            raise ValueError(f"{self._where()}: the sink is closed")
        if not len(starts):
            return
        last = int(starts[-1] if ends is None else ends[-1])
        if (int(starts[0]) != self.next_index or last > self.end_index
                or not (ends is None or _all_chunked(lambda a, b: b >= a, starts, ends))
                or not (_consecutive(starts) if ends is None
                        else _all_chunked(lambda s, e: s[1:] == e[:-1] + 1, starts, ends,
                                          overlap=1))):
            ends = starts if ends is None else ends
            expected = np.concatenate(([self.next_index], ends[:-1] + 1))
            bad = np.flatnonzero((starts != expected) | (ends < starts)
                                 | (ends > self.end_index))
            k = int(bad[0])
            raise ValueError(f"unit {k} of the batch: "
                             + self._refusal(int(starts[k]), int(ends[k]), int(expected[k])))
        assert self.record_size is not None
        size = self.record_size
        view = memoryview(packed).cast("B")
        done = 0
        while done < len(starts):
            piece = self._piece()
            count = len(starts) - done
            if self.max_file_size is not None:
                room = self.max_file_size - piece.data_size - len(piece._block)
                count = max(1, min(count, -(-room // size)))
            piece.add_fixed(view[done * size:(done + count) * size], size,
                            starts[done:done + count],
                            None if ends is None else ends[done:done + count])
            done += count
        self.next_index = last + 1

    # -- committing -----------------------------------------------------------------------------

    def commit(self) -> list[PieceFiles]:
        """Make what was written the cache's version of the declared range.

        Returns the pieces committed (none when nothing was written: the cache
        is then left as it was).
        """
        if self.closed:
            return []
        self.closed = True
        pieces = [p for p in self._pieces if p.units]
        if not pieces:
            self.discard()
            return []
        set_start, set_end = self.start_index, self.next_index - 1
        files = []
        for piece in pieces:
            assert piece.first is not None
            names = PieceFiles(self.base, piece.first, piece.last)
            piece.finish(set_start, set_end)
            files.append(names)
        for piece in self._pieces:
            if not piece.units:
                _discard([piece], piece.temporaries())
        folder = os.path.dirname(self.base)
        self._uncommit_old(folder)
        for piece, names in zip(pieces, files, strict=True):
            os.replace(piece.temp_data, names.data)
            os.replace(piece.temp_data_checksum, names.data_checksum)
            os.replace(piece.temp_index_checksum, names.index_checksum)
        if self.sync:
            fsync_dir(folder)
        for piece, names in zip(pieces, files, strict=True):
            os.replace(piece.temp_index, names.index)
        if self.sync:
            fsync_dir(folder)
        self._temporaries.clear()
        self._finalizer.detach()
        return files

    def _uncommit_old(self, folder: str) -> None:
        """Remove the pieces of earlier versions in the declared range, index files first."""
        old = [PieceFiles(self.base, start, end) for (start, end) in scan(self.base).pieces
               if start <= self.end_index and end >= self.start_index]
        if not old:
            return
        for names in old:
            remove_quietly(names.index)
        if self.sync:
            fsync_dir(folder)
        for names in old:
            for path in names.all()[1:]:
                remove_quietly(path)

    def discard(self) -> None:
        """Forget what was written: remove the temporary files."""
        self.closed = True
        self._finalizer()
