"""A5 bind on hand-written A1/A2/A3 artifacts and a real A4 section (0.26.0 rms_norm, silu_and_mul)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bundler_lib import bind, collect_cuda
from bundler_lib.bind.namespaces import registered_namespaces
from bundler_lib.bind.rewrite import drop_unused_stubs
from bundler_lib.bind.stage import merge_imports
from bundler_lib.artifacts import read_json
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]

A2_TEXT = textwrap.dedent('''\
    # --- Inlined from vllm/_custom_ops.py:L10-L12 (Apache-2.0) ---
    def rms_norm(out: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, epsilon: float) -> None:
        torch.ops._C.rms_norm(out, input, weight, epsilon)


    # --- Inlined from vllm/_custom_ops.py:L14-L16 (Apache-2.0) ---
    def fused_add_rms_norm(input, residual, weight, epsilon) -> None:
        torch.ops._C.fused_add_rms_norm.default(input, residual, weight, epsilon)


    # --- Inlined from vllm/model_executor/layers/activation.py:L20-L22 (Apache-2.0) ---
    def _silu_op():
        return torch.ops._C.silu_and_mul if hasattr(torch.ops._C, "silu_and_mul") else None


    # --- Inlined from vllm/model_executor/layers/layernorm.py:L30-L40 (Apache-2.0) ---
    def _fake_rms(out, input, weight, epsilon):
        return None


    _FAKE_NAME = "_C::rms_norm"


    def my_python_op(x: torch.Tensor) -> torch.Tensor:
        return x * 2


    # --- Inlined from vllm/model_executor/layers/layernorm.py:L50-L80 (Apache-2.0) ---
    class RMSNorm(torch.nn.Module):
        def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(hidden_size))
            self.variance_epsilon = eps

        def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None):
            if residual is not None:
                fused_add_rms_norm(x, residual, self.weight.data, self.variance_epsilon)
                return x, residual
            out = torch.empty_like(x)
            rms_norm(out, x, self.weight.data, self.variance_epsilon)
            return torch.ops.vllm.my_op(out)

        def _private(self):
            pass
''')

A3_TEXT = textwrap.dedent('''\
    # --- Inlined from vllm/triton_utils/foo.py:L1-L5 (Apache-2.0) ---
    @triton.jit
    def _noop_kernel(x_ptr, BLOCK: tl.constexpr):
        pass
''')


def _graph():
    return {"status": "ok", "symbol": "RMSNorm", "kind": "class",
            "def_file": "vllm/model_executor/layers/layernorm.py", "def_line": 50,
            "python_nodes": [{"id": "vllm/model_executor/layers/layernorm.py::RMSNorm", "name": "RMSNorm",
                              "emit_name": "RMSNorm", "file": "vllm/model_executor/layers/layernorm.py",
                              "line": 50, "end_line": 80, "kind": "class", "section": "python"}],
            "cuda_ops": [{"op": o, "namespace": "_C", "name": o.split(".")[1], "call_sites": []}
                         for o in ("_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul")],
            "python_custom_ops": [{"op": "my_op", "target": "my_python_op"}]}


@pytest.fixture(scope="module")
def a4_dir(vllm_0_26_0, tmp_path_factory):
    d = tmp_path_factory.mktemp("a4")
    (d / "A1.graph.json").write_text(json.dumps(_graph()))
    collect_cuda.run(tree=vllm_0_26_0, graph=d / "A1.graph.json", out=d)
    return d


def _inputs(a4_dir, tmp_path, a2_text=A2_TEXT, graph=None):
    d = tmp_path / "in"
    d.mkdir()
    for n in ("A4.cuda.py", "A4.manifest.json"):
        (d / n).write_bytes((a4_dir / n).read_bytes())
    (d / "A1.graph.json").write_text(json.dumps(graph or _graph()))
    (d / "A2.inline.py").write_text(a2_text)
    (d / "A2.manifest.json").write_text(json.dumps({"status": "ok", "external_reqs": [
        "from __future__ import annotations", "import torch", "from typing import Optional"]}))
    (d / "A3.triton.py").write_text(A3_TEXT)
    (d / "A3.manifest.json").write_text(json.dumps({"status": "ok", "imports": [
        "from __future__ import annotations", "import triton", "import triton.language as tl", "import torch"]}))
    return d


def test_bind_rewires_every_call_site(a4_dir, tmp_path):
    bm = bind.run(inputs=_inputs(a4_dir, tmp_path), out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    rewrites = {(r["from"], r["to"]): r["count"] for r in bm["rewrites"]}
    assert rewrites[("torch.ops._C.rms_norm", "_C_rms_norm")] == 1
    assert rewrites[("torch.ops._C.fused_add_rms_norm.default", "_C_fused_add_rms_norm")] == 1
    assert rewrites[("torch.ops._C.silu_and_mul", "_C_silu_and_mul")] == 1
    assert rewrites[("hasattr(torch.ops._C, 'silu_and_mul')", "True")] == 1
    assert rewrites[("torch.ops.vllm.my_op", "my_python_op")] == 1
    (ns,) = {t["namespace"] for t in read_json(a4_dir / "A4.manifest.json")["translation_units"]
             if "_C.rms_norm" in t["ops"]}
    assert rewrites[("_C::rms_norm", f"{ns}::rms_norm")] == 1
    assert "torch.ops._C" not in text and "torch.ops.vllm." not in text
    # order: imports, then A4, A3, A2
    lines = text.splitlines()
    assert lines[0] == "from __future__ import annotations"
    assert text.index("_build_cuda_extension_if_needed") < text.index("_noop_kernel") < text.index("class RMSNorm")
    assert text.count("import torch\n") == 1
    assert bm["entry_symbol"] == "RMSNorm"
    assert bm["public_signatures"] == {
        "RMSNorm.__init__": "(self, hidden_size: int, eps: float = 1e-6) -> None",
        "RMSNorm.forward": "(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None)"}
    assert bm["status"] == "ok"


def test_bound_module_imports_without_building(a4_dir, tmp_path):
    """Importing the module defines the wrappers but compiles nothing (no GPU needed)."""
    bind.run(inputs=_inputs(a4_dir, tmp_path), out=tmp_path / "out")
    code = textwrap.dedent(f'''
        import importlib.util, sys, os
        os.environ["VLLM_BUNDLE_CACHE"] = {str(tmp_path / "cache")!r}
        spec = importlib.util.spec_from_file_location("m", {str(tmp_path / "out" / "A5.module.py")!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        import inspect
        assert m._CUDA_EXT_PATH is None
        assert not os.path.exists({str(tmp_path / "cache")!r})
        print(list(inspect.signature(m._C_rms_norm).parameters))
    ''')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "['result', 'input', 'weight', 'epsilon']" in r.stdout


def test_getattr_op_lookup_binds_like_a_direct_reference(a4_dir, tmp_path):
    a2 = A2_TEXT + ("\n\n_RMS = getattr(torch.ops._C, \"rms_norm\", None)\n"
                    "_RMS2 = getattr(torch.ops._C, 'rms_norm')\n")
    bm = bind.run(inputs=_inputs(a4_dir, tmp_path, a2_text=a2), out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    rewrites = {(r["from"], r["to"]): r["count"] for r in bm["rewrites"]}
    assert rewrites[("getattr(torch.ops._C, 'rms_norm', <default>)", "_C_rms_norm")] == 1
    assert rewrites[("getattr(torch.ops._C, 'rms_norm')", "_C_rms_norm")] == 1
    assert "_RMS = _C_rms_norm\n_RMS2 = _C_rms_norm\n" in text and "torch.ops._C" not in text


def test_stub_wrappers_nothing_names_are_left_out():
    from bundler_lib.cuda import emit
    lines, ws = emit.stub_wrappers([{"op": "_C.a", "namespace": "_C", "name": "a", "schema": "a(Tensor x) -> ()",
                                     "reason": "no source"},
                                    {"op": "_C.b", "namespace": "_C", "name": "b", "schema": None, "reason": "r"}], set())
    text = "x = 1\n" + "\n".join(lines) + "\n\n\ny = None\nz = _C_b\n"
    out, dropped = drop_unused_stubs(text, [w["wrapper"] for w in ws])
    assert dropped == ["_C_a"] and "def _C_a" not in out and "def _C_b" in out
    assert out.startswith("x = 1\n\n\ndef _C_b(") and out.endswith("\n\n\ny = None\nz = _C_b\n")


def test_unbound_op_fails(a4_dir, tmp_path):
    a2 = A2_TEXT + "\n\ndef other(x):\n    return torch.ops._C.gelu_new(x, x)\n"
    with pytest.raises(StageError) as e:
        bind.run(inputs=_inputs(a4_dir, tmp_path, a2_text=a2), out=tmp_path / "out")
    assert "torch.ops._C.gelu_new" in str(e.value) and e.value.stage == "A5 bind"
    assert not (tmp_path / "out" / "A5.module.py").exists()


def test_unbound_moe_and_vllm_ops_fail(a4_dir, tmp_path):
    for extra, needle in (("torch.ops._moe_C.topk_softmax(x)", "torch.ops._moe_C.topk_softmax"),
                          ("torch.ops.vllm.unknown_op(x)", "torch.ops.vllm.unknown_op")):
        d = tmp_path / needle
        d.mkdir()
        with pytest.raises(StageError) as e:
            bind.run(inputs=_inputs(a4_dir, d, a2_text=A2_TEXT + f"\n\ndef other(x):\n    return {extra}\n"),
                     out=d / "out")
        assert needle in str(e.value)


def test_vllm_import_fails(a4_dir, tmp_path):
    for stmt in ("from vllm import _custom_ops as ops", "import vllm.envs as envs",
                 "from vllm.model_executor.layers.layernorm import RMSNorm as R"):
        d = tmp_path / str(abs(hash(stmt)))
        d.mkdir()
        a2 = A2_TEXT + f"\n\ndef other():\n    {stmt}\n    return 1\n"
        with pytest.raises(StageError) as e:
            bind.run(inputs=_inputs(a4_dir, d, a2_text=a2), out=d / "out")
        assert "vLLM import" in str(e.value) and stmt.split()[1] in str(e.value)


def test_missing_artifact_fails(tmp_path):
    (tmp_path / "A1.graph.json").write_text("{}")
    with pytest.raises(StageError) as e:
        bind.run(inputs=tmp_path, out=tmp_path / "out")
    assert "A2.manifest.json" in str(e.value)


def test_no_cuda_ops(tmp_path):
    """A bundle without compiled ops: A4 is an empty section; A5 merges A3 and A2 only."""
    d = tmp_path / "in"
    d.mkdir()
    g = _graph() | {"cuda_ops": [], "python_custom_ops": []}
    (d / "A1.graph.json").write_text(json.dumps(g))
    (d / "A4.cuda.py").write_text("")
    (d / "A4.manifest.json").write_text(json.dumps({"status": "ok", "wrappers": [], "imports": []}))
    (d / "A2.inline.py").write_text("def f(x):\n    return x + 1\n")
    (d / "A2.manifest.json").write_text(json.dumps({"status": "ok", "external_reqs": ["import torch"]}))
    (d / "A3.triton.py").write_text("")
    (d / "A3.manifest.json").write_text(json.dumps({"status": "ok", "imports": []}))
    bm = bind.run(inputs=d, out=tmp_path / "out")
    assert bm["rewrites"] == [] and bm["sections"] == ["A2"]


def test_merge_imports_is_deterministic():
    a = ["import torch", "from typing import Any", "from __future__ import annotations"]
    b = ["import triton.language as tl", "import torch", "try:\n    import regex as re\nexcept ImportError:\n    import re as re"]
    m1 = merge_imports(a, b)
    assert m1 == merge_imports(a, b)
    assert m1[0] == "from __future__ import annotations"
    assert m1.count("import torch") == 1
    assert m1[-1].startswith("try:")


def test_cli_bind(a4_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "bundler_lib", "bind", "--inputs", str(_inputs(a4_dir, tmp_path)),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "A5.bindmap.json").exists()


def test_guarded_dynamic_vllm_import_is_a_note(a4_dir, tmp_path):
    probe = ("\n\ndef _probe():\n    try:\n        return importlib.import_module(\"vllm.third_party.deep_gemm\")\n"
             "    except ImportError:\n        return None\n")
    bm = bind.run(inputs=_inputs(a4_dir, tmp_path, a2_text=A2_TEXT + probe), out=tmp_path / "out")
    assert any("vllm.third_party.deep_gemm" in n for n in bm["notes"])
    d = tmp_path / "unguarded"
    d.mkdir()
    with pytest.raises(StageError, match="vllm.third_party.deep_gemm"):
        bind.run(inputs=_inputs(a4_dir, d, a2_text=A2_TEXT + "\n\ndef _p():\n    return importlib.import_module(\"vllm.third_party.deep_gemm\")\n"),
                 out=d / "out")


def test_stub_wrappers_are_bound_and_hasattr_false(vllm_0_26_0, tmp_path):
    d = tmp_path / "a4"
    d.mkdir()
    g = _graph()
    g["cuda_ops"].append({"op": "_C.cutlass_scaled_mm", "namespace": "_C", "name": "cutlass_scaled_mm",
                          "call_sites": [], "required": False})
    (d / "A1.graph.json").write_text(json.dumps(g))
    collect_cuda.run(tree=vllm_0_26_0, graph=d / "A1.graph.json", out=d)
    a2 = A2_TEXT + ("\n\ndef scaled_mm(a, b):\n    if hasattr(torch.ops._C, \"cutlass_scaled_mm\"):\n"
                    "        return torch.ops._C.cutlass_scaled_mm(a, b)\n    return a @ b\n"
                    "\n\n_MM = getattr(torch.ops._C, \"cutlass_scaled_mm\", None)\n")
    bm = bind.run(inputs=_inputs(d, tmp_path, a2_text=a2, graph=g), out=tmp_path / "out")
    rewrites = {(r["from"], r["to"]): r["count"] for r in bm["rewrites"]}
    # a getattr with a default of an op A4 could only stub: the default, as the lookup gives without the op
    assert rewrites[("getattr(torch.ops._C, 'cutlass_scaled_mm', <default>)", "None")] == 1
    assert "_MM = None\n" in (tmp_path / "out" / "A5.module.py").read_text()
    assert rewrites[("hasattr(torch.ops._C, 'cutlass_scaled_mm')", "False")] == 1
    assert rewrites[("torch.ops._C.cutlass_scaled_mm", "_C_cutlass_scaled_mm")] == 1
    assert any("cutlass_scaled_mm" in n for n in bm["notes"])


# ----------------------------------------------------------------------------- data files (A3.data.*)

DATA_A2 = textwrap.dedent('''\
    # --- Inlined from vllm/pkg/reader.py:L10-L14 (Apache-2.0) ---
    def read_config(name):
        path = os.path.join(
            os.path.dirname(os.path.realpath(__file__)), "configs", name
        )
        return open(path).read() if os.path.exists(path) else None


    # --- Inlined from vllm/pkg/sub/tables.py:L3-L4 (Apache-2.0) ---
    def table(name):
        return (pathlib.Path(__file__).resolve().parent / "t" / name).read_text()


    # --- Inlined from vllm/other.py:L1-L2 (Apache-2.0) ---
    def here():
        return os.path.dirname(__file__)
    ''')


def _data_inputs(tmp_path, anchors, with_section=True, a2_text=DATA_A2):
    from bundler_lib import data_files
    d = tmp_path / "in"
    d.mkdir()
    g = _graph() | {"cuda_ops": [], "python_custom_ops": [], "symbol": "read_config", "def_file": "vllm/pkg/reader.py"}
    (d / "A1.graph.json").write_text(json.dumps(g))
    (d / "A4.cuda.py").write_text("")
    (d / "A4.manifest.json").write_text(json.dumps({"status": "ok", "wrappers": [], "imports": []}))
    (d / "A2.inline.py").write_text(a2_text)
    (d / "A2.manifest.json").write_text(json.dumps({"status": "ok", "external_reqs": ["import os", "import pathlib"]}))
    (d / "A3.triton.py").write_text("")
    (d / "A3.manifest.json").write_text(json.dumps({"status": "ok", "imports": []}))
    if with_section:
        files = {"vllm/pkg/configs/a.json": ('{"a": 1}\n', "Apache-2.0")}
        kinds = {a["kind"] for a in anchors}
        (d / "A3.data.py").write_text(data_files.section(files, "0" * 64, kinds, []))
        (d / "A3.data.json").write_text(json.dumps({
            "status": "ok", "anchors": anchors, "files": 1, "bytes": 9, "key": "0" * 64, "notes": [],
            "data": [{"root": "vllm/pkg/configs", "rule": "all", "files": [{"path": "vllm/pkg/configs/a.json"}]}],
            "imports": list(data_files.IMPORTS)}))
    return d


ANCHORS = [
    {"file": "vllm/pkg/reader.py", "dir": "vllm/pkg", "kind": "str",
     "expr": "os.path.dirname(os.path.realpath(__file__))"},
    {"file": "vllm/pkg/sub/tables.py", "dir": "vllm/pkg/sub", "kind": "path",
     "expr": "pathlib.Path(__file__).resolve().parent"},
]


def test_bind_rewrites_module_dir_anchors_to_the_data_helper(tmp_path, monkeypatch):
    bm = bind.run(inputs=_data_inputs(tmp_path, ANCHORS), out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    rewrites = {(r["from"], r["to"]): r["count"] for r in bm["rewrites"]}
    assert rewrites == {("os.path.dirname(os.path.realpath(__file__))", "_bundle_data_dir('vllm/pkg')"): 1,
                        ("pathlib.Path(__file__).resolve().parent", "_bundle_data_path('vllm/pkg/sub')"): 1}
    assert "        _bundle_data_dir('vllm/pkg'), \"configs\", name\n" in text   # the rest of the line as it was
    assert "(_bundle_data_path('vllm/pkg/sub') / \"t\" / name)" in text
    # a module whose data A3 did not embed keeps its own anchor, with a note
    assert "return os.path.dirname(__file__)" in text
    assert any("os.path.dirname(__file__)" in n and "vllm/other.py" in n for n in bm["notes"])
    assert bm["sections"] == ["A3.data", "A2"] and bm["data_files"][0]["files"] == ["vllm/pkg/configs/a.json"]
    assert text.index("_BUNDLE_DATA_FILES") < text.index("def read_config")
    assert "import shutil" in bm["imports"] and "import tempfile" in bm["imports"]
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    ns: dict = {"__name__": "bound"}
    exec(compile(text, "A5.module.py", "exec"), ns)
    assert not (tmp_path / "cache").exists()            # importing writes nothing
    assert ns["read_config"]("a.json") == '{"a": 1}\n'
    assert ns["read_config"]("b.json") is None
    assert str(tmp_path / "cache") in ns["_bundle_data_dir"]("vllm/pkg")


def test_bind_anchor_count_mismatch_fails(tmp_path):
    with pytest.raises(StageError) as e:
        bind.run(inputs=_data_inputs(tmp_path, ANCHORS + [dict(ANCHORS[0], expr="x")]), out=tmp_path / "out")
    assert "anchor" in str(e.value) and "same A1 graph" in str(e.value)


def test_bind_without_data_artifacts_leaves_anchors_with_a_note(tmp_path):
    bm = bind.run(inputs=_data_inputs(tmp_path, [], with_section=False), out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    assert "os.path.dirname(os.path.realpath(__file__))" in text and "_bundle_data" not in text
    assert sum("is left as is" in n for n in bm["notes"]) == 3
    assert bm["sections"] == ["A2"] and bm["data_files"] == []


def test_bind_data_helper_name_taken_fails(tmp_path):
    a2 = DATA_A2 + "\n\ndef _bundle_data_dir(x):\n    return x\n"
    with pytest.raises(StageError) as e:
        bind.run(inputs=_data_inputs(tmp_path, ANCHORS, a2_text=a2), out=tmp_path / "out")
    assert "_bundle_data_dir" in str(e.value)


LAZY_A2 = textwrap.dedent('''\
    # --- Inlined from vllm/model_executor/layers/fused_moe/utils.py:L1-L9 (Apache-2.0) ---
    @torch.compile(dynamic=True, backend="eager")
    def swiglu(x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


    @torch.compile
    def twice(x):
        return 2 * x


    @torch.compiler.assume_constant_result
    def layer_name(name: str) -> str:
        return name.upper()


    class Router:
        @torch.compile(backend="eager")
        def route(self, x):
            return x + 1

        def later(self, x):
            fn = torch.compile(lambda y: y - 1, backend="eager")  # runs at call time: stays
            return fn(x)
''')


def _bind_lazy(tmp_path, a2_text=LAZY_A2):
    d = tmp_path / "in"
    d.mkdir()
    (d / "A1.graph.json").write_text(json.dumps(_graph() | {"symbol": "Router", "cuda_ops": [],
                                                           "python_custom_ops": []}))
    (d / "A4.cuda.py").write_text("")
    (d / "A4.manifest.json").write_text(json.dumps({"status": "ok", "wrappers": [], "imports": []}))
    (d / "A2.inline.py").write_text(a2_text)
    (d / "A2.manifest.json").write_text(json.dumps({"status": "ok", "external_reqs": [
        "from __future__ import annotations", "import torch"]}))
    (d / "A3.triton.py").write_text("")
    (d / "A3.manifest.json").write_text(json.dumps({"status": "ok", "imports": []}))
    bm = bind.run(inputs=d, out=tmp_path / "out")
    return (tmp_path / "out" / "A5.module.py").read_text(), bm


def test_import_time_compile_decorators_become_lazy(tmp_path):
    text, bm = _bind_lazy(tmp_path)
    assert {(r["from"], r["to"], r["count"]) for r in bm["rewrites"]} == {
        ("@torch.compile (run at import)", "_bundle_lazy_torch_compile", 3),
        ("@torch.compiler.assume_constant_result (run at import)", "_bundle_lazy_assume_constant_result", 1)}
    assert '@_bundle_lazy_torch_compile(dynamic=True, backend="eager")\ndef swiglu' in text
    assert "@_bundle_lazy_torch_compile\ndef twice" in text
    assert '    @_bundle_lazy_torch_compile(backend="eager")\n    def route' in text
    assert "@_bundle_lazy_assume_constant_result\ndef layer_name" in text
    assert 'fn = torch.compile(lambda y: y - 1, backend="eager")' in text
    # the helpers come right after the imports, before any section
    assert text.index("def _bundle_lazy_torch_compile") < text.index("# --- Inlined from")
    assert text.index("import torch\n") < text.index("def _bundle_lazy_torch_compile")


def test_lazy_decorators_import_no_dynamo_and_compute_the_same(tmp_path):
    """Run in a fresh interpreter: importing the bound module loads neither torch._dynamo nor torch._inductor;
    the first call compiles (then dynamo is loaded) and gives the eager result; the constant-result mark is
    the one torch's own decorator sets."""
    text, _ = _bind_lazy(tmp_path)
    mod = tmp_path / "lazy_bundle.py"
    mod.write_text(text)
    probe = textwrap.dedent('''\
        import sys
        import torch
        import lazy_bundle as m
        assert "torch._dynamo" not in sys.modules and "torch._inductor" not in sys.modules, "imported at import"
        assert m.layer_name._dynamo_marked_constant is True
        x = torch.arange(6, dtype=torch.float32)
        assert torch.equal(m.swiglu(x), x * torch.sigmoid(x))
        assert torch.equal(m.twice.__wrapped__(x), 2 * x)
        assert torch.equal(m.Router().route(x), x + 1) and torch.equal(m.Router().later(x), x - 1)
        assert "torch._dynamo" in sys.modules
        assert m.swiglu.__name__ == "swiglu" and m.swiglu.__wrapped__.__name__ == "swiglu"
        import torch._dynamo.decorators as d
        def f(): pass
        def g(): pass
        d.assume_constant_result(f)
        m._bundle_lazy_assume_constant_result(g)
        assert vars(f) == vars(g) == {"_dynamo_marked_constant": True}, (vars(f), vars(g))
        print("ok")
    ''')
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr[-3000:]


