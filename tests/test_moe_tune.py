"""`<bundle>.py tune-moe` (bundler_lib/example/moe_tune.py) on CPU: vLLM's search space and pruning, the choice of
the fastest under a budget with an injected timer and clock, the shapes read from the bundle's own lookups, the file
written in vLLM's format, and the loading path: the real 0.26.0 get_moe_configs, bound by A5 to the bundle cache,
finds the file tune-moe wrote for the same E, N and device. The CUDA-event timer itself runs only on a GPU."""

import ast
import functools
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from bundler_lib import bind
from bundler_lib.artifacts import read_json
from bundler_lib.example import moe_tune as mt
from test_collect_triton_data import MOE, QWEN3_30B, _bind_inputs, _graph, _nodes

CODER = {"E": 160, "N": 2560, "H": 6144, "top_k": 8}       # Qwen3-Coder-480B-A35B, tp 1
A3B = {"E": 128, "N": 768, "H": 2048, "top_k": 8}          # Qwen3-30B-A3B, tp 1
SPACE = mt._bundle_search_space(mt._BUNDLE_MOE_SPACE)


def _cfg(bm=16, bn=64, bk=128, group=1, warps=4, stages=3):
    return {"BLOCK_SIZE_M": bm, "BLOCK_SIZE_N": bn, "BLOCK_SIZE_K": bk, "GROUP_SIZE_M": group,
            "num_warps": warps, "num_stages": stages}


def test_search_space_is_vllms_cuda_space():
    assert len(SPACE) == 5 * 4 * 3 * 4 * 2 * 4 == 1920
    assert list(SPACE[0]) == ["BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M", "num_warps",
                              "num_stages"]
    assert SPACE[0] == _cfg(16, 32, 64, 1, 4, 2) and SPACE[-1] == _cfg(256, 256, 256, 64, 8, 5)
    assert len({tuple(c.values()) for c in SPACE}) == 1920


def test_prune_keeps_what_vllm_keeps():
    m1 = mt._bundle_moe_prune(SPACE, 1, CODER)          # 8 routed rows: only the smallest tiles
    assert {c["BLOCK_SIZE_M"] for c in m1} == {16} and {c["GROUP_SIZE_M"] for c in m1} == {1}
    # one stage's tiles within 64 KiB: BLOCK_K x (16 + BLOCK_N) x 2 bytes
    assert all(c["BLOCK_SIZE_K"] * (16 + c["BLOCK_SIZE_N"]) * 2 <= 65536 for c in m1)
    assert _cfg(16, 64, 256) in m1 and _cfg(16, 128, 256) not in m1
    assert len(m1) == 9 * 2 * 4                          # (BLOCK_N, BLOCK_K) pairs within 64 KiB x warps x stages
    big = mt._bundle_moe_prune(SPACE, 4096, CODER)       # 32768 rows, n >= 2048 on both GEMMs: a large GEMM
    assert min(c["BLOCK_SIZE_M"] for c in big) == 64 and min(c["BLOCK_SIZE_N"] for c in big) == 64
    assert _cfg(64, 64, 64, 64) in big                   # GROUP_SIZE_M x BLOCK_SIZE_M within the rows
    edge = mt._bundle_moe_prune(SPACE, 256, {"E": 8, "N": 1024, "H": 2048, "top_k": 8})   # 2048 rows, n 2048
    assert min(c["BLOCK_SIZE_M"] for c in edge) == 64 and min(c["BLOCK_SIZE_N"] for c in edge) == 64
    assert min(c["BLOCK_SIZE_M"] for c in mt._bundle_moe_prune(SPACE, 255, {"E": 8, "N": 1024, "H": 2048,
                                                                              "top_k": 8})) == 16
    tiny = mt._bundle_moe_prune(SPACE, 64, {"E": 4, "N": 16, "H": 64, "top_k": 2})   # only w13 (n 32, k 64) keeps any
    assert max(c["BLOCK_SIZE_N"] for c in tiny) == 64 and {c["BLOCK_SIZE_K"] for c in tiny} == {64}
    m64 = mt._bundle_moe_prune(SPACE, 64, A3B)           # 512 rows
    assert _cfg(64, 64, 64, 16) not in m64 and _cfg(32, 64, 64, 16) in m64   # 16 x 64 > 512, 16 x 32 = 512


