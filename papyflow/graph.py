"""Pictures of a pipeline: Graphviz DOT text, or an SVG/PNG drawn with matplotlib.

Both show the same thing:

- one box per Piper, named by ``piper.name``;
- edges in the direction the data flows (``A -> B``: B reads A's results);
- layers from the inputs down (a Piper sits one layer below the deepest Piper
  it reads), and within a layer the Pipers left to right in the Dagger's order,
  which is the ``branch`` order;
- parallel Pipers grouped by their NuMap: one colour per NuMap, and a legend
  (in DOT, a labelled cluster) naming the NuMap and its workers.

:func:`to_dot` needs nothing beyond papyflow. :func:`draw` needs matplotlib,
which comes with the optional extra ``graph`` (``pip install 'papyflow[graph]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from numap import NuMap

from .dagger import Dagger
from .piper import Piper

__all__ = ["DRAW_FORMATS", "draw", "layers", "to_dot"]

DRAW_FORMATS = (".svg", ".png")

# Fill colours of the NuMaps (then again from the start), and of the linear Pipers.
_PALETTE = ("#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272",
            "#c7c7c7", "#f7b6d2", "#dbdb8d", "#9edae5", "#d9d9d9")
_LINEAR = "#ffffff"
_EDGE = "#4d4d4d"


@dataclass(frozen=True)
class _Group:
    """The Pipers of one NuMap and how the picture shows them."""

    numap: NuMap
    colour: str
    pipers: tuple[Piper, ...]

    @property
    def legend(self) -> str:
        return f"{self.numap.name}: {self.numap.worker_type} x{self.numap.worker_num}"


def _groups(dagger: Dagger, order: Sequence[Piper]) -> list[_Group]:
    """One group per NuMap, in order of first use, each with its colour."""
    members: dict[int, list[Piper]] = {}
    numaps: dict[int, NuMap] = {}
    for piper in order:
        if isinstance(piper.imap, NuMap):
            members.setdefault(id(piper.imap), []).append(piper)
            numaps.setdefault(id(piper.imap), piper.imap)
    return [_Group(numaps[key], _PALETTE[i % len(_PALETTE)], tuple(members[key]))
            for i, key in enumerate(members)]


def layers(dagger: Dagger) -> list[list[Piper]]:
    """The Pipers by layer, inputs first; each layer in the Dagger's order.

    A Piper's layer is the length of the longest path from an input Piper to
    it: networkx's topological generations.
    """
    position = {piper: i for i, piper in enumerate(dagger.postorder())}
    return [sorted(generation, key=position.__getitem__)
            for generation in nx.topological_generations(dagger.graph)]


def _edges(dagger: Dagger, order: Sequence[Piper]) -> list[tuple[Piper, Piper]]:
    """The pipes, by upstream Piper and then downstream Piper in the Dagger's order."""
    position = {piper: i for i, piper in enumerate(order)}
    return sorted(dagger.graph.edges, key=lambda e: (position[e[0]], position[e[1]]))


# -- DOT ----------------------------------------------------------------------------


