"""The examples of the pages under docs/ run as written.

For each page, in page order and in one namespace: a fenced block whose first
line starts with ``>>>`` runs as a doctest, any other ```python block is
executed. ```bash, ```json and plain text blocks are not run. A block whose
fence is preceded, on the line just before it, by an HTML comment
``<!-- not run: reason -->`` is skipped (it needs a remote host, a cluster, or
runs forever by design); one preceded by ``<!-- needs: module, ... -->`` runs
only where those modules are installed (an optional extra, such as dask). Each page runs in a fresh temporary working directory
holding a copy of examples/, since the pages' paths are relative to the
repository root: nothing the examples write lands in the repository.

docs/storage.md is tested by test_storage_docs.py; every other page is in
PAGES (docs/benchmarks.md holds no examples).
"""

from __future__ import annotations

import doctest
import gc
import importlib.util
import re
import shutil
import textwrap
import time
import traceback
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PAGES = ["archive.md", "blocks.md", "cli.md", "core.md", "dataflow.md", "distributed.md",
         "execution.md", "formats.md", "numap.md", "tutorial.md", "util.md"]

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run\b.*-->\s*$")
NEEDS = re.compile(r"^\s*<!--\s*needs:\s*(?P<modules>[\w., ]+?)\s*-->\s*$")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Block:
    lang: str
    line: int          # line number of the opening fence in the page, 1-based
    source: str
    skipped: bool

    @property
    def is_doctest(self) -> bool:
        return self.source.lstrip().startswith(">>>")

    @property
    def runs(self) -> bool:
        return not self.skipped and (self.is_doctest or self.lang == "python")


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if not opening:
            continue
        start, indent = number, opening["indent"]
        body = []
        while number < len(lines) and lines[number].strip() != "```":
            body.append(lines[number])
            number += 1
        number += 1  # the closing fence
        text = "\n".join(line.removeprefix(indent) for line in body)
        before = lines[start - 2] if start >= 2 else ""
        needs = NEEDS.match(before)
        skipped = bool(NOT_RUN.match(before)) or bool(needs and not all(
            importlib.util.find_spec(m.strip()) for m in needs["modules"].split(",")))
        blocks.append(Block(opening["lang"], start, textwrap.dedent(text) + "\n", skipped))
    return blocks


def check_not_run_markers(page: Path) -> None:
    """A "not run" comment stands on the line just before a fence, or it skips nothing."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[:-1], 1):
        if NOT_RUN.match(line):
            assert FENCE.match(lines[number]), (
                f"docs/{page.name}, line {number}: a 'not run' comment must be on the line "
                "just before the fence of the block it skips")


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE}


def _stop_what_the_page_started(namespace: dict, live_before: set,
                                tracker_before: int | None) -> None:
    """Stop every NuMap the examples left running, so no worker outlives the page."""
    from numap import NuMap, _map

    for value in list(namespace.values()):
        if isinstance(value, NuMap):
            value.stop(forced=True)
    for scheduler in set(_map._live) - live_before:
        scheduler.stop(True)
        _map._live.discard(scheduler)
    # multiprocessing's resource tracker, started by a spawned pool (dask's)
    if tracker_before is None and resource_tracker._resource_tracker._pid is not None:
        resource_tracker._resource_tracker._stop()


def run_block(block: Block, page: str, namespace: dict) -> None:
    where = f"docs/{page}, block at line {block.line}"
    if block.is_doctest:
        test = doctest.DocTestParser().get_doctest(block.source, namespace, where, page,
                                                   block.line)
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS
                                       | doctest.REPORT_ONLY_FIRST_FAILURE)
        runner.run(test, out=report.append, clear_globs=False)
        namespace.update(test.globs)  # the test ran in a copy of the namespace
        assert runner.failures == 0, f"{where}:\n" + "".join(report)
    else:
        filename = f"docs/{page}"
        # padded so that the line numbers of the code are those of the page
        code = compile("\n" * block.line + block.source, filename, "exec")
        try:
            exec(code, namespace)  # noqa: S102 - running the page's examples is the point
        except Exception as error:
            lines = [number for frame, number in traceback.walk_tb(error.__traceback__)
                     if frame.f_code.co_filename == filename]
            line = lines[-1] if lines else block.line
            raise AssertionError(f"{where}, line {line}: {type(error).__name__}: {error}"
                                 ) from error


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of_the_page_run(page: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from numap import _map

    check_not_run_markers(DOCS / page)
    blocks = [block for block in blocks_of(DOCS / page) if block.runs]
    assert blocks, f"docs/{page} has no example left to run"
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    children_before = _children()
    live_before = set(_map._live)
    tracker_before = resource_tracker._resource_tracker._pid
    namespace: dict = {"__name__": "__main__"}
    try:
        for block in blocks:
            run_block(block, page, namespace)
    finally:
        _stop_what_the_page_started(namespace, live_before, tracker_before)
        namespace.clear()
        gc.collect()
        deadline = time.monotonic() + 10.0
        while (left := _children() - children_before) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not left, f"docs/{page}: processes left behind: {sorted(left)}"


def test_blocks_marked_not_run_are_skipped(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\n```\n<!-- not run: needs a cluster -->\n"
                    "```python\nraise SystemExit\n```\n\n```bash\nexit 1\n```\n"
                    "  ```python\n  >>> 1 + 1\n  2\n  ```\n", encoding="utf-8")
    blocks = blocks_of(page)
    assert [(b.line, b.runs, b.is_doctest) for b in blocks] == [
        (3, True, False), (7, False, False), (11, False, False), (14, True, True)]
    assert blocks[3].source == ">>> 1 + 1\n2\n"
    page.write_text("<!-- needs: json, no_such_module_here -->\n```python\nx = 1\n```\n"
                    "<!-- needs: json -->\n```python\nx = 2\n```\n", encoding="utf-8")
    assert [b.runs for b in blocks_of(page)] == [False, True]
