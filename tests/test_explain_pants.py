"""`explain` and `diff` on Qwen3MoeDecoderLayer built by the real `./pants package` (0.26.0 and 0.33.0): five
why-paths verified edge by edge against the real sdist's files, and the structure of the 0.26.0 -> 0.33.0 diff."""

import json
import re
import subprocess
import sys

import pytest

from bundler_lib.diff import compare, render
from bundler_lib.explain import Closure
from pants_workspace import REPO, Workspace

pytestmark = pytest.mark.pants

# Five definitions of the bundle, each reached another way: calls down the MoE layer, a Triton kernel, a CUDA op
# wrapper's Python caller through a rewritten `ops.` reference, an IR provider that registers itself on its op
# at import time, and a root the invocation example needs.
WHY = ["vllm/model_executor/layers/fused_moe/fused_moe.py::fused_moe_kernel",
       "vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py::UnquantizedFusedMoEMethod",
       "vllm/_custom_ops.py::topk_softmax",
       "vllm/kernels/vllm_c.py::rms_norm",
       "vllm/v1/worker/workspace.py::WorkspaceManager"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, vllm_0_26_0, vllm_0_33_0):
    ws = Workspace(tmp_path_factory.mktemp("explain"))
    ws.write_targets((REPO / "targets/BUILD").read_text())
    ws.write("targets/vllm_0_33_0/BUILD", (REPO / "targets/vllm_0_33_0/BUILD").read_text())
    run = ws.pants("package", "targets:qwen3_moe_layer", "targets/vllm_0_33_0:qwen3_moe_layer")
    assert run.returncode == 0, run.stderr[-4000:]
    return ws


def _holds_reference(line: str, names) -> bool:
    return any(re.search(rf"\b{re.escape(n)}\b", line) for n in names)


def _verify(closure, edge, tree, art):
    """The edge's file and line hold the reference (in the sdist's file; the example's roots in A6.example.py)."""
    path = art / edge["file"] if edge["file"] == "A6.example.py" else tree / edge["file"]
    line = path.read_text().splitlines()[edge["line"] - 1]
    if edge.get("rewritten"):
        # A1 rewrote the reference on this line (e.g. `ops.topk_softmax` -> `topk_softmax`): its own record says so
        node = closure.nodes[edge["from"]]
        assert any(e["op"] == "span" and e["line"] == edge["line"] for e in node["edits"]), edge
        assert _holds_reference(edge["bundle_text"], edge["ref_names"]), edge
        assert _holds_reference(line, edge["ref_names"]) or "." in line, (edge, line)
    else:
        assert _holds_reference(line, edge["ref_names"]), (edge, line)


@pytest.mark.parametrize("use_tree", [True, False], ids=["tree", "artifacts-only"])
def test_why_paths_hold_their_references_edge_by_edge(built, vllm_0_26_0, use_tree):
    art = built.root / "bundles_out/artifacts/targets.qwen3_moe_layer"
    c = Closure(art, tree=vllm_0_26_0 if use_tree else None, use_tree=use_tree)
    assert (c.tree is not None) == use_tree
    kinds = set()
    for target in WHY:
        path = c.path(target)
        assert path, target
        assert path[-1]["to"] == target
        assert path[0]["from"] in (c.root, "invocation_example()")
        for a, b in zip(path, path[1:]):
            assert a["to"] == b["from"]
        for e in path:
            kinds.add(e["kind"])
            assert e["exact"] or not use_tree, e
            if e["exact"]:
                _verify(c, e, vllm_0_26_0, art)
    assert {"call", "example root", "registration"} <= kinds, kinds


def test_why_cli_prints_file_line_and_kind(built):
    art = built.root / "bundles_out/artifacts/targets.qwen3_moe_layer"
    proc = subprocess.run([sys.executable, "-m", "bundler_lib", "explain", str(built.root / "bundles_out/Qwen3MoeDecoderLayer.py"),
                           "--why", "fused_moe_kernel", "--why", "WorkspaceManager", "--pruned", "--top", "5"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"Qwen3MoeDecoderLayer: {art}")
    assert re.search(r"-> fused_moe_kernel  \[\w[\w ]* at vllm/model_executor/layers/fused_moe/fused_moe.py:\d+\]", out)
    assert re.search(r"-> WorkspaceManager  \[example root at A6.example.py:\d+\]", out)
    assert re.search(r"pruned branches \(\d+\):\n  vllm/\S+:\d+-\d+  if .+  -> (False|True): pruned ", out)
    assert "top 5 files by inlined lines:" in out
    html = (art / "closure.html").read_text()
    graph = json.loads((art / "A1.graph.json").read_text())
    assert html.count('class="d"') == len(graph["python_nodes"])


def test_diff_026_033_structure(built):
    old = built.root / "bundles_out/artifacts/targets.qwen3_moe_layer"
    new = built.root / "bundles_out/vllm-0.33.0/artifacts/targets.vllm_0_33_0.qwen3_moe_layer"
    r = compare(old, new)
    assert r["symbol"] == ["Qwen3MoeDecoderLayer", "Qwen3MoeDecoderLayer"]
    assert r["defs_added"] and r["defs_changed"] and r["defs_same"]
    assert all(c["diff"].startswith("--- a/") for c in r["defs_changed"])
    target = ("vllm/model_executor/models/qwen3_moe.py", "Qwen3MoeDecoderLayer")
    assert target not in r["defs_added"] and target not in r["defs_removed"]
    a4_old = {o["op"] for o in json.loads((old / "A4.manifest.json").read_text())["ops"]}
    a4_new = {o["op"] for o in json.loads((new / "A4.manifest.json").read_text())["ops"]}
    assert set(r["ops_added"]) == a4_new - a4_old and set(r["ops_removed"]) == a4_old - a4_new
    assert all(g["old"]["value"] != g["new"]["value"] or g["old"]["kept"] != g["new"]["kept"]
               for g in r["guards_flipped"])
    text = render(r, markdown=True)
    assert text.startswith("## Qwen3MoeDecoderLayer: ")
    for head in ("### definitions added", "### definitions changed", "### unified diffs"):
        assert head in text
    # the CLI resolves both targets by name, the 0.33.0 one through its BUILD's output_path
    proc = subprocess.run([sys.executable, "-m", "bundler_lib", "diff", "qwen3_moe_layer",
                           "targets/vllm_0_33_0:qwen3_moe_layer", "--no-diffs"],
                          cwd=built.root, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith(f"definitions: {len(r['defs_added'])} added")
