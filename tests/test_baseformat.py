"""Record types made by make_type: building, casting, comparing, packing, unpacking, batches."""

from __future__ import annotations

import copy
import io
import json
import pickle
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papyflow.formats import baseformat as bf
from papyflow.formats._fields import RecordKind
from papyflow.formats.baseformat import (
    RESERVED_FIELD_NAMES,
    BatchError,
    DecodeError,
    FieldValueError,
    MissingFieldError,
    RecordError,
    SpecError,
    TruncatedError,
    UnknownFieldError,
    baseformat,
    make_type,
)

SCALARS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float32", "float64", "complex64", "complex128", "bool"]

Meta = make_type("user/meta/1", {"source": "string", "frame": "uint32"})
XY = make_type("user/xy/1", {"x": "float64", "y": "float64"})
Point = make_type("user/point/1", {
    "x": "float64",
    "y": "float64",
    "tags": [0, "string"],
    "patch": [2, 3, "uint8"],
    "pixels": [0, 0, "uint16"],
    "meta": Meta,
    "points": [0, XY],
})
Empty = make_type("user/empty/1", {})


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def sample_point() -> baseformat:
    return Point(x=1.5, y=-2, tags=["a", "\u00e9t\u00e9"], patch=np.arange(6).reshape(2, 3),
                 pixels=[[1, 2], [3, 4], [5, 6]], meta={"source": "cam", "frame": 7},
                 points=[{"x": 1, "y": 2}, XY(x=3, y=4)])


# -- make_type ----------------------------------------------------------------------------------


def test_make_type_keeps_name_format_and_order():
    assert Point._name == "user/point/1"
    assert list(Point._format) == ["x", "y", "tags", "patch", "pixels", "meta", "points"]
    assert Point._format["patch"] == [2, 3, "uint8"]
    assert Point._format["meta"] is Meta
    assert issubclass(Point, baseformat)
    assert Point.__name__ == "point"
    with pytest.raises(TypeError):
        Point._format["x"] = "int8"  # read-only


@pytest.mark.parametrize(("fields", "words"), [
    ({"x": "flaot32"}, ["user/bad/1", "field 'x'", "unknown type 'flaot32'"]),
    ({"x": "user/other/1"}, ["field 'x'", "resolved to classes"]),
    ({"x": [3]}, ["field 'x'", "at least one dimension"]),
    ({"x": [-1, "int8"]}, ["field 'x'", "dimension -1"]),
    ({"x": [2.0, "int8"]}, ["field 'x'", "dimension 2.0"]),
    ({"x": [True, "int8"]}, ["field 'x'", "dimension True"]),
    ({"x": [2, [3, "int8"]]}, ["field 'x'", "cannot be an array"]),
    ({"x": [1] * 33 + ["int8"]}, ["field 'x'", "at most 32 dimensions"]),
    ({"x": [2**40, 2**40, "int8"]}, ["field 'x'", "too large"]),
    ({"x": {"a": "int8"}}, ["field 'x'", "make_type"]),
    ({"x": 3}, ["field 'x'", "invalid spec 3"]),
    ({"x": baseformat}, ["field 'x'", "made by make_type"]),
    ({"#description": "string"}, ["field '#description'", "metadata"]),
    ({"pack": "int8"}, ["field 'pack'", "record method"]),
    ({"batch_dtype": "int8"}, ["field 'batch_dtype'", "record method"]),
    ({"_x": "int8"}, ["field '_x'", "reserved"]),
    ({"class": "int8"}, ["field 'class'", "keyword"]),
    ({"a-b": "int8"}, ["field 'a-b'", "identifier"]),
    ({1: "int8"}, ["must be a string"]),
])
def test_make_type_rejects_bad_specs(fields, words):
    with pytest.raises(SpecError) as info:
        make_type("user/bad/1", fields)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word in str(info.value)


def test_make_type_rejects_bad_arguments():
    with pytest.raises(SpecError, match="mapping"):
        make_type("user/bad/1", [("x", "int8")])
    with pytest.raises(SpecError, match="name must be a string"):
        make_type(3, {})


def test_reserved_names_cover_the_public_methods():
    for name in ("pack", "unpack", "from_dict", "as_dict", "copy", "isclose", "pack_into",
                 "unpack_from", "pack_batch", "unpack_batch", "batch_dtype", "packed_size"):
        assert name in RESERVED_FIELD_NAMES


# -- building ------------------------------------------------------------------------------------


def test_defaults_of_every_kind():
    kinds = {f"f_{name}": name for name in SCALARS} | {"s": "string"}
    T = make_type("user/all/1", kinds | {"fixed": [2, 3, "float32"], "var": [0, 4, "int8"],
                                         "strs": [2, "string"], "recs": [3, XY],
                                         "vrecs": [0, XY], "nested": Meta})
    r = T()
    for name in SCALARS:
        value = getattr(r, f"f_{name}")
        assert type(value) is np.dtype(name).type and value == 0
    assert type(r.f_bool) is np.bool_
    assert r.s == "" and type(r.s) is str
    assert r.fixed.shape == (2, 3) and r.fixed.dtype == np.float32 and not r.fixed.any()
    assert r.var.shape == (0, 4) and r.var.dtype == np.int8
    assert r.strs.dtype == object and r.strs.tolist() == ["", ""]
    assert r.recs.shape == (3,) and all(isinstance(x, XY) and x == XY() for x in r.recs)
    assert r.recs[0] is not r.recs[1]
    assert r.vrecs.shape == (0,)
    assert r.nested == Meta(source="", frame=0)


def test_attributes_have_the_declared_types():
    r = sample_point()
    assert type(r.x) is np.float64 and r.x == 1.5
    assert type(r.y) is np.float64 and r.y == -2.0
    assert r.tags.dtype == object and r.tags.tolist() == ["a", "\u00e9t\u00e9"]
    assert r.patch.dtype == np.uint8 and r.patch.shape == (2, 3)
    assert r.pixels.dtype == np.uint16 and r.pixels.shape == (3, 2)
    assert isinstance(r.meta, Meta) and type(r.meta.frame) is np.uint32
    assert r.points.dtype == object and [p.x for p in r.points] == [1.0, 3.0]


