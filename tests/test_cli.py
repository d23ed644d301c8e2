"""The ``papyflow`` command: run the examples, workers, progress, the summary, errors, Ctrl-C."""

from __future__ import annotations

import importlib.metadata
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from papyflow import cli
from tests.helpers import sigint_as_default

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# example file -> (items through every piper, a line the pipeline prints)
EXAMPLE_RUNS = {
    "pipeline_wordcount.py": (24, "doc23.txt"),
    "pipeline_fanout.py": (20000, "hot:"),
    "pipeline_shared_numap.py": (16, "walk  15:"),
}
EXAMPLE_PIPERS = {
    "pipeline_wordcount.py": ["files", "tokenize", "count", "report"],
    "pipeline_fanout.py": ["parse", "kelvin", "level", "combine", "alerts"],
    "pipeline_shared_numap.py": ["seeds", "simulate", "measure", "classify", "report"],
}


def _table(out: str) -> dict[str, list[str]]:
    """The summary table of ``out``: piper name -> [results, errors, seconds, items/s]."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == [
        "piper", "results", "errors", "seconds", "items/s"])
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("inputs taken:"):
            break
        name, *cells = line.split()
        rows[name] = cells
    return rows


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    """The environment for a subprocess that imports papyflow from this tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# A small pipeline: a linear piper, then a thread-parallel one; item 3 fails.
SMALL = """
    from numap import NuMap
    from papyflow import Piper, Plumber

    def parse(inbox):
        return int(inbox[0])

    def check(inbox):
        if inbox[0] == 3:
            raise ValueError("three is not allowed")
        return inbox[0] * 10

    pool = NuMap(worker_type="thread", worker_num=2, name="checkers")
    plumber = Plumber()
    plumber.add_pipe((Piper(parse, name="parse"), Piper(check, parallel=pool, name="check")))
    DATA = [range(8)]
"""


# -- the examples -------------------------------------------------------------------


