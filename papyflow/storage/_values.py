"""How values map to HDF5 objects, so that they load back with exactly their types.

:func:`write_value` writes a value as one dataset (a group, for a dict) and
returns its *type*, a small JSON-able dict saying what the value was and how it
was laid out (``"f"``: the storage flag); the caller keeps it (the service
keeps the types of a leaf's values in one attribute of the leaf: one attribute
write per leaf, not per value, is most of what makes storing fast).
:func:`read_value` turns the HDF5 data back into that type.

A type is ``{"t": kind, "f": flag, ...}``, kind one of:

=============  ===============================================================
``bool`` ...   a Python ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``
``none``       ``None``
``np``         a numpy scalar (the dataset's dtype is the scalar's)
``np.str``     ``numpy.str_``; ``np.bytes``: ``numpy.bytes_``
``ndarray``    a numpy array, ``"dtype"`` its numpy dtype when HDF5 keeps another
``list``       a list, ``tuple``: a tuple; ``"e"`` is the kind of the elements
``dict``       a dict (an HDF5 group, children ``0``, ``1``...; ``"keys"``, ``"v"`` their types)
``table``      a dict of equal-length columns (a compound dataset), ``"cols"``
``record``     a papyflow record, ``"schema"`` its type's schema, ``"name"``
=============  ===============================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from papyflow.formats.baseformat import baseformat

from . import pypetconstants as pc
from ._h5 import new_dataset, new_group
from .errors import UnsupportedDataError
from .items import utf8_problem

__all__ = ["infer_flag", "read_value", "write_value"]


_STR = h5py.string_dtype("utf-8")
_INT64 = np.iinfo(np.int64)
_PY_SCALARS: dict[type, str] = {bool: "bool", int: "int", float: "float", complex: "complex",
                                str: "str"}
_PY_MAKE: dict[str, Any] = {"bool": bool, "int": int, "float": float, "complex": complex}


# -- what a value is ---------------------------------------------------------------------


def infer_flag(value: Any) -> str:
    """The storage flag a value gets when none is given."""
    if isinstance(value, baseformat):
        return pc.RECORD
    if isinstance(value, Mapping):
        return pc.DICT
    if isinstance(value, np.ndarray) and value.ndim > 0 and value.size > 0 \
            and value.dtype.fields is None:
        return pc.CARRAY
    return pc.ARRAY


def _fail(where: str, why: str) -> UnsupportedDataError:
    return UnsupportedDataError(f"{where}: cannot store {why}")


def _check_text(where: str, text: str) -> None:
    if "\0" in text:
        raise _fail(where, "a string holding NUL characters (HDF5 strings end at NUL)")
    problem = utf8_problem(text)
    if problem is not None:
        raise _fail(where, f"a string that is not UTF-8 encodable ({problem})")


def _scalar(where: str, value: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A 0-d array and the type of one scalar value (Python, numpy, str, bytes, None)."""
    kind = _PY_SCALARS.get(type(value))
    if kind == "str":
        _check_text(where, value)
        return np.array(value, dtype=_STR), {"t": "str"}
    if kind == "int":
        if not _INT64.min <= value <= _INT64.max:
            raise _fail(where, f"the int {value}: outside the 64-bit range")
        return np.array(value, dtype=np.int64), {"t": "int"}
    if kind is not None:
        return np.array(value), {"t": kind}
    if type(value) is np.str_:
        _check_text(where, str(value))
        return np.array(str(value), dtype=_STR), {"t": "np.str"}
    if isinstance(value, np.generic) and not isinstance(value, np.bytes_ | np.void) \
            and value.dtype.kind in "biufc":
        data = np.asarray(value)
        # np.longlong is int64 in all but its type, which a file does not keep: its code
        if value.dtype.char != np.dtype(value.dtype.str).char:
            return data, {"t": "np", "c": value.dtype.char}
        return data, {"t": "np"}
    raise _fail(where, f"a value of type {type(value).__name__}")