def test_constructor_casts_unsafely_and_copies_values():
    T = make_type("user/cast/1", {"i": "int16", "f": "float32", "b": "bool", "s": "string",
                                  "a": [0, "int32"], "m": Meta})
    array = np.array([1.7, -2.2])
    meta = Meta(source="x", frame=1)
    r = T(i=2.9, f=1e-3, b=5, s=12, a=array, m=meta)
    assert r.i == 2 and type(r.i) is np.int16
    assert r.b is np.True_ and r.s == "12"
    assert r.a.tolist() == [1, -2] and r.a.dtype == np.int32
    array[0] = 99
    meta.frame = np.uint32(5)
    assert r.a[0] == 1 and r.m.frame == 1  # copies
    assert T(s=b"caf\xc3\xa9").s == "caf\u00e9"


Ranged = make_type("user/ranged/1", {"i": "int8", "u": "uint8", "a": [0, "int16"],
                                     "m": [2, 2, "uint8"]})


@pytest.mark.parametrize(("field", "value"), [
    ("i", np.int64(2**40)),
    ("i", np.float64(300.0)),
    ("u", np.int8(-1)),
    ("a", [70000]),
    ("a", np.array([1, -40000])),
    ("a", np.array([1e6])),
    ("m", [[1, 2], [3, -1]]),
])
def test_integers_out_of_range_are_refused_not_wrapped(field, value):
    with pytest.raises(FieldValueError, match="outside the range") as info:
        Ranged(**{field: value})
    assert info.value.path == field
    with pytest.raises(FieldValueError, match="outside the range"):
        Ranged.from_dict({field: value}, casting="unsafe", add_defaults=True)
    record = Ranged()
    setattr(record, field, value)
    with pytest.raises(FieldValueError, match="outside the range"):
        record.pack()


def test_numpy_values_are_judged_by_value_against_the_integer_range():
    with pytest.raises(FieldValueError, match=r"np.int64\(128\).*\(-128 to 127\)"):
        Ranged(i=np.int64(128))
    r = Ranged(i=np.int64(-128), u=np.float64(255.9), a=np.array([32767, -32768]),
               m=np.array([[0.5, 255.5], [1, 2]]))
    assert (r.i, r.u) == (-128, 255) and r.a.tolist() == [32767, -32768]
    assert r.m.tolist() == [[0, 255], [1, 2]]


def test_a_field_may_be_named_self():
    T = make_type("user/self/1", {"self": "int32"})
    r = T(self=3)
    assert r.self == 3 and T.unpack(r.pack()).self == 3


def test_field_names_python_would_read_as_other_names_are_refused():
    # Python reads the attribute 'ｘ' (fullwidth) as 'x': generated code would mix them up
    with pytest.raises(SpecError, match="NFKC form: Python reads 'ｘ' as 'x'"):
        make_type("user/nfkc/1", {"x": "int8", "\uff58": "int8"})
    with pytest.raises(SpecError, match="NFKC"):
        make_type("user/nfkc/1", {"\ufb01le": "int8"})  # the ligature 'ﬁ'
    T = make_type("user/nfkc/1", {"\u00e9t\u00e9": "int8"})  # composed: its own NFKC form
    r = T.from_dict({"\u00e9t\u00e9": 5})
    assert T.unpack(r.pack()) == r and r.as_dict() == {"\u00e9t\u00e9": 5}


def test_slots_catch_misspelt_attributes():
    r = XY()
    with pytest.raises(AttributeError):
        r.z = 3


def test_from_dict_safe_casting_judges_python_numbers_by_value():
    T = make_type("user/ints/1", {"u8": "uint8", "i32": "int32", "f32": "float32",
                                  "c": "complex64", "v": [0, "int16"], "w": [0, "float32"]})
    r = T.from_dict({"u8": 5, "i32": -7, "f32": 0.5, "c": 1 + 2j, "v": [1, -300],
                     "w": [0.25, 1e30]})
    assert (r.u8, r.i32, r.f32, r.c) == (5, -7, 0.5, 1 + 2j)
    assert r.v.tolist() == [1, -300] and r.w.dtype == np.float32
    with pytest.raises(FieldValueError, match="cannot be cast"):
        T.from_dict({"u8": 5, "i32": np.int64(5), "f32": 1, "c": 1, "v": [], "w": []})
    T.from_dict({"u8": 5, "i32": np.int64(5), "f32": 1, "c": 1, "v": [], "w": []},
                casting="same_kind")
    with pytest.raises(FieldValueError, match=r"field 'v'.*int16 array"):
        T.from_dict({"u8": 1, "i32": 1, "f32": 1, "c": 1, "v": [40000], "w": []})


@pytest.mark.parametrize(("field", "value", "words"), [
    ("frame", -1, ["user/meta/1: field 'frame'", "expected uint32", "-1 (int)", "'safe'"]),
    ("frame", 2**32, ["field 'frame'", "4294967296"]),
    ("frame", 1.5, ["field 'frame'", "1.5 (float)"]),
    ("frame", "3", ["field 'frame'", "'3' (str)"]),
    ("frame", [1], ["field 'frame'", "[1] (list)"]),
    ("source", 5, ["field 'source'", "expected string", "5 (int)"]),
    ("source", b"x", ["field 'source'", "expected string"]),
])
def test_from_dict_errors_name_record_field_expected_and_value(field, value, words):
    data = {"source": "s", "frame": 1, field: value}
    with pytest.raises(FieldValueError) as info:
        Meta.from_dict(data)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert info.value.record == "user/meta/1" and info.value.path == field
    for word in words:
        assert word in str(info.value)


def test_uint64_lists_keep_every_value():
    # numpy makes [0, 2**63 + 1] a float64 array: the values must not be rounded
    T = make_type("user/u64/1", {"a": [0, "uint64"], "m": [0, 2, "uint64"]})
    values = [0, 2**63 + 1, 2**64 - 1]
    for casting in ("safe", "unsafe"):
        r = T.from_dict({"a": values, "m": [[1, 2**64 - 1]]}, casting=casting)
        assert r.a.tolist() == values and r.m.tolist() == [[1, 2**64 - 1]]
    assert T(a=values).a.tolist() == values and T(a=[]).a.tolist() == []
    assert T.unpack(T(a=values).pack()).a.tolist() == values
    assert bf.setup_array("user/u64/1", "a", [0], np.uint64, values, "safe",
                          False).tolist() == values
    for bad in ([-1, 2**64 - 1], [1, 2**64]):
        with pytest.raises(FieldValueError, match="field 'a'"):
            T(a=bad)


