"""docs/storage.md: every example on the page runs as written, and the modules' own examples."""

from __future__ import annotations

import doctest
import inspect
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "storage.md"


def test_every_example_of_the_storage_page_runs():
    results = doctest.testfile(str(PAGE), module_relative=False, raise_on_error=False,
                               optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert results.attempted > 150, "examples went missing from docs/storage.md"
    assert results.failed == 0


def test_the_plain_code_blocks_of_the_storage_page_run(tmp_path, monkeypatch):
    # doctest.testfile runs the ">>>" examples only; a block of plain code runs here,
    # each in a namespace of its own, unless marked as an outline ("not run")
    from tests.test_docs import blocks_of, check_not_run_markers, run_block

    check_not_run_markers(PAGE)
    monkeypatch.chdir(tmp_path)
    plain = [b for b in blocks_of(PAGE) if b.lang == "python" and not b.is_doctest]
    assert len(plain) >= 5, "code blocks went missing from docs/storage.md"
    ran = 0
    for block in plain:
        if not block.skipped:
            run_block(block, PAGE.name, {"__name__": "__main__"})
            ran += 1
    assert ran >= 3


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


# The public names the page gives, with the members it names: each has a docstring.
_NAMED = {
    "papyflow.shm": {"SharedMemoryArray": ["create_array", "connect", "disconnect", "destroy",
                                           "is_connected", "read_data", "write_data"]},
    "papyflow.datalogger": {
        "DataLogger": ["start", "shutdown", "compress_logs", "output_directory", "input_queue",
                       "phase", "started", "failures", "saver_pids", "statistics"],
        "LogPackage": [], "LogQueue": ["put", "close"], "log_results": [], "compress_logs": [],
        "serialize": [], "LoggerStatistics": [], "FailedPackage": [],
    },
    "papyflow.storage": {
        "HDF5StorageService": ["store", "load", "opened", "flush", "close"],
        "LockWrapper": ["store", "load"], "LazyStorageService": ["store", "load"],
        "StorageQueue": ["sender", "watch_writer", "watch"],
        "QueueStorageServiceSender": ["store", "send_done", "wait_acknowledged"],
        "QueueStorageServiceWriter": ["run"], "Result": [], "Parameter": [],
        "Group": ["add", "walk"], "Leaf": ["set_flag"],
    },
    "papyflow.structures": {
        "NestedDictionary": ["read_nested_value", "write_nested_value", "delete_nested_value",
                             "extract_nested_variable_paths", "find_nested_variable_path",
                             "convert_all_keys_to_datatype", "key_datatypes",
                             "set_path_delimiter"],
        "YamlConfig": ["to_yaml", "from_yaml"], "parse_parameters": [],
        "NumericConverter": ["validate_value"], "BooleanConverter": ["validate_value"],
        "StringConverter": ["validate_value"], "NoneConverter": ["validate_value"],
        "PythonDataConverter": ["validate_value"],
        "NumpyDataConverter": ["convert_value_to_numpy", "convert_value_from_numpy"],
    },
}


def test_the_names_the_page_gives_have_docstrings():
    import importlib

    missing = []
    for module_name, names in _NAMED.items():
        module = importlib.import_module(module_name)
        for name, members in names.items():
            obj = getattr(module, name)
            if not (obj.__doc__ or "").strip():
                missing.append(f"{module_name}.{name}")
            for member in members:
                attribute = inspect.getattr_static(obj, member)
                target = attribute.fget if isinstance(attribute, property) else \
                    getattr(attribute, "__func__", attribute)
                if not (getattr(target, "__doc__", None) or "").strip():
                    missing.append(f"{module_name}.{name}.{member}")
    assert missing == []
