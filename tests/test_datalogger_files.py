"""How a saver writes one package's file: unnamed until whole where the system can,
under a temporary name where it cannot; never over an existing file. And the dispatcher's end
of the link to a saver, which never blocks."""

from __future__ import annotations

import errno
import os
import pickle
import resource
import signal
import socket
import threading

import multiprocess
import numpy as np
import pytest

from papyflow.datalogger import _saver
from papyflow.datalogger._saver import Ack, DispatcherLink, FileWriter, Kind, SaverLink

pytestmark = pytest.mark.timeout(60)

UNNAMED = getattr(os, "O_TMPFILE", 0)
needs_unnamed = pytest.mark.skipif(UNNAMED == 0, reason="no O_TMPFILE on this system")
COMPILED = _saver._write_batch
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="no compiled writer in this install")
# how a writer writes a batch: unnamed files by the compiled writer, unnamed files from
# Python, files under a temporary name
WAYS = [pytest.param("compiled", marks=[needs_unnamed, needs_compiled]),
        pytest.param("python", marks=needs_unnamed), "named"]


def _batch_writer(folder: int, way: str, monkeypatch) -> FileWriter:
    if way != "compiled":
        monkeypatch.setattr(_saver, "_write_batch", None)
    return _writer(folder, way != "named")


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


def test_no_proc_to_link_through_gets_named_files(tmp_path, folder, monkeypatch):
    monkeypatch.setattr(_saver, "_PROC_FD", str(tmp_path / "no-proc"))
    writer = FileWriter(folder, "t")
    assert writer.anonymous is False
    assert writer.write_many([("1_1.npy", memoryview(b"one"))]) == {}
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


def _answer_of_child(target, *args, kill: bool):
    """What ``target(*args, answer)``, run in a forked child, sends first through
    ``answer``; then the child is killed (``kill``) or waited for."""
    ours, theirs = multiprocess.get_context("fork").Pipe()
    child = multiprocess.get_context("fork").Process(target=target, args=(*args, theirs))
    child.start()
    try:
        assert ours.poll(30), "the child did not answer"
        return ours.recv()
    finally:
        if kill:
            child.kill()
        child.join(10)


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
    _answer_of_child(_write_and_hang, str(tmp_path), anonymous, kill=True)
    left = [p.name for p in tmp_path.iterdir()]
    # unnamed, the kernel frees the file with its last descriptor; named, the temporary
    # stays for shutdown() to remove, and no *.npy is ever partial
    assert left == ([] if anonymous else [".1_9.npy.t.tmp"])


@pytest.mark.parametrize("way", WAYS)
def test_a_batch_reports_each_failure_by_index_and_writes_the_others(
        tmp_path, folder, monkeypatch, way):
    writer = _batch_writer(folder, way, monkeypatch)
    (tmp_path / "1_2.npy").write_bytes(b"an earlier run's")
    errors = writer.write_many([("1_1.npy", memoryview(b"one")), ("1_2.npy", memoryview(b"two")),
                                ("1_3.npy", memoryview(b"three"))])
    assert list(errors) == [1]
    assert isinstance(errors[1], FileExistsError)
    assert writer.anonymous is (way != "named")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1_1.npy", "1_2.npy", "1_3.npy"]
    assert np.load(tmp_path / "1_3.npy").tobytes() == b"three"
    assert (tmp_path / "1_2.npy").read_bytes() == b"an earlier run's"  # not written over
    # written again after a saver died: a file of the same bytes is this one's
    assert writer.write_many([("1_1.npy", memoryview(b"one")), ("1_3.npy", memoryview(b"3"))],
                             redo=True).keys() == {1}


@needs_unnamed
@needs_compiled
def test_the_compiled_writer_meeting_a_name_that_exists_writes_the_file_no_second_time(
        tmp_path, folder, monkeypatch):
    writer = _writer(folder, True)
    assert writer.write_many([("1_1.npy", memoryview(b"one"))]) == {}
    written = []
    real_write = FileWriter.write

    def spy(self, name, payload, **kwargs):
        written.append(name)
        return real_write(self, name, payload, **kwargs)

    monkeypatch.setattr(FileWriter, "write", spy)
    errors = writer.write_many([("1_1.npy", memoryview(b"two")), ("1_2.npy", memoryview(b"x"))])
    assert list(errors) == [0]
    assert isinstance(errors[0], FileExistsError) and errors[0].filename == "1_1.npy"
    # a dead saver's file of the same bytes is this one's; of other bytes, a duplicate
    assert writer.write_many([("1_1.npy", memoryview(b"one"))], redo=True) == {}
    assert list(writer.write_many([("1_2.npy", memoryview(b"y"))], redo=True)) == [0]
    assert written == []  # each one settled by what the compiled writer did
    assert np.load(tmp_path / "1_1.npy").tobytes() == b"one"
    assert np.load(tmp_path / "1_2.npy").tobytes() == b"x"


