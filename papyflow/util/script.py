"""``script``: a worker function that runs a bash or Python script on each item.

The script is configured by a dict (:func:`get_config` gives one to fill in)::

    cfg = get_config("bash")
    cfg["code"] = "tr a-z A-Z"          # or cfg["script"] = "upper.sh"
    script(("hello",), cfg)            # -> 'HELLO'

The first element of the inbox (``str`` or ``bytes``) is the script's input:
written to its standard input, or, with ``cfg["input"] = "file"``, to a
temporary file whose path is the script's first argument. The script's standard
output is the result. A non-zero exit raises :class:`ScriptError`, which names
the script and quotes its standard error; output that is not text in
``cfg["encoding"]`` raises :class:`ScriptOutputError`; a script still running
after ``cfg["timeout"]`` seconds is killed, with everything it started, and
raises :class:`ScriptTimeoutError`.

:func:`write_template` writes a starting script that follows these conventions.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from ._check import first, positive_number

__all__ = ["LANGS", "ScriptError", "ScriptOutputError", "ScriptTimeoutError", "get_config",
           "script", "write_template"]

LANGS = ("python", "bash")
"""The languages :func:`get_config` and :func:`write_template` know."""

_KEYS = ("lang", "executable", "script", "code", "input", "params", "dir", "timeout",
         "encoding")
# How much of a failing script's standard error an exception message quotes.
_STDERR_TAIL = 2000


class ScriptError(subprocess.CalledProcessError):
    """A script exited with a non-zero status.

    Attributes: ``script`` (its path, or ``'<inline bash code>'``),
    ``returncode``, ``cmd``, ``stdout`` and ``stderr`` (as captured).
    """

    def __init__(self, script: str, returncode: int, cmd: list[str], stdout: Any,
                 stderr: Any) -> None:
        super().__init__(returncode, cmd, stdout, stderr)
        self.script = script

    def __str__(self) -> str:
        status = (f"was killed by signal {-self.returncode}" if self.returncode < 0
                  else f"exited with status {self.returncode}")
        return f"script {self.script} {status}; stderr: {_tail(self.stderr)}"


class ScriptOutputError(ScriptError, ValueError):
    """A script's standard output is not text in ``cfg['encoding']``.

    A :class:`ScriptError` (and a ``ValueError``, as the ``UnicodeDecodeError``
    it replaces) with the attributes of one, ``stdout`` holding the raw
    ``bytes``, plus ``encoding`` and ``reason`` (what the decoder said).
    """

    def __init__(self, script: str, returncode: int, cmd: list[str], stdout: Any,
                 stderr: Any, encoding: str, reason: str) -> None:
        super().__init__(script, returncode, cmd, stdout, stderr)
        self.encoding = encoding
        self.reason = reason

    def __str__(self) -> str:
        return (f"script {self.script} wrote output that is not valid {self.encoding} "
                f"(cfg['encoding']): {self.reason}; set cfg['encoding'] = None to get bytes")


class ScriptTimeoutError(subprocess.TimeoutExpired):
    """A script ran longer than ``cfg['timeout']`` seconds and was killed.

    Attributes: ``script``, ``timeout``, ``cmd``, ``stdout`` and ``stderr``.
    """

    def __init__(self, script: str, cmd: list[str], timeout: float, stdout: Any,
                 stderr: Any) -> None:
        super().__init__(cmd, timeout, stdout, stderr)
        self.script = script

    def __str__(self) -> str:
        return (f"script {self.script} ran longer than {self.timeout:g} s and was killed; "
                f"stderr: {_tail(self.stderr)}")


def get_config(lang: str = "python") -> dict[str, Any]:
    """Return a script configuration for ``lang`` ('python' or 'bash') to fill in.

    Keys: ``lang``; ``executable`` (the interpreter: a path or an argument
    list; this Python, or ``bash``); ``script`` (the path of a script file,
    relative to the caller's working directory, not to ``dir``) or ``code``
    (the script's source) - set exactly one; ``input`` (``'stdin'`` or
    ``'file'``); ``params`` (a dict the script reads as JSON from the
    ``PAPYFLOW_PARAMS`` environment variable, and each entry from
    ``PAPYFLOW_PARAM_<name>``); ``dir`` (the working directory, and where the
    input file goes; ``None`` for the current directory and the temporary
    directory); ``timeout`` (seconds); ``encoding`` (of the text output, or
    ``None`` to return ``bytes``).
    """
    _lang(lang)
    return {
        "lang": lang,
        "executable": sys.executable if lang == "python" else "bash",
        "script": None,
        "code": None,
        "input": "stdin",
        "params": {},
        "dir": None,
        "timeout": 300.0,
        "encoding": "utf-8",
    }


def script(inbox: Sequence[Any], cfg: Mapping[str, Any]) -> str | bytes:
    """Run the script that ``cfg`` describes on the first element of the inbox.

    Returns the script's standard output, decoded with ``cfg['encoding']``.
    Missing keys take their :func:`get_config` defaults for ``cfg['lang']``.
    Raises :class:`ScriptError` on a non-zero exit, :class:`ScriptOutputError`
    when the output is not valid in ``cfg['encoding']``, and
    :class:`ScriptTimeoutError` after ``cfg['timeout']`` seconds.
    """
    where = "script"
    item = first(where, inbox)
    settings = _settings(cfg)
    data = _input_bytes(item, settings["encoding"])
    argv, label = _command(settings)
    env = _environment(settings["params"])
    if settings["input"] == "stdin":
        return _run(argv, label, data, env, settings)
    with tempfile.NamedTemporaryFile(prefix="papyflow_script_", suffix=".in",
                                     dir=settings["dir"]) as handle:
        handle.write(data)
        handle.flush()
        return _run([*argv, handle.name], label, None, env, settings)


def write_template(fn: str | os.PathLike[str], lang: str = "python") -> None:
    """Write a starting script in ``lang`` ('python' or 'bash') to the path ``fn``.

    The template reads the item from standard input or from the file named by
    its first argument, reads its parameters, and writes its result to
    standard output, as :func:`script` expects. It runs as written, echoing its
    input.
    """
    _lang(lang)
    if not isinstance(fn, (str, os.PathLike)):
        raise TypeError(f"write_template: fn must be a path, got {fn!r}")
    with open(fn, "w", encoding="utf-8") as handle:
        handle.write(_TEMPLATES[lang])


# -- configuration ------------------------------------------------------------------


def _lang(lang: Any) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    return str(lang)


def _settings(cfg: Any) -> dict[str, Any]:
    where = "script"
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{where}: cfg must be a dict (see get_config), got {cfg!r}")
    unknown = sorted(set(cfg) - set(_KEYS), key=str)
    if unknown:
        raise ValueError(f"{where}: cfg has unknown key(s) {unknown}; known: {list(_KEYS)}")
    lang = cfg.get("lang", "python")
    if lang not in LANGS:
        raise ValueError(f"{where}: cfg['lang'] must be one of {LANGS}, got {lang!r}")
    settings = get_config(lang) | dict(cfg)
    if (settings["script"] is None) == (settings["code"] is None):
        raise ValueError(f"{where}: set exactly one of cfg['script'] (a path) and "
                         "cfg['code'] (source text)")
    if settings["script"] is not None:
        settings["script"] = _script_path(settings["script"])
    if settings["code"] is not None and not isinstance(settings["code"], str):
        raise TypeError(f"{where}: cfg['code'] must be a str, got {settings['code']!r}")
    if settings["input"] not in ("stdin", "file"):
        raise ValueError(f"{where}: cfg['input'] must be 'stdin' or 'file', "
                         f"got {settings['input']!r}")
    if not isinstance(settings["params"], Mapping):
        raise TypeError(f"{where}: cfg['params'] must be a dict, got {settings['params']!r}")
    folder = settings["dir"]
    if folder is not None and not os.path.isdir(folder):
        raise NotADirectoryError(f"{where}: cfg['dir'] {folder!r} is not an existing directory")
    settings["timeout"] = positive_number(where, "cfg['timeout']", settings["timeout"])
    _encoding(settings["encoding"])
    return settings


def _script_path(path: Any) -> str:
    """Return the absolute path of ``cfg['script']``, after checking that it is a file.

    A relative path is relative to the caller's working directory, where it is
    checked; made absolute, it is also the file that runs in ``cfg['dir']``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"script: cfg['script'] must be a path, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"script: cfg['script'] {os.fspath(path)!r} is not a file")
    return os.path.abspath(path)


def _encoding(encoding: Any) -> None:
    if encoding is None:
        return
    if not isinstance(encoding, str):
        raise TypeError(f"script: cfg['encoding'] must be a str or None, got {encoding!r}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"script: cfg['encoding'] {encoding!r} is not a known "
                         "encoding") from None


def _input_bytes(item: Any, encoding: str | None) -> bytes:
    if item is None:
        return b""
    if isinstance(item, str):
        return item.encode(encoding or "utf-8")
    try:
        return bytes(memoryview(item))
    except TypeError:
        raise TypeError(f"script: inbox[0] must be str or bytes, "
                        f"got {type(item).__name__}") from None


def _command(settings: Mapping[str, Any]) -> tuple[list[str], str]:
    """Return the argument list (without the input file) and a name for messages."""
    executable = settings["executable"]
    if isinstance(executable, (str, os.PathLike)):
        argv = [os.fspath(executable)]
    elif (isinstance(executable, Sequence) and executable
          and all(isinstance(part, str) for part in executable)):
        argv = list(executable)
    else:
        raise TypeError(f"script: cfg['executable'] must be a path or a list of str, "
                        f"got {executable!r}")
    if settings["script"] is not None:
        path = os.fspath(settings["script"])
        return [*argv, path], repr(path)
    label = f"<inline {settings['lang']} code>"
    if settings["lang"] == "bash":
        # bash -c takes the next argument as $0, so the input file stays $1.
        return [*argv, "-c", settings["code"], "papyflow-script"], label
    return [*argv, "-c", settings["code"]], label


def _environment(params: Mapping[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    try:
        env["PAPYFLOW_PARAMS"] = json.dumps(dict(params))
    except TypeError as exc:
        raise TypeError(f"script: cfg['params'] must be JSON-serializable: {exc}") from None
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"script: cfg['params'] names must be identifiers, got {name!r}")
        env[f"PAPYFLOW_PARAM_{name}"] = value if isinstance(value, str) else json.dumps(value)
    return env


# -- running ------------------------------------------------------------------------


def _run(argv: list[str], label: str, data: bytes | None, env: dict[str, str],
         settings: Mapping[str, Any]) -> str | bytes:
    timeout = settings["timeout"]
    # A session of its own, so that a timeout can kill whatever the script started.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=settings["dir"], env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill(proc)
        raise ScriptTimeoutError(label, argv, timeout, stdout, _text(stderr)) from None
    except BaseException:
        # Ctrl-C or another error in this process: leave no script running.
        _kill(proc)
        raise
    if proc.returncode != 0:
        raise ScriptError(label, proc.returncode, argv, stdout, _text(stderr))
    encoding = settings["encoding"]
    if encoding is None:
        return stdout
    try:
        return stdout.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ScriptOutputError(label, proc.returncode, argv, stdout, _text(stderr), encoding,
                                str(exc)) from exc


def _kill(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        return proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        # A descendant that left the session still holds the pipes: stop reading.
        proc.kill()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait(timeout=5)
        return b"", b""


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _tail(stderr: Any) -> str:
    text = stderr if isinstance(stderr, str) else _text(stderr)
    text = text.strip()
    if not text:
        return "(empty)"
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


_PYTHON_TEMPLATE = '''\
"""A papyflow script: reads one item, writes one result to standard output.

Run by papyflow.util.script.script: with cfg["input"] == "file" the item is in
the file named by the first argument, otherwise it comes on standard input.
"""
import json
import os
import sys

PARAMS = json.loads(os.environ.get("PAPYFLOW_PARAMS", "{}"))

if len(sys.argv) > 1:
    with open(sys.argv[1], "rb") as handle:
        DATA = handle.read()
else:
    DATA = sys.stdin.buffer.read()

# Your code: turn DATA (bytes) into RESULT (bytes). Exit non-zero on failure;
# what goes to standard error is quoted in the error papyflow raises.
RESULT = DATA

sys.stdout.buffer.write(RESULT)
'''

_BASH_TEMPLATE = '''\
#!/usr/bin/env bash
# A papyflow script: reads one item, writes one result to standard output.
#
# Run by papyflow.util.script.script: with cfg["input"] == "file" the item is in
# the file named by the first argument, otherwise it comes on standard input.
# Each parameter is in $PAPYFLOW_PARAM_<name>; all of them, as JSON, in $PAPYFLOW_PARAMS.
set -euo pipefail

if [ "$#" -gt 0 ]; then
    INPUT="$1"
else
    INPUT=/dev/stdin
fi

# Your code: read "$INPUT", write the result to standard output. Exit non-zero
# on failure; what goes to standard error is quoted in the error papyflow raises.
cat "$INPUT"
'''

_TEMPLATES = {"python": _PYTHON_TEMPLATE, "bash": _BASH_TEMPLATE}
