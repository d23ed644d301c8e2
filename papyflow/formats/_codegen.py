"""Per-type pack and unpack functions, written as Python source and compiled once.

For each record type four functions are generated:

``pack(self) -> bytes``
    the whole record; a fixed-size run of scalars is a single
    ``struct.Struct.pack``; array data is joined straight from the array's
    memory (no intermediate copy).
``_encode(self, append)``
    the same, appending the parts (bytes, and arrays for their data) to a list:
    used for records nested in arrays and by ``pack_into``.
``unpack(cls, s, *, copy=None)``
    a new record from bytes holding exactly one, the decoding inlined.
``_decode(o, buf, off, lim, cp) -> off``
    fills the blank record ``o`` from ``buf[off:lim]`` and returns where it
    ended; ``cp`` copies array data out of ``buf`` (else arrays are views).
    Used for records in arrays and for batches of records.

Consecutive scalars, nested records' scalars, string lengths and array
dimensions are merged into one ``struct.Struct`` per run, so a record of ten
scalars costs one ``pack`` and one ``unpack_from`` call. Unpacked numbers
become numpy scalars by the cheapest exact route measured: a table for the
256 values of ``int8``/``uint8`` and for bools, ``zero + value`` for the other
integers and for float32 (``-0.0 + x`` is ``x`` for every ``x``, signed zeros
included), the constructor for float64 (a float subclass).

These functions check only what they must to stay safe (bounds before every
allocation, fixed dimensions, bool bytes, UTF-8) and raise anything on bad
input: the caller then reads or writes the record again the careful way
(``_layout``, ``_values``), whose errors name the field. They never return a
wrong result: a value they cannot pack as it is (a list where an array is
declared, a dict where a record is) sends the caller to the careful way too.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._fields import (
    EMPTY_ELEMENT_LIMIT,
    MAX_ELEMENTS,
    ArrayKind,
    Kind,
    RecordKind,
    ScalarKind,
    StringKind,
    min_size,
)

if TYPE_CHECKING:
    from .baseformat import baseformat

__all__ = ["FAST_PATH_ERRORS", "Fallback", "build_copier", "build_decoder", "build_packers",
           "build_unpack"]


class Fallback(Exception):
    """Raised by generated code: this record needs the careful path."""


_FALLBACK = Fallback()

FAST_PATH_ERRORS: tuple[type[Exception], ...] = (
    Fallback, struct.error, TypeError, ValueError, AttributeError, ArithmeticError,
    LookupError)
"""What generated code raises on data it cannot handle (UnicodeError, numpy's
errors and struct's included); anything else is a real error and propagates."""
_U64 = struct.Struct("<Q")
_OBJECT = np.dtype(object)
_TABLES = {
    "int8": [np.int8(i) for i in range(128)] + [np.int8(i) for i in range(-128, 0)],
    "uint8": [np.uint8(i) for i in range(256)],
}


def _check_empty(dims: tuple[int, ...]) -> None:
    """An empty multi-dimensional array must still respect the element limit."""
    if math.prod(d for d in dims if d) > MAX_ELEMENTS:
        raise _FALLBACK


_BASE_NAMESPACE: dict[str, Any] = {
    "_FB": _FALLBACK,
    "_nd": np.ndarray,
    "_OBJ": _OBJECT,
    "_BOOL": np.dtype(np.bool_),
    "_U8": np.dtype(np.uint8),
    "_fb": np.frombuffer,
    "_fromiter": np.fromiter,
    "_str": str,
    "_new": object.__new__,
    "_U64P": _U64.pack,
    "_U64U": _U64.unpack_from,
    "_BOOLS": (np.False_, np.True_),
    "_check_empty": _check_empty,
    "_complex": complex,
    "_ERRORS": FAST_PATH_ERRORS,
}


@dataclass
class _Source:
    """Python source being built, and the constants it refers to."""

    lines: list[str] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=lambda: dict(_BASE_NAMESPACE))
    counter: int = 0
    _consts: dict[int, str] = field(default_factory=dict)

    def const(self, value: Any, hint: str) -> str:
        """A global name bound to ``value``."""
        key = id(value)
        if key in self._consts and self.namespace[self._consts[key]] is value:
            return self._consts[key]
        self.counter += 1
        name = f"_{hint}{self.counter}"
        self.namespace[name] = value
        self._consts[key] = name
        return name

    def var(self, hint: str) -> str:
        """A fresh local name."""
        self.counter += 1
        return f"{hint}{self.counter}"

    def emit(self, indent: int, line: str) -> None:
        """Add a line."""
        self.lines.append("    " * indent + line)

    def compile(self, name: str, filename: str) -> Callable[..., Any]:
        """Compile and return function ``name``."""
        code = compile("\n".join(self.lines) + "\n", filename, "exec")
        exec(code, self.namespace)  # noqa: S102 - source built here from checked specs
        function: Callable[..., Any] = self.namespace[name]
        return function


