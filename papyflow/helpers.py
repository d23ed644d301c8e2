"""Inputs and outputs of a block, built from a BEAT-style execution configuration.

An execution configuration says where each input of one block comes from
and where each output goes (JSON, or the same as a dict)::

    {
      "algorithm": "user/algo/1",                # the block's algorithm
      "parameters": {"threshold": 0.5},          # optional
      "channel": "main",                         # optional: the block's main channel
      "range": [0, 99],                          # optional: the data indices to process
      "inputs": {
        "image": {                               # an input from the cache ...
          "path": "ab/cd/ef/0123...",            #   <cache_root>/<path>.data
          "channel": "main", "hash": "abcdef0123..."},
        "client": {                              # ... or from a database view
          "database": "toy/1", "protocol": "main", "set": "train", "output": "client",
          "path": "12/34/56/789a...",            #   optional for a view
          "channel": "main"}
      },
      "outputs": {                               # a block with outputs ...
        "features": {"path": "fe/dc/ba/9876...", "channel": "main", "hash": "..."}},
      "result": {"path": "..."},                 # ... or an analyzer's results
      "loop": {...}                              # a loop evaluator's own configuration
    }

``path`` is relative to the cache root (``.data`` is added unless there);
``hash`` is kept for the caller's bookkeeping. An input names either a
``path`` in the cache or a ``database``/``protocol``/``set``/``output``; an
input with both is read from the database. ``start_index``/``end_index`` in
an input, or ``range`` at the top, restrict the data read, wherever the
input is read from. Unknown keys are errors, named with their path.

Channels, as in BEAT: the inputs of a group of the algorithm are
synchronized on one data *channel*, and the
:class:`~papyflow.dataflow.inputs.InputGroup` or
:class:`~papyflow.dataflow.data_loaders.DataLoader` made of them is named
after it. A group's channel is the ``channel`` of its inputs (all that give
one must give the same); when none does, it is the top-level ``channel``
for the main group (the algorithm's first), else the group's ``name``, else
``"main"`` for the main group and ``"groups[<i>]"`` for group ``i``. Two
groups may not share a channel. The top-level ``channel``, the block's
channel, must be the main group's, and an output's ``channel`` (or that of
``result``) the block's: outputs are written in step with the main group.

Where data is read is a matter of :class:`AccessMode`: ``LOCAL`` reads the
cache's files, or runs the view in this process; ``REMOTE`` asks a
:class:`~papyflow.execution.MessageHandler` through ``socket`` (a
:class:`~papyflow.dataflow.data.RemoteDataSource`); ``NONE`` refuses such
inputs.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import hash as _hash
from .blocks.algorithm import Algorithm
from .blocks.database import Database
from .dataflow._remote import Auth, as_channel
from .dataflow.data import (
    CachedDataSink,
    CachedDataSource,
    DatabaseOutputDataSource,
    DataSink,
    DataSource,
    RemoteDataSource,
)
from .dataflow.data_loaders import DataLoader, DataLoaderList
from .dataflow.inputs import Input, InputGroup, InputList
from .dataflow.outputs import (
    Output,
    OutputList,
    RemotelySyncedOutput,
    SynchronizationListener,
)

__all__ = ["AccessMode", "InputSpec", "OutputSpec", "cache_filename",
           "create_inputs_from_configuration", "create_outputs_from_configuration",
           "group_channels", "parse_inputs", "parse_outputs", "setup_view", "view_index_filename"]


class AccessMode(enum.IntEnum):
    """Where a kind of input (cached, or from a database) is read."""

    NONE = 0
    """Not at all: such an input is an error."""
    LOCAL = 1
    """In this process: the cache's files, or the view's code."""
    REMOTE = 2
    """Through a socket, from a message handler in another process."""


class InputSpec(NamedTuple):
    """One input of an execution configuration, checked (see the module)."""

    name: str
    channel: str | None
    path: str | None
    hash: str | None
    database: str | None
    protocol: str | None
    set: str | None
    output: str | None
    start_index: int | None
    end_index: int | None

    @property
    def from_database(self) -> bool:
        """Whether the input is an output of a database view."""
        return self.database is not None


class OutputSpec(NamedTuple):
    """One output of an execution configuration, checked."""

    name: str
    channel: str | None
    path: str
    hash: str | None


_INPUT_KEYS = ("channel", "database", "end_index", "hash", "output", "path", "protocol",
               "set", "start_index")
_OUTPUT_KEYS = ("channel", "hash", "path")


def _string(entry: Mapping[str, Any], key: str, where: str, required: bool = False
            ) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}: missing field {key!r}")
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return value


def _index(entry: Mapping[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{key}: expected a data index (an int >= 0), got {value!r}")
    return value


def _entries(entries: Any, where: str, known: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(entries, Mapping):
        raise TypeError(f"{where}: expected an object of name -> settings, got "
                         f"{type(entries).__name__}")
    for name, entry in entries.items():
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}.{name}: expected an object, got {type(entry).__name__}")
        for key in entry:
            if key not in known:
                raise ValueError(f"{where}.{name}.{key}: unknown field (known: "
                                 f"{', '.join(known)})")
    return dict(entries)


def parse_inputs(inputs: Any) -> dict[str, InputSpec]:
    """The ``inputs`` of an execution configuration, checked, by name.

    Raises:
        ValueError: a field of the wrong type, unknown, or missing (an input
            needs a ``path``, or ``database``, ``protocol``, ``set`` and
            ``output``); the message names ``inputs.<name>.<field>``.
        TypeError: ``inputs``, or an input's settings, is not an object.
    """
    specs = {}
    for name, entry in _entries(inputs, "inputs", _INPUT_KEYS).items():
        where = f"inputs.{name}"
        database = _string(entry, "database", where)
        needed = database is not None
        spec = InputSpec(
            name=name, channel=_string(entry, "channel", where),
            path=_string(entry, "path", where, required=not needed),
            hash=_string(entry, "hash", where), database=database,
            protocol=_string(entry, "protocol", where, required=needed),
            set=_string(entry, "set", where, required=needed),
            output=_string(entry, "output", where, required=needed),
            start_index=_index(entry, "start_index", where),
            end_index=_index(entry, "end_index", where))
        specs[name] = spec
    return specs


def _output_spec(name: str, entry: Mapping[str, Any], where: str) -> OutputSpec:
    path = _string(entry, "path", where, required=True)
    assert path is not None
    return OutputSpec(name, _string(entry, "channel", where), path,
                      _string(entry, "hash", where))


def parse_outputs(outputs: Any) -> dict[str, OutputSpec]:
    """The ``outputs`` of an execution configuration, checked, by name.

    Raises:
        ValueError, TypeError: as :func:`parse_inputs` (an output needs a ``path``).
    """
    return {name: _output_spec(name, entry, f"outputs.{name}")
            for name, entry in _entries(outputs, "outputs", _OUTPUT_KEYS).items()}


def _parse_result(result: Any) -> OutputSpec:
    """An analyzer's ``result`` (an output named ``result``), checked; errors name
    ``result.<field>``."""
    if not isinstance(result, Mapping):
        raise TypeError(f"result: expected an object, got {type(result).__name__}")
    for key in result:
        if key not in _OUTPUT_KEYS:
            raise ValueError(f"result.{key}: unknown field (known: {', '.join(_OUTPUT_KEYS)})")
    return _output_spec("result", result, "result")


def _block_channel(config: Mapping[str, Any]) -> str | None:
    """The configuration's top-level ``channel``, checked."""
    channel = config.get("channel")
    if channel is not None and (not isinstance(channel, str) or not channel):
        raise ValueError(f"channel: expected a non-empty string, got {channel!r}")
    return channel


