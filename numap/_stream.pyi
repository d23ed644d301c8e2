"""numap's copy of large buffers with streaming stores (compiled from ``_stream.c``)."""

STREAM_MIN: int
"""The smallest copy that uses streaming stores; smaller ones use ``memcpy``."""

streaming: int
"""1 where this build has streaming stores (x86-64), 0 where every copy is ``memcpy``."""

def copy(target: object, source: object, /) -> None:
    """``target[:] = source``: two contiguous buffers of the same size, ``target``
    writable; without the GIL (buffers that overlap are copied as ``memmove``
    does). ``ValueError`` when they differ in size; a read-only target is a
    ``TypeError``, and a buffer that is not contiguous gets its exporter's error
    (numpy: ``TypeError`` for the target, ``ValueError`` for the source)."""

def _use_avx(flag: bool, /) -> bool:
    """For the tests: take the AVX path (where the processor has AVX) or the SSE2
    one; returns whether the AVX path was taken before."""