def test_prune_is_the_union_of_the_two_gemms():
    odd = {"E": 8, "N": 96, "H": 320, "top_k": 2}        # reductions: w13 over H = 320, w2 over N = 96
    keep = mt._bundle_moe_prune(SPACE, 1024, odd)
    assert not mt._bundle_moe_keep(_cfg(64, 64, 64), 2048, 320, 96)    # 96 is no multiple of 64: w2 drops it
    assert _cfg(64, 64, 64) in keep                                     # 320 is: w13 keeps it, so it stays
    assert _cfg(64, 64, 128) not in keep                                # 128 divides neither


def test_candidates_time_the_baseline_first_then_the_whole_pruned_space():
    base = dict(_cfg(16, 64, 128, 1, 4, 4), SPLIT_K=1)
    cands = mt._bundle_moe_candidates(SPACE, 1, CODER, base)
    assert cands[0] == base and len(cands) == 1 + len(mt._bundle_moe_prune(SPACE, 1, CODER))
    assert cands == mt._bundle_moe_candidates(SPACE, 1, CODER, base)   # the shuffle is fixed per M
    assert cands[1:] != mt._bundle_moe_prune(SPACE, 1, CODER)          # ... and spreads a cut sweep over the space
    assert mt._bundle_moe_candidates(SPACE, 1, CODER, None) == cands[1:]


class _Clock:
    def __init__(self, step):
        self.t, self.step = 0.0, step

    def __call__(self):
        return self.t

    def tick(self):
        self.t += self.step


class _TooBig(Exception):
    pass


def _timer(clock, target_bm):
    """A stand-in for the CUDA timer: fastest at BLOCK_SIZE_M = target_bm(M), BLOCK_SIZE_N 64, 4 warps; 8 warps with
    5 stages never fit; each timing costs one clock step."""
    def time_us(batch, c):
        clock.tick()
        if c["num_warps"] == 8 and c["num_stages"] == 5:
            raise _TooBig
        return (100.0 + abs(c["BLOCK_SIZE_M"] - target_bm(batch)) + abs(c["BLOCK_SIZE_N"] - 64) / 8
                + (c["num_warps"] == 8) + c["num_stages"] / 100 + c["BLOCK_SIZE_K"] / 1000 + c["GROUP_SIZE_M"] / 1e4)
    return time_us


def test_fastest_is_the_minimum_and_skips_what_does_not_fit():
    clock = _Clock(1.0)
    cands = [_cfg(16, 64, 64, 1, 8, 5), _cfg(32), _cfg(16, 64, 64, 1, 4, 2), _cfg(16, 128)]
    best, us, first, timed, skipped = mt._bundle_fastest(cands, lambda c: _timer(clock, lambda m: 16)(1, c),
                                                             float("inf"), clock, (_TooBig,))
    assert best == _cfg(16, 64, 64, 1, 4, 2) and (first, timed, skipped) == (None, 3, 1)
    assert us == pytest.approx(100.0 + 0.02 + 0.064 + 0.0001)
    with pytest.raises(ZeroDivisionError):      # anything else is an error, not a skip
        mt._bundle_fastest(cands, lambda c: 1 / 0, float("inf"), clock, (_TooBig,))


def test_fastest_stops_at_the_deadline_but_times_one():
    clock = _Clock(1.0)
    cands = [_cfg(32), _cfg(16), _cfg(64)]
    best, us, first, timed, _ = mt._bundle_fastest(cands, lambda c: _timer(clock, lambda m: 16)(1, c), 0.0,
                                                       clock, ())
    assert (best, timed, first) == (_cfg(32), 1, us)
    clock = _Clock(1.0)
    best, _, _, timed, _ = mt._bundle_fastest(cands, lambda c: _timer(clock, lambda m: 16)(1, c), 2.0, clock, ())
    assert (best, timed) == (_cfg(16), 2)