def _dtype_test(source: _Source, array: str, dtype: np.dtype[Any]) -> str:
    name = source.const(dtype, "DT")
    return f"({array}.dtype is {name} or {array}.dtype == {name})"


# -- packing -----------------------------------------------------------------------------------


@dataclass
class _PackRun:
    """Values waiting to be packed by one struct call."""

    codes: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


class _Packer:
    def __init__(self, source: _Source, indent: int) -> None:
        self.s = source
        self.indent = indent
        self.run = _PackRun()
        self.appends = 0  # how many append() calls were emitted
        self.last_is_append = False

    def stmt(self, line: str, indent: int = 0) -> None:
        self.s.emit(self.indent + indent, line)
        self.last_is_append = False

    def append(self, expr: str, indent: int = 0) -> None:
        self.s.emit(self.indent + indent, f"append({expr})")
        self.appends += 1
        self.last_is_append = True

    def flush(self) -> None:
        if not self.run.codes:
            return
        fmt = "<" + "".join(self.run.codes)
        packer = self.s.const(struct.Struct(fmt).pack, "SP")
        self.append(f"{packer}({', '.join(self.run.args)})")
        self.run = _PackRun()

    def record(self, cls: type[baseformat], target: str) -> None:
        for f in cls._fields:
            self.value(f.kind, f"{target}.{f.name}")

    def value(self, kind: Kind, expr: str) -> None:
        if isinstance(kind, ScalarKind):
            if kind.dtype.kind == "c":
                var = self.s.var("c")
                self.stmt(f"{var} = {expr}")
                self.run.args += [f"{var}.real", f"{var}.imag"]
            else:
                self.run.args.append(expr)
            self.run.codes.append(kind.pack_code)
        elif isinstance(kind, StringKind):
            var = self.s.var("b")
            self.stmt(f"{var} = {expr}.encode()")
            self.run.codes.append("Q")
            self.run.args.append(f"len({var})")
            self.flush()
            self.append(var)
        elif isinstance(kind, RecordKind):
            var = self.s.var("r")
            self.stmt(f"{var} = {expr}")
            self.stmt(f"if {var}.__class__ is not {self.s.const(kind.cls, 'C')}: raise _FB")
            self.record(kind.cls, var)
        else:
            self.array(kind, expr)

    def array(self, kind: ArrayKind, expr: str) -> None:
        a = self.s.var("a")
        element = kind.element
        self.stmt(f"{a} = {expr}")
        if isinstance(element, ScalarKind):
            self.stmt(f"if {a}.__class__ is not _nd or not {_dtype_test(self.s, a, element.dtype)}"
                      f" or not {a}.flags.c_contiguous: raise _FB")
        else:
            self.stmt(f"if {a}.__class__ is not _nd or {a}.dtype is not _OBJ: raise _FB")
        shape = self.s.var("s")
        self.stmt(f"{shape} = {a}.shape")
        if not kind.variable:
            self.stmt(f"if {shape} != {kind.shape!r}: raise _FB")
            dims = [str(d) for d in kind.shape]
        else:
            tests = [f"len({shape}) != {kind.ndim}"]
            tests += [f"{shape}[{i}] != {d}" for i, d in enumerate(kind.shape) if d]
            self.stmt(f"if {' or '.join(tests)}: raise _FB")
            dims = [f"{shape}[{i}]" for i in range(kind.ndim)]
            if kind.ndim > 1:
                self.stmt(f"if not {a}.size: _check_empty({shape})")
        if isinstance(element, RecordKind) and min_size(element) == 0:
            self.stmt(f"if {a}.size > {EMPTY_ELEMENT_LIMIT}: raise _FB")
        self.run.codes += ["Q"] * kind.ndim
        self.run.args += dims
        self.flush()
        if isinstance(element, ScalarKind):
            self.append(a)
            return
        item = self.s.var("x")
        self.stmt(f"for {item} in {a}.ravel().tolist():")
        if isinstance(element, StringKind):
            data = self.s.var("b")
            self.stmt(f"if {item}.__class__ is not str: raise _FB", 1)
            self.stmt(f"{data} = {item}.encode()", 1)
            self.append(f"_U64P(len({data}))", 1)
            self.append(data, 1)
        else:
            cls = self.s.const(element.cls, "C")
            encode = self.s.const(element.cls._encode, "E")
            self.stmt(f"if {item}.__class__ is not {cls}: raise _FB", 1)
            self.stmt(f"{encode}({item}, append)", 1)
        self.last_is_append = False


