"""numap._stream: the copy into shared-memory segments with streaming stores."""

import platform

import numpy as np
import pytest

import numap._stream as S  # built with the project: a missing build fails here
from numap import _shm

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["avx", "sse2"])
def path(request):
    """Each streaming path in turn: on a processor with AVX the SSE2 one (that of
    processors without it) would otherwise never run."""
    before = S._use_avx(request.param == "avx")
    yield request.param
    S._use_avx(before)


@pytest.mark.parametrize("nbytes", [0, 1, 63, 4096, S.STREAM_MIN - 1, S.STREAM_MIN,
                                    S.STREAM_MIN + 127, (3 << 20) + 5])
@pytest.mark.parametrize("offsets", [(0, 0), (1, 0), (0, 7), (13, 29)])
def test_every_byte_is_copied_and_nothing_around_it(nbytes, offsets, path):
    # Unaligned starts and ends: the head before the first whole line and the
    # tail after the last one go by memcpy, the lines between by streaming stores.
    at_target, at_source = offsets
    source = np.random.default_rng(nbytes).integers(0, 256, nbytes + 64, dtype=np.uint8)
    target = np.full(nbytes + 64, 0xAB, dtype=np.uint8)
    S.copy(target[at_target:at_target + nbytes], source[at_source:at_source + nbytes])
    assert np.array_equal(target[at_target:at_target + nbytes],
                          source[at_source:at_source + nbytes])
    assert (target[:at_target] == 0xAB).all()
    assert (target[at_target + nbytes:] == 0xAB).all()


@pytest.mark.parametrize("shift", [-(S.STREAM_MIN + 64), -4096, -1, 1, 64, 4096,
                                   S.STREAM_MIN + 3])
def test_overlapping_buffers_are_copied_as_memmove_would(shift, path):
    nbytes = 2 * S.STREAM_MIN + 100
    whole = np.random.default_rng(abs(shift)).integers(0, 256, nbytes + 2 * abs(shift) + 8,
                                                       dtype=np.uint8)
    expected = whole.copy()
    start = abs(shift) + 8
    source = slice(start, start + nbytes)
    target = slice(start + shift, start + shift + nbytes)
    expected[target] = whole[source].copy()
    S.copy(whole[target], whole[source])
    assert np.array_equal(whole, expected)


def test_a_copy_of_another_size_is_refused():
    target, source = np.zeros(S.STREAM_MIN, np.uint8), np.ones(S.STREAM_MIN + 1, np.uint8)
    with pytest.raises(ValueError, match="target has 1048576 bytes, source 1048577"):
        S.copy(target, source)
    assert not target.any()  # nothing written


def test_a_read_only_target_or_a_strided_buffer_is_refused():
    source = np.ones(4096, np.uint8)
    frozen = np.zeros(4096, np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-write"):
        S.copy(frozen, source)
    strided = np.zeros(8192, np.uint8)
    with pytest.raises(TypeError, match="argument 1"):
        S.copy(strided[::2], source)  # numpy exports no writable buffer of it
    with pytest.raises(ValueError, match="not C-contiguous"):
        S.copy(np.zeros(4096, np.uint8), np.ones(8192, np.uint8)[::2])
    assert not frozen.any() and not strided.any()


def test_the_copy_into_segments_uses_it():
    # numap's copies into segments go through the compiled copy when it is built.
    assert _shm._copy_bytes is S.copy
    if platform.machine() in ("x86_64", "AMD64"):
        assert S.streaming == 1