def test_tune_keeps_the_fastest_per_batch_size_with_one_line_each():
    clock, lines = _Clock(0.001), []
    target = {1: 16, 64: 32, 1024: 128}
    base = dict(_cfg(64, 64, 64, 1, 4, 3), SPLIT_K=1)
    best = mt._bundle_moe_tune(A3B, [1, 64, 1024], _timer(clock, target.get), float("inf"), clock,
                               lambda m: base, lines.append, (_TooBig,))
    assert list(best) == [1, 64, 1024]
    for m, bm in target.items():
        assert best[m] == _cfg(bm, 64, 64, 1, 4, 2) and list(best[m]) == list(_cfg())
    assert len(lines) == 3 and all(ln.startswith(f"tune-moe E=128,N=768 M={m}: ") for ln, m in zip(lines, target))
    assert "with BLOCK_SIZE_M=32,BLOCK_SIZE_N=64,BLOCK_SIZE_K=64,GROUP_SIZE_M=1,num_warps=4,num_stages=2" in lines[1]
    assert lines[1].startswith("tune-moe E=128,N=768 M=64: 100.1 us with ")
    assert lines[1].endswith("; 132.1 us with the config before)")        # the baseline: BLOCK_SIZE_M 64, stages 3
    n1 = len(mt._bundle_moe_prune(SPACE, 1, A3B))
    assert f"(timed {n1 + 1 - n1 // 8} of {n1 + 1} configs, {n1 // 8} skipped" in lines[0]


def test_tune_under_a_budget_shares_it_and_keeps_the_baseline_when_nothing_beats_it():
    clock, lines = _Clock(1.0), []
    base = _cfg(16, 64, 64, 1, 4, 2)        # already the optimum for target 16
    best = mt._bundle_moe_tune(A3B, [1, 2, 4], _timer(clock, lambda m: 16), 6.0, clock, lambda m: base,
                               lines.append, (_TooBig,))
    assert all(b == base for b in best.values())
    assert all(ln.endswith("; the config it used before)") for ln in lines)
    assert clock.t <= 6.0 + 1.0 and len(lines) == 3      # each size its share (2 s), one timing over at most


def test_no_config_fits_is_one_clear_error():
    def never(batch, c):
        raise _TooBig
    with pytest.raises(RuntimeError, match=r"^tune-moe: M=1: none of the \d+ configs tried fits this GPU$"):
        mt._bundle_moe_tune(A3B, [1], never, float("inf"), _Clock(0.0), lambda m: None, print, (_TooBig,))


def test_written_file_is_vllms_format(tmp_path):
    configs = {64: _cfg(32), 1: dict(_cfg(16), SPLIT_K=1)}
    path = mt._bundle_write_configs(str(tmp_path / "d"), "E=8,N=64,device_name=X.json", configs, "3.6.0")
    text = Path(path).read_text()
    assert path == str(tmp_path / "d" / "E=8,N=64,device_name=X.json") and text.endswith("}\n")
    assert text.startswith('{\n    "triton_version": "3.6.0",\n    "1": {\n        "BLOCK_SIZE_M": 16,')
    assert list(json.loads(text)) == ["triton_version", "1", "64"]
    assert json.loads(text)["1"]["SPLIT_K"] == 1
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["E=8,N=64,device_name=X.json"]  # no temp file left


def _fake_bundle():
    """Globals of a bundle with vLLM's lookup names and signatures: try_get_optimal_moe_config calls
    get_moe_configs by its global name, as the inlined code does."""
    g = {}
    exec(
        "def get_moe_configs(E, N, dtype, block_n=None, block_k=None):\n"
        "    return None\n"
        "def try_get_optimal_moe_config(w1_shape, w2_shape, top_k, dtype, M, block_shape=None):\n"
        "    E, _, N = w2_shape\n"
        "    configs = get_moe_configs(E, N, dtype, 0, 0)\n"
        "    return {'BLOCK_SIZE_M': 16 if M <= 32 else 64, 'from': (E, N, w1_shape[2], top_k, M)}\n", g)
    return g


