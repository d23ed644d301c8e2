"""Objects saved as readable, executable Python source, and data sets on disk.

``Archive`` collects named objects and writes them as a Python module that
rebuilds them when run; ``restore`` runs one and returns the objects. Shared
references stay shared, numpy arrays are written out (or, above a size threshold,
stored in a side ``.npz`` file), functions and classes are imported by name, and
functions that cannot be imported are written by their exact source or, failing
that, as a dill payload. ``callable_source`` and ``object_source`` give the same
machinery for one object as a :class:`Snippet`, for code that writes its own files.

``DataSet`` is a directory of named data, each loaded only when asked for, with an
info dict; writers lock it, and every file is replaced atomically.

See ``docs/archive.md``.
"""

from ._archive import Archive, get_imports, repr_, restore
from ._source import Snippet, callable_source, object_source
from .dataset import DataSet
from .errors import (
    ArchiveError,
    CorruptDataError,
    CycleError,
    DataSetError,
    DuplicateError,
    LockTimeoutError,
    ReadOnlyError,
    UnarchivableError,
)

__all__ = [
    "Archive",
    "ArchiveError",
    "CorruptDataError",
    "CycleError",
    "DataSet",
    "DataSetError",
    "DuplicateError",
    "LockTimeoutError",
    "ReadOnlyError",
    "Snippet",
    "UnarchivableError",
    "callable_source",
    "get_imports",
    "object_source",
    "repr_",
    "restore",
]

# Show (and pickle, and archive) the public names under the public path rather than
# the private module each is defined in.
for _public in (Archive, ArchiveError, CorruptDataError, CycleError, DataSet, DataSetError,
                DuplicateError, LockTimeoutError, ReadOnlyError, Snippet, UnarchivableError,
                callable_source, get_imports, object_source, repr_, restore):
    _public.__module__ = __name__
del _public
