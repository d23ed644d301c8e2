"""Dagger: the graph of Pipers, its order, and the errors of building it."""

from __future__ import annotations

import pytest

from papyflow import Dagger, DaggerError, Piper
from papyflow.errors import DaggerCycleError
from tests.pipeline_helpers import add, double, inc


def _pipers(*names, **kwargs):
    return [Piper(inc, name=name, **kwargs) for name in names]


def test_pipes_make_edges_that_follow_the_data():
    a, b, c = _pipers("a", "b", "c")
    d = Dagger(pipes=[(a, b, c)])
    assert list(d.graph.edges) == [(a, b), (b, c)]
    assert d.get_inputs() == [a] and d.get_outputs() == [c]
    assert d.postorder() == [a, b, c] and len(d) == 3 and a in d


def test_add_piper_creates_resolves_and_reports():
    d = Dagger()
    created, piper = d.add_piper(inc)
    assert created and isinstance(piper, Piper)
    assert d.add_piper(piper) == (False, piper)
    assert d.resolve(id(piper)) is piper
    assert d.add_piper(id(piper)) == (False, piper)
    with pytest.raises(DaggerError, match="create is False"):
        d.add_piper(double, create=False)
    with pytest.raises(DaggerError, match="cannot make a piper"):
        d.add_piper(42)


def test_resolve_unknown():
    d = Dagger()
    with pytest.raises(DaggerError, match="is not a piper of this dagger"):
        d.resolve(Piper(inc))
    assert d.resolve(Piper(inc), forgive=True) is False


def test_a_pipe_that_closes_a_cycle_is_refused_and_leaves_nothing_behind():
    a, b, c = _pipers("a", "b", "c")
    d = Dagger(pipes=[(a, b, c)])
    x = Piper(inc, name="x")
    with pytest.raises(DaggerCycleError, match="would close a cycle: a -> b -> c -> a") as info:
        d.add_pipe((x, c, a))
    assert [p.name for p in info.value.cycle] == ["a", "b", "c"]
    assert x not in d and not d.graph.has_edge(x, c)
    with pytest.raises(DaggerCycleError):
        d.add_pipe((a, a))


def test_order_is_topological_then_branch_then_insertion():
    src = Piper(inc, name="src")
    late, early = Piper(inc, name="late", branch=2), Piper(inc, name="early", branch=1)
    late_child, early_child = Piper(inc, name="late_child"), Piper(inc, name="early_child")
    sink = Piper(add, name="sink")
    d = Dagger(pipes=[(src, late, late_child, sink), (src, early, early_child, sink)])
    names = [p.name for p in d.postorder()]
    assert names == ["src", "early", "early_child", "late", "late_child", "sink"]
    # the fan-in piper's inbox follows that order
    assert [p.name for p in d.upstream(sink)] == ["early_child", "late_child"]
    # without branches: insertion order
    a, b = Piper(inc, name="a"), Piper(inc, name="b")
    d2 = Dagger(pipes=[(src, b), (src, a)])
    assert [p.name for p in d2.postorder()] == ["src", "b", "a"]


def test_branches_that_cannot_be_compared():
    a, b = Piper(inc, branch=1), Piper(inc, branch="x")
    with pytest.raises(DaggerError, match="branches"):
        Dagger(pipers=[a, b]).postorder()


def test_deleting():
    a, b, c = _pipers("a", "b", "c")
    d = Dagger(pipes=[(a, b, c)])
    with pytest.raises(DaggerError, match="feeds"):
        d.del_piper(a)
    d.del_piper(c)
    assert c not in d
    d.del_piper(a, forced=True)
    assert a not in d and len(d) == 1
    a, b, c, e = _pipers("a", "b", "c", "e")
    d = Dagger(pipes=[(a, b, c), (b, e)])
    d.del_pipe((a, b, c))  # b still feeds e: it stays; a and c feed nothing any more
    assert set(d.graph.nodes) == {b, e} and not d.graph.has_edge(b, c)
    d.del_pipes([(b, e)], forced=True)
    assert len(d) == 0


def test_children_after_parents():
    a, b, c = _pipers("a", "b", "c")
    d = Dagger(pipes=[(a, b)], pipers=[c])
    assert d.children_after_parents(a, b) == 1
    assert d.children_after_parents(b, a) == -1
    assert d.children_after_parents(a, c) == 0


def test_connect_start_and_read():
    a, b = Piper(inc, name="a"), Piper(double, name="b")
    d = Dagger(pipes=[(a, b)])
    with pytest.raises(DaggerError, match="has no input"):
        d.connect()
    d.disconnect()
    with pytest.raises(DaggerError, match="1 input pipers"):
        d.connect([range(3), range(3)])
    d.connect([range(3)])
    d.start()
    assert list(b) == [2, 4, 6]
    d.stop()
    d.disconnect()
    assert not a.connected and not b.connected


def test_xtras_must_match_pipers():
    with pytest.raises(DaggerError, match="xtras has 1 entries for 2 pipers"):
        Dagger(pipers=_pipers("a", "b"), xtras=[{}])
    d = Dagger(pipers=_pipers("a"), xtras=[{"color": "red"}])
    assert d.graph.nodes[d.postorder()[0]]["xtra"] == {"color": "red"}


def test_bad_pipes():
    with pytest.raises(DaggerError, match="a pipe is a non-empty sequence"):
        Dagger().add_pipe([])
