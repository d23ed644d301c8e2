"""Experiments with a cache: reruns reuse what did not change, failures leave nothing partial."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from numap import NuMap
from papyflow.blocks.errors import BlockError
from papyflow.blocks.experiment import Experiment
from papyflow.blocks.pipers import AlgorithmPiper, CachedPiper
from papyflow.errors import PiperError
from tests.blocks_helpers import declare

pytestmark = pytest.mark.timeout(120)

TOY = Path(__file__).resolve().parent.parent / "examples" / "toy"
ALGORITHMS = ("preprocess", "enroll", "score", "eer")

# Appended to each toy algorithm's code: every call of process() adds a line
# naming the algorithm to the file in $TOY_CALLS.
COUNTER = '''

import os as _os

_process = Algorithm.process


def _counted(self, *args, **kwargs):
    with open(_os.environ["TOY_CALLS"], "a") as _log:
        _log.write("{name}\\n")
    return _process(self, *args, **kwargs)


Algorithm.process = _counted
'''

FAILING = {
    "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
    "splittable": True,
    "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                "outputs": {"features": {"type": "toy/features/1"}}}],
}

FAILING_CODE = """\
    class Algorithm:
        def process(self, inputs, data_loaders, outputs):
            if inputs["features"].data_index == 25:
                raise ValueError("sample 25 is unreadable")
            outputs["features"].write(inputs["features"].data)
            return True
