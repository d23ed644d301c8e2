"""Records as JSON, for the readable ``encoding='json'`` of the cache.

A record becomes the JSON object of its fields (``as_dict``): numbers, lists
for arrays, objects for nested records, ``[real, imaginary]`` for a complex
value. Reading one back turns those pairs into complex numbers again, guided
by the record type's field specs, and casts the rest as the record's
constructor does.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..formats.baseformat import baseformat
from ..utils import NumpyJSONEncoder

__all__ = ["record_from_json", "record_to_json"]

_COMPLEX = frozenset({"complex64", "complex128"})


def record_to_json(record: baseformat, start: int, end: int) -> bytes:
    """One line of a JSON data file: the unit's range and its record's fields."""
    text = json.dumps({"start": start, "end": end, "data": record.as_dict()},
                      cls=NumpyJSONEncoder, ensure_ascii=False)
    return text.encode() + b"\n"


def _restore(spec: Any, value: Any) -> Any:
    """``value`` (from JSON) with the complex pairs of ``spec`` made complex again."""
    if value is None:
        return None
    if isinstance(spec, str):
        if spec in _COMPLEX and isinstance(value, list) and len(value) == 2:
            return complex(value[0], value[1])
        return value
    if isinstance(spec, type) and issubclass(spec, baseformat):
        return _fields(spec, value) if isinstance(value, dict) else value
    *dims, element = spec
    if isinstance(element, str):
        if element in _COMPLEX:
            pairs = np.asarray(value, dtype=np.float64)
            if pairs.ndim == len(dims) + 1 and pairs.shape[-1] == 2:
                return pairs[..., 0] + 1j * pairs[..., 1]
        return value
    return _nested(element, value, len(dims))


def _nested(record_type: type[baseformat], value: Any, depth: int) -> Any:
    if depth == 0:
        return _fields(record_type, value) if isinstance(value, dict) else value
    if not isinstance(value, list):
        return value
    return [_nested(record_type, item, depth - 1) for item in value]


def _fields(record_type: type[baseformat], data: dict[str, Any]) -> dict[str, Any]:
    specs = record_type._format
    return {name: _restore(specs[name], item) if name in specs else item
            for name, item in data.items()}


def record_from_json(record_type: type[baseformat], line: bytes | memoryview,
                     where: str) -> tuple[baseformat, int, int]:
    """Parse one line of a JSON data file: ``(record, start, end)``.

    Raises:
        ValueError: the line is not such an object (``where`` names the place).
    """
    try:
        unit = json.loads(bytes(line))
        start, end, data = unit["start"], unit["end"], unit["data"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: not a JSON data unit: {exc}") from None
    record = record_type.from_dict(_fields(record_type, data), casting="unsafe")
    return record, int(start), int(end)
