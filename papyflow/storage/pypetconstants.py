"""The messages and storage flags of the storage services, named as pypet names them.

A message is the first argument of ``store(msg, stuff, ...)`` and
``load(msg, stuff, ...)``; a flag says how one piece of a leaf's data is laid
out in the HDF5 file. Both are plain strings, so they cross process
boundaries and can be written in configuration files.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ARRAY", "BACKUP", "CARRAY", "DICT", "FLAGS", "GROUP", "LEAF", "LIST", "LOAD_MESSAGES",
    "MERGE", "RECORD", "REMOVE", "STORE_MESSAGES", "TABLE", "TREE", "UPDATE_LEAF",
]

# -- messages ------------------------------------------------------------------------------
LEAF: Final = "LEAF"
"""A result or parameter (a :class:`~papyflow.storage.items.Leaf`)."""
UPDATE_LEAF: Final = "UPDATE_LEAF"
"""A leaf whose data replace what the file holds under the same names."""
GROUP: Final = "GROUP"
"""A group node alone (its attributes; no children)."""
TREE: Final = "TREE"
"""A node and, with ``recursive=True``, everything below it."""
LIST: Final = "LIST"
"""Several calls at once: ``[(msg, stuff, args, kwargs), ...]``."""
REMOVE: Final = "REMOVE"
"""Remove a node from the file."""
BACKUP: Final = "BACKUP"
"""Copy the whole file, atomically, to a backup file."""
MERGE: Final = "MERGE"
"""Copy (or move) the tree of another file or group under a node of this file."""

STORE_MESSAGES: Final = frozenset({LEAF, UPDATE_LEAF, GROUP, TREE, LIST, REMOVE, BACKUP, MERGE})
LOAD_MESSAGES: Final = frozenset({LEAF, GROUP, TREE, LIST})

# -- storage flags -------------------------------------------------------------------------
ARRAY: Final = "ARRAY"
"""A contiguous dataset: scalars, strings, lists, tuples, small arrays."""
CARRAY: Final = "CARRAY"
"""A chunked, compressed dataset (arrays of one or more elements)."""
TABLE: Final = "TABLE"
"""A compound dataset, one row per element: a dict of equal-length columns, a structured array."""
DICT: Final = "DICT"
"""A flat dict, rebuilt as a dict on loading."""
RECORD: Final = "RECORD"
"""A record of a papyflow dataformat (papyflow's own flag: packed bytes + the record's schema)."""

FLAGS: Final = frozenset({ARRAY, CARRAY, TABLE, DICT, RECORD})