def test_from_dict_nested_paths():
    good = sample_point().as_dict()
    with pytest.raises(FieldValueError, match=r"user/point/1: field 'meta\.frame'.*uint32"):
        Point.from_dict({**good, "meta": {"source": "s", "frame": -5}})
    with pytest.raises(FieldValueError, match=r"field 'tags\[1\]'.*string.*3 \(int\)"):
        Point.from_dict({**good, "tags": ["a", 3]})
    with pytest.raises(FieldValueError, match=r"field 'points\[1\]\.y'"):
        Point.from_dict({**good, "points": [{"x": 1, "y": 2}, {"x": 1, "y": "no"}]})
    T = make_type("user/grid/1", {"grid": [2, 0, "string"]})
    with pytest.raises(FieldValueError, match=r"field 'grid\[1, 0\]'"):
        T.from_dict({"grid": [["a", "b"], [None, "c"]]})


def test_from_dict_shapes():
    good = sample_point().as_dict()
    with pytest.raises(FieldValueError) as info:
        Point.from_dict({**good, "patch": np.zeros((2, 4))})
    message = str(info.value)
    assert "field 'patch'" in message and "uint8 array of shape (2, 3)" in message
    assert "(2, 4)" in message
    with pytest.raises(FieldValueError, match=r"shape \(\*, \*\)"):
        Point.from_dict({**good, "pixels": [1, 2, 3]})
    with pytest.raises(FieldValueError, match="field 'pixels'"):
        Point.from_dict({**good, "pixels": [[1, 2], [3]]})
    with pytest.raises(FieldValueError, match=r"field 'tags\[0\]'.*\['a'\] \(list\)"):
        Point.from_dict({**good, "tags": [["a"], ["b", "c"]]})
    grid = make_type("user/grid/1", {"g": [0, 0, "string"]})
    with pytest.raises(FieldValueError, match=r"field 'g'.*ragged.*\[1, 2\] at depth 1"):
        grid.from_dict({"g": [["a"], ["b", "c"]]})
    r = Point.from_dict({**good, "pixels": np.ones((5, 7), np.uint16), "tags": []})
    assert r.pixels.shape == (5, 7) and r.tags.shape == (0,)
    assert Point.from_dict({**good, "pixels": []}).pixels.shape == (0, 0)


def test_missing_and_unknown_fields():
    with pytest.raises(MissingFieldError, match=r"user/meta/1: field 'frame': missing") as info:
        Meta.from_dict({"source": "s"})
    assert isinstance(info.value, TypeError)
    with pytest.raises(MissingFieldError, match="field 'frame'"):
        Meta.from_dict({"source": "s", "frame": None})
    with pytest.raises(UnknownFieldError, match=r"unknown field 'fram'.*did you mean 'frame'"):
        Meta.from_dict({"source": "s", "frame": 1, "fram": 2})
    with pytest.raises(UnknownFieldError):
        Meta(sourc="x")
    assert Meta.from_dict(None, add_defaults=True) == Meta()
    assert Meta.from_dict({"source": "s"}, add_defaults=True).frame == 0
    with pytest.raises(FieldValueError, match="mapping"):
        Meta.from_dict(["source"])
    with pytest.raises(ValueError, match="casting"):
        Meta.from_dict({}, casting="sloppy")


def test_from_dict_on_an_instance_fills_it_atomically():
    r = Meta(source="a", frame=1)
    assert r.from_dict({"source": "b", "frame": 2}) is r and r.frame == 2
    with pytest.raises(FieldValueError):
        r.from_dict({"source": "c", "frame": -1})
    assert r == Meta(source="b", frame=2)


def test_lone_surrogates_cannot_become_strings():
    with pytest.raises(FieldValueError, match="UTF-8"):
        Meta(source="\ud800")


# -- as_dict, eq, isclose, copy, repr --------------------------------------------------------


def test_as_dict_round_trips():
    r = sample_point()
    d = r.as_dict()
    assert d["meta"] == {"source": "cam", "frame": 7}
    assert isinstance(d["patch"], np.ndarray) and d["patch"] is r.patch
    assert d["points"].dtype == object and d["points"][1] == {"x": 3.0, "y": 4.0}
    assert Point.from_dict(d) == r


def test_eq_is_exact():
    a, b = sample_point(), sample_point()
    assert a == b and (a != b) is False
    b.pixels = np.ones((3, 2), np.uint16)
    assert a != b
    b = sample_point()
    b.pixels = np.zeros((0, 2), np.uint16)
    assert a != b
    b = sample_point()
    b.points[1].y = np.float64(4.5)
    assert a != b
    assert a != a.as_dict() and XY() != Meta()
    assert XY(x=np.nan) != XY(x=np.nan)
    with pytest.raises(TypeError):
        hash(a)


def test_isclose():
    a = sample_point()
    b = a.copy()
    b.x = np.float64(1.5 + 1e-12)
    b.points[0].x = np.float64(1 + 1e-10)
    assert a.isclose(b) and a != b
    assert not a.isclose(b, rtol=0, atol=0)
    b.patch[0, 0] = 1
    assert not a.isclose(b)
    c = make_type("user/c/1", {"z": "complex64", "v": [0, "float32"]})
    assert c(z=1j, v=[1, 2]).isclose(c(z=1.0000001j, v=[1, 2.0000001]))
    assert not c(v=[1]).isclose(c(v=[1, 1]))
    assert XY(x=np.nan).isclose(XY(x=np.nan), equal_nan=True)
    assert not XY().isclose(Meta())


def test_copy_is_deep():
    a = sample_point()
    b = a.copy()
    assert a == b and b is not a
    b.patch[0, 0] = 200
    b.meta.source = "other"
    b.points[0].x = np.float64(-1)
    b.tags[0] = "z"
    assert a == sample_point()
    assert copy.deepcopy(a) == a and copy.copy(a) == a


