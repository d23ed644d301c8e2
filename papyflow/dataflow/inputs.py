"""Inputs of a block, grouped into synchronization groups.

An :class:`Input` reads the units ``(data, start, end)`` of one data source.
The inputs of an :class:`InputGroup` move together, one *step* at a time: at
every step the inputs whose current unit ends where the step ends move on
to their next unit, and the others (coarser, their unit goes further) keep
the unit they have, flagged ``data_same_as_previous``. Each step covers the
next range of the mixed indices (:func:`~papyflow.dataflow.data.mixDataIndices`)::

    image   [0] [1] [2] [3] [4] [5]        one unit per data index
    client  [0 ....... 2] [3 ....... 5]    one unit per client

    step         0    1    2    3    4    5
    image moves  yes  yes  yes  yes  yes  yes
    client moves yes  no   no   yes  no   no   (data_same_as_previous the other times)

An :class:`InputList` holds the groups of a block; the first is the main
group, which drives a sequential algorithm.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from ._sources import DataSource

if TYPE_CHECKING:
    from .outputs import SynchronizationListener

__all__ = ["Input", "InputGroup", "InputList"]


class Input:
    """One input of a block: the units of a data source, read one at a time.

    Args:
        name: the input's name (the algorithm's name for it).
        data_format: the name of the dataformat it accepts.
        data_source: where its units come from.

    Attributes:
        group: the :class:`InputGroup` it belongs to (``None`` until added).
        name, data_format, data_source: as given.
        data: the record of the current unit (``None`` before the first).
        data_index: the first data index of the current unit (-1 before the first).
        data_index_end: its last data index (-1 before the first).
        data_same_as_previous: whether the last step of the group kept this
            input's unit (a coarse input that did not move on).
        nb_data_blocks_read: units read so far.
    """

    def __init__(self, name: str, data_format: str, data_source: DataSource) -> None:
        self.group: InputGroup | None = None
        self.name = name
        self.data_format = data_format
        self.data_source = data_source
        self.data: Any = None
        self.data_index = -1
        self.data_index_end = -1
        self.data_same_as_previous = False
        self.nb_data_blocks_read = 0
        self._next = 0  # the position of the next unit in the source

    def isDataUnitDone(self) -> bool:
        """Whether the current unit ends with the group's current step (so that the
        next step of the group moves this input on)."""
        if self.group is None:
            return True
        return self.data_index_end == self.group.data_index_end

    def hasMoreData(self) -> bool:
        """Whether the source has a unit after the current one."""
        return self._next < len(self.data_source)

    def hasDataChanged(self) -> bool:
        """Whether the current unit is new at this step (not kept from the previous one)."""
        return not self.data_same_as_previous

    def next(self) -> None:
        """Move on to the next unit.

        Only for inputs of a group without restricted access (an algorithm
        moving a secondary group on its own); the inputs of a restricted
        group move with :meth:`InputGroup.next`.

        Raises:
            RuntimeError: the group has restricted access.
            IndexError: there is no unit after the current one.
        """
        if self.group is not None and self.group.restricted_access:
            raise RuntimeError(f"input {self.name!r}: its group {self.group.channel!r} has "
                               "restricted access; the group moves its inputs together "
                               "(InputGroup.next)")
        self._advance()
        if self.group is not None:
            self.group._refresh()

    def _advance(self) -> None:
        if not self.hasMoreData():
            last = f" (its last unit ended at data index {self.data_index_end})" \
                if self.nb_data_blocks_read else ""
            raise IndexError(f"input {self.name!r} has no more data{last}")
        self.data, self.data_index, self.data_index_end = self.data_source[self._next]
        self._next += 1
        self.data_same_as_previous = False
        self.nb_data_blocks_read += 1

    def _restart(self) -> None:
        self.data = None
        self.data_index = self.data_index_end = -1
        self.data_same_as_previous = False
        self._next = 0

    def __repr__(self) -> str:
        return (f"<Input {self.name!r} ({self.data_format}): unit {self.data_index}.."
                f"{self.data_index_end}>")


class InputGroup:
    """Inputs synchronized together: they move one step of the mixed indices at a time.

    Args:
        channel: the name of the group's data channel.
        synchronization_listener: told the range of every step
            (:class:`~papyflow.dataflow.outputs.SynchronizationListener`), so
            that outputs know where a unit written now ends.
        restricted_access: whether only the runner moves the group (the
            inputs' own ``next`` then refuses).

    Attributes:
        data_index: the first data index of the current step (-1 before the first).
        data_index_end: its last data index (-1 before the first).

    A group is a sequence of its inputs: ``len``, iteration, ``group[i]`` and
    ``group['name']``.
    """

    def __init__(self, channel: str, synchronization_listener: SynchronizationListener | None
                 = None, restricted_access: bool = True) -> None:
        self.channel = channel
        self.synchronization_listener = synchronization_listener
        self.restricted_access = restricted_access
        self.data_index = -1
        self.data_index_end = -1
        self._inputs: list[Input] = []
        self._steps = 0

    def add(self, input_: Input) -> None:
        """Add an input to the group (before the first step).

        Raises:
            ValueError: an input of that name is already in the group.
        """
        if any(other.name == input_.name for other in self._inputs):
            raise ValueError(f"group {self.channel!r} already has an input {input_.name!r}")
        input_.group = self
        self._inputs.append(input_)

    def hasMoreData(self) -> bool:
        """Whether some input of the group has a unit after its current one."""
        return any(input_.hasMoreData() for input_ in self._inputs)

    def next(self) -> None:
        """Take the next step: the inputs whose unit ends with the current step move on.

        Raises:
            IndexError: no input has more data.
            ValueError: the inputs are not synchronized: one must move on but
                has no more data while others go on, or the units leave a gap
                or overlap (the message names the inputs and data indices).
        """
        if not self._inputs:
            raise ValueError(f"group {self.channel!r} has no input")
        if not self.hasMoreData():
            raise IndexError(f"group {self.channel!r} has no more data (the last step ended "
                             f"at data index {self.data_index_end})")
        previous_end = self.data_index_end
        moving = [input_ for input_ in self._inputs if input_.isDataUnitDone()]
        for input_ in moving:
            if not input_.hasMoreData():
                going = next(i for i in self._inputs if i.hasMoreData())
                raise ValueError(f"group {self.channel!r}: input {input_.name!r} ended at "
                                 f"data index {input_.data_index_end} but input "
                                 f"{going.name!r} goes on")
        for input_ in self._inputs:
            if input_ in moving:
                input_._advance()
            else:
                input_.data_same_as_previous = True
        expected = previous_end + 1 if self._steps else moving[0].data_index
        for input_ in moving:
            if input_.data_index != expected:
                kind = "a gap" if input_.data_index > expected else "an overlap"
                if not self._steps:
                    raise ValueError(f"group {self.channel!r}: input {input_.name!r} starts "
                                     f"at data index {input_.data_index}, input "
                                     f"{moving[0].name!r} at {expected}")
                raise ValueError(f"group {self.channel!r}: input {input_.name!r} has {kind} "
                                 f"at data index {expected}: its next unit covers "
                                 f"{input_.data_index}..{input_.data_index_end}")
        self._steps += 1
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the current step from the inputs' units and tell the listener."""
        self.data_index = max(input_.data_index for input_ in self._inputs)
        self.data_index_end = min(input_.data_index_end for input_ in self._inputs)
        if self.synchronization_listener is not None:
            self.synchronization_listener.onIntervalChanged(self.data_index,
                                                            self.data_index_end)

    def restart(self) -> None:
        """Go back to before the first step (the sources are read again)."""
        for input_ in self._inputs:
            input_._restart()
        self.data_index = self.data_index_end = -1
        self._steps = 0

    def __len__(self) -> int:
        return len(self._inputs)

    def __iter__(self) -> Iterator[Input]:
        return iter(self._inputs)

    def __getitem__(self, key: int | str) -> Input:
        """The input named ``key``, or at position ``key``."""
        if isinstance(key, str):
            for input_ in self._inputs:
                if input_.name == key:
                    return input_
            raise KeyError(f"group {self.channel!r} has no input {key!r} (it has "
                           f"{', '.join(repr(i.name) for i in self._inputs) or 'none'})")
        return self._inputs[key]

    def __repr__(self) -> str:
        return (f"<InputGroup {self.channel!r}: {len(self)} inputs, step {self.data_index}.."
                f"{self.data_index_end}>")


class InputList:
    """The inputs of a block, group by group; the first group is the main one.

    Indexing by name (``inputs['labels']``) and position (over all inputs, in
    group order), slicing, iteration and ``len`` reach the inputs;
    :meth:`group` reaches the groups.
    """

    def __init__(self) -> None:
        self._groups: list[InputGroup] = []

    @property
    def main_group(self) -> InputGroup | None:
        """The first group added (``None`` while there is none)."""
        return self._groups[0] if self._groups else None

    def add(self, group: InputGroup) -> None:
        """Add a group.

        Raises:
            ValueError: a group of that channel, or an input of the same name,
                is already in the list.
        """
        if any(other.channel == group.channel for other in self._groups):
            raise ValueError(f"the input list already has a group {group.channel!r}")
        names = {input_.name for input_ in self}
        for input_ in group:
            if input_.name in names:
                raise ValueError(f"the input list already has an input {input_.name!r}")
        self._groups.append(group)

    def nbGroups(self) -> int:
        """The number of groups."""
        return len(self._groups)

    def groupOf(self, input_name: str) -> InputGroup | None:
        """The group of the input ``input_name`` (``None`` when there is no such input)."""
        for group in self._groups:
            if any(input_.name == input_name for input_ in group):
                return group
        return None

    def hasMoreData(self) -> bool:
        """Whether some group has more data."""
        return any(group.hasMoreData() for group in self._groups)

    def group(self, name_or_index: str | int) -> InputGroup:
        """The group of that channel, or at that position.

        Raises:
            KeyError: no group of that channel.
            IndexError: no group at that position.
        """
        if isinstance(name_or_index, str):
            for group in self._groups:
                if group.channel == name_or_index:
                    return group
            raise KeyError(f"no input group {name_or_index!r} (groups: "
                           f"{', '.join(repr(g.channel) for g in self._groups) or 'none'})")
        return self._groups[name_or_index]

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups)

    def __iter__(self) -> Iterator[Input]:
        for group in self._groups:
            yield from group

    @overload
    def __getitem__(self, key: int | str) -> Input: ...

    @overload
    def __getitem__(self, key: slice) -> list[Input]: ...

    def __getitem__(self, key: int | str | slice) -> Input | list[Input]:
        """An input by name or position; a list of inputs for a slice."""
        if isinstance(key, str):
            for input_ in self:
                if input_.name == key:
                    return input_
            raise KeyError(f"no input {key!r} (inputs: "
                           f"{', '.join(repr(i.name) for i in self) or 'none'})")
        inputs = list(self)
        if isinstance(key, slice):
            return inputs[key]
        try:
            return inputs[key]
        except IndexError:
            raise IndexError(f"input {key} is out of range: the list has {len(inputs)} "
                             "inputs") from None

    def __repr__(self) -> str:
        return f"<InputList: {self.nbGroups()} groups, {len(self)} inputs>"
