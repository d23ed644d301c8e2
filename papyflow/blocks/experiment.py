"""Experiments: a JSON declaration of datasets, blocks and their connections, built into Pipers.

A declaration (a JSON file or a dict) looks like this::

    {
        "description": "optional text",
        "datasets": {
            "train": {"database": "toy/1", "protocol": "main", "set": "train"},
            "test": {"database": "toy/1", "protocol": "main", "set": "test"}
        },
        "blocks": {
            "preprocess_train": {
                "algorithm": "toy/preprocess/1",
                "parameters": {},
                "inputs": {"features": "train.features"}
            },
            "enroll": {
                "algorithm": "toy/enroll/1",
                "inputs": {"features": "preprocess_train.features", "client": "train.client"}
            },
            ...
        }
    }

- ``datasets`` names database sets; each gives its outputs (``train.features``).
- ``blocks`` names algorithm blocks: ``algorithm`` (required), ``parameters``
  (optional, checked with :meth:`~papyflow.blocks.algorithm.Algorithm.clean_parameter`)
  and ``inputs`` mapping every input of the algorithm to ``"<source>.<output>"``,
  where the source is a dataset or another block.
- Blocks whose algorithm is an analyzer are the experiment's analyzers:
  :meth:`Experiment.run` returns their result records. Every other block must
  feed some block, or be kept.
- ``keep`` (optional) lists other outputs to keep, ``["enroll.model"]``:
  :meth:`Experiment.run` returns their records too, by ``"<block>.<output>"``.
  An analyzer's results are returned already (by the block's name): keeping
  them, ``"eer.results"``, is an error.

Loading never raises: :attr:`Experiment.valid` and :attr:`Experiment.errors`
(each error names the file and the field path, ``blocks.score.inputs.model``)
say what is wrong. :meth:`Experiment.build` raises
:class:`ExperimentError` (a ValueError) for an invalid declaration.

Outputs are cached by their hashes (see :meth:`Experiment.hashes` and
:meth:`Experiment.plan`): a rerun computes only the outputs that changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from numap import NuMap

from .._declarations import read_declaration
from ..errors import PiperError, PlumberError
from ..plumber import Plumber, State
from ._cache import CachedOutput
from ._fingerprints import (
    algorithm_fingerprint,
    block_output_hash,
    dataset_output_hash,
    parameter_values,
)
from .algorithm import Algorithm
from .database import Database
from .pipers import (
    BlockPiper,
    CachedPiper,
    algorithm_piper,
    connect_blocks,
    database_inputs,
    database_pipers,
)

__all__ = ["Experiment", "ExperimentError", "ExperimentPlumber"]

_TOP = ("description", "datasets", "blocks", "keep")
_DATASET = ("database", "protocol", "set")
_BLOCK = ("algorithm", "parameters", "inputs")


class ExperimentError(ValueError):
    """An experiment declaration that is not valid; ``errors`` lists what is wrong."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = list(errors)


