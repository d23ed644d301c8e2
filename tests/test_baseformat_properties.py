"""Properties of record types over random field specs and random records (Hypothesis).

Round trips are exact, batches equal records packed one by one, and the
decoder, fed random bytes, truncations and bit flips, returns a record or
raises DecodeError: nothing else, and its fast path agrees with the careful one.
"""

from __future__ import annotations

import io
import itertools
import math
import pickle
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from papyflow.formats._codegen import FAST_PATH_ERRORS
from papyflow.formats._fields import ArrayKind, Kind, RecordKind, ScalarKind, StringKind
from papyflow.formats._layout import decode_exactly
from papyflow.formats.baseformat import DecodeError, baseformat, make_type

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64", "complex64", "complex128", "bool"]
_names = itertools.count()


# -- random record types ---------------------------------------------------------------------


def _element(depth: int, fixed: bool) -> st.SearchStrategy[Any]:
    names = st.sampled_from(SCALARS if fixed else [*SCALARS, "string"])
    if depth <= 0:
        return names
    return st.one_of(names, record_types(depth - 1, fixed))


def _spec(depth: int, fixed: bool) -> st.SearchStrategy[Any]:
    dims = st.lists(st.integers(1 if fixed else 0, 3), min_size=1, max_size=3)
    array = st.tuples(dims, _element(depth, fixed)).map(lambda t: [*t[0], t[1]])
    return st.one_of(_element(depth, fixed), array)


def record_types(depth: int = 2, fixed: bool = False) -> st.SearchStrategy[type[baseformat]]:
    """Random record types (nested at most ``depth`` deep); ``fixed``: fixed-size ones."""
    fields = st.lists(_spec(depth, fixed), min_size=0, max_size=4)
    return fields.map(lambda specs: make_type(
        f"test/r{next(_names)}/1", {f"f{i}": spec for i, spec in enumerate(specs)}))


# -- random records ----------------------------------------------------------------------------


_TEXT = st.text(st.characters(codec="utf-8"), max_size=6)  # no lone surrogates


