"""The algorithm executor: runs one algorithm block, inputs from a handler or the cache.

::

    configuration -> Algorithm, Runner (setup with the parameters)
    inputs:  cached        -> CachedDataSource            (cache_access LOCAL)
             from a view   -> RemoteDataSource, db_socket  (db_access REMOTE)
    outputs: CachedDataSink per output (RemotelySyncedOutput with a loop_socket)
    process(): sequential -> one process() per step of the main group
               autonomous -> one process() with the data loaders
               a loop processor also gets a LoopChannel (loop_socket)
    done(): closes the outputs (commits the cache), sends ``don`` on socket
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..blocks.database import Database
from ..blocks.errors import BlockError
from ..blocks.library import Library
from ..dataflow._remote import Auth, as_channel
from ..formats.dataformat import DataFormat
from ..helpers import (
    create_outputs_from_configuration,
)
from ._block import BlockRun
from ._config import load_configuration, prefix_of
from .loop import LoopChannel

__all__ = ["AlgorithmExecutor"]


def _tell(socket: Any, parts: list[bytes]) -> list[bytes]:
    """Send a request on a channel (or any socket-like object); its reply."""
    socket.send_multipart(parts)
    return socket.recv_multipart()


class AlgorithmExecutor(BlockRun):
    """Runs the algorithm block an execution configuration describes.

    Args:
        socket: a zmq socket (or channel) to the process that supervises the
            run: ``done`` sends it ``don`` with the statistics, a failure
            ``err``; ``None`` for no supervisor.
        directory: the configuration (a dict, a JSON file, or a folder holding
            ``configuration.json`` and, unless ``prefix`` is given, ``prefix/``).
        dataformat_cache, database_cache, library_cache: loaded assets by
            name (used and filled).
        cache_root: the cache's folder: cached inputs and every output.
        db_socket: a zmq socket (or channel) to the
            :class:`~papyflow.execution.DBExecutor` serving the database
            inputs; without it they are read here.
        loop_socket: to the :class:`~papyflow.execution.LoopExecutor` of a
            loop processor's evaluator.
        prefix: where the assets are.
        auth: the key for the sockets (see
            :func:`papyflow.dataflow._remote.resolve_auth`).

    Raises:
        ValueError: a wrong configuration (the message names the field), an
            algorithm that does not load, or a loop processor without a
            ``loop_socket``.
        AuthenticationError: a handler refuses this process.
    """

    def __init__(self, socket: Any, directory: Mapping[str, Any] | str | os.PathLike[str],
                 dataformat_cache: dict[str, DataFormat] | None = None,
                 database_cache: dict[str, Database] | None = None,
                 library_cache: dict[str, Library] | None = None,
                 cache_root: Any = None, db_socket: Any = None, loop_socket: Any = None, *,
                 prefix: Any = None, auth: Auth = None) -> None:
        self.data, folder = load_configuration(directory)
        self.prefix = prefix_of(prefix, folder)
        self.cache_root = cache_root
        self.socket = None if socket is None else as_channel(socket, auth)
        self._load("algorithm", dataformat_cache, library_cache)
        name = self.algorithm.name
        self.loop_channel: LoopChannel | None = None
        if self.algorithm.is_loop_processor:
            if loop_socket is None:
                raise ValueError(f"loop_socket: algorithm {name!r} is a loop processor: it "
                                 "needs a socket to its evaluator")
            self.loop_channel = LoopChannel(loop_socket, auth=auth)
            self.loop_channel.setup(self.algorithm, self.prefix)
        try:
            self._open_inputs(cache_root, db_socket, database_cache, auth)
            synced = self.loop_channel.channel if self.loop_channel is not None else None
            self.output_list, self.data_sinks = create_outputs_from_configuration(
                self.data, self.algorithm, self.prefix, cache_root, self.input_list,
                self.data_loaders, loop_socket=synced)
        except BaseException as error:
            # The evaluator already knows this processor: without a word it would
            # wait for ever for steps that never come.
            if hasattr(self, "input_list"):
                self._close_inputs()
            if self.loop_channel is not None:
                try:
                    _tell(self.loop_channel.channel,
                          [b"err", b"sys", str(error).encode("utf-8")])
                except Exception as failure:  # noqa: BLE001 - the error itself matters more
                    error.add_note(f"(and telling the evaluator failed: {failure})")
            raise
        self._closed = False

    @property
    def analysis(self) -> bool:
        """Whether the block is an analyzer."""
        return self.algorithm.isAnalyzer

    @property
    def schema_version(self) -> int:
        """The algorithm's schema version (1 for a legacy one)."""
        data = self.algorithm.data or {}
        return int(data.get("schema_version", 1))

    def _process_arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"data_loaders": self.data_loaders}
        if self.analysis:
            arguments["output"] = self.output_list[0]
        else:
            arguments["outputs"] = self.output_list
        if self.loop_channel is not None:
            arguments["loop_channel"] = self.loop_channel
        return arguments

    def process(self) -> bool:
        """Run the algorithm over all its data, commit its outputs, then :meth:`done`.

        A failure (of the code, or of committing the outputs) is reported to
        the supervisor and to a loop's evaluator (``err``, ``usr`` for the
        user's code) before it is raised; the outputs not committed yet are
        then discarded.

        Returns:
            ``True``.
        """
        try:
            if not self.setup():
                raise RuntimeError(f"algorithm {self.algorithm.name!r}: setup() returned False")
            if not self.prepare():
                raise RuntimeError(f"algorithm {self.algorithm.name!r}: prepare() returned "
                                   "False")
            arguments = self._process_arguments()
            if self.algorithm.is_autonomous:
                self.runner.process(**arguments)
            else:
                group = self.input_list.main_group
                assert group is not None
                while group.hasMoreData():
                    group.next()
                    if self.loop_channel is not None:
                        self.loop_channel.read()
                    self.runner.process(inputs=self.input_list, **arguments)
            self.close()  # the sinks count their bytes as they commit
        except BaseException as error:
            self._fail(error)
            raise
        self.done(self.statistics())
        return True

    def _fail(self, error: BaseException) -> None:
        for sink in self.data_sinks:
            discard = getattr(sink, "discard", None)
            if discard is not None:
                discard()
        self._closed = True
        self._close_inputs()
        kind = b"usr" if isinstance(error, BlockError) else b"sys"
        report = [b"err", kind, str(error).encode("utf-8")]
        loop = self.loop_channel.channel if self.loop_channel is not None else None
        for peer in (self.socket, loop):  # the supervisor, and the evaluator waiting
            if peer is None:
                continue
            try:
                _tell(peer, report)
            except Exception as failure:  # noqa: BLE001 - the error itself matters more
                error.add_note(f"(and reporting it failed: {failure})")

    def statistics(self) -> dict[str, Any]:
        """Bytes read and written, units written, seconds waiting for the network."""
        sources = [i.data_source for i in self.input_list]
        for loader in self.data_loaders:
            sources += [loader._source(name) for name in loader.input_names()]
        read = sum(s.statistics().nb_bytes_read for s in sources)
        wait = sum(getattr(s, "network_wait_time", 0.0) for s in sources)
        written = sum(s.statistics().nb_bytes_written for s in self.data_sinks)
        return {"data": {"volume": {"read": read, "write": written},
                         "network": {"wait_time": wait},
                         "blocks_written": sum(o.nb_data_blocks_written
                                               for o in self.output_list)}}

    def done(self, statistics: Mapping[str, Any] | None = None) -> None:
        """Close the outputs (committing them to the cache) and tell the supervisor,
        then the loop's evaluator (told even when telling the supervisor fails)."""
        self.close()
        try:
            if self.socket is not None:
                parts = [b"don"]
                if statistics is not None:
                    parts.append(json.dumps(statistics).encode())
                _tell(self.socket, parts)
        finally:
            if self.loop_channel is not None:
                self.loop_channel.done()

    def close(self) -> None:
        """Close the outputs (committing them) and the inputs' sources (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            for output in self.output_list:
                output.close()
        finally:
            self._close_inputs()

    def __repr__(self) -> str:
        return f"<AlgorithmExecutor of {self.algorithm.name!r}>"
