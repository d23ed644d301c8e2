"""Blocks as Pipers: database views as source Pipers, algorithms as Pipers of their runners.

A database set becomes one source Piper per output (:func:`database_pipers`);
an algorithm becomes a synchronized Piper (:func:`algorithm_piper`) whose
upstream Pipers are wired to its inputs by name (:func:`connect_blocks`)::

    database_inputs(dagger) -- (start, end) ranges --> DatabasePiper (view.get)
        --> Unit(record, start, end) ... --> AlgorithmPiper:
            synchronize the main group's inputs (in the algorithm's input order)
            --> chunks of steps (records packed to bytes when parallel)
            --> Worker: _AlgorithmTask (the Runner, built once per worker and run)
                runs setup, prepare, then process once per step
            --> what the code wrote to its output (bytes when parallel)
            --> Unit(record, start, end) per unit written

How a source Piper gets its input: it reads the ``(start, end)`` ranges of
its output's units; :func:`database_inputs` gives them, lazily (the view's
index is read when the first range is asked for), one iterable per input
Piper of a Dagger, for ``Plumber.start(database_inputs(plumber))``.

What an algorithm Piper emits: the units its code writes to one output, as
:class:`~papyflow.dataflow.units.Unit` ``(record, start, end)``; an analyzer
emits the records of its :meth:`~papyflow.blocks.algorithm.Algorithm.result_dataformat`
it writes (usually one, at the last step). An algorithm with several outputs
gives one Piper per output (``output=...``), each running the code.

Parallel (``parallel=NuMap(...)``): the algorithm must be ``splittable``.
The steps travel to the workers in *chunks* that end where every input of the
main group ends a unit (for ``toy/enroll/1``: all the samples of a client),
so the state the code keeps inside a chunk stays in one process; a chunk is
held in memory until it is complete. Records cross processes packed
(:meth:`~papyflow.formats.baseformat.baseformat.pack`), never pickled as
objects; the Runner is built in each worker (process or thread) once per
start of the Piper, cached by the Piper's token and the algorithm's hash,
since user classes do not pickle.

Failures: an exception of the code in setup, prepare or process becomes a
:class:`~papyflow.PiperError` of the chunk (its ``args[0]`` the
:class:`~papyflow.WorkerError`, whose ``exception`` is the
:class:`~papyflow.blocks.errors.BlockError` naming the block, the method and,
for process, the data indices); it leaves as a ``Unit(PiperError, start,
end)`` covering the chunk and the Piper goes on.

Secondary groups (a sequential algorithm's groups after the main one, such
as ``toy/score/1``'s models) are read to their ends before the first step and
given to the code's ``prepare`` as data loaders (one
:class:`~papyflow.dataflow.data_loaders.DataLoader` per secondary group; the
main group has none, its data comes step by step). They are held in memory,
and with a NuMap they travel with every chunk. An autonomous algorithm is
called once, with data loaders holding all of its inputs (every group): its
Piper reads its upstream streams to their ends first, so they must fit in
memory. Legacy (API 1) algorithms get ``process(inputs, outputs)``.

Bad wiring is refused when it is declared (:meth:`AlgorithmPiper.wire`,
:func:`connect_blocks`): an unknown or missing input, or an upstream block
Piper whose dataformat is not the input's, raises
:class:`~papyflow.DaggerError` naming both ends.

Not supported yet: loop algorithms (:func:`algorithm_piper` refuses them with
a ValueError; :mod:`papyflow.execution` runs them), saving block Pipers with
``Plumber.save``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from numap import NuMap

from ..dagger import Dagger
from ..dataflow.data import DataSink, MemoryDataSource
from ..dataflow.data_loaders import DataLoader, DataLoaderList
from ..dataflow.outputs import Output, OutputList, SynchronizationListener
from ..dataflow.units import SyncedInput, Unit
from ..errors import DaggerError, PiperError
from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ..piper import Piper, _watched
from ..worker import Worker
from ._cache import CachedOutput
from .algorithm import Algorithm, _as_record
from .database import Database

__all__ = ["AlgorithmPiper", "BlockPiper", "CachedPiper", "DatabasePiper", "SourcePiper",
           "StepGroup", "StepInput", "StepInputs", "algorithm_piper", "connect_blocks", "database_inputs",
           "database_pipers"]


# -- what the Pipers are -----------------------------------------------------------------------


class BlockPiper(Piper):
    """A Piper that runs a block: it knows the dataformat of the records it emits.

    Attributes:
        block: what it runs (``"database toy/1 main/train"``, ``"algorithm toy/enroll/1"``).
        output: the name of the block's output it emits.
        dataformat: the name of that output's dataformat (``None`` for an
            analyzer's results, whose format is anonymous).
    """

    block: str
    output: str
    dataformat: str | None
    kept: list[Any] | None = None
    """When a list, every unit the Piper emits is appended to it too (an
    experiment keeps its analyzers' results so)."""

    def _keeping(self, units: Iterator[Any]) -> Iterator[Any]:
        kept = self.kept
        if kept is None:
            return units
        return _appended(units, kept)

    def describe(self) -> str:
        """``output 'x' (dataformat d) of <block> (piper p)``, for messages."""
        return (f"output {self.output!r} (dataformat {self.dataformat!r}) of {self.block} "
                f"(piper {self.name!r})")


def _appended(units: Iterator[Any], kept: list[Any]) -> Iterator[Any]:
    for unit in units:
        kept.append(unit)
        yield unit


# -- database views ----------------------------------------------------------------------------


_VIEWS: dict[tuple[Any, ...], Any] = {}  # view runners set up in this process


def _view_runner(spec: _ViewSpec) -> Any:
    key = (spec.prefix, spec.database, spec.protocol, spec.set_name, spec.root_folder,
           spec.index_file)
    runner = _VIEWS.get(key)
    if runner is None:
        database = Database(list(spec.prefix), spec.database)
        runner = database.view(spec.protocol, spec.set_name, root_folder=spec.root_folder)
        runner.setup(spec.index_file)
        _VIEWS[key] = runner
    return runner


@dataclass(frozen=True, slots=True)
class _ViewSpec:
    """Which view a database Piper reads, in a form that pickles."""

    prefix: tuple[str, ...]
    database: str
    protocol: str
    set_name: str
    root_folder: str | None
    index_file: str


class _ViewReader:
    """The Worker function of a database Piper: ``((start, end),)`` -> ``Unit(record, start, end)``."""

    __name__ = "view_reader"

    def __init__(self, spec: _ViewSpec, output: str, dataformat: str) -> None:
        self.spec = spec
        self.output = output
        self.dataformat = dataformat
        self._type: type[baseformat] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "output": self.output, "dataformat": self.dataformat}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["output"], state["dataformat"])  # type: ignore[misc]

    def __call__(self, inbox: Sequence[Any]) -> Unit:
        start, end = inbox[0]
        if self._type is None:
            self._type = DataFormat(list(self.spec.prefix), self.dataformat).type
        data = _view_runner(self.spec).get(self.output, start)
        return Unit(_as_record(self._type, data), start, end)