@pytest.mark.parametrize("example", sorted(EXAMPLE_RUNS))
def test_example_runs_through_main(example, capsys):
    assert cli.main(["run", str(EXAMPLES / example), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    count, printed = EXAMPLE_RUNS[example]
    assert printed in out
    assert f"{example}: finished in" in out
    table = _table(out)
    assert list(table) == EXAMPLE_PIPERS[example]
    assert all(int(cells[0]) == count for cells in table.values())
    assert f"inputs taken: {count}" in out
    assert "items/s" not in err  # no progress bars


@pytest.mark.parametrize("example", sorted(EXAMPLE_RUNS))
def test_example_runs_with_python_dash_m(example):
    done = subprocess.run([sys.executable, "-m", "papyflow", "run", f"examples/{example}"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    count, printed = EXAMPLE_RUNS[example]
    assert printed in done.stdout
    assert all(int(cells[0]) == count for cells in _table(done.stdout).values())
    assert "items/s" not in done.stderr  # standard error is not a terminal: no bars


@pytest.mark.parametrize("example", sorted(EXAMPLE_RUNS))
def test_example_runs_as_a_script_and_takes_arguments(example):
    done = subprocess.run([sys.executable, str(EXAMPLES / example), "--workers", "1"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert EXAMPLE_RUNS[example][1] in done.stdout
    numaps = next(line for line in done.stdout.splitlines() if line.startswith("numaps: "))
    assert numaps.startswith("numaps: ") and "x2" not in numaps and "x1" in numaps


def test_wordcount_reads_the_files_given(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("One fish, two fish.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Red fish; blue fish; old fish.\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a text file\n", encoding="utf-8")
    example = str(EXAMPLES / "pipeline_wordcount.py")
    assert cli.main(["run", example, "--input", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "a.txt" in out and "b.txt" in out and "notes.md" not in out
    assert "fish 3" in out.splitlines()[1]
    assert _table(out)["count"][0] == "2"


def test_lines_of_input_files_without_an_inputs_function(tmp_path, capsys):
    source = _write(tmp_path, "small.py", SMALL)
    first = tmp_path / "first.txt"
    first.write_text("1\n2\n3\n4\n", encoding="utf-8")
    assert cli.main(["run", str(source), "-i", str(first), "--no-progress"]) == 0
    table = _table(capsys.readouterr().out)
    assert table["parse"][:2] == ["4", "0"] and table["check"][:2] == ["4", "1"]



def test_the_folder_of_the_file_is_on_sys_path_while_it_runs(tmp_path, capsys):
    # As with ``python FILE.py``: a module beside the file imports while the
    # pipeline runs, not only while the file is loaded.
    (tmp_path / "neighbour_at_run_time.py").write_text("def f(x):\n    return x + 1000\n")
    source = _write(tmp_path, "lazy.py", """
        from papyflow import Piper, Plumber

        def lazy(inbox):
            import neighbour_at_run_time
            return neighbour_at_run_time.f(inbox[0])

        plumber = Plumber()
        plumber.add_pipe((Piper(lazy, name="lazy", debug=True),))
        DATA = [range(3)]
    """)
    try:
        assert cli.main(["run", str(source), "--no-progress"]) == 0, capsys.readouterr().err
    finally:
        sys.modules.pop("neighbour_at_run_time", None)
    assert _table(capsys.readouterr().out)["lazy"][:2] == ["3", "0"]
    assert str(tmp_path) not in sys.path



def test_a_line_of_an_input_file_that_is_not_utf8_fails_alone(tmp_path, capsys):
    source = _write(tmp_path, "small.py", SMALL)
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"1\n2\n\xff4\n5\n6\n")
    assert cli.main(["run", str(source), "-i", str(lines), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert _table(out)["parse"][:2] == ["5", "0"]  # the other four lines went through
    assert "inputs taken: 5" in out and "items the inputs raised: 1" in out


def test_a_folder_given_to_a_file_without_inputs_is_named(tmp_path, capsys):
    source = _write(tmp_path, "small.py", SMALL)
    folder = tmp_path / "texts"
    folder.mkdir()
    assert cli.main(["run", str(source), "--input", str(folder)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "is a folder", str(folder))


# -- --workers ------------------------------------------------------------------------


def test_workers_apply_to_every_numap(capsys):
    example = str(EXAMPLES / "pipeline_wordcount.py")
    assert cli.main(["run", example, "--workers", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "numaps: readers (process x3), counters (process x3)" in out


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_worker_count_is_a_usage_error(value, capsys):
    example = str(EXAMPLES / "pipeline_fanout.py")
    assert cli.main(["run", example, "--workers", value]) == 2
    assert "--workers" in capsys.readouterr().err


# -- progress -------------------------------------------------------------------------


class _Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bars_on_a_terminal(tmp_path, monkeypatch, capsys):
    source = _write(tmp_path, "small.py", SMALL.replace(
        "return inbox[0] * 10", "print('item', inbox[0])\n        return inbox[0] * 10"))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["run", str(source)]) == 0
    bars = terminal.getvalue()
    assert "parse" in bars and "check" in bars and "items/s" in bars
    assert "errors=1" in bars  # check failed item 3
    out = capsys.readouterr().out
    assert "item 7" in out  # what the pipeline prints still reaches standard output
    assert "finished" in out


def test_no_progress_even_on_a_terminal(tmp_path, monkeypatch):
    source = _write(tmp_path, "small.py", SMALL)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["run", str(source), "--no-progress"]) == 0
    assert terminal.getvalue() == ""


# -- the summary ------------------------------------------------------------------------


def test_summary_table_counts_results_errors_and_rates(tmp_path, capsys):
    source = _write(tmp_path, "small.py", SMALL)
    assert cli.main(["run", str(source), "--no-progress"]) == 0  # failed items are not fatal
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"papyflow run: {source}: finished in ")
    table = _table(out)
    assert list(table) == ["parse", "check"]
    assert table["parse"][:2] == ["8", "0"] and table["check"][:2] == ["8", "1"]
    for _results, _errors, seconds, rate in table.values():
        assert float(seconds) >= 0
        assert rate == "-" or float(rate) > 0
    assert "inputs taken: 8; failed items: 1" in out
    assert lines[-2] == "numaps: checkers (thread x2)"
    # why items failed, one line for each Piper where some did: its first failure
    assert lines[-1] == "first failed item in check: check raised ValueError: three is not allowed"


FLAKY_INPUT = """
    from papyflow import Piper, Plumber
    from tests.helpers import Raising

    def double(inbox):
        return inbox[0] * 2

    plumber = Plumber()
    plumber.add_piper(Piper(double, name="double"))
    DATA = [Raising({every}, {end})]
"""


def test_summary_counts_the_items_an_input_raised(tmp_path, capsys):
    source = _write(tmp_path, "flaky.py", FLAKY_INPUT.format(every=2, end=10))
    assert cli.main(["run", str(source), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "inputs taken: 10; failed items: 0; items the inputs raised: 5" in out


def test_an_input_that_raises_without_end_fails_the_run_naming_it(tmp_path, capsys):
    source = _write(tmp_path, "broken.py", FLAKY_INPUT.format(every=0, end=None))
    assert cli.main(["run", str(source), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "input 0 raised 100 times in a row" in err and "connection lost" in err


# -- errors ----------------------------------------------------------------------------


def _one_error_line(err: str, *expected: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0]


def test_a_file_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nowhere.py"
    assert cli.main(["run", str(missing)]) == 2
    _one_error_line(capsys.readouterr().err, "papyflow run:", str(missing), "not found")


def test_a_file_with_a_syntax_error(tmp_path, capsys):
    source = _write(tmp_path, "broken.py", "x = 1\ndef (:\n")
    assert cli.main(["run", str(source)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "line 2")


def test_a_file_that_raises(tmp_path, capsys):
    source = _write(tmp_path, "raises.py", "import os\nraise RuntimeError('no pipeline today')\n")
    assert cli.main(["run", str(source)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "line 2", "no pipeline today")


def test_a_file_that_exits_while_loaded(tmp_path, capsys):
    source = _write(tmp_path, "exits.py", "import sys\n\nsys.exit(3)\n")
    for command in ("run", "graph"):
        assert cli.main([command, str(source)]) == 2
        _one_error_line(capsys.readouterr().err, str(source), "line 3", "exits")


def test_a_file_without_plumber(tmp_path, capsys):
    source = _write(tmp_path, "empty.py", "DATA = [range(3)]\n")
    for command in ("run", "graph"):
        assert cli.main([command, str(source)]) == 2
        _one_error_line(capsys.readouterr().err, str(source), "'plumber'")


def test_a_missing_input(tmp_path, capsys):
    source = _write(tmp_path, "small.py", SMALL)
    missing = tmp_path / "absent.txt"
    assert cli.main(["run", str(source), "--input", str(missing)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "input not found", str(missing))


def test_no_input_and_no_data(tmp_path, capsys):
    source = _write(tmp_path, "nodata.py", SMALL.replace("DATA = [range(8)]", ""))
    assert cli.main(["run", str(source)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "--input")


@pytest.mark.parametrize("data", ['"abc"', "42"])
def test_data_that_is_not_a_list_of_inputs_is_named(tmp_path, capsys, data):
    source = _write(tmp_path, "flat.py", SMALL.replace("DATA = [range(8)]", f"DATA = {data}"))
    assert cli.main(["run", str(source)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "DATA must hold one iterable")


def test_inputs_that_do_not_fit_the_pipeline(tmp_path, capsys):
    source = _write(tmp_path, "two.py", SMALL.replace("DATA = [range(8)]",
                                                      "DATA = [range(8), range(8)]"))
    assert cli.main(["run", str(source)]) == 2
    _one_error_line(capsys.readouterr().err, str(source), "1 input pipers")


# An input that raises, read by a linear piper: the run itself fails. (Read by a
# parallel piper, the NuMap would fail that one item and go on.)
FAILING_INPUT = """
    from papyflow import Piper, Plumber

    def broken_input(inbox):
        if inbox[0] == 2:
            raise OSError("the disk went away")
        return inbox[0]

    def passing(inbox):
        return inbox[0]

    plumber = Plumber()
    # debug=True: a failed item stops the run instead of flowing on as a PiperError
    plumber.add_pipe((Piper(broken_input, name="first", debug=True),
                      Piper(passing, name="second")))
    DATA = lambda: [range(5)]
"""


def test_a_pipeline_that_fails_while_running(tmp_path, capsys):
    source = _write(tmp_path, "fails.py", FAILING_INPUT)
    assert cli.main(["run", str(source), "--no-progress"]) == 2
    out, err = capsys.readouterr()
    _one_error_line(err, str(source), "the pipeline failed", "the disk went away")
    assert "failed in" in out  # the summary is printed all the same


def test_a_failed_run_is_one_line_from_python_dash_m_too(tmp_path):
    # There the Plumber's log of the failure would print its traceback.
    source = _write(tmp_path, "fails.py", FAILING_INPUT)
    done = subprocess.run([sys.executable, "-m", "papyflow", "run", str(source)],
                          env=_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    _one_error_line(done.stderr, str(source), "the disk went away")


def test_debug_shows_the_traceback(tmp_path, capsys):
    source = _write(tmp_path, "fails.py", FAILING_INPUT)
    assert cli.main(["run", str(source), "--no-progress", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "broken_input" in err
    assert err.strip().splitlines()[-1].startswith("papyflow run: ")


def test_usage(capsys):
    assert cli.main([]) == 2
    assert "run" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "graph" in capsys.readouterr().out
    assert cli.main(["run"]) == 2
    assert cli.main(["fly", "x.py"]) == 2


def test_the_console_script_is_registered():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert any(s.name == "papyflow" and s.value == "papyflow.cli:main" for s in scripts)


def test_python_dash_m_reports_errors_with_exit_code_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "papyflow", "run", str(tmp_path / "no.py")],
                          env=_env(), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    _one_error_line(done.stderr, "no.py")


# -- Ctrl-C ------------------------------------------------------------------------------

ENDLESS = """
    import itertools
    import time

    from numap import NuMap
    from papyflow import Piper, Plumber

    def nap(inbox):
        time.sleep(0.02)
        return inbox[0]

    def keep(inbox):
        return inbox[0]

    pool = NuMap(worker_type="process", worker_num=2, name="nappers")
    plumber = Plumber()
    plumber.add_pipe((Piper(nap, parallel=pool, name="nap"), Piper(keep, name="keep")))
    DATA = [itertools.count()]
"""


def test_ctrl_c_stops_cleanly_and_exits_130(tmp_path):
    source = _write(tmp_path, "endless.py", ENDLESS)
    child = subprocess.Popen([sys.executable, "-m", "papyflow", "run", str(source)],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=sigint_as_default)  # noqa: PLW1509
    try:
        parent = psutil.Process(child.pid)
        deadline = time.monotonic() + 30
        while len(parent.children(recursive=True)) < 2:  # the two worker processes
            assert child.poll() is None, "the pipeline ended by itself"
            assert time.monotonic() < deadline, "no worker process started"
            time.sleep(0.05)
        workers = parent.children(recursive=True)
        time.sleep(0.5)  # let items flow
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert "interrupted" in out.splitlines()[0]
    table = _table(out)
    taken = int(out.split("inputs taken: ")[1].split(";")[0])
    assert taken > 0
    # Every input taken went all the way through.
    assert int(table["nap"][0]) == int(table["keep"][0]) == taken
    assert "Traceback" not in err
    deadline = time.monotonic() + 5
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p.pid for p in workers if _running(p)], "worker processes left behind"


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
