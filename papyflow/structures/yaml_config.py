"""YamlConfig: a base class for dataclasses that save themselves to, and load from, YAML files.

Subclass it with ``@dataclass`` and the class gains :meth:`YamlConfig.to_yaml`
and :meth:`YamlConfig.from_yaml`. The files are plain, human-editable YAML,
written with PyYAML's safe dumper and read with its safe loader (so a config
file can never make Python build arbitrary objects).

Writing is atomic: the YAML text goes to a temporary file in the target
directory, which is flushed, synced and then renamed over the target. A crash
leaves either the old file or the new one, never a torn mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import inspect
import math
import os
import sys
import tempfile
import types
import typing
from collections import ChainMap
from pathlib import Path, PurePath
from typing import Any, Self

import numpy as np
import yaml

from .converters import NumericConverter, beyond_float_range

__all__ = ["YamlConfig"]

_SUFFIXES = (".yaml", ".yml")
_NEW_FILE_MODE = 0o644
# Ints of at most this many bits have fewer digits than any int-to-str limit may be set to.
_SHORT_INT_BITS = 3 * sys.int_info.str_digits_check_threshold

class YamlConfig:
    """Base class for dataclasses that are stored as ``.yaml`` files.

    Loading restores structure and checks kinds, but does not validate values
    (as in the reference design, ranges and the like are the subclass's
    business, e.g. in ``__post_init__``). A value of another kind than its
    field's hint asks for (a float or a date in a ``str`` field, a string in a
    ``float`` field, a scalar for a list) is a ``ValueError`` naming the field
    and the file; ``null`` is taken by every field, and ``Any``, unions of
    several types and other hints take what was read. Nested dataclasses are
    rebuilt from their mappings,
    and lists become tuples, strings become paths, values become enum members,
    ints become floats, and numbers become NumPy scalars (``np.float32``,
    ``np.int8``: a value that does not fit one is a ``ValueError``; an abstract
    type such as ``np.floating`` takes what was read) where the field's type
    hint says so. Fields with
    ``init=False`` are neither written nor read.

    Type hints are resolved one annotation at a time, so one that cannot be
    resolved does not cost the others. String annotations (``from __future__
    import annotations``) are looked up in the class's module, the class
    namespace, and among the classes found in the class, its bases and its
    fields' defaults (so ``inner: Inner = field(default_factory=Inner)`` works
    for an ``Inner`` defined in a function). A field whose annotation still
    cannot be resolved may be missing or ``null`` in the file; any other value
    for it is a ``TypeError`` naming the field, since the value would otherwise
    be loaded without the structure its type asks for (a dict instead of a
    dataclass, a str instead of a path). Define such types at module level.

    Field values may be ``None``, booleans, numbers, strings, lists, tuples,
    dicts (with scalar keys), paths, enum members, NumPy scalars and nested
    dataclasses; anything else, or a value that contains itself, is a
    ``TypeError`` naming the field.
    """

    __slots__ = ()

    def to_yaml(self, config_path: str | os.PathLike[str]) -> None:
        """Write the instance's fields to ``config_path`` (a ``.yaml`` or ``.yml`` file).

        Missing parent directories are created, and an existing file is
        replaced atomically (keeping its permissions; a new file gets 0o644);
        through a symbolic link, the file it points to is the one replaced.
        """
        where = f"{type(self).__name__}.to_yaml"
        _check_dataclass(where, type(self))
        path = _check_path(where, config_path)
        plain = _to_plain(self, type(self).__name__)
        text = yaml.dump(plain, Dumper=_SafeDumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False)
        _write_atomically(path, text)

    @classmethod
    def from_yaml(cls, config_path: str | os.PathLike[str]) -> Self:
        """Load an instance of the class from the ``.yaml`` or ``.yml`` file at ``config_path``.

        Fields missing from the file keep their defaults. Unknown keys,
        missing required fields, a file that is not UTF-8 text, not valid YAML
        (a key given twice in one mapping counts: YAML does not allow it, and
        one of the two values would be lost without a word; so does a float
        beyond the float range, ``1.0e+400``, not read as infinity) or whose top
        level is not a mapping all raise ``ValueError`` naming the file.
        """
        where = f"{cls.__name__}.from_yaml"
        _check_dataclass(where, cls)
        path = _check_path(where, config_path)
        text = _read_text(where, path)
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader (see the class)
        except yaml.YAMLError as error:
            raise ValueError(f"{where}: {str(path)!r} is not valid YAML: {error}") from error
        if data is None:  # an empty file: every field takes its default
            data = {}
        if not isinstance(data, dict):
            raise ValueError(  # noqa: TRY004 - the file is at fault, as for any bad content
                f"{where}: the top level of {str(path)!r} must be a mapping of field names "
                f"to values, got {type(data).__name__}")
        config: Self = _build(cls, data, f"{where}: {str(path)!r}", cls.__name__)
        return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (PyYAML keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<': merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """PyYAML's int, except that one beyond Python's int-from-str limit (4300 digits by
        default) is an error at its place in the file, not a bare ValueError."""
        try:
            return super().construct_yaml_int(node)
        except ValueError as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read an int of {len(node.value)} characters: {error}",
                node.start_mark) from None


    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        """PyYAML's float, except that a number beyond the float range (``1.0e+400``) is
        an error at its place in the file: float() would make it infinity, which YAML
        writes ``.inf``."""
        number: float = super().construct_yaml_float(node)
        if math.isinf(number) and \
                node.value.replace("_", "").lower().lstrip("+-") != ".inf":
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is beyond the range of a float (write .inf for "
                "infinity)", node.start_mark)
        return number


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float",
                                 _UniqueKeyLoader.construct_yaml_float)


class _SafeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, except that strings holding U+0085 are double-quoted.

    The plain and single-quoted styles write NEL raw, and the loader then
    reads it as a line break, so such a string would not load back as written.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if "\x85" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_SafeDumper.add_representer(str, _represent_str)


def _check_dataclass(where: str, cls: type) -> None:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{where}: {cls.__name__} must be a dataclass; decorate the "
                        "YamlConfig subclass with @dataclass")


def _check_path(where: str, config_path: object) -> Path:
    if not isinstance(config_path, (str, os.PathLike)):
        raise TypeError(f"{where}: config_path must be a str or a path, "
                        f"got {type(config_path).__name__} {config_path!r}")
    path = Path(config_path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"{where}: config_path must end in .yaml or .yml, got {str(path)!r}")
    return path


def _read_text(where: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where}: {str(path)!r} is not UTF-8 text: {error}") from error


def _write_atomically(path: Path, text: str) -> None:
    # A symbolic link stays one: the file it points to is the one replaced (a rename
    # over the link itself would make it a plain file and leave that file as it was).
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                         dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    # Make the rename itself durable; not every platform can sync a directory.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _to_plain(value: Any, where: str, enclosing: dict[int, str] | None = None) -> Any:
    """``value`` as YAML-safe builtins; ``where`` names it in errors (``Config.field[2]``).

    ``enclosing`` maps the ids of the containers that ``value`` is inside to
    where they are, to catch a value that contains itself.
    """
    if type(value) is int:
        return _writable_int(value, where)
    if value is None or type(value) in (bool, float, str):
        return value
    # Before the subclass checks below: np.float64 is a float and IntEnum an int,
    # but the safe dumper only knows the exact builtin types.
    if isinstance(value, enum.Enum):
        return _to_plain(value.value, where)
    if isinstance(value, np.generic):
        plain = value.item()
        if isinstance(plain, np.generic):  # longdouble: no Python type holds it exactly
            raise TypeError(f"YamlConfig.to_yaml: {where} holds a {type(value).__name__} "
                            f"({value!r}), which has no exact Python value to write; "
                            "convert it (float(), complex()) first")
        return _to_plain(plain, where)
    for base in (int, float, str):
        if isinstance(value, base):
            return _to_plain(base(value), where)
    if _is_container(value):
        enclosing = enclosing or {}
        if id(value) in enclosing:  # without this check: a RecursionError
            raise TypeError(f"YamlConfig.to_yaml: {where} holds {enclosing[id(value)]} "
                            f"itself (a cyclic {type(value).__name__}), which cannot be "
                            "written to YAML")
        return _container_to_plain(value, where, {**enclosing, id(value): where})
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"YamlConfig.to_yaml: {where} holds a {type(value).__name__} "
                    f"({value!r}), which cannot be written to YAML")


def _writable_int(value: int, where: str) -> int:
    """``value``, checked to be within Python's int-to-str limit (PyYAML writes it with str())."""
    if value.bit_length() > _SHORT_INT_BITS:  # shorter ints are never held to the limit
        try:
            str(value)
        except ValueError:
            raise TypeError(f"YamlConfig.to_yaml: {where} holds an int of "
                            f"{value.bit_length()} bits, more digits than Python converts to "
                            "text (sys.get_int_max_str_digits()); store it as a string"
                            ) from None
    return value


