"""The doctests of docs/_storage_structures.md (NestedDictionary, YamlConfig, converters) pass."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

FRAGMENT = Path(__file__).parent.parent / "docs" / "_storage_structures.md"


def test_structures_fragment_doctests_pass():
    results = doctest.testfile(
        str(FRAGMENT), module_relative=False, raise_on_error=False, report=True,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 50, f"too few examples found in {FRAGMENT.name}"
    assert results.failed == 0, f"{results.failed} doctest(s) failed in {FRAGMENT.name}"


def test_structures_fragment_starts_with_its_heading():
    first_line = FRAGMENT.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "## Configuration structures: NestedDictionary, YamlConfig, converters"


def test_structures_docstring_examples_pass():
    import papyflow.structures.nested
    import papyflow.structures.parameters

    for module in (papyflow.structures.nested, papyflow.structures.parameters):
        results = doctest.testmod(module, raise_on_error=False, report=True)
        assert results.attempted > 0 and results.failed == 0, module.__name__
