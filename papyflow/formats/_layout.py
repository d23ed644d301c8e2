"""The binary layout of records, read and written one field at a time.

::

    scalar   little-endian, its width (bool: 1 byte, 0 or 1; complex: real, imaginary)
    string   uint64 byte length, then that many bytes of UTF-8
    array    one uint64 per dimension (all of them, fixed ones too), then the
             elements in C order: numeric ones as raw little-endian data,
             strings and records one after the other
    record   its fields in declared order, nested records inline; no header

This module is the reference reader: :func:`decode_record` walks a record type
field by field over a :class:`Source` (a buffer or a file object) and checks
everything, so its errors say exactly what is wrong and where. The generated
readers of ``_codegen`` are the fast path; when one of them fails, the record
is read again here to explain why.

Nothing is allocated before the bytes it stands for are known to be there: a
length or shape is checked against the bytes left (counting each string as at
least its 8-byte length, each record as at least its smallest packed size)
before an array or a string is made. A file object whose size cannot be known
(a pipe, a socket) is read in growing chunks, so memory follows the bytes
that actually arrive.
"""

from __future__ import annotations

import abc
import math
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._fields import (
    EMPTY_ELEMENT_LIMIT,
    MAX_ELEMENTS,
    ArrayKind,
    ElementKind,
    Kind,
    ScalarKind,
    StringKind,
    describe,
    min_size,
)
from ._record_errors import DecodeError, TruncatedError

if TYPE_CHECKING:
    from .baseformat import baseformat

__all__ = [
    "BIG_PART",
    "CHUNK",
    "U64",
    "BufferSource",
    "Reader",
    "Source",
    "StreamSource",
    "Writer",
    "array_parts",
    "byte_view",
    "check_consumed",
    "check_count",
    "decode_array",
    "decode_dims",
    "decode_element",
    "decode_exactly",
    "decode_record",
    "decode_scalar",
    "decode_string",
    "decode_value",
    "read_exact",
    "scalar_bytes",
    "string_parts",
    "write_parts",
]

U64 = struct.Struct("<Q")
_OBJECT = np.dtype(object)
_UINT8 = np.dtype(np.uint8)
_BOOLS = (np.False_, np.True_)
_new = object.__new__

CHUNK = 1 << 20
"""Bytes read at a time from a file object whose remaining size is unknown (it
doubles with every chunk, up to 64 MiB)."""

BIG_PART = 1 << 16
"""Parts at least this large are written to a file object on their own
(array data, without a copy); smaller ones are joined first."""


class Reader(Protocol):
    """What unpack_from reads from: anything with ``read(n)``."""

    def read(self, n: int, /) -> bytes | bytearray | None: ...


class Writer(Protocol):
    """What pack_into writes to: anything with ``write(data)``."""

    def write(self, data: Any, /) -> int | None: ...


