"""How a worker process's C allocator keeps the memory its large arrays free.

A stage that makes a new array (``a + 1`` rather than ``a += 1``) asks the C
allocator for a large block, and frees the one before. By default glibc gives
blocks of a few MiB their own mapping, or trims them off the top of its heap
as soon as two are free, and every new array then has the kernel fault in and
zero fresh pages: for an 8 MiB array that costs more than the arithmetic.

A worker process told to keep freed memory serves blocks up to
:data:`LARGEST_FROM_HEAP` from its heap and trims the heap only when more
than ``keep_freed`` bytes at its top are free, so the next array reuses the
pages the last one left. Blocks larger than that still get their own mapping
and go back to the system when freed. This changes only the worker processes
numap starts, never the caller's process.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["KEEP_FREED", "LARGEST_FROM_HEAP", "keep_freed"]

KEEP_FREED = 128 << 20
"""The default ``keep_freed`` of a NuMap: bytes of freed heap a worker process keeps."""

LARGEST_FROM_HEAP = 32 << 20
"""The largest block glibc can be told to serve from its heap (its own upper limit)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _glibc() -> ctypes.CDLL | None:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        return libc
    except (AttributeError, OSError, ValueError):  # not glibc, or no mallopt
        return None


def keep_freed(nbytes: int) -> bool:
    """Make this process keep up to ``nbytes`` of freed heap for reuse (glibc only).

    Returns whether the allocator took the settings; on another C library it
    does nothing and returns ``False``.
    """
    if nbytes < 0:
        raise ValueError(f"keep_freed must not be negative, got {nbytes}")
    libc = _glibc()
    if libc is None:
        return False
    trimmed = libc.mallopt(_M_TRIM_THRESHOLD, min(nbytes, 2**31 - 1))
    mapped = libc.mallopt(_M_MMAP_THRESHOLD, LARGEST_FROM_HEAP)
    return bool(trimmed and mapped)
