"""benchmarks/attention_speed.py without a GPU: bad input fails in one line, and the calls it times (vLLM's three
Triton prefill kernels from their function bundles, as it lays out their inputs) agree with SDPA, run in Triton's
interpreter (tests/triton_interpreter.py)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.stage_steps import build_bundle
from tests.triton_interpreter import PREAMBLE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "attention_speed.py"
QWEN3_CONFIG = ROOT / "models" / "Qwen--Qwen3-30B-A3B" / "config.json"
_OPS = "vllm/v1/attention/ops"
KERNELS = {"unified": ("unified_attention", f"{_OPS}/triton_unified_attention.py"),
           "prefix-prefill": ("context_attention_fwd", f"{_OPS}/prefix_prefill.py"),
           "triton-prefill": ("context_attention_fwd", f"{_OPS}/triton_prefill_attention.py")}


def test_bad_input_fails_in_one_line(tmp_path):
    for argv, want in ((["--unified", str(tmp_path / "none.py")], "--unified"), (["--iters", "3"], "--iters 3"),
                       (["--tokens", "4k"], "--tokens '4k'"), (["--unified-launch", "64:64"], "--unified-launch '64:64'")):
        proc = subprocess.run([sys.executable, str(SCRIPT)] + argv, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and want in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture(scope="module")
def kernels(tmp_path_factory, vllm_0_26_0, runtime_python) -> dict:
    out = {}
    for flag, (symbol, hint) in KERNELS.items():
        d = tmp_path_factory.mktemp(flag)
        assert build_bundle(vllm_0_26_0, d, symbol, "Qwen/Qwen3-30B-A3B", QWEN3_CONFIG, runtime_python,
                            hint=hint)["status"] == "ok"
        out[flag] = d / f"{symbol}.py"
    return out


_RUN = PREAMBLE + textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import attention_speed as s
    s.DEVICE = "cpu"
    a = s._args(json.loads(sys.argv[2]))
    fns = {n: s._load(p, sym) for n, (p, sym) in {"unified_attention": (a.unified, "unified_attention"),
           "prefix_prefill": (a.prefix_prefill, "context_attention_fwd"),
           "triton_prefill": (a.triton_prefill, "context_attention_fwd")}.items()}
    calls, ref = s._calls(a, fns, a.tokens[0])
    for n, (fn, out) in calls.items():
        fn()
        if out is not None:
            print(json.dumps({"kernel": n, "max_abs_diff": (out.float() - ref.float()).abs().max().item()}))
''')


def test_the_timed_calls_match_sdpa_in_the_interpreter(kernels):
    """One sequence of 40 tokens (not a whole number of KV blocks), 4 query heads over 2 KV heads, float16; the unified
    kernel also with a prefill launch of BLOCK_M 32 (16 tokens per program: 40 is not a whole number of them either)
    and KV tiles of 16."""
    argv = ["--tokens", "40", "--heads", "4", "--kv-heads", "2", "--dtype", "float16", "--unified-launch", "32:16:4:1"] + [
        x for flag, path in kernels.items() for x in (f"--{flag}", str(path))]
    proc = subprocess.run([sys.executable, "-c", _RUN, str(ROOT / "benchmarks"), json.dumps(argv)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["kernel"] for r in rows) == ["prefix_prefill", "triton_prefill", "unified_attention",
                                                 "unified_attention[32:16:4:1]"]
    assert all(r["max_abs_diff"] < 1e-2 for r in rows), rows