class SourcePiper(BlockPiper):
    """A Piper that starts a pipeline: :meth:`source` gives its input.

    Args:
        worker: the Piper's Worker.
        source: called by :meth:`source`, returns the input.
        **options: other :class:`~papyflow.Piper` options.
    """

    def __init__(self, worker: Worker, source: Callable[[], Iterator[Any]],
                 **options: Any) -> None:
        super().__init__(worker, **options)
        self._source = source

    def source(self) -> Iterator[Any]:
        """The input of the Piper (see :func:`database_inputs`)."""
        return self._source()


class DatabasePiper(SourcePiper):
    """A source Piper emitting the units of one output of a database set.

    Made by :func:`database_pipers`. Its input is :meth:`source` (the
    ``(start, end)`` ranges of the output's units); it emits
    ``Unit(record, start, end)`` in index order.
    """

    def __init__(self, spec: _ViewSpec, output: str, dataformat: str,
                 name: str | None = None) -> None:
        reader = _ViewReader(spec, output, dataformat)
        super().__init__(Worker(reader, name=f"view_{output}"), self._unit_ranges, name=name)
        self.spec = spec
        self.output = output
        self.dataformat = dataformat
        self.block = f"database {spec.database} {spec.protocol}/{spec.set_name}"

    def _unit_ranges(self) -> Iterator[tuple[int, int]]:
        """The ranges of the output's units, read from the view's index when first asked for."""
        yield from _view_runner(self.spec).data_indices(self.output)


def _index_file(database: Database, protocol: str, set_name: str) -> str:
    digest = hashlib.sha256(f"{database.hash()} {protocol} {set_name}".encode()).hexdigest()
    return os.path.join(tempfile.gettempdir(), f"papyflow-index-{digest[:24]}.json")


