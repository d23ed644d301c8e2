"""Field values: casting what users give into the declared kind, defaults, comparisons.

Casting follows ``numpy.can_cast`` and its rules (``'no'``, ``'equiv'``,
``'safe'``, ``'same_kind'``, ``'unsafe'``), with one refinement: plain Python
numbers and lists of them are judged by value, as JSON data needs (``5``
safely fits an ``int32`` or a ``uint8``, ``300`` does not fit an ``int8``,
``-1`` does not fit any unsigned type); numpy scalars and arrays are judged by
their dtype. Every failure is a :class:`FieldValueError` naming the record,
the field path, the expected kind and what came.
"""

from __future__ import annotations

import difflib
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ._fields import (
    EMPTY_ELEMENT_LIMIT,
    MAX_ELEMENTS,
    ArrayKind,
    ElementKind,
    Kind,
    RecordKind,
    ScalarKind,
    StringKind,
    describe,
)
from ._record_errors import FieldValueError, MissingFieldError, UnknownFieldError

if TYPE_CHECKING:
    from .baseformat import baseformat

__all__ = [
    "CASTINGS",
    "ElementKind",
    "cast",
    "cast_array",
    "cast_record",
    "cast_scalar",
    "cast_string",
    "check_casting",
    "check_shape",
    "close",
    "copy_value",
    "default",
    "default_array",
    "equal",
    "fill",
    "show",
    "show_value",
    "to_plain",
]

CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
_B = TypeVar("_B", bound="baseformat")

_BOOL = np.dtype(bool)
_OBJECT = np.dtype(object)
_new = object.__new__
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 8


def show(value: object) -> str:
    """A short description of a received value for messages."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = _short.repr(value)
    kind = type(value).__name__
    return f"{text} ({kind})"


def _rule(casting: str) -> Any:
    """A casting rule for numpy's typed signatures (checked by :func:`check_casting`)."""
    return casting


def check_casting(casting: str) -> None:
    """Raise ValueError for an unknown casting rule."""
    if casting not in CASTINGS:
        raise ValueError(f"casting must be one of {', '.join(map(repr, CASTINGS))}, "
                         f"not {casting!r}")


def child(path: str, name: str) -> str:
    """The path of field ``name`` below ``path``."""
    return f"{path}.{name}" if path else name


def item(path: str, index: tuple[int, ...]) -> str:
    """The path of an array element."""
    return f"{path}[{', '.join(map(str, index))}]"


# -- defaults ---------------------------------------------------------------------------------


def default(kind: Kind) -> Any:
    """The default value of ``kind``: zero, ``''``, a default record, an array of
    the declared shape (0 for variable dimensions) filled with those."""
    if isinstance(kind, ScalarKind):
        return kind.type(0)
    if isinstance(kind, StringKind):
        return ""
    if isinstance(kind, RecordKind):
        return kind.cls._default()
    return default_array(kind)


def default_array(kind: ArrayKind) -> np.ndarray:
    """The default value of an array field."""
    element = kind.element
    if isinstance(element, ScalarKind):
        return np.zeros(kind.shape, element.dtype)
    if isinstance(element, StringKind):
        return np.full(kind.shape, "", dtype=object)
    count = math.prod(kind.shape)
    make = element.cls._default
    return np.fromiter((make() for _ in range(count)), _OBJECT, count).reshape(kind.shape)


# -- casting ---------------------------------------------------------------------------------


def cast(kind: Kind, value: Any, casting: str, add_defaults: bool, record: str,
         path: str, deep: bool = False) -> Any:
    """``value`` as a value of ``kind`` (a copy where it is mutable).

    ``None`` means missing: the default if ``add_defaults``, else an error.
    ``deep``: records of the right type are cast field by field too, rather
    than trusted and copied (for packing records whose fields were reassigned).
    """
    if value is None:
        if add_defaults:
            return default(kind)
        raise MissingFieldError(f"missing value (expected {describe(kind)})", record, path,
                                describe(kind), None)
    if isinstance(kind, ScalarKind):
        return cast_scalar(kind, value, casting, record, path)
    if isinstance(kind, StringKind):
        return cast_string(value, casting, record, path)
    if isinstance(kind, RecordKind):
        return cast_record(kind.cls, value, casting, add_defaults, record, path, deep)
    return cast_array(kind, value, casting, add_defaults, record, path, deep)


