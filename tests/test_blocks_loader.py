"""papyflow.blocks.loader: loading block code as fresh modules, running user methods safely."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from papyflow.blocks.errors import BlockError
from papyflow.blocks.loader import OPTIONAL_METHODS, load_module, run


def write(path: Path, code: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


@pytest.fixture
def failing(tmp_path: Path):
    """A module whose class fails in each of its methods, one level down in a helper."""
    path = write(tmp_path / "algo.py", """\
        def helper(x):
            return 1 / x

        class Algorithm:
            def __init__(self, fail=False):
                if fail:
                    raise LookupError("no such thing")

            def setup(self, parameters):
                return parameters["missing"]

            def process(self, x, scale=1):
                return helper(x) * scale

            def chained(self):
                try:
                    {}["k"]
                except KeyError as error:
                    raise ValueError("wrapped") from error
        """)
    return load_module("user_algo_1", path, {}), str(path)


# -- load_module ---------------------------------------------------------------------------------


def test_a_module_is_loaded_fresh_each_time(tmp_path):
    path = write(tmp_path / "code.py", """\
        counter = []

        def bump():
            counter.append(1)
            return len(counter)
        """)
    first = load_module("block_a", path, {})
    second = load_module("block_a", path, {})
    assert first is not second and first.__name__ == "block_a" and first.__file__ == str(path)
    assert (first.bump(), first.bump(), second.bump()) == (1, 2, 1)
    assert "block_a" not in sys.modules


def test_uses_are_bound_under_their_aliases(tmp_path):
    base = write(tmp_path / "base.py", "def twice(x):\n    return 2 * x\n")
    top = write(tmp_path / "top.py", "def quad(x):\n    return inner.twice(inner.twice(x))\n")
    code = write(tmp_path / "code.py", """\
        def go(x):
            return (loaded.twice(x), described.quad(x), given.quad(x))
        """)

    class FakeLibrary:
        def load(self):
            return load_module("top", top, {"inner": load_module("base", base, {})})

    module = load_module("user_code_1", code, {
        "loaded": load_module("base", base, {}),                      # a module
        "described": {"path": str(top), "uses": {"inner": {"path": str(base), "uses": {}}}},
        "given": FakeLibrary(),                                         # anything with load()
    })
    assert module.go(3) == (6, 12, 12)
    assert module.described.inner.twice(1) == 2


def test_a_use_visible_while_the_module_runs(tmp_path):
    base = write(tmp_path / "base.py", "VALUE = 7\n")
    code = write(tmp_path / "code.py", "COPY = base.VALUE * 2\n")
    assert load_module("code", code, {"base": load_module("base", base, {})}).COPY == 14


def test_bad_arguments(tmp_path):
    code = write(tmp_path / "code.py", "x = 1\n")
    with pytest.raises(ValueError, match="module name 'user/algo/1' is not a Python name"):
        load_module("user/algo/1", code, {})
    with pytest.raises(TypeError, match=r"uses\['lib'\]: expected a module, a Library"):
        load_module("code", code, {"lib": 3})

    class NotAModule:
        def load(self):
            return {}

    with pytest.raises(TypeError, match=r"uses\['lib'\]\.load\(\) gave a dict, not a module"):
        load_module("code", code, {"lib": NotAModule()})
    with pytest.raises(FileNotFoundError):
        load_module("code", tmp_path / "missing.py", {})


def test_code_that_does_not_compile(tmp_path):
    code = write(tmp_path / "code.py", "def f(:\n    pass\n")
    with pytest.raises(BlockError) as caught:
        load_module("user_code_1", code, None)
    error = caught.value
    assert str(error).startswith(f"user_code_1 ({code}): the code does not compile:")
    assert "SyntaxError" in str(error) and "line 1" in str(error)
    assert error.method == "<module>" and isinstance(error.__cause__, SyntaxError)


def test_code_that_raises_while_loading(tmp_path):
    code = write(tmp_path / "code.py", "import json\n\nVALUE = json.loads('{')\n")
    with pytest.raises(BlockError) as caught:
        load_module("user_code_1", code, {})
    error = caught.value
    assert str(error).startswith(f"user_code_1 ({code}): loading the code raised "
                                 "JSONDecodeError: ")
    assert f'File "{code}", line 3, in <module>' in error.traceback
    assert "VALUE = json.loads('{')" in error.traceback
    assert "loader.py" not in error.traceback
    assert error.traceback in str(error) and error.method == "<module>"
    assert isinstance(error.__cause__, ValueError)


# -- run -----------------------------------------------------------------------------------------


def test_run_calls_the_method_with_its_arguments(failing):
    module, _ = failing
    obj = run(module, "Algorithm")
    assert run(obj, "process", None, 4, scale=8) == 2.0
    assert run(obj, "process", BlockError, 2) == 0.5


def test_a_missing_optional_method_gives_its_default(failing):
    module, _ = failing
    obj = run(module, "Algorithm")
    assert run(obj, "prepare", None, object()) is True
    assert run(object(), "setup", None, {}) is True
    assert dict(OPTIONAL_METHODS) == {"setup": True, "prepare": True, "read": True,
                                      "write": True}


def test_a_missing_required_method_is_an_error(failing):
    module, path = failing
    obj = run(module, "Algorithm")
    with pytest.raises(BlockError, match=r"^user_algo_1\.Algorithm \(.*algo\.py\): has no "
                                         r"method validate\(\)$") as caught:
        run(obj, "validate", None, {})
    assert caught.value.method == "validate" and caught.value.traceback == ""
    assert path in caught.value.block


def test_an_exception_in_user_code_names_block_method_and_traceback(failing):
    module, path = failing
    obj = run(module, "Algorithm")
    with pytest.raises(BlockError) as caught:
        run(obj, "process", None, 0)
    error = caught.value
    first_line = str(error).splitlines()[0]
    assert first_line == (f"user_algo_1.Algorithm ({path}): process() raised "
                          "ZeroDivisionError: division by zero")
    assert error.block == f"user_algo_1.Algorithm ({path})" and error.method == "process"
    # The traceback is the user's: from process() down to helper(), no loader frame.
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert f'File "{path}", line 13, in process' in error.traceback
    assert f'File "{path}", line 2, in helper' in error.traceback
    assert "loader.py" not in error.traceback
    assert error.traceback.endswith("ZeroDivisionError: division by zero")
    assert isinstance(error.__cause__, ZeroDivisionError)


def test_a_failing_constructor_and_setup(failing):
    module, path = failing
    with pytest.raises(BlockError, match=rf"^user_algo_1 \({path}\): Algorithm\(\) raised "
                                         "LookupError: no such thing") as caught:
        run(module, "Algorithm", None, fail=True)
    assert "in __init__" in caught.value.traceback
    obj = run(module, "Algorithm")
    with pytest.raises(BlockError, match=r"setup\(\) raised KeyError: 'missing'"):
        run(obj, "setup", None, {})


def test_a_chained_exception_keeps_both_tracebacks(failing):
    module, _ = failing
    with pytest.raises(BlockError) as caught:
        run(run(module, "Algorithm"), "chained")
    text = caught.value.traceback
    assert "KeyError: 'k'" in text and "direct cause" in text and "ValueError: wrapped" in text


def test_the_error_class_may_be_chosen(failing):
    module, _path = failing

    class MyError(Exception):
        pass

    with pytest.raises(MyError, match=r"process\(\) raised ZeroDivisionError") as caught:
        run(run(module, "Algorithm"), "process", MyError, 0)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert "Traceback" in str(caught.value)
    with pytest.raises(MyError, match="has no method nothing"):
        run(run(module, "Algorithm"), "nothing", MyError)


def test_a_subclass_of_block_error_gets_the_attributes(failing):
    module, _ = failing

    class AlgorithmFailed(BlockError):
        pass

    with pytest.raises(AlgorithmFailed) as caught:
        run(run(module, "Algorithm"), "process", AlgorithmFailed, 0)
    assert caught.value.method == "process" and "helper" in caught.value.traceback


def test_exit_and_interrupt_go_through(tmp_path):
    module = load_module("quitting", write(tmp_path / "q.py", """\
        import sys

        class Quitter:
            def process(self):
                sys.exit(3)
        """), {})
    with pytest.raises(SystemExit):
        run(module.Quitter(), "process")


def test_a_failing_attribute_lookup_is_user_code_too(tmp_path):
    module = load_module("odd", write(tmp_path / "odd.py", """\
        class Odd:
            @property
            def process(self):
                raise RuntimeError("broken property")
        """), {})
    with pytest.raises(BlockError, match=r"looking up process\(\) raised RuntimeError: "
                                         "broken property"):
        run(module.Odd(), "process")


def test_block_errors_pickle_with_their_state(failing):
    module, _ = failing
    with pytest.raises(BlockError) as caught:
        run(run(module, "Algorithm"), "process", None, 0)
    caught.value.data_index = (3, 5)
    again = pickle.loads(pickle.dumps(caught.value))
    assert type(again) is BlockError and str(again) == str(caught.value)
    assert (again.block, again.method, again.traceback, again.data_index) == \
        (caught.value.block, "process", caught.value.traceback, (3, 5))
