"""Shared pieces of the database tests: a prefix with dataformats and a database
whose views generate their data (a few clients with a few samples each)."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

FORMATS: dict[str, dict[str, Any]] = {
    "test/client/1": {"id": "int32"},
    "test/point/1": {"x": "float64", "y": "float64"},
    "test/sample/1": {"id": "int64", "features": [3, "float64"], "label": "string",
                      "where": "test/point/1"},
}

# The views count their index() calls in <root_folder>/index_calls.
CODE = textwrap.dedent('''
    import collections
    import os

    from papyflow.blocks.database import View

    Entry = collections.namedtuple("Entry", ["client", "sample", "features"])


    def count_call(root_folder):
        if root_folder:
            with open(os.path.join(root_folder, "index_calls"), "a") as stream:
                stream.write("index\\n")


    class Clients(View):
        """Clients 0, 1, ... with samples c * 100 + s each."""

        def index(self, root_folder, parameters):
            count_call(root_folder)
            return [Entry(c, c * 100 + s, [float(c), float(s), 0.5])
                    for c in range(parameters["clients"]) for s in range(parameters["samples"])]

        def setup(self, root_folder, parameters, objs, start_index=None, end_index=None):
            self.seen_range = (start_index, end_index)
            return super().setup(root_folder, parameters, objs, start_index, end_index)

        def get(self, output, index):
            entry = self.objs[index]
            if output == "client":
                return {"id": entry.client}
            return {"id": entry.sample, "features": entry.features,
                    "label": f"c{entry.client}", "where": {"x": entry.client, "y": 0.0}}


    class Mapped(Clients):
        """Output 'person' follows the field 'client'."""

        def get_output_mapping(self, output):
            return "client" if output == "person" else output

        def get(self, output, index):
            return super().get("client" if output == "person" else output, index)
''')

DECLARATION: dict[str, Any] = {
    "description": "Synthetic clients",
    "protocols": [
        {
            "name": "main",
            "template": "train_eval",
            "sets": [
                {
                    "name": "train",
                    "template": "train",
                    "view": "Clients",
                    "parameters": {"clients": 3, "samples": 2},
                    "outputs": {"client": "test/client/1", "sample": "test/sample/1"},
                },
                {
                    "name": "eval",
                    "view": "Clients",
                    "parameters": {"clients": 2, "samples": 3},
                    "outputs": {"client": "test/client/1", "sample": "test/sample/1"},
                },
            ],
        },
        {
            "name": "mapped",
            "sets": [
                {
                    "name": "all",
                    "view": "Mapped",
                    "parameters": {"clients": 2, "samples": 2},
                    "outputs": {"person": "test/client/1", "sample": "test/sample/1"},
                },
            ],
        },
    ],
}


def declaration() -> dict[str, Any]:
    """A fresh copy of the test database's declaration."""
    return copy.deepcopy(DECLARATION)


def write_formats(prefix: Path) -> None:
    for name, body in FORMATS.items():
        path = prefix / "dataformats" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))


def write_database(prefix: Path, name: str = "db/1", body: dict[str, Any] | str | None = None,
                   code: str | None = CODE, doc: str | None = None) -> Path:
    """Write a database (declaration, code, documentation) under ``prefix``; return
    the declaration's path."""
    path = prefix / "databases" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = declaration() if body is None else body
    path.write_text(body if isinstance(body, str) else json.dumps(body, indent=4))
    if code is not None:
        path.with_suffix(".py").write_text(code)
    if doc is not None:
        path.with_suffix(".rst").write_text(doc)
    return path


def make_prefix(root: Path, **options: Any) -> Path:
    """A prefix with the test dataformats and the database ``db/1``."""
    write_formats(root)
    write_database(root, **options)
    return root