def _scalar_source(value: Any, target: np.dtype[Any]) -> np.dtype[Any] | None:
    """The dtype ``value`` is cast from; ``None`` for values that are not numbers.

    Python numbers are judged by value: an int that fits an integer target is
    taken as that target's type; otherwise the smallest type holding it.
    """
    if isinstance(value, np.generic):
        return value.dtype
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        if target.kind in "iu" and _fits(value, value, target):
            return target
        return np.min_scalar_type(value)
    if isinstance(value, float | complex):
        return np.min_scalar_type(value)
    return None


def _fits(low: Any, high: Any, target: np.dtype[Any]) -> bool:
    info = np.iinfo(target)
    return bool(info.min <= low and high <= info.max)


def first_outside(array: np.ndarray, target: np.dtype[Any]) -> int | None:
    """The flat index of the first integer or float element of ``array`` whose
    integer part is outside the integer type ``target``; ``None`` if there is none.

    numpy's casts wrap such values (70000 becomes 4464 as an int16) under any
    rule that lets them through, so they are checked first: one min and one max
    unless a value is out of range. NaN and infinities are left to the cast.
    """
    kind = array.dtype.kind
    if target.kind not in "iu" or kind not in "iuf" or not array.size \
            or np.can_cast(array.dtype, target, "safe"):
        return None
    info = np.iinfo(target)
    if kind == "f":  # fmin/fmax skip NaN; a float truncates towards zero
        low, high = np.fmin.reduce(array, axis=None), np.fmax.reduce(array, axis=None)
        if not (np.trunc(low) < info.min or np.trunc(high) > info.max):
            return None
        with np.errstate(invalid="ignore"):
            whole = np.trunc(array)
    else:
        low, high = array.min(), array.max()
        if info.min <= low and high <= info.max:
            return None
        whole = array
    outside = (whole < info.min) | (whole > info.max)
    return int(np.argmax(outside.reshape(-1)))


def _range_text(target: np.dtype[Any]) -> str:
    info = np.iinfo(target)
    return f"outside the range of {target.name} ({info.min} to {info.max})"


def cast_scalar(kind: ScalarKind, value: Any, casting: str, record: str = "",
                path: str = "") -> np.generic:
    """``value`` as a numpy scalar of ``kind``, under ``casting``."""
    target = kind.type
    if value.__class__ is target:
        return value
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise FieldValueError(f"expected {kind.name}, got {show(value)}", record, path,
                                  kind.name, value)
        value = value[()]
    source = _scalar_source(value, kind.dtype)
    if source is None:
        if (casting != "unsafe" or isinstance(value, bytes | bytearray | memoryview)
                or not np.ndim(value) == 0):  # a sequence is never a scalar, even unsafely
            raise FieldValueError(f"expected {kind.name}, got {show(value)}", record, path,
                                  kind.name, value)
    elif not np.can_cast(source, kind.dtype, _rule(casting)):
        raise FieldValueError(f"expected {kind.name}, got {show(value)}: cannot be cast "
                              f"with casting={casting!r}", record, path, kind.name, value)
    elif isinstance(value, np.generic) and first_outside(np.asarray(value), kind.dtype) is not None:
        raise FieldValueError(f"expected {kind.name}, got {show(value)}: "
                              f"{_range_text(kind.dtype)}", record, path, kind.name, value)
    try:
        if source is not None and source.kind in "fc" and kind.dtype.kind not in "fc":
            with np.errstate(all="raise"):
                return target(value)
        if source is not None and source.kind in "fc" and source.itemsize > kind.size:
            with np.errstate(over="raise"):
                return target(value)
        return target(value)
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        raise FieldValueError(f"expected {kind.name}, got {show(value)}: {exc}", record,
                              path, kind.name, value) from exc


