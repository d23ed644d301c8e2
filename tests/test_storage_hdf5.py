"""The HDF5 storage service: exact round trips of every supported type (with
Hypothesis), storage flags, every message, and LockWrapper across processes."""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from papyflow.formats.baseformat import make_type
from papyflow.formats.dataformat import DataFormat
from papyflow.storage import (
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
    Group,
    HDF5StorageService,
    ItemExistsError,
    LazyStorageService,
    Leaf,
    LockWrapper,
    NoSuchServiceError,
    NotStoredError,
    Parameter,
    Result,
    UnsupportedDataError,
    pypetconstants,
)

pytestmark = pytest.mark.timeout(60)

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
_names = itertools.count()


# -- exact equality, types included -------------------------------------------------------


def assert_same(stored: Any, loaded: Any, where: str = "value") -> None:
    """``loaded`` is ``stored``: the same types all the way down, and the same values."""
    assert type(loaded) is type(stored), f"{where}: {type(stored)} came back as {type(loaded)}"
    if isinstance(stored, np.ndarray):
        assert loaded.dtype == stored.dtype, f"{where}: dtype {stored.dtype} -> {loaded.dtype}"
        assert loaded.shape == stored.shape, where
        if stored.dtype.kind in "fc":
            assert np.array_equal(loaded, stored, equal_nan=True), where
        else:
            assert np.array_equal(loaded, stored), where
    elif isinstance(stored, np.generic):
        assert loaded.dtype == stored.dtype, where
        assert loaded == stored or (np.isnan(stored) and np.isnan(loaded)), where
    elif isinstance(stored, list | tuple):
        assert len(loaded) == len(stored), where
        for k, (a, b) in enumerate(zip(stored, loaded, strict=True)):
            assert_same(a, b, f"{where}[{k}]")
    elif isinstance(stored, dict):
        assert list(loaded) == list(stored), where
        for key in stored:
            assert_same(stored[key], loaded[key], f"{where}[{key!r}]")
    elif isinstance(stored, float) and math.isnan(stored):
        assert math.isnan(loaded), where
    elif isinstance(stored, complex) and (math.isnan(stored.real) or math.isnan(stored.imag)):
        assert repr(loaded) == repr(stored), where
    else:
        assert loaded == stored, where


@pytest.fixture
def service(tmp_path: Path) -> HDF5StorageService:
    return HDF5StorageService(tmp_path / "test.hdf5")


def round_trip(service: HDF5StorageService, value: Any, flag: str | None = None) -> Any:
    name = f"results.r{next(_names)}"
    flags = {"v": flag} if flag else None
    service.store(LEAF, Result(name, v=value, flags=flags))
    back = Result(name)
    service.load(LEAF, back)
    return back["v"]


# -- the type mapping, value by value ---------------------------------------------------------

EXAMPLES = [
    0, -(2**63), 2**63 - 1, True, False, 1.5, float("inf"), float("nan"), 2 - 3j, "", "héllo ✓",
    b"", b"\x00\xffbytes", None,
    np.int8(-5), np.uint64(2**64 - 1), np.float16(0.5), np.float32(1.25), np.complex64(1 - 1j),
    np.bool_(True), np.str_("np str"), np.bytes_(b"np bytes"), np.longdouble(2.5),
    np.arange(6, dtype=np.int32).reshape(2, 3), np.array(7), np.zeros((0, 4)),
    np.array(["a", "bcd", ""]), np.array([b"ab", b"c"]), np.array([True, False]),
    np.arange(4, dtype=">i4"),
    np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")]),
    [1, 2, 3], (1, 2, 3), [], (), [1.5], ["x", "y"], (True, False), [1j],
    (np.int64(1), np.int64(2)), [np.float32(1), np.float32(2)], [np.str_("a"), np.str_("b")],
    [np.str_("a"), np.str_("bb")], [np.arange(3), np.arange(3, 6)], (np.zeros((2, 2)),),
    [np.array(1.0), np.array(2.0)], (np.array("x"),),
    [np.arange(2, dtype=">i4")] * 2, (np.array(1.5, dtype=">f8"), np.array(2.5, dtype=">f8")),
    np.longlong(3), np.ulonglong(3), [np.longlong(1), np.longlong(2)], (np.ulonglong(1),),
    {"a": 1, "b": "two", "c": 3.0, "d": [1, 2], "e": np.arange(2), "f": None},
    {}, {"only": np.int16(3)},
]


@pytest.mark.parametrize("value", EXAMPLES, ids=[f"{k}-{type(v).__name__}"
                                                 for k, v in enumerate(EXAMPLES)])
def test_round_trip_is_exact(service: HDF5StorageService, value: Any) -> None:
    assert_same(value, round_trip(service, value))


def test_values_of_one_result_keep_their_names_and_order(service: HDF5StorageService) -> None:
    result = Result("results.run_0.stats", mean=np.float64(1.5), n=10, label="run zero",
                    comment="some statistics")
    service.store(LEAF, result)
    back = Result("results.run_0.stats")
    service.load(LEAF, back)
    assert list(back.data) == ["mean", "n", "label"]
    assert_same(result.data, back.data)
    assert back.v_comment == "some statistics"
    with h5py.File(service.filename, "r") as handle:
        assert "/results/run_0/stats/mean" in handle
        assert handle.attrs["title"] == "Experiment"


# -- records ------------------------------------------------------------------------------


def test_records_come_back_as_records_of_their_type(service: HDF5StorageService,
                                                    tmp_path: Path) -> None:
    spot = DataFormat(str(tmp_path), "system/float64/1")
    record = spot.type(value=2.5)
    back = round_trip(service, record)
    assert type(back) is spot.type
    assert back == record
    Point = make_type("test/point/1", {"x": "int8", "label": "string", "tags": [0, "string"],
                                       "grid": [2, 2, "float32"]})
    Track = make_type("test/track/1", {"points": [0, Point], "origin": Point})
    track = Track(points=[Point(x=1, label="a"), Point(x=-2, label="b", tags=["t"])],
                  origin={"x": 3, "grid": [[1, 2], [3, 4]]})
    back = round_trip(service, track)
    assert type(back) is Track and back == track


