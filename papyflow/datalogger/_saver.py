"""A saver process: batches of frames in, ``.npy`` files out, one acknowledgement per batch.

::

    dispatcher (logger's thread)          saver process
    ----------------------------          -------------
    DispatcherLink.post(batch)     ---->  main thread: reads every batch at once
      + flush() as room comes              into a queue (so the dispatcher never
      (never blocks)                       waits on a busy saver)
                                          writer threads (thread_count): one batch
                                           each; per frame: a file with no name
                                           yet, write, link to its name (never
                                           replacing a file)
    DispatcherLink.messages()      <----  Ack(batch, failures), after the last
                                           file of the batch is in place

The two ends (a socket pair: :class:`DispatcherLink`, :class:`SaverLink`) carry messages of a
17-byte header (:class:`Kind`, batch number, size) and a body: a batch's bytes
go as they are, received straight into one buffer (no pickling, no copy beyond
the kernel's); an acknowledgement is a pickled :class:`Ack`.

A batch is acknowledged only after each of its files has its final name (or
failed, in which case the failure travels in the acknowledgement). A saver that
dies leaves its unacknowledged batches with the dispatcher, which sends them to
another saver as ``REDO``: there a file already in place with the same bytes is
the dead saver's work, and counts as saved.

No file is replaced: a package whose file exists (two packages of one source
with one time stamp, or a file of an earlier run in the folder) fails with
:class:`DuplicatePackageError`, reported like any other failure to write.
"""

from __future__ import annotations

import collections
import enum
import errno
import itertools
import os
import pickle
import queue
import signal
import socket
import struct
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import DuplicatePackageError
from .package import FRAME, file_name, npy_header

_write_batch: Callable[[int, list[tuple[bytes, bytes, memoryview]]],
                       list[tuple[int, int, int]]] | None
try:  # compiled: a batch of files written without the GIL (see _files.c)
    from ._files import write_unnamed as _write_batch
except ImportError:  # an install made without a C compiler: one file at a time
    _write_batch = None

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
# A file with no name until it is linked to one (Linux; 0 elsewhere).
_UNNAMED = getattr(os, "O_TMPFILE", 0)
# An unnamed file is linked to its name through its descriptor's entry here.
_PROC_FD = "/proc/self/fd"
# What making an unnamed file meets on a file system that cannot (EISDIR: a kernel
# older than O_TMPFILE, which reads it as O_DIRECTORY), and what linking it meets
# on one without hard links.
_NO_UNNAMED_FILES = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL})
_NO_LINK_BY_DESCRIPTOR = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})
_MAKING, _WRITING, _LINKING = 0, 1, 2  # the steps the compiled writer reports a failure at

__all__ = ["Ack", "DispatcherLink", "Failure", "FileWriter", "Kind", "SaverLink", "frames",
           "run_saver"]


class Kind(enum.IntEnum):
    """What a message between the dispatcher and a saver is."""

    WORK = 1   # a batch of frames to save (dispatcher -> saver)
    STOP = 2   # no more batches: finish the queued ones and exit (dispatcher -> saver)
    ACK = 3    # a pickled Ack (saver -> dispatcher)
    REDO = 4   # a batch of a saver that died: some of its files may be in place already


_MESSAGE = struct.Struct("<BqQ")  # kind, batch, size of the body
_JOIN_BELOW = 1 << 16
_IOV_MAX = 64           # pieces handed to one sendmsg
_READ_CHUNK = 1 << 16   # what the dispatcher reads of acknowledgements at once


