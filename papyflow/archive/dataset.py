"""``DataSet``: a directory of named data, each loaded only when asked for.

Layout of a data set ``results`` under ``path``::

    path/results/
        __init__.py        the index: _info_dict = {name: info, ...}, an archive
        nxs.py             the data called 'nxs', an archive that binds nxs
        x_0.py             ...
        x_0.1f0c9a7e.npz   its arrays above array_threshold, named by the .py file
        .lock              the writers' lock

The directory is a Python package: ``import results`` runs the index, and
``results.x_0`` would run that archive. Reading ``ds.x_0`` restores ``x_0.py``
every time (nothing is cached, so memory is freed with the object); assigning
``ds.x_0 = value`` writes it at once.

Writers never clobber each other. With ``synchronize=True`` (the default) every
change takes the lock, re-reads the index from disk, applies itself, and writes
the files back; with ``synchronize=False`` a writable data set takes the lock
when it opens and keeps it until ``_close()``. Every file is written to a
temporary name and renamed, data before the index, and an array file has a fresh
name each time, so a reader never sees a half-written file and a crash leaves the
previous data in place. Readers do not lock.

A writer killed while writing leaves its temporary file behind (``.x_0.py.<random>.tmp``).
Writes only happen under the lock, so whoever opens the data set for writing, and
holds the lock while it does, removes such leftovers: no write can be under way.
A reader that finds a datum's file gone (deleted, or replaced with its array file,
while it read) reads the index again, and retries or reports the datum gone.
"""

from __future__ import annotations

import glob
import math
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ._archive import compose, run
from ._build import Builder
from ._emit import emit
from ._files import FileLock, atomic_write_text, temporary_target, write_arrays
from ._nodes import name_problem, valid_name
from .errors import CorruptDataError, DataSetError, ReadOnlyError

__all__ = ["DataSet"]

_INDEX = "__init__.py"
_LOCK = ".lock"
_MARK = "# papyflow DataSet index"
_INDEX_HEADER = (f"{_MARK}: the names of the data in this directory and their info.\n"
                 "# Each name's data is in <name>.py; papyflow.archive.DataSet loads it "
                 "on demand.\n")
_RETRIES = 5  # reads of a data file replaced or deleted while it was being read
# The files a data set writes besides its index: <name>.py and <name>.<hex>.npz.
_DATA_FILE = re.compile(r"(?P<name>[^.]+)\.(?:py|[0-9a-f]{8}\.npz)")
_CHANGED = object()  # a datum's file changed or vanished while it was read


def _item_header(name: str) -> str:
    return (f"# papyflow DataSet data {name!r}, written by papyflow.archive.DataSet;\n"
            f"# load it through the DataSet, or with papyflow.archive.restore(path).\n")


def _data_name(name: object) -> bool:
    return valid_name(name) and not str(name).startswith("_")


def _leftover(filename: str) -> bool:
    """Whether ``filename`` is a temporary a killed writer of a data set left behind."""
    target = temporary_target(filename)
    if target is None:
        return False
    match = _DATA_FILE.fullmatch(target)
    return target == _INDEX or (match is not None and _data_name(match["name"]))