def test_lazy_helper_name_taken_fails(tmp_path):
    with pytest.raises(StageError, match="_bundle_lazy_torch_compile already defined"):
        _bind_lazy(tmp_path, LAZY_A2 + "\n\ndef _bundle_lazy_torch_compile():\n    pass\n")


# ----------------------------------------------------------------------------- the bundle's own namespaces

NS_A2 = textwrap.dedent('''\
    # --- Inlined from vllm/ir/op.py:L21-L31 (Apache-2.0) ---
    vllm_ir_torch_lib = Library("vllm_ir", "FRAGMENT")  # IR op lib


    def _torch_ops_subtree(lib):
        ns = getattr(lib, "ns", None)
        if isinstance(ns, str):
            return getattr(torch.ops, ns)
        return torch.ops.vllm_ir


    def _ir_rms_norm(x: torch.Tensor, weight: torch.Tensor, epsilon: float) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + epsilon) * weight


    vllm_ir_torch_lib.define("rms_norm(Tensor x, Tensor weight, float epsilon) -> Tensor")
    vllm_ir_torch_lib.impl("rms_norm", _ir_rms_norm, dispatch_key="CompositeExplicitAutograd")
    IR_RMS_NORM = _torch_ops_subtree(vllm_ir_torch_lib).rms_norm.default


    # --- Inlined from vllm/utils/torch_utils.py:L990-L1040 (Apache-2.0) ---
    vllm_lib = Library("vllm", "FRAGMENT")  # noqa


    def direct_register_custom_op(op_name, op_func, mutates_args=None, fake_impl=None, target_lib=None):
        schema_str = infer_schema(op_func, mutates_args=mutates_args or [])
        my_lib = target_lib or vllm_lib
        my_lib.define(op_name + schema_str)
        my_lib.impl(op_name, op_func, dispatch_key="CompositeExplicitAutograd")


    def double(x: torch.Tensor) -> torch.Tensor:
        return x * 2


    def halve(x: torch.Tensor) -> torch.Tensor:
        return x / 2


    direct_register_custom_op("double", double)
    direct_register_custom_op("halve", halve)


    @torch.library.custom_op("vllm_extra::triple", mutates_args=())
    def triple(x: torch.Tensor) -> torch.Tensor:
        return x * 3


    @torch.library.register_fake("vllm_extra::triple")
    def _triple_fake(x):
        return torch.empty_like(x)


    _aten_impls = Library("aten", "IMPL")  # adds kernels to torch's own ops: not the bundle's namespace


    def use(x: torch.Tensor) -> dict:
        return {
            "double": torch.ops.vllm.double(x),          # bound to the Python function (python_custom_ops)
            "halve": torch.ops.vllm.halve.default(x),    # registered by the bundle: its own namespace
            "triple": getattr(torch.ops, "vllm_extra").triple(x),
            "ir": torch.ops.vllm_ir.rms_norm(x, torch.ones(x.shape[-1]), 1e-6),
            "is_ir": IR_RMS_NORM.namespace == "vllm_ir",
            "qualname": f"vllm_ir::{IR_RMS_NORM._opname}",
            "aten": torch.ops.aten.add.Tensor(x, x),
            "logger": "vllm",                            # a plain string: not a namespace read
        }
''')


