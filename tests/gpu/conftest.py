"""GPU tests of the generated CUDA section: build it with torch.utils.cpp_extension.load, compare each op with a float32
torch reference. Skipped without a CUDA GPU.

Where the A4 artifacts come from: $VLLM_BUNDLE_GPU_A4 = "label=DIR[,label=DIR...]" (each DIR holds
A4.cuda.py and A4.manifest.json, made beforehand with `python -m bundler_lib collect-cuda`), else they
are generated here from the cached vLLM 0.26.0 tree. $VLLM_BUNDLE_GPU_RESULTS, if set, names a JSON
file that receives build times and the measured errors."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS: dict = {"builds": {}, "checks": []}

TARGET_OPS = ["_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul", "_C.gelu_and_mul", "_C.gelu_tanh_and_mul",
              "_C.gelu_new", "_C.gelu_fast", "_C.gelu_quick", "_C.rotary_embedding", "_moe_C.topk_softmax",
              "_moe_C.moe_align_block_size", "_moe_C.moe_sum", "_C.silu_and_mul_with_clamp", "_C.swigluoai_and_mul",
              "_C.weak_ref_tensor", "_moe_C.topk_sigmoid", "_moe_C.grouped_topk", "_moe_C.topk_softplus_sqrt"]


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")


def _cuda_ok():
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_ok():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU: torch.cuda.is_available() is False")
    for it in items:
        if "gpu" in it.keywords:
            it.add_marker(skip)


def _a4_dirs() -> dict[str, Path]:
    env = os.environ.get("VLLM_BUNDLE_GPU_A4")
    if env:
        out = {}
        for part in env.split(","):
            label, _, d = part.partition("=")
            out[label] = Path(d)
        return out
    # generate from the cached 0.26.0 tree
    sys.path.insert(0, str(ROOT))
    from tests.conftest import vllm_tree
    from bundler_lib import collect_cuda
    d = Path(tempfile.mkdtemp(prefix="a4_gpu_"))
    g = {"status": "ok", "symbol": "X", "cuda_ops": [{"op": o} for o in TARGET_OPS]}
    (d / "A1.graph.json").write_text(json.dumps(g))
    collect_cuda.run(tree=vllm_tree("0.26.0"), graph=d / "A1.graph.json", out=d)
    return {"0.26.0": d}


LOADER = textwrap.dedent('''
    import json, sys, time, types
    d = sys.argv[1]
    m = json.load(open(d + "/A4.manifest.json"))
    mod = types.ModuleType("a4_section")
    src = "\\n".join(m["imports"]) + "\\n" + open(d + "/A4.cuda.py").read()
    t0 = time.perf_counter()
    exec(compile(src, "A4.cuda.py", "exec"), mod.__dict__)
    t1 = time.perf_counter()
    so = mod._build_cuda_extension_if_needed()
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "so": so}))
''')


def load_section(d: Path):
    m = json.loads((d / "A4.manifest.json").read_text())
    mod = types.ModuleType(f"a4_section_{m['namespace']}")
    exec(compile("\n".join(m["imports"]) + "\n" + (d / "A4.cuda.py").read_text(), str(d / "A4.cuda.py"), "exec"),
         mod.__dict__)
    return mod, m


@pytest.fixture(scope="session")
def builds(tmp_path_factory):
    """Cold-build every section at once (one fresh process each, empty caches: they run in parallel),
    then load each again from a second fresh process (the warm path)."""
    if not _cuda_ok():
        pytest.skip("no CUDA GPU")
    dirs = _a4_dirs()
    procs, caches = {}, {}
    for label, d in sorted(dirs.items()):
        caches[label] = tmp_path_factory.mktemp(f"bundle_cache_{label}")
        env = dict(os.environ, VLLM_BUNDLE_CACHE=str(caches[label]), PYTHONUNBUFFERED="1")
        procs[label] = subprocess.Popen([sys.executable, "-c", LOADER, str(d)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
    out = {}
    for label, p in procs.items():
        so, se = p.communicate()
        out[label] = {"rc": p.returncode, "log": (so[-3000:] + se[-12000:])}
        if p.returncode == 0:
            out[label]["cold"] = json.loads(so.strip().splitlines()[-1])
            env = dict(os.environ, VLLM_BUNDLE_CACHE=str(caches[label]), PYTHONUNBUFFERED="1")
            r = subprocess.run([sys.executable, "-c", LOADER, str(dirs[label])], capture_output=True, text=True,
                               env=env)
            out[label]["warm_rc"] = r.returncode
            if r.returncode == 0:
                out[label]["warm"] = json.loads(r.stdout.strip().splitlines()[-1])
            else:
                out[label]["log"] += r.stderr[-8000:]
        out[label]["cache"] = caches[label]
        out[label]["dir"] = dirs[label]
    return out


def _a4_labels() -> list[str]:
    """The sections' labels, known without generating anything (collecting the GPU tests builds nothing)."""
    env = os.environ.get("VLLM_BUNDLE_GPU_A4")
    return sorted(part.partition("=")[0] for part in env.split(",")) if env else ["0.26.0"]


@pytest.fixture(scope="session", params=_a4_labels() if _cuda_ok() else ["none"])
def section(request, builds):
    label = request.param
    b = builds[label]
    if b["rc"] != 0 or b.get("warm_rc") != 0:
        RESULTS["builds"][label] = {"failed": True, "log": b["log"][-6000:]}
        pytest.fail(f"building section {label} failed:\n{b['log'][-6000:]}")
    os.environ["VLLM_BUNDLE_CACHE"] = str(b["cache"])
    mod, manifest = load_section(b["dir"])
    t0 = time.perf_counter()
    mod._build_cuda_extension_if_needed()
    in_proc = time.perf_counter() - t0
    cold, warm = b["cold"], b["warm"]
    RESULTS["builds"][label] = {"namespaces": sorted(t["namespace"] for t in manifest["translation_units"]),
                                "ops": [o["op"] for o in manifest["ops"]],
                                "cuda_files": len(manifest["cuda_files"]),
                                "cuda_lines": sum(f["lines"] for f in manifest["cuda_files"]),
                                "cold_build_s": round(cold["build_s"], 2), "warm_build_s": round(warm["build_s"], 3),
                                "import_section_s": round(cold["import_s"], 3),
                                "load_in_test_process_s": round(in_proc, 3),
                                "cuda_cflags": manifest["flags"]["cuda_cflags"],
                                "note": "cold builds of all sections ran at the same time, one process each"}
    mod.LABEL = label
    mod.RESULTS = RESULTS
    return mod


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("VLLM_BUNDLE_GPU_RESULTS")
    if not path or not (RESULTS["builds"] or RESULTS["checks"]):
        return
    info = {}
    try:
        import torch
        import triton
        info = {"torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "capability": list(torch.cuda.get_device_capability()) if torch.cuda.is_available() else None}
    except Exception as e:  # pragma: no cover
        info = {"error": repr(e)}
    RESULTS["env"] = info
    RESULTS["exitstatus"] = int(exitstatus)
    Path(path).write_text(json.dumps(RESULTS, indent=2, sort_keys=True))
