"""papyflow.formats.dataformat: loading, checking, hashing, writing and exporting dataformats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from papyflow import hash as phash
from papyflow.formats import SYSTEM_PREFIX, system_prefix
from papyflow.formats.baseformat import (
    DecodeError,
    FieldValueError,
    MissingFieldError,
    TruncatedError,
    UnknownFieldError,
    baseformat,
)
from papyflow.formats.dataformat import (
    RESERVED_FIELD_NAMES,
    SCALAR_TYPES,
    UNNAMED,
    DataFormat,
    Storage,
)
from papyflow.utils import Prefix


def declare(prefix: Path, name: str, declaration: dict | str, doc: str | None = None) -> Path:
    """Write a dataformat declaration (a dict, or raw JSON text) under ``prefix``."""
    path = prefix / "dataformats" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = declaration if isinstance(declaration, str) else json.dumps(declaration, indent=4)
    path.write_text(text)
    if doc is not None:
        path.with_suffix(".rst").write_text(doc)
    return path


def file_of(prefix: Path, name: str) -> str:
    return str(prefix / "dataformats" / f"{name}.json")


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A prefix with a few formats that use each other."""
    root = tmp_path / "prefix"
    declare(root, "user/point/1", {"#description": "A point", "x": "float64", "y": "float64"},
            doc="A point in the plane.")
    declare(root, "user/labelled/1", {"label": "string"})
    declare(root, "user/base/1", {"#extends": "user/labelled/1", "id": "uint64"})
    declare(root, "user/sample/1", {
        "#description": "A 2-D point with a label",
        "#extends": "user/base/1",
        "x": "float64",
        "tags": [0, "string"],
        "patch": [8, 8, "uint8"],
        "origin": "user/point/1",
        "meta": {"source": "string", "frame": "uint32"},
        "score": "system/float32/1",
    })
    return root


# -- loading valid formats ---------------------------------------------------------------------


def test_a_simple_format_loads(prefix):
    point = DataFormat(prefix, "user/point/1")
    assert point.valid and point.errors == []
    assert point.name == "user/point/1"
    assert point.data == {"#description": "A point", "x": "float64", "y": "float64"}
    assert point.resolved == {"x": "float64", "y": "float64"}
    assert point.description == "A point"
    assert point.documentation == "A point in the plane."
    assert point.schema_version == 1
    assert point.extends is None and point.parent is None and point.referenced == {}
    assert point.storage is not None and point.storage.json.path == file_of(prefix, "user/point/1")
    assert "user/point/1" in repr(point) and "valid" in repr(point)


def test_references_extensions_and_inline_objects_are_resolved(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    assert sample.valid, sample.errors
    # Inherited fields first (deepest base first), then the declared ones in order.
    assert list(sample.resolved) == ["label", "id", "x", "tags", "patch", "origin", "meta",
                                     "score"]
    assert sample.resolved["origin"] == {"x": "float64", "y": "float64"}
    assert sample.resolved["meta"] == {"source": "string", "frame": "uint32"}
    assert sample.resolved["patch"] == [8, 8, "uint8"]
    assert sample.resolved["score"] == {"value": "float32"}
    assert sorted(sample.referenced) == ["system/float32/1", "user/base/1", "user/labelled/1",
                                         "user/point/1"]
    assert sample.extends is sample.referenced["user/base/1"]
    assert sample.extends.extends is sample.referenced["user/labelled/1"]


def test_prefix_may_be_a_path_a_string_a_list_or_a_prefix(prefix, tmp_path):
    other = tmp_path / "other"
    declare(other, "user/extra/1", {"p": "user/point/1"})
    for given in (prefix, str(prefix), [prefix], Prefix(prefix)):
        assert DataFormat(given, "user/point/1").valid
    both = DataFormat([other, prefix], "user/extra/1")
    assert both.valid and both.resolved == {"p": {"x": "float64", "y": "float64"}}
    assert both.prefix.paths == (str(other), str(prefix), SYSTEM_PREFIX)


def test_the_user_prefix_is_not_changed(prefix):
    given = Prefix(prefix)
    DataFormat(given, "user/point/1")
    assert given.paths == (str(prefix),)


def test_a_format_in_the_hashed_layout_is_found(tmp_path):
    path = tmp_path / "dataformats" / phash.toUserPath("bob") / "thing" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"v": "int8"}')
    thing = DataFormat(tmp_path, "bob/thing/1")
    assert thing.valid and thing.storage.json.path == str(path)


