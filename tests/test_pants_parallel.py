"""Issue 21 on CPU, through the real Pants engine: a tp=2 decoder-layer bundle of targets/parallel/BUILD builds with
strict A7 (it imports in the bundle runtime, torch + triton + ninja, with vLLM blocked; nothing undefined or
unreachable), its groups communicate through DeviceCommunicatorBase (NCCL through torch.distributed), and it says in
one line how to run it where torchrun did not start it. One target only: CI has 2 cores (targets/parallel/ is not
part of the suite that test_bundles_coexist.py builds)."""

import json
import re
import subprocess

import pytest

from pants_workspace import REPO, Workspace

pytestmark = pytest.mark.pants

TARGET = "qwen3_layer_tp2"


@pytest.fixture(scope="module")
def built(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("parallel"))
    sdists = "\n".join(block for block in (REPO / "targets/BUILD").read_text().split("\n\n") if "vllm_sdist(" in block)
    ws.write("targets/BUILD", sdists)
    blocks = (REPO / "targets/parallel/BUILD").read_text().split("\n\n")
    ws.write("targets/parallel/BUILD", next(b for b in blocks if f'name="{TARGET}"' in b))
    run = ws.pants("package", f"targets/parallel:{TARGET}")
    assert run.returncode == 0, run.stderr[-4000:]
    return ws, run


def test_tp2_bundle_passes_strict_a7(built):
    ws, run = built
    assert [p for p, _, _ in run.wrote()] == ["bundles_out/parallel/tp2/Qwen3DecoderLayer.py"]
    art = ws.root / "bundles_out/parallel/tp2/artifacts" / f"targets.parallel.{TARGET}"
    report = json.loads((art / "A7.report.json").read_text())
    assert report["status"] == "ok" and report["checks"]["import"] == "ok", report["checks"]
    assert report["checks"]["unreachable_definitions"] == "none" and report["checks"]["unused_imports"] == "none"
    graph = json.loads((art / "A1.graph.json").read_text())
    assert graph["variant"]["tp"] == 2 and graph["variant"]["communicator"] == "torch"
    assert any("bound to the inlined DeviceCommunicatorBase" in n for n in graph["notes"])
    assert {o["op"] for o in graph["python_custom_ops"]} >= {"all_reduce", "all_gather"}


def test_tp2_bundle_carries_vllms_groups_not_its_nccl_extensions(built):
    ws, _ = built
    text = (ws.root / "bundles_out/parallel/tp2/Qwen3DecoderLayer.py").read_text()
    assert re.search(r"^class GroupCoordinator:", text, re.M) and re.search(r"^class DeviceCommunicatorBase:", text, re.M)
    for absent in ("class CudaCommunicator", "class PyNcclCommunicator", "class CustomAllreduce", "import zmq",
                   "class MessageQueue"):
        assert absent not in text
    assert "tensor_parallel_size=2" in text


def test_tp2_bundle_outside_torchrun_says_how_to_run_it(built, runtime_python):
    ws, _ = built
    bundle = ws.root / "bundles_out/parallel/tp2/Qwen3DecoderLayer.py"
    code = ("import importlib.util, os, sys\nos.environ.pop('WORLD_SIZE', None)\n"
            f"spec = importlib.util.spec_from_file_location('tp2_bundle', {str(bundle)!r})\n"
            "m = sys.modules['tp2_bundle'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "try:\n    m.invocation_example(small=True)\nexcept RuntimeError as e:\n    print(e)\n")
    r = subprocess.run([str(runtime_python), "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == (
        "invocation_example: this bundle is built for tp=2 (2 GPUs, one process each) and WORLD_SIZE is not set: "
        f"run it as `torchrun --nproc-per-node 2 {bundle} run`")


def test_tp2_bundle_groups_and_loaders_on_two_cpu_processes(built, runtime_python):
    """The bundle's own GroupCoordinator and vLLM weight loaders, in two processes over gloo (no GPU needed)."""
    import socket

    ws, _ = built
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bundle = ws.root / "bundles_out/parallel/tp2/Qwen3DecoderLayer.py"
    r = subprocess.run([str(runtime_python), str(REPO / "tests/parallel_gloo_probe.py"), str(bundle), str(port)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = sorted((json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")), key=lambda x: x["rank"])
    assert [g["rank"] for g in got] == [0, 1]
    for g in got:
        assert g["communicator"] == "DeviceCommunicatorBase"
        assert g["all_reduce"] == [3.0, 3.0, 3.0] and g["all_gather"] == [[0.0, 1.0], [0.0, 1.0]]
        assert all(g["shards"].values()), g["shards"]