def test_shapes_are_the_lookups_the_example_makes():
    g = _fake_bundle()

    def example():   # two calls of one layer (w13 and w2 share the lookup), one of another shape
        g["try_get_optimal_moe_config"]((160, 5120, 6144), (160, 6144, 2560), 8, None, 77)
        g["try_get_optimal_moe_config"]((160, 5120, 6144), (160, 6144, 2560), 8, None, M=77)
        g["try_get_optimal_moe_config"]((128, 1536, 2048), (128, 2048, 768), 8, None, 77)

    own = g["get_moe_configs"]
    shapes = mt._bundle_moe_shapes(g, example)
    assert g["get_moe_configs"] is own                  # restored
    assert [k for k, _ in shapes] == [(160, 2560, None, 0, 0), (128, 768, None, 0, 0)]
    assert [mt._bundle_moe_shape(k, c) for k, c in shapes] == [CODER, A3B]
    baseline = mt._bundle_moe_baseline(g, shapes[0][1])
    assert baseline(4096)["from"] == (160, 2560, 6144, 8, 4096) and baseline(8)["BLOCK_SIZE_M"] == 16


# ----------------------------------------------------------------------------- the loading path, real 0.26.0

PLATFORM_UTILS = "vllm/utils/platform_utils.py"


def _vllm_function(tree: Path, rel: str, name: str, env: dict):
    mod = ast.parse((tree / rel).read_text())
    [node] = [n for n in mod.body if getattr(n, "name", None) == name]
    exec(compile(ast.Module([node], []), str(tree / rel), "exec"), env)
    return env[name]


@pytest.fixture
def bound_moe(vllm_0_26_0, tmp_path, monkeypatch):
    """vLLM 0.26.0's get_config_file_name and get_moe_configs through A2, A3 (Qwen3-30B-A3B's files embedded) and
    A5, in a bundle cache under tmp_path, with vLLM's own get_device_name_as_file_name over a settable GPU name."""
    nodes = _nodes(vllm_0_26_0, MOE, ["get_config_file_name", "get_moe_configs"])
    d = _bind_inputs(vllm_0_26_0, _graph(vllm_0_26_0, nodes), read_json(QWEN3_30B), tmp_path / "in")
    bind.run(inputs=d, out=tmp_path / "out")
    gpu = ["NVIDIA H100 80GB HBM3"]
    platform = types.SimpleNamespace(get_device_name=lambda device_id=0: gpu[0])
    name_of = _vllm_function(vllm_0_26_0, PLATFORM_UTILS, "get_device_name_as_file_name",
                             {"re": re, "cache": functools.cache, "vllm": None})

    class _Log:
        def info_once(self, *a, **k):
            pass

        warning_once = info_once

    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))    # what get_device_name_as_file_name imports
    monkeypatch.setitem(sys.modules, "vllm.platforms", types.SimpleNamespace(current_platform=platform))
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path / "cache"))
    g = {"__name__": "bound", "logger": _Log(), "get_device_name_as_file_name": name_of,
         "envs": types.SimpleNamespace(VLLM_BATCH_INVARIANT=False, VLLM_TUNED_CONFIG_FOLDER=None)}
    exec(compile((tmp_path / "out" / "A5.module.py").read_text(), "A5.module.py", "exec"), g)

    def set_gpu(name):
        gpu[0] = name
        name_of.cache_clear()
        g["get_moe_configs"].cache_clear()
    return g, set_gpu


def _tune_and_write(g, key, configs):
    name = g["get_config_file_name"](key[0], key[1], key[2], None)
    return mt._bundle_write_configs(mt._bundle_moe_folder(g["get_moe_configs"], key, name), name, configs, "3.6.0")


