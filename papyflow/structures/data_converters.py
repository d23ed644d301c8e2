"""Data converters: base converters applied to scalars and lists, and funnelled into NumPy types.

:class:`PythonDataConverter` combines the base converters of
:mod:`papyflow.structures.converters` and applies them in a fixed order
(numeric > boolean > none > string, the first success wins), to a scalar or
to each element of a one-dimensional list or tuple.
:class:`NumpyDataConverter` wraps a :class:`PythonDataConverter` that yields a
single type and funnels its output into one NumPy datatype, choosing the
smallest bit width that holds the data unless told otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Final, Literal

import numpy as np

from .converters import (
    BooleanConverter,
    NoneConverter,
    NumericConverter,
    StringConverter,
    check_bool,
)

__all__ = ["CONVERSION_ERROR", "NumpyDataConverter", "PythonDataConverter"]

CONVERSION_ERROR: Final = "Validation/ConversionError"
"""What :class:`PythonDataConverter` puts in place of a value no converter accepted."""

# Marks "this converter does not accept the value" inside PythonDataConverter;
# None cannot play that role because None is NoneConverter's success value.
_FAILED: Final = object()


class PythonDataConverter:
    """Apply one or more base converters to a scalar or to each element of a list or tuple.

    The converters are tried in the order numeric > boolean > none > string,
    and the first that accepts a value gives the result. A value no converter
    accepts becomes :data:`CONVERSION_ERROR` (``'Validation/ConversionError'``),
    or raises ``ValueError`` with ``raise_errors``. With
    ``filter_failed_elements`` failed *elements* of a list or tuple are left
    out instead (a failed scalar is still reported).

    A scalar input gives a scalar; a list or tuple (or a 1-D NumPy array)
    gives a ``tuple``, or a ``list`` with ``iterable_output_type='list'``,
    even when it has a single element. Nested collections, mappings and sets
    are a ``TypeError``: the converter works on one dimension.
    """

    __slots__ = ("_boolean", "_filter_failed", "_none", "_numeric", "_output_type",
                 "_raise_errors", "_string")

    def __init__(self, numeric_converter: NumericConverter | None = None,
                 boolean_converter: BooleanConverter | None = None,
                 none_converter: NoneConverter | None = None,
                 string_converter: StringConverter | None = None, *,
                 iterable_output_type: Literal["tuple", "list"] = "tuple",
                 filter_failed_elements: bool = False, raise_errors: bool = False) -> None:
        where = "PythonDataConverter"
        for name, converter, kind in (("numeric_converter", numeric_converter, NumericConverter),
                                      ("boolean_converter", boolean_converter, BooleanConverter),
                                      ("none_converter", none_converter, NoneConverter),
                                      ("string_converter", string_converter, StringConverter)):
            if converter is not None and not isinstance(converter, kind):
                raise TypeError(f"{where}: {name} must be a {kind.__name__} or None, "
                                f"got {converter!r}")
        if (numeric_converter is None and boolean_converter is None and none_converter is None
                and string_converter is None):
            raise ValueError(f"{where}: give at least one of numeric_converter, "
                             "boolean_converter, none_converter and string_converter")
        if iterable_output_type not in ("tuple", "list"):
            raise ValueError(f"{where}: iterable_output_type must be 'tuple' or 'list', "
                             f"got {iterable_output_type!r}")
        self._numeric = numeric_converter
        self._boolean = boolean_converter
        self._none = none_converter
        self._string = string_converter
        self._output_type: Literal["tuple", "list"] = iterable_output_type
        self._filter_failed = check_bool(where, "filter_failed_elements", filter_failed_elements)
        self._raise_errors = check_bool(where, "raise_errors", raise_errors)

    @property
    def numeric_converter(self) -> NumericConverter | None:
        return self._numeric

    @property
    def boolean_converter(self) -> BooleanConverter | None:
        return self._boolean

    @property
    def none_converter(self) -> NoneConverter | None:
        return self._none

    @property
    def string_converter(self) -> StringConverter | None:
        return self._string

    @property
    def iterable_output_type(self) -> Literal["tuple", "list"]:
        return self._output_type

    @property
    def filter_failed_elements(self) -> bool:
        return self._filter_failed

    @property
    def raise_errors(self) -> bool:
        return self._raise_errors

    def __repr__(self) -> str:
        return (f"PythonDataConverter(numeric_converter={self._numeric!r}, "
                f"boolean_converter={self._boolean!r}, none_converter={self._none!r}, "
                f"string_converter={self._string!r}, "
                f"iterable_output_type={self._output_type!r}, "
                f"filter_failed_elements={self._filter_failed!r}, "
                f"raise_errors={self._raise_errors!r})")

    def _converter_names(self) -> str:
        names = [name for name, converter in (("numeric", self._numeric),
                                              ("boolean", self._boolean),
                                              ("none", self._none), ("string", self._string))
                 if converter is not None]
        return ", ".join(names)

    def _convert(self, value: Any) -> Any:
        """The first successful conversion, or ``_FAILED``."""
        if self._numeric is not None:
            result: Any = self._numeric.validate_value(value)
            if result is not None:
                return result
        if self._boolean is not None:
            result = self._boolean.validate_value(value)
            if result is not None:
                return result
        if self._none is not None and self._none.validate_value(value) is None:
            return None
        if self._string is not None:
            result = self._string.validate_value(value)
            if result is not None:
                return result
        return _FAILED

    def _fail(self, what: str, value: Any) -> str:
        if self._raise_errors:
            raise ValueError(f"PythonDataConverter.validate_value: {what} {value!r} could not be "
                             f"validated or converted by any of the configured converters "
                             f"({self._converter_names()})")
        return CONVERSION_ERROR

    def validate_value(self, value: Any) -> Any:
        """Convert a scalar, or each element of a one-dimensional list or tuple.

        Returns the converted scalar, or a tuple (or list) of converted
        elements; see the class docstring for what happens to failures.
        """
        where = "PythonDataConverter.validate_value"
        if isinstance(value, np.ndarray):
            if value.ndim > 1:
                raise TypeError(f"{where}: value must be a scalar or one-dimensional, got an "
                                f"array of shape {value.shape}")
            value = value.tolist()
        if isinstance(value, (Mapping, AbstractSet)):
            raise TypeError(f"{where}: value must be a scalar, a list or a tuple, "
                            f"got a {type(value).__name__}")
        if not isinstance(value, (list, tuple)):
            result = self._convert(value)
            return self._fail("value", value) if result is _FAILED else result

        converted: list[Any] = []
        for index, element in enumerate(value):
            if isinstance(element, (list, tuple, Mapping, AbstractSet, np.ndarray)):
                raise TypeError(f"{where}: value must be one-dimensional, but element {index} "
                                f"is a {type(element).__name__}")
            result = self._convert(element)
            if result is _FAILED:
                if self._filter_failed and not self._raise_errors:
                    continue
                result = self._fail(f"element {index}", element)
            converted.append(result)
        return tuple(converted) if self._output_type == "tuple" else converted


_INTEGER_TYPES: Final = {
    True: (np.int8, np.int16, np.int32, np.int64),
    False: (np.uint8, np.uint16, np.uint32, np.uint64),
}
_FLOAT_TYPES: Final = (np.float16, np.float32, np.float64)


class NumpyDataConverter:
    """Convert Python values to NumPy scalars and arrays of one datatype, and back.

    ``python_converter`` must be a :class:`PythonDataConverter` with
    ``raise_errors=True`` that produces exactly one type: either a single
    :class:`NumericConverter` allowing only integers or only floats, or a
    single :class:`BooleanConverter`. (Strings and ``None`` have no NumPy
    counterpart here.)

    - ``output_bit_width``: ``'auto'`` (default) picks the smallest width that
      holds every value exactly: for integers the smallest type whose range
      covers the data, for floats the smallest of float16/float32/float64
      that stores each value without change. ``8``, ``16``, ``32`` or ``64``
      fixes the width (floats have no 8-bit type); a value that does not fit
      a fixed integer width, or overflows a fixed float width, is a
      ``ValueError``. Booleans take ``'auto'`` or ``8``.
    - ``signed``: integers are signed (default) or unsigned; ``signed=True``
      never falls back to an unsigned type.
    """

    __slots__ = ("_kind", "_python", "_signed", "_width")

    def __init__(self, python_converter: PythonDataConverter, *,
                 output_bit_width: int | Literal["auto"] = "auto", signed: bool = True) -> None:
        where = "NumpyDataConverter"
        if not isinstance(python_converter, PythonDataConverter):
            raise TypeError(f"{where}: python_converter must be a PythonDataConverter, "
                            f"got {python_converter!r}")
        if not python_converter.raise_errors:
            raise ValueError(f"{where}: python_converter must be configured with "
                             "raise_errors=True")
        if python_converter.none_converter is not None or \
                python_converter.string_converter is not None:
            raise ValueError(f"{where}: python_converter must not use a none_converter or a "
                             "string_converter (only integers, floats and booleans have a "
                             "NumPy conversion)")
        numeric = python_converter.numeric_converter
        boolean = python_converter.boolean_converter
        if (numeric is None) == (boolean is None):
            raise ValueError(f"{where}: python_converter must use exactly one of a "
                             "numeric_converter and a boolean_converter")
        self._kind: Literal["int", "float", "bool"]
        if numeric is not None:
            if numeric.allow_integer_output and numeric.allow_float_output:
                raise ValueError(f"{where}: the numeric_converter of python_converter must "
                                 "allow only integer output or only float output, not both")
            self._kind = "int" if numeric.allow_integer_output else "float"
        else:
            self._kind = "bool"
        allowed: tuple[Any, ...] = {"int": ("auto", 8, 16, 32, 64),
                                    "float": ("auto", 16, 32, 64),
                                    "bool": ("auto", 8)}[self._kind]
        if isinstance(output_bit_width, bool) or output_bit_width not in allowed:
            raise ValueError(f"{where}: output_bit_width for {self._kind} output must be one "
                             f"of {', '.join(map(repr, allowed))}, got {output_bit_width!r}")
        self._python = python_converter
        self._width = output_bit_width
        self._signed = check_bool(where, "signed", signed)

    @property
    def python_converter(self) -> PythonDataConverter:
        return self._python

    @property
    def output_bit_width(self) -> int | Literal["auto"]:
        return self._width

    @property
    def signed(self) -> bool:
        return self._signed

    def __repr__(self) -> str:
        return (f"NumpyDataConverter(python_converter={self._python!r}, "
                f"output_bit_width={self._width!r}, signed={self._signed!r})")

    def convert_value_to_numpy(self, value: Any) -> np.generic | np.ndarray:
        """Convert a scalar to a NumPy scalar, or a list or tuple to a 1-D NumPy array.

        The input goes through the wrapped :class:`PythonDataConverter` first,
        so a value it rejects raises its ``ValueError``.
        """
        converted = self._python.validate_value(value)
        is_iterable = isinstance(converted, (list, tuple))
        values = list(converted) if is_iterable else [converted]
        dtype = self._choose_type(values, value)
        with np.errstate(all="ignore"):  # overflow was already ruled out in _choose_type
            if is_iterable:
                return np.array(values, dtype=dtype)
            return dtype(values[0])

    def convert_value_from_numpy(self, value: np.generic | np.ndarray) -> Any:
        """Convert a NumPy scalar or 1-D array to a Python scalar or tuple (or list).

        The values are passed through the wrapped :class:`PythonDataConverter`,
        so they come out as its single output type (or raise ``ValueError``).
        """
        where = "NumpyDataConverter.convert_value_from_numpy"
        if isinstance(value, np.ndarray):
            if value.ndim > 1:
                raise ValueError(f"{where}: value must be a NumPy scalar or a one-dimensional "
                                 f"array, got an array of shape {value.shape}")
            python_value = value.tolist()
        elif isinstance(value, np.generic):
            python_value = value.item()
        else:
            raise TypeError(f"{where}: value must be a NumPy scalar or array, "
                            f"got {type(value).__name__} {value!r}")
        return self._python.validate_value(python_value)

    def _choose_type(self, values: list[Any], original: Any) -> type[np.generic]:
        where = "NumpyDataConverter.convert_value_to_numpy"
        if self._kind == "bool":
            return np.bool_
        if self._kind == "int":
            candidates: tuple[type[Any], ...] = _INTEGER_TYPES[self._signed]
            if self._width != "auto":
                candidates = tuple(c for c in candidates if np.iinfo(c).bits == self._width)
            low = min(values, default=0)
            high = max(values, default=0)
            for candidate in candidates:
                info = np.iinfo(candidate)
                if info.min <= low and high <= info.max:
                    return candidate
            kind = "signed" if self._signed else "unsigned"
            width = "64-bit" if self._width == "auto" else f"{self._width}-bit"
            widest = np.iinfo(candidates[-1])
            spread = "" if low == high else f"the values range from {low} to {high}; "
            raise ValueError(f"{where}: {original!r} does not fit in a {width} {kind} integer "
                             f"({spread}it holds {widest.min}..{widest.max})")

        candidates = _FLOAT_TYPES
        if self._width != "auto":
            candidates = tuple(c for c in candidates if np.finfo(c).bits == self._width)
        with np.errstate(all="ignore"):
            for candidate in candidates:
                cast = [candidate(v) for v in values]
                if self._width == "auto":
                    # Smallest type that stores every value unchanged (NaN stays NaN).
                    # (compare as Python floats: NumPy 2 would compare a float16 with a
                    # Python float in float16 and call every value a fit)
                    fits = all(float(c) == v or (math.isnan(v) and np.isnan(c))
                               for c, v in zip(cast, values))
                else:
                    fits = all(np.isfinite(c) or not np.isfinite(v)
                               for c, v in zip(cast, values))
                if fits:
                    return candidate
        raise ValueError(f"{where}: {original!r} overflows a {self._width}-bit float")
