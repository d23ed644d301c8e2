"""The imports decorator binds modules in a function's globals, here and in workers."""

from __future__ import annotations

import json
import os.path
import subprocess
import sys
import textwrap

import pytest

from numap import NuMap, imports


def test_plain_and_dotted_names_are_bound():
    namespace: dict = {}
    exec("def f(x):\n    return (json.dumps(x), path.basename('/a/b'))", namespace)
    f = imports(["json", "os.path"])(namespace["f"])
    assert namespace["json"] is json and namespace["path"] is os.path
    assert f([1]) == ("[1]", "b")


def test_alternatives_bind_the_first_that_imports_under_the_first_name():
    namespace: dict = {}
    exec("def f():\n    return no_such_module_xyz", namespace)
    imports(["no_such_module_xyz,json"])(namespace["f"])
    assert namespace["f"]() is json
    exec("def g():\n    return oof", namespace)
    imports(["nope_pkg.oof,os.path"])(namespace["g"])
    assert namespace["g"]() is os.path


def test_a_missing_module_raises_or_warns_when_forgiven():
    def f():
        return None

    with pytest.raises(ImportError, match="no_such_module_xyz"):
        imports(["no_such_module_xyz"])(f)
    with pytest.warns(ImportWarning, match="no_such_module_xyz"):
        imports(["no_such_module_xyz"], forgive=True)(f)


def test_bad_arguments():
    with pytest.raises(TypeError, match="list of module names"):
        imports("json")
    with pytest.raises(TypeError, match="not callable"):
        imports(["json"])(3)
    with pytest.raises(ValueError, match="empty module name"):
        imports([","])(lambda: None)


def test_imports_travel_with_a_function_sent_by_value():
    # In __main__, 'math' is never imported at module level: only @imports binds it,
    # in the parent and again in the worker process that loads the function.
    code = textwrap.dedent("""
        from numap import NuMap, imports

        @imports(['math'])
        def root(x):
            return math.sqrt(x)

        print(list(NuMap(root, [4, 9], worker_num=1)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[2.0, 3.0]"


def test_imports_in_thread_workers():
    @imports(["json"])
    def dump(x):
        return json.dumps(x)

    assert list(NuMap(dump, [[1]], worker_type="thread", worker_num=1)) == ["[1]"]
