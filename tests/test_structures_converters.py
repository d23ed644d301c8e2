"""papyflow.structures converters: every example of the reference, error paths, properties."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papyflow.structures import (
    CONVERSION_ERROR,
    BooleanConverter,
    NoneConverter,
    NumericConverter,
    NumpyDataConverter,
    PythonDataConverter,
    StringConverter,
    parse_parameters,
)

pytestmark = pytest.mark.timeout(60)


# -- the reference's examples ---------------------------------------------------------

def test_reference_numeric_converter():
    num_converter = NumericConverter(allow_integer_output=False, allow_float_output=True)
    assert num_converter.validate_value(3) == 3.0
    assert type(num_converter.validate_value(3)) is float
    num_converter = NumericConverter(allow_integer_output=True, allow_float_output=False)
    assert num_converter.validate_value(3.0) == 3
    assert type(num_converter.validate_value(3.0)) is int
    num_converter = NumericConverter(allow_integer_output=True, allow_float_output=True,
                                     parse_number_strings=True)
    assert num_converter.validate_value('3.0') == 3.0
    assert type(num_converter.validate_value('3.0')) is float
    num_converter = NumericConverter(number_lower_limit=1, number_upper_limit=2,
                                     allow_float_output=False)
    assert num_converter.validate_value('3.0') is None


def test_reference_boolean_converter():
    bool_converter = BooleanConverter(parse_boolean_equivalents=True)
    assert bool_converter.validate_value(1) is True
    assert bool_converter.validate_value(True) is True
    assert bool_converter.validate_value('true') is True
    assert bool_converter.validate_value(0) is False
    assert bool_converter.validate_value(False) is False
    assert bool_converter.validate_value('false') is False
    bool_converter = BooleanConverter(parse_boolean_equivalents=False)
    assert bool_converter.validate_value(1) is None


def test_reference_none_converter():
    none_converter = NoneConverter(parse_none_equivalents=True)
    assert none_converter.validate_value('Null') is None
    assert none_converter.validate_value(None) is None
    assert none_converter.validate_value('none') is None
    assert none_converter.validate_value("Not an equivalent") == 'None'


def test_reference_string_converter():
    str_converter = StringConverter()
    assert str_converter.validate_value("True") == 'True'
    assert str_converter.validate_value(1) is None
    str_converter = StringConverter(allow_string_conversion=True)
    assert str_converter.validate_value(1) == '1'
    str_converter = StringConverter(allow_string_conversion=True, string_force_lower=True,
                                    string_options=['1', 'ok'])
    assert str_converter.validate_value(1) == '1'
    assert str_converter.validate_value('OK') == 'ok'
    assert str_converter.validate_value('2') is None


def test_reference_python_converter_single():
    numeric_converter = NumericConverter(allow_integer_output=True, allow_float_output=False,
                                         parse_number_strings=True)
    python_converter = PythonDataConverter(numeric_converter=numeric_converter)
    assert python_converter.validate_value("33") == 33
    assert python_converter.validate_value(["33", 11, 14.0, 3.32]) == (
        33, 11, 14, "Validation/ConversionError")
    python_converter = PythonDataConverter(
        numeric_converter=numeric_converter, filter_failed_elements=True,
        iterable_output_type="list")
    assert python_converter.validate_value(["33", 11, 14.0, 3.32]) == [33, 11, 14]


def test_reference_python_converter_combined():
    numeric_converter = NumericConverter(allow_integer_output=True, allow_float_output=False,
                                         parse_number_strings=True)
    bool_converter = BooleanConverter(parse_boolean_equivalents=True)
    string_converter = StringConverter(allow_string_conversion=True)
    python_converter = PythonDataConverter(
        numeric_converter=numeric_converter, boolean_converter=bool_converter,
        string_converter=string_converter)
    assert python_converter.validate_value('33') == 33
    assert python_converter.validate_value('True') is True
    assert python_converter.validate_value(14.123) == '14.123'
    result = python_converter.validate_value(["22", False, 11.0, 3.32])
    assert result == (22, False, 11, '3.32')
    assert result[1] is False and type(result[2]) is int


def test_reference_python_converter_raise_errors():
    numeric_converter = NumericConverter(allow_float_output=False)
    bool_converter = BooleanConverter(parse_boolean_equivalents=False)
    string_converter = StringConverter(allow_string_conversion=False)
    python_converter = PythonDataConverter(
        numeric_converter=numeric_converter, boolean_converter=bool_converter,
        string_converter=string_converter)
    assert python_converter.validate_value([3.124, 1.213]) == (
        "Validation/ConversionError", "Validation/ConversionError")
    python_converter = PythonDataConverter(
        numeric_converter=numeric_converter, boolean_converter=bool_converter,
        string_converter=string_converter, raise_errors=True)
    with pytest.raises(ValueError, match=r"element 0 3\.124 .*numeric, boolean, string"):
        python_converter.validate_value([3.124, 1.213])


def test_reference_numpy_converter_auto_width():
    numeric_converter = NumericConverter(allow_float_output=False, allow_integer_output=True)
    python_converter = PythonDataConverter(numeric_converter=numeric_converter, raise_errors=True)
    numpy_converter = NumpyDataConverter(python_converter=python_converter)
    assert numpy_converter.convert_value_to_numpy('3') == np.int8(3)
    assert isinstance(numpy_converter.convert_value_to_numpy('3'), np.int8)


def test_reference_numpy_converter_fixed_width():
    numeric_converter = NumericConverter(allow_float_output=False, allow_integer_output=True)
    python_converter = PythonDataConverter(numeric_converter=numeric_converter, raise_errors=True)
    numpy_converter = NumpyDataConverter(python_converter=python_converter, output_bit_width=64,
                                         signed=False)
    assert numpy_converter.convert_value_to_numpy('11') == np.uint64(11)
    assert isinstance(numpy_converter.convert_value_to_numpy('11'), np.uint64)
    output = numpy_converter.convert_value_to_numpy([11, 341, 67481])
    expected = np.array([11, 341, 67481], dtype=np.uint64)
    assert np.array_equal(output, expected)
    assert output.dtype == np.uint64


def test_reference_numpy_converter_from_numpy():
    numeric_converter = NumericConverter(allow_float_output=True, allow_integer_output=False)
    python_converter = PythonDataConverter(numeric_converter=numeric_converter, raise_errors=True)
    numpy_converter = NumpyDataConverter(python_converter=python_converter)
    assert numpy_converter.convert_value_from_numpy(np.float64(1.23456789)) == 1.23456789
    assert isinstance(numpy_converter.convert_value_from_numpy(np.float64(1.23456789)), float)
    input_array = np.array([1.234, 5.671, 6.978], dtype=np.float16)
    output = numpy_converter.convert_value_from_numpy(input_array)
    assert np.allclose(output, (1.234, 5.671, 6.978), atol=0.01, rtol=0)
    assert isinstance(output, tuple)
    assert all(type(item) is float for item in output)


# -- behaviour beyond the examples -----------------------------------------------------

def test_numeric_details():
    both = NumericConverter()
    assert both.validate_value(3) == 3 and type(both.validate_value(3)) is int
    assert both.validate_value(2.5) == 2.5
    assert both.validate_value('3') == 3.0 and type(both.validate_value('3')) is float
    assert both.validate_value(' 7 ') == 7.0
    assert both.validate_value(True) is None
    assert both.validate_value('abc') is None
    assert both.validate_value([1]) is None
    assert both.validate_value(None) is None
    assert both.validate_value(np.int16(4)) == 4 and type(both.validate_value(np.int16(4))) is int
    assert both.validate_value(np.float32(0.5)) == 0.5
    assert NumericConverter(parse_number_strings=False).validate_value('3') is None
    integers = NumericConverter(allow_float_output=False)
    assert integers.validate_value(3.5) is None
    assert integers.validate_value(float('nan')) is None
    assert integers.validate_value(float('inf')) is None
    assert integers.validate_value('12345678901234567891') == 12345678901234567891
    limited = NumericConverter(number_lower_limit=0, number_upper_limit=1)
    assert limited.validate_value(0) == 0 and limited.validate_value(1) == 1
    assert limited.validate_value(-0.1) is None and limited.validate_value(1.1) is None
    assert limited.validate_value(float('nan')) is None
    floats = NumericConverter(allow_integer_output=False)
    assert floats.validate_value(10 ** 400) is None  # too large for a float


def test_numeric_bad_configuration():
    with pytest.raises(ValueError, match="at least one of allow_integer_output"):
        NumericConverter(allow_integer_output=False, allow_float_output=False)
    with pytest.raises(ValueError, match="number_lower_limit .2. is greater"):
        NumericConverter(number_lower_limit=2, number_upper_limit=1)
    with pytest.raises(TypeError, match="number_upper_limit must be an int"):
        NumericConverter(number_upper_limit='5')
    with pytest.raises(TypeError, match="number_lower_limit"):
        NumericConverter(number_lower_limit=True)
    with pytest.raises(ValueError, match="NaN"):
        NumericConverter(number_lower_limit=float('nan'))
    with pytest.raises(TypeError, match="parse_number_strings must be a bool"):
        NumericConverter(parse_number_strings=1)
    with pytest.raises(TypeError):
        NumericConverter(1, 2)  # the arguments are keyword-only


def test_numeric_limits_may_be_ints_beyond_floats():
    huge = 10 ** 400  # math.isnan() of it raised OverflowError
    above = NumericConverter(number_lower_limit=huge)
    assert above.number_lower_limit == huge
    assert above.validate_value(huge) == huge and above.validate_value(huge - 1) is None
    assert above.validate_value(1e308) is None and above.validate_value(float('inf')) == math.inf
    below = NumericConverter(number_upper_limit=huge, allow_float_output=False)
    assert below.validate_value(huge) == huge and below.validate_value(huge + 1) is None
    assert below.validate_value(str(huge)) == huge  # compared exactly, not as a float
    with pytest.raises(ValueError, match=r"number_lower_limit \(<int of 16610 bits>\) is "
                                         r"greater than number_upper_limit \(1\)"):
        NumericConverter(number_lower_limit=10 ** 5000, number_upper_limit=1)
    assert "number_upper_limit=<int of 16610 bits>" in repr(
        NumericConverter(number_upper_limit=10 ** 5000))  # too long for repr() itself


def test_integer_strings_beyond_the_digit_limit_parse_exactly():
    limit = sys.get_int_max_str_digits()
    ones = "1" * 5000  # int(ones) refuses it: more digits than the interpreter's limit
    value = (10 ** 5000 - 1) // 9
    assert NumericConverter().validate_value(ones) == value  # no float can hold it
    assert NumericConverter(allow_float_output=False).validate_value(f" -{ones} ") == -value
    assert NumericConverter(allow_float_output=False).validate_value(
        "_".join(["123"] * 2000)) == 123 * (10 ** 6000 - 1) // 999
    assert NumericConverter(allow_integer_output=False).validate_value(ones) is None
    assert NumericConverter(allow_float_output=False).validate_value(ones + "_") is None
    assert parse_parameters(["a=" + "9" * 5000, "b=-" + "9" * 5000]) == {
        "a": 10 ** 5000 - 1, "b": 1 - 10 ** 5000}
    assert sys.get_int_max_str_digits() == limit  # the interpreter's setting is unchanged


def test_number_strings_beyond_the_float_range_are_not_infinity():
    # float('1e400') is inf: the converter read a finite number as infinity
    for converter in (NumericConverter(), NumericConverter(allow_integer_output=False),
                      NumericConverter(allow_float_output=False)):
        for text in ("1e400", "-1e400", " 1E+400 ", "1_0e400", "9" * 400 + ".5"):
            assert converter.validate_value(text) is None, (converter, text)
    floats = NumericConverter(allow_integer_output=False)
    for text, value in (("inf", math.inf), ("-Infinity", -math.inf), (" +INF ", math.inf),
                        ("1e-400", 0.0), ("1.7976931348623157e308", sys.float_info.max)):
        assert floats.validate_value(text) == value, text
    with pytest.raises(ValueError, match=r"parse_parameters: 'rate=1e400': 1e400 is beyond "
                                         r"the range of a float \(write inf for infinity\)"):
        parse_parameters(["depth=3", "rate=1e400"])
    with pytest.raises(ValueError, match="'rate= -1e999 ': -1e999 is beyond"):
        parse_parameters(["rate= -1e999 "])
    assert parse_parameters(["a=inf", "b=-infinity", "c='1e400'", "d=1e400x"]) == {
        "a": math.inf, "b": -math.inf, "c": "1e400", "d": "1e400x"}


def test_boolean_details():
    converter = BooleanConverter()
    for true in (True, np.bool_(True), 1, 1.0, '1', '1.0', 'TRUE', ' True '):
        assert converter.validate_value(true) is True, true
    for false in (False, np.bool_(False), 0, 0.0, '0', '0.0', 'False'):
        assert converter.validate_value(false) is False, false
    for neither in (2, -1, 0.5, 'yes', '', None, [1]):
        assert converter.validate_value(neither) is None, neither
    strict = BooleanConverter(parse_boolean_equivalents=False)
    assert strict.validate_value(False) is False
    assert strict.validate_value('true') is None
    with pytest.raises(TypeError, match="parse_boolean_equivalents must be a bool"):
        BooleanConverter(parse_boolean_equivalents='yes')


def test_none_details():
    converter = NoneConverter()
    assert converter.validate_value('NULL') is None and converter.validate_value(' None ') is None
    assert converter.validate_value(0) == 'None' and converter.validate_value('') == 'None'
    strict = NoneConverter(parse_none_equivalents=False)
    assert strict.validate_value(None) is None
    assert strict.validate_value('null') == 'None'
    with pytest.raises(TypeError, match="parse_none_equivalents"):
        NoneConverter(parse_none_equivalents=None)


def test_string_details():
    options = StringConverter(string_options=('Fast', 'slow'))
    assert options.validate_value('FAST') == 'FAST'  # matched without case, kept as given
    assert options.validate_value('medium') is None
    lowered = StringConverter(string_options=['straße', 'Fast'], string_force_lower=True)
    # Matched caselessly, the result is the option lower-cased: 'STRASSE'.lower() is no option.
    assert lowered.validate_value('STRASSE') == 'straße'
    assert lowered.validate_value('Straße') == 'straße'
    assert lowered.validate_value('FAST') == 'fast'
    assert StringConverter(string_options=['straße']).validate_value('STRASSE') == 'STRASSE'
    twins = StringConverter(string_options=['straße', 'strasse'], string_force_lower=True)
    assert twins.validate_value('STRASSE') == 'strasse'  # the lower-case equal comes first
    assert StringConverter(allow_string_conversion=True).validate_value(None) == 'None'
    with pytest.raises(TypeError, match="string_options must be a list or tuple"):
        StringConverter(string_options='ok')
    with pytest.raises(TypeError, match="string_options must hold only strings, got 1"):
        StringConverter(string_options=['ok', 1])
    with pytest.raises(ValueError, match="string_options must not be empty"):
        StringConverter(string_options=[])


def test_python_converter_order_and_shapes():
    converter = PythonDataConverter(
        numeric_converter=NumericConverter(), boolean_converter=BooleanConverter(),
        none_converter=NoneConverter(), string_converter=StringConverter())
    assert converter.validate_value('1') == 1.0  # numeric before boolean
    assert converter.validate_value('true') is True
    assert converter.validate_value('null') is None
    assert converter.validate_value('word') == 'word'
    assert converter.validate_value(['x']) == ('x',)  # an iterable stays an iterable
    assert converter.validate_value([]) == ()
    assert converter.validate_value(np.array([1, 2])) == (1, 2)
    assert converter.validate_value(np.array(3)) == 3
    assert PythonDataConverter(none_converter=NoneConverter()).validate_value(
        [None, 'x']) == (None, CONVERSION_ERROR)
    filtering = PythonDataConverter(boolean_converter=BooleanConverter(),
                                    filter_failed_elements=True)
    assert filtering.validate_value('maybe') == CONVERSION_ERROR  # a scalar cannot be filtered
    assert filtering.validate_value(('maybe', 0)) == (False,)


def test_python_converter_errors():
    numeric = NumericConverter()
    with pytest.raises(ValueError, match="at least one of numeric_converter"):
        PythonDataConverter()
    with pytest.raises(TypeError, match="boolean_converter must be a BooleanConverter"):
        PythonDataConverter(boolean_converter=numeric)
    with pytest.raises(ValueError, match="iterable_output_type must be 'tuple' or 'list'"):
        PythonDataConverter(numeric, iterable_output_type='set')
    with pytest.raises(TypeError, match="raise_errors must be a bool"):
        PythonDataConverter(numeric, raise_errors='yes')
    converter = PythonDataConverter(numeric)
    with pytest.raises(TypeError, match="element 1 is a list"):
        converter.validate_value([1, [2]])
    with pytest.raises(TypeError, match="got a dict"):
        converter.validate_value({'a': 1})
    with pytest.raises(TypeError, match=r"shape \(1, 2\)"):
        converter.validate_value(np.zeros((1, 2)))
    raising = PythonDataConverter(numeric, raise_errors=True, filter_failed_elements=True)
    with pytest.raises(ValueError, match="value 'x' could not be validated"):
        raising.validate_value('x')
    with pytest.raises(ValueError, match="element 1 'x'"):
        raising.validate_value([1, 'x'])


def _numpy(numeric: NumericConverter | None = None, boolean: BooleanConverter | None = None,
           **kwargs) -> NumpyDataConverter:
    return NumpyDataConverter(PythonDataConverter(numeric, boolean, raise_errors=True), **kwargs)


def test_numpy_auto_widths():
    integers = _numpy(NumericConverter(allow_float_output=False))
    assert type(integers.convert_value_to_numpy(-128)) is np.int8
    assert type(integers.convert_value_to_numpy(128)) is np.int16
    assert type(integers.convert_value_to_numpy(2 ** 31)) is np.int64
    assert integers.convert_value_to_numpy([1, 300]).dtype == np.int16
    unsigned = _numpy(NumericConverter(allow_float_output=False), signed=False)
    assert type(unsigned.convert_value_to_numpy(255)) is np.uint8
    assert type(unsigned.convert_value_to_numpy(2 ** 64 - 1)) is np.uint64
    floats = _numpy(NumericConverter(allow_integer_output=False))
    assert type(floats.convert_value_to_numpy(0.5)) is np.float16
    assert type(floats.convert_value_to_numpy(1.1)) is np.float64
    assert type(floats.convert_value_to_numpy(2.0 ** 100)) is np.float32
    assert floats.convert_value_to_numpy([0.5, float('nan')]).dtype == np.float16
    assert floats.convert_value_to_numpy(3) == np.float16(3.0)
    booleans = _numpy(boolean=BooleanConverter())
    assert booleans.convert_value_to_numpy('true') is np.True_
    assert booleans.convert_value_to_numpy([1, 0]).dtype == np.bool_
    assert booleans.convert_value_from_numpy(np.array([True, False])) == (True, False)
    assert integers.convert_value_from_numpy(np.uint64(2 ** 63)) == 2 ** 63


def test_numpy_fixed_widths_and_overflow():
    with pytest.raises(ValueError, match=r"200 does not fit in a 8-bit signed integer "
                                         r"\(it holds -128\.\.127\)$"):
        _numpy(NumericConverter(allow_float_output=False), output_bit_width=8).\
            convert_value_to_numpy(200)
    with pytest.raises(ValueError, match=r"\(the values range from -1 to 2; it holds "
                                         r"0\.\.18446744073709551615\)$"):
        _numpy(NumericConverter(allow_float_output=False), signed=False).\
            convert_value_to_numpy([-1, 2])
    with pytest.raises(ValueError, match="64-bit unsigned integer"):
        _numpy(NumericConverter(allow_float_output=False), signed=False).\
            convert_value_to_numpy([-1, 2])
    with pytest.raises(ValueError, match="64-bit signed integer"):
        _numpy(NumericConverter(allow_float_output=False)).convert_value_to_numpy(2 ** 63)
    half = _numpy(NumericConverter(allow_integer_output=False), output_bit_width=16)
    assert type(half.convert_value_to_numpy(1.1)) is np.float16  # precision lost, as asked
    with pytest.raises(ValueError, match="overflows a 16-bit float"):
        half.convert_value_to_numpy(70000.0)
    assert np.isinf(half.convert_value_to_numpy(float('inf')))
    wide = _numpy(NumericConverter(allow_integer_output=False), output_bit_width=32)
    assert wide.convert_value_to_numpy([1.0, 2.0]).dtype == np.float32


def test_numpy_bad_configuration_and_input():
    integers = NumericConverter(allow_float_output=False)
    with pytest.raises(TypeError, match="python_converter must be a PythonDataConverter"):
        NumpyDataConverter(integers)
    with pytest.raises(ValueError, match="raise_errors=True"):
        NumpyDataConverter(PythonDataConverter(integers))
    with pytest.raises(ValueError, match="only integer output or only float output"):
        _numpy(NumericConverter())
    with pytest.raises(ValueError, match="exactly one of a numeric_converter"):
        _numpy(integers, BooleanConverter())
    with pytest.raises(ValueError, match="must not use a none_converter or a string_converter"):
        NumpyDataConverter(PythonDataConverter(string_converter=StringConverter(),
                                               raise_errors=True))
    with pytest.raises(ValueError, match="output_bit_width for float output"):
        _numpy(NumericConverter(allow_integer_output=False), output_bit_width=8)
    with pytest.raises(ValueError, match="output_bit_width for int output"):
        _numpy(integers, output_bit_width=12)
    with pytest.raises(ValueError, match="output_bit_width for bool output"):
        _numpy(boolean=BooleanConverter(), output_bit_width=16)
    with pytest.raises(TypeError, match="signed must be a bool"):
        _numpy(integers, signed=1)
    converter = _numpy(integers)
    with pytest.raises(ValueError, match="could not be validated"):
        converter.convert_value_to_numpy('3.5')
    with pytest.raises(TypeError, match="must be a NumPy scalar or array, got int 3"):
        converter.convert_value_from_numpy(3)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        converter.convert_value_from_numpy(np.zeros((2, 2), dtype=np.int8))


# -- properties ------------------------------------------------------------------------

@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1))
def test_property_integers_round_trip_through_numpy(number):
    converter = _numpy(NumericConverter(allow_float_output=False))
    value = converter.convert_value_to_numpy(number)
    assert converter.convert_value_from_numpy(value) == number
    assert np.iinfo(type(value)).min <= number <= np.iinfo(type(value)).max
    smaller = {np.int16: np.int8, np.int32: np.int16, np.int64: np.int32}.get(type(value))
    if smaller is not None:  # the chosen width is the smallest that fits
        assert not np.iinfo(smaller).min <= number <= np.iinfo(smaller).max


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.floats(allow_nan=False))
def test_property_floats_round_trip_exactly_through_numpy(number):
    converter = _numpy(NumericConverter(allow_integer_output=False))
    assert converter.convert_value_from_numpy(converter.convert_value_to_numpy(number)) == number


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.one_of(st.integers(), st.floats(allow_nan=False)))
def test_property_numeric_strings_parse_like_numbers(number):
    converter = NumericConverter(allow_integer_output=False)
    assert converter.validate_value(repr(number)) == float(number)


# -- parse_parameters ------------------------------------------------------------------

def test_parse_parameters_types():
    parsed = parse_parameters(["depth=3", "rate=0.5", "verbose=true", "quiet=False",
                               "seed=none", "mode=fast", "big=1_000", "exp=1e-3",
                               "whole=3.0", "neg=-4", "one=1", "empty=", "quoted='3'",
                               'dq="true"', "expr=a=b", "spaced= 7 "])
    assert parsed == {"depth": 3, "rate": 0.5, "verbose": True, "quiet": False, "seed": None,
                      "mode": "fast", "big": 1000, "exp": 0.001, "whole": 3.0, "neg": -4,
                      "one": 1, "empty": "", "quoted": "3", "dq": "true", "expr": "a=b",
                      "spaced": 7}
    assert type(parsed["depth"]) is int and type(parsed["whole"]) is float
    assert type(parsed["one"]) is int  # '1' is an integer, not a boolean
    assert list(parsed) == ["depth", "rate", "verbose", "quiet", "seed", "mode", "big", "exp",
                            "whole", "neg", "one", "empty", "quoted", "dq", "expr", "spaced"]
    assert math.isnan(parse_parameters(["x=nan"])["x"])
    assert parse_parameters([]) == {}


def test_parse_parameters_errors():
    with pytest.raises(ValueError, match="'depth' is not of the form name=value"):
        parse_parameters(["depth"])
    with pytest.raises(ValueError, match="'=3' has an empty name"):
        parse_parameters(["=3"])
    with pytest.raises(ValueError, match="'a b=3' contains whitespace"):
        parse_parameters(["a b=3"])
    with pytest.raises(ValueError, match="'a=2' gives the parameter 'a' a second time"):
        parse_parameters(["a=1", "a=2"])
    with pytest.raises(TypeError, match="pairs must be a list"):
        parse_parameters("a=1")
    with pytest.raises(TypeError, match="each pair must be a 'name=value' str, got int 3"):
        parse_parameters([3])


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,10}", fullmatch=True),
                       st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(),
                                 st.none(),
                                 st.from_regex(r"[A-Za-z][A-Za-z ]{0,10}[A-Za-z]",
                                               fullmatch=True)
                                 .filter(lambda s: s.lower() not in {
                                     "true", "false", "none", "null", "nan", "inf",
                                     "infinity"}))))
def test_property_parse_parameters_reads_what_str_writes(parameters):
    parsed = parse_parameters([f"{name}={value}" for name, value in parameters.items()])
    assert parsed == parameters
    assert [type(v) for v in parsed.values()] == [type(v) for v in parameters.values()]
