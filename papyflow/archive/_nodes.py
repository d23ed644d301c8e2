"""The pieces an archive is built from: literals, nodes, names and the render context.

Building an archive turns the inserted objects into a graph of :class:`Node` s, one
per object whose identity matters, with :class:`Literal` s (numbers, strings,
tuples of them) as leaves. A node does not hold text; it holds functions that make
text from its children's expressions, so that nothing is ever produced by textual
replacement (the old mmf archive's weak spot). Rendering happens once every node
knows whether it gets a variable and which name; :class:`Context` then hands out
the module aliases, builtin names and external-array slots the text refers to.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import struct
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import EllipsisType, NoneType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ATOM_TYPES",
    "Context",
    "Literal",
    "Named",
    "Namer",
    "Node",
    "Refuse",
    "as_base",
    "literal_of",
    "name_problem",
    "plain_nan",
    "valid_name",
]

#: Types written as a literal of their own; their identity never matters.
ATOM_TYPES = frozenset({NoneType, bool, int, float, complex, str, bytes, EllipsisType})

# Nested literal tuples deeper than this become nodes, so the text stays parseable.
_LITERAL_DEPTH = 8

# Ints this large are written in hex: decimal text past 4300 digits does not parse back.
_DECIMAL_BOUND = 10**4000

# The bits float('nan') and -float('nan') give; any other NaN is written by its bits.
_NAN_BITS = struct.pack(">d", math.nan)
_NEGATIVE_NAN_BITS = struct.pack(">d", -math.nan)

Render = Callable[["Context", list[str]], str]
Lines = Callable[["Context", str, list[str]], list[str]]


class Refuse(Exception):
    """A recipe cannot write this object; the message says why."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A leaf written in place wherever it is used; ``render`` may ask for builtins."""

    render: Callable[[Context], str]


@dataclass(frozen=True, slots=True)
class Named:
    """A child that must be bound under ``name`` (a global a function's text reads)."""

    name: str
    obj: object


@dataclass(eq=False)
class Node:
    """One object of the graph and the recipe that writes it.

    A node is written either inline, as the expression ``render`` returns, or as a
    statement that binds a variable: ``name = <render>``, or the lines ``define``
    returns when the statement is not an assignment (an import, a def). ``post``
    adds lines that run after the binding (state set on a fresh instance).
    """

    label: str
    stem: str
    child_objs: list[object] = field(default_factory=list)
    render: Render | None = None
    define: Lines | None = None
    post: Lines | None = None
    wrap: Render | None = None
    header: bool = False
    must_bind: bool = False
    share: bool = True
    fixed_name: str | None = None
    comment: str | None = None
    module: str | None = None
    how: str = "reduce"
    late: list[Named] = field(default_factory=list)
    obj: object = None
    # Filled in while the graph is built and emitted.
    children: list[Node | Literal] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    state: int = 0
    refs: int = 0
    bound: bool = False
    depth: int = 0
    expr: str = ""
    pending: Iterator[Node | Literal] | None = None

    def describe(self) -> str:
        """The label, with the first name the node is bound to, for messages."""
        return f"{self.label} {self.names[0]!r}" if self.names else self.label


class Namer:
    """Hand out fresh private names that clash with none already taken."""

    def __init__(self, taken: Iterable[str]) -> None:
        self._taken = set(taken)
        self.made: list[str] = []

    def take(self, name: str) -> None:
        """Mark ``name`` as used."""
        self._taken.add(name)

    def __contains__(self, name: str) -> bool:
        return name in self._taken

    def fresh(self, stem: str) -> str:
        """A new name ``_<stem>``, ``_<stem>_2``, ... that is not taken yet."""
        base = "_" + (re.sub(r"\W", "_", stem).strip("_") or "obj")
        if base[1].isdigit():
            base = "_n" + base[1:]
        name, n = base, 1
        while name in self._taken or keyword.iskeyword(name):
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        self.made.append(name)
        return name


class Context:
    """What the render functions may ask for while the text is written.

    ``builtin(name)`` gives the name a builtin can be reached by (itself, unless the
    archive binds that name to something else); ``module(name)`` the alias of an
    imported module; ``external(array)`` the expression that reads an array back
    from the side data file.
    """

    def __init__(self, namer: Namer, module_names: dict[str, str], shadowed: set[str],
                 external: Callable[[np.ndarray], str] | None) -> None:
        self._namer = namer
        self._modules = dict(module_names)
        self._shadowed = shadowed
        self._builtins: dict[str, str] = {}
        self._external = external
        self.import_lines: list[str] = []

    def builtin(self, name: str) -> str:
        """The name that reaches builtin ``name`` in the archive's namespace."""
        if name not in self._shadowed:
            return name
        if name not in self._builtins:
            alias = self._namer.fresh(name)
            self._builtins[name] = alias
            self.import_lines.append(f"from builtins import {name} as {alias}")
        return self._builtins[name]

    def module(self, name: str) -> str:
        """The alias of module ``name``, imported once at the top."""
        if name not in self._modules:
            alias = self._namer.fresh(name.rpartition(".")[2])
            self._modules[name] = alias
            self.import_lines.append(f"import {name} as {alias}")
        return self._modules[name]

    def external(self, array: np.ndarray) -> str:
        """The expression that loads ``array`` from the side data file."""
        if self._external is None:
            raise AssertionError("an external array was rendered without a data file")
        return self._external(array)


