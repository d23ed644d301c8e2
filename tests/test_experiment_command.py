"""``papyflow experiment run`` on the bundled example, and experiments saved as pipeline files."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from papyflow import Plumber
from papyflow.blocks.experiment import Experiment, ExperimentPlumber
from papyflow.blocks.pipers import database_inputs
from papyflow.blocks.run_config import RunConfig, RunConfigError
from papyflow.cli import main
from tests.blocks_helpers import declare

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "examples" / "toy"
PREFIX = TOY / "prefix"
DECLARATION = TOY / "experiment.json"


def _run(capsys, *args):
    code = main(["experiment", "run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_bundled_experiment_runs_then_comes_from_the_cache(tmp_path, capsys):
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--cache", cache,
                          "--index-folder", tmp_path)
    assert code == 0, err
    assert "5 block(s) to run: eer, enroll, preprocess_test, preprocess_train, score; " \
           "0 from the cache" in out
    assert "eer: eer=0.025 genuine=40 impostor=120" in out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:] if line.strip()}
    assert rows["score"] == "40" and rows["enroll"] == "4" and rows["eer"] == "1"

    code, out, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--cache", cache,
                          "--index-folder", tmp_path)
    assert code == 0, err
    assert "0 block(s) to run; 1 from the cache: eer" in out
    assert "eer: eer=0.025 genuine=40 impostor=120" in out


@pytest.mark.slow
def test_the_bundled_experiment_on_two_workers_in_a_fresh_interpreter(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "papyflow", "experiment", "run", str(DECLARATION), "--prefix",
         str(PREFIX), "--cache", str(tmp_path / "cache"), "--workers", "2"],
        capture_output=True, text=True, timeout=100, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "eer: eer=0.025 genuine=40 impostor=120" in done.stdout
    assert "numaps: blocks (process x2)" in done.stdout


def test_without_a_cache_nothing_is_cached(tmp_path, capsys):
    code, out, _ = _run(capsys, DECLARATION, "--prefix", PREFIX, "--index-folder", tmp_path)
    assert code == 0
    assert "(no cache)" in out
    assert not list(tmp_path.rglob("*.data"))


def test_an_invalid_declaration_lists_its_errors(tmp_path, capsys):
    declaration = json.loads(DECLARATION.read_text())
    declaration["blocks"]["preprocess_test"]["parameters"] = {"layers": -1}
    del declaration["blocks"]["score"]["inputs"]["model"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(declaration))
    code, out, err = _run(capsys, path, "--prefix", PREFIX)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert any("blocks.preprocess_test.parameters.layers" in line and "'preprocess_test'" in line
               for line in lines)
    assert any("blocks.score.inputs.model: not connected" in line for line in lines)
    assert all(line.startswith(f"papyflow experiment: {path}") for line in lines)


def test_a_missing_prefix_or_file_is_a_clear_error(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "none.json", "--prefix", PREFIX)
    assert code == 2 and "cannot read the declaration" in err
    code, _, err = _run(capsys, DECLARATION, "--prefix", tmp_path / "empty")
    assert code == 2 and "datasets.train.database" in err
    assert main(["experiment", "run", str(DECLARATION)]) == 2  # --prefix is required
    assert "--prefix" in capsys.readouterr().err


def test_a_failing_block_exits_2_naming_block_method_and_index(tmp_path, capsys):
    prefix = tmp_path / "prefix"
    shutil.copytree(PREFIX, prefix)
    code_file = prefix / "algorithms" / "toy" / "score" / "1.py"
    code_file.write_text(code_file.read_text().replace(
        '        probe = inputs["probe"].data.value\n',
        '        probe = inputs["probe"].data.value\n'
        '        if inputs["probe"].data_index == 12:\n'
        '            raise ValueError("probe 12 is unreadable")\n'))
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, DECLARATION, "--prefix", prefix, "--cache", cache,
                          "--index-folder", tmp_path)
    assert code == 2
    first, *trace = err.splitlines()
    assert f"{DECLARATION}: block 'score' failed in process() at data indices 12..12: " \
        in first
    assert first.endswith("raised ValueError: probe 12 is unreadable")
    assert trace[0] == "  Traceback (most recent call last):"
    assert 'raise ValueError("probe 12 is unreadable")' in err
    assert "score        " in out  # the summary is printed all the same
    code, out, err = _run(capsys, DECLARATION, "--prefix", prefix, "--cache", cache,
                          "--index-folder", tmp_path)
    assert "3 block(s) to run: eer, score" not in out
    assert "2 block(s) to run: eer, score; 2 from the cache: enroll, preprocess_test" in out


# -- saving ---------------------------------------------------------------------------------


def test_an_experiment_saves_as_a_pipeline_file_that_runs(tmp_path, capsys):
    cache = tmp_path / "cache"
    plumber, _ = Experiment(PREFIX, DECLARATION).build(index_folder=tmp_path, cache=cache)
    assert isinstance(plumber, ExperimentPlumber)
    path = tmp_path / "experiment_pipeline.py"
    plumber.save(path)
    text = path.read_text()
    assert "Experiment(PREFIX, DECLARATION)" in text
    compile(text, str(path), "exec")

    assert main(["run", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "eer" in out
    # that run filled the cache: the saved file now plans from it
    assert Experiment(PREFIX, DECLARATION).plan(cache) == {"eer.results": "cached"}

    loaded = Plumber()
    loaded.load(path)
    assert [p.name for p in loaded.get_outputs()] == ["eer"]
    loaded.start(database_inputs(loaded))
    loaded.run()
    loaded.wait(timeout=60)
    loaded.stop()
    assert loaded.stats["pipers"][loaded.get_outputs()[0]]["results"] == 1


SCALE = {
    "schema_version": 2, "language": "python", "api_version": 2, "type": "sequential",
    "splittable": True,
    "groups": [{"name": "main", "inputs": {"features": {"type": "toy/features/1"}},
                "outputs": {"features": {"type": "toy/features/1"}}}],
    "parameters": {"low": {"type": "float64", "default": 0},
                   "high": {"type": "float64", "default": 1},
                   "note": {"type": "string", "default": ""}},
}

# Writes the parameters it got (as JSON: NaN and Infinity too) to $SCALE_SEEN.
SCALE_CODE = """\
import json
import os


