"""The database executor: serves the outputs of database views to another process.

::

    DBExecutor: configuration -> views (one per database/protocol/set), set up here
             -> one DatabaseOutputDataSource per input (records served packed)
             -> MessageHandler.set_data_sources(...); process() starts it
    algorithm process: RemoteDataSource(socket, input name) -- ifo/get --> handler
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from ..blocks.database import Database
from ..dataflow.data import DatabaseOutputDataSource
from ..formats.dataformat import DataFormat
from ..helpers import _range as block_range
from ..helpers import parse_inputs, setup_view
from ._config import load_configuration
from .messagehandlers import MessageHandler

__all__ = ["DBExecutor"]


class DBExecutor:
    """Serves, through ``message_handler``, the database inputs of an execution
    configuration (see :mod:`papyflow.helpers`).

    Args:
        message_handler: a :class:`~papyflow.execution.MessageHandler`, not started.
        prefix: where the databases and dataformats are.
        cache_root: where each view keeps its index (see
            :func:`papyflow.helpers.view_index_filename`).
        data: the configuration (a dict, a JSON file, or a folder holding
            ``configuration.json``). Its inputs with ``database`` are served,
            under their input names; the others are left alone.
        dataformat_cache, database_cache: loaded dataformats and databases by
            name (used and filled).

    Raises:
        ValueError: a field of the configuration is wrong, or a database does
            not load (the message names it).
        BlockError: a view's code failed while setting up.

    On any of these the message handler is destroyed (its address is free again).

    Attributes:
        data: the configuration.
        databases: the databases used, by name.
        views: the view runners, by ``(database, protocol, set)``.
        data_sources: the sources served, by input name.
        message_handler: as given.
    """

    def __init__(self, message_handler: MessageHandler, prefix: Any, cache_root: Any,
                 data: Mapping[str, Any] | str | os.PathLike[str],
                 dataformat_cache: dict[str, DataFormat] | None = None,
                 database_cache: dict[str, Database] | None = None) -> None:
        self.message_handler = message_handler
        self.prefix = prefix
        self.databases: dict[str, Database] = database_cache if database_cache is not None \
            else {}
        self.views: dict[tuple[str, str, str], Any] = {}
        self.data_sources: dict[str, DatabaseOutputDataSource] = {}
        try:
            self.data, _ = load_configuration(data)
            self._serve(prefix, cache_root, dataformat_cache)
        except BaseException:
            message_handler.destroy()  # its socket is bound: free the address
            raise

    def _serve(self, prefix: Any, cache_root: Any,
               dataformat_cache: dict[str, DataFormat] | None) -> None:
        """Set up the views and sources of the database inputs; hand them to the handler."""
        span = block_range(self.data)  # the block's range, unless an input gives its own
        for spec in parse_inputs(self.data.get("inputs", {})).values():
            if not spec.from_database:
                continue
            assert spec.protocol is not None and spec.set is not None \
                and spec.output is not None
            view = setup_view(spec, prefix, cache_root, self.databases, self.views)
            dataformat = view.outputs.get(spec.output)
            if dataformat is None:
                raise ValueError(f"inputs.{spec.name}.output: the set {spec.protocol}/"
                                 f"{spec.set} of {spec.database} has no output {spec.output!r} "
                                 f"(outputs: {', '.join(view.outputs)})")
            source = DatabaseOutputDataSource()
            start = spec.start_index if spec.start_index is not None else span[0]
            end = spec.end_index if spec.end_index is not None else span[1]
            source.setup(view, spec.output, dataformat, prefix, start, end, pack=True,
                         dataformat_cache=dataformat_cache)
            self.data_sources[spec.name] = source
        self.message_handler.set_data_sources(self.data_sources)

    @property
    def address(self) -> str:
        """The address of the message handler: give it to the algorithm's process."""
        return self.message_handler.address

    def process(self) -> None:
        """Start serving (the message handler's thread)."""
        self.message_handler.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the handler ends (the algorithm said ``don`` or ``err``, or it was
        killed); whether it did within ``timeout`` seconds."""
        self.message_handler.join(timeout)
        return not self.message_handler.is_alive()

    def close(self) -> None:
        """Stop the handler and close its socket."""
        self.message_handler.destroy()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DBExecutor of {', '.join(self.data_sources) or 'no input'} at {self.address}>"
