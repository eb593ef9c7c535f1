"""`diff` on two small artifact sets written here: a definition added, one removed, one changed (and one
only moved in its file), a CUDA op added/removed/changed, a Triton kernel added/removed/changed, a flipped
guard."""

import json
from pathlib import Path

from bundler_lib.diff import compare, render


def _block(f, a, body):
    n = body.count("\n")
    return f"# --- Inlined from {f}:L{a}-L{a + n - 1} (Apache-2.0) ---\n{body}", (a, a + n - 1)


def write_artifacts(d: Path, defs: dict, kernels: dict, ops: dict, guards: list) -> Path:
    """defs/kernels: {(file, name): (line, text)}; ops: {op: (schema, source sha)}; guards: [(file, pred, value, kept)]."""
    d.mkdir(parents=True, exist_ok=True)
    nodes, a2, a3, order2, order3, kmeta = [], [], [], [], [], []
    for section, items in (("python", defs), ("triton", kernels)):
        for (f, name), (line, text) in items.items():
            blk, (a, b) = _block(f, line, text)
            nid = f"{f}::{name}"
            nodes.append({"id": nid, "name": name, "emit_name": name, "file": f, "line": a, "end_line": b,
                          "kind": "function", "section": section, "edits": []})
            (a2 if section == "python" else a3).append(blk)
            (order2 if section == "python" else order3).append(nid)
            if section == "triton":
                kmeta.append({"name": name, "emit_name": name, "file": f, "lines": [a, b], "meta": {}})
    graph = {"symbol": "Layer", "def_file": "vllm/layer.py", "def_line": 1, "kind": "class", "python_nodes": nodes,
             "edges": [], "notes": [], "files": sorted({n["file"] for n in nodes}),
             "guards": [{"file": f, "line": 10 + i, "end_line": 12 + i, "predicate": p, "value": v, "kept": k}
                        for i, (f, p, v, k) in enumerate(guards)]}
    (d / "A1.graph.json").write_text(json.dumps(graph))
    (d / "A2.inline.py").write_text("\n\n".join(a2) + "\n")
    (d / "A3.triton.py").write_text("\n\n".join(a3) + "\n")
    (d / "A2.manifest.json").write_text(json.dumps({"topo_order": order2}))
    (d / "A3.manifest.json").write_text(json.dumps({"topo_order": order3, "kernels": kmeta}))
    (d / "A4.manifest.json").write_text(json.dumps({
        "ops": [{"op": op, "translation_unit": f"tu_{op}", "kernels": [f"{op}_kernel"]} for op in ops],
        "wrappers": [{"op": op, "schema": schema} for op, (schema, _) in ops.items()],
        "translation_units": [{"id": f"tu_{op}", "files": [f"csrc/{op}.cu"]} for op in ops],
        "cuda_files": [{"path": f"csrc/{op}.cu", "sha256": sha} for op, (_, sha) in ops.items()]}))
    return d


OLD = dict(
    defs={("vllm/a.py", "keep"): (3, "def keep():\n    return 1\n"),
          ("vllm/a.py", "moved"): (10, "def moved():\n    return 2\n"),
          ("vllm/a.py", "gone"): (20, "def gone():\n    return 3\n"),
          ("vllm/b.py", "edit"): (5, "def edit(x):\n    return x + 1\n"),
          ("vllm/b.py", "doc"): (9, 'def doc(x):\n    """Old words."""\n    return x  # old\n')},
    kernels={("vllm/k.py", "k_same"): (1, "@triton.jit\ndef k_same(x):\n    pass\n"),
             ("vllm/k.py", "k_edit"): (9, "@triton.jit\ndef k_edit(x):\n    pass\n"),
             ("vllm/k.py", "k_gone"): (20, "@triton.jit\ndef k_gone(x):\n    pass\n")},
    ops={"_C.same": ("same(Tensor x) -> Tensor", "aa"), "_C.edit": ("edit(Tensor x) -> Tensor", "bb"),
         "_C.gone": ("gone(Tensor x) -> ()", "cc")},
    guards=[("vllm/a.py", "current_platform.is_rocm()", False, "orelse"),
            ("vllm/b.py", "envs.FLAG", False, "none"),
            ("vllm/b.py", "is_cpu()", False, "none")])

