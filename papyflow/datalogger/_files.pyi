"""The data logger's writer of a batch of small files without the GIL (compiled from
``_files.c``)."""

from collections.abc import Sequence

def write_unnamed(folder: int, items: Sequence[tuple[bytes, object, object]], /
                  ) -> list[tuple[int, int, int]]:
    """Write each ``(name, header, payload)`` of ``items`` (``header`` and ``payload``
    bytes-like) as a file made unnamed (``O_TMPFILE``) in the directory open as
    ``folder``, then linked to ``name`` (never replacing a file), with the GIL
    released for the whole batch. Returns ``(index, errno, step)`` of each item
    that failed; ``step`` is 0 when making the file, 1 writing it, 2 linking it.
    ``TypeError`` for an item that is not such a tuple, ``ValueError`` for a name
    with a NUL byte."""