def test_arrays_of_every_kind(tmp_path):
    declare(tmp_path, "user/item/1", {"v": "int8"})
    declare(tmp_path, "user/arrays/1", {
        "fixed": [3, "float32"],
        "variable": [0, "string"],
        "mixed": [0, 4, 2, "complex64"],
        "records": [0, "user/item/1"],
        "inline": [2, {"a": "bool", "b": [0, "uint16"]}],
    })
    arrays = DataFormat(tmp_path, "user/arrays/1")
    assert arrays.valid, arrays.errors
    assert arrays.resolved == {
        "fixed": [3, "float32"],
        "variable": [0, "string"],
        "mixed": [0, 4, 2, "complex64"],
        "records": [0, {"v": "int8"}],
        "inline": [2, {"a": "bool", "b": [0, "uint16"]}],
    }


@pytest.mark.parametrize("scalar", sorted(SCALAR_TYPES))
def test_every_scalar_type_is_accepted(tmp_path, scalar):
    assert DataFormat(tmp_path, {"value": scalar, "values": [2, scalar]}).valid


def test_schema_version_and_documentation_setters(prefix):
    declare(prefix, "user/v/2", {"#schema_version": 2, "a": "int8"})
    v2 = DataFormat(prefix, "user/v/2")
    assert v2.valid and v2.schema_version == 2 and v2.description is None
    assert v2.documentation is None
    v2.description = "Now described"
    v2.documentation = "Long text"
    assert v2.data["#description"] == "Now described" and v2.documentation == "Long text"
    v2.description = None
    assert "#description" not in v2.data


# -- anonymous formats --------------------------------------------------------------------------


def test_an_anonymous_format(prefix):
    results = DataFormat(prefix, {"eer": "float32", "point": "user/point/1"})
    assert results.valid and results.name == UNNAMED == "__unnamed_dataformat__"
    assert results.storage is None and results.documentation is None
    assert results.resolved == {"eer": "float32", "point": {"x": "float64", "y": "float64"}}
    assert list(results.referenced) == ["user/point/1"]


