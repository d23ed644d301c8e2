"""The data logger's documentation: its examples run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

DOC = Path(__file__).resolve().parent.parent / "docs" / "_storage_datalogger.md"


def test_the_examples_of_the_data_logger_documentation():
    results = doctest.testfile(str(DOC), module_relative=False,
                               optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 40
    assert results.failed == 0
