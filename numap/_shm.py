"""Large buffers through POSIX shared memory instead of a pipe.

A large numpy array in an item or a result (an out-of-band buffer of the
pickle, see :mod:`numap._wire`) of at least the NuMap's ``shared_memory``
threshold is copied once into a shared-memory segment of the sending
process's :class:`Pool`; the frame carries the segment's name instead of the
bytes. The receiver maps the segment and unpickles the array as a view of
the mapping (no copy)::

    sender                                   receiver
    Pool.put(buffer): a free segment of      Receiver.take(name): map it; the array
    the right size (or a new one), one       is a view of the mapping
    memcpy; the segment is now in use                 |
                 ^                                    | the array (every view of it) dropped
                 +--- FREE frame: its name <--------- + the mapping closes; the name is
                     (the segment can be reused)        reported back with the next frame

Reusing segments matters: a fresh segment costs the kernel a zeroed page per
4 KiB, which is slower than a pipe; a reused one costs only the copy. A pool
keeps at most :data:`KEEP_FREE` bytes of free segments and removes the rest.

A worker that returns an array it received, whole, sends back that segment
(:meth:`Pool.claim`) instead of a copy, unless it keeps an array on it after
the message is pickled: then a copy goes, so that what it changes later is
never the receiver's array.

Every segment is named ``numap-<parent pid>-<token>-...`` after the pool of
the NuMap that made it, so that :func:`sweep` finds and removes what is left
when the pool stops or loses a worker, or, from the workers, when the NuMap's
process dies without stopping it (a process that holds an array keeps its
mapping: removing a name never pulls memory from under an array).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import itertools
import mmap
import os
import secrets
import sys
import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, NamedTuple

try:  # the module behind multiprocessing.shared_memory on POSIX systems
    import _posixshmem
except ImportError:  # pragma: no cover - not a POSIX system
    _posixshmem = None

_alloc: Any = None  # numap._alloc, numap's numpy allocator, once numpy is loaded

_copy_bytes: Callable[[Any, Any], None] | None
try:  # compiled: copies into segments with streaming stores (see _stream.c)
    from ._stream import STREAM_MIN as _STREAM_FLOOR
    from ._stream import copy as _copy_bytes
except ImportError:  # an install made without a C compiler: numpy copies
    _copy_bytes = None
    _STREAM_FLOOR = 1 << 20

CPU_CACHE = "/sys/devices/system/cpu"
"""Where the kernel describes each CPU's caches (``cpuN/cache/indexK/``)."""
STREAM_FROM_VARIABLE = "NUMAP_STREAM_FROM"
"""The environment variable that sets :data:`STREAM_FROM`, in bytes."""
_STREAM_SHARE = 8  # streaming stores from an eighth of the last-level cache


def usable_cpus() -> int:
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def last_level_cache(root: str = CPU_CACHE) -> int | None:
    """Bytes of the last-level cache that every CPU this process may run on shares
    (the largest data cache of the first of them, as the kernel reports it under
    ``root``); ``None`` where none is reported, or where those CPUs do not all
    share it (its workers may then read an item through another cache)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = {0}
    folder = os.path.join(root, f"cpu{min(cpus, default=0)}", "cache")
    try:
        entries = os.listdir(folder)
    except OSError:
        return None
    largest: tuple[int, str] | None = None
    for entry in entries:
        try:
            if not entry.startswith("index") or \
                    _read(folder, entry, "type") not in ("Data", "Unified"):
                continue
            size = _cache_bytes(_read(folder, entry, "size"))
        except (OSError, ValueError):
            continue
        if largest is None or size > largest[0]:
            largest = size, entry
    if largest is None:
        return None
    try:
        shared = _cpu_list(_read(folder, largest[1], "shared_cpu_list"))
    except (OSError, ValueError):
        return None
    return largest[0] if cpus <= shared else None


def _read(*path: str) -> str:
    """The text of one file of the kernel's, stripped."""
    with open(os.path.join(*path)) as text:
        return text.read().strip()