@dataclass(frozen=True, slots=True)
class Failure:
    """A frame of a batch that could not be saved."""

    offset: int
    path: str
    error: BaseException
    traceback: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Every frame of ``batch`` was saved, except the ``failures``."""

    batch: int
    failures: tuple[Failure, ...] = ()


class SaverLink:
    """The saver's end of the socket pair between the dispatcher and a saver (blocking:
    the saver's main thread only reads, its writer threads send acknowledgements)."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: Kind, batch: int, body: bytes | bytearray) -> None:
        header = _MESSAGE.pack(kind, batch, len(body))
        if len(body) < _JOIN_BELOW:
            self.sock.sendall(header + body)
        else:
            self.sock.sendall(header)
            self.sock.sendall(body)

    def send_ack(self, ack: Ack) -> None:
        self._send(Kind.ACK, ack.batch, pickle.dumps(ack, protocol=pickle.HIGHEST_PROTOCOL))

    def receive(self) -> tuple[Kind, int, bytearray]:
        """The next message: ``(kind, batch, body)``; ``EOFError`` when the other end is gone."""
        kind, batch, size = _MESSAGE.unpack(self._exactly(_MESSAGE.size))
        return Kind(kind), batch, self._exactly(size)

    def _exactly(self, size: int) -> bytearray:
        buffer = bytearray(size)
        with memoryview(buffer) as view:
            got = 0
            while got < size:
                count = self.sock.recv_into(view[got:])
                if count == 0:
                    raise EOFError("the other end of the saver link is closed")
                got += count
        return buffer


