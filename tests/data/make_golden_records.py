"""Write ``golden_records.json``: sample records and their packed bytes.

The bytes are computed here by a small encoder of its own, written straight
from the layout in ``docs/formats.md`` with :mod:`struct` and independent of
papyflow's encoder, so the test that compares papyflow's bytes with these
checks the layout, not papyflow against itself. Run it from the repository
root only when samples are added::

    python tests/data/make_golden_records.py
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

CODES = {
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "float32": "f", "float64": "d", "bool": "?",
}

# Each sample: the record types it needs, in order (name, fields), the last one
# being the sample's type; and one record of it as JSON (complex as [re, im]).
SAMPLES: list[dict[str, Any]] = [
    {
        "name": "every scalar type",
        "types": [["test/scalars/1", {
            "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
            "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
            "f32": "float32", "f64": "float64", "c64": "complex64", "c128": "complex128",
            "yes": "bool", "no": "bool", "text": "string"}]],
        "value": {"i8": -128, "i16": -2, "i32": 2147483647, "i64": -9223372036854775808,
                  "u8": 255, "u16": 513, "u32": 4294967295, "u64": 18446744073709551615,
                  "f32": -1.5, "f64": 0.1, "c64": [1.25, -2.0], "c128": [-0.0, 1e300],
                  "yes": True, "no": False, "text": "hello"},
    },
    {
        "name": "strings, empty and non-ASCII",
        "types": [["test/strings/1", {"empty": "string", "accents": "string",
                                      "cjk": "string", "emoji": "string"}]],
        "value": {"empty": "", "accents": "d\u00e9j\u00e0 vu", "cjk": "\u65e5\u672c",
                  "emoji": "\U0001f600!"},
    },
    {
        "name": "fixed, variable and multi-dimensional arrays",
        "types": [["test/arrays/1", {"fixed": [3, "int16"], "variable": [0, "float64"],
                                     "grid": [2, 0, "uint8"], "empty": [0, 0, "int32"],
                                     "flags": [4, "bool"], "cplx": [0, "complex64"]}]],
        "value": {"fixed": [1, -1, 256], "variable": [0.5, -2.0],
                  "grid": [[1, 2, 3], [4, 5, 6]], "empty": [], "flags": [True, False, False, True],
                  "cplx": [[1.0, 2.0]]},
    },
    {
        "name": "arrays of strings",
        "types": [["test/string_arrays/1", {"tags": [0, "string"],
                                            "table": [2, 2, "string"]}]],
        "value": {"tags": ["a", "", "\u00fc\u00df"], "table": [["x", "yz"], ["", "\u20ac"]]},
    },
    {
        "name": "nested records and arrays of records",
        "types": [
            ["test/meta/1", {"source": "string", "frame": "uint32"}],
            ["test/point/1", {"x": "float32", "y": "float32"}],
            ["test/empty/1", {}],
            ["test/shape/1", {"meta": "test/meta/1", "corners": [2, "test/point/1"],
                              "path": [0, "test/point/1"], "notes": [0, "test/meta/1"],
                              "nothing": "test/empty/1", "nothings": [0, "test/empty/1"],
                              "closed": "bool"}],
        ],
        "value": {"meta": {"source": "cam", "frame": 7},
                  "corners": [{"x": 0.0, "y": 1.0}, {"x": 2.5, "y": -3.0}],
                  "path": [{"x": 1.0, "y": 1.0}],
                  "notes": [{"source": "\u00e9", "frame": 1}, {"source": "", "frame": 2}],
                  "nothing": {}, "nothings": [{}, {}, {}], "closed": True},
    },
    {
        "name": "a fixed-size record with a fixed array and a nested record",
        "types": [
            ["test/pixel/1", {"rgb": [3, "uint8"], "alpha": "float32"}],
            ["test/tile/1", {"id": "uint16", "pixels": [2, "test/pixel/1"],
                             "origin": "test/pixel/1", "valid": "bool"}],
        ],
        "value": {"id": 258, "pixels": [{"rgb": [1, 2, 3], "alpha": 0.5},
                                        {"rgb": [255, 0, 16], "alpha": 1.0}],
                  "origin": {"rgb": [9, 8, 7], "alpha": -1.0}, "valid": False},
    },
    {
        "name": "a record without fields",
        "types": [["test/nothing/1", {}]],
        "value": {},
    },
]


def _dims(value: Any, ndim: int, declared: list[int]) -> list[int]:
    dims = []
    level = value
    for axis in range(ndim):
        dims.append(len(level))
        if not level:
            dims += [d for d in declared[axis + 1:]]
            break
        level = level[0]
    return dims


def _flat(value: Any, ndim: int) -> list[Any]:
    if ndim == 0:
        return [value]
    return [x for v in value for x in _flat(v, ndim - 1)]


def encode(spec: Any, value: Any, types: dict[str, dict[str, Any]]) -> bytes:
    """The packed bytes of ``value`` for ``spec``, straight from the layout."""
    if isinstance(spec, list):
        *declared, element = spec
        dims = _dims(value, len(declared), declared)
        out = struct.pack(f"<{len(dims)}Q", *dims)
        return out + b"".join(encode(element, v, types) for v in _flat(value, len(declared)))
    if spec in CODES:
        return struct.pack("<" + CODES[spec], value)
    if spec in ("complex64", "complex128"):
        return struct.pack("<ff" if spec == "complex64" else "<dd", *value)
    if spec == "string":
        data = value.encode("utf-8")
        return struct.pack("<Q", len(data)) + data
    fields = types[spec]
    return b"".join(encode(sub, value[name], types) for name, sub in fields.items())


def main() -> None:
    out = []
    for sample in SAMPLES:
        types = {name: fields for name, fields in sample["types"]}
        last = sample["types"][-1][0]
        out.append({**sample, "hex": encode(last, sample["value"], types).hex()})
    path = Path(__file__).with_name("golden_records.json")
    samples = []
    for sample in out:  # one line per key: readable, and diffs stay small
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in sample.items()]
        samples.append(" {\n" + ",\n".join(lines) + "\n }")
    path.write_text("[\n" + ",\n".join(samples) + "\n]\n")
    print(f"wrote {len(out)} samples to {path}")


if __name__ == "__main__":
    main()