def test_an_anonymous_format_is_named_after_its_parent(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    child = DataFormat(prefix, {"a": "int8"}, parent=(sample, "extra"))
    assert child.name == "user/sample/1.extra"
    bad = DataFormat(prefix, {"a": "int9"}, parent=(sample, "extra"))
    assert bad.errors == [(f"{file_of(prefix, 'user/sample/1')}: field 'extra.a': "
                          "unknown type 'int9' (did you mean 'int8'?)")]


def test_the_given_dict_is_copied(prefix):
    declaration = {"a": {"b": "int8"}}
    anonymous = DataFormat(prefix, declaration)
    declaration["a"]["b"] = "nonsense"
    assert anonymous.data == {"a": {"b": "int8"}}


def test_data_of_another_kind_is_a_type_error(prefix):
    with pytest.raises(TypeError, match="user/name/version"):
        DataFormat(prefix, 3)  # type: ignore[arg-type]


# -- system formats ----------------------------------------------------------------------------

NUMERIC = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64", "complex64", "complex128"]


def shipped() -> list[str]:
    root = Path(SYSTEM_PREFIX) / "dataformats"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.json"))


def test_the_system_prefix_ships_the_expected_formats():
    assert system_prefix() == SYSTEM_PREFIX and os.path.isdir(SYSTEM_PREFIX)
    expected = {f"system/{t}/1" for t in NUMERIC} | {"system/bool/1", "system/text/1"}
    expected |= {f"system/array_{n}d_{t}/1" for t in NUMERIC for n in (1, 2)}
    assert set(shipped()) == expected


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_system_format_is_valid_and_described(tmp_path, name):
    loaded = DataFormat(tmp_path / "empty", name)
    assert loaded.valid, loaded.errors
    assert loaded.storage.json.path.startswith(SYSTEM_PREFIX)
    assert loaded.description
    assert loaded.resolved == {key: value for key, value in loaded.data.items()
                               if not key.startswith("#")}


def test_system_format_contents(tmp_path):
    assert DataFormat(tmp_path, "system/int32/1").resolved == {"value": "int32"}
    assert DataFormat(tmp_path, "system/bool/1").resolved == {"value": "bool"}
    assert DataFormat(tmp_path, "system/text/1").resolved == {"text": "string"}
    assert DataFormat(tmp_path, "system/array_1d_float64/1").resolved == {"value": [0, "float64"]}
    assert DataFormat(tmp_path, "system/array_2d_uint8/1").resolved == {"value": [0, 0, "uint8"]}


def test_a_user_format_of_the_same_name_comes_first(tmp_path):
    declare(tmp_path, "system/float64/1", {"mine": "float64"})
    assert DataFormat(tmp_path, "system/float64/1").resolved == {"mine": "float64"}


# -- errors --------------------------------------------------------------------------------------


def load_one(tmp_path: Path, declaration: dict | str, name: str = "user/a/1") -> DataFormat:
    declare(tmp_path, name, declaration)
    return DataFormat(tmp_path, name)


BAD_FIELDS = [
    ({"meta": {"source": "string", "frame": "flaot32"}}, "meta.frame",
     "unknown type 'flaot32' (did you mean 'float32'?)"),
    ({"x": "vector"}, "x", "unknown type 'vector'"),
    ({"x": "user/point"}, "x", ("unknown type 'user/point' (a dataformat name is "
     "'user/name/version')")),
    ({"x": 3}, "x", "invalid type 3: expected a type name, an object or an array"),
    ({"x": None}, "x", "invalid type null"),
    ({"x": [-1, "int8"]}, "x", ("invalid array [-1, \"int8\"]: dimension 1 is -1, dimensions "
     "are integers >= 0 (0 = variable)")),
    ({"x": [2, 2.5, "int8"]}, "x", "dimension 2 is 2.5"),
    ({"x": [True, "int8"]}, "x", "dimension 1 is true"),
    ({"x": ["2", "int8"]}, "x", "dimension 1 is \"2\""),
    ({"x": [3, 0]}, "x", "invalid array [3, 0]: no element type"),
    ({"x": [0, [3, "int8"]]}, "x", "the element type is a list"),
    ({"x": ["int8"]}, "x", "an array is [d1, ..., dn, type]"),
    ({"x": []}, "x", "invalid array []"),
    ({"x": [1] * 33 + ["int8"]}, "x", "33 dimensions, at most 32"),
    ({"x": [0, "flaot32"]}, "x", "unknown type 'flaot32'"),
    ({"items": [0, {"ok": "int8", "bad": "int9"}]}, "items.bad", "unknown type 'int9'"),
    ({"deep": {"deeper": {"x": "nope"}}}, "deep.deeper.x", "unknown type 'nope'"),
    ({"two words": "int8"}, "two words", "invalid field name: not a Python identifier"),
    ({"1st": "int8"}, "1st", "not a Python identifier"),
    ({"class": "int8"}, "class", "invalid field name: a Python keyword"),
    ({"\uff58": "int8"}, "\uff58", "not in Unicode NFKC form (Python reads it as 'x')"),
    ({"_x": "int8"}, "_x", "names starting with '_' are reserved"),
    ({"pack": "int8"}, "pack", "invalid field name: 'pack' is an attribute of records"),
    ({"meta": {"as_dict": "int8"}}, "meta.as_dict", "'as_dict' is an attribute of records"),
    ({"packed_size": "int8"}, "packed_size", "'packed_size' is an attribute of records"),
    ({"x": [70000, {}]}, "x", "records that pack to zero bytes holds at most 65536"),
    ({"x": [300, 300, {"e": {}}]}, "x", "records that pack to zero bytes"),
    ({"x": [2**32, 2**32, 0, "uint8"]}, "x", "more than 2**56 elements"),
    ({"#extend": "user/b/1", "x": "int8"}, "#extend", "unknown metadata key"),
    ({"#description": 3}, "#description", "must be a string"),
    ({"#schema_version": "2"}, "#schema_version", "must be an integer >= 1"),
    ({"#schema_version": 0}, "#schema_version", "must be an integer >= 1, not 0"),
    ({"#extends": 3}, "#extends", "3 is not a dataformat name 'user/name/version'"),
    ({"#extends": "user/b"}, "#extends", "\"user/b\" is not a dataformat name"),
    ({"x": "user/missing/1"}, "x", "dataformat 'user/missing/1' not found (searched: "),
    ({"#extends": "user/missing/1"}, "#extends", "dataformat 'user/missing/1' not found"),
    ({"m": {"#extends": "user/missing/1"}}, "m.#extends", "dataformat 'user/missing/1' not found"),
]


@pytest.mark.parametrize("declaration, field, message", BAD_FIELDS,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD_FIELDS)])
def test_a_bad_field_makes_the_format_invalid_and_says_where(tmp_path, declaration, field,
                                                             message):
    loaded = load_one(tmp_path, declaration)
    assert not loaded.valid
    assert len(loaded.errors) == 1, loaded.errors
    assert loaded.errors[0].startswith(f"{file_of(tmp_path, 'user/a/1')}: field '{field}': ")
    assert message in loaded.errors[0]


