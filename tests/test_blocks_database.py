"""papyflow.blocks.database: loading, checking, hashing, writing and exporting databases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from papyflow import hash as phash
from papyflow.blocks.database import Database, Runner, Storage, ViewDefinition
from papyflow.formats.dataformat import DataFormat
from papyflow.utils import Prefix
from tests.database_helpers import (
    CODE,
    declaration,
    make_prefix,
    write_database,
    write_formats,
)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    return make_prefix(tmp_path / "prefix", doc="The test database.")


def json_of(prefix: Path, name: str = "db/1") -> str:
    return str(prefix / "databases" / f"{name}.json")


def loaded(prefix: Path, body=None, code: str | None = CODE, name: str = "db/1") -> Database:
    """The database ``name`` after writing ``body`` and ``code`` (a bad one is expected)."""
    write_database(prefix, name, body=body, code=code)
    return Database(prefix, name)


# -- storage ---------------------------------------------------------------------------------


def test_storage_places_a_database_under_databases(tmp_path):
    storage = Storage(tmp_path, "db/1")
    assert storage.json.path == str(tmp_path / "databases" / "db" / "1.json")
    assert storage.code.path == str(tmp_path / "databases" / "db" / "1.py")
    assert storage.doc.path == str(tmp_path / "databases" / "db" / "1.rst")
    assert (storage.fullname, storage.name, storage.version) == ("db/1", "db", "1")
    assert storage.prefix == Prefix(tmp_path)
    assert (storage.asset_type, storage.asset_folder) == ("database", "databases")
    assert not storage.exists()
    for bad in ("db", "user/db/1", "db/one", "", "db/1/"):
        with pytest.raises(ValueError, match="expected 'name/version'"):
            Storage(tmp_path, bad)


def test_storage_finds_a_database_in_a_later_folder_and_removes_it(prefix, tmp_path):
    storage = Storage([tmp_path / "empty", prefix], "db/1")
    assert storage.exists() and storage.json.path == json_of(prefix)
    storage.remove()
    assert not storage.exists()
    assert (prefix / "databases").is_dir()  # remove() keeps <prefix>/databases


# -- a valid database ---------------------------------------------------------------------------


def test_a_database_loads(prefix):
    db = Database(prefix, "db/1")
    assert db.valid and db.errors == []
    assert db.name == "db/1" and repr(db) == "<Database 'db/1', valid>"
    assert db.description == "Synthetic clients"
    assert db.documentation == "The test database."
    assert db.schema_version == 1 and db.language == "python"
    assert db.environment is None and db.root_folder is None
    assert db.data == declaration() and db.code == CODE
    assert db.storage is not None and db.storage.json.path == json_of(prefix)
    assert sorted(db.dataformats) == ["test/client/1", "test/sample/1"]
    assert all(isinstance(df, DataFormat) and df.valid for df in db.dataformats.values())


def test_protocols_and_sets(prefix):
    db = Database(prefix, "db/1")
    assert db.protocol_names == ["main", "mapped"]
    assert list(db.protocols) == ["main", "mapped"]
    assert db.protocols["main"] is db.protocol("main")
    assert db.protocol("main")["template"] == "train_eval"
    assert db.set_names("main") == ["train", "eval"]
    assert list(db.sets("mapped")) == ["all"]
    assert db.set("main", "eval")["parameters"] == {"clients": 2, "samples": 3}
    with pytest.raises(KeyError, match=r"no protocol 'nope' \(protocols: main, mapped\)"):
        db.protocol("nope")
    with pytest.raises(KeyError, match="no protocol 'nope'"):
        db.sets("nope")
    with pytest.raises(KeyError, match=r"protocol 'main' has no set 'test' \(sets: train, eval\)"):
        db.set("main", "test")


def test_view_definition(prefix):
    definition = Database(prefix, "db/1").view_definition("main", "train")
    assert definition == ViewDefinition(
        database="db/1", protocol="main", set="train", view="Clients",
        parameters={"clients": 3, "samples": 2},
        outputs={"client": "test/client/1", "sample": "test/sample/1"}, template="train")
    assert definition.label == "db/1 main/train"
    assert Database(prefix, "db/1").view_definition("mapped", "all").template is None
    with pytest.raises(KeyError, match="no set 'nope'"):
        Database(prefix, "db/1").view_definition("main", "nope")


def test_optional_keys(prefix):
    body = declaration()
    body.update(root_folder="/data/raw", schema_version=2,
                environment={"name": "py", "version": "3.11"})
    db = loaded(prefix, body)
    assert db.valid, db.errors
    assert db.root_folder == "/data/raw" and db.schema_version == 2
    assert db.environment == {"name": "py", "version": "3.11"}
    body["protocols"][0]["description"] = "protocol text"
    body["protocols"][0]["sets"][0]["description"] = "set text"
    del body["protocols"][0]["sets"][0]["parameters"]
    db = loaded(prefix, body)
    assert db.valid, db.errors
    assert db.view_definition("main", "train").parameters == {}


def test_the_view_class_may_be_bound_in_any_way(prefix):
    code = CODE + "\nfrom collections import OrderedDict as Imported\nAssigned = Clients\n"
    body = declaration()
    body["protocols"][0]["sets"][0]["view"] = "Imported"
    body["protocols"][0]["sets"][1]["view"] = "Assigned"
    assert loaded(prefix, body, code).valid
    body["protocols"][0]["sets"][0]["view"] = "Hidden"
    # a star import may bind anything: the name cannot be checked without running the code
    assert loaded(prefix, body, code + "from os.path import *\n").valid
    assert not loaded(prefix, body, code).valid


def test_a_dataformat_cache_is_used_and_filled(prefix):
    cache: dict[str, DataFormat] = {}
    first = Database(prefix, "db/1", dataformat_cache=cache)
    assert {"test/client/1", "test/sample/1", "test/point/1"} <= set(cache)
    second = Database(prefix, "db/1", dataformat_cache=cache)
    assert second.dataformats["test/sample/1"] is first.dataformats["test/sample/1"]


# -- invalid databases: errors name the file and the field -----------------------------------------


def test_a_database_that_is_not_there(tmp_path):
    db = Database(tmp_path, "db/9")
    assert not db.valid and db.data is None and db.code is None
    assert db.errors == [(f"{json_of(tmp_path, 'db/9')}: database 'db/9' not found "
                         f"(searched: {tmp_path})")]
    assert repr(db) == "<Database 'db/9', 1 errors>"


def test_an_invalid_name(tmp_path):
    db = Database(tmp_path, "user/db/1")
    assert not db.valid and db.storage is None
    assert db.errors == ["database 'user/db/1': invalid name (expected 'name/version')"]


def test_files_that_do_not_read(prefix):
    path = json_of(prefix)
    db = loaded(prefix, "{\"protocols\": [")
    assert db.errors == [f"{path}: invalid JSON: Expecting value (line 1, column 16)"]
    assert loaded(prefix, "[1, 2]").errors == [
        f"{path}: the declaration must be a JSON object, not list"]
    Path(path).write_bytes(b'{"description": "\xff"}')
    assert Database(prefix, "db/1").errors == [f"{path}: not UTF-8 text"]


def test_code_that_is_missing_or_broken(prefix):
    code = str(prefix / "databases" / "db" / "1.py")
    os.remove(code)
    db = Database(prefix, "db/1")
    assert db.errors == [f"{json_of(prefix)}: the code file is missing: {code}"]
    assert db.code is None
    db = loaded(prefix, code="class Clients:\n    def index(self\n")
    assert len(db.errors) == 1
    assert db.errors[0].startswith(f"{code}: line 2: SyntaxError: ")


# One mutation of the valid declaration -> the error it gives (after "<file>: ").
BAD_DECLARATIONS = {
    "protocols missing": (lambda d: d.pop("protocols"), "field 'protocols': missing"),
    "protocols not a list": (lambda d: d.update(protocols={}),
                             "field 'protocols': must be a non-empty list of protocols, not {}"),
    "a protocol not an object": (lambda d: d["protocols"].append("p"),
                                 "field 'protocols[2]': a protocol is an object, not \"p\""),
    "a protocol without name": (lambda d: d["protocols"][1].pop("name"),
                                "field 'protocols[1].name': missing"),
    "a bad protocol name": (lambda d: d["protocols"][1].update(name="a b"),
                            "field 'protocols[1].name': invalid protocol name 'a b'"),
    "a protocol name not a string": (lambda d: d["protocols"][1].update(name=3),
                                     "field 'protocols[1].name': must be a string, not 3"),
    "a protocol without sets": (lambda d: d["protocols"][1].pop("sets"),
                                "field 'protocols[1].sets': missing"),
    "empty sets": (lambda d: d["protocols"][1].update(sets=[]),
                   "field 'protocols[1].sets': must be a non-empty list of sets, not []"),
    "a set not an object": (lambda d: d["protocols"][1]["sets"].append(1),
                            "field 'protocols[1].sets[1]': a set is an object, not 1"),
    "a set without name": (lambda d: d["protocols"][0]["sets"][1].pop("name"),
                           "field 'protocols[0].sets[1].name': missing"),
    "a set without view": (lambda d: d["protocols"][0]["sets"][1].pop("view"),
                           "field 'protocols[0].sets[1].view': missing"),
    "a bad view name": (lambda d: d["protocols"][0]["sets"][1].update(view="my-view"),
                        "field 'protocols[0].sets[1].view': invalid view class name 'my-view'"),
    "a template not a string": (lambda d: d["protocols"][0]["sets"][0].update(template=[1]),
                                ("field 'protocols[0].sets[0].template': must be a string, "
                                "not [1]")),
    "parameters not an object": (lambda d: d["protocols"][0]["sets"][0].update(parameters=[]),
                                 ("field 'protocols[0].sets[0].parameters': must be an object, "
                                 "not []")),
    "a set without outputs": (lambda d: d["protocols"][0]["sets"][0].pop("outputs"),
                              "field 'protocols[0].sets[0].outputs': missing"),
    "empty outputs": (lambda d: d["protocols"][0]["sets"][0].update(outputs={}),
                      ("field 'protocols[0].sets[0].outputs': must be a non-empty object "
                      "{output name: dataformat name}, not {}")),
    "a bad output name": (lambda d: d["protocols"][0]["sets"][0]["outputs"].update(
                              {"2nd": "test/client/1"}),
                          ("field 'protocols[0].sets[0].outputs.2nd': invalid output name: "
                          "letters, digits, '_' and '-', not starting with a digit")),
    "an output format not a string": (lambda d: d["protocols"][0]["sets"][0]["outputs"].update(
                                          client=5),
                                      ("field 'protocols[0].sets[0].outputs.client': must be a "
                                      "dataformat name 'user/name/version', not 5")),
    "an output format not a name": (lambda d: d["protocols"][0]["sets"][0]["outputs"].update(
                                        client="client/1"),
                                    ("field 'protocols[0].sets[0].outputs.client': must be a "
                                    "dataformat name 'user/name/version', not \"client/1\"")),
    "an unknown key in a set": (lambda d: d["protocols"][0]["sets"][0].update(outptus={}),
                                ("field 'protocols[0].sets[0].outptus': unknown key "
                                "(did you mean 'outputs'?)")),
    "an unknown key in a protocol": (lambda d: d["protocols"][0].update(zzz=1),
                                     ("field 'protocols[0].zzz': unknown key (known: name, "
                                     "template, sets, description)")),
    "an unknown top-level key": (lambda d: d.update(protocol=[]),
                                 "field 'protocol': unknown key (did you mean 'protocols'?)"),
    "a description not a string": (lambda d: d.update(description=1),
                                   "field 'description': must be a string, not 1"),
    "a bad schema_version": (lambda d: d.update(schema_version=0),
                             "field 'schema_version': must be an integer >= 1, not 0"),
    "another language": (lambda d: d.update(language="r"),
                         "field 'language': views are written in Python; \"r\" is not supported"),
    "a bad environment": (lambda d: d.update(environment="py3"),
                          ("field 'environment': must be an object {\"name\": ..., \"version\": "
                          "...} of strings, not \"py3\"")),
    "a duplicate protocol": (lambda d: d["protocols"][1].update(name="main"),
                             ("field 'protocols[1].name': protocol 'main' is already declared "
                             "at protocols[0]")),
    "a duplicate set": (lambda d: d["protocols"][0]["sets"][1].update(name="train"),
                        ("field 'protocols[0].sets[1].name': set 'train' is already declared "
                        "at protocols[0].sets[0]")),
}


@pytest.mark.parametrize("case", list(BAD_DECLARATIONS))
def test_bad_declarations_are_reported_never_raised(prefix, case):
    mutate, expected = BAD_DECLARATIONS[case]
    body = declaration()
    mutate(body)
    db = loaded(prefix, body)
    assert not db.valid
    assert f"{json_of(prefix)}: {expected}" in db.errors, db.errors


def test_a_view_class_missing_from_the_code(prefix):
    body = declaration()
    body["protocols"][0]["sets"][1]["view"] = "Clietns"
    db = loaded(prefix, body)
    code = prefix / "databases" / "db" / "1.py"
    assert db.errors == [(f"{json_of(prefix)}: field 'protocols[0].sets[1].view': class "
                         f"'Clietns' is not defined in {code} (did you mean 'Clients'?)")]
    with pytest.raises(RuntimeError, match="is not valid: .*class 'Clietns' is not defined"):
        db.view("main", "train")


def test_unknown_and_invalid_output_dataformats(prefix):
    (prefix / "dataformats" / "test" / "bad").mkdir(parents=True)
    (prefix / "dataformats" / "test" / "bad" / "1.json").write_text('{"x": "flaot32"}')
    body = declaration()
    body["protocols"][0]["sets"][0]["outputs"]["sample"] = "test/nope/1"
    body["protocols"][0]["sets"][1]["outputs"]["client"] = "test/bad/1"
    db = loaded(prefix, body)
    searched = ", ".join(DataFormat(prefix, "test/client/1").prefix.paths)
    bad = prefix / "dataformats" / "test" / "bad" / "1.json"
    assert db.errors == [
        (f"{json_of(prefix)}: field 'protocols[0].sets[0].outputs.sample': unknown dataformat "
        f"'test/nope/1' (searched: {searched})"),
        (f"{json_of(prefix)}: field 'protocols[0].sets[1].outputs.client': dataformat "
        f"'test/bad/1' is invalid: {bad}: field 'x': unknown type 'flaot32' "
        "(did you mean 'float32'?)"),
    ]
    assert sorted(db.dataformats) == ["test/client/1", "test/sample/1"]


def test_a_key_given_twice(prefix):
    text = json.dumps(declaration(), indent=4).replace(
        '"client": "test/client/1",', '"client": "test/client/1", "client": "test/client/1",', 1)
    db = loaded(prefix, text)
    assert db.errors == [(f"{json_of(prefix)}: field 'protocols[0].sets[0].outputs.client': "
                         "key given more than once in the JSON object")]


def test_several_problems_are_all_reported(prefix):
    body = declaration()
    body["protocols"][0]["sets"][0]["view"] = "Nope"
    body["protocols"][0]["sets"][1].pop("outputs")
    body["protocols"][1]["name"] = "main"
    db = loaded(prefix, body)
    assert [e.split(": field ")[1].split(":")[0] for e in db.errors] == [
        "'protocols[0].sets[0].view'", "'protocols[0].sets[1].outputs'", "'protocols[1].name'"]
    # what is valid stays reachable
    assert db.protocol_names == ["main"] and db.set_names("main") == ["train", "eval"]


# -- hashing ----------------------------------------------------------------------------------


def test_the_hash_covers_declaration_and_code_but_not_descriptions(prefix):
    db = Database(prefix, "db/1")
    digest = db.hash()
    assert len(digest) == 64 and digest == db.storage.hash()
    assert digest == phash.hash({
        "code": phash.hashFileContents(db.storage.code.path),
        "declaration": phash.hashJSONFile(db.storage.json.path, "description")})
    body = declaration()
    body["description"] = "another text"
    assert loaded(prefix, body).hash() == digest
    body["protocols"][0]["sets"][0]["parameters"]["clients"] = 4
    assert loaded(prefix, body).hash() != digest
    assert loaded(prefix, code=CODE + "\n# a comment\n").hash() != digest
    with pytest.raises(RuntimeError, match="cannot hash database 'db/9'"):
        Database(prefix, "db/9").hash()


# -- writing and exporting ----------------------------------------------------------------------


def test_json_dumps_keeps_the_declared_order(prefix):
    db = Database(prefix, "db/1")
    assert json.loads(db.json_dumps()) == declaration()
    assert list(json.loads(db.json_dumps())) == list(declaration())
    assert db.json_dumps(indent=2).startswith('{\n  "description"')
    with pytest.raises(RuntimeError, match="no declaration to dump"):
        Database(prefix, "db/9").json_dumps()


def test_write_to_another_storage(prefix, tmp_path):
    db = Database(prefix, "db/1")
    db.description = "changed"
    db.documentation = "New documentation."
    target = Storage(tmp_path / "other", "db/2")
    db.write(target)
    assert target.exists()
    assert Path(target.code.path).read_text() == CODE
    assert Path(target.doc.path).read_text() == "New documentation."
    copy = Database(tmp_path / "other", "db/2")
    assert copy.description == "changed" and copy.documentation == "New documentation."
    # the copy's own prefix has no dataformats
    assert not copy.valid and "unknown dataformat 'test/client/1'" in copy.errors[0]
    assert copy.hash() == db.hash()
    db.description = None
    assert "description" not in db.data
    with pytest.raises(RuntimeError, match="did not load"):
        Database(prefix, "db/9").write(target)


def test_write_in_place(prefix):
    db = Database(prefix, "db/1")
    db.data["protocols"][0]["sets"][0]["parameters"]["clients"] = 5
    db.write()
    again = Database(prefix, "db/1")
    assert again.set("main", "train")["parameters"]["clients"] == 5
    assert again.hash() == db.hash()
    assert [f for f in os.listdir(prefix / "databases" / "db") if f.endswith(".tmp")] == []


def test_export_writes_the_database_and_its_dataformats(prefix, tmp_path):
    db = Database(prefix, "db/1")
    target = tmp_path / "exported"
    db.export(target)
    copy = Database(target, "db/1")
    assert copy.valid, copy.errors
    assert copy.hash() == db.hash() and copy.documentation == "The test database."
    for name in ("test/client/1", "test/sample/1", "test/point/1"):  # point: used by sample
        assert (target / "dataformats" / f"{name}.json").is_file()
    with pytest.raises(RuntimeError, match="into its own prefix"):
        db.export(prefix)
    with pytest.raises(ValueError, match="has no folder"):
        db.export([])
    body = declaration()
    body["protocols"][0]["sets"][0]["view"] = "Nope"
    with pytest.raises(RuntimeError, match="is not valid"):
        loaded(prefix, body).export(tmp_path / "elsewhere")


def test_view_returns_a_runner_not_set_up(prefix):
    db = Database(prefix, "db/1")
    runner = db.view("main", "train")
    assert isinstance(runner, Runner) and not runner.ready
    assert runner.definition == db.view_definition("main", "train")
    assert runner.root_folder is None
    assert db.view("main", "eval", root_folder="/raw").root_folder == "/raw"
    assert repr(runner) == "<Runner of database view db/1 main/train (Clients), not set up>"
    with pytest.raises(KeyError, match="no set 'test'"):
        db.view("main", "test")


def test_the_code_is_loaded_once_per_database(prefix):
    db = Database(prefix, "db/1")
    a, b = db.view("main", "train"), db.view("main", "eval")
    assert type(a.obj) is type(b.obj)
    assert type(Database(prefix, "db/1").view("main", "train").obj) is not type(a.obj)


def test_a_database_in_a_second_folder_finds_formats_in_the_first(tmp_path):
    write_formats(tmp_path / "formats")
    write_database(tmp_path / "dbs")
    db = Database([tmp_path / "dbs", tmp_path / "formats"], "db/1")
    assert db.valid, db.errors
