"""``SharedMemoryArray``: a one-dimensional (or n-dimensional) numpy array in POSIX shared memory.

One process creates it (:meth:`SharedMemoryArray.create_array`), any process
connects to it by name and reads or writes elements and slices under a lock
that holds across threads and processes::

    create_array(name, prototype) --> /dev/shm/<name>: the prototype's bytes
        connect(): map it here (automatic in the creator, and in a process
                   that receives the array pickled: NuMap workers, multiprocess)
        read_data(index) / write_data(index, data): under the lock (a
                   threading.RLock for this process's threads, flock on the
                   segment for the other processes; reads share it)
        disconnect(): unmap it here
    destroy(): remove the name (mappings still open stay valid until closed)

The buffer outlives its processes: it stays in ``/dev/shm`` until ``destroy()``,
even when every process that used it has exited. A forked child gets new
thread locks (a parent's thread may have held one at the fork) and maps the
buffer anew at its first use.

An index is an int (one element; negative counts from the end), ``(start,)``
(from start to the end) or ``(start, stop)`` (stop excluded).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

try:
    import _posixshmem
except ImportError:  # pragma: no cover - not a POSIX system
    _posixshmem = None

__all__ = ["SharedMemoryArray"]


# Every array of this process, so that a forked child can replace their locks.
_ARRAYS: weakref.WeakSet[SharedMemoryArray] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    # A thread of the parent may have held an array's lock at the fork; in the
    # child that thread does not exist, and its copy of the lock would stay held.
    for array in list(_ARRAYS):
        array._lock = threading.RLock()


os.register_at_fork(after_in_child=_new_locks_after_fork)


# The longest name a file of /dev/shm may have, in bytes.
_NAME_MAX = 255


def _segment(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\0" in name:
        raise ValueError(f"name must be a non-empty string without '/', got {name!r}")
    if name in (".", ".."):
        raise ValueError(f"name must be a buffer's name, got {name!r}, which names a directory")
    try:
        size = len(name.encode())
    except UnicodeEncodeError as error:
        raise ValueError(f"name must be text in UTF-8, got {name!r} ({error.reason})") from None
    if size > _NAME_MAX:
        raise ValueError(f"name must be at most {_NAME_MAX} bytes long, got {size}: "
                         f"{name[:40]!r}...")
    return "/" + name


class SharedMemoryArray:
    """An array of a fixed shape and datatype in shared memory, named ``name``.

    Make one with :meth:`create_array`; the constructor is for connecting to
    one that exists (it does not connect: call :meth:`connect`).

    Attributes:
        name: the name of the shared buffer.
        shape: the array's shape (a tuple).
        datatype: its ``numpy.dtype``.
    """

    def __init__(self, name: str, shape: tuple[int, ...], datatype: Any) -> None:
        _segment(name)
        self.name = name
        self.shape = tuple(int(n) for n in shape)
        if not self.shape:
            raise ValueError(f"shared memory array {name!r}: shape must have at least one "
                             "dimension, got ()")
        if any(n < 0 for n in self.shape):
            raise ValueError(f"shared memory array {name!r}: shape must not have negative "
                             f"dimensions, got {self.shape}")
        self.datatype = np.dtype(datatype)
        if self.datatype.hasobject:  # its bytes would be taken for pointers: a crash
            raise TypeError(f"shared memory array {name!r}: datatype {self.datatype} holds "
                            "Python objects; shared memory takes fixed-size datatypes only")
        self._size = int(np.prod(self.shape, dtype=np.int64)) * self.datatype.itemsize
        self._fd = -1
        self._pid = 0
        self._mapping: mmap.mmap | None = None
        self._array: np.ndarray | None = None
        self._lock = threading.RLock()
        _ARRAYS.add(self)

    # -- making, connecting, removing --------------------------------------------------------

    @classmethod
    def create_array(cls, name: str, prototype: np.ndarray,
                     exist_ok: bool = False) -> SharedMemoryArray:
        """A new shared array named ``name`` holding a copy of ``prototype``, connected.

        Args:
            name: the buffer's name (no ``/``), unique on this machine.
            prototype: its shape, datatype and first content; a numpy array
                of at least one dimension (a single value: ``np.array([value])``)
                and of a fixed-size datatype (no objects).
            exist_ok: replace a buffer of that name instead of raising. Meant for
                one left by an earlier run, but it cannot tell such a leftover from
                a buffer still in use: processes connected to that one keep it
                (now nameless) and no longer share data with the new one.

        Raises:
            TypeError: ``prototype`` is not a numpy array, or holds objects.
            FileExistsError: a buffer of that name exists (and not ``exist_ok``).
            ValueError: a bad name, or a 0-d ``prototype``.
        """
        segment = _segment(name)
        if not isinstance(prototype, np.ndarray):
            raise TypeError(f"prototype must be a numpy array, got {type(prototype).__name__}")
        if prototype.ndim == 0:
            raise ValueError(f"prototype must have at least one dimension, got the 0-d array "
                             f"{prototype!r}: for a single value use np.array([value])")
        if prototype.dtype.hasobject:
            raise TypeError(f"prototype holds Python objects ({prototype.dtype}): shared "
                            "memory takes fixed-size datatypes only")
        array = cls(name, prototype.shape, prototype.dtype)
        flags = os.O_CREAT | os.O_RDWR | (0 if exist_ok else os.O_EXCL)
        if exist_ok:
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink(segment)
        try:
            fd = _posixshmem.shm_open(segment, flags, mode=0o600)
        except FileExistsError:
            raise FileExistsError(f"a shared memory buffer named {name!r} exists: choose "
                                  "another name, destroy() it, or pass exist_ok=True") from None
        try:
            os.ftruncate(fd, max(array._size, 1))
            # the pages now: a full /dev/shm is an error here, not a SIGBUS on first write
            os.posix_fallocate(fd, 0, max(array._size, 1))
        except OSError as error:
            os.close(fd)
            _posixshmem.shm_unlink(segment)
            raise OSError(error.errno, f"cannot make shared memory buffer {name!r} of "
                                       f"{array._size} bytes: {error.strerror}") from None
        os.close(fd)
        array.connect()
        assert array._array is not None
        array._array[...] = prototype
        return array

    def connect(self) -> None:
        """Map the buffer in this process (again after a fork); harmless when connected.

        Raises:
            FileNotFoundError: no buffer of that name (destroyed, or never made).
        """
        with self._lock:
            if self._mapping is not None and self._pid == os.getpid():
                return
            self._close()  # a mapping inherited through fork: this process needs its own
            try:
                fd = _posixshmem.shm_open(_segment(self.name), os.O_RDWR, mode=0o600)
            except FileNotFoundError:
                raise FileNotFoundError(f"no shared memory buffer named {self.name!r} "
                                        "(destroyed, or not created yet)") from None
            try:
                available = os.fstat(fd).st_size
                if available < self._size:
                    raise ValueError(f"shared memory buffer {self.name!r} holds {available} "
                                     f"bytes; shape {self.shape} of {self.datatype} needs "
                                     f"{self._size}")
                mapping = mmap.mmap(fd, max(self._size, 1))
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._pid, self._mapping = fd, os.getpid(), mapping
            self._array = np.ndarray(self.shape, self.datatype, buffer=mapping)

    def disconnect(self) -> None:
        """Unmap the buffer in this process (the data stays for the others)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._array = None
        if self._mapping is not None:
            with contextlib.suppress(BufferError):
                self._mapping.close()
            self._mapping = None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # A copy that was unpickled (every item that carries the array to a NuMap
        # worker) holds a descriptor and a mapping: dropped, it must give them back.
        with contextlib.suppress(Exception):
            self._close()

    def destroy(self) -> None:
        """Remove the buffer's name (the creator does it once, at the end); disconnects here."""
        self.disconnect()
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink(_segment(self.name))

    @property
    def is_connected(self) -> bool:
        """Whether this process has the buffer mapped."""
        return self._mapping is not None and self._pid == os.getpid()

    # -- pickling: a child process connects by name ----------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # The dtype itself: its ``str`` loses a structured dtype's fields ("|V12").
        return {"name": self.name, "shape": self.shape, "datatype": self.datatype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"], state["shape"], state["datatype"])  # type: ignore[misc]
        self.connect()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "not connected"
        return f"<SharedMemoryArray {self.name!r} {self.datatype} {self.shape} {state}>"

    # -- reading and writing -----------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, with_lock: bool, exclusive: bool) -> Iterator[np.ndarray]:
        if self._mapping is not None and self._pid != os.getpid():
            self.connect()  # inherited through fork: this process maps it anew
        if not with_lock:
            yield self._connected_array()
            return
        with self._lock:  # as disconnect() is: it cannot close the buffer under this call
            array = self._connected_array()
            fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield array
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _connected_array(self) -> np.ndarray:
        if self._array is None or not self.is_connected:
            raise RuntimeError(f"shared memory array {self.name!r} is not connected in this "
                               "process: call connect() first")
        return self._array

    def _where(self, index: Any) -> int | slice:
        length = self.shape[0] if self.shape else 1
        if isinstance(index, bool) or not isinstance(index, int | np.integer | tuple):
            raise TypeError(f"index must be an int, (start,) or (start, stop), got {index!r}")
        if isinstance(index, tuple):
            if len(index) not in (1, 2) or not all(
                    isinstance(i, int | np.integer) and not isinstance(i, bool) for i in index):
                raise ValueError(f"a slice index is (start,) or (start, stop) of ints, got "
                                 f"{index!r}")
            start = int(index[0])
            stop = length if len(index) == 1 else int(index[1])
            if not (-length <= start <= length and -length <= stop <= length):
                raise IndexError(f"slice {index!r} is outside shared memory array "
                                 f"{self.name!r} of length {length}")
            if (stop + length if stop < 0 else stop) < (start + length if start < 0 else start):
                raise ValueError(f"slice {index!r} of shared memory array {self.name!r} "
                                 f"ends before it starts")
            return slice(start, stop)
        position = int(index)
        if not -length <= position < length:
            raise IndexError(f"index {position} is outside shared memory array {self.name!r} "
                             f"of length {length}")
        return position

    def read_data(self, index: int | tuple[int, ...], convert_output: bool = False,
                  with_lock: bool = True) -> Any:
        """The element at ``index`` (a numpy scalar), or a copy of the slice (an array).

        With ``convert_output`` the result is a Python value: a scalar, or a list.

        Raises:
            TypeError, ValueError: a malformed index.
            IndexError: an index outside the array.
            RuntimeError: not connected in this process.
        """
        where = self._where(index)
        with self._locked(with_lock, exclusive=False) as array:
            value = array[where]
            value = value.copy() if isinstance(value, np.ndarray) else value
        if convert_output:
            return value.tolist() if isinstance(value, np.ndarray) else value.item()
        return value

    def write_data(self, index: int | tuple[int, ...], data: Any, with_lock: bool = True) -> None:
        """Write ``data`` at ``index``: a scalar at an int index (or to fill a
        whole slice), or a sequence of exactly the slice's length.

        The data is converted to the array's datatype: integers and booleans
        into any numeric type, floats into floats, only booleans into a boolean
        array, only text into a text array, only dates into a date array and
        durations into a duration array; a float into an integer array, a
        number into a text array (numpy would store its text cut to the
        length), or a value that does not fit (out of an integer type's range,
        beyond a float type's largest finite value, text longer than the type
        holds, a date or duration the unit cannot hold exactly), is refused.
        An empty slice takes empty data. A sequence is never repeated to fill a
        longer slice.

        Raises:
            TypeError: data of a kind the datatype does not take.
            ValueError: data of another length (or shape) than the slice, or
                that does not fit.
            IndexError, RuntimeError: as :meth:`read_data`.
        """
        where = self._where(index)
        if self.datatype.names is not None:
            values = self._records(data)
        else:
            values = _given(data, self.datatype, self.name)
            if values.size:  # empty data (for an empty slice) has nothing to convert
                values = _converted(values, data, self.datatype, self.name)
        self._check_shape(index, where, values)
        with self._locked(with_lock, exclusive=True) as array:
            try:
                array[where] = values
            except OverflowError as error:
                raise ValueError(f"{data!r} does not fit shared memory array {self.name!r} of "
                                 f"{self.datatype}: {error}") from None
            except ValueError as error:
                raise ValueError(f"cannot write {data!r} at {index!r} of shared memory array "
                                 f"{self.name!r}: {error}") from None

    def _check_shape(self, index: Any, where: int | slice, values: np.ndarray) -> None:
        """A scalar goes anywhere; other data must have the shape of what ``where``
        selects (numpy would repeat a single row over a longer slice)."""
        if isinstance(where, slice):
            wanted = (len(range(*where.indices(self.shape[0]))), *self.shape[1:])
        else:
            wanted = self.shape[1:]
        if values.ndim == 0 or values.shape == wanted or (values.size == 0 and
                                                          0 in wanted):
            return
        what = "the slice" if isinstance(where, slice) else "the element"
        raise ValueError(f"cannot write data of shape {values.shape} at {index!r} of shared "
                         f"memory array {self.name!r}: {what} has the shape {wanted}")

    def _records(self, data: Any) -> np.ndarray:
        """``data`` for an array of records: records of a datatype that casts safely to
        the array's, or a tuple per record whose fields each pass the checks of a
        plain array of the field's datatype (so nothing is truncated or wrapped)."""
        dtype = self.datatype
        values = np.asarray(data) if not isinstance(data, (tuple, list)) else None
        if values is not None and values.dtype.names is not None:
            if not np.can_cast(values.dtype, dtype, casting="safe"):
                raise TypeError(f"cannot write {values.dtype} records to shared memory array "
                                f"{self.name!r} of {dtype} without changing them")
            return values.astype(dtype)
        rows = [data] if isinstance(data, tuple) else data
        if not isinstance(rows, list) or not all(isinstance(row, tuple) for row in rows):
            raise TypeError(f"cannot write {data!r} to shared memory array {self.name!r} of "
                            f"records {dtype}: give a tuple per record, or records of its "
                            "datatype")
        names = dtype.names or ()
        for row in rows:
            if len(row) != len(names):
                raise ValueError(f"record {row!r} has {len(row)} fields, shared memory array "
                                 f"{self.name!r} has {len(names)} {names}")
        for position, name in enumerate(names):
            field = dtype.fields[name][0].base
            if field.names is None and rows:
                column = [row[position] for row in rows]
                label = f"{self.name}[{name!r}]"
                _converted(_given(column, field, label), column, field, label)
        return np.array(data, dtype=dtype)


def _converted(values: np.ndarray, data: Any, datatype: np.dtype, name: str) -> np.ndarray:
    """``values`` checked against ``datatype`` (converted where that checks it)."""
    kind, given = datatype.kind, values.dtype.kind
    if values.dtype.hasobject or (given in "fc" and kind in "iub") or \
            (given == "c" and kind == "f") or ((given in "US") != (kind in "US")) or \
            (kind == "b" and given != "b") or ((given in "mM" or kind in "mM") and
                                               given != kind):
        raise TypeError(f"cannot write {values.dtype} data {data!r} to shared memory "
                        f"array {name!r} of {datatype}")
    if given in "US" and kind in "US":
        longest = int(np.char.str_len(values).max())
        room = datatype.itemsize // (4 if kind == "U" else 1)
        if longest > room:
            raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                             f"{datatype} (at most {room} characters)")
    if kind in "mM":
        # numpy casts a finer unit by cutting (12:00:00.5 to 12:00:00), and a date
        # beyond the unit's range wraps round, both silently: convert, and compare back
        converted = values.astype(datatype)
        back = converted.astype(values.dtype)
        if not np.all((back == values) | (np.isnat(back) & np.isnat(values))):
            raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                             f"{datatype} (it would change: a finer unit, or beyond its range)")
        return converted
    if given in "iub" and kind in "iu":
        limits = np.iinfo(datatype)
        if values.min() < limits.min or values.max() > limits.max:
            raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                             f"{datatype} ({limits.min}..{limits.max})")
    elif kind in "fc" and given in "iufc" and not np.can_cast(values.dtype, datatype):
        # numpy turns a value beyond the type's range into inf, with only a warning
        with np.errstate(over="ignore", invalid="ignore"):
            converted = values.astype(datatype)
        if np.any(np.isfinite(values) & ~np.isfinite(converted)):
            largest = np.finfo(datatype).max
            raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                             f"{datatype} (finite values up to {largest:g} in size)")
        return converted
    return values