def _check_fields(where: str, dtype: np.dtype, prefix: str = "") -> None:
    """Refuse a structured dtype with a field HDF5 cannot hold as it is (strings of
    ``U`` characters, objects...): h5py would fail without naming it."""
    assert dtype.fields is not None
    if not dtype.names:
        raise _fail(where, "a structured array with no fields")
    end = 0
    for name, (field_type, offset, *title) in sorted(dtype.fields.items(),
                                                     key=lambda entry: entry[1][1]):
        if title:  # HDF5 keeps names and offsets only
            raise _fail(where, f"a structured array whose field {prefix}{name!r} has the "
                        f"title {title[0]!r} (titles are not kept)")
        if offset < end:
            raise _fail(where, f"a structured array whose field {prefix}{name!r} overlaps "
                        "the field before it (HDF5 fields cannot share bytes)")
        end = offset + field_type.itemsize
    for name in dtype.names:
        if not name or "\0" in name or utf8_problem(name) is not None:
            raise _fail(where, f"a structured array with the field name {prefix}{name!r} "
                        "(field names are non-empty text in UTF-8 without NUL)")
        if 0 in dtype.fields[name][0].shape:
            raise _fail(where, f"a structured array whose field {prefix}{name!r} has the "
                        f"shape {dtype.fields[name][0].shape}, which holds nothing")
        field = dtype.fields[name][0].base  # the element type of a sub-array field, too
        if field.fields is not None:
            _check_fields(where, field, f"{prefix}{name}.")
        elif field.kind not in "biufcS":
            raise _fail(where, f"a structured array whose field {prefix}{name!r} has dtype "
                        f"{field} (fields may hold numbers, bools and S bytes)")


