"""What crosses a process boundary: framed messages over a pipe.

A message is a list of parts. Part 0 starts with a fixed header (kind, codec,
task, batch, seconds) followed by a pickle stream; the other parts are the
out-of-band buffers of that pickle (pickle protocol 5), so a large numpy array is
written to the pipe straight from its own memory and read back into one fresh
buffer, without the copies an in-band pickle costs.

On the wire a message is::

    u32 count | u64 length * count | part 0 | part 1 | ...

Payloads are pickled by the C pickler; only what it cannot serve (lambdas,
closures, classes defined after the workers started) falls back to dill. A
task's function always travels with dill, once per task and worker.
"""

from __future__ import annotations

import array
import enum
import fcntl
import itertools
import json
import os
import pickle
import select
import struct
import sys
import termios
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import dill

from . import _shm
from ._shm import Lease, Lent, Pool

__all__ = ["Channel", "Codec", "Frame", "Kind", "Pickled", "carries_segments", "decode",
           "encode", "frame_bytes", "framed", "message_bytes", "peek", "pickled", "pipe",
           "segment_names", "write_some"]

# Buffers at least this large travel out of band.
OUT_OF_BAND_MIN = _shm.SMALLEST_ALLOCATED
# Asked of the kernel for each pipe: fewer wake-ups per large message.
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031  # Linux; other systems keep their default size
_F_GETPIPE_SZ = 1032
# Of a pipe's capacity, kept free of what room() counts: the kernel fills a pipe by
# pages, so the bytes in it may take a little more room than their number.
_SLACK = 64 << 10

_HEADER = struct.Struct("<BBIQd")
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")


class Kind(enum.IntEnum):
    """What a frame carries."""

    TASK = 1  # main -> worker: a task's function, args and kwargs
    BATCH = 2  # main -> worker: the items of one batch
    RESULT = 3  # worker -> main: the values and failures of one batch
    FREE = 4  # either way: the names of shared-memory segments the receiver dropped


class Codec(enum.IntEnum):
    """How the payload of a frame was pickled."""

    PICKLE = 0
    DILL = 1


@dataclass(slots=True)
class Frame:
    """A decoded message."""

    kind: Kind
    task: int
    batch: int
    seconds: float
    payload: Any


def encode(kind: Kind, task: int, batch: int, payload: Any, *,
           seconds: float = 0.0, codec: Codec | None = None,
           segments: Pool | None = None) -> list[Any]:
    """Pickle ``payload`` into the parts of one frame.

    The C pickler is tried first unless ``codec`` says dill; an object neither
    can pickle raises the pickler's error. With ``segments``, out-of-band
    buffers of at least ``segments.threshold`` bytes go into shared memory
    (see :mod:`numap._shm`): part 1 is then the table of where each
    out-of-band buffer is.
    """
    return pickled(kind, task, batch, payload, seconds=seconds, codec=codec).parts(segments)


def pickled(kind: Kind, task: int, batch: int, payload: Any, *,
            seconds: float = 0.0, codec: Codec | None = None) -> Pickled:
    """:func:`encode` in two steps: ``payload`` pickled, its large buffers not yet
    placed. A sender that drops its own references to ``payload`` before
    :meth:`Pickled.parts` lets a received segment it no longer holds go back as it
    is (see :meth:`numap._shm.Pool.claim`)."""
    if codec is not Codec.DILL:
        buffers: list[pickle.PickleBuffer] = []

        def out_of_band(buf: pickle.PickleBuffer) -> bool:
            if buf.raw().nbytes < OUT_OF_BAND_MIN:
                return True  # small: keep it inside the pickle stream
            buffers.append(buf)
            return False

        try:
            body = pickle.dumps(payload, protocol=5, buffer_callback=out_of_band)
        except Exception:
            pass
        else:
            return Pickled(_HEADER.pack(kind, Codec.PICKLE, task, batch, seconds), body,
                           buffers)
    # recurse: a function from __main__ takes the globals it uses, not all of __main__.
    body = dill.dumps(payload, protocol=5, recurse=True)
    return Pickled(_HEADER.pack(kind, Codec.DILL, task, batch, seconds), body, [])


_SEGMENTS = 0x10  # in the codec byte: part 1 is the table of out-of-band buffers


