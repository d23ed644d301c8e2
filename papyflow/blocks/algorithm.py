"""Algorithms: declared inputs, outputs and parameters, and the code that processes data.

An algorithm is stored under a prefix as
``<prefix>/algorithms/<user>/<name>/<version>.json`` (the declaration),
``.py`` beside it (the code) and an optional ``.rst`` (its documentation)::

    {
        "schema_version": 2, "language": "python", "api_version": 2,
        "type": "sequential", "splittable": true,
        "groups": [
            {"name": "main",
             "inputs": {"image": {"type": "user/image/1"}},
             "outputs": {"features": {"type": "user/vector/1"}}},
            {"name": "models", "inputs": {"model": {"type": "user/model/1"}}}
        ],
        "parameters": {"threshold": {"type": "float64", "default": 0.5,
                                     "range": [0.0, 1.0]}},
        "uses": {"lib": "user/mylib/1"}
    }

The inputs come in synchronization *groups*; the first group is the main one
and drives a sequential algorithm (see :mod:`papyflow.dataflow.inputs`). An
*analyzer* declares ``results`` instead of outputs. A *legacy* algorithm
(API version 1) declares no ``api_version`` and no ``type``.

How the runner calls the code, by type::

    type                        process(...)                              also
    legacy (API 1)              (inputs, outputs)
    sequential                  (inputs, data_loaders, outputs)           setup, prepare
    autonomous                  (data_loaders, outputs)                   setup, prepare
    sequential_loop_evaluator   (inputs, data_loaders, outputs)           validate, read, write
    autonomous_loop_evaluator   (data_loaders, outputs)                   validate, read, write
    sequential_loop_processor   (inputs, data_loaders, outputs, loop_channel)
    autonomous_loop_processor   (data_loaders, outputs, loop_channel)

    an analyzer gets ``output`` (one output of its results' format) for ``outputs``

Loading (:class:`Algorithm`) never raises for a bad declaration:
:attr:`Algorithm.valid` becomes ``False`` and :attr:`Algorithm.errors` says
what is wrong, each message naming the file and the field path
(``".../user/algo/1.json: field 'groups[0].inputs.image.type': dataformat
'user/image/1' not found ..."``). :meth:`Algorithm.runner` loads the code and
returns a :class:`Runner`; everything user code raises comes out of the
runner as one error class (:class:`~papyflow.blocks.errors.BlockError` by
default) naming the block, the method and the traceback.
"""

from __future__ import annotations

import builtins
import difflib
import json
import keyword
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .. import hash as _hash
from ..formats.baseformat import baseformat
from ..formats.dataformat import RESERVED_FIELD_NAMES, SCALAR_TYPES, DataFormat
from ..utils import error_on_duplicate_key_hook
from . import loader
from ._asset import (
    Asset,
    AssetStorage,
    PrefixLike,
    is_endpoint_name,
    is_name,
    module_name,
    show,
    used_modules,
)
from .errors import BlockError, ParameterError, UnknownParameterError
from .library import Library

__all__ = ["PARAMETER_TYPES", "Algorithm", "Runner", "Storage"]

PARAMETER_TYPES: tuple[str, ...] = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "bool", "string",
)
"""The types a parameter may have."""

_INTEGERS = frozenset(PARAMETER_TYPES[:8])
_NUMBERS = _INTEGERS | {"float32", "float64"}


def _without_descriptions(declaration: Any) -> Any:
    """An algorithm declaration as hashed: no ``description``, at the top or of a parameter."""
    if not isinstance(declaration, dict):
        return declaration
    result = {key: value for key, value in declaration.items() if key != "description"}
    parameters = result.get("parameters")
    if isinstance(parameters, dict):
        result["parameters"] = {
            name: ({key: value for key, value in spec.items() if key != "description"}
                   if isinstance(spec, dict) else spec)
            for name, spec in parameters.items()}
    return result


class Storage(AssetStorage):
    """The files of the algorithm ``name`` (``user/name/version``) under ``prefix``.

    ``prefix`` is a folder, a list of folders or a :class:`~papyflow.utils.Prefix`;
    the declaration is looked up as :func:`~papyflow.utils.hashed_or_simple`
    does, and an algorithm found nowhere is placed under the first folder.
    The code file's extension follows ``language`` (by default the
    declaration's, ``python`` when it does not say).

    Attributes ``fullname`` (``user/name/version``), ``username``, ``name``,
    ``version`` and ``prefix``; ``json``, ``code`` and ``doc`` are the files.

    Raises:
        ValueError: ``name`` is not ``user/name/version``.
    """

    asset_type = "algorithm"
    asset_folder = "algorithms"

    def hash(self) -> str:
        """The hash of the declaration and the code, descriptions left out.

        As :meth:`papyflow.utils.CodeStorage.hash`, except that the
        ``description`` of each parameter is left out too, not only the
        top-level one: :meth:`Algorithm.hash` gives the same value.

        Raises:
            OSError: a file cannot be read.
            ValueError: the declaration is not JSON, or repeats a key.
        """
        with open(self.json.path, "rb") as stream:
            raw = stream.read()
        try:
            declaration = json.loads(raw.decode("utf-8"),
                                     object_pairs_hook=error_on_duplicate_key_hook)
        except ValueError as error:
            raise ValueError(f"{self.json.path}: cannot hash: {error}") from error
        return _hash.hash({
            "code": _hash.hashFileContents(self.code.path),
            "declaration": _hash.hashJSON(_without_descriptions(declaration), None),
        })