def test_repr():
    text = repr(sample_point())
    assert text.startswith("user/point/1(x=1.5, y=-2.0, tags=['a', '\u00e9t\u00e9']")
    assert "meta=user/meta/1(source='cam', frame=7)" in text
    assert "patch=[[0, 1, 2], [3, 4, 5]] uint8" in text
    assert repr(Empty()) == "user/empty/1()"
    assert "x=<unset>" in repr(object.__new__(XY))


def test_pickle_round_trip_and_a_fresh_process_type():
    r = sample_point()
    assert pickle.loads(pickle.dumps(r)) == r
    schema, data = r.__reduce__()[1]
    assert bf._type_of_schema(schema) is Point
    del bf._TYPES[schema]
    try:
        other = bf._restore(schema, data)  # as in a process that never made the type
        assert type(other) is not Point and other.pack() == r.pack()
    finally:
        bf._TYPES[schema] = Point


# -- packing -----------------------------------------------------------------------------------


GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_records.json").read_text())


def _golden_types(sample: dict[str, Any]) -> type[baseformat]:
    made: dict[str, type[baseformat]] = {}

    def spec(s: Any) -> Any:
        if isinstance(s, list):
            return [*s[:-1], spec(s[-1])]
        return made.get(s, s)

    for name, fields in sample["types"]:
        made[name] = make_type(name, {k: spec(v) for k, v in fields.items()})
    return made[sample["types"][-1][0]]


def _from_json(cls: type[baseformat], value: dict[str, Any]) -> dict[str, Any]:
    """JSON values as from_dict takes them: complex numbers from [re, im]."""
    out = {}
    for field in cls._fields:
        kind, v = field.kind, value[field.name]
        element = getattr(kind, "element", kind)
        if getattr(element, "name", "").startswith("complex"):
            v = complex(*v) if kind is element else [complex(*x) for x in v]
        elif isinstance(element, RecordKind):
            v = _from_json(element.cls, v) if kind is element else \
                [_from_json(element.cls, x) for x in v]
        out[field.name] = v
    return out


@pytest.mark.parametrize("sample", GOLDEN, ids=[s["name"] for s in GOLDEN])
def test_golden_bytes(sample):
    cls = _golden_types(sample)
    record = cls.from_dict(_from_json(cls, sample["value"]))
    expected = bytes.fromhex(sample["hex"])
    assert record.pack() == expected
    out = io.BytesIO()
    record.pack_into(out)
    assert out.getvalue() == expected
    assert cls.unpack(expected) == record
    assert cls.unpack_from(io.BytesIO(expected)) == record
    if cls.batch_dtype is not None:
        assert cls.pack_batch([record, record]) == expected * 2


def test_pack_into_and_unpack_from_files(tmp_path):
    records = [sample_point(), Point(), sample_point()]
    records[2].tags = np.array(["x" * 100_000], dtype=object)
    records[2].pixels = np.arange(200_000, dtype=np.uint16).reshape(1000, 200)
    path = tmp_path / "records.bin"
    with path.open("wb") as f:
        for r in records:
            r.pack_into(f)
    assert path.read_bytes() == b"".join(r.pack() for r in records)
    with path.open("rb") as f:
        back = [Point.unpack_from(f) for _ in records]
        assert f.read() == b""
    assert back == records
    with path.open("rb", buffering=0) as f:  # raw file: reads may be short
        assert Point.unpack_from(f) == records[0]


class Chunky:
    """A non-seekable stream that hands out at most 3 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.reads = 0

    def read(self, n: int) -> bytes:
        self.reads += 1
        out, self.data = self.data[:min(n, 3)], self.data[min(n, 3):]
        return bytes(out)


class Sink:
    """Any object with write: records what it gets."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(self.parts[-1])


def test_streams_without_seek_and_short_reads():
    r = sample_point()
    stream = Chunky(r.pack() + b"next")
    assert Point.unpack_from(stream) == r
    assert stream.read(10) == b"nex"
    sink = Sink()
    big = make_type("user/big/1", {"v": [0, "float64"], "s": "string"})(v=np.ones(20_000), s="a")
    big.pack_into(sink)
    assert b"".join(sink.parts) == big.pack()
    assert len(sink.parts) == 3  # small parts joined, the array data written as it is


def test_instance_unpack_fills_and_returns_self():
    r = Point()
    data = sample_point().pack()
    assert r.unpack(data) is r and r == sample_point()
    with pytest.raises(DecodeError):
        r.unpack(data[:-1])
    assert r == sample_point()  # unchanged by a failed unpack
    s = Point()
    assert s.unpack_from(io.BytesIO(data)) is s and s == r


def test_unpack_views_bytes_that_cannot_change_and_copies_the_rest():
    A = make_type("user/arr/1", {"v": [0, "float64"], "b": [0, "bool"]})
    data = A(v=[1, 2, 3], b=[True, False]).pack()
    r = A.unpack(data, copy=True)
    assert r.v.flags.writeable and r.v.flags.owndata and r.b.flags.writeable
    for view in (A.unpack(data), A.unpack(data, copy=False), A.unpack(memoryview(data))):
        assert not view.v.flags.writeable
        assert np.shares_memory(view.v, np.frombuffer(data, np.uint8))
        with pytest.raises(ValueError, match="read-only"):
            view.v[0] = 5.0
    buffer = bytearray(data)
    own = A.unpack(buffer)  # a buffer that can change is copied by default
    buffer[0:8] = bytes(8)
    assert own.v.flags.writeable and own.v[0] == 1.0
    buffer = bytearray(data)
    shared = A.unpack(buffer, copy=False)
    shared.v[0] = 10.0
    assert A.unpack(buffer).v[0] == 10.0
    assert A.unpack(memoryview(buffer)) == A.unpack(bytes(buffer))
    with pytest.raises(TypeError, match="bytes-like"):
        A.unpack("text")


