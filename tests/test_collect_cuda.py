"""A4 collect-cuda: a small fixture tree (tests/trees/cuda/mini) for the rules, and the real 0.26.0/0.33.0
trees for the target ops."""

import json
import re
import textwrap
import subprocess
import sys
from pathlib import Path

import pytest

from bundler_lib import collect_cuda
from bundler_lib.artifacts import read_json
from bundler_lib.cuda import cmake, cpp
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "trees" / "cuda" / "mini"


def graph(tmp_path, *ops, name="A1.graph.json"):
    g = {"status": "ok", "symbol": "X", "cuda_ops": [
        {"op": op, "namespace": op.split(".")[0], "name": op.split(".", 1)[1], "call_sites": []} for op in ops]}
    p = tmp_path / name
    p.write_text(json.dumps(g))
    return p


def run(tree, tmp_path, *ops, out="out"):
    collect_cuda.run(tree=tree, graph=graph(tmp_path, *ops), out=tmp_path / out)
    return (tmp_path / out / "A4.cuda.py").read_text(), read_json(tmp_path / out / "A4.manifest.json")


def load_section(tmp_path, out="out"):
    m = read_json(tmp_path / out / "A4.manifest.json")
    ns: dict = {}
    exec(compile("\n".join(m["imports"]) + "\n" + (tmp_path / out / "A4.cuda.py").read_text(), "A4.cuda.py", "exec"), ns)
    return ns


# ----------------------------------------------------------------------------- fixture tree

def test_mini_closure_is_exact(tmp_path):
    text, m = run(MINI, tmp_path, "_C.my_op")
    files = [f["path"] for f in m["cuda_files"]]
    assert set(files) == {"csrc/ops.h", "csrc/my_kernels.cu", "csrc/common.h", "csrc/sub/helper.cuh"}
    assert "csrc/unused.h" not in files and "csrc/cpu/my_kernels.cpp" not in files
    (op,) = m["ops"]
    assert op["op"] == "_C.my_op" and op["schema"] == "my_op(Tensor! out, Tensor x, float eps=1e-6) -> ()"
    assert op["source_file"] == "csrc/my_kernels.cu" and op["cpp_function"] == "my_op_impl"
    assert op["binding_file"] == "csrc/torch_bindings.cpp" and op["dispatch_key"] == "CUDA"
    assert op["kernels"] == ["my_op_kernel", "other_kernel"]
    assert m["status"] == "ok"
    assert m["wrappers"] == [{"op": "_C.my_op", "wrapper": "_C_my_op", "schema": op["schema"],
                              "registered_as": f"{m['translation_units'][0]['namespace']}::my_op"}]


def test_mini_flags_mirror_cmake(tmp_path):
    _, m = run(MINI, tmp_path, "_C.my_op")
    f = m["flags"]
    assert f["cuda_standard"] == "17" and "-std=c++17" in f["cuda_cflags"]
    assert "-DUSE_CUDA" in f["cuda_cflags"] and "-DTORCH_TARGET_VERSION=0x020B000000000000ULL" in f["cuda_cflags"]
    assert "-DENABLE_FP8" in f["cuda_cflags"]
    assert {"-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF2_OPERATORS__"} <= set(f["cuda_cflags"])
    assert "-U__CUDA_NO_HALF_CONVERSIONS__" not in f["cuda_cflags"]  # not removed by this CMake
    joined = " ".join(f["cuda_cflags"] + f["cflags"])
    assert "USE_ROCM" not in joined and "ONLY_ON_SOME_ARCHES" not in joined and "--threads" not in joined
    assert any("ONLY_ON_SOME_ARCHES" in n for n in m["notes"])
    assert f["include_dirs"] == [".", "csrc"]


def test_mini_embedded_sources_are_verbatim_and_lazy(tmp_path):
    text, m = run(MINI, tmp_path, "_C.my_op", "_C.other_op")
    ns = load_section(tmp_path)
    # nothing was built or written by loading the section
    assert ns["_CUDA_EXT_PATH"] is None
    src = Path(ns["_cuda_write_sources"](str(tmp_path / "cache")))
    for f in m["cuda_files"]:
        assert (src / f["path"]).read_bytes() == (MINI / f["path"]).read_bytes()
    (tu,) = m["translation_units"]
    assert ns["_CUDA_TU_KEYS"] == {"my_kernels": (tu["key"], tu["namespace"], tuple(tu["files"]))}
    assert tu["namespace"] == "vllm_bundle_" + tu["key"][:16]
    # both ops live in my_kernels.cu: one translation unit, which registers both
    ((tu_id, lines, ((name, main),)),) = ns["_CUDA_TRANSLATION_UNITS"]
    assert tu_id == "my_kernels" and lines == sum(f["lines"] for f in m["cuda_files"])
    assert name == "my_kernels.cu" and tu["compiled_files"] == ["my_kernels.cu"]
    assert '#include "csrc/my_kernels.cu"' in main
    assert 'ops.def("my_op(Tensor! out, Tensor x, float eps=1e-6) -> ()");' in main
    assert "ops.impl(\"my_op\", TORCH_BOX(&my_op_impl));" in main
    assert "ops.impl(\"other_op\", TORCH_BOX(&other_op));" in main
    assert "STABLE_TORCH_LIBRARY_FRAGMENT({NS}, ops)" in main
    assert [(t["id"], t["source_file"], t["ops"]) for t in m["translation_units"]] == [
        ("my_kernels", "csrc/my_kernels.cu", ["_C.my_op", "_C.other_op"])]
    assert m["translation_units"][0]["extension"] == tu["namespace"] + "_my_kernels_sm<arch>"
    assert all(f["translation_units"] == ["my_kernels"] for f in m["cuda_files"])
    assert {o["translation_unit"] for o in m["ops"]} == {"my_kernels"}
    # wrappers mirror the schema
    import inspect
    sig = inspect.signature(ns["_C_my_op"])
    assert list(sig.parameters) == ["out", "x", "eps"] and sig.parameters["eps"].default == 1e-6
    # provenance and the file's own copyright line
    assert "# --- Inlined from csrc/my_kernels.cu:L1-L" in text
    assert "# Copyright (c) 2024, Example Corp. All rights reserved." in text
    # the launcher's shared-memory arithmetic stays in the C++ as is
    assert "mini::kBlock * sizeof(float) * 2" in ns["_CUDA_SOURCES"]["csrc/my_kernels.cu"]


