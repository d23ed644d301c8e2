"""Three process-parallel stages sharing one NuMap: one pool of workers for all of them.

::

    seeds --> simulate --> measure --> classify --> report
    (here)    [------------ pool: processes ---------]   (here)

Each input is the seed of a random walk:

- ``simulate`` draws a walk of 200,000 steps with numpy;
- ``measure`` takes its end point, its largest distance from zero, and how
  often it crossed zero;
- ``classify`` names the walk by those numbers;
- ``report`` prints one line per walk, in the order of the seeds.

The three parallel Pipers add their tasks to the NuMap ``pool``: they share its
worker processes and its buffer, so the pipeline holds two workers (or as many
as ``--workers`` says), not two per stage, and no more items than the buffer.

The inputs are the seeds 0 to 15 (``DATA``), or the integers in the files given
with ``--input``, one per line.

Run it with ``papyflow run examples/pipeline_shared_numap.py`` or as
``python examples/pipeline_shared_numap.py``.
"""

import sys

import numpy

from numap import NuMap
from papyflow import Piper, Plumber

STEPS = 200_000


def seeds(inbox):
    return int(inbox[0])


def simulate(inbox):
    seed = inbox[0]
    steps = numpy.random.default_rng(seed).choice((-1, 1), size=STEPS)
    return seed, numpy.cumsum(steps)


def measure(inbox):
    seed, walk = inbox[0]
    signs = numpy.sign(walk[walk != 0])
    crossings = int(numpy.count_nonzero(signs[1:] != signs[:-1]))
    return seed, int(walk[-1]), int(numpy.abs(walk).max()), crossings


def classify(inbox):
    seed, end, reach, crossings = inbox[0]
    if crossings < 50:  # it left zero early and seldom came back
        kind = "a drifter"
    elif reach > 1.25 * numpy.sqrt(STEPS):  # it went far, and came back
        kind = "a wanderer"
    else:
        kind = "a homebody"
    return seed, end, reach, crossings, kind


def report(inbox):
    seed, end, reach, crossings, kind = inbox[0]
    print(f"walk {seed:>3}: ends at {end:>5}, reaches {reach:>4}, crosses zero "
          f"{crossings:>4} times: {kind}", flush=True)
    return kind


pool = NuMap(worker_type="process", worker_num=2, name="pool")

plumber = Plumber()
plumber.add_pipe((
    Piper(seeds, name="seeds"),
    Piper(simulate, parallel=pool, name="simulate"),
    Piper(measure, parallel=pool, name="measure"),
    Piper(classify, parallel=pool, name="classify"),
    Piper(report, name="report"),
))

DATA = [range(16)]


if __name__ == "__main__":
    from papyflow.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
