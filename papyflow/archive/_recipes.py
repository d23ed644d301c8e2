"""Recipes that write one kind of object, each from the object alone.

Each returns a :class:`~._nodes.Node` whose children are the objects its text is
made of (the builder turns them into nodes in turn), or None when the object is
not of its kind. The builder tries them in the order its docstring lists.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import enum
import functools
import importlib
import inspect
import re
import sys
from collections import deque
from collections.abc import Mapping

from ._functions import global_names
from ._nodes import (
    BUILTIN_NAMES,
    Context,
    Node,
    Refuse,
    as_base,
    frozenset_text,
    tuple_text,
    valid_name,
)

__all__ = [
    "archive_1",
    "attribute",
    "call",
    "collection_node",
    "dataclass_node",
    "dict_node",
    "display",
    "enum_member",
    "import_path",
    "kind_word",
    "namedtuple_node",
    "partial_node",
    "set_node",
    "stdlib_value",
    "tuple_node",
    "wrapped",
]


def import_path(obj: object) -> tuple[str, str] | None:
    """``(module, qualname)`` if importing ``qualname`` from ``module`` gives ``obj`` back.

    Only modules already imported are consulted: a name in ``__module__`` is never a
    reason to import something. ``__main__`` never counts, since the interpreter
    that restores the archive has a ``__main__`` of its own.
    """
    try:
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    except Exception:  # noqa: BLE001 - an object whose names fail has no import path
        return None
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if module == "__main__" or "<" in qualname:
        return None
    target: object = sys.modules.get(module)
    if target is None:
        return None
    try:
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:  # noqa: BLE001 - a lookup that fails is not an import path
        return None
    return (module, qualname) if target is obj else None


def kind_word(obj: object) -> str:
    """A word for what ``obj`` is, for labels: class, function, or its type's name."""
    if isinstance(obj, type):
        return "class"
    if callable(obj):
        return "function"
    return f"{type(obj).__name__}"


def wrapped(opening: str, items: list[str], closing: str) -> str:
    """A display with one item per line (for a binding too long for one line)."""
    body = "".join(f"    {item},\n" for item in items)
    return f"{opening}\n{body}{closing}"


def display(label: str, items: list[object], opening: str, closing: str) -> Node:
    """A list (or other bracketed display) of its items."""
    return Node(label=label, stem=label, child_objs=items, how="container",
                render=lambda ctx, c: f"{opening}{', '.join(c)}{closing}",
                wrap=lambda ctx, c: wrapped(opening, c, closing))


def tuple_node(obj: tuple[object, ...]) -> Node:
    """A tuple that holds more than literals (those are literals themselves)."""
    return Node(label="tuple", stem="tuple", child_objs=list(obj), how="container",
                render=lambda ctx, c: tuple_text(c),
                wrap=lambda ctx, c: wrapped("(", c, ")"))


def dict_node(obj: dict[object, object]) -> Node:
    """A dict display, keys and values as children, in insertion order."""
    flat = [x for pair in obj.items() for x in pair]

    def entries(c: list[str]) -> list[str]:
        return [f"{c[i]}: {c[i + 1]}" for i in range(0, len(c), 2)]

    return Node(label="dict", stem="dict", child_objs=flat, how="container",
                render=lambda ctx, c: f"{{{', '.join(entries(c))}}}",
                wrap=lambda ctx, c: wrapped("{", entries(c), "}"))


def set_node(obj: set[object] | frozenset[object]) -> Node:
    """A set display (items sorted by their text, so the output is stable)."""
    if type(obj) is frozenset:
        return Node(label="frozenset", stem="frozenset", child_objs=list(obj),
                    how="container", render=lambda ctx, c: frozenset_text(ctx, c))

    def render(ctx: Context, c: list[str]) -> str:
        return f"{{{', '.join(sorted(c))}}}" if c else f"{ctx.builtin('set')}()"

    return Node(label="set", stem="set", child_objs=list(obj), how="container",
                render=render, wrap=lambda ctx, c: wrapped("{", sorted(c), "}") if c
                else f"{ctx.builtin('set')}()")


def attribute(owner: object, attr: str, label: str) -> Node:
    return Node(label=label, stem=attr.rpartition(".")[2], child_objs=[owner], share=False,
                how="import", render=lambda ctx, c: f"{as_base(c[0])}.{attr}")


