"""Compressing a log directory: every ``<source>_<time stamp>.npy`` into ``<source>_data_log.npz``.

An ``.npz`` file is a ZIP archive of ``.npy`` files, so each log file is copied
into the archive as it is (deflated), one at a time: memory use does not grow
with the size of the log. The archive's keys are the files' stems,
``<source>_<time stamp>`` (``np.load(path)[key]`` gives the ``uint8`` array).
An archive that already exists is merged into the new one, so compressing twice
(after a second run of the logger) keeps everything. Each archive is written to
a temporary name and renamed; the ``.npy`` files are removed
(``remove_sources=True``) only after their archive has its final name.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from pathlib import Path

from .package import parse_file_name

__all__ = ["archive_name", "compress_logs"]


def archive_name(source_id: int) -> str:
    """``<source_id>_data_log.npz``."""
    return f"{source_id}_data_log.npz"


def _sources(directory: Path) -> dict[int, list[tuple[int, Path]]]:
    groups: dict[int, list[tuple[int, Path]]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_file_name(entry.name)
            if parsed is not None and entry.is_file():
                groups.setdefault(parsed[0], []).append((parsed[1], Path(entry.path)))
    return groups


def _write_archive(target: Path, files: list[tuple[int, Path]], level: int | None) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    names = {path.name for _, path in files}
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, allowZip64=True,
                             compresslevel=level) as archive:
            if target.exists():
                with zipfile.ZipFile(target) as old:
                    for info in old.infolist():
                        if info.filename in names:
                            continue  # the same package: the .npy file is taken
                        with old.open(info) as src, archive.open(
                                info.filename, "w", force_zip64=True) as dst:
                            shutil.copyfileobj(src, dst, 1 << 20)
            for _, path in sorted(files):
                archive.write(path, arcname=path.name)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def compress_logs(directory: str | os.PathLike[str], remove_sources: bool = False,
                  compresslevel: int | None = None) -> dict[int, Path]:
    """Compress the ``.npy`` log files of ``directory``, one archive per source.

    Returns ``{source_id: archive path}`` for the sources that had files. With
    ``remove_sources``, the ``.npy`` files that went into an archive are deleted.
    """
    directory = Path(directory)
    archives: dict[int, Path] = {}
    for source, files in sorted(_sources(directory).items()):
        target = directory / archive_name(source)
        _write_archive(target, files, compresslevel)
        if remove_sources:
            for _, path in files:
                path.unlink(missing_ok=True)
        archives[source] = target
    return archives
