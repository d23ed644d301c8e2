"""Plumber.save writes a Python file that rebuilds the pipeline; Plumber.load reads it back."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from numap import NuMap
from papyflow import Piper, Plumber, PlumberError, Worker
from papyflow.pipefile import load_file
from tests.pipeline_helpers import add, double, inc

BUILD = """
    import math, sys
    from numap import NuMap
    from papyflow import Piper, Plumber, Worker

    scale = 3

    def times(inbox, k=2):          # defined in __main__: saved by its source
        return inbox[0] * k

    def add_all(inbox):
        return sum(inbox)

    def make_offset(n):              # a closure over an argument
        def offset(inbox):
            return inbox[0] + n
        return offset

    nm = NuMap(worker_type="process", worker_num=2, name="shared")
    a = Piper(Worker((times, math.fsum), ((), ()), ({"k": 4}, {})), parallel=nm, name="a")
    b = Piper(lambda inbox: inbox[0] + scale, parallel=nm, name="b", branch=1, track=True)
    c = Piper(make_offset(10), name="c", branch=2)
    d = Piper(add_all, name="d", track=True)
    plumber = Plumber()
    plumber.add_pipes([(a, b, d), (a, c, d)])
"""

RUN = """
    plumber.start([range(10)])
    plumber.run()
    plumber.wait(60)
    print(sorted(plumber.stats["pipers_tracked"][d][0].items()))
    plumber.stop()
