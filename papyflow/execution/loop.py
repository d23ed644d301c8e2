"""Loops: a loop processor asks a loop evaluator, in another process, to validate.

::

    processor process (AlgorithmExecutor)          evaluator process (LoopExecutor)
    each step:  LoopChannel.read()   -- red -->     LoopMessageHandler -> read():
                                                      the evaluator's main group steps,
                                                      its code's read(inputs)
                process(..., loop_channel)
                  loop_channel.validate(h) -- val --> validate(h) -> (ok, answer)
                                         <-- ok, 1|0, packed answer
                outputs[...].write(...)  -- wrt -->  write(name, end): its code's
                  (RemotelySyncedOutput)              write(outputs, name, end)
    at the end: LoopChannel.done()       -- don -->  the handler ends; close() commits

The requests and answers travel packed, in the loop's request and answer
dataformats (``groups[0].loop`` of both algorithms).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..blocks.algorithm import Algorithm
from ..blocks.database import Database
from ..blocks.library import Library
from ..dataflow._remote import Auth, as_channel
from ..dataflow.outputs import OutputList
from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ..helpers import (
    create_outputs_from_configuration,
)
from ._block import BlockRun
from ._config import load_configuration, prefix_of
from .messagehandlers import LoopMessageHandler

__all__ = ["LoopChannel", "LoopExecutor"]


class LoopChannel:
    """A loop processor's link to its evaluator (given to its ``process`` as
    ``loop_channel``).

    Args:
        socket: a zmq socket connected to the evaluator's
            :class:`~papyflow.execution.LoopMessageHandler`, or a
            :class:`~papyflow.dataflow._remote.RemoteChannel`.
        auth: the key, for a zmq socket (see
            :func:`papyflow.dataflow._remote.resolve_auth`).
    """

    def __init__(self, socket: Any, *, auth: Auth = None) -> None:
        self.channel = as_channel(socket, auth)
        self.request_type: Any = None
        self.answer_type: Any = None

    def setup(self, algorithm: Algorithm, prefix: Any) -> None:
        """Take the loop's request and answer formats from ``algorithm`` (the processor).

        Raises:
            ValueError: the algorithm declares no loop.
        """
        if "request" not in algorithm.loop_map or "answer" not in algorithm.loop_map:
            raise ValueError(f"algorithm {algorithm.name!r} ({algorithm.type}) declares no "
                             "loop")
        self.prefix = prefix
        self.request_type = algorithm.dataformats[algorithm.loop_map["request"]].type
        self.answer_type = algorithm.dataformats[algorithm.loop_map["answer"]].type

    def validate(self, hypothesis: Any) -> tuple[bool, baseformat]:
        """Ask the evaluator whether ``hypothesis`` holds.

        Args:
            hypothesis: a record of the loop's request format, or a dict of its fields.

        Returns:
            ``(is_valid, answer)``, the answer a record of the loop's answer format.

        Raises:
            RuntimeError: :meth:`setup` was not called.
            RemoteError: the evaluator failed (``kind`` ``usr``: its code).
            AuthenticationError, RemoteTimeoutError: see
                :mod:`papyflow.dataflow._remote`.
        """
        if self.request_type is None:
            raise RuntimeError("LoopChannel: call setup(algorithm, prefix) first")
        record = hypothesis
        if isinstance(record, baseformat) and not isinstance(record, self.request_type):
            record = record.as_dict()
        if isinstance(record, Mapping):
            record = self.request_type.from_dict(record, casting="same_kind",
                                                 add_defaults=False)
        if not isinstance(record, self.request_type):
            raise TypeError(f"hypothesis: expected a {self.request_type._name} record or a "
                            f"dict, got {type(hypothesis).__name__}")
        reply = self.channel.request([b"val", record.pack()])
        if len(reply) != 3 or reply[0] != b"ok" or reply[1] not in (b"0", b"1"):
            raise RuntimeError(f"{self.channel.label}: a malformed answer to val")
        return reply[1] == b"1", self.answer_type.unpack(reply[2])

    def read(self) -> None:
        """Tell the evaluator that the processor takes its next step (it reads in step)."""
        self.channel.request([b"red"])

    def done(self) -> None:
        """Tell the evaluator that the processor is done (its handler ends)."""
        self.channel.request([b"don"])


class LoopExecutor(BlockRun):
    """Runs a loop evaluator and answers its processor through a
    :class:`~papyflow.execution.LoopMessageHandler`.

    Args:
        message_handler: the :class:`~papyflow.execution.LoopMessageHandler`
            (not started) the processor connects to.
        directory: the evaluator's configuration, as for
            :class:`~papyflow.execution.AlgorithmExecutor`; a configuration
            holding ``loop`` is the processor's, and its ``loop`` entry is used.
        dataformat_cache, database_cache, library_cache, cache_root, db_socket,
        prefix, auth: as for :class:`~papyflow.execution.AlgorithmExecutor`.

    Use: :meth:`setup`, :meth:`prepare`, :meth:`process` (runs the code's
    ``process`` once, then starts the handler), then :meth:`wait` for the
    processor's ``don``, and :meth:`close` (commits the evaluator's outputs
    when the processor said ``don``, discards them otherwise).

    Raises:
        ValueError: a wrong configuration, or an algorithm that is not a loop evaluator;
            the message handler is then destroyed (its address is free again).
    """

    def __init__(self, message_handler: LoopMessageHandler,
                 directory: Mapping[str, Any] | str | os.PathLike[str],
                 dataformat_cache: dict[str, DataFormat] | None = None,
                 database_cache: dict[str, Database] | None = None,
                 library_cache: dict[str, Library] | None = None,
                 cache_root: Any = None, db_socket: Any = None, *, prefix: Any = None,
                 auth: Auth = None) -> None:
        self.message_handler = message_handler
        try:
            self._open(directory, dataformat_cache, database_cache, library_cache, cache_root,
                       db_socket, prefix, auth)
        except BaseException:
            message_handler.destroy()  # its socket is bound: free the address
            raise

    def _open(self, directory: Mapping[str, Any] | str | os.PathLike[str],
              dataformat_cache: dict[str, DataFormat] | None,
              database_cache: dict[str, Database] | None,
              library_cache: dict[str, Library] | None, cache_root: Any, db_socket: Any,
              prefix: Any, auth: Auth) -> None:
        """Load the evaluator, its inputs and outputs; set the handler up to serve them."""
        config, folder = load_configuration(directory)
        loop = config.get("loop")
        self.data = dict(loop) if isinstance(loop, Mapping) else config
        self.prefix = prefix_of(prefix, folder)
        self._load("evaluator", dataformat_cache, library_cache)
        name = self.algorithm.name
        if not self.algorithm.is_loop_evaluator:
            raise ValueError(f"algorithm: {name!r} is {self.algorithm.type}, not a loop "
                             "evaluator")
        self._open_inputs(cache_root, db_socket, database_cache, auth)
        if self.algorithm.output_map:
            self.output_list, self.data_sinks = create_outputs_from_configuration(
                self.data, self.algorithm, self.prefix, cache_root, self.input_list,
                self.data_loaders)
        else:
            self.output_list, self.data_sinks = OutputList(), []
        self._closed = False
        self.message_handler.setup(self.algorithm, self.prefix)
        self.message_handler.set_executor(self)

    @property
    def address(self) -> str:
        """The address of the message handler: give it to the processor."""
        return self.message_handler.address

    def process(self) -> bool:
        """Run the evaluator's ``process`` once, then start answering the processor."""
        if self.algorithm.is_sequential:
            self.runner.process(inputs=self.input_list, data_loaders=self.data_loaders,
                                outputs=self.output_list)
        else:
            self.runner.process(data_loaders=self.data_loaders, outputs=self.output_list)
        self.message_handler.start()
        return True

    def validate(self, hypothesis: Any) -> tuple[bool, baseformat]:
        """The evaluator's verdict on ``hypothesis``: ``(is_valid, answer record)``."""
        return self.runner.validate(hypothesis)

    def write(self, processor_output_name: str, end_data_index: int | None = None) -> Any:
        """Let the evaluator write its outputs, up to ``end_data_index``."""
        return self.runner.write(self.output_list, processor_output_name, end_data_index)

    def read(self) -> Any:
        """Move the evaluator's main group to its next step (a sequential evaluator)
        and let its code read.

        Raises:
            ValueError: the main group has no more data: the processor takes
                more steps than the evaluator has (their inputs differ).
        """
        group = self.input_list.main_group
        if group is not None:
            if not group.hasMoreData():
                raise ValueError(f"the processor took a step beyond the evaluator's data: "
                                 f"the evaluator's main group {group.channel!r} has no data "
                                 f"after data index {group.data_index_end}")
            group.next()
        return self.runner.read(self.input_list)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the processor is done; whether it was within ``timeout`` seconds."""
        self.message_handler.join(timeout)
        return not self.message_handler.is_alive()

    def close(self) -> None:
        """Stop the handler, close the outputs and the inputs.

        The outputs are committed when the processor finished (it said
        ``don``); when it failed (``err``) or did not finish, what the
        evaluator wrote covers part of its data only, and is discarded.
        """
        self.message_handler.destroy()
        if self._closed:
            return
        self._closed = True
        handler = self.message_handler
        try:
            if handler.finished and handler.last_error is None:
                for output in self.output_list:
                    output.close()
            else:
                for sink in self.data_sinks:
                    discard = getattr(sink, "discard", None)
                    if discard is not None:
                        discard()
        finally:
            self._close_inputs()

    def __repr__(self) -> str:
        return f"<LoopExecutor of {self.algorithm.name!r} at {self.address}>"
