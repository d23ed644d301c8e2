"""papyflow.util.script: scripts as worker functions, their errors and templates."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from papyflow.util.script import (
    LANGS,
    ScriptError,
    ScriptOutputError,
    ScriptTimeoutError,
    get_config,
    script,
    write_template,
)

UPPER = {
    "python": "import sys; sys.stdout.write(sys.stdin.read().upper())",
    "bash": "tr a-z A-Z",
}


def test_get_config_has_every_key_and_a_fresh_dict():
    for lang in LANGS:
        cfg = get_config(lang)
        assert cfg["lang"] == lang and cfg["input"] == "stdin" and cfg["params"] == {}
        assert cfg["script"] is None and cfg["code"] is None
    assert get_config()["executable"] == sys.executable
    assert get_config("bash")["executable"] == "bash"
    get_config()["params"]["x"] = 1
    assert get_config()["params"] == {}
    with pytest.raises(ValueError, match="lang must be one of"):
        get_config("perl")


@pytest.mark.parametrize("lang", LANGS)
def test_inline_code_reads_stdin(lang):
    cfg = get_config(lang)
    cfg["code"] = UPPER[lang]
    assert script(("hello world",), cfg) == "HELLO WORLD"
    assert script((b"bytes in",), cfg) == "BYTES IN"
    assert script((None,), cfg) == ""


@pytest.mark.parametrize("lang", LANGS)
def test_templates_run_as_written_with_both_inputs(lang, tmp_path):
    path = tmp_path / f"template.{'py' if lang == 'python' else 'sh'}"
    write_template(path, lang)
    assert "PAPYFLOW_PARAMS" in path.read_text()
    for how in ("stdin", "file"):
        cfg = get_config(lang) | {"script": str(path), "input": how}
        assert script(("echo \u00fc\n",), cfg) == "echo \u00fc\n"


def test_input_file_params_dir_and_bytes_output(tmp_path):
    code = ("import json, os, sys\n"
            "print(sys.argv[1])\n"
            "print(open(sys.argv[1]).read())\n"
            "print(json.loads(os.environ['PAPYFLOW_PARAMS'])['n'] + 1)\n"
            "print(os.environ['PAPYFLOW_PARAM_name'], os.getcwd())\n")
    cfg = {"code": code, "input": "file", "dir": str(tmp_path),
           "params": {"n": 41, "name": "x y"}}
    lines = script(("from a file",), cfg).splitlines()
    assert os.path.dirname(lines[0]) == str(tmp_path)
    assert lines[1:] == ["from a file", "42", f"x y {tmp_path}"]
    assert not os.path.exists(lines[0])  # the input file is gone
    assert list(tmp_path.iterdir()) == []
    raw = script((b"\xff\x00",), {"code": "import sys; sys.stdout.buffer.write("
                                           "sys.stdin.buffer.read()[::-1])", "encoding": None})
    assert raw == b"\x00\xff"


def test_a_bash_script_sees_params_and_its_input_file():
    cfg = get_config("bash") | {"code": 'echo "$PAPYFLOW_PARAM_k $(cat "$1")"',
                                "input": "file", "params": {"k": [1, 2]}}
    assert script(("data",), cfg) == "[1, 2] data\n"


@pytest.mark.parametrize("lang, code, status", [
    ("python", "import sys; sys.stderr.write('bad input\\n'); sys.exit(3)", 3),
    ("bash", "echo 'bad input' >&2; exit 4", 4),
    ("python", "raise ValueError('bad input')", 1),
])
def test_a_failing_script_raises_with_its_stderr(lang, code, status):
    cfg = get_config(lang) | {"code": code}
    with pytest.raises(ScriptError) as info:
        script(("x",), cfg)
    error = info.value
    assert isinstance(error, subprocess.CalledProcessError)
    assert error.returncode == status
    assert "bad input" in error.stderr
    assert f"<inline {lang} code> exited with status {status}" in str(error)
    assert "bad input" in str(error)
    copy = pickle.loads(pickle.dumps(error))  # a Worker sends errors across processes
    assert str(copy) == str(error)


def test_a_failing_script_file_is_named(tmp_path):
    path = tmp_path / "broken.sh"
    path.write_text("echo 'no such thing' >&2\nexit 2\n")
    with pytest.raises(ScriptError, match=r"script '.*broken.sh' exited with status 2; "
                                          r"stderr: no such thing"):
        script(("x",), get_config("bash") | {"script": str(path)})


@pytest.mark.timeout(60)
def test_a_relative_script_is_the_callers_file_run_in_dir(tmp_path, monkeypatch):
    # The file checked (relative to the caller's directory) is the file run,
    # whatever cfg['dir'] holds; the script still runs in cfg['dir'].
    (tmp_path / "up.sh").write_text("tr a-z A-Z\n")
    (tmp_path / "where.sh").write_text("pwd -P\n")
    for folder in ("same_name", "empty"):
        (tmp_path / folder).mkdir()
    (tmp_path / "same_name" / "up.sh").write_text("echo WRONG\n")
    monkeypatch.chdir(tmp_path)
    cfg = {"lang": "bash", "script": "up.sh", "dir": "same_name"}
    assert script(("abc",), cfg) == "ABC"
    assert script(("abc",), cfg | {"dir": "empty"}) == "ABC"
    where = script(("",), cfg | {"script": "where.sh", "dir": "empty"})
    assert where == os.path.realpath(tmp_path / "empty") + "\n"


@pytest.mark.timeout(60)
def test_output_not_in_the_encoding_names_the_script_and_the_encoding():
    cfg = get_config("bash") | {"code": "printf 'caf\\351'"}
    with pytest.raises(ScriptOutputError, match=r"script <inline bash code> wrote output "
                                                r"that is not valid utf-8") as info:
        script(("x",), cfg)
    error = info.value
    assert isinstance(error, ScriptError) and isinstance(error, ValueError)
    assert (error.stdout, error.encoding, error.returncode) == (b"caf\xe9", "utf-8", 0)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert script(("x",), cfg | {"encoding": "latin-1"}) == "caf\u00e9"


@pytest.mark.timeout(30)
def test_an_unknown_encoding_is_refused_before_the_script_runs(tmp_path):
    cfg = get_config("bash") | {"code": "touch ran", "dir": str(tmp_path),
                                "encoding": "no-such-codec"}
    with pytest.raises(ValueError, match=r"cfg\['encoding'\] 'no-such-codec' is not a known"):
        script(("x",), cfg)
    with pytest.raises(ValueError, match=r"cfg\['encoding'\] 'no-such-codec'"):
        script((b"x",), cfg)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(25)  # a call that waited for the sleeps (30 s) runs into it
def test_a_script_that_runs_too_long_is_killed_with_its_children():
    # The background sleep holds the output pipe: only killing the whole
    # session lets the call return (the shared fixture checks no process is left).
    cfg = get_config("bash") | {"code": "echo started >&2; sleep 30 & sleep 30", "timeout": 0.5}
    with pytest.raises(ScriptTimeoutError, match="ran longer than 0.5 s") as info:
        script(("x",), cfg)
    assert isinstance(info.value, subprocess.TimeoutExpired)
    assert "started" in info.value.stderr
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


@pytest.mark.parametrize("cfg, error, words", [
    ({"code": "pass", "scrpit": "x"}, ValueError, r"unknown key\(s\) \['scrpit'\]"),
    ({}, ValueError, "exactly one of"),
    ({"code": "pass", "script": "x.py"}, ValueError, "exactly one of"),
    ({"script": "no/such/file.py"}, FileNotFoundError, "is not a file"),
    ({"code": 3}, TypeError, r"cfg\['code'\] must be a str"),
    ({"code": "pass", "lang": "perl"}, ValueError, r"cfg\['lang'\]"),
    ({"code": "pass", "input": "pipe"}, ValueError, r"cfg\['input'\]"),
    ({"code": "pass", "timeout": 0}, ValueError, r"cfg\['timeout'\] must be above 0"),
    ({"code": "pass", "params": [1]}, TypeError, r"cfg\['params'\] must be a dict"),
    ({"code": "pass", "params": {"a-b": 1}}, ValueError, "must be identifiers"),
    ({"code": "pass", "params": {"a": {1, 2}}}, TypeError, "JSON-serializable"),
    ({"code": "pass", "dir": "no/such/dir"}, NotADirectoryError, r"cfg\['dir'\]"),
    ({"code": "pass", "executable": 3}, TypeError, r"cfg\['executable'\]"),
    ({"code": "pass", "encoding": 8}, TypeError, r"cfg\['encoding'\]"),
    ("not a dict", TypeError, "cfg must be a dict"),
])
def test_bad_configurations_name_the_key(cfg, error, words):
    with pytest.raises(error, match=words):
        script(("x",), cfg)


def test_bad_inbox_and_template_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"inbox\[0\] must be str or bytes"):
        script((3,), {"code": "pass"})
    with pytest.raises(ValueError, match="inbox is empty"):
        script((), {"code": "pass"})
    with pytest.raises(ValueError, match="lang must be one of"):
        write_template(tmp_path / "t", "ruby")
    with pytest.raises(TypeError, match="fn must be a path"):
        write_template(3)
    assert list(tmp_path.iterdir()) == []
