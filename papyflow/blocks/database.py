"""Databases: the declared start of the dataflow, and the views that serve their data.

A database is stored under a prefix as two files, named ``name/version``::

    <prefix>/databases/<name>/<version>.json   the declaration
    <prefix>/databases/<name>/<version>.py     the view classes
    <prefix>/databases/<name>/<version>.rst    its documentation (optional)

The declaration lists *protocols*; each protocol lists *sets*; each set names
a view class of the code, the parameters given to it and its *outputs* (output
name -> dataformat name)::

    {
        "description": "Synthetic clients",
        "root_folder": "/data/raw",
        "protocols": [
            {"name": "main", "template": "train_eval", "sets": [
                {"name": "train", "template": "train", "view": "Train",
                 "parameters": {"clients": 3},
                 "outputs": {"client": "user/id/1", "sample": "user/vector/1"}}
            ]}
        ]
    }

How a set's data reaches a pipeline::

    Database ──view(protocol, set)──► Runner (holds one View instance)
                                        │ index(file): View.index() once, cached as JSON
                                        │ setup(file, start, end): View.setup(..., objs, ...)
                                        ▼
    DatabaseOutputDataSource(runner, output) ── units (record, start, end) ──► inputs
                 │ units: runs of equal values of the output's field over the index
                 └ record of unit (start, end): runner.get(output, start)

:class:`Database` loads and checks a declaration. It never raises for a bad
one: :attr:`Database.valid` becomes ``False`` and :attr:`Database.errors`
holds one message per problem, naming the file and the field path
(``".../db/1.json: field 'protocols[0].sets[1].outputs.image': unknown
dataformat 'user/imge/1' ..."``). Loading never runs the database's code:
view classes are looked up by reading the code, not by executing it.

:class:`View` is the base of the view classes and states their conventions;
:class:`Runner` drives one view; :class:`DatabaseTester` checks a view while
it is written. ``docs/blocks.md`` walks through writing one.
"""

from __future__ import annotations

import abc
import ast
import builtins
import collections
import difflib
import itertools
import json
import os
import re
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .. import hash as _hash
from .._declarations import Described, load_declaration
from ..dataflow._indices import equal_value_ranges, mixDataIndices
from ..dataflow.data import DatabaseOutputDataSource, data_index_db_path
from ..formats.dataformat import DataFormat
from ..utils import CodeStorage, File, NumpyJSONEncoder, Prefix, hashed_or_simple
from . import loader
from ._asset import is_name
from .errors import BlockError

__all__ = [
    "Database",
    "DatabaseTester",
    "Runner",
    "Storage",
    "View",
    "ViewDefinition",
]

PrefixLike: TypeAlias = "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Prefix"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*/[0-9]+")
_PART_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # protocols and sets
_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TOP_KEYS = ("description", "root_folder", "protocols", "schema_version", "language",
             "environment", "direct_rawdata_access")
_PROTOCOL_KEYS = ("name", "template", "sets", "description")
_SET_KEYS = ("name", "template", "view", "parameters", "outputs", "description")

_INDEX_FORMAT = "papyflow-view-index"
_INDEX_VERSION = 1


def _is_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _show(value: Any) -> str:
    try:
        return json.dumps(value, cls=NumpyJSONEncoder)
    except (TypeError, ValueError):
        return repr(value)


def _hint(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


# -- storage -------------------------------------------------------------------------------


class Storage(CodeStorage):
    """The files of the database ``name`` (``name/version``) under ``prefix``.

    ``prefix`` is a folder, a list of folders or a :class:`~papyflow.utils.Prefix`;
    the declaration is looked up as :func:`~papyflow.utils.hashed_or_simple`
    does, and a database not found anywhere is placed under the first folder.
    The code is ``<version>.py`` beside the declaration (the language of a
    declaration that names another one decides the extension, see
    :class:`~papyflow.utils.CodeStorage`).

    Attributes ``fullname`` (``name/version``), ``name``, ``version`` and
    ``prefix`` (a :class:`~papyflow.utils.Prefix`) describe it.

    Raises:
        ValueError: ``name`` is not ``name/version``.
    """

    asset_type = "database"
    asset_folder = "databases"

    def __init__(self, prefix: PrefixLike, name: str) -> None:
        if not _is_name(name):
            raise ValueError(f"invalid database name {name!r}: expected 'name/version'")
        self.prefix = Prefix(prefix)
        self.fullname = name
        self.name, self.version = name.split("/")
        declaration = hashed_or_simple(self.prefix, self.asset_folder, name, suffix=".json")
        super().__init__(declaration[: -len(".json")])
        for folder in self.prefix.paths:
            root = os.path.join(folder, self.asset_folder)
            if declaration.startswith(root + os.sep):
                self.root = root  # remove() keeps <prefix>/databases
                break


# -- reading the declaration -----------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _bound_names(statements: Iterable[ast.stmt], names: set[str]) -> bool:
    """Add the names bound at module level by ``statements``; ``False`` after a
    ``from ... import *``, which may bind anything."""
    complete = True
    for node in statements:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    complete = False
                else:
                    names.add(alias.asname or alias.name)
        else:  # compound statements at module level (if, try, with, for, while)
            for body in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, body, None)
                if inner:
                    complete &= _bound_names(inner, names)
    return complete


# -- views ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=True)
class ViewDefinition:
    """What a :class:`Runner` needs to know of one set of a database.

    Attributes:
        database: the database's name, ``name/version``.
        protocol: the protocol's name.
        set: the set's name.
        view: the name of the view class in the database's code.
        parameters: the set's ``parameters`` (a dict; empty when not declared).
        outputs: output name -> dataformat name, in declared order.
        template: the set's ``template``, or ``None``.
    """

    database: str
    protocol: str
    set: str
    view: str
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    template: str | None = None

    __hash__ = None  # type: ignore[assignment]  # holds dicts

    @property
    def label(self) -> str:
        """``database protocol/set`` (or the database part alone), for messages."""
        if self.protocol or self.set:
            return f"{self.database} {self.protocol}/{self.set}"
        return self.database