def _scalar(kind: ScalarKind, nan: bool) -> st.SearchStrategy[Any]:
    dtype = kind.dtype
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max)).map(dtype.type)
    if dtype.kind == "b":
        return st.booleans().map(np.bool_)
    width = dtype.itemsize * 8
    if dtype.kind == "f":
        return st.floats(width=width, allow_nan=nan).map(dtype.type)  # type: ignore[arg-type]
    part = st.floats(width=width // 2, allow_nan=nan)  # type: ignore[arg-type]
    return st.tuples(part, part).map(lambda c: dtype.type(complex(*c)))


def _element_value(kind: Kind, nan: bool) -> st.SearchStrategy[Any]:
    if isinstance(kind, ScalarKind):
        return _scalar(kind, nan)
    if isinstance(kind, StringKind):
        return _TEXT
    assert isinstance(kind, RecordKind)
    return records(kind.cls, nan)


@st.composite
def _array(draw: st.DrawFn, kind: ArrayKind, nan: bool) -> np.ndarray:
    shape = tuple(d or draw(st.integers(0, 3)) for d in kind.shape)
    items = draw(st.lists(_element_value(kind.element, nan), min_size=math.prod(shape),
                          max_size=math.prod(shape)))
    if isinstance(kind.element, ScalarKind):
        return np.array(items, dtype=kind.element.dtype).reshape(shape)
    return np.fromiter(items, object, len(items)).reshape(shape)


def _value(kind: Kind, nan: bool) -> st.SearchStrategy[Any]:
    if isinstance(kind, ArrayKind):
        return _array(kind, nan)
    return _element_value(kind, nan)


def records(cls: type[baseformat], nan: bool = False) -> st.SearchStrategy[baseformat]:
    """Random records of ``cls`` (NaNs only if ``nan``)."""
    return st.fixed_dictionaries({f.name: _value(f.kind, nan) for f in cls._fields}).map(
        lambda values: cls.from_dict(values, casting="safe"))


@st.composite
def type_and_record(draw: st.DrawFn, nan: bool = False, fixed: bool = False
                    ) -> tuple[type[baseformat], baseformat]:
    cls = draw(record_types(fixed=fixed))
    return cls, draw(records(cls, nan))


# -- properties ------------------------------------------------------------------------------------


@SETTINGS
@given(type_and_record())
def test_round_trips_are_exact(pair):
    cls, record = pair
    data = record.pack()
    back = cls.unpack(data)
    assert back == record and back.pack() == data
    assert cls.unpack(data, copy=False) == record
    assert cls().unpack(bytearray(data)) == record
    stream = io.BytesIO()
    record.pack_into(stream)
    record.pack_into(stream)
    assert stream.getvalue() == data * 2
    stream.seek(0)
    assert cls.unpack_from(stream) == record and cls.unpack_from(stream) == record
    assert stream.read() == b""
    assert record.copy() == record and cls.from_dict(record.as_dict()) == record
    assert pickle.loads(pickle.dumps(record)) == record
    assert record.isclose(back)
    if cls.packed_size is not None:
        assert len(data) == cls.packed_size


@SETTINGS
@given(type_and_record(nan=True))
def test_bytes_round_trip_with_nans(pair):
    cls, record = pair
    data = record.pack()
    assert cls.unpack(data).pack() == data
    assert cls.unpack_from(io.BytesIO(data)).pack() == data


@SETTINGS
@given(record_types(fixed=True).flatmap(
    lambda cls: st.tuples(st.just(cls), st.lists(records(cls), max_size=4))))
def test_batches_equal_records_one_by_one(pair):
    cls, items = pair
    assert cls.packed_size is not None
    if cls.batch_dtype is None:  # a record type that packs to zero bytes
        assert cls.packed_size == 0
        return
    data = cls.pack_batch(items)
    assert data == b"".join(r.pack() for r in items)
    rows = cls.unpack_batch(data)
    assert rows.dtype == cls.batch_dtype and len(rows) == len(items)
    assert cls.pack_batch(rows) == data
    assert cls.from_batch(rows) == items
    assert cls.pack_batch(cls.to_batch(items)) == data


def _fast(cls: type[baseformat], data: bytes) -> baseformat | None:
    obj = object.__new__(cls)
    try:
        end = cls._decode(obj, data, 0, len(data), True)
    except FAST_PATH_ERRORS:
        return None
    return obj if end == len(data) else None


def _careful(cls: type[baseformat], data: bytes) -> baseformat | None:
    try:
        return decode_exactly(cls, data, True)
    except DecodeError:
        return None


def _check_decoder(cls: type[baseformat], data: bytes) -> None:
    fast, careful = _fast(cls, data), _careful(cls, data)
    assert (fast is None) == (careful is None), (cls._format, data.hex())
    try:
        record = cls.unpack(data)
    except DecodeError as exc:
        assert fast is None
        assert str(exc).startswith(cls._name)
    else:
        assert fast is not None and careful is not None
        assert record.pack() == fast.pack() == careful.pack()
        assert cls.unpack(record.pack()).pack() == record.pack()
    stream = io.BytesIO(data)
    try:
        cls.unpack_from(stream)
    except DecodeError:
        pass


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    size = max(len(data), 1)
    truncated = st.integers(0, max(len(data) - 1, 0)).map(lambda n: data[:n])
    flipped = st.lists(st.tuples(st.integers(0, size * 8 - 1)), min_size=1, max_size=4).map(
        lambda bits: _flip(data, [b[0] for b in bits]))
    extended = st.binary(min_size=1, max_size=16).map(lambda tail: data + tail)
    return st.one_of(truncated, flipped, extended)


def _flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data or b"\x00")
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@settings(SETTINGS, max_examples=80)
@given(type_and_record(nan=True).flatmap(
    lambda pair: st.tuples(st.just(pair[0]), _mutations(pair[1].pack()))))
def test_decoder_survives_mutated_records(pair):
    cls, data = pair
    _check_decoder(cls, data)


@settings(SETTINGS, max_examples=60)
@given(record_types(), st.binary(max_size=96))
def test_decoder_survives_random_bytes(cls, data):
    _check_decoder(cls, data)
