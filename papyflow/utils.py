"""Paths, files and declaration storage for papyflow's on-disk assets.

Assets (dataformats, libraries, algorithms, databases) live under a *prefix*:
one or more folders searched in order (:class:`Prefix`). An asset is a JSON
declaration, an optional reStructuredText documentation file beside it and,
for assets that run, a code file::

    <prefix>/<asset folder>/<user>/<name>/<version>.json   the declaration
    <prefix>/<asset folder>/<user>/<name>/<version>.rst    its documentation
    <prefix>/<asset folder>/<user>/<name>/<version>.py     its code

:class:`Storage` and :class:`CodeStorage` resolve and read those files;
:class:`File` is one of them. Every write goes to a temporary file in the
target folder that is then renamed over the target, so a reader sees either
the old file or the new one, never half of one. A storage writes its
declaration last: once the ``.json`` exists, the files it needs exist too.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, cast

import numpy as np

__all__ = [
    "AbstractStorage",
    "CodeStorage",
    "File",
    "NumpyJSONEncoder",
    "Prefix",
    "Storage",
    "error_on_duplicate_key_hook",
    "extension_for_language",
    "has_argument",
    "hashed_or_simple",
    "safe_rmdir",
    "safe_rmfile",
]

PathLike = str | os.PathLike[str]

# The programming languages an asset's code may be written in, and the
# extension of its code file. C++ code is a compiled shared library.
_EXTENSIONS: dict[str, str] = {
    "python": ".py",
    "cxx": ".so",
    "matlab": ".m",
    "r": ".r",
}
_BINARY_LANGUAGES = frozenset({"cxx"})


def extension_for_language(language: str) -> str:
    """Return the extension of a code file in ``language``, with its leading dot.

    Known languages: ``python`` (``.py``), ``cxx`` (``.so``, a compiled
    library), ``matlab`` (``.m``) and ``r`` (``.r``).

    Raises:
        KeyError: ``language`` is not one of them.
    """
    try:
        return _EXTENSIONS[language]
    except KeyError:
        known = ", ".join(sorted(_EXTENSIONS))
        raise KeyError(f"unknown programming language {language!r} (known: {known})") from None


class Prefix:
    """An ordered list of folders in which assets are looked up.

    ``Prefix(paths)`` takes one folder, a sequence of folders or another
    ``Prefix`` (whose folders are copied). :meth:`path` looks a relative file
    name up in each folder in order and returns the first that exists; when
    none does, it returns the name under the *first* folder, which is where a
    new asset is written. Later folders are therefore read-only fallbacks in
    practice, e.g. the package's system dataformats.
    """

    def __init__(self, paths: PathLike | Iterable[PathLike] | Prefix | None = None) -> None:
        self._paths: list[str] = []
        if paths is None:
            return
        if isinstance(paths, Prefix):
            self._paths = list(paths.paths)
        elif isinstance(paths, str | os.PathLike):
            self.add(paths)
        else:
            for path in paths:
                self.add(path)

    @property
    def paths(self) -> tuple[str, ...]:
        """The folders, in search order."""
        return tuple(self._paths)

    def export_folder(self, prefix: PathLike | Iterable[PathLike] | Prefix,
                      what: str) -> str:
        """The folder an asset loaded from this prefix is exported into: the first of
        ``prefix`` (``what`` names the asset in messages).

        Raises:
            ValueError: ``prefix`` has no folder.
            RuntimeError: that folder is one of this prefix's own.
        """
        folders = Prefix(prefix).paths
        if not folders:
            raise ValueError("the prefix to export to has no folder")
        target = folders[0]
        if any(os.path.realpath(target) == os.path.realpath(own) for own in self._paths):
            raise RuntimeError(f"cannot export {what} into its own prefix {target}")
        return target

    def add(self, path: PathLike) -> None:
        """Append a folder, searched after those already there (a repeat is ignored)."""
        path = os.fspath(path)
        if not isinstance(path, str):
            raise TypeError(f"a prefix folder must be a str or path, not {type(path).__name__}")
        if path not in self._paths:
            self._paths.append(path)

    def path(self, filename: PathLike) -> str:
        """Return ``filename`` (relative to a folder) under the first folder holding it.

        When no folder holds it, the candidate under the first folder is
        returned: the place to create it.

        Raises:
            ValueError: the prefix has no folder.
        """
        if not self._paths:
            raise ValueError("the prefix has no folder to look in")
        candidates = [os.path.join(root, filename) for root in self._paths]
        for candidate in candidates:
            if os.path.exists(candidate):
                return candidate
        return candidates[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prefix):
            return NotImplemented
        return self._paths == other._paths

    __hash__ = None  # type: ignore[assignment]  # mutable: add() changes equality

    def __repr__(self) -> str:
        return f"Prefix({self._paths!r})"


def hashed_or_simple(prefix: PathLike | Prefix, what: str, path: str,
                     suffix: str = ".json") -> str:
    """Return where the asset ``path`` (``user/rest``) of kind ``what`` is stored.

    An asset may be stored in the simple layout,
    ``<prefix>/<what>/<user>/<rest><suffix>``, or in the hashed layout that
    spreads users over folders, ``<prefix>/<what>/<toUserPath(user)>/<rest><suffix>``
    (see :func:`papyflow.hash.toUserPath`). For each folder of the prefix in
    turn, the hashed file is returned if it exists, then the simple one. When
    none exists, the simple path under the first folder is returned.
    """
    from . import hash as _hash  # papyflow.hash imports this module at its top

    user, _, rest = path.partition("/")
    simple = os.path.join(what, path + suffix)
    hashed = os.path.join(what, _hash.toUserPath(user), rest + suffix) if rest else simple
    roots = prefix.paths if isinstance(prefix, Prefix) else (os.fspath(prefix),)
    if not roots:
        raise ValueError("the prefix has no folder to look in")
    for root in roots:
        for candidate in (hashed, simple):
            full = os.path.join(root, candidate)
            if os.path.exists(full):
                return full
    return os.path.join(roots[0], simple)


def safe_rmfile(f: PathLike) -> None:
    """Remove the file ``f``; a file that is not there is not an error."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(f)