class View(abc.ABC):
    """The base of database views: a view turns raw data into the units of its outputs.

    A view class is written in a database's code, one per kind of set, and
    implements two methods; the :class:`Runner` calls them.

    :meth:`index` describes the data: it returns a list of named tuples, one
    *entry* per smallest piece of data, ordered so that entries that share the
    value of a coarse output are consecutive. The position of an entry in
    that list is its *data index*. For three samples of two clients::

        Entry = collections.namedtuple("Entry", ["client", "sample", "path"])

        def index(self, root_folder, parameters):
            return [Entry(1, 10, "c1/a.png"), Entry(1, 11, "c1/b.png"),
                    Entry(2, 20, "c2/a.png")]

    Each output follows one field of the entries (the field named like the
    output, unless :meth:`get_output_mapping` says otherwise), and its data
    units are the runs of consecutive entries with equal values of that
    field: above, ``client`` has two units, data indices ``0..1`` and
    ``2..2``, and ``sample`` three, one per entry. Hence the conventions:

    * sort the entries so that equal values of a coarse field are together
      (all of client 1, then all of client 2): a value that comes back later
      starts a new unit;
    * give a fine output a field whose value changes at every entry (an id),
      otherwise two neighbouring entries with equal values merge into one unit;
    * keep entries small and JSON-friendly: strings, numbers, booleans, lists
      and dicts of them. Store file paths, never the data itself. The index is
      cached as JSON, and the view always gets it back as read from that
      cache (tuples come back as lists).

    :meth:`get` gives the data: ``get(output, index)`` returns the record of
    ``output`` for the unit that starts at data index ``index``, as a dict of
    the fields of the output's dataformat (or a record of that format). The
    entries are in ``self.objs``, set by :meth:`setup`.

    Attributes set by :meth:`setup`: ``root_folder``, ``parameters``,
    ``objs`` (the whole index), ``start_index`` and ``end_index`` (the data
    indices that will be read, both included).
    """

    root_folder: str | None
    parameters: dict[str, Any]
    objs: list[Any]
    start_index: int
    end_index: int

    @abc.abstractmethod
    def index(self, root_folder: str | None, parameters: dict[str, Any]) -> list[Any]:
        """Return the entries of the view: a list of named tuples (see the class).

        Args:
            root_folder: where the database's raw data lies (``None`` when the
                declaration gives none).
            parameters: the set's declared ``parameters``.
        """

    def setup(self, root_folder: str | None, parameters: dict[str, Any], objs: list[Any],
              start_index: int | None = None, end_index: int | None = None) -> bool:
        """Get ready to serve data; return ``True`` on success.

        Keeps its arguments as attributes. ``objs`` is the whole index and data
        indices are positions in it, whatever ``start_index`` and ``end_index``
        are: those only say which part will be read (``None``: from the first
        entry, to the last), for a view that wants to prepare no more than
        that. An override should call this one (or set the same attributes).
        """
        self.root_folder = root_folder
        self.parameters = parameters
        self.objs = objs
        self.start_index = 0 if start_index is None else start_index
        self.end_index = len(objs) - 1 if end_index is None else end_index
        return True

    @abc.abstractmethod
    def get(self, output: str, index: int) -> Any:
        """Return the data of ``output`` for the unit starting at data index ``index``.

        A dict of the fields of the output's dataformat, or a record of it.
        """

    def get_output_mapping(self, output: str) -> str:
        """The field of the index entries that ``output`` follows: ``output`` itself
        unless overridden."""
        return output


def _json_text(value: Any) -> str:
    return json.dumps(value, cls=NumpyJSONEncoder, allow_nan=True)


def _json_value(value: Any) -> Any:
    """``value`` as it comes back from JSON."""
    return json.loads(_json_text(value))


