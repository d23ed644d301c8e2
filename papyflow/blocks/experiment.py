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
  feed some block.

Loading never raises: :attr:`Experiment.valid` and :attr:`Experiment.errors`
(each error names the file and the field path, ``blocks.score.inputs.model``)
say what is wrong. :meth:`Experiment.build` raises
:class:`ExperimentError` (a ValueError) for an invalid declaration.

Not yet: caching block outputs, the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from numap import NuMap

from ..dagger import Dagger
from ..errors import PiperError
from .algorithm import Algorithm
from .database import Database
from .pipers import (
    BlockPiper,
    algorithm_piper,
    connect_blocks,
    database_inputs,
    database_pipers,
)

__all__ = ["Experiment", "ExperimentError"]

_TOP = ("description", "datasets", "blocks")
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

    Attributes:
        valid: whether the declaration is usable.
        errors: what is wrong, each naming the file and the field path.
        datasets, blocks: the declaration's sections (empty when malformed).
        algorithms: the :class:`~papyflow.blocks.algorithm.Algorithm` of each block.
        databases: the :class:`~papyflow.blocks.database.Database` of each dataset.
        order: the blocks in an order where each comes after what feeds it.
        analyzers: the names of the blocks whose algorithm is an analyzer.
    """

    def __init__(self, prefix: str | os.PathLike[str],
                 declaration: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        self.prefix = os.fspath(prefix)
        self.errors: list[str] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.blocks: dict[str, dict[str, Any]] = {}
        self.algorithms: dict[str, Algorithm] = {}
        self.databases: dict[str, Database] = {}
        self.parameters: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.analyzers: list[str] = []
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
                with open(self.file, encoding="utf-8") as stream:
                    data = json.load(stream)
            except OSError as error:
                self._error("", f"cannot read the declaration: {error.strerror or error}")
                return
            except ValueError as error:
                self._error("", f"not valid JSON: {error}")
                return
        self._check(data)

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
                        "algorithm: not supported in experiments yet")
            return
        ok = True
        for key, value in parameters.items():
            try:
                algorithm.clean_parameter(key, value)
            except (ValueError, RuntimeError) as error:
                message = str(error.args[0]) if error.args else str(error)
                self._error(f"{field}.parameters.{key}", f"block {name!r}: {message}")
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

    def _check_used(self, blocks: Mapping[str, Any]) -> None:
        used = set()  # what feeds a block, counting the blocks that are not valid
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

    # -- building and running ---------------------------------------------------------------

    def build(self, parallel: NuMap | bool = False, index_folder: str | os.PathLike[str]
              | None = None) -> tuple[Dagger, dict[str, BlockPiper]]:
        """The experiment as a Dagger, and its Pipers by ``"<source>.<output>"``.

        Splittable blocks run on ``parallel`` (a NuMap) when given, the others
        linearly. The views' indices are cached in ``index_folder`` (by default
        in the temporary folder). Start it with
        ``dagger.connect(database_inputs(dagger))``; an analyzer's results come
        from ``pipers["<block>.results"]``.

        Raises:
            ExperimentError: the declaration is not valid (a ValueError).
        """
        if not self.valid:
            raise ExperimentError(self.errors)
        wanted: dict[str, set[str]] = {}
        for name in self.blocks:
            for text in self.blocks[name]["inputs"].values():
                source, output = self._source(text)  # type: ignore[misc]
                wanted.setdefault(source, set()).add(output)
        pipers: dict[str, BlockPiper] = {}
        for name, dataset in self.datasets.items():
            if name not in wanted:
                continue
            index = None if index_folder is None else \
                os.path.join(os.fspath(index_folder), f"{name}.index.json")
            made = database_pipers(self.databases[name], dataset["protocol"], dataset["set"],
                                   outputs=sorted(wanted[name]), index_file=index)
            for output, piper in made.items():
                pipers[f"{name}.{output}"] = piper
        dagger = Dagger()
        for name in self.order:
            algorithm = self.algorithms[name]
            outputs = ["results"] if algorithm.isAnalyzer else sorted(wanted.get(name, ()))
            for output in outputs:
                several = len(algorithm.output_map) > 1
                piper = algorithm_piper(
                    algorithm, parameters=self.parameters[name],
                    parallel=parallel if algorithm.splittable else False,
                    name=f"{name}.{output}" if several else name,
                    output=None if algorithm.isAnalyzer else output)
                upstreams = {key: pipers[text]
                             for key, text in self.blocks[name]["inputs"].items()}
                connect_blocks(dagger, piper, upstreams)
                pipers[f"{name}.{output}"] = piper
        return dagger, pipers

    def run(self, parallel: NuMap | bool = False,
            index_folder: str | os.PathLike[str] | None = None) -> dict[str, list[Any]]:
        """Run the experiment: ``{analyzer block: [result record, ...]}``.

        Raises:
            ExperimentError: the declaration is not valid.
            PiperError: an analyzer got a failure (the first one).
        """
        dagger, pipers = self.build(parallel, index_folder)
        dagger.connect(database_inputs(dagger))
        dagger.start()
        try:
            # read the analyzers in turn; their streams are buffered by the Dagger
            units = {name: list(pipers[f"{name}.results"]) for name in self.analyzers}
        finally:
            dagger.stop()
        results: dict[str, list[Any]] = {}
        for name, got in units.items():
            for unit in got:
                data = unit if isinstance(unit, PiperError) else unit.data
                if isinstance(data, PiperError):
                    raise data
            results[name] = [unit.data for unit in got]
        return results