def build_packers(cls: type[baseformat], slow_pack: Callable[[Any], bytes]
                  ) -> tuple[Callable[..., bytes], Callable[..., None]]:
    """Generate ``pack(self)`` and ``_encode(self, append)`` for ``cls``.

    ``slow_pack(record)`` is what ``pack`` falls back to.
    """
    label = f"<record {cls._name}>"
    # _encode: the parts, appended
    source = _Source()
    source.emit(0, "def _encode(self, append):")
    packer = _Packer(source, 1)
    packer.record(cls, "self")
    packer.flush()
    source.emit(1, "return None")
    encode = source.compile("_encode", label)

    # pack: one struct call returned as is when that is all there is, else joined parts
    source = _Source()
    source.namespace["_slow_pack"] = slow_pack
    source.namespace["_join"] = b"".join
    source.emit(0, "def pack(self):")
    source.emit(1, "try:")
    source.emit(2, "parts = []")
    source.emit(2, "append = parts.append")
    start = len(source.lines)
    packer = _Packer(source, 2)
    packer.record(cls, "self")
    packer.flush()
    if packer.appends == 1 and packer.last_is_append:
        body = source.lines[start:]
        body[-1] = body[-1].replace("append(", "return (", 1)
        source.lines[start - 2:] = body  # no list needed
    elif packer.appends == 0:
        source.lines[start - 2:] = source.lines[start:] + ["        return b''"]
    else:
        source.emit(2, "return _join(parts)")
    source.emit(1, "except _ERRORS:")
    source.emit(2, "return _slow_pack(self)")
    pack = source.compile("pack", label)
    return pack, encode


# -- unpacking ---------------------------------------------------------------------------------


@dataclass
class _UnpackRun:
    codes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)  # statements that use the names


