"""A3's data part (bundler_lib/data_files.py): the files the reached code reads next to its module are found,
selected by the target's model, embedded with their sha256, and read back by the bound module from the
materialised copy. Small trees written to disk for the logic; the real 0.26.0 sdist for the MoE configs."""

import ast
import functools
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from bundler_lib import bind, collect_python, collect_triton, data_files
from bundler_lib.artifacts import read_json
from bundler_lib.common import moe_configs
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]
MOE = "vllm/model_executor/layers/fused_moe/fused_moe.py"
CONFIGS = "vllm/model_executor/layers/fused_moe/configs"
VARIANT = {"platform": "cuda", "dtype": "bfloat16", "tp": 1, "pp": 1, "ep": 1, "quantization": "none"}

READER = textwrap.dedent('''\
    # SPDX-License-Identifier: Apache-2.0
    import functools
    import json
    import os


    def get_device_name_as_file_name():
        return DEVICE[0]


    DEVICE = ["NVIDIA_H100_80GB_HBM3"]


    def get_config_file_name(E, N, dtype, block_shape=None):
        device_name = get_device_name_as_file_name()
        if "H200" in device_name.split("_"):
            device_name = "NVIDIA_H200"
        dtype_selector = "" if not dtype else f",dtype={dtype}"
        block_shape_selector = ("" if not block_shape or not all(block_shape)
                                else f",block_shape={block_shape}").replace(" ", "")
        return f"E={E},N={N},device_name={device_name}{dtype_selector}{block_shape_selector}.json"


    @functools.lru_cache
    def get_moe_configs(E, N, dtype, block_n=None, block_k=None):
        block_shape = [block_n, block_k] if block_n and block_k else None
        json_file_name = get_config_file_name(E, N, dtype, block_shape)
        config_file_path = os.path.join(
            os.path.dirname(os.path.realpath(__file__)), "configs", json_file_name
        )
        if os.path.exists(config_file_path):
            with open(config_file_path) as f:
                tuned_config = json.load(f)
                tuned_config.pop("triton_version", None)
                return {int(key): val for key, val in tuned_config.items()}
        return None


    def unreached():
        return os.path.join(os.path.dirname(__file__), "other", "x.txt")
    ''')

CONFIG_NAMES = [
    "E=8,N=64,device_name=NVIDIA_H100_80GB_HBM3.json",
    "E=8,N=64,device_name=NVIDIA_H200.json",
    "E=8,N=64,device_name=AMD_Instinct_MI300X.json",
    "E=8,N=64,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8.json",
    "E=8,N=64,device_name=NVIDIA_H100,dtype=fp8_w8a8,block_shape=[128,128].json",
    "E=8,N=64,device_name=NVIDIA_H100_80GB_HBM3,dtype=float32.json",
    "E=8,N=64,device_name=NVIDIA_H200,dtype=int4_w4a16,backend=flydsl.json",
    "E=8,N=32,device_name=NVIDIA_H100_80GB_HBM3.json",
    "E=16,N=64,device_name=NVIDIA_H100_80GB_HBM3.json",
    "E=8,N=640,device_name=NVIDIA_H100_80GB_HBM3.json",
    "E=80,N=64,device_name=NVIDIA_H100_80GB_HBM3.json",
]
SELECTED = sorted(f"{CONFIGS}/{n}" for n in CONFIG_NAMES[:3])


def _config(name: str) -> str:
    bs = 16 if "H200" in name else 32
    return json.dumps({"triton_version": "3.4.0", "1": {"BLOCK_SIZE_M": bs, "num_warps": 4},
                       "64": {"BLOCK_SIZE_M": 64, "num_warps": 8, "device": name}}, indent=4) + "\n"


def _nodes(tree: Path, rel: str, names: list[str], section: str = "python") -> list[dict]:
    mod = ast.parse((tree / rel).read_text())
    out = []
    for n in mod.body:
        name = getattr(n, "name", None) or (n.targets[0].id if isinstance(n, ast.Assign) else None)
        if name in names:
            start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
            out.append({"id": f"{rel}::{name}", "name": name, "emit_name": name, "file": rel, "line": start,
                        "end_line": n.end_lineno, "kind": "function", "section": section, "edits": [],
                        "imports": ["import functools", "import json", "import os"]})
    return out


def _graph(tree: Path, nodes: list[dict], variant=None, symbol="get_moe_configs") -> dict:
    return {"status": "ok", "symbol": symbol, "def_file": nodes[-1]["file"], "kind": "function",
            "variant": dict(VARIANT, **(variant or {})), "files": sorted({n["file"] for n in nodes}),
            "python_nodes": nodes, "triton_kernels": [], "cuda_ops": [], "python_custom_ops": [],
            "imports_external": [], "edges": [], "guards": [], "renames": {}, "notes": []}


