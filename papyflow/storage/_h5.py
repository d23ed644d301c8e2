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


_TYPES: dict[np.dtype, h5t.TypeID] = {}


def _type(dtype: np.dtype) -> h5t.TypeID:
    known = _TYPES.get(dtype)
    if known is None:
        known = _TYPES[dtype] = h5t.py_create(dtype)
    return known


def set_text(node: h5py.HLObject, name: str, text: str, new: bool = False) -> None:
    """Set the attribute ``name`` of ``node`` to ``text`` (a fixed-length UTF-8 string);
    ``new``: the node has no such attribute yet (saves a look-up)."""
    key = name.encode()
    if not new and h5a.exists(node.id, key):
        h5a.delete(node.id, key)
    data = np.array(text.encode("utf-8"))
    h5a.create(node.id, key, _type(data.dtype), _SCALAR).write(data)


def get_text(node: h5py.HLObject, name: str, default: str | None = None) -> str | None:
    """The text attribute ``name`` of ``node`` (``default`` when it has none)."""
    value = node.attrs.get(name)
    if value is None:
        return default
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