def _ns_inputs(tmp_path, symbol="RMSNorm", a2=NS_A2, variant=None, config_sha=None):
    d = tmp_path / f"in_{symbol}"
    d.mkdir(parents=True)
    g = _graph() | {"symbol": symbol, "cuda_ops": [],
                    "python_custom_ops": [{"op": "double", "target": "double"}]}
    if variant is not None:
        g["variant"] = variant
    if config_sha is not None:
        g["model_config_sha256"] = config_sha
    (d / "A1.graph.json").write_text(json.dumps(g))
    (d / "A4.cuda.py").write_text("")
    (d / "A4.manifest.json").write_text(json.dumps({"status": "ok", "wrappers": [], "imports": []}))
    (d / "A2.inline.py").write_text(a2)
    (d / "A2.manifest.json").write_text(json.dumps({"status": "ok", "external_reqs": [
        "from __future__ import annotations", "import torch", "from torch.library import Library, infer_schema"]}))
    (d / "A3.triton.py").write_text("")
    (d / "A3.manifest.json").write_text(json.dumps({"status": "ok", "imports": []}))
    return d


def test_registered_namespaces_are_found_by_how_the_code_registers():
    found = registered_namespaces(NS_A2)
    assert found == {"vllm": ["Library('vllm', 'FRAGMENT')"],
                     "vllm_extra": ["torch.library.custom_op(vllm_extra::triple)"],
                     "vllm_ir": ["Library('vllm_ir', 'FRAGMENT')"]}  # not aten (IMPL), not the fake's string
    assert registered_namespaces('torch.library.define("mylib::f", "(Tensor x) -> Tensor")\n') == {
        "mylib": ['torch.library.define(mylib::f)']}
    assert registered_namespaces('L = Library("vllm_bundle_0123456789abcdef", "FRAGMENT")\n') == {}
    # IMPL adds kernels to ops defined elsewhere, even in a namespace of the tree's own: not a registration
    assert registered_namespaces('L = Library("mylib", "IMPL")\n') == {}
    # namespaces torch owns are never the bundle's, however they are registered into
    assert registered_namespaces('L = Library("aten", "FRAGMENT")\nM = Library("prim", "DEF")\n') == {}
    # `lib.define("op(...)")` names no namespace (the Library does); torch.library.define names one
    assert registered_namespaces('lib.define("mylib::f")\n') == {}


