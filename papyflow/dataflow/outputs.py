"""Outputs of a block: where it writes its units, in step with its inputs.

An :class:`Output` writes units to a data sink. A unit starts right after
the last one written; where it ends is given to :meth:`Output.write`, or
taken from the :class:`SynchronizationListener` that the input group tells
the range of every step: an algorithm that writes once per step writes
units of exactly the group's steps without naming a single index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, overload

from ._sinks import DataSink

__all__ = ["Output", "OutputList", "RemotelySyncedOutput", "SynchronizationListener"]


class SynchronizationListener:
    """Keeps the range of the current step of an input group, for the outputs.

    Attributes ``data_index_start`` and ``data_index_end`` (-1 before the first step).
    """

    def __init__(self) -> None:
        self.data_index_start = -1
        self.data_index_end = -1

    def onIntervalChanged(self, data_index_start: int, data_index_end: int) -> None:
        """The group took a step covering ``data_index_start..data_index_end``."""
        self.data_index_start = data_index_start
        self.data_index_end = data_index_end

    def __repr__(self) -> str:
        return f"<SynchronizationListener {self.data_index_start}..{self.data_index_end}>"


class Output:
    """One output of a block.

    Args:
        name: the output's name.
        data_sink: where the units go, set up with the output's dataformat.
        synchronization_listener: gives the end of a unit written without one.
        force_start_index: the data index of the first unit (the start of
            the block's range, for a block that processes part of the data).

    Attributes:
        name, data_sink: as given.
        last_written_data_index: the last data index written (one less than
            ``force_start_index`` before the first write).
        nb_data_blocks_written: units written so far.
    """

    def __init__(self, name: str, data_sink: DataSink,
                 synchronization_listener: SynchronizationListener | None = None,
                 force_start_index: int = 0) -> None:
        self.name = name
        self.data_sink = data_sink
        self._synchronization_listener = synchronization_listener
        self.last_written_data_index = force_start_index - 1
        self.nb_data_blocks_written = 0

    def _end(self, end_data_index: int | None) -> int:
        if end_data_index is not None:
            return int(end_data_index)
        listener = self._synchronization_listener
        if listener is None:
            raise ValueError(f"output {self.name!r}: give end_data_index; without a "
                             "synchronization listener there is no current step to end with")
        if listener.data_index_end < 0:
            raise ValueError(f"output {self.name!r}: give end_data_index; the input group "
                             "has not taken a step yet")
        return listener.data_index_end

    def write(self, data: Any, end_data_index: int | None = None) -> None:
        """Write one unit, from the data index after the last one written up to
        ``end_data_index`` (by default the end of the group's current step).

        ``data`` is a record, a dict of its fields or its packed bytes;
        ``None`` writes nothing (the output then misses data until a later
        unit covers the range).

        Raises:
            ValueError: the end is before the start (the message names both),
                or the sink refuses the range.
        """
        if data is None:
            return
        end = self._end(end_data_index)
        start = self.last_written_data_index + 1
        if end < start:
            raise ValueError(f"output {self.name!r}: cannot write a unit ending at data index "
                             f"{end}: data up to {self.last_written_data_index} is written, "
                             f"the next unit starts at {start}")
        self.data_sink.write(data, start, end)
        self.last_written_data_index = end
        self.nb_data_blocks_written += 1

    def isDataMissing(self) -> bool:
        """Whether the output has not written up to the end of the group's current step.

        A unit written past the step (a per-client result written at the
        client's first step, say) leaves nothing missing at the steps it covers.
        """
        listener = self._synchronization_listener
        return listener is not None and listener.data_index_end >= 0 and \
            self.last_written_data_index < listener.data_index_end

    def isConnected(self) -> bool:
        """Whether the sink takes data."""
        return self.data_sink.isConnected()

    def close(self) -> None:
        """Close the sink (a cached sink commits what was written)."""
        self.data_sink.close()

    def __repr__(self) -> str:
        return f"<Output {self.name!r}: written up to {self.last_written_data_index}>"


class _Socket(Protocol):
    def send_multipart(self, msg_parts: Sequence[bytes]) -> Any: ...

    def recv_multipart(self) -> list[bytes]: ...


class RemotelySyncedOutput(Output):
    """An output that tells another process about each unit it writes.

    After each unit it sends ``[b"wrt", name, last data index]`` (ASCII
    decimal) on ``socket`` (any object with ``send_multipart`` and
    ``recv_multipart``, a pyzmq ``REQ`` socket say) and waits for
    ``[b"ack"]``, so that a process reading the output (a loop evaluator)
    knows how far it may read.
    """

    def __init__(self, name: str, data_sink: DataSink, socket: _Socket,
                 synchronization_listener: SynchronizationListener | None = None,
                 force_start_index: int = 0) -> None:
        super().__init__(name, data_sink, synchronization_listener, force_start_index)
        self.socket = socket

    def write(self, data: Any, end_data_index: int | None = None) -> None:
        """Write one unit (as :meth:`Output.write`), then tell the other process.

        Raises:
            RuntimeError: the other process does not acknowledge.
        """
        if data is None:
            return
        super().write(data, end_data_index)
        self.socket.send_multipart([b"wrt", self.name.encode(),
                                    str(self.last_written_data_index).encode()])
        answer = self.socket.recv_multipart()
        if answer[:1] != [b"ack"]:
            raise RuntimeError(f"output {self.name!r}: the other process answered "
                               f"{answer!r} to the unit ending at "
                               f"{self.last_written_data_index}")


class OutputList:
    """The outputs of a block: by name, by position, sliced, iterated."""

    def __init__(self) -> None:
        self._outputs: list[Output] = []

    def add(self, output: Output) -> None:
        """Add an output.

        Raises:
            ValueError: an output of that name is already in the list.
        """
        if any(other.name == output.name for other in self._outputs):
            raise ValueError(f"the output list already has an output {output.name!r}")
        self._outputs.append(output)

    def __len__(self) -> int:
        return len(self._outputs)

    def __iter__(self) -> Iterator[Output]:
        return iter(self._outputs)

    @overload
    def __getitem__(self, key: int | str) -> Output: ...

    @overload
    def __getitem__(self, key: slice) -> list[Output]: ...

    def __getitem__(self, key: int | str | slice) -> Output | list[Output]:
        """An output by name or position; a list of outputs for a slice."""
        if isinstance(key, str):
            for output in self._outputs:
                if output.name == key:
                    return output
            raise KeyError(f"no output {key!r} (outputs: "
                           f"{', '.join(repr(o.name) for o in self._outputs) or 'none'})")
        return self._outputs[key]

    def __repr__(self) -> str:
        return f"<OutputList: {', '.join(repr(o.name) for o in self._outputs)}>"
