"""Reading an execution configuration: a dict, a JSON file, or a folder holding one."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

CONFIGURATION_FILE = "configuration.json"
"""The name of the configuration file in an execution folder."""


def load_configuration(data: Mapping[str, Any] | str | os.PathLike[str]
                       ) -> tuple[dict[str, Any], str | None]:
    """The configuration ``data`` gives, and the folder it was read from (``None`` for a dict).

    ``data`` is the configuration itself, a JSON file, or a folder holding
    :data:`CONFIGURATION_FILE`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not JSON (the message names it).
        TypeError: it is not a JSON object.
    """
    if isinstance(data, Mapping):
        return dict(data), None
    path = os.fspath(data)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        path = os.path.join(path, CONFIGURATION_FILE)
    with open(path, encoding="utf-8") as stream:
        try:
            config = json.load(stream)
        except ValueError as error:
            raise ValueError(f"{path}: not JSON: {error}") from None
    if not isinstance(config, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config, folder


def prefix_of(prefix: Any, folder: str | None) -> Any:
    """The prefix given, else ``<folder>/prefix``.

    Raises:
        ValueError: neither is there.
    """
    if prefix is not None:
        return prefix
    if folder is not None and os.path.isdir(os.path.join(folder, "prefix")):
        return os.path.join(folder, "prefix")
    raise ValueError("prefix: give the prefix (or an execution folder holding 'prefix/')")