def test_unpack_from_gives_writable_arrays_of_fixed_and_variable_size_types():
    Fixed = make_type("user/fixed/1", {"v": [3, "float64"], "b": [2, "bool"], "p": [1, Pixel]})
    Varying = make_type("user/varying/1", {"v": [0, "float64"], "b": [2, "bool"]})
    for T in (Fixed, Varying):
        data = T(v=[1, 2, 3], b=[True, False]).pack()
        for r in (T.unpack_from(io.BytesIO(data)), T().unpack_from(io.BytesIO(data)),
                  T.unpack_from(Chunky(data))):
            assert r.v.flags.writeable and r.b.flags.writeable, T
            r.v[0] = 5.0
            assert r.v.tolist() == [5.0, 2.0, 3.0]
        if T is Fixed:
            r = T.unpack_from(io.BytesIO(data))
            r.p[0].rgb[0] = 9
            assert r.p[0].rgb[0] == 9


def test_pack_casts_reassigned_fields_or_names_them():
    r = sample_point()
    r.x = "3.5"
    r.tags = ["p", "q"]
    r.pixels = [[1, 2]]
    r.meta = {"source": "s", "frame": 2}
    r.points = [{"x": 0, "y": 1}]
    expected = Point(x=3.5, tags=["p", "q"], patch=r.patch, pixels=[[1, 2]],
                     meta={"source": "s", "frame": 2}, points=[XY(x=0, y=1)], y=-2)
    assert r.pack() == expected.pack()
    r.patch = np.zeros((3, 2))
    with pytest.raises(FieldValueError, match=r"user/point/1: field 'patch'.*\(2, 3\)"):
        r.pack()
    r = sample_point()
    r.meta = {"source": "s"}
    with pytest.raises(MissingFieldError, match=r"field 'meta\.frame'"):
        r.pack()
    r = sample_point()
    r.meta.frame = -1
    with pytest.raises(FieldValueError, match=r"field 'meta\.frame'"):
        r.pack_into(io.BytesIO())
    r = sample_point()
    r.points[0].x = "nope"
    with pytest.raises(FieldValueError, match=r"field 'points\[0\]\.x'"):
        r.pack()
    r = sample_point()
    r.tags[1] = "\udc80"
    with pytest.raises(FieldValueError, match=r"field 'tags\[1\]'.*UTF-8"):
        r.pack()
    unset = object.__new__(XY)
    with pytest.raises(MissingFieldError, match="field 'x'"):
        unset.pack()


def test_empty_record_and_empty_record_arrays():
    assert Empty().pack() == b"" and Empty.unpack(b"") == Empty()
    with pytest.raises(DecodeError, match="left over"):
        Empty.unpack(b"\x00")
    T = make_type("user/empties/1", {"e": [0, Empty]})
    r = T(e=[{}] * 5)
    assert T.unpack(r.pack()) == r
    with pytest.raises(FieldValueError, match="at most 65536"):
        T(e=[{}] * 65_537)
    with pytest.raises(SpecError, match="at most 65536"):
        make_type("user/e/1", {"e": [100_000, Empty]})


# -- bad bytes ------------------------------------------------------------------------------------


def test_every_truncation_is_an_error_naming_the_field():
    data = sample_point().pack()
    for end in range(len(data)):
        with pytest.raises(TruncatedError) as info:
            Point.unpack(data[:end])
        error = info.value
        assert isinstance(error, DecodeError) and isinstance(error, EOFError)
        assert error.record == "user/point/1" and error.path
        assert str(error).startswith("user/point/1: field '")
        with pytest.raises(TruncatedError):
            Point.unpack_from(io.BytesIO(data[:end]))
        with pytest.raises(TruncatedError):
            Point.unpack_from(Chunky(data[:end]))


def test_truncation_message_has_path_and_offset():
    data = sample_point().pack()
    with pytest.raises(TruncatedError) as info:
        Point.unpack(data[:30])
    assert str(info.value) == ("user/point/1: field 'tags' at byte 16: an array of shape (2,) "
                               "needs at least 16 more bytes, 6 left")
    assert info.value.offset == 16
    with pytest.raises(TruncatedError) as info:
        Point.unpack(data[:42])
    assert str(info.value) == ("user/point/1: field 'tags[1]' at byte 41: needs 5 more bytes, "
                               "1 left")


def test_trailing_bytes():
    data = sample_point().pack()
    with pytest.raises(DecodeError, match=r"2 bytes left over after the record") as info:
        Point.unpack(data + b"ab")
    assert info.value.offset == len(data)
    stream = io.BytesIO(data + b"ab")
    assert Point.unpack_from(stream) == sample_point() and stream.read() == b"ab"


def test_invalid_utf8():
    data = Meta(source="ab", frame=1).pack().replace(b"ab", b"\xff\xfe")
    with pytest.raises(DecodeError, match=r"user/meta/1: field 'source' at byte 8: invalid "
                                          r"UTF-8"):
        Meta.unpack(data)
    T = make_type("user/tags/1", {"tags": [0, "string"]})
    data = T(tags=["ok", "\u00e9"]).pack()
    with pytest.raises(DecodeError, match=r"field 'tags\[1\]'.*UTF-8"):
        T.unpack(data[:-2] + b"\xc3\x28")


def test_bad_bools_and_fixed_dimensions():
    B = make_type("user/b/1", {"flag": "bool", "flags": [3, "bool"]})
    good = B(flag=True, flags=[1, 0, 1]).pack()
    with pytest.raises(DecodeError, match=r"field 'flag' at byte 0: a bool must be the byte 0 "
                                          r"or 1, not 2"):
        B.unpack(b"\x02" + good[1:])
    with pytest.raises(DecodeError, match=r"field 'flags\[2\]'.*not 7"):
        B.unpack(good[:-1] + b"\x07")
    with pytest.raises(DecodeError, match=r"field 'flags' at byte 1: dimension 0 is 4, but "
                                          r"bool array of shape \(3,\) declares 3"):
        B.unpack(good[:1] + u64(4) + good[9:] + b"\x00")
    data = sample_point().pack()
    at = data.index(u64(2) + u64(3))  # the dimensions of 'patch'
    with pytest.raises(DecodeError, match=r"field 'patch'.*dimension 1 is 4"):
        Point.unpack(data[:at + 8] + u64(4) + data[at + 16:])


def _peak(func: Any) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        func()
    except BaseException as exc:  # noqa: BLE001 - returned to the test
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