"""


def _python(*parts, cwd):
    script = cwd / "script.py"  # a real file: functions in __main__ have a source
    script.write_text("\n".join(textwrap.dedent(part) for part in parts))
    done = subprocess.run([sys.executable, str(script)], cwd=cwd,
                          capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_saved_pipeline_rebuilds_and_gives_the_same_results(tmp_path):
    original = _python(BUILD, RUN, "plumber.save('saved.py')\n", cwd=tmp_path)
    saved = (tmp_path / "saved.py").read_text()
    assert "def times(inbox, k=2):" in saved  # __main__ function by its source
    assert "from math import fsum" in saved  # importable function by import
    assert saved.count("NuMap(") == 1  # the shared NuMap stays shared
    assert "name='shared'" in saved and "branch=2" in saved and "track=True" in saved
    loaded = _python("""
        from papyflow import Plumber
        plumber = Plumber()
        plumber.load("saved.py")
        d = [p for p in plumber.pipers if p.name == "d"][0]
        b = [p for p in plumber.pipers if p.name == "b"][0]
        assert b.imap is [p for p in plumber.pipers if p.name == "a"][0].imap
        assert [p.name for p in plumber.postorder()] == ["a", "b", "c", "d"]
    """, RUN, cwd=tmp_path)
    assert loaded == original
    expected = [(i, (4 * i + 3) + (4 * i + 10)) for i in range(10)]
    assert eval(original) == expected


def test_save_and_load_in_process(tmp_path):
    with NuMap(worker_type="thread", worker_num=2) as nm:
        plumber = Plumber()
        a = Piper(Worker(inc, (5,)), parallel=nm, name="a", timeout=30, consume=1)
        b = Piper(double, name="b")
        c = Piper(add, name="c", track=True)
        plumber.add_pipe((a, b, c))
        plumber.graph.nodes[a]["xtra"]["color"] = "red"
        path = tmp_path / "pipe.py"
        plumber.save(path)
    again = Plumber()
    again.load(path)
    a2, _, c2 = again.postorder()
    assert (a2.name, a2.timeout, a2.worker.args) == ("a", 30, ((5,),))
    assert a2.imap.worker_type == "thread" and a2.imap.worker_num == 2
    assert again.graph.nodes[a2]["xtra"] == {"color": "red"}
    again.start([range(3)])
    again.run()
    again.wait(30)
    assert again.stats["pipers_tracked"][c2] == [{0: 10, 1: 12, 2: 14}]  # 2 * (i + 5)
    again.stop()
    with pytest.raises(PlumberError, match="load into an empty Plumber"):
        again.load(path)


def test_files_that_do_not_load_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from papyflow import Plumber\n\nplumber = Plumber()\nx = 1 / 0\n")
    with pytest.raises(PlumberError, match=r"bad.py, line 4: ZeroDivisionError"):
        Plumber().load(bad)
    broken = tmp_path / "broken.py"
    broken.write_text("plumber = (\n")
    with pytest.raises(PlumberError, match=r"broken.py, line 1"):
        Plumber().load(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(PlumberError, match="must bind 'plumber'"):
        Plumber().load(empty)
    with pytest.raises(PlumberError, match="not found"):
        Plumber().load(tmp_path / "missing.py")


def test_syntax_errors_name_the_file_and_line_where_they_are(tmp_path):
    (tmp_path / "helper_with_a_typo.py").write_text("x = 1\ny = (\n")
    imports = tmp_path / "imports.py"
    imports.write_text("from papyflow import Plumber\nplumber = Plumber()\n"
                       "import helper_with_a_typo\n")
    with pytest.raises(PlumberError, match=r"helper_with_a_typo.py, line 2: SyntaxError: .*"
                       r"\(reached from .*imports.py, line 3\)"):
        Plumber().load(imports)
    runs = tmp_path / "runs.py"
    runs.write_text("from papyflow import Plumber\nplumber = Plumber()\nx = 1\nexec('a b')\n")
    with pytest.raises(PlumberError, match=r"runs.py, line 4: SyntaxError in <string>, line 1"):
        Plumber().load(runs)


@pytest.mark.parametrize("exit_call", ["sys.exit()", "raise SystemExit(3)"])
def test_a_file_that_exits_while_loaded_is_a_plumber_error(tmp_path, exit_call):
    exits = tmp_path / "exits.py"
    exits.write_text(f"import sys\nfrom papyflow import Plumber\nplumber = Plumber()\n{exit_call}\n")
    with pytest.raises(PlumberError, match=r"exits.py, line 4: the file exits while it is loaded"):
        Plumber().load(exits)


def test_node_extras_that_are_not_literals_are_saved(tmp_path):
    plumber = Plumber()
    plumber.add_piper(Piper(inc, name="a"), xtra={"meta": types.SimpleNamespace(size=3)})
    path = tmp_path / "pipe.py"
    plumber.save(path)
    again = Plumber()
    again.load(path)
    assert again.graph.nodes[again.pipers[0]]["xtra"] == {"meta": types.SimpleNamespace(size=3)}


def test_saving_into_a_folder_that_does_not_exist_names_the_file(tmp_path):
    plumber = Plumber()
    plumber.add_piper(Piper(inc, name="a"))
    target = tmp_path / "nowhere" / "pipe.py"
    with pytest.raises(PlumberError, match=re.escape(f"cannot save the pipeline to {target}: the")):
        plumber.save(target)


def test_numap_settings_that_differ_from_the_defaults_are_saved(tmp_path):
    # None is a setting too: a NuMap without shared memory must not come back with it.
    nm = NuMap(worker_num=2, shared_memory=None, keep_freed=None, ordered=False, stride=7,
               name="plain", shared_arrays=False)
    plumber = Plumber()
    plumber.add_pipe((Piper(inc, parallel=nm, name="a"), Piper(double, name="b")))
    path = tmp_path / "pipe.py"
    plumber.save(path)
    again = Plumber()
    again.load(path)
    loaded = again.postorder()[0].imap
    assert loaded.settings == nm.settings
    saved = path.read_text()
    assert "shared_memory=None" in saved and "keep_freed=None" in saved
    assert "shared_arrays=False" in saved


def test_an_automatic_worker_count_is_saved_automatic(tmp_path, monkeypatch):
    # Saved on a 2-CPU machine, loaded on an 8-CPU one: 8 workers, not 2.
    import numap._map as numap_map

    monkeypatch.setattr(numap_map, "usable_cpus", lambda: 2)
    automatic, resized = NuMap(name="auto"), NuMap(name="resized")
    resized.resize(3)
    assert automatic.worker_num == 2 and automatic.settings["worker_num"] is None
    assert resized.settings["worker_num"] == 3
    plumber = Plumber()
    plumber.add_pipe((Piper(inc, parallel=automatic, name="a"),
                      Piper(double, parallel=resized, name="b")))
    path = tmp_path / "pipe.py"
    plumber.save(path)
    lines = [line for line in path.read_text().splitlines() if "= NuMap(" in line]
    assert [("worker_num" in line) for line in lines] == [False, True]
    monkeypatch.setattr(numap_map, "usable_cpus", lambda: 8)
    again = Plumber()
    again.load(path)
    loaded = {p.name: p.imap for p in again.postorder()}
    assert loaded["a"].worker_num == 8 and loaded["b"].worker_num == 3


def test_a_worker_function_named_inputs_is_not_read_as_the_inputs(tmp_path):
    # A pipeline file's ``inputs`` makes the inputs from the paths of --input: a
    # worker function of that name, saved by its source, must not be taken for it.
    _python("""
        from papyflow import Piper, Plumber

        def inputs(inbox):
            return inbox[0] + 1

        plumber = Plumber()
        plumber.add_piper(Piper(inputs, name="a"))
        plumber.save("saved.py")
    """, cwd=tmp_path)
    loaded = load_file(tmp_path / "saved.py")
    assert loaded.inputs is None
    assert loaded.plumber.pipers[0].worker((41,)) == 42


def test_a_file_reached_through_a_symlink_is_named_with_its_line(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "bad.py").write_text("from papyflow import Plumber\nplumber = Plumber()\nx = 1 / 0\n")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with pytest.raises(PlumberError, match=r"bad.py, line 3: ZeroDivisionError"):
        Plumber().load(tmp_path / "link" / "bad.py")


def test_a_numap_on_an_executor_is_refused_at_save_naming_it(tmp_path):
    # The executor cannot be written to the file: a file that would fail to load
    # is not written.
    with ThreadPoolExecutor(1) as executor:
        nm = NuMap(executor=executor, name="on_executor")
        plumber = Plumber()
        plumber.add_pipe((Piper(inc, parallel=nm, name="a"),))
        path = tmp_path / "pipe.py"
        with pytest.raises(PlumberError, match="on_executor.*executor"):
            plumber.save(path)
    assert not path.exists()