def byte_view(data: Any) -> memoryview:
    """A flat unsigned-byte view of a bytes-like object.

    Raises:
        TypeError: ``data`` is not a contiguous bytes-like object.
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"expected a bytes-like object (bytes, bytearray, memoryview), "
                        f"not {type(data).__name__}") from None
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise TypeError("expected a contiguous bytes-like object")
        view = view.cast("B")
    return view


# -- sources ----------------------------------------------------------------------------------


class Source(abc.ABC):
    """Bytes to decode, consumed front to back; ``offset`` counts what was taken."""

    offset: int

    @abc.abstractmethod
    def remaining(self) -> int | None:
        """Bytes left, ``None`` when unknown (a stream that cannot seek)."""

    @abc.abstractmethod
    def take(self, n: int, record: str, path: str) -> bytes | memoryview:
        """Exactly the next ``n`` bytes (or TruncatedError)."""

    def take_array(self, count: int, dtype: np.dtype[Any], record: str, path: str,
                   copy: bool) -> np.ndarray:
        """The next ``count`` items of ``dtype`` as a 1-D array."""
        data = self.take(count * dtype.itemsize, record, path)
        return np.frombuffer(data, dtype, count).copy()


class BufferSource(Source):
    """Decoding from a bytes-like object held in memory."""

    def __init__(self, data: bytes | memoryview, offset: int = 0) -> None:
        self.data = data
        self.offset = offset
        self.end = len(data)

    def remaining(self) -> int:
        return self.end - self.offset

    def take(self, n: int, record: str, path: str) -> bytes | memoryview:
        start = self.offset
        if n > self.end - start:
            raise TruncatedError(f"needs {n} more bytes, {self.end - start} left", record,
                                 path, start)
        self.offset = start + n
        return self.data[start:start + n]

    def take_array(self, count: int, dtype: np.dtype[Any], record: str, path: str,
                   copy: bool) -> np.ndarray:
        start = self.offset
        self.take(count * dtype.itemsize, record, path)
        array = np.frombuffer(self.data, dtype, count, start)
        return array.copy() if copy else array


class StreamSource(Source):
    """Decoding from a file object, reading only what is needed.

    Arrays are read straight into their memory (``readinto``) when the stream
    can tell how much is left; otherwise in chunks.
    """

    def __init__(self, fd: Reader) -> None:
        self.fd = fd
        self.offset = 0
        self._limit: int | None = None
        self._measured = False

    def remaining(self) -> int | None:
        if not self._measured:  # asked only before big reads: seeking costs system calls
            self._measured = True
            self._limit = _size_left(self.fd)
            if self._limit is not None:
                self._limit += self.offset
        return None if self._limit is None else self._limit - self.offset

    def _short(self, n: int, got: int, record: str, path: str) -> TruncatedError:
        return TruncatedError(f"needs {n} more bytes, the stream ended after {got}", record,
                              path, self.offset)

    def take(self, n: int, record: str, path: str) -> bytes | memoryview:
        left = self.remaining() if n > CHUNK else None
        if left is not None and n > left:
            raise TruncatedError(f"needs {n} more bytes, {left} left in the stream", record,
                                 path, self.offset)
        if n <= CHUNK:
            data = self._read(n)
            if len(data) < n:
                data = bytes(data) + self._read_all(n - len(data), record, path, len(data))
        else:
            data = self._read_all(n, record, path, 0)
        if len(data) != n:
            raise self._short(n, len(data), record, path)
        self.offset += n
        return data

    def _read(self, n: int) -> bytes:
        data = self.fd.read(n)
        if data is None:
            raise DecodeError("the stream returned no data (a non-blocking stream?)")
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"unpack_from reads bytes; read() returned {type(data).__name__}")
        return bytes(data) if isinstance(data, bytearray) else data

    def _read_all(self, n: int, record: str, path: str, before: int) -> bytes:
        chunks = []
        got = 0
        size = CHUNK
        while got < n:
            data = self._read(min(size, n - got))
            if not data:
                raise self._short(n + before, got + before, record, path)
            chunks.append(data)
            got += len(data)
            size = min(size * 2, 64 * CHUNK)
        return b"".join(chunks)

    def take_array(self, count: int, dtype: np.dtype[Any], record: str, path: str,
                   copy: bool) -> np.ndarray:
        n = count * dtype.itemsize
        left = self.remaining()
        readinto = getattr(self.fd, "readinto", None)
        if left is None or readinto is None or n == 0:
            data = self.take(n, record, path)
            return np.frombuffer(data, dtype, count).copy()
        if n > left:
            raise TruncatedError(f"needs {n} more bytes, {left} left in the stream", record,
                                 path, self.offset)
        array = np.empty(count, dtype)
        view = array.data.cast("B")
        got = 0
        while got < n:
            done = readinto(view[got:])
            if not done:
                raise self._short(n, got, record, path)
            got += done
        self.offset += n
        return array


def _size_left(fd: Any) -> int | None:
    """Bytes left in a seekable file object, ``None`` when it cannot tell."""
    try:
        if not fd.seekable():
            return None
        here = fd.tell()
        end = fd.seek(0, 2)
        fd.seek(here)
    except (OSError, AttributeError, ValueError, TypeError):
        return None
    if not isinstance(here, int) or not isinstance(end, int):
        return None
    return max(0, end - here)


# -- reading ----------------------------------------------------------------------------------


def decode_scalar(kind: ScalarKind, source: Source, record: str = "",
                  path: str = "") -> np.generic:
    """Read one scalar."""
    start = source.offset
    data = source.take(kind.size, record, path)
    if kind.name == "bool":
        byte = data[0]
        if byte > 1:
            raise DecodeError(f"a bool must be the byte 0 or 1, not {byte}", record, path,
                              start)
        return _BOOLS[byte]
    return np.frombuffer(data, kind.dtype, 1)[0]


def decode_string(source: Source, record: str = "", path: str = "") -> str:
    """Read one string: its uint64 byte length, then the UTF-8 bytes."""
    start = source.offset
    (length,) = U64.unpack(source.take(8, record, path))
    data = source.take(length, record, path) if length else b""
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in a string of {length} bytes: {exc.reason} at "
                          f"byte {exc.start} of the text", record, path, start + 8) from exc


def decode_dims(kind: ArrayKind, source: Source, record: str = "", path: str = ""
                ) -> tuple[int, ...]:
    """Read and check the dimensions of an array: fixed ones must be as declared,
    and the array must fit in the bytes left and the layout's limits."""
    start = source.offset
    dims = struct.unpack(f"<{kind.ndim}Q", source.take(8 * kind.ndim, record, path))
    for axis, (declared, got) in enumerate(zip(kind.shape, dims, strict=True)):
        if declared and declared != got:
            raise DecodeError(f"dimension {axis} is {got}, but {describe(kind)} declares "
                              f"{declared}", record, path, start + 8 * axis)
    check_count(kind.element, dims, source, record, path, start)
    return dims


