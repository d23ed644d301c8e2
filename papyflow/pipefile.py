"""Pipeline files: Python source that builds a pipeline, hand-written or saved by ``Plumber.save``.

A pipeline file is a plain Python module. Run (not as ``__main__``), it binds:

- ``plumber``: the :class:`~papyflow.Plumber` (required);
- ``inputs(paths)``: optional; returns the input iterables (one per input
  Piper) for the files named on the command line. Without it, each path gives
  one input: the lines of that file;
- ``DATA``: optional; the inputs to use when no path is given (a sequence of
  iterables, or a function returning one).

``papyflow run FILE.py`` and ``Plumber.load`` read files through :func:`load_file`.
"""

from __future__ import annotations

import contextlib
import os
import re
import runpy
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import PlumberError

__all__ = ["PipelineFile", "folder_on_path", "load_file"]


@dataclass
class PipelineFile:
    """What a pipeline file defines."""

    path: Path
    plumber: Any
    inputs: Callable[[list[str]], Sequence[Iterable[Any]]] | None
    data: Any
    namespace: dict[str, Any]

    def datas(self, paths: Sequence[str] = ()) -> list[Iterable[Any]]:
        """The inputs for ``paths``, or the file's ``DATA`` when there are none."""
        if paths:
            if self.inputs is not None:
                return list(self.inputs(list(paths)))
            return [_lines(p) for p in paths]
        data = self.data() if callable(self.data) else self.data
        if data is None:
            raise PlumberError(f"{self.path}: give the input files (--input PATH ...); the "
                               f"file defines no DATA")
        if isinstance(data, str | bytes) or not isinstance(data, Iterable):
            raise PlumberError(f"{self.path}: DATA must hold one iterable of items per input "
                               f"Piper (DATA = [items] for one input), got "
                               f"{type(data).__name__} {data!r:.60}")
        return list(data)


def _lines(path: str) -> Iterable[str]:
    if os.path.isdir(path):
        raise PlumberError(f"input is a folder, not a file: {path} (this file has no "
                           f"inputs(paths) to read folders)")
    if not os.path.isfile(path):
        raise PlumberError(f"input file not found: {path}")
    return _Lines(path)


# The characters that errors="surrogateescape" puts in place of bytes that are not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


class _Lines:
    """The lines of a UTF-8 text file, opened when the first one is read.

    A line that is not UTF-8 fails alone, as an item of an input may: its
    ``next()`` raises a ValueError naming the file and line, and the next one
    goes on with the line after it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._number = 0
        self._ended = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._ended:
            raise StopIteration
        if self._handle is None:
            # Open across calls of next(), closed at the end of the file.
            self._handle = open(self.path, encoding="utf-8",  # noqa: SIM115
                                errors="surrogateescape")
        line = self._handle.readline()
        if not line:
            self._ended = True
            self._handle.close()
            raise StopIteration
        self._number += 1
        if _UNDECODED.search(line):
            raise ValueError(f"{self.path}, line {self._number}: not UTF-8 text")
        return line


@contextlib.contextmanager
def folder_on_path(path: str | os.PathLike[str]) -> Iterator[None]:
    """Put the folder of the file ``path`` first on ``sys.path`` for the ``with`` block.

    A folder already there is left alone. ``papyflow run`` keeps it there while
    the pipeline runs too, so that a function of the file may import a module
    beside it when it is called, as it could in ``python FILE.py``.
    """
    directory = str(Path(path).resolve().parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):  # the block may have taken it out
                sys.path.remove(directory)


def load_file(path: str | os.PathLike[str]) -> PipelineFile:
    """Run the pipeline file at ``path`` and return what it defines.

    Raises :class:`PlumberError` naming the file and line when it does not run,
    or does not define ``plumber``.
    """
    from .plumber import Plumber

    path = Path(path)
    if not path.is_file():
        raise PlumberError(f"pipeline file not found: {path}")
    try:
        with folder_on_path(path):  # so the file can import its neighbours, as a script would
            namespace = runpy.run_path(str(path), run_name="__papyflow_pipeline__")
    except SyntaxError as exc:
        raise PlumberError(_syntax_error(exc, path)) from exc
    except SystemExit as exc:  # not KeyboardInterrupt: Ctrl-C still stops the caller
        raise PlumberError(f"{_where(exc, path)}: the file exits while it is loaded "
                           f"(SystemExit: {exc.code!r}); put that under "
                           f"if __name__ == '__main__':") from exc
    except Exception as exc:
        raise PlumberError(f"{_where(exc, path)}: {type(exc).__name__}: {exc}") from exc
    plumber = namespace.get("plumber")
    if not isinstance(plumber, Plumber):
        raise PlumberError(f"{path}: the file must bind 'plumber' to a papyflow.Plumber")
    inputs = namespace.get("inputs")
    if inputs is not None and not callable(inputs):
        raise PlumberError(f"{path}: 'inputs' must be a function of the input paths")
    return PipelineFile(path, plumber, inputs, namespace.get("DATA"), namespace)


def _where(exc: BaseException, path: Path) -> str:
    """``path``, with the line of it that ``exc`` was raised from, when the traceback tells."""
    line = _line_in(exc, path)
    return f"{path}, line {line}" if line else str(path)


def _syntax_error(exc: SyntaxError, path: Path) -> str:
    """Where a syntax error is: in ``path``, in a module it imports, or in a string it ran."""
    kind = type(exc).__name__  # IndentationError, TabError say more than SyntaxError
    found = f"line {exc.lineno}: {kind}: {exc.msg}"
    name = exc.filename
    if name is None:  # raised by code, not by the compiler
        return f"{_where(exc, path)}: {kind}: {exc}"
    if os.path.isfile(name):
        if os.path.samefile(name, path):  # the pipeline file itself does not compile
            return f"{path}, {found}"
        # A module the file imports: that module's line, and the import that reached it.
        return f"{name}, {found} (reached from {_where(exc, path)})"
    # exec() or compile() of a string: the line of the file that ran it, and the string's.
    return f"{_where(exc, path)}: {kind} in {name}, line {exc.lineno}: {exc.msg}"


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The last line of ``path`` in the traceback of ``exc``."""
    target = os.path.realpath(path)  # the frames name it as it was given: symlinks too
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(frame.filename) == target:
            line = frame.lineno
    return line
