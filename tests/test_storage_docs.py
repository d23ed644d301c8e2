"""docs/storage.md: every example on the page runs as written, and the modules' own examples."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "storage.md"


def test_every_example_of_the_storage_page_runs():
    results = doctest.testfile(str(PAGE), module_relative=False, raise_on_error=False,
                               optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 150, "examples went missing from docs/storage.md"
    assert results.failed == 0


def test_the_page_has_its_sections():
    headings = [line for line in PAGE.read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]
    assert headings == ["## Shared memory", "## The data logger",
                        "## The HDF5 storage service",
                        "## Configuration structures: NestedDictionary, YamlConfig, converters"]


def test_the_structures_docstring_examples_run():
    import papyflow.structures.nested
    import papyflow.structures.parameters

    for module in (papyflow.structures.nested, papyflow.structures.parameters):
        results = doctest.testmod(module, raise_on_error=False)
        assert results.attempted > 0 and results.failed == 0, module.__name__
