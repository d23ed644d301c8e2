"""papyflow.structures.YamlConfig: the reference example, atomic writes, errors, round trips."""

from __future__ import annotations

import enum
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from papyflow.structures import YamlConfig

pytestmark = pytest.mark.timeout(60)


@dataclass
class MyConfig(YamlConfig):
    integer: int = 0
    string: str = 'random'


@dataclass
class Loose(YamlConfig):
    integer: Any = 0
    string: Any = 'random'


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclass
class Inner(YamlConfig):
    depth: int
    rate: float = 0.1


@dataclass
class Outer(YamlConfig):
    name: str
    inner: Inner
    shape: tuple[int, ...] = (1, 2)
    pair: tuple[str, float] = ("a", 1.0)
    where: Path = Path("data")
    mode: Mode = Mode.FAST
    layers: list[Inner] = field(default_factory=list)
    table: dict[str, Inner] = field(default_factory=dict)
    maybe: Inner | None = None
    weight: float = 1.0
    derived: int = field(default=0, init=False)


def test_reference_example():
    config = MyConfig(integer=123, string='hello')
    temp_dir = tempfile.mkdtemp()
    try:
        out_path = Path(temp_dir).joinpath("my_config.yaml")
        config.to_yaml(config_path=out_path)
        assert out_path.exists()
        loaded_config = MyConfig.from_yaml(config_path=out_path)
        assert loaded_config.integer == config.integer
        assert loaded_config.string == config.string
        assert loaded_config == config
        assert out_path.read_text(encoding="utf-8") == "integer: 123\nstring: hello\n"
    finally:
        for child in Path(temp_dir).iterdir():
            child.unlink()
        os.rmdir(temp_dir)


def test_nested_structure_round_trips(tmp_path):
    config = Outer(name="run", inner=Inner(depth=3), shape=(4, 5, 6), pair=("b", 2.5),
                   where=Path("out/dir"), mode=Mode.SLOW,
                   layers=[Inner(1, 0.5), Inner(2)], table={"k": Inner(7)},
                   maybe=Inner(9), weight=np.float64(2.0))
    path = tmp_path / "sub" / "dir" / "outer.yml"  # parents are created
    config.to_yaml(path)
    loaded = Outer.from_yaml(str(path))
    assert loaded == Outer(name="run", inner=Inner(depth=3), shape=(4, 5, 6), pair=("b", 2.5),
                           where=Path("out/dir"), mode=Mode.SLOW,
                           layers=[Inner(1, 0.5), Inner(2)], table={"k": Inner(7)},
                           maybe=Inner(9), weight=2.0)
    assert isinstance(loaded.shape, tuple) and isinstance(loaded.where, Path)
    assert loaded.mode is Mode.SLOW and type(loaded.weight) is float
    text = path.read_text(encoding="utf-8")
    assert "derived" not in text and "mode: slow" in text and "where: out/dir" in text


