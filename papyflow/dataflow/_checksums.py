"""Checksums of cache files: XXH3 digests of blocks, and the checksum files that list them.

A cache file is checksummed in *blocks*: consecutive byte ranges that never
cut a record in two (a block holds whole small records, or one slice of a
record larger than :data:`BLOCK_SIZE`). A reader therefore verifies exactly
the blocks of the records it reads, whatever the size of the file, and can
say at which bytes (and which data indices) a file was damaged.

The checksum file of ``name`` is ``name.checksum``, UTF-8 text::

    papyflow-checksum 1 xxh3_64 <size of the file in bytes>
    <end offset of block 0> <16 hex digits>
    <end offset of block 1> <16 hex digits>
    ...

Block ``k`` covers the bytes from the end of block ``k - 1`` (0 for the first)
up to, not including, its end offset; the last end offset is the file size.

The checksums guard against damage (a flipped bit, a truncated or
overwritten file), not against an adversary: XXH3 (64 bits, from the
``xxhash`` package) misses random damage with odds of 1 in 2**64 and runs at
tens of GiB/s, faster than memory copies, so that verifying what is read
costs little next to reading it (CRC-32 ran at about 4 GiB/s here, SHA-256 at
under 2). The names of cached outputs are SHA-256 hashes, see
:mod:`papyflow.hash`; the reader also accepts ``crc32`` and ``sha256``
checksum files.

Hashing runs on a small pool of threads when there is much of it (``zlib``
and ``hashlib`` release the GIL), so that checksumming a large record costs
about half of its time on two cores.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import xxhash

from .errors import CorruptCacheError

__all__ = [
    "ALGORITHM",
    "BLOCK_SIZE",
    "Checksums",
    "format_checksums",
    "hash_blocks",
    "hash_later",
    "read_checksums",
]

ALGORITHM = "xxh3_64"
"""The checksum written; :data:`ALGORITHMS` are read."""
BLOCK_SIZE = 1 << 20
"""Bytes after which a writer closes a block (at the next record boundary)."""

_MAGIC = "papyflow-checksum"
_VERSION = 1
_PARALLEL_FROM = 4 * BLOCK_SIZE  # less than this is hashed in the calling thread

# The lines of a checksum file exactly as the writer makes them (ASCII digits,
# single spaces, lowercase hex), so that a damaged byte never reads as an
# equivalent spelling ("A" for "a", say) and goes unnoticed.
_HEAD = re.compile(rf"{_MAGIC} {_VERSION} ([a-z0-9_]+) (0|[1-9][0-9]*)", re.ASCII)
_BLOCK = re.compile(r"([1-9][0-9]*) ([0-9a-f]+)", re.ASCII)

_IDLE = 0.5  # seconds a hashing thread waits for work before it ends


class _Pool:
    """Threads that hash blocks; each ends after :data:`_IDLE` seconds without work.

    (A ``ThreadPoolExecutor`` would keep its threads for the life of the
    process; a process that read the cache once should not.)
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] \
            = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._waiting = 0
        self._started = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        with self._lock:
            # a thread more while the work waiting outnumbers the threads waiting for it
            if self._threads < self._workers and self._queue.qsize() > self._waiting:
                self._threads += 1
                self._started += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"papyflow-checksum-{self._started}").start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._waiting += 1
            try:
                future, fn, args = self._queue.get(timeout=_IDLE)
            except queue.Empty:
                with self._lock:
                    self._waiting -= 1
                    if self._queue.empty():
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._waiting -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
                future.set_exception(exc)


_pool: _Pool | None = None
_pool_pid = 0


def _workers() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(4, os.cpu_count() or 1))