HOSTILE = [
    ("string length 2**63", make_type("user/h0/1", {"v": "string"}), u64(2**63) + b"abc"),
    ("string length 2**64-1", make_type("user/h0/1", {"v": "string"}), u64(2**64 - 1)),
    ("float array of 2**61 items", make_type("user/h1/1", {"v": [0, "float64"]}),
     u64(2**61) + b"\x00" * 16),
    ("2-D array 2**32 x 2**32", make_type("user/h2/1", {"v": [0, 0, "uint8"]}),
     u64(2**32) + u64(2**32)),
    ("strings array of 2**40", make_type("user/h3/1", {"v": [0, "string"]}), u64(2**40)),
    ("records array of 2**40", make_type("user/h4/1", {"v": [0, Meta]}), u64(2**40)),
    ("empty records array of 10**9", make_type("user/h5/1", {"v": [0, Empty]}), u64(10**9)),
    ("empty 2-D array of 2**62 x 0", make_type("user/h6/1", {"v": [0, 0, "float64"]}),
     u64(2**62) + u64(0)),
    ("2-D strings array of 2**40 x 1", make_type("user/h7/1", {"v": [0, 0, "string"]}),
     u64(2**40) + u64(1) + u64(1) + b"a"),
    ("2-D records array of 1 x 2**56", make_type("user/h8/1", {"v": [0, 0, Meta]}),
     u64(1) + u64(2**56)),
]


