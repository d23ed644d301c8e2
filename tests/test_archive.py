"""Archive and restore: objects written as Python source come back equal, and shared."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import math
import os
import pathlib
import re
import struct
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import papyflow.archive as archive_pkg
from papyflow.archive import (
    Archive,
    ArchiveError,
    CycleError,
    DuplicateError,
    UnarchivableError,
    get_imports,
    object_source,
    repr_,
    restore,
)
from papyflow.archive._nodes import int_text

REPO = Path(__file__).resolve().parent.parent


def round_trip(**objects):
    archive = Archive()
    archive.insert(**objects)
    text = str(archive)
    compile(text, "<archive>", "exec")  # it is valid Python on its own
    return restore(text), text


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (papyflow importable), return the finished run."""
    environment = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60)


# -- the mmf examples --------------------------------------------------------------------------

def test_insert_returns_the_name_or_the_names_and_exec_restores_them():
    a = Archive()
    assert a.insert(x=3) == "x"
    assert a.insert(y=4, z=5) == ["y", "z"]
    d: dict = {}
    exec(str(a), d)
    assert (d["x"], d["y"], d["z"]) == (3, 4, 5)
    assert a.names == ("x", "y", "z") and "y" in a and len(a) == 3
    assert restore(str(a)) == {"x": 3, "y": 4, "z": 5}


def test_the_reference_example_keeps_one_shared_list():
    l0 = ["a", "b"]
    lst = [1, 2, 3, l0]
    d = dict(l0=l0, l=lst, s="hi")
    res, text = round_trip(d=d, l=lst, f=np.sin, g=restore)
    assert res["l"] == [1, 2, 3, ["a", "b"]]
    assert res["d"]["l0"] == ["a", "b"]
    assert res["l"][3] is res["d"]["l0"]
    assert res["d"]["l"] is res["l"]
    assert res["f"] is np.sin and res["g"] is restore
    assert "from numpy import sin as f" in text
    assert "from papyflow.archive import restore as g" in text
    assert text.count("'a', 'b'") == 1


def test_two_names_for_one_list_restore_as_one_list():
    shared = [1, 2]
    res, text = round_trip(a=shared, b=shared, c=[shared, shared])
    assert res["a"] is res["b"] is res["c"][0] is res["c"][1]
    assert "b = a" in text


def test_the_namespace_holds_only_the_inserted_names():
    res, text = round_trip(x=[[1], [1]], y=np.arange(3), z=collections.OrderedDict(a=1))
    namespace: dict = {}
    exec(text, namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == ["__all__", "x", "y", "z"]
    assert list(res) == ["x", "y", "z"]


# -- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, 0, -7, 2**70, 10**5000, 1.5, -0.0, math.inf, -math.inf, 1e-300,
    complex(1, -2), complex(-0.0, -0.0), complex(math.inf, 1), "text\n'\"", b"\x00\xff",
    ..., (), (1,), (1, (2, "x")), frozenset(), frozenset({1, 2}), [], {}, set(), {1, 2, 3},
    {"k": [1, {2: (3, [4])}]}, [[[]]], range(2, 9, 3), slice(1, None, 2), bytearray(b"ab"),
], ids=lambda value: type(value).__name__)
def test_plain_values_round_trip_exactly(value):
    res, _ = round_trip(v=value)
    assert type(res["v"]) is type(value)
    assert res["v"] == value
    if isinstance(value, float | complex):
        assert repr(res["v"]) == repr(value)


def test_nan_comes_back_as_nan():
    res, text = round_trip(v=math.nan, c=complex(1, math.nan))
    assert math.isnan(res["v"]) and math.isnan(res["c"].imag) and res["c"].real == 1
    assert "float('nan')" in text


def bits(value: float) -> str:
    return struct.pack(">d", value).hex()


def test_a_nan_keeps_its_sign_and_payload():
    payload = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    res, text = round_trip(neg=-math.nan, payload=payload, c=complex(-math.nan, payload),
                           plain=math.nan)
    assert bits(res["neg"]) == "fff8000000000000"
    assert bits(res["payload"]) == "7ff8000000000001"
    assert (bits(res["c"].real), bits(res["c"].imag)) == ("fff8000000000000",
                                                         "7ff8000000000001")
    assert "plain = float('nan')" in text and "neg = -float('nan')" in text


