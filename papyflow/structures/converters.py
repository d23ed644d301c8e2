"""The base converters: cast loosely typed input (command lines, config files) to one Python type.

Four *base* converters each own one output type and answer one question, "can
this input be read as my type, and as what?":

- :class:`NumericConverter` -> ``int`` and/or ``float`` (with optional limits);
- :class:`BooleanConverter` -> ``bool``;
- :class:`NoneConverter` -> ``None``;
- :class:`StringConverter` -> ``str`` (optionally restricted to a set of options).

A base converter never raises on a value it cannot convert: it returns its
failure marker (``None`` for most of them; the string ``'None'`` for
:class:`NoneConverter`, whose success value *is* ``None``). Bad *configuration*
raises at construction time, naming the argument.

:mod:`papyflow.structures.data_converters` combines them:
:class:`~papyflow.structures.data_converters.PythonDataConverter` over scalars
and one-dimensional lists, and
:class:`~papyflow.structures.data_converters.NumpyDataConverter` into NumPy
datatypes.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Final

import numpy as np

__all__ = ["BooleanConverter", "NoneConverter", "NumericConverter", "StringConverter"]

_TRUE_STRINGS: Final = frozenset({"true", "1", "1.0"})
_FALSE_STRINGS: Final = frozenset({"false", "0", "0.0"})
_NONE_STRINGS: Final = frozenset({"none", "null"})
# How float() spells infinity (after the sign, in any case).
_INFINITIES: Final = frozenset({"inf", "infinity"})

# What int() reads in base 10 (``\d`` is any Unicode decimal digit, as for int()).
_INTEGER_LITERAL: Final = re.compile(r"[+-]?\d+(?:_\d+)*")
# Strings of at most this many digits are never held to the interpreter's limit on
# int-from-str conversions (sys.get_int_max_str_digits()), whatever it is set to.
_UNCHECKED_DIGITS: Final = sys.int_info.str_digits_check_threshold


def check_bool(where: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {value!r}")
    return value


def _check_limit(where: str, name: str, value: object) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {name} must be an int, a float or None, got {value!r}")
    # Only a float can be NaN; an int stays an int, as math.isnan() cannot take every int
    # (10**400 is beyond a float) and the comparisons with the limits are exact anyway.
    if isinstance(value, float) and math.isnan(value):  # NaN would disable the limit
        raise ValueError(f"{where}: {name} must not be NaN")
    return value


def _number_repr(value: float | None) -> str:
    """``repr(value)``, or a description of an int too long for repr() under the digit limit."""
    if not isinstance(value, int):
        return repr(value)
    try:
        return repr(value)
    except ValueError:  # int-to-str is held to the same digit limit as str-to-int
        return f"<int of {value.bit_length()} bits>"


class NumericConverter:
    """Convert inputs to ``int``, ``float``, or both, optionally within limits.

    - ``parse_number_strings``: read strings such as ``'3'`` or ``'2.5e3'`` as
      numbers (leading and trailing whitespace is ignored). Integer strings
      are read exactly, however many digits they have (Python's own limit on
      int-from-str conversions is neither hit nor changed). A string that
      spells a number beyond the float range (``'1e400'``) fails: float()
      would read it as infinity, which only ``'inf'`` and ``'infinity'``
      mean here.
    - ``allow_integer_output`` / ``allow_float_output``: which output types are
      allowed (at least one). An integer-valued float becomes an ``int`` when
      floats are not allowed; a non-integer float then fails (no rounding). An
      ``int`` becomes a ``float`` when integers are not allowed.
    - When both outputs are allowed, ``int`` and ``float`` inputs keep their
      type and *strings* are read as floats (``'3'`` -> ``3.0``).
    - ``number_lower_limit`` / ``number_upper_limit``: inclusive limits, ints
      (of any size) or floats, compared exactly with the value; a value
      outside them fails (and NaN fails whenever a limit is set).

    Booleans are never numbers here (``True`` fails), even though Python's
    ``bool`` is a subclass of ``int``. NumPy integer and floating scalars are
    accepted like their Python counterparts. :meth:`validate_value` returns
    ``None`` for any value it cannot convert.
    """

    __slots__ = ("_allow_float", "_allow_int", "_lower", "_parse", "_upper")

    def __init__(self, *, number_lower_limit: float | None = None,
                 number_upper_limit: float | None = None,
                 parse_number_strings: bool = True, allow_integer_output: bool = True,
                 allow_float_output: bool = True) -> None:
        where = "NumericConverter"
        self._lower = _check_limit(where, "number_lower_limit", number_lower_limit)
        self._upper = _check_limit(where, "number_upper_limit", number_upper_limit)
        self._parse = check_bool(where, "parse_number_strings", parse_number_strings)
        self._allow_int = check_bool(where, "allow_integer_output", allow_integer_output)
        self._allow_float = check_bool(where, "allow_float_output", allow_float_output)
        if not (self._allow_int or self._allow_float):
            raise ValueError(f"{where}: at least one of allow_integer_output and "
                             "allow_float_output must be True")
        if self._lower is not None and self._upper is not None and self._lower > self._upper:
            raise ValueError(f"{where}: number_lower_limit ({_number_repr(self._lower)}) is "
                             f"greater than number_upper_limit ({_number_repr(self._upper)})")

    @property
    def number_lower_limit(self) -> int | float | None:
        return self._lower

    @property
    def number_upper_limit(self) -> int | float | None:
        return self._upper

    @property
    def parse_number_strings(self) -> bool:
        return self._parse

    @property
    def allow_integer_output(self) -> bool:
        return self._allow_int

    @property
    def allow_float_output(self) -> bool:
        return self._allow_float

    def __repr__(self) -> str:
        return (f"NumericConverter(number_lower_limit={_number_repr(self._lower)}, "
                f"number_upper_limit={_number_repr(self._upper)}, "
                f"parse_number_strings={self._parse!r}, "
                f"allow_integer_output={self._allow_int!r}, "
                f"allow_float_output={self._allow_float!r})")

    def validate_value(self, value: Any) -> int | float | None:
        """Return ``value`` as an allowed numeric type, or ``None`` if that cannot be done."""
        number: int | float
        if isinstance(value, (bool, np.bool_)):
            return None
        if isinstance(value, np.integer):
            number = int(value)
        elif isinstance(value, np.floating):
            number = float(value)
        elif isinstance(value, (int, float)):
            number = value
        elif isinstance(value, str) and self._parse:
            parsed = self._parse_string(value)
            if parsed is None:
                return None
            number = parsed
        else:
            return None

        if isinstance(number, int) and not self._allow_int:
            try:
                number = float(number)
            except OverflowError:  # an int too large for a float
                return None
        elif isinstance(number, float) and not self._allow_float:
            if not number.is_integer():  # also rejects NaN and infinities
                return None
            number = int(number)

        if self._lower is not None and not number >= self._lower:
            return None
        if self._upper is not None and not number <= self._upper:
            return None
        return number

    def _parse_string(self, text: str) -> int | float | None:
        text = text.strip()
        number: int | float
        if _INTEGER_LITERAL.fullmatch(text):
            number = _parse_integer(text)  # exact, even beyond float precision
        else:
            try:
                number = float(text)
            except ValueError:
                return None
            if math.isinf(number) and beyond_float_range(text):
                return None  # a finite literal beyond the float range (1e400), not infinity
            return number
        if self._allow_float:
            # Strings prefer floats when both are allowed (the documented behaviour).
            try:
                number = float(number)
            except OverflowError:
                return number if self._allow_int else None
        return number


def beyond_float_range(text: str) -> bool:
    """Whether ``text`` spells a finite number that ``float()`` can only read as
    infinity (``'1e400'``, a 400-digit decimal); ``'inf'`` and ``'-Infinity'``
    spell infinity itself, and text that is no number is not beyond anything."""
    try:
        number = float(text)
    except ValueError:
        return False
    return math.isinf(number) and text.strip().lstrip("+-").lower() not in _INFINITIES


def _parse_integer(literal: str) -> int:
    """The exact value of an integer ``literal`` (``_INTEGER_LITERAL``), however many digits it has.

    int() refuses strings longer than the interpreter's digit limit (4300 digits by
    default) because its conversion takes quadratic time. Rather than lift that limit
    for the whole interpreter, long literals are converted in halves, each below the
    limit, and joined by multiplication, which is subquadratic.
    """
    sign = -1 if literal.startswith("-") else 1
    return sign * _digits_to_int(literal.lstrip("+-").replace("_", ""))


def _digits_to_int(digits: str) -> int:
    """The int written by ``digits`` (decimal digits only), converted in pieces int() accepts."""
    if len(digits) <= _UNCHECKED_DIGITS:
        return int(digits)
    low_length = len(digits) // 2
    high, low = digits[:-low_length], digits[-low_length:]
    return _digits_to_int(high) * 10 ** low_length + _digits_to_int(low)


class BooleanConverter:
    """Convert inputs to ``bool``.

    ``True``/``False`` (and NumPy booleans) always pass. With
    ``parse_boolean_equivalents`` (the default) these also convert: the
    numbers ``1``/``0`` and ``1.0``/``0.0``, and the strings ``'true'``/
    ``'false'`` (any case), ``'1'``/``'0'`` and ``'1.0'``/``'0.0'``.
    :meth:`validate_value` returns ``None`` for any value it cannot convert.
    """

    __slots__ = ("_parse",)

    def __init__(self, *, parse_boolean_equivalents: bool = True) -> None:
        self._parse = check_bool("BooleanConverter", "parse_boolean_equivalents",
                                  parse_boolean_equivalents)

    @property
    def parse_boolean_equivalents(self) -> bool:
        return self._parse

    def __repr__(self) -> str:
        return f"BooleanConverter(parse_boolean_equivalents={self._parse!r})"

    def validate_value(self, value: Any) -> bool | None:
        """Return ``value`` as a ``bool``, or ``None`` if that cannot be done."""
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if not self._parse:
            return None
        if isinstance(value, (int, float, np.integer, np.floating)):
            if value == 1:
                return True
            if value == 0:
                return False
            return None
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE_STRINGS:
                return True
            if text in _FALSE_STRINGS:
                return False
        return None


class NoneConverter:
    """Convert inputs to ``None``.

    ``None`` always passes. With ``parse_none_equivalents`` (the default) the
    strings ``'none'`` and ``'null'`` (any case) also convert. Since ``None``
    is this converter's *success* value, :meth:`validate_value` returns the
    string ``'None'`` for a value it cannot convert.
    """

    __slots__ = ("_parse",)

    def __init__(self, *, parse_none_equivalents: bool = True) -> None:
        self._parse = check_bool("NoneConverter", "parse_none_equivalents",
                                  parse_none_equivalents)

    @property
    def parse_none_equivalents(self) -> bool:
        return self._parse

    def __repr__(self) -> str:
        return f"NoneConverter(parse_none_equivalents={self._parse!r})"

    def validate_value(self, value: Any) -> None | str:
        """Return ``None`` if ``value`` is ``None`` or an equivalent, else the string ``'None'``."""
        if value is None:
            return None
        if self._parse and isinstance(value, str) and value.strip().lower() in _NONE_STRINGS:
            return None
        return "None"


class StringConverter:
    """Validate strings, or convert any input to a string.

    - ``allow_string_conversion``: convert non-string inputs with ``str()``
      (off by default: then only strings pass).
    - ``string_options``: if given, only strings equal to one of the options
      pass; the comparison ignores case (it is caseless, so ``'STRASSE'``
      matches ``'straße'``).
    - ``string_force_lower``: return the string lower-cased; with
      ``string_options``, return the matching option lower-cased, so that the
      result is always the lower-case form of an option (``'STRASSE'`` gives
      ``'straße'``, since ``'STRASSE'.lower()`` is no option).

    :meth:`validate_value` returns ``None`` for any value that does not pass.
    """

    __slots__ = ("_allow_conversion", "_by_folded", "_by_lower", "_force_lower", "_options")

    def __init__(self, *, allow_string_conversion: bool = False,
                 string_options: list[str] | tuple[str, ...] | None = None,
                 string_force_lower: bool = False) -> None:
        where = "StringConverter"
        self._allow_conversion = check_bool(where, "allow_string_conversion",
                                             allow_string_conversion)
        self._force_lower = check_bool(where, "string_force_lower", string_force_lower)
        self._options: tuple[str, ...] | None = None
        if string_options is not None:
            if isinstance(string_options, str) or not isinstance(string_options,
                                                                 (list, tuple, set, frozenset)):
                raise TypeError(f"{where}: string_options must be a list or tuple of strings "
                                f"or None, got {string_options!r}")
            for option in string_options:
                if not isinstance(option, str):
                    raise TypeError(f"{where}: string_options must hold only strings, "
                                    f"got {option!r}")
            if not string_options:
                raise ValueError(f"{where}: string_options must not be empty "
                                 "(use None to allow any string)")
            self._options = tuple(string_options)
        # The first option wins where several look alike: a lower-case equal is
        # preferred to a caseless one ('strasse' finds 'strasse' before 'straße').
        self._by_lower: dict[str, str] = {}
        self._by_folded: dict[str, str] = {}
        for option in self._options or ():
            self._by_lower.setdefault(option.lower(), option)
            self._by_folded.setdefault(option.casefold(), option)

    @property
    def allow_string_conversion(self) -> bool:
        return self._allow_conversion

    @property
    def string_options(self) -> tuple[str, ...] | None:
        return self._options

    @property
    def string_force_lower(self) -> bool:
        return self._force_lower

    def __repr__(self) -> str:
        return (f"StringConverter(allow_string_conversion={self._allow_conversion!r}, "
                f"string_options={self._options!r}, string_force_lower={self._force_lower!r})")

    def validate_value(self, value: Any) -> str | None:
        """Return ``value`` as an accepted string, or ``None`` if it does not pass."""
        if isinstance(value, str):
            text = value
        elif self._allow_conversion:
            text = str(value)
        else:
            return None
        if self._options is None:
            return text.lower() if self._force_lower else text
        option = self._matching_option(text)
        if option is None:
            return None
        return option.lower() if self._force_lower else text

    def _matching_option(self, text: str) -> str | None:
        """The option that ``text`` equals without case, or ``None``."""
        option = self._by_lower.get(text.lower())
        return option if option is not None else self._by_folded.get(text.casefold())
