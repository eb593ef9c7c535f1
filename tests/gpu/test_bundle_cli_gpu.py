"""The bundle's command line on a GPU: `run`, `bench` and `check` of each suite bundle that is built (one process
per command, as a user runs them). $VLLM_BUNDLE_GPU_RESULTS, if set, names a directory that receives
bench-<label>.json per bundle."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["RMSNorm", "SiluAndMul", "get_rope", "fused_experts", "Qwen3DecoderLayer", "LlamaDecoderLayer",
         "Qwen3MoeDecoderLayer"]
BUNDLES = [ROOT / d / f"{s}.py" for d in ("bundles_out", "bundles_out/vllm-0.33.0") for s in SUITE]


def _cli(bundle, *args):
    return subprocess.run([sys.executable, str(bundle), *args], capture_output=True, text=True, timeout=900, cwd=ROOT)


@pytest.mark.gpu
@pytest.mark.parametrize("bundle", BUNDLES, ids=[str(b.relative_to(ROOT)) for b in BUNDLES])
def test_run_bench_check(bundle):
    if not bundle.is_file():
        pytest.skip(f"{bundle.relative_to(ROOT)} is not built")
    res = _cli(bundle, "run", "--small")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["outputs"]
    args = ["bench", "--small", "--iters", "10"]
    results = os.environ.get("VLLM_BUNDLE_GPU_RESULTS")
    if results:
        Path(results).mkdir(parents=True, exist_ok=True)
        label = str(bundle.relative_to(ROOT / "bundles_out").with_suffix("")).replace("/", "_")
        args += ["--json", str(Path(results) / f"bench-{label}.json")]
    res = _cli(bundle, *args)
    assert res.returncode == 0, res.stderr[-3000:]
    bench = json.loads(res.stdout)
    assert bench["min_ms"] <= bench["median_ms"] <= bench["max_ms"] and bench["median_ms"] > 0
    assert bench["tflops"] > 0 and bench["gbps"] > 0
    res = _cli(bundle, "check")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