@pytest.mark.timeout(10)
def test_ints_are_written_as_decimal_up_to_the_bound_and_many_are_cheap():
    # 300,000 ints: each compared with a bound computed once (not 10**4000 twice per
    # int, which took about a minute here).
    numbers = range(-150_000, 150_000)
    assert [int_text(n) for n in numbers] == [repr(n) for n in numbers]
    huge = 10**4000
    assert int_text(huge - 1) == repr(huge - 1) and int_text(-huge) == hex(-huge)
    res, _ = round_trip(v=[huge - 1, huge, -huge])
    assert res["v"] == [huge - 1, huge, -huge]


def test_builtins_shadowed_by_inserted_names_still_work():
    res, text = round_trip(float=2.0, set=set(), frozenset=[1], nan=math.nan, s2={1},
                           e=set(), f=frozenset({3}), complex=complex(math.inf, 0))
    assert res["float"] == 2.0 and res["set"] == set() and math.isnan(res["nan"])
    assert res["e"] == set() and type(res["f"]) is frozenset and res["f"] == {3}
    assert res["complex"] == complex(math.inf, 0)
    assert "from builtins import" in text


def test_deep_nesting_stays_parseable():
    deep: list = []
    for _ in range(300):
        deep = [deep]
    res, _ = round_trip(deep=deep)
    depth, node = 0, res["deep"]
    while node:
        node, depth = node[0], depth + 1
    assert depth == 300


@pytest.mark.timeout(30)
def test_a_fifty_thousand_deep_nest_archives_and_restores():
    # The walk's path is described only for an error; once per level it was quadratic.
    deep: object = 0
    for _ in range(50_000):
        deep = [deep]
    res, _ = round_trip(deep=deep)
    depth, node = 0, res["deep"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert (depth, node) == (50_000, 0)


def test_a_frozenset_of_literals_stays_one_object():
    key = frozenset({1, "a"})
    res, _ = round_trip(d={key: 1}, k=key, t=(1, key))
    assert res["k"] == key and type(res["k"]) is frozenset
    assert next(iter(res["d"])) is res["k"] is res["t"][1]


def test_long_containers_are_spread_over_lines():
    _, text = round_trip(words=[f"word{i}" for i in range(40)])
    assert "words = [\n    'word0',\n" in text


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Flags(enum.Flag):
    R = 1
    W = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Derived:
    x: int
    y: int = dataclasses.field(init=False, default=0)


class Pair(collections.namedtuple("Pair", "left right")):
    __slots__ = ()


class Plain:
    def __init__(self, a):
        self.a = a

    def __eq__(self, other):
        return type(other) is Plain and other.__dict__ == self.__dict__


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


class WithState:
    def __init__(self, n):
        self.n = n

    def __getstate__(self):
        return {"twice": 2 * self.n}

    def __setstate__(self, state):
        self.n = state["twice"] // 2


class Bag(list):
    pass


def test_library_objects_are_written_with_their_constructors():
    values = dict(
        od=collections.OrderedDict([("b", 1), ("a", [2])]),
        dd=collections.defaultdict(list, a=[1]),
        counter=collections.Counter("abca"),
        dq=collections.deque([1, 2], maxlen=5),
        part=functools.partial(max, 1, key=abs),
        date=datetime.date(2020, 1, 2),
        when=datetime.datetime(2020, 1, 2, 3, 4, 5, 6),
        span=datetime.timedelta(days=1, seconds=3),
        aware=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        dec=decimal.Decimal("1.10"),
        frac=fractions.Fraction(1, 3),
        path=pathlib.PurePosixPath("/a/b"),
        ident=uuid.UUID(int=5),
        pattern=re.compile("a+b", re.IGNORECASE),
        color=Color.BLUE,
        flags=Flags.R | Flags.W,
        point=Point(1.5, y=[2]),
        pair=Pair(1, [2]),
    )
    res, text = round_trip(**values)
    for name, value in values.items():
        assert type(res[name]) is type(value), name
        if name != "part":
            assert res[name] == value, name
    assert res["part"](-5) == max(1, -5, key=abs)
    assert res["dd"]["new"] == [] and res["dq"].maxlen == 5
    assert res["color"] is Color.BLUE
    assert "_Decimal('1.10')" in text and "_Point(x=1.5, y=[2])" in text
    assert "_partial(max, 1, key=abs)" in text and "_Color.BLUE" in text


def test_objects_are_rebuilt_through_the_pickle_protocol():
    plain, slotted, stateful = Plain([1]), Slotted(1, {"x": 2}), WithState(21)
    bag = Bag([1, 2])
    bag.extra = "yes"
    derived = Derived(3)
    derived.y = 9
    res, text = round_trip(plain=plain, slotted=slotted, stateful=stateful, bag=bag,
                           derived=derived, big=np.arange(3, dtype=np.longdouble))
    assert res["plain"] == plain
    assert (res["slotted"].a, res["slotted"].b) == (1, {"x": 2})
    assert res["stateful"].n == 21
    assert res["bag"] == [1, 2] and res["bag"].extra == "yes" and type(res["bag"]) is Bag
    assert (res["derived"].x, res["derived"].y) == (3, 9)
    assert res["big"].dtype == np.longdouble and list(res["big"]) == [0, 1, 2]
    assert "plain.__dict__.update({'a': [1]})" in text
    assert "stateful.__setstate__({'twice': 42})" in text


def test_an_object_shared_between_containers_stays_shared():
    point = Point(1, 2)
    res, _ = round_trip(points=[point, point], lookup={"p": point})
    assert res["points"][0] is res["points"][1] is res["lookup"]["p"]


# -- numpy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.arange(6.0).reshape(2, 3),
    np.array([1, -2, 3], dtype=">i4"),
    np.array([True, False]),
    np.array([1 + 2j, np.nan, -np.inf], dtype=np.complex64),
    np.array([0.1, np.nan, np.inf, -0.0], dtype=np.float32),
    np.array(3.5),
    np.zeros((0, 3), dtype=np.uint8),
    np.array(["a", "bcd"]),
    np.array([b"x", b"yz"]),
    np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"),
    np.array([1, 2], dtype="timedelta64[s]"),
    np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array([1, "x", None], dtype=object),
], ids=lambda array: str(array.dtype))
def test_small_arrays_are_written_inline_and_come_back_equal(array):
    res, text = round_trip(a=array)
    back = res["a"]
    assert type(back) is np.ndarray and back.dtype == array.dtype
    assert back.shape == array.shape
    if array.dtype.kind in "fc":
        np.testing.assert_array_equal(back, array)
        assert np.array_equal(np.signbit(back.real), np.signbit(array.real))
    else:
        assert back.tolist() == array.tolist()
    assert ".npz" not in text


