"""Data loaders: random access to a synchronization group's data.

Sequential algorithms get their main group one step at a time
(:mod:`papyflow.dataflow.inputs`); autonomous ones, and the secondary groups
of any algorithm, get a :class:`DataLoader` instead, which reads any step at
any time: ``loader[i]`` is the ``i``-th step of the mixed indices of its
inputs, ``(data by input name, start, end)``. A :class:`DataView` restricts
a loader to the steps inside one unit of one input (all the images of one
client, say).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._indices import mixDataIndices
from ._sources import DataSource

__all__ = ["DataLoader", "DataLoaderList", "DataView"]


class DataLoader:
    """Access to the data of a group of inputs synchronized together.

    Args:
        channel: the name of the group's data channel.

    Attributes:
        channel: as given.
        data_index_start: the smallest data index of all inputs (-1 while empty).
        data_index_end: the largest (-1 while empty).

    ``len(loader)`` and ``loader.count()`` give the number of steps;
    ``loader[i]`` is ``({input name: data}, start, end)`` of step ``i``.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.data_index_start = -1
        self.data_index_end = -1
        self._sources: dict[str, DataSource] = {}
        self._starts = np.zeros(0, np.int64)
        self._ends = np.zeros(0, np.int64)
        self._last: dict[str, tuple[int, Any]] = {}  # per input: the unit last read, its data

    def add(self, input_name: str, data_source: DataSource) -> None:
        """Add an input and its source.

        Raises:
            ValueError: an input of that name is already in the loader.
        """
        if input_name in self._sources:
            raise ValueError(f"data loader {self.channel!r} already has an input "
                             f"{input_name!r}")
        self._sources[input_name] = data_source
        mixed = mixDataIndices([source.data_indices() for source in self._sources.values()])
        self._starts = np.array([start for start, _ in mixed], np.int64)
        self._ends = np.array([end for _, end in mixed], np.int64)
        present = [s for s in self._sources.values() if len(s)]
        self.data_index_start = min(s.first_data_index() for s in present) if present else -1
        self.data_index_end = max(s.last_data_index() for s in present) if present else -1

    def reset(self) -> None:
        """Reset every data source (and forget the units last read)."""
        for source in self._sources.values():
            source.reset()
        self._last.clear()

    def input_names(self) -> list[str]:
        """The names of the inputs, in the order they were added."""
        return list(self._sources)

    def count(self, input_name: str | None = None) -> int:
        """The number of units of ``input_name``, or of steps when not given.

        Raises:
            KeyError: no such input.
        """
        if input_name is None:
            return len(self._starts)
        return len(self._source(input_name))

    def _source(self, input_name: str) -> DataSource:
        try:
            return self._sources[input_name]
        except KeyError:
            raise KeyError(f"data loader {self.channel!r} has no input {input_name!r} "
                           f"(inputs: {', '.join(map(repr, self._sources)) or 'none'})"
                           ) from None

    def view(self, input_name: str, index: int) -> DataView | None:
        """The steps inside unit ``index`` of input ``input_name``; ``None`` when
        there is no such unit.

        Raises:
            KeyError: no such input.
        """
        source = self._source(input_name)
        if not 0 <= index < len(source):
            return None
        start, end = source.units.range(index)
        first = int(np.searchsorted(self._ends, start))
        stop = int(np.searchsorted(self._starts, end, side="right"))
        return DataView(self, list(zip(self._starts[first:stop].tolist(),
                                       self._ends[first:stop].tolist(), strict=True)))

    def _data_at(self, start: int) -> dict[str, Any]:
        """Every input's data at data index ``start`` (a unit read once is reused)."""
        data = {}
        for name, source in self._sources.items():
            position = source.units.position_of(start)
            last = self._last.get(name)
            if last is not None and last[0] == position:
                data[name] = last[1]
                continue
            if position < 0:
                raise IndexError(f"data loader {self.channel!r}: input {name!r} has no unit "
                                 f"holding data index {start}")
            value = source[position][0]
            self._last[name] = (position, value)
            data[name] = value
        return data

    def __getitem__(self, index: int) -> tuple[dict[str, Any], int, int]:
        """Step ``index``: ``({input name: data}, start, end)``.

        Raises:
            IndexError: no such step.
        """
        size = len(self._starts)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(f"data loader {self.channel!r}: step {index} is out of range "
                             f"({size} steps)")
        start, end = int(self._starts[position]), int(self._ends[position])
        return self._data_at(start), start, end

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], int, int]]:
        for position in range(len(self)):
            yield self[position]

    def __repr__(self) -> str:
        return (f"<DataLoader {self.channel!r}: inputs {self.input_names()}, "
                f"{len(self)} steps>")