def _executor() -> _Pool:
    """The hashing threads; a forked child makes its own (its parent's are not there)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = _Pool(_workers())
        _pool_pid = os.getpid()
    return _pool


def _crc32(parts: Sequence[Any]) -> bytes:
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value.to_bytes(4, "big")


def _xxh3_64(parts: Sequence[Any]) -> bytes:
    if len(parts) == 1:
        return xxhash.xxh3_64_digest(parts[0])
    hasher = xxhash.xxh3_64()
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def _sha256(parts: Sequence[Any]) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.digest()


ALGORITHMS = {"xxh3_64": (_xxh3_64, 8), "crc32": (_crc32, 4), "sha256": (_sha256, 32)}
"""The checksum algorithms read: the digest function and the digest's size in bytes."""


def _digest_many(blocks: Sequence[Sequence[Any]], algorithm: str = ALGORITHM) -> list[bytes]:
    digest = ALGORITHMS[algorithm][0]
    return [digest(parts) for parts in blocks]


def hash_blocks(blocks: Sequence[Sequence[Any]], size: int,
                while_hashing: Callable[[], None] | None = None,
                algorithm: str = ALGORITHM) -> list[bytes]:
    """The digests of ``blocks`` (each a sequence of bytes-like parts), in order.

    ``size`` is their total size: from :data:`_PARALLEL_FROM` bytes on, the
    blocks are hashed by the pool while ``while_hashing`` (writing them, say)
    runs in this thread. Without a pool worth using, ``while_hashing`` runs
    first, then the hashing.
    """
    workers = _workers()
    if size < _PARALLEL_FROM or len(blocks) < 2 or workers < 2:
        if while_hashing is not None:
            while_hashing()
        return _digest_many(blocks, algorithm)
    step = -(-len(blocks) // workers)
    futures = [_executor().submit(_digest_many, blocks[i:i + step], algorithm)
               for i in range(0, len(blocks), step)]
    try:
        if while_hashing is not None:
            while_hashing()
    finally:
        results = [future.result() for future in futures]
    return [digest for chunk in results for digest in chunk]


def hash_later(blocks: Sequence[Sequence[Any]], algorithm: str = ALGORITHM
               ) -> Future[list[bytes]]:
    """The digests of ``blocks``, computed by the pool while the caller goes on."""
    return _executor().submit(_digest_many, blocks, algorithm)


def format_checksums(size: int, ends: Sequence[int], digests: Sequence[bytes]) -> bytes:
    """The text of a checksum file."""
    lines = [f"{_MAGIC} {_VERSION} {ALGORITHM} {size}"]
    lines += [f"{end} {digest.hex()}" for end, digest in zip(ends, digests, strict=True)]
    return ("\n".join(lines) + "\n").encode()


class Checksums:
    """The block checksums of one file, as read from its checksum file.

    Attributes ``path`` (the checksummed file), ``algorithm``, ``size`` (its
    size when it was written), ``ends`` (int64 array of block end offsets)
    and ``digests``.
    """

    def __init__(self, path: str, size: int, ends: np.ndarray, digests: list[bytes],
                 algorithm: str = ALGORITHM) -> None:
        self.path = path
        self.algorithm = algorithm
        self.size = size
        self.ends = ends
        self.digests = digests
        self._verified = np.zeros(len(ends), bool)

    def bounds(self, k: int) -> tuple[int, int]:
        """Bytes ``[start, end)`` of block ``k``."""
        return (int(self.ends[k - 1]) if k else 0), int(self.ends[k])

    def blocks(self, start: int, stop: int) -> range:
        """The blocks holding bytes ``[start, stop)`` (``stop > start``)."""
        first = int(np.searchsorted(self.ends, start, side="right"))
        last = int(np.searchsorted(self.ends, stop - 1, side="right"))
        return range(first, last + 1)

    def check_size(self, actual: int) -> None:
        """Raise CorruptCacheError when the file's size is not the recorded one."""
        if actual < self.size:
            raise CorruptCacheError(f"{self.path}: truncated: the file ends at byte {actual}, "
                                    f"it was written with {self.size} bytes", self.path, actual)
        if actual > self.size:
            raise CorruptCacheError(f"{self.path}: {actual - self.size} bytes after byte "
                                    f"{self.size}, where the file ended when it was written",
                                    self.path, self.size)

    def verify(self, buffer: Any, offset: int, blocks: range,
               describe: Callable[[int, int], str] | None = None) -> None:
        """Check the blocks ``blocks`` held by ``buffer``, which starts at byte ``offset``.

        Blocks verified before are skipped. ``describe(start, stop)`` may add
        what the damaged bytes hold (the data indices) to the message.

        Raises:
            CorruptCacheError: a block's digest differs, naming the file and bytes.
        """
        todo = [k for k in blocks if not self._verified[k]]
        if not todo:
            return
        view = memoryview(buffer).cast("B")
        parts = []
        for k in todo:
            start, end = self.bounds(k)
            parts.append((view[start - offset:end - offset],))
        size = int(self.bounds(todo[-1])[1] - self.bounds(todo[0])[0])
        self.check(todo, hash_blocks(parts, size, algorithm=self.algorithm), describe)

    def unverified(self, blocks: range) -> list[int]:
        """Those of ``blocks`` not verified yet."""
        return [k for k in blocks if not self._verified[k]]

    def check(self, blocks: Sequence[int], digests: Sequence[bytes],
              describe: Callable[[int, int], str] | None = None) -> None:
        """Compare the digests computed for ``blocks`` with the recorded ones.

        Raises:
            CorruptCacheError: naming the file, the bytes (and what ``describe`` says).
        """
        for k, digest in zip(blocks, digests, strict=True):
            if digest != self.digests[k]:
                start, end = self.bounds(k)
                what = f" ({describe(start, end)})" if describe is not None else ""
                raise CorruptCacheError(f"{self.path}: checksum mismatch in bytes {start} to "
                                        f"{end - 1}{what}: the file changed after it was "
                                        "written", self.path, start)
            self._verified[k] = True


def read_checksums(path: str, checksum_path: str) -> Checksums:
    """Read the checksum file ``checksum_path`` of the file ``path``.

    Raises:
        FileNotFoundError: the checksum file is missing (the caller says why it matters).
        CorruptCacheError: it does not parse, naming the file and the line.
    """
    with open(checksum_path, "rb") as f:
        raw = f.read()

    def bad(line: int, why: str) -> CorruptCacheError:
        return CorruptCacheError(f"{checksum_path}: line {line}: {why}", checksum_path)

    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise CorruptCacheError(f"{checksum_path}: not UTF-8 text (byte {exc.start})",
                                checksum_path, exc.start) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise bad(len(lines), "the file does not end with a newline (truncated?)")
    head = _HEAD.fullmatch(lines[0]) if lines else None
    if head is None or head[1] not in ALGORITHMS:
        raise bad(1, f"expected '{_MAGIC} {_VERSION} <{' or '.join(ALGORITHMS)}> <size>', "
                     f"got {lines[0][:80] if lines else ''!r}")
    algorithm, size = head[1], int(head[2])
    digits = 2 * ALGORITHMS[algorithm][1]
    ends: list[int] = []
    digests: list[bytes] = []
    for number, line in enumerate(lines[1:], start=2):
        block = _BLOCK.fullmatch(line)
        if block is None or len(block[2]) != digits:
            raise bad(number, f"expected '<end offset> <{digits} lowercase hex digits>', "
                              f"got {line[:80]!r}")
        end, digest = int(block[1]), bytes.fromhex(block[2])
        if end <= (ends[-1] if ends else 0):
            raise bad(number, f"block end {end} does not follow the previous one")
        ends.append(end)
        digests.append(digest)
    if (ends[-1] if ends else 0) != size:
        raise bad(len(lines), f"the blocks end at byte {ends[-1] if ends else 0}, "
                              f"the file has {size} bytes")
    return Checksums(path, size, np.array(ends, np.int64), digests, algorithm)
