"""``Dagger``: the pipeline graph, a networkx DiGraph of Pipers whose edges follow the data.

An edge ``A -> B`` means that B reads A's results (PaPy called these *pipes*;
its graph stored them reversed, as dependencies). The order of the Pipers is
deterministic: upstream before downstream; Pipers that are not upstream of one
another are ordered by ``branch`` (a Piper without one inherits the branch of
its first upstream Piper), then by the order they were added. A Piper that
reads several upstream Pipers gets their results in that order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import networkx as nx

from numap import NuMap

from ._fuse import fuse_runs
from .errors import DaggerCycleError, DaggerError, PiperError
from .piper import Phase, Piper

__all__ = ["Dagger"]


class Dagger:
    """A directed acyclic graph of :class:`Piper` nodes.

    ``pipers`` and ``pipes`` are added as by :meth:`add_pipers` and
    :meth:`add_pipes`; ``xtras`` holds one dict of node properties per piper.
    """

    def __init__(self, pipers: Iterable[Any] = (), pipes: Iterable[Sequence[Any]] = (),
                 xtras: Sequence[dict[str, Any]] | None = None) -> None:
        self.graph: nx.DiGraph = nx.DiGraph()
        self._added = itertools.count()
        pipers = list(pipers)
        if xtras is not None and len(xtras) != len(pipers):
            raise DaggerError(f"Dagger: xtras has {len(xtras)} entries for {len(pipers)} pipers")
        for i, piper in enumerate(pipers):
            self.add_piper(piper, xtra=xtras[i] if xtras else None)
        self.add_pipes(pipes)

    # -- nodes ------------------------------------------------------------------------

    def __contains__(self, piper: object) -> bool:
        return self.resolve(piper, forgive=True) is not False

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __iter__(self) -> Iterator[Piper]:
        return iter(self.postorder())

    @property
    def pipers(self) -> list[Piper]:
        """The Pipers in the Dagger's order."""
        return self.postorder()

    def resolve(self, piper: Any, forgive: bool = False) -> Piper | bool:
        """The Piper of this Dagger that ``piper`` (a Piper or ``id(piper)``) names.

        An unknown one raises :class:`DaggerError`, or returns ``False`` with ``forgive``.
        """
        if isinstance(piper, Piper) and piper in self.graph:
            return piper
        if isinstance(piper, int) and not isinstance(piper, bool):
            for node in self.graph:
                if id(node) == piper:
                    return node
        if forgive:
            return False
        raise DaggerError(f"Dagger: {piper!r} is not a piper of this dagger")

    def add_piper(self, piper: Any, xtra: dict[str, Any] | None = None, create: bool = True,
                  branch: Any = None) -> tuple[bool, Piper]:
        """Add ``piper`` unless it is there; returns ``(created, piper)``.

        ``piper`` may be a Piper, ``id()`` of a Piper of this Dagger, or (with
        ``create``) anything the Piper constructor takes, wrapped in a new Piper.
        """
        found = self.resolve(piper, forgive=True)
        if found is not False:
            assert isinstance(found, Piper)
            if branch is not None:
                found.branch = branch
            if xtra:
                self.graph.nodes[found]["xtra"].update(xtra)
            return False, found
        self._refuse_while_running(f"add {getattr(piper, 'name', piper)!r}")
        created = False
        if not isinstance(piper, Piper):
            if not create:
                raise DaggerError(f"Dagger: {piper!r} is not a piper of this dagger and "
                                  f"create is False")
            try:
                piper = Piper(piper)
            except (TypeError, ValueError) as exc:
                raise DaggerError(f"Dagger: cannot make a piper of {piper!r}: {exc}") from exc
            created = True
        if branch is not None:
            piper.branch = branch
        self.graph.add_node(piper, added=next(self._added), xtra=dict(xtra or {}))
        return created, piper

    def add_pipers(self, pipers: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        """Add each of ``pipers`` in order (arguments as for :meth:`add_piper`)."""
        for piper in pipers:
            self.add_piper(piper, *args, **kwargs)

    def del_piper(self, piper: Any, forced: bool = False) -> None:
        """Remove a Piper; one that still feeds others needs ``forced``.

        Not while the pipeline runs; after it stopped, the Pipers are
        disconnected, to be connected (started) again without it.
        """
        found = self.resolve(piper)
        assert isinstance(found, Piper)
        readers = list(self.graph.successors(found))
        if readers and not forced:
            raise DaggerError(f"Dagger: {found.name!r} feeds {[p.name for p in readers]}; "
                              f"delete those first or pass forced=True")
        self._unconnect(f"delete {found.name!r}")
        self.graph.remove_node(found)

    def _unconnect(self, action: str) -> None:
        """Before a deletion: refuse while Pipers run, else undo what ``connect`` made.

        The connections, and the tasks of the Pipers in their NuMaps, were made
        for the graph as it was: a deleted Piper's tasks left in a shared NuMap
        would keep it from taking new ones. ``connect`` (``Plumber.start``)
        makes them again for the graph as it is.
        """
        self._refuse_while_running(action)
        try:
            self.disconnect()
        except PiperError as exc:  # a NuMap holds tasks after this Dagger's
            raise DaggerError(f"Dagger: cannot {action}: {exc}") from exc

    def _refuse_while_running(self, action: str) -> None:
        """A change to the graph while Pipers run would not reach them: refuse it."""
        running = [p.name for p in self.graph if p.phase is Phase.STARTED]
        if running:
            raise DaggerError(f"Dagger: cannot {action} while the pipeline runs "
                              f"({', '.join(running)} started); stop it first")

    def del_pipers(self, pipers: Sequence[Any], *args: Any, **kwargs: Any) -> None:
        """Remove ``pipers`` in the reverse of the given order."""
        for piper in reversed(list(pipers)):
            self.del_piper(piper, *args, **kwargs)

    # -- pipes ----------------------------------------------------------------------

    def add_pipe(self, pipe: Sequence[Any], branch: Any = None) -> None:
        """Add the Pipers of ``pipe`` (A, ..., N) and connect them left to right."""
        if isinstance(pipe, (str, bytes)) or not isinstance(pipe, Sequence) or not pipe:
            raise DaggerError(f"Dagger: a pipe is a non-empty sequence of pipers, got {pipe!r}")
        before = set(self.graph.nodes)
        pipers = [self.add_piper(p, branch=branch if i == 0 else None)[1]
                  for i, p in enumerate(pipe)]
        added_edges = []
        try:
            for upstream, downstream in itertools.pairwise(pipers):
                if self.graph.has_edge(upstream, downstream):
                    continue
                self._refuse_while_running(f"add the pipe {upstream.name!r} -> "
                                           f"{downstream.name!r}")
                if upstream is downstream or nx.has_path(self.graph, downstream, upstream):
                    path = ([upstream] if upstream is downstream
                            else nx.shortest_path(self.graph, downstream, upstream))
                    names = [p.name for p in path] + [downstream.name]
                    raise DaggerCycleError(
                        f"Dagger: the pipe {upstream.name!r} -> {downstream.name!r} would "
                        f"close a cycle: {' -> '.join(names)}", cycle=path)
                self.graph.add_edge(upstream, downstream)
                added_edges.append((upstream, downstream))
        except DaggerError:
            self.graph.remove_edges_from(added_edges)
            self.graph.remove_nodes_from([p for p in pipers if p not in before])
            raise

    def add_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        """Add each of ``pipes`` in order (arguments as for :meth:`add_pipe`)."""
        for pipe in pipes:
            self.add_pipe(pipe, *args, **kwargs)

    def del_pipe(self, pipe: Sequence[Any], forced: bool = False) -> None:
        """Remove the connections of ``pipe``, then its Pipers that no longer feed any other.

        With ``forced`` every Piper of the pipe is removed. Not while the pipeline
        runs; after it stopped, the Pipers are disconnected, as by :meth:`del_piper`.
        """
        pipers = [self.resolve(p) for p in pipe]
        names = [p.name for p in pipers if isinstance(p, Piper)]
        self._unconnect(f"delete the pipe {' -> '.join(names)}")
        for upstream, downstream in itertools.pairwise(pipers):
            if self.graph.has_edge(upstream, downstream):
                self.graph.remove_edge(upstream, downstream)
        for piper in reversed(pipers):
            if piper in self.graph and (forced or self.graph.out_degree(piper) == 0):
                self.graph.remove_node(piper)

    def del_pipes(self, pipes: Iterable[Sequence[Any]], *args: Any, **kwargs: Any) -> None:
        """Remove each of ``pipes`` in order (arguments as for :meth:`del_pipe`)."""
        for pipe in pipes:
            self.del_pipe(pipe, *args, **kwargs)

    # -- order ----------------------------------------------------------------------

    def _branches(self) -> dict[Piper, Any]:
        """Each Piper's branch: its own, or else its first upstream Piper's."""
        branches: dict[Piper, Any] = {}
        for piper in nx.topological_sort(self.graph):
            branch = piper.branch
            if branch is None:
                ups = sorted(self.graph.predecessors(piper),
                             key=lambda p: self.graph.nodes[p]["added"])
                for up in ups:
                    if branches.get(up) is not None:
                        branch = branches[up]
                        break
            branches[piper] = branch
        return branches

    def postorder(self) -> list[Piper]:
        """The Pipers, upstream before downstream; ties by branch, then by when added."""
        branches = self._branches()
        added = nx.get_node_attributes(self.graph, "added")

        def key(piper: Piper) -> tuple[Any, ...]:
            branch = branches[piper]
            return (branch is None, 0 if branch is None else branch, added[piper])

        try:
            return list(nx.lexicographical_topological_sort(self.graph, key=key))
        except TypeError as exc:
            raise DaggerError(f"Dagger: the branches of its pipers cannot be ordered "
                              f"({exc}); use branches of one type") from exc

    def children_after_parents(self, piper1: Piper, piper2: Piper) -> int:
        """1 if ``piper1`` is upstream of ``piper2``, -1 if downstream, 0 if neither."""
        if nx.has_path(self.graph, piper1, piper2) and piper1 is not piper2:
            return 1
        if nx.has_path(self.graph, piper2, piper1) and piper1 is not piper2:
            return -1
        return 0

    def upstream(self, piper: Piper) -> list[Piper]:
        """The Pipers ``piper`` reads, in the Dagger's order (its inbox order)."""
        position = {p: i for i, p in enumerate(self.postorder())}
        return sorted(self.graph.predecessors(piper), key=position.__getitem__)

    def get_inputs(self) -> list[Piper]:
        """Pipers that read no other Piper (they read the input data), in order."""
        return [p for p in self.postorder() if self.graph.in_degree(p) == 0]

    def get_outputs(self) -> list[Piper]:
        """Pipers that no other Piper reads (the pipeline's results), in order."""
        return [p for p in self.postorder() if self.graph.out_degree(p) == 0]

    # -- running ----------------------------------------------------------------------

    def connect_inputs(self, datas: Sequence[Iterable[Any]]) -> None:
        """Connect the input Pipers, in order, to the iterables in ``datas``."""
        inputs = self.get_inputs()
        if isinstance(datas, (str, bytes)) or not isinstance(datas, Sequence):
            raise DaggerError(f"Dagger: datas must be a sequence of one iterable per input "
                              f"piper, got {datas!r}")
        if len(datas) != len(inputs):
            raise DaggerError(f"Dagger: {len(inputs)} input pipers "
                              f"({[p.name for p in inputs]}) but {len(datas)} inputs in datas")
        for piper, data in zip(inputs, datas, strict=True):
            piper.connect([data])

    def connect(self, datas: Sequence[Iterable[Any]] | None = None) -> None:
        """Connect every Piper to its upstream Pipers (and the inputs to ``datas``)."""
        if not len(self):
            raise DaggerError("Dagger: there is no piper to connect")
        if datas is not None:
            self.connect_inputs(datas)
        for piper in self.postorder():
            if self.graph.in_degree(piper) == 0:
                if not piper.connected:
                    raise DaggerError(f"Dagger: input piper {piper.name!r} has no input; "
                                      f"give datas to connect")
                continue
            piper.connect(self.upstream(piper))

    def disconnect(self, forced: bool = False) -> None:
        """Disconnect the Pipers, downstream first."""
        for piper in reversed(self.postorder()):
            piper.disconnect(forced=forced)

    def numaps(self) -> list[NuMap]:
        """The NuMaps of the parallel Pipers, each once, in order of first use."""
        found: dict[int, NuMap] = {}
        for piper in self.postorder():
            if isinstance(piper.imap, NuMap):
                found.setdefault(id(piper.imap), piper.imap)
        return list(found.values())

    def start(self) -> None:
        """Start the Pipers upstream first; a NuMap shared by several starts once."""
        order = self.postorder()
        fuse_runs(order)  # before any NuMap starts: it fixes the tasks' functions
        for piper in order:
            piper.start(stages=(0, 1) if piper.parallel else (0,))
        for piper in order:
            if piper.parallel:
                piper.start(stages=(2,))

    def stop(self, forced: bool = False) -> None:
        """Stop every Piper and NuMap."""
        for imap in self.numaps():
            imap.stop(forced=forced)
        for piper in self.postorder():
            piper.stop(forced=forced)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)} pipers>"
