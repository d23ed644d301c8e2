"""Numpy arrays, scalars and dtypes written as readable calls.

An array of plain numbers or strings is written as ``numpy.array([...], dtype=...)``
from ``tolist()``, which converts back exactly (NaN and infinities included, as
``numpy.nan`` and ``numpy.inf``); datetimes through their int64 view. Other arrays
(object, structured, long double, subclasses) go to the pickle protocol. An array
above the size threshold becomes a slot of the side ``.npz`` file.
"""

from __future__ import annotations

import numpy as np

from ._nodes import Context, Node, Refuse, complex_text, float_text, int_text
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
        return Node(label="array", stem="array", how="external",
                    render=lambda ctx, c: ctx.external(obj))
    return _inline_array(obj)


def _dtype_text(dtype: np.dtype) -> str | None:
    for spelling in (str(dtype), dtype.str):
        try:
            if np.dtype(spelling) == dtype:
                return repr(spelling)
        except TypeError:
            pass
    return None


def _dtype(dtype: np.dtype) -> Node | None:
    text = _dtype_text(dtype)
    if text is None:
        try:
            if dtype.names is None or np.dtype(dtype.descr) != dtype:
                return None
        except (TypeError, ValueError):
            return None
        text = repr(dtype.descr)
    return Node(label="dtype", stem="dtype", share=False, how="numpy",
                render=lambda ctx, c: f"{ctx.module('numpy')}.dtype({text})")


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

    def render(ctx: Context, c: list[str]) -> str:
        return f"{ctx.module('numpy')}.{cls.__name__}({_scalar(ctx, value, None)})"

    return Node(label=f"numpy {cls.__name__}", stem=cls.__name__, share=False, how="numpy",
                render=render)


def _scalar(ctx: Context, value: object, np_alias: str | None) -> str:
    if type(value) is float:
        if np_alias is not None and value != value:
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


def _inline_array(a: np.ndarray) -> Node | None:
    dtype = a.dtype
    if dtype.kind in "Mm" and dtype.itemsize == 8:
        values = a.view("int64").tolist()
        view: str | None = _dtype_text(dtype)
        dtype_text: str | None = "'int64'"
    elif _plain_numbers(dtype):
        values = a.tolist()
        view, dtype_text = None, _dtype_text(dtype)
    else:
        return None
    if dtype_text is None or (dtype.kind in "Mm" and view is None):
        return None
    shape = a.shape

    def finish(np_: str, body: str) -> str:
        made = f"{np_}.array({body}, dtype={dtype_text})"
        return f"{made}.view({view})" if view else made

    def render(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        if a.size == 0:
            made = f"{np_}.empty({shape!r}, dtype={dtype_text})"
            return f"{made}.view({view})" if view else made
        return finish(np_, _nested(ctx, values, np_))

    def wrap(ctx: Context, c: list[str]) -> str:
        np_ = ctx.module("numpy")
        if a.size == 0 or not isinstance(values, list):
            return render(ctx, c)
        if a.ndim >= 2:
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
        return finish(np_, wrapped("[", rows, "]"))

    return Node(label="array", stem="array", render=render, wrap=wrap, how="numpy")