def test_arrays_at_the_record_limits_are_valid_and_have_a_type(tmp_path):
    loaded = load_one(tmp_path, {"x": [65536, {}], "y": [2**28, 2**28, 0, "uint8"],
                                 "z": [70000, {"n": "int8"}]})
    assert loaded.valid, loaded.errors
    assert loaded.type().x.shape == (65536,)
    over = load_one(tmp_path, {"x": [65537, {}]})
    assert not over.valid and "at most 65536" in over.errors[0]


def test_every_error_is_listed(tmp_path):
    loaded = load_one(tmp_path, {"a": "int9", "b": [-1, "int8"], "c": "ok", "d": "int8"})
    assert [e.split(": field ")[1].split(":")[0] for e in loaded.errors] == ["'a'", "'b'", "'c'"]
    assert loaded.resolved == {"d": "int8"}


def test_an_anonymous_format_names_itself_in_errors(tmp_path):
    loaded = DataFormat(tmp_path, {"r": {"eer": "flaot32"}})
    assert loaded.errors == [(f"{UNNAMED}: field 'r.eer': unknown type 'flaot32' "
                             "(did you mean 'float32'?)")]


def test_a_field_redefined_by_an_extension(tmp_path):
    declare(tmp_path, "user/base/1", {"x": "int8", "y": "int8"})
    loaded = load_one(tmp_path, {"#extends": "user/base/1", "y": "int16", "z": "int8"})
    assert loaded.errors == [(f"{file_of(tmp_path, 'user/a/1')}: field 'y': redefines a field "
                             "inherited from 'user/base/1'")]
    assert loaded.resolved == {"x": "int8", "y": "int8", "z": "int8"}


def test_a_referenced_format_that_is_invalid(tmp_path):
    declare(tmp_path, "user/b/1", {"v": {"w": "bogus"}})
    loaded = load_one(tmp_path, {"ok": "int8", "ref": "user/b/1"})
    assert loaded.errors == [
        (f"{file_of(tmp_path, 'user/a/1')}: field 'ref': dataformat 'user/b/1' is invalid: "
        f"{file_of(tmp_path, 'user/b/1')}: field 'v.w': unknown type 'bogus'")]
    assert "user/b/1" in loaded.referenced and not loaded.referenced["user/b/1"].valid


def test_an_extended_format_that_is_invalid(tmp_path):
    declare(tmp_path, "user/b/1", "{broken")
    loaded = load_one(tmp_path, {"#extends": "user/b/1", "x": "int8"})
    assert len(loaded.errors) == 1
    assert loaded.errors[0].startswith(f"{file_of(tmp_path, 'user/a/1')}: field '#extends': "
                                       "dataformat 'user/b/1' is invalid: "
                                       f"{file_of(tmp_path, 'user/b/1')}: invalid JSON")
    assert loaded.extends is not None and not loaded.extends.valid
    assert loaded.resolved == {"x": "int8"}


@pytest.mark.parametrize("text, message", [
    ('{"x": "int8", "x": "int16"}', "field 'x': key given more than once in the JSON object"),
    ('{"m": {"a": "int8", "a": "int8"}}', "field 'm.a': key given more than once"),
    ('{"x": "int8",}', ("invalid JSON: Expecting property name enclosed in double quotes "
     "(line 1, column 14)")),
    ('{"x": "int8"} trailing', "invalid JSON: Extra data"),
    ('[1, 2]', "the declaration must be a JSON object, not list"),
    ('', "invalid JSON: Expecting value (line 1, column 1)"),
])
def test_a_bad_json_file(tmp_path, text, message):
    loaded = load_one(tmp_path, text)
    assert not loaded.valid and len(loaded.errors) == 1
    assert loaded.errors[0] == f"{file_of(tmp_path, 'user/a/1')}: {message}" \
        or loaded.errors[0].startswith(f"{file_of(tmp_path, 'user/a/1')}: {message}")


def test_a_file_that_is_not_utf8(tmp_path):
    path = declare(tmp_path, "user/a/1", "{}")
    path.write_bytes(b'{"x": "\xff"}')
    loaded = DataFormat(tmp_path, "user/a/1")
    assert loaded.errors == [f"{path}: not UTF-8 text"] and loaded.data is None


def test_a_duplicate_key_keeps_the_last_value_for_the_rest_of_the_checks(tmp_path):
    loaded = load_one(tmp_path, '{"x": "int8", "x": "bogus"}')
    assert len(loaded.errors) == 2 and "unknown type 'bogus'" in loaded.errors[1]


