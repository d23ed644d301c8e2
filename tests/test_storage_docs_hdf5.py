"""The examples of docs/_storage_hdf5.md run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

DOC = Path(__file__).resolve().parent.parent / "docs" / "_storage_hdf5.md"


def test_the_hdf5_storage_docs_run() -> None:
    result = doctest.testfile(str(DOC), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 30
    assert result.failed == 0