def _write_limited(directory: str, way: str, answer) -> None:
    """In a child: write a batch with files limited to 300 bytes; send what failed."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
    if way != "compiled":
        _saver._write_batch = None
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    writer = _writer(fd, way != "named")
    errors = writer.write_many([("1_1.npy", memoryview(b"a" * 50)),
                                ("1_2.npy", memoryview(b"b" * 250)),  # 128 + 250 bytes
                                ("1_3.npy", memoryview(b"c" * 60))])
    answer.send({index: (type(exc).__name__, exc.errno) for index, exc in errors.items()})


@pytest.mark.parametrize("way", WAYS)
def test_a_file_the_kernel_refuses_part_way_is_reported_and_never_left_torn(tmp_path, way):
    errors = _answer_of_child(_write_limited, str(tmp_path), way, kill=False)
    assert errors == {1: ("OSError", errno.EFBIG)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1_1.npy", "1_3.npy"]
    assert np.load(tmp_path / "1_3.npy").tobytes() == b"c" * 60


@needs_compiled
def test_the_compiled_writer_checks_its_items_and_reports_a_folder_it_cannot_use(tmp_path):
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(TypeError, match=r"items\[1\] must be a tuple"):
            COMPILED(folder, [(b"a.npy", b"", b"x"), ("b.npy", b"", b"y")])
        with pytest.raises(ValueError, match=r"items\[0\]: the name has a NUL byte"):
            COMPILED(folder, [(b"a\0.npy", b"", b"x")])
        with pytest.raises(TypeError):  # not a buffer
            COMPILED(folder, [(b"a.npy", b"", 5)])
        assert list(tmp_path.iterdir()) == []  # nothing written when the items are wrong
        assert COMPILED(folder, []) == []
    finally:
        os.close(folder)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    fd = os.open(plain, os.O_RDONLY)
    try:  # making a file in it fails (step 0) for each item
        assert COMPILED(fd, [(b"a.npy", b"", b"x"), (b"b.npy", b"h", b"y")]) == [
            (0, errno.ENOTDIR, 0), (1, errno.ENOTDIR, 0)]
    finally:
        os.close(fd)


def test_the_dispatchers_end_of_a_link_never_blocks_and_keeps_messages_whole():
    ours, theirs = socket.socketpair()
    link, saver = DispatcherLink(ours), SaverLink(theirs)
    try:
        # Far more than the socket holds: flush sends what fits and returns, never waits.
        body = bytes(range(256)) * (4 * 2**20 // 256)
        link.post(Kind.WORK, 7, body)
        link.post(Kind.STOP, 0)
        sent = link.flush()
        assert 0 < sent < len(body) and link.waiting == len(body) + 2 * 17 - sent
        got = {}
        reader = threading.Thread(target=lambda: got.update(
            work=saver.receive(), stop=saver.receive()))
        reader.start()
        while link.waiting:
            link.flush()
        reader.join(10)
        assert got["work"] == (Kind.WORK, 7, bytearray(body))
        assert got["stop"] == (Kind.STOP, 0, bytearray())
        # An acknowledgement that arrives in pieces is returned once, whole.
        assert link.messages() == []
        ack = pickle.dumps(Ack(7), protocol=pickle.HIGHEST_PROTOCOL)
        message = _saver._MESSAGE.pack(Kind.ACK, 7, len(ack)) + ack
        theirs.sendall(message[:5])
        assert link.messages() == []
        theirs.sendall(message[5:] + message)
        assert link.messages() == [(Kind.ACK, 7, ack), (Kind.ACK, 7, ack)]
        theirs.close()
        with pytest.raises(EOFError):
            link.messages()
        with pytest.raises(OSError):
            link.post(Kind.WORK, 8, b"x")
            link.flush()  # the saver is gone
    finally:
        link.close()
        theirs.close()
