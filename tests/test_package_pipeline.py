"""A0 to A7 on the real vLLM 0.26.0 tree: the packaged bundle passes strict A7 in the bundle runtime (torch,
triton, ninja only: no packaging) without vLLM, and its invocation_example(small=True) runs there (on CPU here;
on a GPU where there is one). LlamaDecoderLayer and Qwen3DecoderLayer are issue 15 case 1: they failed with
NameError 'Version' where packaging is not installed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bundler_lib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def _pipeline(tree: Path, out: Path, symbol: str, hint: str | None, model: str, runtime: Path) -> dict:
    cfg = MODELS / model.replace("/", "--") / "config.json"
    graph = str(out / "A1.graph.json")
    steps = [
        ["license", "--tree", str(tree)],
        ["graph", "--tree", str(tree), "--symbol", symbol] + (["--hint", hint] if hint else []),
        ["collect-python", "--tree", str(tree), "--graph", graph],
        ["collect-triton", "--tree", str(tree), "--graph", graph],
        ["collect-cuda", "--tree", str(tree), "--graph", graph],
        ["bind", "--inputs", str(out)],
        ["example", "--graph", graph, "--model", model, "--model-config", str(cfg), "--tree", str(tree)],
        ["package", "--inputs", str(out), "--bundle-name", f"{symbol}.py", "--runtime-python", str(runtime)],
    ]
    for argv in steps:
        assert main(argv + ["--out", str(out)]) == 0, argv[0]
    return json.loads((out / "A7.report.json").read_text())


@pytest.mark.parametrize("symbol,hint,model", [
    ("RMSNorm", "vllm/model_executor/layers/layernorm.py", "Qwen/Qwen3-Coder-480B-A35B-Instruct"),
    ("SiluAndMul", "vllm/model_executor/layers/activation.py", "Qwen/Qwen3-30B-A3B"),
    ("LlamaDecoderLayer", "vllm/model_executor/models/llama.py", "Qwen/Qwen3-30B-A3B"),
    ("Qwen3DecoderLayer", None, "Qwen/Qwen3-30B-A3B"),
])
def test_bundle_and_example(vllm_0_26_0, tmp_path, symbol, hint, model, runtime_python):
    rep = _pipeline(vllm_0_26_0, tmp_path, symbol, hint, model, runtime_python)
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