def test_loading_fills_defaults_and_widens_ints(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ninner: {depth: 2, rate: 1}\nweight: 3\n", encoding="utf-8")
    loaded = Outer.from_yaml(path)
    assert loaded.inner == Inner(depth=2, rate=1.0) and type(loaded.inner.rate) is float
    assert loaded.weight == 3.0 and type(loaded.weight) is float
    assert loaded.shape == (1, 2) and loaded.maybe is None
    path.write_text("", encoding="utf-8")
    assert MyConfig.from_yaml(path) == MyConfig()


def test_suffix_is_checked(tmp_path):
    config = MyConfig()
    for bad in ("config.txt", "config", "config.yaml.bak"):
        with pytest.raises(ValueError, match="config_path must end in .yaml or .yml"):
            config.to_yaml(tmp_path / bad)
        with pytest.raises(ValueError, match="config_path must end in .yaml or .yml"):
            MyConfig.from_yaml(tmp_path / bad)
    config.to_yaml(tmp_path / "UPPER.YAML")
    assert MyConfig.from_yaml(tmp_path / "UPPER.YAML") == config
    assert list(tmp_path.iterdir()) == [tmp_path / "UPPER.YAML"]
    with pytest.raises(TypeError, match="config_path must be a str or a path, got int"):
        config.to_yaml(3)


def test_load_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("integer: 1\nstrin: typo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.yaml'?: MyConfig has no field\(s\) 'strin' "
                                         r"\(fields: integer, string\)"):
        MyConfig.from_yaml(path)
    path.write_text("inner: {depth: 1}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="required field.s. of Outer missing: name"):
        Outer.from_yaml(path)
    path.write_text("name: n\ninner: {rate: 1.0}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="required field.s. of Outer.inner missing: depth"):
        Outer.from_yaml(path)
    path.write_text("name: n\ninner: 5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Outer.inner must be a mapping .for Inner., got 5"):
        Outer.from_yaml(path)
    path.write_text("name: n\ninner: {depth: 1}\nmode: medium\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Outer.mode must be a value of Mode, got 'medium'"):
        Outer.from_yaml(path)
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="top level of .* must be a mapping.*got list"):
        MyConfig.from_yaml(path)
    path.write_text("integer: [1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid YAML"):
        MyConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError):
        MyConfig.from_yaml(tmp_path / "missing.yaml")


def test_a_file_that_is_not_utf8_is_a_value_error_naming_it(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes("string: café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"MyConfig\.from_yaml: '.*latin\.yaml' is not UTF-8 "
                                         "text"):
        MyConfig.from_yaml(path)


def test_a_key_given_twice_is_refused_not_half_lost(tmp_path):
    path = tmp_path / "twice.yaml"
    for text in ("integer: 2\ninteger: 3\n", "outer:\n  inner: {number: 1, number: 2}\n"):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=r"(?s)twice\.yaml' is not valid YAML: .*found the "
                                             r"key '(integer|number)' twice"):
            (MyConfig if text.startswith("integer") else Outer).from_yaml(path)
    # a merge key may be overridden: that is YAML, not a duplicate
    path.write_text("<<: {integer: 4, string: merged}\nstring: own\n", encoding="utf-8")
    assert MyConfig.from_yaml(path) == MyConfig(integer=4, string="own")


def test_unsafe_yaml_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("integer: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid YAML"):
        MyConfig.from_yaml(path)


def test_unwritable_values_are_type_errors(tmp_path):
    path = tmp_path / "c.yaml"
    with pytest.raises(TypeError, match=r"MyConfig\.string holds a set"):
        MyConfig(string={1, 2}).to_yaml(path)
    with pytest.raises(TypeError, match=r"Outer\.layers\[0\]\.depth holds a object"):
        Outer(name="n", inner=Inner(1), layers=[Inner(object())]).to_yaml(path)
    with pytest.raises(TypeError, match=r"Outer\.table has the key \(1, 2\)"):
        Outer(name="n", inner=Inner(1), table={(1, 2): Inner(1)}).to_yaml(path)
    assert not path.exists()


def test_numpy_and_enum_keys_are_written_as_their_values(tmp_path):
    path = tmp_path / "c.yaml"
    table = {np.int64(3): 1, np.float32(0.5): "half", np.str_("name"): [np.bool_(True)],
             Mode.FAST: 2}
    MyConfig(string=table).to_yaml(path)
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["string"] == {
        3: 1, 0.5: "half", "name": [True], "fast": 2}
    # read back by a class whose field takes anything: MyConfig.string must be a str
    assert Loose.from_yaml(path).string == {3: 1, 0.5: "half", "name": [True], "fast": 2}
    path.unlink()
    with pytest.raises(TypeError, match=r"MyConfig\.string has two keys written as 'fast'"):
        MyConfig(string={"fast": 1, Mode.FAST: 2}).to_yaml(path)
    with pytest.raises(TypeError, match=r"MyConfig\.string has the key b'ab'"):
        MyConfig(string={b"ab": 1}).to_yaml(path)
    assert not path.exists()


class Caseless(enum.Enum):
    FAST = "fast"

    @classmethod
    def _missing_(cls, value):
        return cls(value.lower()) if isinstance(value, str) and value != value.lower() else None


@dataclass
class Keyed(YamlConfig):
    by_mode: dict[Mode, int] = field(default_factory=dict)
    by_name: dict[str, list[Mode]] = field(default_factory=dict)
    by_rate: dict[float, str] = field(default_factory=dict)
    by_case: dict[Caseless, int] = field(default_factory=dict)


def test_dict_keys_are_rebuilt_from_their_type_hint(tmp_path):
    path = tmp_path / "c.yaml"
    config = Keyed(by_mode={Mode.FAST: 1, Mode.SLOW: 2},
                   by_name={"a": [Mode.SLOW]}, by_rate={1.0: "one", 0.5: "half"})
    config.to_yaml(path)
    back = Keyed.from_yaml(path)
    assert back == config
    assert [type(key) for key in back.by_mode] == [Mode, Mode]
    assert back.by_name == {"a": [Mode.SLOW]} and back.by_rate == {1.0: "one", 0.5: "half"}
    path.write_text("by_mode:\n  fast: 1\n  warp: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"Keyed\.by_mode key 'warp' must be a value of Mode"):
        Keyed.from_yaml(path)
    path.write_text("by_case:\n  fast: 1\n  FAST: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"Keyed\.by_case has two keys that load as "
                                         r"<Caseless\.FAST: 'fast'>"):
        Keyed.from_yaml(path)


def test_values_that_contain_themselves_are_type_errors(tmp_path):
    path = tmp_path / "c.yaml"
    looped: list = [1]
    looped.append(looped)
    with pytest.raises(TypeError, match=r"MyConfig\.string\[1\] holds MyConfig\.string itself "
                                        r"\(a cyclic list\), which cannot be written to YAML"):
        MyConfig(string=looped).to_yaml(path)
    table: dict = {"k": [0]}
    table["k"].append(table)
    with pytest.raises(TypeError, match=r"MyConfig\.string\['k'\]\[1\] holds "
                                        r"MyConfig\.string itself \(a cyclic dict\)"):
        MyConfig(string=table).to_yaml(path)
    inner = Inner(depth=1)
    inner.depth = [inner]
    with pytest.raises(TypeError, match=r"Outer\.inner\.depth\[0\] holds Outer\.inner itself"):
        Outer(name="n", inner=inner).to_yaml(path)
    assert not path.exists()
    shared = [1, 2]  # one list twice is no cycle
    MyConfig(string=[shared, shared]).to_yaml(path)
    assert Loose.from_yaml(path).string == [[1, 2], [1, 2]]


def test_annotations_are_resolved_one_by_one(tmp_path):
    # With `from __future__ import annotations` (this module), every annotation is a
    # string; `Local` is in no module namespace, but the default of `inner` leads to it.
    @dataclass
    class Local:
        x: int = 1

    @dataclass
    class Config(YamlConfig):
        shape: tuple[int, ...] = (1, 2)
        where: Path = Path("/x")
        weight: float = 1.0
        mode: Mode = Mode.FAST
        inner: Local = field(default_factory=Local)
        children: list[Config] = field(default_factory=list)

    path = tmp_path / "c.yaml"
    config = Config(weight=2, mode=Mode.SLOW, inner=Local(3), children=[Config(shape=(5,))])
    config.to_yaml(path)
    loaded = Config.from_yaml(path)
    assert loaded == config and type(loaded.weight) is float
    assert isinstance(loaded.shape, tuple) and isinstance(loaded.where, Path)
    assert type(loaded.inner) is Local and type(loaded.children[0]) is Config


def test_an_unresolvable_annotation_refuses_only_values_it_would_leave_wrong(tmp_path):
    @dataclass
    class Local:
        x: int = 1

    @dataclass
    class Config(YamlConfig):
        shape: tuple[int, ...] = (1, 2)
        maybe: Local | None = None  # no default leads to Local: it cannot be resolved

    path = tmp_path / "c.yaml"
    Config(shape=(3, 4)).to_yaml(path)
    assert Config.from_yaml(path) == Config(shape=(3, 4))  # null needs no structure
    path.write_text("shape: [5]\n", encoding="utf-8")
    assert Config.from_yaml(path) == Config(shape=(5,))  # a missing field keeps its default
    Config(maybe=Local(2)).to_yaml(path)
    with pytest.raises(TypeError, match=r"c\.yaml'?: Config\.maybe cannot be loaded, as its "
                                        r"annotation 'Local \| None' cannot be resolved "
                                        r"\(NameError: name 'Local' is not defined\)"):
        Config.from_yaml(path)  # rather than a dict where a Local belongs


def test_not_a_dataclass():
    class Plain(YamlConfig):
        pass

    with pytest.raises(TypeError, match="Plain must be a dataclass; decorate"):
        Plain().to_yaml("x.yaml")
    with pytest.raises(TypeError, match="Plain.from_yaml: Plain must be a dataclass"):
        Plain.from_yaml("x.yaml")


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    MyConfig(integer=1).to_yaml(path)
    os.chmod(path, 0o600)
    before = path.read_text(encoding="utf-8")

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        MyConfig(integer=2, string="x" * 10000).to_yaml(path)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == before  # the old file is whole
    assert list(tmp_path.iterdir()) == [path]  # and no temporary file is left
    MyConfig(integer=3).to_yaml(path)
    assert MyConfig.from_yaml(path).integer == 3
    assert path.stat().st_mode & 0o777 == 0o600  # permissions of the old file are kept
    MyConfig().to_yaml(tmp_path / "new.yaml")
    assert (tmp_path / "new.yaml").stat().st_mode & 0o777 == 0o644


def test_a_write_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "profiles").mkdir()
    real = tmp_path / "profiles" / "fast.yaml"
    MyConfig(integer=1).to_yaml(real)
    os.chmod(real, 0o600)
    link = tmp_path / "current.yaml"
    link.symlink_to(real)
    MyConfig(integer=2).to_yaml(link)
    assert link.is_symlink()  # before, the rename made the link a plain file
    assert MyConfig.from_yaml(real).integer == 2  # and left the file it named at 1
    assert real.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == ["fast.yaml"]


# -- properties ------------------------------------------------------------------------

@dataclass
class Everything(YamlConfig):
    integer: int = 0
    number: float = 0.0
    flag: bool = False
    text: str = ""
    nothing: None = None
    numbers: list[int] = field(default_factory=list)
    coordinates: tuple[float, ...] = ()
    mapping: dict[str, int] = field(default_factory=dict)
    inner: Inner = field(default_factory=lambda: Inner(0))


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60,
          deadline=None)
