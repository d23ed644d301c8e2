"""papyflow.structures.NestedDictionary: every example of the reference, error paths, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from papyflow.structures import NestedDictionary, NestedOverwriteError, NestedPathError

pytestmark = pytest.mark.timeout(60)


# -- the reference's examples ---------------------------------------------------------

def test_reference_write_and_read():
    nested_dictionary = NestedDictionary()
    path = ['level1', 'sublevel2', 'value1']
    assert nested_dictionary.write_nested_value(variable_path=path, value=111) is None
    assert nested_dictionary.read_nested_value(variable_path=path) == 111
    path = ['level2']
    nested_dictionary.write_nested_value(variable_path=path,
                                         value={'sublevel2': {'subsublevel1': {'value': 3}}})
    assert nested_dictionary.read_nested_value(variable_path=path) == {
        'sublevel2': {'subsublevel1': {'value': 3}}}


def test_reference_seed_dictionary():
    seed_dict = {'key1': {'key2': {'key3': 10}}, 12: 'value1'}
    nested_dictionary = NestedDictionary(seed_dict)
    assert nested_dictionary.read_nested_value(['key1', 'key2', 'key3']) == 10
    assert nested_dictionary.read_nested_value([12]) == 'value1'


def test_reference_path_formats():
    seed_dict = {11: {'11': {True: False}}}
    nested_dictionary = NestedDictionary(seed_dict)
    assert nested_dictionary.read_nested_value([11, '11', True]) is False
    seed_dict = {'11': {'11': {'True': False}}}
    nested_dictionary = NestedDictionary(seed_dict, path_delimiter='/')
    assert nested_dictionary.read_nested_value('11/11/True') is False
    nested_dictionary.set_path_delimiter('.')
    assert nested_dictionary.read_nested_value('11.11.True') is False


def test_reference_key_datatypes():
    seed_dict = {11: {'11': {True: False}}}
    nested_dictionary = NestedDictionary(seed_dict)
    assert nested_dictionary.key_datatypes == ('bool', 'int', 'str')
    new_nested_dict = nested_dictionary.convert_all_keys_to_datatype(
        datatype='str', modify_class_dictionary=False)
    assert new_nested_dict.key_datatypes == ('str',)
    assert nested_dictionary.key_datatypes == ('bool', 'int', 'str')
    assert nested_dictionary.convert_all_keys_to_datatype(datatype='int') is None
    assert nested_dictionary.key_datatypes == ('int',)


def test_reference_mapping():
    seed_dict = {"11": {"11": {"11": False}}, "key2": {"key2": 123}}
    nested_dictionary = NestedDictionary(seed_dict)
    value_paths = nested_dictionary.extract_nested_variable_paths(return_raw=True)
    assert len(value_paths) == 2
    assert value_paths[0] == ("11", "11", "11")
    assert value_paths[1] == ("key2", "key2")
    intermediate_paths = nested_dictionary.find_nested_variable_path(
        target_key="key2", search_mode="intermediate_only", return_raw=True)
    assert intermediate_paths == ('key2',)
    terminal_paths = nested_dictionary.find_nested_variable_path(
        target_key="11", search_mode="terminal_only", return_raw=True)
    assert terminal_paths == ("11", "11", "11")
    all_paths = nested_dictionary.find_nested_variable_path(
        target_key="11", search_mode="all", return_raw=True)
    assert len(all_paths) == 3
    assert all_paths[0] == ("11",)
    assert all_paths[1] == ("11", "11",)
    assert all_paths[2] == ("11", "11", "11")


def test_reference_overwrite_and_delete():
    seed_dict = {"11": {"11": {"11": False}}, "key2": {"key2": 123}}
    nested_dictionary = NestedDictionary(seed_dict)
    value_path = "11.11.11"
    modified_dictionary = nested_dictionary.write_nested_value(
        value_path, value=True, allow_terminal_overwrite=True, modify_class_dictionary=False)
    assert modified_dictionary.read_nested_value(value_path) is True
    assert nested_dictionary.read_nested_value(value_path) is False
    value_path = "11.11"
    modified_dictionary = nested_dictionary.write_nested_value(
        value_path, value={"12": "not bool"}, allow_intermediate_overwrite=True,
        modify_class_dictionary=False)
    assert modified_dictionary.read_nested_value(value_path) == {"12": "not bool"}
    assert nested_dictionary.read_nested_value(value_path) == {"11": False}
    value_path = "11.11.11"
    modified_dictionary = nested_dictionary.delete_nested_value(
        variable_path=value_path, modify_class_dictionary=False, delete_empty_sections=True)
    assert '11.11.11' not in modified_dictionary.extract_nested_variable_paths()
    assert modified_dictionary.extract_nested_variable_paths() == ("key2.key2",)
    modified_dictionary = nested_dictionary.delete_nested_value(
        variable_path=value_path, modify_class_dictionary=False, delete_empty_sections=False)
    assert '11.11' in modified_dictionary.extract_nested_variable_paths()
    assert modified_dictionary.read_nested_value('11.11') == {}
    assert seed_dict == {"11": {"11": {"11": False}}, "key2": {"key2": 123}}  # untouched


# -- behaviour beyond the examples -----------------------------------------------------

def test_wraps_the_seed_dictionary_in_place():
    seed = {"a": {"b": 1}}
    nested = NestedDictionary(seed)
    assert nested.data is seed
    nested.write_nested_value("a.c", 2)
    nested.delete_nested_value("a.b")
    assert seed == {"a": {"c": 2}}
    nested.convert_all_keys_to_datatype("str")
    assert nested.data is seed


def test_string_paths_take_the_single_key_datatype():
    nested = NestedDictionary({1: {2: "x"}, 3: {4: "y"}})
    assert nested.read_nested_value("1.2") == "x"
    nested.write_nested_value("3.5", "z")
    assert nested.read_nested_value([3, 5]) == "z"
    with pytest.raises(ValueError, match="part 'a' of the string path 'a.b' is not a valid int"):
        nested.read_nested_value("a.b")
    floats = NestedDictionary({0.5: {1.5: "f"}}, path_delimiter="/")
    assert floats.read_nested_value("0.5/1.5") == "f"
    assert NestedDictionary({True: {False: 1}}).read_nested_value("True.False") == 1
    assert NestedDictionary({None: 1}).read_nested_value("null") == 1
    with pytest.raises(ValueError, match="several datatypes .bool, int, str."):
        NestedDictionary({11: {'11': {True: False}}}).read_nested_value('11.11.True')
    with pytest.raises(ValueError, match="keys are of type tuple"):
        NestedDictionary({(1, 2): 3}).read_nested_value("1")


def test_read_errors_name_the_path():
    nested = NestedDictionary({"a": {"b": 1}})
    with pytest.raises(NestedPathError, match=r"path 'a.x' does not exist: no key 'x' in path 'a'"):
        nested.read_nested_value("a.x")
    with pytest.raises(KeyError, match=r"path \['z'\] does not exist: no key 'z' in the top"):
        nested.read_nested_value(["z"])
    with pytest.raises(NestedPathError, match="'a.b' holds the terminal value 1, not a section"):
        nested.read_nested_value("a.b.c")
    with pytest.raises(ValueError, match="variable_path must not be empty"):
        nested.read_nested_value("")
    with pytest.raises(ValueError, match="variable_path must not be empty"):
        nested.read_nested_value([])
    with pytest.raises(ValueError, match="has an empty key"):
        nested.read_nested_value("a..b")
    with pytest.raises(TypeError, match="variable_path must be a delimited str or a list"):
        nested.read_nested_value(5)
    with pytest.raises(TypeError, match="must be hashable"):
        nested.read_nested_value(["a", ["b"]])
    assert str(NestedPathError("plain message")) == "plain message"


def test_write_overwrite_rules():
    nested = NestedDictionary({"a": {"b": 1}})
    with pytest.raises(NestedOverwriteError, match="path 'a' is an existing section; pass "
                                                   "allow_intermediate_overwrite=True"):
        nested.write_nested_value("a", 5)
    with pytest.raises(ValueError, match="'a.b' holds the terminal value 1; pass "
                                         "allow_terminal_overwrite=True to replace it$"):
        nested.write_nested_value("a.b", 2, allow_terminal_overwrite=False)
    with pytest.raises(NestedOverwriteError, match="replace it with a section"):
        nested.write_nested_value("a.b.c.d", 2, allow_terminal_overwrite=False)
    assert nested.data == {"a": {"b": 1}}  # refused writes change nothing
    nested.write_nested_value("a.b.c", 2)  # a terminal value in the way is replaced by default
    assert nested.data == {"a": {"b": {"c": 2}}}
    nested.write_nested_value(["a"], 5, allow_intermediate_overwrite=True)
    assert nested.data == {"a": 5}
    nested.write_nested_value([1, None], "mixed")
    assert nested.key_datatypes == ("NoneType", "int", "str")
    with pytest.raises(TypeError, match="allow_terminal_overwrite must be a bool"):
        nested.write_nested_value(["x"], 1, allow_terminal_overwrite=None)


def test_write_refuses_a_value_that_would_contain_itself():
    nested = NestedDictionary({"a": {"x": 1}})
    top, section = nested.data, nested.data["a"]
    with pytest.raises(ValueError, match=r"writing at path \['b'\] would make the dictionary "
                                         "contain itself"):
        nested.write_nested_value(["b"], nested.data)
    with pytest.raises(ValueError, match="writing at path 'a.self' would make"):
        nested.write_nested_value("a.self", nested.read_nested_value("a"))
    with pytest.raises(ValueError, match=r"the section at \['back'\] in the value"):
        nested.write_nested_value("a.x.y", {"back": section})  # through a replaced terminal
    with pytest.raises(ValueError, match="contain itself"):  # replacing an existing value
        nested.write_nested_value("a.x", {"back": section}, allow_intermediate_overwrite=True)
    cyclic: dict = {}
    cyclic["q"] = {"r": cyclic}
    with pytest.raises(ValueError, match=r"the section at \['q', 'r'\] in the value"):
        nested.write_nested_value("c", cyclic)
    # Nothing changed: no key, no cycle, the same sections, the same datatypes.
    assert nested.data == {"a": {"x": 1}} and nested.data is top and nested.data["a"] is section
    assert nested.key_datatypes == ("str",)
    assert nested.extract_nested_variable_paths() == ("a.x",)
    # No cycle, so no refusal: shared sections, a section moved down, a write into a copy.
    shared = {"v": 1}
    nested.write_nested_value("s", {"one": shared, "two": shared})
    copied = nested.write_nested_value("a.self", section, modify_class_dictionary=False)
    assert copied.read_nested_value("a.self") is section and "self" not in section
    nested.write_nested_value("a", {"old": section}, allow_intermediate_overwrite=True)
    assert nested.data == {"a": {"old": {"x": 1}}, "s": {"one": {"v": 1}, "two": {"v": 1}}}


def test_delete_rules():
    nested = NestedDictionary({"a": {"b": {"c": 1}, "d": 2}})
    nested.delete_nested_value("a.b.c")
    assert nested.data == {"a": {"d": 2}}  # 'b' emptied and removed, 'a' kept
    with pytest.raises(NestedPathError, match="no key 'x'"):
        nested.delete_nested_value("a.x")
    assert nested.delete_nested_value("a.x", allow_missing=True) is None
    copy = nested.delete_nested_value("a.x", allow_missing=True, modify_class_dictionary=False)
    assert copy.data == nested.data and copy.data is not nested.data
    nested.delete_nested_value("a")
    assert nested.data == {} and nested.key_datatypes == ()
    assert nested.extract_nested_variable_paths() == ()


def test_convert_keys_errors_and_collisions():
    with pytest.raises(ValueError, match=r"key 'x' at path \[1, 'x'\] cannot be converted to int"):
        NestedDictionary({1: {"x": 1}}).convert_all_keys_to_datatype("int")
    with pytest.raises(ValueError, match=r"keys 1 and '1' of the section at path \[\] would "
                                         "both become '1'"):
        NestedDictionary({1: "a", "1": "b"}).convert_all_keys_to_datatype("str")
    with pytest.raises(ValueError, match="cannot be converted to int"):
        NestedDictionary({2.5: 1}).convert_all_keys_to_datatype("int")
    with pytest.raises(ValueError, match="datatype must be one of 'str', 'int', 'float'"):
        NestedDictionary().convert_all_keys_to_datatype("bool")
    original = {"1": {"2.0": 3}, "x": 4}
    nested = NestedDictionary(original)
    with pytest.raises(ValueError):
        nested.convert_all_keys_to_datatype("int")
    assert nested.data == {"1": {"2.0": 3}, "x": 4}  # a failed conversion changes nothing
    converted = NestedDictionary({"1": {"2.0": 3}, False: 5}).convert_all_keys_to_datatype(
        "float", modify_class_dictionary=False)
    assert converted.data == {1.0: {2.0: 3}, 0.0: 5}
    assert converted.key_datatypes == ("float",)
    for beyond in (2**53 + 1, "9007199254740993"):  # no float holds it: never rounded
        with pytest.raises(ValueError, match="cannot be converted to float"):
            NestedDictionary({beyond: 1}).convert_all_keys_to_datatype("float")
    assert NestedDictionary({2**53: 1, "-7": 2}).convert_all_keys_to_datatype(
        "float", modify_class_dictionary=False).data == {2.0**53: 1, -7.0: 2}


def test_find_and_extract_details():
    nested = NestedDictionary({"a": {"x": 1, "b": {"x": {}}}, 1: {"x": 2}})
    assert nested.find_nested_variable_path("missing") is None
    assert nested.find_nested_variable_path("x") == ("a.x", "1.x")
    assert nested.find_nested_variable_path("x", search_mode="intermediate_only") == "a.b.x"
    assert nested.find_nested_variable_path(True) is None  # True is not the key 1
    assert nested.find_nested_variable_path(1, search_mode="all", return_raw=True) == (1,)
    assert nested.extract_nested_variable_paths(return_raw=True) == (
        ("a", "x"), ("a", "b", "x"), (1, "x"))
    with pytest.raises(ValueError, match="search_mode must be one of"):
        nested.find_nested_variable_path("x", search_mode="leaves")
    with pytest.raises(TypeError, match="target_key must be hashable"):
        nested.find_nested_variable_path(["x"])


def test_string_paths_that_would_name_another_path_are_refused():
    nested = NestedDictionary({"model.v1": {"rate": 0.5}, "plain": {"": 1}})
    with pytest.raises(ValueError, match=r"extract_nested_variable_paths: the key 'model\.v1' "
                                         r"\(in \['model\.v1', 'rate'\]\) holds the path "
                                         r"delimiter '\.', so no string path can name it"):
        nested.extract_nested_variable_paths()
    with pytest.raises(ValueError, match=r"find_nested_variable_path: the key 'model\.v1'"):
        nested.find_nested_variable_path("rate")
    with pytest.raises(ValueError, match=r"the key '' \(in \['plain', ''\]\) is empty"):
        nested.find_nested_variable_path("")
    assert nested.extract_nested_variable_paths(return_raw=True) == (
        ("model.v1", "rate"), ("plain", ""))
    assert nested.find_nested_variable_path("rate", return_raw=True) == ("model.v1", "rate")
    nested.set_path_delimiter("/")
    assert nested.find_nested_variable_path("rate") == "model.v1/rate"
    assert nested.read_nested_value(nested.find_nested_variable_path("rate")) == 0.5


def test_bad_construction_and_delimiter():
    with pytest.raises(TypeError, match="seed_dictionary must be a dict or None, got list"):
        NestedDictionary([1, 2])
    with pytest.raises(ValueError, match="path_delimiter must not be empty"):
        NestedDictionary(path_delimiter="")
    nested = NestedDictionary()
    with pytest.raises(TypeError, match="set_path_delimiter: path_delimiter must be a str"):
        nested.set_path_delimiter(1)
    cyclic: dict = {"a": {}}
    cyclic["a"]["b"] = cyclic
    with pytest.raises(ValueError, match="contains itself"):
        NestedDictionary(cyclic)
    assert repr(NestedDictionary({"a": 1}, "/")) == (
        "NestedDictionary(key_datatypes=('str',), path_delimiter='/', data={'a': 1})")


# -- properties ------------------------------------------------------------------------

_keys = st.one_of(st.integers(-5, 5), st.text("abc", min_size=1, max_size=3), st.booleans())
_values = st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers()))
_trees = st.recursive(_values, lambda children: st.dictionaries(_keys, children, max_size=4),
                      max_leaves=15)


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.dictionaries(_keys, _trees, max_size=4), st.lists(_keys, min_size=1, max_size=4),
       _values)
def test_property_write_then_read(seed, path, value):
    nested = NestedDictionary(seed)
    nested.write_nested_value(path, value, allow_intermediate_overwrite=True)
    assert nested.read_nested_value(path) == value
    assert tuple(path) in nested.extract_nested_variable_paths(return_raw=True)


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.dictionaries(_keys, _trees, max_size=4))
def test_property_every_extracted_path_reads_back_and_deletes(seed):
    nested = NestedDictionary(seed)
    paths = nested.extract_nested_variable_paths(return_raw=True)
    for path in paths:
        nested.read_nested_value(path)  # does not raise
    for path in paths:
        copy = nested.delete_nested_value(path, modify_class_dictionary=False)
        assert path not in copy.extract_nested_variable_paths(return_raw=True)
        assert not any(p[:len(path)] == path for p in
                       copy.extract_nested_variable_paths(return_raw=True))


@settings(deadline=None)  # the machine is shared: time is no property here
@given(st.dictionaries(st.text("xyz", min_size=1, max_size=3),
                       st.dictionaries(st.text("xyz", min_size=1, max_size=3), st.integers(),
                                       max_size=3), max_size=3))
def test_property_str_and_int_key_conversions(seed):
    nested = NestedDictionary(seed)
    as_str = nested.convert_all_keys_to_datatype("str", modify_class_dictionary=False)
    assert as_str.data == seed
    assert set(as_str.extract_nested_variable_paths()) == {
        ".".join(path) for path in nested.extract_nested_variable_paths(return_raw=True)}


def test_public_surface():
    from papyflow import structures

    for name in ("NestedDictionary", "YamlConfig", "NumericConverter", "BooleanConverter",
                 "StringConverter", "NoneConverter", "PythonDataConverter",
                 "NumpyDataConverter", "parse_parameters"):
        assert name in structures.__all__ and hasattr(structures, name)
    assert all(hasattr(structures, name) for name in structures.__all__)
    assert issubclass(NestedPathError, KeyError) and issubclass(NestedOverwriteError, ValueError)


def test_a_key_that_would_become_nan_is_refused():
    for nan in ("nan", "NaN", " -nan ", float("nan")):
        nested = NestedDictionary({nan: {"7": 1}, "1": {"7": 3}})
        with pytest.raises(ValueError, match=r"cannot be converted to float \(it would be NaN"):
            nested.convert_all_keys_to_datatype("float")
        assert "1" in nested.data  # nothing changed
    nested = NestedDictionary({"1": {"7": 3}})
    nested.convert_all_keys_to_datatype("float")
    nested.set_path_delimiter("/")
    with pytest.raises(Exception, match="nan"):  # a path part never becomes NaN either
        nested.read_nested_value("nan/7")
    assert nested.read_nested_value("1/7") == 3


def test_a_key_beyond_the_float_range_is_not_converted_to_infinity():
    # '1e400' became the key inf: a value changed by the conversion, which never rounds
    nested = NestedDictionary({"1e400": {"7": 1}, "-1E400": 2, "1": 3})
    with pytest.raises(ValueError, match="the key '1e400' at path .* cannot be converted to "
                                         "float"):
        nested.convert_all_keys_to_datatype("float")
    assert "1e400" in nested.data  # nothing changed
    spelled = NestedDictionary({"inf": 1, "-Infinity": 2})
    spelled.convert_all_keys_to_datatype("float")
    assert spelled.data == {math.inf: 1, -math.inf: 2}
