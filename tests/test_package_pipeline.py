"""A0 to A7 on the real vLLM 0.26.0 tree for small symbols: the packaged bundle imports without vLLM, and its
invocation_example(small=True) runs (on CPU here; on a GPU where there is one)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bundler_lib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def _pipeline(tree: Path, out: Path, symbol: str, hint: str | None, model: str) -> dict:
    cfg = MODELS / model.replace("/", "--") / "config.json"
    graph = str(out / "A1.graph.json")
    steps = [
        ["license", "--tree", str(tree)],
        ["graph", "--tree", str(tree), "--symbol", symbol] + (["--hint", hint] if hint else []),
        ["collect-python", "--tree", str(tree), "--graph", graph],
        ["collect-triton", "--tree", str(tree), "--graph", graph],
        ["collect-cuda", "--tree", str(tree), "--graph", graph],
        ["bind", "--inputs", str(out)],
        ["example", "--graph", graph, "--model", model, "--model-config", str(cfg)],
        ["package", "--inputs", str(out), "--bundle-name", f"{symbol}.py"],
    ]
    for argv in steps:
        assert main(argv + ["--out", str(out)]) == 0, argv[0]
    return json.loads((out / "A7.report.json").read_text())


@pytest.mark.parametrize("symbol,hint,model", [
    ("RMSNorm", "vllm/model_executor/layers/layernorm.py", "Qwen/Qwen3-Coder-480B-A35B-Instruct"),
    ("SiluAndMul", "vllm/model_executor/layers/activation.py", "Qwen/Qwen3-30B-A3B"),
])
def test_bundle_and_example(vllm_0_26_0, tmp_path, symbol, hint, model):
    rep = _pipeline(vllm_0_26_0, tmp_path, symbol, hint, model)
    assert rep["status"] == "ok", rep
    assert rep["checks"]["import"] == "ok" and rep["checks"]["syntax"] == "ok"
    bundle = tmp_path / f"{symbol}.py"
    assert bundle.read_text().startswith("# This file contains code from a source tree licensed under the Apache")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location({symbol!r}, {str(bundle)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)\n"
        "r = m.invocation_example(small=True)\n"
        "print('SIZES', r['sizes'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    if proc.returncode != 0 and "need an NVIDIA GPU" in proc.stderr:
        pytest.skip(f"{symbol}'s CUDA ops need a GPU to run its example")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SIZES" in proc.stdout