@given(st.builds(Everything, integer=st.integers(), number=st.floats(allow_nan=False),
                 flag=st.booleans(), text=_text, numbers=st.lists(st.integers(), max_size=5),
                 coordinates=st.lists(st.floats(allow_nan=False), max_size=3).map(tuple),
                 mapping=st.dictionaries(_text, st.integers(), max_size=3),
                 inner=st.builds(Inner, depth=st.integers(),
                                 rate=st.floats(allow_nan=False))))
def test_property_round_trip(tmp_path, config):
    path = tmp_path / "everything.yaml"
    config.to_yaml(path)
    loaded = Everything.from_yaml(path)
    assert loaded == config
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["integer"] == config.integer


def test_strings_with_next_line_characters_round_trip(tmp_path):
    # PyYAML writes U+0085 raw in plain style and reads it back as a line break.
    config = MyConfig(string="a\x85b\u2028c\nd é")
    config.to_yaml(tmp_path / "c.yaml")
    assert MyConfig.from_yaml(tmp_path / "c.yaml") == config
    assert "é" in (tmp_path / "c.yaml").read_text(encoding="utf-8")  # unicode stays readable


class Color(enum.Enum):
    RED = (255, 0, 0)
    GREEN = (0, 255, 0)


class Choice(enum.Enum):
    NOTHING = None
    SOMETHING = "x"


