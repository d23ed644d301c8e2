"""Pictures of a pipeline: DOT text (nodes, edges, a cluster per NuMap), SVG and PNG files."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from numap import NuMap
from papyflow import Dagger, Piper, Plumber, cli
from papyflow.graph import draw, layers, to_dot
from tests.pipeline_helpers import add, double, inc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fan() -> tuple[Plumber, dict[str, Piper]]:
    """src -> (left on threads, right on processes) -> join -> out, plus a shared NuMap."""
    threads = NuMap(worker_type="thread", worker_num=3, name="threads")
    processes = NuMap(worker_type="process", worker_num=2, name="procs")
    pipers = {
        "src": Piper(inc, name="src"),
        # Added first, but branch 2: drawn to the right of "left".
        "right": Piper(double, parallel=processes, name="right", branch=2),
        "left": Piper(double, parallel=threads, name="left", branch=1),
        "join": Piper(add, parallel=processes, name="join"),
        "out": Piper(inc, name="out"),
    }
    plumber = Plumber()
    plumber.add_pipe((pipers["src"], pipers["right"], pipers["join"], pipers["out"]))
    plumber.add_pipe((pipers["src"], pipers["left"], pipers["join"]))
    return plumber, pipers


def _nodes(dot: str) -> dict[str, str]:
    """DOT node id -> label."""
    return dict(re.findall(r'^  (p\d+) \[label="([^"]*)"', dot, re.MULTILINE))


def _clusters(dot: str) -> dict[str, list[str]]:
    """Cluster label -> the node ids it holds."""
    found = {}
    for body in re.findall(r"subgraph cluster_numap\d+ \{(.*?)\n  \}", dot, re.DOTALL):
        label = re.search(r'label="([^"]*)"', body).group(1)
        members = body.strip().splitlines()[-1].strip().rstrip(";").split("; ")
        found[label] = members
    return found


def test_dot_names_every_piper_in_the_dagger_order():
    plumber, _ = _fan()
    dot = to_dot(plumber)
    assert dot.startswith("// papyflow pipeline") and dot.rstrip().endswith("}")
    assert "digraph pipeline {" in dot
    assert list(_nodes(dot).values()) == ["src", "left", "right", "join", "out"]
    assert [p.name for p in plumber.postorder()] == ["src", "left", "right", "join", "out"]


def test_dot_edges_follow_the_data():
    plumber, _ = _fan()
    dot = to_dot(plumber)
    ids = {label: node for node, label in _nodes(dot).items()}
    edges = re.findall(r"^  (p\d+) -> (p\d+);$", dot, re.MULTILINE)
    named = [(_nodes(dot)[a], _nodes(dot)[b]) for a, b in edges]
    assert named == [("src", "left"), ("src", "right"), ("left", "join"), ("right", "join"),
                     ("join", "out")]
    assert (ids["src"], ids["left"]) in edges


def test_dot_has_one_cluster_per_numap_naming_its_workers():
    plumber, _ = _fan()
    dot = to_dot(plumber)
    ids = {label: node for node, label in _nodes(dot).items()}
    clusters = _clusters(dot)
    assert clusters == {"threads: thread x3": [ids["left"]],
                        "procs: process x2": [ids["right"], ids["join"]]}
    # Linear pipers are in no cluster, and the pipers of one NuMap share its colour.
    colours = dict(re.findall(r'^  (p\d+) \[.*fillcolor="(#[0-9a-f]{6})"', dot, re.MULTILINE))
    assert ids["src"] not in colours and ids["out"] not in colours
    assert colours[ids["right"]] == colours[ids["join"]] != colours[ids["left"]]


def test_dot_quotes_names_and_takes_a_title():
    plumber = Plumber()
    plumber.add_pipe((Piper(inc, name='say "hi"'), Piper(inc, name="back\\slash")))
    dot = to_dot(plumber, title="a title")
    assert r'label="say \"hi\""' in dot
    assert r'label="back\\slash"' in dot
    assert 'label="a title"' in dot


def test_layers_put_a_piper_below_the_deepest_piper_it_reads():
    plumber, p = _fan()
    shortcut = Piper(inc, name="shortcut")
    plumber.add_pipe((p["src"], shortcut, p["out"]))  # out reads join and shortcut
    assert [[x.name for x in row] for row in layers(plumber)] == [
        ["src"], ["left", "right", "shortcut"], ["join"], ["out"]]


def test_dot_puts_each_layer_on_one_rank():
    # As in the drawn picture: a second input that only the last Piper reads is
    # drawn at the top with the first input, not beside the Piper above its reader.
    plumber, p = _fan()
    late = Piper(inc, name="late_input")
    plumber.add_pipe((late, p["out"]))
    dot = to_dot(plumber)
    labels = _nodes(dot)
    ranks = [[labels[n] for n in re.findall(r"p\d+", body)]
             for body in re.findall(r"^  \{rank=same; (.*)\}$", dot, re.MULTILINE)]
    assert ranks == [[x.name for x in row] for row in layers(plumber)]
    assert ranks[0] == ["src", "late_input"]
    assert "newrank=true" in dot  # ranks hold across the NuMap clusters


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_draws_the_layers_of_the_dot_text(tmp_path):
    plumber, p = _fan()
    plumber.add_pipe((Piper(inc, name="late_input"), p["out"]))
    done = subprocess.run(["dot", "-Tplain"], input=to_dot(plumber), capture_output=True,
                          text=True, timeout=60, check=True)
    height = {line.split()[6]: float(line.split()[3])
              for line in done.stdout.splitlines() if line.startswith("node ")}
    assert height["late_input"] == height["src"] > height["left"] == height["right"]
    assert height["right"] > height["join"] > height["out"]


def test_the_shared_numap_example_is_one_cluster():
    from papyflow.pipefile import load_file

    dot = to_dot(load_file(EXAMPLES / "pipeline_shared_numap.py").plumber)
    clusters = _clusters(dot)
    assert list(clusters) == ["pool: process x2"]
    labels = _nodes(dot)
    assert [labels[n] for n in clusters["pool: process x2"]] == [
        "simulate", "measure", "classify"]


# -- drawn pictures ---------------------------------------------------------------------


def test_svg_is_drawn_and_the_same_every_time(tmp_path):
    plumber, _ = _fan()
    first = draw(plumber, tmp_path / "fan.svg", title="fan")
    again = draw(plumber, tmp_path / "again.svg", title="fan")
    text = first.read_text(encoding="utf-8")
    assert first.stat().st_size > 1000
    assert "<svg" in text and text.rstrip().endswith("</svg>")
    assert text == again.read_text(encoding="utf-8")


def test_png_is_a_valid_png(tmp_path):
    plumber, _ = _fan()
    path = draw(plumber, tmp_path / "fan.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    length, kind, width, height = struct.unpack(">I4sII", data[8:24])
    assert (length, kind) == (13, b"IHDR") and width > 100 and height > 100
    assert data.endswith(b"IEND\xaeB`\x82")


def test_names_with_dollar_signs_are_drawn_as_they_are(tmp_path):
    # Not as matplotlib's mathtext: "$...$" would be typeset, "$\\frac$" would not draw.
    pool = NuMap(worker_type="thread", worker_num=1, name="pool $x$")
    plumber = Plumber()
    plumber.add_pipe((Piper(inc, parallel=pool, name="price $usd$"),
                      Piper(double, name=r"bad $\frac$")))
    text = draw(plumber, tmp_path / "dollars.svg", title="$title$").read_text(encoding="utf-8")
    for name in ("price $usd$", r"bad $\frac$", "pool $x$: thread x1", "$title$"):
        assert f"<!-- {name} -->" in text


def test_draw_refuses_other_formats_and_empty_pipelines(tmp_path):
    plumber, _ = _fan()
    with pytest.raises(ValueError, match=r"\.svg, \.png"):
        draw(plumber, tmp_path / "fan.jpg")
    with pytest.raises(ValueError, match="no piper"):
        draw(Dagger(), tmp_path / "empty.png")


def test_without_matplotlib_the_extra_is_named(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails
    plumber, _ = _fan()
    with pytest.raises(ImportError, match=r"papyflow\[graph\]"):
        draw(plumber, tmp_path / "fan.svg")
    example = str(EXAMPLES / "pipeline_fanout.py")
    assert cli.main(["graph", example, "-o", str(tmp_path / "fan.png")]) == 2
    err = capsys.readouterr().err
    assert "papyflow[graph]" in err and len(err.strip().splitlines()) == 1
    # DOT needs nothing more.
    assert cli.main(["graph", example, "-o", str(tmp_path / "fan.dot")]) == 0


# -- papyflow graph -----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".dot", ".svg", ".png"])
def test_graph_command_writes_each_format(tmp_path, suffix, capsys):
    out = tmp_path / f"wordcount{suffix}"
    example = str(EXAMPLES / "pipeline_wordcount.py")
    assert cli.main(["graph", example, "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert str(out) in capsys.readouterr().err
    if suffix == ".dot":
        text = out.read_text(encoding="utf-8")
        assert 'label="readers: process x2"' in text and 'label="counters: process x2"' in text
        assert 'label="pipeline_wordcount.py"' in text
    elif suffix == ".png":
        assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_graph_command_prints_dot_without_output(capsys):
    assert cli.main(["graph", str(EXAMPLES / "pipeline_fanout.py")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("// papyflow pipeline")
    assert list(_nodes(out).values()) == ["parse", "kelvin", "level", "combine", "alerts"]


def test_graph_command_refuses_an_unknown_format(tmp_path, capsys):
    example = str(EXAMPLES / "pipeline_fanout.py")
    assert cli.main(["graph", example, "-o", str(tmp_path / "fan.gif")]) == 2
    assert ".dot, .svg, .png" in capsys.readouterr().err
