"""NestedDictionary: a dict of dicts addressed by paths, like files in folders.

A *path* is a sequence of keys, read from the top of the dictionary down:
``['level1', 'sublevel2', 'value1']`` is ``d['level1']['sublevel2']['value1']``.
It can be given in two forms:

- a list or tuple of keys (the *raw* form), which keeps each key's datatype
  and therefore works with any dictionary;
- a string of keys joined by the *path delimiter* (``'.'`` by default), such
  as ``'level1.sublevel2.value1'``. A string cannot say what type each key is,
  so it is accepted only when every key of the dictionary has the same
  datatype, and each part is converted to that datatype (``'11.11'`` finds
  ``{11: {11: ...}}`` once all keys are ints). An empty dictionary takes
  string keys.

A *section* is a value that is itself a dict (an intermediate element); any
other value is *terminal*. Methods that change the dictionary do so in place
by default; with ``modify_class_dictionary=False`` they leave it untouched and
return a new :class:`NestedDictionary` over a deep copy.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, Literal

from ._keys import NO_KEY, PART_CONVERTERS, convert_key

__all__ = ["NestedDictionary", "NestedOverwriteError", "NestedPathError"]

VariablePath = str | Sequence[Hashable]
RawPath = tuple[Hashable, ...]

_SEARCH_MODES = ("terminal_only", "intermediate_only", "all")
_KEY_DATATYPES = ("str", "int", "float")


class NestedPathError(KeyError):
    """A path does not lead to a value: a key is missing, or a terminal value is in the way."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class NestedOverwriteError(ValueError):
    """A write would replace an existing value or section that it was not allowed to replace."""


def _check_delimiter(where: str, delimiter: object) -> str:
    if not isinstance(delimiter, str):
        raise TypeError(f"{where}: path_delimiter must be a str, got {delimiter!r}")
    if not delimiter:
        raise ValueError(f"{where}: path_delimiter must not be empty")
    return delimiter


