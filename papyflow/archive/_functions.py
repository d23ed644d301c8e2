"""Find the exact source of a function that cannot be imported by name.

A function defined in ``__main__``, a lambda or a closure has no import path that
a fresh interpreter could follow. When its defining file is readable (through
:mod:`linecache`, so IPython cells and restored archives count), its source can be
written into an archive instead -- but only when compiling that source again gives
the very same code object. Everything that would make the copy differ (the file
changed since, a decorator, a closure that rebinds its variables with
``nonlocal``, function attributes) makes :func:`find_source` refuse with a reason,
and the caller falls back to a dill payload.

What a function needs besides its text is reported with it:

* the global names its body reads when called (``body_globals``): the archive must
  bind them, under those very names, in the namespace the function is defined in;
* the global names its header reads when the ``def`` runs (``header_globals``):
  default values and annotations written as a name such as ``SCALE`` or ``np.ndarray``;
* the values that the text cannot name (``params``): closure variables, and
  defaults written as an expression of local names (``lambda x, n=n: ...``). These
  become the parameters of a small factory that the archive calls with the values;
  a default that is a plain number, string or tuple of them is written in place.
"""

from __future__ import annotations

import __future__
import ast
import builtins
import dis
import inspect
import keyword
import linecache
import math
import symtable
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FunctionSource", "NoExactSource", "find_source", "global_names"]

# An archive is compiled without `from __future__` imports (in 3.11+ the only one
# that still changes anything is `annotations`), so copies are compiled so too. A
# function that had postponed annotations gets them written as the strings they were.
_CO_FUTURE_ANNOTATIONS = __future__.annotations.compiler_flag

# Flags that do not change what the function does: CO_NESTED only records that it was
# compiled inside another; the annotations flag only how annotations in it are stored,
# which the comparison of the code that makes nested functions covers.
_IGNORED_FLAGS = inspect.CO_NESTED | _CO_FUTURE_ANNOTATIONS

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"})
_CELL_WRITES = frozenset({"STORE_DEREF", "DELETE_DEREF"})

_MISSING = object()
_LITERAL: tuple[str, object] = ("", None)  # a header literal that stays as written


class NoExactSource(Exception):
    """The source of a function cannot be written exactly; ``str()`` says why."""


@dataclass(frozen=True)
class FunctionSource:
    """The exact source of one function, and what it needs around it.

    ``kind`` is ``'def'`` or ``'lambda'``. For a ``def``, ``text`` is the whole
    statement as it stands in its file, every line at its original indentation
    ``indent``; for a lambda it is the expression, in parentheses. ``params`` and
    ``values`` are the factory's parameters and the values to call it with.
    """

    kind: Literal["def", "lambda"]
    name: str
    text: str
    indent: str
    params: tuple[str, ...]
    values: tuple[object, ...]
    header_globals: dict[str, object] = field(default_factory=dict)
    body_globals: dict[str, object] = field(default_factory=dict)
    builtin_names: frozenset[str] = frozenset()

    @property
    def needs_factory(self) -> bool:
        """Whether the function must be made by calling a factory.

        A ``def`` that stood at the top of its module needs none when it has no
        values to receive: its text is written as it is and binds ``name``. A
        lambda without values is written as it is, as an expression.
        """
        return bool(self.params) or (self.kind == "def" and bool(self.indent))

    def factory_def(self, factory: str) -> str:
        """The source of a factory ``def`` named ``factory`` that returns the function."""
        if self.kind != "def":
            raise ValueError("only a def is made by a factory def; a lambda is called inline")
        body = self.text if self.indent else textwrap.indent(self.text, "    ")
        indent = self.indent or "    "
        return (f"def {factory}({', '.join(self.params)}):\n"
                f"{body}\n{indent}return {self.name}\n")

    def lambda_factory(self) -> str:
        """The lambda that returns the function: the text itself or a lambda around it."""
        if self.kind != "lambda":
            raise ValueError("factory_def() makes a def; lambda_factory() is for lambdas")
        if not self.params:
            return self.text
        return f"(lambda {', '.join(self.params)}: {self.text})"