def _array(where: str, value: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    dtype = value.dtype
    if dtype.fields is not None:
        _check_fields(where, dtype)
        return value, {"t": "ndarray"}
    if dtype.kind in "biufcS":
        return value, {"t": "ndarray"}
    if dtype.kind == "U":
        for text in value.flat:
            _check_text(where, str(text))
        return value.astype(_STR), {"t": "ndarray", "dtype": dtype.str}
    raise _fail(where, f"a numpy array of dtype {dtype}")


def _sequence(where: str, value: list | tuple) -> tuple[np.ndarray, dict[str, Any]]:
    """One array for a homogeneous list or tuple, and its type (``e``: the elements')."""
    container = "list" if type(value) is list else "tuple"
    if not value:
        return np.zeros(0, dtype=np.float64), {"t": container, "e": None}
    first = value[0]
    kinds = {type(item) for item in value}
    if len(kinds) > 1:
        raise _fail(where, f"a {container} mixing {sorted(k.__name__ for k in kinds)}: lists "
                    "and tuples must be homogeneous")
    if isinstance(first, np.ndarray):
        if type(first) is not np.ndarray:  # it would come back as a plain array
            raise _fail(where, f"a {container} of {type(first).__name__}: the arrays of a list "
                        "or tuple must be plain numpy arrays")
        shapes = {(item.shape, item.dtype) for item in value}
        if len(shapes) > 1:
            raise _fail(where, f"a {container} of arrays of different shapes or dtypes")
        # dtype: np.stack alone would turn big-endian arrays into the machine's order
        data, element = _array(where, np.stack(value, dtype=first.dtype))
        element = {**element, "t": "ndarray"}
        return data, {"t": container, "e": element}
    # Strings of numpy differ in dtype by their length (<U1, <U2): one type all the same.
    if isinstance(first, np.generic) and type(first) is not np.str_ \
            and len({item.dtype for item in value}) > 1:
        raise _fail(where, f"a {container} of numpy scalars of different dtypes")
    if not (type(first) in _PY_SCALARS or type(first) is np.str_
            or (isinstance(first, np.generic) and not isinstance(first, np.bytes_ | np.void)
                and first.dtype.kind in "biufc")):
        # Stored alone, a list, a bytes or a dict is fine: say that it is the element
        # that cannot be, not the value.
        nested = " (nested lists and tuples)" if isinstance(first, list | tuple) else ""
        raise _fail(where, f"a {container} of {type(first).__name__}{nested}: the elements "
                    "of a list or tuple must be Python or numpy scalars, strings, or numpy "
                    "arrays of one shape and dtype")
    parts = [_scalar(where, item) for item in value]
    element = parts[0][1]
    if element["t"] in ("str", "np.str"):
        return np.array([str(item) for item in value], dtype=_STR), {"t": container,
                                                                     "e": element}
    return np.stack([data for data, _ in parts]), {"t": container, "e": element}


def encode(where: str, value: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The array to write for ``value`` (not a dict, not a record) and its type."""
    if value is None:
        return np.zeros(0, dtype=np.uint8), {"t": "none"}
    if type(value) is bytes:
        return np.frombuffer(value, dtype=np.uint8), {"t": "bytes"}
    if type(value) is np.bytes_:
        return np.frombuffer(bytes(value), dtype=np.uint8), {"t": "np.bytes"}
    if isinstance(value, np.ndarray) and type(value) is np.ndarray:
        return _array(where, value)
    if type(value) in (list, tuple):
        return _sequence(where, value)
    return _scalar(where, value)


# -- back from HDF5 ----------------------------------------------------------------------


def _text(item: Any) -> str:
    return item.decode("utf-8") if isinstance(item, bytes) else str(item)


def _scalar_back(meta: Mapping[str, Any], item: Any) -> Any:
    kind = meta["t"]
    if kind == "str":
        return _text(item)
    if kind == "np.str":
        return np.str_(_text(item))
    if kind in _PY_MAKE:
        return _PY_MAKE[kind](item.item() if isinstance(item, np.generic | np.ndarray)
                              else item)
    if kind == "np":
        if "c" in meta:
            return np.asarray(item).astype(np.dtype(meta["c"]))[()]
        return item[()] if isinstance(item, np.ndarray) else item
    raise ValueError(f"unknown stored type {kind!r}")


def _array_back(meta: Mapping[str, Any], data: np.ndarray) -> np.ndarray:
    data = np.asarray(data)
    if "dtype" in meta:
        dtype = np.dtype(meta["dtype"])
        if dtype.kind == "U":
            return np.array([_text(x) for x in data.flat], dtype=dtype).reshape(data.shape)
        return data.astype(dtype)
    return data


def decode(meta: Mapping[str, Any], data: Any) -> Any:
    """The value that ``encode`` turned into ``data`` and ``meta``."""
    kind = meta["t"]
    if kind == "none":
        return None
    if kind == "bytes":
        return np.asarray(data, dtype=np.uint8).tobytes()
    if kind == "np.bytes":
        return np.bytes_(np.asarray(data, dtype=np.uint8).tobytes())
    if kind == "ndarray":
        return _array_back(meta, data)
    if kind in ("list", "tuple"):
        element = meta["e"]
        if element is None:
            items: list[Any] = []
        elif element["t"] == "ndarray":
            stacked = _array_back(element, data)
            # stacked[k, ...] is an array even for 0-d elements; stacked[k] would be a scalar.
            items = [stacked[k, ...] for k in range(len(stacked))]
        elif element["t"] == "np":
            items = list(np.asarray(data).astype(np.dtype(element["c"])) if "c" in element
                         else np.asarray(data))
        elif element["t"] in _PY_MAKE:
            items = np.asarray(data).tolist()
        else:
            items = [_scalar_back(element, item) for item in np.asarray(data)]
        return items if kind == "list" else tuple(items)
    return _scalar_back(meta, data[()] if isinstance(data, np.ndarray) else data)


# -- records -------------------------------------------------------------------------------


def _lists_to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_lists_to_tuples(item) for item in value)
    return value


def _record_type(schema: Any) -> type[baseformat]:
    # A record type is known by its schema (name and fields, recursively): the
    # formats package keeps one class per schema, made anew when unknown.
    from papyflow.formats.baseformat import _type_of_schema

    return _type_of_schema(_lists_to_tuples(schema))


# -- the datasets ------------------------------------------------------------------------


def _dataset(group: h5py.Group, name: str, data: np.ndarray, chunked: bool) -> None:
    if chunked:
        group.create_dataset(name, data=data, chunks=True, compression="gzip",
                             compression_opts=4, shuffle=data.dtype.kind in "biuf")
    else:
        new_dataset(group, name, data)


def write_value(group: h5py.Group, name: str, value: Any, flag: str | None = None,
                where: str = "") -> dict[str, Any]:
    """Write ``value`` as the child ``name`` of ``group``, laid out as ``flag`` says
    (inferred when ``None``); returns its type, for :func:`read_value`.

    Raises:
        UnsupportedDataError: the value, or the value with that flag, cannot be stored.
    """
    where = where or f"{group.name}/{name}"
    flag = infer_flag(value) if flag is None else flag
    if flag == pc.RECORD:
        if not isinstance(value, baseformat):
            raise _fail(where, f"a {type(value).__name__} with flag RECORD (records only)")
        kind = type(value)
        new_dataset(group, name, np.frombuffer(value.pack(), dtype=np.uint8))
        return {"t": "record", "f": flag, "name": kind._name, "schema": kind._schema}
    if flag == pc.DICT:
        if type(value) is not dict:
            raise _fail(where, f"a {type(value).__name__} with flag DICT (dicts only)")
        keys = list(value)
        if any(type(key) is not str for key in keys):
            raise _fail(where, "a dict with keys that are not str")
        for key in keys:
            if isinstance(value[key], Mapping):
                raise _fail(f"{where}[{key!r}]", "a nested dict")
        child = new_group(group, name)
        metas = [write_value(child, str(k), item, pc.RECORD if isinstance(item, baseformat)
                             else pc.ARRAY, f"{where}[{key!r}]")
                 for k, (key, item) in enumerate(value.items())]
        return {"t": "dict", "f": flag, "keys": keys, "v": metas}
    if flag == pc.TABLE:
        data, meta = _table(where, value)
        group.create_dataset(name, data=data)  # compound: h5py converts the strings
        return {**meta, "f": flag}
    if flag in (pc.ARRAY, pc.CARRAY):
        if isinstance(value, Mapping | baseformat):
            raise _fail(where, f"a {type(value).__name__} with flag {flag}")
        data, meta = encode(where, value)
        chunked = flag == pc.CARRAY
        if chunked and (data.ndim == 0 or data.size == 0):
            raise _fail(where, "an empty or 0-d value with flag CARRAY (chunks need elements)")
        _dataset(group, name, data, chunked)
        return {**meta, "f": flag}
    raise UnsupportedDataError(f"{where}: unknown storage flag {flag!r} "
                               f"(known: {', '.join(sorted(pc.FLAGS))})")


def _table(where: str, value: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A compound array for a dict of equal-length columns or a 1-d structured array."""
    if isinstance(value, np.ndarray) and value.dtype.fields is not None:
        _check_fields(where, value.dtype)
        return value, {"t": "ndarray"}
    if type(value) is not dict or not value:
        raise _fail(where, f"a {type(value).__name__} with flag TABLE (a non-empty dict of "
                    "equal-length columns, or a structured array)")
    columns = []
    lengths = set()
    for key, column in value.items():
        if type(key) is not str:
            raise _fail(where, "a table with column names that are not str")
        if not key or "\0" in key or utf8_problem(key) is not None:
            raise _fail(where, f"a table with the column name {key!r} (column names are "
                        "non-empty text in UTF-8 without NUL)")
        if not (type(column) in (list, tuple) or (isinstance(column, np.ndarray)
                                                  and column.ndim == 1)):
            raise _fail(f"{where}[{key!r}]", f"a table column of type {type(column).__name__}")
        data, meta = encode(f"{where}[{key!r}]", column)
        if data.ndim != 1:
            raise _fail(f"{where}[{key!r}]", "a table column of arrays")
        columns.append((key, data, meta))
        lengths.add(len(data))
    if len(lengths) > 1:
        raise _fail(where, f"a table with columns of different lengths {sorted(lengths)}")
    dtype = np.dtype([(key, data.dtype) for key, data, _ in columns])
    table = np.empty(lengths.pop(), dtype=dtype)
    for key, data, _ in columns:
        table[key] = data
    return table, {"t": "table", "cols": [[key, meta] for key, _, meta in columns]}


def read_value(node: h5py.Dataset | h5py.Group, meta: Mapping[str, Any] | None) -> Any:
    """The value that :func:`write_value` wrote as ``node`` and described by ``meta``;
    what h5py reads for a node papyflow did not write (``meta`` ``None``)."""
    if meta is None:
        return node[()] if isinstance(node, h5py.Dataset) else None
    kind = meta["t"]
    if kind == "dict":
        return {key: read_value(node[str(k)], item)
                for k, (key, item) in enumerate(zip(meta["keys"], meta["v"], strict=True))}
    data = node[()]
    if kind == "record":
        return _record_type(meta["schema"]).unpack(np.asarray(data, dtype=np.uint8).tobytes())
    if kind == "table":
        return {key: decode(column, data[key]) for key, column in meta["cols"]}
    return decode(meta, data)
