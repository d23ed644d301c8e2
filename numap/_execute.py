"""Evaluating one batch of items: the same code in a worker thread and a worker process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._imports import apply_imports

__all__ = ["ItemFailure", "TaskSpec", "run_batch"]


@dataclass(slots=True)
class TaskSpec:
    """A task's function and constant arguments, sent to a worker once."""

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def caller(self) -> Callable[[Any], Any]:
        """A one-argument callable: ``func(item, *args, **kwargs)``."""
        apply_imports(self.func)
        func, args, kwargs = self.func, self.args, self.kwargs
        if not args and not kwargs:
            return func
        return lambda item: func(item, *args, **kwargs)


@dataclass(slots=True)
class ItemFailure:
    """The item at ``position`` of a batch raised ``exc``.

    ``traceback`` is the formatted traceback when the failure crossed a process
    boundary (the exception object then lost its own), else ``None``.
    """

    position: int
    exc: BaseException
    traceback: str | None = None


_STOPPED = ("the function raised StopIteration (it must not escape a mapped function: "
            "it would end the map of its batch)")


def run_batch(call: Callable[[Any], Any], items: Iterable[Any], take: bool = False
              ) -> tuple[list[Any], list[ItemFailure], float]:
    """Evaluate ``call`` on each item, in order.

    Returns the values (``None`` where an item failed), the failures and the
    seconds spent: one value per item. An exception stops nothing: evaluation
    resumes with the next item, and no item is evaluated twice. A
    ``StopIteration`` raised by ``call`` fails its item with a ``RuntimeError``
    (as in a generator, PEP 479) instead of ending the batch early.

    With ``take``, a ``call`` that has a ``call_taking(items, position)`` method
    is given each item through it, out of the list (``items`` is emptied as it
    goes): nothing here then holds the item while it is evaluated, so ``call``
    may let it go before it returns (see :class:`papyflow._fuse.Fused`).
    """
    if not isinstance(items, list):
        items = list(items)
    taking = getattr(call, "call_taking", None) if take else None
    if taking is not None:
        return _run_taking(taking, items)
    count = len(items)
    values: list[Any] = []
    failures: list[ItemFailure] = []
    it = iter(items)
    began = time.perf_counter()
    while True:
        try:
            # extend keeps what map produced before an exception, and the
            # shared iterator has already moved past the failing item.
            values.extend(map(call, it))
        except BaseException as exc:  # noqa: BLE001 - every failure is the item's result
            failures.append(ItemFailure(len(values), exc))
            values.append(None)
            continue
        if len(values) == count:
            break
        # map ended early: the function raised StopIteration, which map takes for
        # its own end (the item was taken from ``it`` already).
        failures.append(ItemFailure(len(values), RuntimeError(_STOPPED)))
        values.append(None)
    return values, failures, time.perf_counter() - began


def _run_taking(taking: Callable[[list[Any], int], Any], items: list[Any]
                ) -> tuple[list[Any], list[ItemFailure], float]:
    """``run_batch`` through ``call_taking``: the same values, failures and seconds."""
    values: list[Any] = []
    failures: list[ItemFailure] = []
    began = time.perf_counter()
    for position in range(len(items)):
        try:
            values.append(taking(items, position))
        except BaseException as exc:  # noqa: BLE001 - every failure is the item's result
            if isinstance(exc, StopIteration):  # as the other loop reports it
                exc = RuntimeError(_STOPPED)
            failures.append(ItemFailure(position, exc))
            values.append(None)
    return values, failures, time.perf_counter() - began