def _is_container(value: Any) -> bool:
    """Whether ``value`` is written as a YAML mapping or sequence of other values."""
    return (isinstance(value, (list, tuple, dict))
            or (dataclasses.is_dataclass(value) and not isinstance(value, type)))


def _container_to_plain(value: Any, where: str, enclosing: dict[int, str]) -> Any:
    """:func:`_to_plain` for a dataclass instance, list, tuple or dict (``_is_container``)."""
    if isinstance(value, (list, tuple)):
        return [_to_plain(item, f"{where}[{index}]", enclosing)
                for index, item in enumerate(value)]
    if isinstance(value, dict):
        plain: dict[Any, Any] = {}
        for key, item in value.items():
            # numpy scalars and enum members are keys as they are values: their
            # plain Python value (np.int64(3) is written as 3)
            if not (key is None or isinstance(key, (bool, int, float, str, enum.Enum))
                    or (isinstance(key, np.generic) and not isinstance(key, np.void))):
                raise TypeError(f"YamlConfig.to_yaml: {where} has the key {key!r}; YAML "
                                "mappings here take None, bool, int, float or str keys "
                                "(numpy scalars and enum members as their values)")
            plain_key = _to_plain(key, where)
            if _is_container(plain_key) or (plain_key is not None and not isinstance(
                    plain_key, (bool, int, float, str))):
                raise TypeError(f"YamlConfig.to_yaml: {where} has the key {key!r}, whose "
                                f"value {plain_key!r} cannot be a YAML mapping key")
            if plain_key in plain:
                raise TypeError(f"YamlConfig.to_yaml: {where} has two keys written as "
                                f"{plain_key!r}; the second is {key!r}")
            plain[plain_key] = _to_plain(item, f"{where}[{key!r}]", enclosing)
        return plain
    return {field.name: _to_plain(getattr(value, field.name), f"{where}.{field.name}",
                                  enclosing)
            for field in dataclasses.fields(value) if field.init}


