"""How NestedDictionary turns keys and the parts of string paths into other datatypes.

All conversions go through the base converters, so they never round or guess:
``'3'``, ``3.0`` and ``True`` become the int ``3``; ``'3.5'`` and ``'abc'`` do
not become ints at all (:data:`NO_KEY`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from .converters import BooleanConverter, NoneConverter, NumericConverter

__all__ = ["NO_KEY", "PART_CONVERTERS", "convert_key"]

_TO_INT = NumericConverter(allow_float_output=False, parse_number_strings=True)
_TO_FLOAT = NumericConverter(allow_integer_output=False, parse_number_strings=True)
_TO_BOOL = BooleanConverter(parse_boolean_equivalents=True)
_TO_NONE = NoneConverter(parse_none_equivalents=True)

NO_KEY: Any = object()
"""Returned when a key or path part cannot be converted (``None`` is a valid key)."""


def convert_key(key: Any, datatype: str) -> Any:
    """``key`` as ``datatype``, or ``NO_KEY`` if that would need rounding or guessing."""
    if datatype == "str":
        return str(key)
    if isinstance(key, bool):  # True -> 1: a NumericConverter never takes booleans
        return int(key) if datatype == "int" else float(key)
    result = (_TO_INT if datatype == "int" else _TO_FLOAT).validate_value(key)
    if result is None:
        return NO_KEY
    if datatype == "float":
        if math.isnan(result):  # a NaN key equals no key, not even itself: no path reaches it
            return NO_KEY
        whole = _whole(key)  # an integer beyond 2**53 has no exact float
        if whole is not None and (not math.isfinite(result) or int(result) != whole):
            return NO_KEY
    return result


def _whole(key: Any) -> int | None:
    """``key`` as the integer it is or spells (``7``, ``"7"``), else ``None``."""
    if isinstance(key, str):
        try:
            return int(key.strip())
        except ValueError:
            return None
    try:
        return operator.index(key)
    except TypeError:
        return None


def _part_to_bool(part: str) -> Any:
    result = _TO_BOOL.validate_value(part)
    return NO_KEY if result is None else result


def _part_to_none(part: str) -> Any:
    return None if _TO_NONE.validate_value(part) is None else NO_KEY


# How a part of a string path becomes a key, for each key datatype a string can name.
PART_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int": lambda part: convert_key(part, "int"),
    "float": lambda part: convert_key(part, "float"),
    "bool": _part_to_bool,
    "NoneType": _part_to_none,
}
