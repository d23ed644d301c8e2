"""What the algorithm and loop executors share: loading the block's algorithm, its inputs,
and its runner's ``setup`` and ``prepare``."""

from __future__ import annotations

from typing import Any

from ..blocks.algorithm import Algorithm
from ..blocks.database import Database
from ..blocks.library import Library
from ..dataflow._remote import Auth, as_channel
from ..formats.dataformat import DataFormat
from ..helpers import AccessMode, create_inputs_from_configuration

__all__ = ["BlockRun"]


class BlockRun:
    """One algorithm block of an execution configuration (``data``), with its inputs.

    Raises (from :meth:`_load`):
        TypeError: the configuration names no algorithm.
        ValueError: the algorithm does not load.
    """

    data: dict[str, Any]
    prefix: Any
    algorithm: Algorithm
    data_loaders: Any
    _runner: Any = None

    def _load(self, role: str, dataformat_cache: dict[str, DataFormat] | None,
              library_cache: dict[str, Library] | None) -> None:
        """Load the configuration's algorithm (``role``: what it is, for messages)."""
        name = self.data.get("algorithm")
        if not isinstance(name, str):
            raise TypeError(f"algorithm: expected the {role}'s name, got {name!r}")
        self.algorithm = Algorithm(self.prefix, name, dataformat_cache, library_cache)
        if not self.algorithm.valid:
            raise ValueError(f"algorithm: {name!r} does not load: "
                             f"{'; '.join(self.algorithm.errors)}")

    def _open_inputs(self, cache_root: Any, db_socket: Any,
                     database_cache: dict[str, Database] | None, auth: Auth) -> None:
        """The inputs: cached ones read here, database ones through ``db_socket`` (or here)."""
        db_channel = None if db_socket is None else as_channel(db_socket, auth)
        self.input_list, self.data_loaders = create_inputs_from_configuration(
            self.data, self.algorithm, self.prefix, cache_root,
            cache_access=AccessMode.LOCAL,
            db_access=AccessMode.REMOTE if db_channel is not None else AccessMode.LOCAL,
            socket=db_channel, databases=database_cache, auth=auth)

    def _close_inputs(self) -> None:
        """Close the data sources of the inputs and of the data loaders (their files)."""
        for input_ in self.input_list:
            input_.data_source.close()
        for loader in self.data_loaders:
            for name in loader.input_names():
                loader._source(name).close()

    @property
    def runner(self) -> Any:
        """The algorithm's :class:`~papyflow.blocks.algorithm.Runner` (made when first asked)."""
        if self._runner is None:
            self._runner = self.algorithm.runner()
        return self._runner

    def setup(self) -> bool:
        """Set the algorithm up with the configuration's ``parameters``."""
        return self.runner.setup(self.data.get("parameters", {}))

    def prepare(self) -> bool:
        """Prepare the algorithm with the data loaders of its secondary groups."""
        return self.runner.prepare(self.data_loaders)
