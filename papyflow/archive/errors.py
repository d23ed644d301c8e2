"""The exceptions of :mod:`papyflow.archive`.

``ArchiveError`` is the family; each situation beneath it also subclasses the
builtin a caller would already catch: a name inserted twice or a reference cycle
is a ``ValueError``, an object no recipe can rebuild is a ``TypeError``, a lock
that never came free is a ``TimeoutError``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArchiveError",
    "CorruptDataError",
    "CycleError",
    "DataSetError",
    "DuplicateError",
    "LockTimeoutError",
    "ReadOnlyError",
    "UnarchivableError",
]


class ArchiveError(Exception):
    """Base of every error :mod:`papyflow.archive` raises."""


class DuplicateError(ArchiveError, ValueError):
    """A name was inserted into an archive that already holds it.

    Attribute ``name``: the name inserted twice.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"the archive already holds a name {name!r}; "
                         f"insert each name once")
        self.name = name


class CycleError(ArchiveError, ValueError):
    """The objects refer to themselves; an archive cannot express a reference cycle.

    Attribute ``cycle``: descriptions of the objects along the cycle, its first
    object repeated at the end (``["list 'a'", 'dict', "list 'a'"]``).
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("Archive contains cyclic dependencies: "
                         + " -> ".join(self.cycle)
                         + "; break the cycle, or give the object an archive_1() "
                           "method that rebuilds it")


class UnarchivableError(ArchiveError, TypeError):
    """No recipe can write this object as source (and dill, if allowed, failed too).

    Attribute ``path``: where the object sits among the inserted ones, for
    example ``"d['conn']"``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"cannot archive {path}: {message}" if path else message)
        self.path = path


class DataSetError(ArchiveError):
    """Base of the errors about a :class:`~papyflow.archive.DataSet` on disk."""


class ReadOnlyError(DataSetError, ValueError):
    """A change was asked of a data set opened read-only (``mode='r'``)."""


class CorruptDataError(DataSetError, ValueError):
    """A file of a data set is missing or cannot be read back.

    Attribute ``filename``: the file.
    """

    def __init__(self, message: str, filename: str) -> None:
        super().__init__(message)
        self.filename = filename


class LockTimeoutError(DataSetError, TimeoutError):
    """The writer's lock of a data set did not come free within ``timeout`` seconds."""