def valid_name(name: object) -> bool:
    """Whether ``name`` can be bound by an archive (see :func:`name_problem`)."""
    return name_problem(name) is None


def name_problem(name: object) -> str | None:
    """Why an archive cannot bind ``name``, or None if it can.

    A name must be an identifier, not a keyword, not a ``__dunder__`` name, and in
    NFKC normal form: the parser normalizes every identifier it reads, so source
    that binds ``\ufb01le`` binds ``file``, and the name would never come back.
    """
    if not isinstance(name, str) or not name.isidentifier():
        return "it is not an identifier"
    if keyword.iskeyword(name):
        return "it is a keyword"
    if name.startswith("__") and name.endswith("__"):
        return "it is a __dunder__ name"
    normal = unicodedata.normalize("NFKC", name)
    if normal != name:
        return (f"Python reads it as {normal!r} (it normalizes identifiers to NFKC), so "
                f"it could not be restored")
    return None


_SIMPLE = re.compile(r"[A-Za-z_][\w.]*")


def as_base(text: str) -> str:
    """``text`` made safe to put before ``.attr`` or ``(...)``."""
    return text if _SIMPLE.fullmatch(text) else f"({text})"


# -- literals -----------------------------------------------------------------------------

def literal_of(obj: object, depth: int = 0) -> Literal | None:
    """The literal for ``obj`` if it is an atom or a tuple of literals.

    A frozenset is never a literal, even of literals: ``frozenset({1})`` is a call,
    each one written makes a new object, so it is a node, written once when shared.
    (A tuple display of constants is one constant of the module, shared anyway.)
    """
    kind = type(obj)
    if kind in ATOM_TYPES:
        return _ATOM_RENDER[kind](obj)
    if kind is tuple:
        if depth >= _LITERAL_DEPTH:
            return None
        items = []
        for item in obj:  # type: ignore[attr-defined]
            lit = literal_of(item, depth + 1)
            if lit is None:
                return None
            items.append(lit)
        return Literal(lambda ctx: tuple_text([i.render(ctx) for i in items]))
    return None


def tuple_text(items: list[str]) -> str:
    """A tuple display of already written items."""
    if len(items) == 1:
        return f"({items[0]},)"
    return f"({', '.join(items)})"


def frozenset_text(ctx: Context, items: list[str]) -> str:
    """A frozenset of already written items, in a stable order."""
    name = ctx.builtin("frozenset")
    return f"{name}({{{', '.join(sorted(items))}}})" if items else f"{name}()"


def float_text(ctx: Context, x: float) -> str:
    """``x`` written so that it reads back bit for bit (NaN and infinities included).

    A NaN is ``float('nan')``, or ``-float('nan')`` with its sign bit set; one with
    other bits (a payload) is unpacked from its bit pattern.
    """
    if math.isfinite(x):
        return repr(x)
    name = ctx.builtin("float")
    if not math.isnan(x):
        return f"{name}('inf')" if x > 0 else f"-{name}('inf')"
    bits = struct.pack(">d", x)
    if bits == _NAN_BITS:
        return f"{name}('nan')"
    if bits == _NEGATIVE_NAN_BITS:
        return f"-{name}('nan')"
    return _nan_from_bits(ctx, bits.hex())


def plain_nan(x: float) -> bool:
    """Whether ``x`` is the NaN ``float('nan')`` gives, bit for bit."""
    return math.isnan(x) and struct.pack(">d", x) == _NAN_BITS


def _nan_from_bits(ctx: Context, hex_bits: str) -> str:
    """The float whose big-endian IEEE 754 bits are ``hex_bits``, unpacked by struct."""
    return (f"{ctx.module('struct')}.unpack('>d', "
            f"{ctx.builtin('bytes')}.fromhex({hex_bits!r}))[0]")


def int_text(x: int) -> str:
    """``x`` written as a literal; huge ones in hex, which has no digit limit."""
    if -_DECIMAL_BOUND < x < _DECIMAL_BOUND:
        return repr(x)
    return hex(x)


def complex_text(ctx: Context, z: complex) -> str:
    """``z`` written so that it reads back exactly, signed zeros included."""
    if all(math.isfinite(p) and (p != 0 or math.copysign(1, p) > 0)
           for p in (z.real, z.imag)):
        return repr(z)
    return f"{ctx.builtin('complex')}({float_text(ctx, z.real)}, {float_text(ctx, z.imag)})"


def _fixed(text: str) -> Literal:
    return Literal(lambda ctx: text)


_ATOM_RENDER: dict[type, Callable[[Any], Literal]] = {
    NoneType: lambda x: _fixed("None"),
    bool: lambda x: _fixed(repr(x)),
    int: lambda x: _fixed(int_text(x)),
    float: lambda x: _fixed(repr(x)) if math.isfinite(x)
    else Literal(lambda ctx: float_text(ctx, x)),
    complex: lambda z: Literal(lambda ctx: complex_text(ctx, z)),
    str: lambda x: _fixed(repr(x)),
    bytes: lambda x: _fixed(repr(x)),
    EllipsisType: lambda x: _fixed("..."),
}

BUILTIN_NAMES = frozenset(dir(builtins))
