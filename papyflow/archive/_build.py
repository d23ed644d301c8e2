"""Turn objects into a graph of nodes, each with the recipe that writes it.

The walk starts from the inserted objects, in insertion order, and goes depth
first. Objects whose identity matters (everything but numbers, strings and tuples
of them) are nodes, one per object (keyed by ``id``), so an object reached twice is
written once and shared. A child met again while it is still on the walk's path is
a reference cycle: :class:`~papyflow.archive.CycleError`.

Recipes, tried in this order (the first that fits writes the object):

1. containers: ``list``, ``tuple``, ``dict``, ``set``, ``frozenset`` as displays;
2. anything importable by name (modules, classes, functions, ufuncs, bound and
   unbound methods): ``from module import name``;
3. ``obj.archive_1()`` (the mmf protocol): ``(rep, args, imports)``;
4. numpy arrays, scalars and dtypes: ``numpy.array([...], dtype=...)``, or a slot of
   the side data file for an array above the size threshold;
5. functions with no import path (``__main__``, lambdas, closures): their exact
   source (see :mod:`._functions`), else a dill payload;
6. enum members, ``functools.partial``, ``OrderedDict``/``defaultdict``/
   ``Counter``/``deque``, named tuples, plain dataclasses: their constructor;
7. standard-library values whose repr is a constructor call of literals
   (``Decimal('1.1')``, ``PosixPath('/x')``, ``datetime.date(2020, 1, 1)``);
8. the pickle protocol, ``__reduce_ex__(4)``, written out as calls and statements;
9. a dill payload (base64 in the source), unless ``allow_dill=False``.
"""

from __future__ import annotations

import base64
import copyreg
import functools
import pickle
import sys
import types
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._functions import NoExactSource, find_source
from ._nodes import (
    Context,
    Literal,
    Named,
    Node,
    Refuse,
    as_base,
    literal_of,
    valid_name,
)
from ._numpy import numpy_node
from ._recipes import (
    archive_1,
    attribute,
    collection_node,
    dataclass_node,
    dict_node,
    display,
    enum_member,
    import_path,
    kind_word,
    namedtuple_node,
    partial_node,
    set_node,
    stdlib_value,
    tuple_node,
)
from .errors import CycleError, UnarchivableError

__all__ = ["Builder", "Graph"]

_ACTIVE, _DONE = 1, 2  # Node.state; 0 is "not reached yet"
_NOTHING = object()
_LINE = 76  # characters of a base64 payload per line

# Not in the typing stubs, but part of the pickle protocol's modules.
_NEWOBJ = copyreg.__newobj__  # type: ignore[attr-defined]
_NEWOBJ_EX = copyreg.__newobj_ex__  # type: ignore[attr-defined]
_whichmodule: Callable[[object, str], str] = pickle.whichmodule  # type: ignore[attr-defined]

_METHOD_TYPES = (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)
_DESCRIPTOR_TYPES = (types.MethodDescriptorType, types.WrapperDescriptorType,
                     types.ClassMethodDescriptorType, types.GetSetDescriptorType,
                     types.MemberDescriptorType)


@dataclass
class Graph:
    """The result of a walk: nodes in an order where children come first."""

    order: list[Node]
    anonymous: list[Node | Literal]
    claimed: set[str]
    unbindable: set[str]
    reserved: set[str]