class NestedDictionary:
    """Wrap a (nested) Python dictionary and work on it with paths.

    ``seed_dictionary`` is wrapped, not copied: in-place operations change it.
    ``path_delimiter`` separates the keys of string paths.

    >>> nested = NestedDictionary({"a": {"b": 1}})
    >>> nested.read_nested_value("a.b")
    1
    """

    __slots__ = ("_data", "_delimiter", "_key_datatypes")

    def __init__(self, seed_dictionary: dict[Any, Any] | None = None,
                 path_delimiter: str = ".") -> None:
        where = "NestedDictionary"
        if seed_dictionary is None:
            seed_dictionary = {}
        elif not isinstance(seed_dictionary, dict):
            raise TypeError(f"{where}: seed_dictionary must be a dict or None, "
                            f"got {type(seed_dictionary).__name__}")
        self._delimiter = _check_delimiter(where, path_delimiter)
        self._data: dict[Any, Any] = seed_dictionary
        self._key_datatypes: tuple[str, ...] = ()
        self._refresh_key_datatypes()

    # -- properties -----------------------------------------------------------------

    @property
    def data(self) -> dict[Any, Any]:
        """The wrapped dictionary itself (changes to it bypass :attr:`key_datatypes`)."""
        return self._data

    @property
    def key_datatypes(self) -> tuple[str, ...]:
        """The sorted names of the datatypes of all keys, at every level.

        Updated at construction and by this class's methods; not by changes
        made to the dictionary directly.
        """
        return self._key_datatypes

    @property
    def path_delimiter(self) -> str:
        """The string that separates keys in string paths."""
        return self._delimiter

    def set_path_delimiter(self, new_delimiter: str) -> None:
        """Use ``new_delimiter`` to separate the keys of string paths from now on."""
        self._delimiter = _check_delimiter("NestedDictionary.set_path_delimiter", new_delimiter)

    def __repr__(self) -> str:
        return (f"NestedDictionary(key_datatypes={self._key_datatypes!r}, "
                f"path_delimiter={self._delimiter!r}, data={self._data!r})")

    # -- reading and mapping --------------------------------------------------------

    def read_nested_value(self, variable_path: VariablePath) -> Any:
        """Return the value or section at ``variable_path`` (a section is returned as is, not copied).

        Raises :class:`NestedPathError` (a ``KeyError``) when the path does not exist.
        """
        where = "NestedDictionary.read_nested_value"
        keys = self._path_to_keys(where, variable_path)
        node: Any = self._data
        for depth, key in enumerate(keys):
            node = self._step(where, node, key, keys, depth, variable_path)
        return node

    def extract_nested_variable_paths(self, *, return_raw: bool = False
                                      ) -> tuple[RawPath, ...] | tuple[str, ...]:
        """Return the paths to every terminal value, in insertion order, depth first.

        An empty section counts as a terminal value (it would otherwise have
        no path at all). Paths are delimited strings, or tuples of keys with
        ``return_raw=True``. String paths join ``str(key)`` and so lose the
        keys' datatypes.
        """
        paths = tuple(path for path, value in self._walk() if not _is_section(value) or not value)
        where = "NestedDictionary.extract_nested_variable_paths"
        return paths if return_raw else tuple(self._join(path, where) for path in paths)

    def find_nested_variable_path(
        self, target_key: Hashable, *,
        search_mode: Literal["terminal_only", "intermediate_only", "all"] = "terminal_only",
        return_raw: bool = False,
    ) -> RawPath | str | tuple[RawPath, ...] | tuple[str, ...] | None:
        """Find the paths whose last key is ``target_key``.

        ``search_mode`` selects which elements count: ``'terminal_only'``
        (values that are not dicts), ``'intermediate_only'`` (sections) or
        ``'all'``. A key matches only if it has the same datatype as
        ``target_key`` and equals it (``'11'`` does not find ``11``).

        Returns ``None`` if nothing matches, the single path if one matches,
        and a tuple of paths (depth first, in insertion order) if several do.
        Paths are delimited strings, or tuples of keys with ``return_raw=True``.
        """
        where = "NestedDictionary.find_nested_variable_path"
        if search_mode not in _SEARCH_MODES:
            raise ValueError(f"{where}: search_mode must be one of "
                             f"{', '.join(map(repr, _SEARCH_MODES))}, got {search_mode!r}")
        if not isinstance(target_key, Hashable):
            raise TypeError(f"{where}: target_key must be hashable, got {target_key!r}")
        found: list[RawPath] = []
        for path, value in self._walk():
            key = path[-1]
            if type(key) is not type(target_key) or key != target_key:
                continue
            section = _is_section(value)
            if (search_mode == "all" or (search_mode == "intermediate_only" and section)
                    or (search_mode == "terminal_only" and not section)):
                found.append(path)
        results: tuple[Any, ...] = (tuple(found) if return_raw
                                    else tuple(self._join(path, where) for path in found))
        if not results:
            return None
        return results[0] if len(results) == 1 else results

    # -- changing -------------------------------------------------------------------

    def write_nested_value(self, variable_path: VariablePath, value: Any, *,
                           modify_class_dictionary: bool = True,
                           allow_terminal_overwrite: bool = True,
                           allow_intermediate_overwrite: bool = False,
                           ) -> NestedDictionary | None:
        """Write ``value`` (any object, including a dict section) at ``variable_path``.

        Missing sections along the path are created. Replacing an existing
        terminal value (at the end of the path, or in its way) needs
        ``allow_terminal_overwrite`` (on by default); replacing an existing
        section needs ``allow_intermediate_overwrite`` (off by default). A
        refused write raises :class:`NestedOverwriteError` (a ``ValueError``)
        and changes nothing. So does a ``value`` that would make the dictionary
        contain itself (a section of the path, or a cyclic dict): that is a
        ``ValueError``, raised before anything is written.

        Returns ``None`` when modifying in place, else a new
        :class:`NestedDictionary` holding the result.
        """
        where = "NestedDictionary.write_nested_value"
        for name, flag in (("modify_class_dictionary", modify_class_dictionary),
                           ("allow_terminal_overwrite", allow_terminal_overwrite),
                           ("allow_intermediate_overwrite", allow_intermediate_overwrite)):
            _check_flag(where, name, flag)
        keys = self._path_to_keys(where, variable_path)

        # Check the whole path first, so that a refused write leaves no half-made sections.
        node: Any = self._data
        for depth, key in enumerate(keys):
            if not _is_section(node) or key not in node:
                break
            node = node[key]
            last = depth == len(keys) - 1
            here = self._describe(keys[:depth + 1], variable_path)
            if last and _is_section(node) and not allow_intermediate_overwrite:
                raise NestedOverwriteError(
                    f"{where}: {here} is an existing section; pass "
                    "allow_intermediate_overwrite=True to replace it")
            if not _is_section(node) and not allow_terminal_overwrite:
                action = "replace it" if last else "replace it with a section"
                raise NestedOverwriteError(
                    f"{where}: {here} holds the terminal value {node!r}; pass "
                    f"allow_terminal_overwrite=True to {action}")

        target = self._data if modify_class_dictionary else copy.deepcopy(self._data)
        self._check_no_cycle(where, value, _sections_along(target, keys[:-1]), keys,
                             variable_path)
        node = target
        for key in keys[:-1]:
            if not _is_section(node.get(key)):
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
        return self._finish(target, modify_class_dictionary)

    def delete_nested_value(self, variable_path: VariablePath, *,
                            modify_class_dictionary: bool = True,
                            delete_empty_sections: bool = True,
                            allow_missing: bool = False) -> NestedDictionary | None:
        """Delete the value or section at ``variable_path``.

        With ``delete_empty_sections`` (the default), sections left empty by
        the deletion are deleted too, up the path. A path that does not exist
        raises :class:`NestedPathError`, unless ``allow_missing`` is set (then
        nothing changes).

        Returns ``None`` when modifying in place, else a new
        :class:`NestedDictionary` holding the result.
        """
        where = "NestedDictionary.delete_nested_value"
        for name, flag in (("modify_class_dictionary", modify_class_dictionary),
                           ("delete_empty_sections", delete_empty_sections),
                           ("allow_missing", allow_missing)):
            _check_flag(where, name, flag)
        keys = self._path_to_keys(where, variable_path)
        try:
            node: Any = self._data
            for depth, key in enumerate(keys):
                node = self._step(where, node, key, keys, depth, variable_path)
        except NestedPathError:
            if not allow_missing:
                raise
            return None if modify_class_dictionary else self._finish(
                copy.deepcopy(self._data), False)

        target = self._data if modify_class_dictionary else copy.deepcopy(self._data)
        chain = [target]  # the sections along the path, from the top
        for key in keys[:-1]:
            chain.append(chain[-1][key])
        del chain[-1][keys[-1]]
        if delete_empty_sections:
            for depth in range(len(keys) - 2, -1, -1):
                if chain[depth + 1]:
                    break
                del chain[depth][keys[depth]]
        return self._finish(target, modify_class_dictionary)

    def convert_all_keys_to_datatype(self, datatype: Literal["str", "int", "float"], *,
                                     modify_class_dictionary: bool = True
                                     ) -> NestedDictionary | None:
        """Convert every key, at every level, to ``datatype`` (``'str'``, ``'int'`` or ``'float'``).

        Conversions never round: ``'3'``, ``3.0`` and ``True`` become ``3``
        as ints, but ``'3.5'`` or ``'abc'`` cannot. A key that cannot be
        converted, or two keys of one section that would become the same key,
        raise ``ValueError`` naming the path, and nothing changes.

        Returns ``None`` when modifying in place, else a new
        :class:`NestedDictionary` holding the result.
        """
        where = "NestedDictionary.convert_all_keys_to_datatype"
        if datatype not in _KEY_DATATYPES:
            raise ValueError(f"{where}: datatype must be one of "
                             f"{', '.join(map(repr, _KEY_DATATYPES))}, got {datatype!r}")
        _check_flag(where, "modify_class_dictionary", modify_class_dictionary)
        source = self._data if modify_class_dictionary else copy.deepcopy(self._data)
        converted = self._convert_keys(where, source, datatype, ())
        if not modify_class_dictionary:
            return self._finish(converted, False)
        # Keep the identity of the wrapped top-level dict: callers may hold it.
        self._data.clear()
        self._data.update(converted)
        return self._finish(self._data, True)

    # -- helpers --------------------------------------------------------------------

    def _finish(self, target: dict[Any, Any], in_place: bool) -> NestedDictionary | None:
        if in_place:
            self._refresh_key_datatypes()
            return None
        return NestedDictionary(target, path_delimiter=self._delimiter)

    def _refresh_key_datatypes(self) -> None:
        names = {type(path[-1]).__name__ for path, _ in self._walk()}
        self._key_datatypes = tuple(sorted(names))

    def _walk(self) -> Iterator[tuple[RawPath, Any]]:
        """Yield ``(path, value)`` for every element, depth first, in insertion order."""
        on_path: set[int] = set()

        def walk(section: dict[Any, Any], prefix: RawPath) -> Iterator[tuple[RawPath, Any]]:
            if id(section) in on_path:
                raise ValueError("NestedDictionary: the dictionary contains itself at "
                                 f"{list(prefix)!r}; cyclic dictionaries are not supported")
            on_path.add(id(section))
            for key, value in section.items():
                path = (*prefix, key)
                yield path, value
                if _is_section(value):
                    yield from walk(value, path)
            on_path.discard(id(section))

        return walk(self._data, ())

    def _check_no_cycle(self, where: str, value: Any, enclosing: list[dict[Any, Any]],
                        keys: RawPath, variable_path: object) -> None:
        """Refuse a ``value`` that, written inside the ``enclosing`` sections, would contain itself.

        Checked before writing, as the cycle could not be walked (or undone) afterwards.
        """
        inner = _cycle_in(value, enclosing)
        if inner is None:
            return
        culprit = "the value" if not inner else f"the section at {list(inner)!r} in the value"
        raise ValueError(f"{where}: writing at {self._describe(keys, variable_path)} would make "
                         f"the dictionary contain itself: {culprit} would then hold itself; "
                         "cyclic dictionaries are not supported")

    def _path_to_keys(self, where: str, variable_path: object) -> RawPath:
        if isinstance(variable_path, str):
            if not variable_path:
                raise ValueError(f"{where}: variable_path must not be empty")
            parts = variable_path.split(self._delimiter)
            if any(part == "" for part in parts):
                raise ValueError(f"{where}: variable_path {variable_path!r} has an empty key "
                                 f"(delimiter {self._delimiter!r})")
            return self._convert_string_keys(where, variable_path, parts)
        if isinstance(variable_path, (list, tuple)):
            if not variable_path:
                raise ValueError(f"{where}: variable_path must not be empty")
            for key in variable_path:
                if not isinstance(key, Hashable):
                    raise TypeError(f"{where}: every key of variable_path must be hashable; "
                                    f"{variable_path!r} holds {key!r}")
            return tuple(variable_path)
        raise TypeError(f"{where}: variable_path must be a delimited str or a list or tuple "
                        f"of keys, got {type(variable_path).__name__} {variable_path!r}")

    def _convert_string_keys(self, where: str, text: str, parts: list[str]) -> RawPath:
        datatypes = self._key_datatypes
        if len(datatypes) > 1:
            raise ValueError(
                f"{where}: the string path {text!r} cannot be used because the dictionary's "
                f"keys have several datatypes ({', '.join(datatypes)}); give the path as a "
                "list or tuple of keys, or convert the keys with convert_all_keys_to_datatype()")
        if not datatypes or datatypes[0] == "str":
            return tuple(parts)
        datatype = datatypes[0]
        if datatype not in PART_CONVERTERS:
            raise ValueError(f"{where}: the string path {text!r} cannot be used because the "
                             f"dictionary's keys are of type {datatype}; give the path as a "
                             "list or tuple of keys")
        keys: list[Hashable] = []
        for part in parts:
            key = PART_CONVERTERS[datatype](part)
            if key is NO_KEY:
                raise ValueError(f"{where}: the part {part!r} of the string path {text!r} is "
                                 f"not a valid {datatype}, the datatype of every key of the "
                                 "dictionary")
            keys.append(key)
        return tuple(keys)

    def _step(self, where: str, node: Any, key: Hashable, keys: RawPath, depth: int,
              variable_path: object) -> Any:
        if not _is_section(node):
            raise NestedPathError(
                f"{where}: {self._describe(keys, variable_path)} does not exist: "
                f"{self._describe(keys[:depth], variable_path)} holds the terminal value "
                f"{node!r}, not a section")
        if key not in node:
            raise NestedPathError(
                f"{where}: {self._describe(keys, variable_path)} does not exist: no key "
                f"{key!r} in " + ("the top level" if depth == 0 else
                                  self._describe(keys[:depth], variable_path)))
        return node[key]

    def _describe(self, keys: RawPath, variable_path: object) -> str:
        """Name a (partial) path in the form the caller used."""
        if isinstance(variable_path, str):
            return f"path {self._delimiter.join(map(str, keys))!r}"
        return f"path {list(keys)!r}"

    def _join(self, path: RawPath, where: str) -> str:
        """The string path of ``path``; refused when it would name another path (or
        none): a key that is empty or holds the delimiter cannot be told apart."""
        parts = [str(key) for key in path]
        for key, part in zip(path, parts):
            if not part or self._delimiter in part:
                raise ValueError(
                    f"{where}: the key {key!r} (in {list(path)!r}) "
                    + ("is empty" if not part else f"holds the path delimiter "
                                                   f"{self._delimiter!r}")
                    + ", so no string path can name it; pass return_raw=True for tuples of "
                    "keys, or choose another delimiter with set_path_delimiter()")
        return self._delimiter.join(parts)

    def _convert_keys(self, where: str, section: dict[Any, Any], datatype: str,
                      prefix: RawPath) -> dict[Any, Any]:
        converted: dict[Any, Any] = {}
        origin: dict[Any, Hashable] = {}
        for key, value in section.items():
            new_key = convert_key(key, datatype)
            path = [*prefix, key]
            if new_key is NO_KEY:
                why = ""
                if datatype == "float" and convert_key(key, "str").strip().lower() in _NANS:
                    why = " (it would be NaN, a key equal to no key, which no path reaches)"
                raise ValueError(f"{where}: the key {key!r} at path {path!r} cannot be "
                                 f"converted to {datatype}{why}")
            if new_key in converted:
                raise ValueError(f"{where}: the keys {origin[new_key]!r} and {key!r} of the "
                                 f"section at path {list(prefix)!r} would both become "
                                 f"{new_key!r}")
            origin[new_key] = key
            if _is_section(value):
                value = self._convert_keys(where, value, datatype, (*prefix, key))
            converted[new_key] = value
        return converted


