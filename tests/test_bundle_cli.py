"""The bundle's own command line (`python <bundle>.py run|bench|check|info`), written by A6 after the example:
on this GPU-less machine `info` describes the bundle and run/bench/check exit non-zero with one clear line.
The bundle is the decoder-layer mock (tests/trees/stages/example/decoder_mock) with a real A6 example."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundler_lib import example as a6

TREES = Path(__file__).parent / "trees" / "stages" / "example"
MOCK = TREES / "decoder_mock"
TINY = TREES / "configs" / "tiny_qwen3_moe.json"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    a6.run(MOCK / "A1.graph.json", "tiny/qwen3-moe", TINY, "decode", d)
    path = d / "MockBundle.py"
    header = "# /// script\n# requires-python = \">=3.10\"\n# dependencies = [\"torch>=2.11\", \"triton\", \"ninja\"]\n# ///\n"
    path.write_text(header + (MOCK / "mock_bundle.py").read_text() + "\n\n" + (d / "A6.example.py").read_text())
    return path


def _cli(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle), *args], capture_output=True, text=True, timeout=300,
                          cwd=bundle.parent)


def test_info_describes_the_bundle(bundle):
    res = _cli(bundle, "info")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    graph = json.loads((MOCK / "A1.graph.json").read_text())
    assert info["symbol"] == graph["symbol"] and info["model"] == "tiny/qwen3-moe"
    assert info["workload"] == "decode" and info["template"] == "decoder_layer"
    assert info["cuda_ops"] == sorted(o["op"] for o in graph.get("cuda_ops", []))
    assert 'dependencies = ["torch>=2.11", "triton", "ninja"]' in info["declared"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message is checked where there is no GPU")
@pytest.mark.parametrize("command", [["run"], ["run", "--small", "--workload", "prefill", "--tokens", "64"],
                                     ["bench", "--iters", "3"], ["check"]])
def test_gpu_commands_refuse_cleanly_without_a_gpu(bundle, command):
    res = _cli(bundle, *command)
    assert res.returncode == 2
    ours = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("MockBundle.py")]
    # one line of ours, the last (torch itself may warn while importing, e.g. without numpy)
    assert len(ours) == 1 and res.stderr.strip().splitlines()[-1] == ours[0], res.stderr
    assert ours[0].startswith(f"MockBundle.py {command[0]}: no CUDA GPU"), res.stderr
    assert res.stdout == ""


def test_help_and_bad_arguments(bundle):
    res = _cli(bundle, "--help")
    assert res.returncode == 0 and "run,bench,check,info" in res.stdout
    res = _cli(bundle, "bench", "--workload", "sideways")
    assert res.returncode == 2 and "invalid choice: 'sideways'" in res.stderr
    res = _cli(bundle)
    assert res.returncode == 2 and "required" in res.stderr


def test_import_runs_nothing(bundle):
    code = f"import importlib.util as u; s = u.spec_from_file_location('m', {str(bundle)!r}); m = u.module_from_spec(s); " \
           "s.loader.exec_module(m); print(callable(m._bundle_main), m._BUNDLE_INFO['symbol'])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.split()[0] == "True", res.stderr


def _our_line(res, prog):
    ours = [ln for ln in res.stderr.strip().splitlines() if ln.startswith(prog)]
    assert len(ours) == 1 and res.stderr.strip().splitlines()[-1] == ours[0], res.stderr
    return ours[0]


def test_tune_moe_refuses_a_bundle_without_fused_moe(bundle):
    res = _cli(bundle, "tune-moe", "--batch-sizes", "1,64")
    assert res.returncode == 2 and res.stdout == ""
    assert _our_line(res, "MockBundle.py").startswith(
        "MockBundle.py tune-moe: this bundle has no vLLM fused MoE (Triton) path (no get_moe_configs, "), res.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message is checked where there is no GPU")
def test_tune_moe_needs_a_gpu(bundle, tmp_path):
    """A bundle with vLLM's fused-MoE lookup (its names, as the inlined code defines them) on a machine without a
    GPU: one line, exit 2, nothing written."""
    text = bundle.read_text()
    guard = text.rindex('\nif __name__ == "__main__":')
    moe = ("\n_config = None\ndef get_config():\n    return _config\ndef get_moe_configs(E, N, dtype, block_n=None, "
           "block_k=None):\n    return None\ndef get_config_file_name(E, N, dtype, block_shape=None):\n    return ''\n"
           "def try_get_optimal_moe_config(w1_shape, w2_shape, top_k, dtype, M, block_shape=None):\n    return {}\n")
    moe_bundle = tmp_path / "MoeBundle.py"
    moe_bundle.write_text(text[:guard] + moe + text[guard:])
    res = subprocess.run([sys.executable, str(moe_bundle), "tune-moe", "--budget-s", "60"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env={**os.environ, "VLLM_BUNDLE_CACHE": str(tmp_path)})
    assert res.returncode == 2 and res.stdout == ""
    assert _our_line(res, "MoeBundle.py").startswith("MoeBundle.py tune-moe: no CUDA GPU"), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MoeBundle.py"]


def test_tune_moe_options(bundle):
    res = _cli(bundle, "tune-moe", "--help")
    assert res.returncode == 0 and "--batch-sizes" in res.stdout and "--budget-s" in res.stdout
    res = _cli(bundle, "tune-moe", "--batch-sizes", "1,x")
    assert res.returncode == 2 and "--batch-sizes: invalid" in res.stderr
