"""The HDF5 storage service: leaves, groups and trees to and from one HDF5 file.

Layout of the file::

    /                        attrs: title
    /results                 a group          attrs: comment (when there is one)
    /results/run_0/mean      a leaf (a group) attrs: comment, papyflow_leaf (JSON:
                             {"kind": "Result", "types": {data name: its type}})
    /results/run_0/mean/mean   one dataset (or group, for a dict) per data name

The service is not thread safe, and HDF5 lets one process at a time write a
file: share it between processes with :class:`~papyflow.storage.LockWrapper`
or the queue writer. Outside :meth:`HDF5StorageService.opened`, every call
opens the file and closes it before returning, so that another process may
open it next; inside, the file stays open and is flushed after every call.

What a crash can cost (docs: "What survives a crash"): HDF5 has no journal.
The file is opened with HDF5's default (earliest) format, not
``libver='latest'``: the newer superblock marks a file "open for writing" and a
file whose writer was killed then refuses to open until ``h5clear`` is run.
The metadata cache never evicts (:func:`_hold_metadata`), so between two
flushes nothing reaches the file but raw data in space the last flush did not
use: a writer killed between flushes leaves the file as of the last flush. A
writer killed *while flushing* may leave a file that does not open: HDF5
promises nothing then. BACKUP and MERGE never change a file in place: they
write a temporary copy, sync it, and rename it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import h5py

from . import pypetconstants as pc
from ._h5 import get_text, new_group, set_text
from ._values import read_value, write_value
from .errors import (
    ItemExistsError,
    NoSuchServiceError,
    NotStoredError,
    UnsupportedDataError,
)
from .items import Group, Leaf, Node, leaf_type, split_name, utf8_problem

__all__ = ["HDF5StorageService"]

LEAF_ATTR = "papyflow_leaf"
COMMENT_ATTR = "comment"
_GROUP_CACHE = 4096
_CACHE_LIMIT = 64 << 20  # bytes of HDF5 metadata cache before the file is reopened


def _path(full_name: str) -> str:
    return "/" + "/".join(split_name(full_name))


def _h5_file(filename: str | os.PathLike[str], mode: str, **options: Any) -> h5py.File:
    """``h5py.File``, whose errors name the file (h5py's own do not)."""
    try:
        return h5py.File(filename, mode, **options)
    except OSError as exc:
        if os.fspath(filename) in str(exc):
            raise
        text = f"cannot open {os.fspath(filename)!r} as an HDF5 file: {exc}"
        raise (type(exc)(text) if exc.errno is None else type(exc)(exc.errno, text)) from exc


def _check_node(handle: h5py.File, path: str, msg: str) -> None:
    """Raise ``ValueError`` when ``path`` is a value inside a leaf, not a node."""
    parts = path.strip("/").split("/")
    for end in range(1, len(parts)):
        above = "/" + "/".join(parts[:end])
        if _is_leaf(handle[above]):
            raise ValueError(f"{msg}: {_full_name(path)!r} is a value of the leaf "
                             f"{_full_name(above)!r}, not a node")


def _below(path: str, root: str) -> bool:
    """Whether HDF5 path ``path`` is ``root`` or inside it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _full_name(path: str) -> str:
    return path.strip("/").replace("/", ".")


def _is_leaf(node: h5py.HLObject) -> bool:
    return isinstance(node, h5py.Group) and LEAF_ATTR in node.attrs


def _leaf_info(node: h5py.Group) -> dict[str, Any]:
    """What a leaf's ``papyflow_leaf`` attribute says: its ``kind`` and its values' ``types``."""
    return json.loads(get_text(node, LEAF_ATTR, "") or '{"kind": "Result", "types": {}}')


def _is_node(item: object) -> bool:
    return isinstance(getattr(item, "v_full_name", None), str)


def _is_leaf_to_store(item: object) -> bool:
    return _is_node(item) and callable(getattr(item, "_store", None))


def _is_leaf_to_load(item: object) -> bool:
    return _is_node(item) and callable(getattr(item, "_load", None))


def _is_group(item: object) -> bool:
    return _is_node(item) and not callable(getattr(item, "_store", None))


def _is_calls(item: object) -> bool:
    return isinstance(item, Iterable) and not isinstance(item, str | bytes | Mapping)


def _anything(item: object) -> bool:
    return True


_LEAF_TO_STORE = "a leaf: an object with v_full_name and _store(), such as a Result"
_LEAF_TO_LOAD = "a leaf: an object with v_full_name and _load(), such as a Result"
_A_GROUP = "a group: an object with v_full_name and no _store(), such as a Group"
_A_NODE = "a node: a group or a leaf (an object with v_full_name)"
_CALLS = "a list of (msg, item[, args[, kwargs]]) calls"


@dataclasses.dataclass(frozen=True, slots=True)
class _Message:
    """What a message does (``run``) with the items it understands (``takes``, described
    by ``expects`` in the error for any other item)."""

    run: Callable[..., Any]
    takes: Callable[[object], bool]
    expects: str

    def check(self, verb: str, msg: str, item: object) -> None:
        if not self.takes(item):
            shown = repr(item)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise NoSuchServiceError(f"{verb}: {msg} does not understand {shown} (of type "
                                     f"{type(item).__name__}): it takes {self.expects}")

    def check_arguments(self, verb: str, msg: str, *args: Any, **kwargs: Any) -> None:
        """Arguments ``run`` does not take are a ``TypeError`` naming the message (not
        the method behind it)."""
        signature = _SIGNATURES.get(self.run)
        if signature is None:
            signature = _SIGNATURES[self.run] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{verb}({msg}): {error}") from None

    def call(self, verb: str, msg: str, *args: Any, **kwargs: Any) -> Any:
        """``run`` with ``args`` and ``kwargs``, once :meth:`check_arguments` took them."""
        self.check_arguments(verb, msg, *args, **kwargs)
        return self.run(*args, **kwargs)


_SIGNATURES: dict[Callable[..., Any], inspect.Signature] = {}


def _check_data_name(where: str, name: object) -> str:
    if type(name) is not str or not name or "/" in name or "\0" in name or name == "." or \
            utf8_problem(name) is not None:
        raise UnsupportedDataError(f"{where}: bad data name {name!r} (a non-empty str "
                                   "without '/' or NUL, in UTF-8)")
    return name


def _check_comment(where: str, comment: object) -> str:
    if not isinstance(comment, str) or utf8_problem(comment) is not None:
        raise UnsupportedDataError(f"{where!r}: its full name and comment must be "
                                   f"text in UTF-8, got the comment {comment!r}")
    return comment


def _check_title(where: str, title: object) -> str:
    if not isinstance(title, str):
        raise TypeError(f"{where}file_title must be a str, got {title!r}")
    if "\0" in title or utf8_problem(title) is not None:
        raise ValueError(f"{where}file_title must be text in UTF-8 without NUL, got {title!r}")
    return title


def _free_name(node: h5py.Group, data: Mapping[str, Any], k: int) -> str:
    """A name that neither ``node`` nor ``data`` holds, for a value to wait under."""
    while True:
        name = f".papyflow-new-{k}"
        if name not in node and name not in data:
            return name
        k += 1


def _hold_metadata(handle: h5py.File) -> None:
    """Keep changed metadata in memory until the next flush.

    By default HDF5 writes a changed B-tree node or object header to the file
    whenever its metadata cache wants room, in the middle of an operation, so a
    writer killed between two flushes can leave a file whose structures point
    at each other inconsistently. With evictions off, nothing but raw data
    (always in space that the last flush did not use) reaches the file
    between flushes. The cache then only grows: :meth:`HDF5StorageService.flush`
    reopens the file when it is larger than ``_CACHE_LIMIT``.
    """
    config = handle.id.get_mdc_config()
    config.incr_mode = 0  # automatic resizing off: a condition of turning evictions off
    config.flash_incr_mode = 0
    config.decr_mode = 0
    config.evictions_enabled = False
    handle.id.set_mdc_config(config)


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):  # file systems that cannot sync a folder
        _sync(folder or ".")


class HDF5StorageService:
    """Stores and loads items to and from the HDF5 file ``filename``.

    ``store(msg, stuff, *args, **kwargs)`` and ``load(msg, stuff, *args, **kwargs)``
    take a message of :mod:`~papyflow.storage.pypetconstants`; both accept
    ``filename=`` (switch to another file for this and later calls). A new file
    gets ``file_title`` as its ``title`` attribute.

    Raises:
        NoSuchServiceError: for a message that is not understood.
    """

    def __init__(self, filename: str | os.PathLike[str] | None = None,
                 file_title: str = "Experiment") -> None:
        _file_argument("HDF5StorageService: filename", filename)
        _check_title("HDF5StorageService: ", file_title)
        self.filename = None if filename is None else os.fspath(filename)
        self.file_title = file_title
        self._file: h5py.File | None = None
        self._groups: dict[str, h5py.Group] = {}  # groups of the open file, by path
        self._sessions = 0
        self._writable = True  # the mode of the open file, inside opened()
        self.autoflush = True
        """Whether a call inside :meth:`opened` flushes the file when it is done."""

    # -- the file ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # An open file does not travel: a copy in another process opens its own.
        return {"filename": self.filename, "file_title": self.file_title}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__init__(state["filename"], state["file_title"])  # type: ignore[misc]

    def _open(self, write: bool = True) -> h5py.File:
        """The file, opened to write (made when missing) or only to read."""
        if self.filename is None:
            raise ValueError("HDF5StorageService has no filename: give one to the "
                             "constructor or as filename=")
        if not write:
            if not os.path.exists(self.filename):
                raise FileNotFoundError(errno.ENOENT, "load: no such HDF5 file (loading "
                                        "makes no file)", self.filename)
            return _h5_file(self.filename, "r")
        handle = _h5_file(self.filename, "a", track_order=True)
        _hold_metadata(handle)
        if "title" not in handle.attrs:
            handle.attrs["title"] = self.file_title
            handle.flush()  # a new file is whole on disk before anything goes in
        return handle

    @contextlib.contextmanager
    def opened(self, write: bool = True) -> Iterator[HDF5StorageService]:
        """Keep the file open for the calls made inside (nestable); closed at the end.

        With ``write=False`` the file is opened only to read: it must exist, it is
        never changed, and a read-only file will do; a ``store`` inside raises
        :class:`PermissionError`. A session to write cannot be nested inside a
        session to read (:class:`ValueError`).
        """
        if self._sessions == 0:
            self._file = self._open(write)
            self._writable = write
        elif write and not self._writable:
            raise ValueError("opened(write=True) inside opened(write=False): the file "
                             "is open only to read")
        self._sessions += 1
        try:
            yield self
        finally:
            self._sessions -= 1
            if self._sessions == 0:
                self.close()

    def flush(self) -> None:
        """Write what HDF5 holds in memory to the file (when it is open)."""
        if self._file is not None:
            self._file.flush()
            if self._file.id.get_mdc_size()[2] > _CACHE_LIMIT:
                # Everything is clean now: start again with an empty cache (it never
                # evicts, see _hold_metadata, so it only grows).
                self.close()
                self._file = self._open(self._writable)

    def close(self) -> None:
        """Close the file (a later call opens it again)."""
        handle, self._file = self._file, None
        self._groups.clear()
        if handle is not None:
            handle.close()

    @contextlib.contextmanager
    def _using(self, kwargs: dict[str, Any], write: bool = True) -> Iterator[h5py.File]:
        """The file for one call: the open one inside :meth:`opened`, else opened for
        this call (to write, or only to read: loading neither makes nor changes a file)."""
        filename = kwargs.pop("filename", None)
        _file_argument("filename", filename)
        if filename is not None and os.fspath(filename) != self.filename:
            if self._sessions:
                raise ValueError("cannot switch files inside opened()")
            self.filename = os.fspath(filename)
        kwargs.pop("trajectory_name", None)  # pypet's; one tree per file here
        title = kwargs.pop("file_title", None)
        if title is not None:
            _check_title("", title)
            self.file_title = title
        if self._file is not None:
            if write and not self._writable:
                raise PermissionError(f"{self.filename}: cannot store inside "
                                      "opened(write=False): the file is open only to read")
            yield self._file
            if self.autoflush:
                self.flush()
            return
        handle = self._open(write)
        try:
            yield handle
        finally:
            self._groups.clear()
            handle.close()

    # -- the two calls ---------------------------------------------------------------------

    def store(self, msg: str, stuff_to_store: Any, *args: Any, **kwargs: Any) -> Any:
        """Store ``stuff_to_store`` as ``msg`` says (see the module and docs)."""
        message = self._message(self._STORE, "store", msg, stuff_to_store)
        if msg in (pc.BACKUP, pc.MERGE):  # whole-file operations manage the file themselves
            self._using_filename(kwargs)
            return message.call("store", msg, self, stuff_to_store, *args, **kwargs)
        with self._using(kwargs) as handle:
            return message.call("store", msg, self, handle, stuff_to_store, *args, **kwargs)

    def load(self, msg: str, stuff_to_load: Any, *args: Any, **kwargs: Any) -> Any:
        """Load into ``stuff_to_load`` as ``msg`` says; returns what was loaded."""
        message = self._message(self._LOAD, "load", msg, stuff_to_load)
        with self._using(kwargs, write=False) as handle:
            return message.call("load", msg, self, handle, stuff_to_load, *args, **kwargs)

    @staticmethod
    def _message(table: Mapping[str, _Message], verb: str, msg: object, item: object,
                 ) -> _Message:
        """The message ``msg`` of ``table``, checked to understand ``item``.

        Raises:
            NoSuchServiceError: no such message, or an item it does not understand.
        """
        message = table.get(msg) if isinstance(msg, str) else None
        if message is None:
            raise NoSuchServiceError(f"{verb}: no such message {msg!r} (understood: "
                                     f"{', '.join(sorted(table))})")
        message.check(verb, msg, item)  # type: ignore[arg-type]
        return message

    def _using_filename(self, kwargs: dict[str, Any]) -> None:
        with self._using(kwargs):
            pass  # creates the file when needed and applies filename=/file_title=

    # -- storing ---------------------------------------------------------------------------

    def _store_leaf(self, handle: h5py.File, leaf: Leaf, *, replace: bool = False) -> list[str]:
        """Write the leaf's data that the file does not hold yet (all of it when
        ``replace``); returns the names written.

        All or nothing: a failure removes what this call wrote and leaves what the
        file held. Values that replace others are written under temporary names
        and swapped in only once everything (the leaf's attributes too) is written.
        """
        where = leaf.v_full_name
        data = leaf._store()  # before the file changes: a leaf that fails here leaves nothing
        if not isinstance(data, Mapping):
            raise UnsupportedDataError(f"{where}: _store() returned a {type(data).__name__}, "
                                       "not a dict of the data by name")
        for name in data:
            _check_data_name(where, name)
        flags_of = getattr(leaf, "_store_flags", None)
        flags = dict(flags_of() if flags_of is not None else {})
        split_name(where)  # its own name too, before the file changes (a leaf of any class)
        comment = _check_comment(where, getattr(leaf, "v_comment", "") or "")
        # From the full name: the protocol promises no more (v_location, v_name are ours).
        location, _, leaf_name = where.rpartition(".")
        made: list[str] = []  # the groups above it this call makes
        parent = self._require_groups(handle, location, made)
        try:  # most leaves are new: try, rather than look first
            node = new_group(parent, leaf_name)
            created = True
            types: dict[str, Any] = {}
        except ValueError:  # the name exists
            created = False
            node = parent[leaf_name]
            if not _is_leaf(node):
                raise ItemExistsError(f"{where}: the file holds a group there, not a leaf"
                                      ) from None
            types = _leaf_info(node)["types"]
        written: list[str] = []
        temporary: dict[str, str] = {}  # data name -> where its new value waits
        old_comment = None if created else get_text(node, COMMENT_ATTR)
        try:
            for name, value in data.items():
                target = name
                if not created and name in node:
                    if not replace:
                        continue  # stored data are set in stone
                    target = temporary[name] = _free_name(node, data, len(temporary))
                written.append(name)
                types[name] = write_value(node, target, value, flags.get(name),
                                          f"{where}[{name!r}]")
            if comment:
                set_text(node, COMMENT_ATTR, comment, new=created)
            if written or created:
                info = {"kind": getattr(leaf, "kind", type(leaf).__name__), "types": types}
                set_text(node, LEAF_ATTR, json.dumps(info, separators=(",", ":")), new=created)
        except BaseException:
            if created:
                del parent[leaf_name]
                if made:  # and the groups made for it, now empty: the file is as it was
                    self._groups.clear()
                    for group_name in reversed(made):
                        del handle[_path(group_name)]
            else:
                for name in written:
                    target = temporary.get(name, name)
                    if target in node:
                        del node[target]
                if comment and get_text(node, COMMENT_ATTR) != old_comment:
                    if old_comment is None:
                        del node.attrs[COMMENT_ATTR]
                    else:
                        set_text(node, COMMENT_ATTR, old_comment)
            raise
        for name, target in temporary.items():
            del node[name]
            node.move(target, name)
        return written

    def _require_groups(self, handle: h5py.File, full_name: str,
                        made: list[str] | None = None) -> h5py.Group:
        """The group ``full_name``, made with its parents when missing (the full names
        of those made are appended to ``made``)."""
        known = self._groups.get(full_name) if handle is self._file else None
        if known is not None:
            return known
        group: h5py.Group = handle
        for part in split_name(full_name):
            if part in group:
                group = group[part]
                if _is_leaf(group):
                    raise ItemExistsError(f"{_full_name(group.name)}: a leaf, not a group")
            else:
                group = new_group(group, part)
                if made is not None:
                    made.append(_full_name(group.name))
        if handle is self._file:
            if len(self._groups) >= _GROUP_CACHE:
                self._groups.clear()
            self._groups[full_name] = group
        return group

    def _store_group(self, handle: h5py.File, group: Node) -> None:
        # Before the file changes: a group that fails here leaves nothing.
        split_name(group.v_full_name)
        comment = _check_comment(group.v_full_name, getattr(group, "v_comment", "") or "")
        node = self._require_groups(handle, group.v_full_name)
        if comment:
            set_text(node, COMMENT_ATTR, comment)

    def _store_node(self, handle: h5py.File, node: Node) -> None:
        if isinstance(node, Leaf) or hasattr(node, "_store"):
            self._store_leaf(handle, node)  # type: ignore[arg-type]
        else:
            self._store_group(handle, node)

    def _store_tree(self, handle: h5py.File, node: Node, recursive: bool = True) -> None:
        self._store_node(handle, node)
        if isinstance(node, Group):
            children = node.walk() if recursive else iter(node.children.values())
            for child in children:
                self._store_node(handle, child)

    def _store_list(self, handle: h5py.File, calls: Iterable[Any]) -> None:
        for message, item, args, kwargs in self._list_calls(handle, calls, "store"):
            message.run(self, handle, item, *args, **kwargs)

    def _remove(self, handle: h5py.File, node: Node, *, remove_empty_groups: bool = False,
                recursive: bool = False) -> None:
        path = _path(node.v_full_name)
        if path == "/":
            raise ValueError("REMOVE: cannot remove the root")
        if path not in handle:
            raise NotStoredError(f"REMOVE: {node.v_full_name!r} is not in the file")
        _check_node(handle, path, "REMOVE")
        target = handle[path]
        if not _is_leaf(target) and len(target) and not recursive:
            raise ValueError(f"REMOVE: group {node.v_full_name!r} is not empty "
                             "(give recursive=True)")
        self._groups.clear()
        del handle[path]
        parent = path.rpartition("/")[0]
        while remove_empty_groups and parent and len(handle[parent]) == 0:
            del handle[parent]
            parent = parent.rpartition("/")[0]

    # -- whole-file operations: a temporary copy, renamed over the file ------------------

    def _replace_file(self, change: Callable[[h5py.File], None]) -> None:
        """Apply ``change`` to a copy of the file and rename the copy over it."""
        assert self.filename is not None
        reopen = self._file is not None
        self.close()
        # Through a symbolic link, the file it points to is the one replaced (a rename
        # over the link would make it a plain file, and leave that file unchanged).
        real = os.path.realpath(self.filename)
        folder = os.path.dirname(real)
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(real)}.",
                                    suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            shutil.copyfile(real, temp)
            shutil.copymode(real, temp)
            with h5py.File(temp, "a") as handle:
                change(handle)
            _sync(temp)
            os.replace(temp, real)
            _sync_dir(folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)
            raise
        finally:
            if reopen:
                self._file = self._open(self._writable)

    def _backup(self, stuff: Any, backup_filename: str | os.PathLike[str] | None = None,
                ) -> str:
        """Copy the file to ``backup_filename`` (default: ``backup_<name>.hdf5`` beside
        it, ``<name>`` the item's name or the file's); returns the backup's name. A
        backup that would be the file itself is a ``ValueError``."""
        assert self.filename is not None
        _file_argument("BACKUP: backup_filename", backup_filename)
        self.flush()
        if backup_filename is None:
            name = getattr(stuff, "v_name", "") or os.path.splitext(
                os.path.basename(self.filename))[0]
            backup_filename = os.path.join(os.path.dirname(self.filename),
                                           f"backup_{name}.hdf5")
        target = os.fspath(backup_filename)
        if os.path.exists(target) and os.path.samefile(target, self.filename):
            # a copy renamed over the file itself: no backup, and inside opened() the
            # stores that follow would go to the replaced file, and be lost
            raise ValueError(f"BACKUP: the backup file {target!r} is the file itself; give "
                             "another backup_filename")
        folder = os.path.dirname(os.path.abspath(target))
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                    dir=folder)
        os.close(fd)
        try:
            shutil.copyfile(self.filename, temp)
            _sync(temp)
            os.replace(temp, target)
            _sync_dir(folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp)
            raise
        return target

    def _merge(self, stuff: Node, other_filename: str | os.PathLike[str] | None = None,
               other_name: str = "", *, rename_dict: Mapping[str, str] | None = None,
               move_nodes: bool = False, delete_other: bool = False) -> list[str]:
        """Put every leaf below ``other_name`` (of ``other_filename``, or of this file)
        below ``stuff``; returns the full names of the leaves merged in.

        A leaf ``other_name.a.b`` becomes ``<stuff>.a.b``, or what ``rename_dict``
        maps its full name to. ``move_nodes`` moves instead of copying and
        ``delete_other`` removes the merged tree afterwards (both within one file).
        The file is changed on a copy, renamed over it: all or nothing.
        """
        _file_argument("MERGE: other_filename", other_filename)
        if not isinstance(other_name, str):
            raise TypeError(f"MERGE: other_name must be a full name (str), got {other_name!r}")
        if rename_dict is not None and (not isinstance(rename_dict, Mapping) or not all(
                type(k) is str and type(v) is str for k, v in rename_dict.items())):
            raise TypeError("MERGE: rename_dict must map full names to full names (str), "
                            f"got {rename_dict!r}")
        same = other_filename is None or os.path.abspath(other_filename) == \
            os.path.abspath(self.filename or "")
        if (move_nodes or delete_other) and not same:
            raise ValueError("MERGE: move_nodes and delete_other need the same file")
        renames = dict(rename_dict or {})
        source_path = _path(other_name)
        if delete_other and source_path != "/" and _below(_path(stuff.v_full_name), source_path):
            raise ValueError(f"MERGE: {stuff.v_full_name!r} is inside the merged tree "
                             f"{other_name!r}, which delete_other would remove with what it "
                             f"merged")
        merged: list[str] = []

        def change(handle: h5py.File) -> None:
            other = handle if same or other_filename is None else \
                stack.enter_context(_h5_file(other_filename, "r"))
            if source_path not in other:
                raise NotStoredError(f"MERGE: {other_name!r} is not in the other file")
            _check_node(other, source_path, "MERGE: other_name")
            leaves: list[str] = []
            other[source_path].visititems(
                lambda name, node: leaves.append(node.name) if _is_leaf(node) else None)
            if _is_leaf(other[source_path]):
                leaves = [source_path]
            for leaf_path in leaves:
                old = _full_name(leaf_path)
                relative = leaf_path[len(source_path):].strip("/").replace("/", ".")
                new = renames.get(old) or ".".join(p for p in (stuff.v_full_name, relative) if p)
                target = _path(new)
                if target in handle:
                    raise ItemExistsError(f"MERGE: {new!r} is already in the file")
                parent = self._require_groups(handle, new.rpartition(".")[0])
                if move_nodes:
                    handle.move(leaf_path, target)
                else:
                    other.copy(other[leaf_path], parent, name=new.rpartition(".")[2])
                merged.append(new)
            if delete_other and source_path in handle and source_path != "/":
                del handle[source_path]

        with contextlib.ExitStack() as stack:
            self._replace_file(change)
        return merged

    # -- loading ---------------------------------------------------------------------------

    def _load_leaf(self, handle: h5py.File, leaf: Leaf,
                   load_only: str | Iterable[str] | None = None) -> Leaf:
        path = _path(leaf.v_full_name)
        if path not in handle or not _is_leaf(handle[path]):
            raise NotStoredError(f"LEAF: {leaf.v_full_name!r} is not in the file")
        node = handle[path]
        if load_only is None:
            names = list(node)
        elif isinstance(load_only, str):
            names = [load_only]
        elif isinstance(load_only, Iterable) and not isinstance(load_only, bytes | Mapping):
            names = list(load_only)
            if any(type(name) is not str for name in names):
                raise TypeError(f"LEAF: load_only holds a name that is not a str: {names!r}")
        else:
            raise TypeError("LEAF: load_only must be a data name or an iterable of data names "
                            f"(str), got {load_only!r}")
        missing = [name for name in names if name not in node]
        if missing:
            raise NotStoredError(f"LEAF: {leaf.v_full_name!r} holds no {missing!r} "
                                 f"(it holds {sorted(node)!r})")
        types = _leaf_info(node)["types"]
        leaf._load({name: read_value(node[name], types.get(name)) for name in names})
        leaf.v_comment = get_text(node, COMMENT_ATTR) or ""
        return leaf

    def _load_group(self, handle: h5py.File, group: Node) -> Node:
        path = _path(group.v_full_name)
        if path not in handle:
            raise NotStoredError(f"GROUP: {group.v_full_name!r} is not in the file")
        group.v_comment = get_text(handle[path], COMMENT_ATTR) or ""
        return group

    def _node_from(self, handle: h5py.File, full_name: str, load_data: bool) -> Node:
        stored = handle[_path(full_name)]
        if _is_leaf(stored):
            kind = leaf_type(_leaf_info(stored)["kind"])
            leaf = kind.__new__(kind)
            Leaf.__init__(leaf, full_name)  # the data come from the file, not a constructor
            if load_data:
                self._load_leaf(handle, leaf)
            else:
                leaf.v_comment = get_text(stored, COMMENT_ATTR) or ""
            return leaf
        return Group(full_name, comment=get_text(stored, COMMENT_ATTR) or "")

    def _load_tree(self, handle: h5py.File, parent: Group, child_name: str | None = None,
                   recursive: bool = True, load_data: bool = True) -> Node:
        """Load the child ``child_name`` of ``parent`` (and everything below it when
        ``recursive``) and add it to ``parent``; without ``child_name``, ``parent``'s
        own children. Returns the node loaded (``parent`` without ``child_name``)."""
        if child_name is not None:
            full_name = parent.child_name(child_name)
            if _path(full_name) not in handle:
                raise NotStoredError(f"TREE: {full_name!r} (child {child_name!r} of "
                                     f"{parent.v_full_name or 'the root'!r}) is not in the file")
            _check_node(handle, _path(full_name), "TREE")
            node = self._node_from(handle, full_name, load_data)
            parent.add(node)
            if recursive and isinstance(node, Group):
                self._load_children(handle, node, True, load_data)
            return node
        if _path(parent.v_full_name) not in handle:
            raise NotStoredError(f"TREE: {parent.v_full_name!r} is not in the file")
        _check_node(handle, _path(parent.v_full_name), "TREE")
        if _is_leaf(handle[_path(parent.v_full_name)]):
            raise ValueError(f"TREE: {parent.v_full_name!r} is a leaf, which has no children: "
                             f"load it with LEAF")
        self._load_children(handle, parent, recursive, load_data)
        return parent

    def _load_children(self, handle: h5py.File, group: Group, recursive: bool,
                       load_data: bool) -> None:
        stored = handle[_path(group.v_full_name)]
        for name in stored:
            child = group.children.get(name) or group.add(
                self._node_from(handle, group.child_name(name), load_data))
            if isinstance(child, Leaf) and load_data and not child.data:
                self._load_leaf(handle, child)
            if recursive and isinstance(child, Group):
                self._load_children(handle, child, True, load_data)

    def _load_list(self, handle: h5py.File, calls: Iterable[Any]) -> list[Any]:
        return [message.run(self, handle, item, *args, **kwargs)
                for message, item, args, kwargs in self._list_calls(handle, calls, "load")]

    def _list_calls(self, handle: h5py.File, calls: Iterable[Any], verb: str,
                    enclosing: tuple[int, ...] = (),
                    ) -> list[tuple[_Message, Any, tuple[Any, ...], dict[str, Any]]]:
        """The calls of a LIST, each checked (its form, message, item and arguments)
        before any runs, those of a LIST inside too: a malformed list changes nothing.
        ``enclosing``: the ids of the lists this one is inside."""
        table, refused = (self._STORE, (pc.BACKUP, pc.MERGE)) if verb == "store" \
            else (self._LOAD, (pc.LIST,))
        if id(calls) in enclosing:
            raise ValueError("LIST: a list of calls that contains itself")
        checked = []
        for index, call in enumerate(calls):
            msg, item, args, kwargs = _unpack_call(call, index)
            if msg in refused:
                raise NoSuchServiceError(f"LIST: {msg} cannot be part of a list")
            message = self._message(table, f"{verb} LIST", msg, item)
            message.check_arguments(f"LIST call {index}: {verb}", msg, self, handle, item,
                                    *args, **kwargs)
            if msg == pc.LIST:  # a list inside: its calls are checked now too, and kept
                # in a list to run (an iterator would be used up by the check)
                item = item if isinstance(item, list | tuple) else list(item)
                self._list_calls(handle, item, verb, (*enclosing, id(calls)))
            checked.append((message, item, args, kwargs))
        return checked

    _STORE: ClassVar[dict[str, _Message]] = {
        pc.LEAF: _Message(_store_leaf, _is_leaf_to_store, _LEAF_TO_STORE),
        pc.UPDATE_LEAF: _Message(
            lambda self, handle, leaf: self._store_leaf(handle, leaf, replace=True),
            _is_leaf_to_store, _LEAF_TO_STORE),
        pc.GROUP: _Message(_store_group, _is_group, _A_GROUP),
        pc.TREE: _Message(_store_tree, _is_node, _A_NODE),
        pc.LIST: _Message(_store_list, _is_calls, _CALLS),
        pc.REMOVE: _Message(_remove, _is_node, _A_NODE),
        pc.BACKUP: _Message(_backup, _anything, "anything"),
        pc.MERGE: _Message(_merge, _is_node, _A_NODE),
    }
    _LOAD: ClassVar[dict[str, _Message]] = {
        pc.LEAF: _Message(_load_leaf, _is_leaf_to_load, _LEAF_TO_LOAD),
        pc.GROUP: _Message(_load_group, _is_group, _A_GROUP),
        pc.TREE: _Message(_load_tree, lambda item: isinstance(item, Group),
                          "the parent Group of the nodes to load"),
        pc.LIST: _Message(_load_list, _is_calls, _CALLS),
    }


def _unpack_call(call: Any, index: int) -> tuple[str, Any, tuple[Any, ...], dict[str, Any]]:
    """``(msg, item)``, ``(msg, item, args)`` or ``(msg, item, args, kwargs)``, the
    ``index``-th call of a LIST."""
    if not isinstance(call, tuple | list) or not 2 <= len(call) <= 4:
        raise NoSuchServiceError(f"LIST: expected (msg, item, args, kwargs), got {call!r}")
    msg, item, *rest = call
    args: Any = rest[0] if rest else ()
    kwargs: Any = rest[1] if len(rest) > 1 else {}
    if not isinstance(args, tuple | list):
        raise TypeError(f"LIST call {index}: args must be a tuple or list, got {args!r}")
    if not isinstance(kwargs, Mapping) or not all(type(key) is str for key in kwargs):
        raise TypeError(f"LIST call {index}: kwargs must be a mapping of names, got {kwargs!r}")
    return msg, item, tuple(args), dict(kwargs)


def _file_argument(where: str, value: object) -> None:
    """A file name argument: ``None`` or a path."""
    if value is not None and not isinstance(value, str | os.PathLike):
        raise TypeError(f"{where} must be a path (str or os.PathLike) or None, got {value!r}")