# How a key that would become NaN is spelled.
_NANS = ("nan", "+nan", "-nan")


def _is_section(value: Any) -> bool:
    return isinstance(value, dict)


def _sections_along(top: dict[Any, Any], keys: RawPath) -> list[dict[Any, Any]]:
    """``top`` and the existing sections that ``keys`` lead through from it, in order."""
    sections = [top]
    for key in keys:
        node: Any = sections[-1].get(key)
        if not _is_section(node):
            break  # from here on the path needs new sections, which nothing can hold yet
        sections.append(node)
    return sections


def _cycle_in(value: Any, enclosing: list[dict[Any, Any]]) -> RawPath | None:
    """Where in ``value`` a section would hold itself once ``value`` is put in ``enclosing``.

    Returns the keys from ``value`` down to that section (``()`` if it is ``value``
    itself), or ``None`` when ``value`` would sit there without a cycle. Sections
    shared without a cycle are fine, as for :meth:`NestedDictionary._walk`.
    """
    on_path = {id(section) for section in enclosing}

    def search(node: Any, prefix: RawPath) -> RawPath | None:
        if not _is_section(node):
            return None
        if id(node) in on_path:
            return prefix
        on_path.add(id(node))
        for key, item in node.items():
            found = search(item, (*prefix, key))
            if found is not None:
                return found
        on_path.discard(id(node))
        return None

    return search(value, ())


def _check_flag(where: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {value!r}")