@dataclass
class EnumValues(YamlConfig):
    color: Color = Color.RED
    choice: Choice = Choice.SOMETHING
    maybe: Choice | None = Choice.SOMETHING
    colors: dict[Color, int] = field(default_factory=dict)


def test_enum_members_of_any_written_value_come_back(tmp_path):
    path = tmp_path / "c.yaml"
    config = EnumValues(color=Color.GREEN, choice=Choice.NOTHING, maybe=None)
    config.to_yaml(path)
    assert "- 255" in path.read_text()  # a tuple value is written as a list
    loaded = EnumValues.from_yaml(path)
    assert loaded == config
    assert loaded.color is Color.GREEN and loaded.choice is Choice.NOTHING
    assert loaded.maybe is None  # null in an Optional field is None
    path.write_text("color: [1, 2, 3]\n")
    with pytest.raises(ValueError, match=r"color must be a value of Color, got \[1, 2, 3\]"):
        EnumValues.from_yaml(path)


def test_a_longdouble_is_a_type_error_naming_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    for value in (np.longdouble(1.5), np.clongdouble(1.5)):
        with pytest.raises(TypeError, match=r"Inner\.rate holds a c?longdouble .* convert it"):
            Inner(depth=1, rate=value).to_yaml(path)
    assert not path.exists()
    Inner(depth=1, rate=np.float64(1.5)).to_yaml(path)
    assert Inner.from_yaml(path) == Inner(depth=1, rate=1.5)


