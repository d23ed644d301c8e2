"""papyflow.formats: declare dataformats, load them, make and pack records.

Run from the repository root: ``python examples/formats_demo.py``.
"""

import json
import tempfile
from pathlib import Path

from papyflow.formats.dataformat import DataFormat


def declare(prefix: Path, name: str, declaration: dict) -> None:
    """Write a declaration where a DataFormat looks for it."""
    path = prefix / "dataformats" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(declaration, indent=4))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder)
        declare(prefix, "demo/point/1", {"#description": "A 2-D point",
                                         "x": "float64", "y": "float64"})
        declare(prefix, "demo/spot/1", {
            "#description": "A labelled point with a small patch of pixels",
            "#extends": "demo/point/1",           # x and y come first
            "label": "string",
            "patch": [2, 2, "uint8"],             # a fixed 2x2 array
            "scores": [0, "float32"],             # any number of scores
            "weight": "system/float32/1",         # a system format, shipped with papyflow
        })
        declare(prefix, "demo/typo/1", {"size": "flaot32"})

        spot = DataFormat(prefix, "demo/spot/1")
        print(f"{spot.name} valid: {spot.valid}; fields: {', '.join(spot.resolved)}")

        typo = DataFormat(prefix, "demo/typo/1")
        print("demo/typo/1:", typo.errors[0].split("dataformats/", 1)[1])

        Spot = spot.type
        record = Spot().from_dict({"x": 1.5, "y": -2.0, "label": "left eye",
                                   "patch": [[0, 255], [128, 64]], "scores": [0.25, 0.75],
                                   "weight": {"value": 0.5}})
        packed = record.pack()
        back = Spot().unpack(packed)
        print(f"packed into {len(packed)} bytes; unpacked label: {back.label!r}, "
              f"patch sum: {int(back.patch.sum())}")
        spot.validate(packed)  # raises if the bytes are not one whole record
        print("hash:", spot.hash()[:16], "...")