def _keys(m):
    return {t["id"]: t["key"] for t in m["translation_units"]}


def test_mini_deterministic_and_content_keyed(tmp_path):
    t1, m1 = run(MINI, tmp_path, "_C.my_op", out="o1")
    t2, m2 = run(MINI, tmp_path, "_C.my_op", out="o2")
    assert t1 == t2 and m1 == m2
    _, m3 = run(MINI, tmp_path, "_C.my_op", "_C.other_op", out="o3")
    assert _keys(m3)["my_kernels"] != _keys(m1)["my_kernels"]   # the unit registers another op
    # a unit is keyed by its own content: bundles that embed the same unit share its key (and build), whatever
    # else they embed
    _, m4 = run(MINI, tmp_path, "_C.my_op", "_C.scoring_a", out="o4")
    assert _keys(m4)["my_kernels"] == _keys(m1)["my_kernels"] and m4["bundle_hash"] != m1["bundle_hash"]


def test_mini_content_change_changes_namespace(tmp_path):
    import shutil
    tree = tmp_path / "tree"
    shutil.copytree(MINI, tree)
    _, m1 = run(tree, tmp_path, "_C.my_op", out="o1")
    (tree / "csrc" / "common.h").write_text((tree / "csrc" / "common.h").read_text().replace("256", "128"))
    _, m2 = run(tree, tmp_path, "_C.my_op", out="o2")
    assert _keys(m1) != _keys(m2)


@pytest.mark.parametrize("op,needles", [
    ("_C.nope", ["op _C.nope", "no registration", "csrc/torch_bindings.cpp"]),
    ("_C.rocm_only", ["op _C.rocm_only", "no registration"]),
    ("_C.commented_out", ["op _C.commented_out", "no registration"]),
    ("_C.no_impl", ["op _C.no_impl", "no CUDA implementation", "CPU"]),
    ("_C.ghost", ["op _C.ghost", "ghost_impl", "sources of CMake target _C_mini"]),
    ("_C.cutlass_op", ["op _C.cutlass_op", "cutlass/cutlass.h", "csrc/cutlass_kernels.cu:2"]),
    ("_other.my_op", ["op _other.my_op", "libraries seen", "_C", "my_op is registered in _C"]),
])
def test_mini_errors(tmp_path, op, needles):
    with pytest.raises(StageError) as e:
        run(MINI, tmp_path, op)
    assert e.value.stage == "A4 cuda"
    for n in needles:
        assert n in str(e.value), str(e.value)
    assert not (tmp_path / "out" / "A4.cuda.py").exists()


def test_mini_legacy_registration(tmp_path):
    _, m = run(MINI, tmp_path, "_legacy_C.legacy_op")
    (op,) = m["ops"]
    assert op["abi"] == "legacy" and op["source_file"] == "csrc/legacy/legacy.cu"
    ns = load_section(tmp_path)
    ((tu_id, _, ((_, main),)),) = ns["_CUDA_TRANSLATION_UNITS"]
    assert tu_id == "legacy"
    assert "TORCH_LIBRARY_FRAGMENT({NS}, ops)" in main and "STABLE" not in main
    assert 'ops.impl("legacy_op", &legacy_op);' in main
    import inspect
    assert str(inspect.signature(ns["_legacy_C_legacy_op"])) == "(x: torch.Tensor, n: int = 2)"


def test_mini_one_translation_unit_per_source(tmp_path):
    """scoring_a.cu and scoring_b.cu clash in one translation unit (the WARP_SIZE macro of compat.h against
    scoring_b's constant, two mini::ScoringFunc enums), as vLLM's topk_softmax and grouped_topk kernels do:
    each is compiled on its own, with the registration of its own ops."""
    text, m = run(MINI, tmp_path, "_C.scoring_a", "_C.my_op", "_C.scoring_b", "_C.other_op")
    assert [(t["id"], t["source_file"], t["ops"]) for t in m["translation_units"]] == [
        ("scoring_a", "csrc/scoring_a.cu", ["_C.scoring_a"]),
        ("my_kernels", "csrc/my_kernels.cu", ["_C.my_op", "_C.other_op"]),
        ("scoring_b", "csrc/scoring_b.cu", ["_C.scoring_b"])]
    by_tu = {t["id"]: t for t in m["translation_units"]}
    assert by_tu["scoring_a"]["files"] == ["csrc/scoring_a.cu", "csrc/ops.h", "csrc/compat.h"]
    # scoring_b.cu does not include ops.h (its unit never includes the declaring header: both give a default
    # argument, a redefinition in one translation unit)
    assert by_tu["scoring_b"]["files"] == ["csrc/scoring_b.cu"]
    files = {f["path"]: f for f in m["cuda_files"]}
    assert files["csrc/ops.h"]["translation_units"] == ["scoring_a", "my_kernels"]
    assert files["csrc/compat.h"]["translation_units"] == ["scoring_a"]
    assert {o["op"]: o["translation_unit"] for o in m["ops"]} == {
        "_C.scoring_a": "scoring_a", "_C.my_op": "my_kernels", "_C.scoring_b": "scoring_b",
        "_C.other_op": "my_kernels"}
    ns = load_section(tmp_path)
    tus = {tu: (lines, t) for tu, lines, ((_, t),) in ns["_CUDA_TRANSLATION_UNITS"]}
    assert list(tus) == ["scoring_a", "my_kernels", "scoring_b"]
    for tu, (lines, t) in tus.items():
        src = by_tu[tu]["source_file"]
        # its own source only, then a fragment registering only its own ops (several libraries, one namespace)
        assert [l for l in t.splitlines() if l.startswith("#include \"")] == [f'#include "{src}"']
        assert t.count("STABLE_TORCH_LIBRARY_FRAGMENT({NS}, ops) {") == 1
        assert "STABLE_TORCH_LIBRARY({NS}" not in t
        defs = re.findall(r'ops\.def\("(\w+)\(', t)
        impls = re.findall(r'ops\.impl\("(\w+)"', t)
        assert defs == impls == [op.split(".")[1] for op in by_tu[tu]["ops"]]
        assert lines == by_tu[tu]["lines"] == sum(files[f]["lines"] for f in by_tu[tu]["files"])
    assert 'ops.def("scoring_b(Tensor! out, int scoring_func) -> ()");' in tus["scoring_b"][1]
    assert "ops.impl(\"scoring_b\", TORCH_BOX(&scoring_b));" in tus["scoring_b"][1]
    # every op is registered exactly once over all units
    all_defs = re.findall(r'ops\.def\("(\w+)\(', "".join(t for _, t in tus.values()))
    assert sorted(all_defs) == sorted(o["name"] for o in m["ops"])
    assert "4 translation unit" not in " ".join(m["notes"]) and any("3 translation unit(s)" in n for n in m["notes"])


