"""On a GPU: `bench --cuda-graph` of the suite's decoder-layer bundles (the graph replays the same work as the eager
forward), and benchmarks/layer_speed.py at one small size per layer (its rows complete, with both sides timed).
Bundles not built are skipped. Written without a GPU at hand: the first run on one is the test of these tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["Qwen3MoeDecoderLayer", "Qwen3DecoderLayer", "LlamaDecoderLayer"]
BUNDLES = [ROOT / "bundles_out" / f"{s}.py" for s in SUITE]


def _built(bundle: Path) -> None:
    if not bundle.is_file():
        pytest.skip(f"{bundle.relative_to(ROOT)} is not built (./pants --tag=-zoo package targets::)")


@pytest.mark.gpu
@pytest.mark.parametrize("bundle", BUNDLES, ids=SUITE)
def test_bench_cuda_graph_decode(bundle):
    _built(bundle)
    proc = subprocess.run([sys.executable, str(bundle), "bench", "--cuda-graph", "--workload", "decode", "--batch",
                           "8", "--context", "4096", "--iters", "20"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(proc.stdout)
    graphed = res["cuda_graph"]
    assert 0 < graphed["median_ms"] and graphed["gbps"] > 0
    assert graphed["max_abs_diff_vs_eager"] <= 1e-2, graphed
    assert res["cuda_graph_speedup"] > 0.9, res  # a replay does no more than the eager forward


@pytest.mark.gpu
@pytest.mark.parametrize("bundle", BUNDLES, ids=SUITE)
def test_layer_speed_one_layer(bundle, tmp_path):
    pytest.importorskip("transformers")
    _built(bundle)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layer_speed.py"), "--only", bundle.stem,
                           "--sizes", "prefill:512,decode:8x4096", "--out-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("*-layer-speed-1.json")
    (layer,) = json.loads(path.read_text())["layers"]
    assert [r["case"] for r in layer["rows"]] == ["prefill:512", "decode:8x4096"]
    for row in layer["rows"]:
        assert row["status"] == "ok" and row["ratio"] > 0, row
        assert row["bundle"]["iters"] == 20 and row["transformers"]["frac_peak_bw"] > 0
    assert "ratio_cuda_graph" in layer["rows"][1], layer["rows"][1]
