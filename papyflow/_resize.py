"""Change the number of workers of a NuMap that has not started.

NuMap takes ``worker_num`` and ``stride`` in its constructor and uses them only
when it starts (``start(stages=(1,))`` builds the pool and the scheduler), so
until then both may change. An automatic ``stride`` is 4096 items per worker
and must follow ``worker_num``; a ``stride`` given by the user stays as it is.
An automatic ``buffer`` follows ``stride`` by itself; a given one is a bound
that ``stride`` must not pass.

This belongs on NuMap itself; it lives here so that the command line does not
reach into numap's private state from more than one place.
"""

from __future__ import annotations

import numbers

from numap import NuMap

__all__ = ["resize"]

from numap._map import _STRIDE_PER_WORKER  # the rule numap uses for an automatic stride


def _stride_is_automatic(numap: NuMap) -> bool:
    """Whether ``numap`` chose its stride itself (the constructor got ``stride=None``)."""
    return numap.settings["stride"] is None


def resize(numap: NuMap, worker_num: int) -> bool:
    """Give ``numap`` ``worker_num`` local workers; False (and no change) if it has started.

    An automatic stride follows the new number of workers, kept within a
    ``buffer`` given to the constructor. Raises ValueError for a ``worker_num``
    below 1, TypeError for one that is not an int.
    """
    if isinstance(worker_num, bool) or not isinstance(worker_num, numbers.Integral):
        raise TypeError(f"worker_num must be an int, got {worker_num!r}")
    if worker_num < 1:
        raise ValueError(f"worker_num must be at least 1, got {worker_num}")
    if numap.started:
        return False
    automatic = _stride_is_automatic(numap)
    numap.worker_num = int(worker_num)
    if automatic:
        stride = _STRIDE_PER_WORKER * numap.worker_num
        given_buffer = getattr(numap, "_buffer", None)
        if given_buffer is not None:
            stride = min(stride, given_buffer)
        numap.stride = stride
    return True
