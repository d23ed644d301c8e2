"""Write a :class:`~._build.Graph` out as Python statements.

Three passes over the nodes, children before parents:

1. decide which nodes get a variable: those with a name (inserted, or a global a
   function's source reads), those that must be statements (imports, defs, objects
   whose state is set after they are made, dill payloads), those reached more than
   once (so they stay one object), and those nested so deep that inlining them would
   hit the parser's nesting limit; every other node is written inline, where used;
2. name the variables: a node's own name, else a fresh private ``_stem``;
3. render: each node's text from its children's, imports gathered at the top.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from ._build import Graph
from ._nodes import Context, Literal, Namer, Node

__all__ = ["Emitted", "emit"]

_MAX_DEPTH = 40  # inline nesting allowed before a node gets a variable of its own
_WRAP_AT = 96


@dataclass
class Emitted:
    """The parts of an archive's text, and what it stores beside it."""

    imports: list[str]
    data: list[str]
    blocks: list[tuple[list[str], bool]]
    temps: list[str]
    arrays: dict[str, np.ndarray]
    expressions: list[str]
    hows: list[str]
    bound: list[str] = field(default_factory=list)

    def statements(self) -> list[str]:
        """The data block and the body as lines, blank lines around multi-line defs."""
        lines: list[str] = list(self.data)
        if self.data:
            lines.append("")
        previous_spaced = False
        for block, spaced in self.blocks:
            if (spaced or previous_spaced) and lines and lines[-1] != "":
                lines.append("")
            lines.extend(block)
            previous_spaced = spaced
        return lines


def emit(graph: Graph, *, datafile: str | None) -> Emitted:
    """Render ``graph``; ``datafile`` names the side data file, as the source will open it."""
    order = graph.order
    for node in order:
        for child in node.children:
            if isinstance(child, Node):
                child.refs += 1
    for ref in graph.anonymous:
        if isinstance(ref, Node):
            ref.refs += 1

    named = {n for node in order for n in node.names}
    named |= {node.fixed_name for node in order if node.fixed_name}
    namer = Namer(graph.claimed | graph.unbindable | graph.reserved | named)

    for node in order:
        node.bound = bool(node.names) or node.must_bind or node.fixed_name is not None \
            or (node.share and node.refs > 1)
        if not node.bound:
            depth = 1 + max((c.depth for c in node.children if isinstance(c, Node)),
                            default=0)
            if depth > _MAX_DEPTH:
                node.bound = True
            else:
                node.depth = depth
        if node.bound:
            node.expr = node.fixed_name or (node.names[0] if node.names
                                            else namer.fresh(node.stem))

    arrays: dict[str, np.ndarray] = {}
    data_name: list[str] = []

    def external(array: np.ndarray) -> str:
        if not data_name:
            data_name.append(namer.fresh("data"))
        key = f"a{len(arrays)}"
        arrays[key] = array
        return f"{data_name[0]}[{key!r}]"

    modules = {node.module: node.expr for node in order if node.module and node.bound}
    ctx = Context(namer, modules, shadowed=graph.claimed | graph.reserved | named,
                  external=external if datafile is not None else None)

    node_imports: list[str] = []
    aliases: list[str] = []
    blocks: list[tuple[list[str], bool]] = []
    for node in order:
        exprs = [c.render(ctx) if isinstance(c, Literal) else c.expr for c in node.children]
        if not node.bound:
            assert node.render is not None
            node.expr = node.render(ctx, exprs)
            continue
        name = node.expr
        lines = [f"# {line}" for line in textwrap.wrap(node.comment or "", _WRAP_AT - 8)]
        if node.define is not None:
            lines += node.define(ctx, name, exprs)
        else:
            assert node.render is not None
            text = node.render(ctx, exprs)
            if node.wrap is not None and "\n" not in text \
                    and len(name) + 3 + len(text) > _WRAP_AT:
                text = node.wrap(ctx, exprs)
            lines.append(f"{name} = {text}")
        if node.post is not None:
            lines += node.post(ctx, name, exprs)
        more = [f"{other} = {name}" for other in node.names if other != name]
        if node.header:
            node_imports += lines
            aliases += more
            continue
        spaced = (node.define is not None and len(lines) > 1) or node.comment is not None
        blocks.append((lines, spaced))
        if more:
            blocks.append((more, False))

    expressions, hows = [], []
    for ref in graph.anonymous:
        if isinstance(ref, Literal):
            expressions.append(ref.render(ctx))
            hows.append("literal")
        else:
            expressions.append(ref.expr)
            hows.append(ref.how)

    data: list[str] = []
    if arrays:
        assert datafile is not None
        np_, os_ = ctx.module("numpy"), ctx.module("os")
        npz = namer.fresh("npz")
        where = (f"{os_}.path.join({os_}.path.dirname({ctx.builtin('globals')}()"
                 f".get('__file__') or ''), {datafile!r})")
        data = [f"with {np_}.load(", f"        {where},",
                f"        allow_pickle=False) as {npz}:",
                f"    {data_name[0]} = {ctx.builtin('dict')}({npz})"]

    every = sorted(set(ctx.import_lines + node_imports),
                   key=lambda line: (not line.startswith("import "), line))
    bound = [node.expr for node in order if node.bound]
    bound += [n for node in order for n in node.names if n != node.expr]
    return Emitted(imports=every + aliases, data=data, blocks=blocks, temps=list(namer.made),
                   arrays=arrays, expressions=expressions, hows=hows, bound=bound)
