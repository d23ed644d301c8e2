"""Batches of fixed-size records as numpy structured arrays.

A record type is *fixed-size* when none of its fields is a string or an array
with a variable dimension, at any depth. Each of its records then packs to the
same number of bytes, and N records packed one after the other are exactly the
memory of a numpy structured array whose dtype places every field at its
packed offset:

* little-endian fields, no padding, nested records as nested structured dtypes
  and fixed arrays as subarrays;
* the dimensions an array writes before its elements (one uint64 each) sit in
  gaps of that dtype: they are not fields. A second, private dtype of the same
  size (the *wire* dtype) names them (``'#name'``), so that checking or
  writing them is one vectorized numpy operation per array field, whatever
  the number of records;
* bool bytes must be 0 or 1, which unpacking checks.

So unpacking a batch is ``numpy.frombuffer`` plus those checks (no copy), and
packing a structured array is ``tobytes``, plus one copy when the gaps do not
hold the dimensions yet (an array made with ``numpy.zeros``, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._fields import ArrayKind, RecordKind, ScalarKind
from ._record_errors import DecodeError, FieldValueError
from ._values import first_outside

if TYPE_CHECKING:
    from .baseformat import baseformat

__all__ = ["BatchLayout", "Check", "as_rows", "build_layout", "check_rows", "copy_rows",
           "pack_rows"]

_UINT8 = np.dtype(np.uint8)


@dataclass(frozen=True)
class Check:
    """Array dimensions (``expected``) or bools (``expected`` is ``None``) at ``path``
    of the wire dtype; ``where`` names the field for messages."""

    path: tuple[str, ...]
    expected: np.ndarray | None
    where: str
    levels: tuple[int, ...] = ()
    """the number of dimensions behind each ``[...]`` of ``where`` (arrays of records)"""

    def name(self, index: tuple[int, ...]) -> str:
        """``where`` with the element index of each array of records filled in."""
        text = self.where
        for ndim in self.levels:
            here, index = index[:ndim], index[ndim:]
            text = text.replace("[...]", f"[{', '.join(map(str, here))}]", 1)
        return text


@dataclass(frozen=True)
class BatchLayout:
    """The structured dtypes of a fixed-size record type and what to check in them."""

    dtype: np.dtype[Any]
    """public: the fields, at their packed offsets"""
    wire: np.dtype[Any]
    """private: the same, plus the array dimensions as fields ``'#name'``"""
    dims: tuple[Check, ...]
    bools: tuple[Check, ...]

    @property
    def itemsize(self) -> int:
        """Bytes per record."""
        return int(self.dtype.itemsize)


def build_layout(cls: type[baseformat]) -> BatchLayout | None:
    """The batch layout of ``cls``; ``None`` unless it is fixed-size with a non-zero size."""
    if cls.packed_size is None or cls.packed_size == 0:
        return None
    public: dict[str, list[Any]] = {"names": [], "formats": [], "offsets": []}
    wire: dict[str, list[Any]] = {"names": [], "formats": [], "offsets": []}
    dims: list[Check] = []
    bools: list[Check] = []
    offset = 0

    def add(name: str, public_format: Any, wire_format: Any, at: int) -> None:
        for spec, fmt in ((public, public_format), (wire, wire_format)):
            spec["names"].append(name)
            spec["formats"].append(fmt)
            spec["offsets"].append(at)

    def below(checks: tuple[Check, ...], name: str, ndim: int = 0) -> list[Check]:
        index = "[...]" if ndim else ""
        levels = (ndim,) if ndim else ()
        return [Check((name, *c.path), c.expected, f"{name}{index}.{c.where}",
                      levels + c.levels) for c in checks]

    for field in cls._fields:
        kind = field.kind
        if isinstance(kind, ScalarKind):
            add(field.name, kind.dtype, kind.dtype, offset)
            if kind.name == "bool":
                bools.append(Check((field.name,), None, field.name))
            offset += kind.size
        elif isinstance(kind, RecordKind):
            sub = kind.cls._batch
            if sub is not None:  # a nested record of zero size takes no bytes and has no dtype
                add(field.name, sub.dtype, sub.wire, offset)
                dims += below(sub.dims, field.name)
                bools += below(sub.bools, field.name)
            offset += kind.cls.packed_size or 0
        else:
            assert isinstance(kind, ArrayKind)
            shape = np.array(kind.shape, "<u8")
            wire["names"].append(f"#{field.name}")
            wire["formats"].append(("<u8", (kind.ndim,)))
            wire["offsets"].append(offset)
            dims.append(Check((f"#{field.name}",), shape, field.name))
            offset += 8 * kind.ndim
            element = kind.element
            count = math.prod(kind.shape)
            if isinstance(element, ScalarKind):
                add(field.name, (element.dtype, kind.shape), (element.dtype, kind.shape), offset)
                if element.name == "bool":
                    bools.append(Check((field.name,), None, field.name))
                offset += count * element.size
            else:
                assert isinstance(element, RecordKind)
                sub = element.cls._batch
                if sub is not None:
                    add(field.name, (sub.dtype, kind.shape), (sub.wire, kind.shape), offset)
                    dims += below(sub.dims, field.name, kind.ndim)
                    bools += below(sub.bools, field.name, kind.ndim)
                offset += count * (element.cls.packed_size or 0)
    assert offset == cls.packed_size
    public_spec: Any = {**public, "itemsize": offset}
    wire_spec: Any = {**wire, "itemsize": offset}
    return BatchLayout(np.dtype(public_spec), np.dtype(wire_spec), tuple(dims), tuple(bools))


def _names(dtype: np.dtype[Any]) -> Any:
    """The tree of field names of a structured dtype."""
    base = dtype.subdtype[0] if dtype.subdtype is not None else dtype
    if base.names is None:
        return None
    fields: Any = base.fields
    return tuple((name, _names(fields[name][0])) for name in base.names)


def as_rows(layout: BatchLayout, rows: np.ndarray, record: str) -> np.ndarray:
    """``rows`` as a 1-D array of ``layout.dtype`` (the same array when it already is)."""
    if rows.dtype != layout.dtype:
        if _names(rows.dtype) != _names(layout.dtype):
            raise FieldValueError(f"expected a structured array of the batch dtype (fields "
                                  f"{_names(layout.dtype)}), got fields {_names(rows.dtype)}",
                                  record, "", str(layout.dtype), rows)
        _check_ranges(rows.reshape(-1), rows.dtype, layout.dtype, (), record)
        try:
            rows = rows.astype(layout.dtype, casting="same_kind")
        except TypeError as exc:
            raise FieldValueError(f"expected a structured array of the batch dtype: {exc}",
                                  record, "", str(layout.dtype), rows) from exc
    return rows.reshape(-1)


def _check_ranges(rows: np.ndarray, source: np.dtype[Any], target: np.dtype[Any],
                  path: tuple[str, ...], record: str) -> None:
    """Raise FieldValueError for an integer (at ``path`` below the 1-D ``rows``)
    that the target's integer field cannot hold: the ``'same_kind'`` cast would
    wrap it (2**20 as a uint16 is 0)."""
    source = source.subdtype[0] if source.subdtype is not None else source
    target = target.subdtype[0] if target.subdtype is not None else target
    if target.names is not None:
        source_fields: Any = source.fields
        target_fields: Any = target.fields
        for name in target.names:
            _check_ranges(rows, source_fields[name][0], target_fields[name][0],
                          (*path, name), record)
        return
    if not len(rows) or source.kind not in "iu" or target.kind not in "iu":
        return
    column = _at(rows, path).reshape(len(rows), -1)
    bad = first_outside(column, target)
    if bad is not None:
        row = bad // column.shape[1]
        info = np.iinfo(target)
        raise FieldValueError(f"record {row} of the batch: {column.reshape(-1)[bad]} is "
                              f"outside the range of {target.name} ({info.min} to "
                              f"{info.max})", record, ".".join(path), target.name, rows)


def _at(wire: np.ndarray, path: tuple[str, ...]) -> np.ndarray:
    for name in path:
        wire = wire[name]
    return wire


def _bad_dims(wire: np.ndarray, check: Check) -> np.ndarray:
    """Per record: whether any of its dimensions at ``check`` differ."""
    found = _at(wire, check.path)
    return (found != check.expected).reshape(len(wire), -1).any(axis=1)


def _dims_differ(wire: np.ndarray, check: Check) -> bool:
    """Whether any record's dimensions at ``check`` differ from the declared ones.

    One column at a time against a scalar: much faster than comparing the
    strided (records, ndim) view with the declared shape as a whole.
    """
    assert check.expected is not None
    found = _at(wire, check.path)
    return any(bool((found[..., axis] != size).any())
               for axis, size in enumerate(check.expected.tolist()))


def _bad_bools(wire: np.ndarray, check: Check) -> np.ndarray:
    found = _at(wire, check.path).view(_UINT8)
    return np.asarray((found > 1).reshape(len(wire), -1).any(axis=1))


def check_rows(layout: BatchLayout, wire: np.ndarray, record: str) -> None:
    """Raise DecodeError unless every record of ``wire`` (an array of the wire
    dtype) has the declared array dimensions and bool bytes of 0 or 1."""
    if not len(wire):
        return
    for check in layout.dims:
        assert check.expected is not None
        if _dims_differ(wire, check):
            row = int(np.argmax(_bad_dims(wire, check)))
            found = _at(wire[row:row + 1], check.path)[0]  # (element dims..., ndim)
            bad = (found != check.expected).reshape(-1, len(check.expected)).any(axis=1)
            element = int(np.argmax(bad))
            index = tuple(int(i) for i in np.unravel_index(element, found.shape[:-1]))
            value = tuple(found.reshape(-1, len(check.expected))[element].tolist())
            offset = (row * layout.itemsize + _offset(layout.wire, check.path)
                      + element * _stride(layout.wire, check.path))
            raise DecodeError(f"record {row} of the batch: array dimensions {value}, declared "
                              f"{tuple(check.expected.tolist())}", record, check.name(index),
                              offset)
    for check in layout.bools:
        if _at(wire, check.path).view(_UINT8).max() > 1:  # (max: no temporary array)
            row = int(np.argmax(_bad_bools(wire, check)))
            found = np.asarray(_at(wire[row:row + 1], check.path).view(_UINT8)[0])
            position = int(np.argmax(found.reshape(-1) > 1))
            where = tuple(int(i) for i in np.unravel_index(position, found.shape))
            byte = int(found.reshape(-1)[position])
            raise DecodeError(f"record {row} of the batch: a bool must be the byte 0 or 1, "
                              f"not {byte}", record, check.name(where),
                              row * layout.itemsize + _offset(layout.wire, check.path))


def _stride(dtype: np.dtype[Any], path: tuple[str, ...]) -> int:
    """Bytes between consecutive elements of the arrays of records along ``path``
    (0 when there are none): the item size of the innermost one."""
    stride = 0
    for name in path:
        base = dtype.subdtype[0] if dtype.subdtype is not None else dtype
        fields: Any = base.fields
        dtype = fields[name][0]
        if dtype.subdtype is not None and dtype.subdtype[0].names is not None:
            stride = dtype.subdtype[0].itemsize
    return stride


def _offset(dtype: np.dtype[Any], path: tuple[str, ...]) -> int:
    """Byte offset of the first element at ``path``."""
    total = 0
    for name in path:
        base = dtype.subdtype[0] if dtype.subdtype is not None else dtype
        fields: Any = base.fields
        sub, at = fields[name][:2]
        total += at
        dtype = sub
    return total


def copy_rows(rows: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a 1-D structured array, gap bytes included.

    numpy copies a structured dtype with gaps field by field, which is slow and
    leaves the gaps undefined; a contiguous array is copied as bytes instead.
    """
    if rows.flags.c_contiguous:
        return rows.view(_UINT8).copy().view(rows.dtype)
    return np.ascontiguousarray(rows)