def test_numpy_scalars_and_dtypes_round_trip():
    res, text = round_trip(f=np.float32(0.1), i=np.int8(-3), b=np.True_, n=np.float64(np.nan),
                           dt=np.dtype(">f8"), rec=np.dtype([("a", "<i2"), ("b", "S3")]),
                           s=np.str_("hi"))
    assert type(res["f"]) is np.float32 and res["f"] == np.float32(0.1)
    assert type(res["i"]) is np.int8 and res["i"] == -3
    assert res["b"] is np.True_ and np.isnan(res["n"])
    assert res["dt"] == np.dtype(">f8") and res["rec"] == np.dtype([("a", "<i2"), ("b", "S3")])
    assert type(res["s"]) is np.str_ and res["s"] == "hi"
    assert "_numpy.float32(0.10000000149011612)" in text


def same_bits(back: object, value: object) -> bool:
    return (type(back) is type(value) and np.shape(back) == np.shape(value)
            and np.asarray(back).dtype == np.asarray(value).dtype
            and np.asarray(back).tobytes() == np.asarray(value).tobytes())


@pytest.mark.parametrize("value", [
    np.array([-np.nan, np.nan, 1.0]),
    np.array([[0x7FF8000000000001, 0x7FF0000000000001]], dtype=np.uint64).view(np.float64),
    np.array([0x7FC00001, 0xFFC00000], dtype=">u4").view(">f4"),
    np.array([-np.nan, 2.0], dtype=np.float16),
    np.array(-np.nan),
    np.array([complex(-np.nan, 1), complex(1, np.nan)], dtype=np.complex64),
    np.float64(-np.nan),
    np.array([0x7FC00001], dtype=np.uint32).view(np.float32)[0],
    np.complex128(complex(1, -np.nan)),
], ids=["negative", "payloads", "big-endian", "float16", "0-d", "complex64", "scalar",
        "float32 scalar", "complex scalar"])