def _build(cls: type[Any], data: dict[Any, Any], source: str, where: str) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``data`` read from ``source``."""
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ValueError(f"{source}: {where} has no field(s) {', '.join(map(repr, unknown))} "
                         f"(fields: {', '.join(fields) or 'none'})")
    missing = [name for name, field in fields.items() if name not in data
               and field.default is dataclasses.MISSING
               and field.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{source}: required field(s) of {where} missing: "
                         f"{', '.join(missing)}")
    hints = _type_hints(cls)
    kwargs = {name: _from_plain(hints.get(name, Any), value, source, f"{where}.{name}")
              for name, value in data.items()}
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class _UnresolvedHint:
    """The stand-in for a field annotation that cannot be resolved, and why."""

    annotation: object
    reason: str


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved annotations of ``cls`` and its bases; an ``_UnresolvedHint`` where one fails."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - evaluating annotations runs arbitrary expressions
        # Typically string annotations naming classes local to a function: a single
        # failure fails the whole call, so resolve the annotations one by one instead.
        return _type_hints_one_by_one(cls)


def _type_hints_one_by_one(cls: type[Any]) -> dict[str, Any]:
    """Each annotation of ``cls`` and its bases resolved on its own, as the class docstring says."""
    found = _classes_found(cls)
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        module_namespace = getattr(sys.modules.get(base.__module__), "__dict__", {})
        # The module first, then the class namespace, as typing.get_type_hints() does;
        # the classes found from the class itself stand in for a function's locals.
        namespace = ChainMap(module_namespace, dict(vars(base)), found)
        for name, annotation in inspect.get_annotations(base).items():
            hints[name] = _resolve_annotation(annotation, module_namespace, namespace)
    return hints


def _classes_found(cls: type[Any]) -> dict[str, type]:
    """Classes by name that ``cls`` leads to: itself, its bases and its fields' defaults."""
    found: dict[str, type] = {}
    for field in dataclasses.fields(cls):
        candidates: list[object] = [field.default_factory]
        if field.default is not dataclasses.MISSING:
            candidates.append(type(field.default))
        for candidate in candidates:
            if isinstance(candidate, type):
                found.setdefault(candidate.__name__, candidate)
    for klass in cls.__mro__:  # the class and its bases outrank the defaults' types
        found[klass.__name__] = klass
    return found


