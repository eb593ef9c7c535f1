"""Compile-only check (nvcc -c, no GPU needed) of the CUDA section A4 generates, with the flags A4 recorded and
the torch headers of the toolchain venv: every translation unit on its own, each of its files compiled on its own
and its objects linked into one library, as the bundle's load calls build them (one library each). Skips when
nvcc is absent.

What CI compiles (2 cores): the two units of rms_norm/fused_add_rms_norm/silu_and_mul of 0.26.0 (about 50 s and
20 s, run side by side), the two small units of the fixture tree whose sources clash in one unit (a few
seconds each), the router fixture's unit, whose two companion sources clash in one file (about 40 s), and 0.34.0's
topk unit with its companion sampler.cu (about 60 s). The MoE routing set of the issue (topk_softmax, grouped_topk, topk_softplus_sqrt, ...: seven
units, grouped_topk alone about 450 s) runs only with VLLM_BUNDLE_SLOW_CUDA_COMPILE=1."""

import json
import os
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest

from bundler_lib import collect_cuda
from bundler_lib.artifacts import read_json

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "trees" / "cuda" / "mini"


def _nvcc():
    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")):
        if cand and os.path.exists(cand):
            return cand
    return None


needs_nvcc = pytest.mark.skipif(_nvcc() is None,
                                reason="nvcc not found (PATH or $CUDA_HOME/bin): compile-only check skipped")


def _graph(tmp_path, ops):
    g = {"status": "ok", "symbol": "X", "cuda_ops": [
        {"op": op, "namespace": op.split(".")[0], "name": op.split(".")[1], "call_sites": []} for op in ops]}
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    return p


def _section(tree, tmp_path, ops):
    out = tmp_path / "out"
    collect_cuda.run(tree=tree, graph=_graph(tmp_path, ops), out=out)
    ns: dict = {}
    imports = "\n".join(read_json(out / "A4.manifest.json")["imports"])
    exec(compile(imports + "\n" + (out / "A4.cuda.py").read_text(), "A4.cuda.py", "exec"), ns)
    return ns, read_json(out / "A4.manifest.json")


