"""Shared pieces of the block tests: writing assets under a prefix, an in-memory sink."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from papyflow.dataflow.data import DataSink


def declare(prefix: Path, folder: str, name: str, declaration: dict | str,
            code: str | None = None, doc: str | None = None) -> Path:
    """Write an asset's declaration (a dict, or raw JSON text), code and documentation.

    ``folder`` is ``dataformats``, ``libraries`` or ``algorithms``; the code is
    dedented. Returns the path of the declaration.
    """
    path = prefix / folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = declaration if isinstance(declaration, str) else json.dumps(declaration, indent=4)
    path.write_text(text)
    if code is not None:
        path.with_suffix(".py").write_text(textwrap.dedent(code))
    if doc is not None:
        path.with_suffix(".rst").write_text(doc)
    return path


def json_of(prefix: Path, folder: str, name: str) -> str:
    return str(prefix / folder / f"{name}.json")


def code_of(prefix: Path, folder: str, name: str) -> str:
    return str(prefix / folder / f"{name}.py")


class ListSink(DataSink):
    """Keeps the units written, in memory, as records of ``record_type`` when given."""

    def __init__(self, record_type: Any = None) -> None:
        self.record_type = record_type
        self.units: list[tuple[Any, int, int]] = []

    def write(self, data: Any, start_data_index: int, end_data_index: int) -> None:
        if self.record_type is not None and isinstance(data, Mapping):
            data = self.record_type.from_dict(data, casting="same_kind")
        self.units.append((data, start_data_index, end_data_index))

    def isConnected(self) -> bool:
        return True
