"""Numpy arrays, scalars and dtypes written as readable calls.

An array of plain numbers or strings is written as ``numpy.array([...], dtype=...)``
from ``tolist()``, which converts back exactly (NaN and infinities included, as
``numpy.nan`` and ``numpy.inf``); datetimes through their int64 view, and floats
holding a NaN that ``numpy.nan`` would not give back bit for bit (its sign bit set,
a payload) through their unsigned-integer view. Other arrays (object, structured,
long double, subclasses) go to the pickle protocol. An array above the size
threshold becomes a slot of the side ``.npz`` file.

A dtype is written as ``numpy.dtype(spec)``, with ``spec`` its name (``'float64'``),
a subarray ``(base, shape)``, the list of its fields, or, when it has offsets,
padding or alignment a list cannot say, the dict of its names, formats, offsets and
itemsize; a recarray's record dtype is ``(numpy.record, spec)``. Each spec is
checked to give the very dtype back before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._nodes import (
    Context,
    Node,
    Refuse,
    complex_text,
    float_text,
    int_text,
    plain_nan,
    tuple_text,
)
from ._recipes import wrapped

__all__ = ["numpy_node"]

_WRAP_AT = 96


def numpy_node(obj: np.ndarray | np.generic | np.dtype, *, threshold: float,
               external: bool) -> Node | None:
    """The node for a numpy value, or None when the pickle protocol should write it.

    An array with more than ``threshold`` elements becomes a slot of the side data
    file, which must exist (``external``), else :class:`Refuse`.
    """
    if isinstance(obj, np.dtype):
        return _dtype(obj)
    if isinstance(obj, np.generic):
        return _numpy_scalar(obj)
    if type(obj) is not np.ndarray or obj.dtype.hasobject:
        return None
    if obj.size > threshold:
        if not external:
            raise Refuse(f"the array has {obj.size} elements, over array_threshold="
                         f"{threshold}, and this archive has no data file for it "
                         f"(give Archive(datafile=...) or use Archive.save(path))")
        return _external_array(obj)
    return _inline_array(obj)


def _external_array(a: np.ndarray) -> Node | None:
    """A slot of the side data file.

    The ``.npy`` format describes a structured dtype by its list of fields, which
    loses padding, offsets and alignment; such an array is stored as raw bytes
    (a ``V<itemsize>`` view) and viewed back as its dtype.
    """
    dtype = a.dtype
    if dtype.names is None or _gives_back(dtype.descr, dtype):
        return Node(label="array", stem="array", how="external",
                    render=lambda ctx, c: ctx.external(a))
    spec = _dtype_spec(dtype)
    if spec is None:
        return None
    raw = a.view(f"V{dtype.itemsize}")

    def render(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        return f"{ctx.external(raw)}.view({np_}.dtype({_spec_text(spec, np_)}))"

    return Node(label="array", stem="array", how="external", render=render)


# -- dtypes -------------------------------------------------------------------------------

def _dtype(dtype: np.dtype) -> Node | None:
    spec = _dtype_spec(dtype)
    if spec is None:
        return None

    def render(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        return f"{np_}.dtype({_spec_text(spec, np_)})"

    return Node(label="dtype", stem="dtype", share=False, how="numpy", render=render)


def _dtype_text(dtype: np.dtype) -> str | None:
    """The quoted name of a dtype without fields (``'float64'``), if a name gives it back."""
    name = _dtype_name(dtype)
    return None if name is None else repr(name)


def _dtype_name(dtype: np.dtype) -> str | None:
    """``str(dtype)`` (``'float64'``), or else ``dtype.str`` (``'<f8'``), whichever
    gives ``dtype`` back; None if neither does."""
    for spelling in (str(dtype), dtype.str):
        if _gives_back(spelling, dtype):
            return spelling
    return None


def _dtype_spec(dtype: np.dtype) -> Any:
    """A value ``numpy.dtype()`` turns into exactly ``dtype``, or None if none is found."""
    if dtype.metadata is not None:
        return None
    if dtype.names is not None:
        spec = _fields_spec(dtype)
        if spec is not None and dtype.type is np.record:
            spec = (np.record, spec)
    elif dtype.subdtype is not None:
        base, shape = dtype.subdtype
        inner = _dtype_spec(base)
        spec = None if inner is None else (inner, shape)
    else:
        spec = _dtype_name(dtype)
    return spec if spec is not None and _gives_back(spec, dtype) else None


def _fields_spec(dtype: np.dtype) -> Any:
    """The fields of a structured dtype: as a list if that says all, else as a dict."""
    assert dtype.names is not None and dtype.fields is not None
    names = list(dtype.names)
    fields = [dtype.fields[name] for name in names]
    formats = [_dtype_spec(field[0]) for field in fields]
    if any(f is None for f in formats):
        return None
    titles = [field[2] if len(field) > 2 else None for field in fields]
    listed = [(name if title is None else (title, name), f)
              for name, title, f in zip(names, titles, formats)]
    if not dtype.isalignedstruct and _gives_back(listed, dtype):
        return listed
    spec: dict[str, object] = {"names": names, "formats": formats,
                               "offsets": [field[1] for field in fields],
                               "itemsize": dtype.itemsize}
    if any(title is not None for title in titles):
        spec["titles"] = titles
    if dtype.isalignedstruct:
        spec["aligned"] = True
    return spec


def _gives_back(spec: object, dtype: np.dtype) -> bool:
    """Whether ``numpy.dtype(spec)`` is ``dtype``: equal, same layout, type and alignment."""
    try:
        made = np.dtype(spec)  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError, SyntaxError...
        return False
    return (made == dtype and made.type is dtype.type and made.descr == dtype.descr
            and made.isalignedstruct == dtype.isalignedstruct)


def _spec_text(spec: object, np_: str) -> str:
    """A dtype spec written as source; ``np_`` is the alias numpy is imported as."""
    if spec is np.record:
        return f"{np_}.record"
    if isinstance(spec, tuple):
        return tuple_text([_spec_text(item, np_) for item in spec])
    if isinstance(spec, list):
        return f"[{', '.join(_spec_text(item, np_) for item in spec)}]"
    if isinstance(spec, dict):
        return f"{{{', '.join(f'{k!r}: {_spec_text(v, np_)}' for k, v in spec.items())}}}"
    return repr(spec)


# -- scalars and arrays ----------------------------------------------------------------------


def _plain_numbers(dtype: np.dtype) -> bool:
    # Kinds whose tolist() gives Python values that convert back exactly.
    kind, size = dtype.kind, dtype.itemsize
    return kind in "biuUS" or (kind == "f" and size <= 8) or (kind == "c" and size <= 16)


def _numpy_scalar(obj: np.generic) -> Node | None:
    cls = type(obj)
    if getattr(np, cls.__name__, None) is not cls or not _plain_numbers(obj.dtype) \
            or obj.dtype.kind in "US":
        return None
    value = obj.item()
    bits = _as_bits(np.asarray(obj))

    def render(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        if bits is not None:
            # The 0-d array made from the bits; indexing it by () gives the scalar.
            return f"{bits.text(np_, repr(bits.values))}[()]"
        return f"{np_}.{cls.__name__}({_scalar(ctx, value, None)})"

    return Node(label=f"numpy {cls.__name__}", stem=cls.__name__, share=False, how="numpy",
                render=render)


def _scalar(ctx: Context, value: object, np_alias: str | None) -> str:
    if type(value) is float:
        if np_alias is not None and plain_nan(value):
            return f"{np_alias}.nan"
        if np_alias is not None and value in (float("inf"), float("-inf")):
            return f"{np_alias}.inf" if value > 0 else f"-{np_alias}.inf"
        return float_text(ctx, value)
    if type(value) is complex:
        return complex_text(ctx, value)
    if type(value) is int:
        return int_text(value)
    return repr(value)


def _nested(ctx: Context, values: object, np_alias: str) -> str:
    if isinstance(values, list):
        return f"[{', '.join(_nested(ctx, v, np_alias) for v in values)}]"
    return _scalar(ctx, values, np_alias)


@dataclass(frozen=True)
class _Listed:
    """An array as ``numpy.array(values, dtype=dtype)`` followed by ``back``, which
    turns the array of ``values`` (``ndim`` deep) into the original one."""

    values: object
    dtype: str
    ndim: int
    back: str = ""

    def text(self, np_: str, body: str) -> str:
        """The expression, with ``body`` the values as written."""
        return f"{np_}.array({body}, dtype={self.dtype}){self.back}"


def _as_values(a: np.ndarray) -> _Listed | None:
    """An array of plain numbers or strings as the values ``tolist()`` gives."""
    text = _dtype_text(a.dtype) if _plain_numbers(a.dtype) else None
    return None if text is None else _Listed(a.tolist(), text, a.ndim)


def _as_times(a: np.ndarray) -> _Listed | None:
    """An array of 64-bit datetimes or timedeltas through its int64 view."""
    if a.dtype.kind not in "Mm" or a.dtype.itemsize != 8:
        return None
    text = _dtype_text(a.dtype)
    if text is None:
        return None
    return _Listed(a.view("int64").tolist(), "'int64'", a.ndim, f".view({text})")


def _as_bits(a: np.ndarray) -> _Listed | None:
    """A float or complex array holding an odd NaN, through its unsigned-integer view.

    A complex array's values get an extra last axis (the bits of its real and
    imaginary parts), which the view back to complex shrinks to length 1 and a
    reshape removes.
    """
    if a.dtype.kind not in "fc" or not _plain_numbers(a.dtype) or not _odd_nan(a):
        return None
    text = _dtype_text(a.dtype)
    if text is None:
        return None
    if a.dtype.kind == "f":
        unsigned = f"uint{8 * a.dtype.itemsize}"
        return _Listed(a.view(unsigned).tolist(), repr(unsigned), a.ndim, f".view({text})")
    unsigned = f"uint{4 * a.dtype.itemsize}"
    parts = np.ascontiguousarray(a).reshape(a.shape + (1,)).view(unsigned)
    return _Listed(parts.tolist(), repr(unsigned), a.ndim + 1,
                   f".view({text}).reshape({a.shape!r})")


def _odd_nan(a: np.ndarray) -> bool:
    """Whether float or complex ``a`` holds a NaN that ``numpy.nan`` would not give back
    bit for bit: one with its sign bit set, or with a payload."""
    for part in (a.real, a.imag) if a.dtype.kind == "c" else (a,):
        nans = part[np.isnan(part)]
        if nans.size:
            unsigned = f"u{nans.dtype.itemsize}"
            plain = np.array(np.nan, dtype=nans.dtype).view(unsigned)
            if (nans.view(unsigned) != plain).any():
                return True
    return False


def _inline_array(a: np.ndarray) -> Node | None:
    listed = _as_times(a) or _as_bits(a) or _as_values(a)
    if listed is None:
        return None
    shape, values = a.shape, listed.values

    def render(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        if a.size == 0:
            return f"{np_}.empty({shape!r}, dtype={listed.dtype}){listed.back}"
        return listed.text(np_, _nested(ctx, values, np_))

    def wrap(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        if a.size == 0 or not isinstance(values, list):
            return render(ctx, c)
        if listed.ndim >= 2:
            rows = [_nested(ctx, row, np_) for row in values]
        else:
            rows, line = [], ""
            for v in values:
                item = _scalar(ctx, v, np_)
                if line and len(line) + len(item) > _WRAP_AT - 8:
                    rows.append(line.rstrip(", ").rstrip(","))
                    line = ""
                line += item + ", "
            rows.append(line.rstrip(", ").rstrip(","))
        return listed.text(np_, wrapped("[", rows, "]"))

    return Node(label="array", stem="array", render=render, wrap=wrap, how="numpy")