def group_channels(config: Mapping[str, Any], algorithm: Algorithm) -> list[str]:
    """The channel of each group of ``algorithm`` (in the order of its groups), as
    the configuration ``config`` gives them (see the module).

    Raises:
        ValueError: two inputs of one group on different channels, two groups on
            one channel, or a top-level ``channel`` that is not the main group's;
            the message names the field (``inputs.<name>.channel``, ``channel``).
        TypeError: ``inputs``, or an input's settings, is not an object.
    """
    specs = parse_inputs(config.get("inputs", {}))
    block = _block_channel(config)
    channels: list[str] = []
    owners: dict[str, int] = {}
    for index, group in enumerate(algorithm.groups):
        names = list(group.get("inputs", {}))
        given = [(name, specs[name].channel) for name in names
                 if name in specs and specs[name].channel is not None]
        if given:
            first, channel = given[0]
            for name, other in given[1:]:
                if other != channel:
                    raise ValueError(
                        f"inputs.{name}.channel: {other!r} differs from {channel!r}, the "
                        f"channel of input {first!r}: the inputs of one group (groups[{index}]"
                        f" of {algorithm.name!r}) are synchronized on one channel")
        else:
            default = group.get("name") or ("main" if index == 0 else f"groups[{index}]")
            channel = block if index == 0 and block is not None else str(default)
        assert channel is not None
        if channel in owners:
            where = f"inputs.{given[0][0]}.channel" if given else \
                f"inputs.{names[0]}.channel" if names else f"groups[{index}]"
            raise ValueError(
                f"{where}: groups[{index}] of {algorithm.name!r} is on channel {channel!r}, "
                f"the channel of groups[{owners[channel]}]: each group of inputs has a "
                "channel of its own")
        owners[channel] = index
        channels.append(channel)
    if block is not None and channels and channels[0] != block:
        also = f"; {block!r} is the channel of groups[{owners[block]}]" \
            if block in owners else ""
        raise ValueError(
            f"channel: the block's channel {block!r} is not that of its main group "
            f"(groups[0] of {algorithm.name!r}, on {channels[0]!r}){also}")
    return channels