def safe_rmdir(f: PathLike, stop_at: PathLike | None = None) -> None:
    """Remove the folder holding the file ``f`` if it is empty, then its empty parents.

    Climbing stops at the first folder that is not empty or cannot be removed,
    and before ``stop_at`` when given (``stop_at`` itself is kept). Nothing
    raises: a folder still in use is simply left.
    """
    folder = os.path.dirname(os.path.abspath(f))
    stop = os.path.abspath(stop_at) if stop_at is not None else None
    while folder and folder != stop:
        try:
            os.rmdir(folder)
        except OSError:  # not empty, not there, or not ours to remove
            return
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _atomic_write(path: str, contents: bytes) -> None:
    """Write ``contents`` to ``path`` through a temporary file renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with mode 0o666 lets the umask decide the permissions, as open() would.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(contents)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        safe_rmfile(temporary)
        raise


class File:
    """One file of an asset, read as text (UTF-8) or, with ``binary=True``, as bytes."""

    def __init__(self, path: PathLike, binary: bool = False) -> None:
        self.path = os.fspath(path)
        self.binary = binary

    def exists(self) -> bool:
        """Whether the file exists."""
        return os.path.isfile(self.path)

    def load(self) -> str | bytes:
        """Return the contents: ``bytes`` for a binary file, ``str`` otherwise.

        Raises:
            FileNotFoundError: the file does not exist.
        """
        if self.binary:
            with open(self.path, "rb") as stream:
                return stream.read()
        with open(self.path, encoding="utf-8") as stream:
            return stream.read()

    def try_load(self) -> str | bytes | None:
        """Like :meth:`load`, but return ``None`` when the file does not exist."""
        try:
            return self.load()
        except FileNotFoundError:
            return None

    def backup(self) -> str | None:
        """Copy the file to ``<path>~`` (replacing an older backup); return the copy's path.

        Returns ``None`` when there is no file to back up.
        """
        if not self.exists():
            return None
        backup = self.path + "~"
        shutil.copy2(self.path, backup)
        return backup

    def save(self, contents: str | bytes) -> None:
        """Write ``contents`` (``str`` is encoded as UTF-8), creating missing folders.

        The write is atomic: the contents go to a temporary file that is then
        renamed over the file.
        """
        if isinstance(contents, str):
            data = contents.encode("utf-8")
        elif isinstance(contents, bytes | bytearray | memoryview):
            data = bytes(contents)
        else:
            raise TypeError(f"file contents must be str or bytes, not {type(contents).__name__}")
        _atomic_write(self.path, data)

    def remove(self) -> None:
        """Remove the file; a missing file is not an error."""
        safe_rmfile(self.path)

    def __repr__(self) -> str:
        return f"File({self.path!r}, binary={self.binary})"


def _declaration_text(declaration: str | bytes | dict[str, Any]) -> str | bytes:
    """A declaration as written: a dict becomes JSON indented by 4 spaces."""
    if isinstance(declaration, dict):
        return json.dumps(declaration, indent=4, cls=NumpyJSONEncoder) + "\n"
    return declaration


class AbstractStorage(abc.ABC):
    """The files of one asset: ``<path>.json`` (declaration) and ``<path>.rst`` (documentation).

    ``path`` is the common part of their paths, without extension. Subclasses
    name the kind of asset in ``asset_type`` (e.g. ``'dataformat'``) and the
    folder such assets live in under a prefix in ``asset_folder``.

    ``root``, when set, is the folder above which :meth:`remove` never climbs
    while it removes the folders an asset leaves empty (a subclass that knows
    its prefix sets it to ``<prefix>/<asset_folder>``).
    """

    asset_type: ClassVar[str | None] = None
    asset_folder: ClassVar[str | None] = None

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self.json = File(self.path + ".json")
        self.doc = File(self.path + ".rst")
        self.root: str | None = None

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the asset's files exist."""

    @abc.abstractmethod
    def remove(self) -> None:
        """Remove the asset's files, then the folders they leave empty."""

    @abc.abstractmethod
    def hash(self) -> str:
        """The 64-character hash of the declaration (see :mod:`papyflow.hash`)."""

    @abc.abstractmethod
    def load(self) -> tuple[Any, ...]:
        """Return the contents of the asset's files."""

    @abc.abstractmethod
    def save(self, *args: Any, **kwargs: Any) -> None:
        """Write the asset's files."""

    def _remove_folders(self) -> None:
        safe_rmdir(self.json.path, stop_at=self.root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class Storage(AbstractStorage):
    """An asset made of a JSON declaration and an optional documentation file."""

    def exists(self) -> bool:
        """Whether the declaration exists (the documentation is optional)."""
        return self.json.exists()

    def load(self) -> tuple[str, str | None]:
        """Return ``(declaration text, documentation text or None)``.

        Raises:
            FileNotFoundError: there is no declaration.
        """
        # Both files are text files: load() gives str.
        declaration = cast(str, self.json.load())
        documentation = cast("str | None", self.doc.try_load())
        return declaration, documentation

    def save(self, declaration: str | bytes | dict[str, Any],
             description: str | bytes | None = None) -> None:
        """Write the declaration (text, or a dict written as JSON) and, if given, the
        documentation. The documentation is written first."""
        if description is not None:
            self.doc.save(description)
        self.json.save(_declaration_text(declaration))

    def remove(self) -> None:
        """Remove the declaration and the documentation, then the folders left empty."""
        self.doc.remove()
        self.json.remove()
        self._remove_folders()

    def hash(self, description: str = "description") -> str:
        """The hash of the declaration without its top-level ``description`` key.

        See :func:`papyflow.hash.hashJSONFile`; the documentation file does not
        count.
        """
        from . import hash as _hash  # papyflow.hash imports this module at its top

        return _hash.hashJSONFile(self.json.path, description)


class CodeStorage(AbstractStorage):
    """An asset made of a declaration, code in some language and optional documentation.

    ``language`` fixes the language of the code (see
    :func:`extension_for_language`). When it is not given, it is read from the
    ``"language"`` key of the declaration on disk, and is ``'python'`` when
    the declaration does not exist yet or does not say.
    """

    def __init__(self, path: PathLike, language: str | None = None) -> None:
        super().__init__(path)
        if language is not None:
            extension_for_language(language)  # fail early on an unknown language
        self._language = language

    @property
    def language(self) -> str:
        """The programming language of the code."""
        if self._language is not None:
            return self._language
        text = self.json.try_load()
        if text is not None:
            try:
                declared = json.loads(text)
            except ValueError:
                declared = None
            if isinstance(declared, dict) and isinstance(declared.get("language"), str) \
                    and declared["language"] in _EXTENSIONS:
                return declared["language"]
        return "python"

    @language.setter
    def language(self, value: str) -> None:
        extension_for_language(value)
        self._language = value

    @property
    def code(self) -> File:
        """The code file, ``<path>`` plus the extension of :attr:`language`."""
        language = self.language
        return File(self.path + extension_for_language(language),
                    binary=language in _BINARY_LANGUAGES)

    def exists(self) -> bool:
        """Whether both the declaration and the code exist."""
        return self.json.exists() and self.code.exists()

    def load(self) -> tuple[str, str | bytes, str | None]:
        """Return ``(declaration, code, documentation or None)``.

        The code is ``bytes`` for a compiled language, text otherwise.

        Raises:
            FileNotFoundError: the declaration or the code is missing.
        """
        declaration = cast(str, self.json.load())
        code = self.code.load()
        documentation = cast("str | None", self.doc.try_load())
        return declaration, code, documentation

    def save(self, declaration: str | bytes | dict[str, Any],
             code: str | bytes | None = None, description: str | bytes | None = None) -> None:
        """Write the code and documentation (those given), then the declaration.

        When the language was not fixed and ``declaration`` is a dict with a
        ``"language"``, the code file takes that language's extension.
        """
        if self._language is None and isinstance(declaration, dict) \
                and declaration.get("language") in _EXTENSIONS:
            self._language = declaration["language"]
        if code is not None:
            self.code.save(code)
        if description is not None:
            self.doc.save(description)
        self.json.save(_declaration_text(declaration))

    def remove(self) -> None:
        """Remove the code, documentation and declaration, then the folders left empty."""
        self.code.remove()
        self.doc.remove()
        self.json.remove()
        self._remove_folders()

    def hash(self) -> str:
        """The hash of the declaration (without ``description``) and of the code.

        It is ``hash({"code": hashFileContents(code), "declaration":
        hashJSONFile(json, "description")})`` in terms of :mod:`papyflow.hash`:
        editing the description or the documentation keeps it; any change to
        the code changes it.
        """
        from . import hash as _hash  # papyflow.hash imports this module at its top

        return _hash.hash({
            "code": _hash.hashFileContents(self.code.path),
            "declaration": _hash.hashJSONFile(self.json.path, "description"),
        })


class NumpyJSONEncoder(json.JSONEncoder):
    """A JSON encoder that also writes numpy values.

    An array becomes a (nested) list, a numpy scalar the matching Python
    number or ``bool``. JSON has no complex numbers: a complex value (numpy or
    Python) becomes the list ``[real, imaginary]``.

    >>> json.dumps({"a": np.arange(3, dtype="int8"), "b": np.float32(0.5)}, cls=NumpyJSONEncoder)
    '{"a": [0, 1, 2], "b": 0.5}'
    """

    def default(self, o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, complex | np.complexfloating):
            return [float(o.real), float(o.imag)]
        if isinstance(o, np.generic):
            return o.item()
        return super().default(o)


def error_on_duplicate_key_hook(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json`` ``object_pairs_hook`` that refuses an object with a repeated key.

    Returns the object as a dict (in the order of the text).

    Raises:
        ValueError: naming the first key that appears twice.

    >>> json.loads('{"a": 1, "a": 2}', object_pairs_hook=error_on_duplicate_key_hook)
    Traceback (most recent call last):
    ...
    ValueError: duplicate key 'a' in a JSON object
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result


def has_argument(method: Callable[..., Any], argument: str) -> bool:
    """Whether ``method`` has a parameter named ``argument``.

    A parameter collected by ``*args`` or ``**kwargs`` does not count, and a
    callable whose signature cannot be read has none.
    """
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(argument)
    return parameter is not None and parameter.kind not in (
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
