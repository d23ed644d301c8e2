"""The field model of record types: what a field spec means, and what it costs in bytes.

A record type is a tuple of :class:`Field`, each a name and a *kind*:

``ScalarKind``
    one of the 13 numeric and bool types, packed little-endian;
``StringKind``
    UTF-8 text behind a uint64 byte length;
``RecordKind``
    a nested record type (a ``baseformat`` subclass), packed inline;
``ArrayKind``
    a shape (``0`` for a variable dimension) and an element kind that is one
    of the three above.

Everything here is plain data plus the arithmetic of the binary layout
(:func:`min_size`, :func:`fixed_size`); casting values is in ``_values``,
packing in ``_layout`` and ``_codegen``.
"""

from __future__ import annotations

import keyword
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ._record_errors import SpecError

if TYPE_CHECKING:
    from .baseformat import baseformat

__all__ = [
    "EMPTY_ELEMENT_LIMIT",
    "MAX_DIMENSIONS",
    "MAX_ELEMENTS",
    "SCALARS",
    "STRING",
    "ArrayKind",
    "Field",
    "Kind",
    "RecordKind",
    "ScalarKind",
    "StringKind",
    "describe",
    "element_kind_of",
    "fixed_size",
    "min_size",
    "parse_fields",
]

MAX_DIMENSIONS = 32
"""Most dimensions an array field may have (numpy 1.x's limit)."""

MAX_ELEMENTS = 2**56
"""The product of an array's non-zero dimensions must not exceed this.

Far above any array that fits in memory, and low enough that numpy's own size
arithmetic (dimensions times item size) never overflows, even for an empty
array such as one of shape ``(2**60, 0)``.
"""

EMPTY_ELEMENT_LIMIT = 65_536
"""Most elements of an array whose element packs to zero bytes.

Such elements are records without fields (at any depth). Their count costs no
bytes, so a corrupt or hostile count could otherwise make the decoder build an
object array of any size out of nothing; packing and building such arrays
obey the same limit, so whatever packs also unpacks.
"""


@dataclass(frozen=True, slots=True)
class ScalarKind:
    """A numeric or bool scalar: ``name``, its little-endian ``dtype`` and struct codes."""

    name: str
    dtype: np.dtype[Any]
    unpack_code: str
    """struct codes that read it: bool is read as ``B`` (then checked to be 0 or 1),
    complex as two floats"""
    pack_code: str
    """struct codes that write it: bool is written as ``?``"""

    @property
    def size(self) -> int:
        """Bytes it packs to."""
        return self.dtype.itemsize

    @property
    def type(self) -> type[np.generic]:
        """The numpy scalar type of its values."""
        return self.dtype.type


@dataclass(frozen=True, slots=True)
class StringKind:
    """UTF-8 text, packed as a uint64 byte length and the bytes."""

    name: str = "string"


@dataclass(frozen=True, slots=True)
class RecordKind:
    """A nested record of type ``cls`` (a ``baseformat`` subclass), packed inline."""

    cls: type[baseformat]

    @property
    def name(self) -> str:
        """The nested record type's name."""
        return self.cls._name


ElementKind: TypeAlias = ScalarKind | StringKind | RecordKind


@dataclass(frozen=True, slots=True)
class ArrayKind:
    """An array: ``shape`` (``0`` marks a variable dimension) of ``element``."""

    shape: tuple[int, ...]
    element: ElementKind

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def variable(self) -> bool:
        """Whether some dimension is variable."""
        return 0 in self.shape


