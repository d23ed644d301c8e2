"""The exceptions raised by :mod:`papyflow.formats.baseformat`.

``RecordError`` is the family. Each situation beneath it also subclasses the
builtin a caller already catches::

    RecordError
    ├── SpecError          (ValueError)             make_type: a bad record name, field name or spec
    ├── FieldValueError    (TypeError, ValueError)  a value cannot become a field
    │   ├── MissingFieldError                       ... because it is missing (or None)
    │   └── UnknownFieldError                       ... because the record has no such field
    ├── DecodeError        (ValueError)             bytes that are not a valid packed record
    │   └── TruncatedError (EOFError)               ... because they end too early
    └── BatchError         (TypeError)              a batch of a format that is not fixed-size

Messages say where (the record name and the field path, for example
``user/point/1: field 'meta.frame'`` or ``field 'tags[3]'``), what was expected
and what came; decoding errors add the byte offset.
"""

from __future__ import annotations

__all__ = [
    "BatchError",
    "DecodeError",
    "FieldValueError",
    "MissingFieldError",
    "RecordError",
    "SpecError",
    "TruncatedError",
    "UnknownFieldError",
]


def _where(record: str, path: str, offset: int | None = None) -> str:
    parts = []
    if record:
        parts.append(record)
    place = f"field '{path}'" if path else ""
    if offset is not None:
        place = f"{place} at byte {offset}" if place else f"at byte {offset}"
    if place:
        parts.append(place)
    return ": ".join(parts)


class RecordError(Exception):
    """Base of every error about record types, record values and packed records.

    Attributes ``record`` (the record type's name, ``''`` when unknown) and
    ``path`` (the field path, ``''`` for the record as a whole).
    """

    def __init__(self, message: str, record: str = "", path: str = "") -> None:
        where = _where(record, path)
        super().__init__(f"{where}: {message}" if where else message)
        self.record = record
        self.path = path


class SpecError(RecordError, ValueError):
    """A record type cannot be made: a bad name, field name or field spec."""


class FieldValueError(RecordError, TypeError, ValueError):
    """A value cannot become a field: wrong type, wrong shape, or not castable.

    Raised when building a record (``T(**kwargs)``, ``T.from_dict``), when
    packing one whose attributes were assigned values that cannot be packed,
    and by :func:`~papyflow.formats.baseformat.setup_scalar` /
    :func:`~papyflow.formats.baseformat.setup_array`. Attributes ``expected``
    (a description of the field's type and shape) and ``value`` (what came).
    """

    def __init__(self, message: str, record: str = "", path: str = "",
                 expected: str = "", value: object = None) -> None:
        super().__init__(message, record, path)
        self.expected = expected
        self.value = value


class MissingFieldError(FieldValueError):
    """A field has no value (absent or ``None``) and defaults were not asked for."""


class UnknownFieldError(FieldValueError):
    """A value was given for a field the record type does not declare."""


class DecodeError(RecordError, ValueError):
    """Bytes are not a valid packed record of the type being unpacked.

    Truncated data, bytes left over, a fixed dimension that differs from the
    declared one, a bool byte other than 0 or 1, invalid UTF-8, or a length or
    shape that exceeds the bytes left or the layout's limits. Attribute
    ``offset``: where (in bytes from the start of the record) the bad value
    starts, ``None`` when unknown.
    """

    def __init__(self, message: str, record: str = "", path: str = "",
                 offset: int | None = None) -> None:
        where = _where(record, path, offset)
        Exception.__init__(self, f"{where}: {message}" if where else message)
        self.record = record
        self.path = path
        self.offset = offset


class TruncatedError(DecodeError, EOFError):
    """The bytes end before the record does (or a length prefix claims more than is left)."""


class BatchError(RecordError, TypeError):
    """A batch operation was asked of a record type that is not fixed-size."""
