"""A description of the environment a pipeline runs in.

``get_runtime()`` is PaPy's ``PAPY_RUNTIME`` dictionary: what a log, a saved
pipeline or a bug report should record about the machine and the software.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

__all__ = ["DISTRIBUTIONS", "get_runtime"]

DISTRIBUTIONS = ("numpy", "networkx", "multiprocess", "dill", "pyzmq", "papyflow")
"""The distributions whose versions :func:`get_runtime` reports."""


def get_runtime() -> dict[str, Any]:
    """Return a new dict describing the running environment.

    Keys: ``python`` (version), ``implementation`` (``'CPython'``...),
    ``executable``, ``platform`` (a one-line OS description), ``system``,
    ``machine``, ``host``, ``pid``, ``cpu_count`` (CPUs in the machine),
    ``usable_cpus`` (CPUs this process may run on) and ``versions``, a dict from
    each name in :data:`DISTRIBUTIONS` to its installed version, or ``None``
    when it is not installed.
    """
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "versions": {name: _version(name) for name in DISTRIBUTIONS},
    }


def _usable_cpus() -> int | None:
    # The affinity mask (taskset, cgroups cpusets) can be smaller than the machine.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _version(name: str) -> str | None:
    # Package metadata, not an import: asking must not load numpy or zmq.
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
