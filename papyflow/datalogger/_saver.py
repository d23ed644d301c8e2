"""A saver process: batches of frames in, ``.npy`` files out, one acknowledgement per batch.

::

    dispatcher (logger's thread)          saver process
    ----------------------------          -------------
    link.send_work(batch, bytes)   ---->  main thread: reads every batch at once
                                           into a queue (so the dispatcher never
                                           waits on a busy saver)
                                          writer threads (thread_count): one batch
                                           each; per frame: temporary file, write,
                                           rename
    link.receive() -> Ack          <----  Ack(batch, failures), after the last
                                           rename of the batch

The two ends of a :class:`SaverLink` (a socket pair) carry messages of a
17-byte header (:class:`Kind`, batch number, size) and a body: a batch's bytes
go as they are, received straight into one buffer (no pickling, no copy beyond
the kernel's); an acknowledgement is a pickled :class:`Ack`.

A batch is acknowledged only after each of its files has its final name (or
failed, in which case the failure travels in the acknowledgement). A saver that
dies leaves its unacknowledged batches with the dispatcher, which sends them to
another saver: writing a file twice gives the same file.
"""

from __future__ import annotations

import enum
import os
import pickle
import queue
import signal
import socket
import struct
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from .package import FRAME, file_name, npy_header

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC

__all__ = ["Ack", "Failure", "Kind", "SaverLink", "frames", "run_saver", "write_file"]


class Kind(enum.IntEnum):
    """What a message between the dispatcher and a saver is."""

    WORK = 1   # a batch of frames to save (dispatcher -> saver)
    STOP = 2   # no more batches: finish the queued ones and exit (dispatcher -> saver)
    ACK = 3    # a pickled Ack (saver -> dispatcher)


_MESSAGE = struct.Struct("<BqQ")  # kind, batch, size of the body
_JOIN_BELOW = 1 << 16


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
    """One end of the socket pair between the dispatcher and a saver."""

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

    def send_work(self, batch: int, data: bytes | bytearray) -> None:
        self._send(Kind.WORK, batch, data)

    def send_stop(self) -> None:
        self._send(Kind.STOP, 0, b"")

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


def frames(data: memoryview | bytes) -> Iterable[tuple[int, int, int, int, int]]:
    """``(offset, source_id, time_stamp, start, end)`` of each frame in ``data``."""
    offset, size, head = 0, len(data), FRAME.size
    unpack = FRAME.unpack_from
    while offset < size:
        stamp, length, source = unpack(data, offset)
        start = offset + head
        yield offset, source, stamp, start, start + length
        offset = start + length


def write_file(folder: int, name: str, payload: memoryview, tag: str) -> None:
    """Write ``payload`` as the ``.npy`` file ``name`` in the directory open as ``folder``.

    The file is written under a temporary name (``.<name>.<tag>.tmp``, which no
    ``*.npy`` pattern matches) and renamed: a reader sees the whole file or none.
    Names are resolved relative to the open directory (no path lookups). No
    fsync: the rename protects readers and process deaths, not power loss.
    """
    temporary = f".{name}.{tag}.tmp"
    fd = os.open(temporary, _FLAGS, 0o666, dir_fd=folder)
    try:
        try:
            pieces = [memoryview(npy_header(len(payload))), payload]
            while pieces:
                written = os.writev(fd, pieces)
                while pieces and written >= len(pieces[0]):
                    written -= len(pieces[0])
                    pieces.pop(0)
                if pieces and written:
                    pieces[0] = pieces[0][written:]
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=folder)
        except OSError:
            pass
        raise


def save_batch(directory: str, folder: int, data: bytes | bytearray, tag: str) -> tuple[Failure, ...]:
    """Write every frame of ``data`` (``folder``: ``directory`` open); the frames that failed."""
    view = memoryview(data)
    failures = []
    for offset, source, stamp, start, end in frames(view):
        name = file_name(source, stamp)
        try:
            write_file(folder, name, view[start:end], tag)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none is fatal
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
    folder: int | None = None
    try:
        while (item := work.get()) is not None:
            batch, data = item
            try:
                if folder is None:
                    folder = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                failures = save_batch(directory, folder, data, tag)
            except Exception as exc:  # noqa: BLE001 - no batch goes unanswered: all of it failed
                failures = _all_failed(directory, data, exc)
            with lock:
                link.send_ack(Ack(batch, failures))
    finally:
        if folder is not None:
            os.close(folder)


def run_saver(link: SaverLink, directory: str, thread_count: int,
              close_fds: tuple[int, ...]) -> None:
    """The body of a saver process (``link``: its end of the link to the dispatcher).

    ``close_fds`` are descriptors inherited from the logger's process that must not
    stay open here (the producers' sockets: a copy kept open here would let a
    producer write into a socket nobody reads any more).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the logger decides when savers stop
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
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
            if kind is not Kind.WORK:
                break
            work.put((batch, body))
    finally:
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
