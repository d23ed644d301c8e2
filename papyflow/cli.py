"""The ``papyflow`` command: run a pipeline file, or draw it.

::

    papyflow run FILE.py [--input PATH ...] [--workers N] [--no-progress] [--debug]
    papyflow experiment run FILE.json --prefix DIR [--cache DIR] [--workers N] [--set B.P=V] ...
                            [--config RUN.yaml] [--save-config RUN.yaml]
    papyflow graph FILE.py [-o OUT.svg|OUT.png|OUT.dot] [--debug]

A pipeline file is Python source that binds ``plumber`` (and ``DATA`` or
``inputs(paths)``): see :mod:`papyflow.pipefile`. ``run`` loads it, starts the
Plumber on its inputs, shows progress on standard error while it runs, stops it
and prints a summary table on standard output::

    load_file --> --workers N --> plumber.start(datas) --> run() --> watch stats
                                                                         |
                                        inputs end, or Ctrl-C --> pause()  |
                                                                         v
          summary table <-- stop(): every item taken gets its result <---+

Exit codes: 0 the pipeline ran to its end (failed items are counted, not
fatal), 2 a bad command line, pipeline file, input or run (one line on
standard error; ``--debug`` adds the traceback), 130 interrupted, 141 standard
output closed before the summary (``| head``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from . import __version__
from .errors import PlumberError, WorkerError
from .pipefile import PipelineFile, folder_on_path, load_file
from .plumber import Plumber, State

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: whoever read standard output stopped reading

_TICK = 0.2  # seconds between two looks at the statistics while running


class _Failure(Exception):
    """A one-line reason to stop with exit code 2."""


# -- the command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="papyflow", description="Run or draw a papyflow pipeline file.")
    parser.add_argument("--version", action="version", version=f"papyflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a pipeline file and print a summary",
        description="Load a pipeline file, run it on its inputs, and print a summary "
                    "table. Ctrl-C stops it cleanly: every item already taken gets its "
                    "result (exit code 130).")
    run.add_argument("file", metavar="FILE.py", help="the pipeline file (binds 'plumber')")
    run.add_argument("--input", "-i", dest="inputs", metavar="PATH", nargs="+",
                     action="extend", default=[],
                     help="input files, given to the file's inputs(paths) (without "
                          "it: one input per file, its lines); without --input the "
                          "file's DATA is used")
    run.add_argument("--workers", "-w", metavar="N", type=_worker_count,
                     help="give every NuMap of the pipeline N workers")
    run.add_argument("--no-progress", action="store_true",
                     help="show no progress bars (they are shown only on a terminal)")
    run.add_argument("--debug", action="store_true", help="print tracebacks of errors")

    experiment = commands.add_parser(
        "experiment", help="run an experiment declaration (JSON) with its prefix",
        description="Experiments: blocks of a prefix (algorithms, databases, dataformats) "
                    "connected by a JSON declaration, their outputs cached.")
    actions = experiment.add_subparsers(dest="action", metavar="ACTION", required=True)
    exp_run = actions.add_parser(
        "run", help="run an experiment and print its analyzers' results",
        description="Run an experiment: outputs found in the cache are reused, the others "
                    "are computed and cached; prints a summary table and the analyzers' "
                    "results. Ctrl-C stops it cleanly (exit code 130); nothing partial "
                    "is left in the cache.")
    exp_run.add_argument("file", metavar="FILE.json", help="the experiment declaration")
    exp_run.add_argument("--prefix", "-p", metavar="DIR",
                         help="the prefix holding the databases, algorithms and dataformats "
                              "(required, here or in the --config file)")
    exp_run.add_argument("--config", metavar="RUN.yaml",
                         help="read these options from a run configuration (YAML); those "
                              "given here win over it, --set over its parameters")
    exp_run.add_argument("--save-config", metavar="RUN.yaml",
                         help="write the run configuration this run uses (options and "
                              "parameters) to RUN.yaml, then run")
    exp_run.add_argument("--cache", "-c", metavar="DIR",
                         help="where block outputs are cached (without it nothing is)")
    exp_run.add_argument("--workers", "-w", metavar="N", type=_worker_count,
                         help="run the splittable blocks on N worker processes")
    exp_run.add_argument("--set", "-s", dest="overrides", metavar="BLOCK.PARAMETER=VALUE",
                         nargs="+", action="extend", default=[],
                         help="set a block's parameter (typed: 3, 0.5, true, none, text)")
    exp_run.add_argument("--index-folder", metavar="DIR",
                         help="where the database views' indices are kept (by default "
                              "in the temporary folder)")
    exp_run.add_argument("--no-progress", action="store_true",
                         help="show no progress bars (they are shown only on a terminal)")
    exp_run.add_argument("--debug", action="store_true", help="print tracebacks of errors")

    graph = commands.add_parser(
        "graph", help="draw a pipeline file",
        description="Draw the pipeline of a file: DOT text (.dot, or standard output "
                    "without -o), or a picture (.svg, .png; needs the 'graph' extra).")
    graph.add_argument("file", metavar="FILE.py", help="the pipeline file (binds 'plumber')")
    graph.add_argument("--output", "-o", metavar="OUT",
                       help="where to write: a .dot, .svg or .png file")
    graph.add_argument("--debug", action="store_true", help="print tracebacks of errors")
    return parser


def _worker_count(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {number}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``papyflow`` command with ``argv`` (``sys.argv[1:]`` by default); the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    command: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:  # before the pipeline started: nothing to stop
        print(f"papyflow {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output left (``| head``): end quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - every error becomes one line and exit 2
        _report(args, exc)
        return EXIT_ERROR


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _report(args: argparse.Namespace, exc: BaseException) -> None:
    """One line on standard error naming the file (and the traceback with --debug)."""
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc) if isinstance(exc, (_Failure, PlumberError)) else (
        f"{type(exc).__name__}: {exc}")
    message = " ".join(message.split())  # one line
    if args.file not in message and str(Path(args.file)) not in message:
        message = f"{args.file}: {message}"
    print(f"papyflow {args.command}: {message}", file=sys.stderr)


# -- papyflow run --------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    # The file's folder stays on sys.path while the pipeline runs, as in ``python FILE.py``.
    with folder_on_path(args.file):
        pipeline = load_file(args.file)
        with _plain_logging():
            return _run_loaded(args, pipeline)


@contextlib.contextmanager
def _plain_logging() -> Iterator[None]:
    """While running, papyflow's warnings print as one line each, and errors not at all.

    Without a handler anywhere, Python prints warnings and errors of any logger
    with their tracebacks (logging's last resort), and the Plumber logs a failed
    run with its traceback. The command reports a failure itself, in one line
    (with the traceback under ``--debug``), so a record carrying an exception is
    left out here. Nothing changes when the pipeline file (or the program that
    calls :func:`main`) has set up logging.
    """
    logger = logging.getLogger("papyflow")
    if logging.getLogger().handlers or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("papyflow: %(levelname)s: %(message)s"))
    handler.addFilter(lambda record: not record.exc_info)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _run_loaded(args: argparse.Namespace, pipeline: PipelineFile) -> int:
    plumber = pipeline.plumber
    if args.workers is not None:
        for numap in plumber.numaps():
            if not numap.started:
                numap.resize(args.workers)
            else:
                print(f"papyflow run: {args.file}: NuMap {numap.name!r} has started; "
                      f"--workers leaves it with {numap.worker_num}", file=sys.stderr)
    for path in args.inputs:
        if not os.path.exists(path):
            raise _Failure(f"{args.file}: input not found: {path}")
    try:
        datas = pipeline.datas(args.inputs)
    except PlumberError:
        raise
    except Exception as exc:
        raise _Failure(f"{args.file}: cannot make the inputs: {type(exc).__name__}: "
                       f"{exc}") from exc
    show = not args.no_progress and _is_terminal(sys.stderr)
    run = _Run(plumber)
    outcome = run.execute(datas, progress=show)
    print(_summary(args.file, run, outcome), end="", flush=True)
    if outcome == "interrupted":
        return EXIT_INTERRUPTED
    if run.error is not None:
        raise _Failure(f"{args.file}: the pipeline failed: {_cause(run.error)}") from run.error
    return EXIT_OK


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _cause(error: BaseException) -> str:
    """The innermost reason of a failed run, as ``Type: message`` (or the Plumber's own
    account of it, which names its cause)."""
    while error.__cause__ is not None:
        error = error.__cause__
        if isinstance(error, PlumberError):
            break
    return f"{type(error).__name__}: {error}"


class _Run:
    """One run of a Plumber from start to stop, with how it ended.

    ``execute`` always stops the pipeline, whatever happens: a failed run, a
    Ctrl-C (the Plumber is paused, then stopped: every item it took goes
    through) or a second Ctrl-C while that finishes (the NuMaps stop at once).
    """

    def __init__(self, plumber: Plumber, command: str = "run") -> None:
        self.plumber = plumber
        self.command = command
        self.error: BaseException | None = None
        self.began = 0.0
        self.seconds = 0.0

    def execute(self, datas: Sequence[Any], progress: bool) -> str:
        """Run to the end; 'finished', 'failed' or 'interrupted'."""
        plumber = self.plumber
        self.began = time.monotonic()
        outcome = "finished"
        bars = _Progress(plumber) if progress else None
        try:
            with bars.redirect() if bars else contextlib.nullcontext():
                try:
                    plumber.start(datas)
                    plumber.run()
                    self._watch(bars)
                except KeyboardInterrupt:
                    outcome = "interrupted"
                    print(f"\npapyflow {self.command}: interrupted; finishing the items already taken "
                          "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
                except PlumberError as exc:
                    if plumber.state is State.NEW:  # it did not start
                        raise
                    outcome, self.error = "failed", exc
                finally:
                    if bars:
                        bars.close()
            try:
                self._stop()
            except KeyboardInterrupt:
                outcome = "interrupted"
                print(f"papyflow {self.command}: interrupted again; stopping at once", file=sys.stderr,
                      flush=True)
        finally:
            # Whatever state the Plumber was left in, no worker outlives the run.
            for numap in plumber.numaps():
                numap.stop(forced=True)
            self.seconds = time.monotonic() - self.began
        return outcome

    def _watch(self, bars: _Progress | None) -> None:
        """Wait for the end of the run, updating the progress bars."""
        plumber = self.plumber
        while True:
            try:
                plumber.wait(timeout=_TICK)
                break
            except PlumberError as exc:
                if exc.__cause__ is not None:  # the run failed
                    raise
                if plumber.state not in (State.RUNNING, State.FINISHED):
                    raise
            finally:
                if bars:
                    bars.update()
        # Plumber.wait returns without raising when the run had already ended
        # (failed or not) before it was called; the failure is kept on the Plumber.
        error = getattr(plumber, "_error", None)
        if error is not None:
            raise PlumberError(f"Plumber: the pipeline failed: {error!r}") from error

    def _stop(self) -> None:
        """Stop the Plumber from whatever state it is in, letting taken items through."""
        plumber = self.plumber
        if plumber.state is State.STARTED:  # stop() wants a paused or finished pipeline
            plumber.run()
        if plumber.state is State.RUNNING:
            plumber.pause()
        if plumber.state is State.FINISHED:
            # Every result has been taken, so the NuMaps have nothing left to let
            # through. Stop them last-started first: a process NuMap's workers are
            # forked with copies of the pipes of the NuMaps started before, and an
            # earlier NuMap's workers see their pipe close only once those are gone
            # (stopped in the other order, each waits a second and is terminated).
            for numap in reversed(plumber.numaps()):
                numap.stop()
        if plumber.state in (State.PAUSED, State.FINISHED):
            plumber.stop()


# -- progress ------------------------------------------------------------------------


class _Progress:
    """One tqdm bar per Piper on standard error: results, rate and failed items."""

    def __init__(self, plumber: Plumber) -> None:
        from tqdm import tqdm

        self.plumber = plumber
        self.pipers = plumber.postorder()
        width = max((len(p.name) for p in self.pipers), default=0)
        self.bars = [tqdm(desc=p.name.ljust(width), unit=" items", position=i, leave=True,
                          file=sys.stderr, dynamic_ncols=True, mininterval=_TICK,
                          bar_format="{desc} {n_fmt:>8}{unit} {rate_fmt:>16}{postfix}",
                          postfix="errors=0")
                     for i, p in enumerate(self.pipers)]
        self.errors = [0] * len(self.pipers)

    @contextlib.contextmanager
    def redirect(self) -> Iterator[None]:
        """Print what the pipeline prints above the bars instead of through them."""
        from tqdm.contrib import DummyTqdmFile

        original = sys.stdout
        sys.stdout = DummyTqdmFile(original)
        try:
            yield
        finally:
            sys.stdout = original

    def update(self) -> None:
        stats = self.plumber.stats["pipers"]
        for i, (piper, bar) in enumerate(zip(self.pipers, self.bars)):
            results = stats[piper]["results"]
            if results > bar.n:
                bar.update(results - bar.n)
            if stats[piper]["errors"] != self.errors[i]:
                self.errors[i] = stats[piper]["errors"]
                bar.set_postfix_str(f"errors={self.errors[i]}", refresh=False)
            bar.refresh()

    def close(self) -> None:
        self.update()
        for bar in self.bars:
            bar.close()


# -- the summary ---------------------------------------------------------------------


def _summary(path: str, run: _Run, outcome: str) -> str:
    """The table printed at the end: one row per Piper, in the pipeline's order."""
    plumber = run.plumber
    stats = plumber.stats
    now = time.monotonic()
    rows = [("piper", "results", "errors", "seconds", "items/s")]
    for piper in plumber.postorder():
        entry = stats["pipers"][piper]
        seconds = entry["seconds"]
        if seconds is None:  # its results did not end: count until now
            seconds = now - entry["first"] if entry["first"] else 0.0
        rate = f"{entry['results'] / seconds:.1f}" if seconds > 0 else "-"
        rows.append((piper.name, str(entry["results"]), str(entry["errors"]),
                     f"{seconds:.2f}", rate))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = [f"papyflow {run.command}: {path}: {outcome} in {run.seconds:.2f} s"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in
                                               zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    taken = stats["inputs_taken"]
    numaps = ", ".join(f"{n.name} ({n.worker_type} x{n.worker_num})" for n in plumber.numaps())
    failed_inputs = sum(stats["input_errors"])
    lines.append(f"inputs taken: {', '.join(map(str, taken)) or '0'}; "
                 f"failed items: {sum(stats['pipers'][p]['errors'] for p in plumber.graph)}"
                 + (f"; items the inputs raised: {failed_inputs}" if failed_inputs else ""))
    lines.append(f"numaps: {numaps or 'none'}")
    for piper in plumber.postorder():  # a hint of why, for each Piper where items failed
        error = stats["pipers"][piper]["first_error"]
        if error is not None:
            named = isinstance(error, WorkerError)  # its message names the function and type
            text = " ".join((str(error) if named else f"{type(error).__name__}: {error}").split())
            lines.append(f"first failed item in {piper.name}: "
                         f"{text[:197] + '...' if len(text) > 200 else text}")
    return "\n".join(lines) + "\n"


# -- papyflow graph ------------------------------------------------------------------


def _graph(args: argparse.Namespace) -> int:
    from .graph import DRAW_FORMATS, draw, to_dot

    output = Path(args.output) if args.output else None
    suffix = output.suffix.lower() if output else ".dot"
    if suffix not in (".dot", *DRAW_FORMATS):
        raise _Failure(f"cannot write {args.output!r}: the formats are .dot, "
                       f"{', '.join(DRAW_FORMATS)}")
    plumber = load_file(args.file).plumber
    if not len(plumber):
        raise _Failure(f"{args.file}: the pipeline has no piper to draw")
    title = Path(args.file).name
    if output is None:
        sys.stdout.write(to_dot(plumber, title=title))
    elif suffix == ".dot":
        output.write_text(to_dot(plumber, title=title), encoding="utf-8")
    else:
        draw(plumber, output, title=title)
    if output is not None:
        print(f"papyflow graph: wrote {output}", file=sys.stderr)
    return EXIT_OK


def _experiment(args: argparse.Namespace) -> int:
    from ._experiment_command import run_experiment

    with _plain_logging():
        return run_experiment(args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "graph": _graph, "experiment": _experiment}
