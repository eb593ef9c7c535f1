"""A2/A3 building blocks: edit application, import guarding, optional sections, bad graph input."""

import json

import pytest

from bundler_lib import collect_python, collect_triton
from bundler_lib.common.imports import ABSENT_DEFINITION, external_statements, indent_block, named_imports, optional_nodes
from bundler_lib.errors import StageError
from bundler_lib.common.edits import apply_edits, file_header

SRC = """\
# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: Copyright someone
def f(x):
    if is_rocm():
        return rocm(x)
    else:
        y = helper(x)
        return y
""".splitlines(keepends=True)


def test_apply_edits_spans_deletes_dedent():
    edits = [
        {"op": "delete", "line": 4, "end_line": 6},
        {"op": "dedent", "line": 7, "end_line": 8, "cols": 4},
        {"op": "span", "line": 7, "col": 12, "end_line": 7, "end_col": 18, "text": "helper_two"},
    ]
    assert apply_edits(SRC, 3, 8, edits) == "def f(x):\n    y = helper_two(x)\n    return y\n"


def test_apply_edits_pass_and_multiline_span():
    edits = [{"op": "pass", "line": 4, "end_line": 8, "indent": 4}]
    assert apply_edits(SRC, 3, 8, edits) == "def f(x):\n    pass\n"
    edits = [{"op": "span", "line": 4, "col": 7, "end_line": 5, "end_col": 22, "text": "True: return 1"}]
    assert apply_edits(SRC, 3, 5, edits) == "def f(x):\n    if True: return 1\n"


def test_file_header():
    assert file_header(SRC) == ["# SPDX-License-Identifier: Apache-2.0", "# SPDX-FileCopyrightText: Copyright someone"]


def test_external_statements_guard_optional_packages():
    out, notes = external_statements(
        ["import torch", "import os", "from pydantic import Field", "import regex as re", "import cutlass"],
        runtime_only={"from pydantic import Field"}, hard={"import cutlass"})
    assert out[0] == "import torch" and out[1] == "import os"
    assert out[2] == ABSENT_DEFINITION   # once, before the first guard that binds its stand-ins
    assert out[3] == ("try:\n    from pydantic import Field\nexcept ImportError:  # optional package\n"
                      "    Field = _bundle_absent('pydantic', 'pydantic.Field')")
    assert "import re as re" in out[4]
    assert out[5] == "import cutlass"   # the target itself needs it at import time
    assert any("cutlass" in n for n in notes)


def test_each_clause_of_an_import_binds_its_own_name():
    out, _ = external_statements(["import pkgx.sub as s, pkgx.other", "from pkgx.mod import (A as B, C)",
                                  "from einops import rearrange as r, repeat", "import einops as E"], runtime_only=set())
    guards = [st for st in out if st.startswith("try:")]
    assert guards[0].endswith("    s = _bundle_absent('pkgx', 'pkgx.sub')\n    pkgx = _bundle_absent('pkgx', 'pkgx')")
    assert guards[1].endswith("    B = _bundle_absent('pkgx', 'pkgx.mod.A')\n    C = _bundle_absent('pkgx', 'pkgx.mod.C')")
    assert guards[2].endswith("    r = _bundled_einops().rearrange\n    repeat = _bundled_einops().repeat")
    assert guards[3].endswith("    E = _bundled_einops()")