def find_source(func: types.FunctionType) -> FunctionSource:
    """Return the exact source of ``func``, or raise :class:`NoExactSource` saying why."""
    if not isinstance(func, types.FunctionType):
        raise NoExactSource(f"{type(func).__name__} is not a Python function")
    code = func.__code__
    if func.__name__ != code.co_name:
        raise NoExactSource(f"its __name__ was changed from {code.co_name!r}")
    if func.__dict__:
        raise NoExactSource(f"it carries attributes {sorted(func.__dict__)}")
    cells = _cell_values(func)
    lines = linecache.getlines(code.co_filename, func.__globals__)
    if not lines:
        raise NoExactSource(f"no source for {code.co_filename!r}")
    text = "".join(lines)
    try:
        tree, imported = _parse(code.co_filename, text)
    except SyntaxError as exc:
        raise NoExactSource(f"{code.co_filename!r} does not parse: {exc.msg}") from None
    offsets = _LineOffsets(lines)
    reasons = []
    for candidate in _candidates(tree, code):
        try:
            return _try_candidate(func, candidate, text, offsets, cells, imported)
        except NoExactSource as exc:
            reasons.append(str(exc))
    if not reasons:
        raise NoExactSource(f"no definition of {code.co_name!r} found at line "
                            f"{code.co_firstlineno} of {code.co_filename!r}")
    raise NoExactSource(reasons[0])