def cache_filename(cache_root: str | os.PathLike[str] | None, path: str, what: str) -> str:
    """``<cache_root>/<path>.data`` (``.data`` is not doubled).

    Raises:
        ValueError: no ``cache_root``, or a ``path`` that leaves it (absolute,
            or with ``..``); the message names ``what``.
    """
    if cache_root is None:
        raise ValueError(f"{what}: cache_root is needed to read or write {path!r}")
    parts = path.replace("\\", "/").split("/")
    if os.path.isabs(path) or ".." in parts:
        raise ValueError(f"{what}: path {path!r} must stay inside the cache root")
    filename = os.path.join(os.fspath(cache_root), path)
    return filename if filename.endswith(".data") else filename + ".data"


def view_index_filename(cache_root: str | os.PathLike[str], database: str, protocol: str,
                        set_name: str) -> str:
    """Where the index of a database view is kept in the cache:
    ``<cache_root>/<toPath(hashDataset(...))>`` with ``.index.json``."""
    digest = _hash.hashDataset(database, protocol, set_name)
    return os.path.join(os.fspath(cache_root), _hash.toPath(digest, ".index.json"))


def _range(config: Mapping[str, Any]) -> tuple[int | None, int | None]:
    span = config.get("range")
    if span is None:
        return None, None
    if not (isinstance(span, list | tuple) and len(span) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in span)
            and span[0] <= span[1]):
        raise ValueError(f"range: expected [start, end] data indices, got {span!r}")
    return span[0], span[1]


