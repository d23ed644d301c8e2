"""Typed binary records: the ``baseformat`` classes made from dataformats.

:func:`make_type` turns a record name and its fields into a subclass of
:class:`baseformat`; :attr:`papyflow.formats.dataformat.DataFormat.type` calls
it for a dataformat. A record is a plain object with one attribute per field::

    Point = make_type("user/point/1", {"x": "float64", "y": "float64",
                                       "tags": [0, "string"]})
    p = Point(x=1, y=2.5, tags=["a", "b"])      # unsafe casting, defaults filled in
    p.x                                          # np.float64(1.0)
    data = p.pack()                              # bytes, in the documented layout
    Point.unpack(data) == p                      # True

Values are numpy scalars of the declared type (``str`` for strings,
``numpy.bool_`` for bools), numpy arrays (``dtype=object`` holding ``str`` or
records for arrays of strings or records), and nested records.

The binary layout (``docs/formats.md``)::

    scalar   little-endian, its width; bool 1 byte (0 or 1); complex: real, imaginary
    string   uint64 byte length, then the UTF-8 bytes
    array    one uint64 per dimension (fixed ones too), then the elements in C order
    record   its fields in declared order, nested records inline; no header

``unpack`` trusts nothing it reads: every length and shape is checked against
the bytes left before anything is allocated, fixed dimensions must be as
declared, bools must be 0 or 1, text must be UTF-8, and a record must use all
the bytes it is given. Each failure is a :class:`DecodeError` naming the
record, the field and the byte offset.

Errors (all :class:`RecordError`, each also a builtin)::

    SpecError (ValueError)                 make_type: bad name, field name or spec
    FieldValueError (TypeError, ValueError) a value cannot become a field
      MissingFieldError, UnknownFieldError
    DecodeError (ValueError)                bytes that are not a packed record
      TruncatedError (EOFError)
    BatchError (TypeError)                  a batch of a format that is not fixed-size

Record types whose every field has a fixed size (no strings, no variable
dimensions, at any depth) also pack and unpack many records at once as numpy
structured arrays: :attr:`baseformat.batch_dtype`, :meth:`baseformat.pack_batch`,
:meth:`baseformat.unpack_batch`, :meth:`baseformat.from_batch`.
"""

from __future__ import annotations

import re
import struct
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, cast, overload

import numpy as np

from . import _values
from ._batch import (
    BatchLayout,
    as_rows,
    build_layout,
    check_rows,
    copy_rows,
    pack_rows,
    rows_buffer,
)
from ._codegen import (
    FAST_PATH_ERRORS,
    build_copier,
    build_decoder,
    build_packers,
    build_unpack,
    copies_arrays,
)
from ._fields import (
    ArrayKind,
    Field,
    RecordKind,
    ScalarKind,
    StringKind,
    element_kind_of,
    fixed_size,
    min_size,
    parse_fields,
    schema_of,
    spec_of,
)
from ._layout import (
    Reader,
    StreamSource,
    Writer,
    array_parts,
    byte_view,
    check_consumed,
    decode_array,
    decode_element,
    decode_exactly,
    decode_record,
    decode_string,
    read_exact,
    scalar_bytes,
    string_parts,
    write_parts,
)
from ._record_errors import (
    BatchError,
    DecodeError,
    FieldValueError,
    MissingFieldError,
    RecordError,
    SpecError,
    TruncatedError,
    UnknownFieldError,
)

__all__ = [
    "RESERVED_FIELD_NAMES",
    "BatchError",
    "DecodeError",
    "FieldValueError",
    "MissingFieldError",
    "RecordError",
    "SpecError",
    "TruncatedError",
    "UnknownFieldError",
    "baseformat",
    "make_type",
    "pack_array",
    "pack_scalar",
    "read_some",
    "read_string",
    "setup_array",
    "setup_scalar",
    "unpack_array",
    "unpack_scalar",
]

_new = object.__new__


