"""Dataformats: JSON declarations of the records that flow between blocks.

A dataformat is stored under a prefix as
``<prefix>/dataformats/<user>/<name>/<version>.json`` (plus an optional
``.rst`` documentation beside it) and named ``user/name/version``. Its JSON
object maps field names to types::

    {
        "#description": "A labelled point",
        "#extends": "user/labelled/1",
        "x": "float64",                                  a scalar
        "origin": "user/point/1",                        another dataformat
        "meta": {"source": "string", "frame": "uint32"}, an inline object
        "patch": [8, 8, "uint8"],                        an array: dimensions, element
        "tags": [0, "string"]                            (a dimension of 0 is variable)
    }

Loading (:class:`DataFormat`) checks everything and never raises for a bad
declaration: it sets :attr:`DataFormat.valid` to ``False`` and lists, in
:attr:`DataFormat.errors`, one message per problem, each naming the file and
the field path (``".../user/a/1.json: field 'meta.frame': unknown type
'flaot32'"``). A valid dataformat gives a record class, :attr:`DataFormat.type`
(made by :func:`papyflow.formats.baseformat.make_type`).

The system dataformats shipped with papyflow (``system/float64/1``,
``system/text/1``, ...) are searched after the prefix a DataFormat is given;
see :data:`papyflow.formats.SYSTEM_PREFIX`. The whole language is described in
``docs/formats.md``.
"""

from __future__ import annotations

import builtins
import copy
import difflib
import json
import keyword
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeAlias

from .. import hash as _hash
from .._declarations import Described, load_declaration
from ..utils import NumpyJSONEncoder, Prefix, hashed_or_simple
from ..utils import Storage as _AssetStorage
from ._fields import EMPTY_ELEMENT_LIMIT, MAX_ELEMENTS
from ._system import SYSTEM_PREFIX
from .baseformat import RESERVED_FIELD_NAMES, baseformat, make_type

__all__ = [
    "RESERVED_FIELD_NAMES",
    "SCALAR_TYPES",
    "UNNAMED",
    "DataFormat",
    "Storage",
]

SCALAR_TYPES: frozenset[str] = frozenset({
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "complex64", "complex128",
    "bool", "string",
})
"""The scalar type names of the dataformat language."""

UNNAMED = "__unnamed_dataformat__"
"""The name of an anonymous dataformat (a dict) that has no parent."""

_METADATA = ("#description", "#extends", "#schema_version")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*/[A-Za-z0-9_][A-Za-z0-9_-]*/[0-9]+")
_MAX_DIMENSIONS = 32  # numpy's limit (1.x) for the dimensions of an array

PrefixLike: TypeAlias = "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Prefix"


def _is_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


class Storage(_AssetStorage):
    """The files of the dataformat ``name`` (``user/name/version``) under ``prefix``.

    ``prefix`` is a folder, a list of folders or a :class:`~papyflow.utils.Prefix`;
    the declaration is looked up as :func:`~papyflow.utils.hashed_or_simple`
    does, and a dataformat not found anywhere is placed under the first folder.
    The system prefix is *not* added here (a :class:`DataFormat` adds it to its
    search), so that writing through a Storage never lands in the package.

    Attributes ``fullname`` (``user/name/version``), ``username``, ``name``,
    ``version`` and ``prefix`` (a :class:`~papyflow.utils.Prefix`) describe it.

    Raises:
        ValueError: ``name`` is not ``user/name/version``.
    """

    asset_type = "dataformat"
    asset_folder = "dataformats"

    def __init__(self, prefix: PrefixLike, name: str) -> None:
        if not _is_name(name):
            raise ValueError(f"invalid dataformat name {name!r}: expected 'user/name/version'")
        self.prefix = Prefix(prefix)
        self.fullname = name
        self.username, self.name, self.version = name.split("/")
        declaration = hashed_or_simple(self.prefix, self.asset_folder, name, suffix=".json")
        super().__init__(declaration[: -len(".json")])
        for folder in self.prefix.paths:
            root = os.path.join(folder, self.asset_folder)
            if declaration.startswith(root + os.sep):
                self.root = root  # remove() keeps <prefix>/dataformats
                break

    def hash(self, description: str = "#description") -> str:
        """The 64-character hash of the declaration, its ``#description`` left out.

        See :func:`papyflow.hash.hashJSON`.
        """
        return super().hash(description)


