"""The KernelBench problems of the suite's decoder layers (`bundles_out/<symbol>.kernelbench.py`, built with
`kernelbench=True`) on a GPU, loaded and run as KernelBench's eval runs a reference (src/kernelbench/eval.py:
`exec` of the text, `Model(*get_init_inputs())` under no_grad, model and inputs moved to the GPU at
`precision`, `model(*inputs)`), one process per problem. Skipped without a CUDA GPU or a built problem.
$VLLM_BUNDLE_GPU_RESULTS, if set, names a directory that receives kernelbench-<symbol>.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ["Qwen3DecoderLayer", "LlamaDecoderLayer", "Qwen3MoeDecoderLayer"]
PROBLEMS = [ROOT / d / f"{s}.kernelbench.py" for d in ("bundles_out", "bundles_out/vllm-0.33.0") for s in SUITE]

EVAL = r"""
import json, sys, time
import torch

src = open(sys.argv[1], encoding="utf-8").read()
context = {}
exec(compile(src, "<string>", "exec"), context)
Model, get_init_inputs, get_inputs = context["Model"], context["get_init_inputs"], context["get_inputs"]
device = torch.device("cuda", torch.cuda.current_device())
torch.manual_seed(42)
init = [x.to(device) if isinstance(x, torch.Tensor) else x for x in get_init_inputs()]
t0 = time.perf_counter()
with torch.no_grad():
    model = Model(*init)
precision = model._dtype
model = model.to(device=device, dtype=precision)
build_s = time.perf_counter() - t0
torch.manual_seed(42)
inputs = [x.to(dtype=precision).to(device) for x in get_inputs()]
with torch.no_grad():
    a = model(*inputs)
    b = model(*inputs)
torch.cuda.synchronize()
times = []
with torch.no_grad():
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); model(*inputs); e.record(); torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
print(json.dumps({"init": init, "input_shapes": [list(x.shape) for x in inputs], "out_shape": list(a.shape),
                  "dtype": str(a.dtype), "finite": bool(torch.isfinite(a).all()), "repeatable": bool(torch.equal(a, b)),
                  "allclose_1e-2": bool(torch.allclose(a, b, atol=1e-2, rtol=1e-2)), "build_s": round(build_s, 2),
                  "median_ms": round(sorted(times)[len(times) // 2], 4), "gpu": torch.cuda.get_device_name()}))
"""


@pytest.mark.gpu
@pytest.mark.parametrize("problem", PROBLEMS, ids=[str(p.relative_to(ROOT)) for p in PROBLEMS])
def test_problem_runs_as_kernelbench_runs_a_reference(problem):
    if not problem.is_file():
        pytest.skip(f"{problem.relative_to(ROOT)} is not built (a target with kernelbench=True)")
    res = subprocess.run([sys.executable, "-c", EVAL, str(problem)], capture_output=True, text=True, timeout=900,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr[-4000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    results = os.environ.get("VLLM_BUNDLE_GPU_RESULTS")
    if results:
        Path(results).mkdir(parents=True, exist_ok=True)
        label = str(problem.relative_to(ROOT / "bundles_out")).replace("/", "_").replace(".kernelbench.py", "")
        (Path(results) / f"kernelbench-{label}.json").write_text(json.dumps(got, indent=2))
    workload, batch, tokens, context = got["init"]
    assert got["input_shapes"] == [[batch * tokens, got["input_shapes"][0][1]]]
    assert got["out_shape"] == got["input_shapes"][0]
    assert got["finite"] and got["repeatable"] and got["allclose_1e-2"], got
    assert got["median_ms"] > 0
