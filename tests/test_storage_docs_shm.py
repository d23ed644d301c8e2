"""The examples of the shared-memory section of the storage docs run as written."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_shared_memory_examples_run():
    page = DOCS / "storage.md" if (DOCS / "storage.md").exists() else DOCS / "_storage_shm.md"
    results = doctest.testfile(str(page), module_relative=False, verbose=False,
                               optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 15
    assert results.failed == 0