def cast_string(value: Any, casting: str, record: str = "", path: str = "") -> str:
    """``value`` as a ``str`` that UTF-8 can encode.

    Any casting takes ``str``; ``'unsafe'`` also takes UTF-8 bytes and numbers
    (formatted with ``str``).
    """
    if value.__class__ is str:
        text = value
    elif isinstance(value, str):
        text = str(value)
    elif casting == "unsafe" and isinstance(value, bytes | bytearray | memoryview):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FieldValueError(f"expected string, got {show(value)}: not UTF-8 ({exc})",
                                  record, path, "string", value) from exc
    elif casting == "unsafe" and isinstance(value, bool | int | float | complex | np.number
                                            | np.bool_):
        text = str(value)
    else:
        raise FieldValueError(f"expected string, got {show(value)}", record, path, "string",
                              value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FieldValueError(f"expected string, got {show(value)}: UTF-8 cannot encode "
                                  f"it ({exc.reason})", record, path, "string", value) from exc
    return text


def cast_record(cls: type[baseformat], value: Any, casting: str, add_defaults: bool,
                record: str, path: str, deep: bool = False) -> baseformat:
    """``value`` (a record of type ``cls``, or a mapping of its fields) as a new record.

    A record of another type made from the same declaration (the same name and
    fields, loaded twice) is taken as one of ``cls``, as ``==`` does.
    """
    if value.__class__ is cls and not deep:
        return value.copy()
    if isinstance(value, cls):  # a subclass (or deep): its field values, cast again
        value = {field.name: getattr(value, field.name, None) for field in cls._fields}
    elif not isinstance(value, Mapping):
        if getattr(value.__class__, "_schema", None) != cls._schema:
            raise FieldValueError(f"expected record {cls._name} (a record or a dict), got "
                                  f"{show(value)}", record, path, f"record {cls._name}", value)
        value = {field.name: getattr(value, field.name, None) for field in cls._fields}
    return fill(_new(cls), value, casting, add_defaults, record, path, deep)


def fill(obj: _B, data: Mapping[str, Any] | None, casting: str, add_defaults: bool,
         record: str, path: str, deep: bool = False) -> _B:
    """Set every field of ``obj`` from ``data``; all values are cast before any is set."""
    cls = type(obj)
    if data is None:
        data = {}
    elif not isinstance(data, Mapping):
        raise FieldValueError(f"expected a mapping of field values for record {cls._name}, "
                              f"got {show(data)}", record, path, f"record {cls._name}", data)
    fields = cls._fields
    if len(data) > len(fields) or any(key not in cls._field_names for key in data):
        unknown = [key for key in data if key not in cls._field_names]
        names = [field.name for field in fields]
        first = unknown[0]
        hint = difflib.get_close_matches(str(first), names, 1)
        message = (f"unknown field{'s' if len(unknown) > 1 else ''} "
                   f"{', '.join(repr(k) for k in unknown)} for record {cls._name}"
                   + (f" (did you mean {hint[0]!r}?)" if hint else "")
                   + f"; its fields are: {', '.join(names) or 'none'}")
        raise UnknownFieldError(message, record, child(path, str(first)), "", data[first])
    values = [cast(field.kind, data.get(field.name), casting, add_defaults, record,
                   child(path, field.name), deep) for field in fields]
    for field, value in zip(fields, values, strict=True):
        setattr(obj, field.name, value)
    return obj


def _value_dtype(array: np.ndarray, target: np.dtype[Any]) -> np.dtype[Any] | None:
    """The dtype to cast an array built from Python values from, judged by value
    (as :func:`_scalar_source`). ``None``: no values, any target will do."""
    if array.size == 0:
        return None
    kind = array.dtype.kind
    if kind in "iu":
        low, high = array.min(), array.max()
        if target.kind in "iu" and _fits(int(low), int(high), target):
            return target
        return np.result_type(np.min_scalar_type(low), np.min_scalar_type(high))
    if kind in "fc":
        parts = [array.real, array.imag] if kind == "c" else [array]
        largest = 0.0
        for part in parts:
            finite = part[np.isfinite(part)]
            if finite.size:
                largest = max(largest, float(np.abs(finite).max()))
        smallest = np.min_scalar_type(largest)
        return np.result_type(smallest, np.complex64) if kind == "c" else smallest
    return array.dtype


def check_shape(kind: ArrayKind, shape: tuple[int, ...], value: Any, record: str,
                path: str) -> None:
    """Raise unless ``shape`` fits ``kind`` (rank, fixed dimensions, layout limits)."""
    if len(shape) != kind.ndim or any(d and d != s for d, s in zip(kind.shape, shape,
                                                                    strict=True)):
        raise FieldValueError(f"expected {describe(kind)}, got {_shape_text(value, shape)}",
                              record, path, describe(kind), value)
    if kind.ndim > 1 and math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise FieldValueError(f"expected {describe(kind)}, got shape {shape}: more than "
                              "2**56 elements", record, path, describe(kind), value)
    element = kind.element
    if isinstance(element, RecordKind) and element.cls._min_size == 0 \
            and math.prod(shape) > EMPTY_ELEMENT_LIMIT:
        raise FieldValueError(f"an array of records that pack to zero bytes holds at most "
                              f"{EMPTY_ELEMENT_LIMIT} elements, got {math.prod(shape)}",
                              record, path, describe(kind), value)


def _shape_text(value: Any, shape: tuple[int, ...]) -> str:
    if isinstance(value, np.ndarray):
        return show(value)
    return f"a value of shape {shape}"


def cast_array(kind: ArrayKind, value: Any, casting: str, add_defaults: bool,
               record: str = "", path: str = "", deep: bool = False) -> np.ndarray:
    """``value`` (a numpy array or nested lists) as a new array of ``kind``."""
    element = kind.element
    if isinstance(value, str | bytes | bytearray | Mapping) or np.isscalar(value) \
            or (not isinstance(value, np.ndarray) and not hasattr(value, "__len__")):
        raise FieldValueError(f"expected {describe(kind)} (a list or numpy array), "
                              f"got {show(value)}", record, path, describe(kind), value)
    if isinstance(element, ScalarKind):
        return _cast_numeric(kind, element, value, casting, record, path)
    shape, flat = _nested(value, kind, record, path)
    check_shape(kind, shape, value, record, path)
    convert: Callable[[Any, str], Any]
    if isinstance(element, StringKind):
        def convert(v: Any, where: str) -> Any:
            return cast_string(v, casting, record, where)
    else:
        cls = element.cls

        def convert(v: Any, where: str) -> Any:
            if v is None:
                raise MissingFieldError(f"missing value (expected record {cls._name})",
                                        record, where, f"record {cls._name}", None)
            return cast_record(cls, v, casting, add_defaults, record, where, deep)
    out = []
    for position, v in enumerate(flat):
        try:
            out.append(convert(v, ""))
        except FieldValueError:
            index = tuple(int(i) for i in np.unravel_index(position, shape))
            convert(v, item(path, index))  # again, for the message with the path
            raise
    return np.fromiter(out, _OBJECT, len(out)).reshape(shape)


def _cast_numeric(kind: ArrayKind, element: ScalarKind, value: Any, casting: str,
                  record: str, path: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype != _OBJECT:
        array = value
        source: np.dtype[Any] | None = value.dtype
    else:
        try:
            array = np.array(value.tolist() if isinstance(value, np.ndarray) else value)
        except (ValueError, TypeError) as exc:
            raise FieldValueError(f"expected {describe(kind)}, got {show(value)}: {exc}",
                                  record, path, describe(kind), value) from exc
        if array.size == 0 and array.ndim < kind.ndim:  # [] for a 2-D array
            array = array.reshape(array.shape + kind.shape[array.ndim:])
        elif array.size and array.dtype.kind in "fO" and element.name == "uint64":
            array = _exact_uint64(value, array)
        source = _value_dtype(array, element.dtype)
    check_shape(kind, array.shape, value, record, path)
    if source is not None and not np.can_cast(source, element.dtype, _rule(casting)):
        raise FieldValueError(f"expected {describe(kind)}, got {show(value)}: cannot be "
                              f"cast with casting={casting!r}", record, path, describe(kind),
                              value)
    if source is None or not np.can_cast(source, element.dtype, "safe"):
        bad = first_outside(array, element.dtype)
        if bad is not None:
            index = tuple(int(i) for i in np.unravel_index(bad, array.shape))
            raise FieldValueError(f"expected {describe(kind)}, got {show(value)}: element "
                                  f"{array.reshape(-1)[bad].item()!r} at {list(index)} is "
                                  f"{_range_text(element.dtype)}", record, path,
                                  describe(kind), value)
    try:
        if array.dtype.kind in "fcOUS" and element.dtype.kind not in "fc":
            with np.errstate(all="raise"):
                return array.astype(element.dtype, order="C", casting="unsafe")
        return array.astype(element.dtype, order="C", casting="unsafe")
    except (TypeError, ValueError, OverflowError, ArithmeticError) as exc:
        raise FieldValueError(f"expected {describe(kind)}, got {show(value)}: {exc}", record,
                              path, describe(kind), value) from exc


def _exact_uint64(value: Any, array: np.ndarray) -> np.ndarray:
    """Python ints that fit a uint64, as a uint64 array; else ``array`` unchanged.

    numpy makes ``[0, 2**63 + 1]`` a float64 array (it takes ``0`` as an int64,
    and no integer type holds every int64 and ``2**63 + 1``), which rounds
    large values.
    """
    objects = np.array(value, dtype=object)
    if objects.shape != array.shape:
        return array
    items = objects.ravel().tolist()
    if not all(isinstance(item, int) for item in items) or not _fits(
            min(items), max(items), np.dtype(np.uint64)):
        return array
    return objects.astype(np.uint64)


def _nested(value: Any, kind: ArrayKind, record: str, path: str
            ) -> tuple[tuple[int, ...], list[Any]]:
    """The shape and flat elements of an array of strings or records given as a
    numpy array or as nested lists."""
    if isinstance(value, np.ndarray):
        if value.dtype.names is not None:
            raise FieldValueError(f"expected {describe(kind)}, got a structured array "
                                  "(use from_batch to turn rows into records)", record, path,
                                  describe(kind), value)
        return value.shape, value.ravel().tolist()
    shape: list[int] = []
    level = [value]
    for depth in range(kind.ndim):
        lengths = set()
        below: list[Any] = []
        for entry in level:
            if isinstance(entry, str | bytes | Mapping) or not isinstance(
                    entry, list | tuple | np.ndarray):
                raise FieldValueError(f"expected {describe(kind)}: nested lists "
                                      f"{kind.ndim} deep, got {show(entry)} at depth {depth}",
                                      record, path, describe(kind), value)
            lengths.add(len(entry))
            below.extend(entry)
        if len(lengths) > 1:
            raise FieldValueError(f"expected {describe(kind)}: ragged nested lists (lengths "
                                  f"{sorted(lengths)} at depth {depth})", record, path,
                                  describe(kind), value)
        if not lengths:  # no entries at all: the remaining dimensions are as declared, or 0
            shape.extend(kind.shape[depth:])
            return tuple(shape), []
        shape.append(lengths.pop())
        level = below
    return tuple(shape), level


# -- comparing, copying, showing ---------------------------------------------------------------


def _is_object_element(kind: ArrayKind) -> bool:
    return not isinstance(kind.element, ScalarKind)


def equal(kind: Kind, a: Any, b: Any) -> bool:
    """Exact equality of two values of ``kind`` (arrays by shape and values)."""
    if isinstance(kind, ArrayKind):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if _is_object_element(kind) or a.dtype == _OBJECT or b.dtype == _OBJECT:
            return all(bool(x == y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(),
                                                  strict=True))
        return bool(np.array_equal(a, b))
    return bool(a == b)


def close(kind: Kind, a: Any, b: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Closeness: ``numpy.isclose`` for float and complex values, exactness otherwise."""
    if isinstance(kind, RecordKind):
        return isinstance(a, kind.cls) and bool(a.isclose(b, *args, **kwargs))
    if isinstance(kind, StringKind):
        return bool(a == b)
    if isinstance(kind, ScalarKind):
        if kind.dtype.kind in "fc":
            return bool(np.isclose(a, b, *args, **kwargs))
        return bool(a == b)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    element = kind.element
    if isinstance(element, RecordKind):
        return all(isinstance(x, element.cls) and x.isclose(y, *args, **kwargs)
                   for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    if isinstance(element, ScalarKind) and element.dtype.kind in "fc":
        return bool(np.all(np.isclose(a, b, *args, **kwargs)))
    return equal(kind, a, b)


def copy_value(kind: Kind, value: Any) -> Any:
    """A deep copy of a value of ``kind``."""
    if isinstance(kind, ScalarKind | StringKind):
        return value
    if isinstance(kind, RecordKind):
        return value.copy() if hasattr(value, "copy") else value
    if not isinstance(value, np.ndarray):
        return value
    if isinstance(kind.element, RecordKind) and value.dtype == _OBJECT:
        copies = [x.copy() if hasattr(x, "copy") else x for x in value.ravel().tolist()]
        return np.fromiter(copies, _OBJECT, len(copies)).reshape(value.shape)
    return value.copy()


def to_plain(kind: Kind, value: Any) -> Any:
    """A value as ``as_dict`` gives it: records as dicts, arrays of records as
    object arrays of dicts, everything else unchanged."""
    if isinstance(kind, RecordKind):
        return value.as_dict() if hasattr(value, "as_dict") else value
    if isinstance(kind, ArrayKind) and isinstance(kind.element, RecordKind) \
            and isinstance(value, np.ndarray):
        dicts = [x.as_dict() if hasattr(x, "as_dict") else x for x in value.ravel().tolist()]
        return np.fromiter(dicts, _OBJECT, len(dicts)).reshape(value.shape)
    return value


def show_value(kind: Kind, value: Any) -> str:
    """A value as ``repr`` of a record shows it."""
    if isinstance(kind, ScalarKind) and isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.ndarray) and isinstance(kind, ArrayKind) \
            and isinstance(kind.element, ScalarKind):
        return np.array2string(value, separator=", ", threshold=20, edgeitems=3) \
            .replace("\n", "") + f" {kind.element.name}"
    if isinstance(value, np.ndarray):
        items = value.ravel().tolist()
        shown = ", ".join(repr(x) for x in items[:6]) + (", ..." if len(items) > 6 else "")
        return f"[{shown}] shape {value.shape}" if value.ndim != 1 else f"[{shown}]"
    return repr(value)