class Experiment:
    """An experiment declaration, checked against the assets of ``prefix``.

    Args:
        prefix: the prefix holding the databases, algorithms and dataformats.
        declaration: the path of a JSON file, or the declaration as a dict.
        parameters: ``{block: {parameter: value}}`` set over the declared
            parameters (checked as they are); an unknown block is an error
            of the field ``parameters.<block>``.

    Attributes:
        valid: whether the declaration is usable.
        errors: what is wrong, each naming the file and the field path.
        datasets, blocks: the declaration's sections (empty when malformed).
        algorithms: the :class:`~papyflow.blocks.algorithm.Algorithm` of each block.
        databases: the :class:`~papyflow.blocks.database.Database` of each dataset.
        order: the blocks in an order where each comes after what feeds it.
        analyzers: the names of the blocks whose algorithm is an analyzer.
        keep: the other outputs kept, ``"<block>.<output>"``.
    """

    def __init__(self, prefix: str | os.PathLike[str],
                 declaration: str | os.PathLike[str] | Mapping[str, Any],
                 parameters: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.prefix = os.fspath(prefix)
        self.declaration: Any = None
        """The declaration as read (a dict when it is one)."""
        self.errors: list[str] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.algorithms: dict[str, Algorithm] = {}
        self.databases: dict[str, Database] = {}
        self.parameters: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.analyzers: list[str] = []
        self.keep: list[str] = []
        # (source, output) -> dataformat name, for every output a connection may name
        self._outputs: dict[tuple[str, str], str | None] = {}
        self._dataformats: dict[str, Any] = {}
        self._libraries: dict[str, Any] = {}
        self._broken: set[str] = set()  # declared, but not valid
        if isinstance(declaration, Mapping):
            self.file = "<declaration>"
            data: Any = declaration
        else:
            self.file = os.fspath(declaration)
            try:
                with open(self.file, "rb") as stream:
                    data, duplicates = read_declaration(stream.read())
            except OSError as error:
                self._error("", f"cannot read the declaration: {error.strerror or error}")
                return
            except ValueError as error:  # not JSON, or not UTF-8
                self._error("", f"not valid JSON: {error}")
                return
            for path in duplicates:  # json would keep the last silently
                self._error(path, "key given more than once in the JSON object")
        if parameters:
            data = self._override(data, parameters)
        self.declaration = data
        self._check(data)

    def _override(self, data: Any, parameters: Mapping[str, Mapping[str, Any]]) -> Any:
        """``data`` with the blocks' parameters of ``parameters`` set over the declared ones."""
        blocks = data.get("blocks") if isinstance(data, Mapping) else None
        if not isinstance(blocks, Mapping):
            return data  # the declaration's own error says why
        changed = {**data, "blocks": dict(blocks)}
        for name, values in parameters.items():
            block = blocks.get(name)
            if not isinstance(block, Mapping):
                self._error(f"parameters.{name}", f"no block {name!r} to set parameters of "
                            f"(blocks: {', '.join(map(str, blocks))})")
                continue
            declared = block.get("parameters", {})
            declared = declared if isinstance(declared, Mapping) else {}
            changed["blocks"][name] = {**block, "parameters": {**declared, **values}}
        return changed

    @property
    def valid(self) -> bool:
        return not self.errors

    def _error(self, field: str, message: str) -> None:
        where = f"{self.file}: {field}: " if field else f"{self.file}: "
        self.errors.append(where + message)

    # -- checking ---------------------------------------------------------------------------

    def _check(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            self._error("", "the declaration must be a JSON object")
            return
        for key in data:
            if key not in _TOP:
                self._error(key, f"unknown field (fields: {', '.join(_TOP)})")
        datasets = data.get("datasets", {})
        blocks = data.get("blocks")
        if not isinstance(datasets, Mapping):
            self._error("datasets", "must be an object mapping dataset names to sets")
            datasets = {}
        if not isinstance(blocks, Mapping) or not blocks:
            self._error("blocks", "must be a non-empty object mapping block names to blocks")
            blocks = {}
        for name in datasets:
            if name in blocks:
                self._error(f"blocks.{name}", "the name of a dataset too")
        for name, dataset in datasets.items():
            self._check_dataset(str(name), dataset)
        for name, block in blocks.items():
            self._check_block(str(name), block)
        self._broken = {str(n) for n in (*datasets, *blocks)} - {*self.datasets, *self.blocks}
        for name in self.blocks:
            self._check_inputs(name)
        self._sort()
        self._check_keep(data.get("keep", []))
        self._check_used(blocks)

    def _check_dataset(self, name: str, dataset: Any) -> None:
        field = f"datasets.{name}"
        if not isinstance(dataset, Mapping):
            self._error(field, "must be an object with database, protocol and set")
            return
        problems = [k for k in dataset if k not in _DATASET]
        for key in problems:
            self._error(f"{field}.{key}", f"unknown field (fields: {', '.join(_DATASET)})")
        missing = [k for k in _DATASET if not isinstance(dataset.get(k), str)]
        for key in missing:
            self._error(f"{field}.{key}", "missing, or not a string")
        if problems or missing:
            return
        database = Database(self.prefix, dataset["database"], dataformat_cache=self._dataformats)
        if not database.valid:
            self._error(f"{field}.database", f"database {dataset['database']!r} is not valid: "
                        + "; ".join(database.errors))
            return
        protocol, set_name = dataset["protocol"], dataset["set"]
        if protocol not in database.protocol_names:
            self._error(f"{field}.protocol", f"database {database.name!r} has no protocol "
                        f"{protocol!r} (protocols: {', '.join(database.protocol_names)})")
            return
        if set_name not in database.set_names(protocol):
            self._error(f"{field}.set", f"database {database.name!r}, protocol {protocol!r} "
                        f"has no set {set_name!r} (sets: "
                        f"{', '.join(database.set_names(protocol))})")
            return
        self.datasets[name] = dict(dataset)
        self.databases[name] = database
        for output, dataformat in database.set(protocol, set_name)["outputs"].items():
            self._outputs[(name, output)] = dataformat

    def _check_block(self, name: str, block: Any) -> None:
        field = f"blocks.{name}"
        if not isinstance(block, Mapping):
            self._error(field, "must be an object with algorithm, parameters and inputs")
            return
        for key in block:
            if key not in _BLOCK:
                self._error(f"{field}.{key}", f"unknown field (fields: {', '.join(_BLOCK)})")
        if not isinstance(block.get("algorithm"), str):
            self._error(f"{field}.algorithm", "missing, or not a string")
            return
        parameters = block.get("parameters", {})
        inputs = block.get("inputs", {})
        if not isinstance(parameters, Mapping):
            self._error(f"{field}.parameters", "must be an object")
            return
        if not isinstance(inputs, Mapping):
            self._error(f"{field}.inputs", "must be an object mapping inputs to outputs")
            return
        algorithm = Algorithm(self.prefix, block["algorithm"],
                              dataformat_cache=self._dataformats,
                              library_cache=self._libraries)
        if not algorithm.valid:
            self._error(f"{field}.algorithm", f"algorithm {block['algorithm']!r} is not "
                        "valid: " + "; ".join(algorithm.errors))
            return
        if algorithm.is_loop:
            self._error(f"{field}.algorithm", f"algorithm {algorithm.name!r} is a loop "
                        f"algorithm ({algorithm.type}): not supported in experiments yet "
                        "(papyflow.execution runs loops)")
            return
        ok = True
        for key, value in parameters.items():
            try:
                algorithm.clean_parameter(key, value)
            except (ValueError, RuntimeError) as error:
                message = str(error.args[0]) if error.args else str(error)
                self._error(f"{field}.parameters.{key}", f"block {name!r}: {message}")
                ok = False
        for key, spec in algorithm.parameters.items():
            if key not in parameters and not (isinstance(spec, Mapping) and "default" in spec):
                self._error(f"{field}.parameters.{key}", f"block {name!r}: algorithm "
                            f"{algorithm.name!r}: parameter {key!r} has no default and is "
                            "not given")
                ok = False
        if not ok:
            return
        self.blocks[name] = {"algorithm": block["algorithm"], "parameters": dict(parameters),
                             "inputs": dict(inputs)}
        self.algorithms[name] = algorithm
        self.parameters[name] = dict(parameters)
        if algorithm.isAnalyzer:
            self.analyzers.append(name)
            self._outputs[(name, "results")] = None
        else:
            for output, dataformat in algorithm.output_map.items():
                self._outputs[(name, output)] = dataformat

    def _source(self, text: Any) -> tuple[str, str] | None:
        if not isinstance(text, str) or text.count(".") < 1:
            return None
        source, _, output = text.rpartition(".")
        # a block or dataset name may hold dots; the output name does not
        return (source, output) if source and output else None

    def _check_inputs(self, name: str) -> None:
        algorithm = self.algorithms[name]
        inputs = self.blocks[name]["inputs"]
        field = f"blocks.{name}.inputs"
        for key in inputs:
            if key not in algorithm.input_map:
                self._error(f"{field}.{key}", f"algorithm {algorithm.name!r} has no input "
                            f"{key!r} (inputs: {', '.join(algorithm.input_map)})")
        for key, dataformat in algorithm.input_map.items():
            if key not in inputs:
                self._error(f"{field}.{key}", "not connected")
                continue
            source = self._source(inputs[key])
            if source is None:
                self._error(f"{field}.{key}", f"{inputs[key]!r} is not "
                            "'<dataset or block>.<output>'")
                continue
            if source[0] in self._broken:
                continue  # its own error says why
            if source[0] not in self.datasets and source[0] not in self.blocks:
                self._error(f"{field}.{key}", f"unknown dataset or block {source[0]!r}")
                continue
            if source not in self._outputs:
                outputs = [o for s, o in self._outputs if s == source[0]]
                self._error(f"{field}.{key}", f"{source[0]!r} has no output {source[1]!r} "
                            f"(outputs: {', '.join(outputs) or 'none'})")
                continue
            produced = self._outputs[source]
            if produced != dataformat:
                self._error(f"{field}.{key}", f"cannot connect output {source[1]!r} "
                            f"(dataformat {produced!r}) of {source[0]!r} to input {key!r} "
                            f"(dataformat {dataformat!r}) of block {name!r}: the dataformats "
                            "differ")

    def _upstream_blocks(self, name: str) -> set[str]:
        found = set()
        for text in self.blocks[name]["inputs"].values():
            source = self._source(text)
            if source is not None and source[0] in self.blocks:
                found.add(source[0])
        return found

    def _sort(self) -> None:
        pending = {name: self._upstream_blocks(name) for name in self.blocks}
        while pending:
            ready = [n for n, ups in pending.items() if not ups & pending.keys()]
            if not ready:
                # leave out the blocks that only depend on the cycle
                while True:
                    needed = set().union(*pending.values())
                    sinks = [n for n in pending if n not in needed]
                    if not sinks:
                        break
                    for sink in sinks:
                        del pending[sink]
                cycle = ", ".join(sorted(pending))
                self._error("blocks", f"the connections of blocks {cycle} make a cycle")
                return
            for name in ready:
                self.order.append(name)
                del pending[name]

    def _check_keep(self, keep: Any) -> None:
        if not isinstance(keep, list):
            self._error("keep", "must be a list of '<block>.<output>'")
            return
        for position, text in enumerate(keep):
            field = f"keep[{position}]"
            source = self._source(text)
            if source is None:
                self._error(field, f"{text!r} is not '<block>.<output>'")
            elif source[0] in self._broken:
                continue  # its own error says why
            elif source[0] not in self.blocks:
                what = "a dataset: its outputs are read, not kept" \
                    if source[0] in self.datasets else "not a block"
                self._error(field, f"{source[0]!r} is {what}")
            elif source[0] in self.analyzers:
                self._error(field, f"{text!r} is the results of the analyzer {source[0]!r}: "
                            f"they are returned as {source[0]!r} without keeping them")
            elif source not in self._outputs:
                outputs = [o for s, o in self._outputs if s == source[0]]
                self._error(field, f"block {source[0]!r} has no output {source[1]!r} "
                            f"(outputs: {', '.join(outputs)})")
            elif text not in self.keep:
                self.keep.append(text)

    def _check_used(self, blocks: Mapping[str, Any]) -> None:
        # what feeds a block or is kept, counting the blocks that are not valid
        used = {text.rpartition(".")[0] for text in self.keep}
        for block in blocks.values():
            inputs = block.get("inputs") if isinstance(block, Mapping) else None
            for text in (inputs.values() if isinstance(inputs, Mapping) else ()):
                source = self._source(text)
                if source is not None:
                    used.add(source[0])
        for name in self.blocks:
            if name not in used and name not in self.analyzers:
                self._error(f"blocks.{name}", "its outputs feed no block and it is not an "
                            "analyzer")
        if self.blocks and not self.analyzers and not self._broken:
            self._error("blocks", "no block is an analyzer")

    # -- hashes and the cache ----------------------------------------------------------------

    def _block_outputs(self, name: str) -> list[str]:
        algorithm = self.algorithms[name]
        return ["results"] if algorithm.isAnalyzer else list(algorithm.output_map)

    def hashes(self) -> dict[str, str]:
        """The hash of every output, ``{"<dataset or block>.<output>": digest}``.

        A block output's hash covers its algorithm (declaration, code, the
        libraries and dataformats it uses), the values of all its parameters
        and the hashes of the outputs connected to its inputs; a dataset
        output's covers the database (declaration and view code), protocol,
        set and dataformat. The files are read again at each call.

        Raises:
            ExperimentError: the declaration is not valid.
        """
        self._raise_if_invalid()
        hashes: dict[str, str] = {}
        for name, dataset in self.datasets.items():
            database = self.databases[name]
            protocol, set_name = dataset["protocol"], dataset["set"]
            for output in database.view_definition(protocol, set_name).outputs:
                hashes[f"{name}.{output}"] = dataset_output_hash(database, protocol, set_name,
                                                                 output)
        for name in self.order:
            algorithm = self.algorithms[name]
            fingerprint = algorithm_fingerprint(algorithm)
            values = parameter_values(algorithm, self.parameters[name])
            inputs = {key: hashes[text] for key, text in self.blocks[name]["inputs"].items()}
            for output in self._block_outputs(name):
                hashes[f"{name}.{output}"] = block_output_hash(fingerprint, values, inputs,
                                                               output)
        return hashes

    def _cached_output(self, cache: str, name: str, output: str,
                       hashes: Mapping[str, str]) -> CachedOutput:
        algorithm = self.algorithms[name]
        dataformat = algorithm.result_dataformat() if algorithm.isAnalyzer else \
            algorithm.dataformats[algorithm.output_map[output]]
        about = {"block": name, "output": output, "algorithm": algorithm.name,
                 "parameters": parameter_values(algorithm, self.parameters[name]),
                 "inputs": {key: hashes[text]
                            for key, text in self.blocks[name]["inputs"].items()}}
        return CachedOutput(cache, hashes[f"{name}.{output}"], dataformat,
                            f"block {name!r} output {output!r}", about)

    def plan(self, cache: str | os.PathLike[str] | None = None) -> dict[str, str]:
        """What a run does for each output it needs: ``{"<source>.<output>": action}``.

        The action is ``"run"`` (the block's code computes it), ``"cached"``
        (read from ``cache``, where it is complete) or ``"read"`` (a dataset's
        output, read from its view). A run needs the analyzers' results and,
        for every output it runs, the outputs feeding that block: an
        unchanged experiment whose results are all cached needs nothing else.

        Raises:
            ExperimentError: the declaration is not valid.
        """
        hashes = self.hashes()
        folder = None if cache is None else os.fspath(cache)
        needed = {f"{name}.results" for name in self.analyzers} | set(self.keep)
        plan: dict[str, str] = {}
        for name in reversed(self.order):
            for output in self._block_outputs(name):
                key = f"{name}.{output}"
                if key not in needed:
                    continue
                if folder is not None and \
                        self._cached_output(folder, name, output, hashes).units() is not None:
                    plan[key] = "cached"
                else:
                    plan[key] = "run"
                    needed.update(self.blocks[name]["inputs"].values())
        ordered = {key: "read" for key in hashes if key in needed and
                   key.rpartition(".")[0] in self.datasets}
        for name in self.order:
            for output in self._block_outputs(name):
                if f"{name}.{output}" in plan:
                    ordered[f"{name}.{output}"] = plan[f"{name}.{output}"]
        return ordered

    def _raise_if_invalid(self) -> None:
        if not self.valid:
            raise ExperimentError(self.errors)

    # -- building and running ---------------------------------------------------------------

    def build(self, parallel: NuMap | bool = False,
              index_folder: str | os.PathLike[str] | None = None,
              cache: str | os.PathLike[str] | None = None) -> tuple[ExperimentPlumber,
                                                                   dict[str, BlockPiper]]:
        """The experiment as a Plumber, and its Pipers by ``"<source>.<output>"``.

        Only what :meth:`plan` says is needed is built: an output found
        complete in ``cache`` becomes a :class:`~papyflow.blocks.pipers.CachedPiper`
        reading it, and nothing upstream of it is built; every block that runs
        writes its outputs to ``cache`` as they go by (committed when its
        stream ends without a failure). Splittable blocks run on ``parallel``
        (a NuMap) when given, the others linearly. The views' indices are
        cached in ``index_folder`` (by default in the temporary folder).

        Start it with ``plumber.start(plumber.inputs())``, then ``run()``,
        ``wait()`` and ``stop()``; :meth:`ExperimentPlumber.results` gives the
        analyzers' records. ``plumber.save(path)`` writes a pipeline file
        that rebuilds it.

        Raises:
            ExperimentError: the declaration is not valid (a ValueError).
        """
        plan = self.plan(cache)
        hashes = self.hashes()
        folder = None if cache is None else os.fspath(cache)
        pipers: dict[str, BlockPiper] = {}
        piper: BlockPiper
        reads: dict[str, list[str]] = {}
        for key, action in plan.items():
            if action == "read":
                source, _, output = key.rpartition(".")
                reads.setdefault(source, []).append(output)
        for name, outputs in reads.items():
            dataset = self.datasets[name]
            # Named after the database's hash (its code included): a changed view
            # makes a new index instead of reusing the old one.
            index = None if index_folder is None else os.path.join(
                os.fspath(index_folder),
                f"{name}-{self.databases[name].hash()[:16]}.index.json")
            made = database_pipers(self.databases[name], dataset["protocol"], dataset["set"],
                                   outputs=sorted(outputs), index_file=index)
            for output, database_piper in made.items():
                pipers[f"{name}.{output}"] = database_piper
        plumber = ExperimentPlumber(self, parallel, index_folder, cache)
        for name in self.order:
            algorithm = self.algorithms[name]
            several = len(algorithm.output_map) > 1
            for output in self._block_outputs(name):
                key = f"{name}.{output}"
                if key not in plan:
                    continue
                piper_name = key if several else name
                if plan[key] == "cached":
                    assert folder is not None
                    piper = CachedPiper(
                        self._cached_output(folder, name, output, hashes),
                        f"algorithm {algorithm.name}", output,
                        None if algorithm.isAnalyzer else algorithm.output_map[output],
                        name=piper_name)
                    plumber.add_piper(piper)
                else:
                    made_piper = algorithm_piper(
                        algorithm, parameters=self.parameters[name],
                        parallel=parallel if algorithm.splittable else False, name=piper_name,
                        output=None if algorithm.isAnalyzer else output)
                    if folder is not None:
                        made_piper.cache = self._cached_output(folder, name, output, hashes)
                    connect_blocks(plumber, made_piper,
                                   {k: pipers[t] for k, t in self.blocks[name]["inputs"].items()})
                    piper = made_piper
                if algorithm.isAnalyzer:
                    piper.kept = plumber.kept.setdefault(name, [])
                elif key in self.keep:
                    piper.kept = plumber.kept.setdefault(key, [])
                pipers[key] = piper
        plumber.plan = plan
        plumber.block_pipers = pipers
        return plumber, pipers

    def run(self, parallel: NuMap | bool = False,
            index_folder: str | os.PathLike[str] | None = None,
            cache: str | os.PathLike[str] | None = None) -> dict[str, list[Any]]:
        """Build and run the experiment: ``{analyzer block: [result record, ...]}``, and
        ``{"<block>.<output>": [record, ...]}`` for the outputs in ``keep``.

        With ``cache``, outputs found there are reused and those computed are
        stored (see :meth:`build`).

        Raises:
            ExperimentError: the declaration is not valid.
            PiperError: an analyzer got a failure (the first one); the outputs
                of the blocks that did not fail are cached all the same.
        """
        plumber, _ = self.build(parallel, index_folder, cache)
        plumber.start(plumber.inputs())
        try:
            plumber.run()
            plumber.wait()
        finally:
            if plumber.state is State.RUNNING:
                plumber.pause()
            plumber.stop()
        return plumber.results()


class ExperimentPlumber(Plumber):
    """The Plumber of an experiment (made by :meth:`Experiment.build`).

    Attributes:
        experiment: the :class:`Experiment`.
        plan: what the run does for each output (see :meth:`Experiment.plan`).
        block_pipers: the Pipers by ``"<source>.<output>"``.
        kept: the units each analyzer emitted in the last run, by block, and
            those of the outputs kept, by ``"<block>.<output>"``.
    """

    def __init__(self, experiment: Experiment, parallel: NuMap | bool,
                 index_folder: str | os.PathLike[str] | None,
                 cache: str | os.PathLike[str] | None) -> None:
        super().__init__()
        self.experiment = experiment
        self.parallel = parallel
        self.index_folder = None if index_folder is None else os.fspath(index_folder)
        self.cache = None if cache is None else os.fspath(cache)
        self.plan: dict[str, str] = {}
        self.block_pipers: dict[str, BlockPiper] = {}
        self.kept: dict[str, list[Any]] = {}

    def inputs(self) -> list[Iterator[Any]]:
        """The inputs of the source Pipers, for :meth:`start`."""
        return database_inputs(self)

    def start(self, datas: Sequence[Iterable[Any]]) -> None:  # type: ignore[override]
        for units in self.kept.values():
            units.clear()
        super().start(datas)

    def results(self) -> dict[str, list[Any]]:
        """``{analyzer block: [result record, ...]}`` of the last run, and the
        records of the outputs kept by ``"<block>.<output>"`` (:attr:`kept`
        holds them as units, with their data indices).

        Raises:
            PiperError: an analyzer got a failure (the first one).
        """
        results: dict[str, list[Any]] = {}
        for name, units in self.kept.items():
            for unit in units:
                data = unit if isinstance(unit, PiperError) else unit.data
                if isinstance(data, PiperError):
                    raise data
            results[name] = [unit.data for unit in units]
        return results

    def save(self, filename: str | os.PathLike[str]) -> None:
        """Write a pipeline file that rebuilds this experiment (see :mod:`papyflow.pipefile`).

        The file holds the prefix, the declaration, the NuMap's settings, the
        index folder and the cache; run it with ``papyflow run FILE``, load it
        with ``Plumber().load(FILE)``.
        """
        from ..archive._files import atomic_write_text
        from ._experiment_file import experiment_source

        try:
            text = experiment_source(self)
        except Exception as exc:
            raise PlumberError(f"Plumber: cannot save the experiment to {filename}: "
                               f"{exc}") from exc
        atomic_write_text(Path(filename), text)
