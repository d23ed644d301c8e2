"""Two inputs at different rates, read as one synchronization group.

::

    pulses   (one unit per second) ----+
                                       +--> relative (synchronized, threads) --> report
    sessions (one unit per session) ---+

Every item is a data unit ``(data, start, end)``: the data, and the range of
data indices (here: seconds) it covers. ``pulses`` gives one unit per second;
``sessions`` gives one unit per session, spanning all of its seconds, with the
session's resting pulse. ``relative`` is ``synchronized``: it fires once per
second, with the pulse of that second and the session that second belongs to
(the same session unit again and again, flagged ``data_same_as_previous``,
until the next session starts), and each of its results leaves as a unit of
that second. ``report`` prints the first second of each session and the
seconds more than 30 beats above rest.

Run it with ``papyflow run examples/pipeline_synchronized.py`` or as
``python examples/pipeline_synchronized.py``.
"""

import sys

from numap import NuMap
from papyflow import Piper, Plumber
from papyflow.dataflow.units import Unit

SESSIONS = [("walk", 72, 6), ("run", 80, 8), ("rest", 64, 4)]  # name, resting pulse, seconds


def pulses():
    """One unit per second: (beats per minute, second, second)."""
    second = 0
    for _, rest, seconds in SESSIONS:
        for k in range(seconds):
            yield Unit(rest + 5 * k, second, second)
            second += 1


def sessions():
    """One unit per session: ((name, resting pulse), first second, last second)."""
    first = 0
    for name, rest, seconds in SESSIONS:
        yield Unit((name, rest), first, first + seconds - 1)
        first += seconds


def passed_on(inbox):
    return inbox[0]


def relative(inbox):
    """The pulse above rest, with the session: one call per second."""
    pulse, session = inbox
    name, rest = session.data
    return name, pulse.data - rest, not session.data_same_as_previous


def report(inbox):
    name, above, new_session = inbox[0].data
    second = inbox[0].start
    if new_session:
        print(f"second {second:2d}: session {name!r} starts", flush=True)
    if above > 30:
        print(f"second {second:2d}: {name} {above} beats above rest", flush=True)
    return above


threads = NuMap(worker_type="thread", worker_num=2, name="relative")
pulse_in = Piper(passed_on, name="pulses", branch=1)
session_in = Piper(passed_on, name="sessions", branch=2)
step = Piper(relative, parallel=threads, synchronized=True, name="relative")

plumber = Plumber()
plumber.add_pipe((pulse_in, step, Piper(report, name="report")))
plumber.add_pipe((session_in, step))


def DATA():
    return [pulses(), sessions()]


if __name__ == "__main__":
    from papyflow.cli import main

    sys.exit(main(["run", __file__, *sys.argv[1:]]))
