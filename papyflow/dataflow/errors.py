"""The exceptions of the on-disk cache of data units.

``CacheError`` is the family; each situation beneath it also subclasses the
builtin a caller already catches::

    CacheError
    ├── CorruptCacheError (ValueError)            bytes that are not what was written:
    │                                             a checksum mismatch, a truncated file,
    │                                             an index with a gap or an overlap, ...
    └── MissingCacheFileError (FileNotFoundError) a committed file set lacks one of its files

Every message names the file and, when it is known, the byte offset and the
data indices concerned. Writing units out of order or outside the declared
range raises a plain ``ValueError``; reading outside the available range a
plain ``IndexError``: those are mistakes of the caller, not of the cache.
"""

from __future__ import annotations

__all__ = ["CacheError", "CorruptCacheError", "MissingCacheFileError"]


class CacheError(Exception):
    """Base of every problem found in the files of the cache.

    Attributes ``path`` (the file concerned) and ``offset`` (the byte offset in
    it, ``None`` when the problem is not at one place).
    """

    def __init__(self, message: str, path: str = "", offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class CorruptCacheError(CacheError, ValueError):
    """A cache file does not hold what its writer wrote: its checksum does not
    match, it is shorter or longer than recorded, or its contents contradict
    each other (an index with a gap or an overlap, a header that does not parse)."""


class MissingCacheFileError(CacheError, FileNotFoundError):
    """A committed set of cache files lacks one of its files (a checksum file,
    say): the cache was damaged after it was written."""