def test_a_missing_format(tmp_path):
    loaded = DataFormat(tmp_path, "user/none/1")
    assert not loaded.valid and loaded.data is None
    assert loaded.errors == [(f"{file_of(tmp_path, 'user/none/1')}: dataformat 'user/none/1' "
                             f"not found (searched: {tmp_path}, {SYSTEM_PREFIX})")]


@pytest.mark.parametrize("name", ["user/a", "user/a/b", "a/b/1/2", "../a/1", "", "user//1"])
def test_an_invalid_name(tmp_path, name):
    loaded = DataFormat(tmp_path, name)
    assert not loaded.valid and loaded.storage is None and loaded.name == name
    assert loaded.errors == [f"dataformat {name!r}: invalid name (expected 'user/name/version')"]


def test_an_invalid_name_as_a_reference(tmp_path):
    loaded = load_one(tmp_path, {"x": "user/../1"})
    assert "unknown type 'user/../1'" in loaded.errors[0]


# -- cycles ----------------------------------------------------------------------------------


def test_a_format_that_extends_itself(tmp_path):
    loaded = load_one(tmp_path, {"#extends": "user/a/1", "x": "int8"})
    assert loaded.errors == [(f"{file_of(tmp_path, 'user/a/1')}: field '#extends': cycle through "
                             "dataformat references: user/a/1 -> user/a/1")]
    assert loaded.extends is None


def test_a_format_that_references_itself(tmp_path):
    loaded = load_one(tmp_path, {"next": [0, "user/a/1"]})
    assert loaded.errors == [(f"{file_of(tmp_path, 'user/a/1')}: field 'next': cycle through "
                             "dataformat references: user/a/1 -> user/a/1")]


def test_a_reference_cycle_through_two_formats(tmp_path):
    declare(tmp_path, "user/b/1", {"back": "user/a/1"})
    loaded = load_one(tmp_path, {"to": "user/b/1"})
    assert loaded.errors == [
        (f"{file_of(tmp_path, 'user/a/1')}: field 'to': dataformat 'user/b/1' is invalid: "
        f"{file_of(tmp_path, 'user/b/1')}: field 'back': cycle through dataformat references: "
        "user/a/1 -> user/b/1 -> user/a/1")]
    alone = DataFormat(tmp_path, "user/b/1")
    assert not alone.valid and "user/b/1 -> user/a/1 -> user/b/1" in alone.errors[0]


def test_an_extension_cycle_through_three_formats(tmp_path):
    declare(tmp_path, "user/b/1", {"#extends": "user/c/1"})
    declare(tmp_path, "user/c/1", {"#extends": "user/a/1"})
    loaded = load_one(tmp_path, {"#extends": "user/b/1"})
    assert not loaded.valid
    assert "user/a/1 -> user/b/1 -> user/c/1 -> user/a/1" in loaded.errors[0]
    assert loaded.errors[0].startswith(f"{file_of(tmp_path, 'user/a/1')}: field '#extends': ")


def test_a_cycle_through_an_inline_object(tmp_path):
    declare(tmp_path, "user/b/1", {"inner": {"deep": [0, "user/a/1"]}})
    loaded = load_one(tmp_path, {"to": "user/b/1"})
    assert f"{file_of(tmp_path, 'user/b/1')}: field 'inner.deep': cycle" in loaded.errors[0]


def test_a_diamond_is_not_a_cycle(tmp_path):
    declare(tmp_path, "user/d/1", {"v": "int8"})
    declare(tmp_path, "user/b/1", {"d": "user/d/1"})
    declare(tmp_path, "user/c/1", {"d": "user/d/1"})
    loaded = load_one(tmp_path, {"b": "user/b/1", "c": "user/c/1", "d": [2, "user/d/1"]})
    assert loaded.valid, loaded.errors
    b, c = loaded.referenced["user/b/1"], loaded.referenced["user/c/1"]
    assert b.referenced["user/d/1"] is c.referenced["user/d/1"] is loaded.referenced["user/d/1"]


# -- the cache ----------------------------------------------------------------------------------


def test_the_cache_is_filled_with_every_named_format(prefix):
    cache: dict[str, DataFormat] = {}
    sample = DataFormat(prefix, "user/sample/1", dataformat_cache=cache)
    assert sorted(cache) == ["system/float32/1", "user/base/1", "user/labelled/1",
                             "user/point/1", "user/sample/1"]
    assert cache["user/sample/1"] is sample
    assert cache["user/point/1"] is sample.referenced["user/point/1"]


