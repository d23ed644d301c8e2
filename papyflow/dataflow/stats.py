"""I/O statistics of a block: bytes and units read and written, time spent.

:func:`io_statistics` sums what the data sources of the inputs and the data
sinks of the outputs count; :func:`update` adds the statistics of one run to
a running total. The dict::

    {
        "volume":  {"read": bytes, "write": bytes},
        "blocks":  {"read": units, "write": units},
        "time":    {"read": seconds, "write": seconds},
        "network": {"wait_time": seconds},          # waiting for remote sources
        "files":   [{"hash": path, "type": "input" | "output", "name": ...}, ...],
    }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .inputs import InputList
from .outputs import OutputList

__all__ = ["io_statistics", "update"]


def _files(configuration: Mapping[str, Any]) -> list[dict[str, str]]:
    """The cache files named in an executor configuration."""
    files = []
    for kind, key in (("input", "inputs"), ("output", "outputs"), ("output", "result")):
        section = configuration.get(key) or {}
        entries: Iterable[tuple[str, Any]]
        if key == "result" and isinstance(section, Mapping) and "path" in section:
            entries = [("result", section)]
        elif isinstance(section, Mapping):
            entries = section.items()
        else:
            entries = []
        for name, entry in entries:
            if isinstance(entry, Mapping) and "path" in entry:
                files.append({"hash": str(entry["path"]), "type": kind, "name": str(name)})
    return files


def io_statistics(configuration: Mapping[str, Any], input_list: InputList | None = None,
                  output_list: OutputList | None = None) -> dict[str, Any]:
    """Summarize the I/O of a block's inputs and outputs.

    Args:
        configuration: the executor configuration; the entries of its
            ``inputs``, ``outputs`` (name to a dict with a ``path``, the cache
            hash path) and ``result`` (a dict with a ``path``) are listed
            under ``files``.
        input_list: the inputs whose sources to count (a source shared by
            several inputs counts once).
        output_list: the outputs whose sinks to count.

    Returns:
        The statistics dict described in this module's docstring.
    """
    read = write = blocks_read = blocks_written = 0
    read_time = write_time = wait_time = 0.0
    seen: set[int] = set()
    for input_ in input_list or ():
        blocks_read += input_.nb_data_blocks_read
        source = input_.data_source
        if id(source) in seen:
            continue
        seen.add(id(source))
        size, duration = source.statistics()
        read += size
        read_time += duration
        wait_time += getattr(source, "network_wait_time", 0.0)
    for output in output_list or ():
        blocks_written += output.nb_data_blocks_written
        size, duration = output.data_sink.statistics()
        write += size
        write_time += duration
    return {
        "volume": {"read": read, "write": write},
        "blocks": {"read": blocks_read, "write": blocks_written},
        "time": {"read": read_time, "write": write_time},
        "network": {"wait_time": wait_time},
        "files": _files(configuration),
    }


def update(statistics: dict[str, Any], additional_statistics: Mapping[str, Any]) -> None:
    """Add ``additional_statistics`` into ``statistics``, in place.

    Only the entries ``statistics`` already has are updated, none is
    created: numbers are added, dicts are updated the same way, lists are
    extended.
    """
    for key, value in additional_statistics.items():
        if key not in statistics:
            continue
        mine = statistics[key]
        if isinstance(mine, dict) and isinstance(value, Mapping):
            update(mine, value)
        elif isinstance(mine, list) and isinstance(value, list):
            mine.extend(value)
        elif isinstance(mine, int | float) and not isinstance(mine, bool) \
                and isinstance(value, int | float) and not isinstance(value, bool):
            statistics[key] = mine + value