def _nvcc_base(ns, src, tmp_path, arch):
    import torch
    import torch.utils.cpp_extension as ce
    nvcc = _nvcc()
    torch_inc = Path(torch.__file__).parent / "include"
    cuda_home = Path(nvcc).resolve().parent.parent
    system = [torch_inc, torch_inc / "torch" / "csrc" / "api" / "include", Path(sysconfig.get_path("include"))]
    # The toolkit here may lack cuBLAS headers (cuBLAS is a separate package); torch_utils.h only needs
    # the handle type from it, so a one-line stand-in is used for this compile-only check.
    if not (cuda_home / "include" / "cublas_v2.h").exists():
        stub = tmp_path / "stub"
        stub.mkdir(exist_ok=True)
        (stub / "cublas_v2.h").write_text("#pragma once\ntypedef struct cublasContext *cublasHandle_t;\n")
        system.append(stub)
    cmd = [nvcc, "-DTORCH_API_INCLUDE_EXTENSION_H"]
    cmd += [f"-I{os.path.normpath(os.path.join(src, d))}" for d in ns["_CUDA_INCLUDE_DIRS"]]
    for s in system:
        cmd += ["-isystem", str(s)]
    cmd += list(ce.COMMON_NVCC_FLAGS) + ["--compiler-options", "-fPIC"]
    cmd += list(ns["_CUDA_CUDA_CFLAGS"]) + [f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    return cmd


def compile_units(tree, tmp_path, ops, arch="90", units=None, jobs=None):
    """Generate A4 for `ops`, write its embedded sources as the bundle would, nvcc -c each file of each translation
    unit (or of those named in `units`) on its own with the recorded flags, up to `jobs` (default: the CPU count)
    at a time, and link each unit's objects into one shared library, as the bundle's load call does. Returns
    (manifest, {unit id: {"rc", "log", "obj" (its registration's), "objs", "lib", "seconds"}}, nvcc command)."""
    ns, m = _section(tree, tmp_path, ops)
    src = Path(ns["_cuda_write_sources"](str(tmp_path / "bundle_cache")))
    build = tmp_path / "build"
    build.mkdir()
    base = _nvcc_base(ns, src, tmp_path, arch)
    pending, objs = [], {}
    for tu, _lines, files in ns["_CUDA_TRANSLATION_UNITS"]:
        if units is not None and tu not in units:
            continue
        unit_ns = ns["_CUDA_TU_KEYS"][tu][1]
        name = f"{unit_ns}_{tu}_sm{arch}"  # what load passes as TORCH_EXTENSION_NAME
        (build / tu).mkdir()
        objs[tu] = []
        for fname, text in files:
            f = build / tu / fname
            f.write_text(text.replace("{NS}", unit_ns))
            objs[tu].append(f.with_suffix(".o"))
            pending.append((tu, f, base[:1] + ["-c", str(f), "-o", str(objs[tu][-1]),
                                               f"-DTORCH_EXTENSION_NAME={name}"] + base[1:]))
    done, running = [], []
    jobs = jobs or max(1, os.cpu_count() or 1)
    while pending or running:
        while pending and len(running) < jobs:
            tu, f, cmd = pending.pop(0)
            log = open(f.with_suffix(".log"), "w+")
            running.append((tu, cmd, log, time.perf_counter(),
                            subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)))
        for item in list(running):
            tu, cmd, log, t0, p = item
            if p.poll() is None:
                continue
            running.remove(item)
            log.seek(0)
            done.append((tu, p.returncode, " ".join(cmd) + "\n" + log.read(), time.perf_counter() - t0))
            log.close()
        time.sleep(0.2)
    results = {}
    for tu in objs:
        mine = [d for d in done if d[0] == tu]
        rc = next((d[1] for d in mine if d[1] != 0), 0)
        log = "\n".join(d[2] for d in mine)
        lib = build / tu / f"{tu}.so"
        if rc == 0:  # one library of the unit's objects: a name two of them define is refused here
            cxx = os.environ.get("CXX") or shutil.which("c++") or "g++"
            r = subprocess.run([cxx, "-shared", "-o", str(lib)] + [str(o) for o in objs[tu]],
                               capture_output=True, text=True)
            rc, log = r.returncode, log + "\n" + r.stdout + r.stderr
        results[tu] = {"rc": rc, "log": log, "obj": objs[tu][0], "objs": objs[tu], "lib": lib,
                       "seconds": round(sum(d[3] for d in mine), 1)}
    return m, results, base


def _check_units(m, results):
    failed = {tu: r["log"][-6000:] for tu, r in results.items() if r["rc"] != 0}
    assert not failed, "\n\n".join(f"--- {tu}\n{log}" for tu, log in failed.items())
    for tu, r in results.items():
        # each unit registers its ops: its namespace string is in its object
        unit_ns = next(t["namespace"] for t in m["translation_units"] if t["id"] == tu)
        assert r["obj"].exists() and unit_ns.encode() in r["obj"].read_bytes(), tu
    _no_cross_unit_symbols(results)


def _no_cross_unit_symbols(results):
    """Each unit becomes its own library: none may need a function that only another unit defines."""
    nm = shutil.which("nm")
    if nm is None or len(results) < 2:
        return
    defined, undefined = {}, {}
    for tu, r in results.items():
        out = subprocess.run([nm, "-P", str(r["lib"])], capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines() if len(line.split()) >= 2]
        defined[tu] = {x[0] for x in rows if x[1] in "TDBRVW"}
        undefined[tu] = {x[0] for x in rows if x[1] == "U"}
    for tu in results:
        elsewhere = set().union(*(defined[o] for o in results if o != tu))
        missing = sorted((undefined[tu] - defined[tu]) & elsewhere)
        assert not missing, f"unit {tu} uses symbols only other units define: {missing[:10]}"