def call(label: str, stem: str, callee: object, args: list[object],
         keywords: Mapping[str, object] | None = None, how: str = "constructor") -> Node:
    keys = list(keywords or {})
    n = len(args)

    def render(ctx: Context, c: list[str]) -> str:
        parts = c[1:1 + n] + [f"{k}={v}" for k, v in zip(keys, c[1 + n:])]
        return f"{as_base(c[0])}({', '.join(parts)})"

    return Node(label=label, stem=stem, child_objs=[callee, *args, *(keywords or {}).values()],
                render=render, how=how)


def enum_member(obj: object) -> Node | None:
    if not isinstance(obj, enum.Enum):
        return None
    cls = type(obj)
    name = obj.name
    try:
        if not isinstance(name, str) or cls[name] is not obj:
            return None
    except Exception:  # noqa: BLE001 - not reachable by name: another recipe writes it
        return None
    access = f".{name}" if valid_name(name) else f"[{name!r}]"
    return Node(label=f"{cls.__name__} member", stem=name, child_objs=[cls], share=False,
                render=lambda ctx, c: f"{as_base(c[0])}{access}", how="constructor")


def partial_node(obj: object) -> Node | None:
    if type(obj) is not functools.partial or obj.__dict__ \
            or not all(valid_name(k) for k in obj.keywords):
        return None
    return call("partial", "partial", functools.partial, [obj.func, *obj.args],
                dict(obj.keywords))


def collection_node(obj: object) -> Node | None:
    kind = type(obj)
    if kind not in (collections.OrderedDict, collections.defaultdict, collections.Counter,
                    collections.deque) or getattr(obj, "__dict__", None):
        return None
    name = kind.__name__
    if kind is collections.deque:
        assert isinstance(obj, deque)
        keywords = {} if obj.maxlen is None else {"maxlen": obj.maxlen}
        return call(name, name.lower(), kind, [list(obj)], keywords)
    assert isinstance(obj, dict)
    if kind is collections.OrderedDict:
        return call(name, name.lower(), kind, [list(obj.items())])
    if kind is collections.defaultdict:
        assert isinstance(obj, collections.defaultdict)
        return call(name, name.lower(), kind, [obj.default_factory, dict(obj)])
    return call(name, name.lower(), kind, [dict(obj)])


def namedtuple_node(obj: object) -> Node | None:
    kind = type(obj)
    fields = getattr(kind, "_fields", None)
    if not isinstance(obj, tuple) or kind is tuple or not isinstance(fields, tuple) \
            or not callable(getattr(kind, "_make", None)) or getattr(obj, "__dict__", None) \
            or len(fields) != len(obj) or not all(valid_name(f) for f in fields):
        return None
    return call(f"{kind.__name__} tuple", kind.__name__.lower(), kind, [],
                dict(zip(fields, obj)))


def dataclass_node(obj: object) -> Node | None:
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return None
    cls = type(obj)
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.init or hasattr(cls, "__post_init__"):
        return None
    fields = dataclasses.fields(obj)
    names = [f.name for f in fields]
    if not all(f.init for f in fields):
        return None
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if list(signature.parameters) != names or any(
            p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            for p in signature.parameters.values()):
        return None
    extra = getattr(obj, "__dict__", None)
    if extra is not None and set(extra) != set(names):
        return None
    return call(f"{cls.__name__} object", cls.__name__.lower(), cls, [],
                {name: getattr(obj, name) for name in names})


def stdlib_value(obj: object) -> Node | None:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    if module.partition(".")[0].lstrip("_") not in sys.stdlib_module_names \
            or import_path(cls) is None:
        return None
    try:
        tree = ast.parse(repr(obj), mode="eval").body
        if not isinstance(tree, ast.Call):
            return None
        func = tree.func
        last = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if last != cls.__name__ or any(isinstance(a, ast.Starred) for a in tree.args) \
                or any(k.arg is None for k in tree.keywords):
            return None
        args = [ast.literal_eval(a) for a in tree.args]
        keywords = {str(k.arg): ast.literal_eval(k.value) for k in tree.keywords}
        again = cls(*args, **keywords)
        if type(again) is not cls or not bool(again == obj):
            return None
    except Exception:  # noqa: BLE001 - a repr that does not rebuild it is not a recipe
        return None
    return call(f"{cls.__name__} value", cls.__name__.lower(), cls, args, keywords)