Kind: TypeAlias = ScalarKind | StringKind | RecordKind | ArrayKind


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a record type: its ``name`` and ``kind``."""

    name: str
    kind: Kind


_STRUCT_CODES = {
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "float32": "f", "float64": "d", "complex64": "ff", "complex128": "dd",
    "bool": "B",
}

SCALARS: dict[str, ScalarKind] = {
    name: ScalarKind(name, np.dtype(name).newbyteorder("<"), code,
                     "?" if name == "bool" else code)
    for name, code in _STRUCT_CODES.items()
}
"""The scalar kinds by type name."""

STRING = StringKind()
"""The string kind."""

_BY_KIND_AND_SIZE = {(kind.dtype.kind, kind.dtype.itemsize): kind for kind in SCALARS.values()}


def scalar_of_dtype(dtype: Any) -> ScalarKind | None:
    """The scalar kind of a numpy dtype (any byte order), ``None`` if it is not one."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    if dt.names is not None or dt.subdtype is not None:
        return None
    return _BY_KIND_AND_SIZE.get((dt.kind, dt.itemsize))


def element_kind_of(dtype: Any, base: type[baseformat]) -> ElementKind:
    """The element kind named by a module function's ``dtype`` argument.

    ``str`` or ``'string'`` is a string, a ``base`` subclass a nested record,
    anything else must be one of the scalar dtypes (or their names).
    """
    if dtype is str or dtype == "string":
        return STRING
    if isinstance(dtype, type) and issubclass(dtype, base) and dtype is not base:
        return RecordKind(dtype)
    if isinstance(dtype, str) and dtype in SCALARS:
        return SCALARS[dtype]
    kind = scalar_of_dtype(dtype) if not isinstance(dtype, str | bytes) else None
    if kind is None:
        raise SpecError(f"unsupported dtype {dtype!r}: expected one of "
                        f"{', '.join(SCALARS)}, str (a string) or a record type")
    return kind


# -- sizes ---------------------------------------------------------------------------------


def min_size(kind: Kind) -> int:
    """The fewest bytes a value of ``kind`` can pack to."""
    if isinstance(kind, ScalarKind):
        return kind.size
    if isinstance(kind, StringKind):
        return 8
    if isinstance(kind, RecordKind):
        return kind.cls._min_size
    count = 0 if kind.variable else math.prod(kind.shape)
    return 8 * kind.ndim + count * min_size(kind.element)


def fixed_size(kind: Kind) -> int | None:
    """The bytes every value of ``kind`` packs to, ``None`` when values vary in size."""
    if isinstance(kind, ScalarKind):
        return kind.size
    if isinstance(kind, StringKind):
        return None
    if isinstance(kind, RecordKind):
        return kind.cls.packed_size
    if kind.variable:
        return None
    element = fixed_size(kind.element)
    if element is None:
        return None
    return 8 * kind.ndim + math.prod(kind.shape) * element


def describe(kind: Kind) -> str:
    """A short description for messages: ``uint32``, ``record user/point/1``,
    ``float64 array of shape (*, 3)`` (``*`` is a variable dimension)."""
    if isinstance(kind, ScalarKind | StringKind):
        return kind.name
    if isinstance(kind, RecordKind):
        return f"record {kind.name}"
    dims = ", ".join("*" if d == 0 else str(d) for d in kind.shape)
    if kind.ndim == 1:
        dims += ","
    element = kind.element.name if not isinstance(kind.element, RecordKind) else \
        f"record {kind.element.name}"
    return f"{element} array of shape ({dims})"


# -- reading specs --------------------------------------------------------------------------


def parse_fields(name: str, fields: Mapping[str, Any], base: type[baseformat],
                 reserved: frozenset[str]) -> tuple[Field, ...]:
    """Check a record type's field specs and turn them into :class:`Field` tuples.

    ``base`` is the ``baseformat`` class (nested record types must subclass
    it); ``reserved`` the names no field may take.

    Raises:
        SpecError: naming the record and the field.
    """
    if not isinstance(name, str):
        raise SpecError(f"a record type's name must be a string, not {type(name).__name__}")
    if not isinstance(fields, Mapping):
        raise SpecError(f"the fields must be a mapping of names to specs, "
                        f"not {type(fields).__name__}", name)
    parsed = []
    for field_name, spec in fields.items():
        problem = _name_problem(field_name, reserved)
        if problem:
            raise SpecError(problem, name, str(field_name))
        parsed.append(Field(field_name, _parse_spec(name, field_name, spec, base)))
    return tuple(parsed)


