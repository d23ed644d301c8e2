"""Logging a Piper's results: a worker function that logs each item and passes it on.

::

    plumber.add_pipe((Piper(compute), Piper(log_results(logger, source_id=7)), ...))

Each result becomes a :class:`LogPackage` of ``source_id``, a time stamp
(``time.time_ns()``, nanoseconds since the epoch, made strictly increasing across
every process that logs to the logger, by a clock they share, so two results never
share a file) and the serialized result.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .input_queue import LogQueue
from .package import LogPackage

__all__ = ["LogResults", "log_results", "serialize"]


def serialize(value: Any) -> np.ndarray:
    """``value`` as a ``uint8`` array.

    A NumPy array gives its raw bytes in C order (dtype and shape are not kept:
    log them yourself if a reader needs them); ``bytes``, ``bytearray`` and
    ``memoryview`` give their bytes; anything else is pickled (highest protocol),
    and ``pickle.loads(array.tobytes())`` gives it back. So are arrays of objects
    and masked arrays, whose mask is not in the raw bytes.
    """
    if isinstance(value, np.ndarray) and not value.dtype.hasobject \
            and not isinstance(value, np.ma.MaskedArray):
        return np.frombuffer(np.ascontiguousarray(value).tobytes(), dtype=np.uint8)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(value), dtype=np.uint8)
    return _pickled(value)


def _pickled(value: Any) -> np.ndarray:
    return np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)


class LogResults:
    """A Piper worker function: ``f(inbox)`` logs ``inbox[0]`` and returns it.

    Picklable (it holds the logger's :class:`LogQueue`, not the logger), so it runs
    in NuMap worker processes too. A put that fails (the logger is broken or shut
    down) raises, and the Piper reports that item as failed.
    """

    __slots__ = ("queue", "serializer", "source_id")

    def __init__(self, queue: LogQueue, source_id: int,
                 serializer: Callable[[Any], np.ndarray] = serialize) -> None:
        LogPackage(source_id, 0, np.zeros(0, np.uint8))  # validates the source id now, not at the first item
        if not callable(serializer):  # else every item would fail, with "not callable"
            raise TypeError(f"log_results: serializer must be callable, got "
                            f"{type(serializer).__name__}")
        self.queue = queue
        self.source_id = source_id
        self.serializer = serializer

    def __getstate__(self) -> tuple[LogQueue, int, Callable[[Any], np.ndarray]]:
        return self.queue, self.source_id, self.serializer

    def __setstate__(self, state: tuple[LogQueue, int, Callable[[Any], np.ndarray]]) -> None:
        self.queue, self.source_id, self.serializer = state

    def __repr__(self) -> str:
        return f"log_results({self.queue!r}, source_id={self.source_id})"

    def __call__(self, inbox: Sequence[Any]) -> Any:
        item = inbox[0]
        # Stamped by the logger's shared clock as it is sent (the 0 is not used).
        self.queue._put_stamped(LogPackage(self.source_id, 0, self.serializer(item)))
        return item


def log_results(logger: Any, source_id: int,
                serializer: Callable[[Any], np.ndarray] = serialize) -> LogResults:
    """A Piper worker function that logs each result through ``logger`` as ``source_id``.

    ``logger`` is a :class:`DataLogger` or its ``input_queue``; ``serializer`` turns a
    result into a ``uint8`` array (default: :func:`serialize`).
    """
    queue = logger.input_queue if hasattr(logger, "input_queue") else logger
    if not isinstance(queue, LogQueue):
        raise TypeError(f"log_results: expected a DataLogger or its input_queue, "
                        f"got {type(logger).__name__}")
    return LogResults(queue, source_id, serializer)