def test_written_file_is_what_the_bundles_get_moe_configs_loads(bound_moe, tmp_path):
    g, set_gpu = bound_moe
    tuned = {1: _cfg(16, 64, 128, 1, 4, 4), 4096: _cfg(128, 128, 64, 16, 8, 3)}
    assert g["get_moe_configs"](160, 2560, None) is None            # vLLM 0.26.0 has no file for this shape
    path = _tune_and_write(g, (160, 2560, None, 0, 0), tuned)
    assert os.path.basename(path) == "E=160,N=2560,device_name=NVIDIA_H100_80GB_HBM3.json"
    assert Path(path).parent == Path(g["_bundle_data_dir"]("vllm/model_executor/layers/fused_moe")) / "configs"
    assert str(tmp_path / "cache") in path                             # the bundle cache, not beside the bundle
    g["get_moe_configs"].cache_clear()
    assert g["get_moe_configs"](160, 2560, None) == tuned               # by device name, E and N, as vLLM loads it
    assert g["get_moe_configs"](160, 1280, None) is None and g["get_moe_configs"](160, 2560, "fp8_w8a8") is None
    set_gpu("NVIDIA A100-SXM4-80GB")
    assert g["get_moe_configs"](160, 2560, None) is None                # another GPU does not pick it up


def test_tuned_file_replaces_a_shipped_one_for_the_same_gpu(bound_moe):
    """Qwen3-30B-A3B's H200 file ships with vLLM (embedded by A3): tuning on an H200 writes over the cache's copy of
    it, under the name vLLM gives every H200 (NVIDIA_H200), and the bundle loads the new one."""
    g, set_gpu = bound_moe
    set_gpu("NVIDIA H200 NVL")
    shipped = g["get_moe_configs"](128, 768, None)
    assert shipped and shipped[1] != _cfg(32)
    path = _tune_and_write(g, (128, 768, None, 0, 0), {1: _cfg(32)})
    assert os.path.basename(path) == "E=128,N=768,device_name=NVIDIA_H200.json"
    g["get_moe_configs"].cache_clear()
    assert g["get_moe_configs"](128, 768, None) == {1: _cfg(32)}


