"""The cache of an experiment's block outputs: where each lies, whether it is complete,
writing it as a Piper's units go by and reading it back.

One output of a block is stored under its hash (see :mod:`._fingerprints`)::

    <cache>/ab/cd/ef/0123....data          the units (CachedDataSink: pieces,
    <cache>/ab/cd/ef/0123....<s>.<e>.*     index and checksums beside)
    <cache>/ab/cd/ef/0123....json          written last: the output is complete

The ``.json`` file says what made the output (block, algorithm, parameters,
the hashes of its inputs, how many units). It is written, atomically, only
after the units are committed, and only when the Piper's stream ended without
a failure: an output whose block failed, or whose run was stopped before its
end, leaves nothing in the cache (the sink's temporary files are removed).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..archive._files import atomic_write_text
from ..dataflow._sinks import CachedDataSink
from ..dataflow._sources import CachedDataSource
from ..dataflow.units import Unit
from ..errors import PiperError
from ..formats.baseformat import baseformat
from ..formats.dataformat import DataFormat
from ..hash import toPath

__all__ = ["CachedOutput"]

_log = logging.getLogger("papyflow.blocks")

_LAST_INDEX = 1 << 62  # the units' data indices are bounded by what the view gives


@dataclass
class CachedOutput:
    """One output of a block in the cache.

    Attributes:
        root: the cache folder.
        digest: the output's hash.
        dataformat: the records' :class:`~papyflow.formats.dataformat.DataFormat`.
        label: ``block 'enroll' output 'model'``, for messages.
        about: what the ``.json`` file records besides the count of units.
        error: why the last write was dropped (``None`` when it was not).
    """

    root: str
    digest: str
    dataformat: DataFormat
    label: str
    about: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def filename(self) -> str:
        """The name the sink and the source take (``<path>/<hash>.data``)."""
        return os.path.join(self.root, toPath(self.digest, ".data"))

    @property
    def marker(self) -> str:
        """The ``.json`` file that says the output is complete."""
        return os.path.join(self.root, toPath(self.digest, ".json"))

    def units(self) -> int | None:
        """How many units the complete output holds; ``None`` when it is not in the cache."""
        try:
            with open(self.marker, encoding="utf-8") as stream:
                about = json.load(stream)
        except (OSError, ValueError):
            return None
        count = about.get("units") if isinstance(about, dict) else None
        if type(count) is not int or count < 0:
            return None
        if count:  # the data must be there too, readable
            source = CachedDataSource()
            try:
                if not source.setup(self.filename, self.dataformat.prefix):
                    return None
                if len(source) != count:
                    return None
            except (OSError, ValueError, IndexError):
                return None
            finally:
                source.close()
        return count

    def read(self) -> Iterator[Unit]:
        """The units in the cache, as ``Unit(record, start, end)``.

        Raises:
            RuntimeError: the output is no longer in the cache.
            CorruptCacheError: a damaged file.
        """
        count = self.units()
        if count is None:
            raise RuntimeError(f"{self.label}: not in the cache {self.root} any more")
        if not count:
            return
        source = CachedDataSource()
        source.setup(self.filename, self.dataformat.prefix)
        try:
            for data, start, end in source:
                yield Unit(data, start, end)
        finally:
            source.close()

    def write(self, units: Iterator[Any], cut: Callable[[], bool] | None = None,
              ) -> Iterator[Any]:
        """Pass ``units`` on, storing them; commit when the stream ends without a failure.

        A failure among the units (a ``PiperError``), a stream closed before
        its end, a stream that ends because it was cut short (``cut()`` is true
        when it ends: ``Plumber.stop`` ended its inputs early), or an error of
        the cache itself (logged, kept in :attr:`error`) leaves the cache as it
        was; the units go on regardless.
        """
        sink: CachedDataSink | None = None
        count = 0
        keep = True
        ended = False
        try:
            for unit in units:
                if keep:
                    data = unit.data if isinstance(unit, Unit) else unit
                    if isinstance(data, PiperError):
                        keep = False
                    else:
                        try:
                            if sink is None:
                                os.makedirs(os.path.dirname(self.filename), exist_ok=True)
                                sink = CachedDataSink()
                                sink.setup(self.filename, self.dataformat, unit.start,
                                           _LAST_INDEX)
                            if type(data) is not sink.record_type and \
                                    isinstance(data, baseformat):
                                data = data.pack()
                            sink.write(data, unit.start, unit.end)
                            count += 1
                        except Exception as error:  # noqa: BLE001 - the run goes on
                            keep = False
                            self._dropped(error)
                yield unit
            ended = cut is None or not cut()
        finally:
            if sink is not None and not (keep and ended):
                sink.discard()
            elif keep and ended:
                try:
                    if sink is not None:
                        sink.close()
                    self._mark(count)
                except Exception as error:  # noqa: BLE001 - nothing half-written remains
                    self._dropped(error)

    def _dropped(self, error: BaseException) -> None:
        self.error = error
        _log.warning("%s: not cached: %s: %s", self.label, type(error).__name__, error)

    def _mark(self, count: int) -> None:
        about = {**self.about, "units": count,
                 "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        os.makedirs(os.path.dirname(self.marker), exist_ok=True)
        atomic_write_text(Path(self.marker), json.dumps(about, indent=2, sort_keys=True) + "\n")
