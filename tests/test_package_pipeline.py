"""A0 to A7 on the real vLLM 0.26.0 tree: the packaged bundle passes strict A7 in the bundle runtime (torch,
triton, ninja only: no packaging) without vLLM, and its invocation_example(small=True) runs there (on CPU here;
on a GPU where there is one). LlamaDecoderLayer and Qwen3DecoderLayer are issue 15 case 1: they failed with
NameError 'Version' where packaging is not installed."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stage_steps import build_bundle

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.mark.parametrize("symbol,hint,model", [
    ("RMSNorm", "vllm/model_executor/layers/layernorm.py", "Qwen/Qwen3-Coder-480B-A35B-Instruct"),
    ("SiluAndMul", "vllm/model_executor/layers/activation.py", "Qwen/Qwen3-30B-A3B"),
    ("LlamaDecoderLayer", "vllm/model_executor/models/llama.py", "Qwen/Qwen3-30B-A3B"),
    ("Qwen3DecoderLayer", None, "Qwen/Qwen3-30B-A3B"),
])
def test_bundle_and_example(vllm_0_26_0, tmp_path, symbol, hint, model, runtime_python):
    cfg = MODELS / model.replace("/", "--") / "config.json"
    rep = build_bundle(vllm_0_26_0, tmp_path, symbol, model, cfg, runtime_python, hint=hint)
    assert rep["status"] == "ok", rep
    assert rep["checks"]["import"] == "ok" and rep["checks"]["syntax"] == "ok"
    assert rep["dependencies"]["runtime"]["interpreter"] == "bundle runtime"
    assert rep["dependencies"]["declared"] == ["torch>=2.11", "triton", "ninja"]
    bundle = tmp_path / f"{symbol}.py"
    assert bundle.read_text().startswith("# This file contains code from a source tree licensed under the Apache")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({symbol!r}, {str(bundle)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)\n"
        "assert 'packaging' not in sys.modules\n"
        "r = m.invocation_example(small=True)\n"
        "print('SIZES', r['sizes'])\n"
    )
    proc = subprocess.run([str(runtime_python), "-I", "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    if proc.returncode != 0 and ("need an NVIDIA GPU" in proc.stderr or "runs on a CUDA GPU" in proc.stderr):
        pytest.skip(f"{symbol}'s CUDA ops need a GPU to run its example")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SIZES" in proc.stdout