@pytest.fixture
def moe_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / CONFIGS).mkdir(parents=True)
    (tree / MOE).write_text(READER)
    for n in CONFIG_NAMES:
        (tree / CONFIGS / n).write_text(_config(n))
    (tree / CONFIGS / "README").write_text("tuned configs\n")
    (tree / "vllm/model_executor/layers/fused_moe/__init__.py").write_text("")
    (tree / "vllm/model_executor/layers/fused_moe/other").mkdir()
    (tree / "vllm/model_executor/layers/fused_moe/other/x.txt").write_text("not read\n")
    return tree


def _moe_graph(tree, variant=None):
    return _graph(tree, _nodes(tree, MOE, ["get_device_name_as_file_name", "DEVICE", "get_config_file_name",
                                           "get_moe_configs"]), variant)


MODEL = {"architectures": ["Qwen3MoeForCausalLM"], "num_experts": 8, "moe_intermediate_size": 64,
         "intermediate_size": 512, "torch_dtype": "bfloat16"}


# ----------------------------------------------------------------------------- scan

def test_scan_finds_the_anchor_and_the_moe_rule(moe_tree):
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), MODEL)
    [a] = reads["anchors"]
    assert a["id"] == f"{MOE}::get_moe_configs" and a["kind"] == "str"
    assert a["expr"] == "os.path.dirname(os.path.realpath(__file__))"
    assert a["dir"] == "vllm/model_executor/layers/fused_moe"
    assert a["to"] == "_bundle_data_dir('vllm/model_executor/layers/fused_moe')"
    [d] = reads["data"]
    assert d["root"] == CONFIGS and d["match"] == "children" and d["selector"] == "fused_moe_configs"
    assert (d["params"]["E"], d["params"]["N"], d["params"]["dtype"]) == (8, 64, None)
    assert reads["globs"] == [f"{CONFIGS}/E=8,N=64,device_name=*.json", f"!{CONFIGS}/*,dtype=*",
                              f"!{CONFIGS}/*,block_shape=*"]
    # the unreached function's anchor (other/x.txt) is not a read of this target
    assert "other" not in json.dumps(reads)


def test_moe_params_follow_model_and_variant():
    sel = data_files.MoeConfigs()
    p = sel.params(MODEL, VARIANT)
    assert (p["E"], p["N"], p["dtype"]) == (8, 64, None)
    assert "moe_intermediate_size (64) / the experts' tp (1)" in p["from"]
    # tp alone shards every expert; with ep the rank holds whole experts (the experts' tp is 1)
    assert (sel.params(MODEL, dict(VARIANT, tp=2))["E"], sel.params(MODEL, dict(VARIANT, tp=2))["N"]) == (8, 32)
    assert (sel.params(MODEL, dict(VARIANT, tp=2, ep=2))["E"], sel.params(MODEL, dict(VARIANT, tp=2, ep=2))["N"]) == (
        4, 64)
    assert sel.params(MODEL, dict(VARIANT, dtype="float32"))["dtype"] == "float32"
    assert sel.params(MODEL, dict(VARIANT, dtype="float16"))["dtype"] is None
    mixtral = {"num_local_experts": 8, "intermediate_size": 14336}
    assert (sel.params(mixtral, VARIANT)["E"], sel.params(mixtral, VARIANT)["N"]) == (8, 14336)
    nested = {"text_config": {"n_routed_experts": 64, "moe_intermediate_size": 1408}}
    assert (sel.params(nested, VARIANT)["E"], sel.params(nested, VARIANT)["N"]) == (64, 1408)
    for model in (None, {"hidden_size": 4096, "intermediate_size": 11008}):
        p = sel.params(model, VARIANT)
        assert p["E"] is None and sel.include(p, False) == []
        assert "none embedded" in sel.rule(p)


def test_moe_select_is_exact():
    sel, p = data_files.MoeConfigs(), {"E": 8, "N": 64, "dtype": None}
    chosen = {n for n in CONFIG_NAMES if sel.select(n, p)}
    assert chosen == set(CONFIG_NAMES[:3])
    assert {n for n in CONFIG_NAMES if sel.select(n, {"E": 8, "N": 64, "dtype": "float32"})} == {CONFIG_NAMES[5]}
    assert not sel.select("README", p)


# ----------------------------------------------------------------------------- embed