def _report(results):
    print("compile times: " + ", ".join(f"{tu} {r['seconds']} s" for tu, r in sorted(results.items())))


@needs_nvcc
def test_generated_cuda_compiles_rms_norm_and_silu(vllm_0_26_0, tmp_path):
    m, results, _ = compile_units(vllm_0_26_0, tmp_path, ["_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul"])
    _report(results)
    assert sorted(results) == ["activation_kernels", "layernorm_kernels"]
    _check_units(m, results)


@needs_nvcc
def test_clashing_sources_compile_as_separate_units(tmp_path):
    """The fixture's scoring_a.cu and scoring_b.cu clash in one translation unit (as vLLM's topk_softmax and
    grouped_topk kernels do); each unit compiles on its own."""
    m, results, base = compile_units(MINI, tmp_path, ["_C.scoring_a", "_C.scoring_b"])
    _report(results)
    assert sorted(results) == ["scoring_a", "scoring_b"]
    _check_units(m, results)
    # the control: both sources in one unit do not compile (this is what one unit per source avoids)
    one = tmp_path / "build" / "together.cu"
    one.write_text('#include "csrc/scoring_a.cu"\n#include "csrc/scoring_b.cu"\n')
    r = subprocess.run(base[:1] + ["-c", str(one), "-o", str(one.with_suffix(".o"))] + base[1:],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "ScoringFunc" in r.stdout + r.stderr, r.stdout + r.stderr


# The set: the 0.26.0/0.33.0 MoE routing ops whose sources clash when compiled together.
MOE_SET = ["_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul", "_C.rotary_embedding", "_moe_C.topk_softmax",
           "_moe_C.moe_align_block_size", "_moe_C.moe_sum", "_moe_C.grouped_topk", "_moe_C.topk_softplus_sqrt",
           "_moe_C.topk_sigmoid"]


def _slow(what):
    return pytest.mark.skipif(os.environ.get("VLLM_BUNDLE_SLOW_CUDA_COMPILE") != "1",
                              reason=f"slow ({what} on 2 cores): set VLLM_BUNDLE_SLOW_CUDA_COMPILE=1")


@needs_nvcc
@_slow("about 4 and 6 min per version")
@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_moe_routing_set_compiles_unit_by_unit(version, request, tmp_path):
    tree = request.getfixturevalue("vllm_" + version.replace(".", "_"))
    m, results, _ = compile_units(tree, tmp_path, MOE_SET)
    _report(results)
    assert sorted(results) == sorted(["layernorm_kernels", "activation_kernels", "pos_encoding_kernels",
                                      "topk_softmax_kernels", "moe_align_sum_kernels", "grouped_topk_kernels",
                                      "topk_softplus_sqrt_kernels"])
    _check_units(m, results)


@needs_nvcc
def test_companion_source_is_compiled_into_the_unit(tmp_path):
    """gemm_entry.cu only declares invoke_mini_gemm<N>; its unit carries gemm_impl.cu, so the unit's object
    defines both instantiations (a library built from gemm_entry.cu alone would fail to load)."""
    m, results, _ = compile_units(MINI, tmp_path, ["_C.gemm_op"])
    assert sorted(results) == ["gemm_entry"]
    _check_units(m, results)
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not found")
    out = subprocess.run([nm, "-C", "-P", str(results["gemm_entry"]["lib"])], capture_output=True, text=True,
                         check=True).stdout
    defined = {l.rsplit(" ", 3)[0] for l in out.splitlines() if l.rsplit(" ", 3)[1:2] and l.rsplit(" ", 3)[1] in "TW"}
    assert {"void invoke_mini_gemm<1>(float*)", "void invoke_mini_gemm<2>(float*)"} <= defined, out


ROUTER = ROOT / "tests" / "trees" / "cuda" / "router"


@needs_nvcc
def test_companion_sources_compile_on_their_own_into_one_library(tmp_path):
    """router_gemm_entry.cu only declares what router_gemm_float_out.cu and router_gemm_half_out.cu define, and
    those two define the same file-level helpers (as vLLM's dsv3_router_gemm sources do): each is compiled on its
    own and the three objects link into the unit's one library, which defines both instantiations."""
    m, results, base = compile_units(ROUTER, tmp_path, ["_moe_C.router_gemm"])
    _report(results)
    (unit,) = m["translation_units"]
    assert unit["companion_sources"] == ["csrc/router_gemm_float_out.cu", "csrc/router_gemm_half_out.cu"]
    assert unit["compiled_files"] == ["router_gemm_entry.cu", "router_gemm_float_out.cu", "router_gemm_half_out.cu"]
    _check_units(m, results)
    out = subprocess.run([shutil.which("nm") or "nm", "-C", "-P", str(results["router_gemm_entry"]["lib"])],
                         capture_output=True, text=True, check=True).stdout
    defined = {l.rsplit(" ", 3)[0] for l in out.splitlines() if l.rsplit(" ", 3)[1:2] and l.rsplit(" ", 3)[1] in "TW"}
    assert {"void invokeRouterGemmFloatOutput<1>(float*)", "void invokeRouterGemmHalfOutput<1>(float*)"} <= defined
    # the control: the two companions in one translation unit do not compile
    one = tmp_path / "build" / "together.cu"
    one.write_text('#include "csrc/router_gemm_float_out.cu"\n#include "csrc/router_gemm_half_out.cu"\n')
    r = subprocess.run(base[:1] + ["-c", str(one), "-o", str(one.with_suffix(".o"))] + base[1:],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "has already been defined" in r.stdout + r.stderr, r.stdout + r.stderr


@needs_nvcc
@_slow("about 3 min")
def test_dsv3_router_gemm_companions_compile_into_one_library(vllm_0_26_0, tmp_path):
    """The GPU's failure in the 0.26.0 zoo (DeepseekV2DecoderLayer, Gemma4): dsv3_router_gemm_entry.cu's companions
    _float_out.cu and _bf16_out.cu both define fma() and bf16_uint4_to_float8; each compiles on its own and the
    three objects link into one library."""
    m, results, _ = compile_units(vllm_0_26_0, tmp_path, ["_moe_C.dsv3_router_gemm"])
    _report(results)
    (unit,) = m["translation_units"]
    assert unit["compiled_files"] == ["dsv3_router_gemm_entry.cu", "dsv3_router_gemm_float_out.cu",
                                      "dsv3_router_gemm_bf16_out.cu"]
    _check_units(m, results)


@needs_nvcc
@pytest.mark.parametrize("op, unit, symbol", [
    ("_C.persistent_topk", "topk", "top_k_per_row_decode("),
    pytest.param("_moe_C.topk_softplus_sqrt", "topk_softplus_sqrt",
                 "vllm::moe::topkGatingSoftplusSqrtKernelLauncher<", marks=_slow("about 200 s")),
])
def test_unit_library_defines_what_its_source_needs_from_its_target_0_34_0(vllm_0_34_0, tmp_path, op, unit, symbol):
    """The GPU's failure in the 0.34.0 zoo: a unit's library did not load (undefined symbol). The unit's own object
    needs `symbol` (the control), and the library with its companions defines it: topk.cu's top_k_per_row_decode
    (sampler.cu), topk_softplus_sqrt.cu's launcher (its nine instantiation units)."""
    m, results, _ = compile_units(vllm_0_34_0, tmp_path, [op], units=[unit])
    _check_units(m, results)
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not found")

    def undefined(path):
        out = subprocess.run([nm, "-C", "-u", str(path)], capture_output=True, text=True, check=True).stdout
        return [line.strip() for line in out.splitlines() if symbol in line]

    assert undefined(results[unit]["obj"])
    assert not undefined(results[unit]["lib"])
