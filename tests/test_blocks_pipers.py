"""Blocks as Pipers: the toy prefix's database and algorithms, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from numap import NuMap
from papyflow import Dagger, DaggerError, PiperError, WorkerError
from papyflow.blocks import pipers as pipers_module
from papyflow.blocks.algorithm import Algorithm
from papyflow.blocks.database import Database
from papyflow.blocks.errors import BlockError, ParameterError
from papyflow.blocks.pipers import (
    algorithm_piper,
    connect_blocks,
    database_inputs,
    database_pipers,
)
from papyflow.dataflow.units import Unit
from tests.blocks_helpers import declare

TOY = Path(__file__).resolve().parent.parent / "examples" / "toy" / "prefix"


@pytest.fixture
def prefix(tmp_path):
    """A copy of the toy prefix (tests may add assets to it)."""
    target = tmp_path / "prefix"
    shutil.copytree(TOY, target)
    return target


def _database(prefix, tmp_path, set_name="train", **options):
    return database_pipers(Database(str(prefix), "toy/1"), "main", set_name,
                           index_file=str(tmp_path / f"{set_name}.index.json"), **options)


def _run(dagger, output):
    """Start ``dagger`` on its database inputs, read ``output`` to its end, stop."""
    dagger.connect(database_inputs(dagger))
    dagger.start()
    try:
        return list(output)
    finally:
        dagger.stop()


def _enrollment(prefix, tmp_path, parallel=False):
    sources = _database(prefix, tmp_path)
    preprocess = algorithm_piper(Algorithm(str(prefix), "toy/preprocess/1"), parallel=parallel)
    enroll = algorithm_piper(Algorithm(str(prefix), "toy/enroll/1"), parallel=parallel)
    dagger = Dagger()
    connect_blocks(dagger, preprocess, {"features": sources["features"]})
    connect_blocks(dagger, enroll, {"features": preprocess, "client": sources["client"]})
    return dagger, enroll


def test_database_pipers_emit_the_units_of_each_output(prefix, tmp_path):
    sources = _database(prefix, tmp_path)
    assert set(sources) == {"client", "features"}
    assert sources["client"].dataformat == "toy/client/1"
    clients = _run(Dagger([sources["client"]]), sources["client"])
    assert [(u.start, u.end) for u in clients] == [(0, 9), (10, 19), (20, 29), (30, 39)]
    assert [int(u.data.id) for u in clients] == [0, 1, 2, 3]
    features = _run(Dagger([sources["features"]]), sources["features"])
    assert [(u.start, u.end) for u in features] == [(i, i) for i in range(40)]
    assert all(isinstance(u, Unit) and u.data.value.shape == (8,) for u in features)


def test_database_pipers_can_be_asked_for_some_outputs(prefix, tmp_path):
    assert list(_database(prefix, tmp_path, outputs=["client"])) == ["client"]
    with pytest.raises(KeyError, match="no output 'nope'"):
        _database(prefix, tmp_path, outputs=["nope"])


def _expected_models(prefix, tmp_path):
    features = _database(prefix, tmp_path, outputs=["features"])["features"]
    vectors = np.array([u.data.value for u in _run(Dagger([features]), features)])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.reshape(4, 10, 8).mean(axis=1)


def test_preprocess_and_enroll_make_one_model_per_client(prefix, tmp_path):
    dagger, enroll = _enrollment(prefix, tmp_path)
    models = _run(dagger, enroll)
    assert [(u.start, u.end) for u in models] == [(0, 9), (10, 19), (20, 29), (30, 39)]
    np.testing.assert_allclose([u.data.value for u in models],
                               _expected_models(prefix, tmp_path))


def test_process_workers_give_the_same_models(prefix, tmp_path):
    dagger, enroll = _enrollment(prefix, tmp_path)
    linear = _run(dagger, enroll)
    with NuMap(worker_type="process", worker_num=2) as numap:
        dagger, enroll = _enrollment(prefix, tmp_path, parallel=numap)
        parallel = _run(dagger, enroll)
    assert [(u.start, u.end) for u in parallel] == [(u.start, u.end) for u in linear]
    for a, b in zip(parallel, linear, strict=True):
        np.testing.assert_array_equal(a.data.value, b.data.value)


def test_the_upstream_order_in_the_dagger_does_not_matter(prefix, tmp_path):
    sources = _database(prefix, tmp_path)
    enroll = algorithm_piper(Algorithm(str(prefix), "toy/enroll/1"))
    dagger = Dagger()
    enroll.wire({"features": sources["features"], "client": sources["client"]})
    # the client piper is added first: it comes first in the Dagger's order
    dagger.add_pipe([sources["client"], enroll])
    dagger.add_pipe([sources["features"], enroll])
    assert dagger.upstream(enroll)[0] is sources["client"]
    models = _run(dagger, enroll)
    assert [(u.start, u.end) for u in models] == [(0, 9), (10, 19), (20, 29), (30, 39)]


def test_records_cross_processes_packed(prefix, tmp_path, monkeypatch):
    seen = []
    call = pipers_module._AlgorithmTask.__call__

    def spy(self, inbox):
        seen.append(inbox[0])
        return call(self, inbox)

    # a thread NuMap runs the spied function; the chunks are what a process gets
    monkeypatch.setattr(pipers_module._AlgorithmTask, "__call__", spy)
    with NuMap(worker_type="thread", worker_num=2) as numap:
        dagger, enroll = _enrollment(prefix, tmp_path, parallel=numap)
        models = _run(dagger, enroll)
    assert len(models) == 4
    chunks = [c for c in seen if isinstance(c, pipers_module._Chunk)]
    assert chunks and all(c.packed for c in chunks)
    for chunk in chunks:
        for step in chunk.steps:
            assert all(data is None or isinstance(data, bytes) for data, *_ in step.units)
    # enroll's chunks are whole clients: 10 steps each
    assert sorted(len(c.steps) for c in chunks if len(c.steps) > 1) == [10] * 4


BROKEN = '''
class Algorithm:
    def process(self, inputs, data_loaders, outputs):
        value = inputs["features"].data.value
        if inputs["features"].data_index == 3:
            raise ArithmeticError("sample three is broken")
        outputs["features"].write({"value": value})
        return True
'''


def _broken(prefix):
    declare(prefix, "algorithms", "toy/broken/1", {
        "schema_version": 2, "language": "python", "api_version": 2,
        "type": "sequential", "splittable": True,
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"features": {"type": "toy/features/1"}}}]}, BROKEN)
    return Algorithm(str(prefix), "toy/broken/1")


@pytest.mark.parametrize("worker_type", [None, "process"])
def test_a_failing_algorithm_gives_piper_errors_and_goes_on(prefix, tmp_path, worker_type):
    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    sources = _database(prefix, tmp_path, outputs=["features"])
    broken = algorithm_piper(_broken(prefix), parallel=numap)
    dagger = Dagger()
    connect_blocks(dagger, broken, {"features": sources["features"]})
    out = _run(dagger, broken)
    assert [(u.start, u.end) for u in out] == [(i, i) for i in range(10 * 4)]
    failed = [u for u in out if isinstance(u.data, PiperError)]
    assert [(u.start, u.end) for u in failed] == [(3, 3)]
    cause = failed[0].data.args[0]
    assert isinstance(cause, WorkerError)
    error = cause.exception
    assert isinstance(error, BlockError)
    assert "toy/broken/1" in str(error) or "toy_broken_1" in error.block
    assert error.method == "process"
    assert error.data_index == (3, 3)
    assert "sample three is broken" in cause.traceback


def test_a_dataformat_mismatch_is_refused_naming_both_ends(prefix, tmp_path):
    sources = _database(prefix, tmp_path)
    preprocess = algorithm_piper(Algorithm(str(prefix), "toy/preprocess/1"))
    dagger = Dagger()
    with pytest.raises(DaggerError) as caught:
        connect_blocks(dagger, preprocess, {"features": sources["client"]})
    message = str(caught.value)
    assert "output 'client' (dataformat 'toy/client/1') of database toy/1" in message
    assert "input 'features' (dataformat 'toy/features/1') of algorithm toy/preprocess/1" \
        in message
    assert len(dagger) == 0


def test_wiring_names_unknown_and_missing_inputs(prefix, tmp_path):
    sources = _database(prefix, tmp_path)
    enroll = algorithm_piper(Algorithm(str(prefix), "toy/enroll/1"))
    with pytest.raises(DaggerError, match="no input 'image'"):
        enroll.wire({"image": sources["features"]})
    with pytest.raises(DaggerError, match="no upstream piper for input.*'client'"):
        enroll.wire({"features": sources["features"]})


def test_parameters_are_checked_when_the_piper_is_built(prefix):
    with pytest.raises(ValueError, match="nope"):
        algorithm_piper(Algorithm(str(prefix), "toy/preprocess/1"), parameters={"nope": 1})


def test_a_second_run_starts_the_algorithm_afresh(prefix, tmp_path):
    dagger, enroll = _enrollment(prefix, tmp_path)
    first = _run(dagger, enroll)
    dagger.disconnect()
    second = _run(dagger, enroll)
    assert [(u.start, u.end) for u in second] == [(u.start, u.end) for u in first]
    np.testing.assert_array_equal([u.data.value for u in second], [u.data.value for u in first])


def _toy_pipeline():
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy_pipeline", TOY.parent / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("workers", [0, 2])
def test_scores_through_a_secondary_group_and_the_analyzer_reports_once(workers, tmp_path):
    toy = _toy_pipeline()
    numap = NuMap(worker_type="process", worker_num=workers) if workers else False
    dagger, pipers = toy.build(numap, str(tmp_path))
    dagger.connect(database_inputs(dagger))
    dagger.start()
    try:
        results = list(pipers["eer"])
    finally:
        dagger.stop()
    (result,) = results
    assert (result.start, result.end) == (0, 39)
    assert (int(result.data.genuine), int(result.data.impostor)) == (40, 120)
    assert result.data.eer == pytest.approx(0.025)


def test_the_toy_pipeline_prints_its_error_rate(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))  # the views' index files go there
    done = subprocess.run([sys.executable, str(TOY.parent / "pipeline.py"), "--workers", "2"],
                          check=False, capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "equal error rate: 0.025 (40 genuine, 120 impostor scores)"
    assert len(list(tmp_path.glob("papyflow-index-*.json"))) == 2


def test_an_algorithm_that_is_not_splittable_refuses_a_numap(prefix):
    with NuMap(worker_type="thread", worker_num=1) as numap, \
            pytest.raises(ValueError, match="not splittable"):
        algorithm_piper(Algorithm(str(prefix), "toy/eer/1"), parallel=numap)


def test_several_outputs_need_one_piper_each(prefix):
    declare(prefix, "algorithms", "toy/two/1", {
        "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"a": {"type": "toy/features/1"},
                                "b": {"type": "toy/features/1"}}}]},
        "class Algorithm:\n    def process(self, inputs, data_loaders, outputs):\n"
        "        return True\n")
    two = Algorithm(str(prefix), "toy/two/1")
    with pytest.raises(ValueError, match="say which one"):
        algorithm_piper(two)
    assert algorithm_piper(two, output="b").name == "toy/two/1:b"


def test_a_legacy_algorithm_runs_as_a_piper(prefix, tmp_path):
    declare(prefix, "algorithms", "toy/legacy/1", {
        "language": "python",
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"features": {"type": "toy/features/1"}}}]},
        "class Algorithm:\n    def process(self, inputs, outputs):\n"
        "        outputs['features'].write({'value': -inputs['features'].data.value})\n"
        "        return True\n")
    legacy = Algorithm(str(prefix), "toy/legacy/1")
    assert legacy.type == Algorithm.LEGACY
    sources = _database(prefix, tmp_path, outputs=["features"])
    piper = algorithm_piper(legacy)
    dagger = Dagger()
    connect_blocks(dagger, piper, {"features": sources["features"]})
    out = _run(dagger, piper)
    assert [(u.start, u.end) for u in out] == [(i, i) for i in range(40)]
    assert all(isinstance(u.data.value, np.ndarray) for u in out)


AUTONOMOUS = '''
import numpy as np


class Algorithm:
    def process(self, data_loaders, outputs):
        loader = data_loaders.loaderOf("features")
        vectors = [loader[i][0]["features"].value for i in range(len(loader))]
        outputs["mean"].write({"value": np.mean(vectors, axis=0)}, loader.data_index_end)
        return True
'''


@pytest.mark.parametrize("worker_type", [None, "process"])
def test_an_autonomous_algorithm_gets_all_of_its_inputs_at_once(prefix, tmp_path, worker_type):
    declare(prefix, "algorithms", "toy/mean/1", {
        "schema_version": 2, "language": "python", "api_version": 2, "type": "autonomous",
        "splittable": True,
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"mean": {"type": "toy/model/1"}}}]}, AUTONOMOUS)
    numap = NuMap(worker_type=worker_type, worker_num=2) if worker_type else False
    sources = _database(prefix, tmp_path, outputs=["features"])
    piper = algorithm_piper(Algorithm(str(prefix), "toy/mean/1"), parallel=numap)
    dagger = Dagger()
    connect_blocks(dagger, piper, {"features": sources["features"]})
    (mean,) = _run(dagger, piper)
    everything = _database(prefix, tmp_path, outputs=["features"])["features"]
    vectors = [u.data.value for u in _run(Dagger([everything]), everything)]
    assert (mean.start, mean.end) == (0, 39)
    np.testing.assert_allclose(mean.data.value, np.mean(vectors, axis=0))


def test_a_failing_setup_fails_every_step_naming_the_method(prefix, tmp_path):
    declare(prefix, "algorithms", "toy/nosetup/1", {
        "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"features": {"type": "toy/features/1"}}}]},
        "class Algorithm:\n    def setup(self, parameters):\n"
        "        raise LookupError('no model file')\n"
        "    def process(self, inputs, data_loaders, outputs):\n        return True\n")
    sources = _database(prefix, tmp_path, outputs=["features"])
    piper = algorithm_piper(Algorithm(str(prefix), "toy/nosetup/1"))
    dagger = Dagger()
    connect_blocks(dagger, piper, {"features": sources["features"]})
    out = _run(dagger, piper)
    assert len(out) == 40 and all(isinstance(u.data, PiperError) for u in out)
    first = out[0].data.args[0].exception
    assert first.method == "setup" and "no model file" in first.traceback
    assert out[1].data.args[0].exception.method == "process"  # setup is not called again


def test_block_pipers_run_in_a_plumber(prefix, tmp_path):
    from papyflow import Plumber

    sources = _database(prefix, tmp_path)
    preprocess = algorithm_piper(Algorithm(str(prefix), "toy/preprocess/1"))
    enroll = algorithm_piper(Algorithm(str(prefix), "toy/enroll/1"))
    plumber = Plumber()
    connect_blocks(plumber, preprocess, {"features": sources["features"]})
    connect_blocks(plumber, enroll, {"features": preprocess, "client": sources["client"]})
    plumber.start(database_inputs(plumber))
    plumber.run()
    plumber.wait(timeout=60)
    stats = plumber.stats["pipers"]
    plumber.stop()
    assert stats[preprocess]["results"] == 40 and stats[preprocess]["errors"] == 0
    assert stats[enroll]["errors"] == 0


def test_database_inputs_refuse_other_input_pipers(prefix):
    from papyflow import Piper

    dagger = Dagger([Piper(lambda inbox: inbox[0], name="plain")])
    with pytest.raises(DaggerError, match="'plain' is not a database piper"):
        database_inputs(dagger)


INPUT_LIST_API = '''
class Algorithm:
    def process(self, inputs, data_loaders, outputs):
        # the InputList API of the BEAT backend: nbGroups() is a method, slices give lists
        assert inputs.nbGroups() == 1
        (first,) = inputs[0:1]
        (same,) = inputs.main_group[0:1]
        assert first is same is inputs["features"]
        outputs["features"].write({"value": -first.data.value})
        return True
'''


def test_inputs_follow_the_input_list_api(prefix, tmp_path):
    declare(prefix, "algorithms", "toy/listapi/1", {
        "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
        "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                    "outputs": {"features": {"type": "toy/features/1"}}}]}, INPUT_LIST_API)
    sources = _database(prefix, tmp_path, outputs=["features"])
    piper = algorithm_piper(Algorithm(str(prefix), "toy/listapi/1"))
    dagger = Dagger()
    connect_blocks(dagger, piper, {"features": sources["features"]})
    out = _run(dagger, piper)
    assert all(isinstance(u, Unit) and not isinstance(u.data, PiperError) for u in out), out[0]
    assert len(out) == 40


def test_an_unknown_input_name_is_a_key_error_naming_the_inputs():
    group = pipers_module.StepGroup("main")
    group._inputs["features"] = pipers_module.StepInput("features", "toy/features/1", group)
    inputs = pipers_module.StepInputs(group)
    with pytest.raises(KeyError, match="no input 'feature'.*'features'"):
        inputs["feature"]


def test_a_parameter_without_a_default_must_be_given(prefix):
    path = prefix / "algorithms" / "toy" / "preprocess" / "1.json"
    declaration = json.loads(path.read_text())
    del declaration["parameters"]["layers"]["default"]
    path.write_text(json.dumps(declaration))
    algorithm = Algorithm(str(prefix), "toy/preprocess/1")
    with pytest.raises(ParameterError, match="parameter 'layers' has no default and is not "
                                             "given"):
        algorithm_piper(algorithm)
    assert algorithm_piper(algorithm, parameters={"layers": 1}).algorithm is algorithm


def _loop_algorithm(prefix, kind):
    """A ``kind`` loop algorithm (``sequential_loop_processor``, ...) on the toy formats."""
    name = f"toy/{kind}/1"
    group = {"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
             "loop": {"request": {"type": "toy/features/1"}, "answer": {"type": "toy/client/1"}}}
    if kind.endswith("processor"):
        group["outputs"] = {"features": {"type": "toy/features/1"}}
    declare(prefix, "algorithms", name, {
        "schema_version": 2, "language": "python", "api_version": 2, "type": kind,
        "groups": [group]}, """\
        class Algorithm:
            def validate(self, request):
                return True, {"value": 0}

            def process(self, *args):
                return True
        """)
    algorithm = Algorithm(str(prefix), name)
    assert algorithm.valid, algorithm.errors
    return algorithm


@pytest.mark.parametrize("kind", ["sequential_loop_processor", "autonomous_loop_processor",
                                  "sequential_loop_evaluator", "autonomous_loop_evaluator"])
def test_a_loop_algorithm_is_refused_saying_what_runs_it(prefix, kind):
    algorithm = _loop_algorithm(prefix, kind)
    with pytest.raises(ValueError, match=rf"algorithm 'toy/{kind}/1' \({kind}\): loop "
                                         r"algorithms do not run as Pipers yet: run them with "
                                         r"papyflow\.execution\.LoopExecutor \(the evaluator\) "
                                         r"and AlgorithmExecutor \(the processor\)"):
        algorithm_piper(algorithm)