def database_pipers(database: Database, protocol: str, set_name: str, *,
                    root_folder: str | None = None, outputs: Iterable[str] | None = None,
                    index_file: str | os.PathLike[str] | None = None) -> dict[str, DatabasePiper]:
    """One source Piper per output of a database set (or per output named).

    Args:
        database: a valid :class:`~papyflow.blocks.database.Database`.
        protocol, set_name: the set to read.
        root_folder: where the raw data lies (the declared one by default).
        outputs: the outputs to make Pipers for, all by default.
        index_file: where the view's index is cached (see
            :meth:`papyflow.blocks.database.Runner.index`); by default a file
            in the temporary folder named after the database's hash, the
            protocol and the set.

    Returns:
        ``{output name: DatabasePiper}``; feed them with :func:`database_inputs`.

    Raises:
        RuntimeError: the database is not valid.
        KeyError: no such protocol, set or output.
    """
    if not database.valid:
        raise RuntimeError(f"database {database.name!r} is not valid: "
                           + "; ".join(database.errors))
    definition = database.view_definition(protocol, set_name)
    names = list(definition.outputs) if outputs is None else list(outputs)
    for name in names:
        if name not in definition.outputs:
            raise KeyError(f"database {database.name} {protocol}/{set_name} has no output "
                           f"{name!r} (outputs: {', '.join(definition.outputs)})")
    index = os.fspath(index_file) if index_file is not None else \
        _index_file(database, protocol, set_name)
    folder = root_folder if root_folder is not None else database.root_folder
    spec = _ViewSpec(tuple(database.prefix.paths), database.name, protocol, set_name, folder,
                     index)
    return {name: DatabasePiper(spec, name, definition.outputs[name],
                                name=f"{database.name}/{protocol}/{set_name}/{name}")
            for name in names}


def _passthrough(inbox: Sequence[Any]) -> Any:
    return inbox[0]


class CachedPiper(SourcePiper):
    """A source Piper emitting the units of a block's output read from the cache.

    Made by :meth:`papyflow.blocks.experiment.Experiment.build` for the
    outputs found in the cache; its input (:meth:`source`) is the
    ``Unit(record, start, end)`` of the cached output, passed on as they are.
    """

    def __init__(self, cached: CachedOutput, block: str, output: str, dataformat: str | None,
                 name: str, **options: Any) -> None:
        super().__init__(Worker(_passthrough, name="cached"), cached.read, name=name, **options)
        self.cached = cached
        self.block = block
        self.output = output
        self.dataformat = dataformat

    def _results(self) -> Iterator[Any]:
        return self._keeping(super()._results())


def database_inputs(dagger: Dagger) -> list[Iterator[Any]]:
    """The inputs of a Dagger's (or Plumber's) input Pipers, in order: all must be
    source Pipers (database views, or outputs read from the cache).

    ``plumber.start(database_inputs(plumber))`` starts a pipeline whose sources
    are database Pipers.

    Raises:
        DaggerError: an input Piper is not a :class:`SourcePiper`.
    """
    result = []
    for piper in dagger.get_inputs():
        if not isinstance(piper, SourcePiper):
            raise DaggerError(f"input piper {piper.name!r} is not a database piper: give its "
                              "input yourself")
        result.append(piper.source())
    return result


# -- algorithms: what crosses to the worker ----------------------------------------------------


# NamedTuples: they cross to the workers, and a tuple pickles several times
# faster than a frozen dataclass (whose state is rebuilt field by field).
class _Step(NamedTuple):
    """One step of the main group: its range, each input's unit, whether it is the last.

    ``units[k]`` is ``(data, start, end, same_as_previous)`` for the k-th input in
    the algorithm's order; ``data`` is ``None`` when the unit is the one the
    previous step of the chunk had (it is sent once per chunk).
    """

    start: int
    end: int
    units: tuple[tuple[Any, int, int, bool], ...]
    last: bool


class _Chunk(NamedTuple):
    """Consecutive steps given to the Worker at once (records packed when ``packed``)."""

    steps: tuple[_Step, ...]
    packed: bool
    run: str  # which start of the Piper: a new run gets a fresh Runner
    # the secondary inputs' units, each ((data, start, end), ...), in the task's order
    secondary: tuple[tuple[tuple[Any, int, int], ...], ...] = ()
    # the end of the last range that failed upstream before this chunk: the
    # next unit the code writes starts after it
    failed_through: int = -1

    @property
    def start(self) -> int:
        return self.steps[0].start

    @property
    def end(self) -> int:
        return self.steps[-1].end


class _Written(NamedTuple):
    """What the code wrote during a chunk: ``(data, start, end)`` per unit (bytes when packed)."""

    units: tuple[tuple[Any, int, int], ...]


# -- algorithms: what the code sees --------------------------------------------------------------