def test_embed_selects_the_model_files_with_sha256(moe_tree):
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), MODEL)
    text, m = data_files.embed(moe_tree, reads)
    [d] = m["data"]
    assert [f["path"] for f in d["files"]] == SELECTED
    for f in d["files"]:
        raw = (moe_tree / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(raw).hexdigest() and f["size"] == len(raw)
        assert f"sha256={f['sha256']}" in text
    assert m["files"] == 3 and m["helpers"] == ["_bundle_data_dir"]
    assert "Selected: tuned fused-MoE configs E=8,N=64" in text
    # deterministic: same bytes again; no absolute path, no timestamp
    assert data_files.embed(moe_tree, reads) == (text, m)
    assert str(moe_tree) not in text and str(moe_tree) not in json.dumps(m)
    # the section is a module that defines only constants and functions
    ns: dict = {}
    exec(compile("import os, shutil, tempfile\n" + text, "A3.data.py", "exec"), ns)
    assert sorted(ns["_BUNDLE_DATA_FILES"]) == SELECTED
    assert ns["_BUNDLE_DATA_FILES"][SELECTED[0]] == (moe_tree / SELECTED[0]).read_text()


def test_no_model_embeds_nothing_and_says_why(moe_tree):
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), None)
    assert reads["globs"] == []
    text, m = data_files.embed(moe_tree, reads)
    assert m["files"] == 0 and m["data"][0]["files"] == []
    assert "no model" in m["data"][0]["rule"]
    assert any("get_default_config" in n for n in m["notes"])
    # the anchor is still rewritten: the helper stands for the module's directory, with no file in it
    assert "_bundle_data_dir" in text and m["anchors"]


def test_model_without_a_tuned_shape_embeds_nothing(moe_tree):
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), dict(MODEL, num_experts=160, moe_intermediate_size=2560))
    _, m = data_files.embed(moe_tree, reads)
    assert m["files"] == 0
    assert any("no tuned config for E=160,N=2560" in n for n in m["notes"])


def test_generic_reader_embeds_what_the_path_can_reach(tmp_path):
    tree = tmp_path / "tree"
    (tree / "vllm/foo/tables/sub").mkdir(parents=True)
    (tree / "vllm/foo/reader.py").write_text(textwrap.dedent('''\
        import os
        from pathlib import Path


        def table(name):
            return (Path(__file__).resolve().parent / "tables" / name).read_text()


        def fixed():
            with open(os.path.join(os.path.dirname(__file__), "data", "one.txt")) as f:
                return f.read()


        def where():
            return __file__
        '''))
    (tree / "vllm/foo/tables/a.txt").write_text("a\n")
    (tree / "vllm/foo/tables/b.csv").write_text("b\n")
    (tree / "vllm/foo/tables/helper.py").write_text("x = 1\n")
    (tree / "vllm/foo/tables/sub/deep.txt").write_text("deep\n")
    (tree / "vllm/foo/data").mkdir()
    (tree / "vllm/foo/data/one.txt").write_text("one\n")
    (tree / "vllm/foo/data/two.txt").write_text("two\n")
    g = _graph(tree, _nodes(tree, "vllm/foo/reader.py", ["table", "fixed", "where"]), symbol="table")
    reads = data_files.scan(tree, g, None)
    kinds = {a["id"].split("::")[1]: a["kind"] for a in reads["anchors"]}
    assert kinds == {"table": "path", "fixed": "str"}
    roots = {d["root"]: d for d in reads["data"]}
    assert roots["vllm/foo/tables"]["match"] == "children" and roots["vllm/foo/tables"]["selector"] == "all"
    assert roots["vllm/foo/data/one.txt"]["match"] == "file"
    assert any("where" in n and "names the bundle file" in n for n in reads["notes"])
    text, m = data_files.embed(tree, reads)
    files = sorted(f["path"] for d in m["data"] for f in d["files"])
    assert files == ["vllm/foo/data/one.txt", "vllm/foo/tables/a.txt", "vllm/foo/tables/b.csv"]
    assert m["helpers"] == ["_bundle_data_dir", "_bundle_data_path"]
    assert "def _bundle_data_path" in text


def test_guard_pruned_anchor_is_not_a_read(moe_tree):
    g = _moe_graph(moe_tree)
    node = next(n for n in g["python_nodes"] if n["name"] == "get_moe_configs")
    lines = (moe_tree / MOE).read_text().splitlines()
    i = next(k for k, ln in enumerate(lines, 1) if "config_file_path = os.path.join(" in ln)
    node["edits"] = [{"op": "delete", "line": i, "end_line": i + 2}]
    assert data_files.scan(moe_tree, g, MODEL)["anchors"] == []