@pytest.mark.parametrize(("what", "cls", "data"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_huge_prefixes_fail_before_allocating(what, cls, data):
    for read in (lambda: cls.unpack(data), lambda: cls.unpack_from(io.BytesIO(data)),
                 lambda: cls.unpack_from(Chunky(data))):
        peak, error = _peak(read)
        assert isinstance(error, DecodeError), (what, error)
        assert str(error).startswith(f"{cls._name}: field 'v")
        assert peak < 1 << 20, (what, peak)


@pytest.mark.parametrize("element", ["string", "user/meta/1"])
def test_an_empty_array_with_a_huge_dimension_reads_without_allocating(element):
    T = make_type("user/h8/1", {"v": [0, 0, Meta if element == "user/meta/1" else element],
                                "s": "string"})
    empty = u64(2**56) + u64(0)
    good = empty + u64(1) + b"a"
    bad = empty + u64(1) + b"\xff"  # the careful reader walks the array again
    for read in (lambda: T.unpack(good), lambda: T.unpack_from(io.BytesIO(good)),
                 lambda: T.unpack_from(Chunky(good))):
        peak, error = _peak(read)
        assert error is None and peak < 1 << 20
    assert T.unpack(good).v.shape == (2**56, 0)
    for read in (lambda: T.unpack(bad), lambda: T.unpack_from(io.BytesIO(bad))):
        peak, error = _peak(read)
        assert isinstance(error, DecodeError) and "field 's'" in str(error)
        assert peak < 1 << 20


def test_a_huge_string_from_an_endless_looking_stream_reads_only_what_arrives():
    class Trickle:
        def __init__(self) -> None:
            self.left = 3 << 20

        def read(self, n: int) -> bytes:
            take = min(n, self.left, 1 << 16)
            self.left -= take
            return b"a" * take

    def read() -> None:
        bf.read_string(io.BufferedReader(io.BytesIO(u64(2**60))))

    peak, error = _peak(read)
    assert isinstance(error, TruncatedError) and peak < 1 << 20
    stream = Trickle()
    peak, error = _peak(lambda: Meta.unpack_from(_prefixed(stream)))
    assert isinstance(error, TruncatedError) and "ended after" in str(error)
    assert peak < 40 << 20  # about what arrived (3 MiB), never 2**60


def _prefixed(stream: Any) -> Any:
    class Prefixed:
        def __init__(self) -> None:
            self.head = u64(2**60)

        def read(self, n: int) -> bytes:
            if self.head:
                out, self.head = self.head[:n], self.head[n:]
                return out
            return stream.read(n)
    return Prefixed()


# -- module functions ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCALARS)
def test_pack_and_unpack_scalar(name):
    value = {"bool": True, "complex64": 1 - 2j, "complex128": 1e300j}.get(name, 7)
    stream = io.BytesIO()
    bf.pack_scalar(np.dtype(name), value, stream)
    data = stream.getvalue()
    assert data == np.asarray(value, np.dtype(name).newbyteorder("<")).tobytes()
    out = bf.unpack_scalar(np.dtype(name), io.BytesIO(data))
    assert type(out) is np.dtype(name).type and out == value
    assert bf.setup_scalar("f", "a", np.dtype(name), value, "unsafe", False) == value


def test_scalar_helpers_for_strings_and_records():
    stream = io.BytesIO()
    bf.pack_scalar(str, "h\u00e9", stream)
    bf.pack_scalar(Meta, {"source": "s", "frame": 3}, stream)
    stream.seek(0)
    assert bf.unpack_scalar(str, stream) == "h\u00e9"
    assert bf.unpack_scalar(Meta, stream) == Meta(source="s", frame=3)
    stream.seek(0)
    assert bf.read_string(stream) == "h\u00e9"
    assert bf.read_some("<QsI", stream) == (1, b"s", 3)
    with pytest.raises(TruncatedError):
        bf.read_some("<Q", io.BytesIO(b"\x00"))


def test_setup_scalar_and_setup_array():
    assert bf.setup_scalar("user/a/1", "x", str, None, "safe", True) == ""
    assert bf.setup_scalar("user/a/1", "x", "int8", None, "safe", True) == 0
    with pytest.raises(MissingFieldError, match="user/a/1: field 'x'"):
        bf.setup_scalar("user/a/1", "x", np.int8, None, "safe", False)
    with pytest.raises(FieldValueError, match="user/a/1: field 'x'.*int8"):
        bf.setup_scalar("user/a/1", "x", np.int8, 1000, "safe", False)
    with pytest.raises(SpecError, match="unsupported dtype"):
        bf.setup_scalar("user/a/1", "x", np.float16, 1, "safe", False)
    a = bf.setup_array("user/a/1", "v", (0, 2), np.float32, [[1, 2]], "safe", False)
    assert a.dtype == np.float32 and a.shape == (1, 2)
    assert bf.setup_array("user/a/1", "v", (0, 2), np.float32, None, "safe", True).shape == (0, 2)
    assert bf.setup_array("user/a/1", "v", (2,), str, None, "safe", True).tolist() == ["", ""]
    recs = bf.setup_array("user/a/1", "v", (0,), XY, [{"x": 1, "y": 2}], "safe", False)
    assert recs[0] == XY(x=1, y=2)
    with pytest.raises(FieldValueError, match=r"user/a/1: field 'v'.*shape \(\*, 2\)"):
        bf.setup_array("user/a/1", "v", (0, 2), np.float32, [[1, 2, 3]], "safe", False)


def test_pack_and_unpack_array():
    for dtype, value, shape in [
        (np.int16, np.arange(12, dtype=np.int16).reshape(3, 4), (0, 4)),
        (str, np.array([["a", "bc"], ["", "d"]], dtype=object), (2, 2)),
        (XY, np.array([XY(x=1), XY(y=2)], dtype=object), (0,)),
        (bool, np.array([True, False]), (2,)),
    ]:
        stream = io.BytesIO()
        bf.pack_array(dtype, value, stream)
        stream.seek(0)
        out = bf.unpack_array(shape, dtype, stream)
        assert out.shape == value.shape and (out == value).all()
    with pytest.raises(DecodeError, match="dimension 1 is 4"):
        bf.unpack_array((0, 5), np.int16, io.BytesIO(u64(1) + u64(4) + b"\x00" * 8))
    with pytest.raises(FieldValueError, match="expected an array"):
        bf.pack_array(np.int8, 3, io.BytesIO())


# -- batches -------------------------------------------------------------------------------------


Pixel = make_type("user/pixel/1", {"rgb": [3, "uint8"], "alpha": "float32", "on": "bool"})
Tile = make_type("user/tile/1", {"id": "uint16", "px": [2, Pixel], "origin": Pixel,
                                 "xy": XY, "none": Empty})


def tiles(n: int) -> list[baseformat]:
    return [Tile(id=i, px=[{"rgb": [i % 256, 1, 2], "alpha": i / 2, "on": i % 2}] * 2,
                 origin={"rgb": [3, 4, 5], "alpha": -i, "on": True}, xy={"x": i, "y": -i})
            for i in range(n)]


def test_batch_dtype_places_fields_at_their_packed_offsets():
    assert XY.packed_size == 16 and XY.batch_dtype == np.dtype([("x", "<f8"), ("y", "<f8")])
    assert Pixel.packed_size == 8 + 3 + 4 + 1
    assert Pixel.batch_dtype.fields["rgb"][1] == 8 and Pixel.batch_dtype.itemsize == 16
    assert Tile.packed_size == len(tiles(1)[0].pack())
    assert Tile.batch_dtype.names == ("id", "px", "origin", "xy")
    assert Point.packed_size is None and Point.batch_dtype is None
    assert Empty.packed_size == 0 and Empty.batch_dtype is None


def test_batch_bytes_equal_one_by_one():
    records = tiles(50)
    data = Tile.pack_batch(records)
    assert data == b"".join(r.pack() for r in records)
    rows = Tile.unpack_batch(data)
    assert rows.dtype == Tile.batch_dtype and len(rows) == 50
    assert rows["xy"]["x"][7] == 7 and rows["px"]["rgb"][3, 1].tolist() == [3, 1, 2]
    assert Tile.pack_batch(rows) == data
    assert Tile.from_batch(rows) == records
    assert Tile.from_row(rows[3]) == records[3]
    assert Tile.pack_batch([r.as_dict() for r in records[:3]]) == data[:3 * Tile.packed_size]
    built = Tile.to_batch(records)
    assert built.flags.writeable and Tile.pack_batch(built) == data
    zeros = np.zeros(4, Tile.batch_dtype)  # dimensions in the gaps are written by pack_batch
    assert Tile.pack_batch(zeros) == Tile().pack() * 4
    assert Tile.pack_batch([]) == b"" and len(Tile.unpack_batch(b"")) == 0


def test_pack_batch_of_strided_rows_writes_the_dimensions():
    # numpy copies strided rows field by field: the gaps (array dimensions) are not copied
    records = tiles(8)
    rows = Tile.unpack_batch(Tile.pack_batch(records))
    expected = b"".join(r.pack() for r in records[::2])
    for _ in range(3):
        assert Tile.pack_batch(rows[::2]) == expected
        assert bytes(Tile.batch_buffer(rows[::2])) == expected
        assert Tile.from_batch(rows[::2]) == records[::2]
    spaced = np.zeros(16, Tile.batch_dtype)
    spaced[::2] = rows
    assert Tile.pack_batch(spaced[::2]) == Tile.pack_batch(records)


def test_pack_batch_refuses_integers_a_narrower_field_cannot_hold():
    Small = make_type("user/small/1", {"v": "int8"})
    T = make_type("user/ids/1", {"id": "uint16", "at": XY, "vs": [2, Small]})
    rows = np.zeros(3, [("id", "<u4"), ("at", [("x", "<f8"), ("y", "<f8")]),
                        ("vs", [("v", "<i4")], (2,))])
    rows["id"] = [1, 2, 65535]
    rows["vs"]["v"][1] = [-128, 127]
    assert T.pack_batch(rows) == T.pack_batch(T.from_batch(rows.astype(T.batch_dtype)))
    rows["id"][2] = 2**20
    with pytest.raises(FieldValueError, match="record 2 of the batch: 1048576") as info:
        T.pack_batch(rows)
    assert info.value.path == "id"
    rows["id"][2] = 0
    rows["vs"]["v"][1, 1] = 300
    with pytest.raises(FieldValueError, match="record 1 of the batch: 300") as info:
        T.pack_batch(rows)
    assert info.value.path == "vs.v"


def test_unpack_batch_is_zero_copy_and_checks():
    data = Tile.pack_batch(tiles(10))
    rows = Tile.unpack_batch(data)
    assert not rows.flags.writeable and np.shares_memory(rows, np.frombuffer(data, np.uint8))
    assert Tile.unpack_batch(data, copy=True).flags.writeable
    buffer = bytearray(data)
    Tile.unpack_batch(buffer)["id"][0] = 99
    assert Tile.unpack(bytes(buffer[:Tile.packed_size])).id == 99
    assert len(Tile.unpack_batch(data, count=3)) == 3
    with pytest.raises(TruncatedError, match="11 records need"):
        Tile.unpack_batch(data, count=11)
    with pytest.raises(DecodeError, match="cannot be .* bytes long"):
        Tile.unpack_batch(data[:-1])
    size = Tile.packed_size
    bad = bytearray(data)
    at = 4 * size + 2  # record 4, dims of field px
    bad[at] = 3
    with pytest.raises(DecodeError, match=r"field 'px'.*record 4 of the batch.*\(3,\), declared "
                                          r"\(2,\)") as info:
        Tile.unpack_batch(bad)
    assert info.value.offset == at
    bad = bytearray(data)
    on = Pixel.batch_dtype.fields["on"][1]
    at = 6 * size + Tile.batch_dtype.fields["origin"][1] + on
    bad[at] = 2
    with pytest.raises(DecodeError, match=r"field 'origin\.on'.*record 6.*not 2"):
        Tile.unpack_batch(bad)
    bad = bytearray(data)
    bad[2 * size + Tile.batch_dtype.fields["px"][1] + Pixel.packed_size] = 9  # px[1].rgb dims
    with pytest.raises(DecodeError, match=r"field 'px\[1\]\.rgb'.*record 2"):
        Tile.unpack_batch(bad)


def test_pack_batch_inputs():
    plain = np.zeros(2, [("x", "<f4"), ("y", "<i8")])
    plain["x"] = [1.5, 2.5]
    assert XY.pack_batch(plain) == XY(x=1.5).pack() + XY(x=2.5).pack()
    with pytest.raises(FieldValueError, match="batch dtype"):
        XY.pack_batch(np.zeros(2, [("a", "<f8"), ("b", "<f8")]))
    with pytest.raises(FieldValueError, match="user/xy/1 record or a dict"):
        XY.pack_batch([XY(), 3])
    with pytest.raises(BatchError, match="field 'tags' is a string array") as info:
        Point.pack_batch([])
    assert isinstance(info.value, TypeError)
    with pytest.raises(BatchError):
        Point.unpack_batch(b"")
    with pytest.raises(BatchError, match="zero bytes"):
        Empty.pack_batch([])
    rows = Pixel.to_batch([Pixel(on=True)])
    assert Pixel.pack_batch(rows) == Pixel(on=True).pack()
    rows.view(np.uint8)[8 + 3 + 4] = 2  # pack_batch does not look, unpack_batch does
    with pytest.raises(DecodeError, match="field 'on'"):
        Pixel.unpack_batch(Pixel.pack_batch(rows))


# -- the error family -----------------------------------------------------------------------------


def test_error_family():
    for cls, builtins in [(SpecError, (ValueError,)), (FieldValueError, (TypeError, ValueError)),
                          (MissingFieldError, (TypeError,)), (UnknownFieldError, (TypeError,)),
                          (DecodeError, (ValueError,)), (TruncatedError, (EOFError, ValueError)),
                          (BatchError, (TypeError,))]:
        assert issubclass(cls, RecordError)
        for builtin in builtins:
            assert issubclass(cls, builtin)


def test_a_sequence_is_never_a_scalar_even_unsafely():
    T = make_type("user/c/1", {"c": "complex128", "i": "int32"})
    for value in ([1.0, 2.0], (1,)):
        with pytest.raises(FieldValueError, match="field 'c': expected complex128"):
            T.from_dict({"c": value, "i": 1}, casting="unsafe")
        with pytest.raises(FieldValueError, match="field 'i': expected int32"):
            T(c=1, i=value)


def test_records_of_the_same_declaration_loaded_twice_compare_equal():
    X1, X2 = (make_type("user/xy/1", {"x": "int8"}) for _ in range(2))
    A = make_type("user/a/1", {"p": X1, "v": [0, X1]})
    B = make_type("user/a/1", {"p": X2, "v": [0, X2]})
    a = A(p={"x": 1}, v=[{"x": 2}])
    b = B.unpack(a.pack())
    assert a == b and b == a and a.isclose(b)
    b.p.x = 3
    assert a != b
    other = make_type("user/a/1", {"p": X2, "v": [0, "int8"]})
    assert a != other() and not a.isclose(other())


def test_a_record_of_the_same_declaration_loaded_twice_is_taken_as_a_field():
    X1, X2 = (make_type("user/xy/1", {"x": "int8"}) for _ in range(2))
    A = make_type("user/a/1", {"p": X1, "v": [0, X1]})
    twin = X2(x=5)
    for r in (A(p=twin, v=[twin]), A.from_dict({"p": twin, "v": [twin]})):
        assert type(r.p) is X1 and type(r.v[0]) is X1 and r.p == twin
        assert r.pack() == A(p={"x": 5}, v=[{"x": 5}]).pack()
    r = A()
    r.p = twin
    assert r.pack() == A(p={"x": 5}).pack()
    assert X1.pack_batch([twin, X1(x=1)]) == b"\x05\x01"
    Other = make_type("user/xy/1", {"x": "int16"})  # the same name, other fields
    with pytest.raises(FieldValueError, match="field 'p': expected record user/xy/1"):
        A(p=Other(x=5))
    with pytest.raises(FieldValueError, match="expected a user/xy/1 record or a dict"):
        X1.pack_batch([Other(x=5)])


def test_batch_buffer_views_rows_that_need_nothing_and_copies_the_rest():
    Plain = make_type("user/plain/1", {"a": "int32", "b": "float64"})
    rows = np.zeros(3, Plain.batch_dtype)
    rows["a"] = [1, 2, 3]
    view = Plain.batch_buffer(rows)
    assert view.readonly and bytes(view) == Plain.pack_batch(rows)
    assert np.shares_memory(np.frombuffer(view, np.uint8), rows)
    Patch = make_type("user/patch/1", {"p": [2, 2, "uint8"]})
    fresh = np.zeros(2, Patch.batch_dtype)  # the dimensions are not in the gaps yet
    packed = Patch.batch_buffer(fresh)
    assert bytes(packed) == Patch.pack_batch(fresh)
    assert not np.shares_memory(np.frombuffer(packed, np.uint8), fresh)
    assert bytes(Plain.batch_buffer([Plain(a=1, b=2.0)])) == Plain(a=1, b=2.0).pack()