def test_an_absent_optional_package_is_stood_in_not_left_unbound():
    # without numpy: `isinstance(x, np.ndarray)` is False (vLLM's async_tensor_h2d on FlexAttention's path), a call
    # raises ModuleNotFoundError naming the package; unbound names were a NameError
    out, _ = external_statements(["import numpy_not_installed_here as np",
                                  "from numpy_not_installed_here.typing import NDArray"], runtime_only=set())
    ns: dict = {}
    exec(compile("\n".join(out), "bundle", "exec"), ns)
    assert not isinstance(ns["np"].zeros, type(None)) and not isinstance(3, ns["np"].ndarray)
    assert not isinstance([], ns["NDArray"])
    with pytest.raises(ModuleNotFoundError, match="numpy_not_installed_here.repeat needs the package "
                                                  "'numpy_not_installed_here'.*pip install numpy_not_installed_here"):
        ns["np"].repeat([1], 2)
    # computing with it at import time (CuTe DSL class bodies: `Uint64.width + 1`) is an ImportError too, so A2's
    # wrapper of a definition that needs the package at import time skips it as before
    with pytest.raises(ImportError):
        1 << ns["np"].uint64.width
    with pytest.raises(ImportError, match="numpy_not_installed_here.Struct needs the package"):
        type(ns["np"].Struct)("Params", (ns["np"].Struct,), {}, omit_defaults=True)   # class P(Struct, kw=...)


def test_optional_nodes_propagate_and_spare_the_target():
    g = {"symbol": "T", "def_file": "t.py", "python_nodes": [
        {"id": "a.py::K", "name": "K", "file": "a.py", "importtime_imports": ["from cutlass import cute"]},
        {"id": "a.py::Sub", "name": "Sub", "file": "a.py", "importtime_deps": ["a.py::K"]},
        {"id": "t.py::T", "name": "T", "file": "t.py", "importtime_deps": ["a.py::Sub"]},
        {"id": "b.py::X", "name": "X", "file": "b.py", "importtime_imports": ["import torch"]},
    ]}
    assert optional_nodes(g) == {"a.py::K": ["from cutlass import cute"], "a.py::Sub": ["from cutlass import cute"]}


def test_indent_block_leaves_multiline_strings():
    text = 'def f():\n    """doc\nsecond line\n    """\n    return 1\n'
    assert indent_block(text) == '    def f():\n        """doc\nsecond line\n    """\n        return 1\n'


@pytest.mark.parametrize("mod", [collect_python, collect_triton])
def test_missing_or_bad_graph(tmp_path, mod):
    with pytest.raises(StageError) as e:
        mod.run(tree=tmp_path, graph=tmp_path / "nope.json", out=tmp_path)
    assert "run the A1 graph stage first" in str(e.value)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StageError) as e:
        mod.run(tree=tmp_path, graph=tmp_path / "bad.json", out=tmp_path)
    assert "not valid JSON" in str(e.value)


def test_file_outside_graph_is_refused(tmp_path):
    g = {"symbol": "f", "files": [], "python_nodes": [
        {"id": "x.py::f", "name": "f", "emit_name": "f", "file": "x.py", "line": 1, "end_line": 1,
         "kind": "function", "section": "python"}]}
    (tmp_path / "g.json").write_text(json.dumps(g))
    with pytest.raises(StageError) as e:
        collect_python.run(tree=tmp_path, graph=tmp_path / "g.json", out=tmp_path)
    assert "not among the files A1 lists" in str(e.value)


def test_named_imports_drop_what_the_text_never_names():
    stmts = ["from __future__ import annotations", "import torch.distributed._symmetric_memory", "import math",
             "import os.path", "from typing import Any", "import json as js", "import a.b.c"]
    kept, notes = named_imports(stmts, "x = math.pi\ny = os.path.join(a.q)\nz = js\n")
    # __future__ always; a dotted import whose chain the text names stays; one it never names is dropped, with
    # `import a` where the text reads `a`; a name nothing reads (Any) is dropped
    assert kept == ["from __future__ import annotations", "import math", "import os.path", "import json as js",
                    "import a"]
    assert notes == ["import of a submodule nothing names, left out: import torch.distributed._symmetric_memory",
                     "import of names nothing in the section names, left out: from typing import Any",
                     "import of a submodule nothing names, left out: import a.b.c"]
    # an import statement naming the chain (a function's `import a.b.c as m`) does not use the submodule
    kept, _ = named_imports(["import a.b.c"], "def f():\n    import a.b.c as m\n    return m\n")
    assert kept == []