_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def _name_spots(text: str, tree: ast.Expression,
                names: set[str]) -> list[tuple[int, int, str, bool]]:
    """Where the names of ``rep`` sit in its text: (start, end, name, free), in order.

    ``free`` says the name stands where any expression may go without parentheses:
    an argument, an element of a display, a dict key or value.
    """
    # Lines as the tokenizer counts them: str.splitlines also splits at a form feed,
    # U+2028 and others, which the tokenizer takes as part of a line.
    lines = _LINE_ENDS.split(text)
    starts = [0]
    for line, end in zip(lines, _LINE_ENDS.findall(text)):
        starts.append(starts[-1] + len(line) + len(end))
    free: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            free.update(id(a) for a in node.args)
            free.update(id(k.value) for k in node.keywords)
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            free.update(id(e) for e in node.elts)
        elif isinstance(node, ast.Dict):
            free.update(id(e) for e in [*node.keys, *node.values] if e is not None)
    free.add(id(tree.body))
    spots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            line = lines[node.lineno - 1]
            col = len(line.encode("utf-8")[:node.col_offset].decode("utf-8"))
            lo = starts[node.lineno - 1] + col
            spots.append((lo, lo + len(node.id), node.id, id(node) in free))
    return sorted(spots)


def _operand(text: str) -> str:
    """``text`` in parentheses unless it is already a primary expression."""
    try:
        body = ast.parse(text, mode="eval").body
    except SyntaxError:
        return f"({text})"
    primary = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.List, ast.Dict, ast.Set,
               ast.ListComp, ast.DictComp, ast.SetComp)
    if isinstance(body, primary) or (isinstance(body, ast.Tuple) and text.startswith("(")):
        return text
    if isinstance(body, ast.Constant) and not text.startswith("-"):
        return text
    return f"({text})"


def archive_1(obj: object) -> Node:
    """The node for an object with an ``archive_1()`` method (the mmf protocol)."""
    label = f"{type(obj).__name__} object"
    try:
        result = obj.archive_1()  # type: ignore[attr-defined]
        rep, args, imports = result
    except Exception as exc:
        raise Refuse(f"its archive_1() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(rep, str):
        raise Refuse(f"archive_1() must return (rep, args, imports) with rep a str, "
                     f"got {type(rep).__name__}")
    args = dict(args.items() if hasattr(args, "items") else args)
    values: list[object] = []
    params: list[str] = []
    for key, value in args.items():
        if not valid_name(key):
            raise Refuse(f"archive_1() returned an argument name {key!r} that is not "
                         f"an identifier")
        params.append(key)
        values.append(value)
    for entry in imports:
        try:
            module, iname, uiname = entry
            imported = importlib.import_module(module)
            target = imported if iname is None else getattr(imported, iname)
        except Exception as exc:
            raise Refuse(f"archive_1() returned an import {entry!r} that fails: "
                         f"{type(exc).__name__}: {exc}") from exc
        if not valid_name(uiname) or uiname in params:
            raise Refuse(f"archive_1() returned an import name {uiname!r} that is not "
                         f"an identifier or is also an argument")
        params.append(uiname)
        values.append(target)
    try:
        tree = ast.parse(rep.strip(), mode="eval")
        code = compile(f"lambda {', '.join(params)}: ({rep.strip()})", "<archive_1>",
                       "eval")
    except SyntaxError as exc:
        raise Refuse(f"archive_1() returned a rep that is not an expression: "
                     f"{rep!r} ({exc.msg})") from None
    unknown = sorted(global_names(code) - BUILTIN_NAMES)
    if unknown:
        raise Refuse(f"archive_1() returned a rep {rep!r} that uses names it does not "
                     f"define: {unknown}")
    text = rep.strip()
    scoped = any(isinstance(n, ast.Lambda | ast.comprehension | ast.NamedExpr)
                 for n in ast.walk(tree))
    if scoped:
        builtins_used = sorted(global_names(code))

        def render(ctx: Context, c: list[str]) -> str:
            names = params + [b for b in builtins_used if ctx.builtin(b) != b]
            given = c + [ctx.builtin(b) for b in builtins_used if ctx.builtin(b) != b]
            pairs = ", ".join(f"{p}={v}" for p, v in zip(names, given))
            return f"(lambda {', '.join(names)}: ({text}))({pairs})"
    else:
        spots = _name_spots(text, tree, set(params) | BUILTIN_NAMES)

        def render(ctx: Context, c: list[str]) -> str:
            given = dict(zip(params, c))
            out = text
            for lo, hi, name, free in reversed(spots):
                new = given[name] if name in given else ctx.builtin(name)
                out = out[:lo] + (new if free or new == name else _operand(new)) + out[hi:]
            return out

    return Node(label=label, stem=type(obj).__name__.lower(), child_objs=values,
                render=render, how="archive_1")