class Algorithm:
    def setup(self, parameters):
        with open(os.environ["SCALE_SEEN"], "w") as stream:
            json.dump({key: value.item() if hasattr(value, "item") else value
                       for key, value in parameters.items()}, stream)
        return True

    def process(self, inputs, data_loaders, outputs):
        outputs["features"].write(inputs["features"].data)
        return True
"""


def test_a_saved_experiment_gives_back_nan_infinities_and_any_text(
        tmp_path, capsys, monkeypatch):
    # NaN and infinities are read from a declaration file (as json reads them),
    # so the saved file must give them back: repr() wrote ``nan``, a NameError.
    prefix = tmp_path / "prefix"
    shutil.copytree(PREFIX, prefix)
    declare(prefix, "algorithms", "toy/scale/1", SCALE, SCALE_CODE)
    declaration = json.loads(DECLARATION.read_text())
    declaration["blocks"]["scale"] = {
        "algorithm": "toy/scale/1",
        "parameters": {"low": float("nan"), "high": float("-inf"), "note": "it'''s \\ \"x\""},
        "inputs": {"features": "preprocess_test.features"}}
    declaration["blocks"]["score"]["inputs"]["probe"] = "scale.features"
    plumber, _ = Experiment(prefix, declaration).build(index_folder=tmp_path)
    path = tmp_path / "experiment_pipeline.py"
    plumber.save(path)
    seen = tmp_path / "seen.json"
    monkeypatch.setenv("SCALE_SEEN", str(seen))
    assert main(["run", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    parameters = json.loads(seen.read_text())
    assert math.isnan(parameters["low"])
    assert parameters["high"] == float("-inf")
    assert parameters["note"] == "it'''s \\ \"x\""


def test_parameters_set_on_the_command_line(tmp_path, capsys):
    cache = tmp_path / "cache"
    code, out, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--cache", cache,
                          "--index-folder", tmp_path)
    assert code == 0, err
    code, out, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--cache", cache,
                          "--index-folder", tmp_path, "--set", "preprocess_test.layers=3")
    assert code == 0, err
    assert "3 block(s) to run: eer, preprocess_test, score; 1 from the cache: enroll" in out


@pytest.mark.parametrize(("pair", "message"), [
    ("preprocess_test.layers=-1", "blocks.preprocess_test.parameters.layers"),
    ("preprocess_test.layers=2.5", "blocks.preprocess_test.parameters.layers"),
    ("nothing.layers=3", "parameters.nothing: no block 'nothing'"),
    ("layers=3", "expected BLOCK.PARAMETER=VALUE"),
    ("preprocess_test.layers", "preprocess_test.layers"),
    ("preprocess_test.layers=1e400",
     "'preprocess_test.layers=1e400': 1e400 is beyond the range of a float"),
])
def test_bad_parameters_on_the_command_line_name_what_is_wrong(tmp_path, capsys, pair, message):
    code, _, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--set", pair)
    assert code == 2
    assert message in err


# -- run configurations (--config, --save-config) ---------------------------------------


def test_a_run_configuration_is_saved_then_runs_the_same_again(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, DECLARATION, "--config", TOY / "run.yaml", "--cache", "cache",
                          "--index-folder", "idx", "--set", "preprocess_test.layers=2",
                          "--save-config", "runs/run.yaml", "--no-progress")
    assert code == 0, err
    assert "5 block(s) to run" in out
    saved = RunConfig.read(tmp_path / "runs" / "run.yaml")
    # the file's values, the options given over them, --set over its parameters
    assert saved.prefix.resolve() == PREFIX.resolve()
    assert saved.cache.resolve() == (tmp_path / "cache").resolve()
    assert saved.index_folder.resolve() == (tmp_path / "idx").resolve()
    assert (saved.workers, saved.progress) == (None, False)
    assert saved.parameters == {"preprocess_test": {"layers": 2}}
    text = (tmp_path / "runs" / "run.yaml").read_text()
    assert "cache: ../cache" in text  # relative to the file's folder

    # From another folder, the saved file alone runs the same: everything cached.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = _run(capsys, DECLARATION, "--config", tmp_path / "runs" / "run.yaml")
    assert code == 0, err
    assert "0 block(s) to run; 1 from the cache: eer" in out
    # --set over the file's parameters: the changed block and those after it run
    code, out, err = _run(capsys, DECLARATION, "--config", tmp_path / "runs" / "run.yaml",
                          "--set", "preprocess_test.layers=1")
    assert code == 0, err
    assert "3 block(s) to run: eer, preprocess_test, score; 1 from the cache: enroll" in out


def test_the_bundled_run_configuration_sets_its_parameter(tmp_path, capsys):
    plain = _run(capsys, DECLARATION, "--prefix", PREFIX, "--index-folder", tmp_path)
    configured = _run(capsys, DECLARATION, "--config", TOY / "run.yaml",
                      "--index-folder", tmp_path)
    assert plain[0] == configured[0] == 0, plain[2] + configured[2]
    results = [line for line in plain[1].splitlines() if line.startswith("eer: ")]
    assert results == ["eer: eer=0.025 genuine=40 impostor=120"]
    assert "eer: eer=0.420833 genuine=40 impostor=120" in configured[1]  # layers: 1


@pytest.mark.parametrize(("text", "message"), [
    ("workers: 0\n", "RunConfig.workers must be an int of 1 or more"),
    ("workers: two\n", "RunConfig.workers must be an int, got 'two'"),
    ("prefix: 3\n", "RunConfig.prefix must be a str (a path), got 3"),
    ("progress: maybe\n", "RunConfig.progress must be true or false"),
    ("cache_dir: x\n", "RunConfig has no field(s) 'cache_dir'"),
    ("parameters: {score: 3}\n", "RunConfig.parameters['score'] must be a mapping"),
    ("parameters: [1]\n", "RunConfig.parameters must be a mapping"),
    ("prefix: [\n", "run.yaml"),
])
def test_a_bad_run_configuration_names_the_file_and_the_field(tmp_path, capsys, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, out, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--config", config,
                          "--save-config", tmp_path / "saved.yaml")
    assert code == 2
    assert message in err and "run.yaml" in err, err
    assert "block(s) to run" not in out
    assert not (tmp_path / "saved.yaml").exists()


def test_without_a_prefix_or_with_a_missing_config_the_command_says_so(tmp_path, capsys):
    code, _, err = _run(capsys, DECLARATION)
    assert code == 2 and "no prefix: give --prefix DIR, or prefix in the --config file" in err
    code, _, err = _run(capsys, DECLARATION, "--config", tmp_path / "absent.yaml")
    assert code == 2 and "absent.yaml" in err


def test_a_run_configuration_is_not_saved_for_an_experiment_that_does_not_load(tmp_path,
                                                                               capsys):
    code, _, err = _run(capsys, DECLARATION, "--prefix", PREFIX, "--set", "nothing.layers=3",
                        "--save-config", tmp_path / "run.yaml")
    assert code == 2 and "parameters.nothing: no block 'nothing'" in err
    assert not (tmp_path / "run.yaml").exists()


def test_run_config_merges_parameters_and_keeps_paths_relative_to_its_file(tmp_path):
    config = RunConfig(prefix=tmp_path / "prefix", cache=tmp_path / "out" / "cache",
                       parameters={"a": {"x": 1, "y": "text"}})
    merged = config.with_parameters({"a": {"x": 2.5}, "b": {"z": None}})
    assert merged.parameters == {"a": {"x": 2.5, "y": "text"}, "b": {"z": None}}
    assert config.parameters == {"a": {"x": 1, "y": "text"}}  # the original is unchanged
    merged.write(tmp_path / "out" / "run.yaml")
    text = (tmp_path / "out" / "run.yaml").read_text()
    assert "prefix: ../prefix" in text and "cache: cache" in text
    moved = tmp_path / "moved"
    (tmp_path / "out").rename(moved)  # the file's folder moves: its cache with it
    back = RunConfig.read(moved / "run.yaml")
    assert back.cache == moved / "cache" and back.parameters == merged.parameters
    with pytest.raises(RunConfigError, match="workers must be an int of 1 or more"):
        RunConfig(workers=True)
    with pytest.raises(RunConfigError, match=r"RunConfig.parameters\['a'\]: a parameter name"):
        RunConfig(parameters={"a": {3: 1}})


def test_run_config_paths_through_symbolic_links_are_relative_to_the_real_folder(tmp_path):
    # A folder of saved runs that is a link elsewhere: '..' from it is the parent of the
    # folder linked to, so paths written relative to the link's spelling led astray.
    (tmp_path / "work" / "prefix").mkdir(parents=True)
    (tmp_path / "disk" / "runs").mkdir(parents=True)
    (tmp_path / "work" / "runs").symlink_to(tmp_path / "disk" / "runs")
    config = RunConfig(prefix=tmp_path / "work" / "prefix", cache=tmp_path / "work" / "cache")
    config.write(tmp_path / "work" / "runs" / "run.yaml")
    back = RunConfig.read(tmp_path / "work" / "runs" / "run.yaml")
    assert back.prefix.resolve() == (tmp_path / "work" / "prefix").resolve()
    assert back.cache.resolve() == (tmp_path / "work" / "cache").resolve()

    # A link to the file from another folder: written through it, read directly, and back.
    (tmp_path / "profiles").mkdir()
    (tmp_path / "current.yaml").symlink_to(tmp_path / "profiles" / "fast.yaml")
    config.write(tmp_path / "current.yaml")
    assert (tmp_path / "current.yaml").is_symlink()
    for path in (tmp_path / "profiles" / "fast.yaml", tmp_path / "current.yaml"):
        back = RunConfig.read(path)
        assert back.prefix.resolve() == (tmp_path / "work" / "prefix").resolve(), path


def test_set_replaces_a_parameter_the_run_configuration_gives_as_a_mapping(tmp_path, capsys):
    # Before, the merge refused to replace a mapping: NestedOverwriteError, advising
    # allow_intermediate_overwrite=True, where --set is to win over the file.
    config = RunConfig(parameters={"a": {"x": {"y": 1}, "z": 2}})
    assert config.with_parameters({"a": {"x": 3}}).parameters == {"a": {"x": 3, "z": 2}}
    path = tmp_path / "run.yaml"
    path.write_text(f"prefix: {json.dumps(str(PREFIX))}\n"
                    "parameters:\n  preprocess_test:\n    layers: {count: 1}\n")
    code, out, err = _run(capsys, DECLARATION, "--config", path, "--index-folder", tmp_path,
                          "--set", "preprocess_test.layers=1", "--no-progress")
    assert code == 0, err
    assert "eer: eer=0.420833 genuine=40 impostor=120" in out  # layers: 1
