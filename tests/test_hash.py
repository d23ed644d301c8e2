"""papyflow.hash: SHA-256 names for declarations, files and datasets."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from papyflow.hash import (
    hash,
    hashDataset,
    hashFileContents,
    hashJSON,
    hashJSONFile,
    toPath,
    toUserPath,
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_string_is_hashed_as_its_utf8_text():
    assert hash("héllo") == sha256("héllo".encode())
    assert len(hash("x")) == 64 and all(c in "0123456789abcdef" for c in hash("x"))


def test_bytes_are_hashed_as_they_are():
    assert hash(b"\x00\x01") == sha256(b"\x00\x01")


def test_a_dict_is_hashed_as_canonical_json():
    value = {"b": [1, 2.5, None, True], "a": {"é": "x"}}
    canonical = '{"a":{"é":"x"},"b":[1,2.5,null,true]}'
    assert hash(value) == sha256(canonical.encode())


def test_key_order_does_not_matter_at_any_depth():
    assert hash({"a": 1, "b": {"x": 1, "y": 2}}) == hash({"b": {"y": 2, "x": 1}, "a": 1})
    assert hash({"a": 1}) != hash({"a": 2})


def test_numpy_values_hash_like_their_python_values():
    assert hash({"a": np.int32(3), "b": np.array([1.5])}) == hash({"a": 3, "b": [1.5]})


def test_to_path_splits_the_hash_into_folders():
    digest = hash("x")
    assert toPath(digest) == os.path.join(digest[:2], digest[2:4], digest[4:6],
                                          digest[6:] + ".data")
    assert toPath(digest, suffix=".index").endswith(digest[6:] + ".index")
    assert toPath(digest, suffix="") == os.path.join(digest[:2], digest[2:4], digest[4:6],
                                                     digest[6:])


def test_to_user_path_spreads_users_by_the_hash_of_their_name():
    digest = sha256(b"bob")
    assert toUserPath("bob") == os.path.join(digest[:2], digest[2:4], "bob")
    assert toUserPath("bob") != toUserPath("alice")


def test_hash_json_leaves_the_top_level_description_out():
    plain = {"language": "python", "parameters": {"description": {"type": "string"}}}
    described = {"description": "Helpers", **plain}
    assert hashJSON(described, "description") == hashJSON(plain, "description") == hash(plain)
    # A nested key with the same word is a user's name and counts.
    assert hashJSON(plain, "description") != hash({"language": "python", "parameters": {}})
    assert described["description"] == "Helpers"  # the argument is not modified


def test_hash_json_leaves_metadata_descriptions_out_at_every_level():
    a = {"#description": "one", "x": "int32", "meta": {"#description": "m", "y": "int8"},
         "items": [0, {"#description": "i", "z": "bool"}]}
    b = {"items": [0, {"z": "bool"}], "meta": {"y": "int8"}, "x": "int32"}
    assert hashJSON(a, "#description") == hashJSON(b, "#description") == hash(b)
    assert hashJSON(a, None) == hash(a) != hash(b)


def test_hash_json_file_matches_hash_json(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"#description": "x", "value": "int32"}, indent=4))
    assert hashJSONFile(path, "#description") == hashJSON({"value": "int32"}, "#description")
    path.write_text('{"value": "int32", "#description": "edited"}')
    assert hashJSONFile(str(path), "#description") == hash({"value": "int32"})


@pytest.mark.parametrize("text, message", [
    ("{not json", "Expecting property name"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
])
def test_hash_json_file_refuses_a_bad_file_and_names_it(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        hashJSONFile(path, "description")
    assert str(path) in str(caught.value)


def test_hash_json_file_refuses_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match="bad.json"):
        hashJSONFile(path, "description")


def test_hash_file_contents(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(3 << 20)  # more than one read
    path.write_bytes(data)
    assert hashFileContents(path) == sha256(data)
    (tmp_path / "empty").write_bytes(b"")
    assert hashFileContents(str(tmp_path / "empty")) == sha256(b"")


def test_hash_dataset_is_unambiguous():
    first = hashDataset("mnist/1", "main", "train")
    assert first == hash({"database": "mnist/1", "protocol": "main", "set": "train"})
    assert first != hashDataset("mnist/1", "main", "test")
    assert hashDataset("a/1", "b/c", "d") != hashDataset("a/1/b", "c", "d")
    assert len(first) == 64
