"""Compressing a log directory: every ``<source>_<time stamp>.npy`` into ``<source>_data_log.npz``.

An ``.npz`` file is a ZIP archive of ``.npy`` files, so each log file is copied
into the archive as it is (deflated), one at a time: memory use does not grow
with the size of the log. The archive's keys are the files' stems,
``<source>_<time stamp>`` (``np.load(path)[key]`` gives the ``uint8`` array).
An archive that already exists is merged into the new one, so compressing twice
(after a second run of the logger) keeps everything. Each archive is written to
a temporary name and renamed; the ``.npy`` files are removed
(``remove_sources=True``) only after their archive has its final name. One
call at a time works in a directory (an exclusive ``flock`` on it, across
threads and processes): two at once could each merge an archive the other
replaces. A temporary archive that a killed call left is removed by the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import numbers
import os
import re
import secrets
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import DuplicatePackageError
from .package import parse_file_name

__all__ = ["archive_name", "compress_logs"]


def archive_name(source_id: int) -> str:
    """``<source_id>_data_log.npz``."""
    return f"{source_id}_data_log.npz"


# A temporary archive: ``.<archive>.<pid>.<hex>.tmp``.
_TEMPORARY = re.compile(r"\.\d+_data_log\.npz\.\d+\.[0-9a-f]+\.tmp")


# The descriptors this process holds its compressions' locks by.
_HELD: set[int] = set()


def _let_locks_go() -> None:
    """In a forked child: close the inherited descriptors of the parent's locks (a lock
    lasts while any copy of its descriptor is open, so the child would keep it)."""
    for handle in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(handle)
    _HELD.clear()


os.register_at_fork(after_in_child=_let_locks_go)


@contextlib.contextmanager
def _alone(directory: Path) -> Iterator[None]:
    """Hold ``directory`` for one compression (an exclusive ``flock`` on it)."""
    handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    _HELD.add(handle)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        _HELD.discard(handle)
        os.close(handle)  # the lock goes with it


def _remove_leftovers(directory: Path) -> None:
    """Remove the temporary archives of calls that were killed (none runs now)."""
    with os.scandir(directory) as entries:
        names = [entry.name for entry in entries if _TEMPORARY.fullmatch(entry.name)]
    for name in names:
        with contextlib.suppress(OSError):  # gone, or a read-only folder: it stays
            (directory / name).unlink()


def _sources(directory: Path) -> dict[int, list[tuple[int, Path]]]:
    groups: dict[int, list[tuple[int, Path]]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_file_name(entry.name)
            if parsed is not None and entry.is_file():
                groups.setdefault(parsed[0], []).append((parsed[1], Path(entry.path)))
    return groups


def _write_archive(target: Path, files: list[tuple[int, Path]], level: int | None
                   ) -> list[tuple[int, Path]]:
    """Write ``files`` into ``target``, merged with what it holds; returns the files
    left out: those whose name the archive holds with other contents (a package of
    an earlier run, or one archived and removed before, with the same source and
    time stamp), which stay where they are and never replace the archived one."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    by_name = {path.name: (stamp, path) for stamp, path in files}
    clashes: list[tuple[int, Path]] = []
    try:
        # strict_timestamps=False: a file stamped before 1980 or after 2107 (a clock
        # never set) is archived with the nearest date a ZIP archive can hold.
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                             compresslevel=level, strict_timestamps=False) as archive:
            if target.exists():
                with _opened(target) as old:
                    try:
                        for info in old.infolist():
                            if info.filename in by_name:
                                if _same(old, info, by_name[info.filename][1]):
                                    continue  # the same package: the .npy file is taken
                                clashes.append(by_name.pop(info.filename))
                            with old.open(info) as src, archive.open(
                                    info.filename, "w", force_zip64=True) as dst:
                                shutil.copyfileobj(src, dst, 1 << 20)
                    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                        raise zipfile.BadZipFile(_unreadable(target, error)) from error
            for _, path in sorted(by_name.values()):
                archive.write(path, arcname=path.name)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return clashes


@contextlib.contextmanager
def _opened(target: Path) -> Iterator[zipfile.ZipFile]:
    """The archive ``target``, to read; one that is not a ZIP archive is an error
    that names it (it stays as it is, and so do the ``.npy`` files)."""
    try:
        archive = zipfile.ZipFile(target)
    except zipfile.BadZipFile as error:
        raise zipfile.BadZipFile(_unreadable(target, error)) from None
    with archive:
        yield archive


def _unreadable(target: Path, error: BaseException) -> str:
    return (f"{target}: the archive to merge the new files into is not a readable .npz "
            f"({error}); move it away and compress again")


def _same(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bool:
    """Whether the member ``info`` of ``archive`` holds the bytes of the file ``path``."""
    if info.file_size != path.stat().st_size:
        return False
    with archive.open(info) as member, open(path, "rb") as file:
        while True:
            chunk = member.read(1 << 20)
            if chunk != file.read(len(chunk) or 1):
                return False
            if not chunk:
                return True


def compress_logs(directory: str | os.PathLike[str], remove_sources: bool = False,
                  compresslevel: int | None = None) -> dict[int, Path]:
    """Compress the ``.npy`` log files of ``directory``, one archive per source.

    Returns ``{source_id: archive path}`` for the sources that had files. With
    ``remove_sources``, the ``.npy`` files that went into an archive are deleted.

    A file whose name the archive holds already with other contents (the same
    source and time stamp logged again after its file was archived and removed)
    never replaces the archived package: it is left out and kept, the rest is
    compressed, and :class:`DuplicatePackageError` then names it (the first such
    file; ``clashes`` on the error lists them all as ``(source_id, time_stamp,
    path)``).
    """
    if not isinstance(remove_sources, bool | np.bool_):
        raise TypeError(f"compress_logs: remove_sources must be True or False, got "
                        f"{remove_sources!r}")
    if compresslevel is not None and (
            isinstance(compresslevel, bool | np.bool_)
            or not isinstance(compresslevel, numbers.Integral)
            or not -1 <= compresslevel <= 9):
        raise ValueError(f"compress_logs: compresslevel must be None or an int from -1 "
                         f"(zlib's default) to 9, got {compresslevel!r}")
    remove_sources = bool(remove_sources)
    compresslevel = None if compresslevel is None else int(compresslevel)
    directory = Path(directory)
    with _alone(directory):
        _remove_leftovers(directory)
        return _compress(directory, remove_sources, compresslevel)


def _compress(directory: Path, remove_sources: bool, compresslevel: int | None
              ) -> dict[int, Path]:
    archives: dict[int, Path] = {}
    clashes: list[tuple[int, int, Path]] = []
    for source, files in sorted(_sources(directory).items()):
        target = directory / archive_name(source)
        left_out = _write_archive(target, files, compresslevel)
        clashes.extend((source, stamp, path) for stamp, path in left_out)
        if remove_sources:
            kept = {path for _, path in left_out}
            for _, path in files:
                if path not in kept:
                    path.unlink(missing_ok=True)
        archives[source] = target
    if clashes:
        source, stamp, path = clashes[0]
        error = DuplicatePackageError(source, stamp, str(path), archive_name(source))
        error.clashes = clashes
        raise error
    return archives