def _leaves(data: Any) -> list[Any]:
    """The values of ``data``, through nested lists and tuples."""
    if isinstance(data, (list, tuple)):
        return [leaf for item in data for leaf in _leaves(item)]
    return [data]


def _given(data: Any, datatype: np.dtype, name: str) -> np.ndarray:
    """``data`` (not records) as an array, as numpy reads it; except Python ints beyond
    int64, which numpy reads as floats (rounded) or objects: data made only of Python
    numbers is then read as ``datatype`` itself, each int checked to fit (numbers of
    numpy in it would be cast unchecked, so such data stays as numpy reads it)."""
    values = np.asarray(data)
    kind, read = datatype.kind, values.dtype.kind
    if not (kind in "iu" and read in "fO" or kind in "fc" and read == "O") or \
            not isinstance(data, (int, list, tuple)):
        return values  # the usual case: nothing beyond int64, no walk over the data
    leaves = _leaves(data)
    if kind in "iu":
        _check_python_ints(data, leaves, datatype, name)
        if all(type(x) in (int, bool) for x in leaves):
            return np.asarray(data, dtype=datatype)
        return values
    if kind == "f" and all(type(x) in (int, float, bool) for x in leaves):
        wide = np.result_type(datatype, np.float64)  # longdouble stays longdouble
    elif kind == "c" and all(type(x) in (int, float, complex, bool) for x in leaves):
        wide = np.result_type(datatype, np.complex128)
    else:
        return values
    try:
        return np.asarray(data, dtype=wide)
    except OverflowError:
        raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                         f"{datatype} (finite values up to {np.finfo(datatype).max!s} in "
                         "size)") from None


def _check_python_ints(data: Any, leaves: list[Any], datatype: np.dtype, name: str) -> None:
    """A Python int of ``data`` (its ``leaves``) beyond an integer ``datatype``'s range
    is a ``ValueError`` (numpy would make it an object or a float array first)."""
    if datatype.kind not in "iu":
        return
    numbers = [x for x in leaves if isinstance(x, int) and not isinstance(x, bool)]
    if not numbers:
        return
    limits = np.iinfo(datatype)
    if min(numbers) < limits.min or max(numbers) > limits.max:
        raise ValueError(f"{data!r} does not fit shared memory array {name!r} of "
                         f"{datatype} ({limits.min}..{limits.max})")