class Runner:
    """Drives one view of a database: indexes it, sets it up, gets its data.

    Args:
        module: the database's code, loaded (:func:`papyflow.blocks.loader.load_module`);
            any object with the view class as an attribute will do.
        definition: the set to serve (:meth:`Database.view_definition`).
        prefix: where the outputs' dataformats are looked up.
        root_folder: where the raw data lies, given to the view.
        exc: an exception class: an exception raised by the view's code, or a
            view that breaks its conventions, is reported as ``exc``, named
            after the view, the method and with the original traceback (see
            :func:`papyflow.blocks.loader.run`); by default a
            :class:`~papyflow.blocks.errors.BlockError`.
        *args, **kwargs: given to the view class when it is instantiated.

    Raises:
        ``exc``: the module has no such view class, or instantiating it raised.

    A Runner is used in this order: :meth:`index` (optional: :meth:`setup`
    calls it), :meth:`setup`, then :meth:`get` or a
    :class:`~papyflow.dataflow.data.DatabaseOutputDataSource` per output.
    """

    def __init__(self, module: Any, definition: ViewDefinition, prefix: Any,
                 root_folder: str | None, exc: type[Exception] | None = None,
                 *args: Any, **kwargs: Any) -> None:
        self.definition = definition
        self.prefix = prefix
        self.root_folder = root_folder
        self.exc = exc
        self.ready = False
        self.objs: list[Any] | None = None
        self.start_index = 0
        self.end_index = -1
        self._index_file: str | None = None
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        if not isinstance(getattr(module, definition.view, None), type):
            where = getattr(module, "__file__", None) or getattr(module, "__name__", "its code")
            raise self._fail(f"no view class {definition.view!r} in {where}", "<module>")
        self.obj = loader.run(module, definition.view, exc, *args, **kwargs)

    @property
    def name(self) -> str:
        """``database protocol/set``."""
        return self.definition.label

    @property
    def parameters(self) -> dict[str, Any]:
        """The set's parameters, given to the view."""
        return self.definition.parameters

    @property
    def outputs(self) -> dict[str, str]:
        """Output name -> dataformat name."""
        return self.definition.outputs

    def _fail(self, message: str, method: str) -> Exception:
        """The error for a view that broke a rule of the view API in ``method``."""
        block = f"database view {self.name} ({self.definition.view})"
        message = f"{block}: {message}"
        exc = self.exc or BlockError
        if issubclass(exc, BlockError):
            return exc(message, block=block, method=method)
        return exc(message)

    # -- the index ----------------------------------------------------------------------------

    def _source(self) -> dict[str, Any]:
        return {"database": self.definition.database, "protocol": self.definition.protocol,
                "set": self.definition.set, "view": self.definition.view,
                "parameters": _json_value(self.parameters)}

    def index(self, filename: str | os.PathLike[str]) -> list[Any]:
        """The view's index, computed once and cached in the file ``filename``.

        When ``filename`` exists, the index is read from it and the view's
        ``index()`` is not called. Otherwise ``index(root_folder, parameters)``
        is called, its entries are checked (named tuples, all with the same
        fields, JSON values) and written to ``filename`` atomically (to a
        temporary name renamed over it, so a reader never sees half a file).
        Either way the entries returned, and kept for :meth:`setup`, are those
        read back from the JSON text.

        The file records which database, protocol, set, view class and
        parameters it was made for; name it after the database's hash (which
        covers its code) so that a change to the view makes a new file.

        Raises:
            ValueError: the file is not an index file, or was made for another
                view or other parameters.
            ``exc``: the view's ``index()`` raised, or returned something else
                than a list of named tuples of JSON values.
        """
        path = os.fspath(filename)
        if self.objs is not None and self._index_file == path:
            return self.objs
        if os.path.exists(path):
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
        else:
            entries = loader.run(self.obj, "index", self.exc, self.root_folder,
                                 self.parameters)
            text = self._encode(entries)
            File(path).save(text)
        self.objs = self._decode(text, path)
        self._index_file = path
        self._ranges.clear()
        return self.objs

    def _encode(self, entries: Any) -> str:
        """The index file's text for the view's entries."""
        if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Iterable):
            raise self._fail("index() must return a list of named tuples, not "
                             f"{type(entries).__name__}", "index")
        entries = list(entries)
        fields: tuple[str, ...] = ()
        typename = "Entry"
        rows: list[str] = []
        for position, entry in enumerate(entries):
            entry_fields = getattr(entry, "_fields", None)
            if not isinstance(entry, tuple) or not isinstance(entry_fields, tuple):
                raise self._fail(f"index() entry {position} is a {type(entry).__name__}, "
                                 "not a named tuple", "index")
            if position == 0:
                fields, typename = entry_fields, type(entry).__name__
            elif entry_fields != fields:
                raise self._fail(f"index() entry {position} has the fields "
                                 f"{list(entry_fields)}, entry 0 has {list(fields)}: every "
                                 "entry must have the same fields", "index")
            try:
                rows.append(_json_text(list(entry)))
            except (TypeError, ValueError):
                for name, value in zip(fields, entry, strict=True):
                    try:
                        _json_text(value)
                    except (TypeError, ValueError):
                        raise self._fail(f"index() entry {position}, field {name!r}: a "
                                         f"{type(value).__name__} is not a JSON value (store "
                                         "a path or an id, not the data)", "index") from None
                raise
        header = {"format": _INDEX_FORMAT, "version": _INDEX_VERSION, "source": self._source(),
                  "type": typename, "fields": list(fields)}
        # One entry per line: the file stays readable and diffable.
        text = _json_text(header)[:-1] + ', "entries": [\n'
        return text + ",\n".join(rows) + "\n]}\n"

    def _decode(self, text: str, path: str) -> list[Any]:
        """The entries of an index file, as named tuples."""
        try:
            content = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: not a view index file: invalid JSON ({error})") from None
        if not isinstance(content, dict) or content.get("format") != _INDEX_FORMAT:
            raise ValueError(f"{path}: not a view index file")
        if content.get("version") != _INDEX_VERSION:
            raise ValueError(f"{path}: view index version {_show(content.get('version'))}, "
                             f"this papyflow reads version {_INDEX_VERSION}")
        source = content.get("source")
        if source != self._source():
            raise ValueError(f"{path}: this index was made for {_show(source)}, not for "
                             f"{_show(self._source())}: give each view its own index file")
        fields, typename, rows = content.get("fields"), content.get("type"), content.get("entries")
        if not (isinstance(fields, list) and all(isinstance(f, str) and f.isidentifier()
                                                 for f in fields)
                and isinstance(typename, str) and typename.isidentifier()
                and isinstance(rows, list)):
            raise ValueError(f"{path}: a damaged view index file (fields, type or entries)")
        entry_type = collections.namedtuple(typename, fields)  # type: ignore[misc]
        entries = []
        for position, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(fields):
                raise ValueError(f"{path}: entry {position} is not a list of "
                                 f"{len(fields)} values")
            entries.append(entry_type(*row))
        return entries

    def _adopt(self, entries: list[Any], filename: str) -> None:
        """Take ``entries`` as the index read from ``filename`` (for a tester that
        runs one view many times and indexes it once)."""
        self.objs = entries
        self._index_file = filename
        self._ranges.clear()

    def objects(self) -> list[Any]:
        """The index entries (named tuples), in data-index order.

        Raises:
            RuntimeError: neither :meth:`index` nor :meth:`setup` was called.
        """
        if self.objs is None:
            raise RuntimeError(f"database view {self.name}: call index(filename) or "
                               "setup(filename) first")
        return self.objs

    # -- serving data -------------------------------------------------------------------------

    def setup(self, filename: str | os.PathLike[str], start_index: int | None = None,
              end_index: int | None = None) -> bool:
        """Get the view ready: read (or compute) its index, then call its ``setup``.

        Args:
            filename: the index file (see :meth:`index`).
            start_index: the first data index that will be read (``None``: 0).
            end_index: the last one (``None``: the last entry).

        Returns:
            ``True``.

        Raises:
            IndexError: the range is not within the index.
            ``exc``: the view's ``setup`` raised or did not return ``True``;
                or as :meth:`index`.
        """
        self.ready = False
        objs = self.index(filename)
        first = 0 if start_index is None else int(start_index)
        last = len(objs) - 1 if end_index is None else int(end_index)
        if objs and not 0 <= first <= last < len(objs):
            raise IndexError(f"database view {self.name}: data indices {first}..{last} are "
                             f"not within its index, 0..{len(objs) - 1}")
        done = loader.run(self.obj, "setup", self.exc, self.root_folder, self.parameters,
                          objs, start_index, end_index)
        if not done:
            raise self._fail(f"setup() returned {done!r}; it returns True once the view is "
                             "ready", "setup")
        self.start_index, self.end_index = first, last
        self.ready = True
        return True

    def get(self, output: str, index: int) -> Any:
        """What the view gives for ``output`` at the unit starting at data index ``index``.

        Raises:
            RuntimeError: the runner is not set up.
            KeyError: ``output`` is not an output of the set.
            IndexError: ``index`` is not a data index of the view.
            ``exc``: the view's ``get`` raised.
        """
        if not self.ready or self.objs is None:
            raise RuntimeError(f"database view {self.name}: call setup(filename) first")
        if output not in self.outputs:
            raise KeyError(f"database view {self.name} has no output {output!r} "
                           f"(outputs: {', '.join(self.outputs)})")
        if not 0 <= index < len(self.objs):
            raise IndexError(f"database view {self.name}: data index {index} is outside "
                             f"0..{len(self.objs) - 1}")
        return loader.run(self.obj, "get", self.exc, output, index)

    def get_output_mapping(self, output: str) -> str:
        """The field of the index entries that ``output`` follows (asked of the view).

        A view without the method (one that does not derive from :class:`View`)
        maps every output to the field of the same name.

        Raises:
            ``exc``: the view's method raised, or its answer is not a string.
        """
        if getattr(type(self.obj), "get_output_mapping", None) is None:
            return output
        field_name = loader.run(self.obj, "get_output_mapping", self.exc, output)
        if not isinstance(field_name, str):
            raise self._fail(f"get_output_mapping({output!r}) returned {_show(field_name)}, "
                             "not a field name", "get_output_mapping")
        return field_name

    def data_indices(self, output: str) -> list[tuple[int, int]]:
        """The ``(start, end)`` ranges of the units of ``output``: the runs of
        consecutive entries with equal values of its field (see :class:`View`).

        Raises:
            RuntimeError: the index is not read yet.
            KeyError: ``output`` is not an output of the set.
            ``exc``: the entries have no such field.
        """
        if output not in self.outputs:
            raise KeyError(f"database view {self.name} has no output {output!r} "
                           f"(outputs: {', '.join(self.outputs)})")
        if output not in self._ranges:
            entries = self.objects()
            field_name = self.get_output_mapping(output)
            if entries and field_name not in entries[0]._fields:
                raise self._fail(f"output {output!r} follows the field {field_name!r}, which "
                                 "the index entries do not have (fields: "
                                 f"{', '.join(entries[0]._fields)})", "get_output_mapping")
            values = [getattr(entry, field_name) for entry in entries]
            self._ranges[output] = [(int(s), int(e)) for s, e in equal_value_ranges(values)]
        return list(self._ranges[output])

    def save_data_indices(self, output: str, cache_root: str, hash_path: str) -> str:
        """Write the ranges of ``output``'s units where
        :func:`~papyflow.dataflow.data.load_data_index_db` reads them; return the path.

        The file is :func:`~papyflow.dataflow.data.data_index_db_path` of
        ``(cache_root, hash_path)``, written atomically.
        """
        path = data_index_db_path(cache_root, hash_path)
        File(path).save(json.dumps([list(r) for r in self.data_indices(output)]) + "\n")
        return path

    def __repr__(self) -> str:
        state = "ready" if self.ready else "not set up"
        return f"<Runner of database view {self.name} ({self.definition.view}), {state}>"


