"""What libraries and algorithms share: their storage, reading and checking a
declaration with its code, the libraries they use, writing and exporting.

Every problem found while loading is a message in ``errors`` naming the file
and, when there is one, the field path (``"<file>: field 'uses.base':
library 'user/base/1' not found"``); loading never raises for a bad asset.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from .. import hash as _hash
from .._declarations import Described, load_declaration
from ..utils import CodeStorage, NumpyJSONEncoder, Prefix, hashed_or_simple

if TYPE_CHECKING:
    from .library import Library

PrefixLike: TypeAlias = "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Prefix"

LANGUAGES = ("cxx", "matlab", "python", "r")
"""The languages a declaration may name (see :func:`papyflow.utils.extension_for_language`)."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*/[A-Za-z0-9_][A-Za-z0-9_-]*/[0-9]+")
_ENDPOINT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def is_name(name: object) -> bool:
    """Whether ``name`` is an asset name ``user/name/version``."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def is_endpoint_name(name: object) -> bool:
    """Whether ``name`` may name a group, an input, an output or a parameter."""
    return isinstance(name, str) and _ENDPOINT.fullmatch(name) is not None


def show(value: Any) -> str:
    """``value`` as JSON when it is JSON (``"a"``, ``3``, ``null``), else its repr.

    An int too long for ``str()`` (beyond the interpreter's digit limit) is
    shown as ``<int of N bits>`` (``<negative int of N bits>``).
    """
    try:
        return json.dumps(value, cls=NumpyJSONEncoder)
    except (TypeError, ValueError):
        pass
    try:
        return repr(value)
    except ValueError:  # int-to-str refuses ints beyond sys.get_int_max_str_digits()
        if isinstance(value, int):
            sign = "negative " if value < 0 else ""
            return f"<{sign}int of {value.bit_length()} bits>"
        return f"<a {type(value).__name__} holding an int too long to show>"


def module_name(name: str) -> str:
    """The Python module name for the code of the asset ``user/name/version``."""
    return re.sub(r"\W", "_", name)


class AssetStorage(CodeStorage):
    """The files of the asset ``name`` (``user/name/version``) under ``prefix``.

    The declaration is looked up as :func:`~papyflow.utils.hashed_or_simple`
    does (every folder of the prefix, hashed layout first); an asset found
    nowhere is placed under the first folder. ``language`` fixes the code's
    language; by default it is read from the declaration (``python`` when it
    does not say).

    Attributes ``fullname`` (``user/name/version``), ``username``, ``name``,
    ``version`` and ``prefix`` (a :class:`~papyflow.utils.Prefix`).

    Raises:
        ValueError: ``name`` is not ``user/name/version``.
    """

    def __init__(self, prefix: PrefixLike, name: str, language: str | None = None) -> None:
        if not is_name(name):
            raise ValueError(f"invalid {self.asset_type} name {name!r}: expected "
                             "'user/name/version'")
        assert self.asset_folder is not None
        self.prefix = Prefix(prefix)
        self.fullname = name
        self.username, self.name, self.version = name.split("/")
        declaration = hashed_or_simple(self.prefix, self.asset_folder, name, suffix=".json")
        super().__init__(declaration[: -len(".json")], language)
        for folder in self.prefix.paths:
            root = os.path.join(folder, self.asset_folder)
            if declaration.startswith(root + os.sep):
                self.root = root  # remove() keeps <prefix>/<asset folder>
                break


class Asset(Described):
    """Base of :class:`~papyflow.blocks.library.Library` and
    :class:`~papyflow.blocks.algorithm.Algorithm`: a declaration, code,
    documentation, the libraries used."""

    kind: ClassVar[str] = "asset"
    storage_type: ClassVar[type[AssetStorage]] = AssetStorage
    known_keys: ClassVar[tuple[str, ...]] = ()

    storage: AssetStorage | None
    errors: list[str]
    data: dict[str, Any] | None
    code: str | bytes | None
    libraries: dict[str, Library]

    def _read(self, prefix: PrefixLike, name: str) -> dict[str, Any] | None:
        """Set up the common state and read the declaration and code of ``name``.

        Returns the declaration (also in :attr:`data`), or ``None`` after
        noting why there is none.
        """
        self.prefix = Prefix(prefix)
        self.storage = None
        self.errors = []
        self.data = None
        self.code = None
        self.libraries = {}
        self._name = name
        self._found = True
        self._documentation: str | None = None
        self._documentation_loaded = False
        if not is_name(name):
            self._found = False
            self.errors.append(f"{self.kind} {name!r}: invalid name "
                               "(expected 'user/name/version')")
            return None
        self.storage = self.storage_type(self.prefix, name)
        if not self.storage.json.exists():
            self._found = False
            self._error(None, f"{self.kind} {name!r} not found "
                              f"(searched: {', '.join(self.prefix.paths)})")
            return None
        declaration = self._read_declaration()
        if declaration is None:
            return None
        self.data = declaration
        self._read_code()
        return declaration

    def _read_declaration(self) -> dict[str, Any] | None:
        assert self.storage is not None
        path = self.storage.json.path

        def read() -> str:
            with open(path, "rb") as stream:
                return stream.read().decode("utf-8")
        return load_declaration(read, self._error)

    def _read_code(self) -> None:
        """Read the code file (as text, or bytes for a compiled language); check that
        Python code compiles."""
        assert self.storage is not None and self.data is not None
        language = self.data.get("language", "python")
        if language not in LANGUAGES:
            return  # reported by _check_common
        self.storage.language = language
        code_file = self.storage.code
        try:
            with open(code_file.path, "rb") as stream:
                raw = stream.read()
        except FileNotFoundError:
            self._error(None, f"the code file is missing: {code_file.path}")
            return
        except OSError as error:
            self._error(None, f"cannot read the code file {code_file.path}: "
                              f"{error.strerror or error}")
            return
        if code_file.binary:
            self.code = raw
            return
        try:
            # Decoded as it is (no newline translation): the hash is that of the file.
            self.code = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.errors.append(f"{code_file.path}: not UTF-8 text")
            return
        if language == "python":
            try:
                compile(raw, code_file.path, "exec", dont_inherit=True)
            except SyntaxError as error:
                where = f"line {error.lineno}: " if error.lineno else ""
                self.errors.append(f"{code_file.path}: {where}{type(error).__name__}: "
                                   f"{error.msg}")
            except ValueError as error:  # null bytes
                self.errors.append(f"{code_file.path}: {error}")

    def _check_common(self, declaration: dict[str, Any]) -> None:
        """Check the keys every code asset has: unknown keys, ``language``,
        ``description`` and ``schema_version``."""
        for key in declaration:
            if key not in self.known_keys:
                self._error(key, "unknown key (known: " + ", ".join(self.known_keys) + ")")
        language = declaration.get("language", "python")
        if language not in LANGUAGES:
            self._error("language", f"unknown language {show(language)} (known: "
                                    + ", ".join(LANGUAGES) + ")")
        description = declaration.get("description")
        if description is not None and not isinstance(description, str):
            self._error("description", "must be a string")
        version = declaration.get("schema_version")
        if version is not None and (type(version) is not int or version < 1):
            self._error("schema_version", f"must be an integer >= 1, not {show(version)}")

    def _load_uses(self, declaration: dict[str, Any], library_cache: dict[str, Library],
                   stack: tuple[str, ...]) -> None:
        """Load the libraries named by ``uses`` into :attr:`libraries` (by name).

        ``stack`` holds the names of the libraries loading (outermost first),
        to tell a cycle.
        """
        from .library import Library  # library.py imports this module

        uses = declaration.get("uses")
        if uses is None:
            return
        if not isinstance(uses, dict):
            self._error("uses", "must be an object mapping aliases to library names, "
                                f"not {show(uses)}")
            return
        for alias, name in uses.items():
            path = f"uses.{alias}"
            if not alias.isidentifier() or alias.startswith("__"):
                self._error(path, "invalid alias: the code reaches a library by its alias, "
                                  "which must be a Python name not starting with '__'")
                continue
            if not is_name(name):
                self._error(path, f"{show(name)} is not a library name 'user/name/version'")
                continue
            if name in stack:
                cycle = " -> ".join(stack[stack.index(name):] + (name,))
                self._error(path, f"cycle through library uses: {cycle}")
                continue
            library = library_cache.get(name)
            if library is None:
                library = Library._create(self.prefix, name, library_cache, stack)
            if not library._found:
                self._error(path, f"library {name!r} not found "
                                  f"(searched: {', '.join(self.prefix.paths)})")
                continue
            self.libraries[name] = library
            for error in library.errors:
                self._error(path, f"library {name!r} is invalid: {error}")

    # -- errors ----------------------------------------------------------------------------------

    def _origin(self) -> str:
        return self.storage.json.path if self.storage is not None else self._name

    def _error(self, path: str | None, message: str) -> None:
        where = self._origin()
        self.errors.append(f"{where}: field {path!r}: {message}" if path else
                           f"{where}: {message}")

    # -- what it is ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name ``user/name/version``."""
        return self._name

    @property
    def schema_version(self) -> int:
        """The ``schema_version`` of the declaration; 1 when it does not say."""
        version = self.data.get("schema_version", 1) if self.data else 1
        return version if type(version) is int else 1

    @property
    def language(self) -> str:
        """The language of the code (``python`` when the declaration does not say)."""
        language = self.data.get("language", "python") if self.data else "python"
        return language if isinstance(language, str) else "python"

    @property
    def valid(self) -> bool:
        """Whether the declaration, the code and everything used are correct."""
        return not self.errors

    @property
    def uses(self) -> dict[str, str]:
        """Alias to library name, as declared (``{}`` when nothing is used)."""
        uses = self.data.get("uses") if self.data else None
        return dict(uses) if isinstance(uses, dict) else {}

    def uses_dict(self) -> dict[str, dict[str, Any]]:
        """Alias to ``{"name": ..., "path": code file, "uses": its own uses_dict()}``
        for every library used, as :func:`~papyflow.blocks.loader.load_module` takes it."""
        result = {}
        for alias, name in self.uses.items():
            library = self.libraries.get(name) if isinstance(name, str) else None
            if library is not None and library.storage is not None:
                result[alias] = {"name": name, "path": library.storage.code.path,
                                 "uses": library.uses_dict()}
        return result

    def _hashed_declaration(self) -> Any:
        """The declaration as hashed: without its descriptions."""
        assert self.data is not None
        return {key: value for key, value in self.data.items() if key != "description"}

    def hash(self) -> str:
        """The 64-character hash of the declaration (descriptions left out) and the code.

        It is ``hash({"code": hash(code), "declaration": hashJSON(declaration,
        None)})`` in terms of :mod:`papyflow.hash`, with the declaration
        less its descriptions: for an asset read from files and not changed
        since, it equals :meth:`Storage.hash`. The documentation does not
        count; a library used counts by its name only.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        if self.data is None or self.code is None:
            reason = self.errors[0] if self.errors else "no code"
            raise RuntimeError(f"cannot hash {self.kind} {self.name!r}: it did not load "
                               f"({reason})")
        return _hash.hash({"code": _hash.hash(self.code),
                           "declaration": _hash.hashJSON(self._hashed_declaration(), None)})

    # -- writing ---------------------------------------------------------------------------------

    def json_dumps(self, indent: int = 4) -> str:
        """The declaration as JSON text, keys in their declared order.

        Raises:
            RuntimeError: the declaration could not be read.
        """
        if self.data is None:
            raise RuntimeError(f"{self.kind} {self.name!r} has no declaration to dump")
        return json.dumps(self.data, indent=indent, cls=NumpyJSONEncoder)

    def write(self, storage: AssetStorage | None = None) -> None:
        """Write the code, the documentation when there is one, then the declaration.

        Goes to :attr:`storage` unless another storage is given. Each file is
        written to a temporary name and renamed.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        if self.data is None or self.code is None:
            raise RuntimeError(f"{self.kind} {self.name!r} has no declaration and code "
                               "to write")
        target = storage if storage is not None else self.storage
        assert target is not None  # there is a declaration, so there is a storage
        if self.language in LANGUAGES:
            target.language = self.language  # where the code file goes
        target.save(self.json_dumps() + "\n", self.code, self.documentation)

    def _export_target(self, prefix: PrefixLike) -> str:
        """The folder to export into; refuses what cannot be exported."""
        if not self.valid:
            raise RuntimeError(f"{self.kind} {self.name!r} is not valid: "
                               + "; ".join(self.errors))
        return self.prefix.export_folder(prefix, f"{self.kind} {self.name!r}")

    def __repr__(self) -> str:
        state = "valid" if self.valid else f"{len(self.errors)} errors"
        return f"<{type(self).__name__} {self.name!r}, {state}>"


def used_modules(asset: Asset) -> Mapping[str, Library]:
    """Alias to the :class:`~papyflow.blocks.library.Library` loaded for it."""
    return {alias: asset.libraries[name] for alias, name in asset.uses.items()
            if name in asset.libraries}