def test_the_cache_is_used(prefix, tmp_path):
    cache: dict[str, DataFormat] = {}
    first = DataFormat(prefix, "user/point/1", dataformat_cache=cache)
    declare(tmp_path / "elsewhere", "user/user_of_point/1", {"p": "user/point/1"})
    # user/point/1 is not in that prefix at all: the cached one is used.
    second = DataFormat(tmp_path / "elsewhere", "user/user_of_point/1", dataformat_cache=cache)
    assert second.valid and second.referenced["user/point/1"] is first
    without = DataFormat(tmp_path / "elsewhere", "user/user_of_point/1")
    assert not without.valid and "not found" in without.errors[0]


def test_a_cached_invalid_format_is_reported(prefix, tmp_path):
    cache: dict[str, DataFormat] = {}
    broken = DataFormat(tmp_path, "user/broken/1", dataformat_cache=cache)
    assert not broken.valid and cache["user/broken/1"] is broken
    declare(tmp_path, "user/broken/1", {"v": "int8"})
    # The cache is not refreshed behind the caller's back: still missing.
    loaded = load_one(tmp_path, {"b": "user/broken/1"})
    assert loaded.valid  # without the cache the new file is read
    assert not DataFormat(tmp_path, {"b": "user/broken/1"}, dataformat_cache=cache).valid


# -- hashing -----------------------------------------------------------------------------------