def _quote(text: str) -> str:
    """``text`` as a DOT double-quoted string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(dagger: Dagger, title: str | None = None) -> str:
    """The pipeline as Graphviz DOT text (``dot -Tsvg`` draws it).

    Nodes are ``p0``, ``p1``, ... in the Dagger's order, labelled with the
    Pipers' names; the Pipers of each NuMap form a cluster ``cluster_numap<k>``
    labelled with the NuMap's name and workers; the Pipers of each of
    :func:`layers` share a rank (``newrank=true`` keeps the ranks across the
    clusters), so that every input is at the top, as in :func:`draw`.
    """
    order = dagger.postorder()
    node_id = {piper: f"p{i}" for i, piper in enumerate(order)}
    groups = _groups(dagger, order)
    colour = {piper: group.colour for group in groups for piper in group.pipers}
    lines = [
        "// papyflow pipeline: edges follow the data; pipers of one NuMap share a cluster",
        "digraph pipeline {",
        "  graph [rankdir=TB, ordering=out, newrank=true, fontname=Helvetica, fontsize=11"
        + (f", label={_quote(title)}, labelloc=t" if title else "") + "];",
        ("  node [shape=box, style=\"rounded,filled\", fontname=Helvetica, fontsize=11, "
         f"fillcolor={_quote(_LINEAR)}];"),
        f"  edge [color={_quote(_EDGE)}, arrowsize=0.7];",
    ]
    # Nodes first, in the Dagger's order: dot keeps that order within a rank.
    for piper in order:
        attributes = [f"label={_quote(piper.name)}",
                      f"tooltip={_quote(_describe(piper))}"]
        if piper in colour:
            attributes.append(f"fillcolor={_quote(colour[piper])}")
        lines.append(f"  {node_id[piper]} [{', '.join(attributes)}];")
    for k, group in enumerate(groups):
        lines.append(f"  subgraph cluster_numap{k} {{")
        lines.append(f"    label={_quote(group.legend)};")
        lines.append(f"    style=\"rounded,dashed\"; color={_quote(group.colour)}; penwidth=2;")
        lines.append(f"    {'; '.join(node_id[p] for p in group.pipers)};")
        lines.append("  }")
    # Left to itself, dot puts a Piper just above the Piper that reads it: an input
    # read only far down would sit there, not at the top with the other inputs.
    for row in layers(dagger):
        lines.append(f"  {{rank=same; {'; '.join(node_id[p] for p in row)};}}")
    for upstream, downstream in _edges(dagger, order):
        lines.append(f"  {node_id[upstream]} -> {node_id[downstream]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _describe(piper: Piper) -> str:
    where = (f"parallel on {piper.imap.name}" if isinstance(piper.imap, NuMap)
             else "linear")
    extras = [f"{key}={value}" for key, value in
              (("consume", piper.consume), ("produce", piper.produce), ("spawn", piper.spawn))
              if value != 1]
    if piper.branch is not None:
        extras.append(f"branch={piper.branch!r}")
    return f"{piper.name}: {piper.worker.name}, {where}" + (
        f" ({', '.join(extras)})" if extras else "")


# -- matplotlib -----------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise ImportError("drawing .svg or .png needs matplotlib: install the extra with "
                          "pip install 'papyflow[graph]' (or write .dot, which needs "
                          "nothing)") from exc
    return matplotlib, Figure, Patch


def draw(dagger: Dagger, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Draw the pipeline into ``path`` (``.svg`` or ``.png``) with matplotlib; returns it.

    Raises ValueError for another suffix and ImportError (naming the extra to
    install) without matplotlib.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DRAW_FORMATS:
        raise ValueError(f"draw: cannot draw {path.name!r}; the formats are "
                         f"{', '.join(DRAW_FORMATS)} (and .dot with to_dot)")
    if not len(dagger):
        raise ValueError("draw: the pipeline has no piper")
    matplotlib, Figure, Patch = _matplotlib()

    order = dagger.postorder()
    rows = layers(dagger)
    groups = _groups(dagger, order)
    colour = {piper: group.colour for group in groups for piper in group.pipers}
    widest = max(len(row) for row in rows)
    longest = max(len(piper.name) for piper in order)
    column = 0.6 + 0.085 * longest  # inches per Piper across
    row_height = 1.0  # inches per layer

    # Layer k at height -k; a layer's Pipers centred, left to right in the Dagger's order.
    position: dict[Piper, tuple[float, float]] = {}
    for k, row in enumerate(rows):
        for i, piper in enumerate(row):
            position[piper] = (i - (len(row) - 1) / 2, -float(k))

    figure = Figure(figsize=(max(3.0, column * widest + 0.8),
                             max(2.0, row_height * len(rows) + 0.6)))
    axes = figure.subplots()
    axes.set_axis_off()
    axes.set_xlim(-widest / 2, widest / 2)
    axes.set_ylim(-len(rows) + 0.5, 0.5)
    boxes = {}
    for piper in order:
        x, y = position[piper]
        # parse_math=False: a name is text, "$...$" in it is not matplotlib's mathtext.
        boxes[piper] = axes.text(
            x, y, piper.name, ha="center", va="center", fontsize=10, zorder=3,
            parse_math=False,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": colour.get(piper, _LINEAR),
                  "edgecolor": "#333333", "linewidth": 1.0})
    for upstream, downstream in _edges(dagger, order):
        # Drawn after the boxes (a higher zorder): a box's outline gets its size when
        # the box is drawn, and the arrow is clipped to that outline.
        axes.annotate(
            "", xy=position[downstream], xytext=position[upstream], zorder=4,
            arrowprops={"arrowstyle": "-|>", "color": _EDGE, "linewidth": 1.2,
                        "shrinkA": 2, "shrinkB": 2,
                        "patchA": boxes[upstream].get_bbox_patch(),
                        "patchB": boxes[downstream].get_bbox_patch()})
    handles = [Patch(facecolor=group.colour, edgecolor="#333333", label=group.legend)
               for group in groups]
    if any(not piper.parallel for piper in order):
        handles.append(Patch(facecolor=_LINEAR, edgecolor="#333333",
                             label="linear (in the thread that reads results)"))
    legend = axes.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                         fontsize=9, frameon=False)
    for text in legend.get_texts():
        text.set_parse_math(False)
    if title:
        axes.set_title(title, fontsize=11, parse_math=False)
    # No date in the file, and SVG ids from a fixed salt: the same pipeline, the same file.
    metadata = {"Date": None} if suffix == ".svg" else None
    with matplotlib.rc_context({"svg.hashsalt": "papyflow"}):
        figure.savefig(path, bbox_inches="tight", metadata=metadata, dpi=120)
    return path