@dataclass
class NoneDefaults(YamlConfig):
    mode: Mode = None  # type: ignore[assignment]  # not Optional, as users write it
    modes: list[Mode] = field(default_factory=lambda: [Mode.FAST, None])


def test_null_in_an_enum_field_without_a_none_member_stays_none(tmp_path):
    path = tmp_path / "c.yaml"
    NoneDefaults().to_yaml(path)
    assert NoneDefaults.from_yaml(path) == NoneDefaults()


def test_ints_beyond_the_int_to_str_limit_are_errors_naming_the_field_or_the_file(tmp_path):
    # PyYAML converts ints with str() and int(), which refuse more than 4300 digits:
    # Python's bare ValueError came out of to_yaml and from_yaml, naming nothing
    path = tmp_path / "c.yaml"
    huge = 10 ** 5000
    for config, where in ((MyConfig(integer=huge), "MyConfig.integer"),
                          (Everything(mapping={"k": -huge}), r"Everything.mapping\['k'\]"),
                          (Everything(numbers=[1, huge]), r"Everything.numbers\[1\]"),
                          (Outer(name="n", inner=Inner(depth=huge)), "Outer.inner.depth")):
        with pytest.raises(TypeError, match=rf"{where} holds an int of 16610 bits, more "
                                            "digits than Python converts to text"):
            config.to_yaml(path)
        assert not path.exists()
    MyConfig(integer=10 ** 4000).to_yaml(path)  # within the limit: written and read back
    assert MyConfig.from_yaml(path) == MyConfig(integer=10 ** 4000)
    path.write_text(f"string: x\ninteger: {'9' * 5000}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"(?s)c\.yaml' is not valid YAML: cannot read an int "
                                         r"of 5000 characters: .*line 2"):
        MyConfig.from_yaml(path)


def test_floats_beyond_the_float_range_in_a_file_are_errors_not_infinity(tmp_path):
    # PyYAML read 1.0e+400 with float(), as infinity, while '1e400' (a string to YAML
    # 1.1) was refused as beyond the range of a float: a typo for 1.0e-40 became inf.
    path = tmp_path / "c.yaml"
    for text in ("number: 1.0e+400", "number: -1_0.0e+400", "numbers: [1.0e+400]",
                 "mapping: {1.0e+400: 1}"):
        path.write_text(f"integer: 3\n{text}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"(?s)c\.yaml' is not valid YAML: .*e\+?400 is "
                                             r"beyond the range of a float \(write \.inf for "
                                             r"infinity\).*line 2"):
            Everything.from_yaml(path)
    for number in (float("inf"), -float("inf"), 1.7976931348623157e308, 5e-324):
        Everything(number=number).to_yaml(path)
        assert Everything.from_yaml(path).number == number
    path.write_text("number: -.Inf\ncoordinates: [.inf, 1.0e-400, .NaN]\n", encoding="utf-8")
    loaded = Everything.from_yaml(path)
    assert loaded.number == -float("inf") and loaded.coordinates[:2] == (float("inf"), 0.0)


SMALL, HALF, COUNT, BIG = np.float32(0.1), np.float16(0.5), np.int8(-3), np.uint64(2 ** 64 - 1)


@dataclass
class NumpyFields(YamlConfig):
    small: np.float32 = SMALL
    half: np.float16 = HALF
    count: np.int8 = COUNT
    big: np.uint64 = BIG
    flag: np.bool_ = np.True_
    maybe: np.int16 | None = None
    many: list[np.int32] = field(default_factory=lambda: [np.int32(7)])


def test_numpy_scalar_fields_come_back_as_their_type(tmp_path):
    # They were written as their plain values and read back as Python ints, floats and
    # bools: an np.int8 field then no longer wrapped around, an np.float32 computed in double
    path = tmp_path / "c.yaml"
    config = NumpyFields(maybe=np.int16(300))
    config.to_yaml(path)
    loaded = NumpyFields.from_yaml(path)
    assert loaded == config
    for name, kind in (("small", np.float32), ("half", np.float16), ("count", np.int8),
                       ("big", np.uint64), ("flag", np.bool_), ("maybe", np.int16)):
        assert type(getattr(loaded, name)) is kind, name
    assert loaded.small == np.float32(0.1) and type(loaded.many[0]) is np.int32
    path.write_text("small: 1\ncount: 5\n", encoding="utf-8")  # hand-written values too
    loaded = NumpyFields.from_yaml(path)
    assert type(loaded.small) is np.float32 and type(loaded.count) is np.int8
    for text, message in (("count: 128", r"NumpyFields.count must fit int8 \(-128..127\), got 128"),
                          ("big: -1", r"NumpyFields.big must fit uint64"),
                          ("small: 1.0e+39", r"NumpyFields.small must fit float32, got 1e\+39"),
                          ("many: [3000000000]", r"NumpyFields.many\[0\] must fit int32")):
        path.write_text(text + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match=rf"c\.yaml'?: {message}"):
            NumpyFields.from_yaml(path)
    path.write_text("small: .inf\n", encoding="utf-8")
    assert NumpyFields.from_yaml(path).small == np.float32(np.inf)


