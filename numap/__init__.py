"""numap: a lazy, buffered, multi-task parallel map over threads and processes.

>>> from numap import NuMap
>>> with NuMap(abs, [-1, -2, 3], worker_type='thread', worker_num=2) as results:
...     list(results)
[1, 2, 3]

See ``docs/numap.md`` for the whole story.
"""

from ._errors import (
    BrokenPoolError,
    NuMapError,
    RemoteTraceback,
    TimeoutError,
    WorkerLostError,
)
from ._imports import imports
from ._inlet import INPUT_FAILURES_IN_ROW
from ._map import NuMap
from ._tasks import NuMapTask

__all__ = [
    "INPUT_FAILURES_IN_ROW",
    "BrokenPoolError",
    "NuMap",
    "NuMapError",
    "NuMapTask",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerLostError",
    "imports",
]
