"""The data logger benchmark's pieces: where it runs, and one small run that loses nothing."""

from __future__ import annotations

import os
import tempfile

import pytest

from benchmarks.datalogger import file_ceiling, file_system, places, run

pytestmark = pytest.mark.timeout(120)


def test_the_file_system_of_a_folder_comes_from_the_mount_table():
    if not os.path.exists("/proc/mounts"):
        pytest.skip("no /proc/mounts here")
    assert file_system("/proc") == "proc"
    assert file_system("/proc/self") == "proc"  # the longest mount point that holds it


def test_places_are_the_disk_then_a_writable_ram_folder(tmp_path):
    assert places(str(tmp_path), no_ram=False) == [
        ("disk", tempfile.gettempdir()), ("RAM", str(tmp_path))]
    assert places(str(tmp_path), no_ram=True) == [("disk", tempfile.gettempdir())]


def test_a_ram_folder_that_is_not_there_is_named_in_the_error(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(SystemExit, match="--ram-dir.*missing"):
        places(missing, no_ram=False)


def test_a_small_run_finds_every_package_in_the_folder_given(tmp_path):
    result = run(200, 64, 1, 1, str(tmp_path))
    assert result["packages"] == 400
    assert result["lost"] == 0
    assert result["rate"] > 0
    assert list(tmp_path.iterdir()) == []  # the run's folder is removed afterwards


def test_a_run_and_the_file_ceiling_leave_their_folders_to_the_caller_when_asked(tmp_path):
    kept = []
    assert run(50, 64, 1, 1, str(tmp_path), kept)["lost"] == 0
    assert file_ceiling(30, 64, str(tmp_path), kept) > 0
    assert sorted(kept) == sorted(tmp_path.iterdir())
    assert sorted(len(list(folder.rglob("*.npy"))) for folder in kept) == [30, 100]
    assert file_ceiling(30, 64, str(tmp_path)) > 0
    assert sorted(kept) == sorted(tmp_path.iterdir())  # the one not kept is gone