def _cache_bytes(text: str) -> int:
    """``"2048K"`` -> 2097152 (the kernel's notation of a cache's size)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def _cpu_list(text: str) -> set[int]:
    """``"0-2,5"`` -> {0, 1, 2, 5} (the kernel's notation of a set of CPUs)."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def stream_from(environ: Any = os.environ, root: str = CPU_CACHE) -> int:
    """The smallest copy into a segment that takes streaming stores.

    A copy with ordinary stores leaves the segment in the cache, where the process
    that reads it next finds it if the bytes copied in the meantime have not pushed
    it out: with a last-level cache that holds several items, that saves reading
    them from memory again. Streaming stores skip the cache and pay where it cannot
    hold them. So copies of at least an eighth of the last-level cache stream,
    unless :data:`STREAM_FROM_VARIABLE` in ``environ`` gives the number of bytes
    (an empty value counts as none); with no cache reported, or one that not every
    CPU of this process shares, copies stream from 1 MiB. Smaller copies never
    stream, whatever the setting: the compiled copy streams from 1 MiB.
    """
    return stream_choice(environ, root).nbytes


class StreamChoice(NamedTuple):
    """What :func:`stream_choice` picked, and from what."""

    nbytes: int  # the smallest copy that streams
    given: int | None  # the environment's number of bytes, when it gives one
    cache: int | None  # the last-level cache counted, when the environment gives none
    raised: bool  # whether the compiled copy's floor raised the number


def stream_choice(environ: Any = os.environ, root: str = CPU_CACHE) -> StreamChoice:
    """:func:`stream_from`'s number with what it came from (a run's report says why)."""
    given = environ.get(STREAM_FROM_VARIABLE, "").strip()
    if given:
        if not (given.isascii() and given.isdigit()):
            raise ValueError(f"{STREAM_FROM_VARIABLE} must be a whole number of bytes, "
                             f"got {environ[STREAM_FROM_VARIABLE]!r}")
        number = int(given)
        return StreamChoice(max(_STREAM_FLOOR, number), number, None, number < _STREAM_FLOOR)
    cache = last_level_cache(root)
    if cache is None:
        return StreamChoice(_STREAM_FLOOR, None, None, False)
    share = cache // _STREAM_SHARE
    return StreamChoice(max(_STREAM_FLOOR, share), None, cache, share < _STREAM_FLOOR)


STREAM_FROM = stream_from()
"""Copies into segments of this many bytes or more take streaming stores (where
numap's compiled copy is built): see :func:`stream_from`. Read when numap is
imported; forked worker processes keep their parent's value."""

__all__ = ["KEEP_FREE", "RECEIVER", "SHM_FOLDER", "Lease", "Pool", "Receiver", "available",
           "new_prefix", "sweep"]

SHM_FOLDER = "/dev/shm"
KEEP_FREE = 512 << 20  # bytes of free segments a pool keeps for reuse
KEEP_MAPPED = 1 << 30  # bytes of received segments a process keeps mapped for reuse
_PAGE = 1 << 16
SMALLEST_ALLOCATED = 64 * 1024
"""The smallest array numap's allocator makes in a segment, whatever the threshold: a
smaller buffer travels in the pickle itself (``numap._wire.OUT_OF_BAND_MIN``)."""


def available() -> bool:
    """Whether this system has POSIX shared memory as numap uses it."""
    return _posixshmem is not None and os.path.isdir(SHM_FOLDER)


def new_prefix() -> str:
    """A name prefix for the segments of one NuMap's pool."""
    return f"numap-{os.getpid()}-{secrets.token_hex(4)}-"


def worker_prefix(prefix: str, pid: int | None = None) -> str:
    """The name prefix of the pool of worker process ``pid`` of the NuMap whose pool has
    ``prefix``; without ``pid``, what the pools of all its workers start with."""
    return f"{prefix}w" if pid is None else f"{prefix}w{pid}-"


def allocator_available() -> bool:
    """Whether this install has numap's allocator of arrays in shared memory (it is
    compiled: an install made without a C compiler has none)."""
    return importlib.util.find_spec("numap._alloc") is not None and available()


class Lent(NamedTuple):
    """A segment of this process's allocator that a message is about to name: it goes
    without a copy only if numpy has freed its array once the message is pickled
    (see :meth:`Pool.lend`)."""

    name: str
    size: int
    capacity: int
    address: int


class Lease(NamedTuple):
    """A segment this process received and maps: where an array built on it starts."""

    name: str
    size: int
    capacity: int
    array: weakref.ref[Any]  # the array over its bytes, alive while any view of it is


@dataclass(eq=False, slots=True)
class _Segment:
    name: str
    capacity: int
    mapping: mmap.mmap
    view: memoryview


class Pool:
    """The segments one process sends through: ``<prefix><n>``, reused once freed.

    Args:
        prefix: the NuMap's prefix (a worker process adds ``w<pid>-`` to it).
        threshold: the smallest buffer, in bytes, that goes through a segment.
    """

    def __init__(self, prefix: str, threshold: int, forward_to: str | None = None, *,
                 split_copies: bool = False, allocate: bool = False) -> None:
        self.prefix = prefix
        self.threshold = threshold
        self.forward_to = forward_to
        # Arrays of at least ``threshold`` bytes that numpy makes here live in segments
        # of their own, named ``<prefix>a<n>`` (only in a worker process: it sets numpy's
        # allocator for the process's main thread), once numpy is loaded: see allocate().
        self._allocate = allocate and allocator_available()
        self.allocated: str | None = None
        # Whether large arrays went through this process (an item came in a segment, a
        # result had a large buffer): until then numpy keeps its own handler, which is
        # faster on small arrays (about 50 ns an operation: the shm benchmark measures it).
        self.large_seen = False
        # The NuMap's own process copies every large item on one thread, while the
        # workers run in parallel: where a CPU is left for it, a streaming copy in two
        # halves on two threads pays (see _copy; the caller knows the workers).
        self.split_copies = split_copies
        self._numbers = itertools.count()
        self._free: list[_Segment] = []
        self._used: dict[str, _Segment] = {}
        self._refs: dict[str, int] = {}  # messages in flight and arrays alive, per segment
        # Segments of ``forward_to`` lent to the allocator (their mappings, kept for it)
        # and those of them an array of this process is still on (not given back yet).
        self._borrowed: dict[str, mmap.mmap] = {}
        self._held: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()
        _LOCAL[prefix] = self

    def claim(self, buffer: memoryview) -> Lease | None:
        """The lease of ``buffer`` when it is a whole segment received from the pool
        ``forward_to`` (a worker returning an array it was given, changed in place).
        It may go back as that segment, without a copy, if nothing in this process
        holds an array on it once the message is pickled (see
        :meth:`numap._wire.Pickled.parts`): an array this process keeps, to change it
        later, must not be the receiver's array too."""
        if self.forward_to is None:
            return None
        lease = RECEIVER.lease_of(buffer)
        if lease is not None and lease.size == buffer.nbytes and \
                lease.name.startswith("/" + self.forward_to) and \
                not lease.name.startswith("/" + worker_prefix(self.forward_to)):
            return lease  # (a segment of the NuMap's own pool, not of a worker's)
        return None

    def allocate(self) -> None:
        """Have numpy make this thread's large arrays in segments of this pool, if the
        pool was made with ``allocate``, numpy is loaded (a pipeline of plain Python
        objects never loads it for this) and large arrays went through this process
        (:attr:`large_seen`); called before each batch."""
        global _alloc
        if not self._allocate or not self.large_seen or "numpy" not in sys.modules:
            return
        self._allocate = False
        from . import _alloc

        self.allocated = f"{self.prefix}a"
        # (smaller buffers travel in the pickle itself: a segment would gain nothing)
        _alloc.install(self.allocated, max(self.threshold, SMALLEST_ALLOCATED), KEEP_FREE)
        if self.forward_to is not None:
            RECEIVER.borrower = self

    def borrow(self, name: str, address: int, mapping: mmap.mmap) -> None:
        """The last array on ``name``, a segment of ``forward_to`` received here, went:
        numpy may make this process's next arrays in it until :meth:`given_back` (its
        lines were just read; the next array written there finds them in the cache)."""
        if self.allocated is not None and _alloc.borrow(name, address, len(mapping)):
            self._borrowed[name] = mapping

    def given_back(self, freed: list[str]) -> list[str]:
        """Of ``freed`` (the segments of ``forward_to`` dropped here, to be given back
        once a batch is sent), those that may go back now: every one but those an array
        made here is still on, which go back in a later call, once it has gone."""
        if not self._borrowed:
            return freed
        # A finalizer may borrow meanwhile (in any thread, even while the list of the
        # held is made): only the segments borrowed before that call are let go here.
        before = set(self._borrowed)
        held = set(_alloc.borrowed())  # the others are forgotten by the allocator now
        for name in before - held:
            self._borrowed.pop(name, None)
        back = [n for n in freed if n not in held] + [n for n in self._held if n not in held]
        self._held = held
        return back

    def lend(self, buffer: memoryview, taken: Container[str] = ()) -> Lent | None:
        """The allocator's segment of ``buffer`` when the buffer is a whole one, now
        reserved for a message: numpy may free the array, but the segment stays
        mapped and is not reused until its receiver gives it back (:meth:`release`).
        It may go without a copy only if numpy has freed the array once the message
        is pickled: :meth:`settle` says what the message carries. ``None`` for a
        segment in ``taken`` (one the message names already, for another array)."""
        if self.allocated is None:
            return None
        import numpy as np

        address = np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0]
        found = _alloc.block(address, buffer.nbytes)
        if found is None or found[0] in taken:
            return None
        _alloc.lend(address)
        return Lent(found[0], buffer.nbytes, found[1], address)

    def settle(self, held: Lease | Lent) -> tuple[str, int, int] | memoryview:
        """What a message carries for the segment of ``held`` (:meth:`claim`,
        :meth:`lend`) once it holds nothing more of the array: the segment itself
        when nothing here has the array any more (nothing here can change it); else a
        copy, in another segment (its name) or, when no segment can be had, as a
        buffer for the pipe."""
        if isinstance(held, Lease):
            array = held.array()  # still alive: something here keeps it, to change it later
            if array is None:
                return held.name, held.size, held.capacity
            return self._copy_out(memoryview(array))
        if not _alloc.live(held.address):
            return held.name, held.size, held.capacity
        # Something here still has the array (whatever the objects between): a copy.
        # Lent, the segment stays mapped while it is read, even if the array goes.
        data = memoryview((ctypes.c_ubyte * held.size).from_address(held.address)).cast("B")
        copied = self._copy_out(data)
        if isinstance(copied, memoryview):  # the pipe reads it later: bytes of its own
            copied = memoryview(bytes(copied))
        del data
        _alloc.unlend(held.address)
        return copied

    def _copy_out(self, data: memoryview) -> tuple[str, int, int] | memoryview:
        """``data`` copied into a segment (its name), or ``data`` itself when no segment
        can be had (the receiver must not get the sender's array)."""
        placed = self.put(data)
        return data if placed is None else placed

    def put(self, buffer: memoryview) -> tuple[str, int, int] | None:
        """``buffer`` copied into a segment: ``(name, size, capacity)``; ``None`` when no
        segment can be had (then the buffer goes through the pipe)."""
        size = buffer.nbytes
        with self._lock:
            segment = self._reuse(size)
        if segment is None:
            segment = self._create(size)
            if segment is None:
                return None
        # numpy copies without the GIL: the process's other threads go on meanwhile
        import numpy as np  # only once arrays come (and numpy is loaded anyway)

        _copy(np.frombuffer(segment.view, dtype=np.uint8, count=size),
              np.frombuffer(buffer.cast("B"), dtype=np.uint8), self.split_copies)
        with self._lock:
            if self._closed:  # closed meanwhile (NuMap stopped): nothing may outlive close()
                _drop(segment)
                return None
            self._used[segment.name] = segment
            self._refs[segment.name] = 1
        return segment.name, size, segment.capacity

    def adopt(self, name: str) -> bool:
        """One more array of this process on the segment ``name`` (forwarded back here)."""
        with self._lock:
            if name not in self._used:
                return False
            self._refs[name] = self._refs.get(name, 0) + 1
            return True

    def _reuse(self, size: int) -> _Segment | None:
        """The smallest free segment that fits ``size`` bytes, the last freed of those
        (its lines are the likeliest to be in the cache still, which a copy with
        ordinary stores then writes without fetching them from memory)."""
        best = None
        for segment in reversed(self._free):  # the last freed first
            if size <= segment.capacity <= 2 * size + _PAGE and \
                    (best is None or segment.capacity < best.capacity):
                best = segment
        if best is not None:
            self._free.remove(best)
        return best

    def _create(self, size: int) -> _Segment | None:
        capacity = -(-size // _PAGE) * _PAGE
        name = f"/{self.prefix}{next(self._numbers)}"
        try:
            fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
        except OSError:
            return None
        try:
            os.ftruncate(fd, capacity)
            # Reserve the pages now: on a full /dev/shm this fails here (and the pipe
            # takes the buffer) instead of killing the process with SIGBUS on the copy.
            os.posix_fallocate(fd, 0, capacity)
            mapping = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        except (OSError, ValueError):  # /dev/shm is full: the pipe takes it
            with contextlib.suppress(OSError):
                _posixshmem.shm_unlink(name)
            return None
        finally:
            os.close(fd)
        return _Segment(name, capacity, mapping, memoryview(mapping))

    def release(self, names: list[str]) -> None:
        """The receivers dropped these segments: reuse them (keeping :data:`KEEP_FREE` bytes)."""
        allocated = self.allocated
        if allocated is not None:
            names = [n for n in names if not (n.startswith("/" + allocated)
                                              and _alloc.give_back(n))]
        with self._lock:
            for name in names:
                left = self._refs.get(name, 0) - 1
                if left > 0:
                    self._refs[name] = left
                    continue
                self._refs.pop(name, None)
                segment = self._used.pop(name, None)
                if segment is not None:
                    self._free.append(segment)
            kept = 0
            for segment in sorted(self._free, key=lambda s: -s.capacity):
                kept += segment.capacity
                if kept > KEEP_FREE:
                    self._free.remove(segment)
                    _drop(segment)

    def close(self) -> None:
        """Remove every segment of this pool (arrays that receivers hold stay valid)."""
        with self._lock:
            self._closed = True  # a segment being filled now is removed by put()
            for segment in [*self._free, *self._used.values()]:
                _drop(segment)
            self._free.clear()
            self._used.clear()
            self._refs.clear()
        if self.allocated is not None:
            _alloc.close()
        _LOCAL.pop(self.prefix, None)


_HELPER: tuple[int, Any] | None = None  # (pid, executor): one copying thread per process
_HELPER_LOCK = threading.Lock()
_SPLIT = 4 << 20  # the smallest copy that is split


def _copy(target: Any, source: Any, split: bool) -> None:
    """``target[:] = source`` (byte arrays of one size). A copy of :data:`STREAM_FROM`
    bytes or more skips the cache where numap's compiled copy is built (it writes
    memory without reading it first): see :func:`stream_from`. Such a copy is bound
    by what one core moves to memory: with ``split``, it goes in two halves, one on
    a helper thread, both without the GIL. Only where a CPU is left for the helper
    (see :func:`spare_cpu`): on CPUs the workers keep busy, the copy waits for the
    helper to get one. A copy into the cache is not split: the handing over costs
    more than it saves, and half of the item would be left in the other core's own
    cache."""
    global _HELPER

    size = source.nbytes
    copy: Callable[[Any, Any], None] = _copy_array
    if _copy_bytes is not None and size >= STREAM_FROM:
        copy = _copy_bytes
    if not split or copy is not _copy_bytes or size < _SPLIT:
        copy(target, source)
        return
    with _HELPER_LOCK:
        if _HELPER is None or _HELPER[0] != os.getpid():  # a forked process has no thread
            from concurrent.futures import ThreadPoolExecutor
            _HELPER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="numap-copy"))
        helper = _HELPER[1]
    half = (size // 2) & ~63
    other = helper.submit(copy, target[half:], source[half:])
    copy(target[:half], source[:half])
    other.result()


def spare_cpu(workers: int) -> bool:
    """Whether this process may run on a CPU beyond one for each of ``workers`` worker
    processes and one for its own thread that feeds them: a thread that helps with
    copies gets one of its own only then."""
    return usable_cpus() > workers + 1


def _copy_array(target: Any, source: Any) -> None:
    import numpy as np

    np.copyto(target, source)


def _drop(segment: _Segment) -> None:
    with contextlib.suppress(OSError):
        _posixshmem.shm_unlink(segment.name)
    segment.view.release()
    with contextlib.suppress(BufferError):  # a view still exported: closed when it goes
        segment.mapping.close()


class Receiver:
    """Maps the segments this process receives, and collects the names of those dropped
    since, by the pool that made them (one receiver per process: :data:`RECEIVER`)."""

    def __init__(self) -> None:
        # by pool prefix; deques, because the finalizers run in whatever thread
        # drops an array, and may run while freed() is reading
        self._freed: dict[str, deque[str]] = {}
        self._leases: dict[int, Lease] = {}  # by address
        # Mappings kept for the next time a (reused) segment comes: mapping and
        # unmapping cost more than the copy. Least recently used first.
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._mapped = 0
        self._lock = threading.Lock()
        # Told, by pool prefix, each time an array on one of its segments goes (see
        # notify()). Looked up when the array goes, so that none is told after forget().
        self._told: dict[str, Callable[[], None]] = {}
        self._told_lock = threading.RLock()  # a finalizer may run where it is held
        # A worker's pool, which borrows the segments of its NuMap's pool once dropped
        # here (see Pool.borrow).
        self.borrower: Pool | None = None

    def _mapping(self, name: str, capacity: int) -> mmap.mmap:
        with self._lock:
            mapping = self._maps.get(name)
            if mapping is not None and len(mapping) == capacity:
                self._maps.move_to_end(name)
                return mapping
        fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
        try:  # populated: one call maps every page, not one fault per page later
            mapping = mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        finally:
            os.close(fd)
        gone = self._removed()
        with self._lock:
            for removed in gone:  # (an array on it keeps it alive)
                dropped = self._maps.pop(removed, None)
                if dropped is not None:
                    self._mapped -= len(dropped)
            self._maps[name] = mapping
            self._mapped += capacity
            while self._mapped > KEEP_MAPPED and len(self._maps) > 1:
                _, old = self._maps.popitem(last=False)  # an array on it keeps it alive
                self._mapped -= len(old)
        return mapping

    def _removed(self) -> list[str]:
        """The kept mappings whose segments their owner has removed since (a pool that
        keeps fewer free segments, or stopped): asked each time a new segment is
        mapped. Kept, a mapping would hold the memory of a segment that nobody can
        send again until it is the least recently used."""
        if not os.path.isdir(SHM_FOLDER):
            return []
        with self._lock:
            names = list(self._maps)
        return [name for name in names if not os.path.exists(SHM_FOLDER + name)]

    def notify(self, prefix: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in whatever thread drops the array: it must be quick and
        never block) each time the last array on a segment of a pool whose prefix
        starts with ``prefix`` goes, until :meth:`forget` of ``prefix``; its owner
        may then be told at once, instead of with the next message it is sent."""
        with self._told_lock:
            self._told[prefix] = callback

    def forget(self, prefix: str) -> None:
        """Drop the kept mappings of the segments of ``prefix`` (its pool is gone); from
        now on nobody is notified of them."""
        with self._told_lock:
            for key in [k for k in self._told if k.startswith(prefix)]:
                del self._told[key]
        with self._lock:
            for name in [n for n in self._maps if n.startswith("/" + prefix)]:
                self._mapped -= len(self._maps.pop(name))
            for owner in [o for o in self._freed if o.startswith(prefix)]:
                del self._freed[owner]  # nobody will be told any more

    def take(self, name: str, size: int, capacity: int) -> Any:
        """A writable buffer over the segment's first ``size`` bytes, mapped here; when the
        last array built on it goes, :meth:`freed` reports it (or, for a segment of a pool
        of this process, the pool takes it back)."""
        import numpy as np

        mapping = self._mapping(name, capacity)
        lease = np.frombuffer(mapping, dtype=np.uint8, count=size)
        owner = name[1:name.rfind("-") + 1]
        address = lease.__array_interface__["data"][0]
        self._leases[address] = Lease(name, size, capacity, weakref.ref(lease))
        local = _LOCAL.get(owner)
        if local is not None and local.adopt(name):
            weakref.finalize(lease, _forget_local, self._leases, address, local, name)
        else:
            told = None
            with self._told_lock:  # (notify() and forget() may change it meanwhile)
                for prefix in self._told:
                    if owner.startswith(prefix):
                        told = prefix
                        break
            borrower = self.borrower
            if borrower is not None and owner != borrower.forward_to:
                borrower = None
            weakref.finalize(lease, _forget, self._leases, address,
                             self._freed.setdefault(owner, deque()), name, told,
                             borrower, None if borrower is None else mapping)
        return lease

    def _tell(self, prefix: str) -> None:
        with self._told_lock:
            callback = self._told.get(prefix)
            if callback is not None:
                callback()

    def lease_of(self, buffer: memoryview) -> Lease | None:
        """The lease of the received segment ``buffer`` starts where, if any."""
        if not self._leases:
            return None
        import numpy as np

        address = np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0]
        return self._leases.get(address)

    def freed(self, prefix: str) -> list[str]:
        """The names of the pool ``prefix`` dropped since the last call."""
        queue = self._freed.get(prefix)
        names = []
        while queue:
            try:
                names.append(queue.popleft())
            except IndexError:
                break
        return names


def _forget(leases: dict[int, Any], address: int, freed: deque[str], name: str,
            told: str | None, borrower: Pool | None = None,
            mapping: mmap.mmap | None = None) -> None:
    leases.pop(address, None)
    if borrower is not None and mapping is not None:  # (given together: see take())
        borrower.borrow(name, address, mapping)
    freed.append(name)
    if told is not None:
        RECEIVER._tell(told)


def _forget_local(leases: dict[int, Any], address: int, pool: Pool, name: str) -> None:
    leases.pop(address, None)
    pool.release([name])


_LOCAL: weakref.WeakValueDictionary[str, Pool] = weakref.WeakValueDictionary()
"""The pools of this process, by prefix."""

RECEIVER = Receiver()
"""This process's receiver (:func:`numap._wire.decode` maps segments through it)."""


def forget_inherited() -> None:
    """In a process just forked: drop the pools and mappings of the parent's copy of this
    module (they are the parent's; this process starts with none)."""
    global RECEIVER, _HELPER, _HELPER_LOCK
    _LOCAL.clear()
    RECEIVER = Receiver()
    _HELPER, _HELPER_LOCK = None, threading.Lock()  # the lock may have been held at the fork


def sweep(prefix: str) -> int:
    """Remove every segment whose name starts with ``prefix``; how many were removed."""
    removed = 0
    try:
        names = os.listdir(SHM_FOLDER)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                _posixshmem.shm_unlink("/" + name)
                removed += 1
    return removed
