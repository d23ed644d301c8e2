"""Temporary files that become cache files by a rename, and the cleaning of stale ones.

A writer creates every file under a temporary name beside its final name::

    <base>.tmp.<host>.<pid>.<token>.<piece>.<suffix>

``host`` is this machine's name (dots replaced), ``pid`` the writing process,
``token`` random, so that writers never collide. A temporary file is *stale*
when its writer is gone: on this host, when no process ``pid`` exists any
more; from another host (a shared file system), when the file has not been
modified for :data:`STALE_AFTER` seconds. Readers delete stale files they
come across; a file that is not stale is left alone whatever its age.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import time

from .._processes import alive

__all__ = [
    "STALE_AFTER",
    "TempName",
    "fsync_dir",
    "is_stale",
    "new_session",
    "parse_temp",
    "remove_quietly",
]

STALE_AFTER = 3600.0
"""Seconds without modification after which a temporary file of another host is stale."""

_TEMP = re.compile(r"tmp\.(?P<host>[^.]+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]+)\.(?P<rest>.+)")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "localhost"


def new_session() -> str:
    """The middle of the temporary names of one writer: ``tmp.<host>.<pid>.<token>``."""
    return f"tmp.{_host()}.{os.getpid()}.{secrets.token_hex(6)}"


class TempName:
    """What a temporary file's name says about its writer."""

    __slots__ = ("host", "pid", "rest", "token")

    def __init__(self, host: str, pid: int, token: str, rest: str) -> None:
        self.host = host
        self.pid = pid
        self.token = token
        self.rest = rest


def parse_temp(suffix: str) -> TempName | None:
    """Parse what follows ``<base>.`` in a file name; ``None`` when it is no temporary name."""
    match = _TEMP.fullmatch(suffix)
    if match is None:
        return None
    return TempName(match["host"], int(match["pid"]), match["token"], match["rest"])


def is_stale(path: str, name: TempName, now: float | None = None) -> bool:
    """Whether the temporary file ``path`` was left by a writer that is gone."""
    if name.host == _host():
        return not alive(name.pid)
    try:
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    return (time.time() if now is None else now) - modified > STALE_AFTER


def fsync_dir(folder: str) -> None:
    """Make the renames and removals in ``folder`` durable."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse to sync a folder
        pass
    finally:
        os.close(fd)


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
