"""Hashes that name declarations, files and datasets, and the paths built from them.

Every hash is a SHA-256 digest written as 64 lowercase hexadecimal characters.
What is digested:

* a ``str``: its UTF-8 bytes;
* ``bytes``: the bytes themselves;
* any other JSON value (a dict above all): its *canonical JSON* text, UTF-8
  encoded. Canonical JSON is ``json.dumps`` with keys sorted, no whitespace
  (separators ``","`` and ``":"``) and non-ASCII characters written as they
  are; numpy values are written as by :class:`papyflow.utils.NumpyJSONEncoder`.
  Two dicts that differ only in key order therefore hash the same.

A declaration's hash leaves its description out (:func:`hashJSON`), so that
editing the text that explains an asset does not invalidate what was computed
with it. Its documentation (the ``.rst`` beside it) is never part of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from .utils import NumpyJSONEncoder, error_on_duplicate_key_hook

__all__ = [
    "hash",
    "hashDataset",
    "hashFileContents",
    "hashJSON",
    "hashJSONFile",
    "toPath",
    "toUserPath",
]

_CHUNK = 1 << 20


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      cls=NumpyJSONEncoder)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toPath(hash: str, suffix: str = ".data") -> str:
    """Return the relative path at which the file named by ``hash`` is stored.

    The first three pairs of characters become folders, so that no folder
    holds too many files: ``toPath("abcdef0123...")`` is
    ``"ab/cd/ef/0123...<suffix>"``.
    """
    return os.path.join(hash[0:2], hash[2:4], hash[4:6], hash[6:] + suffix)


def toUserPath(username: str) -> str:
    """Return the relative folder of a user's assets in the hashed layout.

    It is ``<h[0:2]>/<h[2:4]>/<username>`` where ``h = hash(username)``.
    """
    digest = hash(username)
    return os.path.join(digest[0:2], digest[2:4], username)


def hash(dictionary_or_string: Any) -> str:
    """Return the SHA-256 hex digest of a string, bytes, or JSON value (see the module).

    A ``str`` is digested as its UTF-8 text, not as JSON: ``hash("a")``
    digests ``a``, not ``"a"``.

    >>> hash({"b": 1, "a": 2}) == hash({"a": 2, "b": 1})
    True
    """
    if isinstance(dictionary_or_string, str):
        return _sha256(dictionary_or_string.encode("utf-8"))
    if isinstance(dictionary_or_string, bytes | bytearray | memoryview):
        return _sha256(bytes(dictionary_or_string))
    return _sha256(_canonical_json(dictionary_or_string).encode("utf-8"))


def _without(contents: Any, description: str | None, top: bool = True) -> Any:
    """``contents`` less its ``description`` key (see :func:`hashJSON` for where)."""
    if description is None:
        return contents
    everywhere = description.startswith("#")
    if isinstance(contents, Mapping):
        if not (top or everywhere):
            return contents
        return {key: _without(value, description, top=False)
                for key, value in contents.items() if key != description}
    if isinstance(contents, list) and everywhere:
        return [_without(item, description, top=False) for item in contents]
    return contents


def hashJSON(contents: Any, description: str | None) -> str:
    """Return the hash of a loaded JSON declaration, leaving its description out.

    ``description`` names the key to leave out (``"description"`` for
    algorithms, libraries and databases, ``"#description"`` for dataformats;
    ``None`` leaves nothing out). A plain key is dropped at the top level only:
    deeper, the same word may be a name the user chose (a parameter called
    ``description``). A key starting with ``#`` is metadata at every level of
    a dataformat, so it is dropped wherever it appears, also inside inline
    objects. The rest is hashed as canonical JSON with :func:`hash`; the
    contents given are not modified.
    """
    return hash(_without(contents, description))


def hashJSONFile(path: str | os.PathLike[str], description: str | None) -> str:
    """Return :func:`hashJSON` of the JSON file at ``path``.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not valid UTF-8 JSON, or an object repeats a key
            (which value counts would be ambiguous), naming the file.
    """
    with open(path, "rb") as stream:
        raw = stream.read()
    try:
        contents = json.loads(raw.decode("utf-8"), object_pairs_hook=error_on_duplicate_key_hook)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: cannot hash: {error}") from error
    return hashJSON(contents, description)


def hashFileContents(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of the bytes of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hashDataset(database_name: str, protocol_name: str, set_name: str) -> str:
    """Return the hash that names one set of one protocol of a database.

    It is ``hash({"database": database_name, "protocol": protocol_name,
    "set": set_name})``: unambiguous even though a database name
    (``name/version``) holds a slash.
    """
    return hash({"database": database_name, "protocol": protocol_name, "set": set_name})
