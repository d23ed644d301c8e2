"""Which copies into segments take streaming stores: from an eighth of the last-level cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from numap import _shm

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _cpus(monkeypatch):
    """This process may run on CPUs 3 and 5 (what the fake trees below describe)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5})


def fake_caches(root: Path, caches: list[tuple[str, str]], shared: str = "2-5") -> Path:
    """A sysfs-like tree: ``(type, size)`` per cache of CPU 3, each shared by ``shared``."""
    for k, (kind, size) in enumerate(caches):
        index = root / "cpu3" / "cache" / f"index{k}"
        index.mkdir(parents=True)
        (index / "type").write_text(kind + "\n")
        (index / "size").write_text(size + "\n")
        (index / "shared_cpu_list").write_text(shared + "\n")
    return root


def test_the_last_level_cache_is_the_largest_data_cache(tmp_path):
    root = fake_caches(tmp_path, [("Data", "48K"), ("Instruction", "4096M"),
                                  ("Unified", "2048K"), ("Unified", "32M")])
    assert _shm.last_level_cache(str(root)) == 32 * MIB


def test_sizes_in_each_notation_and_unreadable_entries(tmp_path):
    root = fake_caches(tmp_path, [("Unified", "1G"), ("Data", "garbled"), ("Unified", "4096")])
    assert _shm.last_level_cache(str(root)) == 1 << 30
    (root / "cpu3" / "cache" / "index0" / "size").unlink()
    assert _shm.last_level_cache(str(root)) == 4096  # the others are skipped


def test_no_cache_reported(tmp_path):
    assert _shm.last_level_cache(str(tmp_path)) is None
    fake_caches(tmp_path, [("Instruction", "64K")])
    assert _shm.last_level_cache(str(tmp_path)) is None


def test_the_cpus_of_the_process_are_read_not_cpu_0(tmp_path):
    root = fake_caches(tmp_path, [("Unified", "32M")])
    zero = root / "cpu0" / "cache" / "index0"
    zero.mkdir(parents=True)
    (zero / "type").write_text("Unified\n")
    (zero / "size").write_text("512M\n")
    (zero / "shared_cpu_list").write_text("0-7\n")
    assert _shm.last_level_cache(str(root)) == 32 * MIB


@pytest.mark.parametrize("shared", ["3", "0-4", "3,4,6-7"])
def test_a_cache_that_not_every_cpu_of_the_process_shares_does_not_count(tmp_path, shared):
    # CPU 5 reads items through another cache: copies stream from 1 MiB.
    root = fake_caches(tmp_path, [("Unified", "480M")], shared=shared)
    assert _shm.last_level_cache(str(root)) is None
    assert _shm.stream_from({}, str(root)) == MIB


@pytest.mark.parametrize("shared", ["0-7", "3,5", "1,3-5"])
def test_a_cache_every_cpu_of_the_process_shares(tmp_path, shared):
    root = fake_caches(tmp_path, [("Unified", "480M")], shared=shared)
    assert _shm.last_level_cache(str(root)) == 480 * MIB


def test_an_unreadable_list_of_sharing_cpus_counts_as_no_cache(tmp_path):
    root = fake_caches(tmp_path, [("Unified", "480M")], shared="garbled")
    assert _shm.last_level_cache(str(root)) is None
    (root / "cpu3" / "cache" / "index0" / "shared_cpu_list").unlink()
    assert _shm.last_level_cache(str(root)) is None


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
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "3145728"}, str(root)) == 3 * MIB
    assert _shm.stream_from({"NUMAP_STREAM_FROM": " 3145728\n"}, str(root)) == 3 * MIB
    # the compiled copy streams from 1 MiB only, whatever is asked
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "0"}, str(root)) == MIB
    # empty: as if unset
    assert _shm.stream_from({"NUMAP_STREAM_FROM": ""}, str(root)) == 60 * MIB
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "  "}, str(root)) == 60 * MIB


@pytest.mark.parametrize("given", ["8MiB", "-1", "1.5", "+5", "1_000", "1e6", "0x10",
                                   "\u0665"])
def test_a_bad_value_in_the_environment_names_the_variable(given):
    message = f"NUMAP_STREAM_FROM must be a whole number of bytes, got {given!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        _shm.stream_from({"NUMAP_STREAM_FROM": given})


def test_a_bad_value_fails_the_import_with_that_message():
    env = {**os.environ, "NUMAP_STREAM_FROM": "lots"}
    done = subprocess.run([sys.executable, "-c", "import numap"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode != 0 and "NUMAP_STREAM_FROM must be a whole number" in done.stderr


def test_the_environment_reaches_the_module_setting():
    env = {**os.environ, "NUMAP_STREAM_FROM": "12345678"}
    done = subprocess.run([sys.executable, "-c", "from numap import _shm; print(_shm.STREAM_FROM)"],
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    assert done.stdout.strip() == "12345678"


@pytest.mark.parametrize("split", [False, True])
def test_only_copies_from_the_threshold_take_the_streaming_copy(monkeypatch, split):
    streamed, cached = [], []

    def streaming(target, source):
        streamed.append(source.nbytes)
        target[:] = source

    def ordinary(target, source):
        cached.append(source.nbytes)
        target[:] = source

    monkeypatch.setattr(_shm, "_copy_bytes", streaming)
    monkeypatch.setattr(_shm, "_copy_array", ordinary)
    monkeypatch.setattr(_shm, "STREAM_FROM", 6 * MIB)
    rng = np.random.default_rng(7)
    for nbytes in (5 * MIB, 6 * MIB, 7 * MIB + 3):
        source = rng.integers(0, 256, nbytes, dtype=np.uint8)
        target = np.zeros(nbytes, np.uint8)
        _shm._copy(target, source, split)
        assert np.array_equal(target, source)
    # the choice is made on the whole copy: its halves stream too; a copy into the
    # cache is never split
    halves = [6 * MIB // 2, 6 * MIB // 2, (7 * MIB + 3) // 2 & ~63]
    halves.append(7 * MIB + 3 - halves[-1])
    assert sorted(streamed) == sorted(halves if split else [6 * MIB, 7 * MIB + 3])
    assert cached == [5 * MIB]


def test_the_choice_says_what_the_threshold_came_from(tmp_path):
    assert _shm.stream_choice({"NUMAP_STREAM_FROM": "3145728"}, str(tmp_path)) == \
        (3 * MIB, 3 * MIB, None, False)
    assert _shm.stream_choice({"NUMAP_STREAM_FROM": "0"}, str(tmp_path)) == (MIB, 0, None, True)
    assert _shm.stream_choice({}, str(tmp_path)) == (MIB, None, None, False)  # no cache here
    assert _shm.stream_from({"NUMAP_STREAM_FROM": "0"}, str(tmp_path)) == MIB


def test_copies_are_split_only_where_a_cpu_is_left_for_the_helper(monkeypatch):
    from numap.backends.process import ProcessBackend

    # The fixture lets this process run on 2 CPUs: 1 worker and the feeding thread
    # take both, so the copies stay whole (a helper thread would wait for a CPU).
    def splits(workers: int) -> bool:
        backend = ProcessBackend(workers, "t", shared_memory=MIB)
        try:
            return backend.segments.split_copies
        finally:
            backend.stop()  # never started: closes its pipe

    assert _shm.usable_cpus() == 2
    assert not _shm.spare_cpu(1) and not _shm.spare_cpu(2)
    assert not splits(1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert _shm.spare_cpu(2) and not _shm.spare_cpu(3)
    assert splits(2) and not splits(3)