def test_a_record_loads_in_a_process_that_never_made_its_type(service: HDF5StorageService,
                                                              ) -> None:
    Odd = make_type("test/odd_only_here/1", {"a": "uint16", "b": [0, "complex64"]})
    service.store(LEAF, Result("results.odd", Odd(a=7, b=[1j])))
    code = ("import sys; from papyflow.storage import HDF5StorageService, LEAF, Result; "
            "back = Result('results.odd'); HDF5StorageService(sys.argv[1]).load(LEAF, back); "
            "print(repr(back['odd']))")
    done = subprocess.run([sys.executable, "-c", code, service.filename], capture_output=True,
                          text=True, timeout=30, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert "test/odd_only_here/1" in done.stdout and "a=7" in done.stdout


# -- Hypothesis: random values round-trip exactly ------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                max_size=20)
_int64 = st.integers(-(2**63), 2**63 - 1)
_python_scalars = st.one_of(st.booleans(), _int64, st.floats(), st.complex_numbers(), _text)
_dtypes = st.one_of(hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(
    endianness="="), hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="), hnp.boolean_dtypes())
_numpy_scalars = _dtypes.flatmap(lambda dt: hnp.from_dtype(dt).map(lambda v: dt.type(v)))
_arrays = st.one_of(
    hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    st.integers(1, 5).flatmap(lambda width: hnp.arrays(
        np.dtype(f"<U{width}"), hnp.array_shapes(max_dims=2, max_side=3),
        elements=st.text(st.characters(min_codepoint=1, max_codepoint=0x2FFF,
                                       blacklist_categories=("Cs",)), max_size=width))))


def _homogeneous(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(elements, max_size=6).flatmap(
        lambda items: st.sampled_from([list(items), tuple(items)]))


_lists = st.one_of(
    _homogeneous(st.booleans()), _homogeneous(_int64), _homogeneous(st.floats()),
    _homogeneous(_text), _homogeneous(st.complex_numbers()),
    _dtypes.flatmap(lambda dt: _homogeneous(hnp.from_dtype(dt).map(dt.type))),
    st.tuples(_dtypes, hnp.array_shapes(min_dims=1, max_dims=2, max_side=3)).flatmap(
        lambda spec: _homogeneous(hnp.arrays(*spec))))
_plain = st.one_of(_python_scalars, _numpy_scalars, _arrays, _lists, st.none(),
                   st.binary(max_size=10))
_values = st.one_of(_plain, st.dictionaries(_text, _plain, max_size=4))


@SETTINGS
@given(value=_values)
def test_random_values_round_trip_exactly(service: HDF5StorageService, value: Any) -> None:
    with service.opened():
        assert_same(value, round_trip(service, value))


@SETTINGS
@given(columns=st.integers(0, 8).flatmap(lambda n: st.dictionaries(
    st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=5),
    st.one_of(st.lists(_int64, min_size=n, max_size=n),
              st.tuples(*[_text] * n),
              hnp.arrays(_dtypes, n)),
    min_size=1, max_size=4)))
def test_random_tables_round_trip_exactly(service: HDF5StorageService,
                                          columns: dict[str, Any]) -> None:
    with service.opened():
        assert_same(columns, round_trip(service, columns, TABLE))


# -- flags ------------------------------------------------------------------------------------


def test_flags_are_inferred_and_laid_out(service: HDF5StorageService) -> None:
    values = {"scalar": 3, "array": np.arange(100), "empty": np.zeros(0), "dict": {"a": 1},
              "record": make_type("test/flagged/1", {"a": "int8"})(a=1)}
    service.store(LEAF, Result("results.flags", **values))
    with h5py.File(service.filename, "r") as handle:
        leaf = handle["/results/flags"]
        import json
        types = json.loads(leaf.attrs["papyflow_leaf"])["types"]
        assert {k: t["f"] for k, t in types.items()} == {
            "scalar": ARRAY, "array": CARRAY, "empty": ARRAY, "dict": DICT, "record": RECORD}
        assert leaf["array"].chunks is not None and leaf["array"].compression == "gzip"
        assert leaf["scalar"].chunks is None
        assert isinstance(leaf["dict"], h5py.Group)


def test_given_flags_win(service: HDF5StorageService) -> None:
    result = Result("results.given", a=np.arange(10), t={"x": [1, 2], "y": ("a", "b")},
                    flags={"a": ARRAY, "t": TABLE})
    result.set_flag("c", CARRAY)
    result["c"] = [1.0, 2.0, 3.0]
    service.store(LEAF, result)
    with h5py.File(service.filename, "r") as handle:
        leaf = handle["/results/given"]
        assert leaf["a"].chunks is None
        assert leaf["t"].dtype.names == ("x", "y") and leaf["t"].shape == (2,)
        assert leaf["c"].chunks is not None
    back = Result("results.given")
    service.load(LEAF, back)
    assert_same(result.data, back.data)


@pytest.mark.parametrize(("value", "flag", "words"), [
    (3, CARRAY, "CARRAY"), (np.zeros(0), CARRAY, "CARRAY"), (3, TABLE, "TABLE"),
    ({"a": [1], "b": [1, 2]}, TABLE, "different lengths"), ([1], DICT, "DICT"),
    (3, RECORD, "RECORD"), ({"a": 1}, ARRAY, "ARRAY"), (1, "FRAME", "unknown storage flag"),
])
def test_wrong_flags_are_refused(service: HDF5StorageService, value: Any, flag: str,
                                 words: str) -> None:
    with pytest.raises(UnsupportedDataError, match=words):
        service.store(LEAF, Result("results.bad", v=value, flags={"v": flag}))


@pytest.mark.parametrize(("value", "words"), [
    ([1, "a"], "homogeneous"), ({1: 2}, "not str"), ({"a": {"b": 1}}, "nested"),
    (2**64, "64-bit"), ("a\0b", "NUL"), (object(), "type object"), ({1, 2}, "type set"),
    (np.array([object()]), "dtype object"), ([np.int8(1), np.int16(2)], "homogeneous"),
    ([np.zeros(2), np.zeros(3)], "shapes"), ("\ud800", "UTF-8"),
    ([[1], [2]], r"a list of list \(nested lists and tuples\): the elements of a list"),
    (((1,), (2,)), r"a tuple of tuple \(nested"), ([b"a", b"b"], "a list of bytes: the elements"),
    ([{"a": 1}], "a list of dict: the elements"),
    ([np.datetime64("2020-01-01")], "a list of datetime64: the elements"),
    (np.zeros(2, dtype=[("n", "i4"), ("a", "U3")]), "field 'a' has dtype <U3"),
    (np.zeros(2, dtype=[("o", "O")]), "field 'o' has dtype object"),
    (np.zeros(2, dtype=[("s", [("u", "U2", (2,))])]), "field s.'u'"),
    ([np.ma.masked_array([1, 2], mask=[True, False])] * 2,
     "a list of MaskedArray: the arrays of a list or tuple must be plain numpy arrays"),
    ((np.recarray(2, [("a", "i4")]), np.recarray(2, [("a", "i4")])), "a tuple of recarray"),
    (np.zeros(2, dtype=[("x\0y", "i4")]), r"field name 'x\\x00y'"),
    (np.zeros(2, dtype=np.dtype([])), "a structured array with no fields"),
    (np.zeros(2, dtype=[("a", "i4", (0,))]), r"field 'a' has the shape \(0,\), which holds"),
    (np.zeros(1, dtype=np.dtype({"names": ["a"], "formats": ["i4"], "titles": ["T"]})),
     "has the title 'T'"),
    (np.zeros(2, dtype=np.dtype({"names": ["a", "b"], "formats": ["i4", "i2"],
                                 "offsets": [0, 0]})), "overlaps the field before it"),
])
def test_what_cannot_come_back_exactly_is_refused(service: HDF5StorageService, value: Any,
                                                  words: str) -> None:
    service.store(LEAF, Result("results.kept", v=1))
    with pytest.raises(UnsupportedDataError, match=words) as caught:
        service.store(LEAF, Result("results.bad", good=1, v=value))
    assert "results.bad" in str(caught.value)
    assert isinstance(caught.value, TypeError)
    with h5py.File(service.filename, "r") as handle:  # nothing half-written stays
        assert "/results/bad" not in handle and "/results/kept" in handle


@pytest.mark.parametrize("opened", [False, True])
def test_a_failed_new_leaf_leaves_no_group_it_made(service: HDF5StorageService,
                                                   opened: bool) -> None:
    service.store(LEAF, Result("results.kept", v=1))
    with service.opened() if opened else contextlib.nullcontext():
        with pytest.raises(UnsupportedDataError, match="results.run_7.stats.mean"):
            service.store(LEAF, Result("results.run_7.stats.mean", {1, 2}))
        service.store(LEAF, Result("results.run_7.other", 3))  # the groups come back
    with h5py.File(service.filename, "r") as handle:
        names: list[str] = []
        handle.visit(names.append)
    assert "results/run_7/stats" not in names and "results/kept" in names
    assert "results/run_7/other" in names


def test_a_value_inside_a_leaf_is_not_a_node(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.m", 1.5, arr=np.arange(3)))
    before = Path(service.filename).read_bytes()
    for call in (lambda: service.store(REMOVE, Group("results.m.m")),
                 lambda: service.store(REMOVE, Group("results.m.arr"), recursive=True),
                 lambda: service.load(TREE, Group("results.m"), "arr")):
        with pytest.raises(ValueError, match=r"'results.m.(m|arr)' is a value of the leaf "
                                             r"'results.m', not a node"):
            call()
    with pytest.raises(ValueError, match="'results.m' is a leaf, which has no children"):
        service.load(TREE, Group("results.m"))
    assert Path(service.filename).read_bytes() == before
    assert load_data(service, "results.m")["arr"].tolist() == [0, 1, 2]


def test_a_file_that_is_not_hdf5_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not hdf5\n")
    good = HDF5StorageService(tmp_path / "good.h5")
    good.store(LEAF, Result("a", 1))
    for call in (lambda: HDF5StorageService(text).store(LEAF, Result("a", 1)),
                 lambda: HDF5StorageService(text).load(LEAF, Result("a")),
                 lambda: good.store(MERGE, Group("m"), text, "")):
        with pytest.raises(OSError, match=f"cannot open '{text}' as an HDF5 file"):
            call()
    assert text.read_text() == "not hdf5\n"


@pytest.mark.parametrize(("leaf", "words"), [
    (lambda: Result("r.n", **{"\ud800": 1}), "bad data name"),
    (lambda: Result("r.n", **{"a\0b": 1}),
     r"bad data name 'a\\x00b' \(a non-empty str without '/' or NUL"),
    (lambda: Result("r.t", {"": [1, 2]}, flags={"t": TABLE}), "the column name ''"),
    (lambda: Result("r.t", {"a\0b": [1]}, flags={"t": TABLE}), r"the column name 'a\\x00b'"),
    (lambda: Result("r.c", 1, comment="\ud800"), "full name and comment must be text in UTF-8"),
])
def test_names_and_comments_not_in_utf8_are_refused(service: HDF5StorageService, leaf: Any,
                                                    words: str) -> None:
    with pytest.raises(UnsupportedDataError, match=words):
        service.store(LEAF, leaf())
    root = Group()
    service.load(TREE, root)
    assert list(root.walk()) == []  # nothing of it stays


def test_arguments_a_message_does_not_take_name_the_message(service: HDF5StorageService
                                                            ) -> None:
    service.store(LEAF, Result("a.c", 1))
    for call, words in ((lambda: service.store(GROUP, Group("a"), bogus=1),
                         r"store\(GROUP\): got an unexpected keyword argument 'bogus'"),
                        (lambda: service.store(LEAF, Result("a.b", 1), 1, 2, 3),
                         r"store\(LEAF\): too many positional arguments"),
                        (lambda: service.load(LEAF, Result("a.c"), nope=2),
                         r"load\(LEAF\): got an unexpected keyword argument 'nope'")):
        with pytest.raises(TypeError, match=words):
            call()
    root = Group()
    service.load(TREE, root)
    assert [n.v_full_name for n in root.walk()] == ["a", "a.c"]  # nothing else stored


def test_arguments_of_the_wrong_kind_name_the_argument(service: HDF5StorageService,
                                                      tmp_path: Path) -> None:
    service.store(LEAF, Result("a.c", 1, y=2))
    for call, words in (
            (lambda: service.load(LEAF, Result("a.c"), load_only=3),
             r"LEAF: load_only must be a data name or an iterable of data names \(str\), got 3"),
            (lambda: service.load(LEAF, Result("a.c"), load_only=["y", 3]),
             r"LEAF: load_only holds a name that is not a str: \['y', 3\]"),
            (lambda: service.store(MERGE, Group("b"), other_name=3),
             r"MERGE: other_name must be a full name \(str\), got 3"),
            (lambda: service.store(MERGE, Group("b"), other_filename=3.5, other_name="a"),
             r"MERGE: other_filename must be a path \(str or os.PathLike\) or None, got 3.5"),
            (lambda: service.store(MERGE, Group("b"), other_name="a", rename_dict=["a.c"]),
             r"MERGE: rename_dict must map full names to full names \(str\)"),
            (lambda: service.store(BACKUP, None, backup_filename=3.5),
             r"BACKUP: backup_filename must be a path \(str or os.PathLike\) or None, got 3.5"),
            (lambda: service.store(LIST, [(LEAF, Result("a.d", 1), "abc")]),
             r"LIST call 0: args must be a tuple or list, got 'abc'"),
            (lambda: service.load(LIST, [(LEAF, Result("a.c"), (), [("load_only", "y")])]),
             r"LIST call 0: kwargs must be a mapping of names"),
            (lambda: service.store(LIST, [(GROUP, Group("e")), (LEAF, Result("a.d", 1), (), {"x": 1})]),
             r"LIST call 1: store\(LEAF\): got an unexpected keyword argument 'x'"),
            (lambda: service.store(LEAF, Result("a.f", 1), filename=3.5),
             r"filename must be a path \(str or os.PathLike\) or None, got 3.5"),
            (lambda: service.store(LEAF, Result("a.f", 1), file_title=4),
             r"file_title must be a str, got 4"),
            (lambda: HDF5StorageService(3.5),
             r"HDF5StorageService: filename must be a path \(str or os.PathLike\) or None"),
            (lambda: HDF5StorageService(str(tmp_path / "t.hdf5"), file_title=4),
             r"HDF5StorageService: file_title must be a str, got 4")):
        with pytest.raises(TypeError, match=words):
            call()
    with pytest.raises(NoSuchServiceError, match="no such message 'NOPE'"):
        service.store(LIST, [(GROUP, Group("e")), ("NOPE", Group("f"))])
    # A list of names still loads those, as before; no malformed LIST stored a call.
    assert service.load(LEAF, Result("a.c"), load_only=("y",)).data == {"y": 2}
    assert [n.v_full_name for n in service.load(TREE, Group()).walk()] == ["a", "a.c"]
    assert not (tmp_path / "t.hdf5").exists()


@pytest.mark.parametrize("comment", ["a\0", "\0", "ab\0\0", "a\0b", "x" * 20_000 + "\0"])
def test_a_comment_that_ends_in_nul_comes_back_whole(service: HDF5StorageService,
                                                     comment: str) -> None:
    service.store(LEAF, Result("r.c", 1, comment=comment))
    service.store(GROUP, Group("g", comment=comment))
    assert service.load(LEAF, Result("r.c")).v_comment == comment
    assert service.load(GROUP, Group("g")).v_comment == comment
    service.store(UPDATE_LEAF, Result("r.c", 2, comment=comment + "\0"))  # replaced
    assert service.load(LEAF, Result("r.c")).v_comment == comment + "\0"


class _DuckResult:
    """Only the leaf protocol the docs name: no v_name, no v_location."""

    def __init__(self, full_name: str, **data: Any) -> None:
        self.v_full_name, self.v_comment, self.data = full_name, "a duck", data

    def _store(self) -> dict[str, Any]:
        return dict(self.data)

    def _load(self, data: dict[str, Any]) -> None:
        self.data.update(data)


def test_any_object_with_the_leaf_protocol_is_stored(service: HDF5StorageService) -> None:
    assert service.store(LEAF, _DuckResult("results.duck", x=1, y=np.arange(3))) == ["x", "y"]
    service.store(TREE, _DuckResult("results.deep.duck", z=2.5))
    back = _DuckResult("results.duck")
    service.load(LEAF, back)
    assert back.data["x"] == 1 and back.data["y"].tolist() == [0, 1, 2]
    assert back.v_comment == "a duck"
    assert load_data(service, "results.deep.duck") == {"z": 2.5}


# -- messages -----------------------------------------------------------------------------


def test_a_structured_table_with_text_fields_is_refused(service: HDF5StorageService) -> None:
    with pytest.raises(UnsupportedDataError, match="results.t.*field 'a'"):
        service.store(LEAF, Result("results.t", np.zeros(2, dtype=[("a", "U3")]),
                                   flags={"t": TABLE}))


# -- what a failure leaves: nothing of itself, everything that was there -------------------


def load_data(service: HDF5StorageService, full_name: str) -> dict[str, Any]:
    return service.load(LEAF, Result(full_name)).data


def test_a_failed_update_keeps_the_old_data(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.r", 1, y=2, comment="old"))
    for bad in (Result("results.r", [1, "a"], y=3, z=4, comment="new"),
                Result("results.r", 5, y=[1, "a"], z=4, comment="new")):
        with pytest.raises(UnsupportedDataError, match="homogeneous"):
            service.store(UPDATE_LEAF, bad)
        assert load_data(service, "results.r") == {"r": 1, "y": 2}
        assert service.load(LEAF, Result("results.r")).v_comment == "old"
    service.store(UPDATE_LEAF, Result("results.r", {"d": 1}, y=[3], comment="new"))
    back = service.load(LEAF, Result("results.r"))
    assert back.data == {"r": {"d": 1}, "y": [3]} and back.v_comment == "new"
    with h5py.File(service.filename, "r") as handle:  # no temporary names left
        assert sorted(handle["results/r"]) == ["r", "y"]
        assert sorted(handle["results/r"].attrs) == ["comment", "papyflow_leaf"]


def test_a_leaf_whose_data_cannot_be_made_leaves_nothing(service: HDF5StorageService) -> None:
    class NotYet(Result):
        __slots__ = ()
        ready = False

        def _store(self) -> dict[str, Any]:
            if not NotYet.ready:
                raise RuntimeError("not computed yet")
            return super()._store()

    with pytest.raises(RuntimeError, match="not computed"):
        service.store(LEAF, NotYet("results.late", 1))
    NotYet.ready = True
    assert service.store(LEAF, NotYet("results.late", 1)) == ["late"]
    assert load_data(service, "results.late") == {"late": 1}


def test_metadata_past_the_attribute_limit_is_stored(service: HDF5StorageService) -> None:
    """HDF5 refuses an attribute past 64 KiB: a leaf's type map and comment can be larger."""
    many = {f"key{i}": i for i in range(5000)}
    service.store(LEAF, Result("results.big", many))
    assert load_data(service, "results.big") == {"big": many}
    comment = "a\0b" + "c" * 70_000 + "\N{SNOWMAN}"
    service.store(LEAF, Result("results.said", 1, comment=comment))
    assert service.load(LEAF, Result("results.said")).v_comment == comment
    service.store(GROUP, Group("results", comment=comment))
    assert service.load(GROUP, Group("results")).v_comment == comment
    # A leaf that grows past the limit keeps what it had.
    service.store(LEAF, Result("results.grow", 1))
    more = {f"n{i}": i for i in range(4000)}
    assert len(service.store(LEAF, Leaf("results.grow", more))) == 4000
    assert load_data(service, "results.grow") == {"grow": 1, **more}
    service.store(UPDATE_LEAF, Result("results.grow", 2, comment="short again"))
    back = service.load(LEAF, Result("results.grow"), load_only=["grow", "n3999"])
    assert back.data == {"grow": 2, "n3999": 3999} and back.v_comment == "short again"


# -- messages -----------------------------------------------------------------------------


def test_constants_are_pypets() -> None:
    assert (pypetconstants.LEAF, pypetconstants.TREE, pypetconstants.LIST) == (
        "LEAF", "TREE", "LIST")
    assert pypetconstants.FLAGS == {"ARRAY", "CARRAY", "TABLE", "DICT", "RECORD"}


def test_unknown_messages(service: HDF5StorageService) -> None:
    with pytest.raises(NoSuchServiceError, match="'TRAJECTORY'"):
        service.store("TRAJECTORY", None)
    with pytest.raises(NoSuchServiceError):
        service.load(REMOVE, Result("results.x"))
    with pytest.raises(NoSuchServiceError):
        service.store(LIST, [(BACKUP, None)])
    with pytest.raises(NoSuchServiceError, match="store LIST: no such message 'FOO'"):
        service.store(LIST, [("FOO", Result("results.x", 1))])
    with pytest.raises(NoSuchServiceError, match="load LIST: no such message 'FOO'"):
        service.load(LIST, [("FOO", Result("results.x"))])


@pytest.mark.parametrize(("verb", "msg", "item", "words"), [
    ("store", LEAF, "results.x", "LEAF does not understand 'results.x' .of type str"),
    ("store", LEAF, None, "LEAF does not understand None"),
    ("store", UPDATE_LEAF, Group("g"), "UPDATE_LEAF does not understand .* Group"),
    ("store", GROUP, 5, "GROUP does not understand 5 .of type int"),
    ("store", GROUP, Result("results.x", 1), "GROUP does not understand .* Result"),
    ("store", TREE, 5, "TREE does not understand"),
    ("store", REMOVE, "a.b", "REMOVE does not understand"),
    ("store", LIST, 5, "LIST does not understand"),
    ("store", LIST, [(LEAF, "a.b")], "store LIST: LEAF does not understand 'a.b'"),
    ("load", LEAF, None, "LEAF does not understand None"),
    ("load", GROUP, "g", "GROUP does not understand 'g'"),
    ("load", TREE, Result("results.x"), "TREE does not understand .* Result"),
])
def test_items_a_message_does_not_understand(service: HDF5StorageService, verb: str, msg: str,
                                            item: Any, words: str) -> None:
    service.store(LEAF, Result("results.kept", 1))
    before = Path(service.filename).read_bytes()
    with pytest.raises(NoSuchServiceError, match=words):
        getattr(service, verb)(msg, item)
    assert Path(service.filename).read_bytes() == before


def test_no_filename() -> None:
    with pytest.raises(ValueError, match="no filename"):
        HDF5StorageService().store(LEAF, Result("a.b", 1))


def test_filename_and_title_per_call(tmp_path: Path) -> None:
    service = HDF5StorageService()
    service.store(LEAF, Result("a.b", 1), filename=str(tmp_path / "x.h5"), file_title="T")
    with h5py.File(tmp_path / "x.h5", "r") as handle:
        assert handle.attrs["title"] == "T"


def test_leaf_data_are_set_in_stone_unless_updated(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.r", a=1))
    service.store(LEAF, Result("results.r", a=2, b=3))  # a is kept, b is added
    back = Result("results.r")
    service.load(LEAF, back)
    assert back.data == {"a": 1, "b": 3}
    service.store(UPDATE_LEAF, Result("results.r", a=[5]))
    back = Result("results.r")
    service.load(LEAF, back)
    assert back.data == {"a": [5], "b": 3}


def test_load_only_and_missing(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.r", a=1, b=2, c=3))
    back = Result("results.r")
    service.load(LEAF, back, load_only="b")
    assert back.data == {"b": 2}
    service.load(LEAF, back, load_only=["a", "c"])
    assert back.data == {"b": 2, "a": 1, "c": 3}
    with pytest.raises(ValueError, match="holds no"):
        service.load(LEAF, Result("results.r"), load_only=["zzz"])
    with pytest.raises(NotStoredError, match="not in the file"):
        service.load(LEAF, Result("results.none"))
    with pytest.raises(NotStoredError, match="'results.nope' .*not in the file"):
        service.load(TREE, Group("results"), child_name="nope")
    with pytest.raises(NotStoredError, match="'nope' .*not in the file"):
        service.load(TREE, Group(), child_name="nope")


def test_loading_reads_and_never_writes(service: HDF5StorageService, tmp_path: Path) -> None:
    service.store(LEAF, Result("results.r", 1))
    with h5py.File(service.filename, "r"):  # HDF5 opens a file open to read only to read
        assert load_data(service, "results.r") == {"r": 1}
        assert [n.v_full_name for n in service.load(TREE, Group()).walk()] == [
            "results", "results.r"]
    missing = tmp_path / "missing.hdf5"
    with pytest.raises(FileNotFoundError, match="missing.hdf5"):
        HDF5StorageService(missing).load(LEAF, Result("results.r"))
    assert not missing.exists()


def test_a_session_to_read_opens_only_to_read(service: HDF5StorageService,
                                              tmp_path: Path) -> None:
    service.store(LEAF, Result("results.r", 1))
    with h5py.File(service.filename, "r"), service.opened(write=False):
        # the file is held open to read elsewhere: a session to write could not open it
        assert load_data(service, "results.r") == {"r": 1}
        assert load_data(service, "results.r") == {"r": 1}
        with pytest.raises(PermissionError, match="only to read"):
            service.store(LEAF, Result("results.s", 2))
        with pytest.raises(ValueError, match="only to read"), service.opened():
            pass
        with service.opened(write=False):  # nested sessions to read are fine
            assert load_data(service, "results.r") == {"r": 1}
    with service.opened():  # a session to write after it works as before
        service.store(LEAF, Result("results.s", 2))
    assert load_data(service, "results.s") == {"s": 2}
    missing = tmp_path / "missing.hdf5"
    with pytest.raises(FileNotFoundError, match="missing.hdf5"), \
            HDF5StorageService(missing).opened(write=False):
        pass
    assert not missing.exists()


def test_groups_and_leaves_do_not_mix(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.r", 1))
    with pytest.raises(ItemExistsError):
        service.store(LEAF, Result("results.r.below", 1))
    with pytest.raises(ItemExistsError):
        service.store(LEAF, Result("results", 1))


def test_bad_names() -> None:
    for name in ("a..b", ".a", "a/b", "a.", "l\0x", "a.b\0", "g.\udcff"):
        with pytest.raises(ValueError, match="bad full name"):
            Result(name, 1)
    with pytest.raises(ValueError, match="bad full name"):
        Group("gp.g\0")


def test_a_bad_group_leaves_nothing_and_names_its_comment(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.kept", 1))
    for group, words in ((Group("g_int", comment=5), "the comment 5"),
                         (Group("g_sur", comment="\udcff"), r"the comment '\\udcff'")):
        with pytest.raises(UnsupportedDataError, match=f"'{group.v_full_name}': its full name "
                                                       f"and comment .* {words}"):
            service.store(GROUP, group)
    with h5py.File(service.filename, "r") as handle:
        assert sorted(handle) == ["results"]


def test_a_bad_file_title_names_it_and_makes_no_file(tmp_path: Path) -> None:
    for title in ("a\0b", "\udcff"):
        with pytest.raises(ValueError, match="file_title must be text in UTF-8 without NUL"):
            HDF5StorageService(tmp_path / "new.h5", file_title=title)
        service = HDF5StorageService(tmp_path / "new.h5")
        with pytest.raises(ValueError, match="file_title must be text in UTF-8"):
            service.store(GROUP, Group("x"), file_title=title)
    assert not (tmp_path / "new.h5").exists()
    with pytest.raises(ValueError):
        Result("", 1)


def test_parameter_and_custom_leaf_kinds(service: HDF5StorageService) -> None:
    class Spike(Leaf):
        __slots__ = ()

    service.store(LEAF, Parameter("parameters.rate", np.float32(0.5), comment="Hz"))
    service.store(LEAF, Spike("results.spikes", {"times": [0.1, 0.2]}))
    root = Group()
    service.load(TREE, root)
    rate = root["parameters.rate"]
    assert isinstance(rate, Parameter) and rate.value == np.float32(0.5)
    assert rate.v_comment == "Hz"
    assert type(root["results.spikes"]) is Spike


def test_group_tree_and_list(service: HDF5StorageService) -> None:
    tree = Group("results", comment="all results")
    run = tree.add(Group("results.run_0"))
    run.add(Result("results.run_0.mean", 1.5))
    run.add(Group("results.run_0.empty"))
    tree.add(Result("results.summary", n=2))
    service.store(TREE, tree, recursive=False)
    with h5py.File(service.filename, "r") as handle:
        assert sorted(handle["results"]) == ["run_0", "summary"]
        assert "mean" not in handle["results/run_0"]
    service.store(TREE, tree)
    service.store(GROUP, Group("other", comment="c"))
    service.store(LIST, [(LEAF, Result("other.x", 1)), (LEAF, Result("other.y", 2), (), {}),
                         (GROUP, Group("other.sub"))])
    root = Group()
    service.load(TREE, root)
    assert [node.v_full_name for node in root.walk()] == [
        "results", "results.run_0", "results.run_0.mean", "results.run_0.empty",
        "results.summary", "other", "other.x", "other.y", "other.sub"]
    assert root["results"].v_comment == "all results"
    assert root["results.run_0.mean"]["mean"] == 1.5
    # Loading one child of a parent, without data, then just a group's comment.
    parent = Group("results")
    node = service.load(TREE, parent, child_name="run_0", load_data=False)
    assert node is parent["run_0"] and parent["run_0.mean"].data == {}
    bare = Group("other")
    service.load(GROUP, bare)
    assert bare.v_comment == "c" and not bare.children
    loaded = service.load(LIST, [(LEAF, Result("other.x")), (LEAF, Result("other.y"))])
    assert [leaf.data for leaf in loaded] == [{"x": 1}, {"y": 2}]


def test_remove(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("a.b.c.leaf", 1))
    service.store(LEAF, Result("a.other", 1))
    with pytest.raises(ValueError, match="not empty"):
        service.store(REMOVE, Group("a.b"))
    service.store(REMOVE, Result("a.b.c.leaf"), remove_empty_groups=True)
    with h5py.File(service.filename, "r") as handle:
        assert list(handle["a"]) == ["other"]
    service.store(REMOVE, Group("a"), recursive=True)
    with pytest.raises(NotStoredError):
        service.store(REMOVE, Group("a"))
    with pytest.raises(ValueError, match="root"):
        service.store(REMOVE, Group())


def test_backup_is_a_complete_copy(service: HDF5StorageService, tmp_path: Path) -> None:
    with service.opened():
        service.store(LEAF, Result("results.r", 1))
        target = service.store(BACKUP, Group("results"))
        assert target == str(tmp_path / "backup_results.hdf5")
        service.store(LEAF, Result("results.s", 2))  # the session goes on
        other = service.store(BACKUP, None, backup_filename=tmp_path / "b.h5")
    back = Result("results.r")
    HDF5StorageService(target).load(LEAF, back)
    assert back.data == {"r": 1}
    with h5py.File(other, "r") as handle:
        assert sorted(handle["results"]) == ["r", "s"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_backup_onto_the_file_itself_is_refused(tmp_path: Path) -> None:
    service = HDF5StorageService(tmp_path / "backup_params.hdf5")  # the default backup name
    with service.opened():
        service.store(LEAF, Result("params.a", 1))
        with pytest.raises(ValueError, match="is the file itself; give another"):
            service.store(BACKUP, Group("params"))
        with pytest.raises(ValueError, match="is the file itself"):
            service.store(BACKUP, None, backup_filename=service.filename)
        service.store(LEAF, Result("params.b", 2))  # went to a replaced file, and was lost
    root = Group()
    HDF5StorageService(service.filename).load(TREE, root, load_data=False)
    assert [node.v_full_name for node in root.walk()] == ["params", "params.a", "params.b"]
    assert os.listdir(tmp_path) == ["backup_params.hdf5"]


def test_a_merge_through_a_symbolic_link_changes_the_file_it_points_to(tmp_path: Path,
                                                                      ) -> None:
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "run_1.hdf5"
    HDF5StorageService(real).store(LEAF, Result("results.a", 1))
    link = tmp_path / "current.hdf5"
    link.symlink_to(real)
    service = HDF5StorageService(link)
    assert service.store(MERGE, Group("copied"), None, "results") == ["copied.a"]
    assert link.is_symlink()  # before, the copy was renamed over the link
    root = Group()
    HDF5StorageService(real).load(TREE, root, load_data=False)  # and run_1 kept no copy
    assert [node.v_full_name for node in root.walk()] == ["results", "results.a", "copied",
                                                          "copied.a"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run_1.hdf5"]


def test_merge_from_another_file(service: HDF5StorageService, tmp_path: Path) -> None:
    other = HDF5StorageService(tmp_path / "other.h5")
    other.store(LEAF, Result("results.run_0.m", 1))
    other.store(LEAF, Result("results.run_1.m", 2))
    service.store(LEAF, Result("results.run_0.m", 0))
    merged = service.store(MERGE, Group("merged"), tmp_path / "other.h5", "results",
                           rename_dict={"results.run_1.m": "renamed.m"})
    assert merged == ["merged.run_0.m", "renamed.m"]
    back = Result("renamed.m")
    service.load(LEAF, back)
    assert back.data == {"m": 2}
    # A clash leaves the file as it was: the merge happens on a copy.
    before = Path(service.filename).read_bytes()
    with pytest.raises(ItemExistsError):
        service.store(MERGE, Group("results"), tmp_path / "other.h5", "results")
    assert Path(service.filename).read_bytes() == before


def test_merge_of_a_value_inside_a_leaf_is_refused(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("results.run_0.mean", 2.5))
    before = Path(service.filename).read_bytes()
    with pytest.raises(ValueError, match=r"MERGE: other_name: 'results.run_0.mean.mean' is a "
                                         r"value of the leaf 'results.run_0.mean', not a node"):
        service.store(MERGE, Group("m"), None, "results.run_0.mean.mean")
    assert Path(service.filename).read_bytes() == before


def test_a_malformed_call_in_a_nested_list_stores_nothing(service: HDF5StorageService) -> None:
    with pytest.raises(NoSuchServiceError, match="LEAF does not understand 'not a leaf'"):
        service.store(LIST, [(LEAF, Result("results.a", 1)),
                             (LIST, [(LEAF, Result("results.b", 2)), (LEAF, "not a leaf")])])
    root = Group()
    service.load(TREE, root)
    assert list(root.walk()) == []
    service.store(LIST, [(LEAF, Result("results.a", 1)), (LIST, [(LEAF, Result("results.b", 2))])])
    assert load_data(service, "results.b") == {"b": 2}


def test_a_nested_list_of_any_iterable_is_stored_and_one_in_itself_refused(
        service: HDF5StorageService) -> None:
    inner = ((LEAF, Result(f"results.inner{k}", k)) for k in range(3))  # used up if read twice
    service.store(LIST, [(LEAF, Result("results.outer", 9)), (LIST, inner)])
    assert [load_data(service, f"results.inner{k}") for k in range(3)] == [
        {"inner0": 0}, {"inner1": 1}, {"inner2": 2}]
    looped: list[Any] = [(LEAF, Result("results.loop", 1))]
    looped.append((LIST, looped))
    with pytest.raises(ValueError, match="LIST: a list of calls that contains itself"):
        service.store(LIST, looped)
    with pytest.raises(NotStoredError):
        load_data(service, "results.loop")


class _Named:
    """The leaf protocol, with any full name (a Result checks its own)."""

    def __init__(self, full_name: str) -> None:
        self.v_full_name = full_name

    def _store(self) -> dict[str, Any]:
        return {"v": 1}


def test_a_leaf_of_any_class_with_a_bad_last_name_leaves_nothing(
        service: HDF5StorageService) -> None:
    service.store(LEAF, Result("kept", 1))
    for name in ("fresh.grp.\udcff", "results.x\0a", "results.x\0b"):
        with pytest.raises(ValueError, match="bad full name"):
            service.store(LEAF, _Named(name))
    with h5py.File(service.filename, "r") as handle:
        assert sorted(handle) == ["kept"]


def test_merge_within_the_file(service: HDF5StorageService) -> None:
    service.store(LEAF, Result("incoming.a.x", 1))
    service.store(LEAF, Result("incoming.b", 2))
    with service.opened():
        merged = service.store(MERGE, Group("results"), other_name="incoming",
                               move_nodes=True, delete_other=True)
        service.store(LEAF, Result("after.merge", 3))  # the session survives the rename
    assert merged == ["results.a.x", "results.b"]
    root = Group()
    service.load(TREE, root)
    assert [n.v_full_name for n in root.walk()] == [
        "results", "results.a", "results.a.x", "results.b", "after", "after.merge"]
    with pytest.raises(ValueError, match="same file"):
        service.store(MERGE, Group("x"), "/elsewhere.h5", "a", move_nodes=True)


@pytest.mark.parametrize("move_nodes", [False, True])
def test_merge_into_the_tree_it_removes_is_refused(service: HDF5StorageService,
                                                   move_nodes: bool) -> None:
    service.store(LEAF, Result("results.a", 1))
    service.store(LEAF, Result("results.b", 2))
    before = Path(service.filename).read_bytes()
    for inside in ("results.old", "results"):
        with pytest.raises(ValueError, match="inside the merged tree"):
            service.store(MERGE, Group(inside), None, "results", move_nodes=move_nodes,
                          delete_other=True)
    assert Path(service.filename).read_bytes() == before  # nothing merged, nothing removed
    # Without delete_other the same merge keeps both.
    merged = service.store(MERGE, Group("results.old"), None, "results", move_nodes=move_nodes)
    assert merged == ["results.old.a", "results.old.b"]
    root = Group()
    service.load(TREE, root)
    leaves = {n.v_full_name for n in root.walk() if isinstance(n, Result)}
    assert leaves == ({"results.old.a", "results.old.b"} if move_nodes else
                      {"results.a", "results.b", "results.old.a", "results.old.b"})


def test_lazy_service_accepts_and_drops() -> None:
    lazy = LazyStorageService()
    assert lazy.store(LEAF, Result("a.b", 1)) is None
    assert lazy.load(TREE, Group(), "anything", recursive=True) is None


# -- LockWrapper: many processes, one file ---------------------------------------------------


def _store_many(wrapper: LockWrapper, k: int, n: int) -> None:
    for i in range(n):
        wrapper.store(LEAF, Result(f"results.p{k}.r{i}", i, square=np.int64(i * i)))
    back = Result(f"results.p{k}.r0")
    wrapper.load(LEAF, back)
    assert back["square"] == 0


def test_lock_wrapper_checks_its_arguments(service: HDF5StorageService) -> None:
    # before, both were taken, and every store then failed with Python's own words
    with pytest.raises(TypeError, match=r"lock must be a lock .* got NoneType"):
        LockWrapper(service, None)
    with pytest.raises(TypeError, match="storage_service must have store.. and load.., got str"):
        LockWrapper("run.hdf5", threading.Lock())


def test_lock_wrapper_lets_processes_share_a_file(service: HDF5StorageService) -> None:
    context = multiprocessing.get_context("fork")
    wrapper = LockWrapper(service, context.Lock())
    processes = [context.Process(target=_store_many, args=(wrapper, k, 30)) for k in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    root = Group()
    service.load(TREE, root)
    leaves = [node for node in root.walk() if isinstance(node, Result)]
    assert len(leaves) == 90
    assert root["results.p2.r29"].data == {"r29": 29, "square": np.int64(29 * 29)}
