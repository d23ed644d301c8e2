"""Scenario definitions of the ``numap`` suite.

A scenario fixes the work function, the input stream, the worker count, the
sizes (full and ``--quick``), the rows of its table and which row is the
baseline.  A row is a contender at a fixed chunksize, or a contender whose
chunksize is swept on the first repeat (``sweep=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from benchmarks.registry import CONTENDERS

SWEEP_CHUNKSIZES: tuple[int, ...] = (1, 10, 100, 1000, 10000)
"""Chunksizes tried on the first repeat for a ``sweep`` row."""


@dataclass(frozen=True)
class Row:
    """One line of a scenario table."""

    contender: str
    chunksize: int | None = None
    sweep: bool = False
    never_returns: bool = False
    """Known never to return: measured once, a timeout reads 'never returned'."""
    note: str = ""
    """Shown in the notes column of the table."""

    @property
    def key(self) -> str:
        """Stable identifier of the row inside its scenario."""
        if self.sweep:
            return f"{self.contender}@best"
        if self.chunksize is not None:
            return f"{self.contender}@{self.chunksize}"
        return self.contender

    @property
    def label(self) -> str:
        """Display label (the swept chunksize is added by the report)."""
        label = CONTENDERS[self.contender].label
        if self.sweep:
            return f"{label} (best chunksize)"
        if self.chunksize is not None:
            return f"{label} chunksize={self.chunksize}"
        return label


@dataclass(frozen=True)
class Scenario:
    """A measured situation and the contenders compared in it."""

    name: str
    title: str
    func: str
    """Name of the work function in :mod:`benchmarks.workloads`."""
    source: str
    """Input stream: 'ints', 'arrays', 'slow-arrays' or 'endless'."""
    workers: int
    sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    rows: tuple[Row, ...]
    unit: str = "items/s"
    """'items/s', 'MiB/s' or 'memory' (the memory table)."""
    baseline: str = ""
    """Row key every throughput is divided by."""
    extra_baselines: tuple[str, ...] = ()
    ideal: float | None = None
    """Ideal throughput, reported as a percentage when set."""
    timeout_s: float = 60.0
    quick_timeout_s: float = 30.0
    never_returns_timeout_s: float = 60.0
    quick_never_returns_timeout_s: float = 10.0
    single_repeat: bool = False
    """Measure each row once (memory peaks do not drift like speed does)."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def row(self, key: str) -> Row:
        """Return the row with the given key."""
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(key)


_MPIRE_NOTE = "default chunking, computed from iterable_len=N"
_MPIRE_ENDLESS_NOTE = "no length: mpire falls back to chunk_size=4"

_PROCESS_ROWS: tuple[Row, ...] = (
    Row("serial"),
    Row("mp.pool", chunksize=1),
    Row("mp.pool", sweep=True),
    Row("multiprocess.pool", chunksize=1000),
    Row("multiprocess.pool", chunksize=1),
    Row("cf.process", chunksize=1),
    Row("cf.process", sweep=True),
    Row("joblib.loky"),
    Row("mpire.process", note=_MPIRE_NOTE),
    Row("pypeln.process"),
    Row("numap.process"),
)

_THREAD_ROWS: tuple[Row, ...] = (
    Row("numap.thread"),
    Row("cf.thread"),
    Row("mp.threadpool", chunksize=1),
    Row("joblib.threading"),
    Row("mpire.threading", note=_MPIRE_NOTE),
    Row("pypeln.thread"),
)

_MEMORY_ROWS: tuple[Row, ...] = (
    Row("numap.process"),
    Row("mp.pool", chunksize=1000),
    Row("multiprocess.pool", chunksize=1000),
    Row("mpire.process", note=_MPIRE_ENDLESS_NOTE),
    Row("cf.process", chunksize=1, never_returns=True),
)

_ARRAYS = Scenario(
    name="arrays",
    title="4 MiB float64 arrays in, a + 1 out, 2 processes",
    func="add_one_array",
    source="arrays",
    workers=2,
    sizes=(64,),
    quick_sizes=(8,),
    rows=_PROCESS_ROWS,
    unit="MiB/s",
    baseline="cf.process@1",
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="overhead",
            title="Per-item overhead: x + 1 over an iterator of ints, 2 processes",
            func="inc",
            source="ints",
            workers=2,
            sizes=(100_000,),
            quick_sizes=(5_000,),
            rows=_PROCESS_ROWS,
            baseline="mp.pool@best",
            extra_baselines=("joblib.loky",),
        ),
        Scenario(
            name="cpu",
            title="CPU-bound items of ~5 ms (pure-Python loop), 2 processes",
            func="burn",
            source="ints",
            workers=2,
            sizes=(400,),
            quick_sizes=(60,),
            rows=_PROCESS_ROWS,
            baseline="serial",
        ),
        Scenario(
            name="sleep",
            title="Sleeping items: time.sleep(0.01), 8 threads",
            func="nap",
            source="ints",
            workers=8,
            sizes=(400,),
            quick_sizes=(160,),
            rows=_THREAD_ROWS,
            baseline="cf.thread",
            ideal=8 / 0.01,
        ),
        _ARRAYS,
        # the same arrays, from an input that takes time to make each one
        replace(_ARRAYS, name="slow-input", source="slow-arrays", sizes=(200,),
                title="An input that takes time: 4 MiB float64 arrays, each made after "
                      "~0.5 ms of Python, a + 1 out, 2 processes"),
        Scenario(
            name="memory",
            title="Peak RSS after consuming N results of x + 1 over itertools.count(), 2 processes",
            func="inc",
            source="endless",
            workers=2,
            sizes=(10_000, 1_000_000),
            quick_sizes=(10_000,),
            rows=_MEMORY_ROWS,
            unit="memory",
            single_repeat=True,
            timeout_s=120.0,
        ),
    )
}


def sweep_candidates(size: int) -> tuple[int, ...]:
    """Chunksizes worth trying for ``size`` items (larger ones all equal ``size``)."""
    return tuple(sorted({min(c, size) for c in SWEEP_CHUNKSIZES}))