def test_embedded_helpers_compile_and_name_only_what_they_define():
    text = mt.source()
    mod = ast.parse(text)
    defined = {n.name for n in mod.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    defined |= {t.id for n in mod.body if isinstance(n, ast.Assign) for t in n.targets}
    assert defined == {h.__name__ for h in mt.HELPERS} | {"_BUNDLE_MOE_SPACE", "_BUNDLE_MOE_BATCH_SIZES",
                                                            "_BUNDLE_MOE_NEEDS"}
    assert all(n.startswith("_bundle_") or n.startswith(("_BUNDLE_", "_Bundle")) for n in defined)
    ns = {}
    exec(compile(text, "helpers", "exec"), ns)
    assert ns["_BUNDLE_MOE_SPACE"] == mt._BUNDLE_MOE_SPACE


def _moe_bundle(tmp_path):
    """The globals of a bundle with tune-moe's helpers (their embedded text) and a fused-MoE lookup reading
    tmp_path/configs, whose example looks up Qwen3-30B-A3B's shape."""
    g = {"__name__": "bundle", "FOLDER": str(tmp_path / "configs")}
    exec(mt.source(), g)
    exec(
        "import json, os\n"
        "_config = None\n"
        "def get_config():\n    return _config\n"
        "def get_config_file_name(E, N, dtype, block_shape=None):\n"
        "    return f'E={E},N={N},device_name=NVIDIA_H100_80GB_HBM3.json'\n"
        "def get_moe_configs(E, N, dtype, block_n=None, block_k=None):\n"
        "    path = os.path.join(FOLDER, get_config_file_name(E, N, dtype))\n"
        "    if os.path.exists(path):\n"
        "        return {int(k): v for k, v in json.load(open(path)).items() if k != 'triton_version'}\n"
        "def try_get_optimal_moe_config(w1_shape, w2_shape, top_k, dtype, M, block_shape=None):\n"
        "    E, _, N = w2_shape\n"
        "    return get_config() or (get_moe_configs(E, N, dtype, 0, 0) or {}).get(M) or dict(\n"
        "        BLOCK_SIZE_M=64, BLOCK_SIZE_N=64, BLOCK_SIZE_K=64, GROUP_SIZE_M=1, num_warps=4, num_stages=3)\n"
        "def invocation_example(small=False, **kw):\n"
        "    try_get_optimal_moe_config((128, 1536, 2048), (128, 2048, 768), 8, None, 16)\n", g)
    return g


def test_tune_moe_end_to_end_with_a_stand_in_timer(tmp_path, monkeypatch, capsys):
    """`_bundle_tune_moe` as the bundle runs it, with the CUDA timer replaced: the example's lookups give the
    shapes, each is tuned and its file written where the bundle's get_moe_configs finds it; one line per batch size
    and one per file."""
    import torch

    g = _moe_bundle(tmp_path)
    clock = _Clock(0.0)
    from triton.runtime.errors import OutOfResources
    stand_in = _timer(clock, lambda m: 16 if m < 64 else 64)

    def time_us(batch, c):      # what does not fit raises what Triton raises
        try:
            return stand_in(batch, c)
        except _TooBig:
            raise OutOfResources(300000, 232448, "shared memory") from None

    g["_bundle_moe_cuda_timer"] = lambda g_: time_us
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = types.SimpleNamespace(batch_sizes=[1, 256], budget_s=None)
    assert g["_bundle_tune_moe"](args, "X.py", g) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in out] == ["tune-moe E=128,N=768 M=1", "tune-moe E=128,N=768 M=256",
                                               "tune-moe"]
    path = tmp_path / "configs" / "E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json"
    assert out[-1].startswith(f"tune-moe: wrote {path} (2 batch sizes, ")
    loaded = g["get_moe_configs"](128, 768, None)
    assert loaded == {1: _cfg(16, 64, 64, 1, 4, 2), 256: _cfg(64, 64, 64, 1, 4, 2)}
    assert g["try_get_optimal_moe_config"]((128, 1536, 2048), (128, 2048, 768), 8, None, 256) == loaded[256]
    assert json.loads(path.read_text())["triton_version"] == __import__("triton").__version__


def test_tune_moe_where_nothing_fits_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    import torch
    from triton.runtime.errors import OutOfResources

    def never(batch, c):
        raise OutOfResources(300000, 232448, "shared memory")

    g = _moe_bundle(tmp_path)
    g["_bundle_moe_cuda_timer"] = lambda g_: never
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert g["_bundle_tune_moe"](types.SimpleNamespace(batch_sizes=[1], budget_s=None), "X.py", g) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"X\.py tune-moe: M=1: none of the \d+ configs tried fits this GPU", err[-1]) and len(err) == 1
    assert not (tmp_path / "configs").exists()


def test_a_config_tritons_compiler_fails_on_is_skipped_any_other_runtime_error_is_not():
    ns = {}
    exec(compile("def make_ttgir(mod):\n    raise RuntimeError('PassManager::run failed')\n",
                 "/venv/lib/python3.12/site-packages/triton/backends/nvidia/compiler.py", "exec"), ns)
    timed = mt._bundle_moe_compile_failures(lambda m, c: ns["make_ttgir"](c) if c["BLOCK_SIZE_M"] == 64 else 1.0)
    with pytest.raises(mt._BundleMoeCompileFailed):
        timed(1, _cfg(64))
    clock = _Clock(1.0)
    best, _, _, timed_n, skipped = mt._bundle_fastest([_cfg(16), _cfg(64), _cfg(32)], lambda c: timed(1, c),
                                                           float("inf"), clock, (mt._BundleMoeCompileFailed,))
    assert (timed_n, skipped) == (2, 1) and best in (_cfg(16), _cfg(32))

    def not_triton(m, c):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    with pytest.raises(RuntimeError, match="illegal memory"):
        mt._bundle_moe_compile_failures(not_triton)(1, _cfg(16))