@dataclass(frozen=True)
class _Array:
    """A resolved array field: its dimensions (0 = variable) and element type."""

    dimensions: tuple[int, ...]
    element: str | DataFormat


# A resolved field: a scalar type name, a dataformat (referenced or inline), or an array.
_Field: TypeAlias = "str | DataFormat | _Array"


def _show(value: Any) -> str:
    try:
        return json.dumps(value, cls=NumpyJSONEncoder)
    except (TypeError, ValueError):
        return repr(value)


def _field_name_problem(name: str) -> str | None:
    if not name.isidentifier():
        return "invalid field name: not a Python identifier"
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        return f"invalid field name: not in Unicode NFKC form (Python reads it as {normal!r})"
    if keyword.iskeyword(name):
        return "invalid field name: a Python keyword"
    if name.startswith("_"):
        return "invalid field name: names starting with '_' are reserved"
    if name in RESERVED_FIELD_NAMES:
        return f"invalid field name: {name!r} is an attribute of records"
    return None


def _search_prefix(prefix: PrefixLike) -> Prefix:
    """The user's folders, then the system dataformats."""
    search = Prefix(prefix)
    search.add(SYSTEM_PREFIX)
    return search


class DataFormat(Described):
    """A dataformat, loaded and checked, and the record class it defines.

    Args:
        prefix: where dataformats are looked up: a folder, a list of folders or
            a :class:`~papyflow.utils.Prefix`. The system prefix
            (:data:`papyflow.formats.SYSTEM_PREFIX`) is searched after it.
        data: a name ``user/name/version``, loaded from the prefix, or a dict
            declaring an anonymous dataformat (e.g. an analyzer's results).
        parent: ``(dataformat, field name)`` when this format is the inline
            object of that field; used to name it and to place its errors.
        dataformat_cache: a dict of dataformats already loaded, by name. A
            referenced or extended dataformat found there is used as it is,
            whatever prefix it came from; every named dataformat loaded is
            put in it (this one too, replacing an older entry). Refresh it
            yourself when the files change.

    A bad declaration never raises: :attr:`valid` becomes ``False`` and
    :attr:`errors` says what is wrong and where.

    Attributes:
        prefix: the :class:`~papyflow.utils.Prefix` searched, the system prefix last.
        storage: the :class:`Storage` of a named dataformat; ``None`` for an
            anonymous one or an invalid name.
        errors: the problems found, one message each.
        data: the declaration as given or read (a dict), or ``None`` when it
            could not be read.
        resolved: the fields only (no ``#`` keys), inherited fields first, with
            each referenced or inline dataformat replaced by its own
            ``resolved`` dict, and an array's element likewise.
        referenced: every named dataformat this one uses, directly or through
            others (references, ``#extends``, inline objects), by name.
        parent: as given.

    Raises:
        TypeError: ``data`` is neither a str nor a dict.
    """

    storage: Storage | None
    errors: list[str]
    data: dict[str, Any] | None
    resolved: dict[str, Any]
    referenced: dict[str, DataFormat]
    parent: tuple[DataFormat, str] | None

    description_key = "#description"
    kind = "dataformat"

    def __init__(self, prefix: PrefixLike, data: str | Mapping[str, Any],
                 parent: tuple[DataFormat, str] | None = None,
                 dataformat_cache: dict[str, DataFormat] | None = None) -> None:
        self._setup(prefix, data, parent, dataformat_cache, stack=())

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def _create(cls, prefix: PrefixLike, data: str | Mapping[str, Any],
                parent: tuple[DataFormat, str] | None, cache: dict[str, DataFormat],
                stack: tuple[str, ...]) -> DataFormat:
        """A DataFormat loaded while ``stack`` (names, outermost first) is loading."""
        new = cls.__new__(cls)
        new._setup(prefix, data, parent, cache, stack)
        return new

    def _setup(self, prefix: PrefixLike, data: str | Mapping[str, Any],
               parent: tuple[DataFormat, str] | None, cache: dict[str, DataFormat] | None,
               stack: tuple[str, ...]) -> None:
        self.prefix = _search_prefix(prefix)
        self.parent = parent
        self.storage = None
        self.errors = []
        self.data = None
        self.resolved = {}
        self.referenced = {}
        self._name: str | None = None
        self._cache: dict[str, DataFormat] = cache if cache is not None else {}
        self._extends: DataFormat | None = None
        self._fields: dict[str, _Field] = {}
        self._type: builtins.type[baseformat] | None = None
        self._documentation: str | None = None
        self._documentation_loaded = False
        self._found = True

        if isinstance(data, str):
            self._name = data
            if not _is_name(data):
                self.errors.append(
                    f"dataformat {data!r}: invalid name (expected 'user/name/version')")
                self._found = False
                return
            self.storage = Storage(self.prefix, data)
            try:
                declaration = self._read()
                if declaration is not None:
                    self.data = declaration
                    self._load(declaration, stack + (data,))
            finally:
                self._cache[data] = self
        elif isinstance(data, Mapping):
            declaration = copy.deepcopy(dict(data))
            self.data = declaration
            self._load(declaration, stack)
        else:
            raise TypeError("a dataformat is a name 'user/name/version' or a dict, "
                            f"not {type(data).__name__}")

    def _read(self) -> dict[str, Any] | None:
        """The declaration from the file, or ``None`` after noting why it cannot be had."""
        assert self.storage is not None
        if not self.storage.exists():
            self._found = False
            self._error(None, f"dataformat {self.name!r} not found "
                              f"(searched: {', '.join(self.prefix.paths)})")
            return None
        return load_declaration(self.storage.json.load, self._error)

    def _load(self, declaration: dict[str, Any], stack: tuple[str, ...]) -> None:
        """Check and resolve a declaration; ``stack`` holds the named formats loading."""
        fields: dict[str, Any] = {}
        for key, value in declaration.items():
            if not isinstance(key, str):
                self._error(None, f"field name {key!r} is not a string")
            elif key.startswith("#"):
                if key not in _METADATA:
                    self._error(self._path(key), "unknown metadata key (known: "
                                + ", ".join(_METADATA) + ")")
            else:
                fields[key] = value

        description = declaration.get("#description")
        if description is not None and not isinstance(description, str):
            self._error(self._path("#description"), "must be a string")
        version = declaration.get("#schema_version")
        if version is not None and (type(version) is not int or version < 1):
            self._error(self._path("#schema_version"),
                        f"must be an integer >= 1, not {_show(version)}")

        if "#extends" in declaration:
            base_name = declaration["#extends"]
            path = self._path("#extends")
            if not isinstance(base_name, str) or not _is_name(base_name):
                self._error(path, f"{_show(base_name)} is not a dataformat name "
                                  "'user/name/version'")
            else:
                base = self._reference(base_name, path, stack)
                if base is not None:
                    self._extends = base
                    if base.valid:
                        self._fields.update(base._fields)
                        self.resolved.update(copy.deepcopy(base.resolved))

        for key, value in fields.items():
            path = self._path(key)
            problem = _field_name_problem(key)
            if problem is not None:
                self._error(path, problem)
                continue
            if key in self._fields:
                assert self._extends is not None
                self._error(path, "redefines a field inherited from "
                                  f"{self._extends.name!r}")
                continue
            field = self._parse(key, value, stack)
            if field is not None:
                self._fields[key] = field
                self.resolved[key] = _resolve(field)

    def _parse(self, key: str, value: Any, stack: tuple[str, ...]) -> _Field | None:
        """The field ``key`` declared as ``value``, or ``None`` after noting the problem."""
        path = self._path(key)
        if isinstance(value, str):
            return self._parse_type_name(value, path, stack)
        if isinstance(value, Mapping):
            return self._inline(key, value, stack)
        if isinstance(value, list):
            return self._parse_array(key, value, stack)
        self._error(path, f"invalid type {_show(value)}: expected a type name, "
                          "an object or an array [d1, ..., dn, type]")
        return None

    def _parse_type_name(self, value: str, path: str,
                         stack: tuple[str, ...]) -> str | DataFormat | None:
        if value in SCALAR_TYPES:
            return value
        if _is_name(value):
            referenced = self._reference(value, path, stack)
            return referenced if referenced is not None and referenced.valid else None
        close = difflib.get_close_matches(value, sorted(SCALAR_TYPES), n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif "/" in value:
            hint = " (a dataformat name is 'user/name/version')"
        else:
            hint = ""
        self._error(path, f"unknown type {value!r}{hint}")
        return None

    def _parse_array(self, key: str, value: list[Any], stack: tuple[str, ...]) -> _Array | None:
        path = self._path(key)
        if len(value) < 2:
            self._error(path, f"invalid array {_show(value)}: an array is "
                              "[d1, ..., dn, type], at least one dimension and the element type")
            return None
        *dimensions, element = value
        good = True
        for position, dimension in enumerate(dimensions, start=1):
            if type(dimension) is not int or dimension < 0:
                self._error(path, f"invalid array {_show(value)}: dimension {position} is "
                                  f"{_show(dimension)}, dimensions are integers >= 0 "
                                  "(0 = variable)")
                good = False
        if len(dimensions) > _MAX_DIMENSIONS:
            self._error(path, f"invalid array: {len(dimensions)} dimensions, "
                              f"at most {_MAX_DIMENSIONS}")
            good = False
        if isinstance(element, list):
            self._error(path, f"invalid array {_show(value)}: the element type is a list; "
                              "give all dimensions in one list, [d1, d2, type]")
            return None
        if not isinstance(element, str | Mapping):
            self._error(path, f"invalid array {_show(value)}: no element type "
                              "(the last item must be a type)")
            return None
        if good and math.prod(d for d in dimensions if d) > MAX_ELEMENTS:
            self._error(path, f"invalid array {_show(value)}: more than 2**56 elements")
            good = False
        if not good:
            return None
        parsed: str | DataFormat | None
        if isinstance(element, str):
            parsed = self._parse_type_name(element, path, stack)
        else:
            parsed = self._inline(key, element, stack)
        if parsed is None:
            return None
        # the limit make_type sets: checked here so that a valid format always has a type
        # (the element's type is made only for an array this large)
        if math.prod(dimensions) > EMPTY_ELEMENT_LIMIT and isinstance(parsed, DataFormat) \
                and parsed.type._min_size == 0:
            self._error(path, f"invalid array {_show(value)}: an array of records that pack "
                              f"to zero bytes holds at most {EMPTY_ELEMENT_LIMIT} elements")
            return None
        return _Array(tuple(dimensions), parsed)

    def _inline(self, key: str, value: Mapping[str, Any],
                stack: tuple[str, ...]) -> DataFormat | None:
        """The inline object of field ``key``, loaded as an anonymous child format."""
        child = DataFormat._create(self.prefix, value, (self, key), self._cache, stack)
        self.errors.extend(child.errors)  # already placed: this file, 'key.field'
        self.referenced.update(child.referenced)
        return child if child.valid else None

    def _reference(self, name: str, path: str, stack: tuple[str, ...]) -> DataFormat | None:
        """Load the dataformat ``name`` used at field ``path``.

        Returns it (valid or not) when it was found, ``None`` when it was not or
        when using it would close a cycle; every problem is noted.
        """
        if name in stack:
            cycle = " -> ".join(stack[stack.index(name):] + (name,))
            self._error(path, f"cycle through dataformat references: {cycle}")
            return None
        referenced = self._cache.get(name)
        if referenced is None:
            referenced = DataFormat._create(self.prefix, name, None, self._cache, stack)
        if not referenced._found:
            self._error(path, f"dataformat {name!r} not found "
                              f"(searched: {', '.join(self.prefix.paths)})")
            return None
        self.referenced.update(referenced.referenced)
        self.referenced[name] = referenced
        for error in referenced.errors:
            self._error(path, f"dataformat {name!r} is invalid: {error}")
        return referenced

    def _path(self, key: str) -> str:
        """The field path of ``key`` from the top of the file (``meta.frame``)."""
        if self.parent is None or self.storage is not None:
            return key
        owner, field = self.parent
        return f"{owner._path(field)}.{key}"

    def _origin(self) -> str:
        """The file the declaration comes from (or the name of an anonymous root)."""
        if self.storage is not None:
            return self.storage.json.path
        if self.parent is not None:
            return self.parent[0]._origin()
        return self.name

    def _error(self, path: str | None, message: str) -> None:
        where = self._origin()
        self.errors.append(f"{where}: field {path!r}: {message}" if path else
                           f"{where}: {message}")

    # -- what it is --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``user/name/version``; for an anonymous format, its parent's name and field
        (``user/a/1.meta``), or :data:`UNNAMED` without a parent."""
        if self._name is not None:
            return self._name
        if self.parent is not None:
            owner, field = self.parent
            return f"{owner.name}.{field}"
        return UNNAMED

    @property
    def schema_version(self) -> int:
        """The ``#schema_version`` of the declaration; 1 when it does not say."""
        version = self.data.get("#schema_version", 1) if self.data else 1
        return version if type(version) is int else 1

    @property
    def extends(self) -> DataFormat | None:
        """The dataformat named by ``#extends``, or ``None``."""
        return self._extends

    @property
    def valid(self) -> bool:
        """Whether the declaration and everything it uses is correct."""
        return not self.errors

    def hash(self) -> str:
        """The 64-character hash of the declaration, its ``#description`` left out.

        It is :func:`papyflow.hash.hashJSON` of :attr:`data` with
        ``"#description"``: the documentation, descriptions and key order do
        not count. A referenced dataformat counts by its name only. For a
        dataformat read from a file it equals :meth:`Storage.hash`.

        Raises:
            RuntimeError: the declaration could not be read.
        """
        if self.data is None:
            raise RuntimeError(f"cannot hash dataformat {self.name!r}: "
                               f"its declaration did not load ({self.errors[0]})")
        return _hash.hashJSON(self.data, "#description")

    def isparent(self, other: DataFormat) -> bool:
        """Whether ``other`` extends this dataformat, directly or through others.

        ``a.isparent(b)`` is true when ``a`` is an ancestor of ``b`` in
        ``#extends`` chains (a format is not its own parent).
        """
        base = other.extends
        while base is not None:
            if base is self or (self._name is not None and base.name == self._name):
                return True
            base = base.extends
        return False

    @property
    def type(self) -> builtins.type[baseformat]:
        """The record class of this dataformat (a ``baseformat`` subclass), made once.

        Its fields are those of :attr:`resolved`, in order: inherited first,
        each referenced or inline dataformat as its own record class.

        Raises:
            RuntimeError: the dataformat is not valid.
        """
        if self._type is None:
            if not self.valid:
                raise RuntimeError(f"dataformat {self.name!r} is not valid: "
                                   + "; ".join(self.errors))
            spec = {name: _spec(field) for name, field in self._fields.items()}
            self._type = make_type(self.name, spec)
        return self._type

    def validate(self, data: Mapping[str, Any] | bytes | bytearray | memoryview | IO[bytes],
                 ) -> None:
        """Check that ``data`` is one complete record of this format; raise if not.

        ``data`` is a dict, which must give every field with a value that casts
        safely (``type.from_dict(data, casting='safe', add_defaults=False)``),
        or the bytes of one packed record, given as a bytes-like object or as a
        binary file object that is read to its end (bytes left over are an
        error). What the record class raises propagates: a
        :class:`~papyflow.formats.baseformat.FieldValueError` for a dict, a
        :class:`~papyflow.formats.baseformat.DecodeError` for bytes (both
        ``ValueError``).

        Raises:
            RuntimeError: the dataformat is not valid.
            TypeError: ``data`` is none of the above.
        """
        record_type = self.type
        if isinstance(data, Mapping):
            record_type.from_dict(data, casting="safe", add_defaults=False)
        elif isinstance(data, bytes | bytearray | memoryview):
            record_type.unpack(data)
        elif hasattr(data, "read"):
            blob = data.read()
            if not isinstance(blob, bytes):
                raise TypeError("validate() reads packed records from a binary file object, "
                                f"this one gave {type(blob).__name__}")
            record_type.unpack(blob)
        else:
            raise TypeError("validate() takes a dict, bytes or a binary file object, "
                            f"not {type(data).__name__}")

    # -- writing --------------------------------------------------------------------------------

    def json_dumps(self, indent: int = 4) -> str:
        """The declaration as JSON text, keys in their declared order.

        Raises:
            RuntimeError: the declaration could not be read.
        """
        if self.data is None:
            raise RuntimeError(f"dataformat {self.name!r} has no declaration to dump")
        return json.dumps(self.data, indent=indent, cls=NumpyJSONEncoder)

    def write(self, storage: Storage | None = None) -> None:
        """Write the declaration, and the documentation when there is one.

        Goes to :attr:`storage` unless another :class:`Storage` is given. Each
        file is written to a temporary name and renamed.

        Raises:
            RuntimeError: there is no declaration or nowhere to write (an
                anonymous format without ``storage``), or the target is one of
                the system dataformats, which are read-only.
        """
        if self.data is None:
            raise RuntimeError(f"dataformat {self.name!r} has no declaration to write")
        target = storage if storage is not None else self.storage
        if target is None:
            raise RuntimeError(f"anonymous dataformat {self.name!r}: pass a Storage to write to")
        system = os.path.realpath(SYSTEM_PREFIX) + os.sep
        if os.path.realpath(target.json.path).startswith(system):
            raise RuntimeError(f"system dataformat {self.name!r} is read-only: "
                               "export it to a prefix of yours to change it")
        target.save(self.json_dumps() + "\n", self.documentation)

    def export(self, prefix: PrefixLike) -> None:
        """Write this dataformat and every dataformat it uses into another prefix.

        Everything in :attr:`referenced` (references and ``#extends``, at any
        depth, system formats included) is written beside it, so the target
        prefix is self-contained. Files go under the first folder of
        ``prefix``; existing files of the same names are replaced.

        Raises:
            RuntimeError: the dataformat is anonymous or not valid, or
                ``prefix`` is one of the folders it was loaded from.
        """
        if self._name is None or self.storage is None:
            raise RuntimeError(f"anonymous dataformat {self.name!r} cannot be exported")
        if not self.valid:
            raise RuntimeError(f"dataformat {self.name!r} is not valid: "
                               + "; ".join(self.errors))
        target = self.prefix.export_folder(prefix, f"dataformat {self.name!r}")
        for name, referenced in self.referenced.items():
            referenced.write(Storage(target, name))
        self.write(Storage(target, self._name))

    def __repr__(self) -> str:
        state = "valid" if self.valid else f"{len(self.errors)} errors"
        return f"<DataFormat {self.name!r}, {state}>"


def _resolve(field: _Field) -> Any:
    if isinstance(field, str):
        return field
    if isinstance(field, DataFormat):
        return copy.deepcopy(field.resolved)
    return [*field.dimensions, _resolve(field.element)]


def _spec(field: _Field) -> Any:
    """A field as ``make_type`` takes it."""
    if isinstance(field, str):
        return field
    if isinstance(field, DataFormat):
        return field.type
    element = field.element if isinstance(field.element, str) else field.element.type
    return [*field.dimensions, element]