def test_companion_source_defining_what_the_op_source_only_declares(tmp_path):
    """gemm_entry.cu calls invoke_mini_gemm<N>, which it only declares; gemm_impl.cu (the same CMake target)
    defines and instantiates it: it joins the unit's library (as fp32_router_gemm.cu joins
    fp32_router_gemm_entry.cu's), compiled on its own as vLLM's CMake compiles it."""
    text, m = run(MINI, tmp_path, "_C.gemm_op", "_C.my_op")
    units = {t["id"]: t for t in m["translation_units"]}
    assert units["gemm_entry"]["companion_sources"] == ["csrc/gemm_impl.cu"]
    assert units["gemm_entry"]["compiled_files"] == ["gemm_entry.cu", "gemm_impl.cu"]
    assert units["my_kernels"]["companion_sources"] == []
    assert "csrc/gemm_impl.cu" in units["gemm_entry"]["files"]
    ns = load_section(tmp_path)
    files = dict((tu, f) for tu, _, f in ns["_CUDA_TRANSLATION_UNITS"])["gemm_entry"]
    assert [name for name, _ in files] == ["gemm_entry.cu", "gemm_impl.cu"]
    assert [re.findall(r'#include "([^"]+)"', t)[:1] for _, t in files] == [["csrc/gemm_entry.cu"],
                                                                             ["csrc/gemm_impl.cu"]]
    assert "ops.def(" in files[0][1] and "ops.def(" not in files[1][1]


ROUTER = ROOT / "tests" / "trees" / "cuda" / "router"


def test_sources_appended_under_an_unknown_condition_belong_to_the_target(tmp_path):
    """The router fixture's sources are set and appended to the target's list under a GPU-arch condition (as vLLM
    0.26.0's DSV3_ROUTER_GEMM_SRC): they are the target's, so the op's source gets the target's definitions
    (USE_CUDA, which torch's stable-ABI headers gate the CUDA stream calls on) and its companions."""
    info = cmake.read(ROUTER)
    assert info.target_of("csrc/router_gemm_entry.cu").name == "_moe_C"
    _, m = run(ROUTER, tmp_path, "_moe_C.router_gemm")
    assert "USE_CUDA" in m["flags"]["defines"]
    (unit,) = m["translation_units"]
    assert unit["companion_sources"] == ["csrc/router_gemm_float_out.cu", "csrc/router_gemm_half_out.cu"]
    assert unit["compiled_files"] == ["router_gemm_entry.cu", "router_gemm_float_out.cu", "router_gemm_half_out.cu"]


def test_function_declarations():
    from bundler_lib.cuda import cpp
    src = textwrap.dedent('''\
        template <int N>
        void declared_only(float* out);
        int also_declared(int x) noexcept;
        static Foo global_object(1, 2);
        void defined(int x) { helper(x); declared_only<1>(nullptr); }
        namespace inner { double in_ns(double); }
        struct S { void method(int); };
        #define MACRO(x) x
        MACRO(3);
    ''')
    assert cpp.find_function_declarations(src) == ["declared_only", "also_declared", "global_object", "in_ns"]


def test_translation_unit_ids():
    from bundler_lib.cuda.collect import _tu_id
    used: set = set()
    out = []
    for s in ["csrc/a/topk_kernels.cu", "csrc/b/topk_kernels.cu", "csrc/ops.h", "csrc/x-y.cpp", "csrc/1st.cu",
              "csrc/b/topk_kernels.cuh"]:
        out.append(_tu_id(s, used))
        used.add(out[-1])
    assert out == ["topk_kernels", "topk_kernels_2", "ops_h", "x_y_cpp", "tu_1st", "topk_kernels_cuh"]


class _FakeTorch:
    """Just what _build_cuda_extension_if_needed reads from torch, on a machine without a GPU."""

    def __init__(self, loaded):
        import types
        self.__version__ = "2.99.0+fake"
        self.version = types.SimpleNamespace(cuda="13.0")
        self.cuda = types.SimpleNamespace(is_available=lambda: True, get_device_capability=lambda: (9, 0))
        self.ops = types.SimpleNamespace(load_library=loaded.append)