def _resolve_annotation(annotation: object, module_namespace: dict[str, Any],
                        namespace: typing.Mapping[str, Any]) -> Any:
    """``annotation`` evaluated in ``namespace``, or an ``_UnresolvedHint`` saying why not."""
    # typing.get_type_hints() of a one-annotation class: the public way to evaluate an
    # annotation, including the string forward references nested in it.
    probe = type("_Probe", (), {"__annotations__": {"hint": annotation}})
    try:
        return typing.get_type_hints(probe, module_namespace, namespace)["hint"]
    except Exception as error:  # noqa: BLE001 - evaluating an annotation runs its code
        return _UnresolvedHint(annotation, f"{type(error).__name__}: {error}")


def _from_plain(hint: Any, value: Any, source: str, where: str) -> Any:
    """Rebuild the structure the type ``hint`` asks for, checking the kind of value it takes
    (see :class:`YamlConfig`); a value for a hint not handled here is left as read."""
    if hint is Any:
        return value
    if value is None:  # an enum member whose value is None is written as null too
        if isinstance(hint, type) and issubclass(hint, enum.Enum) and \
                any(member.value is None for member in hint):
            return hint(None)
        return value  # as written (not validated: a None default of an enum field)
    if isinstance(hint, _UnresolvedHint):
        raise TypeError(f"{source}: {where} cannot be loaded, as its annotation "
                        f"{hint.annotation!r} cannot be resolved ({hint.reason}); define the "
                        "type at module level, or import it in the class's module")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        return _from_plain(options[0], value, source, where) if len(options) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{source}: {where} must be a mapping (for {hint.__name__}), "
                             f"got {value!r}")
        return _build(hint, value, source, where)
    if hint is tuple or origin is tuple:
        if not isinstance(value, list):
            raise _wrong_kind(source, where, "a list (for a tuple)", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], item, source, f"{where}[{index}]")
                         for index, item in enumerate(value))
        if args:
            if len(args) != len(value):
                raise ValueError(f"{source}: {where} must be a list of {len(args)} items, "
                                 f"got {len(value)}: {value!r}")
            return tuple(_from_plain(arg, item, source, f"{where}[{index}]")
                         for index, (arg, item) in enumerate(zip(args, value)))
        return tuple(value)
    if hint is list or origin is list:
        if not isinstance(value, list):
            raise _wrong_kind(source, where, "a list", value)
        if not args:
            return value
        return [_from_plain(args[0], item, source, f"{where}[{index}]")
                for index, item in enumerate(value)]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise _wrong_kind(source, where, "a mapping", value)
        if len(args) != 2:
            return value
        rebuilt: dict[Any, Any] = {}
        for key, item in value.items():
            # Keys are written as their plain values (an enum member as its value, a
            # path as its text): rebuild them from the key's type hint as well.
            new_key = _from_plain(args[0], key, source, f"{where} key {key!r}")
            if new_key in rebuilt:
                raise ValueError(f"{source}: {where} has two keys that load as "
                                 f"{new_key!r}")
            rebuilt[new_key] = _from_plain(args[1], item, source, f"{where}[{key!r}]")
        return rebuilt
    if hint is bool or hint is int or hint is str:
        # bool is an int to Python, not to a config file
        if type(value) is not hint:
            raise _wrong_kind(source, where, _KINDS[hint], value)
        return value
    if hint is float:
        return _float(value, source, where, "")
    if isinstance(hint, type) and issubclass(hint, np.bool_ | np.integer | np.floating) \
            and hint not in _ABSTRACT_NUMPY:
        return _numpy_scalar(hint, value, source, where)
    if isinstance(hint, type) and issubclass(hint, PurePath):
        if not isinstance(value, str):
            raise _wrong_kind(source, where, "a str (a path)", value)
        return hint(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_member(hint, value, source, where)
    return value


# NumPy's abstract scalar types: no value is of them alone, so they take what was read.
_ABSTRACT_NUMPY = (np.integer, np.signedinteger, np.unsignedinteger, np.floating)
# What a field of each plain type must hold in the file.
_KINDS = {bool: "true or false", int: "an int", float: "a number",
          str: "a str (quote a value YAML would read as something else)"}
# Reads a float field's value: an int, a float, or a number YAML 1.1 left a string ('1e-3').
_FLOATS = NumericConverter(allow_integer_output=False, parse_number_strings=True)


def _wrong_kind(source: str, where: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{source}: {where} must be {expected}, got {value!r} "
                      f"({type(value).__name__})")


def _float(value: Any, source: str, where: str, purpose: str) -> float:
    """``value`` read for a float field: an int or a float, or a str that spells one."""
    number = _FLOATS.validate_value(value)
    if number is None:
        expected = "a number within the range of a float" if _beyond_floats(value) \
            else "a number"
        raise _wrong_kind(source, where, expected + purpose, value)
    return number


def _beyond_floats(value: Any) -> bool:
    """Whether ``value``, which a float field refused, is a number too large for a float."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):  # the only ints refused are those no float holds
        return True
    return isinstance(value, str) and beyond_float_range(value)


def _numpy_scalar(hint: type[np.generic], value: Any, source: str, where: str) -> Any:
    """``value`` as the NumPy scalar type ``hint`` (to_yaml wrote it as its plain value);
    a value of another kind, or one that does not fit the type, is an error."""
    if issubclass(hint, np.bool_):
        if not isinstance(value, bool):
            raise _wrong_kind(source, where, f"true or false (for {hint.__name__})", value)
        return hint(value)
    if issubclass(hint, np.integer):
        if type(value) is not int:
            raise _wrong_kind(source, where, f"an int (for {hint.__name__})", value)
        info = np.iinfo(hint)
        if not info.min <= value <= info.max:
            raise ValueError(f"{source}: {where} must fit {hint.__name__} "
                             f"({info.min}..{info.max}), got {value!r}")
        return hint(value)
    number = _float(value, source, where, f" (for {hint.__name__})")
    with np.errstate(over="ignore"):
        result = hint(number)
    if np.isinf(result) and not np.isinf(number):
        raise ValueError(f"{source}: {where} must fit {hint.__name__}, got {value!r}")
    return result


def _enum_member(hint: type[enum.Enum], value: Any, source: str, where: str) -> enum.Enum:
    """The member of ``hint`` written as ``value``: its value, or the plain form
    :func:`_to_plain` wrote it in (a tuple value reads back as a list)."""
    try:
        return hint(value)
    except (ValueError, TypeError):  # TypeError: a list, which no value hashes as
        pass
    for member in hint:
        try:
            if _to_plain(member.value, where) == value:
                return member
        except TypeError:  # a value that cannot be written cannot have been read
            continue
    raise ValueError(f"{source}: {where} must be a value of {hint.__name__}, got {value!r}")