class _Unpacker:
    def __init__(self, source: _Source, indent: int = 1) -> None:
        self.s = source
        self.run = _UnpackRun()
        self.indent = indent

    def stmt(self, line: str, indent: int = 1) -> None:
        self.s.emit(self.indent + indent - 1, line)

    def flush(self) -> None:
        run = self.run
        if not run.codes:
            return
        fmt = "<" + "".join(run.codes)
        unpack = self.s.const(struct.Struct(fmt).unpack_from, "SU")
        names = ", ".join(run.names) + ("," if len(run.names) == 1 else "")
        self.stmt(f"{names} = {unpack}(buf, off)")
        self.stmt(f"off += {struct.calcsize(fmt)}")
        for line in run.after:
            self.stmt(line)
        self.run = _UnpackRun()

    def record(self, cls: type[baseformat], target: str) -> None:
        for f in cls._fields:
            self.value(f.kind, target, f.name)

    def _scalar(self, kind: ScalarKind) -> str:
        """Queue a scalar in the run; return the expression of its value."""
        name = kind.name
        if kind.dtype.kind == "c":
            real, imag = self.s.var("v"), self.s.var("v")
            self.run.codes.append(kind.unpack_code)
            self.run.names += [real, imag]
            if name == "complex64":
                zero = self.s.const(np.complex64(complex(-0.0, -0.0)), "NZ")
                return f"{zero} + _complex({real}, {imag})"
            return f"{self.s.const(np.complex128, 'T')}({real}, {imag})"
        var = self.s.var("v")
        self.run.codes.append(kind.unpack_code)
        self.run.names.append(var)
        if name == "bool":
            return f"_BOOLS[{var}]"
        if name in ("int8", "uint8"):  # every value is in a table (negative ones from its end)
            table = self.s.const(_TABLES[name], "TB")
            return f"{table}[{var}]"
        if name == "float64":
            return f"{self.s.const(np.float64, 'T')}({var})"
        if name == "float32":
            # -0.0 + x is x for every x, the sign of zero included; scalar
            # arithmetic is much faster than calling the numpy type
            return f"{self.s.const(np.float32(-0.0), 'NZ')} + {var}"
        return f"{self.s.const(kind.type(0), 'Z')} + {var}"

    def value(self, kind: Kind, target: str, name: str) -> None:
        if isinstance(kind, ScalarKind):
            self.run.after.append(f"{target}.{name} = {self._scalar(kind)}")
        elif isinstance(kind, StringKind):
            length = self.s.var("n")
            self.run.codes.append("Q")
            self.run.names.append(length)
            self.flush()
            end = self.s.var("e")
            self.stmt(f"{end} = off + {length}")
            self.stmt(f"if {end} > lim: raise _FB")
            self.stmt(f"{target}.{name} = _str(buf[off:{end}], 'utf-8')")
            self.stmt(f"off = {end}")
        elif isinstance(kind, RecordKind):
            var = self.s.var("r")
            self.stmt(f"{var} = _new({self.s.const(kind.cls, 'C')})")
            self.stmt(f"{target}.{name} = {var}")
            self.record(kind.cls, var)
        else:
            self.array(kind, f"{target}.{name}")

    def array(self, kind: ArrayKind, target: str) -> None:
        dims = [self.s.var("d") for _ in kind.shape]
        self.run.codes += ["Q"] * kind.ndim
        self.run.names += dims
        self.flush()
        tests = [f"{d} != {declared}" for d, declared in zip(dims, kind.shape, strict=True)
                 if declared]
        if tests:
            self.stmt(f"if {' or '.join(tests)}: raise _FB")
        count = self.s.var("n")
        if not kind.variable:
            self.stmt(f"{count} = {math.prod(kind.shape)}")
        else:
            self.stmt(f"{count} = {' * '.join(dims)}")
        shape = f"({', '.join(dims)},)"
        element = kind.element
        a = self.s.var("a")
        if isinstance(element, ScalarKind):
            size = element.size
            nbytes = self.s.var("nb")
            self.stmt(f"{nbytes} = {count} * {size}" if size > 1 else f"{nbytes} = {count}")
            self.stmt(f"if {nbytes} > lim - off: raise _FB")
            if element.name == "bool":
                self.stmt(f"{a} = _fb(buf, _U8, {count}, off)")
                self.stmt(f"if {count} and {a}.max() > 1: raise _FB")
                self.stmt(f"{a} = {a}.view(_BOOL)")
            else:
                dtype = self.s.const(element.dtype, "DT")
                self.stmt(f"{a} = _fb(buf, {dtype}, {count}, off)")
            self.stmt(f"off += {nbytes}")
            if kind.ndim > 1:
                if kind.variable:
                    self.stmt(f"if not {count}: _check_empty({shape})")
                self.stmt(f"{a} = {a}.reshape({shape})")
            self.stmt(f"{target} = {a}.copy() if cp else {a}")
            return
        least = min_size(element)
        if least:
            self.stmt(f"if {count} * {least} > lim - off: raise _FB")
        else:
            self.stmt(f"if {count} > {EMPTY_ELEMENT_LIMIT}: raise _FB")
        items = self.s.var("items")
        i = self.s.var("i")
        self.stmt(f"{items} = [None] * {count}")
        self.stmt(f"for {i} in range({count}):")
        if isinstance(element, StringKind):
            length, end = self.s.var("n"), self.s.var("e")
            self.stmt(f"{length}, = _U64U(buf, off)", 2)
            self.stmt(f"{end} = off + 8 + {length}", 2)
            self.stmt(f"if {end} > lim: raise _FB", 2)
            self.stmt(f"{items}[{i}] = _str(buf[off + 8:{end}], 'utf-8')", 2)
            self.stmt(f"off = {end}", 2)
        else:
            cls = self.s.const(element.cls, "C")
            decode = self.s.const(element.cls._decode, "D")
            obj = self.s.var("r")
            self.stmt(f"{obj} = _new({cls})", 2)
            self.stmt(f"off = {decode}({obj}, buf, off, lim, cp)", 2)
            self.stmt(f"{items}[{i}] = {obj}", 2)
        self.stmt(f"{a} = _fromiter({items}, _OBJ, {count})")
        if kind.ndim > 1:
            if kind.variable:
                self.stmt(f"if not {count}: _check_empty({shape})")
            self.stmt(f"{a} = {a}.reshape({shape})")
        self.stmt(f"{target} = {a}")