def rows_buffer(layout: BatchLayout, rows: np.ndarray) -> memoryview:
    """The packed bytes of a 1-D array of ``layout.dtype``, without a copy when possible.

    When the rows are C-contiguous and no dimension has to be written into the
    gaps, the result is a read-only view of their memory; else the bytes of
    :func:`pack_rows`.
    """
    if rows.flags.c_contiguous and not (
            layout.dims and any(_dims_differ(rows.view(layout.wire), c) for c in layout.dims)):
        return rows.data.cast("B").toreadonly()
    return memoryview(pack_rows(layout, rows))


def pack_rows(layout: BatchLayout, rows: np.ndarray) -> bytes:
    """The packed bytes of a 1-D array of ``layout.dtype``.

    The dimensions in the gaps are written into a copy unless they are already
    right in C-contiguous rows (as in arrays from ``unpack_batch`` or
    ``to_batch``): numpy copies other rows field by field, leaving the gaps
    undefined. Bool bytes are not checked: numpy bools are 0 or 1, and
    unpacking checks anyway.
    """
    if layout.dims and (not rows.flags.c_contiguous or any(
            _dims_differ(rows.view(layout.wire), c) for c in layout.dims)):
        rows = copy_rows(rows)
        wire = rows.view(layout.wire)
        for check in layout.dims:
            _at(wire, check.path)[...] = check.expected
    return rows.tobytes()