def test_arrays_and_scalars_keep_every_bit_of_their_nans(value):
    res, _ = round_trip(v=value)
    assert same_bits(res["v"], value)


def test_a_plain_nan_in_an_array_is_still_numpy_nan():
    res, text = round_trip(a=np.array([np.nan, 1.0], dtype=np.float32))
    assert "_numpy.array([_numpy.nan, 1.0], dtype='float32')" in text
    assert same_bits(res["a"], np.array([np.nan, 1.0], dtype=np.float32))


ALIGNED = np.dtype({"names": ["a", "m"], "formats": ["u1", ("f4", (2,))],
                    "titles": ["Title A", None]}, align=True)
PADDED = np.dtype({"names": ["a"], "formats": ["i4"], "offsets": [4], "itemsize": 12})


def structured(dtype: np.dtype) -> np.ndarray:
    value = np.zeros(3, dtype=dtype)
    value["a"] = [1, 2, 3]
    return value


@pytest.mark.parametrize("value", [
    np.rec.fromarrays([[1, 2], [0.5, 1.5]], names="a,b"),
    np.array([(1, 2.5, b"x")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")])[["a", "c"]],
    structured(ALIGNED),
    structured(PADDED),
], ids=["recarray", "fields subset", "aligned", "padded"])
def test_structured_arrays_with_offsets_padding_or_records_come_back_exactly(value, tmp_path):
    inline, _ = round_trip(v=value, dtype=value.dtype)
    archive = Archive(array_threshold=0)
    archive.insert(v=value)
    archive.save(tmp_path / "saved.py")
    external = restore(tmp_path / "saved.py")
    for back in (inline["v"], external["v"], inline["dtype"]):
        dtype = back if isinstance(back, np.dtype) else back.dtype
        assert dtype == value.dtype and dtype.descr == value.dtype.descr
        assert dtype.type is value.dtype.type
        assert dtype.isalignedstruct == value.dtype.isalignedstruct
    for back in (inline["v"], external["v"]):
        assert type(back) is type(value) and back.tobytes() == value.tobytes()


def test_one_array_referenced_twice_is_one_array():
    array = np.arange(3)
    res, _ = round_trip(x=[array, array], y=array)
    assert res["x"][0] is res["x"][1] is res["y"]


def test_large_arrays_go_to_the_data_file_beside_the_source(tmp_path):
    big = np.random.default_rng(0).normal(size=(50, 40))
    small = np.arange(5)
    archive = Archive(array_threshold=100)
    archive.insert(big=big, small=small, both=[big, big])
    path = archive.save(tmp_path / "saved.py")
    text = path.read_text()
    assert (tmp_path / "saved.npz").is_file()
    assert "'saved.npz'" in text and "_data['a0']" in text
    assert "_numpy.array([0, 1, 2, 3, 4], dtype='int64')" in text
    # The pair moves together: the source finds its data relative to itself.
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("saved.py", "saved.npz"):
        (tmp_path / name).rename(moved / name)
    res = restore(moved / "saved.py")
    np.testing.assert_array_equal(res["big"], big)
    assert res["both"][0] is res["both"][1] is res["big"]
    np.testing.assert_array_equal(res["small"], small)


def test_str_with_a_datafile_writes_it_and_names_it_absolutely(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = Archive(array_threshold=10, datafile="side.npz")
    archive.insert(a=np.ones(20))
    text = str(archive)
    assert str(tmp_path / "side.npz") in text and (tmp_path / "side.npz").is_file()
    monkeypatch.chdir(REPO)
    np.testing.assert_array_equal(restore(text)["a"], np.ones(20))


def test_a_large_array_without_a_data_file_is_refused_with_advice():
    archive = Archive(array_threshold=10)
    archive.insert(a={"k": np.ones(20)})
    with pytest.raises(UnarchivableError, match=r"array_threshold=10.*Archive.save") as info:
        str(archive)
    assert "dict 'a'" in str(info.value)


def test_a_missing_data_file_is_named_when_restoring(tmp_path):
    archive = Archive(array_threshold=1)
    archive.insert(a=np.ones(3))
    archive.save(tmp_path / "x.py")
    (tmp_path / "x.npz").unlink()
    with pytest.raises(FileNotFoundError, match="x.npz") as info:
        restore(tmp_path / "x.py")
    assert any("x.py" in note for note in info.value.__notes__)


# -- errors ------------------------------------------------------------------------------------

def test_duplicate_names_raise_duplicate_error():
    archive = Archive()
    archive.insert(x=1)
    with pytest.raises(DuplicateError, match="'x'") as info:
        archive.insert(x=2)
    assert info.value.name == "x"
    assert isinstance(info.value, ArchiveError) and isinstance(info.value, ValueError)
    assert restore(str(archive)) == {"x": 1}  # the first stays


def test_a_reference_cycle_raises_cycle_error_naming_the_path():
    l1: list = []
    l2 = [l1]
    l1.append(l2)
    archive = Archive()
    archive.insert(l=l1)
    with pytest.raises(CycleError, match="cyclic dependencies") as info:
        str(archive)
    assert info.value.cycle == ["list 'l'", "list", "list 'l'"]
    assert isinstance(info.value, ArchiveError) and isinstance(info.value, ValueError)


def test_cycles_through_dicts_objects_and_names_are_found():
    d: dict = {}
    d["self"] = d
    plain = Plain(None)
    plain.a = [plain]
    a: list = []
    b = [a]
    a.append(b)
    for objects in ({"d": d}, {"p": plain}, {"a": a, "b": b}):
        archive = Archive()
        archive.insert(**objects)
        with pytest.raises(CycleError):
            archive.source()


def test_check_on_insert_raises_at_insert_and_keeps_the_archive_clean():
    loop: list = []
    loop.append(loop)
    archive = Archive(check_on_insert=True)
    archive.insert(ok=1)
    with pytest.raises(CycleError):
        archive.insert(bad=loop, other=2)
    assert archive.names == ("ok",)


@pytest.mark.parametrize("name", ["1x", "class", "__all__", "a-b", "", "\ufb01le"])
def test_names_a_module_cannot_bind_are_refused(name):
    with pytest.raises(ValueError, match="cannot insert under the name"):
        Archive().insert(**{name: 1})


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="at least one"):
        Archive().insert()
    with pytest.raises(ValueError, match="array_threshold"):
        Archive(array_threshold=-1)
    with pytest.raises(TypeError, match="datafile"):
        Archive(datafile=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="archive must be"):
        restore(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="env must be"):
        restore("x = 1", env=[1])  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no archive"):
        restore(Path("/nonexistent/none.py"))
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        Archive().save(Path("/nonexistent/dir/a.py"))


def test_objects_nothing_can_write_raise_unarchivable_error():
    gen = (i for i in range(3))
    archive = Archive()
    archive.insert(d={"gen": gen})
    with pytest.raises(UnarchivableError, match="dict 'd' -> generator object") as info:
        str(archive)
    assert isinstance(info.value, TypeError) and info.value.path.startswith("dict 'd'")


def test_restore_failures_carry_a_note_naming_the_archive():
    with pytest.raises(ImportError) as info:
        restore("import no_such_module_for_papyflow\n")
    assert any("restoring the archive <archive" in note for note in info.value.__notes__)


def test_restore_passes_env_and_reports_names_missing_from_all():
    assert restore("y = x + 1\n__all__ = ['y']\n", env={"x": 1}) == {"y": 2}
    with pytest.raises(ArchiveError, match="'z'"):
        restore("__all__ = ['z']\n")
    assert restore("a = 1\n_b = 2\n") == {"a": 1, "_b": 2}


def test_make_persistent_freezes_the_text_until_the_next_insert():
    data = [1]
    archive = Archive()
    archive.insert(data=data)
    frozen = archive.make_persistent()
    data.append(2)
    assert str(archive) == frozen and restore(str(archive))["data"] == [1]
    archive.insert(more=0)
    assert restore(str(archive))["data"] == [1, 2]


# -- the archive_1 protocol, repr_ and get_imports ----------------------------------------------

class Scaled:
    def __init__(self, x, factor=2):
        self.x, self.factor = x, factor

    def archive_1(self):
        return ("Scaled(x=x, factor=factor)", dict(x=self.x, factor=self.factor),
                [(__name__, "Scaled", "Scaled")])

    def __repr__(self):
        return repr_(self)


class Comprehending:
    def __init__(self, items):
        self.items = items

    def archive_1(self):
        return ("Comprehending([i for i in items])", {"items": self.items},
                [(__name__, "Comprehending", "Comprehending")])


class Spaced:
    """A rep with characters str.splitlines breaks at but the tokenizer does not."""

    def __init__(self, x, tag):
        self.x, self.tag = x, tag

    def archive_1(self):
        return (f"Spaced(\f tag='{self.tag}', x=x)", {"x": self.x},
                [(__name__, "Spaced", "Spaced")])


class BadRep:
    def archive_1(self):
        return ("BadRep(undefined_name)", {}, [])


def test_archive_1_objects_are_written_from_their_rep():
    shared = [1]
    res, text = round_trip(a=Scaled(shared, factor=-3), b=shared, c=Comprehending([1, 2]))
    assert res["a"].x is res["b"] and res["a"].factor == -3
    assert res["c"].items == [1, 2]
    assert "a = _Scaled(x=b, factor=-3)" in text


@pytest.mark.parametrize("tag", ["a\u2028b", "p\x0cq", "n\x85m"])
def test_archive_1_arguments_land_in_place_whatever_the_rep_holds(tag):
    res, text = round_trip(s=Spaced([1, 2], tag))
    assert type(res["s"]) is Spaced and res["s"].x == [1, 2] and res["s"].tag == tag
    assert "x=[1, 2])" in text


def test_an_archive_1_rep_with_unknown_names_is_refused():
    archive = Archive()
    archive.insert(bad=BadRep())
    with pytest.raises(UnarchivableError, match="undefined_name"):
        str(archive)


def test_repr_substitutes_the_arguments_through_the_syntax_tree():
    assert repr(Scaled(x=[1])) == "Scaled(x=[1], factor=2)"
    assert repr(Scaled(Scaled("x_x"))) == "Scaled(x=Scaled(x='x_x', factor=2), factor=2)"
    assert repr_(3) == "3"
    assert repr_(BadRep()) == "BadRep(undefined_name)"

    class Failing:
        def archive_1(self):
            raise RuntimeError("no")

    assert repr_(Failing()).startswith("<")
    with pytest.raises(ArchiveError, match="no"):
        repr_(Failing(), robust=False)


def test_get_imports_names_the_constructor():
    assert get_imports(np.array([1, 2, 3])) == [("numpy", "ndarray", "ndarray")]
    assert get_imports(np.sin) == [("numpy", "sin", "sin")]
    assert get_imports(os.path) == [("posixpath", None, "posixpath")]
    assert get_imports(3) == [("builtins", "int", "int")]
    assert get_imports(Point(1)) == [(__name__, "Point", "Point")]
    assert get_imports(np.array([1]), env={"ndarray": 1}) == [("numpy", "ndarray",
                                                               "ndarray_1")]
    assert get_imports(np.array([1]), env={"ndarray": np.ndarray})[0][2] == "ndarray"


def test_get_imports_names_classes_and_functions_that_cannot_be_imported():
    class Local:
        def method(self):
            pass

    def local():
        pass

    here = "test_get_imports_names_classes_and_functions_that_cannot_be_imported"
    assert get_imports(Local) == [(__name__, f"{here}.<locals>.Local",
                                   f"{here}.<locals>.Local")]
    assert get_imports(local)[0][:2] == (__name__, f"{here}.<locals>.local")
    assert get_imports(lambda: 0)[0][:2] == (__name__, f"{here}.<locals>.<lambda>")
    assert get_imports(Local().method)[0][:2] == (__name__, f"{here}.<locals>.Local.method")
    assert get_imports(Scaled(1).archive_1) == [(__name__, "Scaled", "Scaled")]
    assert get_imports([].append) == [("builtins", "list", "list")]
    assert get_imports(str.upper) == [("builtins", "str", "str")]
    assert get_imports(np.ndarray.sum) == [("numpy", "ndarray", "ndarray")]
    local.__module__ = "__main__"
    local.__qualname__ = "local"
    assert get_imports(local) == [("__main__", "local", "local")]


def test_the_public_names_live_at_the_public_path():
    for name in ("Archive", "restore", "repr_", "get_imports", "DataSet", "ArchiveError",
                 "DuplicateError", "CycleError"):
        assert getattr(archive_pkg, name).__module__ == "papyflow.archive"
        assert name in archive_pkg.__all__


def test_object_source_gives_a_snippet_that_rebuilds_the_object():
    snippet = object_source({"a": [Point(1)], "b": np.arange(2)}, reserved={"_point"})
    namespace: dict = {}
    exec(snippet.code("target"), namespace)
    assert namespace["target"]["a"] == [Point(1)]
    assert "_point" not in snippet.names and snippet.how == "container"
    with pytest.raises(ValueError, match="target"):
        snippet.code("not valid")
    with pytest.raises(TypeError, match="reserved"):
        object_source(1, reserved=[1])  # type: ignore[list-item]


# -- a fresh interpreter -----------------------------------------------------------------------

SHAPES = '''
import dataclasses

@dataclasses.dataclass
class Box:
    w: float
    h: float

class Tagged:
    def __init__(self, tag):
        self.tag = tag
'''


@pytest.fixture
def shapes_module(tmp_path, monkeypatch):
    """An importable module of classes, importable in subprocesses too."""
    where = tmp_path / "mods"
    where.mkdir()
    (where / "archive_test_shapes.py").write_text(SHAPES)
    monkeypatch.syspath_prepend(str(where))
    import archive_test_shapes
    yield archive_test_shapes, where
    sys.modules.pop("archive_test_shapes", None)


def test_a_saved_archive_restores_in_a_fresh_interpreter(tmp_path, shapes_module):
    shapes, where = shapes_module
    box = shapes.Box(1.0, 2.0)
    tagged = shapes.Tagged([box])
    archive = Archive(array_threshold=50)
    archive.insert(box=box, tagged=tagged, grid=np.arange(100.0).reshape(10, 10),
                   sqrt=math.sqrt, klass=shapes.Box, both=[box, box], restore=restore)
    archive.save(tmp_path / "state.py")
    check = textwrap.dedent("""
        import math, numpy as np
        from pathlib import Path
        from papyflow.archive import restore
        import archive_test_shapes as shapes
        res = restore(Path('state.py'))
        assert res['box'] == shapes.Box(1.0, 2.0)
        assert res['tagged'].tag[0] is res['box'] is res['both'][1]
        assert res['grid'].sum() == 4950.0 and res['grid'].shape == (10, 10)
        assert res['sqrt'] is math.sqrt and res['klass'] is shapes.Box
        assert res['restore'] is restore
        print('restored')
    """)
    done = run_python(check, tmp_path, PYTHONPATH=os.pathsep.join([str(where), str(REPO)]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "restored"


def test_the_docstring_examples_run():
    import doctest

    results = doctest.testmod(archive_pkg)
    assert results.failed == 0 and results.attempted >= 5


def test_the_example_runs():
    done = subprocess.run([sys.executable, str(REPO / "examples" / "archive_demo.py")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "restored in a fresh interpreter: True" in done.stdout


def test_restore_of_a_str_that_names_a_saved_file_says_to_pass_a_path(tmp_path, monkeypatch):
    archive = Archive()
    archive.insert(x=3)
    saved = archive.save(tmp_path / "state.py")
    monkeypatch.chdir(tmp_path)
    for given, kind in ((str(saved), SyntaxError), ("state.py", NameError)):
        with pytest.raises(kind) as caught:
            restore(given)  # a str is source: the text of the path is run
        assert (f"the str {given!r} was run as source; it names a file: to restore that "
                f"file, pass a path object, restore(pathlib.Path({given!r}))"
                in caught.value.__notes__)
    assert restore(saved) == {"x": 3}
    with pytest.raises(NameError) as caught:  # source that names no file gets no such note
        restore("y")
    assert not any("names a file" in note for note in caught.value.__notes__)
