"""RunConfig: how to run an experiment, kept in a YAML file.

Everything ``papyflow experiment run`` takes besides the declaration: the
prefix, the cache, the worker count, the index folder, whether to show
progress, and the parameters set over the declared ones::

    prefix: ../prefix
    cache: ../cache
    workers: 2
    parameters:
      preprocess_test:
        layers: 3

``papyflow experiment run FILE.json --config RUN.yaml`` reads one (options on
the command line win over it), ``--save-config RUN.yaml`` writes the one a run
used. Relative paths in the file are relative to the file's folder, so a
folder holding the file and what it names may move as a whole; through a
symbolic link (to the file, or in the path of its folder), the folder is the
one the file is really in, where :meth:`YamlConfig.to_yaml
<papyflow.structures.YamlConfig.to_yaml>` writes it.

The file is read with :class:`~papyflow.structures.YamlConfig`: each value
must be of its field's kind, and a field the class does not have is an error
naming the file. Parameter values are typed by YAML (``3``, ``0.5``,
``true``, ``null``, text; quote text that YAML would read as something else,
``'3'``, and mind that YAML reads ``yes`` and ``no`` as booleans); they are
checked against the algorithms' declarations when the experiment loads.
The parameters are a :class:`~papyflow.structures.NestedDictionary` of
``block -> parameter -> value`` while they are merged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from ..structures import NestedDictionary, YamlConfig

__all__ = ["RunConfig", "RunConfigError"]

_PATHS = ("prefix", "cache", "index_folder")


class RunConfigError(ValueError):
    """A run configuration that cannot be used; the message names the field (and the file)."""


@dataclasses.dataclass
class RunConfig(YamlConfig):
    """How to run an experiment (see the module).

    Args:
        prefix: the prefix holding the databases, algorithms and dataformats.
        cache: where block outputs are cached (``None``: nothing is).
        workers: how many worker processes run the splittable blocks
            (``None``: none, the blocks run in the calling process).
        index_folder: where the database views' indices are kept (``None``:
            in the temporary folder).
        progress: whether progress bars are shown (on a terminal only).
        parameters: ``{block: {parameter: value}}`` set over the declared parameters.
    """

    prefix: Path | None = None
    cache: Path | None = None
    workers: int | None = None
    index_folder: Path | None = None
    progress: bool = True
    parameters: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _PATHS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                if not isinstance(value, str | os.PathLike):
                    raise RunConfigError(f"RunConfig.{name} must be a path or None, "
                                         f"got {value!r}")
                setattr(self, name, Path(value))
        if self.workers is not None and (type(self.workers) is not int or self.workers < 1):
            raise RunConfigError(f"RunConfig.workers must be an int of 1 or more, or None "
                                 f"(no worker processes), got {self.workers!r}")
        if type(self.progress) is not bool:
            raise RunConfigError(f"RunConfig.progress must be true or false, "
                                 f"got {self.progress!r}")
        if not isinstance(self.parameters, Mapping):
            raise RunConfigError(f"RunConfig.parameters must be a mapping of blocks, "
                                 f"got {self.parameters!r}")
        for block, values in self.parameters.items():
            if not isinstance(block, str) or not block:
                raise RunConfigError(f"RunConfig.parameters: a block name must be a "
                                     f"non-empty str, got {block!r}")
            if not isinstance(values, Mapping):
                raise RunConfigError(f"RunConfig.parameters[{block!r}] must be a mapping "
                                     f"of parameters, got {values!r}")
            for name in values:
                if not isinstance(name, str) or not name:
                    raise RunConfigError(f"RunConfig.parameters[{block!r}]: a parameter "
                                         f"name must be a non-empty str, got {name!r}")

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Self:
        """The configuration in the file ``path``, its relative paths made relative to
        the file's folder (the real one, symbolic links resolved); any problem is a
        :class:`RunConfigError` naming the file."""
        try:
            config = cls.from_yaml(path)
        except RunConfigError as error:
            raise RunConfigError(f"{os.fspath(path)!r}: {error}") from None
        except (OSError, ValueError, TypeError) as error:
            raise RunConfigError(str(error)) from None
        folder = _real_folder(path)
        for name in _PATHS:
            value = getattr(config, name)
            if value is not None and not value.is_absolute():
                setattr(config, name, folder / value)
        return config

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration to ``path`` (atomically), its paths relative to the
        file's folder (see :meth:`read`)."""
        folder = _real_folder(path)

        def relative(value: Path | None) -> Path | None:
            return None if value is None else Path(os.path.relpath(os.path.abspath(value),
                                                                    folder))

        dataclasses.replace(self, prefix=relative(self.prefix), cache=relative(self.cache),
                            index_folder=relative(self.index_folder)).to_yaml(path)

    def with_parameters(self, overrides: Mapping[str, Mapping[str, Any]]) -> Self:
        """A copy whose parameters are these with ``overrides`` (``{block: {parameter:
        value}}``) written over them, one value at a time (a value replaces the one
        there, a mapping included)."""
        merged = NestedDictionary({block: dict(values)
                                   for block, values in self.parameters.items()})
        for block, values in overrides.items():
            for name, value in values.items():
                merged.write_nested_value((block, name), value,
                                          allow_intermediate_overwrite=True)
        return dataclasses.replace(self, parameters=merged.data)


def _real_folder(path: str | os.PathLike[str]) -> Path:
    """The folder the file ``path`` is really in: the one ``to_yaml`` writes it to.

    Relative paths are joined to it and resolved by the system from there, so it
    must hold no symbolic link: from a linked folder, ``..`` leads to the parent of
    the folder linked to, not to the one the path was spelled from.
    """
    return Path(os.path.realpath(path)).parent