class DispatcherLink:
    """The dispatcher's end of a saver link: it never blocks.

    A message is queued (:meth:`post`) and sent as the saver reads
    (:meth:`flush`, again whenever the socket has room), so that a saver that
    reads nothing (stopped, or not scheduled) holds up no other saver and no
    producer. Acknowledgements are read as they come (:meth:`messages`), a
    message cut between two reads kept until its end arrives.
    """

    __slots__ = ("_in", "_out", "_waiting", "sent", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._out: collections.deque[memoryview] = collections.deque()
        self._waiting = 0   # bytes posted and not yet sent
        self.sent = 0       # bytes sent since the link was made
        self._in = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    @property
    def waiting(self) -> int:
        """Bytes posted that the saver has not taken yet."""
        return self._waiting

    def post(self, kind: Kind, batch: int, body: bytes | bytearray = b"") -> int:
        """Queue a message; :meth:`flush` sends it. Returns what :attr:`sent` will be
        once the whole message is sent."""
        header = memoryview(_MESSAGE.pack(kind, batch, len(body)))
        self._out.append(header)
        self._waiting += len(header)
        if body:
            self._out.append(memoryview(body))
            self._waiting += len(body)
        return self.sent + self._waiting

    def flush(self) -> int:
        """Send what the socket has room for now; the bytes sent. ``OSError`` when the
        saver is gone."""
        out = self._out
        sent_now = 0
        while out:
            try:
                sent = self.sock.sendmsg(list(itertools.islice(out, _IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                break
            sent_now += sent
            self._waiting -= sent
            self.sent += sent
            while out and sent >= len(out[0]):
                sent -= len(out.popleft())
            if sent:
                out[0] = out[0][sent:]
        return sent_now

    def messages(self) -> list[tuple[Kind, int, bytes]]:
        """Every whole message the saver sent so far, in order; ``EOFError`` once the
        saver's end is closed (after the whole messages before it were returned)."""
        closed = False
        while True:
            try:
                data = self.sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                closed = True
                break
            self._in += data
        found = []
        buffer, offset = self._in, 0
        while len(buffer) - offset >= _MESSAGE.size:
            kind, batch, size = _MESSAGE.unpack_from(buffer, offset)
            end = offset + _MESSAGE.size + size
            if end > len(buffer):
                break
            found.append((Kind(kind), batch, bytes(buffer[offset + _MESSAGE.size:end])))
            offset = end
        del buffer[:offset]
        if closed and not found:
            raise EOFError("the saver's end of the link is closed")
        return found


def frames(data: memoryview | bytes) -> Iterable[tuple[int, int, int, int, int]]:
    """``(offset, source_id, time_stamp, start, end)`` of each frame in ``data``."""
    offset, size, head = 0, len(data), FRAME.size
    unpack = FRAME.unpack_from
    while offset < size:
        stamp, length, source = unpack(data, offset)
        start = offset + head
        yield offset, source, stamp, start, start + length
        offset = start + length


class FileWriter:
    """Writes ``.npy`` files into the directory open as ``folder`` (one per writer thread).

    A file is made without a name (``O_TMPFILE``), written, then linked to its
    name: a reader sees the whole file or none, a saver killed meanwhile leaves
    nothing behind, and the directory changes once per file. Where the system
    cannot (a file system without ``O_TMPFILE``, no ``/proc`` to link through),
    the writer says so in :attr:`anonymous` and from then on writes under a
    temporary name (``.<name>.<tag>.tmp``, which no ``*.npy`` pattern matches),
    links that to ``name`` and removes the temporary name. Either way an
    existing ``name`` is never replaced (``FileExistsError``; with ``redo``, a
    file already there with the same bytes is taken as this one). Names are
    resolved relative to the open directory (no path lookups). No fsync: the
    link protects readers and process deaths, not power loss.
    """

    __slots__ = ("anonymous", "folder", "tag")

    def __init__(self, folder: int, tag: str) -> None:
        self.folder = folder
        self.tag = tag
        # until the file system says it cannot
        self.anonymous = _UNNAMED != 0 and os.path.isdir(_PROC_FD)

    def write(self, name: str, payload: memoryview, *, redo: bool = False) -> None:
        """Write ``payload`` as the ``.npy`` file ``name``."""
        header = memoryview(npy_header(len(payload)))
        try:
            if not (self.anonymous and self._write_unnamed(name, header, payload)):
                self._write_named(name, header, payload)
        except FileExistsError:
            if not (redo and _holds(self.folder, name, header, payload)):
                raise

    def write_many(self, files: list[tuple[str, memoryview]], *,
                   redo: bool = False) -> dict[int, Exception]:
        """Write each ``(name, payload)`` of ``files`` as :meth:`write` does; what failed,
        by index. Unnamed files are written by the compiled writer where there is one,
        with the GIL released once for all of them (so that the writer threads of a
        saver write in parallel, instead of handing the GIL over at every system call)."""
        errors: dict[int, Exception] = {}
        if not (self.anonymous and _write_batch is not None):
            again = list(range(len(files)))
        else:
            again = []
            done = _write_batch(self.folder, [
                (name.encode(), npy_header(len(payload)), payload) for name, payload in files])
            for index, code, step in done:
                if code == errno.EEXIST and step == _LINKING:
                    # A duplicate, or a dead saver's file (see write()): the file was
                    # made whole without a name and is gone now; no need to write it again.
                    name, payload = files[index]
                    if not (redo and _holds(self.folder, name, npy_header(len(payload)),
                                            payload)):
                        errors[index] = FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                                        name)
                elif (step == _MAKING and code in _NO_UNNAMED_FILES) or \
                        (step == _LINKING and code in _NO_LINK_BY_DESCRIPTOR):
                    self.anonymous = False
                    again.append(index)
                else:
                    errors[index] = OSError(code, os.strerror(code), files[index][0])
        for index in again:
            name, payload = files[index]
            try:
                self.write(name, payload, redo=redo)
            except Exception as exc:  # noqa: BLE001 - the caller reports each one
                errors[index] = exc
        return errors

    def _write_unnamed(self, name: str, header: memoryview, payload: memoryview) -> bool:
        """The file written without a name, then linked to ``name``; ``False`` (and
        :attr:`anonymous` off) where the system cannot."""
        try:
            fd = os.open(".", _UNNAMED | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=self.folder)
        except OSError as exc:
            if exc.errno not in _NO_UNNAMED_FILES:
                raise
            self.anonymous = False
            return False
        try:
            _write_all(fd, header, payload)
            try:
                os.link(f"{_PROC_FD}/{fd}", name, dst_dir_fd=self.folder,
                        follow_symlinks=True)
            except OSError as exc:
                if exc.errno not in _NO_LINK_BY_DESCRIPTOR:
                    raise
                self.anonymous = False
                return False
        finally:
            os.close(fd)
        return True

    def _write_named(self, name: str, header: memoryview, payload: memoryview) -> None:
        folder = self.folder
        temporary = f".{name}.{self.tag}.tmp"
        fd = os.open(temporary, _FLAGS, 0o666, dir_fd=folder)
        try:
            try:
                _write_all(fd, header, payload)
            finally:
                os.close(fd)
            _place(folder, temporary, name)
        finally:
            try:
                os.unlink(temporary, dir_fd=folder)
            except OSError:
                pass


def _write_all(fd: int, header: memoryview, payload: memoryview) -> None:
    pieces = [header, payload]
    while pieces:
        written = os.writev(fd, pieces)
        while pieces and written >= len(pieces[0]):
            written -= len(pieces[0])
            pieces.pop(0)
        if pieces and written:
            pieces[0] = pieces[0][written:]


def _place(folder: int, temporary: str, name: str) -> None:
    """Give the file ``temporary`` the name ``name`` too, unless ``name`` exists."""
    try:
        os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        # A file system without hard links (FAT, some FUSE ones): a rename after a
        # look, which two writers of one name could race; only duplicates meet that.
        try:
            os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name) from None


def _holds(folder: int, name: str, header: bytes | memoryview, payload: memoryview) -> bool:
    """Whether the file ``name`` holds exactly ``header`` and then ``payload``."""
    size = len(header) + len(payload)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return False
    with open(fd, "rb") as file:
        data = file.read(size + 1)
    return len(data) == size and data[:len(header)] == header and data[len(header):] == payload


def save_batch(directory: str, writer: FileWriter, data: bytes | bytearray,
               redo: bool = False) -> tuple[Failure, ...]:
    """Write every frame of ``data`` (``writer``: into ``directory``); the frames that failed.

    ``redo``: a batch a saver that died had (see :class:`FileWriter`).
    """
    view = memoryview(data)
    found = list(frames(view))
    names = [file_name(source, stamp) for _, source, stamp, _, _ in found]
    errors = writer.write_many([(name, view[start:end])
                                for name, (_, _, _, start, end) in zip(names, found, strict=True)],
                               redo=redo)
    failures = []
    for index, exc in sorted(errors.items()):
        offset, source, stamp, _, _ = found[index]
        name = names[index]
        if isinstance(exc, FileExistsError):
            exc = DuplicatePackageError(source, stamp, os.path.join(directory, name))
        failures.append(_failure(directory, name, offset, exc))
    return tuple(failures)


def _failure(directory: str, name: str, offset: int, exc: BaseException) -> Failure:
    tb = "".join(traceback.format_exception(exc))
    exc.__traceback__ = None
    try:
        pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - the acknowledgement must travel: keep the text
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return Failure(offset, os.path.join(directory, name), exc, tb)


def _all_failed(directory: str, data: bytes | bytearray, exc: BaseException) -> tuple[Failure, ...]:
    return tuple(_failure(directory, file_name(source, stamp), offset, exc)
                 for offset, source, stamp, _, _ in frames(memoryview(data)))


def _writer(directory: str, work: queue.SimpleQueue, link: SaverLink,
            lock: threading.Lock) -> None:
    tag = f"{os.getpid()}-{threading.get_native_id()}"
    writer: FileWriter | None = None
    try:
        while (item := work.get()) is not None:
            batch, data, redo = item
            try:
                if writer is None:
                    writer = FileWriter(
                        os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), tag)
                failures = save_batch(directory, writer, data, redo)
            except Exception as exc:  # noqa: BLE001 - no batch goes unanswered: all of it failed
                failures = _all_failed(directory, data, exc)
            with lock:
                link.send_ack(Ack(batch, failures))
    finally:
        if writer is not None:
            os.close(writer.folder)


def run_saver(link: SaverLink, directory: str, thread_count: int) -> None:
    """The body of a saver process (``link``: its end of the link to the dispatcher).

    The descriptors it inherited from the logger's process (the producers'
    sockets, the listening socket, the other savers' links: copies kept open here
    would let a producer write into a socket nobody reads any more) were closed as
    it was forked (``_dispatcher._in_forked_child``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the logger decides when savers stop
    work: queue.SimpleQueue = queue.SimpleQueue()
    lock = threading.Lock()
    threads = [threading.Thread(target=_writer, args=(directory, work, link, lock),
                                name=f"saver-writer-{i}", daemon=True)
               for i in range(thread_count)]
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                kind, batch, body = link.receive()
            except (EOFError, OSError):  # the logger is gone: finish what came, leave
                break
            if kind not in (Kind.WORK, Kind.REDO):
                break
            work.put((batch, body, kind is Kind.REDO))
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