REAL, WHOLE, SIGNED, NATURAL = np.float32(1.5), np.int8(-3), np.int16(2), np.uint8(4)


@dataclass
class AbstractNumpyFields(YamlConfig):
    real: np.floating = REAL
    whole: np.integer = WHOLE
    signed: np.signedinteger = SIGNED
    natural: np.unsignedinteger | None = NATURAL


def test_abstract_numpy_scalar_fields_take_what_was_read(tmp_path):
    # Before, loading called np.floating(1.5) and np.iinfo(np.integer): Python's and
    # NumPy's bare TypeError and ValueError, naming neither the field nor the file.
    path = tmp_path / "c.yaml"
    AbstractNumpyFields().to_yaml(path)
    loaded = AbstractNumpyFields.from_yaml(path)
    assert (loaded.real, loaded.whole, loaded.signed, loaded.natural) == (1.5, -3, 2, 4)


BEYOND = "Outer.weight must be a number within the range of a float, "


def test_a_hand_edited_value_of_the_wrong_kind_is_an_error_naming_field_and_file(tmp_path):
    # Such values loaded silently: a str in a float field ('1e-3' is a string to YAML 1.1),
    # a float or a date in a str field, a scalar for a tuple, and a float field given an
    # int beyond the float range raised a bare OverflowError
    path = tmp_path / "outer.yaml"
    base = "name: n\ninner: {depth: 1}\n"
    for text, message in (
            ("name: 1.10", "Outer.name must be a str .*, got 1.1 .float."),
            ("name: 2020-01-01", r"Outer.name must be a str .*, got datetime.date\(2020, 1, 1\)"),
            ("name: no", "Outer.name must be a str .*, got False .bool."),
            ("weight: abc", "Outer.weight must be a number, got 'abc' .str."),
            ("weight: true", "Outer.weight must be a number, got True .bool."),
            ("weight: 1e400", BEYOND + "got '1e400'"),
            (f"weight: 1{'0' * 400}", BEYOND + "got 1000"),
            ("inner: {depth: 2.0}", "Outer.inner.depth must be an int, got 2.0 .float."),
            ("inner: {depth: true}", "Outer.inner.depth must be an int, got True .bool."),
            ("shape: 5", r"Outer.shape must be a list \(for a tuple\), got 5 .int."),
            ("pair: [a, 1.0, 2]", "Outer.pair must be a list of 2 items, got 3"),
            ("pair: [1, 1.0]", r"Outer.pair\[0\] must be a str .*, got 1 .int."),
            ("where: 3", r"Outer.where must be a str \(a path\), got 3 .int."),
            ("layers: {a: 1}", r"Outer.layers must be a list, got \{'a': 1\} .dict."),
            ("table: [1]", r"Outer.table must be a mapping, got \[1\] .list."),
            ("table: {1: {depth: 1}}", r"Outer.table key 1 must be a str .*, got 1 .int.")):
        fields = dict(line.split(": ", 1) for line in (base + text).splitlines())
        path.write_text("".join(f"{key}: {value}\n" for key, value in fields.items()),
                        encoding="utf-8")
        with pytest.raises(ValueError, match=rf"outer\.yaml'?: {message}"):
            Outer.from_yaml(path)
    path.write_text("name: '1.10'\ninner: {depth: 1, rate: 1e-3}\nweight: 2\n"
                    "where: null\n", encoding="utf-8")
    loaded = Outer.from_yaml(path)
    assert (loaded.name, loaded.inner.rate, loaded.weight, loaded.where) == ("1.10", 0.001,
                                                                            2.0, None)
    assert type(loaded.weight) is float