# -- the database ------------------------------------------------------------------------------


class Database(Described):
    """A database declaration, loaded and checked, and the views of its sets.

    Args:
        prefix: where the database and its outputs' dataformats are looked up:
            a folder, a list of folders or a :class:`~papyflow.utils.Prefix`.
        name: ``name/version``.
        dataformat_cache: a dict of dataformats already loaded, by name; a
            dataformat found there is used as it is, and those loaded are put
            in it. Refresh it yourself when the files change.

    A bad declaration never raises: :attr:`valid` becomes ``False`` and
    :attr:`errors` says what is wrong and where. Checked: the structure
    (protocols, sets, their keys and types), duplicate names and JSON keys,
    the outputs' dataformats, the code file, and that each set's view class
    is defined in it (read, not run).

    Attributes:
        prefix: the :class:`~papyflow.utils.Prefix` searched.
        storage: the :class:`Storage`; ``None`` for an invalid name.
        errors: the problems found, one message each.
        data: the declaration (a dict), or ``None`` when it could not be read.
        code: the code (text), or ``None`` when it could not be read.
        dataformats: the outputs' dataformats that loaded, by name.
    """

    storage: Storage | None
    errors: list[str]
    data: dict[str, Any] | None
    code: str | None
    dataformats: dict[str, DataFormat]

    kind = "database"

    def __init__(self, prefix: PrefixLike, name: str,
                 dataformat_cache: dict[str, DataFormat] | None = None) -> None:
        self.prefix = Prefix(prefix)
        self._name = name
        self.storage = None
        self.errors = []
        self.data = None
        self.code = None
        self.dataformats = {}
        self._cache = dataformat_cache if dataformat_cache is not None else {}
        self._protocols: dict[str, dict[str, Any]] = {}
        self._sets: dict[str, dict[str, dict[str, Any]]] = {}
        self._module: Any = None
        self._documentation: str | None = None
        self._documentation_loaded = False
        if not _is_name(name):
            self.errors.append(f"database {name!r}: invalid name (expected 'name/version')")
            return
        self.storage = Storage(self.prefix, name)
        declaration = self._read()
        if declaration is None:
            return
        self.data = declaration
        self._read_code()
        self._load(declaration)

    # -- loading -----------------------------------------------------------------------------

    def _where(self) -> str:
        return self.storage.json.path if self.storage is not None else self._name

    def _error(self, path: str | None, message: str) -> None:
        where = self._where()
        self.errors.append(f"{where}: field {path!r}: {message}" if path else
                           f"{where}: {message}")

    def _read(self) -> dict[str, Any] | None:
        assert self.storage is not None
        if not self.storage.json.exists():
            self._error(None, f"database {self._name!r} not found "
                              f"(searched: {', '.join(self.prefix.paths)})")
            return None
        return load_declaration(self.storage.json.load, self._error)

    def _read_code(self) -> None:
        assert self.storage is not None
        path = self.storage.code.path
        try:
            with open(path, "rb") as stream:
                raw = stream.read()
        except FileNotFoundError:
            self._error(None, f"the code file is missing: {path}")
            return
        except OSError as error:
            self.errors.append(f"{path}: cannot read: {error.strerror or error}")
            return
        try:
            self.code = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.errors.append(f"{path}: not UTF-8 text")

    def _code_names(self) -> builtins.set[str] | None:
        """The names the code binds at module level; ``None`` when they cannot be
        known (no code, invalid code, a star import)."""
        if self.code is None or self.storage is None:
            return None
        path = self.storage.code.path
        try:
            tree = ast.parse(self.code, filename=path)
        except SyntaxError as error:
            where = f"line {error.lineno}: " if error.lineno else ""
            self.errors.append(f"{path}: {where}{type(error).__name__}: {error.msg}")
            return None
        except ValueError as error:  # null bytes
            self.errors.append(f"{path}: {error}")
            return None
        names: builtins.set[str] = builtins.set()
        return names if _bound_names(tree.body, names) else None

    def _check_keys(self, value: dict[str, Any], known: Sequence[str], path: str) -> None:
        for key in value:
            if key not in known:
                self._error(_join(path, key), "unknown key" + _hint(key, known))

    def _string(self, value: dict[str, Any], key: str, path: str, required: bool = False,
                pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        """``value[key]`` when it is a (well-formed) string; notes the problem otherwise."""
        where = _join(path, key)
        if key not in value:
            if required:
                self._error(where, "missing")
            return None
        text = value[key]
        if not isinstance(text, str):
            self._error(where, f"must be a string, not {_show(text)}")
            return None
        if pattern is not None and pattern.fullmatch(text) is None:
            self._error(where, f"invalid {what} {text!r}")
            return None
        return text

    def _load(self, declaration: dict[str, Any]) -> None:
        self._check_keys(declaration, _TOP_KEYS, "")
        self._string(declaration, "description", "")
        self._string(declaration, "root_folder", "")
        version = declaration.get("schema_version", 1)
        if type(version) is not int or version < 1:
            self._error("schema_version", f"must be an integer >= 1, not {_show(version)}")
        language = declaration.get("language", "python")
        if language != "python":
            self._error("language", f"views are written in Python; {_show(language)} is "
                                    "not supported")
        environment = declaration.get("environment")
        if environment is not None and not (
                isinstance(environment, dict)
                and all(isinstance(environment.get(k), str) for k in ("name", "version"))):
            self._error("environment", 'must be an object {"name": ..., "version": ...} '
                                       f"of strings, not {_show(environment)}")
        names = self._code_names()
        protocols = declaration.get("protocols")
        if protocols is None:
            self._error("protocols", "missing")
            return
        if not isinstance(protocols, list) or not protocols:
            self._error("protocols", "must be a non-empty list of protocols, "
                                     f"not {_show(protocols)}")
            return
        seen: dict[str, str] = {}
        for position, protocol in enumerate(protocols):
            path = f"protocols[{position}]"
            if not isinstance(protocol, dict):
                self._error(path, f"a protocol is an object, not {_show(protocol)}")
                continue
            self._check_keys(protocol, _PROTOCOL_KEYS, path)
            name = self._string(protocol, "name", path, required=True, pattern=_PART_NAME,
                                what="protocol name")
            self._string(protocol, "template", path)
            self._string(protocol, "description", path)
            accepted = None  # the name its sets are kept under, once it is known to be good
            if name is not None:
                if name in seen:
                    self._error(_join(path, "name"), f"protocol {name!r} is already declared "
                                                     f"at {seen[name]}")
                else:
                    seen[name] = path
                    self._protocols[name] = protocol
                    self._sets[name] = {}
                    accepted = name
            self._load_sets(protocol, path, accepted, names)

    def _load_sets(self, protocol: dict[str, Any], path: str, protocol_name: str | None,
                   names: builtins.set[str] | None) -> None:
        sets = protocol.get("sets")
        if sets is None:
            self._error(_join(path, "sets"), "missing")
            return
        if not isinstance(sets, list) or not sets:
            self._error(_join(path, "sets"), f"must be a non-empty list of sets, not {_show(sets)}")
            return
        seen: dict[str, str] = {}
        for position, item in enumerate(sets):
            where = f"{path}.sets[{position}]"
            if not isinstance(item, dict):
                self._error(where, f"a set is an object, not {_show(item)}")
                continue
            self._check_keys(item, _SET_KEYS, where)
            name = self._string(item, "name", where, required=True, pattern=_PART_NAME,
                                what="set name")
            self._string(item, "template", where)
            self._string(item, "description", where)
            view = self._string(item, "view", where, required=True, pattern=_IDENTIFIER,
                                what="view class name")
            if view is not None and names is not None and view not in names:
                assert self.storage is not None
                defined = sorted(n for n in names if n[:1].isupper())
                self._error(_join(where, "view"), f"class {view!r} is not defined in "
                            f"{self.storage.code.path}" + (_hint(view, defined) if defined
                                                           else ""))
            parameters = item.get("parameters", {})
            if not isinstance(parameters, dict):
                self._error(_join(where, "parameters"), "must be an object, not "
                                                        f"{_show(parameters)}")
            self._load_outputs(item, where)
            if name is not None:
                if name in seen:
                    self._error(_join(where, "name"), f"set {name!r} is already declared at "
                                                      f"{seen[name]}")
                elif protocol_name is not None:
                    seen[name] = where
                    self._sets[protocol_name][name] = item

    def _load_outputs(self, item: dict[str, Any], path: str) -> None:
        where = _join(path, "outputs")
        outputs = item.get("outputs")
        if outputs is None:
            self._error(where, "missing")
            return
        if not isinstance(outputs, dict) or not outputs:
            self._error(where, "must be a non-empty object {output name: dataformat name}, "
                               f"not {_show(outputs)}")
            return
        for output, dataformat_name in outputs.items():
            at = _join(where, output)
            if _OUTPUT_NAME.fullmatch(output) is None:
                self._error(at, "invalid output name: letters, digits, '_' and '-', "
                                "not starting with a digit")
            if not is_name(dataformat_name):
                self._error(at, f"must be a dataformat name 'user/name/version', "
                                f"not {_show(dataformat_name)}")
                continue
            self._dataformat(dataformat_name, at)

    def _dataformat(self, name: str, path: str) -> None:
        """Load the output dataformat ``name``, noting its problems at field ``path``."""
        dataformat = self.dataformats.get(name) or self._cache.get(name)
        if dataformat is None:
            dataformat = DataFormat(self.prefix, name, dataformat_cache=self._cache)
        if dataformat.valid:
            self.dataformats[name] = dataformat
            return
        if dataformat.storage is None or not dataformat.storage.exists():
            self._error(path, f"unknown dataformat {name!r} (searched: "
                              f"{', '.join(dataformat.prefix.paths)})")
        else:
            for error in dataformat.errors:
                self._error(path, f"dataformat {name!r} is invalid: {error}")

    # -- what it is --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``name/version``."""
        return self._name

    @property
    def valid(self) -> bool:
        """Whether the declaration, its code and its dataformats are correct."""
        return not self.errors

    @property
    def schema_version(self) -> int:
        """The declaration's ``schema_version``; 1 when it does not say."""
        version = self.data.get("schema_version", 1) if self.data else 1
        return version if type(version) is int else 1

    @property
    def language(self) -> str:
        """The language of the views' code: ``python``."""
        return "python"

    @property
    def root_folder(self) -> str | None:
        """The declared ``root_folder``, or ``None``."""
        folder = self.data.get("root_folder") if self.data else None
        return folder if isinstance(folder, str) else None

    @property
    def environment(self) -> dict[str, str] | None:
        """The declared run ``environment`` (``{"name": ..., "version": ...}``), or ``None``."""
        environment = self.data.get("environment") if self.data else None
        return environment if isinstance(environment, dict) else None

    def hash(self) -> str:
        """The 64-character hash of the declaration (its ``description`` left out)
        and of the code.

        It is ``hash({"code": hash(code bytes), "declaration": hashJSON(data,
        "description")})`` in terms of :mod:`papyflow.hash`, which for a
        database read from files equals :meth:`Storage.hash`: editing the
        description or the documentation keeps it, any change to the
        declaration's content or to the code changes it.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        if self.data is None or self.code is None:
            raise RuntimeError(f"cannot hash database {self.name!r}: "
                               f"it did not load ({self.errors[0]})")
        return _hash.hash({"code": _hash.hash(self.code.encode("utf-8")),
                           "declaration": _hash.hashJSON(self.data, "description")})

    # -- protocols and sets ---------------------------------------------------------------------

    @property
    def protocols(self) -> dict[str, dict[str, Any]]:
        """The declarations of the protocols, by name, in declared order."""
        return dict(self._protocols)

    @property
    def protocol_names(self) -> list[str]:
        """The names of the protocols, in declared order."""
        return list(self._protocols)

    def protocol(self, name: str) -> dict[str, Any]:
        """The declaration of the protocol ``name``.

        Raises:
            KeyError: there is no such protocol.
        """
        try:
            return self._protocols[name]
        except KeyError:
            raise KeyError(f"database {self.name!r} has no protocol {name!r} "
                           f"(protocols: {', '.join(self._protocols) or 'none'})") from None

    def sets(self, protocol: str) -> dict[str, dict[str, Any]]:
        """The declarations of the sets of ``protocol``, by name, in declared order.

        Raises:
            KeyError: there is no such protocol.
        """
        self.protocol(protocol)
        return dict(self._sets[protocol])

    def set_names(self, protocol: str) -> list[str]:
        """The names of the sets of ``protocol``, in declared order.

        Raises:
            KeyError: there is no such protocol.
        """
        return list(self.sets(protocol))

    def set(self, protocol: str, name: str) -> dict[str, Any]:
        """The declaration of the set ``name`` of ``protocol``.

        Raises:
            KeyError: there is no such protocol or set.
        """
        sets = self.sets(protocol)
        try:
            return sets[name]
        except KeyError:
            raise KeyError(f"database {self.name!r}, protocol {protocol!r} has no set "
                           f"{name!r} (sets: {', '.join(sets) or 'none'})") from None

    def view_definition(self, protocol_name: str, set_name: str) -> ViewDefinition:
        """What the view of a set needs: its class name, parameters and outputs.

        Raises:
            KeyError: there is no such protocol or set.
        """
        declared = self.set(protocol_name, set_name)
        parameters = declared.get("parameters", {})
        outputs = declared.get("outputs", {})
        template = declared.get("template")
        return ViewDefinition(
            database=self.name, protocol=protocol_name, set=set_name,
            view=str(declared.get("view", "")),
            parameters=dict(parameters) if isinstance(parameters, dict) else {},
            outputs={k: v for k, v in outputs.items() if isinstance(v, str)}
            if isinstance(outputs, dict) else {},
            template=template if isinstance(template, str) else None)

    def _load_module(self) -> Any:
        if self._module is None:
            assert self.storage is not None
            module_name = "database_" + re.sub(r"\W", "_", self.name)
            self._module = loader.load_module(module_name, self.storage.code.path, {})
        return self._module

    def view(self, protocol: str, name: str, exc: type[Exception] | None = None,
             root_folder: str | None = None) -> Runner:
        """A :class:`Runner` of the view of set ``name`` of ``protocol``, not set up yet.

        The code is loaded (once per Database) and the view class instantiated.

        Args:
            protocol: the protocol's name.
            name: the set's name.
            exc: the exception class reporting errors of the view's code (see
                :class:`Runner`).
            root_folder: where the raw data lies; the declared ``root_folder``
                when not given.

        Raises:
            RuntimeError: the database is not valid.
            KeyError: there is no such protocol or set.
            BlockError: loading the code raised (see
                :func:`papyflow.blocks.loader.load_module`).
            ``exc`` (a BlockError by default): instantiating the view raised.
        """
        if not self.valid:
            raise RuntimeError(f"database {self.name!r} is not valid: " + "; ".join(self.errors))
        definition = self.view_definition(protocol, name)
        folder = root_folder if root_folder is not None else self.root_folder
        return Runner(self._load_module(), definition, self.prefix, folder, exc)

    # -- writing --------------------------------------------------------------------------------

    def json_dumps(self, indent: int = 4) -> str:
        """The declaration as JSON text, keys in their declared order.

        Raises:
            RuntimeError: the declaration could not be read.
        """
        if self.data is None:
            raise RuntimeError(f"database {self.name!r} has no declaration to dump")
        return json.dumps(self.data, indent=indent, cls=NumpyJSONEncoder)

    def write(self, storage: Storage | None = None) -> None:
        """Write the code, the documentation (when there is one), then the declaration.

        Goes to :attr:`storage` unless another :class:`Storage` is given. Each
        file is written to a temporary name and renamed.

        Raises:
            RuntimeError: the declaration or the code could not be read, or
                there is nowhere to write.
        """
        if self.data is None or self.code is None:
            raise RuntimeError(f"database {self.name!r} did not load: nothing to write")
        target = storage if storage is not None else self.storage
        if target is None:
            raise RuntimeError(f"database {self.name!r}: pass a Storage to write to")
        target.save(self.json_dumps() + "\n", self.code, self.documentation)

    def export(self, prefix: PrefixLike) -> None:
        """Write this database and the dataformats of its outputs into another prefix.

        Each dataformat is exported with what it uses (see
        :meth:`papyflow.formats.dataformat.DataFormat.export`), so the target
        prefix is self-contained. Files go under the first folder of
        ``prefix``; existing files of the same names are replaced.

        Raises:
            RuntimeError: the database is not valid, or ``prefix`` is one of
                the folders it was loaded from.
            ValueError: ``prefix`` has no folder.
        """
        if not self.valid:
            raise RuntimeError(f"database {self.name!r} is not valid: " + "; ".join(self.errors))
        target = self.prefix.export_folder(prefix, f"database {self.name!r}")
        for dataformat in self.dataformats.values():
            dataformat.export(target)
        self.write(Storage(target, self.name))

    def __repr__(self) -> str:
        state = "valid" if self.valid else f"{len(self.errors)} errors"
        return f"<Database {self.name!r}, {state}>"


# -- testing a view ---------------------------------------------------------------------------


def _brief(error: BaseException) -> str:
    """The first line of an error (a BlockError's message ends with a traceback)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _value_key(value: Any) -> str:
    """A hashable stand-in for an index value (JSON values come from the cache)."""
    try:
        return json.dumps(value, sort_keys=True, cls=NumpyJSONEncoder)
    except (TypeError, ValueError):
        return repr(value)


@dataclass
class _Combination:
    """What one run of :class:`DatabaseTester` saw."""

    connected: tuple[str, ...]
    errors: list[str] = field(default_factory=list)
    data: dict[str, dict[tuple[int, int], bytes]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


class DatabaseTester:
    """Checks a view class while it is written: its index, its units, its data.

    The view is indexed once and then run, like a pipeline would, for every
    combination of connected outputs (each output alone, each pair, ...,
    all; only all of them when ``all_combinations`` is false). What is
    checked, each problem becoming one message in :attr:`errors`:

    * there is an output to test, each with a dataformat (a name) that loads;
    * the view can be instantiated, indexed and set up, and its index is not
      empty;
    * every output's field exists in the index entries;
    * *data-index consistency*: the units of any two outputs nest (a coarse
      output's units begin and end where units of the finer one do), and no
      value of an output's field comes back after other values (which would
      split what was meant as one unit);
    * *regularity*: an output not listed in ``irregular_outputs`` has units
      that all span the same number of data indices;
    * every connected output produces a record for each of its units that
      fits its dataformat (a dict cast as
      :class:`~papyflow.dataflow.data.DatabaseOutputDataSource` casts it), and
      ``get`` never raises;
    * an output gives the same data whichever other outputs are connected
      (a view whose ``get`` for one output relies on a call for another fails
      this). An unconnected output is never asked for data: a source per
      connected output is all that calls ``get``.

    Args:
        name: a name for the view in the messages.
        view_class: the view class (a :class:`View` subclass).
        outputs_declaration: output name -> dataformat name.
        parameters: the parameters given to the view.
        irregular_outputs: outputs whose units may span different numbers of
            data indices.
        all_combinations: try every combination of connected outputs.
        prefix: where the dataformats are looked up (the system dataformats
            are always searched).
        root_folder: given to the view.
        report: a file to write, atomically, detailing each combination's
            units and data (:meth:`report_text`).
        dataformat_cache: as for :class:`Database`.

    Raises:
        TypeError: ``view_class`` is not a class (an instance of one, say).

    Attributes:
        errors: the problems found.
        combinations: the combinations of connected outputs that were run.
        intervals: output -> the number of data indices each unit spans, or
            ``None`` when the output's units vary.
        units: output -> number of units.
        size: number of entries in the index.
    """

    def __init__(self, name: str, view_class: type, outputs_declaration: Mapping[str, str],
                 parameters: Mapping[str, Any], irregular_outputs: Iterable[str] = (),
                 all_combinations: bool = True, *, prefix: PrefixLike | None = None,
                 root_folder: str | None = None, report: str | os.PathLike[str] | None = None,
                 dataformat_cache: dict[str, DataFormat] | None = None) -> None:
        if not isinstance(view_class, type):
            raise TypeError(f"view_class: expected the view class (a View subclass), got an "
                            f"instance of {type(view_class).__name__}")
        self.name = name
        self.view_class = view_class
        self.outputs = dict(outputs_declaration)
        self.parameters = dict(parameters)
        self.irregular_outputs = list(irregular_outputs)
        self.all_combinations = all_combinations
        self.prefix = Prefix(prefix if prefix is not None else [])
        self.root_folder = root_folder
        self.errors: list[str] = []
        self.combinations: list[tuple[str, ...]] = []
        self.intervals: dict[str, int | None] = {}
        self.units: dict[str, int] = {}
        self.size = 0
        self._cache = dataformat_cache if dataformat_cache is not None else {}
        self._module = types.ModuleType(getattr(view_class, "__module__", None) or "views")
        setattr(self._module, view_class.__name__, view_class)
        self._definition = ViewDefinition(database=name, protocol="", set="",
                                          view=view_class.__name__,
                                          parameters=self.parameters, outputs=self.outputs)
        self._reference: dict[str, tuple[tuple[str, ...], dict[tuple[int, int], bytes]]] = {}
        self._ranges: dict[str, list[tuple[int, int]]] = {}
        self._entries: list[Any] = []
        self._index_file = ""
        self._report: list[str] | None = [] if report is not None else None
        with tempfile.TemporaryDirectory(prefix="papyflow-view-") as folder:
            self._index_file = os.path.join(folder, "index.json")
            self._test()
        if report is not None:
            File(os.fspath(report)).save(self.report_text())

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.errors

    def _runner(self) -> Runner:
        """A fresh view, its index already known (the view indexes once)."""
        runner = Runner(self._module, self._definition, self.prefix, self.root_folder)
        if self._entries:
            runner._adopt(list(self._entries), self._index_file)
        return runner

    def _test(self) -> None:
        for output in self.irregular_outputs:
            if output not in self.outputs:
                self.errors.append(f"{self.name}: irregular_outputs names {output!r}, "
                                   f"which is not an output ({', '.join(self.outputs)})")
        if not self.outputs:
            self.errors.append(f"{self.name}: outputs_declaration is empty: no output to "
                               "test")
            return
        for output, dataformat_name in self.outputs.items():
            if not isinstance(dataformat_name, str):
                self.errors.append(f"{self.name}: output {output!r}: the dataformat must be "
                                   f"a name 'user/name/version', not {_show(dataformat_name)}")
                continue
            dataformat = self._cache.get(dataformat_name) or DataFormat(
                self.prefix, dataformat_name, dataformat_cache=self._cache)
            if not dataformat.valid:
                self.errors.append(f"{self.name}: output {output!r}: dataformat "
                                   f"{dataformat_name!r} does not load: "
                                   + "; ".join(dataformat.errors))
        try:
            runner = self._runner()
            entries = runner.index(self._index_file)
        except Exception as error:  # noqa: BLE001 - the view failed: that is the finding
            self.errors.append(f"{self.name}: indexing failed: {_brief(error)}")
            self._note(error)
            return
        self.size = len(entries)
        if not entries:
            self.errors.append(f"{self.name}: the index is empty: no output produces data")
            return
        self._entries = entries
        ranges = self._ranges
        for output in self.outputs:
            try:
                ranges[output] = runner.data_indices(output)
            except Exception as error:  # noqa: BLE001 - reported, the other outputs go on
                self.errors.append(f"{self.name}: output {output!r}: {_brief(error)}")
                self._note(error)
                continue
            self._check_repeats(runner, output, ranges[output])
        self.intervals = self.determine_regular_intervals(
            {k: v for k, v in self.outputs.items() if k in ranges})
        self.units = {output: len(r) for output, r in ranges.items()}
        for output, interval in self.intervals.items():
            if interval is None and output not in self.irregular_outputs:
                lengths = sorted({end - start + 1 for start, end in ranges[output]})
                self.errors.append(f"{self.name}: output {output!r} is irregular: its units "
                                   f"span {lengths[0]} to {lengths[-1]} data indices (list it "
                                   "in irregular_outputs if that is intended)")
        self._check_nesting(ranges)
        if self.errors:
            return
        outputs = list(self.outputs)
        if self.all_combinations:
            combinations = [c for k in range(1, len(outputs) + 1)
                            for c in itertools.combinations(outputs, k)]
        else:
            combinations = [tuple(outputs)]
        for connected in combinations:
            self.errors.extend(self.run(connected))

    def _check_repeats(self, runner: Runner, output: str,
                       ranges: list[tuple[int, int]]) -> None:
        """A value of the output's field that comes back after others."""
        field_name = runner.get_output_mapping(output)
        entries = runner.objects()
        first_unit: dict[str, tuple[int, int]] = {}
        for start, end in ranges:
            key = _value_key(getattr(entries[start], field_name))
            if key in first_unit:
                before = first_unit[key]
                self.errors.append(
                    f"{self.name}: output {output!r}: the value {key} of field "
                    f"{field_name!r} makes the units {before[0]}..{before[1]} and "
                    f"{start}..{end}, not one: sort the index so that equal values are "
                    "consecutive")
                return
            first_unit[key] = (start, end)

    def _check_nesting(self, ranges: dict[str, list[tuple[int, int]]]) -> None:
        """Any two outputs' units nest: one's unit ends are among the other's."""
        ends = {output: {end for _, end in r} for output, r in ranges.items()}
        for a, b in itertools.combinations(ranges, 2):
            if ends[a] <= ends[b] or ends[b] <= ends[a]:
                continue
            only_a, only_b = min(ends[a] - ends[b]), min(ends[b] - ends[a])
            self.errors.append(f"{self.name}: outputs {a!r} and {b!r} are not consistent: "
                               f"a unit of {a!r} ends at data index {only_a}, inside a unit "
                               f"of {b!r}, and a unit of {b!r} ends at {only_b}, inside a "
                               f"unit of {a!r}: one output's units must be made of the "
                               "other's")

    def determine_regular_intervals(self, outputs_declaration: Mapping[str, str],
                                    ) -> dict[str, int | None]:
        """Output -> how many data indices each of its units spans, ``None`` when
        that varies (an irregular output), for the outputs declared here.

        Raises:
            KeyError: an output the view's index gave no units for.
        """
        intervals: dict[str, int | None] = {}
        for output in outputs_declaration:
            lengths = {end - start + 1 for start, end in self._ranges[output]}
            intervals[output] = lengths.pop() if len(lengths) == 1 else None
        return intervals

    def run(self, connected_outputs: Sequence[str]) -> list[str]:
        """Run the view with these outputs connected, as a pipeline would; return
        the problems found (see the class).

        A fresh view is set up; at each step of the mixed units of the
        connected outputs, each output whose unit starts there is asked for its
        record. The data is compared with what the output gave in the earlier
        combinations.
        """
        connected = tuple(connected_outputs)
        seen = _Combination(connected)
        self.combinations.append(connected)
        label = f"{self.name}, with {', '.join(connected)} connected"
        try:
            self._run(seen, label)
        finally:
            if self._report is not None:
                self._report.append(f"== {label}")
                self._report.extend(seen.lines)
                self._report.extend(f"!! {error}" for error in seen.errors)
        return seen.errors

    def _run(self, seen: _Combination, label: str) -> None:
        try:
            runner = self._runner()
            runner.setup(self._index_file)
            sources: dict[str, DatabaseOutputDataSource] = {}
            for output in seen.connected:
                source = DatabaseOutputDataSource()
                source.setup(runner, output, self.outputs[output], self.prefix,
                             dataformat_cache=self._cache)
                sources[output] = source
                seen.data[output] = {}
        except Exception as error:  # noqa: BLE001 - the view failed: that is the finding
            seen.errors.append(f"{label}: setup failed: {_brief(error)}")
            self._note(error, seen.lines)
            return
        failures: dict[str, int] = dict.fromkeys(seen.connected, 0)
        for step_start, step_end in mixDataIndices([s.data_indices() for s in sources.values()]):
            if self._report is not None:
                seen.lines.append(f"step {step_start}..{step_end}")
            for output, source in sources.items():
                position = source.units.position_of(step_start)
                start, end = source.units.range(position)
                if start != step_start:
                    continue  # the output's unit began at an earlier step
                try:
                    record, _, _ = source[position]
                except Exception as error:  # noqa: BLE001 - counted, the run goes on
                    failures[output] += 1
                    if failures[output] <= 3:
                        seen.errors.append(f"{label}: output {output!r}, data indices "
                                           f"{start}..{end}: {_brief(error)}")
                        self._note(error, seen.lines)
                    continue
                seen.data[output][(start, end)] = record.pack()
                if self._report is not None:
                    seen.lines.append(f"  {output} [{start}..{end}]: "
                                      + _json_text(record.as_dict()))
        for output, count in failures.items():
            if count > 3:
                seen.errors.append(f"{label}: output {output!r}: {count - 3} more failures")
        self._compare(seen, label)

    def _note(self, error: BaseException, lines: list[str] | None = None) -> None:
        """Keep an error's whole text (its traceback) for the report, in ``lines``
        (by default the report itself)."""
        if self._report is not None:
            (self._report if lines is None else lines).extend(
                "   " + line for line in str(error).splitlines())

    def _compare(self, seen: _Combination, label: str) -> None:
        for output, data in seen.data.items():
            if output not in self._reference:
                self._reference[output] = (seen.connected, data)
                continue
            first, reference = self._reference[output]
            for unit, packed in data.items():
                if unit in reference and reference[unit] != packed:
                    seen.errors.append(
                        f"{label}: output {output!r} gives other data at data indices "
                        f"{unit[0]}..{unit[1]} than with {', '.join(first)} connected: "
                        "its get() must not depend on calls for other outputs")
                    break

    def report_text(self) -> str:
        """The report: the index size, each output's units, each combination's
        steps and records (when a ``report`` file was asked for), and the
        problems found."""
        lines = [f"database view tester: {self.name} ({self.view_class.__name__})",
                 f"index: {self.size} entries"]
        for output, count in self.units.items():
            interval = self.intervals.get(output)
            kind = f"every {interval}" if interval is not None else "irregular"
            lines.append(f"output {output} ({self.outputs[output]}): {count} units, {kind}")
        lines.extend(self._report or ())
        lines.append(f"{len(self.errors)} problems" if self.errors else "no problem found")
        lines.extend(f"- {error}" for error in self.errors)
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.errors)} problems"
        return f"<DatabaseTester {self.name!r}: {state}>"

