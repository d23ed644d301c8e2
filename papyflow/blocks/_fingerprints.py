"""The hashes that name cached outputs: what a block's output depends on, folded into one digest.

An asset's own :meth:`hash` counts the dataformats and libraries it uses by
name only; a cached output must change when any of them changes, so the
fingerprints here fold in their content, recursively::

    dataset output  = hash(database hash, protocol, set, output, dataformat fingerprint)
    block output    = hash(algorithm fingerprint, every parameter's value (defaults
                           filled in), {input: hash of the output feeding it}, output)
    algorithm fp    = hash(algorithm hash, {library: library fp}, {dataformat: dataformat fp})
    library fp      = hash(library hash, {library: library fp})
    dataformat fp   = hash(dataformat hash, {referenced dataformat: its hash})

Descriptions and documentation never count (the assets' hashes leave them out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import hash as _hash
from ..formats.dataformat import DataFormat
from .algorithm import Algorithm
from .database import Database
from .library import Library

__all__ = ["algorithm_fingerprint", "block_output_hash", "dataformat_fingerprint",
           "dataset_output_hash", "parameter_values"]


def dataformat_fingerprint(dataformat: DataFormat) -> str:
    """The hash of a dataformat with those of the dataformats it references."""
    return _hash.hash({"dataformat": dataformat.hash(),
                       "referenced": {name: referenced.hash() for name, referenced
                                      in sorted(dataformat.referenced.items())}})


def _library_fingerprint(library: Library, seen: dict[str, str]) -> str:
    if library.name not in seen:
        seen[library.name] = _hash.hash({
            "library": library.hash(),
            "libraries": {name: _library_fingerprint(used, seen)
                          for name, used in sorted(library.libraries.items())}})
    return seen[library.name]


def algorithm_fingerprint(algorithm: Algorithm) -> str:
    """The hash of an algorithm (declaration and code) with everything it uses."""
    seen: dict[str, str] = {}
    return _hash.hash({
        "algorithm": algorithm.hash(),
        "libraries": {name: _library_fingerprint(library, seen)
                      for name, library in sorted(algorithm.libraries.items())},
        "dataformats": {name: dataformat_fingerprint(dataformat)
                        for name, dataformat in sorted(algorithm.dataformats.items())},
    })


def parameter_values(algorithm: Algorithm, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value as plain JSON: those given (checked), the defaults for the rest.

    A parameter given its default value gives the same result as one left out.

    Raises:
        ValueError: a parameter is unknown, of the wrong type or out of range.
    """
    values = {}
    for name, spec in algorithm.parameters.items():
        if name in given:
            value = algorithm.clean_parameter(name, given[name])
        elif isinstance(spec, Mapping) and "default" in spec:
            value = algorithm.clean_parameter(name, spec["default"])
        else:
            continue
        values[name] = value.item() if isinstance(value, np.generic) else value
    for name in given:
        if name not in values:  # unknown: raises naming it
            algorithm.clean_parameter(name, given[name])
    return values


def dataset_output_hash(database: Database, protocol: str, set_name: str, output: str) -> str:
    """The hash of one output of a database set (its view's code and declaration included)."""
    name = database.view_definition(protocol, set_name).outputs[output]
    return _hash.hash({"database": database.hash(), "protocol": protocol, "set": set_name,
                       "output": output,
                       "dataformat": dataformat_fingerprint(database.dataformats[name])})


def block_output_hash(fingerprint: str, parameters: Mapping[str, Any],
                      inputs: Mapping[str, str], output: str) -> str:
    """The hash naming one output of a block in the cache.

    Args:
        fingerprint: :func:`algorithm_fingerprint` of the block's algorithm.
        parameters: :func:`parameter_values` of the block.
        inputs: ``{input name: hash of the output connected to it}``.
        output: the output's name (``"results"`` for an analyzer).
    """
    return _hash.hash({"algorithm": fingerprint, "parameters": dict(parameters),
                       "inputs": dict(inputs), "output": output})
