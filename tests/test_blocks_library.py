"""papyflow.blocks.library: loading, checking, using, hashing, writing and exporting libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from papyflow import hash as phash
from papyflow.blocks.errors import BlockError
from papyflow.blocks.library import Library, Storage
from papyflow.utils import Prefix
from tests.blocks_helpers import code_of, declare, json_of


def lib(prefix: Path, name: str, declaration: dict | str, code: str | None = "",
        doc: str | None = None) -> Path:
    return declare(prefix, "libraries", name, declaration, code, doc)


def file_of(prefix: Path, name: str) -> str:
    return json_of(prefix, "libraries", name)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """base <- middle <- top, and a diamond: top also uses side, which uses base."""
    root = tmp_path / "prefix"
    lib(root, "user/base/1", {"language": "python", "description": "Arithmetic"},
        "def twice(x):\n    return 2 * x\n", doc="The base library.")
    lib(root, "user/middle/1", {"language": "python", "uses": {"b": "user/base/1"}},
        "def quad(x):\n    return b.twice(b.twice(x))\n")
    lib(root, "user/side/1", {"uses": {"base": "user/base/1"}},
        "def six(x):\n    return 3 * base.twice(x)\n")
    lib(root, "user/top/1", {"language": "python", "schema_version": 2,
                             "uses": {"m": "user/middle/1", "s": "user/side/1"}},
        "def both(x):\n    return m.quad(x) + s.six(x)\n")
    return root


# -- loading valid libraries ---------------------------------------------------------------------


def test_a_library_without_uses(prefix):
    base = Library(prefix, "user/base/1")
    assert base.valid and base.errors == []
    assert base.name == "user/base/1" and base.language == "python"
    assert base.schema_version == 1 and base.description == "Arithmetic"
    assert base.documentation == "The base library."
    assert base.data == {"language": "python", "description": "Arithmetic"}
    assert base.code == "def twice(x):\n    return 2 * x\n"
    assert base.uses == {} and base.libraries == {} and base.uses_dict() == {}
    assert base.load().twice(21) == 42
    assert repr(base) == "<Library 'user/base/1', valid>"


def test_libraries_use_libraries(prefix):
    top = Library(prefix, "user/top/1")
    assert top.valid, top.errors
    assert top.schema_version == 2 and top.description is None and top.documentation is None
    assert top.uses == {"m": "user/middle/1", "s": "user/side/1"}
    assert sorted(top.libraries) == ["user/middle/1", "user/side/1"]
    assert top.libraries["user/middle/1"].libraries["user/base/1"] is \
        top.libraries["user/side/1"].libraries["user/base/1"]
    module = top.load()
    assert module.both(1) == 4 + 6
    assert module.m.b.twice(5) == 10 and module.s.base.twice(5) == 10
    assert top.load() is not module  # every load is a new module


def test_uses_dict_describes_every_level(prefix):
    top = Library(prefix, "user/top/1")
    base_entry = {"name": "user/base/1", "path": code_of(prefix, "libraries", "user/base/1"),
                  "uses": {}}
    assert top.uses_dict() == {
        "m": {"name": "user/middle/1", "path": code_of(prefix, "libraries", "user/middle/1"),
              "uses": {"b": base_entry}},
        "s": {"name": "user/side/1", "path": code_of(prefix, "libraries", "user/side/1"),
              "uses": {"base": base_entry}},
    }


def test_a_library_in_the_hashed_layout_and_a_second_folder(prefix, tmp_path):
    hashed = tmp_path / "hashed" / "libraries" / phash.toUserPath("bob") / "tools" / "1.json"
    hashed.parent.mkdir(parents=True)
    hashed.write_text(json.dumps({"uses": {"base": "user/base/1"}}))
    hashed.with_suffix(".py").write_text("def f():\n    return base.twice(2)\n")
    tools = Library([tmp_path / "hashed", prefix], "bob/tools/1")
    assert tools.valid, tools.errors
    assert tools.storage.json.path == str(hashed)
    assert tools.load().f() == 4


def test_the_cache_is_filled_and_used(prefix, tmp_path):
    cache: dict[str, Library] = {}
    top = Library(prefix, "user/top/1", library_cache=cache)
    assert sorted(cache) == ["user/base/1", "user/middle/1", "user/side/1", "user/top/1"]
    assert cache["user/top/1"] is top
    lib(tmp_path / "elsewhere", "user/user_of_top/1", {"uses": {"t": "user/top/1"}})
    other = Library(tmp_path / "elsewhere", "user/user_of_top/1", library_cache=cache)
    assert other.valid and other.libraries["user/top/1"] is top
    assert not Library(tmp_path / "elsewhere", "user/user_of_top/1").valid


# -- bad libraries -------------------------------------------------------------------------------


BAD = [
    ({"uses": {"base": "user/missing/1"}}, "uses.base",
     "library 'user/missing/1' not found (searched: "),
    ({"uses": {"base": "user/missing"}}, "uses.base",
     "\"user/missing\" is not a library name 'user/name/version'"),
    ({"uses": {"base": 3}}, "uses.base", "3 is not a library name"),
    ({"uses": {"not valid": "user/base/1"}}, "uses.not valid", "invalid alias"),
    ({"uses": {"__x": "user/base/1"}}, "uses.__x", "invalid alias"),
    ({"uses": ["user/base/1"]}, "uses", "must be an object mapping aliases to library names"),
    ({"uses": {"me": "user/a/1"}}, "uses.me",
     "cycle through library uses: user/a/1 -> user/a/1"),
    ({"language": "fortran"}, "language",
     "unknown language \"fortran\" (known: cxx, matlab, python, r)"),
    ({"description": 3}, "description", "must be a string"),
    ({"schema_version": "2"}, "schema_version", "must be an integer >= 1, not \"2\""),
    ({"schema_version": 0}, "schema_version", "must be an integer >= 1, not 0"),
    ({"imports": {}}, "imports",
     "unknown key (known: description, language, schema_version, uses)"),
]


@pytest.mark.parametrize("declaration, field, message", BAD,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD)])
def test_a_bad_field_makes_the_library_invalid_and_says_where(prefix, declaration, field,
                                                              message):
    lib(prefix, "user/a/1", declaration)
    loaded = Library(prefix, "user/a/1")
    assert not loaded.valid
    assert len(loaded.errors) == 1, loaded.errors
    assert loaded.errors[0].startswith(f"{file_of(prefix, 'user/a/1')}: field '{field}': ")
    assert message in loaded.errors[0]


def test_a_cycle_through_two_libraries(tmp_path):
    lib(tmp_path, "user/a/1", {"uses": {"other": "user/b/1"}})
    lib(tmp_path, "user/b/1", {"uses": {"back": "user/a/1"}})
    a = Library(tmp_path, "user/a/1")
    assert a.errors == [
        (f"{file_of(tmp_path, 'user/a/1')}: field 'uses.other': library 'user/b/1' is invalid: "
        f"{file_of(tmp_path, 'user/b/1')}: field 'uses.back': cycle through library uses: "
        "user/a/1 -> user/b/1 -> user/a/1")]
    with pytest.raises(RuntimeError, match="is not valid"):
        a.load()


def test_a_cycle_through_three_libraries_seen_from_each(tmp_path):
    lib(tmp_path, "user/a/1", {"uses": {"x": "user/b/1"}})
    lib(tmp_path, "user/b/1", {"uses": {"x": "user/c/1"}})
    lib(tmp_path, "user/c/1", {"uses": {"x": "user/a/1"}})
    for name in ("user/a/1", "user/b/1", "user/c/1"):
        errors = Library(tmp_path, name).errors
        assert len(errors) == 1 and "cycle through library uses" in errors[0], errors


def test_an_invalid_library_used_deeper_is_reported_with_its_path(prefix):
    lib(prefix, "user/broken/1", {"uses": {"gone": "user/gone/1"}})
    lib(prefix, "user/a/1", {"uses": {"x": "user/broken/1", "b": "user/base/1"}})
    loaded = Library(prefix, "user/a/1")
    assert len(loaded.errors) == 1
    assert loaded.errors[0].startswith(
        f"{file_of(prefix, 'user/a/1')}: field 'uses.x': library 'user/broken/1' is invalid: "
        f"{file_of(prefix, 'user/broken/1')}: field 'uses.gone': library 'user/gone/1' "
        "not found")


@pytest.mark.parametrize("text, message", [
    ("{broken", ("invalid JSON: Expecting property name enclosed in double quotes (line 1, "
                "column 2)")),
    ("[1, 2]", "the declaration must be a JSON object, not list"),
])
def test_a_declaration_that_does_not_parse(tmp_path, text, message):
    lib(tmp_path, "user/a/1", text)
    loaded = Library(tmp_path, "user/a/1")
    assert loaded.errors == [f"{file_of(tmp_path, 'user/a/1')}: {message}"]
    assert loaded.data is None and loaded.code is None
    with pytest.raises(RuntimeError, match="did not load"):
        loaded.hash()


def test_a_key_given_twice(tmp_path):
    lib(tmp_path, "user/a/1", '{"uses": {"x": "user/b/1", "x": "user/c/1"}, "language": '
                              '"python", "language": "python"}')
    lib(tmp_path, "user/c/1", {})
    loaded = Library(tmp_path, "user/a/1")
    assert loaded.errors == [
        (f"{file_of(tmp_path, 'user/a/1')}: field 'language': key given more than once in the "
         "JSON object"),
        (f"{file_of(tmp_path, 'user/a/1')}: field 'uses.x': key given more than once in the "
         "JSON object")]
    assert loaded.uses == {"x": "user/c/1"}  # the last value counts for the rest


def test_a_missing_library_and_an_invalid_name(tmp_path):
    missing = Library(tmp_path, "user/none/1")
    assert missing.errors == [(f"{file_of(tmp_path, 'user/none/1')}: library 'user/none/1' not "
                              f"found (searched: {tmp_path})")]
    assert missing.data is None
    bad = Library(tmp_path, "user/none")
    assert bad.errors == ["library 'user/none': invalid name (expected 'user/name/version')"]
    assert bad.storage is None


def test_missing_code_and_code_that_does_not_compile(tmp_path):
    lib(tmp_path, "user/a/1", {}, code=None)
    assert Library(tmp_path, "user/a/1").errors == [
        (f"{file_of(tmp_path, 'user/a/1')}: the code file is missing: "
        f"{code_of(tmp_path, 'libraries', 'user/a/1')}")]
    lib(tmp_path, "user/b/1", {}, code="def f(:\n    pass\n")
    errors = Library(tmp_path, "user/b/1").errors
    assert len(errors) == 1
    assert errors[0].startswith(f"{code_of(tmp_path, 'libraries', 'user/b/1')}: line 1: "
                                "SyntaxError: ")
    lib(tmp_path, "user/c/1", {}, code=None)
    Path(code_of(tmp_path, "libraries", "user/c/1")).write_bytes(b"x = '\xff'\n")
    assert Library(tmp_path, "user/c/1").errors == [
        f"{code_of(tmp_path, 'libraries', 'user/c/1')}: not UTF-8 text"]


def test_code_in_another_language_is_read_but_not_loaded(tmp_path):
    path = lib(tmp_path, "user/m/1", {"language": "matlab"}, code=None)
    path.with_suffix(".m").write_text("x = 1;")
    matlab = Library(tmp_path, "user/m/1")
    assert matlab.valid and matlab.language == "matlab" and matlab.code == "x = 1;"
    with pytest.raises(RuntimeError, match="written in matlab: only Python code can be loaded"):
        matlab.load()


def test_code_that_raises_when_loaded(prefix):
    lib(prefix, "user/a/1", {"uses": {"b": "user/base/1"}}, "VALUE = b.twice(None)\n")
    loaded = Library(prefix, "user/a/1")
    assert loaded.valid  # compiling is fine: running fails
    with pytest.raises(BlockError, match=r"user_a_1 \(.*1\.py\): loading the code raised "
                                         "TypeError") as caught:
        loaded.load()
    assert "in twice" in caught.value.traceback and "in <module>" in caught.value.traceback


# -- storage and hashing -------------------------------------------------------------------------


def test_storage_paths(tmp_path):
    storage = Storage(tmp_path, "user/tools/1")
    assert storage.asset_type == "library" and storage.asset_folder == "libraries"
    assert (storage.fullname, storage.username, storage.name, storage.version) == \
        ("user/tools/1", "user", "tools", "1")
    assert storage.json.path == file_of(tmp_path, "user/tools/1")
    assert storage.code.path == code_of(tmp_path, "libraries", "user/tools/1")
    assert storage.doc.path.endswith("1.rst") and storage.prefix == Prefix(tmp_path)
    assert Storage(tmp_path, "user/tools/1", language="cxx").code.path.endswith("1.so")
    with pytest.raises(ValueError, match="invalid library name 'tools/1'"):
        Storage(tmp_path, "tools/1")


def test_storage_remove_keeps_the_libraries_folder(tmp_path):
    storage = Storage(tmp_path, "user/tools/1")
    storage.save({"language": "python"}, "x = 1\n", "doc")
    assert storage.exists()
    storage.remove()
    assert not (tmp_path / "libraries" / "user").exists()
    assert (tmp_path / "libraries").is_dir()


def test_the_hash_is_the_storage_hash(prefix):
    top = Library(prefix, "user/top/1")
    assert top.hash() == top.storage.hash() == Storage(prefix, "user/top/1").hash()
    assert len(top.hash()) == 64


def test_the_hash_covers_code_and_declaration_but_not_descriptions(tmp_path):
    lib(tmp_path, "user/a/1", {"description": "one", "uses": {}}, "x = 1\n")
    first = Library(tmp_path, "user/a/1").hash()
    lib(tmp_path, "user/a/1", {"uses": {}, "description": "two"}, "x = 1\n", doc="Docs")
    assert Library(tmp_path, "user/a/1").hash() == first
    lib(tmp_path, "user/a/1", {"uses": {}}, "x = 2\n")
    assert Library(tmp_path, "user/a/1").hash() != first
    lib(tmp_path, "user/a/1", {"uses": {}, "language": "python"}, "x = 1\n")
    assert Library(tmp_path, "user/a/1").hash() != first


def test_the_hash_of_code_with_windows_newlines_is_that_of_the_file(tmp_path):
    lib(tmp_path, "user/a/1", {}, code=None)
    Path(code_of(tmp_path, "libraries", "user/a/1")).write_bytes(b"x = 1\r\ny = 2\r\n")
    loaded = Library(tmp_path, "user/a/1")
    assert loaded.valid and loaded.code == "x = 1\r\ny = 2\r\n"
    assert loaded.hash() == loaded.storage.hash()


# -- writing and exporting -----------------------------------------------------------------------


def test_json_dumps_keeps_the_declared_order(prefix):
    top = Library(prefix, "user/top/1")
    assert top.json_dumps() == json.dumps(top.data, indent=4)
    assert top.json_dumps(indent=None).startswith('{"language": "python", "schema_version": 2')


def test_write_round_trip(prefix, tmp_path):
    base = Library(prefix, "user/base/1")
    base.description = "Edited"
    base.documentation = "Edited docs"
    base.code = "def twice(x):\n    return x + x\n"
    base.write()
    again = Library(prefix, "user/base/1")
    assert again.data == base.data and again.documentation == "Edited docs"
    assert again.code == base.code and again.hash() == base.hash()
    base.write(Storage(tmp_path / "copy", "user/base/1"))
    assert Library(tmp_path / "copy", "user/base/1").load().twice(4) == 8
    assert not list((tmp_path / "copy" / "libraries" / "user" / "base").glob(".*"))
    base.description = None
    assert "description" not in base.data


def test_write_refuses_a_library_that_did_not_load(tmp_path):
    with pytest.raises(RuntimeError, match="no declaration and code to write"):
        Library(tmp_path, "user/none/1").write()
    with pytest.raises(RuntimeError, match="no declaration to dump"):
        Library(tmp_path, "user/none/1").json_dumps()
    with pytest.raises(RuntimeError, match="no declaration to describe"):
        Library(tmp_path, "user/none/1").description = "x"


def test_export_copies_every_library_used(prefix, tmp_path):
    target = tmp_path / "exported"
    top = Library(prefix, "user/top/1")
    top.export(target)
    for name in ("user/top/1", "user/middle/1", "user/side/1", "user/base/1"):
        assert Path(file_of(target, name)).is_file(), name
        assert Path(code_of(target, "libraries", name)).is_file(), name
    assert (target / "libraries" / "user" / "base" / "1.rst").read_text() == "The base library."
    again = Library(target, "user/top/1")
    assert again.valid and again.hash() == top.hash() and again.load().both(1) == 10
    assert all(library.storage.json.path.startswith(str(target))
               for library in again.libraries.values())


def test_export_refuses_its_own_prefix_and_invalid_libraries(prefix, tmp_path):
    top = Library(prefix, "user/top/1")
    with pytest.raises(RuntimeError, match="into its own prefix"):
        top.export(prefix)
    with pytest.raises(RuntimeError, match="into its own prefix"):
        top.export(Prefix([str(prefix / "." / ""), tmp_path / "other"]))
    lib(prefix, "user/a/1", {"uses": {"x": "user/gone/1"}})
    with pytest.raises(RuntimeError, match="not valid"):
        Library(prefix, "user/a/1").export(tmp_path / "out")
    assert not (tmp_path / "out").exists()