@dataclass(slots=True, eq=False)
class Pickled:
    """A frame's header and pickle stream, and the out-of-band buffers of the stream."""

    head: bytes
    body: bytes
    buffers: list[pickle.PickleBuffer]

    def parts(self, segments: Pool | None = None) -> list[Any]:
        """The parts of the frame (once: its buffers are handed over); with ``segments``,
        buffers of at least ``segments.threshold`` bytes go into shared memory."""
        buffers, self.buffers = self.buffers, []
        if segments is None or not any(buf.raw().nbytes >= segments.threshold
                                       for buf in buffers):
            return [self.head + self.body, *(buf.raw() for buf in buffers)]
        segments.large_seen = True
        # per buffer: its index among the pipe parts, or [name, size, capacity]
        piped: list[Any] = []
        table: list[Any] = []
        # segments that go as they are if nothing here holds their array once pickled
        held: list[tuple[int, Lease | Lent]] = []
        # Each goes once: another array over the same segment (x and x.T returned
        # together) is copied, as pickle gives two objects two buffers of their own.
        taken: set[str] = set()
        for buf in buffers:
            raw = buf.raw()
            if raw.nbytes >= segments.threshold:
                claimed = segments.claim(raw)
                lease: Lease | Lent | None = \
                    claimed if claimed is not None and claimed.name not in taken else \
                    segments.lend(raw, taken)
                if lease is not None:
                    taken.add(lease.name)
                placed = None if lease is not None else segments.put(raw)
                if lease is not None or placed is not None:
                    if lease is not None:
                        held.append((len(table), lease))
                    table.append(None if placed is None else list(placed))
                    raw.release()  # what the frame holds of the array ends here
                    buf.release()
                    continue
            table.append(len(piped))
            piped.append(raw)
        del buffers, buf, raw
        for position, lease in held:
            settled = segments.settle(lease)
            if isinstance(settled, memoryview):  # no segment for the copy: the pipe
                table[position] = len(piped)
                piped.append(settled)
            else:
                table[position] = list(settled)
        head = bytearray(self.head)
        head[1] |= _SEGMENTS
        return [bytes(head) + self.body, json.dumps(table).encode(), *piped]


def _buffers(parts: list[memoryview]) -> list[Any]:
    """The out-of-band buffers of a frame with a table of segments (mapping them)."""
    table = json.loads(bytes(parts[1]))
    piped = parts[2:]
    return [piped[entry] if isinstance(entry, int) else _shm.RECEIVER.take(*entry)
            for entry in table]


def frame_bytes(parts: list[Any]) -> int:
    """The bytes a frame made by :func:`encode` carries: its parts, and the large
    buffers it placed in shared-memory segments (which its parts only name)."""
    total = sum(memoryview(part).nbytes for part in parts)
    if _HEADER.unpack_from(parts[0])[1] & _SEGMENTS:
        total += sum(entry[1] for entry in json.loads(bytes(parts[1]))
                     if not isinstance(entry, int))
    return total


def carries_segments(parts: list[Any]) -> bool:
    """Whether a frame made by :func:`encode` places large buffers in segments."""
    return bool(_HEADER.unpack_from(parts[0])[1] & _SEGMENTS)


def segment_names(parts: list[Any]) -> list[str]:
    """The names of the shared-memory segments a frame made by :func:`encode` places its
    large buffers in (none for a frame without them)."""
    if not _HEADER.unpack_from(parts[0])[1] & _SEGMENTS:
        return []
    return [entry[0] for entry in json.loads(bytes(parts[1])) if not isinstance(entry, int)]


def peek(parts: list[memoryview]) -> Frame:
    """The header of a frame, without unpickling its payload (``payload`` is ``None``)."""
    kind, _codec, task, batch, seconds = _HEADER.unpack_from(parts[0])
    return Frame(Kind(kind), task, batch, seconds, None)


def decode(parts: list[memoryview]) -> Frame:
    """Rebuild the frame that :func:`encode` made of ``parts``."""
    kind, codec, task, batch, seconds = _HEADER.unpack_from(parts[0])
    body = parts[0][_HEADER.size:]
    if codec & _SEGMENTS:
        payload = pickle.loads(body, buffers=_buffers(parts))
    elif codec == Codec.PICKLE:
        payload = pickle.loads(body, buffers=parts[1:])
    else:
        payload = dill.loads(body)
    return Frame(Kind(kind), task, batch, seconds, payload)