def global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it read, write or delete."""
    names: set[str] = set()
    for inner in _code_tree(code):
        for instruction in dis.get_instructions(inner):
            if instruction.opname in _GLOBAL_OPS:
                names.add(instruction.argval)
    return names


# -- discovery --------------------------------------------------------------------------

_parsed: dict[str, tuple[str, ast.Module, frozenset[str]]] = {}


def _parse(filename: str, text: str) -> tuple[ast.Module, frozenset[str]]:
    """The tree of a file and the names its top level binds by import statements."""
    # One parse per file version: a pipeline's lambdas usually share a file.
    cached = _parsed.get(filename)
    if cached is not None and cached[0] == text:
        return cached[1], cached[2]
    tree = ast.parse(text, filename)
    table = symtable.symtable(text, filename, "exec")
    imported = frozenset(s.get_name() for s in table.get_symbols() if s.is_imported())
    _parsed[filename] = (text, tree, imported)
    return tree, imported


_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _candidates(tree: ast.Module, code: types.CodeType) -> Iterator[_Definition]:
    is_lambda = code.co_name == "<lambda>"
    for node in ast.walk(tree):
        if is_lambda:
            if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno:
                yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                and node.name == code.co_name:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if first == code.co_firstlineno:
                yield node


def _cell_values(func: types.FunctionType) -> dict[str, object]:
    code = func.__code__
    values: dict[str, object] = {}
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:
            raise NoExactSource(f"its closure variable {name!r} is not bound yet") from None
        if value is func:
            raise NoExactSource(f"its closure variable {name!r} refers to the function "
                                f"itself") from None
        values[name] = value
    if values:
        for inner in _code_tree(code):
            for instruction in dis.get_instructions(inner):
                if instruction.opname in _CELL_WRITES and instruction.argval in values:
                    raise NoExactSource(f"it rebinds its closure variable "
                                        f"{instruction.argval!r} (nonlocal)")
    return values


def _try_candidate(func: types.FunctionType, node: _Definition, text: str,
                   offsets: _LineOffsets, cells: dict[str, object],
                   imported: frozenset[str]) -> FunctionSource:
    code = func.__code__
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        if node.decorator_list:
            raise NoExactSource("it is decorated; the decorator's result is not its source")
        kind: Literal["def", "lambda"] = "def"
        line = offsets.line(node.lineno)
        col = offsets.column(node.lineno, node.col_offset)
        indent = line[:col]
        if indent.strip():
            raise NoExactSource("its def shares a line with other code")
        start = offsets.offset(node.lineno, 0)
    else:
        kind, indent = "lambda", ""
        start = offsets.offset(node.lineno, node.col_offset)
    end = offsets.offset(node.end_lineno or node.lineno, node.end_col_offset or 0)

    taken = set(cells) | _all_names(code)
    taken |= {n.id for n in ast.walk(node.args) if isinstance(n, ast.Name)}
    params = list(cells)
    values = list(cells.values())
    header_globals: dict[str, object] = {}
    builtin_names: set[str] = set()
    replacements: list[tuple[int, int, str]] = []

    for expr, value in _header(func, node):
        if isinstance(value, _Postponed):
            replacements.append((offsets.offset(expr.lineno, expr.col_offset),
                                 offsets.offset(expr.end_lineno or expr.lineno,
                                                expr.end_col_offset or 0), repr(value.text)))
            continue
        how = _header_expr(expr, value, func, set(cells))
        if how is _LITERAL:
            continue
        if how is None and (plain := _plain_repr(value)) is not None:
            # A default of a plain value is written in place (lambda x, i=2: x + i):
            # the function's code does not hold its defaults, so it stays the same.
            replacements.append((offsets.offset(expr.lineno, expr.col_offset),
                                 offsets.offset(expr.end_lineno or expr.lineno,
                                                expr.end_col_offset or 0), plain))
        elif how is None:
            param = _fresh("_default", taken)
            taken.add(param)
            params.append(param)
            values.append(value)
            replacements.append((offsets.offset(expr.lineno, expr.col_offset),
                                 offsets.offset(expr.end_lineno or expr.lineno,
                                                expr.end_col_offset or 0), param))
        elif how[1] is _MISSING:
            builtin_names.add(how[0])
        else:
            header_globals[how[0]] = how[1]

    body = text[start:end]
    for lo, hi, new in sorted(replacements, reverse=True):
        body = body[:lo - start] + new + body[hi - start:]
    if kind == "lambda":
        body = f"({body})"
    source = FunctionSource(kind=kind, name=code.co_name, text=body, indent=indent,
                            params=tuple(params), values=tuple(values),
                            header_globals=header_globals)
    copy = _compile_copy(source, code, imported)
    if not _same_code(copy, code):
        raise NoExactSource("its source no longer compiles to its code "
                            "(the file changed, or the text is not the whole function)")

    body_globals: dict[str, object] = {}
    for name in sorted(global_names(code)):
        if name in func.__globals__:
            body_globals[name] = func.__globals__[name]
        elif hasattr(builtins, name):
            builtin_names.add(name)
    return FunctionSource(kind=kind, name=code.co_name, text=body, indent=indent,
                          params=tuple(params), values=tuple(values),
                          header_globals=header_globals, body_globals=body_globals,
                          builtin_names=frozenset(builtin_names))


def _header(func: types.FunctionType,
            node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ) -> Iterator[tuple[ast.expr, object]]:
    """The header expressions that run when the def runs, with the values they gave."""
    args = node.args
    defaults = func.__defaults__ or ()
    if len(defaults) != len(args.defaults):
        raise NoExactSource("its defaults were changed after it was defined")
    yield from zip(args.defaults, defaults)
    kwdefaults = func.__kwdefaults__ or {}
    written = {a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None}
    if set(written) != set(kwdefaults):
        raise NoExactSource("its keyword defaults were changed after it was defined")
    for name, expr in written.items():
        yield expr, kwdefaults[name]
    if isinstance(node, ast.Lambda):
        return
    annotations = func.__annotations__
    postponed = bool(func.__code__.co_flags & _CO_FUTURE_ANNOTATIONS)
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    pairs = [(a.arg, a.annotation) for a in every if a.annotation is not None]
    if node.returns is not None:
        pairs.append(("return", node.returns))
    if {name for name, _ in pairs} != set(annotations):
        raise NoExactSource("its annotations were changed after it was defined")
    for name, expr in pairs:
        value = annotations[name]
        if postponed:
            if not isinstance(value, str):
                raise NoExactSource("its annotations were changed after it was defined")
            yield expr, _Postponed(value)
        else:
            yield expr, value


@dataclass(frozen=True)
class _Postponed:
    """An annotation kept as a string (``from __future__ import annotations``)."""

    text: str


def _header_expr(expr: ast.expr, value: object, func: types.FunctionType,
                 local: set[str]) -> tuple[str, object] | None:
    """How a header expression can stay as written: ``_LITERAL`` for a literal,
    ``(name, object)`` for a global name chain, ``(name, _MISSING)`` for a builtin,
    or None when it must be replaced by a factory parameter."""
    try:
        literal = ast.literal_eval(expr)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    else:
        return _LITERAL if _same_value(literal, value) else None
    chain: list[str] = []
    while isinstance(expr, ast.Attribute):
        chain.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id in local:
        return None
    name = expr.id
    if name in func.__globals__:
        root = func.__globals__[name]
        how: tuple[str, object] = (name, root)
    elif hasattr(builtins, name):
        root = getattr(builtins, name)
        how = (name, _MISSING)
    else:
        return None
    target = root
    for attr in reversed(chain):
        try:
            target = getattr(target, attr)
        except Exception:
            return None
    return how if target is value else None


def _plain_repr(value: object) -> str | None:
    """A short repr of a number, string, bytes, bool, None or tuple of them that reads
    back as the very same value, else None."""
    if type(value) is tuple:
        items = [_plain_repr(v) for v in value]
        if any(i is None for i in items):
            return None
        text = f"({items[0]},)" if len(items) == 1 else f"({', '.join(map(str, items))})"
    elif type(value) in (int, str, bytes, bool, type(None)) or \
            (type(value) is float and math.isfinite(float(value))):  # not numpy's
        if isinstance(value, int) and not -10**30 < value < 10**30:
            return None
        text = repr(value)
    else:
        return None
    return text if len(text) <= 60 else None


def _same_value(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple | list):
        assert isinstance(b, tuple | list)
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same_value(a[k], b[k]) for k in a)
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:
        return False


def _compile_copy(source: FunctionSource, original: types.CodeType,
                  imported: frozenset[str]) -> types.CodeType:
    """Compile the text as the archive will, in a module where ``imported`` are imports.

    CPython compiles ``np.sqrt(x)`` differently when ``np`` was bound by an import
    statement at the top of the module, so the copy is compiled below dummy imports
    of the same names (the statement is never run).
    """
    flags = 0
    prefix = f"import {', '.join(sorted(imported))}\n" if imported else ""
    try:
        if source.kind == "lambda":
            top = compile(f"{prefix}_ = {source.lambda_factory()}", original.co_filename,
                          "exec", flags=flags, dont_inherit=True)
            found = _only_code(top)
            return _only_code(found) if source.params else found
        if source.needs_factory:
            top = compile(prefix + source.factory_def("_factory"), original.co_filename,
                          "exec", flags=flags, dont_inherit=True)
            return _only_code(_only_code(top), source.name)
        top = compile(prefix + source.text, original.co_filename, "exec", flags=flags,
                      dont_inherit=True)
        return _only_code(top, source.name)
    except (SyntaxError, ValueError) as exc:
        raise NoExactSource(f"its source does not compile on its own ({exc})") from None


def _only_code(code: types.CodeType, name: str | None = None) -> types.CodeType:
    inner = [c for c in code.co_consts if isinstance(c, types.CodeType)
             and (name is None or c.co_name == name)]
    if len(inner) != 1:
        raise NoExactSource("its source holds more than the function")
    return inner[0]


_COMPARED = ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_nlocals",
             "co_code", "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_name",
             "co_exceptiontable")


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether two code objects do the same thing; line numbers and file names aside."""
    if any(getattr(a, attr) != getattr(b, attr) for attr in _COMPARED):
        return False
    if (a.co_flags | _IGNORED_FLAGS) != (b.co_flags | _IGNORED_FLAGS):
        return False
    return _same_consts(a.co_consts, b.co_consts)