class Builder:
    """Walk objects into a :class:`Graph`.

    ``array_threshold``: arrays with more elements go to the side data file, which
    must then exist (``external=True``), else the walk refuses them.
    ``reserved``: names the surrounding text already uses; the archive binds none.
    """

    def __init__(self, *, array_threshold: float, external: bool, allow_dill: bool,
                 reserved: Iterable[str] = ()) -> None:
        self._threshold = array_threshold
        self._external = external
        self._allow_dill = allow_dill
        self._reserved = set(reserved)
        self._memo: dict[int, Node] = {}
        self._claimed: dict[str, object] = {}
        self._name_nodes: dict[str, Node] = {}
        self._unbindable: set[str] = set()
        self._late: deque[Named] = deque()
        self._order: list[Node] = []
        self._path: list[Node] = []

    def build(self, named: dict[str, object], anonymous: Sequence[object] = ()) -> Graph:
        """Walk the named objects (in order), then the anonymous ones."""
        for name, obj in named.items():
            self._claimed[name] = obj
        for name, obj in named.items():
            self._walk(self._guarded(functools.partial(self._bind, name, obj),
                                     f"name {name!r}", obj))
        refs: list[Node | Literal] = []
        for obj in anonymous:
            ref = self._guarded(functools.partial(self._child, obj), "the object", obj)
            refs.append(ref)
            self._walk(ref)
        return Graph(order=self._order, anonymous=refs, claimed=set(self._claimed),
                     unbindable=set(self._unbindable), reserved=set(self._reserved))

    # -- the walk -----------------------------------------------------------------------------

    def _walk(self, start: Node | Literal) -> None:
        self._visit(start)
        while self._late:
            late = self._late.popleft()
            self._visit(self._guarded(functools.partial(self._bind, late.name, late.obj),
                                      f"global {late.name!r}"))

    def _visit(self, start: Node | Literal) -> None:
        if not isinstance(start, Node) or start.state == _DONE:
            return
        self._push(start)
        while self._path:
            node = self._path[-1]
            assert node.pending is not None
            for child in node.pending:
                if not isinstance(child, Node) or child.state == _DONE:
                    continue
                if child.state == _ACTIVE:
                    cycle = self._path[self._path.index(child):] + [child]
                    raise CycleError([n.describe() for n in cycle])
                self._push(child)
                break
            else:
                self._path.pop()
                node.state = _DONE
                node.pending = None
                self._order.append(node)
                self._late.extend(node.late)

    def _push(self, node: Node) -> None:
        node.state = _ACTIVE
        self._path.append(node)
        children: list[Node | Literal] = []
        for obj in node.child_objs:
            children.append(self._guarded(functools.partial(self._child, obj),
                                          self._where, obj))
        node.children = children
        node.child_objs = []
        node.pending = iter(children)

    def _where(self) -> str:
        """The walk's path, for a message; made only then (it is as long as the path)."""
        return " -> ".join(n.describe() for n in self._path)

    def _guarded(self, make: Callable[[], Node | Literal], where: str | Callable[[], str],
                 obj: object = _NOTHING) -> Node | Literal:
        """``make()``, a refusal turned into :class:`UnarchivableError` at ``where``."""
        try:
            return make()
        except Refuse as exc:
            what = "" if obj is _NOTHING or isinstance(obj, Node | Named) \
                else f" -> {type(obj).__name__} object"
            path = where if isinstance(where, str) else where()
            raise UnarchivableError(str(exc), path + what) from exc.__cause__

    def _child(self, obj: object) -> Node | Literal:
        if isinstance(obj, Node):
            return obj
        if isinstance(obj, Named):
            return self._bind(obj.name, obj.obj)
        lit = literal_of(obj)
        if lit is not None:
            return lit
        return self._node(obj)

    def _node(self, obj: object) -> Node:
        node = self._memo.get(id(obj))
        if node is None:
            node = self._make(obj)
            node.obj = obj
            self._memo[id(obj)] = node
        return node

    def _bind(self, name: str, obj: object) -> Node:
        node = self._name_nodes.get(name)
        if node is not None:
            return node
        lit = literal_of(obj)
        if lit is not None:
            node = Node(label=type(obj).__name__, stem=name, obj=obj, how="literal",
                        render=lambda ctx, c: lit.render(ctx))
        else:
            node = self._node(obj)
        if name not in node.names:
            node.names.append(name)
        self._name_nodes[name] = node
        return node

    def _claim(self, required: dict[str, object], builtin_names: Iterable[str]) -> str | None:
        """Reserve the global names a function's text reads; say why not if they clash."""
        for name, obj in required.items():
            if name.startswith("__") and name.endswith("__"):
                return f"it reads the module attribute {name}"
            if name in self._reserved or name in self._unbindable:
                return f"it reads a global {name!r} whose name is taken here"
            have = self._claimed.get(name, _NOTHING)
            if have is not _NOTHING and have is not obj:
                return f"it reads a global {name!r} that this archive binds to another object"
        for name in builtin_names:
            if name in self._claimed or name in self._reserved:
                return f"it reads the builtin {name!r}, a name this archive binds"
        self._claimed.update(required)
        self._unbindable.update(builtin_names)
        return None

    # -- recipes ------------------------------------------------------------------------------

    def _make(self, obj: object) -> Node:
        kind = type(obj)
        if kind is list:
            return display("list", list(obj), "[", "]")  # type: ignore[call-overload]
        if kind is tuple:
            return tuple_node(obj)  # type: ignore[arg-type]
        if kind is dict:
            return dict_node(obj)  # type: ignore[arg-type]
        if kind is set or kind is frozenset:
            return set_node(obj)  # type: ignore[arg-type]
        node = self._by_name(obj)
        if node is not None:
            return node
        if not isinstance(obj, type) and callable(getattr(kind, "archive_1", None)):
            return archive_1(obj)
        if isinstance(obj, np.ndarray | np.generic | np.dtype):
            node = numpy_node(obj, threshold=self._threshold, external=self._external)
            if node is not None:
                return node
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, type):
            return self._dill(obj, f"class {obj.__qualname__} cannot be imported by name")
        if isinstance(obj, types.ModuleType):
            raise Refuse(f"module {obj.__name__!r} cannot be imported by that name")
        for recipe in (enum_member, partial_node, collection_node, namedtuple_node, dataclass_node,
                       stdlib_value):
            node = recipe(obj)
            if node is not None:
                return node
        return self._reduce(obj)

    def _by_name(self, obj: object) -> Node | None:
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
            if name == "__main__" or sys.modules.get(name) is not obj:
                return None
            return self._module(name)
        path = import_path(obj)
        if path is not None:
            return self._import(obj, *path)
        if isinstance(obj, _METHOD_TYPES):
            owner = getattr(obj, "__self__", None)
            method = getattr(obj, "__name__", None)
            if owner is not None and not isinstance(owner, types.ModuleType) \
                    and isinstance(method, str) and method.isidentifier():
                try:
                    same = getattr(owner, method) == obj
                except Exception:  # noqa: BLE001 - any failure means "not that method"
                    same = False
                if same:
                    return attribute(owner, method, f"method {method}")
        if isinstance(obj, _DESCRIPTOR_TYPES):
            owner = getattr(obj, "__objclass__", None)
            attr = getattr(obj, "__name__", None)
            if isinstance(attr, str) and attr.isidentifier() \
                    and getattr(owner, attr, None) is obj:
                return attribute(owner, attr, f"descriptor {attr}")
        return None

    def _module(self, name: str) -> Node:
        def define(ctx: Context, alias: str, c: list[str]) -> list[str]:
            return [f"import {name}" if alias == name else f"import {name} as {alias}"]

        return Node(label=f"module {name}", stem=name.rpartition(".")[2], define=define,
                    header=True, must_bind=True, module=name, how="import")

    def _import(self, obj: object, module: str, qualname: str) -> Node:
        head, _, rest = qualname.partition(".")
        if rest:
            owner = getattr(sys.modules[module], head)
            return attribute(owner, rest, f"{type(obj).__name__} {qualname}")
        if module == "builtins":
            return Node(label=f"builtin {head}", stem=head, share=False, how="import",
                        render=lambda ctx, c: ctx.builtin(head))

        def define(ctx: Context, alias: str, c: list[str]) -> list[str]:
            suffix = "" if alias == head else f" as {alias}"
            return [f"from {module} import {head}{suffix}"]

        return Node(label=f"{kind_word(obj)} {qualname}", stem=head, define=define,
                    header=True, must_bind=True, how="import")

    def _function(self, func: types.FunctionType) -> Node:
        try:
            src = find_source(func)
        except NoExactSource as exc:
            return self._dill(func, f"no exact source: {exc}")
        required = dict(src.header_globals)
        required.update(src.body_globals)
        if src.kind == "def" and not src.needs_factory:
            if required.get(src.name, func) is not func:
                return self._dill(func, f"its name {src.name!r} is bound to another object "
                                        f"in its module")
            required[src.name] = func
        clash = self._claim(required, src.builtin_names)
        if clash is not None:
            return self._dill(func, clash)
        header = [Named(name, obj) for name, obj in src.header_globals.items()]
        late = [Named(name, obj) for name, obj in src.body_globals.items()]
        label = f"function {func.__qualname__}"
        if src.kind == "def" and not src.needs_factory:
            return Node(label=label, stem=src.name, child_objs=list(header),
                        define=lambda ctx, name, c: src.text.split("\n"),
                        fixed_name=src.name, must_bind=True, late=late, how="source")
        n_header = len(header)
        if src.kind == "lambda":
            def render(ctx: Context, c: list[str]) -> str:
                if not src.params:
                    return src.text
                pairs = ", ".join(f"{p}={v}" for p, v in zip(src.params, c[n_header:]))
                return f"{src.lambda_factory()}({pairs})"

            return Node(label=label, stem=func.__name__.strip("<>"), late=late, how="source",
                        child_objs=[*header, *src.values], render=render)
        factory = Node(label=f"factory of {func.__qualname__}", stem=f"make_{src.name}",
                       define=lambda ctx, name, c: src.factory_def(name).rstrip().split("\n"),
                       must_bind=True, how="source")

        def call(ctx: Context, c: list[str]) -> str:
            pairs = ", ".join(f"{p}={v}" for p, v in zip(src.params, c[1 + n_header:]))
            return f"{c[0]}({pairs})"

        return Node(label=label, stem=src.name, late=late, how="source", render=call,
                    child_objs=[factory, *header, *src.values])

    def _reduce(self, obj: object) -> Node:
        label = f"{type(obj).__name__} object"
        try:
            # As pickle does: a reducer registered with copyreg comes first.
            reducer = copyreg.dispatch_table.get(type(obj))
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
        except Exception as exc:  # noqa: BLE001 - the reason goes into the dill fallback
            return self._dill(obj, f"pickle cannot reduce it ({type(exc).__name__}: {exc})")
        if isinstance(rv, str):
            module = getattr(obj, "__module__", None) or _whichmodule(obj, rv)
            if module == "__main__":
                return self._dill(obj, f"pickle names it {module}.{rv}, which a fresh "
                                       f"interpreter does not have")
            if import_path(obj) is None:
                target: object = sys.modules.get(module)
                for part in rv.split("."):
                    target = getattr(target, part, None)
                if target is not obj:
                    return self._dill(obj, f"pickle names it {module}.{rv}, which is not it")
            return self._import(obj, module, rv)
        if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
            return self._dill(obj, "its __reduce_ex__ returned something pickle rejects")
        func, args, state, listitems, dictitems, setter = (rv + (None,) * 4)[:6]
        if not callable(func) or not isinstance(args, tuple):
            return self._dill(obj, "its __reduce_ex__ returned something pickle rejects")
        items = list(listitems) if listitems is not None else []
        pairs = list(dictitems) if dictitems is not None else []
        children: list[object] = []
        if func is _NEWOBJ and args and isinstance(args[0], type):
            children += [args[0], *args[1:]]
            n_args = len(args) - 1

            def create(c: list[str]) -> str:
                cls = as_base(c[0])
                return f"{cls}.__new__({', '.join([c[0], *c[1:1 + n_args]])})"
            used = 1 + n_args
        elif func is _NEWOBJ_EX and len(args) == 3 \
                and isinstance(args[0], type) and all(valid_name(k) for k in args[2]):
            cls_, pos, kw = args
            children += [cls_, *pos, *kw.values()]
            n_pos, keys = len(pos), list(kw)

            def create(c: list[str]) -> str:
                named = [f"{k}={v}" for k, v in zip(keys, c[1 + n_pos:])]
                return f"{as_base(c[0])}.__new__({', '.join([c[0], *c[1:1 + n_pos], *named])})"
            used = 1 + n_pos + len(keys)
        else:
            children += [func, *args]
            n_args = len(args)

            def create(c: list[str]) -> str:
                return f"{as_base(c[0])}({', '.join(c[1:1 + n_args])})"
            used = 1 + n_args

        post_parts: list[Callable[[str, list[str]], list[str]]] = []
        if state is not None:
            i = used
            if setter is not None:
                children += [setter, state]
                used += 2
                post_parts.append(lambda name, c: [f"{as_base(c[i])}({name}, {c[i + 1]})"])
            elif getattr(type(obj), "__setstate__", None) is not None:
                children.append(state)
                used += 1
                post_parts.append(lambda name, c: [f"{name}.__setstate__({c[i]})"])
            else:
                slots: dict[object, object] = {}
                if isinstance(state, tuple) and len(state) == 2:
                    state, slots = state
                    slots = slots or {}
                if not isinstance(state, dict | types.NoneType) or not isinstance(slots, dict) \
                        or not all(isinstance(k, str) for k in slots):
                    return self._dill(obj, "its state is neither a dict nor set by "
                                           "__setstate__")
                if state:
                    children.append(state)
                    used += 1
                    post_parts.append(lambda name, c: [f"{name}.__dict__.update({c[i]})"])
                if slots:
                    j = used
                    keys = list(slots)
                    children += list(slots.values())
                    used += len(keys)
                    post_parts.append(lambda name, c: [
                        f"{name}.{k} = {v}" if valid_name(k)
                        else f"setattr({name}, {k!r}, {v})"
                        for k, v in zip(keys, c[j:j + len(keys)])])
        if items:
            k0 = used
            children += items
            used += len(items)
            if hasattr(obj, "extend"):
                post_parts.append(lambda name, c: [
                    f"{name}.extend([{', '.join(c[k0:k0 + len(items)])}])"])
            else:
                post_parts.append(lambda name, c: [
                    f"{name}.append({v})" for v in c[k0:k0 + len(items)]])
        if pairs:
            p0 = used
            for pair in pairs:
                children += list(pair)
            used += 2 * len(pairs)
            post_parts.append(lambda name, c: [
                f"{name}[{c[p0 + 2 * n]}] = {c[p0 + 2 * n + 1]}" for n in range(len(pairs))])

        def post(ctx: Context, name: str, c: list[str]) -> list[str]:
            return [line for part in post_parts for line in part(name, c)]

        return Node(label=label, stem=type(obj).__name__.lower(), child_objs=children,
                    render=lambda ctx, c: create(c), post=post if post_parts else None,
                    must_bind=bool(post_parts))

    def _dill(self, obj: object, reason: str) -> Node:
        label = f"{kind_word(obj)} {getattr(obj, '__qualname__', type(obj).__name__)}"
        if not self._allow_dill:
            raise Refuse(f"{reason}; it could be stored as a dill pickle, but "
                         f"allow_dill=False")
        import dill

        try:
            # recurse=True stores only the globals a function reads (not its whole
            # module); dill cannot do that for every function, then it stores them all.
            try:
                payload = dill.dumps(obj, recurse=True)
            except RecursionError:
                payload = dill.dumps(obj)
        except Exception as exc:
            raise Refuse(f"{reason}; dill cannot pickle it either "
                         f"({type(exc).__name__}: {exc})") from exc
        text = base64.b64encode(payload).decode("ascii")
        chunks = [text[i:i + _LINE] for i in range(0, len(text), _LINE)] or [""]

        def render(ctx: Context, c: list[str]) -> str:
            lines = "\n".join(f"    {chunk!r}" for chunk in chunks)
            return (f"{ctx.module('dill')}.loads({ctx.module('base64')}.b64decode(\n"
                    f"{lines}\n))")

        stem = getattr(obj, "__name__", type(obj).__name__)
        return Node(label=label, stem=stem if isinstance(stem, str) else "obj", render=render,
                    must_bind=True, how="dill",
                    comment=f"{label}: {reason}; stored as a dill pickle")