class _Refused(Exception):
    """A parameter value that does not fit; ``args[0]`` says why."""


def _cast(kind: str, value: Any) -> Any:
    """``value`` as a parameter of type ``kind``: a numpy scalar, ``numpy.bool_`` or ``str``.

    Only values of the right kind are taken: an integer for an integer type
    (no bools, no floats), any number for a float type, a bool for ``bool``,
    a string for ``string``.
    """
    if kind == "string":
        if isinstance(value, str):
            return value
        raise _Refused(f"expected a string, got {show(value)}")
    if kind == "bool":
        if isinstance(value, bool | np.bool_):
            return np.bool_(value)
        raise _Refused(f"expected true or false, got {show(value)}")
    if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating):
        what = "an integer" if kind in _INTEGERS else "a number"
        raise _Refused(f"expected {what} ({kind}), got {show(value)}")
    if kind in _INTEGERS:
        if not isinstance(value, int | np.integer):
            raise _Refused(f"expected an integer ({kind}), got {show(value)}")
        info = np.iinfo(kind)
        if not info.min <= int(value) <= info.max:
            raise _Refused(f"{show(int(value))} does not fit {kind} ({info.min}..{info.max})")
        return np.dtype(kind).type(int(value))
    try:
        with np.errstate(over="ignore"):
            result = np.dtype(kind).type(value)
    except OverflowError:
        raise _Refused(f"{show(value)} does not fit {kind}") from None
    if np.isinf(result) and not (isinstance(value, float | np.floating) and np.isinf(value)):
        raise _Refused(f"{show(value)} does not fit {kind}")
    return result


def _admit(spec: Mapping[str, Any], value: Any) -> Any:
    """``value`` cast for the parameter ``spec`` and checked against its range or choices.

    ``spec`` holds a valid ``type`` and, when they are well formed, ``range``
    and ``choice``.
    """
    kind = spec["type"]
    result = _cast(kind, value)
    if "range" in spec:
        low, high = (_cast(kind, bound) for bound in spec["range"])
        if not low <= result <= high:
            raise _Refused(f"{show(value)} is outside the range {show(spec['range'])}")
    if "choice" in spec:
        choices = [_cast(kind, choice) for choice in spec["choice"]]
        if not any(result == choice for choice in choices):
            raise _Refused(f"{show(value)} is not among the choices {show(spec['choice'])}")
    return result


