"""papyflow.util.config and .runtime: logging set-up, OS defaults, the runtime description."""

from __future__ import annotations

import io
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import papyflow
from papyflow.util.config import LOGGER_NAME, get_defaults, start_logger
from papyflow.util.runtime import DISTRIBUTIONS, get_runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def reset_logger():
    """Leave the 'papyflow' logger as found, with every file handler closed."""
    yield
    start_logger()


def test_get_defaults():
    defaults = get_defaults()
    for key in ("PIPE_BUF", "TCP_SNDBUF", "TCP_RCVBUF", "UDP_SNDBUF", "UDP_RCVBUF"):
        assert isinstance(defaults[key], int) and defaults[key] > 0
    assert os.path.isdir(defaults["TEMP_DIR"])


def test_stream_logging_is_never_duplicated():
    stream = io.StringIO()
    for _ in range(3):
        logger = start_logger(log_to_stream=True, log_stream=stream, log_to_stream_level="DEBUG")
    assert logger is logging.getLogger(LOGGER_NAME)
    logging.getLogger("papyflow.core").debug("one message")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("DEBUG ") and lines[0].endswith("[papyflow.core] - one message")


def test_levels_filter_and_foreign_handlers_stay():
    foreign = logging.NullHandler()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(foreign)
    try:
        stream = io.StringIO()
        start_logger(log_to_stream=stream, log_to_stream_level=logging.WARNING)
        logger.info("hidden")
        logger.warning("shown")
        assert stream.getvalue().count("\n") == 1 and "shown" in stream.getvalue()
        start_logger()
        assert logger.handlers == [foreign]
    finally:
        logger.removeHandler(foreign)


def test_rotating_file_log(tmp_path):
    path = tmp_path / "run.log"
    start_logger(log_to_file=True, log_filename=path, log_size=2000, log_number=2)
    start_logger(log_to_file=True, log_filename=path, log_size=2000, log_number=2)
    logger = logging.getLogger(LOGGER_NAME)
    for i in range(200):
        logger.info("message %03d %s", i, "x" * 40)
    start_logger()  # closes the file
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["run.log", "run.log.1", "run.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    last = path.read_text().splitlines()[-1]
    assert last.endswith("message 199 " + "x" * 40)
    assert last.count("message 199") == 1


def test_plain_file_log_with_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start_logger(log_to_file=True, log_rotate=False, log_to_file_level=logging.ERROR)
    logging.getLogger("papyflow.x").warning("below the level")
    logging.getLogger("papyflow.x").error("kept")
    start_logger()
    (log,) = tmp_path.iterdir()
    assert log.name.startswith("papyflow_") and log.name.endswith(".log")
    assert "kept" in log.read_text() and "below" not in log.read_text()
    start_logger(log_to_file=True)
    start_logger()
    assert (tmp_path / "papyflow.log").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("log_rotate", [True, False])
def test_a_failing_call_names_log_filename_and_keeps_the_logging_that_worked(tmp_path,
                                                                              log_rotate):
    stream = io.StringIO()
    start_logger(log_to_stream=stream, log_to_stream_level="DEBUG")
    logger = logging.getLogger(LOGGER_NAME)
    before = (list(logger.handlers), logger.level)
    missing = tmp_path / "no" / "such" / "run.log"
    with pytest.raises(FileNotFoundError,
                       match=r"start_logger: log_filename cannot be opened.*run\.log") as info:
        start_logger(log_to_file=True, log_filename=missing, log_rotate=log_rotate,
                     log_to_stream=True, log_stream=io.StringIO())
    assert info.value.filename == str(missing)
    assert (list(logger.handlers), logger.level) == before
    logging.getLogger("papyflow.core").debug("still logged")
    assert "still logged" in stream.getvalue()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"log_size": 0}, ValueError, "log_size must be at least 1"),
    ({"log_number": -1}, ValueError, "log_number"),
    ({"log_to_file_level": "LOUD"}, ValueError, "log_to_file_level 'LOUD'"),
    ({"log_to_stream_level": 2.5}, TypeError, "log_to_stream_level"),
    ({"log_to_stream": 3}, TypeError, "log_to_stream must be"),
    ({"log_stream": "stderr"}, TypeError, "log_stream must be"),
    ({"log_to_file": "yes"}, TypeError, "log_to_file must be a bool"),
    ({"log_filename": 3}, TypeError, "log_filename must be a path"),
])
def test_bad_logger_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        start_logger(**kwargs)


def test_get_runtime_describes_this_process():
    runtime = get_runtime()
    assert runtime["python"] == platform.python_version()
    assert runtime["pid"] == os.getpid()
    assert runtime["cpu_count"] == os.cpu_count()
    assert runtime["usable_cpus"] == len(os.sched_getaffinity(0))
    assert runtime["host"] and runtime["platform"] and runtime["system"] == platform.system()
    assert set(runtime["versions"]) == set(DISTRIBUTIONS)
    assert runtime["versions"]["papyflow"] == papyflow.__version__
    import numpy
    assert runtime["versions"]["numpy"] == numpy.__version__
    assert get_runtime() is not runtime  # a fresh dict each time


def test_util_demo_runs():
    done = subprocess.run([sys.executable, str(EXAMPLES / "util_demo.py")], check=False,
                          capture_output=True, text=True, timeout=60, cwd=EXAMPLES.parent)
    assert done.returncode == 0, done.stderr
    assert "socket item: b'via a socket'" in done.stdout
