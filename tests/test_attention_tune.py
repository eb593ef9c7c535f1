"""tune-attention's helpers (bundler_lib/example/attention_tune.py), without a GPU: which launch constants a prefill
launch of vLLM's unified attention kernel gets, how the grid follows them, how the fastest is chosen and where it
is read from. The relaunch itself runs against SDPA in Triton's interpreter in tests/test_attention_speed.py."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bundler_lib.example import attention_tune as at
from tests.stage_steps import build_bundle
from tests.triton_interpreter import PREAMBLE

QWEN3_CONFIG = Path(__file__).resolve().parents[1] / "models" / "Qwen--Qwen3-30B-A3B" / "config.json"

A = {"BLOCK_M": 64, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 2}
B = {"BLOCK_M": 128, "TILE_SIZE": 64, "num_warps": 8, "num_stages": 3}


def _kw(tokens=4096, seqs=1, qpk=4, td=False, block=16, is_3d=False, device="cpu"):
    q = torch.empty(tokens, 8 * qpk, 128, dtype=torch.bfloat16)
    if device != "cpu":  # a stand-in with a CUDA device: the lookup reads only device, dtype and shape
        q = SimpleNamespace(device=SimpleNamespace(type=device, index=0), dtype=q.dtype, shape=q.shape)
    return {"query_ptr": q, "num_queries_per_kv": qpk, "num_seqs": seqs, "USE_TD": td, "BLOCK_SIZE": block,
            "HEAD_SIZE": 128, "IS_3D": is_3d, "BLOCK_M": 16, "BLOCK_Q": 16 // qpk, "TILE_SIZE": 32}


def test_relaunch_derives_block_q_and_grid_as_vllm():
    grid, kw = at._bundle_attn_relaunch((4096 // 4 + 2, 8), _kw(seqs=2), A)
    assert grid == (4096 // 16 + 2, 8)
    assert (kw["BLOCK_M"], kw["BLOCK_Q"], kw["TILE_SIZE"], kw["num_warps"], kw["num_stages"]) == (64, 16, 32, 4, 2)
    assert at._bundle_attn_relaunch((1, 8), _kw(qpk=32), A)[1]["BLOCK_Q"] == 2
    assert at._bundle_attn_relaunch((1, 8), _kw(qpk=128), A) is None  # 64 rows hold no token of 128 heads
    assert at._bundle_attn_relaunch((1, 8), _kw(td=True, block=16), A) is None  # a tile the block does not divide
    assert at._bundle_attn_relaunch((1, 8), _kw(td=True, block=64), A) is not None


def test_pick_takes_the_largest_token_count_not_above():
    table = {512: A, 4096: B}
    assert at._bundle_attn_pick(table, 100) is None
    assert at._bundle_attn_pick(table, 512) == A and at._bundle_attn_pick(table, 4095) == A
    assert at._bundle_attn_pick(table, 32768) == B


def test_candidates_start_with_vllms_and_hold_a_token_per_program():
    cands = at._bundle_attn_candidates(at._BUNDLE_ATTN_SPACE, 32)
    assert cands[0] is None and len(cands) > 1
    assert all(c["BLOCK_M"] >= 32 for c in cands[1:])
    assert len(at._bundle_attn_candidates(at._BUNDLE_ATTN_SPACE, 4)) == 1 + 4 * 3 * 2 * 3


class _Skip(Exception):
    pass


def test_fastest_times_until_the_deadline_and_skips_what_does_not_fit():
    times = {None: 5.0, 1: 2.0, 2: None, 3: 1.0}
    clock = iter([0, 0, 0, 0, 0, 100]).__next__

    def time_ms(c):
        if times[c] is None:
            raise _Skip
        return times[c]
    best, ms, first, timed, skipped = at._bundle_fastest([None, 1, 2, 3], time_ms, 50, clock, (_Skip,))
    assert (best, ms, first, timed, skipped) == (3, 1.0, 5.0, 3, 1)
    # past the deadline after the first: vLLM's own launch stays
    best, ms, first, timed, _ = at._bundle_fastest([None, 1], time_ms, 0, lambda: 10, (_Skip,))
    assert (best, ms, first, timed) == (None, 5.0, 5.0, 1)


def test_timer_stops_a_candidate_after_one_launch_far_slower_than_the_fastest(monkeypatch):
    """The CUDA timer with a test double for the GPU (a clock the fake kernel advances by its launch's time): vLLM's
    launch and a close candidate get 10 timed launches each; one whose first timed launch is over 1.5x the fastest
    median so far is stopped there, its time that launch."""
    clock, launches = [0.0], []

    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self):
            self.t = clock[0]

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return end.t - self.t

    def kernel(grid):
        def launch(**kw):
            launches.append(kw["BLOCK_M"])
            clock[0] += {16: 10.0, 64: 12.0, 128: 20.0}[kw["BLOCK_M"]]
            kw["output_ptr"].fill_(1.0)
        return launch

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    kw = dict(_kw(), output_ptr=torch.zeros(4))
    proxy = SimpleNamespace(kernel=type("Kernel", (), {"__getitem__": lambda self, grid: kernel(grid)})())
    time_ms = at._bundle_attn_cuda_timer(proxy, (1024 + 1, 8), kw)
    launches.clear()
    assert time_ms(None) == 10.0 and launches == [16] * 13  # output check, 2 warm-ups, 10 timed
    launches.clear()
    assert time_ms(A) == 12.0 and launches == [64] * 13  # within 1.5x: timed in full
    launches.clear()
    assert time_ms(B) == 20.0 and launches == [128] * 4  # over 1.5x the fastest after one timed launch: stopped


def test_lookup_reads_the_tuned_file_by_gpu_and_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    kw = _kw(tokens=8192, seqs=2, device="cuda")
    name = at._bundle_attn_file_name("NVIDIA Test GPU", kw)
    assert name == "unified_attention,device_name=NVIDIA_Test_GPU,queries_per_kv=4,head_size=128,dtype=bfloat16.json"
    assert at._bundle_attn_lookup({}, kw) is None  # no file, nothing shipped: vLLM's launch
    path = at._bundle_write_configs(str(tmp_path / "attention-configs"), name, {512: A, 4096: B}, "3.6.0")
    assert json.loads(open(path).read()) == {"triton_version": "3.6.0", "512": A, "4096": B}
    assert at._bundle_attn_lookup({}, kw) == B  # 4096 tokens per sequence
    assert at._bundle_attn_lookup({}, _kw(tokens=4096, seqs=8, device="cuda")) == A  # 512 per sequence
    assert at._bundle_attn_lookup({}, _kw(tokens=64, seqs=64, device="cuda")) is None  # decode-shaped
    assert at._bundle_attn_lookup({}, _kw(tokens=8192, qpk=8, device="cuda")) is None  # another shape
    assert at._bundle_attn_lookup({}, _kw(tokens=8192)) is None  # not on a GPU (the interpreter)
    monkeypatch.setenv("VLLM_BUNDLE_ATTENTION_TUNED", "0")
    assert at._bundle_attn_lookup({}, kw) is None
    monkeypatch.delenv("VLLM_BUNDLE_ATTENTION_TUNED")
    open(path, "w").write("{not json")
    with pytest.raises(RuntimeError, match=r"NVIDIA_Test_GPU.*not a tune-attention file.*delete it, or run tune-attention"):
        at._bundle_attn_lookup({}, kw)


def test_the_shipped_table_is_the_default_and_a_tuned_file_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    name = at._bundle_attn_file_name("NVIDIA H100 80GB HBM3", _kw())
    shipped = at._BUNDLE_ATTN_SHIPPED[name]
    for tokens in (512, 4096, 32768):
        assert at._bundle_attn_lookup({}, _kw(tokens=tokens, device="cuda")) == shipped[tokens]
    assert at._bundle_attn_lookup({}, _kw(tokens=256, device="cuda")) is None
    at._bundle_write_configs(str(tmp_path / "attention-configs"), name, {256: A}, "3.6.0")
    assert at._bundle_attn_lookup({}, _kw(tokens=32768, device="cuda")) == A
    # every shipped table names its measurement, and holds constants the launch can take
    from bundler_lib.example import attention_configs
    assert set(attention_configs.MEASURED) == set(attention_configs.SHIPPED)
    repo = Path(__file__).resolve().parents[1]
    assert all((repo / text.split(":")[0]).is_file() for text in attention_configs.MEASURED.values())
    for table in attention_configs.SHIPPED.values():
        for c in table.values():
            assert set(c) == set(at._BUNDLE_ATTN_SPACE) and all(c[k] in at._BUNDLE_ATTN_SPACE[k] for k in c)


class _Kernel:
    def __init__(self):
        self.launches, self.fn = [], "the JIT function"

    def __getitem__(self, grid):
        return lambda **kw: self.launches.append((grid, kw))


def test_the_stand_in_relaunches_prefill_only_and_passes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BUNDLE_CACHE", str(tmp_path))
    kernel = _Kernel()
    proxy = at._BundleAttentionLaunch(kernel)
    assert proxy.fn == "the JIT function"  # attributes are the kernel's
    proxy[(1026, 8)](**_kw())  # no file, not forced: vLLM's launch unchanged
    assert kernel.launches[-1][0] == (1026, 8) and kernel.launches[-1][1]["BLOCK_M"] == 16
    proxy.forced, proxy.recorded = A, []
    proxy[(1026, 8)](**_kw())
    assert kernel.launches[-1][0] == (4096 // 16 + 1, 8) and kernel.launches[-1][1]["BLOCK_M"] == 64
    assert len(proxy.recorded) == 1 and proxy.recorded[0][0] == (1026, 8)
    proxy[(64, 8, 16)](**_kw(is_3d=True))  # decode (3D): never changed, never recorded
    assert kernel.launches[-1][0] == (64, 8, 16) and kernel.launches[-1][1]["BLOCK_M"] == 16
    assert len(proxy.recorded) == 1


def test_source_rebinds_the_kernel_after_its_helpers():
    src = at.source()
    assert src.rstrip().endswith("kernel_unified_attention = _BundleAttentionLaunch(kernel_unified_attention)")
    ns = {"kernel_unified_attention": _Kernel()}
    exec(compile(src, "attention_tune", "exec"), ns)
    assert isinstance(ns["kernel_unified_attention"], ns["_BundleAttentionLaunch"])
    assert at.reaches({"triton_kernels": [{"name": "kernel_unified_attention", "kind": "kernel"}]})
    assert not at.reaches({"triton_kernels": [{"name": "fused_moe_kernel", "kind": "kernel"}]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message is checked where there is no GPU")
@pytest.mark.parametrize("kernel", [False, True])
def test_tune_attention_refuses_in_one_line(tmp_path, kernel):
    """A bundle without the kernel, and one with it on a machine without a GPU: one line, exit 2, nothing written."""
    from bundler_lib.example import cli
    bundle = tmp_path / "Attn.py"
    graph = {"triton_kernels": [{"name": "kernel_unified_attention", "kind": "kernel"}] if kernel else []}
    record = {"symbol": "X", "template": "module", "workload": {"kind": "prefill"}}
    bundle.write_text("kernel_unified_attention = object()\n\n\n"
                      "def invocation_example(small=False, workload=None, tokens=None, batch=None, context=None):\n"
                      "    return {}\n" + cli.source(graph, record))
    res = subprocess.run([sys.executable, str(bundle), "tune-attention", "--budget-s", "10"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env={**os.environ, "VLLM_BUNDLE_CACHE": str(tmp_path)})
    ours = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("Attn.py")]
    assert res.returncode == 2 and res.stdout == "" and len(ours) == 1, res.stderr
    assert ours[0] == ("Attn.py tune-attention: no CUDA GPU (torch.cuda.is_available() is False): tuning times the "
                       "kernel on the GPU it is for; run it there" if kernel else
                       "Attn.py tune-attention: this bundle has no vLLM unified attention kernel: build one whose "
                       "symbol reaches the TRITON_ATTN backend"), res.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["Attn.py"]


_MIXED = PREAMBLE + textwrap.dedent('''
    import importlib.util, json, sys
    import torch
    spec = importlib.util.spec_from_file_location("ua_bundle", sys.argv[1])
    m = importlib.util.module_from_spec(spec); sys.modules["ua_bundle"] = m; spec.loader.exec_module(m)
    torch.manual_seed(0)
    H, KV, D, bs = 4, 2, 32, 16
    q_lens, ctx = [5, 19, 1], [16, 7, 30]   # new tokens after cached context; the last sequence decodes
    seq = [a + b for a, b in zip(q_lens, ctx)]
    blocks = [-(-s // bs) for s in seq]
    k_cache = torch.randn(sum(blocks) + 1, bs, KV, D, dtype=torch.float16)
    v_cache = torch.randn_like(k_cache)
    perm = torch.randperm(sum(blocks)) + 1    # blocks scattered: block 0 unused
    table = torch.zeros(len(seq), max(blocks), dtype=torch.int32)
    i = 0
    for s, n in enumerate(blocks):
        table[s, :n] = perm[i:i + n]; i += n
    q = torch.randn(sum(q_lens), H, D, dtype=torch.float16)
    cu = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32)
    seqused = torch.tensor(seq, dtype=torch.int32)
    proxy = m.kernel_unified_attention
    launched, real = [], proxy.kernel

    class Shim:   # what reaches the JIT function
        def __getitem__(self, grid):
            def run(**kw):
                launched.append(kw["BLOCK_M"])
                return real[grid](**kw)
            return run
    proxy.kernel = Shim()
    res = {}
    for window in ((-1, -1), (8, 0)):
        outs = []
        for forced in (None, {"BLOCK_M": 32, "TILE_SIZE": 16, "num_warps": 4, "num_stages": 1},
                       {"BLOCK_M": 4, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 1}):
            proxy.forced = forced
            launched.clear()
            out = torch.zeros_like(q)
            m.unified_attention(q=q, k=k_cache, v=v_cache, out=out, cu_seqlens_q=cu, max_seqlen_q=max(q_lens),
                                seqused_k=seqused, max_seqlen_k=max(seq), softmax_scale=D ** -0.5, causal=True,
                                window_size=window, block_table=table, softcap=0, q_descale=None, k_descale=None,
                                v_descale=None)
            outs.append(out)
            res.setdefault("launches", []).append(list(launched))
        res[str(window)] = [float((o - outs[0]).abs().max()) for o in outs[1:]]
    print(json.dumps(res))
''')


def test_tuned_launch_matches_vllms_on_mixed_batches_in_the_interpreter(tmp_path, vllm_0_26_0, runtime_python):
    """Three sequences (chunked prefill over cached context, one decoding) in scattered KV blocks, with and without a
    sliding window: the kernel with BLOCK_M 32 / TILE 16 and with BLOCK_M 4 (one token per program) computes what it
    computes with vLLM's launch."""
    assert build_bundle(vllm_0_26_0, tmp_path, "unified_attention", "Qwen/Qwen3-30B-A3B", QWEN3_CONFIG,
                        runtime_python, hint="vllm/v1/attention/ops/triton_unified_attention.py")["status"] == "ok"
    proc = subprocess.run([sys.executable, "-c", _MIXED, str(tmp_path / "unified_attention.py")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["launches"] == [[16], [32], [4]] * 2   # vLLM's BLOCK_M, then the forced ones
    assert all(d < 2e-3 for k in ("(-1, -1)", "(8, 0)") for d in res[k]), res