def _field_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a field of a record (a result's name), or ``None``."""
    if not name.isidentifier():
        return "invalid result name: not a Python identifier"
    if keyword.iskeyword(name):
        return "invalid result name: a Python keyword"
    if name.startswith("_"):
        return "invalid result name: names starting with '_' are reserved"
    if name in RESERVED_FIELD_NAMES:
        return f"invalid result name: {name!r} is an attribute of records"
    return None


def _as_record(record_type: type[baseformat], data: Any) -> baseformat:
    """``data`` (a record, a dict of its fields or its packed bytes) as a record.

    A record of another class with the same fields (the same dataformat loaded
    twice) is converted.
    """
    if isinstance(data, record_type):
        return data
    if isinstance(data, baseformat):
        data = data.as_dict()
    if isinstance(data, Mapping):
        return record_type.from_dict(data, casting="same_kind", add_defaults=False)
    if isinstance(data, bytes | bytearray | memoryview):
        return record_type.unpack(data)
    raise TypeError(f"expected a {record_type._name} record, a dict of its fields or its "
                    f"packed bytes, got {type(data).__name__}")


class Algorithm(Asset):
    """An algorithm, loaded and checked.

    Args:
        prefix: where algorithms, libraries and dataformats are looked up: a
            folder, a list of folders or a :class:`~papyflow.utils.Prefix`
            (the system dataformats are searched after it).
        name: the algorithm's name, ``user/name/version``.
        dataformat_cache: a dict of dataformats already loaded, by name,
            used and filled as :class:`~papyflow.formats.dataformat.DataFormat`
            does. Refresh it yourself when files change.
        library_cache: the same for libraries
            (:class:`~papyflow.blocks.library.Library`).

    A bad declaration never raises: :attr:`valid` becomes ``False`` and
    :attr:`errors` says what is wrong and where.

    Attributes:
        prefix: the :class:`~papyflow.utils.Prefix` searched.
        storage: the :class:`Storage` of its files (``None`` for an invalid name).
        errors: the problems found, one message each.
        data: the declaration as read (a dict), or ``None`` when it could not be.
        code: the code as read (``str``; ``bytes`` for compiled code), or ``None``.
        groups: the declared groups (a list of dicts), the main group first.
        input_map: every input name (all groups) to its dataformat name.
        output_map: every output name (all groups) to its dataformat name.
        loop_map: for a loop algorithm, ``{"request": ..., "answer": ...}``:
            the dataformats of a loop processor's requests and of the
            evaluator's answers; ``{}`` otherwise.
        dataformats: every dataformat used (inputs, outputs, loop, results),
            by name, as :class:`~papyflow.formats.dataformat.DataFormat`.
        libraries: the libraries used directly, by name.
    """

    LEGACY: ClassVar[str] = "legacy"
    SEQUENTIAL: ClassVar[str] = "sequential"
    AUTONOMOUS: ClassVar[str] = "autonomous"
    SEQUENTIAL_LOOP_EVALUATOR: ClassVar[str] = "sequential_loop_evaluator"
    AUTONOMOUS_LOOP_EVALUATOR: ClassVar[str] = "autonomous_loop_evaluator"
    SEQUENTIAL_LOOP_PROCESSOR: ClassVar[str] = "sequential_loop_processor"
    AUTONOMOUS_LOOP_PROCESSOR: ClassVar[str] = "autonomous_loop_processor"

    TYPES: ClassVar[tuple[str, ...]] = (
        SEQUENTIAL, AUTONOMOUS, SEQUENTIAL_LOOP_EVALUATOR, AUTONOMOUS_LOOP_EVALUATOR,
        SEQUENTIAL_LOOP_PROCESSOR, AUTONOMOUS_LOOP_PROCESSOR)
    """The values of ``type`` in a declaration (API version 2)."""

    dataformat_klass: ClassVar[builtins.type[DataFormat]] = DataFormat
    """The class of :attr:`dataformats`."""

    kind = "algorithm"
    storage_type = Storage
    known_keys = ("api_version", "description", "groups", "language", "parameters",
                  "results", "schema_version", "splittable", "type", "uses")

    storage: Storage | None

    def __init__(self, prefix: PrefixLike, name: str,
                 dataformat_cache: dict[str, DataFormat] | None = None,
                 library_cache: dict[str, Library] | None = None) -> None:
        self.groups: list[dict[str, Any]] = []
        self.input_map: dict[str, str] = {}
        self.output_map: dict[str, str] = {}
        self.loop_map: dict[str, str] = {}
        self.dataformats: dict[str, DataFormat] = {}
        self._dataformat_cache = dataformat_cache if dataformat_cache is not None else {}
        self._library_cache = library_cache if library_cache is not None else {}
        self._specs: dict[str, dict[str, Any]] = {}  # parameters that are well declared
        self._result_dataformat: DataFormat | None = None
        self._declares_outputs = False
        self._kind_known = False
        declaration = self._read(prefix, name)
        if declaration is None:
            return
        self._check_common(declaration)
        self._kind_known = self._check_kind(declaration)
        self._check_groups(declaration)
        self._check_results(declaration)
        self._check_parameters(declaration)
        self._load_uses(declaration, self._library_cache, ())

    # -- checking ------------------------------------------------------------------------------

    def _check_kind(self, declaration: dict[str, Any]) -> bool:
        """Check ``api_version``, ``type`` and ``splittable``; whether the kind is known."""
        splittable = declaration.get("splittable", False)
        if not isinstance(splittable, bool):
            self._error("splittable", f"must be true or false, not {show(splittable)}")
        api = declaration.get("api_version")
        if api is not None and (type(api) is not int or api not in (1, 2)):
            self._error("api_version", f"must be 1 or 2, not {show(api)}")
            return False
        if "type" not in declaration:
            return True
        kind = declaration["type"]
        if kind not in self.TYPES:
            close = difflib.get_close_matches(kind, self.TYPES, n=1) \
                if isinstance(kind, str) else []
            if close:
                hint = f" (did you mean {close[0]!r}?)"
            elif kind == self.LEGACY:
                hint = " (a legacy algorithm declares no type and api_version 1)"
            else:
                hint = ""
            self._error("type", f"unknown type {show(kind)}{hint} (known: "
                                + ", ".join(self.TYPES) + ")")
            return False
        if api != 2:
            self._error("api_version", f"an algorithm of type {kind!r} declares "
                                       f"\"api_version\": 2, not {show(api)}")
            return False
        return True

    def _check_groups(self, declaration: dict[str, Any]) -> None:
        groups = declaration.get("groups")
        if groups is None:
            self._error("groups", "missing: an algorithm declares a list of groups of "
                                  "inputs (and outputs), the main group first")
            return
        if not isinstance(groups, list) or not groups:
            self._error("groups", f"must be a non-empty list of groups, not {show(groups)}")
            return
        self.groups = groups
        names: dict[str, int] = {}
        inputs_at: dict[str, int] = {}
        outputs_at: dict[str, int] = {}
        for index, group in enumerate(groups):
            path = f"groups[{index}]"
            if not isinstance(group, dict):
                self._error(path, "a group is an object {\"name\": ..., \"inputs\": {...}, "
                                  f"\"outputs\": {{...}}}}, not {show(group)}")
                continue
            for key in group:
                if key not in ("inputs", "loop", "name", "outputs"):
                    self._error(f"{path}.{key}", "unknown key (known: inputs, loop, name, "
                                                 "outputs)")
            if "name" in group:
                name = group["name"]
                if not is_endpoint_name(name):
                    self._error(f"{path}.name", f"invalid group name {show(name)}: letters, "
                                                "digits, '_' and '-', not starting with a "
                                                "digit or '-'")
                elif name in names:
                    self._error(f"{path}.name", f"groups[{names[name]}] has the same name "
                                                f"{name!r}")
                else:
                    names[name] = index
            inputs = group.get("inputs")
            if isinstance(inputs, dict) and inputs:
                self._check_endpoints(inputs, f"{path}.inputs", "input", index, inputs_at,
                                      self.input_map)
            elif inputs is None or inputs == {} or inputs == []:
                self._error(f"{path}.inputs", "a group has at least one input")
            else:
                self._error(f"{path}.inputs", "must be an object mapping input names to "
                                              f"{{\"type\": dataformat}}, not {show(inputs)}")
            outputs = group.get("outputs")
            if outputs is not None and outputs != {}:
                self._declares_outputs = True
                if not isinstance(outputs, dict):
                    self._error(f"{path}.outputs", "must be an object mapping output names to "
                                                   f"{{\"type\": dataformat}}, not "
                                                   f"{show(outputs)}")
                elif "results" in declaration:
                    self._error(f"{path}.outputs", "an analyzer (it declares results) has no "
                                                   "outputs: it writes its results")
                else:
                    self._check_endpoints(outputs, f"{path}.outputs", "output", index,
                                          outputs_at, self.output_map)
            self._check_loop(group.get("loop"), index)

    def _check_endpoints(self, entries: dict[str, Any], path: str, what: str, index: int,
                         seen: dict[str, int], names: dict[str, str]) -> None:
        """Check the inputs or outputs of group ``index``; fill ``names`` (name -> format)."""
        for name, spec in entries.items():
            where = f"{path}.{name}"
            if not is_endpoint_name(name):
                self._error(where, f"invalid {what} name: letters, digits, '_' and '-', not "
                                   "starting with a digit or '-'")
                continue
            if name in seen:
                self._error(where, f"{what} {name!r} is already declared in "
                                   f"groups[{seen[name]}]")
                continue
            seen[name] = index
            if not isinstance(spec, dict) or "type" not in spec:
                self._error(where, f"an {what} is an object {{\"type\": dataformat name}}, "
                                   f"not {show(spec)}")
                continue
            for key in spec:
                if key != "type":
                    self._error(f"{where}.{key}", "unknown key (known: type)")
            if isinstance(spec["type"], str):
                names[name] = spec["type"]
            self._dataformat(spec["type"], f"{where}.type")

    def _check_loop(self, loop: Any, index: int) -> None:
        path = f"groups[{index}].loop"
        if not self._kind_known:
            return  # the type is wrong: whether a loop belongs here is unknown
        if not self.is_loop:
            if loop is not None:
                self._error(path, f"only loop algorithms declare a loop (this one is "
                                  f"{self.type!r})")
            return
        if index > 0:
            if loop is not None:
                self._error(path, "only the main group (groups[0]) declares the loop")
            return
        shape = "{\"request\": {\"type\": dataformat}, \"answer\": {\"type\": dataformat}}"
        if loop is None:
            self._error(path, f"missing: a {self.type} algorithm declares its loop in its "
                              f"main group: {shape}")
            return
        if not isinstance(loop, dict):
            self._error(path, f"must be {shape}, not {show(loop)}")
            return
        for key in loop:
            if key not in ("answer", "request"):
                self._error(f"{path}.{key}", "unknown key (known: answer, request)")
        for key in ("request", "answer"):
            spec = loop.get(key)
            if spec is None:
                self._error(f"{path}.{key}", f"missing: the loop's {key} is "
                                             "{\"type\": dataformat}")
            elif not isinstance(spec, dict) or "type" not in spec:
                self._error(f"{path}.{key}", f"must be {{\"type\": dataformat}}, not "
                                             f"{show(spec)}")
            else:
                for extra in spec:
                    if extra != "type":
                        self._error(f"{path}.{key}.{extra}", "unknown key (known: type)")
                if isinstance(spec["type"], str):
                    self.loop_map[key] = spec["type"]
                self._dataformat(spec["type"], f"{path}.{key}.type")

    def _check_results(self, declaration: dict[str, Any]) -> None:
        if "results" not in declaration:
            if self.groups and not self._declares_outputs and not self.is_loop_evaluator:
                self._error("groups", "no group declares outputs and there are no results: "
                                      "an algorithm writes outputs, an analyzer declares "
                                      "results")
            return
        results = declaration["results"]
        if not isinstance(results, dict) or not results:
            self._error("results", "an analyzer declares at least one result: an object "
                                   "mapping names to {\"type\": ..., \"display\": true or "
                                   f"false}}, not {show(results)}")
            return
        for name, spec in results.items():
            where = f"results.{name}"
            problem = _field_name_problem(name)
            if problem is not None:
                self._error(where, problem)
                continue
            if not isinstance(spec, dict) or "type" not in spec:
                self._error(where, "a result is an object {\"type\": ..., \"display\": true "
                                   f"or false}}, not {show(spec)}")
                continue
            for key in spec:
                if key not in ("display", "type"):
                    self._error(f"{where}.{key}", "unknown key (known: display, type)")
            if "display" in spec and not isinstance(spec["display"], bool):
                self._error(f"{where}.display", f"must be true or false, not "
                                                f"{show(spec['display'])}")
            kind = spec["type"]
            if isinstance(kind, str) and kind in SCALAR_TYPES:
                continue
            if is_name(kind):
                self._dataformat(kind, f"{where}.type")
            else:
                self._error(f"{where}.type", f"unknown type {show(kind)}: a result is a "
                                             "scalar type or a dataformat name")

    def _check_parameters(self, declaration: dict[str, Any]) -> None:
        parameters = declaration.get("parameters")
        if parameters is None:
            return
        if not isinstance(parameters, dict):
            self._error("parameters", "must be an object mapping parameter names to "
                                      f"{{\"type\": ...}}, not {show(parameters)}")
            return
        for name, spec in parameters.items():
            where = f"parameters.{name}"
            if not is_endpoint_name(name):
                self._error(where, "invalid parameter name: letters, digits, '_' and '-', "
                                   "not starting with a digit or '-'")
                continue
            if not isinstance(spec, dict):
                self._error(where, "a parameter is an object {\"type\": ..., \"default\": "
                                   f"...}}, not {show(spec)}")
                continue
            checked = self._check_parameter(where, spec)
            if checked is not None:
                self._specs[name] = checked

    def _check_parameter(self, where: str, spec: dict[str, Any]) -> dict[str, Any] | None:
        """Check one parameter; return what of it is usable (``None`` without a type)."""
        for key in spec:
            if key not in ("choice", "default", "description", "range", "type"):
                self._error(f"{where}.{key}", "unknown key (known: choice, default, "
                                              "description, range, type)")
        if "description" in spec and not isinstance(spec["description"], str):
            self._error(f"{where}.description", "must be a string")
        kind = spec.get("type")
        if kind not in PARAMETER_TYPES:
            close = difflib.get_close_matches(kind, PARAMETER_TYPES, n=1) \
                if isinstance(kind, str) else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self._error(f"{where}.type", f"unknown parameter type {show(kind)}{hint} (known: "
                                         + ", ".join(PARAMETER_TYPES) + ")")
            return None
        checked: dict[str, Any] = {"type": kind}
        if "range" in spec and "choice" in spec:
            self._error(where, "give a range or a choice, not both")
        elif "range" in spec:
            bounds = spec["range"]
            if kind not in _NUMBERS:
                self._error(f"{where}.range", f"a {kind} parameter has no range")
            elif not isinstance(bounds, list) or len(bounds) != 2:
                self._error(f"{where}.range", f"must be [minimum, maximum], not {show(bounds)}")
            else:
                try:
                    low, high = (_cast(kind, bound) for bound in bounds)
                except _Refused as refused:
                    self._error(f"{where}.range", str(refused))
                else:
                    if low > high:
                        self._error(f"{where}.range", f"the minimum is above the maximum in "
                                                      f"{show(bounds)}")
                    else:
                        checked["range"] = bounds
        elif "choice" in spec:
            choices = spec["choice"]
            if not isinstance(choices, list) or not choices:
                self._error(f"{where}.choice", f"must be a non-empty list of values, not "
                                               f"{show(choices)}")
            else:
                good = True
                for position, choice in enumerate(choices):
                    try:
                        _cast(kind, choice)
                    except _Refused as refused:
                        self._error(f"{where}.choice", f"choice {position}: {refused}")
                        good = False
                if good:
                    checked["choice"] = choices
        if "default" in spec:
            try:
                checked["default"] = _admit(checked, spec["default"])
            except _Refused as refused:
                self._error(f"{where}.default", str(refused))
        return checked

    def _dataformat(self, name: Any, path: str) -> DataFormat | None:
        """The dataformat ``name`` used at ``path`` (noting every problem with it)."""
        if not is_name(name):
            hint = f" (the dataformat 'system/{name}/1' holds one {name})" \
                if isinstance(name, str) and name in SCALAR_TYPES else ""
            self._error(path, f"{show(name)} is not a dataformat name "
                              f"'user/name/version'{hint}")
            return None
        dataformat = self.dataformats.get(name) or self._dataformat_cache.get(name)
        if dataformat is None:
            dataformat = self.dataformat_klass(self.prefix, name,
                                               dataformat_cache=self._dataformat_cache)
        if dataformat.data is None and (dataformat.storage is None
                                        or not dataformat.storage.exists()):
            self._error(path, f"dataformat {name!r} not found "
                              f"(searched: {', '.join(dataformat.prefix.paths)})")
            return None
        self.dataformats[name] = dataformat
        for error in dataformat.errors:
            self._error(path, f"dataformat {name!r} is invalid: {error}")
        return dataformat if dataformat.valid else None

    # -- what it is ----------------------------------------------------------------------------

    @property
    def api_version(self) -> int:
        """The API version of the code: 1 (legacy, the default) or 2."""
        api = self.data.get("api_version", 1) if self.data else 1
        return api if type(api) is int and api in (1, 2) else 1

    @property
    def type(self) -> str:
        """The type of algorithm: :attr:`LEGACY` for API version 1, else the declared
        ``type`` (:attr:`SEQUENTIAL` when it does not say)."""
        if self.api_version == 1:
            return self.LEGACY
        kind = self.data.get("type", self.SEQUENTIAL) if self.data else self.SEQUENTIAL
        return kind if isinstance(kind, str) else self.SEQUENTIAL

    @property
    def is_autonomous(self) -> bool:
        """Whether the code is called once, to go through the data loaders itself."""
        return self.type in (self.AUTONOMOUS, self.AUTONOMOUS_LOOP_EVALUATOR,
                             self.AUTONOMOUS_LOOP_PROCESSOR)

    @property
    def is_sequential(self) -> bool:
        """Whether the code is called once per step of the main group (API version 2;
        a legacy algorithm is called that way too but is neither sequential nor
        autonomous)."""
        return self.type in (self.SEQUENTIAL, self.SEQUENTIAL_LOOP_EVALUATOR,
                             self.SEQUENTIAL_LOOP_PROCESSOR)

    @property
    def is_loop(self) -> bool:
        """Whether it is one side of a loop: an evaluator or a processor."""
        return self.is_loop_evaluator or self.is_loop_processor

    @property
    def is_loop_evaluator(self) -> bool:
        """Whether it validates the requests of a loop processor (``validate``)."""
        return self.type in (self.SEQUENTIAL_LOOP_EVALUATOR, self.AUTONOMOUS_LOOP_EVALUATOR)

    @property
    def is_loop_processor(self) -> bool:
        """Whether its ``process`` gets a loop channel to ask an evaluator."""
        return self.type in (self.SEQUENTIAL_LOOP_PROCESSOR, self.AUTONOMOUS_LOOP_PROCESSOR)

    @property
    def isAnalyzer(self) -> bool:
        """Whether it is an analyzer: it declares ``results`` and no outputs."""
        return self.data is not None and "results" in self.data

    @property
    def splittable(self) -> bool:
        """Whether its work may be split between several processes."""
        return bool(self.data.get("splittable", False)) if self.data else False

    @property
    def results(self) -> dict[str, Any]:
        """An analyzer's results, name to ``{"type": ..., "display": ...}`` (``{}``
        for another algorithm)."""
        results = self.data.get("results") if self.data else None
        return results if isinstance(results, dict) else {}

    @property
    def parameters(self) -> dict[str, Any]:
        """The declared parameters, name to ``{"type", "default", "range", "choice",
        "description"}`` (``{}`` when there are none)."""
        parameters = self.data.get("parameters") if self.data else None
        return parameters if isinstance(parameters, dict) else {}

    def clean_parameter(self, parameter: str, value: Any) -> Any:
        """``value`` cast to the type of ``parameter``, checked against its range or choices.

        An integer type takes an integer (not a bool, not a float), a float
        type any number, ``bool`` a bool and ``string`` a string. The value
        comes back as a numpy scalar of the declared type (``numpy.bool_``
        for a bool, ``str`` for a string).

        Raises:
            UnknownParameterError: the algorithm has no such parameter (a
                ``ValueError`` and a ``KeyError``).
            ParameterError: (a ``ValueError``) a value of the wrong type, that
                does not fit the type, outside the range or not among the
                choices. Every message names the algorithm and the parameter.
            RuntimeError: the parameter's declaration is not valid.
        """
        if parameter not in self.parameters:
            known = ", ".join(repr(name) for name in self.parameters) or "none"
            raise UnknownParameterError(f"algorithm {self.name!r}: unknown parameter "
                                        f"{parameter!r} (parameters: {known})",
                                        algorithm=self.name, parameter=parameter)
        spec = self._specs.get(parameter)
        if spec is None:
            raise RuntimeError(f"algorithm {self.name!r}: the declaration of parameter "
                               f"{parameter!r} is not valid")
        try:
            return _admit(spec, value)
        except _Refused as refused:
            raise ParameterError(f"algorithm {self.name!r}: parameter {parameter!r}: "
                                 f"{refused}", algorithm=self.name,
                                 parameter=parameter) from None

    def complete_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: those of ``parameters`` cleaned (see
        :meth:`clean_parameter`), the defaults for the others.

        Raises:
            UnknownParameterError: a parameter given is not declared.
            ParameterError: a value does not fit, or a parameter without a
                default is not given (the message names it).
        """
        cleaned = {name: self.clean_parameter(name, value)
                   for name, value in parameters.items()}
        for name, spec in self.parameters.items():
            if name in cleaned:
                continue
            if not isinstance(spec, dict) or "default" not in spec:
                raise ParameterError(f"algorithm {self.name!r}: parameter {name!r} has no "
                                     "default and is not given", algorithm=self.name,
                                     parameter=name)
            cleaned[name] = self.clean_parameter(name, spec["default"])
        return cleaned

    def result_dataformat(self) -> DataFormat:
        """The dataformat of an analyzer's results: an anonymous format with one field
        per result, in declared order. Made once.

        Raises:
            RuntimeError: the algorithm is not an analyzer.
        """
        if not self.isAnalyzer:
            raise RuntimeError(f"algorithm {self.name!r} is not an analyzer: it has no results")
        if self._result_dataformat is None:
            declaration: dict[str, Any] = {"#description": f"The results of {self.name}"}
            for name, spec in self.results.items():
                declaration[name] = spec.get("type") if isinstance(spec, dict) else spec
            self._result_dataformat = DataFormat(self.prefix, declaration,
                                                 dataformat_cache=self._dataformat_cache)
        return self._result_dataformat

    def _hashed_declaration(self) -> Any:
        return _without_descriptions(self.data)

    def hash(self) -> str:
        """The 64-character hash of the declaration and the code, descriptions left out.

        The top-level ``description`` and each parameter's ``description``
        do not count, nor does the documentation; a dataformat or library
        used counts by its name only. For an algorithm read from files and not
        changed since, it equals :meth:`Storage.hash`.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        return super().hash()

    # -- running -------------------------------------------------------------------------------

    def runner(self, klass: str = "Algorithm",
               exc: builtins.type[Exception] | None = None) -> Runner:
        """Load the code and return a :class:`Runner` of the class ``klass`` in it.

        The class is instantiated (without arguments) but not set up: call
        :meth:`Runner.setup` first.

        Args:
            klass: the name of the class in the code.
            exc: the exception class for failures of user code (see
                :func:`papyflow.blocks.loader.run`); by default
                :class:`~papyflow.blocks.errors.BlockError`.

        Raises:
            RuntimeError: the algorithm is not valid, or not written in Python.
            exc: loading the code or making the object failed, or the code
                has no class ``klass``.
        """
        if not self.valid:
            raise RuntimeError(f"algorithm {self.name!r} is not valid: "
                               + "; ".join(self.errors))
        if self.language != "python":
            raise RuntimeError(f"algorithm {self.name!r} is written in {self.language}: only "
                               "Python code runs")
        assert self.storage is not None
        try:
            module = loader.load_module(module_name(self.name), self.storage.code.path,
                                        used_modules(self))
        except BlockError as error:
            if exc is None or isinstance(error, exc):
                raise
            raise exc(str(error)) from (error.__cause__ or error)
        return Runner(module, klass, self, exc)

    # -- writing -------------------------------------------------------------------------------

    def write(self, storage: Storage | None = None) -> None:  # type: ignore[override]
        """Write the code, the documentation when there is one, then the declaration.

        Goes to :attr:`storage` unless another :class:`Storage` is given. Each
        file is written to a temporary name and renamed.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        super().write(storage)

    def export(self, prefix: PrefixLike) -> None:
        """Write this algorithm, the dataformats and the libraries it uses into another prefix.

        Every dataformat (with those it references) and library (with those
        it uses) goes along, so the target prefix is self-contained. Files go
        under the first folder of ``prefix``; existing files of the same
        names are replaced.

        Raises:
            RuntimeError: the algorithm is not valid, or ``prefix`` is one of
                the folders it was loaded from.
        """
        target = self._export_target(prefix)
        for dataformat in self.dataformats.values():
            dataformat.export(target)
        for library in self.libraries.values():
            library.export(target)
        self.write(Storage(target, self.name, self.language))


class Runner:
    """Runs the code of an algorithm: setup, prepare, process (and a loop evaluator's
    validate, read and write).

    Made by :meth:`Algorithm.runner`.

    Args:
        module: the algorithm's code, loaded by :func:`~papyflow.blocks.loader.load_module`.
        obj_name: the name of the class in ``module``; it is instantiated here.
        algorithm: the :class:`Algorithm` (types, parameters, formats).
        exc: the exception class for failures of user code (default
            :class:`~papyflow.blocks.errors.BlockError`).

    Every call into user code goes through :func:`papyflow.blocks.loader.run`:
    whatever it raises comes out as ``exc``, naming the block, the method and
    the traceback. A sequential ``process()`` that fails also gets the data
    indices of the step in a note (and in ``data_index`` for a BlockError).

    Attributes:
        obj: the instance of the user's class.
        algorithm, exc: as given (``exc`` resolved to its default).
        name: the algorithm's name.
        ready: whether :meth:`setup` succeeded.
        prepared: whether :meth:`prepare` succeeded.
        parameters: the parameters given to the code's ``setup`` (after :meth:`setup`).

    Raises:
        exc: ``module`` has no ``obj_name``, or making the object failed.
    """

    def __init__(self, module: Any, obj_name: str, algorithm: Algorithm,
                 exc: type[Exception] | None = None) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self.exc: type[Exception] = exc if exc is not None else BlockError
        self.ready = False
        self.prepared = False
        self.parameters: dict[str, Any] = {}
        self._setup_called = False
        self._prepare_called = False
        if not hasattr(module, obj_name):
            where = getattr(module, "__file__", None) or getattr(module, "__name__", "?")
            raise self._error(obj_name, f"{where} has no class {obj_name!r}")
        self.obj = loader.run(module, obj_name, self.exc)

    def _error(self, method: str, message: str) -> Exception:
        text = f"algorithm {self.name!r}: {message}"
        if issubclass(self.exc, BlockError):
            return self.exc(text, block=f"algorithm {self.name!r}", method=method)
        return self.exc(text)

    def setup(self, parameters: Mapping[str, Any] | None = None) -> bool:
        """Clean the parameters, fill in the defaults, and call the code's ``setup``.

        Only the first call does anything; later ones return the first
        answer. The code's ``setup`` is optional; it fails by returning
        ``False`` (anything else is success).

        Returns:
            Whether the algorithm is ready (:attr:`ready`).

        Raises:
            ParameterError: a parameter is unknown, of the wrong type, out of
                range, not among the choices, or missing without a default.
            exc: the code's ``setup`` raised.
        """
        if self._setup_called:
            return self.ready
        cleaned = self.algorithm.complete_parameters(parameters or {})
        self._setup_called = True
        self.parameters = cleaned
        answer = loader.run(self.obj, "setup", self.exc, cleaned)
        self.ready = answer is not False
        return self.ready

    def prepare(self, data_loaders: Any) -> bool:
        """Call the code's ``prepare`` with the data loaders (the secondary groups' data).

        Only the first call does anything; :meth:`process` makes it when it was
        not made. Optional in the code; fails by returning ``False``. A legacy
        algorithm has no ``prepare``.

        Returns:
            Whether the algorithm is prepared (:attr:`prepared`).

        Raises:
            exc: :meth:`setup` did not succeed first, or the code's ``prepare`` raised.
        """
        self._check_ready("prepare")
        if self._prepare_called:
            return self.prepared
        self._prepare_called = True
        if self.algorithm.type == Algorithm.LEGACY:
            self.prepared = True
        else:
            self.prepared = loader.run(self.obj, "prepare", self.exc, data_loaders) is not False
        return self.prepared

    def _check_ready(self, method: str) -> None:
        if self.ready:
            return
        why = "setup() returned False" if self._setup_called else "setup() was not called"
        raise self._error(method, f"{method}() before a successful setup(): {why}")

    def process(self, inputs: Any = None, data_loaders: Any = None, outputs: Any = None,
                output: Any = None, loop_channel: Any = None) -> Any:
        """Call the code's ``process`` with the arguments its type takes.

        ===========================  ====================================================
        type                         the code's ``process`` gets
        ===========================  ====================================================
        legacy                       ``inputs, outputs``
        sequential, sequential loop  ``inputs, data_loaders, outputs``
        evaluator
        autonomous, autonomous loop  ``data_loaders, outputs``
        evaluator
        loop processors              the same, then ``loop_channel``
        ===========================  ====================================================

        An analyzer gets ``output`` in place of ``outputs``. A loop channel is
        an object whose ``validate(request)`` returns ``(is_valid, answer)``;
        it is required for a loop processor, refused for the others.

        Returns:
            What the code's ``process`` returns.

        Raises:
            TypeError: an argument the type needs is missing (or a loop
                channel is given to an algorithm that is not a loop processor).
            exc: setup or prepare did not succeed, or the code raised; for a
                sequential or legacy algorithm the note (and ``data_index``)
                gives the data indices of the main group's step.
        """
        algorithm = self.algorithm
        self._check_ready("process")
        if algorithm.isAnalyzer:
            target = self._needed(output, "output")
        else:
            target = self._needed(outputs, "outputs")
        if algorithm.is_loop_processor:
            self._needed(loop_channel, "loop_channel")
        elif loop_channel is not None:
            raise TypeError(f"algorithm {self.name!r} ({algorithm.type}): only loop "
                            "processors take a loop_channel")
        args: tuple[Any, ...]
        if algorithm.type == Algorithm.LEGACY:
            args = (self._needed(inputs, "inputs"), target)
        else:
            self._needed(data_loaders, "data_loaders")
            if not self._prepare_called:
                self.prepare(data_loaders)
            if not self.prepared:
                raise self._error("process", "process() after prepare() returned False")
            if algorithm.is_sequential:
                args = (self._needed(inputs, "inputs"), data_loaders, target)
            else:
                args = (data_loaders, target)
            if algorithm.is_loop_processor:
                args += (loop_channel,)
        try:
            return loader.run(self.obj, "process", self.exc, *args)
        except self.exc as error:
            self._locate(error, inputs)
            raise

    def _needed(self, value: Any, what: str) -> Any:
        if value is None:
            raise TypeError(f"algorithm {self.name!r} ({self.algorithm.type}"
                            f"{', analyzer' if self.algorithm.isAnalyzer else ''}): process() "
                            f"needs {what}")
        return value

    @staticmethod
    def _locate(error: BaseException, inputs: Any) -> None:
        """Note on ``error`` the data indices of the main group's current step."""
        group = getattr(inputs, "main_group", None)
        start = getattr(group, "data_index", -1)
        end = getattr(group, "data_index_end", -1)
        if not isinstance(start, int) or start < 0:
            return
        error.add_note(f"while processing data indices {start}..{end} of group "
                       f"{getattr(group, 'channel', '?')!r}")
        if isinstance(error, BlockError):
            error.data_index = (start, end)

    def _check_evaluator(self, method: str) -> None:
        if not self.algorithm.is_loop_evaluator:
            raise TypeError(f"algorithm {self.name!r} ({self.algorithm.type}): only loop "
                            f"evaluators have {method}()")
        self._check_ready(method)

    def validate(self, result: Any) -> tuple[bool, baseformat]:
        """Ask a loop evaluator's code whether a processor's request holds.

        ``result`` (a record of the loop's request format, a dict of its
        fields or its packed bytes) goes to the code's ``validate``, which
        returns ``(is_valid, answer)``, the answer a record or dict of the
        loop's answer format.

        Returns:
            ``(is_valid, answer record)``.

        Raises:
            TypeError: the algorithm is not a loop evaluator, or ``result``
                is not a request.
            FieldValueError, DecodeError: ``result`` does not make a request record.
            exc: the code raised, or did not return ``(is_valid, answer)``.
        """
        self._check_evaluator("validate")
        formats = self.algorithm.dataformats
        request = _as_record(formats[self.algorithm.loop_map["request"]].type, result)
        answer = loader.run(self.obj, "validate", self.exc, request)
        if not isinstance(answer, tuple | list) or len(answer) != 2:
            raise self._error("validate", "validate() must return (is_valid, answer), "
                                          f"it returned {answer!r}")
        is_valid, data = answer
        answer_format = self.algorithm.loop_map["answer"]
        try:
            record = _as_record(formats[answer_format].type, data)
        except (TypeError, ValueError) as error:
            raise self._error("validate", f"validate() returned an answer that is not a "
                                          f"{answer_format} record: {error}") from error
        return bool(is_valid), record

    def write(self, outputs: Any, processor_output_name: str, end_data_index: int | None) -> Any:
        """Let a loop evaluator's code write its outputs, in step with the processor
        that wrote ``processor_output_name`` up to ``end_data_index``.

        Calls the code's ``write(outputs, processor_output_name, end_data_index)``
        (optional).

        Raises:
            TypeError: the algorithm is not a loop evaluator.
            exc: setup did not succeed, or the code raised.
        """
        self._check_evaluator("write")
        return loader.run(self.obj, "write", self.exc, outputs, processor_output_name,
                          end_data_index)

    def read(self, inputs: Any) -> Any:
        """Let a loop evaluator's code read its inputs after they moved on (in step
        with a sequential processor).

        Calls the code's ``read(inputs)`` (optional).

        Raises:
            TypeError: the algorithm is not a loop evaluator.
            exc: setup did not succeed, or the code raised.
        """
        self._check_evaluator("read")
        return loader.run(self.obj, "read", self.exc, inputs)

    def __repr__(self) -> str:
        state = "ready" if self.ready else "not set up"
        return f"<Runner of algorithm {self.name!r} ({self.algorithm.type}), {state}>"