def _fake_build(tmp_path, monkeypatch, fail=(), barrier=None, out="out"):
    """Exec the section with a fake torch and a fake cpp_extension.load (it writes an empty library and records the
    call; with `barrier`, every call waits there for the others: they must run at the same time); returns
    (namespace, calls, loaded libraries)."""
    import threading
    import torch.utils.cpp_extension as ce
    calls, loaded = [], []

    def load(**kw):
        if (Path(kw["build_directory"]) / "lock").exists():  # torch's FileBaton would wait on it forever
            raise RuntimeError(f"load would wait forever on {kw['build_directory']}/lock")
        calls.append(dict(kw, thread=threading.current_thread().name,
                          texts=[Path(p).read_text(encoding="utf-8") for p in kw["sources"]]))
        if barrier is not None:
            barrier.wait()
        if any(f in kw["name"] for f in fail):
            raise RuntimeError(f"Error building extension '{kw['name']}'") from OSError("undefined symbol: _Z3foov")
        so = Path(kw["build_directory"]) / (kw["name"] + ".so")
        so.write_bytes(b"")
        loaded.append(str(so))  # load loads what it built
        return str(so)

    monkeypatch.setattr(ce, "load", load)
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    ns = load_section(tmp_path, out)
    ns["torch"] = _FakeTorch(loaded)
    return ns, calls, loaded


def test_build_one_library_per_unit_in_parallel_then_warm(tmp_path, monkeypatch):
    import time
    import os
    import threading
    text, m = run(MINI, tmp_path, "_C.scoring_a", "_C.my_op", "_C.scoring_b", "_C.gemm_op")
    tus = [t["id"] for t in m["translation_units"]]
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    ns, calls, loaded = _fake_build(tmp_path, monkeypatch, barrier=threading.Barrier(4, timeout=30))
    import ctypes
    opened = []
    monkeypatch.setattr(ctypes, "CDLL", lambda name, mode=0: opened.append((name, mode, len(calls))))
    build = ns["_build_cuda_extension_if_needed"]()
    assert ns["_CUDA_EXT_PATH"] == build and Path(build) == tmp_path / "cache" / "cuda"
    # the CUDA driver, its symbols global, before any unit is built or loaded (vLLM links CUDA::cuda_driver)
    assert opened == [("libcuda.so.1", ctypes.RTLD_GLOBAL, 0)]
    by_id = {t["id"]: t for t in m["translation_units"]}
    # one load per translation unit: its own name and build directory (under its key), the same flags, in worker
    # threads; its files (the unit's source with the registration, then each companion source) in that directory
    assert sorted(c["name"] for c in calls) == sorted(f"{by_id[tu]['namespace']}_{tu}_sm90" for tu in tus)
    assert sorted(str(c["build_directory"]) for c in calls) == sorted(
        str(Path(build) / by_id[tu]["key"] / "build_torch2_99_0_fake_cuda13_0_sm90") for tu in tus)
    for c in calls:
        assert c["is_python_module"] is False
        assert c["extra_cuda_cflags"] == list(m["flags"]["cuda_cflags"]) + ["-gencode=arch=compute_90,code=sm_90"]
        assert c["extra_cflags"] == m["flags"]["cflags"]
        unit = next(t for t in m["translation_units"] if c["name"].startswith(t["namespace"] + "_" + t["id"]))
        assert c["sources"] == [str(Path(c["build_directory"]) / f) for f in unit["compiled_files"]]
        src, *companions = c["texts"]
        assert "{NS}" not in src and f"STABLE_TORCH_LIBRARY_FRAGMENT({unit['namespace']}, ops)" in src
        assert [re.findall(r'#include "([^"]+)"', t) for t in companions] == [[f] for f in unit["companion_sources"]]
        # the unit's own sources only, written under its key
        written = {p.relative_to(Path(c["build_directory"]).parent / "src").as_posix()
                   for p in (Path(c["build_directory"]).parent / "src").rglob("*") if p.is_file()}
        assert written == set(unit["files"]) | {".complete"}
        assert c["thread"] != "MainThread"
        assert (Path(c["build_directory"]) / ".complete").read_text().strip() == c["name"] + ".so"
    assert len(loaded) == len(tus) and [len(c["sources"]) for c in calls if "_gemm_entry_" in c["name"]] == [2]
    # a second call in the same process returns at once
    assert ns["_build_cuda_extension_if_needed"]() == build and len(calls) == len(tus)
    # warm: a fresh copy of the section (a new process) compiles nothing and loads every library
    ns2, calls2, loaded2 = _fake_build(tmp_path, monkeypatch)
    t0 = time.perf_counter()
    assert ns2["_build_cuda_extension_if_needed"]() == build
    assert time.perf_counter() - t0 < 0.5
    assert calls2 == [] and sorted(loaded2) == sorted(loaded)
    assert [Path(p).name.split("_sm90")[0][len("vllm_bundle_") + 17:] for p in loaded2] == tus  # in unit order


def _unit(call):
    """The translation unit id a load call builds (its name is <namespace>_<unit id>_sm<arch>)."""
    return call["name"][len("vllm_bundle_") + 17:].rsplit("_sm", 1)[0]


