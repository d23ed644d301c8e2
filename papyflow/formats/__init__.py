"""Dataformats and the record types made from them.

A dataformat is a JSON declaration of the fields of a record
(:mod:`papyflow.formats.dataformat`); :mod:`papyflow.formats.baseformat`
makes record classes from them, which pack to and unpack from bytes.

:data:`SYSTEM_PREFIX` is the folder of the prefix of system dataformats that
ship with papyflow (``system/float64/1``, ``system/text/1``, ...); every
``DataFormat`` searches it after the prefix it is given.
"""

from ._system import SYSTEM_PREFIX, system_prefix

__all__ = ["SYSTEM_PREFIX", "system_prefix"]
