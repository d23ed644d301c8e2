"""Storage services: results, parameters and groups to and from HDF5 files, safely
from many processes (a reimplementation of pypet's storage services).

* :class:`HDF5StorageService` stores and loads :class:`Result`, :class:`Parameter`
  and :class:`Group` items with the messages of :mod:`.pypetconstants`;
* :class:`LockWrapper` shares one service between processes with a lock;
* :class:`StorageQueue`, :class:`QueueStorageServiceSender` and
  :class:`QueueStorageServiceWriter` send every store to one writer process;
* :class:`LazyStorageService` accepts everything and stores nothing.
"""

from . import pypetconstants
from .errors import (
                     ItemExistsError,
                     NoSuchServiceError,
                     NotStoredError,
                     RemoteTraceback,
                     StorageError,
                     UnsupportedDataError,
                     WriterError,
                     WriterLostError,
)
from .hdf5 import HDF5StorageService
from .items import Group, Leaf, Node, Parameter, Result
from .pypetconstants import (
                     ARRAY,
                     BACKUP,
                     CARRAY,
                     DICT,
                     GROUP,
                     LEAF,
                     LIST,
                     MERGE,
                     RECORD,
                     REMOVE,
                     TABLE,
                     TREE,
                     UPDATE_LEAF,
)
from .queue import (
                     QueueStorageServiceSender,
                     QueueStorageServiceWriter,
                     StorageQueue,
                     WriterReport,
)
from .wrappers import LazyStorageService, LockWrapper

__all__ = [
    "ARRAY", "BACKUP", "CARRAY", "DICT", "GROUP", "LEAF", "LIST", "MERGE", "RECORD", "REMOVE",
    "TABLE", "TREE", "UPDATE_LEAF",
    "Group", "HDF5StorageService", "ItemExistsError", "LazyStorageService", "Leaf",
    "LockWrapper", "NoSuchServiceError", "Node", "NotStoredError", "Parameter",
    "QueueStorageServiceSender", "QueueStorageServiceWriter", "RemoteTraceback", "Result",
    "StorageError", "StorageQueue", "UnsupportedDataError", "WriterError",
    "WriterLostError", "WriterReport", "pypetconstants",
]