class StepInput:
    """One input at the current step, with the names of
    :class:`~papyflow.dataflow.inputs.Input`: ``data``, ``data_index``,
    ``data_index_end``, ``data_same_as_previous``, ``isDataUnitDone()``,
    ``hasMoreData()`` and ``hasDataChanged()``.

    ``hasMoreData()`` looks one step ahead only: it says whether the group
    has a step after this one or this input's unit goes on past the step.
    """

    def __init__(self, name: str, data_format: str, group: StepGroup) -> None:
        self.name = name
        self.data_format = data_format
        self.group = group
        self.data: Any = None
        self.data_index = -1
        self.data_index_end = -1
        self.data_same_as_previous = False

    def isDataUnitDone(self) -> bool:
        """Whether the current unit ends with the group's current step."""
        return self.data_index_end == self.group.data_index_end

    def hasMoreData(self) -> bool:
        """Whether data comes after the current step for this input."""
        return self.group.hasMoreData() or self.data_index_end > self.group.data_index_end

    def hasDataChanged(self) -> bool:
        """Whether the current unit is new at this step."""
        return not self.data_same_as_previous

    def __repr__(self) -> str:
        return f"<StepInput {self.name!r} {self.data_index}..{self.data_index_end}>"


class StepGroup:
    """The main group at the current step: its inputs by name or position, its range."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.data_index = -1
        self.data_index_end = -1
        self.last = False
        self._inputs: dict[str, StepInput] = {}

    def hasMoreData(self) -> bool:
        """Whether the group has a step after the current one."""
        return not self.last

    def __len__(self) -> int:
        return len(self._inputs)

    def __iter__(self) -> Iterator[StepInput]:
        return iter(self._inputs.values())

    def __getitem__(self, key: int | str | slice) -> Any:
        """The input named ``key``, or at position ``key``; a list of inputs for a slice."""
        if isinstance(key, str):
            try:
                return self._inputs[key]
            except KeyError:
                raise KeyError(f"no input {key!r} (inputs: "
                               f"{', '.join(map(repr, self._inputs)) or 'none'})") from None
        return list(self._inputs.values())[key]


class StepInputs:
    """What a sequential ``process()`` gets as ``inputs``: like
    :class:`~papyflow.dataflow.inputs.InputList` with one group, the main one."""

    def __init__(self, group: StepGroup) -> None:
        self.main_group = group

    def nbGroups(self) -> int:
        """The number of groups: 1 (the secondary groups come as data loaders)."""
        return 1

    def hasMoreData(self) -> bool:
        """Whether the main group has a step after the current one."""
        return self.main_group.hasMoreData()

    def group(self, name_or_index: str | int) -> StepGroup:
        """The main group, by its channel or position 0."""
        if name_or_index in (0, self.main_group.channel):
            return self.main_group
        raise KeyError(f"no input group {name_or_index!r} (groups: "
                       f"{self.main_group.channel!r})")

    def groupOf(self, input_name: str) -> StepGroup | None:
        """The group of the input ``input_name`` (``None`` when there is no such input)."""
        return self.main_group if input_name in self.main_group._inputs else None

    def __len__(self) -> int:
        return len(self.main_group)

    def __iter__(self) -> Iterator[StepInput]:
        return iter(self.main_group)

    def __getitem__(self, key: int | str | slice) -> Any:
        """An input by name or position; a list of inputs for a slice."""
        return self.main_group[key]


class _CollectingSink(DataSink):
    """Keeps what an output writes, as records of its format (packed when asked)."""

    def __init__(self, record_type: type[baseformat], packed: bool) -> None:
        self.record_type = record_type
        self.packed = packed
        self.units: list[tuple[Any, int, int]] = []

    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        record = _as_record(self.record_type, data)
        self.units.append((record.pack() if self.packed else record, start_data_index,
                           end_data_index))

    def isConnected(self) -> bool:
        return True


class _DroppingSink(DataSink):
    """Takes the units of an output that another Piper emits, and keeps nothing."""

    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        pass

    def isConnected(self) -> bool:
        return True


# -- algorithms: the Worker function ---------------------------------------------------------


class _Session:
    """A Runner built in this worker for one run, with the objects it is given at each step."""

    def __init__(self, task: _AlgorithmTask, run: str) -> None:
        self.run = run
        algorithm = Algorithm(list(task.prefix), task.algorithm)
        self.algorithm = algorithm
        self.runner = algorithm.runner()
        self.input_types = [algorithm.dataformats[algorithm.input_map[n]].type
                            for n in task.inputs]
        group = StepGroup(algorithm.groups[0].get("name", "main"))
        for name in task.inputs:
            group._inputs[name] = StepInput(name, algorithm.input_map[name], group)
        self.group = group
        self.inputs = StepInputs(group)
        self.listener = SynchronizationListener()
        if algorithm.isAnalyzer:
            record_type = algorithm.result_dataformat().type
        else:
            record_type = algorithm.dataformats[algorithm.output_map[task.output]].type
        self.sink = _CollectingSink(record_type, False)
        self.outputs = OutputList()
        if algorithm.isAnalyzer:
            self.output: Output | None = Output(task.output, self.sink, self.listener)
        else:
            self.output = None
            for name in algorithm.output_map:  # the other outputs' units are dropped
                sink = self.sink if name == task.output else _DroppingSink()
                self.outputs.add(Output(name, sink, self.listener))
        self.data_loaders = DataLoaderList()
        self.loaded = False

    def load(self, task: _AlgorithmTask, chunk: _Chunk) -> None:
        """Fill the data loaders of the secondary groups, once, from what ``chunk`` carries."""
        if self.loaded or not task.secondary:
            return
        self.loaded = True
        streams = iter(chunk.secondary)
        for channel, names in task.secondary:
            loader = DataLoader(channel)
            for name in names:
                record_type = self.algorithm.dataformats[self.algorithm.input_map[name]].type
                units = [(record_type.unpack(data) if chunk.packed else data, start, end)
                         for data, start, end in next(streams)]
                loader.add(name, MemoryDataSource(units))
            self.data_loaders.add(loader)


_SESSIONS: dict[str, _Session] = {}  # by the Piper's token, the algorithm's hash, the thread


class _AlgorithmTask:
    """The Worker function of an algorithm Piper: ``(chunk,)`` -> :class:`_Written`.

    Holds only names and plain values, so that it pickles to worker processes;
    the Runner is built where it runs, once per worker and per start of the Piper.
    """

    __name__ = "algorithm_task"

    def __init__(self, prefix: tuple[str, ...], algorithm: str, digest: str, token: str,
                 parameters: dict[str, Any], inputs: tuple[str, ...], output: str,
                 secondary: tuple[tuple[str, tuple[str, ...]], ...] = (),
                 autonomous: bool = False) -> None:
        self.prefix = prefix
        self.autonomous = autonomous
        self.secondary = secondary
        self.algorithm = algorithm
        self.digest = digest
        self.token = token
        self.parameters = parameters
        self.inputs = inputs
        self.output = output

    def _session(self, run: str) -> _Session:
        # one per worker (a process, or a thread of a thread NuMap) and run
        key = f"{self.token}:{self.digest}:{threading.get_ident()}"
        session = _SESSIONS.get(key)
        if session is None or session.run != run:
            session = _SESSIONS[key] = _Session(self, run)
        return session

    def __call__(self, inbox: Sequence[Any]) -> _Written:
        chunk: _Chunk = inbox[0]
        session = self._session(chunk.run)
        runner = session.runner
        runner.setup(self.parameters)
        session.load(self, chunk)
        sink = session.sink
        sink.packed = chunk.packed
        sink.units = []
        for output in [*session.outputs, session.output]:
            if output is None:
                continue
            if chunk.packed:  # a chunk is a fresh start: the code's state stays within it
                output.last_written_data_index = chunk.start - 1
            else:  # what failed upstream left no unit: the next one starts after it
                output.last_written_data_index = max(output.last_written_data_index,
                                                     chunk.failed_through)
        if self.autonomous:  # once, with every input in the data loaders
            session.listener.onIntervalChanged(chunk.start, chunk.end)
            if session.output is not None:
                runner.process(data_loaders=session.data_loaders, output=session.output)
            else:
                runner.process(data_loaders=session.data_loaders, outputs=session.outputs)
            return _Written(tuple(sink.units))
        group = session.group
        current: list[Any] = [None] * len(self.inputs)
        for step in chunk.steps:
            group.data_index, group.data_index_end, group.last = step.start, step.end, step.last
            session.listener.onIntervalChanged(step.start, step.end)
            for k, (entry, (data, start, end, same)) in enumerate(
                    zip(group, step.units, strict=True)):
                if data is not None:
                    current[k] = session.input_types[k].unpack(data) if chunk.packed else data
                entry.data, entry.data_index, entry.data_index_end = current[k], start, end
                entry.data_same_as_previous = same
            try:
                if session.output is not None:
                    runner.process(session.inputs, session.data_loaders, output=session.output)
                else:
                    runner.process(session.inputs, session.data_loaders, session.outputs)
            except Exception:
                # The chunk's range leaves as the failure: the next units start after it.
                for output in [*session.outputs, session.output]:
                    if output is not None:
                        output.last_written_data_index = max(output.last_written_data_index,
                                                             chunk.end)
                raise
        return _Written(tuple(sink.units))


# -- algorithms: the Piper -------------------------------------------------------------------


class AlgorithmPiper(BlockPiper):
    """A synchronized Piper running an algorithm's code.

    Made by :func:`algorithm_piper`; wire its upstream Pipers with
    :meth:`wire` or :func:`connect_blocks`. Its inboxes are the steps of the
    main group's inputs, taken in the algorithm's input order whatever the
    Dagger's order; it emits ``Unit(record, start, end)`` for each unit the
    code writes to :attr:`output`.

    Attributes:
        algorithm: the :class:`~papyflow.blocks.algorithm.Algorithm`.
        inputs: the names of the main group's inputs, in order.
        wiring: ``{input name: upstream Piper}``.
    """

    def __init__(self, algorithm: Algorithm, task: _AlgorithmTask, parallel: NuMap | bool,
                 name: str, **options: Any) -> None:
        super().__init__(Worker(task, name=name), parallel=parallel, name=name,
                         synchronized=True, **options)
        self.algorithm = algorithm
        self.block = f"algorithm {algorithm.name}"
        self.output = task.output
        self.dataformat = None if algorithm.isAnalyzer else algorithm.output_map[task.output]
        self.inputs: tuple[str, ...] = task.inputs + tuple(
            name for _, names in task.secondary for name in names)
        self.main_inputs = task.inputs
        self.wiring: dict[str, Piper] = {}
        self.cache: CachedOutput | None = None
        """Where the units emitted are stored as they go by (set by an experiment)."""
        self._order: list[int] = []
        self._spans: deque[tuple[int, int] | None] = deque()
        self._run = ""

    def wire(self, upstreams: Mapping[str, Piper]) -> list[Piper]:
        """Say which upstream Piper feeds each input; returns them in input order.

        Raises:
            DaggerError: an input is unknown or not given, or an upstream
                :class:`BlockPiper` emits another dataformat than the input
                takes (the message names both ends).
        """
        names = set(self.inputs)
        for input_name, upstream in upstreams.items():
            if input_name not in names:
                raise DaggerError(f"{self.block} (piper {self.name!r}) has no input "
                                  f"{input_name!r} in its main group (inputs: "
                                  f"{', '.join(self.inputs)})")
            expected = self.algorithm.input_map[input_name]
            if isinstance(upstream, BlockPiper) and upstream.dataformat != expected:
                raise DaggerError(f"cannot connect {upstream.describe()} to input "
                                  f"{input_name!r} (dataformat {expected!r}) of {self.block} "
                                  f"(piper {self.name!r}): the dataformats differ")
        missing = [n for n in self.inputs if n not in upstreams]
        if missing:
            raise DaggerError(f"{self.block} (piper {self.name!r}): no upstream piper for "
                              f"input(s) {', '.join(map(repr, missing))}")
        self.wiring = {n: upstreams[n] for n in self.inputs}
        return list(self.wiring.values())

    def connect(self, inbox: Sequence[Any]) -> None:
        """Connect to the upstream Pipers; each must be wired to an input (see :meth:`wire`).

        A one-input algorithm with one upstream Piper is wired on the fly.
        """
        if not self.wiring and len(self.inputs) == 1 and len(inbox) == 1 \
                and isinstance(inbox[0], Piper):
            self.wire({self.inputs[0]: inbox[0]})
        position = {id(u): k for k, u in enumerate(inbox)}
        if len(inbox) != len(self.inputs) or any(id(u) not in position
                                                 for u in self.wiring.values()):
            raise DaggerError(f"{self.block} (piper {self.name!r}): its upstream pipers "
                              f"{[getattr(u, 'name', u) for u in inbox]} are not those wired "
                              f"to its inputs {list(self.inputs)}; use wire() or "
                              "connect_blocks()")
        self._order = [position[id(self.wiring[n])] for n in self.inputs]
        super().connect(inbox)

    # -- the data path (the Piper's side) ------------------------------------------------

    def _steps(self, sources: list[Iterator[Any]]) -> Iterator[Any]:
        from ..dataflow.units import synchronize

        packed = self.parallel
        spans = self._spans
        run = self._run
        main = len(self.main_inputs)
        ordered = [sources[k] for k in self._order[:main]]
        secondary, failure = _drained([sources[k] for k in self._order[main:]], packed)
        if not main:  # autonomous: one inbox holding all the data
            ranges = [(u[1], u[2]) for units in secondary for u in units]
            if failure is not None or not ranges:
                spans.append(None)
                yield (failure or PiperError(f"{self.block}: its inputs hold no data"),)
                return
            start, end = min(r[0] for r in ranges), max(r[1] for r in ranges)
            spans.append((start, end))
            yield (_Chunk((_Step(start, end, (), True),), packed, run, secondary),)
            return
        pending: list[_Step] = []
        failed_through = -1
        ended: list[int] = []  # the main inputs that have ended
        ordered = [_watched(source, k, ended) for k, source in enumerate(ordered)]
        try:
            for step, last in _with_last(synchronize(ordered)):
                if isinstance(step, PiperError):  # an upstream failure without a range
                    if pending:
                        spans.append((pending[0].start, pending[-1].end))
                        yield (_Chunk(tuple(pending), packed, run, secondary,
                                      failed_through),)
                        pending = []
                    spans.append(None)
                    yield (step,)
                    continue
                failed = failure or next(
                    (u.data for u in step.inbox if isinstance(u.data, PiperError)), None)
                if failed is not None:  # a unit that failed upstream: its range fails here
                    if pending:
                        spans.append((pending[0].start, pending[-1].end))
                        yield (_Chunk(tuple(pending), packed, run, secondary,
                                      failed_through),)
                        pending = []
                    spans.append((step.start, step.end))
                    failed_through = step.end
                    yield (failed,)
                    continue
                pending.append(_Step(step.start, step.end, tuple(
                    _outgoing(u, packed, bool(pending)) for u in step.inbox), last))
                # Linear: one step at a time. Parallel: up to where every unit ends.
                if not packed or last or all(u.data_index_end == step.end for u in step.inbox):
                    spans.append((pending[0].start, pending[-1].end))
                    yield (_Chunk(tuple(pending), packed, run, secondary,
                                      failed_through),)
                    pending = []
        except Exception as exc:  # a gap, an overlap, an upstream that ended failing
            if not self._stopped_short(exc, ended):
                raise
            if pending:  # the steps gathered before the stop go through
                spans.append((pending[0].start, pending[-1].end))
                yield (_Chunk(tuple(pending), packed, run, secondary, failed_through),)

    def _results(self) -> Iterator[Any]:
        self._spans = deque()
        self._run = uuid.uuid4().hex
        units = self._emit(self._evaluated())
        return self._keeping(units if self.cache is None else self.cache.write(
            units, cut=lambda: self._stopping))

    def _emit(self, results: Iterator[Any]) -> Iterator[Any]:
        spans = self._spans
        stats = self.stats
        record_type: type[baseformat] | None = None
        emitted = 0  # the Piper's results are units, not the chunks its Worker returns
        for result in results:
            span = spans.popleft()
            if not isinstance(result, _Written):
                if isinstance(result, PiperError):
                    _name_origin(result, self.name)
                emitted += 1
                stats.results = emitted
                yield result if span is None else Unit(result, *span)
                continue
            for data, start, end in result.units:
                if isinstance(data, bytes):
                    if record_type is None:
                        record_type = self._record_type()
                    data = record_type.unpack(data)
                emitted += 1
                stats.results = emitted
                yield Unit(data, start, end)
            stats.results = emitted

    def _record_type(self) -> type[baseformat]:
        algorithm = self.algorithm
        if algorithm.isAnalyzer:
            return algorithm.result_dataformat().type
        return algorithm.dataformats[algorithm.output_map[self.output]].type


def _name_origin(error: PiperError, name: str) -> None:
    """Mark the innermost PiperError of ``error`` with the Piper where it happened
    (``origin``), unless an earlier Piper (where it happened) marked it."""
    while error.args and isinstance(error.args[0], PiperError):
        error = error.args[0]
    if not hasattr(error, "origin"):
        error.origin = name  # type: ignore[attr-defined]


def _drained(sources: list[Iterator[Any]], packed: bool
             ) -> tuple[tuple[tuple[tuple[Any, int, int], ...], ...], PiperError | None]:
    """The secondary inputs read to their ends (records packed when ``packed``),
    and the first failure among them (then every step of the Piper fails with it)."""
    result = []
    failure = None
    for source in sources:
        units = []
        for item in source:
            data = item if isinstance(item, PiperError) else item[0]
            if isinstance(data, PiperError):
                failure = failure or data
                continue
            data, start, end = item
            units.append((data.pack() if packed and isinstance(data, baseformat) else data,
                          start, end))
        result.append(tuple(units))
    return tuple(result), failure


def _with_last(items: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """Each item with whether it is the last (one item of lookahead).

    When ``items`` raises while looking ahead, the item already read comes
    first, as the last: it is whole, and goes through before the error.
    """
    iterator = iter(items)
    try:
        previous = next(iterator)
    except StopIteration:
        return
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception:
            yield previous, True
            raise
        yield previous, False
        previous = item
    yield previous, True


def _outgoing(unit: SyncedInput, packed: bool, continued: bool) -> tuple[Any, int, int, bool]:
    """A step's unit as it travels: data left out when the chunk has it already."""
    data = unit.data
    if continued and unit.data_same_as_previous:
        data = None
    elif packed and isinstance(data, baseformat):
        data = data.pack()
    return (data, unit.data_index, unit.data_index_end, unit.data_same_as_previous)


