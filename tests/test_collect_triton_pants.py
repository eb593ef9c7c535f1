"""A3's data part through the real Pants engine, over a local copy of the 0.26.0 tree: the data scan and the
collection are cached processes whose inputs are exactly the files they read. An edit to a config JSON the
target cannot select re-runs nothing; an edit to one it embeds re-runs the collection and what follows.
A target's own tuned configs (`moe_configs`) are embedded beside vLLM's, loaded by the built bundle's
get_moe_configs for their device name, rebuild only that target when edited, and are refused in one line when
they are not vLLM MoE configs of the target's shape."""

import hashlib
import json
import subprocess
import sys
import uuid

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants

CONFIGS = "vllm/model_executor/layers/fused_moe/configs"
BUILD = """
vllm_source_tree(name="vllm_local", root="third_party/vllm")
monolithic_bundle(name="fused_experts", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  stub_ops=["_C.scaled_fp4_quant"])
monolithic_bundle(name="tuned", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  stub_ops=["_C.scaled_fp4_quant"], output_path="tuned/fused_experts.py",
                  moe_configs=["data/moe-configs/E=128,N=768,device_name=*.json"])
monolithic_bundle(name="bad_name", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  output_path="bad/name.py", moe_configs=["data/bad/tuned.json"])
monolithic_bundle(name="bad_json", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  output_path="bad/json.py", moe_configs=["data/bad/E=128,N=768,device_name=NVIDIA_A10.json"])
monolithic_bundle(name="missing", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  output_path="bad/missing.py", moe_configs=["data/moe-configs/E=1,N=2,device_name=X.json"])
monolithic_bundle(name="other_shape", symbol="fused_experts", model="Qwen/Qwen3-30B-A3B", vllm=":vllm_local",
                  stub_ops=["_C.scaled_fp4_quant"], output_path="bad/shape.py",
                  moe_configs=["data/shape/E=160,N=2560,device_name=NVIDIA_H100_80GB_HBM3.json"])
"""
OWN = "targets/data/moe-configs"
H100 = "E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json"   # vLLM 0.26.0 has none: the target's own
H200 = "E=128,N=768,device_name=NVIDIA_H200.json"             # vLLM's own, replaced by the target's


def _tuned(tag: int) -> str:
    """A config as tune-moe writes it; GROUP_SIZE_M at M=4096 tells the versions apart."""
    cfg = {"BLOCK_SIZE_M": 64, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 64, "num_warps": 4, "num_stages": 3}
    return json.dumps({"triton_version": "3.6.0", "1": dict(cfg, BLOCK_SIZE_M=16, GROUP_SIZE_M=1),
                       "4096": dict(cfg, GROUP_SIZE_M=tag)}, indent=4) + "\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("data_files"))
    ws.add_tree("third_party/vllm", vllm_0_26_0)
    ws.write("targets/BUILD", BUILD)
    ws.write(f"{OWN}/{H100}", _tuned(11))
    ws.write(f"{OWN}/{H200}", _tuned(12))
    ws.write("targets/data/bad/tuned.json", _tuned(13))
    ws.write("targets/data/bad/E=128,N=768,device_name=NVIDIA_A10.json", '{"1": {"BLOCK_SIZE_M": 16,}}')
    ws.write("targets/data/shape/E=160,N=2560,device_name=NVIDIA_H100_80GB_HBM3.json", _tuned(14))
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


# ----------------------------------------------------------------------------- the target's own tuned configs

LOOKUP = """
import json, sys, importlib.util, torch
spec = importlib.util.spec_from_file_location("bundle", sys.argv[1])
b = importlib.util.module_from_spec(spec); sys.modules["bundle"] = b; spec.loader.exec_module(b)
out = {}
for name in sys.argv[2:]:  # the name torch reports for the GPU, as vLLM's platform reads it
    torch.cuda.get_device_name = lambda device_id=0, name=name: name
    b.get_device_name_as_file_name.cache_clear(); b.get_moe_configs.cache_clear()
    out[name] = b.get_moe_configs(128, 768, None)
print(json.dumps(out))
"""


def _loaded(text: str) -> dict:
    """What vLLM's get_moe_configs returns for a file (as JSON: integer keys as strings)."""
    return {k: v for k, v in json.loads(text).items() if k != "triton_version"}


