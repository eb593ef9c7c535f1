"""Every suite bundle of both vLLM versions (targets/BUILD, targets/vllm_0_33_0/BUILD), built by the real
`./pants package`, imported into ONE interpreter with vLLM blocked (A7's meta-path finder), after a stand-in
for an installed vLLM has registered vLLM's own op names: all import, every op a bundle registers lies in the
bundle's own namespaces (A5.bindmap.json `namespaces`), no two bundles register the same op, and the IR
`rms_norm` of every bundle that has one runs on CPU through its own `torch.ops.<namespace>` entry."""

import json
import re
import subprocess
import sys

import pytest

from bundler_lib.package.import_check import _CHILD
from bundler_lib.bind.namespaces import TORCH_NAMESPACES
from pants_workspace import REPO, Workspace

pytestmark = pytest.mark.pants

BUILD_FILES = ("targets/BUILD", "targets/vllm_0_33_0/BUILD")
# What an installed vLLM registers under the shared names (its IR ops, a custom op of its own library).
INSTALLED_VLLM = {
    "vllm_ir": ["rms_norm(Tensor x, Tensor weight, float epsilon, SymInt? variance_size=None) -> Tensor",
                "fused_add_rms_norm(Tensor x, Tensor x_residual, Tensor weight, float epsilon) -> (Tensor, Tensor)"],
    "vllm": ["unified_attention(Tensor query, Tensor key, Tensor value, str layer_name) -> Tensor"],
}


def _no_vllm_block() -> str:
    """A7's import-check preamble that makes vLLM unimportable (bundler_lib/package/import_check.py), verbatim."""
    child = _CHILD
    block = child[child.index("class _NoVllm"):child.index("_build_allowed")]
    assert "sys.meta_path.insert(0, _NoVllm())" in block
    return block


_PROBE = '''
import importlib.abc, importlib.util, json, sys
{no_vllm}
import torch
from torch.library import Library
# torch's compiler stack (what a FLEX_ATTENTION bundle's torch.compile and flex_attention import) registers ops of
# its own when first imported (flex_lib, _inductor_test, onnx, ...): imported first, they are not the bundles'
import torch._dynamo, torch._inductor.lowering, torch.nn.attention.flex_attention  # noqa: E401

installed = {{}}
for ns, schemas in {installed!r}.items():
    installed[ns] = Library(ns, "FRAGMENT")
    for schema in schemas:
        installed[ns].define(schema)

def op_names():
    return set(torch._C._dispatch_get_all_op_names())

out = []
for i, path in enumerate({paths!r}):
    before = op_names()
    spec = importlib.util.spec_from_file_location(f"bundle{{i}}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    entry = {{"path": path, "registered": sorted(op_names() - before), "ir_rms_norm": None}}
    ir = getattr(mod, "rms_norm", None)
    if hasattr(ir, "set_default") and hasattr(ir, "torch_op"):  # vLLM's IR op (the bundle keeps set_default)
        ns = ir.torch_op.namespace
        x = torch.randn(4, 64, generator=torch.Generator().manual_seed(i))
        w = torch.rand(64, generator=torch.Generator().manual_seed(100 + i)) + 0.5
        ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
        ir.set_default(["native"])  # the vllm_c provider needs a GPU; native is torch
        y = getattr(torch.ops, ns).rms_norm(x, w, 1e-6)
        entry["ir_rms_norm"] = {{"namespace": ns, "max_err": float((y - ref).abs().max())}}
    out.append(entry)
assert "vllm" not in sys.modules
# vLLM's own names still hold only what the stand-in registered: a schema, no kernel from any bundle
try:
    torch.ops.vllm_ir.rms_norm(torch.ones(2, 8), torch.ones(8), 1e-6)
    out.append({{"vllm_ir": "ran"}})
except NotImplementedError as e:
    out.append({{"vllm_ir": "no kernel"}})
print("@@COEXIST@@" + json.dumps(out))
'''


def _targets(build_text: str) -> int:
    return len(re.findall(r"^monolithic_bundle\(", build_text, re.M))


@pytest.fixture(scope="module")
def suite(tmp_path_factory, vllm_0_26_0, vllm_0_33_0):
    ws = Workspace(tmp_path_factory.mktemp("coexist"))
    expected = 0
    for build in BUILD_FILES:
        text = (REPO / build).read_text()
        if build == "targets/BUILD":
            ws.write_targets(text)  # with targets/data/, the tuned MoE configs its targets name
        else:
            ws.write(build, text)
        expected += _targets(text)
    run = ws.pants("package", "targets::")
    assert run.returncode == 0, run.stderr[-4000:]
    wrote = sorted(p for p, _, _ in run.wrote())
    assert len(wrote) == expected == 18, wrote
    assert {p.rsplit("/", 1)[0] for p in wrote} == {"bundles_out", "bundles_out/flex", "bundles_out/flex128",
                                                    "bundles_out/rocm_attn", "bundles_out/vllm-0.33.0"}, wrote
    return ws, [ws.root / p for p in wrote]


def test_every_suite_bundle_of_both_versions_shares_one_process(suite):
    ws, bundles = suite
    code = _PROBE.format(no_vllm=_no_vllm_block(), installed=INSTALLED_VLLM, paths=[str(b) for b in bundles])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ws.root, timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    *out, installed = json.loads(r.stdout.split("@@COEXIST@@", 1)[1])
    assert [o["path"] for o in out] == [str(b) for b in bundles]  # every bundle imported
    assert installed == {"vllm_ir": "no kernel"}  # no bundle implemented vLLM's own vllm_ir::rms_norm

    owner: dict[str, str] = {}
    with_ir = 0
    for o, bundle in zip(out, bundles):
        bindmap = json.loads(_artifacts(ws, bundle).joinpath("A5.bindmap.json").read_text())
        own = {e["to"] for e in bindmap["namespaces"]["python"]}
        assert all(e["from"] != e["to"] and e["to"].startswith("vllm_bundle_") for e in bindmap["namespaces"]["python"])
        for op in o["registered"]:
            ns = op.split("::")[0]
            if ns in TORCH_NAMESPACES:
                continue  # torch's own (`c10d_functional::...`): torch.distributed registers them when first imported
            assert ns in own, (bundle, op, own)   # else only into the bundle's own namespaces
            assert op not in owner, (op, owner.get(op), bundle)
            owner[op] = str(bundle)
        if "vllm_ir" in {e["from"] for e in bindmap["namespaces"]["python"]}:
            with_ir += 1
            ir_ns = next(e["to"] for e in bindmap["namespaces"]["python"] if e["from"] == "vllm_ir")
            assert f"{ir_ns}::rms_norm" in o["registered"], (bundle, o["registered"])
            assert o["ir_rms_norm"] and o["ir_rms_norm"]["namespace"] == ir_ns
            assert o["ir_rms_norm"]["max_err"] < 1e-4, (bundle, o["ir_rms_norm"])
    # the decoder layers and RMSNorm of both versions hold vLLM's IR ops: at least two bundles ran their own
    assert with_ir >= 8, with_ir
    assert not any(op.split("::")[0] in ("vllm", "vllm_ir") for op in owner)


def _artifacts(ws, bundle):
    """bundles_out/artifacts/<target name>/ of the target that wrote `bundle` (matched by the A7 report's sha)."""
    import hashlib

    sha = hashlib.sha256(bundle.read_bytes()).hexdigest()
    found = [p.parent for p in (ws.root / "bundles_out").glob("**/artifacts/*/A7.report.json")
             if json.loads(p.read_text()).get("sha256") == sha]
    assert len(found) == 1, (bundle, found)
    return found[0]
