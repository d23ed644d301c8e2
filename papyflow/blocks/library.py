"""Libraries: code shared by algorithms (and by other libraries).

A library is stored under a prefix as
``<prefix>/libraries/<user>/<name>/<version>.json`` (the declaration),
``.py`` beside it (the code) and an optional ``.rst`` (its documentation)::

    {
        "language": "python",
        "description": "Helpers",
        "uses": {"base": "user/otherlib/1"}
    }

The code is an ordinary Python file. Each entry of ``uses`` is visible in it
under its alias, as a module: ``base.some_function(...)``. Libraries may use
libraries, to any depth, but not in a cycle.

Loading (:class:`Library`) checks the declaration, reads the code and makes
sure it compiles, and loads every library used; it never raises for a bad
library: :attr:`Library.valid` becomes ``False`` and :attr:`Library.errors`
says what is wrong, each message naming the file and the field
(``".../user/a/1.json: field 'uses.base': library 'user/b/1' not found"``).
:meth:`Library.load` runs the code and returns the module.
"""

from __future__ import annotations

import types

from . import loader
from ._asset import Asset, AssetStorage, PrefixLike, module_name, used_modules

__all__ = ["Library", "Storage"]


class Storage(AssetStorage):
    """The files of the library ``name`` (``user/name/version``) under ``prefix``.

    ``prefix`` is a folder, a list of folders or a :class:`~papyflow.utils.Prefix`;
    the declaration is looked up as :func:`~papyflow.utils.hashed_or_simple`
    does, and a library found nowhere is placed under the first folder. The
    code file's extension follows ``language`` (by default the declaration's,
    ``python`` when it does not say).

    Attributes ``fullname`` (``user/name/version``), ``username``, ``name``,
    ``version`` and ``prefix``; ``json``, ``code`` and ``doc`` are the files.

    Raises:
        ValueError: ``name`` is not ``user/name/version``.
    """

    asset_type = "library"
    asset_folder = "libraries"


class Library(Asset):
    """A library, loaded and checked.

    Args:
        prefix: where libraries are looked up: a folder, a list of folders or
            a :class:`~papyflow.utils.Prefix`.
        name: the library's name, ``user/name/version``.
        library_cache: a dict of libraries already loaded, by name. A library
            used and found there is taken as it is; every library loaded is
            put in it (this one too). Refresh it yourself when files change.

    A bad declaration never raises: :attr:`valid` becomes ``False`` and
    :attr:`errors` says what is wrong and where.

    Attributes:
        prefix: the :class:`~papyflow.utils.Prefix` searched.
        storage: the :class:`Storage` of its files (``None`` for an invalid name).
        libraries: the libraries it uses directly, by name (each loaded, valid
            or not).
        errors: the problems found, one message each.
        data: the declaration as read (a dict), or ``None`` when it could not be.
        code: the code as read (``str``; ``bytes`` for compiled code), or ``None``.
    """

    kind = "library"
    storage_type = Storage
    known_keys = ("description", "language", "schema_version", "uses")

    storage: Storage | None

    def __init__(self, prefix: PrefixLike, name: str,
                 library_cache: dict[str, Library] | None = None) -> None:
        self._setup(prefix, name, library_cache if library_cache is not None else {}, ())

    @classmethod
    def _create(cls, prefix: PrefixLike, name: str, library_cache: dict[str, Library],
                stack: tuple[str, ...]) -> Library:
        """A Library loaded while ``stack`` (names, outermost first) is loading."""
        new = cls.__new__(cls)
        new._setup(prefix, name, library_cache, stack)
        return new

    def _setup(self, prefix: PrefixLike, name: str, cache: dict[str, Library],
               stack: tuple[str, ...]) -> None:
        self._cache = cache
        try:
            declaration = self._read(prefix, name)
            if declaration is not None:
                self._check_common(declaration)
                self._load_uses(declaration, cache, stack + (name,))
        finally:
            if self.storage is not None:
                cache[name] = self

    def load(self) -> types.ModuleType:
        """Run the code in a new module and return it.

        Each library used is loaded first (recursively) and bound in the
        module under its alias. Every call makes a new module.

        Raises:
            RuntimeError: the library is not valid, or not written in Python.
            BlockError: the code raises while it runs (see
                :func:`~papyflow.blocks.loader.load_module`).
        """
        if not self.valid:
            raise RuntimeError(f"library {self.name!r} is not valid: " + "; ".join(self.errors))
        if self.language != "python":
            raise RuntimeError(f"library {self.name!r} is written in {self.language}: only "
                               "Python code can be loaded")
        assert self.storage is not None
        return loader.load_module(module_name(self.name), self.storage.code.path,
                                  used_modules(self))

    def write(self, storage: Storage | None = None) -> None:  # type: ignore[override]
        """Write the code, the documentation when there is one, then the declaration.

        Goes to :attr:`storage` unless another :class:`Storage` is given. Each
        file is written to a temporary name and renamed.

        Raises:
            RuntimeError: the declaration or the code could not be read.
        """
        super().write(storage)

    def export(self, prefix: PrefixLike) -> None:
        """Write this library and every library it uses (at any depth) into another prefix.

        Files go under the first folder of ``prefix``; existing files of the
        same names are replaced.

        Raises:
            RuntimeError: the library is not valid, or ``prefix`` is one of the
                folders it was loaded from.
        """
        target = self._export_target(prefix)
        for library in self.libraries.values():
            library.export(target)
        self.write(Storage(target, self.name, self.language))
