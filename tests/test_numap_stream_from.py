"""Which copies into segments take streaming stores: from an eighth of the last-level cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numap import _shm

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


def fake_caches(root: Path, caches: list[tuple[str, str]]) -> Path:
    """A sysfs-like tree: ``(type, size)`` per cache of the CPU this process runs on."""
    cpu = min(os.sched_getaffinity(0))
    for k, (kind, size) in enumerate(caches):
        index = root / f"cpu{cpu}" / "cache" / f"index{k}"
        index.mkdir(parents=True)
        (index / "type").write_text(kind + "\n")
        (index / "size").write_text(size + "\n")
    return root


def test_the_last_level_cache_is_the_largest_data_cache(tmp_path):
    root = fake_caches(tmp_path, [("Data", "48K"), ("Instruction", "4096M"),
                                  ("Unified", "2048K"), ("Unified", "32M")])
    assert _shm.last_level_cache(str(root)) == 32 * MIB


def test_sizes_in_each_notation_and_unreadable_entries(tmp_path):
    root = fake_caches(tmp_path, [("Unified", "1G"), ("Data", "garbled"), ("Unified", "4096")])
    assert _shm.last_level_cache(str(root)) == 1 << 30
    (root / f"cpu{min(os.sched_getaffinity(0))}" / "cache" / "index0" / "size").unlink()
    assert _shm.last_level_cache(str(root)) == 4096  # the others are skipped


def test_no_cache_reported(tmp_path):
    assert _shm.last_level_cache(str(tmp_path)) is None
    fake_caches(tmp_path, [("Instruction", "64K")])
    assert _shm.last_level_cache(str(tmp_path)) is None


@pytest.mark.parametrize(("size", "expected"), [("491520K", 60 * MIB), ("32M", 4 * MIB),
                                                 ("4M", MIB)])
def test_streaming_starts_at_an_eighth_of_the_cache_and_1_mib_at_least(tmp_path, size,
                                                                        expected):
    root = fake_caches(tmp_path, [("Unified", size)])
    assert _shm.stream_from({}, str(root)) == expected


def test_without_a_cache_reported_copies_stream_from_1_mib(tmp_path):
    assert _shm.stream_from({}, str(tmp_path)) == MIB


def test_the_environment_sets_it(tmp_path):
    root = fake_caches(tmp_path, [("Unified", "480M")])
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "0"}, str(root)) == 0
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "1048576"}, str(root)) == MIB


@pytest.mark.parametrize("given", ["", "8MiB", "-1", "1.5"])
def test_a_bad_value_in_the_environment_names_the_variable(given):
    with pytest.raises(ValueError, match=f"NUMAP_STREAM_FROM must be a number of bytes >= 0, "
                                         f"got {given!r}"):
        _shm.stream_from({"NUMAP_STREAM_FROM": given})


def test_a_bad_value_fails_the_import_with_that_message():
    env = {**os.environ, "NUMAP_STREAM_FROM": "lots"}
    done = subprocess.run([sys.executable, "-c", "import numap"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode != 0 and "NUMAP_STREAM_FROM must be a number of bytes" in done.stderr


def test_the_environment_reaches_the_module_setting():
    env = {**os.environ, "NUMAP_STREAM_FROM": "12345"}
    done = subprocess.run([sys.executable, "-c", "from numap import _shm; print(_shm.STREAM_FROM)"],
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    assert done.stdout.strip() == "12345"


@pytest.mark.parametrize("split", [False, True])
def test_only_copies_from_the_threshold_take_the_streaming_copy(monkeypatch, split):
    streamed = []

    def streaming(target, source):
        streamed.append(source.nbytes)
        target[:] = source

    monkeypatch.setattr(_shm, "_copy_bytes", streaming)
    monkeypatch.setattr(_shm, "STREAM_FROM", 6 * MIB)
    rng = np.random.default_rng(7)
    for nbytes in (5 * MIB, 6 * MIB, 7 * MIB + 3):
        source = rng.integers(0, 256, nbytes, dtype=np.uint8)
        target = np.zeros(nbytes, np.uint8)
        _shm._copy(target, source, split)
        assert np.array_equal(target, source)
    # the choice is made on the whole copy: its halves stream too
    halves = [6 * MIB // 2, 6 * MIB // 2, (7 * MIB + 3) // 2 & ~63]
    halves.append(7 * MIB + 3 - halves[-1])
    assert sorted(streamed) == sorted(halves if split else [6 * MIB, 7 * MIB + 3])
