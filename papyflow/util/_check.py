"""Argument checks shared by the util modules.

Each check raises at once with a message that names the function, the argument,
what was expected and what came, so a bad Worker argument fails on its first item
with a message that points at the call.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["first", "index_set", "optional_count", "positive_int", "positive_number", "text"]


def first(where: str, inbox: Any) -> Any:
    """Return ``inbox[0]``: a worker function's first (often only) upstream result."""
    if isinstance(inbox, (str, bytes)) or not isinstance(inbox, Sequence):
        raise TypeError(f"{where}: inbox must be a tuple of inputs, got {type(inbox).__name__}")
    if not inbox:
        raise ValueError(f"{where}: inbox is empty, expected at least one input")
    return inbox[0]


def positive_number(where: str, name: str, value: Any) -> float:
    """Return ``value`` as a float after checking that it is a number above zero."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a number of seconds, got {value!r}")
    number = float(value)
    if not number > 0:  # also refuses NaN
        raise ValueError(f"{where}: {name} must be above 0, got {value!r}")
    return number


def positive_int(where: str, name: str, value: Any) -> int:
    """Return ``value`` after checking that it is an int of at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"{where}: {name} must be at least 1, got {value!r}")
    return number


def optional_count(where: str, name: str, value: Any) -> int | None:
    """Check a slice bound such as ``n``: ``None`` or an int (negative counts from the end)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an int or None, got {value!r}")
    return int(value)


def index_set(where: str, name: str, value: Any, size: int) -> set[int]:
    """Check a sequence of inbox indices (``s``) and return them as a set.

    ``None`` means every index. Negative indices count from the end, as in a
    slice; an index outside the inbox is an ``IndexError`` rather than being
    skipped, because a missing input is almost always a wiring mistake.
    """
    if value is None:
        return set(range(size))
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)):
        raise TypeError(f"{where}: {name} must be a sequence of indices or None, got {value!r}")
    chosen = set()
    for index in value:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"{where}: {name} must hold ints, got {index!r}")
        position = int(index)
        if not -size <= position < size:
            raise IndexError(f"{where}: {name} holds index {position}, but the inbox has "
                             f"{size} input(s)")
        chosen.add(position % size)
    return chosen


def text(where: str, name: str, value: Any, *, optional: bool = True) -> str | None:
    """Check that ``value`` is a str (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        expected = "a str or None" if optional else "a str"
        raise TypeError(f"{where}: {name} must be {expected}, got {value!r}")
    return value