def setup_view(spec: InputSpec, prefix: Any, cache_root: Any,
               databases: dict[str, Database] | None,
               views: dict[tuple[str, str, str], Any]) -> Any:
    """The view runner of a database input, set up: taken from ``views`` (by
    ``(database, protocol, set)``), else made, set up (its index kept at
    :func:`view_index_filename`) and added to it.

    Raises:
        ValueError: the database does not load, or no ``cache_root``.
        KeyError: no such protocol or set.
        BlockError: the view's code failed.
    """
    assert spec.database is not None and spec.protocol is not None and spec.set is not None
    key = (spec.database, spec.protocol, spec.set)
    if key not in views:
        database = (databases or {}).get(spec.database)
        if database is None:
            database = Database(prefix, spec.database)
            if databases is not None:
                databases[spec.database] = database
        if not database.valid:
            raise ValueError(f"inputs.{spec.name}.database: database {spec.database!r} "
                             f"does not load: {'; '.join(database.errors)}")
        runner = database.view(spec.protocol, spec.set)
        if cache_root is None:
            raise ValueError(f"inputs.{spec.name}: cache_root is needed to keep the index "
                             "of a database view")
        index = view_index_filename(cache_root, *key)
        os.makedirs(os.path.dirname(index), exist_ok=True)
        runner.setup(index)
        views[key] = runner
    return views[key]


def _source(spec: InputSpec, dataformat: str, prefix: Any, cache_root: Any,
            cache_access: AccessMode, db_access: AccessMode, unpack: bool, socket: Any,
            databases: dict[str, Database] | None, views: dict[tuple[str, str, str], Any],
            span: tuple[int | None, int | None], auth: Auth) -> DataSource:
    start = spec.start_index if spec.start_index is not None else span[0]
    end = spec.end_index if spec.end_index is not None else span[1]
    where = f"inputs.{spec.name}"
    mode = db_access if spec.from_database else cache_access
    kind = "db_access" if spec.from_database else "cache_access"
    if mode == AccessMode.REMOTE:
        if socket is None:
            raise ValueError(f"{where}: {kind} is REMOTE but no socket is given")
        remote = RemoteDataSource()
        remote.setup(socket, spec.name, dataformat, prefix, unpack, auth=auth,
                     start_index=start, end_index=end)
        return remote
    if mode != AccessMode.LOCAL:
        raise ValueError(f"{where}: {kind} is NONE: this block may not read "
                         f"{'a database' if spec.from_database else 'the cache'}")
    if spec.from_database:
        view = setup_view(spec, prefix, cache_root, databases, views)
        served = view.outputs.get(spec.output)
        if served is None:
            raise ValueError(f"{where}.output: the set {spec.protocol}/{spec.set} of "
                             f"{spec.database} has no output {spec.output!r} (outputs: "
                             f"{', '.join(view.outputs)})")
        if served != dataformat:
            raise ValueError(f"{where}.output: {spec.output!r} of {spec.database} "
                             f"{spec.protocol}/{spec.set} is of dataformat {served!r}; the "
                             f"algorithm reads {spec.name!r} as {dataformat!r}")
        db_source = DatabaseOutputDataSource()
        db_source.setup(view, str(spec.output), dataformat, prefix, start, end,
                        pack=not unpack)
        return db_source
    assert spec.path is not None
    filename = cache_filename(cache_root, spec.path, where)
    cached = CachedDataSource()
    if not cached.setup(filename, prefix, start, end, unpack):
        raise FileNotFoundError(f"{where}: the cache holds no complete version of "
                                f"{filename}")
    return cached


