"""papyflow.archive: save objects as Python source, restore them anywhere; a DataSet on disk."""

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from papyflow.archive import Archive, DataSet, callable_source, restore

THRESHOLD = 0.5


def keep(reading):
    """A function of this script: archived by its source, with the global it reads."""
    return reading["level"] > THRESHOLD


def make_scaler(factor):
    return lambda x: x * factor


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        shared = {"sensor": "roof"}
        archive = Archive(array_threshold=1000)
        archive.insert(
            config=shared,
            readings=[shared, {"level": 0.7}],          # the same dict twice
            calibration=np.linspace(0, 1, 5),           # small: written inline
            history=np.random.default_rng(1).random((100, 50)),  # large: a side .npz
            keep=keep,
            scale=make_scaler(2.5),                      # a closure: a small factory
        )
        path = archive.save(where / "state.py")
        print("saved:", sorted(p.name for p in where.iterdir()))
        print("keep is written as:", callable_source(keep).how)
        text = path.read_text()
        print("\n".join(line for line in text.splitlines() if line.startswith("def ")))

        # Restore in a fresh interpreter: it needs only papyflow, numpy and the files.
        check = textwrap.dedent("""
            from pathlib import Path
            from papyflow.archive import restore
            res = restore(Path("state.py"))
            print(res["readings"][0] is res["config"] and res["keep"]({"level": 0.7})
                  and res["scale"](2) == 5.0 and res["history"].shape == (100, 50))
        """)
        done = subprocess.run([sys.executable, "-c", check], cwd=where, capture_output=True,
                              text=True, check=True, timeout=60)
        print("restored in a fresh interpreter:", done.stdout.strip())
        assert restore(path)["calibration"][-1] == 1.0

        # A DataSet: each name loaded only when asked for; infos always at hand.
        ds = DataSet("runs", "w", path=where)
        for level in (0.2, 0.9):
            ds._insert(np.full(500, level), info={"level": level})
        reader = DataSet("runs", path=where)
        print("data set:", {name: reader[name] for name in reader},
              "mean of x_1:", round(float(reader.x_1.mean()), 3))
