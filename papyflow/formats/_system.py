"""Where the system dataformats shipped with papyflow live.

The package holds a prefix of its own, ``<package>/formats/system``, with the
dataformats of user ``system`` (``system/float64/1``, ``system/text/1``, ...)
in the usual layout: ``dataformats/system/<name>/<version>.json``. A
:class:`~papyflow.formats.dataformat.DataFormat` searches it after the
prefix it is given, so those formats need no copy in a user's prefix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SYSTEM_PREFIX", "system_prefix"]

SYSTEM_PREFIX: str = str(Path(__file__).resolve().parent / "system")
"""The folder of the prefix holding the system dataformats (read-only)."""


def system_prefix() -> str:
    """Return :data:`SYSTEM_PREFIX`, the folder of the system dataformats' prefix."""
    return SYSTEM_PREFIX