def _name_problem(name: object, reserved: frozenset[str]) -> str | None:
    if not isinstance(name, str):
        return f"a field name must be a string, not {type(name).__name__}"
    if name.startswith("#"):
        return "metadata keys ('#...') are not fields; remove them before making the type"
    if not name.isidentifier():
        return "a field name must be a Python identifier"
    if unicodedata.normalize("NFKC", name) != name:
        return (f"a field name must be in Unicode NFKC form: Python reads {name!r} as "
                f"{unicodedata.normalize('NFKC', name)!r}")
    if keyword.iskeyword(name):
        return "a field name cannot be a Python keyword"
    if name.startswith("_"):
        return "field names starting with '_' are reserved"
    if name in reserved:
        return f"{name!r} is the name of a record method or attribute"
    return None


def _parse_element(record: str, field: str, spec: object, base: type[baseformat]
                   ) -> ElementKind:
    if isinstance(spec, str):
        if spec == "string":
            return STRING
        if spec in SCALARS:
            return SCALARS[spec]
        raise SpecError(f"unknown type {spec!r}: expected one of {', '.join(SCALARS)}, "
                        "string, or a record type made by make_type (references to other "
                        "formats must be resolved to classes)", record, field)
    if isinstance(spec, type) and issubclass(spec, base):
        if spec is base or not hasattr(spec, "_fields"):
            raise SpecError("a nested record must be a type made by make_type, "
                            f"not {spec.__qualname__}", record, field)
        return RecordKind(spec)
    if isinstance(spec, Mapping):
        raise SpecError("an inline record (a dict) must first be made into a type with "
                        "make_type", record, field)
    raise SpecError(f"invalid spec {spec!r}: expected a type name, a record type or "
                    "[dimensions..., element]", record, field)


def _parse_spec(record: str, field: str, spec: object, base: type[baseformat]) -> Kind:
    if not isinstance(spec, Sequence) or isinstance(spec, str | bytes):
        return _parse_element(record, field, spec, base)
    if len(spec) < 2:
        raise SpecError(f"invalid array spec {list(spec)!r}: expected at least one "
                        "dimension and an element type, as [0, 'float64']", record, field)
    dims = spec[:-1]
    if len(dims) > MAX_DIMENSIONS:
        raise SpecError(f"an array has at most {MAX_DIMENSIONS} dimensions, "
                        f"not {len(dims)}", record, field)
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 0:
            raise SpecError(f"invalid array dimension {dim!r}: expected an int >= 0 "
                            "(0 for a variable dimension)", record, field)
    shape = tuple(int(dim) for dim in dims)
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise SpecError(f"array shape {shape} is too large (more than 2**56 elements)",
                        record, field)
    element = spec[-1]
    if isinstance(element, Sequence) and not isinstance(element, str | bytes):
        raise SpecError("an array element cannot be an array: put all the dimensions in "
                        "one list, as [4, 4, 'float64']", record, field)
    kind = ArrayKind(shape, _parse_element(record, field, element, base))
    if (isinstance(kind.element, RecordKind) and kind.element.cls._min_size == 0
            and not kind.variable and math.prod(shape) > EMPTY_ELEMENT_LIMIT):
        raise SpecError(f"an array of records that pack to zero bytes holds at most "
                        f"{EMPTY_ELEMENT_LIMIT} elements", record, field)
    return kind


def spec_of(kind: Kind) -> Any:
    """The field spec (as make_type takes it) of ``kind``."""
    if isinstance(kind, ScalarKind | StringKind):
        return kind.name
    if isinstance(kind, RecordKind):
        return kind.cls
    return [*kind.shape, spec_of(kind.element)]


def schema_of(kind: Kind) -> Any:
    """A hashable description of ``kind``, nested record types included by value:
    a type name, ``("array", shape, element)`` or ``("record", name, fields)``."""
    if isinstance(kind, ScalarKind | StringKind):
        return kind.name
    if isinstance(kind, RecordKind):
        return kind.cls._schema
    return ("array", kind.shape, schema_of(kind.element))