def create_inputs_from_configuration(
        config: Mapping[str, Any], algorithm: Algorithm, prefix: Any, cache_root: Any,
        cache_access: AccessMode = AccessMode.NONE, db_access: AccessMode = AccessMode.NONE,
        unpack: bool = True, socket: Any = None, databases: dict[str, Database] | None = None,
        no_synchronisation_listeners: bool = False, *, auth: Auth = None
        ) -> tuple[InputList, DataLoaderList]:
    """The inputs of ``algorithm`` as ``config`` (an execution configuration) says.

    The main group of a sequential algorithm (or a legacy one) becomes an
    :class:`~papyflow.dataflow.inputs.InputGroup` of the returned
    :class:`~papyflow.dataflow.inputs.InputList` (with a
    :class:`~papyflow.dataflow.outputs.SynchronizationListener` unless
    ``no_synchronisation_listeners``); every other group, and every group
    of an autonomous algorithm, becomes a
    :class:`~papyflow.dataflow.data_loaders.DataLoader`. Each is named after
    its channel (see :func:`group_channels`). On an error, the sources
    already opened are closed.

    Args:
        config: the configuration (see the module); only ``inputs``,
            ``channel`` and ``range`` are read.
        algorithm: the block's algorithm (its groups and dataformats).
        prefix: where dataformats and databases are looked up.
        cache_root: the cache's folder (for cached inputs, and the index of
            a view run here).
        cache_access: how cached inputs are read.
        db_access: how inputs from a database are read.
        unpack: records (``True``) or packed bytes.
        socket: the zmq socket (or :class:`~papyflow.dataflow._remote.RemoteChannel`)
            to the message handler, for ``REMOTE`` access.
        databases: loaded databases by name (used and filled).
        no_synchronisation_listeners: give the main group no listener.
        auth: the key for ``socket`` (see :func:`papyflow.dataflow._remote.resolve_auth`).

    Returns:
        ``(input_list, data_loader_list)``.

    Raises:
        ValueError: the configuration lacks an input of the algorithm, has
            one it does not declare, its channels do not fit the algorithm's
            groups (see :func:`group_channels`), an access mode refuses an
            input, or a database input read here names an output its view
            lacks or serves in another dataformat (each message names the
            input and the field).
        FileNotFoundError: a cached input is not in the cache.
        AuthenticationError, RemoteError: a remote input is refused.
    """
    specs = parse_inputs(config.get("inputs", {}))
    declared = algorithm.input_map
    for name in specs:
        if name not in declared:
            raise ValueError(f"inputs.{name}: algorithm {algorithm.name!r} has no such input "
                             f"(inputs: {', '.join(declared) or 'none'})")
    for index, group in enumerate(algorithm.groups):
        for name in group.get("inputs", {}):
            if name not in specs:
                raise ValueError(f"inputs.{name}: missing: algorithm {algorithm.name!r} "
                                 f"reads it (groups[{index}])")
    channels = group_channels(config, algorithm)
    span = _range(config)
    views: dict[tuple[str, str, str], Any] = {}
    input_list, loaders = InputList(), DataLoaderList()
    opened: list[DataSource] = []
    try:
        for position, (group, channel) in enumerate(zip(algorithm.groups, channels,
                                                        strict=True)):
            sources = {}
            for name in group.get("inputs", {}):
                sources[name] = _source(specs[name], declared[name], prefix, cache_root,
                                        AccessMode(cache_access), AccessMode(db_access),
                                        unpack, socket, databases, views, span, auth)
                opened.append(sources[name])
            if position == 0 and not algorithm.is_autonomous:
                listener = None if no_synchronisation_listeners else SynchronizationListener()
                input_group = InputGroup(channel, listener)
                for name, source in sources.items():
                    input_group.add(Input(name, declared[name], source))
                input_list.add(input_group)
            else:
                loader = DataLoader(channel)
                for name, source in sources.items():
                    loader.add(name, source)
                loaders.add(loader)
    except BaseException:
        for source in opened:  # the files of the inputs set up so far
            source.close()
        raise
    return input_list, loaders


def _data_range(input_list: InputList | None, data_loaders: DataLoaderList | None,
                config: Mapping[str, Any]) -> tuple[int, int]:
    """The data indices the outputs cover: the configuration's ``range``, else those
    of the main group, else of the main loader."""
    start, end = _range(config)
    if start is not None and end is not None:
        return start, end
    group = input_list.main_group if input_list is not None else None
    sources = [i.data_source for i in group if len(i.data_source)] if group else []
    if sources:
        return (min(s.first_data_index() for s in sources),
                max(s.last_data_index() for s in sources))
    loader = data_loaders.main_loader if data_loaders is not None else None
    if loader is not None and loader.data_index_start >= 0:
        return loader.data_index_start, loader.data_index_end
    raise ValueError("range: cannot tell which data indices the outputs cover: give "
                     "'range' in the configuration, or inputs with data")


