"""Items handed between Pipers through a file, a named pipe or a socket.

``dump_item`` writes an item somewhere and returns a :class:`Locator`, a small
picklable (and JSON-able) tuple; ``load_item``, in this or another process on the
same host, turns the locator back into the item's bytes::

    dump_item (writer process)                        load_item (reader process)
    'file'    temp file, written and closed ── path ─► read, unlink
    'fifo'    mkfifo; server thread waits for ─ path ─► open, read header + bytes, unlink
              a reader, then writes
    'socket'  listen on 127.0.0.1; server ── port+key ─► connect, send key,
              thread accepts, checks the key,             read header + bytes
              sends

The volatile types ('fifo', 'socket') are served once by a daemon thread of the
writer process. The thread ends when the item is collected, when ``timeout``
seconds have passed (the fifo is then unlinked, the socket closed, and a
warning logged on the ``papyflow.util`` logger), or when the process exits.
Every blocking call on either side has a deadline.

Both volatile types frame the item with an 8-byte big-endian length header, so
the reader can tell a complete item from one cut short by a dying writer. A
socket reader must first send the random key held in the locator: the port is
bound to loopback only, but another local user could still connect to it.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import errno
import hmac
import logging
import mmap
import os
import secrets
import select
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._check import first, positive_int, positive_number, text

__all__ = ["DEFAULT_BUFFER", "Locator", "dump_item", "load_item"]

_log = logging.getLogger("papyflow.util")

DEFAULT_BUFFER = 65536
"""Bytes moved per read or write call when ``buffer`` is not given (one pipe's capacity)."""

TYPES = ("file", "fifo", "socket")
_HEADER = struct.Struct("!Q")
_KEY_BYTES = 16
_LOOPBACK = "127.0.0.1"
# A server thread wakes at least this often to notice a cancel or its deadline.
_SLICE = 0.05
# A peer that connects gets this long to present the key before it is dropped.
_KEY_WAIT = 5.0
# A fifo reader that has waited this long for a writer checks that its process lives.
_WRITER_GRACE = 1.0


class Locator(NamedTuple):
    """Where a dumped item can be loaded from: what ``dump_item`` returns.

    ``type`` is ``'file'``, ``'fifo'`` or ``'socket'``; ``address`` is the path
    of the file or fifo, or the host of the socket; ``port`` is the socket's TCP
    port, or the process id of the process serving a fifo (so that a reader can
    tell when it has exited; 0 when not known), and 0 for a file; ``key`` is
    the hex secret a socket reader sends first ('' otherwise). A plain 4-item list or tuple with the same fields (for
    example one that went through JSON) is accepted by ``load_item`` too.
    """

    type: str
    address: str
    port: int
    key: str


def dump_item(inbox: Sequence[Any], type: str = "file", prefix: str | None = None,
              suffix: str | None = None, dir: str | os.PathLike[str] | None = None,
              timeout: float = 320, buffer: int | None = None) -> Locator:
    """Write the first element of the inbox as a 'file', 'fifo' or 'socket'.

    The element must be ``bytes`` (or a bytes-like object) or ``str`` (written
    as UTF-8). Returns a :class:`Locator` for :func:`load_item`.

    - ``'file'``: a temporary file (mode 0600) that stays until loaded with
      ``remove=True`` or deleted; it can be loaded any number of times.
    - ``'fifo'``: a named pipe (POSIX only) served once by a background thread of
      this process; local to this host.
    - ``'socket'``: a TCP socket on 127.0.0.1 served once by a background thread.

    ``prefix`` (default ``'tmp_papyflow_<type>_'``), ``suffix`` (default ``''``)
    and ``dir`` (default: the temporary directory) name the file or fifo and
    are ignored for sockets. ``timeout`` is how many seconds a fifo or socket
    waits to be collected before it is discarded. ``buffer`` is the largest
    write, in bytes.

    >>> locator = dump_item([b'some bytes'])
    >>> load_item([locator])
    b'some bytes'
    """
    where = "dump_item"
    payload = _as_bytes(where, first(where, inbox))
    if type not in TYPES:
        raise ValueError(f"{where}: type must be one of {TYPES}, got {type!r}")
    prefix = text(where, "prefix", prefix)
    suffix = text(where, "suffix", suffix)
    seconds = positive_number(where, "timeout", timeout)
    chunk = DEFAULT_BUFFER if buffer is None else positive_int(where, "buffer", buffer)
    if type == "socket":
        return _SocketServer(payload, seconds, chunk).start()
    folder = _directory(where, dir)
    prefix = f"tmp_papyflow_{type}_" if prefix is None else prefix
    suffix = "" if suffix is None else suffix
    if type == "file":
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
        except BaseException:
            _unlink(path)
            raise
        return Locator("file", path, 0, "")
    return _FifoServer(_make_fifo(folder, prefix, suffix), payload, seconds, chunk).start()


def load_item(inbox: Sequence[Any], type: str = "string", remove: bool = True,
              buffer: int | None = None, timeout: float = 60) -> bytes | mmap.mmap:
    """Load the item that :func:`dump_item` wrote, given its locator as ``inbox[0]``.

    ``type`` is the representation returned: ``'string'`` for ``bytes``, or
    ``'mmap'`` for a read-only memory map of a 'file' item (close it when done).
    ``remove`` deletes a 'file' item after loading; it must stay ``True`` for
    'fifo' and 'socket' items, which can be loaded only once. ``buffer`` is
    the largest read, in bytes. ``timeout`` bounds the whole wait for a fifo
    or socket item (``TimeoutError`` when it passes).
    """
    where = "load_item"
    locator = _locator(where, first(where, inbox))
    if type not in ("string", "mmap"):
        raise ValueError(f"{where}: type must be 'string' or 'mmap', got {type!r}")
    if not isinstance(remove, bool):
        raise TypeError(f"{where}: remove must be a bool, got {remove!r}")
    chunk = DEFAULT_BUFFER if buffer is None else positive_int(where, "buffer", buffer)
    deadline = time.monotonic() + positive_number(where, "timeout", timeout)
    if locator.type == "file":
        return _load_file(locator.address, type == "mmap", remove)
    if type == "mmap":
        raise ValueError(f"{where}: type='mmap' needs a 'file' item, got a {locator.type!r} item")
    if not remove:
        raise ValueError(f"{where}: a {locator.type!r} item can be read only once, so remove "
                         "must be True")
    if locator.type == "fifo":
        return _load_fifo(locator.address, chunk, deadline, locator.port)
    return _load_socket(locator, chunk, deadline)


# -- checks -------------------------------------------------------------------------


def _as_bytes(where: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    try:
        return bytes(memoryview(value))
    except TypeError:
        raise TypeError(f"{where}: inbox[0] must be bytes or str, "
                        f"got {type(value).__name__}") from None


def _directory(where: str, dir: Any) -> str:
    if dir is None:
        return tempfile.gettempdir()
    if not isinstance(dir, (str, os.PathLike)):
        raise TypeError(f"{where}: dir must be a path, got {dir!r}")
    path = os.fspath(dir)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{where}: dir {path!r} is not an existing directory")
    return os.path.abspath(path)


def _locator(where: str, value: Any) -> Locator:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 4:
        raise TypeError(f"{where}: inbox[0] must be a locator (type, address, port, key) "
                        f"from dump_item, got {value!r}")
    kind, address, port, key = value
    if kind not in TYPES:
        raise ValueError(f"{where}: the locator's type must be one of {TYPES}, got {kind!r}")
    if not isinstance(address, str) or not isinstance(key, str) or not isinstance(port, int):
        raise TypeError(f"{where}: malformed locator {value!r}")
    return Locator(kind, address, port, key)


# -- files --------------------------------------------------------------------------


def _load_file(path: str, as_mmap: bool, remove: bool) -> bytes | mmap.mmap:
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"load_item: no file {path!r}: it was removed by an earlier "
                                "load_item, or never dumped") from None
    with handle:
        if as_mmap:
            if os.fstat(handle.fileno()).st_size == 0:
                raise ValueError(f"load_item: type='mmap' cannot map the empty file {path!r}")
            data: bytes | mmap.mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            data = handle.read()
    # A memory map outlives the unlinked name on POSIX, so removing is safe for both.
    if remove:
        _unlink(path)
    return data


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- the server threads -------------------------------------------------------------

_lock = threading.Lock()
_serving: dict[int, _Server] = {}


class _Server(abc.ABC):
    """One item served once by a daemon thread, until collected, expired or cancelled."""

    kind = ""

    def __init__(self, payload: bytes, timeout: float, chunk: int) -> None:
        self.payload = payload
        self.timeout = timeout
        self.chunk = chunk
        self.deadline = time.monotonic() + timeout
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"papyflow-{self.kind}-item")

    @abc.abstractmethod
    def locator(self) -> Locator:
        """Where a reader finds the item."""

    @abc.abstractmethod
    def serve(self) -> bool:
        """Hand the item to one reader; False if the deadline passed or cancelled first."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free what the item holds (a fifo's name, a listening socket)."""

    def start(self) -> Locator:
        _stop_at_exit()
        with _lock:
            _serving[id(self)] = self
        try:
            self.thread.start()
        except BaseException:
            self._forget()
            raise
        return self.locator()

    def _run(self) -> None:
        try:
            if not self.serve() and not self.cancelled.is_set():
                _log.warning("dump_item: a %s item was not collected within %g s; discarded",
                             self.kind, self.timeout)
        except Exception as exc:
            # No caller is left to raise to: the reader (if any) sees a truncated item.
            _log.warning("dump_item: serving a %s item failed: %r", self.kind, exc)
        finally:
            self._forget()

    def _forget(self) -> None:
        self.release()
        with _lock:
            _serving.pop(id(self), None)

    def remaining(self) -> float:
        """Seconds left before the deadline; 0 once it passed or the item was cancelled."""
        if self.cancelled.is_set():
            return 0.0
        return max(0.0, self.deadline - time.monotonic())

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when it is time to give up."""
        left = self.remaining()
        if left <= 0:
            return False
        return not self.cancelled.wait(min(seconds, left)) and self.remaining() > 0


class _FifoServer(_Server):
    kind = "fifo"

    def __init__(self, path: str, payload: bytes, timeout: float, chunk: int) -> None:
        super().__init__(payload, timeout, chunk)
        self.path = path
        self.fd: int | None = None

    def locator(self) -> Locator:
        return Locator("fifo", self.path, os.getpid(), "")

    def serve(self) -> bool:
        # Opening for writing without a reader fails at once (ENXIO) in
        # non-blocking mode, so poll: a blocking open could wait forever.
        delay = 0.001
        while True:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            if not self.pause(delay):
                return False
            delay = min(2 * delay, _SLICE)
        # The reader holds the fifo open now, so its name is no longer needed.
        _unlink(self.path)
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        for part in (_HEADER.pack(len(self.payload)), self.payload):
            view = memoryview(part)
            while view:
                try:
                    view = view[os.write(self.fd, view[:self.chunk]):]
                except BlockingIOError:
                    if self.remaining() <= 0:
                        return False
                    poller.poll(1000 * min(_SLICE, self.remaining()))
        return True

    def release(self) -> None:
        _unlink(self.path)
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class _SocketServer(_Server):
    kind = "socket"

    def __init__(self, payload: bytes, timeout: float, chunk: int) -> None:
        super().__init__(payload, timeout, chunk)
        self.key = secrets.token_hex(_KEY_BYTES)
        # Bound here, not in the thread, so that a failure raises in dump_item.
        self.listener: socket.socket | None = socket.create_server((_LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]

    def locator(self) -> Locator:
        return Locator("socket", _LOOPBACK, self.port, self.key)

    def serve(self) -> bool:
        listener = self.listener
        assert listener is not None
        while self.remaining() > 0:
            # Short accepts, so that a cancel is noticed within a slice.
            listener.settimeout(min(_SLICE, self.remaining()))
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(min(_KEY_WAIT, max(self.remaining(), 0.001)))
                try:
                    key = _recv_exact(conn, 2 * _KEY_BYTES)
                except (OSError, EOFError):
                    continue
                if not hmac.compare_digest(key, self.key.encode("ascii")):
                    _log.warning("dump_item: dropped a peer on port %d that sent a wrong key",
                                 self.port)
                    continue
                # sendall's timeout bounds the whole call, not each chunk.
                conn.settimeout(max(self.remaining(), 0.001))
                conn.sendall(_HEADER.pack(len(self.payload)))
                view = memoryview(self.payload)
                for start in range(0, len(view), self.chunk):
                    conn.sendall(view[start:start + self.chunk])
                return True
        return False

    def release(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()


def _make_fifo(folder: str, prefix: str, suffix: str) -> str:
    # mkfifo fails on an existing name, so a random name is taken atomically.
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"dump_item: no free fifo name in {folder!r}")


# -- the readers --------------------------------------------------------------------


def _load_fifo(path: str, chunk: int, deadline: float, writer: int) -> bytes:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"load_item: no fifo {path!r}: the item was already loaded, "
                                "expired, or never dumped, or its process exited") from None
    if not stat.S_ISFIFO(mode):
        raise ValueError(f"load_item: {path!r} is not a fifo")
    # Non-blocking, because a blocking open waits for a writer that may be gone.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        reader = _FifoReader(fd, chunk, deadline, path, writer)
        size = _HEADER.unpack(reader.read(_HEADER.size))[0]
        return reader.read(size)
    finally:
        os.close(fd)
        _unlink(path)


class _FifoReader:
    """Exact reads from a non-blocking fifo, telling 'no writer yet' from 'writer left'."""

    def __init__(self, fd: int, chunk: int, deadline: float, path: str, writer: int) -> None:
        self.fd = fd
        self.chunk = chunk
        self.deadline = deadline
        self.path = path
        self.writer = writer  # the serving process's id, 0 if unknown
        self.opened = time.monotonic()
        self.seen = False
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        missing = size
        while missing:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load_item: fifo {self.path!r} gave no complete item "
                                   "within the timeout")
            self.poller.poll(1000 * min(_SLICE, left))
            try:
                data = os.read(self.fd, min(self.chunk, missing))
            except BlockingIOError:
                continue
            if data:
                self.seen = True
                parts.append(data)
                missing -= len(data)
            elif self.seen:
                raise EOFError(f"load_item: fifo {self.path!r} closed after "
                               f"{size - missing} of {size} bytes")
            else:
                # End-of-file before any byte: the writer has not opened its end yet,
                # or its process is gone (and with it the item).
                self._check_writer()
                time.sleep(0.002)
        return b"".join(parts)

    def _check_writer(self) -> None:
        # A live writer opens its end within a few of its polls once we hold ours,
        # so only a process that is gone after a grace counts: its id alone could
        # mislead across process namespaces.
        if self.writer <= 0 or time.monotonic() - self.opened < _WRITER_GRACE:
            return
        try:
            os.kill(self.writer, 0)
        except ProcessLookupError:
            raise EOFError(f"load_item: fifo {self.path!r}: the process that dumped it "
                           f"(pid {self.writer}) has exited, and the item with it") from None
        except PermissionError:  # alive, under another user
            pass


def _load_socket(locator: Locator, chunk: int, deadline: float) -> bytes:
    where = f"load_item: socket {locator.address}:{locator.port}"

    def left() -> float:
        seconds = deadline - time.monotonic()
        if seconds <= 0:
            raise TimeoutError
        return seconds

    try:
        sock = socket.create_connection((locator.address, locator.port), timeout=left())
    except ConnectionRefusedError:
        raise ConnectionRefusedError(f"{where}: nothing listens: the item was already "
                                     "loaded or expired, or its process exited") from None
    except TimeoutError:
        raise TimeoutError(f"{where}: no connection within the timeout") from None
    try:
        with sock:
            sock.sendall(locator.key.encode("ascii"))
            sock.settimeout(left())
            try:
                size = _HEADER.unpack(_recv_exact(sock, _HEADER.size))[0]
            except EOFError:
                raise EOFError(f"{where}: closed without sending the item (a wrong key, or "
                               "the item expired)") from None
            buf = bytearray(size)
            with memoryview(buf) as view:
                got = 0
                while got < size:
                    sock.settimeout(left())
                    n = sock.recv_into(view[got:], min(chunk, size - got))
                    if not n:
                        raise EOFError(f"{where}: closed after {got} of {size} bytes")
                    got += n
    except TimeoutError:
        raise TimeoutError(f"{where}: no complete item within the timeout") from None
    return bytes(buf)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    parts: list[bytes] = []
    missing = size
    while missing:
        data = sock.recv(missing)
        if not data:
            raise EOFError(f"connection closed after {size - missing} of {size} bytes")
        parts.append(data)
        missing -= len(data)
    return b"".join(parts)


# -- process lifecycle --------------------------------------------------------------


_stopping_in: int | None = None  # the process whose exit stops the servers


def _stop_at_exit() -> None:
    """Make sure this process's exit stops its servers, however it exits: through
    the interpreter's exit handlers (also run by a NuMap worker process when it
    leaves), or through the finalizers of a multiprocessing child."""
    global _stopping_in
    pid = os.getpid()
    if _stopping_in == pid:
        return
    _stopping_in = pid
    atexit.register(_cancel_all)
    for name in ("multiprocessing.util", "multiprocess.util"):
        util = sys.modules.get(name)
        if util is not None:
            util.Finalize(None, _cancel_all, exitpriority=10)


def _cancel_all(wait: float = 1.0) -> None:
    """Stop every server of this process, so that no fifo is left on disk at exit."""
    with _lock:
        servers = list(_serving.values())
    for server in servers:
        server.cancelled.set()
    for server in servers:
        server.thread.join(wait)


def _forget_after_fork() -> None:
    # A forked child has copies of the servers' descriptors but not their threads:
    # close the copies (a listening socket copy would keep the port open) and leave
    # the fifo names to the parent.
    global _lock
    _lock = threading.Lock()
    for server in list(_serving.values()):
        if isinstance(server, _SocketServer) and server.listener is not None:
            server.listener.close()
        elif isinstance(server, _FifoServer) and server.fd is not None:
            with contextlib.suppress(OSError):
                os.close(server.fd)
    _serving.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