def test_declared_inputs_suffice(moe_tree, tmp_path):
    """What the Pants rule gives the two processes (the scan: graph, the files naming __file__, the model
    config; the collection: graph, the files the scan's globs match, A3.data_reads.json) is enough: the
    artifacts equal those of a run over the whole tree."""
    g = _moe_graph(moe_tree)
    (tmp_path / "A1.graph.json").write_text(json.dumps(g))
    (tmp_path / "config.json").write_text(json.dumps(MODEL))
    full = tmp_path / "full"
    collect_triton.scan_data_reads(moe_tree, tmp_path / "A1.graph.json", full, tmp_path / "config.json")
    collect_triton.run(moe_tree, tmp_path / "A1.graph.json", full, data_reads=full / "A3.data_reads.json")
    # sandbox of the scan: only the reader file
    sb = tmp_path / "sb_scan"
    (sb / posixpath.dirname(MOE)).mkdir(parents=True)
    shutil.copy(moe_tree / MOE, sb / MOE)
    out1 = tmp_path / "out1"
    collect_triton.scan_data_reads(sb, tmp_path / "A1.graph.json", out1, tmp_path / "config.json")
    assert (out1 / "A3.data_reads.json").read_bytes() == (full / "A3.data_reads.json").read_bytes()
    # sandbox of the collection: the files the globs match (Pants glob semantics: `*` stays in one directory)
    reads = read_json(out1 / "A3.data_reads.json")
    import fnmatch
    inc = [p for p in reads["globs"] if not p.startswith("!")]
    exc = [p[1:] for p in reads["globs"] if p.startswith("!")]
    matched = sorted(f"{CONFIGS}/{n}" for n in os.listdir(moe_tree / CONFIGS)
                     if any(fnmatch.fnmatchcase(f"{CONFIGS}/{n}", p) for p in inc)
                     and not any(fnmatch.fnmatchcase(f"{CONFIGS}/{n}", p) for p in exc))
    assert matched == SELECTED   # here the globs already are the exact selection
    sb2 = tmp_path / "sb_collect"
    (sb2 / CONFIGS).mkdir(parents=True)
    for rel in matched:
        shutil.copy(moe_tree / rel, sb2 / rel)
    out2 = tmp_path / "out2"
    collect_triton.run(sb2, tmp_path / "A1.graph.json", out2, data_reads=out1 / "A3.data_reads.json")
    for name in ("A3.data.py", "A3.data.json", "A3.triton.py", "A3.manifest.json"):
        assert (out2 / name).read_bytes() == (full / name).read_bytes(), name