def test_build_failure_names_the_unit_and_keeps_the_rest(tmp_path, monkeypatch):
    import os
    _, m = run(MINI, tmp_path, "_C.scoring_a", "_C.my_op", "_C.scoring_b")
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one worker: the units are built in submission order
    ns, calls, loaded = _fake_build(tmp_path, monkeypatch, fail=("_scoring_b_",))
    with pytest.raises(RuntimeError, match=r"failed in 1 of 3 translation unit\(s\): scoring_b: Error building"
                                           r".*\(undefined symbol: _Z3foov\)"):
        ns["_build_cuda_extension_if_needed"]()
    assert ns["_CUDA_EXT_PATH"] is None
    by_size = sorted(m["translation_units"], key=lambda t: -t["lines"])  # the largest first
    assert [_unit(c) for c in calls] == [t["id"] for t in by_size]
    # the next try builds only the unit that failed (the others are complete and loaded from disk)
    ns2, calls2, loaded2 = _fake_build(tmp_path, monkeypatch)
    ns2["_build_cuda_extension_if_needed"]()
    assert [_unit(c) for c in calls2] == ["scoring_b"]
    assert calls2[0]["thread"] == "MainThread"  # a single unit is built in place
    assert len(loaded2) == 3
    # a single unit that fails is reported the same way, with its cause
    _, m1 = run(MINI, tmp_path, "_C.scoring_b", out="one")
    # ... once its unit is not already built: another bundle embedding the same unit built it (shared)
    ns_shared, calls_shared, loaded_shared = _fake_build(tmp_path, monkeypatch, out="one")
    ns_shared["_build_cuda_extension_if_needed"]()
    assert calls_shared == [] and len(loaded_shared) == 1
    import shutil
    shutil.rmtree(tmp_path / "cache")
    ns3, _, _ = _fake_build(tmp_path, monkeypatch, fail=("_scoring_b_",), out="one")
    with pytest.raises(RuntimeError, match=r"failed in 1 of 1 translation unit\(s\): scoring_b: .*undefined symbol"):
        ns3["_build_cuda_extension_if_needed"]()


def test_a_killed_build_leaves_no_lock_and_a_live_one_is_waited_for(tmp_path, monkeypatch, capfd):
    import fcntl
    import os
    import threading
    import time
    _, m = run(MINI, tmp_path, "_C.scoring_a")
    (tu,) = m["translation_units"]
    ns, calls, loaded = _fake_build(tmp_path, monkeypatch)
    tu_build = tmp_path / "cache" / "cuda" / tu["key"] / "build_torch2_99_0_fake_cuda13_0_sm90"
    # a build killed midway (a timeout's SIGKILL) left torch's lock file: the next build removes it and builds
    tu_build.mkdir(parents=True)
    (tu_build / "lock").write_text("")
    ns["_build_cuda_extension_if_needed"]()
    assert len(calls) == 1 and not (tu_build / "lock").exists()
    err = capfd.readouterr().err
    assert f"removing {tu_build}/lock, left by a build of CUDA unit {tu['id']} that was killed" in err
    assert f"compiling CUDA unit {tu['id']} (first use" in err
    assert re.search(rf"compiled CUDA unit {tu['id']} in \d+\.\d s", err), err
    # a live process building the unit holds its lock: this one waits, then loads that build without compiling
    import shutil
    shutil.rmtree(tmp_path / "cache")
    ns2, calls2, loaded2 = _fake_build(tmp_path, monkeypatch)
    tu_build.mkdir(parents=True)
    fd = os.open(tu_build / ".build.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (tu_build / "lock").write_text("")  # the other process's torch lock, live
    t = threading.Thread(target=ns2["_build_cuda_extension_if_needed"])
    t.start()
    time.sleep(0.5)
    assert t.is_alive() and calls2 == []
    (tu_build / "other.so").write_bytes(b"")
    (tu_build / ".complete").write_text("other.so\n")
    (tu_build / "lock").unlink()
    os.close(fd)
    t.join(10)
    assert not t.is_alive() and calls2 == [] and loaded2 == [str(tu_build / "other.so")]
    assert f"waiting for another process building CUDA unit {tu['id']}" in capfd.readouterr().err


def test_section_import_builds_nothing_and_only_wrappers_build(tmp_path, monkeypatch):
    import ast
    import torch.utils.cpp_extension as ce

    def refuse(*a, **k):
        raise AssertionError("cpp_extension called while executing the section")
    monkeypatch.setattr(ce, "load", refuse)
    monkeypatch.setattr(ce, "load_inline", refuse)
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    text, m = run(MINI, tmp_path, "_C.scoring_a", "_C.my_op", "_C.scoring_b")
    ns = load_section(tmp_path)
    assert ns["_CUDA_EXT_PATH"] is None and not (tmp_path / "cache").exists()
    tree = ast.parse(text)
    wrappers = {w["wrapper"] for w in m["wrappers"]}
    callers = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            for c in ast.walk(fn):
                if isinstance(c, ast.Call) and getattr(c.func, "id", None) == "_build_cuda_extension_if_needed":
                    callers.add(fn.name)
    assert callers == wrappers
    top_calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert top_calls == []


def test_empty_and_bad_graphs(tmp_path):
    text, m = run(MINI, tmp_path)
    assert m["ops"] == [] and m["wrappers"] == [] and m["imports"] == []
    compile(text, "A4.cuda.py", "exec")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StageError, match="not valid JSON"):
        collect_cuda.run(tree=MINI, graph=bad, out=tmp_path / "o")
    bad.write_text(json.dumps({"cuda_ops": [{"call_sites": []}]}))
    with pytest.raises(StageError, match=r"field cuda_ops\[0\]\.op: missing"):
        collect_cuda.run(tree=MINI, graph=bad, out=tmp_path / "o")
    with pytest.raises(StageError, match="CMakeLists.txt"):
        collect_cuda.run(tree=MINI / "csrc", graph=graph(tmp_path, "_C.my_op"), out=tmp_path / "o")


def test_cli_error_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bundler_lib", "collect-cuda", "--tree", str(MINI),
                        "--graph", str(graph(tmp_path, "_C.nope")), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "[A4 cuda] op _C.nope" in r.stderr


# ----------------------------------------------------------------------------- C++ reader units

