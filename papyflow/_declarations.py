"""What every JSON asset declaration shares: reading it, its description and documentation.

Dataformats, libraries, algorithms and databases are all declared in JSON
under a prefix, with an optional ``.rst`` documentation beside. Loading one
must report a key given twice in an object (``json`` would silently keep the
last), naming the field path; :func:`read_declaration` does that.
:class:`Described` gives the asset classes their ``description`` and
``documentation`` properties.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["Described", "read_declaration"]


class _TrackedObject(dict[str, Any]):
    """A JSON object that remembers the keys its text gave more than once."""

    duplicates: list[str]


def _track_duplicates(pairs: list[tuple[str, Any]]) -> _TrackedObject:
    result = _TrackedObject()
    result.duplicates = []
    for key, value in pairs:
        if key in result and key not in result.duplicates:
            result.duplicates.append(key)
        result[key] = value
    return result


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _untrack(value: Any, path: str, duplicates: list[str]) -> Any:
    """``value`` with plain dicts, collecting the field paths of repeated keys."""
    if isinstance(value, _TrackedObject):
        duplicates.extend(_join(path, key) for key in value.duplicates)
        return {key: _untrack(item, _join(path, key), duplicates) for key, item in value.items()}
    if isinstance(value, list):
        return [_untrack(item, _join(path, k), duplicates) for k, item in enumerate(value)]
    return value


def read_declaration(text: str | bytes) -> tuple[Any, list[str]]:
    """The JSON value of ``text``, and the field paths of the keys it gave twice.

    Paths read ``meta.frame`` and ``groups[0].inputs``.

    Raises:
        json.JSONDecodeError: ``text`` is not JSON.
    """
    duplicates: list[str] = []
    value = _untrack(json.loads(text, object_pairs_hook=_track_duplicates), "", duplicates)
    return value, duplicates


def load_declaration(read: Callable[[], Any],
                     error: Callable[[str | None, str], None]) -> dict[str, Any] | None:
    """The JSON object that ``read()`` returns the text of, or ``None``.

    Every problem goes to ``error(field path or None, message)``: a file that
    cannot be read or is not UTF-8, invalid JSON (with line and column), keys
    given twice (one error each, naming the path), and a declaration that is
    not an object (then ``None``).
    """
    try:
        declaration, duplicates = read_declaration(read())
    except UnicodeDecodeError:
        error(None, "not UTF-8 text")
        return None
    except OSError as problem:
        error(None, f"cannot read: {problem.strerror or problem}")
        return None
    except json.JSONDecodeError as problem:
        error(None, f"invalid JSON: {problem.msg} (line {problem.lineno}, "
                    f"column {problem.colno})")
        return None
    for path in duplicates:
        error(path, "key given more than once in the JSON object")
    if not isinstance(declaration, dict):
        error(None, f"the declaration must be a JSON object, not {type(declaration).__name__}")
        return None
    return declaration


class Described:
    """``description`` and ``documentation`` of an asset loaded from a declaration.

    The class says which key holds the description (``description_key``) and
    what it is called in messages (``kind``); an instance has ``data`` (the
    declaration, or ``None``), ``storage`` (with a ``doc`` file, or ``None``)
    and ``name``, and sets ``_documentation = None`` and
    ``_documentation_loaded = False`` when it is made.
    """

    description_key: ClassVar[str] = "description"
    kind: ClassVar[str] = "asset"
    data: Any
    storage: Any
    name: Any
    _documentation: str | None
    _documentation_loaded: bool

    @property
    def description(self) -> str | None:
        """The short description of the declaration, or ``None``."""
        description = self.data.get(self.description_key) if self.data else None
        return description if isinstance(description, str) else None

    @description.setter
    def description(self, value: str | None) -> None:
        if self.data is None:
            raise RuntimeError(f"{self.kind} {self.name!r} has no declaration to describe")
        if value is None:
            self.data.pop(self.description_key, None)
        else:
            self.data[self.description_key] = value

    @property
    def documentation(self) -> str | None:
        """The documentation (the ``.rst`` beside the declaration), or ``None``.

        Read on first use; setting it changes what ``write`` writes.
        """
        if not self._documentation_loaded:
            self._documentation_loaded = True
            if self.storage is not None:
                text = self.storage.doc.try_load()
                self._documentation = text if isinstance(text, str) else None
        return self._documentation

    @documentation.setter
    def documentation(self, value: str | None) -> None:
        self._documentation = value
        self._documentation_loaded = True
