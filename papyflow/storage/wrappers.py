"""Wrappers around a storage service: one that takes a lock, one that does nothing."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["LazyStorageService", "LockWrapper", "StorageService"]


class StorageService(Protocol):
    """What every storage service offers."""

    def store(self, msg: str, stuff_to_store: Any, *args: Any, **kwargs: Any) -> Any: ...

    def load(self, msg: str, stuff_to_load: Any, *args: Any, **kwargs: Any) -> Any: ...


class _Lock(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...


class LockWrapper:
    """``storage_service`` with every ``store`` and ``load`` made under ``lock``.

    Give it a lock that every process shares (``multiprocessing.Lock()``, or a
    ``Manager().Lock()``). The HDF5 service opens the file and closes it inside
    each call, so the next process to take the lock finds it complete.
    """

    def __init__(self, storage_service: StorageService, lock: _Lock) -> None:
        # checked now: else every call would fail, far from here, with Python's words
        if not (callable(getattr(storage_service, "store", None))
                and callable(getattr(storage_service, "load", None))):
            raise TypeError("LockWrapper: storage_service must have store() and load(), got "
                            f"{type(storage_service).__name__}")
        if not (hasattr(lock, "__enter__") and hasattr(lock, "__exit__")):
            raise TypeError("LockWrapper: lock must be a lock (a context manager, such as "
                            f"multiprocessing.Lock()), got {type(lock).__name__}")
        self.storage_service = storage_service
        self.lock = lock

    def store(self, *args: Any, **kwargs: Any) -> Any:
        """Store under the lock."""
        with self.lock:
            return self.storage_service.store(*args, **kwargs)

    def load(self, *args: Any, **kwargs: Any) -> Any:
        """Load under the lock."""
        with self.lock:
            return self.storage_service.load(*args, **kwargs)


class LazyStorageService:
    """Accepts every request and does nothing (for debugging and for dry runs)."""

    def store(self, *args: Any, **kwargs: Any) -> None:
        """Store nothing."""

    def load(self, *args: Any, **kwargs: Any) -> None:
        """Load nothing."""