def test_cli_scan_and_collect(moe_tree, tmp_path):
    (tmp_path / "A1.graph.json").write_text(json.dumps(_moe_graph(moe_tree)))
    (tmp_path / "config.json").write_text(json.dumps(MODEL))
    base = [sys.executable, "-m", "bundler_lib", "collect-triton", "--tree", str(moe_tree),
            "--graph", str(tmp_path / "A1.graph.json"), "--out", str(tmp_path / "out")]
    r = subprocess.run(base + ["--scan-data-reads", "--model-config", str(tmp_path / "config.json")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["A3.data_reads.json"]
    r = subprocess.run(base + ["--data-reads", str(tmp_path / "out" / "A3.data_reads.json")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    m = read_json(tmp_path / "out" / "A3.data.json")
    assert [f["path"] for f in m["data"][0]["files"]] == SELECTED
    r = subprocess.run(base + ["--data-reads", str(tmp_path / "missing.json")], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2 and "--scan-data-reads" in r.stderr


def test_without_data_reads_nothing_is_embedded(moe_tree, tmp_path):
    (tmp_path / "A1.graph.json").write_text(json.dumps(_moe_graph(moe_tree)))
    collect_triton.run(moe_tree, tmp_path / "A1.graph.json", tmp_path / "out")
    m = read_json(tmp_path / "out" / "A3.data.json")
    assert m["anchors"] == [] and m["files"] == 0
    assert (tmp_path / "out" / "A3.data.py").read_text() == ""


# ----------------------------------------------------------------------------- through A5: the bound module reads the copy

def _bind_inputs(tree, graph, model, d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "A1.graph.json").write_text(json.dumps(graph))
    if model is not None:
        (d / "config.json").write_text(json.dumps(model))
    collect_python.run(tree=tree, graph=d / "A1.graph.json", out=d)
    collect_triton.scan_data_reads(tree, d / "A1.graph.json", d, d / "config.json" if model is not None else None)
    collect_triton.run(tree, d / "A1.graph.json", d, data_reads=d / "A3.data_reads.json")
    (d / "A4.cuda.py").write_text("")
    (d / "A4.manifest.json").write_text(json.dumps({"status": "ok", "wrappers": [], "imports": []}))
    return d


def _load(path: Path, name: str):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod


def test_bound_module_reads_the_embedded_copy(moe_tree, tmp_path, monkeypatch):
    d = _bind_inputs(moe_tree, _moe_graph(moe_tree), MODEL, tmp_path / "in")
    bm = bind.run(inputs=d, out=tmp_path / "out")
    text = (tmp_path / "out" / "A5.module.py").read_text()
    assert "os.path.dirname(os.path.realpath(__file__))" not in text
    assert "_bundle_data_dir('vllm/model_executor/layers/fused_moe'), \"configs\", json_file_name" in text
    assert {"from": "os.path.dirname(os.path.realpath(__file__))",
            "to": "_bundle_data_dir('vllm/model_executor/layers/fused_moe')", "count": 1} in bm["rewrites"]
    assert bm["sections"] == ["A3.data", "A2"]
    assert [f.split("/")[-1] for f in bm["data_files"][0]["files"]] == [s.split("/")[-1] for s in SELECTED]
    # the data section comes before the Python that reads it
    assert text.index("_BUNDLE_DATA_FILES = {") < text.index("def get_moe_configs")

    cache = tmp_path / "cache"
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(cache))
    # the bound module lives far from any configs/ directory
    mod = _load(tmp_path / "out" / "A5.module.py", "bound_moe")
    assert not list(cache.glob("*")), "importing wrote the data files"
    ref = _load(moe_tree / MOE, "vllm_own_moe")  # vLLM's own function, next to its configs
    for dev in ["NVIDIA_H100_80GB_HBM3", "NVIDIA_H200", "NVIDIA_H200_NVL", "AMD_Instinct_MI300X", "NVIDIA_B200"]:
        mod.DEVICE[0] = ref.DEVICE[0] = dev
        mod.get_moe_configs.cache_clear()
        ref.get_moe_configs.cache_clear()
        assert mod.get_moe_configs(8, 64, None) == ref.get_moe_configs(8, 64, None), dev
        # what the variant (bf16, unquantized) never asks for, and another model's shape: not embedded
        assert mod.get_moe_configs(8, 64, "float32") is None and mod.get_moe_configs(8, 64, "fp8_w8a8") is None
        assert mod.get_moe_configs(16, 64, None) is None
    mod.DEVICE[0] = "NVIDIA_H200_NVL"   # vLLM maps the H200 family to NVIDIA_H200
    mod.get_moe_configs.cache_clear()
    assert mod.get_moe_configs(8, 64, None)[64]["device"] == "E=8,N=64,device_name=NVIDIA_H200.json"
    [root] = list(cache.glob("data-*"))
    key = read_json(d / "A3.data.json")["key"]
    assert root.name == "data-" + key[:32] and (root / ".complete").read_text().strip() == key
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.json")) == SELECTED
    assert mod._bundle_data_dir("vllm/model_executor/layers/fused_moe") == str(
        root / "vllm/model_executor/layers/fused_moe")


def test_bound_module_in_a_fresh_process_reuses_the_copy(moe_tree, tmp_path):
    d = _bind_inputs(moe_tree, _moe_graph(moe_tree), MODEL, tmp_path / "in")
    bind.run(inputs=d, out=tmp_path / "out")
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('b', {str(tmp_path / 'out' / 'A5.module.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['b'] = m; spec.loader.exec_module(m)\n"
            "m.DEVICE[0] = 'NVIDIA_H200'\n"
            "print(m.get_moe_configs(8, 64, None)[1]['BLOCK_SIZE_M'], m._bundle_data_dir('x'))\n")
    env = dict(os.environ, VLLM_BUNDLE_CACHE=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.startswith("16 ")
    assert len(list((tmp_path / "cache").iterdir())) == 1   # one directory, no leftover temporaries


# ----------------------------------------------------------------------------- the real sdist

QWEN3_CODER = ROOT / "models/Qwen--Qwen3-Coder-480B-A35B-Instruct/config.json"
QWEN3_30B = ROOT / "models/Qwen--Qwen3-30B-A3B/config.json"


def test_real_tree_qwen3_moe_layer_selection(vllm_0_26_0, tmp_path):
    """A1 over the real 0.26.0 tree for Qwen3MoeDecoderLayer, then the scan and the embedding: the one
    anchor is get_moe_configs'; Qwen3-Coder-480B (E=160, N=2560, bf16) has no tuned file for any device in
    0.26.0, so nothing is embedded and the bundle, like vLLM, uses get_default_config; Qwen3-30B-A3B
    (E=128, N=768) gets its four bf16 files."""
    from bundler_lib import graph as graph_stage
    graph_stage.run(tree=vllm_0_26_0, out=tmp_path, symbol="Qwen3MoeDecoderLayer", hint=None, variant={})
    g = read_json(tmp_path / "A1.graph.json")
    coder = data_files.scan(vllm_0_26_0, g, read_json(QWEN3_CODER))
    assert [(a["id"], a["expr"]) for a in coder["anchors"]] == [
        (f"{MOE}::get_moe_configs", "os.path.dirname(os.path.realpath(__file__))")]
    [d] = coder["data"]
    assert d["root"] == CONFIGS and (d["params"]["E"], d["params"]["N"], d["params"]["dtype"]) == (160, 2560, None)
    assert coder["globs"][0] == f"{CONFIGS}/E=160,N=2560,device_name=*.json"
    _, m = data_files.embed(vllm_0_26_0, coder)
    assert m["files"] == 0 and m["data"][0]["files"] == []
    assert any("no tuned config for E=160,N=2560" in n for n in m["notes"])
    # the files that do exist for E=160 are other shapes (tp>1 N, fp8): none is the bf16 tp=1 shape
    assert not [n for n in os.listdir(vllm_0_26_0 / CONFIGS) if n.startswith("E=160,N=2560,")]

    _, m30 = data_files.embed(vllm_0_26_0, data_files.scan(vllm_0_26_0, g, read_json(QWEN3_30B)))
    assert [f["path"].split("/")[-1] for f in m30["data"][0]["files"]] == [
        "E=128,N=768,device_name=AMD_Instinct_MI308X.json", "E=128,N=768,device_name=NVIDIA_B200.json",
        "E=128,N=768,device_name=NVIDIA_H20.json", "E=128,N=768,device_name=NVIDIA_H200.json"]
    for f in m30["data"][0]["files"]:
        assert f["sha256"] == hashlib.sha256((vllm_0_26_0 / f["path"]).read_bytes()).hexdigest()


def test_real_tree_bound_get_moe_configs_matches_vllm(vllm_0_26_0, tmp_path, monkeypatch):
    """The real get_config_file_name/get_moe_configs of 0.26.0, through A2, A3 and A5, read from the
    embedded copy what vLLM's own functions read from the tree, for every device name in configs/."""
    nodes = _nodes(vllm_0_26_0, MOE, ["get_config_file_name", "get_moe_configs"])
    text = (vllm_0_26_0 / MOE).read_text()
    g = _graph(vllm_0_26_0, nodes)
    d = _bind_inputs(vllm_0_26_0, g, read_json(QWEN3_30B), tmp_path / "in")
    bind.run(inputs=d, out=tmp_path / "out")
    module = (tmp_path / "out" / "A5.module.py").read_text()
    assert not [n for n in ast.walk(ast.parse(module)) if isinstance(n, ast.Name) and n.id == "__file__"]

    device = ["?"]

    class _Log:
        def info_once(self, *a, **k):
            pass

        warning_once = info_once

    def env(**extra):
        return {"envs": types.SimpleNamespace(VLLM_BATCH_INVARIANT=False, VLLM_TUNED_CONFIG_FOLDER=None),
                "logger": _Log(), "get_device_name_as_file_name": lambda device_id=0: device[0], **extra}

    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    bound = env(__name__="bound")
    exec(compile(module, "A5.module.py", "exec"), bound)
    own = env(__file__=str(vllm_0_26_0 / MOE), os=os, json=json, functools=functools, Any=object)
    src = "\n\n".join("".join(text.splitlines(keepends=True)[n["line"] - 1:n["end_line"]]) for n in nodes)
    exec(compile(src, str(vllm_0_26_0 / MOE), "exec"), own)
    names = sorted({n.split("device_name=")[1].split(",")[0].removesuffix(".json")
                    for n in os.listdir(vllm_0_26_0 / CONFIGS) if "device_name=" in n})
    tuned = []
    for dev in names + ["NVIDIA_H100_80GB_HBM3", "NVIDIA_H200_NVL"]:
        device[0] = dev
        bound["get_moe_configs"].cache_clear()
        own["get_moe_configs"].cache_clear()
        for E, N in ((128, 768), (160, 2560)):
            assert bound["get_moe_configs"](E, N, None) == own["get_moe_configs"](E, N, None), (dev, E, N)
        if own["get_moe_configs"](128, 768, None):
            tuned.append(dev)
    assert "NVIDIA_H100_80GB_HBM3" not in tuned and {"NVIDIA_H200", "NVIDIA_H200_NVL"} <= set(tuned)


BOUND_DIR = ROOT / "tests/trees/data/bound_dir"
ENVS = "vllm/pkg/envs.py"


def test_module_dir_bound_to_a_local_name_reads_what_the_name_builds():
    """`pkg_dir = os.path.dirname(__file__)` then `os.path.join(pkg_dir, "tool-bin")`: the data read is that file
    (absent here: nothing embedded), not every file beside the module (a binary diagram among them)."""
    g = _graph(BOUND_DIR, _nodes(BOUND_DIR, ENVS, ["tool_path", "table"]), symbol="tool_path")
    reads = data_files.scan(BOUND_DIR, g, None)
    roots = {d["root"]: d["match"] for d in reads["data"]}
    assert roots == {"vllm/pkg/tool-bin": "file", "vllm/pkg/tables": "children"}
    _, m = data_files.embed(BOUND_DIR, reads)
    assert [f["path"] for d in m["data"] for f in d["files"]] == ["vllm/pkg/tables/a.txt"]
    assert {a["to"] for a in m["anchors"]} == {"_bundle_data_dir('vllm/pkg')", "_bundle_data_path('vllm/pkg')"}


def test_module_dir_name_used_otherwise_reads_the_whole_directory():
    """A bound name passed to a call A3 cannot follow, bound twice or global, keeps every non-Python file beside the
    module a candidate: the binary one then fails the stage, naming the file."""
    g = _graph(BOUND_DIR, _nodes(BOUND_DIR, ENVS, ["listing", "rebound", "cached"]), symbol="listing")
    reads = data_files.scan(BOUND_DIR, g, None)
    assert [(d["root"], d["match"]) for d in reads["data"]] == [("vllm/pkg", "recursive")]
    with pytest.raises(StageError, match="vllm/pkg/diagram.jpg: is not UTF-8 text"):
        data_files.embed(BOUND_DIR, reads)


# ----------------------------------------------------------------------------- the target's own tuned configs (moe_configs)

OWN = "targets/data/moe-configs"


def _tuned(name: str) -> bytes:
    """A config as tune-moe writes it; its GROUP_SIZE_M at M=4096 tells the files apart."""
    return (json.dumps({"triton_version": "3.6.0", "1": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 64,
                        "GROUP_SIZE_M": 1, "num_warps": 4, "num_stages": 3},
                        "4096": {"BLOCK_SIZE_M": 128, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64, "GROUP_SIZE_M": len(name),
                                 "num_warps": 8, "num_stages": 4}}, indent=4) + "\n").encode()


def _as_loaded(raw: bytes) -> dict:
    """What vLLM's get_moe_configs returns for the file."""
    return {int(k): v for k, v in json.loads(raw).items() if k != "triton_version"}


def _own(tmp_path, *names, folder=OWN) -> Path:
    d = tmp_path / "own"
    for n in names:
        (d / folder).mkdir(parents=True, exist_ok=True)
        (d / folder / n).write_bytes(_tuned(n))
    return d


def test_every_vllm_config_is_a_moe_config_and_bad_ones_are_named(vllm_0_26_0):
    triton = [p for p in sorted((vllm_0_26_0 / CONFIGS).glob("E=*.json"))
              if moe_configs.MOE_NAME.fullmatch(p.name).group(6) is None]   # not another backend's (",backend=...")
    assert len(triton) > 300
    for p in triton:
        moe_configs.check_moe_config(f"{CONFIGS}/{p.name}", p.read_bytes())
    good = json.loads(_tuned("x"))
    bad = [
        ("moe.json", _tuned("x"), "is not named as vLLM names a fused-MoE config"),
        ("E=8,N=64.json", _tuned("x"), "is not named as vLLM names"),
        ("E=8,N=64,device_name=X.json", b'{"1": {,}', "is not valid JSON"),
        ("E=8,N=64,device_name=X.json", b"[1, 2]", "is not a JSON object"),
        ("E=8,N=64,device_name=X.json", b'{"triton_version": "3.6.0"}', "has no batch size"),
        ("E=8,N=64,device_name=X.json", json.dumps({"M1": good["1"]}).encode(), "has key 'M1'"),
        ("E=8,N=64,device_name=X.json", json.dumps({"1": dict(good["1"], num_warps=True)}).encode(),
         "not an object of integers"),
        ("E=8,N=64,device_name=X.json", json.dumps({"1": {"BLOCK_SIZE_M": 16}}).encode(),
         "no BLOCK_SIZE_N/BLOCK_SIZE_K/GROUP_SIZE_M"),
        ("E=8,N=64,device_name=X.json", json.dumps(dict(good, triton_version=3)).encode(), "triton_version"),
    ]
    for name, raw, problem in bad:
        with pytest.raises(StageError, match=re.escape(f"{OWN}/{name}: ") + ".*" + re.escape(problem)):
            moe_configs.check_moe_config(f"{OWN}/{name}", raw)


def test_target_configs_are_embedded_beside_vllms_with_provenance(moe_tree, tmp_path):
    h100, b200 = "E=8,N=64,device_name=NVIDIA_H100_80GB_HBM3.json", "E=8,N=64,device_name=NVIDIA_B200.json"
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), MODEL)
    plain_text, plain = data_files.embed(moe_tree, reads)
    text, m = data_files.embed(moe_tree, reads, moe_configs.load_moe_configs(_own(tmp_path, h100, b200)))
    [d] = m["data"]
    vllm_h100 = hashlib.sha256((moe_tree / CONFIGS / h100).read_bytes()).hexdigest()
    files = {f["path"].rsplit("/", 1)[1]: f for f in d["files"]}
    assert sorted(files) == sorted([b200, h100, CONFIG_NAMES[1], CONFIG_NAMES[2]])
    # the target's file wins over vLLM's of the same name, which is recorded; a new device name is added
    assert files[h100] == {"path": f"{CONFIGS}/{h100}", "sha256": hashlib.sha256(_tuned(h100)).hexdigest(),
                           "size": len(_tuned(h100)), "from": f"{OWN}/{h100}", "replaces": vllm_h100}
    assert files[b200]["from"] == f"{OWN}/{b200}" and "replaces" not in files[b200]
    assert "from" not in files[CONFIG_NAMES[1]]
    assert f"(the target's moe_configs: {OWN}/{h100}; replaces vLLM's file, sha256={vllm_h100})" in text
    assert "2 of them from the target's moe_configs" in text
    assert m["key"] != plain["key"] and m["files"] == plain["files"] + 1
    ns: dict = {}
    exec(compile("import os, shutil, tempfile\n" + text, "A3.data.py", "exec"), ns)
    assert ns["_BUNDLE_DATA_FILES"][f"{CONFIGS}/{h100}"] == _tuned(h100).decode()


def test_target_config_of_another_shape_or_reader_is_refused(moe_tree, tmp_path):
    reads = data_files.scan(moe_tree, _moe_graph(moe_tree), MODEL)
    other = "E=16,N=64,device_name=NVIDIA_H100_80GB_HBM3.json"
    with pytest.raises(StageError, match=re.escape(f"{OWN}/{other}: is not a config this target looks up; it reads "
                                                   "tuned fused-MoE configs E=8,N=64")):
        data_files.embed(moe_tree, reads, moe_configs.load_moe_configs(_own(tmp_path, other)))
    fp8 = "E=8,N=64,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8.json"
    with pytest.raises(StageError, match="is not a config this target looks up"):
        data_files.embed(moe_tree, reads, moe_configs.load_moe_configs(_own(tmp_path, fp8)))
    # no model: no shape is known
    with pytest.raises(StageError, match="no model"):
        data_files.embed(moe_tree, data_files.scan(moe_tree, _moe_graph(moe_tree), None),
                         moe_configs.load_moe_configs(_own(tmp_path, CONFIG_NAMES[0])))
    # a closure without get_moe_configs
    with pytest.raises(StageError, match="reads no fused-MoE configs"):
        data_files.embed(moe_tree, data_files.no_reads("none"), moe_configs.load_moe_configs(_own(tmp_path,
                                                                                                 CONFIG_NAMES[0])))
    # two files of one name: the bundle could hold only one
    _own(tmp_path, CONFIG_NAMES[0], folder="targets/other")
    with pytest.raises(StageError, match="have the same file name"):
        moe_configs.load_moe_configs(tmp_path / "own")


def test_bound_module_loads_the_target_config_by_device_name(moe_tree, tmp_path, monkeypatch):
    """Through A3 (with --moe-configs) and A5: the bound get_moe_configs returns the target's file for its device
    name, vLLM's for the others, and the same file for the H200 family as vLLM's name mapping gives."""
    d = _bind_inputs(moe_tree, _moe_graph(moe_tree), MODEL, tmp_path / "in")
    own = _own(tmp_path, CONFIG_NAMES[0], CONFIG_NAMES[1])
    collect_triton.run(moe_tree, d / "A1.graph.json", d, data_reads=d / "A3.data_reads.json", moe_configs=own)
    bind.run(inputs=d, out=tmp_path / "out")
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    mod = _load(tmp_path / "out" / "A5.module.py", "bound_own_moe")
    for dev, expected in (("NVIDIA_H100_80GB_HBM3", _as_loaded(_tuned(CONFIG_NAMES[0]))),
                          ("NVIDIA_H200_NVL", _as_loaded(_tuned(CONFIG_NAMES[1]))),
                          ("AMD_Instinct_MI300X", _as_loaded((moe_tree / CONFIGS / CONFIG_NAMES[2]).read_bytes()))):
        mod.DEVICE[0] = dev
        mod.get_moe_configs.cache_clear()
        assert mod.get_moe_configs(8, 64, None) == expected, dev