def test_preprocessor_conditions():
    text = "#ifdef USE_ROCM\nA\n#elif defined(USE_CUDA)\nB\n#else\nC\n#endif\n#if UNKNOWN_X\nD\n#endif\n"
    lines = cpp.active_text(text, {}).split("\n")
    assert "A" not in lines and "B" in lines and "C" not in lines and "D" in lines


def test_strip_comments_keeps_literals_offsets_and_lines():
    src = ('int a; // line "x"\n'
           '/* block\n "y" */ b = "//s" + \'/\' + "q\\"//" ;\n'
           'c = FOOR"//"; auto r = R"d(a" // /* b)d";\n'
           'FOOR"d(" // e )d";\n'
           'd = "open // no close\n// after\n/* unterminated')
    out = cpp.strip_comments(src)
    assert len(out) == len(src) and out.count("\n") == src.count("\n")
    assert out.split("\n") == [
        "int a;            ",
        "        ",
        '        b = "//s" + \'/\' + "q\\"//" ;',
        'c = FOOR"//"; auto r = R"d(a" // /* b)d";',
        'FOOR"d(" ' + " " * 9,
        'd = "open // no close',
        "        ",
        "               ",
    ]


def test_function_definitions_skip_declarations_and_calls():
    t = "void f(int);\nnamespace a {\nvoid f(int x) {\n  f(1);\n}\n}\nstruct S { void f(int) {} };\n"
    assert cpp.find_function_definitions(t, "f") == [3]


def test_function_definitions_global_qualifier_not_members_or_longer_names():
    t = ("int ::f(int a) {\n}\nvoid g() { s.f(1); p->f(2); }\nint ns::f(int) {}\nint f (int) {}\n"
         "int ff(int) {}\nint f_(int) {}\n")
    assert cpp.find_function_definitions(t, "f") == [1, 5]


# ----------------------------------------------------------------------------- real trees

TARGET_OPS = ["_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul", "_C.gelu_and_mul",
              "_C.gelu_tanh_and_mul", "_C.gelu_new", "_C.gelu_fast", "_C.gelu_quick", "_C.silu_and_mul_with_clamp",
              "_C.rotary_embedding", "_moe_C.topk_softmax", "_moe_C.moe_align_block_size", "_moe_C.moe_sum"]


def test_real_0_26_0_norm_and_activation(vllm_0_26_0, tmp_path):
    text, m = run(vllm_0_26_0, tmp_path, "_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul")
    by = {o["op"]: o for o in m["ops"]}
    assert by["_C.rms_norm"]["source_file"] == "csrc/libtorch_stable/layernorm_kernels.cu"
    assert by["_C.silu_and_mul"]["source_file"] == "csrc/libtorch_stable/activation_kernels.cu"
    assert by["_C.rms_norm"]["schema"] == "rms_norm(Tensor! result, Tensor input, Tensor? weight, float epsilon) -> ()"
    assert by["_C.rms_norm"]["binding_file"] == "csrc/libtorch_stable/torch_bindings.cpp"
    assert "rms_norm_kernel" in by["_C.rms_norm"]["kernels"]
    files = {f["path"] for f in m["cuda_files"]}
    assert {"csrc/libtorch_stable/torch_utils.h", "csrc/core/batch_invariant.hpp",
            "csrc/cuda_compat.h", "csrc/libtorch_stable/quantization/vectorization_utils.cuh"} <= files
    assert "csrc/libtorch_stable/ops.h" not in files   # declares the ops for torch_bindings, which no unit includes
    assert not any(f.startswith(("csrc/cpu/", "csrc/rocm/")) for f in files)
    assert "csrc/libtorch_stable/torch_bindings.cpp" not in files  # a generated registration replaces it
    f = m["flags"]
    for flag in ("-std=c++20", "-DUSE_CUDA", "-DTORCH_TARGET_VERSION=0x020B000000000000ULL",
                 "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                 "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__",
                 "-split-compile=0"):  # each file's device code optimised on all cores (cold-build-3)
        assert flag in f["cuda_cflags"], flag
    assert "VLLM_ENABLE_COOPERATIVE_TOPK=1" not in " ".join(f["cuda_cflags"])
    ns = load_section(tmp_path)
    import inspect
    assert list(inspect.signature(ns["_C_rms_norm"]).parameters) == ["result", "input", "weight", "epsilon"]
    assert list(inspect.signature(ns["_C_fused_add_rms_norm"]).parameters) == ["input", "residual", "weight", "epsilon"]
    assert list(inspect.signature(ns["_C_silu_and_mul"]).parameters) == ["result", "input"]


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_real_target_ops(version, request, tmp_path):
    tree = request.getfixturevalue("vllm_" + version.replace(".", "_"))
    text, m = run(tree, tmp_path, *TARGET_OPS)
    assert [o["op"] for o in m["ops"]] == TARGET_OPS
    by = {o["op"]: o for o in m["ops"]}
    assert by["_C.silu_and_mul_with_clamp"]["cpp_function"] == "silu_and_mul_clamp"
    assert by["_moe_C.topk_softmax"]["source_file"].endswith("moe/topk_softmax_kernels.cu")
    assert by["_moe_C.moe_sum"]["source_file"].endswith("moe/moe_align_sum_kernels.cu")
    assert by["_C.rotary_embedding"]["source_file"].endswith("pos_encoding_kernels.cu")
    ns = load_section(tmp_path)
    import inspect
    sig = inspect.signature(ns["_C_rotary_embedding"])
    assert list(sig.parameters)[:6] == ["positions", "query", "key", "head_size", "cos_sin_cache", "is_neox"]
    assert sig.parameters["rope_dim_offset"].default == 0 and sig.parameters["inverse"].default is False
    assert "_moe_C_topk_softmax" in ns and "_moe_C_moe_align_block_size" in ns
    # the NVIDIA copyright of topk_softmax_kernels.cu is kept with its block
    topk = next(f for f in m["cuda_files"] if f["path"].endswith("topk_softmax_kernels.cu"))
    assert any("NVIDIA" in c for c in topk["copyright"])
    assert re.search(r"# --- Inlined from csrc/.*topk_softmax_kernels.cu:L1-L\d+ \(Apache-2.0\) ---\n(# .*\n)*# .*NVIDIA", text)
    for f in m["cuda_files"]:
        assert ns["_CUDA_SOURCES"][f["path"]] == (tree / f["path"]).read_text(encoding="utf-8")