NEW = dict(
    defs={("vllm/a.py", "keep"): (3, "def keep():\n    return 1\n"),
          ("vllm/a.py", "moved"): (40, "def moved():\n    return 2\n"),      # same text, other lines
          ("vllm/b.py", "edit"): (5, "def edit(x):\n    return x + 2\n"),
          ("vllm/b.py", "doc"): (9, 'def doc(x):\n    """New words."""\n    return x  # new\n'),
          ("vllm/c.py", "new_def"): (1, "def new_def():\n    pass\n")},
    kernels={("vllm/k.py", "k_same"): (1, "@triton.jit\ndef k_same(x):\n    pass\n"),
             ("vllm/k.py", "k_edit"): (9, "@triton.jit\ndef k_edit(x, y):\n    pass\n"),
             ("vllm/k2.py", "k_new"): (3, "@triton.jit\ndef k_new(x):\n    pass\n")},
    ops={"_C.same": ("same(Tensor x) -> Tensor", "aa"), "_C.edit": ("edit(Tensor x) -> Tensor", "b2"),
         "_moe_C.new": ("new(Tensor x) -> ()", "dd")},
    guards=[("vllm/a.py", "current_platform.is_rocm()", False, "orelse"),
            ("vllm/b.py", "envs.FLAG", True, "body"),
            ("vllm/b.py", "is_cpu()", False, "orelse")])     # decided alike; an else appeared


def test_diff_lists_every_change(tmp_path):
    a = write_artifacts(tmp_path / "old", **OLD)
    b = write_artifacts(tmp_path / "new", **NEW)
    r = compare(a, b)
    assert r["defs_added"] == [("vllm/c.py", "new_def")]
    assert r["defs_removed"] == [("vllm/a.py", "gone")]
    assert [(c["file"], c["name"], c["code"]) for c in r["defs_changed"]] == [("vllm/b.py", "doc", False),
                                                                               ("vllm/b.py", "edit", True)]
    assert "-    return x + 1\n+    return x + 2\n" in r["defs_changed"][1]["diff"]
    assert r["defs_same"] == 2              # keep, moved (only its provenance line numbers differ)
    assert r["ops_added"] == ["_moe_C.new"] and r["ops_removed"] == ["_C.gone"]
    assert [(c["op"], c["what"]) for c in r["ops_changed"]] == [("_C.edit", ["sources: changed csrc/_C.edit.cu"])]
    assert r["kernels_added"] == [("vllm/k2.py", "k_new")] and r["kernels_removed"] == [("vllm/k.py", "k_gone")]
    assert r["kernels_changed"] == [("vllm/k.py", "k_edit")]
    assert [(g["predicate"], g["old"]["value"], g["new"]["value"], g["new"]["kept"]) for g in r["guards_flipped"]] \
        == [("envs.FLAG", False, True, "body"), ("is_cpu()", False, False, "orelse")]
    text = render(r)
    for needle in ("definitions: 1 added, 1 removed, 2 changed (1 of them in docstrings/comments only), 2 unchanged",
                   "== definitions changed\n  vllm/b.py: edit\n",
                   "== definitions changed in docstrings, comments or layout only\n  vllm/b.py: doc\n",
                   "== definitions added\n  vllm/c.py: new_def", "== definitions removed\n  vllm/a.py: gone",
                   "== CUDA ops added\n  _moe_C.new", "== CUDA ops removed\n  _C.gone",
                   "== Triton kernels changed\n  k_edit (vllm/k.py)",
                   "`envs.FLAG`: value False -> True, kept none -> body", "+def k_edit(x, y):",
                   "`is_cpu()`: value False (same), kept none -> orelse (its branches changed)"):
        assert needle in text, needle
    md = render(r, markdown=True)
    assert "### definitions changed\n- `vllm/b.py`: edit\n" in md and "```diff" in md


def test_diff_of_a_build_with_itself_is_empty(tmp_path, capsys):
    a = write_artifacts(tmp_path / "old", **OLD)
    from bundler_lib.__main__ import main
    assert main(["diff", str(a), str(a)]) == 0
    out = capsys.readouterr().out
    assert "definitions: 0 added, 0 removed, 0 changed (0 of them in docstrings/comments only), 5 unchanged" in out
    assert "CUDA ops: 0 added, 0 removed, 0 changed; Triton kernels: 0 added, 0 removed, 0 changed; " \
           "guards flipped: 0" in out