def test_the_hash_is_the_storage_hash(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    assert sample.hash() == sample.storage.hash() == Storage(prefix, "user/sample/1").hash()
    assert len(sample.hash()) == 64


def test_the_hash_ignores_descriptions_documentation_and_key_order(tmp_path):
    first = load_one(tmp_path, {"#description": "one", "x": "int8", "m": {"#description": "a",
                                                                          "y": "int8"}}).hash()
    declare(tmp_path, "user/a/1", {"m": {"y": "int8", "#description": "b"}, "x": "int8",
                                   "#description": "two"}, doc="New documentation")
    assert DataFormat(tmp_path, "user/a/1").hash() == first
    assert DataFormat(tmp_path, {"x": "int8", "m": {"y": "int8"}}).hash() == first
    assert load_one(tmp_path, {"x": "int16", "m": {"y": "int8"}}).hash() != first


def test_the_hash_covers_a_reference_by_name_only(tmp_path):
    declare(tmp_path, "user/b/1", {"v": "int8"})
    before = load_one(tmp_path, {"b": "user/b/1"}).hash()
    declare(tmp_path, "user/b/1", {"v": "int16"})
    assert DataFormat(tmp_path, "user/a/1").hash() == before


def test_an_invalid_format_still_hashes_but_an_unread_one_does_not(tmp_path):
    assert len(load_one(tmp_path, {"x": "bogus"}).hash()) == 64
    with pytest.raises(RuntimeError, match="did not load"):
        DataFormat(tmp_path, "user/none/1").hash()


# -- isparent ------------------------------------------------------------------------------------


def test_isparent_follows_extends_chains(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    base = DataFormat(prefix, "user/base/1")
    labelled = DataFormat(prefix, "user/labelled/1")
    point = DataFormat(prefix, "user/point/1")
    assert base.isparent(sample) and labelled.isparent(sample) and labelled.isparent(base)
    assert not sample.isparent(base) and not sample.isparent(sample)
    assert not point.isparent(sample) and not base.isparent(labelled)


# -- Storage -------------------------------------------------------------------------------------


def test_storage_paths(tmp_path):
    storage = Storage(tmp_path, "user/point/1")
    assert storage.asset_type == "dataformat" and storage.asset_folder == "dataformats"
    assert (storage.fullname, storage.username, storage.name, storage.version) == \
        ("user/point/1", "user", "point", "1")
    assert storage.json.path == file_of(tmp_path, "user/point/1")
    assert storage.doc.path == str(tmp_path / "dataformats" / "user" / "point" / "1.rst")
    assert not storage.exists()
    with pytest.raises(ValueError, match="invalid dataformat name 'user/point'"):
        Storage(tmp_path, "user/point")


def test_storage_does_not_search_the_system_prefix(tmp_path):
    assert not Storage(tmp_path, "system/float64/1").exists()


def test_storage_remove_keeps_the_dataformats_folder(tmp_path):
    storage = Storage(tmp_path, "user/point/1")
    storage.save({"x": "int8"}, "doc")
    assert storage.exists()
    storage.remove()
    assert not (tmp_path / "dataformats" / "user").exists()
    assert (tmp_path / "dataformats").is_dir()


# -- writing and exporting ---------------------------------------------------------------------


def test_json_dumps_keeps_the_declared_order(prefix):
    point = DataFormat(prefix, "user/point/1")
    assert point.json_dumps() == json.dumps(point.data, indent=4)
    assert point.json_dumps(indent=None) == \
        '{"#description": "A point", "x": "float64", "y": "float64"}'


def test_write_round_trip(prefix, tmp_path):
    point = DataFormat(prefix, "user/point/1")
    point.description = "Edited"
    point.documentation = "Edited docs"
    point.write()
    again = DataFormat(prefix, "user/point/1")
    assert again.data == point.data and again.documentation == "Edited docs"
    assert again.hash() == point.hash()
    elsewhere = Storage(tmp_path / "copy", "user/point/1")
    point.write(elsewhere)
    assert DataFormat(tmp_path / "copy", "user/point/1").data == point.data
    assert not list((tmp_path / "copy" / "dataformats" / "user" / "point").glob(".*"))


def test_write_of_an_anonymous_format_needs_a_storage(prefix, tmp_path):
    anonymous = DataFormat(prefix, {"v": "int8"})
    with pytest.raises(RuntimeError, match="pass a Storage"):
        anonymous.write()
    anonymous.write(Storage(tmp_path / "out", "user/named/1"))
    assert DataFormat(tmp_path / "out", "user/named/1").resolved == {"v": "int8"}


def test_write_refuses_an_unread_format_and_the_system_prefix(tmp_path):
    with pytest.raises(RuntimeError, match="no declaration"):
        DataFormat(tmp_path, "user/none/1").write()
    with pytest.raises(RuntimeError, match="no declaration"):
        DataFormat(tmp_path, "user/none/1").json_dumps()
    system = DataFormat(tmp_path, "system/float64/1")
    with pytest.raises(RuntimeError, match="read-only"):
        system.write()


def test_export_copies_everything_used(prefix, tmp_path):
    target = tmp_path / "exported"
    sample = DataFormat(prefix, "user/sample/1")
    sample.export(target)
    for name in ("user/sample/1", "user/point/1", "user/base/1", "user/labelled/1",
                 "system/float32/1"):
        assert Path(file_of(target, name)).is_file(), name
    assert (target / "dataformats" / "user" / "point" / "1.rst").read_text() == \
        "A point in the plane."
    again = DataFormat(target, "user/sample/1")
    assert again.valid and again.resolved == sample.resolved and again.hash() == sample.hash()
    assert all(f.storage.json.path.startswith(str(target)) for f in again.referenced.values())


def test_export_into_a_prefix_object_goes_to_its_first_folder(prefix, tmp_path):
    DataFormat(prefix, "user/point/1").export(Prefix([tmp_path / "one", tmp_path / "two"]))
    assert Path(file_of(tmp_path / "one", "user/point/1")).is_file()
    assert not (tmp_path / "two").exists()


def test_export_into_its_own_prefix_is_refused(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    with pytest.raises(RuntimeError, match="into its own prefix"):
        sample.export(prefix)
    with pytest.raises(RuntimeError, match="into its own prefix"):
        sample.export(str(prefix / "." / ""))
    with pytest.raises(RuntimeError, match="into its own prefix"):
        sample.export(SYSTEM_PREFIX)


def test_export_refuses_invalid_and_anonymous_formats(tmp_path):
    with pytest.raises(RuntimeError, match="not valid"):
        load_one(tmp_path, {"x": "bogus"}).export(tmp_path / "out")
    with pytest.raises(RuntimeError, match="cannot be exported"):
        DataFormat(tmp_path, {"x": "int8"}).export(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_reserved_field_names_are_the_record_attributes():
    assert {"pack", "unpack", "as_dict", "from_dict", "copy"} <= RESERVED_FIELD_NAMES
    assert all(hasattr(baseformat, name) for name in RESERVED_FIELD_NAMES)
    assert RESERVED_FIELD_NAMES == {name for name in dir(baseformat) if not name.startswith("_")}


# -- record types --------------------------------------------------------------------------------


def test_the_record_type_has_the_resolved_fields_in_order(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    record_type = sample.type
    assert issubclass(record_type, baseformat) and record_type._name == "user/sample/1"
    assert sample.type is record_type  # made once
    assert list(record_type._format) == list(sample.resolved)
    assert record_type._format["x"] == "float64"
    assert list(record_type._format["patch"]) == [8, 8, "uint8"]
    assert list(record_type._format["tags"]) == [0, "string"]
    # A referenced format is its own record type; an inline object gets a derived name.
    assert record_type._format["origin"] is sample.referenced["user/point/1"].type
    assert record_type._format["meta"]._name == "user/sample/1.meta"
    assert list(record_type._format["meta"]._format) == ["source", "frame"]


def test_record_types_of_arrays_of_records(tmp_path):
    declare(tmp_path, "user/item/1", {"v": "int32"})
    loaded = load_one(tmp_path, {"records": [0, "user/item/1"],
                                 "inline": [2, {"a": "bool", "b": [0, "uint16"]}]})
    record_type = loaded.type
    assert record_type._format["records"][-1] is loaded.referenced["user/item/1"].type
    inline = record_type._format["inline"]
    assert inline[0] == 2 and inline[-1]._name == "user/a/1.inline"
    record = record_type.from_dict({
        "records": [{"v": 1}, {"v": 2}],
        "inline": [{"a": True, "b": [1, 2, 3]}, {"a": False, "b": []}],
    })
    assert record_type().unpack(record.pack()) == record


def test_records_round_trip_through_bytes(prefix):
    sample = DataFormat(prefix, "user/sample/1")
    values = {
        "label": "a label", "id": 7, "x": 0.5, "tags": ["p", "q"],
        "patch": np.arange(64, dtype=np.uint8).reshape(8, 8),
        "origin": {"x": 1.0, "y": -1.0}, "meta": {"source": "cam", "frame": 3},
        "score": {"value": np.float32(0.25)},
    }
    record = sample.type().from_dict(values, casting="safe", add_defaults=False)
    again = sample.type().unpack(record.pack())
    assert again == record and again.label == "a label" and again.meta.frame == 3
    assert again.patch.shape == (8, 8) and list(again.tags) == ["p", "q"]


def test_an_anonymous_format_has_a_record_type(tmp_path):
    results = DataFormat(tmp_path, {"eer": "float32", "hist": [0, "system/int64/1"]})
    assert results.type._name == UNNAMED
    record = results.type.from_dict({"eer": np.float32(0.1), "hist": [{"value": 4}]})
    assert results.type.unpack(record.pack()) == record


def test_system_format_record_types(tmp_path):
    image = DataFormat(tmp_path, "system/array_2d_uint8/1").type
    record = image.from_dict({"value": np.zeros((2, 3), dtype=np.uint8)})
    assert image.unpack(record.pack()).value.shape == (2, 3)
    text = DataFormat(tmp_path, "system/text/1").type
    assert text.unpack(text(text="héllo").pack()).text == "héllo"


def test_an_invalid_format_has_no_record_type(tmp_path):
    loaded = load_one(tmp_path, {"x": "bogus"})
    with pytest.raises(RuntimeError, match="'user/a/1' is not valid: .*unknown type 'bogus'"):
        _ = loaded.type
    with pytest.raises(RuntimeError, match="not valid"):
        loaded.validate({"x": 1})


# -- validate ------------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> DataFormat:
    return load_one(tmp_path, {"n": "int32", "v": [0, "float64"], "name": "string"})


def test_validate_accepts_a_complete_dict(pair):
    assert pair.validate({"n": 3, "v": [1.5, 2.5], "name": "x"}) is None


@pytest.mark.parametrize("data, error, message", [
    ({"n": 3, "v": [1.5]}, MissingFieldError, "field 'name'"),
    ({"n": 3.5, "v": [], "name": "x"}, FieldValueError, "field 'n'.*casting='safe'"),
    ({"n": np.int64(3), "v": [], "name": "x"}, FieldValueError, "field 'n'"),
    ({"n": 3, "v": [], "name": "x", "extra": 1}, UnknownFieldError, "extra"),
])
def test_validate_refuses_an_incomplete_or_unsafe_dict(pair, data, error, message):
    with pytest.raises(error, match=message):
        pair.validate(data)


def test_validate_packed_bytes_and_files(pair):
    packed = pair.type.from_dict({"n": 3, "v": [1.5, 2.5], "name": "x"}).pack()
    pair.validate(packed)
    pair.validate(bytearray(packed))
    pair.validate(memoryview(packed))
    pair.validate(io.BytesIO(packed))
    with pytest.raises(DecodeError, match="left over"):
        pair.validate(packed + b"\x00")
    with pytest.raises(TruncatedError):
        pair.validate(io.BytesIO(packed[:-1]))


def test_validate_refuses_other_kinds_of_data(pair):
    with pytest.raises(TypeError, match="not str"):
        pair.validate("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="binary file object"):
        pair.validate(io.StringIO("text"))  # type: ignore[arg-type]


# -- the example -----------------------------------------------------------------------------------


def test_the_example_runs_from_the_repository_root():
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "examples/formats_demo.py"], cwd=root,
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo/spot/1 valid: True; fields: x, y, label, patch, scores, weight" in done.stdout
    assert "field 'size': unknown type 'flaot32'" in done.stdout
    assert "unpacked label: 'left eye'" in done.stdout