class _RecordType(type):
    """The metaclass of record types: routes three names called on the type itself.

    ``RecordType.from_dict(data)``, ``RecordType.unpack(data)`` and
    ``RecordType.unpack_from(fd)`` make new records (the class methods
    ``_from_dict_new``, ``_unpack_new``, ``_unpack_from_new``); the same names
    called on a record (``record.unpack(data)``, the BEAT usage) fill that
    record and return it. A data descriptor on the metaclass wins over
    the class's own attribute for class access only, and ``property`` with
    ``attrgetter`` keeps the routing in C: no Python-level ``__get__`` runs.
    """

    if not TYPE_CHECKING:  # (type checkers see baseformat's _FillOrMake declarations)
        from_dict = property(attrgetter("_from_dict_new"),
                             doc="A new record from a dict (see baseformat._from_dict_new).")
        unpack = property(attrgetter("_unpack_new"),
                          doc="A new record from bytes (see baseformat._unpack_new).")
        unpack_from = property(attrgetter("_unpack_from_new"),
                               doc="A new record from a file object (see "
                                   "baseformat._unpack_from_new).")


_T = TypeVar("_T", bound="baseformat")


class _FillOrMake:
    """For type checkers only: ``from_dict``, ``unpack`` and ``unpack_from``.

    Called on a record type they make a record; called on a record they fill
    it; either way they return the record.
    """

    @overload
    def __get__(self, obj: None, owner: type[_T]) -> Callable[..., _T]: ...
    @overload
    def __get__(self, obj: _T, owner: type[_T] | None = None) -> Callable[..., _T]: ...
    def __get__(self, obj: Any, owner: Any = None) -> Callable[..., Any]:
        # Never called: the metaclass routes these names (see _RecordType).
        raise AssertionError("_FillOrMake exists for type checkers only")