class DataView:
    """The steps of a data loader within a range of data indices.

    Args:
        data_loader: the loader viewed.
        data_indices: the ``(start, end)`` ranges of the steps in the view.

    Attributes:
        data_index_start: the first data index of the view.
        data_index_end: its last.

    ``view[i]`` is ``({input name: data}, start, end)`` of its ``i``-th step.
    """

    def __init__(self, data_loader: DataLoader, data_indices: list[tuple[int, int]]) -> None:
        self._loader = data_loader
        self._indices = list(data_indices)
        self.data_index_start = self._indices[0][0] if self._indices else -1
        self.data_index_end = self._indices[-1][1] if self._indices else -1

    def count(self, input_name: str | None = None) -> int:
        """The number of units of ``input_name`` within the view, or of steps when
        not given.

        Raises:
            KeyError: no such input.
        """
        if input_name is None:
            return len(self._indices)
        if not self._indices:
            return 0
        units = self._loader._source(input_name).units
        first = units.position_of(self.data_index_start)
        last = units.position_of(self.data_index_end)
        return last - first + 1 if first >= 0 and last >= 0 else 0

    def __getitem__(self, index: int) -> tuple[dict[str, Any], int, int]:
        """Step ``index`` of the view: ``({input name: data}, start, end)``.

        Raises:
            IndexError: no such step.
        """
        size = len(self._indices)
        position = index + size if index < 0 else index
        if not 0 <= position < size:
            raise IndexError(f"data view {self.data_index_start}..{self.data_index_end}: "
                             f"step {index} is out of range ({size} steps)")
        start, end = self._indices[position]
        return self._loader._data_at(start), start, end

    def __len__(self) -> int:
        return len(self._indices)

    def __iter__(self) -> Iterator[tuple[dict[str, Any], int, int]]:
        for position in range(len(self)):
            yield self[position]

    def __repr__(self) -> str:
        return f"<DataView {self.data_index_start}..{self.data_index_end}: {len(self)} steps>"


class DataLoaderList:
    """The data loaders of a block; the first added is the main one.

    ``loaders['channel']`` and ``loaders[i]`` reach a loader, iteration and
    ``len`` all of them.
    """

    def __init__(self) -> None:
        self._loaders: list[DataLoader] = []

    @property
    def main_loader(self) -> DataLoader | None:
        """The first loader added (``None`` while there is none)."""
        return self._loaders[0] if self._loaders else None

    def add(self, data_loader: DataLoader) -> None:
        """Add a loader.

        Raises:
            ValueError: a loader of that channel is already in the list.
        """
        if any(other.channel == data_loader.channel for other in self._loaders):
            raise ValueError(f"the list already has a data loader {data_loader.channel!r}")
        self._loaders.append(data_loader)

    def loaderOf(self, input_name: str) -> DataLoader | None:
        """The loader that has the input ``input_name`` (``None`` when none has it)."""
        for loader in self._loaders:
            if input_name in loader.input_names():
                return loader
        return None

    def secondaries(self) -> list[DataLoader]:
        """Every loader but the main one."""
        return self._loaders[1:]

    def __len__(self) -> int:
        return len(self._loaders)

    def __iter__(self) -> Iterator[DataLoader]:
        return iter(self._loaders)

    def __getitem__(self, key: int | str) -> DataLoader:
        """The loader of that channel, or at that position.

        Raises:
            KeyError: no loader of that channel.
        """
        if isinstance(key, str):
            for loader in self._loaders:
                if loader.channel == key:
                    return loader
            raise KeyError(f"no data loader {key!r} (loaders: "
                           f"{', '.join(repr(d.channel) for d in self._loaders) or 'none'})")
        return self._loaders[key]

    def __repr__(self) -> str:
        return f"<DataLoaderList: {', '.join(repr(d.channel) for d in self._loaders)}>"
