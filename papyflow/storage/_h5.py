"""Thin, fast paths to HDF5 for what the service does thousands of times a second.

h5py's high-level calls check and convert a great deal; creating a group, a
small dataset and a text attribute through the low-level API costs about a
third of the time, which is what lets the queue writer keep up with many senders.
"""

from __future__ import annotations

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5p, h5s, h5t

__all__ = ["get_text", "new_dataset", "new_group", "set_text"]

_SCALAR = h5s.create(h5s.SCALAR)
_ORDERED = h5p.create(h5p.GROUP_CREATE)
_ORDERED.set_link_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
_FAST_KINDS = frozenset("biufc")
_SMALL_TEXT = 16 << 10  # bytes: a longer text attribute is stored variable-length
_BLOB = h5py.vlen_dtype(np.uint8)


_TYPES: dict[np.dtype, h5t.TypeID] = {}


def _type(dtype: np.dtype) -> h5t.TypeID:
    known = _TYPES.get(dtype)
    if known is None:
        known = _TYPES[dtype] = h5t.py_create(dtype)
    return known


_BLOB_TYPE = h5t.py_create(_BLOB, logical=True)


def _new_text(node: h5py.HLObject, key: bytes, data: bytes) -> None:
    if len(data) <= _SMALL_TEXT and not data.endswith(b"\0"):
        fixed = np.array(data)
        h5a.create(node.id, key, _type(fixed.dtype), _SCALAR).write(fixed)
        return
    # An attribute is one object-header message, and HDF5 refuses a message past
    # 64 KiB: a long text goes to the file's global heap, as a variable-length
    # sequence of bytes (not a variable-length string, which would end at a NUL).
    # So does a text that ends in NUL, which a fixed-length one would lose (numpy's
    # bytes drop trailing NULs).
    blob = np.empty((), dtype=_BLOB)
    blob[()] = np.frombuffer(data, dtype=np.uint8)
    h5a.create(node.id, key, _BLOB_TYPE, _SCALAR).write(blob)


def set_text(node: h5py.HLObject, name: str, text: str, new: bool = False) -> None:
    """Set the attribute ``name`` of ``node`` to ``text`` (UTF-8, of any length);
    ``new``: the node has no such attribute yet (saves a look-up).

    An attribute that exists is replaced only once the new one is written: when
    writing fails, the old text stays.
    """
    key = name.encode()
    data = text.encode("utf-8")
    if new or not h5a.exists(node.id, key):
        _new_text(node, key, data)
        return
    temporary = key + b".new"
    if h5a.exists(node.id, temporary):  # left by an interrupted call
        h5a.delete(node.id, temporary)
    _new_text(node, temporary, data)
    h5a.delete(node.id, key)
    h5a.rename(node.id, temporary, key)


def get_text(node: h5py.HLObject, name: str, default: str | None = None) -> str | None:
    """The text attribute ``name`` of ``node`` (``default`` when it has none)."""
    value = node.attrs.get(name)
    if value is None:
        return default
    if isinstance(value, np.ndarray):  # a long text: bytes in the global heap
        return value.tobytes().decode("utf-8")
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def new_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A new child group that remembers the order its links were made in."""
    return h5py.Group(h5g.create(parent.id, name.encode(), gcpl=_ORDERED))


def new_dataset(parent: h5py.Group, name: str, data: np.ndarray) -> None:
    """Write ``data`` as a new contiguous dataset."""
    if data.dtype.kind not in _FAST_KINDS or data.dtype.byteorder == ">":
        parent.create_dataset(name, data=data)
        return
    space = _SCALAR if data.ndim == 0 else h5s.create_simple(data.shape)
    dataset = h5d.create(parent.id, name.encode(), _type(data.dtype), space)
    if data.size:
        dataset.write(h5s.ALL, h5s.ALL, np.ascontiguousarray(data))
