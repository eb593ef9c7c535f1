"""A3's data part through the real Pants engine, over a local copy of the 0.26.0 tree: the data scan and the
collection are cached processes whose inputs are exactly the files they read. An edit to a config JSON the
target cannot select re-runs nothing; an edit to one it embeds re-runs the collection and what follows."""

import json
import uuid

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants

CONFIGS = "vllm/model_executor/layers/fused_moe/configs"
BUILD = """
vllm_source_tree(name="vllm_local", root="third_party/vllm")
monolithic_bundle(name="fused_experts", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  stub_ops=["_C.scaled_fp4_quant"])
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("data_files"))
    ws.add_tree("third_party/vllm", vllm_0_26_0)
    ws.write("targets/BUILD", BUILD)
    first = ws.pants("package", "targets:fused_experts")
    assert first.returncode == 0, first.stderr[-4000:]
    return ws


def _artifact(ws, name):
    return ws.root / "bundles_out/artifacts/targets.fused_experts" / name


def _edit(ws, rel):
    path = ws.root / "third_party/vllm" / rel
    data = json.loads(path.read_text())
    data["edited"] = uuid.uuid4().hex   # still valid JSON, new bytes
    path.write_text(json.dumps(data, indent=4) + "\n")


def test_embeds_the_model_configs_with_provenance(built):
    m = json.loads(_artifact(built, "A3.data.json").read_text())
    [d] = m["data"]
    assert d["root"] == CONFIGS and d["readers"] == ["vllm/model_executor/layers/fused_moe/fused_moe.py::get_moe_configs"]
    assert [f["path"].rsplit("/", 1)[1] for f in d["files"]] == [
        "E=128,N=768,device_name=AMD_Instinct_MI308X.json", "E=128,N=768,device_name=NVIDIA_B200.json",
        "E=128,N=768,device_name=NVIDIA_H20.json", "E=128,N=768,device_name=NVIDIA_H200.json"]
    assert _artifact(built, "A3.data_reads.json").exists()
    bundle = (built.root / "bundles_out/fused_experts.py").read_text()
    assert "_bundle_data_dir('vllm/model_executor/layers/fused_moe'), \"configs\", json_file_name" in bundle
    assert "os.path.dirname(os.path.realpath(__file__))" not in bundle
    for f in d["files"]:
        assert f"sha256={f['sha256']}" in bundle
    bm = json.loads(_artifact(built, "A5.bindmap.json").read_text())
    assert {"from": "os.path.dirname(os.path.realpath(__file__))",
            "to": "_bundle_data_dir('vllm/model_executor/layers/fused_moe')", "count": 1} in bm["rewrites"]


def test_edit_to_a_config_it_cannot_select_reruns_nothing(built):
    # another model's shape, and this shape's fp8 variant: neither is among the collection's inputs
    _edit(built, f"{CONFIGS}/E=160,N=192,device_name=NVIDIA_H20-3e.json")
    _edit(built, f"{CONFIGS}/E=128,N=768,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json")
    run = built.pants("package", "targets:fused_experts")
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.executed_stages == [] and run.executed == 0, run.stderr[-4000:]


def test_edit_to_an_embedded_config_reruns_the_collection(built):
    rel = f"{CONFIGS}/E=128,N=768,device_name=NVIDIA_H200.json"
    _edit(built, rel)
    run = built.pants("package", "targets:fused_experts")
    assert run.returncode == 0, run.stderr[-4000:]
    # the collection (not the scan, whose inputs did not change), then A5 and A7
    assert run.executed_stages == ["A3", "A5", "A7"], run.stderr[-4000:]
    assert run.executed == 3
    m = json.loads(_artifact(built, "A3.data.json").read_text())
    import hashlib
    sha = hashlib.sha256((built.root / "third_party/vllm" / rel).read_bytes()).hexdigest()
    assert {"path": rel, "sha256": sha} in [{k: f[k] for k in ("path", "sha256")} for f in m["data"][0]["files"]]
    assert "\"edited\"" in (built.root / "bundles_out/fused_experts.py").read_text()