"""


@pytest.fixture
def prefix(tmp_path, monkeypatch):
    """A copy of the toy prefix whose algorithms count their process() calls."""
    target = tmp_path / "prefix"
    shutil.copytree(TOY / "prefix", target)
    for name in ALGORITHMS:
        code = target / "algorithms" / "toy" / name / "1.py"
        code.write_text(code.read_text() + COUNTER.format(name=name))
    monkeypatch.setenv("TOY_CALLS", str(tmp_path / "calls.log"))
    return target


@pytest.fixture
def calls(tmp_path):
    """The process() calls logged since the last look, by algorithm."""
    log = tmp_path / "calls.log"

    def read() -> dict[str, int]:
        lines = log.read_text().split() if log.exists() else []
        log.unlink(missing_ok=True)
        return {name: lines.count(name) for name in sorted(set(lines))}
    return read


def toy() -> dict:
    return json.loads((TOY / "experiment.json").read_text())


def _eer(results):
    (record,) = results["eer"]
    return round(float(record.eer), 9), int(record.genuine), int(record.impostor)


def _complete(cache: Path) -> set[str]:
    """The outputs committed to the cache: ``block.output`` from their ``.json`` files."""
    found = set()
    for marker in cache.rglob("*.json"):
        about = json.loads(marker.read_text())
        found.add(f"{about['block']}.{about['output']}")
    return found


def test_a_rerun_reads_only_the_results_and_calls_no_process(prefix, tmp_path, calls):
    cache = tmp_path / "cache"
    experiment = Experiment(prefix, toy())
    assert set(experiment.plan(cache).values()) == {"read", "run"}
    assert _eer(experiment.run(index_folder=tmp_path, cache=cache)) == (0.025, 40, 120)
    assert calls() == {"eer": 40, "enroll": 40, "preprocess": 80, "score": 40}
    assert _complete(cache) == {"preprocess_train.features", "preprocess_test.features",
                                "enroll.model", "score.scores", "eer.results"}

    again = Experiment(prefix, toy())
    assert again.plan(cache) == {"eer.results": "cached"}
    _, pipers = again.build(index_folder=tmp_path, cache=cache)
    assert list(pipers) == ["eer.results"]
    assert isinstance(pipers["eer.results"], CachedPiper)
    assert _eer(again.run(index_folder=tmp_path, cache=cache)) == (0.025, 40, 120)
    assert calls() == {}


def test_a_changed_parameter_reruns_that_block_and_what_depends_on_it(prefix, tmp_path, calls):
    cache = tmp_path / "cache"
    Experiment(prefix, toy()).run(index_folder=tmp_path, cache=cache)
    calls()
    declaration = toy()
    declaration["blocks"]["preprocess_test"]["parameters"] = {"layers": 3}
    changed = Experiment(prefix, declaration)
    assert changed.plan(cache) == {
        "test.client": "read", "test.features": "read", "train.client": "read",
        "preprocess_test.features": "run", "enroll.model": "cached", "score.scores": "run",
        "eer.results": "run"}
    _, genuine, impostor = _eer(changed.run(index_folder=tmp_path, cache=cache))
    assert (genuine, impostor) == (40, 120)
    assert calls() == {"eer": 40, "preprocess": 40, "score": 40}  # only the test set's
    # the parameter at its default is the same block as the parameter left out
    declaration["blocks"]["preprocess_test"]["parameters"] = {"layers": 0}
    assert Experiment(prefix, declaration).plan(cache) == {"eer.results": "cached"}


def test_changed_code_reruns_that_block_and_what_depends_on_it(prefix, tmp_path, calls):
    cache = tmp_path / "cache"
    Experiment(prefix, toy()).run(index_folder=tmp_path, cache=cache)
    calls()
    code = prefix / "algorithms" / "toy" / "enroll" / "1.py"
    code.write_text(code.read_text() + "\n# a comment changes the code's hash\n")
    experiment = Experiment(prefix, toy())
    plan = experiment.plan(cache)
    assert [key for key, action in plan.items() if action == "run"] == [
        "enroll.model", "score.scores", "eer.results"]
    assert plan["preprocess_train.features"] == "cached"
    assert plan["preprocess_test.features"] == "cached"
    assert _eer(experiment.run(index_folder=tmp_path, cache=cache)) == (0.025, 40, 120)
    assert calls() == {"eer": 40, "enroll": 40, "score": 40}


def test_hashes_follow_libraries_and_dataformats_but_not_descriptions(prefix):
    declare(prefix, "libraries", "toy/maths/1", {"schema_version": 2, "language": "python"},
            "def half(x):\n    return x / 2\n")
    spec = json.loads((prefix / "algorithms/toy/preprocess/1.json").read_text())
    spec["uses"] = {"maths": "toy/maths/1"}
    (prefix / "algorithms/toy/preprocess/1.json").write_text(json.dumps(spec))

    def hashes():
        experiment = Experiment(prefix, toy())
        assert experiment.valid, experiment.errors
        return experiment.hashes()

    first = hashes()
    assert len(set(first.values())) == len(first)  # every output has its own
    library = prefix / "libraries/toy/maths/1.py"
    library.write_text(library.read_text() + "\n\ndef third(x):\n    return x / 3\n")
    second = hashes()
    assert second["preprocess_train.features"] != first["preprocess_train.features"]
    assert second["eer.results"] != first["eer.results"]  # downstream too
    assert second["train.features"] == first["train.features"]

    model = prefix / "dataformats/toy/model/1.json"
    declaration = json.loads(model.read_text())
    declaration["#description"] = "a new description changes nothing"
    model.write_text(json.dumps(declaration))
    assert hashes() == second
    declaration["extra"] = "int32"
    model.write_text(json.dumps(declaration))
    third = hashes()
    assert third["enroll.model"] != second["enroll.model"]
    assert third["preprocess_train.features"] == second["preprocess_train.features"]


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_a_failing_block_leaves_nothing_partial_and_the_others_are_kept(prefix, tmp_path,
                                                                        calls, workers):
    def numap():
        return NuMap(worker_type="process", worker_num=workers) if workers else False

    declare(prefix, "algorithms", "toy/failing/1", FAILING, FAILING_CODE)
    declaration = toy()
    declaration["blocks"]["check"] = {"algorithm": "toy/failing/1",
                                      "inputs": {"features": "preprocess_test.features"}}
    declaration["blocks"]["score"]["inputs"]["probe"] = "check.features"
    cache = tmp_path / "cache"
    with pytest.raises(PiperError) as caught:
        Experiment(prefix, declaration).run(numap(), index_folder=tmp_path, cache=cache)
    error = caught.value
    while isinstance(error, PiperError):
        error = error.args[0]
    block_error = error.exception
    assert isinstance(block_error, BlockError)
    assert block_error.method == "process"
    assert block_error.data_index == (25, 25)
    assert "sample 25 is unreadable" in error.traceback
    # what did not fail is kept; the failed block and what depends on it are not
    assert _complete(cache) == {"preprocess_train.features", "preprocess_test.features",
                                "enroll.model"}
    assert not [p for p in cache.rglob("*") if ".tmp." in p.name]
    calls()

    # mended, only the mended block and what follows it run
    code = prefix / "algorithms" / "toy" / "failing" / "1.py"
    code.write_text(code.read_text().replace("== 25", "== -1"))
    mended = Experiment(prefix, declaration)
    assert [k for k, a in mended.plan(cache).items() if a == "run"] == [
        "check.features", "score.scores", "eer.results"]
    assert _eer(mended.run(numap(), index_folder=tmp_path, cache=cache)) == (0.025, 40, 120)
    assert calls() == {"eer": 40, "score": 40}


def test_an_output_whose_files_went_missing_is_computed_again(prefix, tmp_path, calls):
    cache = tmp_path / "cache"
    Experiment(prefix, toy()).run(index_folder=tmp_path, cache=cache)
    calls()
    (marker,) = [m for m in cache.rglob("*.json")
                 if json.loads(m.read_text())["block"] == "eer"]
    for data in marker.parent.glob(marker.stem + ".*.data"):
        data.unlink()
    experiment = Experiment(prefix, toy())
    assert experiment.plan(cache)["score.scores"] == "cached"
    assert experiment.plan(cache)["eer.results"] == "run"
    assert _eer(experiment.run(index_folder=tmp_path, cache=cache)) == (0.025, 40, 120)
    assert calls() == {"eer": 40}


@pytest.mark.slow
def test_process_workers_fill_the_same_cache(prefix, tmp_path, calls):
    cache = tmp_path / "cache"
    numap = NuMap(worker_type="process", worker_num=2)
    assert _eer(Experiment(prefix, toy()).run(numap, index_folder=tmp_path, cache=cache)) \
        == (0.025, 40, 120)
    assert sum(calls().values()) == 200
    linear = Experiment(prefix, toy())
    assert linear.plan(cache) == {"eer.results": "cached"}
    plumber, pipers = linear.build(index_folder=tmp_path, cache=cache)
    assert isinstance(pipers["eer.results"], CachedPiper)
    assert not [p for p in plumber.graph if isinstance(p, AlgorithmPiper)]


# -- CachedOutput: what goes to the cache as units go by -----------------------------------


def _output(tmp_path):
    from papyflow.blocks._cache import CachedOutput
    from papyflow.formats.dataformat import DataFormat

    dataformat = DataFormat(str(TOY / "prefix"), "toy/client/1")
    return CachedOutput(str(tmp_path / "cache"), "ab" * 32, dataformat, "block 'b' output 'o'",
                        {"block": "b", "output": "o"}), dataformat.type


def _units(record_type, count, failure_at=None):
    from papyflow.dataflow.units import Unit

    for k in range(count):
        data = PiperError("upstream failed") if k == failure_at else record_type(id=k)
        yield Unit(data, k, k)


def test_a_whole_stream_is_committed_and_reads_back(tmp_path):
    output, record_type = _output(tmp_path)
    passed = list(output.write(_units(record_type, 5)))
    assert [u.data.id for u in passed] == list(range(5))
    assert output.units() == 5
    assert [(int(u.data.id), u.start, u.end) for u in output.read()] == \
        [(k, k, k) for k in range(5)]
    about = json.loads(Path(output.marker).read_text())
    assert (about["block"], about["output"], about["units"]) == ("b", "o", 5)


def test_an_empty_stream_is_a_complete_output_of_no_units(tmp_path):
    output, record_type = _output(tmp_path)
    assert list(output.write(_units(record_type, 0))) == []
    assert output.units() == 0
    assert list(output.read()) == []


@pytest.mark.parametrize("how", ["failure", "closed early"])
def test_a_stream_that_fails_or_stops_leaves_nothing(tmp_path, how):
    output, record_type = _output(tmp_path)
    if how == "failure":
        passed = list(output.write(_units(record_type, 5, failure_at=3)))
        assert len(passed) == 5  # the units go on: the cache only drops them
    else:
        stream = output.write(_units(record_type, 5))
        next(stream), next(stream)
        stream.close()
    assert output.units() is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    with pytest.raises(RuntimeError, match="block 'b' output 'o': not in the cache"):
        list(output.read())


def test_an_error_of_the_cache_is_reported_and_the_units_go_on(tmp_path, caplog):
    output, record_type = _output(tmp_path)

    def units():
        yield from _units(record_type, 2)
        from papyflow.dataflow.units import Unit
        yield Unit(record_type(id=9), 7, 7)  # a gap: the cache refuses it

    passed = list(output.write(units()))
    assert [u.start for u in passed] == [0, 1, 7]
    assert isinstance(output.error, ValueError)
    assert "block 'b' output 'o': not cached" in caplog.text
    assert output.units() is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_kept_outputs_are_returned_and_cached(prefix, tmp_path, calls):
    declaration = toy()
    declaration["keep"] = ["enroll.model"]
    cache = tmp_path / "cache"
    results = Experiment(prefix, declaration).run(index_folder=tmp_path, cache=cache)
    assert len(results["enroll.model"]) == 4
    assert results["enroll.model"][0].value.shape == (8,)
    calls()
    again = Experiment(prefix, declaration)
    assert again.plan(cache) == {"enroll.model": "cached", "eer.results": "cached"}
    plumber, _ = again.build(index_folder=tmp_path, cache=cache)
    plumber.start(plumber.inputs())
    plumber.run()
    plumber.wait(timeout=60)
    plumber.stop()
    assert [(u.start, u.end) for u in plumber.kept["enroll.model"]] == \
        [(0, 9), (10, 19), (20, 29), (30, 39)]
    assert calls() == {}


@pytest.mark.parametrize(("keep", "message"), [
    ("enroll.model", "keep: must be a list"),
    (["enroll"], "keep[0]: 'enroll' is not '<block>.<output>'"),
    (["train.features"], "keep[0]: 'train' is a dataset: its outputs are read, not kept"),
    (["enroll.scores"], "keep[0]: block 'enroll' has no output 'scores' (outputs: model)"),
    (["nothing.model"], "keep[0]: 'nothing' is not a block"),
    # an analyzer's results are returned under its name already, never under this one
    (["eer.results"], ("keep[0]: 'eer.results' is the results of the analyzer 'eer': "
                       "they are returned as 'eer' without keeping them")),
])
def test_bad_kept_outputs_name_the_field(keep, message):
    declaration = toy()
    declaration["keep"] = keep
    experiment = Experiment(TOY / "prefix", declaration)
    assert any(message in error for error in experiment.errors), experiment.errors


def test_a_kept_output_needs_feed_no_block(prefix, tmp_path):
    declaration = toy()
    declaration["blocks"]["extra"] = {"algorithm": "toy/preprocess/1",
                                      "inputs": {"features": "test.features"}}
    assert any("blocks.extra: its outputs feed no block" in e
               for e in Experiment(prefix, declaration).errors)
    declaration["keep"] = ["extra.features"]
    experiment = Experiment(prefix, declaration)
    assert experiment.valid, experiment.errors
    assert len(experiment.run(index_folder=tmp_path)["extra.features"]) == 40


def test_several_analyzers_each_give_their_results_and_are_cached(prefix, tmp_path, calls):
    declaration = toy()
    declaration["blocks"]["preprocess_more"] = {
        "algorithm": "toy/preprocess/1", "parameters": {"layers": 2},
        "inputs": {"features": "test.features"}}
    declaration["blocks"]["score_more"] = {
        "algorithm": "toy/score/1",
        "inputs": {"probe": "preprocess_more.features", "client": "test.client",
                   "model": "enroll.model", "model_client": "train.client"}}
    declaration["blocks"]["eer_more"] = {"algorithm": "toy/eer/1",
                                         "inputs": {"scores": "score_more.scores"}}
    cache = tmp_path / "cache"
    experiment = Experiment(prefix, declaration)
    assert experiment.analyzers == ["eer", "eer_more"]
    results = experiment.run(index_folder=tmp_path, cache=cache)
    assert set(results) == {"eer", "eer_more"}
    assert _eer(results)[0] == 0.025
    (more,) = results["eer_more"]
    assert (int(more.genuine), int(more.impostor)) == (40, 120)
    assert calls()["enroll"] == 40  # enrolled once for both scoring blocks
    assert Experiment(prefix, declaration).plan(cache) == {"eer.results": "cached",
                                                          "eer_more.results": "cached"}


def test_a_changed_view_makes_a_new_index_in_the_index_folder(tmp_path):
    # The index folder keeps each view's index; one made by the view's old code
    # must not serve the new code's data.
    prefix = tmp_path / "prefix"
    shutil.copytree(TOY / "prefix", prefix)
    declaration = {**toy(), "keep": ["preprocess_train.features"]}
    index = tmp_path / "index"
    first = Experiment(prefix, declaration).run(index_folder=index)
    assert len(first["preprocess_train.features"]) == 40
    code = prefix / "databases" / "toy" / "1.py"
    code.write_text(code.read_text().replace('for s in range(parameters["samples"])]',
                                             'for s in range(parameters["samples"] // 2)]'))
    again = Experiment(prefix, declaration).run(index_folder=index)
    assert len(again["preprocess_train.features"]) == 20
