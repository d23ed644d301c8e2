"""Functions in archives: by import, by their exact source, or as a dill payload."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from papyflow.archive import (
    Archive,
    UnarchivableError,
    callable_source,
    restore,
)

REPO = Path(__file__).resolve().parent.parent
SCALE = 10


def reason(snippet_or_text) -> str:
    """The comment a dill payload carries, on one line."""
    text = snippet_or_text if isinstance(snippet_or_text, str) \
        else "\n".join(snippet_or_text.statements)
    return " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))


def archived(**objects):
    archive = Archive()
    archive.insert(**objects)
    text = str(archive)
    return restore(text), text


def scaled(x):
    return x * SCALE


# -- by import ---------------------------------------------------------------------------------

def test_importable_functions_classes_and_methods_are_imported_by_name():
    values = dict(sqrt=math.sqrt, join=os.path.join, ndarray=np.ndarray, sin=np.sin,
                  method=str.upper, bound="-".join, classmethod_=dict.fromkeys,
                  module=np.linalg, length=len, kind=int)
    res, text = archived(**values)
    for name, value in values.items():
        if name == "bound":
            assert res[name](["a", "b"]) == "a-b"
        else:
            assert res[name] is value or res[name] == value, name
    assert "from math import sqrt" in text and "import numpy.linalg as module" in text
    assert "length = len" in text and "kind = int" in text
    assert "dill" not in text


def test_callable_source_of_an_importable_function_is_an_import():
    snippet = callable_source(math.sqrt)
    assert snippet.how == "import"
    assert snippet.imports == ("from math import sqrt as _sqrt",)
    assert snippet.expression == "_sqrt" and snippet.statements == ()
    namespace: dict = {}
    exec(snippet.code("root"), namespace)
    assert namespace["root"] is math.sqrt


def test_callable_source_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="func must be callable"):
        callable_source(3)  # type: ignore[arg-type]


def test_partials_of_functions_keep_their_arguments():
    res, text = archived(p=functools.partial(scaled, 4))
    assert res["p"]() == 40
    assert "_partial(_scaled, 4)" in text


# -- by source ---------------------------------------------------------------------------------

def test_a_lambda_without_free_variables_is_written_by_its_source():
    add_one = lambda x: x + 1  # noqa: E731 - the lambda is what is tested
    snippet = callable_source(add_one)
    assert snippet.how == "source"
    assert snippet.expression == "(lambda x: x + 1)"
    res, _ = archived(f=add_one)
    assert res["f"](41) == 42


def test_a_lambda_reading_globals_brings_them_along():
    norm = lambda v: float(np.sqrt(np.sum(np.square(v)))) * SCALE  # noqa: E731
    res, text = archived(norm=norm)
    assert res["norm"]([3, 4]) == 50.0
    assert "import numpy as np" in text and "SCALE = 10" in text
    assert "dill" not in text


def test_two_lambdas_on_one_line_each_get_their_own_source():
    inc, double = (lambda x: x + 1), (lambda x: x * 2)
    res, text = archived(inc=inc, double=double)
    assert (res["inc"](5), res["double"](5)) == (6, 10)
    assert "inc = (lambda x: x + 1)" in text and "double = (lambda x: x * 2)" in text


def test_a_multiline_lambda_is_written_whole():
    pick = (lambda items,  # noqa: E731
            n: [item for item in items
                if item % n == 0])
    res, _ = archived(pick=pick)
    assert res["pick"](range(10), 3) == [0, 3, 6, 9]


def test_closures_over_constants_are_made_by_a_factory():
    def make_adder(n):
        def adder(x):
            """Add n to x.

            The docstring keeps its indentation.
            """
            return x + n
        return adder

    add3 = make_adder(3)
    snippet = callable_source(add3)
    assert snippet.how == "source"
    assert snippet.expression == "_make_adder(n=3)"
    assert snippet.statements[0] == "def _make_adder(n):"
    res, _ = archived(add3=add3)
    assert res["add3"](4) == 7
    assert res["add3"].__doc__ == add3.__doc__


def test_closure_variables_keep_their_identity_with_other_objects():
    table = {"a": 1}
    lookup = lambda key: table[key]  # noqa: E731
    res, _ = archived(lookup=lookup, table=table)
    res["table"]["b"] = 2
    assert res["lookup"]("b") == 2


def test_lambda_defaults_from_a_loop_are_passed_to_a_factory():
    adders = [lambda x, i=i: x + i for i in range(3)]
    res, text = archived(adders=adders)
    assert [f(10) for f in res["adders"]] == [10, 11, 12]
    assert "(lambda x, i=2: x + i)" in text


def test_defaults_that_are_not_plain_values_go_through_a_factory():
    marker = object()
    pick = [lambda x, m=marker: m for _ in range(1)][0]
    snippet = callable_source(pick)
    assert snippet.how == "source"
    assert snippet.expression.startswith("(lambda _default: (lambda x, m=_default: m))(")
    namespace: dict = {}
    exec(snippet.code("f"), namespace)
    assert type(namespace["f"](1)) is object


def test_defaults_and_annotations_written_as_globals_stay_as_written():
    def describe(x: np.ndarray, scale: int = SCALE, *, unit=math.pi) -> str:
        return f"{x.sum() * scale} {unit}"

    snippet = callable_source(describe)
    assert snippet.how == "source"
    # This module has `from __future__ import annotations`: the archive, which has
    # not, writes them as the strings they are.
    assert "    def describe(x: 'np.ndarray', scale: 'int' = SCALE, *, unit=math.pi) -> 'str':" \
        in snippet.statements
    assert snippet.expression == "_make_describe()"
    res, _ = archived(describe=describe)
    assert res["describe"](np.ones(2)) == f"20.0 {math.pi}"
    assert res["describe"].__annotations__ == describe.__annotations__


def test_a_nested_function_that_calls_itself_through_its_closure_goes_to_dill():
    def outer():
        def countdown(n):
            return 0 if n == 0 else countdown(n - 1)
        return countdown

    snippet = callable_source(outer())
    assert snippet.how == "dill"
    assert "refers to the function itself" in reason(snippet)


def test_a_restored_function_can_be_archived_again_by_source():
    def make(n):
        return lambda x: x * n

    first, _ = archived(f=make(6))
    again = callable_source(first["f"])
    assert again.how == "source"
    second, _ = archived(f=first["f"])
    assert second["f"](7) == 42


# -- dill --------------------------------------------------------------------------------------

def make_counter():
    count = 0

    def increment():
        nonlocal count
        count += 1
        return count
    return increment


def test_a_closure_that_rebinds_its_variable_is_stored_with_dill():
    counter = make_counter()
    counter()
    res, text = archived(counter=counter)
    assert res["counter"]() == 2
    assert "rebinds its closure variable 'count' (nonlocal); stored as a dill pickle" \
        in reason(text)
    assert "_dill.loads(_base64.b64decode(" in text


def register(func):
    return func


def test_decorated_functions_and_functions_with_attributes_go_to_dill():
    @register
    def decorated(x):
        return x + 1

    def tagged(x):
        return x
    tagged.tag = "yes"  # type: ignore[attr-defined]

    for func, why in ((decorated, "it is decorated"), (tagged, "carries attributes")):
        snippet = callable_source(func)
        assert snippet.how == "dill" and why in reason(snippet)
    res, _ = archived(tagged=tagged, decorated=decorated)
    assert res["tagged"].tag == "yes" and res["tagged"](3) == 3
    assert res["decorated"](1) == 2


def test_functions_without_a_source_file_go_to_dill():
    namespace: dict = {}
    exec("def made(x):\n    return x * 3\n", namespace)
    snippet = callable_source(namespace["made"])
    assert snippet.how == "dill" and "no source" in reason(snippet)
    res, _ = archived(made=namespace["made"])
    assert res["made"](2) == 6


def test_names_that_clash_in_the_archive_send_the_function_to_dill():
    uses_np = lambda x: np.sum(x)  # noqa: E731
    uses_len = lambda x: len(x)  # noqa: E731
    res, text = archived(np=5, f=uses_np, len=3, g=uses_len)
    assert res["np"] == 5 and res["f"]([1, 2]) == 3 and res["g"]([1]) == 1
    assert "binds to another object" in reason(text) and "builtin 'len'" in reason(text)


def test_functions_reading_module_attributes_go_to_dill():
    who = lambda: __name__  # noqa: E731
    snippet = callable_source(who)
    assert snippet.how == "dill" and "__name__" in reason(snippet)


def test_reserved_names_are_never_bound_by_a_snippet():
    snippet = callable_source(lambda x: x * SCALE, reserved={"SCALE"})
    assert snippet.how == "dill" and "SCALE" not in snippet.names


def test_without_dill_a_function_with_no_exact_source_is_unarchivable():
    archive = Archive(allow_dill=False)
    archive.insert(counter=make_counter())
    with pytest.raises(UnarchivableError, match=r"nonlocal.*allow_dill=False") as info:
        str(archive)
    assert info.value.path == "name 'counter' -> function object"


def test_things_dill_cannot_pickle_either_are_unarchivable():
    gen = (i for i in range(2))
    with pytest.raises(UnarchivableError, match="dill cannot pickle it either"):
        callable_source(lambda: gen.send)  # a closure over a generator


# -- __main__, in fresh interpreters -----------------------------------------------------------

MAIN_SCRIPT = '''
import math
import numpy as np
from papyflow.archive import Archive, callable_source

SCALE = 3


def helper(x):
    """Scale x.

    A docstring over several lines.
    """
    return x * SCALE


def f(x: float, k: int = 2, *, s=SCALE) -> float:
    return float(np.sqrt(helper(x))) + k + s


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def is_even(n):
    return n == 0 or is_odd(n - 1)


def is_odd(n):
    return n != 0 and is_even(n - 1)


square = lambda x: x * x


def make_adder(n):
    def adder(x):
        return x + n
    return adder


class Local:
    def __init__(self, v):
        self.v = v


if __name__ == "__main__":
    archive = Archive()
    archive.insert(f=f, fact=fact, even=is_even, square=square, add3=make_adder(3),
                   klass=Local, inst=Local(5), sqrt=math.sqrt)
    archive.save("pipeline.py")
    print(callable_source(f).how, callable_source(Local).how)
'''

CHECK_SCRIPT = '''
from pathlib import Path
from papyflow.archive import restore

res = restore(Path("pipeline.py"))
assert res["f"](12) == 6 + 2 + 3, res["f"](12)
assert res["fact"](5) == 120
assert res["even"](10) and not res["even"](7)
assert res["square"](9) == 81 and res["add3"](1) == 4
assert res["inst"].v == 5 and isinstance(res["inst"], res["klass"])
assert res["f"].__annotations__ == {"x": float, "k": int, "return": float}
print("ok")
'''


def test_main_functions_are_saved_by_source_and_restore_in_a_fresh_interpreter(tmp_path):
    (tmp_path / "make.py").write_text(MAIN_SCRIPT)
    (tmp_path / "check.py").write_text(CHECK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    made = subprocess.run([sys.executable, "make.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == ["source", "dill"]
    text = (tmp_path / "pipeline.py").read_text()
    for expected in ("def f(x: float, k: int = 2, *, s=SCALE) -> float:", "def helper(x):",
                     '    """Scale x.', "def fact(n):", "def is_odd(n):",
                     "square = (lambda x: x * x)", "import numpy as np", "SCALE = 3",
                     "add3 = _make_adder(n=3)", "from math import sqrt"):
        assert expected in text, expected
    assert text.count("_dill.loads") == 1  # only the class from __main__
    checked = subprocess.run([sys.executable, "check.py"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "ok"


def test_dill_payloads_restore_in_a_fresh_interpreter(tmp_path):
    archive = Archive()
    counter = make_counter()
    counter()
    archive.insert(counter=counter)
    archive.save(tmp_path / "counter.py")
    code = textwrap.dedent("""
        from pathlib import Path
        from papyflow.archive import restore
        print(restore(Path("counter.py"))["counter"]())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
