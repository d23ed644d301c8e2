"""papyflow.utils: prefixes, files written atomically, asset storage, JSON helpers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from papyflow import hash as phash
from papyflow.utils import (
    AbstractStorage,
    CodeStorage,
    File,
    NumpyJSONEncoder,
    Prefix,
    Storage,
    error_on_duplicate_key_hook,
    extension_for_language,
    has_argument,
    hashed_or_simple,
    safe_rmdir,
    safe_rmfile,
)

# -- Prefix ------------------------------------------------------------------------------------


def test_prefix_takes_one_folder_a_list_or_another_prefix(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert Prefix(a).paths == (str(a),)
    assert Prefix([a, str(b)]).paths == (str(a), str(b))
    copy = Prefix(Prefix([a, b]))
    assert copy == Prefix([a, b]) and list(copy) == [str(a), str(b)] and len(copy) == 2
    assert Prefix().paths == ()


def test_prefix_add_appends_and_ignores_a_repeat(tmp_path):
    prefix = Prefix(tmp_path / "a")
    prefix.add(tmp_path / "b")
    prefix.add(tmp_path / "a")
    assert prefix.paths == (str(tmp_path / "a"), str(tmp_path / "b"))
    assert "Prefix([" in repr(prefix)


def test_prefix_copy_is_independent(tmp_path):
    original = Prefix(tmp_path / "a")
    copy = Prefix(original)
    copy.add(tmp_path / "b")
    assert len(original) == 1


def test_prefix_path_returns_the_first_existing_match(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    (second / "x").mkdir(parents=True)
    (second / "x" / "f.json").write_text("{}")
    prefix = Prefix([first, second])
    assert prefix.path("x/f.json") == str(second / "x" / "f.json")
    (first / "x").mkdir(parents=True)
    (first / "x" / "f.json").write_text("{}")
    assert prefix.path("x/f.json") == str(first / "x" / "f.json")


def test_prefix_path_of_a_missing_file_is_under_the_first_folder(tmp_path):
    prefix = Prefix([tmp_path / "first", tmp_path / "second"])
    assert prefix.path("x/new.json") == str(tmp_path / "first" / "x" / "new.json")


def test_prefix_without_folders_refuses_to_resolve():
    with pytest.raises(ValueError, match="no folder"):
        Prefix().path("x")


# -- hashed_or_simple --------------------------------------------------------------------------


def test_hashed_or_simple_prefers_the_hashed_layout_when_it_exists(tmp_path):
    simple = tmp_path / "dataformats" / "bob" / "point" / "1.json"
    assert hashed_or_simple(tmp_path, "dataformats", "bob/point/1") == str(simple)
    hashed = tmp_path / "dataformats" / phash.toUserPath("bob") / "point" / "1.json"
    hashed.parent.mkdir(parents=True)
    hashed.write_text("{}")
    assert hashed_or_simple(tmp_path, "dataformats", "bob/point/1") == str(hashed)
    assert hashed_or_simple(str(tmp_path), "dataformats", "bob/point/1", suffix=".rst") \
        == str(simple.with_suffix(".rst"))


def test_hashed_or_simple_searches_every_folder_of_a_prefix(tmp_path):
    found = tmp_path / "b" / "algorithms" / "bob" / "algo" / "2.json"
    found.parent.mkdir(parents=True)
    found.write_text("{}")
    prefix = Prefix([tmp_path / "a", tmp_path / "b"])
    assert hashed_or_simple(prefix, "algorithms", "bob/algo/2") == str(found)
    assert hashed_or_simple(prefix, "algorithms", "bob/algo/3") == \
        str(tmp_path / "a" / "algorithms" / "bob" / "algo" / "3.json")


# -- removing ----------------------------------------------------------------------------------


def test_safe_rmfile_ignores_a_missing_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    safe_rmfile(target)
    assert not target.exists()
    safe_rmfile(target)


def test_safe_rmdir_removes_empty_parents_and_stops_at_a_full_one(tmp_path):
    deep = tmp_path / "keep" / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "keep" / "other").write_text("x")
    safe_rmdir(deep / "gone.json")
    assert not (tmp_path / "keep" / "a").exists()
    assert (tmp_path / "keep" / "other").exists()


def test_safe_rmdir_leaves_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    safe_rmdir(tmp_path / "a" / "f")
    assert (tmp_path / "a" / "f").exists()


def test_safe_rmdir_keeps_stop_at(tmp_path):
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    safe_rmdir(tmp_path / "root" / "a" / "b" / "f", stop_at=tmp_path / "root")
    assert (tmp_path / "root").is_dir() and not (tmp_path / "root" / "a").exists()


# -- languages and arguments -------------------------------------------------------------------


@pytest.mark.parametrize("language, extension",
                         [("python", ".py"), ("cxx", ".so"), ("matlab", ".m"), ("r", ".r")])
def test_extension_for_language(language, extension):
    assert extension_for_language(language) == extension


def test_extension_for_an_unknown_language_names_it():
    with pytest.raises(KeyError, match="cobol"):
        extension_for_language("cobol")


def test_has_argument():
    class Algorithm:
        def process(self, inputs, data_loaders, outputs):
            return True

        def setup(self, *args, **parameters):
            return True

    assert has_argument(Algorithm().process, "data_loaders")
    assert has_argument(Algorithm.process, "self")
    assert not has_argument(Algorithm().process, "self")
    assert not has_argument(Algorithm().process, "missing")
    assert not has_argument(Algorithm().setup, "parameters")
    assert has_argument(lambda x, *, y=1: x, "y")


# -- JSON helpers ------------------------------------------------------------------------------


def test_duplicate_key_hook_names_the_key():
    assert json.loads('{"a": 1, "b": {"c": 2}}', object_pairs_hook=error_on_duplicate_key_hook) \
        == {"a": 1, "b": {"c": 2}}
    with pytest.raises(ValueError, match="duplicate key 'c'"):
        json.loads('{"a": 1, "b": {"c": 2, "c": 3}}',
                   object_pairs_hook=error_on_duplicate_key_hook)


def test_duplicate_key_hook_keeps_the_order():
    loaded = json.loads('{"z": 1, "a": 2, "m": 3}', object_pairs_hook=error_on_duplicate_key_hook)
    assert list(loaded) == ["z", "a", "m"]


def test_numpy_json_encoder_writes_arrays_and_scalars():
    value = {
        "array": np.arange(6, dtype=np.uint16).reshape(2, 3),
        "int": np.int64(-3),
        "float": np.float32(0.5),
        "bool": np.bool_(True),
        "complex": np.complex64(1 + 2j),
        "complex_array": np.array([1j], dtype=np.complex128),
        "python_complex": 3 - 1j,
        "text": np.str_("hé"),
    }
    decoded = json.loads(json.dumps(value, cls=NumpyJSONEncoder))
    assert decoded == {
        "array": [[0, 1, 2], [3, 4, 5]], "int": -3, "float": 0.5, "bool": True,
        "complex": [1.0, 2.0], "complex_array": [[0.0, 1.0]], "python_complex": [3.0, -1.0],
        "text": "hé",
    }


def test_numpy_json_encoder_still_refuses_other_objects():
    with pytest.raises(TypeError, match="object"):
        json.dumps({"x": object()}, cls=NumpyJSONEncoder)


# -- File --------------------------------------------------------------------------------------


def test_file_round_trips_text_and_bytes(tmp_path):
    text = File(tmp_path / "deep" / "a.txt")
    assert not text.exists() and text.try_load() is None
    text.save("héllo")
    assert text.exists() and text.load() == "héllo"
    binary = File(tmp_path / "b.bin", binary=True)
    binary.save(b"\x00\xff")
    assert binary.load() == b"\x00\xff"
    with pytest.raises(FileNotFoundError):
        File(tmp_path / "none").load()
    with pytest.raises(TypeError, match="str or bytes"):
        text.save(3)  # type: ignore[arg-type]


def test_file_save_leaves_no_temporary_file_and_replaces_atomically(tmp_path, monkeypatch):
    target = File(tmp_path / "a.json")
    target.save("old")
    replaced = []
    real_replace = os.replace

    def spy(source, destination):
        # When the rename happens the new contents are complete in the temporary file.
        replaced.append(Path(source).read_text())
        assert Path(destination).read_text() == "old"
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    target.save("new")
    assert replaced == ["new"] and target.load() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_file_save_failure_keeps_the_old_contents(tmp_path, monkeypatch):
    target = File(tmp_path / "a.json")
    target.save("old")

    def broken(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk gone"):
        target.save("new")
    assert target.load() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_file_save_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        File(tmp_path / "f").save("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_file_backup_and_remove(tmp_path):
    target = File(tmp_path / "a.json")
    assert target.backup() is None
    target.save("one")
    assert target.backup() == str(tmp_path / "a.json~")
    target.save("two")
    assert (tmp_path / "a.json~").read_text() == "one"
    target.remove()
    target.remove()
    assert not target.exists()
    assert "a.json" in repr(target)


# -- Storage -----------------------------------------------------------------------------------


def test_abstract_storage_cannot_be_made():
    with pytest.raises(TypeError):
        AbstractStorage("x")  # type: ignore[abstract]


def test_storage_save_load_remove(tmp_path):
    storage = Storage(tmp_path / "prefix" / "libraries" / "bob" / "lib" / "1")
    assert not storage.exists()
    with pytest.raises(FileNotFoundError):
        storage.load()
    storage.save({"language": "python", "description": "Helpers"}, "Long text")
    assert storage.exists()
    declaration, documentation = storage.load()
    assert json.loads(declaration) == {"language": "python", "description": "Helpers"}
    assert documentation == "Long text"
    storage.save('{"a": 1}')
    assert storage.load() == ('{"a": 1}', "Long text")
    storage.remove()
    assert not storage.exists() and not storage.doc.exists()
    assert not (tmp_path / "prefix").exists()


def test_storage_hash_ignores_description_and_documentation(tmp_path):
    storage = Storage(tmp_path / "a" / "1")
    storage.save({"description": "one", "value": 1}, "doc one")
    first = storage.hash()
    storage.save({"value": 1, "description": "two"}, "doc two")
    assert storage.hash() == first == phash.hashJSON({"value": 1}, "description")
    assert len(first) == 64
    storage.save({"value": 2, "description": "two"})
    assert storage.hash() != first


def test_storage_without_documentation(tmp_path):
    storage = Storage(tmp_path / "x")
    storage.save("{}")
    assert storage.load() == ("{}", None)


def test_code_storage_round_trip(tmp_path):
    storage = CodeStorage(tmp_path / "algorithms" / "bob" / "algo" / "1")
    assert storage.language == "python" and storage.code.path.endswith("1.py")
    assert not storage.exists()
    storage.save({"language": "python"}, "def f():\n    return 1\n", "Docs")
    assert storage.exists()
    declaration, code, documentation = storage.load()
    assert json.loads(declaration) == {"language": "python"}
    assert code == "def f():\n    return 1\n" and documentation == "Docs"
    storage.code.remove()
    assert not storage.exists()
    storage.remove()
    assert not (tmp_path / "algorithms").exists()


def test_code_storage_reads_the_language_from_the_declaration(tmp_path):
    CodeStorage(tmp_path / "x").save({"language": "matlab"}, "x = 1;")
    reopened = CodeStorage(tmp_path / "x")
    assert reopened.language == "matlab"
    assert reopened.code.path.endswith("x.m") and reopened.load()[1] == "x = 1;"
    compiled = CodeStorage(tmp_path / "lib", language="cxx")
    compiled.save({"language": "cxx"}, b"\x7fELF")
    assert compiled.code.binary and compiled.load()[1] == b"\x7fELF"
    with pytest.raises(KeyError, match="fortran"):
        CodeStorage(tmp_path / "y", language="fortran")
    with pytest.raises(KeyError, match="fortran"):
        compiled.language = "fortran"


def test_code_storage_writes_the_declaration_last(tmp_path, monkeypatch):
    order = []
    real_save = File.save

    def spy(self, contents):
        order.append(os.path.splitext(self.path)[1])
        real_save(self, contents)

    monkeypatch.setattr(File, "save", spy)
    CodeStorage(tmp_path / "a").save({"language": "python"}, "pass", "doc")
    assert order[-1] == ".json" and sorted(order) == [".json", ".py", ".rst"]


def test_code_storage_hash_covers_code_not_description(tmp_path):
    storage = CodeStorage(tmp_path / "a")
    storage.save({"language": "python", "description": "one"}, "x = 1\n", "doc")
    first = storage.hash()
    assert first == phash.hash({
        "code": phash.hashFileContents(tmp_path / "a.py"),
        "declaration": phash.hashJSON({"language": "python"}, "description"),
    })
    storage.save({"description": "two", "language": "python"}, "x = 1\n", "other doc")
    assert storage.hash() == first
    storage.save({"language": "python"}, "x = 2\n")
    assert storage.hash() != first


def test_export_folder_is_the_first_folder_of_another_prefix(tmp_path):
    from papyflow.utils import Prefix

    mine = Prefix([str(tmp_path / "a"), str(tmp_path / "b")])
    assert mine.export_folder([str(tmp_path / "c"), str(tmp_path / "d")], "x") == \
        str(tmp_path / "c")
    with pytest.raises(RuntimeError, match="cannot export x into its own prefix"):
        mine.export_folder(str(tmp_path / "b"), "x")
    with pytest.raises(ValueError, match="has no folder"):
        mine.export_folder([], "x")