def algorithm_piper(algorithm: Algorithm, *, parameters: Mapping[str, Any] | None = None,
                    parallel: NuMap | bool = False, name: str | None = None,
                    output: str | None = None, **options: Any) -> AlgorithmPiper:
    """A Piper running ``algorithm``'s code once per step of its main group.

    Args:
        algorithm: a valid sequential, autonomous or legacy algorithm.
        parameters: given to the code's ``setup`` (defaults filled in);
            checked here.
        parallel: ``False`` or a NuMap (process workers work: see the module's
            documentation); the algorithm must then be ``splittable``.
        name: the Piper's name (by default the algorithm's, with the output
            when it has several).
        output: the output whose units the Piper emits; needed when there are
            several (make one Piper per output). Analyzers: ignored.
        **options: other :class:`~papyflow.Piper` options (``timeout``,
            ``debug``, ``branch``, ``track``).

    Raises:
        RuntimeError: the algorithm is not valid.
        ValueError: it is a loop algorithm, or a legacy one with secondary
            groups; the output is unknown or not given; or it is not
            splittable and ``parallel`` is a NuMap.
        ParameterError: a parameter is unknown, of the wrong type or out of range,
            or one without a default is not given.
    """
    if not algorithm.valid:
        raise RuntimeError(f"algorithm {algorithm.name!r} is not valid: "
                           + "; ".join(algorithm.errors))
    if algorithm.is_loop:
        raise ValueError(f"algorithm {algorithm.name!r} ({algorithm.type}): loop algorithms "
                         "do not run as Pipers yet: run them with "
                         "papyflow.execution.LoopExecutor (the evaluator) and "
                         "AlgorithmExecutor (the processor)")
    if len(algorithm.groups) != 1 and algorithm.type == Algorithm.LEGACY:
        raise ValueError(f"algorithm {algorithm.name!r} has {len(algorithm.groups)} groups: "
                         "secondary groups of legacy algorithms are not supported by pipers")
    if parallel is not False and not algorithm.splittable:
        raise ValueError(f"algorithm {algorithm.name!r} is not splittable: it cannot run on "
                         "a NuMap")
    algorithm.complete_parameters(parameters or {})
    if algorithm.isAnalyzer:
        output = "results"
    else:
        outputs = list(algorithm.output_map)
        if output is None:
            if len(outputs) != 1:
                raise ValueError(f"algorithm {algorithm.name!r} has outputs {outputs}: say "
                                 "which one the Piper emits (output=...)")
            output = outputs[0]
        elif output not in algorithm.output_map:
            raise ValueError(f"algorithm {algorithm.name!r} has no output {output!r} "
                             f"(outputs: {', '.join(outputs)})")
        if name is None and len(outputs) > 1:
            name = f"{algorithm.name}:{output}"
    autonomous = algorithm.is_autonomous
    task = _AlgorithmTask(tuple(algorithm.prefix.paths), algorithm.name, algorithm.hash(),
                          uuid.uuid4().hex, dict(parameters or {}),
                          () if autonomous else tuple(algorithm.groups[0]["inputs"]), output,
                          tuple((g.get("name", f"group{k}"), tuple(g["inputs"]))
                                for k, g in enumerate(algorithm.groups)
                                if k or autonomous), autonomous)
    return AlgorithmPiper(algorithm, task, parallel, name or algorithm.name, **options)


def connect_blocks(dagger: Dagger, piper: AlgorithmPiper, upstreams: Mapping[str, Piper]) -> None:
    """Add ``piper`` to ``dagger`` fed by ``upstreams`` (``{input name: upstream Piper}``).

    The wiring is checked first (see :meth:`AlgorithmPiper.wire`): a dataformat
    mismatch raises DaggerError naming both ends, and nothing is added.
    """
    for upstream in piper.wire(upstreams):
        dagger.add_pipe([upstream, piper])