MOE_SET = ["_C.rms_norm", "_C.fused_add_rms_norm", "_C.silu_and_mul", "_C.rotary_embedding", "_moe_C.topk_softmax",
           "_moe_C.moe_align_block_size", "_moe_C.moe_sum", "_moe_C.grouped_topk", "_moe_C.topk_softplus_sqrt",
           "_moe_C.topk_sigmoid"]


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_real_moe_routing_sources_are_separate_units(version, request, tmp_path):
    """grouped_topk_kernels.cu (WARP_SIZE constant, its own vllm::moe::ScoringFunc), topk_softmax_kernels.cu
    (another ScoringFunc, the WARP_SIZE macro of cuda_compat.h) and topk_softplus_sqrt_kernels.cu (AlignedArray,
    toFloat, detail::TopkConstants again) clash in one translation unit: each is its own."""
    tree = request.getfixturevalue("vllm_" + version.replace(".", "_"))
    text, m = run(tree, tmp_path, *MOE_SET)
    units = {t["id"]: t for t in m["translation_units"]}
    assert list(units) == ["layernorm_kernels", "activation_kernels", "pos_encoding_kernels", "topk_softmax_kernels",
                           "moe_align_sum_kernels", "grouped_topk_kernels", "topk_softplus_sqrt_kernels"]
    assert units["topk_softmax_kernels"]["ops"] == ["_moe_C.topk_softmax", "_moe_C.topk_sigmoid"]
    assert units["moe_align_sum_kernels"]["ops"] == ["_moe_C.moe_align_block_size", "_moe_C.moe_sum"]
    assert units["grouped_topk_kernels"]["ops"] == ["_moe_C.grouped_topk"]
    ns = load_section(tmp_path)
    sources = {f["path"] for f in m["cuda_files"] if f["role"] == "source"}
    for tu, _, ((_, t),) in ns["_CUDA_TRANSLATION_UNITS"]:
        included = re.findall(r'#include "([^"]+)"', t)
        assert [f for f in included if f in sources] == [units[tu]["source_file"]]
        assert units[tu]["source_file"] in units[tu]["files"]
    gt = units["grouped_topk_kernels"]["files"]
    assert not any(f.endswith(("topk_softmax_kernels.cu", "topk_softplus_sqrt_kernels.cu")) for f in gt)
    grouped = next(t for tu, _, ((_, t),) in ns["_CUDA_TRANSLATION_UNITS"] if tu == "grouped_topk_kernels")
    assert ('ops.def("grouped_topk(Tensor scores, int n_group, int topk_group, int topk, bool renormalize, '
            'float routed_scaling_factor, Tensor bias, int scoring_func) -> (Tensor, Tensor)");') in grouped
    # the union of the units' closures is what is embedded, once
    assert {f for u in units.values() for f in u["files"]} == {f["path"] for f in m["cuda_files"]}
    # deterministic
    text2, m2 = run(tree, tmp_path, *MOE_SET, out="again")
    assert text2 == text and m2 == m


def test_real_cutlass_op_is_refused(vllm_0_26_0, tmp_path):
    with pytest.raises(StageError) as e:
        run(vllm_0_26_0, tmp_path, "_C.cutlass_scaled_mm")
    assert "op _C.cutlass_scaled_mm" in str(e.value) and "cutlass/" in str(e.value)


def test_cmake_reader_real(vllm_0_26_0):
    info = cmake.read(vllm_0_26_0)
    assert info.cuda_standard == "20"
    t = info.target_of("csrc/libtorch_stable/layernorm_kernels.cu")
    assert t.name == "_C_stable_libtorch"
    assert "USE_CUDA" in t.definitions and "TORCH_TARGET_VERSION=0x020B000000000000ULL" in t.definitions
    assert "USE_ROCM" not in t.definitions
    assert info.target_of("csrc/libtorch_stable/moe/topk_softmax_kernels.cu").name == "_moe_C_stable_libtorch"


def test_optional_ops_get_stubs(tmp_path):
    g = {"status": "ok", "symbol": "X", "cuda_ops": [
        {"op": op, "namespace": "_C", "name": op[3:], "call_sites": [], **extra} for op, extra in
        [("_C.my_op", {}), ("_C.cutlass_op", {"required": False}), ("_C.nope", {"required": False})]]}
    (tmp_path / "g.json").write_text(json.dumps(g))
    collect_cuda.run(tree=MINI, graph=tmp_path / "g.json", out=tmp_path / "out")
    m = read_json(tmp_path / "out" / "A4.manifest.json")
    assert m["exported_ops"] == ["_C.my_op"]
    assert sorted(x["op"] for x in m["skipped_ops"]) == ["_C.cutlass_op", "_C.nope"]
    stubs = {w["op"]: w for w in m["wrappers"] if w.get("stub")}
    assert set(stubs) == {"_C.cutlass_op", "_C.nope"}
    ns = load_section(tmp_path)
    with pytest.raises(NotImplementedError, match="cutlass/cutlass.h"):
        ns["_C_cutlass_op"](None)
    # required (the default) still fails the stage
    g["cuda_ops"][1].pop("required")
    (tmp_path / "g.json").write_text(json.dumps(g))
    with pytest.raises(StageError, match="cutlass"):
        collect_cuda.run(tree=MINI, graph=tmp_path / "g.json", out=tmp_path / "out2")


