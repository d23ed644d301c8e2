"""papyflow.blocks.algorithm: declarations, parameters, validation, hashing, export, runners."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papyflow.blocks.algorithm import PARAMETER_TYPES, Algorithm, Runner, Storage
from papyflow.blocks.errors import BlockError, ParameterError, UnknownParameterError
from papyflow.blocks.library import Library
from papyflow.dataflow.data import CachedDataSink, CachedDataSource, MemoryDataSource
from papyflow.dataflow.data_loaders import DataLoader, DataLoaderList
from papyflow.dataflow.inputs import Input, InputGroup, InputList
from papyflow.dataflow.outputs import Output, OutputList, SynchronizationListener
from papyflow.formats.dataformat import UNNAMED, DataFormat
from tests.blocks_helpers import ListSink, code_of, declare, json_of

NUMBER, LABEL, MODEL = "test/number/1", "test/label/1", "test/model/1"
LOOP = {"request": {"type": NUMBER}, "answer": {"type": LABEL}}


def algo(prefix: Path, name: str, declaration: dict | str, code: str | None = "",
         doc: str | None = None) -> Path:
    return declare(prefix, "algorithms", name, declaration, code, doc)


def file_of(prefix: Path, name: str) -> str:
    return json_of(prefix, "algorithms", name)


def main_group(outputs: dict | None = None, loop: dict | None = None, **inputs: str) -> dict:
    group: dict[str, Any] = {"name": "main",
                             "inputs": {name: {"type": t} for name, t in inputs.items()}}
    if outputs is not None:
        group["outputs"] = {name: {"type": t} for name, t in outputs.items()}
    if loop is not None:
        group["loop"] = loop
    return group


def v2(kind: str, *groups: dict, **more: Any) -> dict:
    return {"schema_version": 2, "language": "python", "api_version": 2, "type": kind,
            "groups": list(groups), **more}


SCALE_CODE = """\
    class Algorithm:
        def setup(self, parameters):
            self.setups = getattr(self, "setups", 0) + 1
            self.factor = parameters["factor"]
            self.mode = parameters["mode"]
            return True

        def prepare(self, data_loaders):
            self.prepares = getattr(self, "prepares", 0) + 1
            data, start, end = data_loaders["models"][0]
            self.offset = data["model"].offset
            return True

        def process(self, inputs, data_loaders, outputs):
            x = inputs["x"].data.value
            label = inputs["label"].data.label
            outputs["y"].write({"value": lib.scale(x, self.factor) + self.offset + label})
            return True
    """

FAILING_CODE = """\
    def divide(x):
        return 1 / float(x)

    class Algorithm:
        def process(self, inputs, data_loaders, outputs):
            outputs["y"].write({"value": divide(inputs["x"].data.value)})
            return True

    class FailsInInit:
        def __init__(self):
            raise RuntimeError("cannot start")

    class FailsInSetup:
        def setup(self, parameters):
            return parameters["nothing"]

    class FailsInPrepare:
        def prepare(self, data_loaders):
            return data_loaders["nothing"]

    class RefusesSetup:
        def setup(self, parameters):
            return False

    class RefusesPrepare:
        def prepare(self, data_loaders):
            return False
    """

EVALUATOR_CODE = """\
    class Algorithm:
        def setup(self, parameters):
            self.threshold = parameters["threshold"]
            self.current = None
            return True

        def read(self, inputs):
            self.current = inputs["x"].data.value
            return True

        def validate(self, hypothesis):
            return hypothesis.value < self.threshold, {"label": int(hypothesis.value * 10)}

        def write(self, outputs, processor_output_name, end_data_index):
            outputs["seen"].write({"value": self.current}, end_data_index)
            return True

        def process(self, inputs, data_loaders, outputs):
            return True

    class NotAPair:
        def validate(self, hypothesis):
            return "yes"

    class BadAnswer:
        def validate(self, hypothesis):
            return True, {"nolabel": 1}
    """


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "prefix"
    declare(root, "dataformats", NUMBER, {"#description": "A number", "value": "float64"})
    declare(root, "dataformats", LABEL, {"label": "int32"})
    declare(root, "dataformats", MODEL, {"offset": "float64"})
    declare(root, "dataformats", "test/pair/1", {"first": NUMBER, "second": NUMBER})
    declare(root, "dataformats", "test/broken/1", {"v": "int9"})
    declare(root, "libraries", "test/mathlib/1", {"language": "python"},
            "def scale(x, factor):\n    return x * factor\n")
    algo(root, "test/scale/1", v2(
        "sequential",
        main_group({"y": NUMBER}, x=NUMBER, label=LABEL),
        {"name": "models", "inputs": {"model": {"type": MODEL}}},
        splittable=True, description="Scales numbers",
        parameters={
            "factor": {"type": "float64", "default": 2, "range": [0, 10],
                       "description": "What to multiply by"},
            "mode": {"type": "string", "default": "fast", "choice": ["fast", "exact"]},
            "count": {"type": "uint8", "default": 3},
        },
        uses={"lib": "test/mathlib/1"}), SCALE_CODE, doc="Scales numbers.")
    algo(root, "test/sum/1", v2("autonomous", main_group({"total": NUMBER}, x=NUMBER)), """\
        class Algorithm:
            def process(self, data_loaders, outputs):
                total = 0.0
                for data, start, end in data_loaders.main_loader:
                    total += data["x"].value
                    outputs["total"].write({"value": total}, end)
                return True
        """)
    algo(root, "test/mean/1", v2("sequential", main_group(x=NUMBER), results={
        "mean": {"type": "float64", "display": True},
        "count": {"type": "int32", "display": False},
        "best": {"type": NUMBER}}), """\
        class Algorithm:
            def setup(self, parameters):
                self.values = []
                return True

            def process(self, inputs, data_loaders, output):
                self.values.append(inputs["x"].data.value)
                if not inputs.hasMoreData():
                    output.write({"mean": sum(self.values) / len(self.values),
                                  "count": len(self.values),
                                  "best": {"value": max(self.values)}})
                return True
        """)
    algo(root, "test/negate/1", {"language": "python", "groups": [
        {"inputs": {"x": {"type": NUMBER}}, "outputs": {"y": {"type": NUMBER}}}]}, """\
        class Algorithm:
            def process(self, inputs, outputs):
                outputs["y"].write({"value": -inputs["x"].data.value})
                return True
        """)
    algo(root, "test/failing/1", v2("sequential", main_group({"y": NUMBER}, x=NUMBER)),
         FAILING_CODE)
    algo(root, "test/evaluator/1", v2(
        "sequential_loop_evaluator", main_group({"seen": NUMBER}, LOOP, x=NUMBER),
        parameters={"threshold": {"type": "float64", "default": 3.5}}), EVALUATOR_CODE)
    algo(root, "test/processor/1", v2(
        "sequential_loop_processor", main_group({"y": NUMBER}, LOOP, x=NUMBER)), """\
        class Algorithm:
            def process(self, inputs, data_loaders, outputs, loop_channel):
                ok, answer = loop_channel.validate({"value": inputs["x"].data.value})
                outputs["y"].write({"value": float(answer.label) if ok else -1.0})
                return True
        """)
    algo(root, "test/auto_processor/1", v2(
        "autonomous_loop_processor", main_group({"y": NUMBER}, LOOP, x=NUMBER)), """\
        class Algorithm:
            def process(self, data_loaders, outputs, loop_channel):
                for data, start, end in data_loaders.main_loader:
                    ok, answer = loop_channel.validate(data["x"])
                    outputs["y"].write({"value": answer.label if ok else 0}, end)
                return True
        """)
    algo(root, "test/auto_evaluator/1", v2(
        "autonomous_loop_evaluator", main_group(None, LOOP, x=NUMBER)), """\
        class Algorithm:
            def process(self, data_loaders, outputs):
                self.steps = len(data_loaders.main_loader)
                return True

            def validate(self, hypothesis):
                return True, {"label": self.steps}
        """)
    return root


# -- building inputs and outputs -----------------------------------------------------------------


def records(algorithm: Algorithm, name: str, units: list[tuple[dict, int, int]]
            ) -> MemoryDataSource:
    record_type = algorithm.dataformats[name].type
    return MemoryDataSource([(record_type(**fields), s, e) for fields, s, e in units])


def numbers(algorithm: Algorithm, values: list[float]) -> MemoryDataSource:
    return records(algorithm, NUMBER, [({"value": v}, i, i) for i, v in enumerate(values)])


def main_inputs(listener: SynchronizationListener, **sources: tuple[str, Any]) -> InputList:
    group = InputGroup("main", listener)
    for name, (dataformat, source) in sources.items():
        group.add(Input(name, dataformat, source))
    inputs = InputList()
    inputs.add(group)
    return inputs


def loaders(**groups: dict[str, Any]) -> DataLoaderList:
    result = DataLoaderList()
    for channel, sources in groups.items():
        loader = DataLoader(channel)
        for name, source in sources.items():
            loader.add(name, source)
        result.add(loader)
    return result


def outputs_of(algorithm: Algorithm, listener: SynchronizationListener | None,
               **names: str) -> tuple[OutputList, dict[str, ListSink]]:
    outputs, sinks = OutputList(), {}
    for name, dataformat in names.items():
        sinks[name] = ListSink(algorithm.dataformats[dataformat].type)
        outputs.add(Output(name, sinks[name], listener))
    return outputs, sinks


def values_of(sink: ListSink, field: str = "value") -> list[tuple[Any, int, int]]:
    return [(getattr(data, field), start, end) for data, start, end in sink.units]


def drive(runner: Runner, inputs: InputList, data_loaders: Any, **arguments: Any) -> None:
    """Call a sequential runner once per step of the main group."""
    group = inputs.main_group
    assert group is not None
    while group.hasMoreData():
        group.next()
        assert runner.process(inputs=inputs, data_loaders=data_loaders, **arguments) is True


def scale_setup(algorithm: Algorithm, xs: list[float]):
    listener = SynchronizationListener()
    inputs = main_inputs(listener, x=(NUMBER, numbers(algorithm, xs)), label=(LABEL, records(
        algorithm, LABEL, [({"label": 10}, 0, 2), ({"label": 20}, 3, 5)])))
    models = loaders(models={"model": records(algorithm, MODEL, [({"offset": 0.5}, 0, 5)])})
    outputs, sinks = outputs_of(algorithm, listener, y=NUMBER)
    return inputs, models, outputs, sinks["y"]


# -- a valid algorithm ---------------------------------------------------------------------------


def test_the_type_constants():
    assert (Algorithm.LEGACY, Algorithm.SEQUENTIAL, Algorithm.AUTONOMOUS) == \
        ("legacy", "sequential", "autonomous")
    assert (Algorithm.SEQUENTIAL_LOOP_EVALUATOR, Algorithm.AUTONOMOUS_LOOP_EVALUATOR,
            Algorithm.SEQUENTIAL_LOOP_PROCESSOR, Algorithm.AUTONOMOUS_LOOP_PROCESSOR) == \
        ("sequential_loop_evaluator", "autonomous_loop_evaluator",
         "sequential_loop_processor", "autonomous_loop_processor")
    assert Algorithm.dataformat_klass is DataFormat
    assert PARAMETER_TYPES[-2:] == ("bool", "string")


def test_a_sequential_algorithm_loads(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    assert scale.valid, scale.errors
    assert scale.name == "test/scale/1" and repr(scale) == "<Algorithm 'test/scale/1', valid>"
    assert (scale.schema_version, scale.api_version, scale.type, scale.language) == \
        (2, 2, "sequential", "python")
    assert scale.is_sequential and not scale.is_autonomous and not scale.is_loop
    assert scale.splittable and not scale.isAnalyzer and scale.results == {}
    assert scale.description == "Scales numbers" and scale.documentation == "Scales numbers."
    assert [group["name"] for group in scale.groups] == ["main", "models"]
    assert scale.input_map == {"x": NUMBER, "label": LABEL, "model": MODEL}
    assert scale.output_map == {"y": NUMBER} and scale.loop_map == {}
    assert sorted(scale.dataformats) == [LABEL, MODEL, NUMBER]
    assert all(isinstance(f, DataFormat) and f.valid for f in scale.dataformats.values())
    assert scale.uses == {"lib": "test/mathlib/1"}
    assert isinstance(scale.libraries["test/mathlib/1"], Library)
    assert scale.uses_dict() == {"lib": {"name": "test/mathlib/1", "uses": {},
                                         "path": code_of(prefix, "libraries", "test/mathlib/1")}}
    assert list(scale.parameters) == ["factor", "mode", "count"]
    assert scale.parameters["mode"]["choice"] == ["fast", "exact"]
    assert scale.code.startswith("class Algorithm:")


def test_every_kind_of_algorithm(prefix):
    kinds = {name: Algorithm(prefix, f"test/{name}/1") for name in (
        "sum", "mean", "negate", "evaluator", "processor", "auto_processor", "auto_evaluator")}
    assert all(a.valid for a in kinds.values()), {n: a.errors for n, a in kinds.items()}
    assert {name: a.type for name, a in kinds.items()} == {
        "sum": "autonomous", "mean": "sequential", "negate": "legacy",
        "evaluator": "sequential_loop_evaluator", "processor": "sequential_loop_processor",
        "auto_processor": "autonomous_loop_processor",
        "auto_evaluator": "autonomous_loop_evaluator"}
    flags = {name: (a.is_sequential, a.is_autonomous, a.is_loop, a.is_loop_evaluator,
                    a.is_loop_processor) for name, a in kinds.items()}
    assert flags == {
        "sum": (False, True, False, False, False),
        "mean": (True, False, False, False, False),
        "negate": (False, False, False, False, False),
        "evaluator": (True, False, True, True, False),
        "processor": (True, False, True, False, True),
        "auto_processor": (False, True, True, False, True),
        "auto_evaluator": (False, True, True, True, False)}
    negate = kinds["negate"]
    assert (negate.api_version, negate.schema_version, negate.splittable) == (1, 1, False)
    assert kinds["processor"].loop_map == {"request": NUMBER, "answer": LABEL}
    assert kinds["mean"].isAnalyzer and kinds["mean"].output_map == {}
    assert list(kinds["mean"].results) == ["mean", "count", "best"]


def test_the_result_dataformat(prefix):
    mean = Algorithm(prefix, "test/mean/1")
    results = mean.result_dataformat()
    assert results.valid and results.name == UNNAMED
    assert results.resolved == {"mean": "float64", "count": "int32",
                                "best": {"value": "float64"}}
    assert mean.result_dataformat() is results
    record = results.type(mean=1.5, count=2, best={"value": 3.0})
    assert results.type.unpack(record.pack()) == record
    with pytest.raises(RuntimeError, match="'test/scale/1' is not an analyzer"):
        Algorithm(prefix, "test/scale/1").result_dataformat()


def test_dataformats_and_libraries_are_shared_through_the_caches(prefix):
    formats: dict[str, DataFormat] = {}
    libraries: dict[str, Library] = {}
    scale = Algorithm(prefix, "test/scale/1", dataformat_cache=formats, library_cache=libraries)
    total = Algorithm(prefix, "test/sum/1", dataformat_cache=formats, library_cache=libraries)
    assert scale.dataformats[NUMBER] is total.dataformats[NUMBER] is formats[NUMBER]
    assert libraries["test/mathlib/1"] is scale.libraries["test/mathlib/1"]
    again = Algorithm(prefix, "test/scale/1", library_cache=libraries)
    assert again.libraries["test/mathlib/1"] is scale.libraries["test/mathlib/1"]
    assert again.dataformats[NUMBER] is not formats[NUMBER]


# -- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, value, expected", [
    ("int8", 5, np.int8(5)),
    ("int8", np.int64(-128), np.int8(-128)),
    ("uint64", 2 ** 64 - 1, np.uint64(2 ** 64 - 1)),
    ("float32", 1, np.float32(1.0)),
    ("float32", 0.5, np.float32(0.5)),
    ("float64", np.float32(0.25), 0.25),
    ("float64", float("inf"), float("inf")),
    ("bool", True, np.True_),
    ("bool", np.False_, np.False_),
    ("string", "text", "text"),
])
def test_clean_parameter_casts(tmp_path, kind, value, expected):
    algorithm = one_parameter(tmp_path, {"type": kind})
    cleaned = algorithm.clean_parameter("p", value)
    assert cleaned == expected
    if kind == "string":
        assert type(cleaned) is str
    else:
        assert type(cleaned) is np.dtype(kind).type


def one_parameter(tmp_path: Path, spec: dict) -> Algorithm:
    declare(tmp_path, "dataformats", NUMBER, {"value": "float64"})
    algo(tmp_path, "test/p/1", v2("sequential", main_group({"y": NUMBER}, x=NUMBER),
                                  parameters={"p": spec}))
    algorithm = Algorithm(tmp_path, "test/p/1")
    assert algorithm.valid, algorithm.errors
    return algorithm


@pytest.mark.parametrize("spec, value, message", [
    ({"type": "int8"}, 300, "300 does not fit int8 (-128..127)"),
    ({"type": "uint8"}, -1, "-1 does not fit uint8 (0..255)"),
    ({"type": "int32"}, 1.0, "expected an integer (int32), got 1.0"),
    ({"type": "int32"}, True, "expected an integer (int32), got true"),
    ({"type": "int32"}, "3", "expected an integer (int32), got \"3\""),
    ({"type": "float32"}, 1e300, "1e+300 does not fit float32"),
    ({"type": "float64"}, 10 ** 400, "does not fit float64"),
    ({"type": "float64"}, None, "expected a number (float64), got null"),
    ({"type": "float64"}, [1.0], "expected a number (float64), got [1.0]"),
    ({"type": "bool"}, 1, "expected true or false, got 1"),
    ({"type": "string"}, 3, "expected a string, got 3"),
    ({"type": "float64", "range": [0, 1]}, 1.5, "1.5 is outside the range [0, 1]"),
    ({"type": "float64", "range": [0, 1]}, float("nan"), "is outside the range [0, 1]"),
    ({"type": "int16", "range": [-5, 5]}, -6, "-6 is outside the range [-5, 5]"),
    ({"type": "string", "choice": ["a", "b"]}, "c",
     "\"c\" is not among the choices [\"a\", \"b\"]"),
    ({"type": "float32", "choice": [0.1, 0.2]}, 0.3, "0.3 is not among the choices [0.1, 0.2]"),
])
def test_clean_parameter_refuses_naming_the_algorithm_and_parameter(tmp_path, spec, value,
                                                                     message):
    algorithm = one_parameter(tmp_path, spec)
    with pytest.raises(ParameterError) as caught:
        algorithm.clean_parameter("p", value)
    assert str(caught.value).startswith("algorithm 'test/p/1': parameter 'p': ")
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert (caught.value.algorithm, caught.value.parameter) == ("test/p/1", "p")


def test_clean_parameter_refuses_ints_too_long_to_print_naming_the_parameter(tmp_path):
    # The message was Python's own "Exceeds the limit (4300 digits) for integer string
    # conversion", a ValueError that was no ParameterError and named no parameter (an int
    # this long comes from ``--set block.p=999...``: parse_parameters reads it exactly).
    huge = 10 ** 5000
    for spec, value, message in (
            ({"type": "int8"}, huge, "<int of 16610 bits> does not fit int8 (-128..127)"),
            ({"type": "float64"}, -huge, "<negative int of 16610 bits> does not fit float64"),
            ({"type": "string"}, huge, "expected a string, got <int of 16610 bits>"),
            ({"type": "int64", "range": [0, 1]}, [huge],
             "expected an integer (int64), got <a list holding an int too long to show>")):
        algorithm = one_parameter(tmp_path, spec)
        with pytest.raises(ParameterError) as caught:
            algorithm.clean_parameter("p", value)
        assert str(caught.value) == f"algorithm 'test/p/1': parameter 'p': {message}"


def test_clean_parameter_bounds_and_choices_are_inclusive_and_cast(tmp_path):
    algorithm = one_parameter(tmp_path, {"type": "float32", "choice": [0.1, 0.2]})
    assert algorithm.clean_parameter("p", 0.1) == np.float32(0.1)
    ranged = one_parameter(tmp_path, {"type": "int8", "range": [-2, 2]})
    assert [ranged.clean_parameter("p", v) for v in (-2, 2)] == [-2, 2]


def test_an_unknown_parameter_is_a_value_error_and_a_key_error(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    with pytest.raises(UnknownParameterError) as caught:
        scale.clean_parameter("factr", 1)
    assert str(caught.value) == ("algorithm 'test/scale/1': unknown parameter 'factr' "
                                 "(parameters: 'factor', 'mode', 'count')")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, KeyError)


# -- bad declarations ----------------------------------------------------------------------------


def base_declaration() -> dict:
    return v2("sequential", main_group({"y": NUMBER}, x=NUMBER),
              {"name": "side", "inputs": {"m": {"type": MODEL}}},
              parameters={"k": {"type": "int32", "default": 1, "range": [0, 9]}})


def setting(path: str, value: Any) -> Callable[[dict], None]:
    """A change to a declaration: set the value at a dotted path (``groups.0.inputs``)."""
    *parents, last = path.split(".")

    def change(declaration: dict) -> None:
        target: Any = declaration
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value
    return change


_DELETE = object()


def analyzer(results: Any) -> Callable[[dict], None]:
    def change(declaration: dict) -> None:
        for group in declaration["groups"]:
            group.pop("outputs", None)
        declaration["results"] = results
    return change


def both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(declaration: dict) -> None:
        for one in changes:
            one(declaration)
    return change


def loop_kind(kind: str) -> Callable[[dict], None]:
    return both(setting("type", kind), setting("groups.0.loop", copy.deepcopy(LOOP)))


BAD = [
    # inputs, outputs, groups
    (setting("groups.0.inputs.x.type", "test/nothing/1"), "groups[0].inputs.x.type",
     "dataformat 'test/nothing/1' not found (searched: "),
    (setting("groups.0.outputs.y.type", "test/nothing/1"), "groups[0].outputs.y.type",
     "dataformat 'test/nothing/1' not found (searched: "),
    (setting("groups.0.inputs.x.type", "test/broken/1"), "groups[0].inputs.x.type",
     "dataformat 'test/broken/1' is invalid: "),
    (setting("groups.0.inputs.x.type", "float64"), "groups[0].inputs.x.type",
     ("\"float64\" is not a dataformat name 'user/name/version' (the dataformat "
     "'system/float64/1' holds one float64)")),
    (setting("groups.1.inputs", _DELETE), "groups[1].inputs", "a group has at least one input"),
    (setting("groups.1.inputs", {}), "groups[1].inputs", "a group has at least one input"),
    (setting("groups.1.inputs", ["m"]), "groups[1].inputs",
     "must be an object mapping input names to {\"type\": dataformat}"),
    (setting("groups.0.inputs.x", NUMBER), "groups[0].inputs.x",
     "an input is an object {\"type\": dataformat name}, not \"test/number/1\""),
    (setting("groups.0.inputs.x.shape", [2]), "groups[0].inputs.x.shape",
     "unknown key (known: type)"),
    (setting("groups.0.inputs.2x", {"type": NUMBER}), "groups[0].inputs.2x",
     "invalid input name"),
    (setting("groups.0.outputs", []), "groups[0].outputs",
     "must be an object mapping output names"),
    (setting("groups.1.inputs", {"x": {"type": NUMBER}}), "groups[1].inputs.x",
     "input 'x' is already declared in groups[0]"),
    (setting("groups.1.outputs", {"y": {"type": NUMBER}}), "groups[1].outputs.y",
     "output 'y' is already declared in groups[0]"),
    (setting("groups.1.name", "main"), "groups[1].name",
     "groups[0] has the same name 'main'"),
    (setting("groups.1.name", "two words"), "groups[1].name", "invalid group name"),
    (setting("groups.0.sync", True), "groups[0].sync",
     "unknown key (known: inputs, loop, name, outputs)"),
    (setting("groups.1", "side"), "groups[1]", "a group is an object"),
    (setting("groups", _DELETE), "groups", "missing: an algorithm declares a list of groups"),
    (setting("groups", []), "groups", "must be a non-empty list of groups"),
    (setting("groups.0.outputs", _DELETE), "groups",
     "no group declares outputs and there are no results"),
    # parameters
    (setting("parameters.k.default", 10), "parameters.k.default",
     "10 is outside the range [0, 9]"),
    (setting("parameters.k.default", "1"), "parameters.k.default",
     "expected an integer (int32), got \"1\""),
    (setting("parameters.k.default", True), "parameters.k.default",
     "expected an integer (int32), got true"),
    (setting("parameters.k", {"type": "string", "default": "c", "choice": ["a", "b"]}),
     "parameters.k.default", "\"c\" is not among the choices [\"a\", \"b\"]"),
    (setting("parameters.k.type", "float"), "parameters.k.type",
     "unknown parameter type \"float\" (did you mean 'float64'?)"),
    (setting("parameters.k.type", "complex64"), "parameters.k.type",
     "unknown parameter type \"complex64\""),
    (setting("parameters.k", {"type": "string", "range": ["a", "b"]}), "parameters.k.range",
     "a string parameter has no range"),
    (setting("parameters.k.range", [1]), "parameters.k.range",
     "must be [minimum, maximum], not [1]"),
    (setting("parameters.k.range", [5, 1]), "parameters.k.range",
     "the minimum is above the maximum in [5, 1]"),
    (setting("parameters.k.range", [0, 1.5]), "parameters.k.range",
     "expected an integer (int32), got 1.5"),
    (setting("parameters.k.choice", [1, 2]), "parameters.k", "give a range or a choice, not both"),
    (setting("parameters.k", {"type": "int32", "choice": []}), "parameters.k.choice",
     "must be a non-empty list of values, not []"),
    (setting("parameters.k", {"type": "int32", "default": 1, "choice": [1, "a"]}),
     "parameters.k.choice", "choice 1: expected an integer (int32), got \"a\""),
    (setting("parameters.k.min", 0), "parameters.k.min",
     "unknown key (known: choice, default, description, range, type)"),
    (setting("parameters.k.description", 3), "parameters.k.description", "must be a string"),
    (setting("parameters", [1]), "parameters", "must be an object mapping parameter names"),
    (setting("parameters.k", 3), "parameters.k", "a parameter is an object"),
    (setting("parameters.2k", {"type": "int8"}), "parameters.2k", "invalid parameter name"),
    # libraries
    (setting("uses", {"lib": "test/nolib/1"}), "uses.lib",
     "library 'test/nolib/1' not found (searched: "),
    (setting("uses", {"lib": "nolib"}), "uses.lib",
     "\"nolib\" is not a library name 'user/name/version'"),
    # kinds
    (setting("type", "sequentail"), "type", ("unknown type \"sequentail\" (did you mean "
                                            "'sequential'?) (known: sequential, autonomous,")),
    (setting("type", "legacy"), "type", ("unknown type \"legacy\" (a legacy algorithm declares "
                                        "no type and api_version 1)")),
    (setting("api_version", 1), "api_version",
     "an algorithm of type 'sequential' declares \"api_version\": 2, not 1"),
    (setting("api_version", _DELETE), "api_version",
     "an algorithm of type 'sequential' declares \"api_version\": 2, not null"),
    (setting("api_version", 3), "api_version", "must be 1 or 2, not 3"),
    (setting("splittable", "yes"), "splittable", "must be true or false, not \"yes\""),
    (setting("language", "fortran"), "language", "unknown language \"fortran\""),
    (setting("description", ["x"]), "description", "must be a string"),
    (setting("schema_version", 0), "schema_version", "must be an integer >= 1, not 0"),
    (setting("inputs", {}), "inputs", "unknown key (known: api_version, description, groups,"),
    # analyzers
    (setting("results", {"r": {"type": "float32"}}), "groups[0].outputs",
     "an analyzer (it declares results) has no outputs: it writes its results"),
    (analyzer({}), "results", "an analyzer declares at least one result"),
    (analyzer({"r": {"type": "float"}}), "results.r.type",
     "unknown type \"float\": a result is a scalar type or a dataformat name"),
    (analyzer({"r": {"type": "test/none/1"}}), "results.r.type",
     "dataformat 'test/none/1' not found"),
    (analyzer({"pack": {"type": "int8"}}), "results.pack",
     "invalid result name: 'pack' is an attribute of records"),
    (analyzer({"r": {"type": "int8", "display": 1}}), "results.r.display",
     "must be true or false, not 1"),
    (analyzer({"r": {"type": "int8", "plot": True}}), "results.r.plot",
     "unknown key (known: display, type)"),
    (analyzer({"r": "int8"}), "results.r", "a result is an object"),
    # loops
    (setting("type", "sequential_loop_processor"), "groups[0].loop",
     "missing: a sequential_loop_processor algorithm declares its loop in its main group"),
    (setting("groups.0.loop", LOOP), "groups[0].loop",
     "only loop algorithms declare a loop (this one is 'sequential')"),
    (both(loop_kind("autonomous_loop_evaluator"), setting("groups.1.loop", LOOP)),
     "groups[1].loop", "only the main group (groups[0]) declares the loop"),
    (both(loop_kind("sequential_loop_evaluator"), setting("groups.0.loop.answer", _DELETE)),
     "groups[0].loop.answer", "missing: the loop's answer is {\"type\": dataformat}"),
    (both(loop_kind("sequential_loop_processor"),
          setting("groups.0.loop.request.type", "test/none/1")),
     "groups[0].loop.request.type", "dataformat 'test/none/1' not found"),
    (both(loop_kind("sequential_loop_processor"), setting("groups.0.loop.request", NUMBER)),
     "groups[0].loop.request", "must be {\"type\": dataformat}, not \"test/number/1\""),
    (both(loop_kind("sequential_loop_processor"), setting("groups.0.loop.extra", 1)),
     "groups[0].loop.extra", "unknown key (known: answer, request)"),
    (both(loop_kind("autonomous_loop_processor"), setting("groups.0.loop", [1])),
     "groups[0].loop", "must be {\"request\": {\"type\": dataformat}"),
]


@pytest.mark.parametrize("change, field, message", BAD,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD)])
def test_a_bad_declaration_is_invalid_and_says_where(prefix, change, field, message):
    declaration = base_declaration()
    change(declaration)
    algo(prefix, "test/a/1", declaration)
    loaded = Algorithm(prefix, "test/a/1")
    assert not loaded.valid
    assert len(loaded.errors) == 1, loaded.errors
    assert loaded.errors[0].startswith(f"{file_of(prefix, 'test/a/1')}: field '{field}': ")
    assert message in loaded.errors[0]


def test_the_base_declaration_of_the_bad_cases_is_valid(prefix):
    algo(prefix, "test/a/1", base_declaration())
    assert Algorithm(prefix, "test/a/1").valid
    for kind in ("sequential_loop_evaluator", "autonomous_loop_processor"):
        declaration = base_declaration()
        loop_kind(kind)(declaration)
        algo(prefix, "test/a/1", declaration)
        assert Algorithm(prefix, "test/a/1").valid, Algorithm(prefix, "test/a/1").errors


def test_every_error_is_listed(prefix):
    declaration = base_declaration()
    declaration["groups"][0]["inputs"]["x"]["type"] = "test/none/1"
    declaration["groups"][1]["inputs"] = {}
    declaration["parameters"]["k"]["default"] = 99
    declaration["uses"] = {"lib": "test/none/1"}
    algo(prefix, "test/a/1", declaration)
    fields = [e.split(": field ")[1].split(":")[0] for e in Algorithm(prefix, "test/a/1").errors]
    assert fields == ["'groups[0].inputs.x.type'", "'groups[1].inputs'",
                      "'parameters.k.default'", "'uses.lib'"]


def test_a_key_given_twice_names_its_path(prefix):
    text = json.dumps(base_declaration()).replace('"x": {"type": "test/number/1"}',
                                                  '"x": {"type": "test/number/1", '
                                                  '"type": "test/number/1"}')
    algo(prefix, "test/a/1", text)
    assert Algorithm(prefix, "test/a/1").errors == [
        (f"{file_of(prefix, 'test/a/1')}: field 'groups[0].inputs.x.type': key given more than "
        "once in the JSON object")]


def test_missing_code_and_code_that_does_not_compile(prefix):
    algo(prefix, "test/a/1", base_declaration(), code=None)
    assert Algorithm(prefix, "test/a/1").errors == [
        (f"{file_of(prefix, 'test/a/1')}: the code file is missing: "
        f"{code_of(prefix, 'algorithms', 'test/a/1')}")]
    algo(prefix, "test/a/1", base_declaration(), code="class Algorithm\n")
    errors = Algorithm(prefix, "test/a/1").errors
    assert len(errors) == 1 and errors[0].startswith(
        f"{code_of(prefix, 'algorithms', 'test/a/1')}: line 1: SyntaxError: ")


def test_a_missing_algorithm(tmp_path):
    missing = Algorithm(tmp_path, "test/none/1")
    assert missing.errors == [(f"{file_of(tmp_path, 'test/none/1')}: algorithm 'test/none/1' "
                              f"not found (searched: {tmp_path})")]
    assert missing.type == Algorithm.LEGACY and missing.parameters == {} and missing.groups == []
    assert Algorithm(tmp_path, "none/1").errors == [
        "algorithm 'none/1': invalid name (expected 'user/name/version')"]


# -- hashing -------------------------------------------------------------------------------------


def test_the_hash_is_the_storage_hash(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    assert scale.hash() == scale.storage.hash() == Storage(prefix, "test/scale/1").hash()
    assert len(scale.hash()) == 64


def test_the_hash_ignores_descriptions_and_documentation(prefix):
    declaration = base_declaration()
    declaration["parameters"]["description"] = {"type": "string", "default": "a"}
    algo(prefix, "test/a/1", declaration, "x = 1\n")
    first = Algorithm(prefix, "test/a/1").hash()
    declaration["description"] = "Described"
    declaration["parameters"]["k"]["description"] = "A parameter"
    algo(prefix, "test/a/1", declaration, "x = 1\n", doc="Documented")
    again = Algorithm(prefix, "test/a/1")
    assert again.hash() == first == again.storage.hash()
    declaration["parameters"]["description"]["default"] = "b"  # a parameter named description
    algo(prefix, "test/a/1", declaration, "x = 1\n")
    assert Algorithm(prefix, "test/a/1").hash() != first
    declaration["parameters"]["description"]["default"] = "a"
    algo(prefix, "test/a/1", declaration, "x = 2\n")
    assert Algorithm(prefix, "test/a/1").hash() != first


def test_the_storage_hash_refuses_a_bad_declaration(prefix):
    algo(prefix, "test/a/1", '{"type": 1, "type": 2}')
    with pytest.raises(ValueError, match="cannot hash: duplicate key 'type'"):
        Storage(prefix, "test/a/1").hash()


# -- writing and exporting -----------------------------------------------------------------------


def test_write_round_trip(prefix, tmp_path):
    scale = Algorithm(prefix, "test/scale/1")
    scale.description = "Edited"
    scale.documentation = "Edited docs"
    scale.write(Storage(tmp_path / "copy", "test/scale/1"))
    copy_path = tmp_path / "copy" / "algorithms" / "test" / "scale" / "1"
    assert json.loads(copy_path.with_suffix(".json").read_text()) == scale.data
    assert copy_path.with_suffix(".py").read_text() == scale.code
    assert copy_path.with_suffix(".rst").read_text() == "Edited docs"
    scale.write()
    again = Algorithm(prefix, "test/scale/1")
    assert again.description == "Edited" and again.hash() == scale.hash()


def test_export_takes_dataformats_and_libraries_along(prefix, tmp_path):
    target = tmp_path / "exported"
    scale = Algorithm(prefix, "test/scale/1")
    scale.export(target)
    assert Path(file_of(target, "test/scale/1")).is_file()
    for name in (NUMBER, LABEL, MODEL):
        assert (target / "dataformats" / f"{name}.json").is_file()
    assert (target / "libraries" / "test" / "mathlib" / "1.py").is_file()
    again = Algorithm(target, "test/scale/1")
    assert again.valid and again.hash() == scale.hash()
    assert all(f.storage.json.path.startswith(str(target)) for f in again.dataformats.values())
    Algorithm(prefix, "test/mean/1").export(target)  # results: test/number/1 is used
    assert Algorithm(target, "test/mean/1").valid
    with pytest.raises(RuntimeError, match="into its own prefix"):
        scale.export(prefix)
    algo(prefix, "test/a/1", v2("sequential", main_group({"y": "test/none/1"}, x=NUMBER)))
    with pytest.raises(RuntimeError, match="not valid"):
        Algorithm(prefix, "test/a/1").export(tmp_path / "out")


# -- runners: each kind --------------------------------------------------------------------------


def test_a_sequential_runner_with_two_groups(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    runner = scale.runner()
    assert isinstance(runner, Runner) and runner.algorithm is scale and not runner.ready
    assert runner.setup({"factor": 3}) is True and runner.ready
    assert runner.parameters == {"factor": 3.0, "mode": "fast", "count": 3}
    assert type(runner.parameters["count"]) is np.uint8
    inputs, models, outputs, sink = scale_setup(scale, [1, 2, 3, 4, 5, 6])
    drive(runner, inputs, models, outputs=outputs)
    assert values_of(sink) == [(3 + 0.5 + 10, 0, 0), (6.5 + 10, 1, 1), (9.5 + 10, 2, 2),
                               (12.5 + 20, 3, 3), (15.5 + 20, 4, 4), (18.5 + 20, 5, 5)]
    assert runner.obj.setups == 1 and runner.obj.prepares == 1  # prepare made by process
    assert runner.setup({"factor": 4}) is True and runner.obj.factor == 3  # only once
    assert runner.prepare(models) is True and runner.obj.prepares == 1


def test_a_sequential_runner_writes_to_the_cache(prefix, tmp_path):
    scale = Algorithm(prefix, "test/scale/1")
    runner = scale.runner()
    runner.setup({})
    inputs, models, _, _ = scale_setup(scale, [1, 2, 3, 4, 5, 6])
    sink = CachedDataSink()
    sink.setup(str(tmp_path / "y.data"), scale.dataformats[NUMBER], 0, 5, sync=False)
    outputs = OutputList()
    outputs.add(Output("y", sink, inputs.main_group.synchronization_listener))
    runner.prepare(models)
    drive(runner, inputs, models, outputs=outputs)
    outputs["y"].close()
    source = CachedDataSource()
    assert source.setup(str(tmp_path / "y.data"), prefix)
    assert [(data.value, start, end) for data, start, end in source] == \
        [(2 + 0.5 + 10, 0, 0), (4.5 + 10, 1, 1), (6.5 + 10, 2, 2), (8.5 + 20, 3, 3),
         (10.5 + 20, 4, 4), (12.5 + 20, 5, 5)]
    source.close()


def test_an_autonomous_runner(prefix):
    total = Algorithm(prefix, "test/sum/1")
    runner = total.runner()
    assert runner.setup() is True  # no setup in the code: the default
    data_loaders = loaders(main={"x": numbers(total, [1, 2, 3])})
    outputs, sinks = outputs_of(total, None, total=NUMBER)
    assert runner.process(data_loaders=data_loaders, outputs=outputs) is True
    assert values_of(sinks["total"]) == [(1.0, 0, 0), (3.0, 1, 1), (6.0, 2, 2)]


def test_an_analyzer_runner_writes_its_results(prefix):
    mean = Algorithm(prefix, "test/mean/1")
    runner = mean.runner()
    runner.setup({})
    listener = SynchronizationListener()
    inputs = main_inputs(listener, x=(NUMBER, numbers(mean, [1, 2, 6])))
    sink = ListSink(mean.result_dataformat().type)
    drive(runner, inputs, DataLoaderList(), output=Output("result", sink, listener))
    [(record, start, end)] = sink.units
    assert (start, end) == (0, 2)
    assert record.as_dict() == {"mean": 3.0, "count": 3, "best": {"value": 6.0}}


def test_a_legacy_runner(prefix):
    negate = Algorithm(prefix, "test/negate/1")
    runner = negate.runner()
    assert runner.setup(None) and runner.prepare(None) is True  # legacy: nothing to prepare
    listener = SynchronizationListener()
    inputs = main_inputs(listener, x=(NUMBER, numbers(negate, [1, -2])))
    outputs, sinks = outputs_of(negate, listener, y=NUMBER)
    drive(runner, inputs, None, outputs=outputs)
    assert values_of(sinks["y"]) == [(-1.0, 0, 0), (2.0, 1, 1)]


class Channel:
    """A loop channel within one process: asks the evaluator's runner directly."""

    def __init__(self, evaluator: Runner) -> None:
        self.evaluator = evaluator
        self.requests: list[Any] = []

    def validate(self, hypothesis: Any) -> tuple[bool, Any]:
        self.requests.append(hypothesis)
        return self.evaluator.validate(hypothesis)