def copies_arrays(s: Any) -> bool:
    """Whether unpacking ``s`` copies array data (``copy=None``).

    Bytes that cannot change (``bytes``, a read-only ``memoryview``) are
    viewed: arrays read from them cost no copy, and are read-only. A buffer
    that can change (``bytearray``, a writable ``memoryview``) is copied, so
    that a record never changes when the buffer is reused.
    """
    return s.__class__ is not bytes and not getattr(s, "readonly", False)


def build_unpack(cls: type[baseformat], view: Callable[[Any], Any],
                 careful: Callable[..., Any], trailing: Callable[..., None]
                 ) -> Callable[..., Any]:
    """Generate ``unpack(cls, s, *, copy=None)``: a new record from bytes holding exactly one.

    The decoding is inlined. ``view(s)`` makes a byte view of a buffer that is
    not ``bytes``; on any failure ``careful(cls, buf, copy)`` reads again the
    careful way (and raises the precise error); ``trailing(cls, end, size)``
    raises for bytes left over.
    """
    source = _Source()
    source.namespace.update(_view=view, _careful=careful, _trailing=trailing,
                            _copies=copies_arrays)
    source.emit(0, "def unpack(cls, s, *, copy=None):")
    source.emit(1, "buf = s if s.__class__ is bytes else _view(s)")
    source.emit(1, "lim = len(buf)")
    source.emit(1, "o = _new(cls)")
    source.emit(1, "cp = _copies(s) if copy is None else copy")
    source.emit(1, "off = 0")
    source.emit(1, "try:")
    start = len(source.lines)
    unpacker = _Unpacker(source, 2)
    unpacker.record(cls, "o")
    unpacker.flush()
    if len(source.lines) == start:
        source.emit(2, "pass")
    source.emit(1, "except _ERRORS:")
    source.emit(2, "return _careful(cls, buf, cp)")
    source.emit(1, "if off != lim:")
    source.emit(2, "_trailing(cls, off, lim)")
    source.emit(1, "return o")
    return source.compile("unpack", f"<record {cls._name}>")


def build_decoder(cls: type[baseformat]) -> Callable[..., int]:
    """Generate ``_decode(o, buf, off, lim, cp) -> off`` for ``cls``."""
    source = _Source()
    source.emit(0, "def _decode(o, buf, off, lim, cp):")
    unpacker = _Unpacker(source)
    unpacker.record(cls, "o")
    unpacker.flush()
    source.emit(1, "return off")
    return source.compile("_decode", f"<record {cls._name}>")


def build_copier(cls: type[baseformat]) -> Callable[[Any, Any], None]:
    """Generate ``_take(self, other)``: set every field of ``self`` from ``other``."""
    source = _Source()
    source.emit(0, "def _take(self, other):")
    for f in cls._fields:
        source.emit(1, f"self.{f.name} = other.{f.name}")
    source.emit(1, "return None")
    return source.compile("_take", f"<record {cls._name}>")