def test_an_op_only_another_platform_registers_gets_a_raising_wrapper(tmp_path):
    # cpu_only_op is registered only in csrc/cpu/ (vLLM's CPU build; e.g. bmm_cpu, which 0.33.0's MLA attention
    # calls when its impl is the CPU AMX backend's): a required op, yet no CUDA build has it
    text, m = run(MINI, tmp_path, "_C.my_op", "_C.cpu_only_op")
    assert m["exported_ops"] == ["_C.my_op"]
    (x,) = m["skipped_ops"]
    assert x["op"] == "_C.cpu_only_op" and "csrc/cpu/torch_bindings.cpp" in x["reason"]
    assert x["schema"] == "cpu_only_op(Tensor(a!) out, Tensor mat1, bool is_vnni, Tensor? scale) -> ()"
    ns = load_section(tmp_path)
    with pytest.raises(NotImplementedError, match="another platform's build"):
        ns["_C_cpu_only_op"](None, None, True, None)
    # an op no platform registers still fails the stage
    with pytest.raises(StageError, match="no registration"):
        run(MINI, tmp_path, "_C.my_op", "_C.nowhere_op", out="out2")


def test_inline_header_definition(vllm_0_26_0, tmp_path):
    """weak_ref_tensor is defined inline in ops.h, not in a .cu file."""
    _, m = run(vllm_0_26_0, tmp_path, "_C.weak_ref_tensor")
    assert m["ops"][0]["source_file"] == "csrc/libtorch_stable/ops.h"
    (tu,) = m["translation_units"]
    assert tu["id"] == "ops_h" and tu["source_file"] == "csrc/libtorch_stable/ops.h"
    ((_, _, ((_, text),)),) = load_section(tmp_path)["_CUDA_TRANSLATION_UNITS"]
    assert re.findall(r'#include "([^"]+)"', text) == ["csrc/libtorch_stable/ops.h"]


def test_the_variants_capability_decides_the_gencode(tmp_path, monkeypatch):
    """Issue 15 case 5: an sm_80 bundle compiles its ops for sm_80, on an sm_86 GPU too (same major version),
    and refuses an sm_90 GPU in one line; the arch is part of each unit's key."""
    g = json.loads(graph(tmp_path, "_C.my_op").read_text())
    (tmp_path / "A1.graph.json").write_text(json.dumps({**g, "variant": {"cuda_capability": 80}}))
    collect_cuda.run(tree=MINI, graph=tmp_path / "A1.graph.json", out=tmp_path / "out")
    m = read_json(tmp_path / "out" / "A4.manifest.json")
    assert m["flags"]["arch"] == "80" and m["flags"]["gencode"] == ["-gencode=arch=compute_80,code=sm_80"]
    ns, calls, _ = _fake_build(tmp_path, monkeypatch)
    with pytest.raises(RuntimeError, match=r"built for sm_80 .* this sm_90 GPU: rebuild the bundle with "
                                           r"variant=\{'cuda_capability': 90\}"):
        ns["_build_cuda_extension_if_needed"]()
    assert calls == []
    ns["torch"].cuda.get_device_capability = lambda: (8, 6)
    ns["_build_cuda_extension_if_needed"]()
    assert calls and all(c["build_directory"].endswith("_sm80") for c in calls)
    assert all(c["extra_cuda_cflags"][-1] == "-gencode=arch=compute_80,code=sm_80" for c in calls)
    _, m90 = run(MINI, tmp_path, "_C.my_op", out="out90")
    assert m90["flags"]["gencode"] == ["-gencode=arch=compute_90,code=sm_90"] and _keys(m90) != _keys(m)


def test_companions_of_the_link_closure_in_0_34_0(vllm_0_34_0, tmp_path):
    """The GPU's failure in the 0.34.0 zoo (every MoE layer, DeepseekV2): a unit's library lacked a symbol another
    source of its CMake target defines.
    - topk_softplus_sqrt.cu calls a launcher its header declares `extern template` (through a macro given
      `extern`); the nine topk_softplus_sqrt_<dtype>_<index>.cu units only instantiate it;
    - topk.cu calls top_k_per_row_decode, which ops.h declares and sampler.cu defines.
    Each joins the unit's library; units whose code has bodies (the dispatch unit itself, sampler.cu's
    own unit) get no companions of this kind."""
    _, m = run(vllm_0_34_0, tmp_path, "_moe_C.topk_softplus_sqrt", "_C.persistent_topk", "_C.top_k_per_row_decode")
    units = {u["id"]: u["companion_sources"] for u in m["translation_units"]}
    assert units["topk_softplus_sqrt"] == [f"csrc/moe/topk_softplus_sqrt_{d}_{i}.cu" for d in ("f32", "f16", "bf16")
                                           for i in ("int32", "uint32", "int64")]
    assert units["topk"] == ["csrc/sampler.cu"]
    assert units["sampler"] == []


@pytest.mark.parametrize("text, only", [
    ('#include "k.cuh"\nnamespace vllm::moe {\nINSTANTIATE(int64_t, float)\n}  // namespace vllm::moe\n', True),
    ('#include "k.cuh"\ntemplate void launch<float>(const float*, int);\n', True),
    ('#include "k.cuh"\n#define X(T) \\\n  template void launch<T>(const T*, int);\nX(float)\n', True),
    ('#include "k.cuh"\nvoid dispatch(int n) { launch<float>(nullptr, n); }\n', False),
    ('#include "k.cuh"\n', False),
])
def test_instantiation_only_units(text, only):
    from bundler_lib.cuda.companions import _instantiates_only
    assert _instantiates_only(text) is only
