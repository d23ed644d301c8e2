"""Worker processes keep the memory their large arrays free (``keep_freed``)."""

from __future__ import annotations

import ast
import ctypes
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from numap import NuMap
from numap._heap import _glibc, keep_freed

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc_mallinfo2():
    libc = _glibc()
    function = getattr(libc, "mallinfo2", None)  # glibc 2.33 and later
    if function is not None:
        function.restype = _MallInfo2
    return function


needs_glibc = pytest.mark.skipif(_glibc_mallinfo2() is None,
                                 reason="needs glibc 2.33 or later (mallinfo2)")


def free_heap_after_new_arrays(mib):
    """In a worker: make and drop two new arrays of ``mib`` MiB, as a stage making new
    arrays does; then the bytes of free memory the heap kept (not given back)."""
    source = np.ones(mib * MIB // 8)
    for _ in range(3):
        made = source + 1.0
        scaled = made * 2.0
        del made, scaled
    return _glibc_mallinfo2()().fordblks


def _free_heap_in_fresh_workers(sizes, **numap_kwargs):
    """:func:`free_heap_after_new_arrays` on process workers of a NuMap made in a fresh
    interpreter: a forked worker inherits its parent's allocator state, and this test
    process has freed large blocks of its own before."""
    code = textwrap.dedent(f'''
        from numap import NuMap
        from tests.test_numap_heap import free_heap_after_new_arrays
        with NuMap(free_heap_after_new_arrays, {sizes!r}, worker_num=2,
                   **{numap_kwargs!r}) as numap:
            print(list(numap))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=50, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    kept = ast.literal_eval(done.stdout.strip())
    assert len(kept) == len(sizes)
    return kept


@needs_glibc
def test_workers_keep_the_pages_of_freed_arrays_by_default():
    # (arrays not made in shared memory, see test_numap_alloc.py)
    kept = _free_heap_in_fresh_workers([8, 8], shared_arrays=False)
    # both 8 MiB arrays' blocks stay in the heap, ready for the next array
    assert all(free >= 16 * MIB for free in kept), kept


@needs_glibc
def test_keep_freed_none_leaves_the_allocator_alone():
    kept = _free_heap_in_fresh_workers([8, 8], keep_freed=None)
    # glibc's own defaults give such blocks back (their own mapping, or trimmed)
    assert all(free < 16 * MIB for free in kept), kept


@needs_glibc
def test_a_small_keep_freed_trims_the_heap():
    kept = _free_heap_in_fresh_workers([8], keep_freed=4 * MIB)
    assert all(free <= 5 * MIB for free in kept), kept


def test_keep_freed_is_checked():
    with pytest.raises(ValueError, match="keep_freed"):
        NuMap(worker_num=1, keep_freed=-1)
    with pytest.raises(TypeError, match="keep_freed"):
        NuMap(worker_num=1, keep_freed="lots")
    with pytest.raises(ValueError, match="keep_freed"):
        keep_freed(-5)


def test_the_setting_is_part_of_the_numap_settings():
    assert NuMap(worker_num=1).settings["keep_freed"] == 128 * MIB
    assert NuMap(worker_num=1, keep_freed=0).settings["keep_freed"] == 0