def create_outputs_from_configuration(
        config: Mapping[str, Any], algorithm: Algorithm, prefix: Any, cache_root: Any,
        input_list: InputList | None = None, data_loaders: DataLoaderList | None = None,
        loop_socket: Any = None, *, auth: Auth = None
        ) -> tuple[OutputList, list[DataSink]]:
    """The outputs of ``algorithm``, written to the cache as ``config`` says.

    Each output (or an analyzer's one output of results, configured as
    ``result``) writes a :class:`~papyflow.dataflow.data.CachedDataSink` at
    ``<cache_root>/<path>.data`` over the data indices of ``range``, or of
    the main group's inputs. Units end with the main group's current step
    unless the code says otherwise. With a ``loop_socket`` (a loop
    processor's link to its evaluator) every output is a
    :class:`~papyflow.dataflow.outputs.RemotelySyncedOutput` that tells the
    evaluator each unit it writes.

    Returns:
        ``(output_list, data_sinks)``; close the outputs to commit them.

    Raises:
        ValueError: an output missing from or unknown to the configuration,
            an output on another channel than the block's (the top-level
            ``channel``, else that of the main group: of ``input_list``, or
            the main loader of an autonomous algorithm), no
            ``cache_root``, no range (each message names the field).
        TypeError: ``outputs`` or ``result`` is not an object.
    """
    listener = None
    group = input_list.main_group if input_list is not None else None
    if group is not None:
        listener = group.synchronization_listener
    if algorithm.isAnalyzer:
        result = config.get("result")
        if not isinstance(result, Mapping):
            raise ValueError(f"result: algorithm {algorithm.name!r} is an analyzer: the "
                             "configuration needs 'result': {'path': ...}")
        specs = {"result": _parse_result(result)}
        formats = {"result": algorithm.result_dataformat()}
    else:
        specs = parse_outputs(config.get("outputs", {}))
        declared = algorithm.output_map
        for name in specs:
            if name not in declared:
                raise ValueError(f"outputs.{name}: algorithm {algorithm.name!r} has no such "
                                 f"output (outputs: {', '.join(declared) or 'none'})")
        for name in declared:
            if name not in specs:
                raise ValueError(f"outputs.{name}: missing: algorithm {algorithm.name!r} "
                                 "writes it")
        formats = {name: algorithm.dataformats[declared[name]] for name in specs}
    block = _block_channel(config)
    main_loader = data_loaders.main_loader if data_loaders is not None else None
    if block is None and group is not None:
        block = group.channel
    elif block is None and algorithm.is_autonomous and main_loader is not None:
        block = main_loader.channel
    for name, spec in specs.items():
        if block is not None and spec.channel is not None and spec.channel != block:
            where = "result" if algorithm.isAnalyzer else f"outputs.{name}"
            raise ValueError(f"{where}.channel: {spec.channel!r} is not the block's channel "
                             f"{block!r}: outputs are written in step with the main group")
    start, end = _data_range(input_list, data_loaders, config)
    channel = None
    if loop_socket is not None:
        channel = as_channel(loop_socket, auth)
    output_list, sinks = OutputList(), list[DataSink]()
    for name, spec in specs.items():
        sink = CachedDataSink()
        sink.setup(cache_filename(cache_root, spec.path, f"outputs.{name}"), formats[name],
                   start, end)
        sinks.append(sink)
        if channel is not None:
            output_list.add(RemotelySyncedOutput(name, sink, channel, listener, start))
        else:
            output_list.add(Output(name, sink, listener, start))
    return output_list, sinks