class Channel:
    """One direction of a pipe, sending and receiving whole messages.

    One thread may send and one other thread may receive at a time.
    """

    __slots__ = ("capacity", "fd")

    def __init__(self, fd: int, capacity: int | None = None) -> None:
        self.fd = fd
        self.capacity = capacity  # of the pipe, where the OS tells it (see room())

    def fileno(self) -> int:
        return self.fd

    def send(self, parts: list[Any]) -> None:
        """Write one message; raises ``BrokenPipeError`` when the reader is gone."""
        pending = deque(framed(parts))
        while pending:
            _written(pending, os.writev(self.fd, list(itertools.islice(pending, 512))))

    def room(self) -> int:
        """How many bytes a write takes now without waiting for the reader: the pipe's
        capacity less what it holds unread and a margin (see ``_SLACK``); unbounded
        where the OS does not tell a pipe's capacity or what it holds (a write then
        says whether the pipe is still there)."""
        if self.capacity is None:
            return sys.maxsize
        unread = array.array("i", [0])
        try:
            fcntl.ioctl(self.fd, termios.FIONREAD, unread, True)
        except OSError:
            return sys.maxsize
        return self.capacity - unread[0] - _SLACK

    def recv(self) -> list[memoryview]:
        """Read one message; raises ``EOFError`` when the writer is gone."""
        first = self._read_exactly(_COUNT.size + _LENGTH.size)
        (count,) = _COUNT.unpack_from(first)
        lengths = [_LENGTH.unpack_from(first, _COUNT.size)[0]]
        if count > 1:
            more = self._read_exactly(_LENGTH.size * (count - 1))
            lengths.extend(n for (n,) in _LENGTH.iter_unpack(more))
        data = memoryview(self._read_exactly(sum(lengths)))
        parts, start = [], 0
        for n in lengths:
            parts.append(data[start:start + n])
            start += n
        return parts

    def _read_exactly(self, size: int) -> bytearray:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = os.readv(self.fd, [view[got:]])
            if n == 0:
                raise EOFError("the other end of the pipe is closed")
            got += n
        return buf

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def framed(parts: list[Any]) -> list[memoryview]:
    """The bytes of one message of ``parts`` as :meth:`Channel.send` writes them (its
    count and lengths, then each part), for a writer that cannot wait for the pipe."""
    views = [memoryview(p).cast("B") for p in parts]
    prefix = _COUNT.pack(len(views)) + b"".join(_LENGTH.pack(v.nbytes) for v in views)
    return [memoryview(prefix), *views]


def message_bytes(parts: list[Any]) -> int:
    """The bytes one message of ``parts`` takes in the pipe (see :func:`framed`)."""
    return _COUNT.size + _LENGTH.size * len(parts) + sum(memoryview(p).nbytes for p in parts)


def write_some(fd: int, unsent: deque[memoryview], wait: float) -> bool:
    """Write the frames waiting in ``unsent`` (see :func:`framed`) to the non-blocking
    pipe ``fd``, as far as it takes them, waiting for room at most ``wait`` seconds in
    all: a reader that reads makes room within moments, as a blocking write would
    wait for it; the rest of what one that reads nothing was sent stays in
    ``unsent``. ``False`` when the reader is gone (``unsent`` is then emptied)."""
    deadline = None
    while unsent:
        try:
            written = os.writev(fd, list(itertools.islice(unsent, 512)))
        except BlockingIOError:
            now = time.monotonic()
            deadline = now + wait if deadline is None else deadline
            room = select.poll()
            room.register(fd, select.POLLOUT)
            if now < deadline and room.poll(1000 * (deadline - now)):
                continue
            return True
        except OSError:
            unsent.clear()
            return False
        _written(unsent, written)
    return True


def _written(pending: deque[memoryview], count: int) -> None:
    """Drop the first ``count`` bytes written of ``pending``."""
    while pending and count >= pending[0].nbytes:
        count -= pending.popleft().nbytes
    if count:
        pending[0] = pending[0][count:]


def pipe() -> tuple[Channel, Channel]:
    """A new pipe as a (reader, writer) pair of channels, enlarged where the OS allows."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    try:
        capacity = fcntl.fcntl(w, _F_GETPIPE_SZ)
    except OSError:
        capacity = None
    return Channel(r), Channel(w, capacity)