class baseformat(metaclass=_RecordType):
    """Base of every record type; subclasses are made by :func:`make_type`.

    ``T(**fields)`` builds a record with *unsafe* casting (``numpy.can_cast``
    rules; plain Python numbers judged by value) and fills missing fields with
    defaults: zeros, empty strings, arrays of the declared shape (0 for
    variable dimensions), nested records with defaults. Values are copied into
    the record. Use :meth:`from_dict` to choose the casting rule and to insist
    that every field is given.

    Records use ``__slots__``: assigning an attribute that is not a field
    raises ``AttributeError``. Fields may be reassigned freely; :meth:`pack`
    casts what it finds the way the constructor does, or raises
    :class:`FieldValueError` naming the field.

    Class attributes: ``_name`` (the record name), ``_format`` (the fields
    mapping given to :func:`make_type`, read-only), :attr:`packed_size` and
    :attr:`batch_dtype`. Records pickle (and ``copy.deepcopy``) by their packed
    bytes and their type's field specs; unpickling makes the type again if it
    is not known in that process.
    """

    __slots__ = ()

    _name: ClassVar[str] = "baseformat"
    _format: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    _fields: ClassVar[tuple[Field, ...]] = ()
    _field_names: ClassVar[frozenset[str]] = frozenset()
    _min_size: ClassVar[int] = 0
    _schema: ClassVar[Any] = ("record", "baseformat", ())
    _batch: ClassVar[BatchLayout | None] = None

    packed_size: ClassVar[int | None] = 0
    """Bytes every record of this type packs to; ``None`` when the size varies
    (the type has a string or a variable dimension somewhere)."""

    batch_dtype: ClassVar[np.dtype[Any] | None] = None
    """The numpy structured dtype of a batch of these records (see
    :meth:`unpack_batch`); ``None`` when the type is not fixed-size (or packs
    to zero bytes). Array dimensions sit in gaps of the dtype, not in fields."""

    if TYPE_CHECKING:  # what type checkers see of the three names the metaclass routes
        from_dict: _FillOrMake
        unpack: _FillOrMake
        unpack_from: _FillOrMake

        # fields are made at run time: any attribute may be one
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    def __init__(self, /, **kwargs: Any) -> None:
        _values.fill(self, kwargs, "unsafe", True, self._name, "")

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def _default(cls) -> Self:
        """A record with every field at its default."""
        return cls()

    @classmethod
    def _from_dict_new(cls, data: Mapping[str, Any] | None = None, casting: str = "safe",
                       add_defaults: bool = False) -> Self:
        """Build a record from a dict of field values, with a chosen casting rule.

        ``RecordType.from_dict(data)`` returns a new record; ``record.from_dict(data)``
        sets the fields of ``record`` and returns it (all values are checked
        before any is set).

        Args:
            data: field name to value; ``None`` is ``{}``. Nested records are
                records or dicts; arrays are numpy arrays or nested lists (fixed
                dimensions must match, variable ones may be any size); arrays
                of records hold records or dicts.
            casting: a ``numpy.can_cast`` rule: ``'no'``, ``'equiv'``,
                ``'safe'`` (default), ``'same_kind'`` or ``'unsafe'``. Plain
                Python numbers and lists of them are judged by value (5 fits a
                uint8 safely, 300 does not).
            add_defaults: fill missing (or ``None``) fields with defaults
                instead of raising.

        Raises:
            FieldValueError: a value cannot be cast, or has the wrong type or
                shape (:class:`MissingFieldError` for a missing field,
                :class:`UnknownFieldError` for an unknown one); the message
                names the record, the field path (``'meta.frame'``,
                ``'tags[3]'``), the expected type and shape, and the value.
            ValueError: ``casting`` is not one of the rules.
        """
        _values.check_casting(casting)
        return _values.fill(_new(cls), data, casting, add_defaults, cls._name, "")

    if not TYPE_CHECKING:  # (type checkers see _FillOrMake below)
        def from_dict(self, data: Mapping[str, Any] | None = None, casting: str = "safe",
                      add_defaults: bool = False) -> Self:
            """Set this record's fields from a dict; return the record.

            All values are cast before any is set. Called on the type,
            ``RecordType.from_dict(data)`` makes a new record instead; the
            arguments and errors are those of :meth:`_from_dict_new`.
            """
            _values.check_casting(casting)
            return _values.fill(self, data, casting, add_defaults, self._name, "")

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict, in declared order.

        Nested records become dicts; arrays stay numpy arrays (the record's own
        arrays, not copies), arrays of records become object arrays of dicts;
        scalars stay numpy scalars. ``type(r).from_dict(r.as_dict()) == r``.
        """
        return {f.name: _values.to_plain(f.kind, getattr(self, f.name)) for f in self._fields}

    def copy(self) -> Self:
        """A deep copy: arrays and nested records are copied too."""
        other = _new(type(self))
        for f in self._fields:
            setattr(other, f.name, _values.copy_value(f.kind, getattr(self, f.name)))
        return other

    # -- packing ---------------------------------------------------------------------------------

    def pack(self) -> bytes:
        """The record's bytes in the binary layout.

        Raises:
            FieldValueError: a field holds a value that cannot be packed (the
                constructor's unsafe casting is applied first).
        """
        return b""  # replaced in every subclass by a generated function

    def _encode(self, append: Callable[[Any], None]) -> None:
        """Append the packed parts (bytes, arrays) to a list (generated per subclass)."""

    @staticmethod
    def _decode(obj: Any, buf: Any, offset: int, limit: int, copy: bool) -> int:
        """Fill ``obj`` from ``buf[offset:limit]``; return the end (generated per subclass)."""
        return offset

    def _take(self, other: Any) -> None:
        """Set every field of ``self`` from ``other`` (generated per subclass)."""

    def _canonical(self) -> Self:
        """A new record with every field cast from this one's (the careful path)."""
        values = {f.name: getattr(self, f.name, None) for f in self._fields}
        return _values.fill(_new(type(self)), values, "unsafe", False, self._name, "",
                            deep=True)

    def _parts(self) -> list[Any]:
        """The packed parts: by the generated code, else after casting every field."""
        parts: list[Any] = []
        try:
            self._encode(parts.append)
        except FAST_PATH_ERRORS:
            parts = []
            canonical = self._canonical()
            try:
                canonical._encode(parts.append)
            except FAST_PATH_ERRORS as exc:  # pragma: no cover - a bug, not bad data
                raise RuntimeError(f"{self._name}: cannot pack a checked record") from exc
        return parts

    def _pack_slowly(self) -> bytes:
        """``pack`` the careful way: cast every field first (the generated pack's fallback)."""
        return b"".join(self._parts())

    def pack_into(self, fd: Writer) -> None:
        """Write the record's bytes to ``fd`` (any object with ``write``).

        Array data is written straight from the arrays' memory, without a copy;
        small parts are joined into one write.

        Raises:
            FieldValueError: as :meth:`pack`.
        """
        write_parts(fd, self._parts())

    # -- unpacking -------------------------------------------------------------------------------

    @classmethod
    def _unpack_new(cls, s: Any, *, copy: bool | None = None) -> Self:
        """Read a record from bytes that hold exactly one.

        ``RecordType.unpack(s)`` returns a new record; ``record.unpack(s)`` fills
        ``record`` (only if the whole record reads) and returns it.

        Args:
            s: ``bytes``, ``bytearray``, ``memoryview`` or any contiguous
                buffer.
            copy: ``True``: numeric arrays are copies (writable, independent
                of ``s``). ``False``: they are views of ``s`` (no copy;
                read-only when ``s`` is, and changed when ``s`` changes).
                ``None`` (the default): views of bytes that cannot change
                (``bytes``, a read-only ``memoryview``), which are read-only
                arrays, and copies of a buffer that can (``bytearray``).

        Raises:
            DecodeError: the bytes are not one record of this type (bytes left
                over included); :class:`TruncatedError` when they end early.
                The message names the record, the field and the byte offset.
            TypeError: ``s`` is not a bytes-like object.
        """
        buf = s if s.__class__ is bytes else byte_view(s)
        if copy is None:
            copy = copies_arrays(s)
        obj = _new(cls)
        try:
            end = cls._decode(obj, buf, 0, len(buf), copy)
        except FAST_PATH_ERRORS:
            return decode_exactly(cls, buf, copy)  # type: ignore[return-value]
        if end != len(buf):
            check_consumed(cls, end, len(buf))
        return obj

    if not TYPE_CHECKING:  # (type checkers see _FillOrMake below)
        def unpack(self, s: Any, *, copy: bool | None = None) -> Self:
            """Fill this record from bytes that hold exactly one; return the record.

            The record changes only if the whole record reads. Called on the
            type, ``RecordType.unpack(s)`` makes a new record instead; the
            arguments and errors are those of :meth:`_unpack_new`.
            """
            self._take(type(self).unpack(s, copy=copy))
            return self

    @classmethod
    def _unpack_from_new(cls, fd: Reader) -> Self:
        """Read one record from a file object (anything with ``read``).

        Reads exactly the record's bytes, nothing after. ``RecordType.unpack_from(fd)``
        returns a new record; ``record.unpack_from(fd)`` fills ``record``. Its
        arrays are writable and its own. They are read straight into their
        memory when ``fd`` has ``readinto`` and can tell its size (seekable);
        from pipes and sockets they are read in chunks, so a corrupt length can
        never allocate more than the bytes that arrive.

        Raises:
            DecodeError: as :meth:`unpack`; :class:`TruncatedError` (an
                ``EOFError``) when the stream ends before the record does.
        """
        if cls.packed_size is not None:  # arrays: views of bytes of their own, writable
            return cls.unpack(bytearray(read_exact(fd, cls.packed_size, cls._name)), copy=False)
        return decode_record(cls, StreamSource(fd), cls._name, "", True)  # type: ignore[return-value]

    if not TYPE_CHECKING:  # (type checkers see _FillOrMake below)
        def unpack_from(self, fd: Reader) -> Self:
            """Fill this record from one record read from a file object; return it.

            Called on the type, ``RecordType.unpack_from(fd)`` makes a new
            record instead; see :meth:`_unpack_from_new`.
            """
            self._take(type(self).unpack_from(fd))
            return self

    # -- comparing and showing -----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Exact equality with a record of the same type (arrays by shape and values).

        Two classes made from the same declaration (the same name and fields,
        loaded twice) count as the same type.
        """
        if type(other) is not type(self) and not (
                isinstance(other, baseformat) and _schema(type(other)) == _schema(type(self))):
            return NotImplemented
        return all(_values.equal(f.kind, getattr(self, f.name), getattr(other, f.name))
                   for f in self._fields)

    __hash__ = None  # type: ignore[assignment]  # records are mutable

    def isclose(self, other: Any, *args: Any, **kwargs: Any) -> bool:
        """Closeness in the numerical sense.

        Float and complex values (scalars and arrays) are compared with
        ``numpy.isclose(a, b, *args, **kwargs)`` (``rtol``, ``atol``,
        ``equal_nan``); integers, bools and strings must be equal; arrays must
        have the same shape. ``False`` for a record of another type.
        """
        if type(other) is not type(self) and not (
                isinstance(other, baseformat) and _schema(type(other)) == _schema(type(self))):
            return False
        return all(_values.close(f.kind, getattr(self, f.name), getattr(other, f.name),
                                 args, kwargs)
                   for f in self._fields)

    def __repr__(self) -> str:
        """``user/point/1(x=1.0, tags=['a'], patch=[[0, 1], [2, 3]] uint8, ...)``."""
        fields = ", ".join(
            f"{f.name}={_values.show_value(f.kind, getattr(self, f.name))}"
            if hasattr(self, f.name) else f"{f.name}=<unset>" for f in self._fields)
        return f"{self._name}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the type's schema and the packed bytes."""
        return _restore, (type(self)._schema, self.pack())

    # -- batches ---------------------------------------------------------------------------------

    @classmethod
    def _layout(cls) -> BatchLayout:
        """The batch layout, or BatchError saying why there is none."""
        if cls._batch is None:
            why = next((f for f in cls._fields if fixed_size(f.kind) is None), None)
            reason = (f"field {why.name!r} is {_describe(why)}" if why is not None
                      else "its records pack to zero bytes")
            raise BatchError(f"batches need a fixed-size record type with a non-zero size; "
                             f"{reason}", cls._name)
        return cls._batch

    @classmethod
    def batch_buffer(cls, records: np.ndarray | Iterable[Any]) -> memoryview:
        """:meth:`pack_batch` without the copy, where there is nothing to change.

        For a C-contiguous structured array of :attr:`batch_dtype` whose gaps
        need nothing written, a read-only view of the array's memory (it
        changes if the array does: write it out before changing the array);
        otherwise a view of the bytes :meth:`pack_batch` makes.

        Raises:
            BatchError, FieldValueError: as :meth:`pack_batch`.
        """
        layout = cls._layout()
        if (isinstance(records, np.ndarray) and layout is not None
                and records.dtype == layout.dtype and records.ndim == 1):
            return rows_buffer(layout, records)
        return memoryview(cls.pack_batch(records))

    @classmethod
    def pack_batch(cls, records: np.ndarray | Iterable[Any]) -> bytes:
        """Pack many records at once; the bytes equal ``b''.join(r.pack() for r in records)``.

        Args:
            records: a numpy structured array of :attr:`batch_dtype` (or one
                with the same field names, cast with ``'same_kind'``), any
                shape (taken in C order); or an iterable of records of this
                type and dicts (every field given; cast as the constructor
                does).

        A structured array is packed with ``tobytes``, plus one copy when the
        type has fixed arrays and the gaps of the array do not hold their
        dimensions yet (arrays from :meth:`unpack_batch` and :meth:`to_batch`
        do; ``numpy.zeros(n, T.batch_dtype)`` does not). Its bool bytes are not
        checked (numpy bools are 0 or 1; :meth:`unpack_batch` checks). Records
        are packed one by one.

        Raises:
            BatchError: the type is not fixed-size.
            FieldValueError: a record or row cannot be packed.
        """
        layout = cls._layout()
        if isinstance(records, np.ndarray) and records.dtype.names is not None:
            return pack_rows(layout, as_rows(layout, records, cls._name))
        parts = []
        for record in records:
            if isinstance(record, cls) or (isinstance(record, baseformat)
                                           and record._schema == cls._schema):
                parts.append(record.pack())
            elif isinstance(record, Mapping):
                parts.append(_values.fill(_new(cls), record, "unsafe", False, cls._name,
                                          "").pack())
            else:
                raise FieldValueError(f"expected a {cls._name} record or a dict, got "
                                      f"{_values.show(record)}", cls._name, "",
                                      f"record {cls._name}", record)
        return b"".join(parts)

    @classmethod
    def unpack_batch(cls, buffer: Any, count: int | None = None, *,
                     copy: bool = False) -> np.ndarray:
        """Unpack packed records into a numpy structured array of :attr:`batch_dtype`.

        Args:
            buffer: a bytes-like object holding records packed one after the
                other.
            count: how many records to read from its start; by default all,
                and then its length must be a multiple of :attr:`packed_size`.
            copy: by default the array is a view of ``buffer`` (no copy;
                read-only when ``buffer`` is, e.g. ``bytes``). ``copy=True``
                returns a writable copy.

        Every record's array dimensions and bool bytes are checked (vectorized).

        Raises:
            BatchError: the type is not fixed-size.
            DecodeError: a length that is not a multiple of the record size, too
                few bytes for ``count``, wrong dimensions or a bool byte other
                than 0 or 1; the message names the record index and field.
        """
        layout = cls._layout()
        data = buffer if buffer.__class__ is bytes else byte_view(buffer)
        size = layout.itemsize
        if count is None:
            if len(data) % size:
                raise DecodeError(f"a batch of {size}-byte records cannot be {len(data)} "
                                  f"bytes long ({len(data) // size} records and "
                                  f"{len(data) % size} bytes)", cls._name, "",
                                  len(data) - len(data) % size)
            count = len(data) // size
        elif count < 0 or count * size > len(data):
            raise TruncatedError(f"{count} records need {count * size} bytes, the buffer "
                                 f"holds {len(data)}", cls._name)
        check_rows(layout, np.frombuffer(data, layout.wire, count), cls._name)
        rows = np.frombuffer(data, layout.dtype, count)
        return copy_rows(rows) if copy else rows

    @classmethod
    def to_batch(cls, records: Iterable[Any]) -> np.ndarray:
        """Records (or dicts) as a new, writable structured array of :attr:`batch_dtype`."""
        return cls.unpack_batch(cls.pack_batch(records), copy=True)

    @classmethod
    def from_batch(cls, rows: Any) -> list[Self]:
        """Rows of a structured array (as :meth:`unpack_batch` gives) as records.

        Also takes an iterable of records and dicts, as :meth:`pack_batch` does.
        The records are independent of ``rows`` (arrays are copied).
        """
        data = cls.pack_batch(rows)
        size = cls._layout().itemsize
        decode = cls._decode
        out = []
        for start in range(0, len(data), size):
            obj = _new(cls)
            try:
                decode(obj, data, start, start + size, True)
            except FAST_PATH_ERRORS:
                obj = cast(Self, decode_exactly(cls, memoryview(data)[start:start + size], True))
            out.append(obj)
        return out

    @classmethod
    def from_row(cls, row: Any) -> Self:
        """One row (a ``numpy.void`` of :attr:`batch_dtype`) as a record."""
        return cls.from_batch(np.asarray(row).reshape(1))[0]


def _describe(f: Field) -> str:
    from ._fields import describe

    return f"a {describe(f.kind)}" if not isinstance(f.kind, RecordKind) else \
        f"a record {f.kind.name} that is not fixed-size"


RESERVED_FIELD_NAMES: frozenset[str] = frozenset(
    name for name in dir(baseformat) if not name.startswith("_"))
"""Names no field may take: the methods and class attributes of records.
(Names starting with ``_`` are reserved too.)"""

_RESERVED = frozenset(dir(baseformat))

# Every type made, by schema (its name and field specs, nested types by value):
# unpickling finds the type here before making it anew.
_TYPES: weakref.WeakValueDictionary[Any, type[baseformat]] = weakref.WeakValueDictionary()


_SCHEMAS: weakref.WeakKeyDictionary[type, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def _schema(cls: type[baseformat]) -> tuple[Any, ...]:
    """What makes two record classes the same type: the name and the fields, recursively."""
    known = _SCHEMAS.get(cls)
    if known is not None:
        return known

    def spec(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, baseformat):
            return _schema(value)
        if isinstance(value, list | tuple):
            return tuple(spec(v) for v in value)
        return value

    schema = (cls._name, tuple((name, spec(value)) for name, value in cls._format.items()))
    _SCHEMAS[cls] = schema
    return schema


def make_type(name: str, fields: Mapping[str, Any]) -> type[baseformat]:
    """A new baseformat subclass for the record ``name`` with these fields, in this order.

    Args:
        name: the record name (``user/point/1``), shown in messages and repr.
        fields: field name to spec, in packing order. A spec is a scalar type
            name (``int8`` ... ``uint64``, ``float32``, ``float64``,
            ``complex64``, ``complex128``, ``bool``, ``string``), a record type
            made by an earlier ``make_type`` call, or a list ``[d1, ..., dn,
            element]`` of 1 to 32 dimensions (ints >= 0, 0 for a variable
            dimension) and an element that is a scalar type name or a record
            type.

    Field names must be Python identifiers, not keywords, not starting with
    ``_``, and not in :data:`RESERVED_FIELD_NAMES`.

    Raises:
        SpecError: (a ``ValueError``) naming the record and the field.
    """
    parsed = parse_fields(name, fields, baseformat, _RESERVED)
    class_name = re.sub(r"\W", "_", name.rsplit("/", 2)[-2] if name.count("/") >= 2
                        else name) or "record"
    if not class_name.isidentifier():
        class_name = f"record_{class_name}"
    sizes = [fixed_size(f.kind) for f in parsed]
    namespace: dict[str, Any] = {
        "__slots__": tuple(f.name for f in parsed),
        "__module__": __name__,
        "__qualname__": class_name,
        "_name": name,
        "_format": MappingProxyType({f.name: spec_of(f.kind) for f in parsed}),
        "_fields": parsed,
        "_field_names": frozenset(f.name for f in parsed),
        "_min_size": sum(min_size(f.kind) for f in parsed),
        "_schema": ("record", name, tuple((f.name, schema_of(f.kind)) for f in parsed)),
        "packed_size": None if None in sizes else sum(s for s in sizes if s is not None),
    }
    cls = cast("type[baseformat]", _RecordType(class_name, (baseformat,), namespace))
    cls._take = build_copier(cls)  # type: ignore[method-assign,assignment]
    cls._decode = staticmethod(build_decoder(cls))  # type: ignore[method-assign]
    pack, encode = build_packers(cls, baseformat._pack_slowly)
    pack.__doc__ = baseformat.pack.__doc__
    cls.pack = pack  # type: ignore[method-assign]
    cls._encode = encode  # type: ignore[method-assign]
    unpack = build_unpack(cls, byte_view, decode_exactly, check_consumed)
    unpack.__doc__ = baseformat._unpack_new.__doc__
    cls._unpack_new = classmethod(unpack)  # type: ignore[method-assign,assignment]
    cls._batch = build_layout(cls)
    cls.batch_dtype = None if cls._batch is None else cls._batch.dtype
    _TYPES[cls._schema] = cls
    return cls


def _type_of_schema(schema: Any) -> type[baseformat]:
    """The record type of a schema: a known one, else made anew."""
    known = _TYPES.get(schema)
    if known is not None:
        return known
    _, name, fields = schema
    return make_type(name, {field: _spec_of_schema(spec) for field, spec in fields})


def _spec_of_schema(spec: Any) -> Any:
    """A field spec from its schema: a type name, ``("array", shape, element)``
    or ``("record", name, fields)``."""
    if isinstance(spec, str):
        return spec
    if spec[0] == "array":
        return [*spec[1], _spec_of_schema(spec[2])]
    return _type_of_schema(spec)


def _restore(schema: Any, data: bytes) -> baseformat:
    """Unpickle a record: its type from the schema, its fields from its bytes."""
    return _type_of_schema(schema).unpack(data)


# -- module functions (the reference's helpers) ---------------------------------------------------


def setup_scalar(formatname: str, attrname: str, dtype: Any, value: Any, casting: str,
                 add_defaults: bool) -> Any:
    """Cast ``value`` to the scalar type ``dtype``.

    Args:
        formatname: the record name, for messages only.
        attrname: the field name, for messages only.
        dtype: a numpy dtype (or type, or name) of one of the scalar types, or
            ``str`` (or ``'string'``) for a string.
        value: the value; ``None`` means missing.
        casting: a ``numpy.can_cast`` rule (Python numbers judged by value).
        add_defaults: return the default (zero, ``''``) for a missing value
            instead of raising.

    Returns:
        A numpy scalar of ``dtype`` (``str`` for a string).

    Raises:
        FieldValueError: the value cannot be cast (:class:`MissingFieldError`
            when missing).
        SpecError: ``dtype`` is not a scalar type.
    """
    _values.check_casting(casting)
    kind = element_kind_of(dtype, baseformat)
    if isinstance(kind, RecordKind):
        raise SpecError(f"setup_scalar takes a scalar type, not the record type {kind.name}")
    return _values.cast(kind, value, casting, add_defaults, formatname, attrname)


def setup_array(formatname: str, attrname: str, shape: Sequence[int], dtype: Any, value: Any,
                casting: str, add_defaults: bool) -> np.ndarray:
    """Cast ``value`` to an array of ``shape`` (0 marks a variable dimension) and ``dtype``.

    Args:
        formatname: the record name, for messages only.
        attrname: the field name, for messages only.
        shape: the declared dimensions.
        dtype: a scalar numpy dtype, ``str`` for strings, or a record type.
        value: a numpy array or nested lists; ``None`` means missing.
        casting: a ``numpy.can_cast`` rule (lists of Python numbers judged by value).
        add_defaults: return the default array for a missing value instead of
            raising.

    Returns:
        A new array (``dtype=object`` for strings and records).

    Raises:
        FieldValueError: wrong shape, or values that cannot be cast.
        SpecError: a bad shape or dtype.
    """
    _values.check_casting(casting)
    kind = _array_kind(formatname, attrname, shape, dtype)
    array: np.ndarray = _values.cast(kind, value, casting, add_defaults, formatname, attrname)
    return array


def _array_kind(formatname: str, attrname: str, shape: Sequence[int], dtype: Any) -> ArrayKind:
    element = element_kind_of(dtype, baseformat)
    spec = [*shape, element.cls if isinstance(element, RecordKind) else element.name]
    kind = parse_fields(formatname, {"value": spec}, baseformat, frozenset())[0].kind
    if not isinstance(kind, ArrayKind):
        raise SpecError(f"invalid array shape {tuple(shape)!r}", formatname, attrname)
    return kind


def pack_scalar(dtype: Any, value: Any, fd: Writer) -> None:
    """Write the packed bytes of one scalar (or string, or record) to ``fd``.

    ``value`` is cast with unsafe casting first; ``dtype`` as for
    :func:`setup_scalar`, or a record type.

    Raises:
        FieldValueError: the value cannot be cast.
    """
    kind = element_kind_of(dtype, baseformat)
    if isinstance(kind, RecordKind):
        record = _values.cast(kind, value, "unsafe", False, kind.name, "")
        record.pack_into(fd)
        return
    value = _values.cast(kind, value, "unsafe", False, "", "")
    if isinstance(kind, StringKind):
        write_parts(fd, string_parts(value))
    else:
        assert isinstance(kind, ScalarKind)
        write_parts(fd, [scalar_bytes(kind, value)])


def pack_array(dtype: Any, value: Any, fd: Writer) -> None:
    """Write the packed bytes of an array to ``fd``: its dimensions, then its elements.

    ``value`` is a numpy array (or nested lists) of any shape; it is cast to
    ``dtype`` (a scalar dtype, ``str`` or a record type) with unsafe casting.

    Raises:
        FieldValueError: the value cannot be cast.
    """
    kind = element_kind_of(dtype, baseformat)
    if isinstance(value, np.ndarray):
        ndim = value.ndim
    else:
        ndim = np.asarray(value, dtype=object).ndim if not isinstance(kind, ScalarKind) \
            else np.ndim(value)
    if ndim == 0:
        raise FieldValueError(f"expected an array, got {_values.show(value)}", "", "",
                              "an array", value)
    array_kind = ArrayKind((0,) * ndim, kind)
    array = _values.cast_array(array_kind, value, "unsafe", False)
    write_parts(fd, array_parts(array_kind, array, _encode_element))


def _encode_element(record: baseformat, append: Callable[[Any], None]) -> None:
    for part in record._parts():
        append(part)


def unpack_scalar(dtype: Any, fd: Reader) -> Any:
    """Read one scalar (a numpy scalar), string (``str``) or record from ``fd``.

    Raises:
        DecodeError: bad bytes; :class:`TruncatedError` when ``fd`` ends early.
    """
    kind = element_kind_of(dtype, baseformat)
    if isinstance(kind, RecordKind):
        return kind.cls.unpack_from(fd)
    return decode_element(kind, StreamSource(fd), "", "", True)


def unpack_array(shape: Sequence[int], dtype: Any, fd: Reader) -> np.ndarray:
    """Read one array of the declared ``shape`` (0 marks a variable dimension) from ``fd``.

    The dimensions are read first: fixed ones must equal ``shape``, and the
    array must fit in what ``fd`` holds (when it can tell) before anything
    is allocated.

    Raises:
        DecodeError: bad bytes; :class:`TruncatedError` when ``fd`` ends early.
    """
    kind = _array_kind("", "", shape, dtype)
    return decode_array(kind, StreamSource(fd), "", "", True)


def read_some(format: str, fd: Reader) -> tuple[Any, ...]:
    """Read ``struct.calcsize(format)`` bytes from ``fd`` and unpack them with ``format``.

    Give a byte order (``'<'``) in ``format``: the layout is little-endian.

    Raises:
        TruncatedError: ``fd`` ends first.
    """
    return struct.unpack(format, read_exact(fd, struct.calcsize(format)))


def read_string(fd: Reader) -> str:
    """Read one string from ``fd``: its uint64 byte length, then UTF-8 bytes.

    Raises:
        DecodeError: invalid UTF-8; :class:`TruncatedError` when ``fd`` ends early.
    """
    return decode_string(StreamSource(fd))

