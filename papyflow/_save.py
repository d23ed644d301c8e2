"""``Plumber.save``: a pipeline written as a readable Python file that rebuilds it.

The file has, in order: imports; the functions that cannot be imported (by
their source, or as a dill payload where the source is not exact); one line
per NuMap and per Piper with every option; the pipes; and a ``__main__`` block
that runs the pipeline through ``papyflow run``. It follows the pipeline-file
contract of :mod:`papyflow.pipefile`.
"""

from __future__ import annotations

import datetime
import inspect
import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from numap import NuMap

from .archive import callable_source, object_source

if TYPE_CHECKING:
    from .piper import Piper
    from .plumber import Plumber

__all__ = ["pipeline_source"]

_NUMAP_DEFAULTS = {name: parameter.default for name, parameter in
                   inspect.signature(NuMap).parameters.items()
                   if parameter.default is not inspect.Parameter.empty}
# Names the file binds itself, or that a pipeline file is read for (``inputs``:
# a saved function of that name would be taken for the maker of the inputs).
_FIXED = ("NuMap", "Piper", "Plumber", "Worker", "plumber", "DATA", "inputs", "sys", "main")


class _Writer:
    """Collects imports and statements, and hands out names that do not clash."""

    def __init__(self) -> None:
        self.imports: list[str] = []
        self.statements: list[str] = []
        self.taken: set[str] = set(_FIXED) | set(keyword.kwlist)
        self._callables: dict[int, str] = {}

    def _add(self, imports: tuple[str, ...], statements: tuple[str, ...],
             names: tuple[str, ...]) -> None:
        for line in imports:
            if line not in self.imports:
                self.imports.append(line)
        self.statements.extend(statements)
        self.taken.update(names)

    def callable(self, func: Callable[..., Any]) -> str:
        if id(func) not in self._callables:
            snippet = callable_source(func, reserved=self.taken)
            self._add(snippet.imports, snippet.statements, snippet.names)
            self._callables[id(func)] = snippet.expression
        return self._callables[id(func)]

    def value(self, value: Any) -> str:
        snippet = object_source(value, reserved=self.taken)
        self._add(snippet.imports, snippet.statements, snippet.names)
        return snippet.expression

    def name(self, stem: str) -> str:
        for i in range(len(self.taken) + 1):
            candidate = f"{stem}_{i}"
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise AssertionError("unreachable")


def _arguments(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{key}={value}" for key, value in pairs)


def pipeline_source(plumber: Plumber) -> str:
    """The source of a Python file that rebuilds ``plumber``'s pipeline."""
    writer = _Writer()
    graph = plumber.graph
    pipers: list[Piper] = sorted(graph.nodes, key=lambda p: graph.nodes[p]["added"])
    numap_lines, piper_lines = [], []
    numap_names: dict[int, str] = {}
    piper_names: dict[Piper, str] = {}
    for piper in pipers:
        imap = piper.imap
        if isinstance(imap, NuMap) and id(imap) not in numap_names:
            if imap.executor is not None:  # its settings would not rebuild it
                raise ValueError(f"NuMap {imap.name!r} of piper {piper.name!r} runs on an "
                                 f"executor, which cannot be written to a file")
            name = writer.name("numap")
            numap_names[id(imap)] = name
            # What differs from NuMap's own default (None too: shared_memory=None is
            # not the default, and must be written for the rebuilt NuMap to match).
            settings = [(k, writer.value(v)) for k, v in imap.settings.items()
                        if v != _NUMAP_DEFAULTS.get(k)]
            numap_lines.append(f"{name} = NuMap({_arguments(settings)})")
    for piper in pipers:
        worker = piper.worker
        functions = ", ".join(writer.callable(f) for f in worker.task)
        args = ", ".join(writer.value(a) for a in worker.args)
        kwargs = ", ".join(writer.value(k) for k in worker.kwargs)
        worker_expr = (f"Worker(({functions},), ({args},), ({kwargs},), "
                       f"name={writer.value(worker.name)})")
        parallel = numap_names[id(piper.imap)] if isinstance(piper.imap, NuMap) else "False"
        options = [("parallel", parallel), ("consume", str(piper.consume)),
                   ("produce", str(piper.produce)), ("spawn", str(piper.spawn)),
                   ("timeout", writer.value(piper.timeout)), ("branch", writer.value(piper.branch)),
                   ("debug", str(piper.debug)), ("name", writer.value(piper.name)),
                   ("track", str(piper.track)), ("repeat", str(piper.repeat))]
        if piper.synchronized:
            options.append(("synchronized", "True"))
        name = writer.name("piper")
        piper_names[piper] = name
        piper_lines.append(f"{name} = Piper({worker_expr}, {_arguments(options)})")
    # Every value is written before ``lines`` copies the statements they may add.
    xtras = [writer.value(graph.nodes[p]["xtra"]) if graph.nodes[p]["xtra"] else None
             for p in pipers]
    lines = [
        (f'"""A papyflow pipeline, saved by Plumber.save on '
         f'{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.'),
        "",
        "Run it: papyflow run THIS_FILE --input PATH ... (or python THIS_FILE --input PATH ...).",
        "Load it: papyflow.Plumber().load(THIS_FILE).",
        '"""',
        "",
        "import sys",
        "",
        "from numap import NuMap",
        "from papyflow import Piper, Plumber, Worker",
        *writer.imports,
        "",
        *writer.statements,
        "",
        *numap_lines,
        "",
        *piper_lines,
        "",
        "plumber = Plumber()",
        f"plumber.add_pipers([{', '.join(piper_names[p] for p in pipers)}])",
    ]
    for piper, xtra in zip(pipers, xtras, strict=True):
        if xtra is not None:
            lines.append(f"plumber.graph.nodes[{piper_names[piper]}]['xtra'].update({xtra})")
    for upstream, downstream in graph.edges:
        lines.append(f"plumber.add_pipe(({piper_names[upstream]}, {piper_names[downstream]}))")
    lines += [
        "",
        "DATA = None  # no input is saved: give input files to papyflow run",
        "",
        'if __name__ == "__main__":',
        "    from papyflow.cli import main",
        "",
        '    sys.exit(main(["run", __file__, *sys.argv[1:]]))',
        "",
    ]
    return "\n".join(lines)