@pytest.fixture(scope="module")
def tuned(built):
    run = built.pants("package", "targets:tuned")
    assert run.returncode == 0, run.stderr[-4000:]
    return built


def test_target_configs_are_embedded_with_provenance(tuned):
    m = json.loads((tuned.root / "bundles_out/tuned/artifacts/targets.tuned/A3.data.json").read_text())
    files = {f["path"].rsplit("/", 1)[1]: f for f in m["data"][0]["files"]}
    assert sorted(files) == sorted(["E=128,N=768,device_name=AMD_Instinct_MI308X.json", H100,
                                    "E=128,N=768,device_name=NVIDIA_B200.json", "E=128,N=768,device_name=NVIDIA_H20.json",
                                    H200])
    vllm_h200 = hashlib.sha256((tuned.root / "third_party/vllm" / CONFIGS / H200).read_bytes()).hexdigest()
    assert files[H100]["from"] == f"{OWN}/{H100}" and "replaces" not in files[H100]
    assert files[H200]["from"] == f"{OWN}/{H200}" and files[H200]["replaces"] == vllm_h200
    assert files[H100]["sha256"] == hashlib.sha256(_tuned(11).encode()).hexdigest()
    bundle = (tuned.root / "bundles_out/tuned/fused_experts.py").read_text()
    assert f"(the target's moe_configs: {OWN}/{H100}) sha256={files[H100]['sha256']}" in bundle


def test_bundle_get_moe_configs_loads_the_target_config_for_its_device(tuned, tmp_path):
    """The built bundle on CPU, the GPU's name monkeypatched where vLLM's platform reads it: the H100 gets the
    target's file, the H200 family the target's replacement of vLLM's, the B200 vLLM's own, an A10 none."""
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA H200 NVL", "NVIDIA B200", "NVIDIA A10"]
    r = subprocess.run([sys.executable, "-c", LOOKUP, str(tuned.root / "bundles_out/tuned/fused_experts.py"), *names],
                       capture_output=True, text=True, env={"VLLM_BUNDLE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    b200 = (tuned.root / "third_party/vllm" / CONFIGS / "E=128,N=768,device_name=NVIDIA_B200.json").read_text()
    assert got == {"NVIDIA H100 80GB HBM3": _loaded(_tuned(11)), "NVIDIA H200 NVL": _loaded(_tuned(12)),
                   "NVIDIA B200": _loaded(b200), "NVIDIA A10": None}


def test_edit_to_a_target_config_rebuilds_only_that_target(tuned):
    tuned.write(f"{OWN}/{H100}", _tuned(21))
    run = tuned.pants("package", "targets:fused_experts", "targets:tuned")
    assert run.returncode == 0, run.stderr[-4000:]
    # the target's collection (its scan's inputs did not change), then A5 and A7; fused_experts: nothing
    assert run.executed_stages == ["A3", "A5", "A7"] and run.executed == 3, run.stderr[-4000:]
    assert '"GROUP_SIZE_M": 21' in (tuned.root / "bundles_out/tuned/fused_experts.py").read_text()


def _refused(run, *needles):
    assert run.returncode != 0 and run.wrote() == [], run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = [ln for ln in run.stderr.splitlines() if all(n in ln for n in needles) and "Remedy" in ln]
    assert len(lines) == 1, run.stderr[-3000:]


@pytest.mark.parametrize("target, needles", [
    ("bad_name", ["targets:bad_name", "`moe_configs` targets/data/bad/tuned.json",
                  "is not named as vLLM names a fused-MoE config"]),
    ("bad_json", ["targets:bad_json", "targets/data/bad/E=128,N=768,device_name=NVIDIA_A10.json", "is not valid JSON"]),
    ("missing", ["targets:missing", "`moe_configs` 'data/moe-configs/E=1,N=2,device_name=X.json' matches no file"]),
])
def test_bad_target_config_is_refused_before_any_stage(tuned, target, needles):
    run = tuned.pants("package", f"targets:{target}")
    _refused(run, *needles)
    assert run.executed_stages == [], run.stderr[-3000:]


def test_target_config_of_another_shape_is_refused_by_a3(tuned):
    run = tuned.pants("package", "targets:other_shape")
    _refused(run, "A3", "targets/data/shape/E=160,N=2560,device_name=NVIDIA_H100_80GB_HBM3.json",
             "is not a config this target looks up", "E=128,N=768")
