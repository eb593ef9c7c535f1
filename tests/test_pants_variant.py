"""Issue 15 case 5 through the real Pants engine: `variant` takes integers (and strings of digits) for
cuda_capability and tp/pp/ep; an sm_80 RMSNorm bundle builds and A4 compiles its CUDA ops for sm_80; what is
not offered is refused in one line before any stage runs."""

import json

import pytest

from pants_workspace import REPO, Workspace

pytestmark = pytest.mark.pants

BUILD = """
monolithic_bundle(name="rms_norm_sm80", symbol="RMSNorm", symbol_file_hint="vllm/model_executor/layers/layernorm.py",
                  vllm=":vllm_0_26_0", variant={"cuda_capability": 80}, output_path="sm80/RMSNorm.py")
monolithic_bundle(name="rms_norm_sm100", symbol="RMSNorm", symbol_file_hint="vllm/model_executor/layers/layernorm.py",
                  vllm=":vllm_0_26_0", variant={"cuda_capability": "100"}, output_path="sm100/RMSNorm.py")
monolithic_bundle(name="ep4", symbol="RMSNorm", vllm=":vllm_0_26_0", variant={"tp": 2, "ep": 4}, output_path="ep4/R.py")
monolithic_bundle(name="sm81", symbol="RMSNorm", vllm=":vllm_0_26_0", variant={"cuda_capability": "81"},
                  output_path="sm81/R.py")
monolithic_bundle(name="flexknob", symbol="RMSNorm", vllm=":vllm_0_26_0", variant={"flex_attn_block_m": 64},
                  output_path="flexknob/R.py")
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("variant"))
    sdists = "\n".join(block for block in (REPO / "targets/BUILD").read_text().split("\n\n") if "vllm_sdist(" in block)
    ws.write("targets/BUILD", sdists + "\n" + BUILD)
    return ws


@pytest.fixture(scope="module")
def built(ws):
    run = ws.pants("package", "targets:rms_norm_sm80", "targets:rms_norm_sm100")
    assert run.returncode == 0, run.stderr[-4000:]
    return ws, run


@pytest.mark.parametrize("name, arch", [("rms_norm_sm80", "80"), ("rms_norm_sm100", "100")])
def test_capability_decides_the_cuda_flags(built, name, arch):
    ws, run = built
    art = ws.root / "bundles_out" / f"sm{arch}" / "artifacts" / f"targets.{name}"
    graph = json.loads((art / "A1.graph.json").read_text())
    assert graph["variant"]["cuda_capability"] == int(arch)
    flags = json.loads((art / "A4.manifest.json").read_text())["flags"]
    assert flags["gencode"] == [f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    assert flags["arch"] == arch
    bundle = (ws.root / "bundles_out" / f"sm{arch}" / "RMSNorm.py").read_text()
    assert f"_CUDA_ARCH = {arch!r}" in bundle
    assert f"_CUDA_GENCODE = ('-gencode=arch=compute_{arch},code=sm_{arch}',)" in bundle
    assert json.loads((art / "A7.report.json").read_text())["status"] == "ok"


@pytest.mark.parametrize("target, needles", [
    ("ep4", ["targets:ep4", "`variant` ep=4", "expert-parallel group is 1 or tp=2", "allowed values for ep"]),
    ("sm81", ["targets:sm81", "`variant` cuda_capability=81", "80, 86, 89, 90, 100"]),
    ("flexknob", ["targets:flexknob", "`variant` flex_attn_block_m=64", "only with attention_backend FLEX_ATTENTION"]),
])
def test_what_is_not_offered_is_refused_in_one_line(ws, target, needles):
    run = ws.pants("package", f"targets:{target}")
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if all(n in line for n in needles) and "Remedy" in line]
    assert len(lines) == 1, run.stderr[-3000:]
    assert run.executed_stages == [] and run.wrote() == []
    assert not (ws.root / "bundles_out" / target).exists()