def check_count(element: ElementKind, dims: tuple[int, ...], source: Source, record: str,
                path: str, start: int) -> None:
    """Raise unless an array of ``dims`` of ``element`` can be in the bytes left."""
    if math.prod(d for d in dims if d) > MAX_ELEMENTS:
        raise DecodeError(f"array shape {dims} is beyond the layout's limit of 2**56 "
                          "elements", record, path, start)
    count = math.prod(dims)
    least = min_size(element)
    if least == 0 and count > EMPTY_ELEMENT_LIMIT:
        raise DecodeError(f"{count} elements that pack to zero bytes; at most "
                          f"{EMPTY_ELEMENT_LIMIT} are allowed", record, path, start)
    left = source.remaining()
    if left is not None and count * least > left:
        raise TruncatedError(f"an array of shape {dims} needs at least {count * least} "
                             f"more bytes, {left} left", record, path, start)


def decode_array(kind: ArrayKind, source: Source, record: str = "", path: str = "",
                 copy: bool = True) -> np.ndarray:
    """Read one array: dimensions, then elements."""
    dims = decode_dims(kind, source, record, path)
    count = math.prod(dims)
    element = kind.element
    if isinstance(element, ScalarKind):
        if element.name == "bool":
            start = source.offset
            raw = source.take_array(count, _UINT8, record, path, copy)
            if count and raw.max() > 1:
                bad = int(np.argmax(raw > 1))
                index = tuple(int(i) for i in np.unravel_index(bad, dims))
                raise DecodeError(f"a bool must be the byte 0 or 1, not {raw[bad]}", record,
                                  _item(path, index), start + bad)
            return raw.view(element.dtype).reshape(dims)
        return source.take_array(count, element.dtype, record, path, copy).reshape(dims)
    items: list[Any] = []
    for index in _c_order(dims) if count else ():
        items.append(decode_element(element, source, record, _item(path, index), copy))
    return np.fromiter(items, _OBJECT, count).reshape(dims)


