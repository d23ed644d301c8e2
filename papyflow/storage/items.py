"""The items a storage service stores: leaves (results, parameters) and groups.

A node has a *full name*, dots between the parts (``results.run_0.mean``),
which is its path in the file (``/results/run_0/mean``); ``""`` is the root.
The service talks to a leaf through a small protocol, the one pypet's
parameters and results follow:

``v_full_name``
    where the leaf lives;
``_store() -> dict``
    the data to write, by name (one dataset, or group, per name);
``_store_flags() -> dict``
    optional storage flags by data name (the rest are inferred);
``_load(data: dict)``
    takes what was read back (all of it, or the names asked for with ``load_only``);
``v_comment``
    a text written as an attribute.

Any object with these members can be stored with ``LEAF``; :class:`Result` and
:class:`Parameter` are ready-made ones. A :class:`Group` holds children by
name and is what ``GROUP`` and ``TREE`` store and load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

__all__ = ["Group", "Leaf", "Node", "Parameter", "Result", "leaf_type", "split_name"]

_PART = re.compile(r"[^./\0]+")


def split_name(full_name: str) -> tuple[str, ...]:
    """The parts of a dotted full name; ``""`` is the root (no parts).

    Raises:
        ValueError: a part is empty, holds a ``/`` or a NUL (HDF5 would cut the
            name there), or is not UTF-8 encodable.
    """
    if full_name == "":
        return ()
    parts = tuple(full_name.split("."))
    bad = [part for part in parts if not _PART.fullmatch(part) or utf8_problem(part) is not None]
    if bad:
        raise ValueError(f"bad full name {full_name!r}: parts must be non-empty text in "
                         f"UTF-8 with no '/' or NUL (got {bad[0]!r})")
    return parts


def utf8_problem(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8, as HDF5 names, attributes and strings
    are (``None`` when it can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.reason
    return None


class Node:
    """A named place in the tree: ``v_full_name``, ``v_name`` (the last part),
    ``v_location`` (the parent's full name) and a ``v_comment``."""

    __slots__ = ("v_comment", "v_full_name")

    def __init__(self, full_name: str, comment: str = "") -> None:
        split_name(full_name)
        self.v_full_name = full_name
        self.v_comment = comment

    @property
    def v_name(self) -> str:
        """The last part of the full name (``""`` for the root)."""
        return self.v_full_name.rpartition(".")[2]

    @property
    def v_location(self) -> str:
        """The full name of the parent group."""
        return self.v_full_name.rpartition(".")[0]

    @property
    def v_is_leaf(self) -> bool:
        """Whether this is a leaf (data) rather than a group."""
        return False


_LEAF_TYPES: dict[str, type[Leaf]] = {}


def leaf_type(kind: str) -> type[Leaf]:
    """The leaf class registered under ``kind`` (what the file records); :class:`Result`
    for an unknown kind."""
    return _LEAF_TYPES.get(kind, Result)


class Leaf(Node):
    """A node with data: a dict of named values, and storage flags for some of them.

    Subclasses are registered by their ``kind`` (the class name unless set), which
    the file records so that ``TREE`` loading makes the same class again.
    """

    __slots__ = ("_data", "_flags")
    kind: ClassVar[str] = "Leaf"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            cls.kind = cls.__name__
        _LEAF_TYPES[cls.kind] = cls

    def __init__(self, full_name: str, data: Mapping[str, Any] | None = None, *,
                 flags: Mapping[str, str] | None = None, comment: str = "") -> None:
        super().__init__(full_name, comment)
        if not self.v_name:
            raise ValueError("a leaf cannot be the root: give it a full name")
        self._data: dict[str, Any] = dict(data or {})
        self._flags: dict[str, str] = dict(flags or {})

    @property
    def v_is_leaf(self) -> bool:
        return True

    @property
    def data(self) -> dict[str, Any]:
        """The values by name (the dict itself, not a copy)."""
        return self._data

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def set_flag(self, name: str, flag: str) -> None:
        """Store the value ``name`` with the storage ``flag`` (see ``pypetconstants``)."""
        self._flags[name] = flag

    # -- the storage protocol --------------------------------------------------------------

    def _store(self) -> dict[str, Any]:
        return dict(self._data)

    def _store_flags(self) -> dict[str, str]:
        return dict(self._flags)

    def _load(self, data: Mapping[str, Any]) -> None:
        self._data.update(data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.v_full_name!r}, {sorted(self._data)!r})"


class Result(Leaf):
    """A result: any number of named values.

    ``Result("results.run_0.mean", 3.5)`` keeps ``3.5`` under the result's own
    name (``mean``); keyword arguments add more names.
    """

    __slots__ = ()

    def __init__(self, full_name: str, *value: Any, flags: Mapping[str, str] | None = None,
                 comment: str = "", **data: Any) -> None:
        super().__init__(full_name, data, flags=flags, comment=comment)
        if len(value) > 1:
            raise TypeError(f"Result takes at most one positional value, got {len(value)}")
        if value:
            self._data = {self.v_name: value[0], **self._data}


class Parameter(Leaf):
    """A parameter: one value, kept under the name ``data``."""

    __slots__ = ()

    def __init__(self, full_name: str, value: Any = None, *,
                 flags: Mapping[str, str] | None = None, comment: str = "") -> None:
        super().__init__(full_name, {} if value is None else {"data": value}, flags=flags,
                         comment=comment)

    @property
    def value(self) -> Any:
        """The parameter's value (``None`` before it is set or loaded)."""
        return self._data.get("data")


class Group(Node):
    """A group: children by name (groups and leaves).

    ``add`` places a node whose full name is directly below this group; ``walk``
    yields every node below, parents before children.
    """

    __slots__ = ("children",)

    def __init__(self, full_name: str = "", children: Mapping[str, Node] | None = None, *,
                 comment: str = "") -> None:
        super().__init__(full_name, comment)
        self.children: dict[str, Node] = {}
        for child in (children or {}).values():
            self.add(child)

    def add(self, node: Node) -> Node:
        """Add ``node`` as a child and return it.

        Raises:
            ValueError: ``node`` is not directly below this group.
        """
        if node.v_location != self.v_full_name or not node.v_name:
            raise ValueError(f"{node.v_full_name!r} is not a child of "
                             f"{self.v_full_name or 'the root'!r}")
        self.children[node.v_name] = node
        return node

    def child_name(self, name: str) -> str:
        """The full name of a child called ``name``."""
        return f"{self.v_full_name}.{name}" if self.v_full_name else name

    def walk(self) -> Iterator[Node]:
        """Every node below this group, parents first, children in insertion order."""
        for child in self.children.values():
            yield child
            if isinstance(child, Group):
                yield from child.walk()

    def __getitem__(self, name: str) -> Node:
        """A child, or a node further below by a dotted relative name."""
        node: Node = self
        for part in name.split("."):
            if not isinstance(node, Group):
                raise KeyError(name)
            node = node.children[part]
        return node

    def __repr__(self) -> str:
        return f"Group({self.v_full_name!r}, {list(self.children)!r})"


_LEAF_TYPES[Leaf.kind] = Leaf
