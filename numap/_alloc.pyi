"""numap's numpy memory handler: large arrays of a worker process in shared memory.

Compiled from ``_alloc.c`` (see its header for the states of a segment).
"""

def install(prefix: str, threshold: int, keep: int, /) -> None:
    """Make numpy allocate arrays of at least ``threshold`` bytes in segments named
    ``/<prefix><n>`` in the current context (thread), keeping up to ``keep`` bytes
    of free segments for reuse."""

def block(address: int, nbytes: int, /) -> tuple[str, int] | None:
    """``(name, capacity)`` of the live segment that starts at ``address`` and holds
    exactly ``nbytes``, if it is one of this process's and not lent."""

def lend(address: int, /) -> bool:
    """A message names the segment at ``address``: not reused until given back."""

def unlend(address: int, /) -> bool:
    """The message does not name the segment at ``address`` after all."""

def live(address: int, /) -> bool:
    """Whether an array of this process still owns the segment at ``address``."""

def give_back(name: str, /) -> bool:
    """The receiver dropped the lent segment ``name``; whether it was one."""

def borrow(name: str, address: int, capacity: int, /) -> bool:
    """Make arrays in the received segment ``name`` (mapped at ``address`` by the
    caller, who keeps the mapping) until :func:`borrowed`; never unlinked nor
    unmapped here. Whether it was taken (not when the handler is not active here,
    or the segment is under the threshold)."""

def borrowed() -> list[str]:
    """Forget the borrowed segments that no array of this process is on (free, or
    named by a message); the names of those that one still is."""

def close() -> None:
    """Remove every segment's name and the free ones; allocate from the C library."""

def stats() -> dict[str, int]:
    """Counts of segments (used, spare, spare_bytes, made, reused, removed, fallbacks)
    and whether the handler is active here."""
