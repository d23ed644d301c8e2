"""parse_parameters: typed algorithm parameters from command-line ``name=value`` strings.

Each value is typed by the converters of :mod:`papyflow.structures.converters`
(combined by a :class:`~papyflow.structures.data_converters.PythonDataConverter`),
tried in this order:

1. an integer literal (``'3'``, ``'-4'``, ``'1_000'``), exactly, however long -> ``int``;
2. any other number (``'2.5'``, ``'1e-3'``, ``'3.0'``, ``'inf'``, ``'nan'``) -> ``float``;
   a number beyond the float range (``'1e400'``) is an error, not infinity;
3. ``'true'`` / ``'false'`` (any case) -> ``bool``;
4. ``'none'`` / ``'null'`` (any case) -> ``None``;
5. anything else -> ``str``, as written.

Surrounding whitespace of a value is ignored. A value in matching single or
double quotes is always the string inside them (``name='"3"'`` in a shell
gives the string ``'3'``).
"""

from __future__ import annotations

import re
from typing import Any, Final

from .converters import (
    BooleanConverter,
    NoneConverter,
    NumericConverter,
    StringConverter,
    beyond_float_range,
)
from .data_converters import PythonDataConverter

__all__ = ["parse_parameters"]

_INTEGER_LITERAL: Final = re.compile(r"[+-]?\d+(?:_\d+)*")

_INTEGER: Final = PythonDataConverter(
    numeric_converter=NumericConverter(allow_float_output=False, parse_number_strings=True),
    raise_errors=True,
)
# Booleans only from words: '1' and '0' are integers, caught by _INTEGER first.
_ANYTHING_ELSE: Final = PythonDataConverter(
    numeric_converter=NumericConverter(allow_integer_output=False, parse_number_strings=True),
    boolean_converter=BooleanConverter(parse_boolean_equivalents=True),
    none_converter=NoneConverter(parse_none_equivalents=True),
    string_converter=StringConverter(),
    raise_errors=True,
)


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """Turn ``['name=value', ...]`` into ``{'name': typed value, ...}``, in the order given.

    The value is everything after the first ``=`` and is typed as the module
    docstring describes. A pair without ``=``, an empty name, a name with
    whitespace in it, a name given twice, or a number beyond the float range
    (``'1e400'``) is a ``ValueError`` naming the pair.

    >>> parse_parameters(["depth=3", "rate=0.5", "verbose=true", "seed=none", "mode=fast"])
    {'depth': 3, 'rate': 0.5, 'verbose': True, 'seed': None, 'mode': 'fast'}
    """
    where = "parse_parameters"
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (list, tuple)):
        raise TypeError(f"{where}: pairs must be a list of 'name=value' strings, "
                        f"got {type(pairs).__name__} {pairs!r}")
    parameters: dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, str):
            raise TypeError(f"{where}: each pair must be a 'name=value' str, "
                            f"got {type(pair).__name__} {pair!r}")
        name, equals, text = pair.partition("=")
        name = name.strip()
        if not equals:
            raise ValueError(f"{where}: {pair!r} is not of the form name=value")
        if not name:
            raise ValueError(f"{where}: {pair!r} has an empty name")
        if any(character.isspace() for character in name):
            raise ValueError(f"{where}: the name in {pair!r} contains whitespace")
        if name in parameters:
            raise ValueError(f"{where}: {pair!r} gives the parameter {name!r} a second time")
        try:
            parameters[name] = _typed(text)
        except _BeyondFloats as error:
            raise ValueError(f"{where}: {pair!r}: {error} is beyond the range of a float "
                             "(write inf for infinity)") from None
    return parameters


class _BeyondFloats(Exception):
    """A number that float() would read as infinity; ``args[0]`` is its text."""


def _typed(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if _INTEGER_LITERAL.fullmatch(text):
        return _INTEGER.validate_value(text)
    value = _ANYTHING_ELSE.validate_value(text)
    if isinstance(value, str) and beyond_float_range(text):  # not text: a number too large
        raise _BeyondFloats(text)
    return value
