"""How a saver writes one package's file: unnamed until whole where the system can,
under a temporary name where it cannot; never over an existing file."""

from __future__ import annotations

import errno
import os
import signal

import multiprocess
import numpy as np
import pytest

from papyflow.datalogger._saver import FileWriter

pytestmark = pytest.mark.timeout(60)

UNNAMED = getattr(os, "O_TMPFILE", 0)
needs_unnamed = pytest.mark.skipif(UNNAMED == 0, reason="no O_TMPFILE on this system")


@pytest.fixture
def folder(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _writer(folder: int, anonymous: bool) -> FileWriter:
    writer = FileWriter(folder, "t")
    writer.anonymous = anonymous and writer.anonymous
    return writer


@pytest.fixture
def unnamed_opens(monkeypatch):
    """Counts the opens of unnamed files; ``fail`` set to an errno makes them fail."""
    real_open = os.open

    class Opens:
        count = 0
        fail: int | None = None

    def spy(path, flags, *args, **kwargs):
        if UNNAMED and flags & UNNAMED == UNNAMED:
            Opens.count += 1
            if Opens.fail is not None:
                raise OSError(Opens.fail, os.strerror(Opens.fail))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return Opens


@pytest.mark.parametrize("anonymous", [True, False])
def test_a_batch_written_again_takes_a_file_of_the_same_bytes_only(tmp_path, folder, anonymous):
    writer = _writer(folder, anonymous)
    writer.write("1_5.npy", memoryview(b"abc"))
    writer.write("1_5.npy", memoryview(b"abc"), redo=True)  # a dead saver's
    with pytest.raises(FileExistsError):
        writer.write("1_5.npy", memoryview(b"abc"))
    with pytest.raises(FileExistsError):
        writer.write("1_5.npy", memoryview(b"abd"), redo=True)
    assert [p.name for p in tmp_path.iterdir()] == ["1_5.npy"]
    assert np.load(tmp_path / "1_5.npy").tobytes() == b"abc"


@needs_unnamed
@pytest.mark.parametrize("anonymous", [True, False])
def test_no_name_is_in_the_folder_while_a_file_is_written_unnamed(
        tmp_path, folder, monkeypatch, anonymous):
    seen = []
    real_writev = os.writev

    def look(fd, buffers):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", look)
    writer = _writer(folder, anonymous)
    writer.write("1_7.npy", memoryview(b"xyz"))
    assert writer.anonymous is anonymous
    assert seen == ([[]] if anonymous else [[".1_7.npy.t.tmp"]])
    assert [p.name for p in tmp_path.iterdir()] == ["1_7.npy"]
    assert np.load(tmp_path / "1_7.npy").tobytes() == b"xyz"


@needs_unnamed
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL])
def test_a_file_system_without_unnamed_files_gets_named_ones_and_is_not_asked_again(
        tmp_path, folder, unnamed_opens, code):
    unnamed_opens.fail = code
    writer = FileWriter(folder, "t")
    writer.write("1_1.npy", memoryview(b"one"))
    writer.write("1_2.npy", memoryview(b"two"))
    assert writer.anonymous is False
    assert unnamed_opens.count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1_1.npy", "1_2.npy"]
    assert np.load(tmp_path / "1_2.npy").tobytes() == b"two"


@needs_unnamed
def test_no_proc_to_link_through_falls_back_to_a_named_file(tmp_path, folder, monkeypatch):
    real_link = os.link

    def no_proc(source, *args, **kwargs):
        if str(source).startswith("/proc/"):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), source)
        return real_link(source, *args, **kwargs)

    monkeypatch.setattr(os, "link", no_proc)
    writer = FileWriter(folder, "t")
    writer.write("1_1.npy", memoryview(b"one"))
    assert writer.anonymous is False
    assert [p.name for p in tmp_path.iterdir()] == ["1_1.npy"]
    assert np.load(tmp_path / "1_1.npy").tobytes() == b"one"


@needs_unnamed
def test_a_full_disk_on_an_unnamed_file_is_raised_not_taken_for_no_support(
        tmp_path, folder, unnamed_opens):
    unnamed_opens.fail = errno.ENOSPC
    writer = FileWriter(folder, "t")
    with pytest.raises(OSError) as info:
        writer.write("1_1.npy", memoryview(b"one"))
    assert info.value.errno == errno.ENOSPC
    assert writer.anonymous is True
    assert list(tmp_path.iterdir()) == []


def _write_and_hang(directory: str, anonymous: bool, ready) -> None:
    def hang(fd, buffers):
        os.write(fd, bytes(buffers[0])[:5])  # part of the file, then the kill comes
        ready.send(True)
        signal.pause()

    os.writev = hang
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    _writer(fd, anonymous).write("1_9.npy", memoryview(b"payload"))


@needs_unnamed
@pytest.mark.parametrize("anonymous", [True, False])
def test_a_saver_killed_in_the_middle_of_a_file_leaves_only_a_temporary_name_if_any(
        tmp_path, anonymous):
    ours, theirs = multiprocess.get_context("fork").Pipe()
    child = multiprocess.get_context("fork").Process(
        target=_write_and_hang, args=(str(tmp_path), anonymous, theirs))
    child.start()
    try:
        assert ours.poll(30), "the writer did not start its file"
        ours.recv()
    finally:
        child.kill()
        child.join(10)
    left = [p.name for p in tmp_path.iterdir()]
    # unnamed, the kernel frees the file with its last descriptor; named, the temporary
    # stays for shutdown() to remove, and no *.npy is ever partial
    assert left == ([] if anonymous else [".1_9.npy.t.tmp"])