def _same_consts(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif isinstance(x, tuple) and isinstance(y, tuple) and type(x) is type(y):
            if not _same_consts(x, y):
                return False
        elif not _same_value(x, y):
            return False
    return True


def _code_tree(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_tree(const)


def _all_names(code: types.CodeType) -> set[str]:
    names: set[str] = set()
    for inner in _code_tree(code):
        names.update(inner.co_names, inner.co_varnames, inner.co_freevars, inner.co_cellvars)
    return names


def _fresh(stem: str, taken: set[str]) -> str:
    name, n = stem, 1
    while name in taken or keyword.iskeyword(name):
        n += 1
        name = f"{stem}_{n}"
    return name


class _LineOffsets:
    """Turn the (line, UTF-8 byte column) positions of :mod:`ast` into text offsets."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines
        self._starts = [0]
        for line in lines:
            self._starts.append(self._starts[-1] + len(line))

    def line(self, lineno: int) -> str:
        return self._lines[lineno - 1]

    def column(self, lineno: int, byte_col: int) -> int:
        return len(self._lines[lineno - 1].encode("utf-8")[:byte_col].decode("utf-8"))

    def offset(self, lineno: int, byte_col: int) -> int:
        return self._starts[lineno - 1] + self.column(lineno, byte_col)
