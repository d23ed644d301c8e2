"""numap's copy of large buffers with streaming stores (compiled from ``_stream.c``)."""

STREAM_MIN: int
"""The smallest copy that uses streaming stores; smaller ones use ``memcpy``."""

streaming: int
"""1 where this build has streaming stores (x86-64), 0 where every copy is ``memcpy``."""

def copy(target: object, source: object, /) -> None:
    """``target[:] = source``: two contiguous buffers of the same size that do not
    overlap, ``target`` writable; without the GIL. ``ValueError`` when they differ
    in size or ``source`` is not contiguous; ``TypeError`` when ``target`` is
    read-only or not contiguous (no writable buffer of it)."""