def _c_order(dims: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """The indices of a non-empty array of shape ``dims`` in C order, made as needed.

    (``itertools.product`` and ``numpy.ndindex`` first make a tuple of every
    range: far too much for a corrupt dimension of a stream whose size is
    unknown, or beside a dimension of 0, where the array is read only as far as
    the bytes go.)
    """
    if len(dims) == 1:
        return ((i,) for i in range(dims[0]))
    return ((i, *rest) for i in range(dims[0]) for rest in _c_order(dims[1:]))


def _item(path: str, index: tuple[int, ...]) -> str:
    return f"{path}[{', '.join(map(str, index))}]"


def decode_element(kind: ElementKind, source: Source, record: str, path: str,
                   copy: bool) -> Any:
    """Read one scalar, string or record."""
    if isinstance(kind, ScalarKind):
        return decode_scalar(kind, source, record, path)
    if isinstance(kind, StringKind):
        return decode_string(source, record, path)
    return decode_record(kind.cls, source, record, path, copy)


def decode_value(kind: Kind, source: Source, record: str, path: str, copy: bool) -> Any:
    """Read one value of any kind."""
    if isinstance(kind, ArrayKind):
        return decode_array(kind, source, record, path, copy)
    return decode_element(kind, source, record, path, copy)


def decode_record(cls: type[baseformat], source: Source, record: str = "", path: str = "",
                  copy: bool = True) -> baseformat:
    """Read one record of type ``cls``, field by field."""
    obj = _new(cls)
    for field in cls._fields:
        where = f"{path}.{field.name}" if path else field.name
        setattr(obj, field.name, decode_value(field.kind, source, record, where, copy))
    return obj


def decode_exactly(cls: type[baseformat], data: bytes | memoryview, copy: bool) -> baseformat:
    """Read a record that must take all of ``data`` (the careful, slow way)."""
    source = BufferSource(data)
    obj = decode_record(cls, source, cls._name, "", copy)
    check_consumed(cls, source.offset, len(data))
    return obj


def check_consumed(cls: type[baseformat], end: int, size: int) -> None:
    """Raise if a record ended before the bytes did."""
    if end != size:
        raise DecodeError(f"{size - end} bytes left over after the record (it ends at byte "
                          f"{end} of {size})", cls._name, "", end)


def read_exact(fd: Reader, n: int, what: str = "") -> bytes | memoryview:
    """Exactly ``n`` bytes from ``fd`` (TruncatedError if it ends first)."""
    return StreamSource(fd).take(n, what, "")


# -- writing ----------------------------------------------------------------------------------


def scalar_bytes(kind: ScalarKind, value: np.generic) -> bytes:
    """The packed bytes of a scalar of ``kind`` (already cast)."""
    return np.asarray(value, kind.dtype).tobytes()


def string_parts(text: str) -> list[bytes]:
    """The packed parts of a string."""
    data = text.encode("utf-8")
    return [U64.pack(len(data)), data]


def array_parts(kind: ArrayKind, value: np.ndarray, encode: Callable[[Any, Callable[[Any],
                Any]], None] | None = None) -> list[Any]:
    """The packed parts of an array (already cast): dimensions, then data.

    ``encode(record, append)`` writes one record element.
    """
    parts: list[Any] = [struct.pack(f"<{value.ndim}Q", *value.shape)]
    element = kind.element
    if isinstance(element, ScalarKind):
        parts.append(np.ascontiguousarray(value, element.dtype))
    elif isinstance(element, StringKind):
        for text in value.ravel().tolist():
            parts.extend(string_parts(text))
    else:
        assert encode is not None
        for obj in value.ravel().tolist():
            encode(obj, parts.append)
    return parts


def write_parts(fd: Writer, parts: Iterable[Any]) -> None:
    """Write packed parts to ``fd``: small ones joined, big ones (array data) as
    they are, without a copy."""
    small: list[Any] = []
    for part in parts:
        size = part.nbytes if isinstance(part, np.ndarray | memoryview) else len(part)
        if size < BIG_PART:
            small.append(part)
            continue
        if small:
            _write(fd, b"".join(small))
            small = []
        view = memoryview(part)
        _write(fd, view.cast("B") if view.format != "B" or view.ndim != 1 else view)
    if small:
        _write(fd, b"".join(small))


def _write(fd: Writer, data: bytes | memoryview) -> None:
    written = fd.write(data)
    # a raw (unbuffered) file may write less than asked: write the rest
    while isinstance(written, int) and 0 < written < len(data):
        data = memoryview(data)[written:]
        written = fd.write(data)
    if isinstance(written, int) and written == 0 and len(data):
        raise OSError("write() wrote nothing")
