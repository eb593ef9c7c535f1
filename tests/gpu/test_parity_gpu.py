"""tools/parity.py on the suite's decoder-layer bundles (GPU only): each bundle against transformers' layer with
the same weights, prefill without context and decode over a cached context, with a broken control that must
fail. One process per bundle. $VLLM_BUNDLE_GPU_RESULTS, if set, names a directory that receives
parity-<label>.json per bundle."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["Qwen3MoeDecoderLayer", "Qwen3DecoderLayer", "LlamaDecoderLayer"]
BUNDLES = [ROOT / d / f"{s}.py" for d in ("bundles_out", "bundles_out/vllm-0.33.0") for s in SUITE]
CASES = ["prefill:32", "prefill:512", "decode:2x64"]


@pytest.mark.gpu
@pytest.mark.parametrize("bundle", BUNDLES, ids=[str(b.relative_to(ROOT)) for b in BUNDLES])
def test_suite_layer_matches_transformers(bundle):
    pytest.importorskip("transformers")
    if not bundle.is_file():
        pytest.skip(f"{bundle.relative_to(ROOT)} is not built (./pants package targets:: targets/vllm_0_33_0::)")
    results = os.environ.get("VLLM_BUNDLE_GPU_RESULTS")
    args = [sys.executable, str(ROOT / "tools" / "parity.py"), str(bundle)]
    for c in CASES:
        args += ["--case", c]
    if results:
        label = str(bundle.relative_to(ROOT / "bundles_out").with_suffix("")).replace("/", "_")
        Path(results).mkdir(parents=True, exist_ok=True)
        args += ["--json", str(Path(results) / f"parity-{label}.json")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
