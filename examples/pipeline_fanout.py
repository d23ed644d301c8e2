"""Fan-out and fan-in: one reading goes down two branches, and the branches meet again.

::

                 +--> kelvin (branch 1, threads) ---+
    parse -------+                                  +--> combine --> alerts
                 +--> level  (branch 2, processes) -+

- ``parse`` turns a line ``sensor,celsius`` into ``(sensor, celsius)``; a line
  that does not parse fails alone: it is counted as an error of ``parse``, and
  its failure flows on through both branches to the end, where ``alerts``
  passes it on without calling its function;
- ``kelvin`` converts the temperature; ``level`` grades it (``cold`` below -4 °C, ``ok``,
  ``warm`` from 30 °C, ``hot`` from 40 °C); both read every result of ``parse``;
- ``combine`` reads both branches. Its inbox holds their results in the order of
  the branches: ``branch=1`` (kelvin) first, ``branch=2`` (level) second;
- ``alerts`` prints the hot and the cold readings.

The inputs are lines of ``sensor,celsius``: those of the files given with
``--input``, or else made-up readings (``DATA``), the same every time.

Run it with ``papyflow run examples/pipeline_fanout.py`` or as
``python examples/pipeline_fanout.py``.
"""

import random
import sys

from numap import NuMap
from papyflow import Piper, Plumber


def parse(inbox):
    sensor, celsius = inbox[0].strip().split(",")
    return sensor, float(celsius)


def kelvin(inbox):
    sensor, celsius = inbox[0]
    return round(celsius + 273.15, 2)


def level(inbox):
    sensor, celsius = inbox[0]
    if celsius < -4.0:
        return "cold"
    if celsius >= 40.0:
        return "hot"
    return "warm" if celsius >= 30.0 else "ok"


def combine(inbox):
    """The inbox is (kelvin's result, level's result): the branch order."""
    kelvins, grade = inbox
    return grade, kelvins


def alerts(inbox):
    grade, kelvins = inbox[0]
    if grade in ("hot", "cold"):
        print(f"{grade:>4}: {kelvins:.2f} K", flush=True)
    return grade


threads = NuMap(worker_type="thread", worker_num=2, name="converters")
processes = NuMap(worker_type="process", worker_num=2, name="graders")

source = Piper(parse, name="parse")
to_kelvin = Piper(kelvin, parallel=threads, name="kelvin", branch=1)
to_level = Piper(level, parallel=processes, name="level", branch=2)
join = Piper(combine, name="combine")

plumber = Plumber()
plumber.add_pipe((source, to_kelvin, join, Piper(alerts, name="alerts")))
plumber.add_pipe((source, to_level, join))


def readings(count=20000, seed=7):
    """``count`` lines of ``sensor,celsius``; one in a thousand does not parse."""
    chooser = random.Random(seed)
    for number in range(count):
        if number % 1000 == 999:
            yield "garbled line\n"
            continue
        sensor = chooser.choice(("roof", "cellar", "boiler", "porch"))
        yield f"{sensor},{chooser.gauss(18.0, 7.0):.1f}\n"


def DATA():
    return [readings()]


if __name__ == "__main__":
    from papyflow.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