def test_bind_renames_registrations_and_reads_together(tmp_path):
    bm = bind.run(inputs=_ns_inputs(tmp_path), out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    key = bm["namespaces"]["key"]
    own = {ns: f"vllm_bundle_{key[:16]}_{ns}" for ns in ("vllm", "vllm_extra", "vllm_ir")}
    assert [(e["from"], e["to"]) for e in bm["namespaces"]["python"]] == sorted(own.items())
    assert bm["namespaces"]["cuda"] == []
    rewrites = {(r["from"], r["to"]): r["count"] for r in bm["rewrites"]}
    # registrations
    assert rewrites[("vllm_ir", own["vllm_ir"])] == 2  # Library("vllm_ir", ...) and `.namespace == "vllm_ir"`
    assert f'Library("{own["vllm_ir"]}", "FRAGMENT")' in text
    assert rewrites[("vllm", own["vllm"])] == 1 and f'vllm_lib = Library("{own["vllm"]}", "FRAGMENT")' in text
    assert rewrites[("vllm_extra::triple", f"{own['vllm_extra']}::triple")] == 2  # custom_op + register_fake
    assert f'@torch.library.custom_op("{own["vllm_extra"]}::triple"' in text
    # reads
    assert rewrites[("torch.ops.vllm_ir", f"torch.ops.{own['vllm_ir']}")] == 2
    assert rewrites[("torch.ops.vllm", f"torch.ops.{own['vllm']}")] == 1  # halve; double is bound to the function
    assert f"torch.ops.{own['vllm']}.halve.default(x)" in text and '"double": double(x)' in text
    assert f'getattr(torch.ops, "{own["vllm_extra"]}").triple(x)' in text
    assert f'IR_RMS_NORM.namespace == "{own["vllm_ir"]}"' in text
    assert f'f"{own["vllm_ir"]}::{{IR_RMS_NORM._opname}}"' in text
    # what is not the bundle's own stays
    assert 'Library("aten", "IMPL")' in text and "torch.ops.aten.add.Tensor" in text and '"logger": "vllm"' in text
    assert any("1 plain string(s) 'vllm' left as they are" in n for n in bm["notes"])
    # nothing names the shared namespaces any more
    for ns in own:
        assert f"torch.ops.{ns}." not in text and f'"{ns}::' not in text and f'Library("{ns}"' not in text


def test_bundle_namespaces_are_deterministic_and_per_bundle(tmp_path):
    a = bind.run(inputs=_ns_inputs(tmp_path / "a"), out=tmp_path / "a" / "out")
    a2 = bind.run(inputs=_ns_inputs(tmp_path / "a2"), out=tmp_path / "a2" / "out")
    b = bind.run(inputs=_ns_inputs(tmp_path / "b", symbol="use"), out=tmp_path / "b" / "out")
    assert a["namespaces"] == a2["namespaces"]
    assert (tmp_path / "a" / "out" / "A5.module.py").read_bytes() == (tmp_path / "a2" / "out" / "A5.module.py").read_bytes()
    assert {e["to"] for e in a["namespaces"]["python"]}.isdisjoint({e["to"] for e in b["namespaces"]["python"]})
    # the same code under two variants (FLEX_ATTENTION with and without its block knobs: only the example differs)
    flex = {"attention_backend": "FLEX_ATTENTION"}
    f1 = bind.run(inputs=_ns_inputs(tmp_path / "f1", variant=flex), out=tmp_path / "f1" / "out")
    f2 = bind.run(inputs=_ns_inputs(tmp_path / "f2", variant={**flex, "flex_attn_q_block_size": 128}),
                  out=tmp_path / "f2" / "out")
    assert {e["to"] for e in f1["namespaces"]["python"]}.isdisjoint({e["to"] for e in f2["namespaces"]["python"]})
    # the same code and variant for two models of one architecture (their examples build different sizes)
    m1 = bind.run(inputs=_ns_inputs(tmp_path / "m1", config_sha="1" * 64), out=tmp_path / "m1" / "out")
    m2 = bind.run(inputs=_ns_inputs(tmp_path / "m2", config_sha="2" * 64), out=tmp_path / "m2" / "out")
    assert {e["to"] for e in m1["namespaces"]["python"]}.isdisjoint({e["to"] for e in m2["namespaces"]["python"]})


def test_two_bound_modules_and_vllm_share_a_process(tmp_path):
    """Two modules bound from the same code (different keys) and a stand-in for an installed vLLM that registers
    the original names first: all import into one interpreter, and each module's ops run its own code."""
    for sub, symbol in (("a", "RMSNorm"), ("b", "use")):
        bind.run(inputs=_ns_inputs(tmp_path / sub, symbol=symbol), out=tmp_path / sub / "out")
    code = textwrap.dedent(f'''
        import importlib.util, sys, torch
        from torch.library import Library
        # what an installed vLLM registers under the shared names
        installed = [Library(ns, "FRAGMENT") for ns in ("vllm_ir", "vllm", "vllm_extra")]
        installed[0].define("rms_norm(Tensor x, Tensor weight, float epsilon) -> Tensor")
        installed[1].define("halve(Tensor x) -> Tensor")
        installed[2].define("triple(Tensor x) -> Tensor")
        mods = []
        for name in ("a", "b"):
            spec = importlib.util.spec_from_file_location("bundle_" + name, {str(tmp_path)!r} + f"/{{name}}/out/A5.module.py")
            m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)
            mods.append(m)
        x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
        ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        for m in mods:
            r = m.use(x)
            assert torch.equal(r["double"], 2 * x) and torch.equal(r["halve"], x / 2) and torch.equal(r["triple"], 3 * x)
            assert torch.allclose(r["ir"], ref) and r["is_ir"] and r["qualname"].endswith("::rms_norm")
        a, b = mods
        assert a.vllm_ir_torch_lib.ns != b.vllm_ir_torch_lib.ns and a.vllm_lib.ns != b.vllm_lib.ns
        assert a.IR_RMS_NORM is not b.IR_RMS_NORM
        print("ok", a.vllm_ir_torch_lib.ns, b.vllm_ir_torch_lib.ns)
    ''')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0 and "ok vllm_bundle_" in r.stdout, r.stdout + r.stderr[-3000:]


@pytest.mark.parametrize("extra", ['\n\ndef _escaped():\n    return "vllm_ir\\x3a:rms_norm"\n',
                                   '\n\n_other = Library("vllm\\x5fir", "FRAGMENT")\n'])
def test_a_namespace_read_the_binder_cannot_rewrite_fails(tmp_path, extra):
    """A string with escapes is not rewritten (its text is not its value): the check after binding names it."""
    with pytest.raises(StageError, match=r"still names a namespace the bundle registers"):
        bind.run(inputs=_ns_inputs(tmp_path, a2=NS_A2 + extra), out=tmp_path / "out")
