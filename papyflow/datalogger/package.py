"""The record a producer logs, how it travels to the logger, and how it lands on disk.

A :class:`LogPackage` crosses from a producer to the logger as one *frame*::

    time stamp (uint64) | payload length (uint32) | source id (uint8) | 3 pad bytes | payload

all little-endian, 16 bytes of header. A saver writes the payload of each frame
to ``<source_id>_<time_stamp:020d>.npy``: a 1-D ``uint8`` array in the ``.npy``
format, whose 64-byte-aligned header is built here rather than by ``np.save``
(which would cost more than the write itself for small packages).

The way back, logger to producer, carries *notices*: a 5-byte header (:class:`Notice`,
size of the body) and a body. ``BROKEN`` says why puts are refused; ``CLOSING``
opens the end-of-stream handshake of a shutdown, and ``CLOSED`` ends it with the
count of frames the logger took from that connection (see :mod:`.input_queue`).
"""

from __future__ import annotations

import enum
import functools
import numbers
import re
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["FRAME", "NOTICE", "TAKEN", "LogPackage", "Notice", "file_name", "notice",
           "npy_header", "parse_file_name"]

FRAME = struct.Struct("<QIB3x")
"""The header of a frame: time stamp, payload length, source id."""

NOTICE = struct.Struct("<BI")
"""The header of a notice (logger -> producer): its kind, the size of its body."""

TAKEN = struct.Struct("<Q")
"""The body of a ``CLOSED`` notice: how many whole frames the logger took."""


class Notice(enum.IntEnum):
    """What the logger tells a producer on the producer's connection."""

    BROKEN = 1    # body: why puts are refused (UTF-8); puts raise LoggerBrokenError
    CLOSING = 2   # the logger is shutting down; a put that sees it waits for CLOSED
    CLOSED = 3    # body: TAKEN, frames taken from this connection; the end of it


def notice(kind: Notice, body: bytes = b"") -> bytes:
    """One notice, header and body."""
    return NOTICE.pack(kind, len(body)) + body

MAX_SOURCE_ID = 2**8 - 1
MAX_TIME_STAMP = 2**64 - 1
MAX_PAYLOAD = 2**32 - 1

_NPY_NAME = re.compile(r"^(\d+)_(\d+)\.npy$")


def _integer(owner: str, value: object, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: expected an integer in [0, {high}], "
                        f"got {value!r} ({type(value).__name__})")
    number = int(value)
    if not 0 <= number <= high:
        raise ValueError(f"{owner}: expected an integer in [0, {high}], got {number}")
    return number


@dataclass(frozen=True, slots=True, eq=False)
class LogPackage:
    """One piece of data to log: who sent it, when, and its bytes.

    ``source_id`` names the producer (an integer in 0..255, a ``uint8`` as in the
    reference); ``time_stamp`` is an integer in 0..2**64-1 (a ``uint64``) in the
    producer's own unit, usually microseconds or nanoseconds, which must differ
    between two packages of one source, since both name the same file otherwise;
    ``serialized_data`` is a 1-D ``uint8`` NumPy array (bytes-like objects are
    accepted and viewed as one, at most 2**32-1 bytes).
    """

    source_id: int
    time_stamp: int
    serialized_data: NDArray[np.uint8]

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_id",
                           _integer("LogPackage.source_id", self.source_id, MAX_SOURCE_ID))
        object.__setattr__(self, "time_stamp",
                           _integer("LogPackage.time_stamp", self.time_stamp, MAX_TIME_STAMP))
        data = self.serialized_data
        if not isinstance(data, np.ndarray):
            data = _bytes_of(data)
        elif data.dtype != np.uint8:
            raise TypeError("LogPackage.serialized_data: expected a uint8 NumPy array, "
                            f"got {data.dtype}")
        if data.ndim != 1 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data).reshape(-1)
        if data.size > MAX_PAYLOAD:
            raise ValueError(f"LogPackage.serialized_data: at most {MAX_PAYLOAD} bytes, "
                             f"got {data.size}")
        object.__setattr__(self, "serialized_data", data)

    @property
    def file_name(self) -> str:
        """The name of the file the package is saved to."""
        return file_name(self.source_id, self.time_stamp)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogPackage):
            return NotImplemented
        return (self.source_id, self.time_stamp) == (other.source_id, other.time_stamp) \
            and bool(np.array_equal(self.serialized_data, other.serialized_data))

    def __hash__(self) -> int:
        return hash((self.source_id, self.time_stamp, self.serialized_data.size))


def _bytes_of(data: object) -> NDArray[np.uint8]:
    """A bytes-like ``data`` (anything with the buffer protocol) as a 1-D uint8 array:
    a view where its memory is contiguous, else a copy."""
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("LogPackage.serialized_data: expected a uint8 NumPy array or a "
                        f"bytes-like object, got {type(data).__name__}") from None
    if view.c_contiguous:
        return np.frombuffer(view.cast("B") if view.format != "B" or view.ndim != 1 else view,
                             dtype=np.uint8)
    return np.frombuffer(view.tobytes(), dtype=np.uint8)


def file_name(source_id: int, time_stamp: int) -> str:
    """``<source_id>_<time_stamp>.npy``, the time stamp zero-padded to 20 digits.

    Twenty digits hold any ``uint64``, so names sort in time order.
    """
    return f"{source_id}_{time_stamp:020d}.npy"


def parse_file_name(name: str) -> tuple[int, int] | None:
    """``(source_id, time_stamp)`` of a log file's name, ``None`` for other names."""
    match = _NPY_NAME.match(name)
    return (int(match[1]), int(match[2])) if match else None


@functools.lru_cache(maxsize=1024)
def npy_header(size: int) -> bytes:
    """The ``.npy`` (version 1.0) header of a 1-D ``uint8`` array of ``size`` bytes."""
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({size},), }}"
    # magic (6) + version (2) + length (2) + text + newline, padded to 64 bytes.
    padding = -(10 + len(text) + 1) % 64
    body = (text + " " * padding + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body