def test_a_sequential_loop(prefix):
    evaluator_algorithm = Algorithm(prefix, "test/evaluator/1")
    processor_algorithm = Algorithm(prefix, "test/processor/1")
    evaluator = evaluator_algorithm.runner()
    processor = processor_algorithm.runner()
    assert evaluator.setup({}) and processor.setup({})
    values = [1.0, 2.0, 4.0, 3.0]
    evaluator_listener = SynchronizationListener()
    evaluator_inputs = main_inputs(evaluator_listener,
                                   x=(NUMBER, numbers(evaluator_algorithm, values)))
    evaluator_outputs, seen = outputs_of(evaluator_algorithm, evaluator_listener, seen=NUMBER)
    listener = SynchronizationListener()
    inputs = main_inputs(listener, x=(NUMBER, numbers(processor_algorithm, values)))
    outputs, produced = outputs_of(processor_algorithm, listener, y=NUMBER)
    channel = Channel(evaluator)
    assert evaluator.process(inputs=evaluator_inputs, data_loaders=DataLoaderList(),
                             outputs=evaluator_outputs) is True
    group, evaluator_group = inputs.main_group, evaluator_inputs.main_group
    while group.hasMoreData():
        group.next()
        evaluator_group.next()
        assert evaluator.read(evaluator_inputs) is True
        processor.process(inputs=inputs, data_loaders=DataLoaderList(), outputs=outputs,
                          loop_channel=channel)
        assert evaluator.write(evaluator_outputs, "y", group.data_index_end) is True
    assert values_of(produced["y"]) == [(10.0, 0, 0), (20.0, 1, 1), (-1.0, 2, 2), (30.0, 3, 3)]
    assert values_of(seen["seen"]) == [(1.0, 0, 0), (2.0, 1, 1), (4.0, 2, 2), (3.0, 3, 3)]
    assert [request["value"] for request in channel.requests] == values  # as sent
    ok, answer = evaluator.validate(processor_algorithm.dataformats[NUMBER].type(value=0.5))
    assert ok is True and answer.label == 5
    ok, answer = evaluator.validate(processor_algorithm.dataformats[NUMBER].type(
        value=9).pack())
    assert ok is False and answer.label == 90