def _read_or_none(path: Path) -> str | None:
    """The text of ``path``, or None if there is no such file (any more)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class DataSet:
    """Creates a module ``module_name`` in the directory ``path`` representing a set of data.

    Usage::

        ds = DataSet('results', 'w', path=where)
        ds.nxs = [10, 20]                            # written now
        ds['nxs'] = 'Particle numbers'               # its info
        ds._insert(np.ones(10), info=(10, 1.2))      # a fresh name: 'x_0'
        DataSet('results', path=where).x_0           # loaded when asked for

    Data are set and read as attributes (names that do not start with ``_``); the
    info of each name, kept in the index and loaded with it, through ``ds[name]``.
    The methods all start with ``_`` so that they never hide a datum.

    Parameters:

    ``module_name``
        The directory's (and package's) name: an identifier.
    ``mode``
        ``'r'`` (read only, the data set must exist) or ``'w'`` (read and write,
        created if missing).
    ``path``
        The directory that holds the data set.
    ``synchronize``
        If true, every read first picks up changes other writers made, and every
        write takes the lock for just that write. If false, the index is read once,
        and a ``'w'`` data set holds the lock from opening to ``_close()``: only one
        such writer at a time.
    ``array_threshold``
        Arrays with more elements than this go to a binary ``.npz`` file beside
        their ``.py`` file.
    ``name_prefix``
        With a number appended, the names ``_insert()`` makes.
    ``timeout``
        Seconds to wait for the lock before :class:`LockTimeoutError`.

    Mutating a loaded value does not write it back: assign it again
    (``d = ds.d; d['a'] = 6; ds.d = d``).
    """

    def __init__(self, module_name: str, mode: str = "r", path: str | os.PathLike[str] = ".",
                 *, synchronize: bool = True, array_threshold: float = 100,
                 name_prefix: str = "x_", timeout: float = 60) -> None:
        if not isinstance(module_name, str) or not module_name.isidentifier():
            raise ValueError(f"module_name must be an identifier (the data set is a Python "
                             f"package), got {module_name!r}")
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' (read only) or 'w' (read and write), "
                             f"got {mode!r}")
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
        if isinstance(array_threshold, bool) or not isinstance(array_threshold, int | float) \
                or not array_threshold >= 0:
            raise ValueError(f"array_threshold must be a number >= 0, got {array_threshold!r}")
        if not isinstance(name_prefix, str) or not _data_name(name_prefix + "0"):
            raise ValueError(f"name_prefix must start a data name (an identifier not starting "
                             f"with '_'), got {name_prefix!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not timeout >= 0 or math.isinf(timeout):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, "
                             f"got {timeout!r}")
        here = Path(path) / module_name
        self._path = here
        self._mode = mode
        self._synchronize = bool(synchronize)
        self._array_threshold = array_threshold
        self._name_prefix = name_prefix
        self._timeout = float(timeout)
        self._info: dict[str, Any] = {}
        self._signature: tuple[int, int, int] | None = None
        self._guard = threading.RLock()
        self._lock = FileLock(here / _LOCK, timeout)
        self._held = False

        if mode == "r":
            if not (here / _INDEX).is_file():
                raise FileNotFoundError(f"no data set at {str(here)!r} (mode='r' opens an "
                                        f"existing one; mode='w' creates it)")
            self._refresh(force=True)
            return
        if here.exists() and not here.is_dir():
            raise DataSetError(f"cannot make a data set at {str(here)!r}: a file is there")
        here.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            if not (here / _INDEX).exists():
                others = [p.name for p in here.iterdir()
                          if p.name != _LOCK and not _leftover(p.name)]
                if others:
                    raise DataSetError(f"cannot make a data set in {str(here)!r}: the "
                                       f"directory holds other files ({sorted(others)[:5]})")
                self._write_index({})
            self._refresh(force=True)
            self._sweep()
        except BaseException:
            self._lock.release()
            raise
        if self._synchronize:
            self._lock.release()
        else:
            self._held = True  # kept until _close()

    # -- data as attributes (private state starts with '_') ----------------------------------

    def __setattr__(self, name: str, value: object) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._store(name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: every data name comes here.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return self._load(name)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        else:
            self._remove(name)

    # -- the info dict -----------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        self._refresh()
        try:
            return self._info[name]
        except KeyError:
            raise KeyError(f"{self._where()} has no data named {name!r}") from None

    def __setitem__(self, name: str, info: object) -> None:
        self._writable()
        with self._writing():
            self._refresh(force=True)
            if name not in self._info:
                raise KeyError(f"{self._where()} has no data named {name!r} to give info to; "
                               f"assign ds.{name} first, or use ds._insert(value, info=..., "
                               f"name={name!r})")
            infos = dict(self._info)
            infos[name] = info
            self._write_index(infos)

    def __contains__(self, name: object) -> bool:
        self._refresh()
        return name in self._info

    def __iter__(self) -> Iterator[str]:
        self._refresh()
        return iter(list(self._info))

    def __len__(self) -> int:
        self._refresh()
        return len(self._info)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._info))

    def __repr__(self) -> str:
        return f"DataSet({str(self._path)!r}) containing {list(self)}"

    @property
    def _info_dict(self) -> dict[str, Any]:
        """A copy of the names and their infos (changing it writes nothing)."""
        self._refresh()
        return dict(self._info)

    # -- data --------------------------------------------------------------------------------

    def _insert(self, value: object, info: object = None, name: str | None = None) -> str:
        """Store ``value`` with its ``info`` under ``name``, or a fresh name; return the name.

        The fresh name (``name_prefix`` and a number) is chosen under the lock, so
        concurrent writers never pick the same one.
        """
        self._writable()
        if name is not None:
            self._check_name(name)
        with self._writing():
            self._refresh(force=True)
            if name is None:
                n = sum(1 for k in self._info if k.startswith(self._name_prefix))
                while f"{self._name_prefix}{n}" in self._info:
                    n += 1
                name = f"{self._name_prefix}{n}"
            self._write_data(name, value, info, keep_info=False)
        return name

    def _load(self, name: str) -> Any:
        """Read the data called ``name`` from disk (what ``ds.<name>`` does).

        A writer may replace or delete the datum while it is read: then the index is
        read again, and the datum read again if it is still there, else it is gone
        (``AttributeError``), as if it had been deleted before the read began.
        """
        self._refresh()
        self._require(name)
        source = self._path / f"{name}.py"
        for _ in range(_RETRIES):
            value = self._read_datum(name, source)
            if value is not _CHANGED:
                return value
            self._refresh(force=True)
            self._require(name)
        if not source.exists():
            raise CorruptDataError(f"the data {name!r} of {self._where()} is missing: no "
                                   f"file {str(source)!r}", str(source))
        raise CorruptDataError(f"the data {name!r} of {self._where()} changed under each "
                               f"of {_RETRIES} reads", str(source))

    def _read_datum(self, name: str, source: Path) -> Any:
        """One read of datum ``name`` from ``source``; ``_CHANGED`` if a writer replaced
        or deleted the file (or the array file it names) while it was read."""
        text = _read_or_none(source)
        if text is None:
            return _CHANGED
        try:
            return run(text, str(source.absolute()))[name]
        except FileNotFoundError as exc:
            # A writer replaced the datum (and removed its old array file) while we
            # read, or deleted it; then the .py file changed or is gone too.
            if _read_or_none(source) != text:
                return _CHANGED
            raise CorruptDataError(f"the array file {exc.filename!r} of data {name!r} "
                                   f"is missing", str(exc.filename)) from exc
        except (SyntaxError, KeyError) as exc:
            raise CorruptDataError(f"the file {str(source)!r} of data {name!r} cannot be "
                                   f"read back: {type(exc).__name__}: {exc}",
                                   str(source)) from exc

    def _require(self, name: str) -> None:
        """Raise ``AttributeError`` unless the index (as last read) lists ``name``."""
        if name not in self._info:
            raise AttributeError(f"{self._where()} has no data named {name!r} (its names: "
                                 f"{list(self._info)}; DataSet methods start with '_')")

    def _store(self, name: str, value: object) -> None:
        self._writable()
        self._check_name(name)
        with self._writing():
            self._refresh(force=True)
            self._write_data(name, value, None, keep_info=True)

    def _remove(self, name: str) -> None:
        self._writable()
        with self._writing():
            self._refresh(force=True)
            if name not in self._info:
                raise AttributeError(f"{self._where()} has no data named {name!r}")
            infos = dict(self._info)
            del infos[name]
            self._write_index(infos)  # the name goes first; its files after
            self._refresh(force=True)
            for stale in [self._path / f"{name}.py", *self._array_files(name)]:
                stale.unlink(missing_ok=True)

    def _write_data(self, name: str, value: object, info: object, *, keep_info: bool) -> None:
        """Write one datum and the index; called with the lock held and the index fresh."""
        datafile = f"{name}.{secrets.token_hex(4)}.npz"
        builder = Builder(array_threshold=self._array_threshold, external=True,
                          allow_dill=True)
        emitted = emit(builder.build({name: value}), datafile=datafile)
        text = compose(emitted, [name], header=_item_header(name))
        infos = dict(self._info)
        # Infos may be arrays, so "did the index change" is decided, not compared.
        new_info = not (keep_info and name in infos)
        if new_info:
            infos[name] = info
        index = self._index_text(infos)  # fails here, before any file is touched
        if emitted.arrays:
            write_arrays(self._path / datafile, emitted.arrays)
        atomic_write_text(self._path / f"{name}.py", text)
        if new_info:
            atomic_write_text(self._path / _INDEX, index)
        self._refresh(force=True)
        for stale in self._array_files(name):
            if stale.name != datafile:
                stale.unlink(missing_ok=True)

    def _sweep(self) -> None:
        """Remove the temporaries killed writers left; called with the lock held, so
        that no write (which makes such files only under the lock) is under way."""
        for path in self._path.iterdir():
            if _leftover(path.name):
                path.unlink(missing_ok=True)

    def _array_files(self, name: str) -> list[Path]:
        # Names are identifiers, so "<name>." cannot start another name's file.
        return [Path(p) for p in glob.glob(os.path.join(glob.escape(str(self._path)),
                                                        f"{name}.*.npz"))]

    # -- the index ---------------------------------------------------------------------------

    def _index_text(self, infos: dict[str, Any]) -> str:
        builder = Builder(array_threshold=math.inf, external=False, allow_dill=True)
        emitted = emit(builder.build({"_info_dict": infos}), datafile=None)
        return compose(emitted, ["_info_dict"], header=_INDEX_HEADER)

    def _write_index(self, infos: dict[str, Any]) -> None:
        atomic_write_text(self._path / _INDEX, self._index_text(infos))

    def _refresh(self, force: bool = False) -> None:
        """Re-read the index if it changed on disk (always when ``force``)."""
        if not force and not self._synchronize and self._signature is not None:
            return
        index = self._path / _INDEX
        try:
            stat = index.stat()
        except FileNotFoundError:
            raise CorruptDataError(f"the index {str(index)!r} of the data set is missing",
                                   str(index)) from None
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if not force and signature == self._signature:
            return
        text = index.read_text(encoding="utf-8")
        if not text.startswith(_MARK):
            raise CorruptDataError(f"{str(index)!r} is not a papyflow DataSet index (it does "
                                   f"not start with {_MARK!r}); it is not run", str(index))
        try:
            infos = run(text, str(index.absolute()))["_info_dict"]
        except (SyntaxError, KeyError) as exc:
            raise CorruptDataError(f"the index {str(index)!r} cannot be read: "
                                   f"{type(exc).__name__}: {exc}", str(index)) from exc
        if not isinstance(infos, dict) or not all(_data_name(k) for k in infos):
            raise CorruptDataError(f"the index {str(index)!r} does not map data names to "
                                   f"infos", str(index))
        self._info = infos
        self._signature = signature

    # -- state -------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold what a write needs: this object's threads in turn, and the file lock
        (unless a ``synchronize=False`` writer holds it already, from opening on)."""
        with self._guard:
            if self._held:
                yield
            else:
                with self._lock:
                    yield

    def _writable(self) -> None:
        if self._mode != "w":
            raise ReadOnlyError(f"DataSet opened in read-only mode: {self._where()} was "
                                f"opened with mode='r'; open it with mode='w' to change it")

    def _check_name(self, name: object) -> None:
        if not _data_name(name):
            problem = name_problem(name) or "it starts with '_'"
            raise ValueError(f"a data name must be an identifier that does not start with "
                             f"'_' and is not a keyword, got {name!r}: {problem}")

    def _where(self) -> str:
        return f"the data set {str(self._path)!r}"

    def _close(self) -> None:
        """Release the writer's lock a ``synchronize=False`` data set holds; idempotent."""
        if self._held:
            self._held = False
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close()

    def __del__(self) -> None:
        # The lock is a file descriptor; do not leave it to the garbage collector.
        if getattr(self, "_held", False):
            self._close()
