"""Shared memory: :class:`SharedMemoryArray`, an array every process can read and write.

NuMap moves large arrays between worker processes through shared memory on
its own (its ``shared_memory`` threshold, see :mod:`numap._shm`); this class
is for state that processes share on purpose. See ``docs/storage.md``.
"""

from .array import SharedMemoryArray

__all__ = ["SharedMemoryArray"]
