"""The bundled demo and the examples the docs point to run and print what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from numap import demo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_prints_the_sensor_table(capsys):
    assert demo.main(["numap-demo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["sensor", "readings", "mean", "stdev", "min", "max"]
    rows = {line.split()[0]: line.split()[1:] for line in out[1:6]}
    assert sorted(rows) == ["east", "north", "roof", "south", "west"]
    assert sum(int(r[0]) for r in rows.values()) == 6000 - 17
    assert "17 lines did not parse" in out[6]


def test_demo_names_a_missing_file(capsys, tmp_path):
    assert demo.main(["numap-demo", str(tmp_path / "none.csv")]) == 2
    assert "none.csv" in capsys.readouterr().err


@pytest.mark.parametrize("script, expected", [
    ("numap_basics.py", "first five of an endless input: [0, 1, 2, 3, 4]"),
    ("numap_chaining.py", "chained across NuMaps: ['0x1', '0x2', '0x3']"),
    ("numap_errors.py", "WorkerLostError"),
    ("numap_remote.py", "worker processes used, local and remote: 3"),
])
def test_example_runs(script, expected):
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