def test_an_autonomous_loop(prefix):
    evaluator_algorithm = Algorithm(prefix, "test/auto_evaluator/1")
    evaluator = evaluator_algorithm.runner()
    evaluator.setup({})
    x = numbers(evaluator_algorithm, [1, 2, 3])
    assert evaluator.process(data_loaders=loaders(main={"x": x}), outputs=OutputList())
    processor_algorithm = Algorithm(prefix, "test/auto_processor/1")
    processor = processor_algorithm.runner()
    processor.setup({})
    outputs, sinks = outputs_of(processor_algorithm, None, y=NUMBER)
    assert processor.process(data_loaders=loaders(main={"x": x}), outputs=outputs,
                             loop_channel=Channel(evaluator)) is True
    assert values_of(sinks["y"]) == [(3.0, 0, 0), (3.0, 1, 1), (3.0, 2, 2)]
    assert evaluator.read(None) is True and evaluator.write(None, "y", 2) is True  # optional


# -- runners: misuse and failures ----------------------------------------------------------------


def test_setup_cleans_the_parameters(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    with pytest.raises(UnknownParameterError, match="unknown parameter 'speed'"):
        scale.runner().setup({"speed": 1})
    with pytest.raises(ParameterError, match=r"parameter 'factor': 11 is outside the range "
                                             r"\[0, 10\]"):
        scale.runner().setup({"factor": 11})
    with pytest.raises(ParameterError, match="parameter 'mode': \"slow\" is not among"):
        scale.runner().setup({"mode": "slow"})
    declaration = base_declaration()
    declaration["parameters"]["k"].pop("default")
    algo(prefix, "test/a/1", declaration, "class Algorithm:\n    pass\n")
    runner = Algorithm(prefix, "test/a/1").runner()
    with pytest.raises(ParameterError, match="parameter 'k' has no default and is not given"):
        runner.setup({})
    assert not runner.ready and runner.setup({"k": 4}) is True
    assert runner.parameters == {"k": 4}


def test_calls_out_of_order_and_missing_arguments(prefix):
    scale = Algorithm(prefix, "test/scale/1")
    runner = scale.runner()
    inputs, models, outputs, _ = scale_setup(scale, [1, 2, 3, 4, 5, 6])
    with pytest.raises(BlockError, match=r"^algorithm 'test/scale/1': process\(\) before a "
                                         r"successful setup\(\): setup\(\) was not called"):
        runner.process(inputs=inputs, data_loaders=models, outputs=outputs)
    with pytest.raises(BlockError, match=r"prepare\(\) before a successful setup"):
        runner.prepare(models)
    runner.setup({})
    with pytest.raises(TypeError, match=r"'test/scale/1' \(sequential\): process\(\) needs "
                                        "outputs"):
        runner.process(inputs=inputs, data_loaders=models)
    with pytest.raises(TypeError, match=r"process\(\) needs inputs"):
        runner.process(data_loaders=models, outputs=outputs)
    with pytest.raises(TypeError, match=r"process\(\) needs data_loaders"):
        runner.process(inputs=inputs, outputs=outputs)
    with pytest.raises(TypeError, match="only loop processors take a loop_channel"):
        runner.process(inputs=inputs, data_loaders=models, outputs=outputs, loop_channel=1)
    with pytest.raises(TypeError, match=r"only loop evaluators have validate\(\)"):
        runner.validate({"value": 1})
    with pytest.raises(TypeError, match=r"only loop evaluators have read\(\)"):
        runner.read(inputs)
    with pytest.raises(TypeError, match=r"only loop evaluators have write\(\)"):
        runner.write(outputs, "y", 0)
    mean = Algorithm(prefix, "test/mean/1").runner()
    mean.setup({})
    with pytest.raises(TypeError, match=r"\(sequential, analyzer\): process\(\) needs output"):
        mean.process(inputs=inputs, data_loaders=models, outputs=outputs)
    processor = Algorithm(prefix, "test/processor/1").runner()
    processor.setup({})
    with pytest.raises(TypeError, match=r"process\(\) needs loop_channel"):
        processor.process(inputs=inputs, data_loaders=models, outputs=outputs)


def test_setup_or_prepare_that_returns_false(prefix):
    failing = Algorithm(prefix, "test/failing/1")
    refuses = failing.runner("RefusesSetup")
    assert refuses.setup({}) is False and not refuses.ready
    assert refuses.setup({}) is False  # not called again
    with pytest.raises(BlockError, match=r"before a successful setup\(\): setup\(\) returned "
                                         "False"):
        refuses.process(inputs=InputList(), data_loaders=DataLoaderList(), outputs=OutputList())
    refuses = failing.runner("RefusesPrepare")
    refuses.setup({})
    with pytest.raises(BlockError, match=r"process\(\) after prepare\(\) returned False"):
        refuses.process(inputs=InputList(), data_loaders=DataLoaderList(), outputs=OutputList())
    assert refuses.prepared is False


@pytest.mark.parametrize("klass, call, method, raised, line", [
    ("FailsInSetup", lambda r: r.setup({}), "setup", "KeyError: 'nothing'", 15),
    ("FailsInPrepare", lambda r: (r.setup({}), r.prepare(DataLoaderList())), "prepare",
     "KeyError: \"no data loader 'nothing'", 19),
])
def test_user_code_failing_in_setup_or_prepare(prefix, klass, call, method, raised, line):
    runner = Algorithm(prefix, "test/failing/1").runner(klass)
    with pytest.raises(BlockError) as caught:
        call(runner)
    error = caught.value
    path = code_of(prefix, "algorithms", "test/failing/1")
    assert str(error).startswith(f"test_failing_1.{klass} ({path}): {method}() raised {raised}")
    assert error.method == method and error.block == f"test_failing_1.{klass} ({path})"
    assert f'File "{path}", line {line}, in {method}' in error.traceback
    assert error.traceback in str(error) and error.data_index is None


def test_user_code_failing_in_the_constructor(prefix):
    with pytest.raises(BlockError, match=r"^test_failing_1 \(.*1\.py\): FailsInInit\(\) raised "
                                         "RuntimeError: cannot start") as caught:
        Algorithm(prefix, "test/failing/1").runner("FailsInInit")
    assert "in __init__" in caught.value.traceback


def test_user_code_failing_in_process_gives_the_data_index(prefix):
    failing = Algorithm(prefix, "test/failing/1")
    runner = failing.runner()
    runner.setup({})
    listener = SynchronizationListener()
    inputs = main_inputs(listener, x=(NUMBER, numbers(failing, [1, 2, 0, 4])))
    outputs, sinks = outputs_of(failing, listener, y=NUMBER)
    with pytest.raises(BlockError) as caught:
        drive(runner, inputs, DataLoaderList(), outputs=outputs)
    error = caught.value
    path = code_of(prefix, "algorithms", "test/failing/1")
    assert str(error).splitlines()[0] == (f"test_failing_1.Algorithm ({path}): process() raised "
                                          "ZeroDivisionError: float division by zero")
    assert f'File "{path}", line 6, in process' in error.traceback
    assert f'File "{path}", line 2, in divide' in error.traceback
    assert error.data_index == (2, 2)
    assert error.__notes__ == ["while processing data indices 2..2 of group 'main'"]
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert values_of(sinks["y"]) == [(1.0, 0, 0), (0.5, 1, 1)]


def test_a_chosen_error_class(prefix):
    class AlgorithmFailed(Exception):
        pass

    failing = Algorithm(prefix, "test/failing/1")
    with pytest.raises(AlgorithmFailed, match=r"FailsInInit\(\) raised RuntimeError"):
        failing.runner("FailsInInit", exc=AlgorithmFailed)
    runner = failing.runner("FailsInSetup", exc=AlgorithmFailed)
    with pytest.raises(AlgorithmFailed, match=r"setup\(\) raised KeyError"):
        runner.setup({})
    runner = failing.runner(exc=AlgorithmFailed)
    with pytest.raises(AlgorithmFailed, match=r"process\(\) before a successful setup"):
        runner.process(inputs=InputList(), data_loaders=DataLoaderList(), outputs=OutputList())


def test_runner_refuses_what_cannot_run(prefix):
    algo(prefix, "test/a/1", v2("sequential", main_group({"y": "test/none/1"}, x=NUMBER)))
    with pytest.raises(RuntimeError, match="'test/a/1' is not valid"):
        Algorithm(prefix, "test/a/1").runner()
    with pytest.raises(BlockError, match=r"^algorithm 'test/scale/1': .*1\.py has no class "
                                         "'Nope'"):
        Algorithm(prefix, "test/scale/1").runner("Nope")
    algo(prefix, "test/b/1", v2("sequential", main_group({"y": NUMBER}, x=NUMBER)),
         "import nonexistent_module_xyz\n")
    with pytest.raises(BlockError, match=r"loading the code raised ModuleNotFoundError") as \
            caught:
        Algorithm(prefix, "test/b/1").runner()
    assert caught.value.method == "<module>"

    class LoadFailed(Exception):
        pass

    with pytest.raises(LoadFailed, match="nonexistent_module_xyz") as other:
        Algorithm(prefix, "test/b/1").runner(exc=LoadFailed)
    assert isinstance(other.value.__cause__, ModuleNotFoundError)
    path = algo(prefix, "test/m/1", {**v2("sequential", main_group({"y": NUMBER}, x=NUMBER)),
                                     "language": "matlab"}, code=None)
    path.with_suffix(".m").write_text("y = x;")
    with pytest.raises(RuntimeError, match="written in matlab: only Python code runs"):
        Algorithm(prefix, "test/m/1").runner()


def test_a_loop_evaluator_that_answers_badly(prefix):
    evaluator = Algorithm(prefix, "test/evaluator/1")
    runner = evaluator.runner("NotAPair")
    runner.setup({})
    with pytest.raises(BlockError, match=r"validate\(\) must return \(is_valid, answer\), it "
                                         "returned 'yes'"):
        runner.validate({"value": 1.0})
    runner = evaluator.runner("BadAnswer")
    runner.setup({})
    with pytest.raises(BlockError, match=r"validate\(\) returned an answer that is not a "
                                         "test/label/1 record"):
        runner.validate({"value": 1.0})
    with pytest.raises(TypeError, match="expected a test/number/1 record"):
        runner.validate([1.0])
