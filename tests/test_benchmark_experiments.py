"""The experiment benchmark's pieces: the scaled copy and the hand-written loop it compares with."""

from __future__ import annotations

import json

import pytest

from benchmarks.experiments import TOY, one, scaled_copy, serial
from papyflow.blocks.experiment import Experiment

pytestmark = pytest.mark.timeout(120)


def test_the_hand_written_loop_computes_what_the_experiment_does(tmp_path):
    result = serial(str(TOY / "prefix"), 0)
    assert round(result["eer"], 9) == 0.025
    prefix, declaration = scaled_copy(tmp_path, 2, 5)
    ran = one(str(prefix), str(declaration), 0, None, str(tmp_path))
    assert ran["eer"] == pytest.approx(serial(str(prefix), 5)["eer"], abs=1e-12)
    assert ran["heavy"] > 0


def test_the_scaled_copy_is_the_toy_at_a_larger_size(tmp_path):
    prefix, declaration = scaled_copy(tmp_path, 3, 7)
    sets = json.loads((prefix / "databases/toy/1.json").read_text())["protocols"][0]["sets"]
    assert [(s["parameters"]["clients"], s["parameters"]["samples"]) for s in sets] == \
        [(12, 30), (12, 30)]
    experiment = Experiment(prefix, declaration)
    assert experiment.valid, experiment.errors
    assert experiment.parameters["preprocess_test"] == {"layers": 7}
