"""Every @triton.jit kernel the bundles reach, called through the bundle's own Python launcher,
against a float32 torch reference written here (never taken from a bundle); bf16 and fp16, small
shapes and model-sized shapes (Qwen3-30B-A3B: hidden 2048, 128 experts, top-8, moe_intermediate 768,
32 q / 4 kv heads, head_dim 128; Qwen3-Coder-480B-A35B: hidden 6144, 160 experts, top-8,
moe_intermediate 2560, 96 q / 8 kv heads, head_dim 128; models/*/config.json). Skipped without a
CUDA GPU.

On the GPU machine, from the repository root (bundles_out/ is git-ignored: carry it; the deadline
keeps the run inside a 600 s command and still writes the results of the bundles it reached):

    VLLM_BUNDLE_GPU_BUNDLES=$(ls bundles_out/*.py bundles_out/vllm-0.33.0/*.py | paste -sd, -) \
    VLLM_BUNDLE_GPU_RESULTS=$OUT/triton-kernels.json VLLM_BUNDLE_GPU_DEADLINE_S=540 \
    python -m pytest tests/gpu/test_triton_kernels_gpu.py -q -rfEs

Add bundles of `unified_attention` / `triton_reshape_and_cache_flash` to the list to check the
Triton attention kernels before the layer bundles carry them.

How it runs
- Bundles: $VLLM_BUNDLE_GPU_BUNDLES ("path[,path...]"), else bundles_out/*.py and
  bundles_out/vllm-0.33.0/*.py (tests/gpu/bundles.py). A bundle is imported once per process under
  its own module name. Bundles could share a process (each registers its torch.library ops in
  namespaces of its own: A5), but the checks patch the bundle's globals and CPU stand-ins, and a
  crashed kernel takes the process with it, so with several bundles this module fans out:
  test_bundle_in_own_process runs this file in one child pytest per bundle ($VLLM_BUNDLE_GPU_JOBS at
  a time, default 3) and fails with the child's failures; the kernel checks run in the children.
  With one bundle they run in this process.
- Each check asserts that the launcher really launched the kernel (a counter stands in for the
  kernel in the bundle's globals), then compares with the float32 reference. A check whose kernel
  is not in the bundle under test skips, saying so.
- test_kernel_coverage: every kernel of every bundle (ast: @triton.jit functions no other jitted
  function calls) must have a check in KERNEL_CHECKS; an unmapped kernel fails, named.
- $VLLM_BUNDLE_GPU_RESULTS (written by tests/gpu/conftest.py): every comparison (bundle, kernel,
  launcher, dtype, shape, max error, tolerance, worst error / tolerance) under "checks", one summary
  per bundle under "triton_bundles", torch/triton/CUDA/GPU under "env".
- $VLLM_BUNDLE_GPU_SHAPES: "all" (default on a GPU) or "small"; $VLLM_BUNDLE_GPU_TRITON_K: a -k
  expression for the children; $VLLM_BUNDLE_GPU_DEADLINE_S: no child runs past it (a child cut off
  fails, reported); $VLLM_BUNDLE_GPU_CHILD_TIMEOUT (default 3000 s).

Tolerances (eps = torch.finfo(dtype).eps: bf16 2^-7, fp16 2^-10; rounding a float32 value to the
dtype errs by at most eps/2 relative):
- one rounding of a float32 result (rms_norm, swiglu variants, identity experts, mul-sum, finalize,
  nvfp4 quant-dequant, Hadamard): rtol = eps (twice the bound).
- products rounded to the dtype inside the kernel (mrope multiplies in the cos/sin dtype as vLLM
  passes them; bailing mrope rounds each product): rtol = 2 eps, atol = 4 eps * max|input|
  (x1*cos - x2*sin cancels, so relative error near zero is unbounded).
- one GEMM with fp32 accumulation and one rounding (persistent matmul, bmm): atol = rtol = 2 eps,
  atol scaled by the reference's rms; with an extra rounding of an operand (the MoE grouped GEMM,
  dequantized int4/int8 weights, attention's P in the dtype for P@V): 4 eps; the whole
  fused_experts (two GEMMs, the activation and the top-k sum each round to the dtype): 6 eps.
  Measured on the interpreter (fp16): the error is 7-30 % of these.
- integer and copy outputs (reshape_and_cache, packing, unpermute, scale codes): exact; fp8/int8
  codes: within half a code step of x / scale, equal to torch's rounding but for <= 0.1 % ties.

Development aid, not a GPU check:
    VLLM_BUNDLE_GPU_DEVICE=cpu TRITON_INTERPRET=1 \
    python -m pytest --noconftest tests/gpu/test_triton_kernels_gpu.py
runs the same checks on the CPU through Triton's interpreter (small shapes only; --noconftest
because tests/gpu/conftest.py skips everything under tests/gpu without a GPU). The bundle's CUDA
ops, which can't be built there, are replaced by torch stand-ins written here,
torch.cuda.get_device_capability answers (9, 0), and checks of what the interpreter can't run
(bf16 arithmetic, fp8 rounding, libdevice, PDL) skip, saying so. None of that is active on a GPU.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bundles as bundles_mod  # noqa: E402

DEVICE = os.environ.get("VLLM_BUNDLE_GPU_DEVICE", "cuda")
CPU_DEV = DEVICE == "cpu"
SHAPES = os.environ.get("VLLM_BUNDLE_GPU_SHAPES", "small" if CPU_DEV else "all")
CHILD_ENV = "_VLLM_BUNDLE_GPU_TRITON_CHILD"
IS_CHILD = os.environ.get(CHILD_ENV) == "1"
BUNDLES = bundles_mod.bundle_paths()
FAN_OUT = len(BUNDLES) > 1 and not IS_CHILD

pytestmark = pytest.mark.gpu

DTYPES = [torch.bfloat16, torch.float16]


def _eps(dtype):
    return torch.finfo(dtype).eps


def _ids(v):
    return str(v).replace("torch.", "")


def model_sized(*values, id=None):
    """A pytest.param that is skipped when only small shapes run."""
    marks = [pytest.mark.skip(reason="model-sized shape: VLLM_BUNDLE_GPU_SHAPES=small")] if SHAPES == "small" else []
    return pytest.param(*values, marks=marks, id=id)


# ---------------------------------------------------------------------------------------------
# Fixtures: the bundle under test, the results, the launch counters
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def results(request):
    """The RESULTS dict of tests/gpu/conftest.py (written to $VLLM_BUNDLE_GPU_RESULTS at the end)."""
    want = (HERE / "conftest.py").resolve()
    for plugin in request.config.pluginmanager.get_plugins():
        f = getattr(plugin, "__file__", None)
        if f and Path(f).resolve() == want and hasattr(plugin, "RESULTS"):
            return plugin.RESULTS
    # --noconftest (the CPU development run): write the same file here
    res = {"builds": {}, "checks": []}
    path = os.environ.get("VLLM_BUNDLE_GPU_RESULTS")
    if path:
        def write():
            import triton
            res["env"] = {"torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
                          "gpu": None, "device": DEVICE, "note": "CPU development run (Triton interpreter)"}
            Path(path).write_text(json.dumps(res, indent=2, sort_keys=True))
        request.addfinalizer(write)
    return res


def _cpu_stand_ins(module):
    """CPU development aid only: torch versions of the CUDA ops the launchers call."""
    def silu_and_mul(out, x):
        d = x.shape[-1] // 2
        xf = x.float()
        out.copy_(torch.nn.functional.silu(xf[..., :d]) * xf[..., d:])

    def moe_sum(inp, out, topk_ids=None, expert_map=None):
        out.copy_(inp.float().sum(1))

    def moe_align(topk_ids, num_experts, block_size, sorted_ids, expert_ids, post_pad, expert_map=None,
                  scatter_idx=None):
        if expert_map is not None or scatter_idx is not None:
            raise NotImplementedError("CPU stand-in of moe_align_block_size: no expert_map / scatter_idx")
        s, e, n = align_block_size_ref(topk_ids, num_experts, block_size)
        sorted_ids.fill_(topk_ids.numel())
        sorted_ids[: s.numel()] = s
        expert_ids.fill_(-1)
        expert_ids[: e.numel()] = e
        post_pad.fill_(n)

    stand_ins = {"_C_silu_and_mul": silu_and_mul, "_moe_C_moe_sum": moe_sum,
                 "_moe_C_moe_align_block_size": moe_align,
                 "get_max_shared_memory_bytes": lambda gpu=0: 232448}  # an H100's, as the CUDA op reports
    return {k: v for k, v in stand_ins.items() if hasattr(module, k)}


@pytest.fixture(scope="module")
def bundle():
    if FAN_OUT:
        pytest.skip("several bundles: each one is checked in its own process (test_bundle_in_own_process)")
    if not BUNDLES:
        pytest.skip("no bundle files (set VLLM_BUNDLE_GPU_BUNDLES or build bundles_out/)")
    path = BUNDLES[0]
    inv = bundles_mod.inventory(path)
    t0 = time.perf_counter()
    module = bundles_mod.load(path)
    import_s = time.perf_counter() - t0
    if CPU_DEV:
        for name, fn in _cpu_stand_ins(module).items():
            setattr(module, name, fn)
        torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
        torch.cuda.get_device_name = lambda *a, **k: "cpu-triton-interpreter"
        torch.cuda.get_device_properties = lambda *a, **k: SimpleNamespace(
            multi_processor_count=4, name="cpu-triton-interpreter", major=9, minor=0)
    return SimpleNamespace(path=path, label=bundles_mod.label(path), module=module, inv=inv,
                           import_s=import_s)


def _resolve(module, dotted):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class Check:
    """One kernel checked in one bundle: its launcher, a launch counter, the comparisons."""

    def __init__(self, b, kernel, launcher, results, monkeypatch, direct=True):
        if kernel not in b.inv.kernels:
            pytest.skip(f"{kernel} is not in bundle {b.label}")
        self.b, self.kernel, self.results = b, kernel, results
        fn = _resolve(b.module, launcher)
        if fn is None and not direct:
            pytest.skip(f"bundle {b.label} has {kernel} but no {launcher} (checked through its direct launcher)")
        if fn is None:  # renamed by the collector: the one function the bundle launches it from
            found = b.inv.launchers.get(kernel, [])
            assert len(found) == 1, f"{b.label}: no launcher {launcher!r} for {kernel}; launched from {found}"
            launcher, fn = found[0], _resolve(b.module, found[0])
        if direct:
            assert launcher in b.inv.launchers.get(kernel, []), (
                f"{b.label}: {launcher} does not launch {kernel} (launchers: {b.inv.launchers.get(kernel)})")
        self.launcher_name, self.launcher = launcher, fn
        self.counters = {}
        self.count(kernel, monkeypatch)
        self.monkeypatch = monkeypatch

    def count(self, kernel, monkeypatch=None):
        mp = monkeypatch or self.monkeypatch
        counter = bundles_mod.LaunchCounter(getattr(self.b.module, kernel))
        mp.setattr(self.b.module, kernel, counter)
        self.counters[kernel] = counter
        return counter

    def launches(self, kernel=None):
        return self.counters[kernel or self.kernel].launches

    def __call__(self, *args, **kwargs):
        before = self.launches()
        out = self.launcher(*args, **kwargs)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        assert self.launches() > before, f"{self.launcher_name} did not launch {self.kernel}"
        return out

    def compare(self, what, out, ref, *, dtype, shape, atol, rtol, exact=False):
        out_f, ref_f = out.detach().float().cpu(), ref.detach().float().cpu()
        assert out_f.shape == ref_f.shape, f"{what}: shape {tuple(out_f.shape)} != {tuple(ref_f.shape)}"
        err = (out_f - ref_f).abs()
        bound = atol + rtol * ref_f.abs()
        worst = 0.0
        if err.numel() and not exact:
            ratio = torch.where(err == 0, torch.zeros_like(err), err / bound)
            worst = ratio.max().item()
        rec = {"suite": "triton", "bundle": self.b.label, "kernel": self.kernel, "launcher": self.launcher_name,
               "what": what, "dtype": _ids(dtype), "shape": [int(s) if not isinstance(s, str) else s for s in shape],
               "device": DEVICE, "max_abs_err": err.max().item() if err.numel() else 0.0,
               "ref_max_abs": ref_f.abs().max().item() if ref_f.numel() else 0.0,
               "ref_rms": ref_f.pow(2).mean().sqrt().item() if ref_f.numel() else 0.0,
               "atol": atol, "rtol": rtol, "exact": exact,
               "worst_err_over_tol": worst}
        if exact:
            ok = bool(torch.equal(out.detach().cpu(), ref.detach().cpu()))
            rec["mismatches"] = int((out.detach().cpu() != ref.detach().cpu()).sum().item())
        else:
            ok = bool(torch.isfinite(out_f).all()) and bool((err <= bound).all())
        rec["ok"] = ok
        self.results.setdefault("checks", []).append(rec)
        if exact:
            assert ok, f"{what}: {rec['mismatches']} of {out.numel()} elements differ"
        else:
            torch.testing.assert_close(out_f, ref_f, atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}")


@pytest.fixture
def check(bundle, results, monkeypatch):
    return lambda kernel, launcher, direct=True: Check(bundle, kernel, launcher, results, monkeypatch, direct)


def interpreter_bf16_arith(dtype):
    """Triton's interpreter (CPU development runs) does bf16 arithmetic on the raw bits: a kernel
    that multiplies or adds bf16 values (not only loads and converts them) can't be checked there."""
    if CPU_DEV and dtype == torch.bfloat16:
        pytest.skip("CPU interpreter: Triton's interpreter computes bf16 arithmetic wrongly (runs on GPU)")


def interpreter_cannot(reason):
    """Skip on the CPU development run only: something Triton's interpreter doesn't emulate."""
    if CPU_DEV:
        pytest.skip(f"CPU interpreter: {reason} (runs on GPU)")


def _rms(t):
    return t.float().pow(2).mean().sqrt().item()


# ---------------------------------------------------------------------------------------------
# RMSNorm: _rms_norm_kernel through rms_norm_batch_invariant(input, weight, eps)
# ---------------------------------------------------------------------------------------------

def ref_rms_norm(x, w, eps):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return y * w.float() if w is not None else y


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [
    pytest.param((7, 128), id="small"),
    pytest.param((3, 5, 1500), id="small-3d-cols>block"),
    model_sized((4096, 2048), id="qwen3-30b-hidden"),
    model_sized((4096, 32, 128), id="qwen3-30b-qnorm"),
    model_sized((2048, 6144), id="coder-480b-hidden"),
    model_sized((2048, 8, 128), id="coder-480b-knorm"),
])
@pytest.mark.parametrize("has_weight", [True, False], ids=["weight", "no-weight"])
def test_rms_norm_kernel(check, dtype, shape, has_weight):
    c = check("_rms_norm_kernel", "rms_norm_batch_invariant")
    torch.manual_seed(0)
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 3
    w = (1 + 0.3 * torch.randn(shape[-1], device=DEVICE)).to(dtype) if has_weight else None
    eps = 1e-6
    out = c(x, w, eps)
    c.compare("out", out, ref_rms_norm(x, w, eps), dtype=dtype, shape=shape, atol=_eps(dtype) * 1e-2,
              rtol=_eps(dtype))


# ---------------------------------------------------------------------------------------------
# MRoPE: _triton_mrope_forward through triton_mrope(q, k, cos, sin, mrope_section, head_size,
#        rotary_dim, mrope_interleaved)
# ---------------------------------------------------------------------------------------------

def ref_mrope(x, cos, sin, section, head_size, rotary_dim, interleaved, neox=True):
    """x: [T, H*D]; cos/sin: [3, T, rotary_dim/2] (t, h, w rows); rotation of the first rotary_dim
    dims of each head, pairs (j, j + rd/2) (NeoX) or (2j, 2j+1) (GPT-J); frequency j takes its
    row from t/h/w by mrope_section (consecutive sections, or interleaved t,h,w,t,h,w...)."""
    T = x.shape[0]
    half = rotary_dim // 2
    j = torch.arange(half, device=x.device)
    if interleaved:
        sel = torch.zeros(half, dtype=torch.long, device=x.device)
        sel[(j % 3 == 1) & (j < 3 * section[1])] = 1
        sel[(j % 3 == 2) & (j < 3 * section[2])] = 2
    else:
        sel = torch.where(j < section[0], 0, torch.where(j < section[0] + section[1], 1, 2))
    c = cos.float().gather(0, sel.view(1, 1, -1).expand(1, T, half))[0]  # [T, half]
    s = sin.float().gather(0, sel.view(1, 1, -1).expand(1, T, half))[0]
    xf = x.float().view(T, -1, head_size).clone()
    i1 = torch.arange(half, device=x.device) if neox else torch.arange(0, rotary_dim, 2, device=x.device)
    i2 = i1 + half if neox else i1 + 1
    x1, x2 = xf[..., i1].clone(), xf[..., i2].clone()
    xf[..., i1] = x1 * c[:, None] - x2 * s[:, None]
    xf[..., i2] = x2 * c[:, None] + x1 * s[:, None]
    return xf.view(T, -1)


MROPE_CASES = [
    # tokens, q heads, kv heads, head_size, rotary_dim, mrope_section, interleaved
    pytest.param((9, 4, 2, 64, 64, (8, 12, 12), False), id="small"),
    pytest.param((9, 3, 1, 64, 32, (4, 6, 6), True), id="small-partial-interleaved"),
    model_sized((4096, 32, 4, 128, 128, (16, 24, 24), False), id="qwen3-30b-heads-qwen2vl-section"),
    model_sized((4096, 32, 4, 128, 128, (24, 20, 20), True), id="qwen3-30b-heads-interleaved"),
    model_sized((2048, 96, 8, 128, 128, (24, 20, 20), True), id="coder-480b-heads-interleaved"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", MROPE_CASES)
@pytest.mark.parametrize("style", ["neox", "gptj"])
def test_triton_mrope(check, dtype, case, style):
    c = check("_triton_mrope_forward", "triton_mrope")
    import inspect
    has_style = "is_neox_style" in inspect.signature(c.launcher).parameters
    if style == "gptj" and not has_style:
        pytest.skip(f"{c.b.label}: this triton_mrope has no is_neox_style (NeoX pairs only)")
    interpreter_bf16_arith(dtype)  # the rotation multiplies in the cos/sin dtype
    T, hq, hk, D, rd, section, interleaved = case
    torch.manual_seed(1)
    q = torch.randn(T, hq * D, device=DEVICE, dtype=dtype)
    k = torch.randn(T, hk * D, device=DEVICE, dtype=dtype)
    # cos/sin of real positions (3 position streams, theta 1e6), in the model dtype as vLLM passes them
    inv = 1.0 / (1e6 ** (torch.arange(0, rd, 2, device=DEVICE, dtype=torch.float32) / rd))
    pos = torch.randint(0, 32768, (3, T), device=DEVICE).float()
    freqs = pos[..., None] * inv
    cos, sin = freqs.cos().to(dtype), freqs.sin().to(dtype)
    neox = style == "neox"
    rq = ref_mrope(q, cos, sin, section, D, rd, interleaved, neox)
    rk = ref_mrope(k, cos, sin, section, D, rd, interleaved, neox)
    extra = (neox,) if has_style else ()
    oq, ok = c(q.clone(), k.clone(), cos, sin, list(section), D, rd, interleaved, *extra)
    e = _eps(dtype)
    shape = (T, hq, hk, D, rd, "interleaved" if interleaved else "sections", style)
    c.compare("query", oq, rq, dtype=dtype, shape=shape, atol=4 * e * q.float().abs().max().item(), rtol=2 * e)
    c.compare("key", ok, rk, dtype=dtype, shape=shape, atol=4 * e * k.float().abs().max().item(), rtol=2 * e)


# ---------------------------------------------------------------------------------------------
# Fused MoE: fused_moe_kernel through fused_experts(...) (the whole expert computation) and through
#            invoke_fused_moe_triton_kernel(...) (one grouped GEMM, both block-assignment modes)
# ---------------------------------------------------------------------------------------------

def align_block_size_ref(topk_ids, num_experts, block_size):
    """What moe_align_block_size produces, in torch: token slots sorted by expert, each expert's run
    padded to a multiple of block_size with the value topk_ids.numel(); the expert of each block;
    the padded total."""
    flat = topk_ids.flatten().long()
    n = flat.numel()
    sorted_ids, expert_ids = [], []
    for e in range(num_experts):
        idx = (flat == e).nonzero().flatten()
        if idx.numel() == 0:
            continue
        pad = (-idx.numel()) % block_size
        sorted_ids.append(torch.cat([idx, torch.full((pad,), n, device=flat.device, dtype=torch.long)]))
        expert_ids += [e] * ((idx.numel() + pad) // block_size)
    s = torch.cat(sorted_ids).to(torch.int32) if sorted_ids else torch.empty(0, dtype=torch.int32, device=flat.device)
    e = torch.tensor(expert_ids, dtype=torch.int32, device=flat.device)
    return s, e, s.numel()


def ref_moe(x, w1, w2, topk_weights, topk_ids):
    """Plain MoE in float32: for each expert, gate/up = x @ w1[e].T (gate first), silu(gate) * up,
    @ w2[e].T, weighted by the router weight, summed over the top-k experts."""
    T, H = x.shape
    out = torch.zeros(T, H, device=x.device, dtype=torch.float32)
    inter = w2.shape[2]
    for e in torch.unique(topk_ids).tolist():
        tok, slot = (topk_ids == e).nonzero(as_tuple=True)
        gu = x[tok].float() @ w1[e].float().t()
        a = torch.nn.functional.silu(gu[:, :inter]) * gu[:, inter:]
        y = a @ w2[e].float().t()
        out.index_add_(0, tok, y * topk_weights[tok, slot].float()[:, None])
    return out


def route(T, E, top_k, renormalize=True):
    logits = torch.randn(T, E, device=DEVICE, dtype=torch.float32)
    w, ids = torch.topk(torch.softmax(logits, dim=-1), top_k, dim=-1)
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    return w, ids.to(torch.int32)


MOE_CASES = [
    # tokens, hidden, experts, top_k, moe_intermediate
    pytest.param((13, 128, 8, 2, 64), id="small-aligned"),
    pytest.param((2, 128, 16, 2, 64), id="small-decode-naive"),
    model_sized((4, 2048, 128, 8, 768), id="qwen3-30b-decode"),
    model_sized((512, 2048, 128, 8, 768), id="qwen3-30b-prefill"),
    model_sized((2, 6144, 160, 8, 2560), id="coder-480b-decode"),
    model_sized((256, 6144, 160, 8, 2560), id="coder-480b-prefill"),
]


def _moe_weights(E, H, inter, dtype):
    # in place: the Coder-480B experts take 15 GiB in bf16
    w1 = torch.randn(E, 2 * inter, H, device=DEVICE, dtype=dtype).mul_(H ** -0.5)
    w2 = torch.randn(E, H, inter, device=DEVICE, dtype=dtype).mul_(inter ** -0.5)
    return w1, w2


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", MOE_CASES)
def test_fused_experts(check, dtype, case):
    c = check("fused_moe_kernel", "fused_experts", direct=False)
    interpreter_bf16_arith(dtype)  # tl.dot on bf16 tiles
    T, H, E, top_k, inter = case
    torch.manual_seed(2)
    w1, w2 = _moe_weights(E, H, inter, dtype)
    x = torch.randn(T, H, device=DEVICE, dtype=dtype)
    tw, ti = route(T, E, top_k)
    out = c(x, w1, w2, tw, ti)
    assert c.launches() == 2, f"fused_experts launched fused_moe_kernel {c.launches()} times, expected 2"
    ref = ref_moe(x, w1, w2, tw, ti)
    k = 6 * _eps(dtype)
    c.compare("out", out, ref, dtype=dtype, shape=case, atol=k * _rms(ref), rtol=k)
    del w1, w2


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", MOE_CASES)
@pytest.mark.parametrize("gemm", ["w13", "w2-routed"])
def test_fused_moe_kernel_gemm(check, dtype, case, gemm):
    """One grouped GEMM, as fused_experts issues it: w13 (A=[T,H] read through token // top_k, C=[T,
    top_k, 2I]) or w2 with the router weight multiplied in (A=[T*top_k, I], top_k=1). The aligned
    (moe_align_block_size) layout is built in torch here; few tokens over many experts take the
    kernel's naive block assignment (sorted_token_ids=None), as fused_experts does."""
    c = check("fused_moe_kernel", "invoke_fused_moe_triton_kernel")
    interpreter_bf16_arith(dtype)  # tl.dot on bf16 tiles
    m = c.b.module
    T, H, E, top_k, inter = case
    torch.manual_seed(3)
    tw, ti = route(T, E, top_k)
    if gemm == "w13":
        A = torch.randn(T, H, device=DEVICE, dtype=dtype)
        B = torch.randn(E, 2 * inter, H, device=DEVICE, dtype=dtype).mul_(H ** -0.5)
        C = torch.empty(T, top_k, 2 * inter, device=DEVICE, dtype=dtype)
        kernel_top_k, mul_routed = top_k, False
    else:
        A = torch.randn(T * top_k, inter, device=DEVICE, dtype=dtype)
        B = torch.randn(E, H, inter, device=DEVICE, dtype=dtype).mul_(inter ** -0.5)
        C = torch.empty(T, top_k, H, device=DEVICE, dtype=dtype)
        kernel_top_k, mul_routed = 1, True
    dtype_str = None  # unquantized: what fused_experts passes (_get_config_dtype_str gives None for bf16/fp16)
    config = m.try_get_optimal_moe_config((E, 2 * inter, H), (E, H, inter), top_k, dtype_str, T)
    naive = T * top_k * 4 <= E
    if naive:
        sorted_ids, expert_ids = None, ti.view(-1)
        post = torch.full((1,), ti.numel() * config["BLOCK_SIZE_M"], dtype=torch.int32, device=DEVICE)
    else:
        s, e, n = align_block_size_ref(ti, E, config["BLOCK_SIZE_M"])
        sorted_ids = torch.full((ti.numel() + E * (config["BLOCK_SIZE_M"] - 1),), ti.numel(), dtype=torch.int32,
                                device=DEVICE)
        sorted_ids[: s.numel()] = s
        expert_ids = torch.full((sorted_ids.numel() // config["BLOCK_SIZE_M"] + 1,), -1, dtype=torch.int32,
                                device=DEVICE)
        expert_ids[: e.numel()] = e
        post = torch.tensor([n], dtype=torch.int32, device=DEVICE)
    import triton.language as tl
    compute_type = tl.bfloat16 if dtype == torch.bfloat16 else tl.float16
    c(A, B, C, None, None, tw, sorted_ids, expert_ids, post, mul_routed, kernel_top_k, config,
      compute_type, False, False, False, False, False, None, None)
    # reference: row r of C (token r // top_k, slot r % top_k) = A[r // kernel_top_k] @ B[expert].T
    flat_ids = ti.view(-1).long()
    rows = torch.arange(T * top_k, device=DEVICE)
    ref = torch.empty(T * top_k, B.shape[1], device=DEVICE, dtype=torch.float32)
    for e in torch.unique(flat_ids).tolist():
        r = rows[flat_ids == e]
        ref[r] = A[r // kernel_top_k].float() @ B[e].float().t()
    if mul_routed:
        ref = ref * tw.view(-1, 1).float()
    k = 4 * _eps(dtype)
    shape = (*case, gemm, "naive" if naive else "aligned")
    c.compare("C", C.view(T * top_k, -1), ref, dtype=dtype, shape=shape, atol=k * _rms(ref), rtol=k)


# ---------------------------------------------------------------------------------------------
# Triton attention: kernel_unified_attention (+ reduce_segments on the 3D decode path) through
# unified_attention(...), and reshape_and_cache_kernel_flash through triton_reshape_and_cache_flash
# ---------------------------------------------------------------------------------------------

def make_kv_cache(num_blocks, hkv, block_size, D, dtype):
    """vLLM's TRITON_ATTN layout: one tensor (blocks, kv_heads, block_size, 2*D), seen as key and value
    caches of shape (blocks, block_size, kv_heads, D) (triton_attn.py: transpose(1, 2).split(D, -1))."""
    kv = torch.randn(num_blocks, hkv, block_size, 2 * D, device=DEVICE, dtype=dtype)
    key_cache, value_cache = kv.transpose(1, 2).split(D, dim=-1)
    return kv, key_cache, value_cache


def ref_paged_attention(q, key_cache, value_cache, block_table, q_lens, seq_lens, scale):
    """Causal GQA attention in float32: query j of sequence i sits at position seq_len - q_len + j and
    sees the keys at positions 0..that position, read from the paged cache through block_table."""
    T, hq, D = q.shape
    hkv = key_cache.shape[2]
    bs = key_cache.shape[1]
    out = torch.empty(T, hq, D, device=q.device, dtype=torch.float32)
    start = 0
    for i, (ql, sl) in enumerate(zip(q_lens, seq_lens)):
        pos = torch.arange(sl, device=q.device)
        blocks = block_table[i, pos // bs].long()
        k = key_cache[blocks, pos % bs].float()  # [sl, hkv, D]
        v = value_cache[blocks, pos % bs].float()
        k = k.repeat_interleave(hq // hkv, dim=1)
        v = v.repeat_interleave(hq // hkv, dim=1)
        qi = q[start:start + ql].float()  # [ql, hq, D]
        s = torch.einsum("qhd,khd->hqk", qi, k) * scale
        qpos = sl - ql + torch.arange(ql, device=q.device)
        s = s.masked_fill(pos[None, None, :] > qpos[None, :, None], float("-inf"))
        out[start:start + ql] = torch.einsum("hqk,khd->qhd", torch.softmax(s, dim=-1), v)
        start += ql
    return out


ATTN_CASES = [
    # q heads, kv heads, head_dim, block_size, query lens, context lens (before the queries), 3D segments
    pytest.param((4, 2, 64, 16, [5, 1, 17], [0, 20, 33], False), id="small-prefill-mixed"),
    pytest.param((4, 2, 64, 16, [1, 1, 1], [40, 7, 100], True), id="small-decode-3d"),
    model_sized((32, 4, 128, 16, [512, 1000, 1, 300], [0, 1500, 4000, 0], False), id="qwen3-30b-prefill"),
    model_sized((32, 4, 128, 16, [1] * 32, "random:8192", True), id="qwen3-30b-decode-3d"),
    model_sized((32, 4, 128, 16, [1] * 40, "random:8192", False), id="qwen3-30b-decode-2d-batch"),
    model_sized((96, 8, 128, 16, [2048, 1], [0, 3000], False), id="coder-480b-prefill"),
    model_sized((96, 8, 128, 16, [1] * 16, "random:16384", True), id="coder-480b-decode-3d"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", ATTN_CASES)
def test_unified_attention(check, dtype, case):
    c = check("kernel_unified_attention", "unified_attention")
    interpreter_bf16_arith(dtype)  # tl.dot on bf16 tiles
    reduce = c.count("reduce_segments") if "reduce_segments" in c.b.inv.kernels else None
    hq, hkv, D, bs, q_lens, ctx, use_3d = case
    torch.manual_seed(4)
    n = len(q_lens)
    if isinstance(ctx, str):
        ctx = torch.randint(1, int(ctx.split(":")[1]), (n,)).tolist()
    seq_lens = [a + b for a, b in zip(q_lens, ctx)]
    blocks_per_seq = [-(-s // bs) for s in seq_lens]
    num_blocks = sum(blocks_per_seq) + 3
    kv, key_cache, value_cache = make_kv_cache(num_blocks, hkv, bs, D, dtype)
    # every sequence gets its own blocks, scattered over the cache
    perm = torch.randperm(num_blocks, device=DEVICE).to(torch.int32)
    max_blocks = max(blocks_per_seq)
    block_table = torch.zeros(n, max_blocks, dtype=torch.int32, device=DEVICE)
    used = 0
    for i, nb in enumerate(blocks_per_seq):
        block_table[i, :nb] = perm[used:used + nb]
        used += nb
    T = sum(q_lens)
    q = torch.randn(T, hq, D, device=DEVICE, dtype=dtype)
    out = torch.full((T, hq, D), float("nan"), device=DEVICE, dtype=dtype)
    cu = torch.tensor([0] + torch.tensor(q_lens).cumsum(0).tolist(), dtype=torch.int32, device=DEVICE)
    seqused = torch.tensor(seq_lens, dtype=torch.int32, device=DEVICE)
    scale = D ** -0.5
    ones = torch.ones(1, dtype=torch.float32, device=DEVICE).expand(n, hkv)  # layer._k_scale.expand(...)
    # as TritonAttentionMetadataBuilder sizes them: threshold 128 // kv heads, 16 segments
    threshold = 128 // hkv
    segments = 16
    hd_pad = 1 << (D - 1).bit_length()
    segm_out = torch.empty(threshold, hq, segments, hd_pad, dtype=torch.float32, device=DEVICE)
    segm_max = torch.empty(threshold, hq, segments, dtype=torch.float32, device=DEVICE)
    segm_sum = torch.empty(threshold, hq, segments, dtype=torch.float32, device=DEVICE)
    assert use_3d == (max(q_lens) == 1 and n <= threshold)
    c(q, key_cache, value_cache, out, cu, max(q_lens), seqused, max(seq_lens), scale, True, (-1, -1),
      block_table, 0, None, ones, ones, seq_threshold_3D=threshold, num_par_softmax_segments=segments,
      softmax_segm_output=segm_out, softmax_segm_max=segm_max, softmax_segm_expsum=segm_sum)
    if use_3d:
        assert reduce is not None and reduce.launches == 1, "the 3D decode path did not launch reduce_segments"
    elif reduce is not None:
        assert reduce.launches == 0
    ref = ref_paged_attention(q, key_cache, value_cache, block_table, q_lens, seq_lens, scale)
    k = 4 * _eps(dtype)
    shape = (hq, hkv, D, bs, T, max(seq_lens), "3d" if use_3d else "2d")
    # The kernel rounds the probabilities P to the value dtype before the P·V dot (as flash attention
    # does): each output element may err by up to eps/2 · sum(p·|v|) <= eps/2 · max|v|, plus the output's
    # own rounding. Where few keys carry the weight (the first prefill tokens) that term dominates the
    # GEMM-class bound: seen on the H100 at 1.1-1.2x of 4·eps·rms(ref) for 1-2 of 25M elements.
    atol = max(k * _rms(ref), _eps(dtype) * value_cache.float().abs().max().item())
    c.compare("out", out, ref, dtype=dtype, shape=shape, atol=atol, rtol=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [
    # tokens, kv heads, head_dim, block_size, blocks
    pytest.param((11, 2, 64, 16, 6), id="small"),
    model_sized((4096, 4, 128, 16, 400), id="qwen3-30b"),
    model_sized((2048, 8, 128, 16, 200), id="coder-480b"),
])
def test_reshape_and_cache_flash(check, dtype, case):
    c = check("reshape_and_cache_kernel_flash", "triton_reshape_and_cache_flash")
    T, hkv, D, bs, nb = case
    torch.manual_seed(5)
    kv, key_cache, value_cache = make_kv_cache(nb, hkv, bs, D, dtype)
    key = torch.randn(T, hkv, D, device=DEVICE, dtype=dtype)
    value = torch.randn(T, hkv, D, device=DEVICE, dtype=dtype)
    slots = torch.randperm(nb * bs, device=DEVICE)[:T].to(torch.int64)
    slots[::7] = -1  # padding tokens: skipped
    exp_k, exp_v = key_cache.clone(), value_cache.clone()
    keep = slots >= 0
    exp_k[slots[keep] // bs, slots[keep] % bs] = key[keep]
    exp_v[slots[keep] // bs, slots[keep] % bs] = value[keep]
    one = torch.ones((), dtype=torch.float32, device=DEVICE)
    c(key, value, key_cache, value_cache, slots, "auto", one, one)
    c.compare("key_cache", key_cache, exp_k, dtype=dtype, shape=case, atol=0, rtol=0, exact=True)
    c.compare("value_cache", value_cache, exp_v, dtype=dtype, shape=case, atol=0, rtol=0, exact=True)


# ---------------------------------------------------------------------------------------------
# Activations on MoE intermediates
# ---------------------------------------------------------------------------------------------

ACT_SHAPES = [
    pytest.param((7, 2 * 64), id="small"),
    pytest.param((3, 2 * 1100), id="small-d>block"),
    model_sized((4096 * 8, 2 * 768), id="qwen3-30b-tokens*topk"),
    model_sized((1024 * 8, 2 * 2560), id="coder-480b-tokens*topk"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", ACT_SHAPES)
def test_swiglustep_and_mul(check, dtype, shape):
    c = check("_swiglustep_and_mul_kernel", "swiglustep_and_mul_triton")
    torch.manual_seed(6)
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 5  # reaches the +-7 clamps
    d = shape[1] // 2
    out = torch.empty(shape[0], d, device=DEVICE, dtype=dtype)
    limit = 7.0
    c(out, x, limit)
    xf = x.float()
    ref = torch.nn.functional.silu(xf[:, :d]).clamp(max=limit) * xf[:, d:].clamp(-limit, limit)
    c.compare("out", out, ref, dtype=dtype, shape=shape, atol=_eps(dtype) * 1e-2, rtol=_eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", ACT_SHAPES)
@pytest.mark.parametrize("limit", [7.0, 0.0], ids=["limit7", "no-limit"])
@pytest.mark.parametrize("with_map", [False, True], ids=["no-map", "expert-map"])
def test_swiglu_limit_pad_aware(check, dtype, shape, limit, with_map):
    c = check("_swiglu_limit_pad_aware_kernel", "_swiglu_limit_pad_aware")
    interpreter_cannot("tl.range loop variables are Python ints there (row.to(tl.int64) fails)")
    torch.manual_seed(7)
    rows, two_d = shape
    d = two_d // 2
    E = 16
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 5
    ids = torch.randint(0, E, (rows,), device=DEVICE, dtype=torch.int32)
    ids[::5] = -1  # padded rows: left untouched
    emap = None
    take = ids >= 0
    if with_map:
        emap = torch.arange(E, device=DEVICE, dtype=torch.int32)
        emap[E // 2:] = -1  # experts of another rank: left untouched
        take = take & (emap[ids.clamp(min=0).long()] >= 0)
    out = torch.full((rows, d), 1234.0, device=DEVICE, dtype=dtype)
    c(out, x, ids, limit, emap)
    xf = x.float()
    gate, up = xf[:, :d], xf[:, d:]
    if limit > 0:
        gate, up = gate.clamp(max=limit), up.clamp(-limit, limit)
    ref = torch.where(take[:, None], torch.nn.functional.silu(gate) * up, torch.full_like(gate, 1234.0))
    c.compare("out", out, ref, dtype=dtype, shape=(*shape, limit, with_map), atol=_eps(dtype) * 1e-2, rtol=_eps(dtype))


# ---------------------------------------------------------------------------------------------
# Quantization kernels
# ---------------------------------------------------------------------------------------------

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [
    pytest.param((5, 256), id="small"),
    model_sized((4096, 2048), id="qwen3-30b-hidden"),
    model_sized((1024, 6144), id="coder-480b-hidden"),
])
@pytest.mark.parametrize("column_major", [False, True], ids=["row-major-scales", "col-major-scales"])
@pytest.mark.parametrize("ue8m0", [False, True], ids=["fp32-scale", "ue8m0-scale"])
def test_per_token_group_quant_fp8(check, dtype, shape, column_major, ue8m0):
    kernel = "_per_token_group_quant_fp8_colmajor" if column_major else "_per_token_group_quant_fp8"
    c = check(kernel, "per_token_group_quant_fp8")
    torch.manual_seed(8)
    group = 128
    M, K = shape
    # The launcher takes its Triton path for inputs the CUDA op doesn't take: non-contiguous rows
    wide = torch.randn(M, K + 64, device=DEVICE, dtype=dtype) * 4
    x = wide[:, :K]
    assert not x.is_contiguous() and x.stride(-1) == 1
    q, s = c(x, group, column_major_scales=column_major, use_ue8m0=ue8m0)
    xf = x.float().view(M, K // group, group)
    absmax = xf.abs().amax(-1).clamp(min=1e-10)
    ref_s = absmax * (1.0 / FP8_MAX)
    if ue8m0:
        ref_s = torch.exp2(torch.ceil(torch.log2(ref_s)))
    shape_id = (*shape, group, "col" if column_major else "row", "ue8m0" if ue8m0 else "fp32")
    # ue8m0 scales are powers of two: exact; fp32 scales: the same product, to fp32 rounding
    c.compare("scales", s, ref_s, dtype=dtype, shape=shape_id, atol=0, rtol=0 if ue8m0 else 1e-6)
    if column_major:
        assert s.stride(0) == 1, "column-major scales expected"
    interpreter_cannot("its fp32 -> fp8 conversion loses the carry into the next binade (126.5 -> 64)")
    # codes: x / scale rounded to e4m3 (3 mantissa bits: within half an e4m3 ulp, 2^-4 relative,
    # and within half the e4m3 subnormal step 2^-9 absolute) and the same code as torch's cast of
    # that quotient, but for quotients a division rounding puts on the other side of a tie
    quot = (xf / ref_s[..., None]).clamp(-FP8_MAX, FP8_MAX)
    qf = q.float().view(M, K // group, group)
    c.compare("codes-vs-quotient", qf, quot, dtype=dtype, shape=shape_id, atol=2 ** -9, rtol=2 ** -4)
    ref_codes = quot.to(FP8).float()
    differ = (qf != ref_codes).float().mean().item()
    assert differ <= 1e-3, f"{differ:.2%} of fp8 codes differ from torch's rounding of x / scale"


def _round_half_away(x):
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [
    pytest.param((5, 200), id="small"),
    pytest.param((2, 3, 64), id="small-3d"),
    model_sized((4096, 2048), id="qwen3-30b-hidden"),
    model_sized((1024, 6144), id="coder-480b-hidden"),
])
def test_per_token_quant_int8(check, dtype, shape):
    c = check("_per_token_quant_int8", "per_token_quant_int8")
    interpreter_cannot("libdevice.round is not available there")
    torch.manual_seed(9)
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 3
    q, s = c(x)
    xf = x.float()
    absmax = xf.abs().amax(-1, keepdim=True).clamp(min=1e-10)
    c.compare("scales", s, absmax / 127, dtype=dtype, shape=shape, atol=0, rtol=1e-6)
    assert q.dtype == torch.int8 and q.shape == x.shape
    quot = xf * (127 / absmax)
    # round half away from zero (libdevice round); a division rounding may move a tie: one code
    c.compare("codes", q.float(), _round_half_away(quot), dtype=dtype, shape=shape, atol=1.0, rtol=0)
    differ = (q.float() != _round_half_away(quot)).float().mean().item()
    assert differ <= 1e-3, f"{differ:.2%} of int8 codes differ from round(x * 127 / absmax)"
    assert (q.float() - quot).abs().max().item() <= 0.5 + 1e-3


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def _round_e2m1(x):
    """Nearest FP4 (E2M1) magnitude, ties to the even code (0, 1, 2, 4 win: e.g. 0.25 -> 0, 2.5 -> 2)."""
    grid = E2M1.to(x.device)
    d = (x.abs()[..., None] - grid).abs()
    best = d.min(-1, keepdim=True).values
    codes = torch.arange(8, device=x.device)
    # among the nearest (two at a tie, adjacent codes) take the even code
    idx = torch.where(d == best, codes % 2, 2).argmin(-1)
    return torch.sign(x) * grid[idx]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [
    pytest.param((5, 64), id="small"),
    model_sized((2048, 2048), id="qwen3-30b-hidden"),
    model_sized((512, 6144), id="coder-480b-hidden"),
])
def test_nvfp4_quant_dequant(check, dtype, shape):
    c = check("_nvfp4_quant_dequant_kernel", "_triton_nvfp4_quant_dequant")
    torch.manual_seed(10)
    block = 16
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 2
    xf = x.float()
    gscale = torch.tensor([448.0 * 6.0 / xf.abs().max().item()], device=DEVICE, dtype=torch.float32)
    out = c(x, gscale, block)
    # reference: per 16-element block, an fp8 (e4m3) scale of max|x| / 6 in the global-scaled domain;
    # the block's values divided by it, clamped to +-6, rounded to E2M1, multiplied back
    M, K = shape
    xb = xf.view(M, K // block, block)
    g = gscale.item()
    scale = (g * (xb.abs().amax(-1) * (1 / 6.0))).clamp(-448, 448).to(FP8).float()
    out_scale = torch.where(scale == 0, torch.zeros_like(scale), g / scale)[..., None]
    fp4 = _round_e2m1((xb * out_scale).clamp(-6, 6))
    ref = (fp4 * (scale / g)[..., None]).view(M, K)
    # one rounding of the result to the dtype; a value that sits on an E2M1 rounding threshold
    # may go either way with a different fp32 rounding of x * scale: such flips are counted
    err = (out.float() - ref).abs()
    tol = _eps(dtype) * ref.abs() + 1e-6
    flips = (err > tol).float().mean().item()
    assert flips <= 1e-3, f"{flips:.2%} of nvfp4 quant-dequant values differ beyond one rounding"
    keep = err <= tol
    c.compare("out", torch.where(keep, out.float(), ref), ref, dtype=dtype, shape=shape, atol=1e-6,
              rtol=_eps(dtype))


# ---------------------------------------------------------------------------------------------
# Fused MoE with int4 / int8 weights: fused_moe_kernel_gptq_awq via invoke_fused_moe_wna16_triton_kernel
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [
    # more than 6 tokens per expert, else vLLM sends int4 to its CUDA wna16 kernel instead
    pytest.param((40, 256, 8, 2, 128), id="small"),
    model_sized((256, 2048, 128, 8, 768), id="qwen3-30b"),
    model_sized((256, 6144, 160, 8, 2560), id="coder-480b"),
])
@pytest.mark.parametrize("wtype", ["int4", "int4-zp", "int8", "int8-zp"])
def test_fused_moe_kernel_gptq_awq(check, dtype, case, wtype):
    c = check("fused_moe_kernel_gptq_awq", "invoke_fused_moe_wna16_triton_kernel")
    interpreter_bf16_arith(dtype)
    m = c.b.module
    T, H, E, top_k, inter = case
    N, K = 2 * inter, H  # the w13 GEMM
    group = 128
    int4, has_zp = wtype.startswith("int4"), wtype.endswith("zp")
    torch.manual_seed(11)
    tw, ti = route(T, E, top_k)
    A = torch.randn(T, K, device=DEVICE, dtype=dtype)
    # the packed layouts the kernel reads, generated as bytes (Coder-480B: 2.5-5 GiB, not 20):
    # int4: two k per byte, low nibble = even k; zero points two n per byte along n (low = even n);
    # int8: one unsigned byte each, zero point 128 when absent
    B = torch.randint(0, 256, (E, N, K // 2 if int4 else K), device=DEVICE, dtype=torch.uint8)
    scales = (torch.rand(E, N, K // group, device=DEVICE) * 0.02 + 0.005).to(dtype)
    B_zp = None
    if has_zp:
        B_zp = torch.randint(0, 256, (E, N // 2 if int4 else N, K // group), device=DEVICE, dtype=torch.uint8)

    def dequant(e):
        """Expert e's weight [N, K] in float32: (code - zero point) * group scale."""
        b = B[e].int()
        q = torch.stack([b & 0xF, b >> 4], -1).view(N, K) if int4 else b
        if B_zp is None:
            zp = torch.full((N, K // group), 8 if int4 else 128, device=DEVICE, dtype=torch.int32)
        else:
            z = B_zp[e].int()
            zp = torch.stack([z & 0xF, z >> 4], 1).view(N, K // group) if int4 else z
        return (q - zp.repeat_interleave(group, dim=1)).float() * scales[e].float().repeat_interleave(group, dim=1)

    dtype_str = "int4_w4a16" if int4 else "int8_w8a16"
    block_shape = [0, group]
    assert not m.should_moe_wna16_use_cuda(T * top_k, group, E, 4 if int4 else 8), "vLLM would use CUDA here"
    config = m.try_get_optimal_moe_config((E, N, K), (E, K, N // 2), top_k, dtype_str, T, block_shape)
    s, e, n = align_block_size_ref(ti, E, config["BLOCK_SIZE_M"])
    sorted_ids = torch.full((ti.numel() + E * (config["BLOCK_SIZE_M"] - 1),), ti.numel(), dtype=torch.int32,
                            device=DEVICE)
    sorted_ids[: s.numel()] = s
    expert_ids = torch.full((sorted_ids.numel() // config["BLOCK_SIZE_M"] + 1,), -1, dtype=torch.int32, device=DEVICE)
    expert_ids[: e.numel()] = e
    post = torch.tensor([n], dtype=torch.int32, device=DEVICE)
    C = torch.empty(T, top_k, N, device=DEVICE, dtype=dtype)
    import triton.language as tl
    compute_type = tl.bfloat16 if dtype == torch.bfloat16 else tl.float16
    c(A, B, C, scales, B_zp, tw, sorted_ids, expert_ids, post, False, top_k, config, compute_type,
      not int4, int4, block_shape)
    flat_ids = ti.view(-1).long()
    rows = torch.arange(T * top_k, device=DEVICE)
    ref = torch.empty(T * top_k, N, device=DEVICE, dtype=torch.float32)
    for ex in torch.unique(flat_ids).tolist():
        r = rows[flat_ids == ex]
        ref[r] = A[r // top_k].float() @ dequant(ex).t()
    # dequantized weights are rounded to the dtype before the dot: GEMM tolerance
    k = 4 * _eps(dtype)
    c.compare("C", C.view(T * top_k, N), ref, dtype=dtype, shape=(*case, wtype, group), atol=k * _rms(ref), rtol=k)


# ---------------------------------------------------------------------------------------------
# Batch-invariant matmuls: matmul_kernel_persistent, matmul_kernel_descriptor_persistent, bmm_kernel
# ---------------------------------------------------------------------------------------------

GEMM_SHAPES = [
    pytest.param((37, 96, 80), id="small"),
    model_sized((4096, 2048, 4096 + 2 * 512), id="qwen3-30b-qkv"),
    model_sized((1024, 6144, 96 * 128 + 2 * 8 * 128), id="coder-480b-qkv"),
    model_sized((8, 4096, 2048), id="qwen3-30b-o-decode"),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", GEMM_SHAPES)
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_matmul_persistent(check, dtype, shape, bias):
    c = check("matmul_kernel_persistent", "matmul_persistent")
    interpreter_bf16_arith(dtype)
    M, K, N = shape
    torch.manual_seed(12)
    a = torch.randn(M, K, device=DEVICE, dtype=dtype)
    b = (torch.randn(K, N, device=DEVICE, dtype=dtype) * K ** -0.5).to(dtype)
    bv = torch.randn(N, device=DEVICE, dtype=dtype) if bias else None
    out = c(a, b, bv)
    ref = a.float() @ b.float() + (bv.float() if bias else 0)
    k = 2 * _eps(dtype)
    c.compare("out", out, ref, dtype=dtype, shape=(*shape, bias), atol=k * _rms(ref), rtol=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", GEMM_SHAPES)
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_matmul_descriptor_persistent(check, dtype, shape, bias):
    c = check("matmul_kernel_descriptor_persistent", "matmul_descriptor_persistent")
    interpreter_bf16_arith(dtype)
    m = c.b.module
    M, K, N = shape
    torch.manual_seed(13)
    a = torch.randn(M, K, device=DEVICE, dtype=dtype)
    b = (torch.randn(K, N, device=DEVICE, dtype=dtype) * K ** -0.5).to(dtype)
    bv = torch.randn(N, device=DEVICE, dtype=dtype) if bias else None
    # in-kernel tensor descriptors need Triton's scratch allocator: the bundle's own setter, else the
    # same thing here (vLLM registers one before such kernels run)
    if hasattr(m, "set_triton_allocator"):
        m.set_triton_allocator(a.device)
    else:
        import triton
        triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=DEVICE))
    out = c(a, b, bv)
    ref = a.float() @ b.float() + (bv.float() if bias else 0)
    k = 2 * _eps(dtype)
    c.compare("out", out, ref, dtype=dtype, shape=(*shape, bias), atol=k * _rms(ref), rtol=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [
    pytest.param((3, 19, 64, 40), id="small"),
    model_sized((32, 256, 128, 512), id="qwen3-30b-heads"),
    model_sized((96, 128, 128, 512), id="coder-480b-heads"),
])
def test_bmm_batch_invariant(check, dtype, shape):
    c = check("bmm_kernel", "bmm_batch_invariant")
    interpreter_bf16_arith(dtype)
    Bn, M, K, N = shape
    torch.manual_seed(14)
    a = torch.randn(Bn, M, K, device=DEVICE, dtype=dtype)
    b = (torch.randn(Bn, K, N, device=DEVICE, dtype=dtype) * K ** -0.5).to(dtype)
    out = c(a, b)
    ref = torch.bmm(a.float(), b.float())
    k = 2 * _eps(dtype)
    c.compare("out", out, ref, dtype=dtype, shape=shape, atol=k * _rms(ref), rtol=k)


# ---------------------------------------------------------------------------------------------
# MoE bookkeeping kernels
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("wdtype", [torch.float32, torch.bfloat16], ids=_ids)
@pytest.mark.parametrize("shape", [pytest.param((7, 2), id="small"), model_sized((4096, 8), id="qwen3-30b"),
                                   model_sized((2048, 8), id="coder-480b")])
def test_pack_topk_ids_weights(check, wdtype, shape):
    c = check("_pack_topk_ids_weights_kernel", "trtllm_moe_pack_topk_ids_weights")
    interpreter_cannot("tl.extra.cuda.gdc_* (programmatic dependent launch) is not available there")
    torch.manual_seed(15)
    E = 160
    ids = torch.randint(0, E, shape, device=DEVICE, dtype=torch.int32)
    w = torch.rand(shape, device=DEVICE).to(wdtype)
    out = c(ids, w)
    bits = w.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF
    ref = (ids.to(torch.int32) << 16) | bits
    c.compare("packed", out, ref, dtype=wdtype, shape=shape, atol=0, rtol=0, exact=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((5, 256, 8, 3), id="small"),
                                  model_sized((4096, 2048, 128, 8), id="qwen3-30b"),
                                  model_sized((1024, 6144, 160, 8), id="coder-480b")])
def test_zero_experts_identity(check, dtype, case):
    c = check("compute_identity_kernel", "zero_experts_compute_triton")
    T, H, E, top_k = case
    torch.manual_seed(16)
    hidden = torch.randn(T, H, device=DEVICE, dtype=dtype)
    # ids >= E are "zero experts" (identity): their routed weight times the token itself
    ids = torch.randint(0, E + 4, (T, top_k), device=DEVICE, dtype=torch.int32)
    scales = torch.rand(T, top_k, device=DEVICE, dtype=torch.float32)
    zero = ids >= E
    ref = hidden.float() * torch.where(zero, scales, torch.zeros_like(scales)).sum(-1, keepdim=True)
    out = c(ids.clone(), scales.clone(), E, "identity", hidden)
    c.compare("out", out, ref, dtype=dtype, shape=case, atol=_eps(dtype) * 1e-2, rtol=_eps(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((5, 3, 200), id="small"),
                                  model_sized((4096, 8, 2048), id="qwen3-30b"),
                                  model_sized((1024, 8, 6144), id="coder-480b")])
@pytest.mark.parametrize("with_ids", [False, True], ids=["all-slots", "skipped-slots"])
def test_moe_fused_mul_sum(check, dtype, case, with_ids):
    c = check("moe_fused_mul_sum_kernel", "moe_fused_mul_sum")
    T, top_k, H = case
    torch.manual_seed(17)
    x = torch.randn(T, top_k, H, device=DEVICE, dtype=dtype)
    w = torch.rand(T, top_k, device=DEVICE, dtype=torch.float32)
    ids = None
    take = torch.ones(T, top_k, dtype=torch.bool, device=DEVICE)
    if with_ids:
        ids = torch.randint(0, 64, (T, top_k), device=DEVICE, dtype=torch.int32)
        ids[:, 0] = -1  # a slot the expert GEMM skipped: not summed
        take = ids >= 0
    out = c(x, w, None, ids)
    ref = (x.float() * torch.where(take, w, torch.zeros_like(w))[..., None]).sum(1)
    c.compare("out", out, ref, dtype=dtype, shape=(*case, with_ids), atol=_eps(dtype) * 1e-2 * _rms(ref),
              rtol=_eps(dtype))


@pytest.mark.parametrize("dtype", [torch.float32], ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((3, 5, 40), id="small"),
                                  pytest.param((12, 7, 33), id="small-many-splits"),
                                  model_sized((16, 128, 4096), id="qwen3-30b-router"),
                                  model_sized((16, 160, 1024), id="coder-480b-router")])
def test_splitk_reduce(check, dtype, case):
    c = check("_splitk_reduce_kernel", "splitk_reduce_triton")
    interpreter_cannot("tl.extra.cuda.gdc_* (programmatic dependent launch) is not available there")
    S, N, M = case
    torch.manual_seed(18)
    partials = torch.randn(S, N, M, device=DEVICE, dtype=torch.float32)
    out = torch.empty(N, M, device=DEVICE, dtype=torch.float32)
    c(partials, out)
    ref = partials.double().sum(0)
    c.compare("out", out, ref, dtype=dtype, shape=case, atol=1e-6 * S, rtol=1e-6)


@pytest.mark.parametrize("case", [pytest.param((5, 8, 64), id="small"),
                                  model_sized((4096, 128, 2048), id="qwen3-30b-router"),
                                  model_sized((1024, 160, 6144), id="coder-480b-router")])
def test_bf16x3_router_gemm(check, case):
    c = check("_reduce_terms_kernel", "bf16x3_router_gemm_bf16x3_router_gemm_rocm")
    interpreter_cannot("the launcher's torch.mm(out_dtype=float32) has no CPU kernel")
    M, E, K = case
    torch.manual_seed(19)
    x = torch.randn(M, K, device=DEVICE, dtype=torch.bfloat16)
    w32 = torch.randn(E, K, device=DEVICE, dtype=torch.float32) * K ** -0.5
    t1 = w32.to(torch.bfloat16)
    t2 = (w32 - t1.float()).to(torch.bfloat16)
    t3 = (w32 - t1.float() - t2.float()).to(torch.bfloat16)
    split = torch.stack([t1, t2, t3]).contiguous()
    out = c(x, split)
    ref = x.double() @ split.double().sum(0).t()
    # The launcher's bf16 GEMM accumulates in fp32 over K before the kernel sums the three terms: the usual
    # bound for an fp32-accumulated dot product, a few sqrt(K) * 2^-24 of sum|x*w| (K=6144: 3.3e-5 measured
    # on values up to 4.4 exceeded a flat 1e-5 * rms).
    mag = x.abs().double() @ split.double().abs().sum(0).t()
    c.compare("logits", out, ref, dtype=torch.bfloat16, shape=case, atol=4 * K ** 0.5 * 2.0 ** -24 * _rms(mag),
              rtol=1e-5)


@pytest.mark.parametrize("wdtype", [torch.float32, torch.bfloat16], ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((3, 8, 100), id="small"),
                                  model_sized((8, 128, 2048), id="qwen3-30b-router"),
                                  model_sized((8, 160, 6144), id="coder-480b-router")])
def test_rocm_fp32_router_gemm(check, wdtype, case):
    """The launcher is ROCm-only in this variant (its input check raises on every other platform):
    it must refuse here; the kernel is then launched exactly as the launcher would (its own
    _launch_config) and compared."""
    c = check("_rocm_fp32_router_gemm_kernel", "rocm_fp32_router_gemm")
    m = c.b.module
    M, E, K = case
    torch.manual_seed(20)
    x = torch.randn(M, K, device=DEVICE, dtype=torch.bfloat16)
    w = (torch.randn(E, K, device=DEVICE) * K ** -0.5).to(wdtype)
    try:
        out = c.launcher(x, w)
        launched_by_launcher = True
    except RuntimeError as e:
        assert "ROCm" in str(e), e
        launched_by_launcher = False
        import triton
        block_m, block_k, num_warps = m._launch_config(E, M, w.dtype == torch.bfloat16)
        block_k = min(block_k, triton.next_power_of_2(K))
        out = torch.empty(M, E, device=DEVICE, dtype=torch.float32)
        kern = getattr(m, "_rocm_fp32_router_gemm_kernel")
        kern[(triton.cdiv(M, block_m) * E,)](x, w, out, M=M, K=K, N=E, BLOCK_M=block_m, BLOCK_K=block_k,
                                              EVEN_K=K % block_k == 0, num_warps=num_warps, num_stages=1)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        assert c.launches() >= 1
    ref = x.double() @ w.double().t()
    c.compare("logits" + ("" if launched_by_launcher else "[direct launch: launcher is ROCm-only]"), out, ref,
              dtype=wdtype, shape=case, atol=1e-5 * _rms(ref), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Prefix-free varlen attention: _fwd_kernel through context_attention_fwd
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [
    pytest.param((4, 2, 64, [5, 17, 1]), id="small"),
    model_sized((32, 4, 128, [1000, 24, 512]), id="qwen3-30b-heads"),
    model_sized((96, 8, 128, [700, 300]), id="coder-480b-heads"),
])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_context_attention_fwd(check, dtype, case, causal):
    c = check("_fwd_kernel", "context_attention_fwd")
    interpreter_bf16_arith(dtype)
    hq, hkv, D, lens = case
    torch.manual_seed(21)
    T = sum(lens)
    q = torch.randn(T, hq, D, device=DEVICE, dtype=dtype)
    k = torch.randn(T, hkv, D, device=DEVICE, dtype=dtype)
    v = torch.randn(T, hkv, D, device=DEVICE, dtype=dtype)
    o = torch.empty_like(q)
    starts = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)[:-1].tolist()), dtype=torch.int32, device=DEVICE)
    seq = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    scale = D ** -0.5
    c(q, k, v, o, starts, seq, max(lens), is_causal=causal, softmax_scale=scale)
    ref = torch.empty(T, hq, D, device=DEVICE, dtype=torch.float32)
    s0 = 0
    for L in lens:
        qi = q[s0:s0 + L].float()
        ki = k[s0:s0 + L].float().repeat_interleave(hq // hkv, dim=1)
        vi = v[s0:s0 + L].float().repeat_interleave(hq // hkv, dim=1)
        sc = torch.einsum("qhd,khd->hqk", qi, ki) * scale
        if causal:
            sc = sc.masked_fill(torch.ones(L, L, device=DEVICE, dtype=torch.bool).triu(1), float("-inf"))
        ref[s0:s0 + L] = torch.einsum("hqk,khd->qhd", torch.softmax(sc, -1), vi)
        s0 += L
    k_ = 4 * _eps(dtype)
    c.compare("out", o, ref, dtype=dtype, shape=(hq, hkv, D, T, causal), atol=k_ * _rms(ref), rtol=k_)


# ---------------------------------------------------------------------------------------------
# Bailing M-RoPE: _triton_bailing_mrope_forward through triton_bailing_mrope
# ---------------------------------------------------------------------------------------------

def ref_bailing_mrope(x, positions, cache, spatial, head_size, rotary_dim):
    """GPT-J style pairs (2j, 2j+1); frequency j < spatial_size takes the height position when j is
    even and the width position when odd; the others take the temporal position. cache: [pos, rd]
    as cos | sin."""
    T = x.shape[0]
    half = rotary_dim // 2
    j = torch.arange(half, device=x.device)
    sel = torch.where(j < spatial, torch.where(j % 2 == 0, 1, 2), 0)  # row of positions: t=0, h=1, w=2
    pos = positions.long()[sel]  # [half, T]
    cos = cache.float()[pos.t(), j[None, :]]  # [T, half]
    sin = cache.float()[pos.t(), half + j[None, :]]
    xf = x.float().view(T, -1, head_size).clone()
    ev, od = xf[..., 0:rotary_dim:2].clone(), xf[..., 1:rotary_dim:2].clone()
    xf[..., 0:rotary_dim:2] = ev * cos[:, None] - od * sin[:, None]
    xf[..., 1:rotary_dim:2] = od * cos[:, None] + ev * sin[:, None]
    return xf.view(T, -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [
    # tokens, q heads, kv heads, head_size, rotary_dim, spatial_size
    pytest.param((9, 4, 2, 64, 64, 16), id="small"),
    pytest.param((6, 3, 1, 64, 32, 8), id="small-partial"),
    model_sized((4096, 32, 4, 128, 128, 48), id="qwen3-30b-heads"),
    model_sized((2048, 96, 8, 128, 128, 48), id="coder-480b-heads"),
])
def test_triton_bailing_mrope(check, dtype, case):
    c = check("_triton_bailing_mrope_forward", "triton_bailing_mrope")
    T, hq, hk, D, rd, spatial = case
    torch.manual_seed(22)
    max_pos = 8192
    inv = 1.0 / (1e6 ** (torch.arange(0, rd, 2, device=DEVICE, dtype=torch.float32) / rd))
    freqs = torch.arange(max_pos, device=DEVICE, dtype=torch.float32)[:, None] * inv
    cache = torch.cat([freqs.cos(), freqs.sin()], -1).to(dtype)
    positions = torch.randint(0, max_pos, (3, T), device=DEVICE, dtype=torch.int64)
    q = torch.randn(T, hq * D, device=DEVICE, dtype=dtype)
    k = torch.randn(T, hk * D, device=DEVICE, dtype=dtype)
    rq = ref_bailing_mrope(q, positions, cache, spatial, D, rd)
    rk = ref_bailing_mrope(k, positions, cache, spatial, D, rd)
    oq, ok = c(q.clone(), k.clone(), positions, cache, spatial, D, rd)
    e = _eps(dtype)
    # each product is rounded to the dtype before the fp32 sum, and the sum once more
    c.compare("query", oq, rq, dtype=dtype, shape=case, atol=4 * e * q.float().abs().max().item(), rtol=2 * e)
    c.compare("key", ok, rk, dtype=dtype, shape=case, atol=4 * e * k.float().abs().max().item(), rtol=2 * e)


# ---------------------------------------------------------------------------------------------
# LoRA MoE finalize helpers: _unpermute_activation_kernel, _finalize_lora_kernel
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((5, 2, 300), id="small"),
                                  model_sized((4096, 8, 768), id="qwen3-30b"),
                                  model_sized((1024, 8, 2560), id="coder-480b")])
def test_unpermute_activation(check, dtype, case):
    c = check("_unpermute_activation_kernel", "_TrtLlmLoRAExpertsBase._unpermute_activation")
    T, top_k, inter = case
    torch.manual_seed(23)
    rows = T * top_k
    n_perm = rows - rows // 4
    act = torch.randn(n_perm, inter, device=DEVICE, dtype=dtype)
    idx = torch.full((rows,), -1, device=DEVICE, dtype=torch.int32)
    keep = torch.randperm(rows, device=DEVICE)[:n_perm]
    idx[keep] = torch.randperm(n_perm, device=DEVICE).to(torch.int32)
    out = c(act, idx, T, top_k, inter)
    ref = torch.where((idx >= 0)[:, None], act[idx.clamp(min=0).long()], torch.zeros((), dtype=dtype, device=DEVICE))
    c.compare("out", out, ref, dtype=dtype, shape=case, atol=0, rtol=0, exact=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", [pytest.param((5, 2, 300), id="small"),
                                  model_sized((4096, 8, 2048), id="qwen3-30b"),
                                  model_sized((1024, 8, 6144), id="coder-480b")])
def test_finalize_lora(check, dtype, case):
    c = check("_finalize_lora_kernel", "_TrtLlmLoRAExpertsBase._finalize_with_w2_lora")
    T, top_k, H = case
    torch.manual_seed(24)
    rows = T * top_k
    n_perm = rows - rows // 4
    gemm2 = torch.randn(n_perm, H, device=DEVICE, dtype=dtype)
    weights = torch.rand(T, top_k, device=DEVICE, dtype=torch.float32)
    idx = torch.full((rows,), -1, device=DEVICE, dtype=torch.int32)
    keep = torch.randperm(rows, device=DEVICE)[:n_perm]
    idx[keep] = torch.randperm(n_perm, device=DEVICE).to(torch.int32)
    delta = torch.randn(T, top_k, H, device=DEVICE, dtype=dtype) * 0.1
    out = torch.empty(T, H, device=DEVICE, dtype=dtype)
    scale = 0.5
    c(out, gemm2, weights, idx, delta, T, top_k, scale)
    base = torch.where((idx >= 0)[:, None], gemm2[idx.clamp(min=0).long()].float(), torch.zeros(()))
    base = (base.view(T, top_k, H) * weights.view(T, top_k, 1)).sum(1)
    ref = base * scale + delta.float().sum(1)
    c.compare("out", out, ref, dtype=dtype, shape=case, atol=_eps(dtype) * 1e-2 * _rms(ref), rtol=_eps(dtype))


# ---------------------------------------------------------------------------------------------
# MXFP4 weight quantization: _downcast_to_mxfp through downcast_to_mxfp
# ---------------------------------------------------------------------------------------------

def _e2m1_codes_to_float(codes):
    mag = E2M1.to(codes.device)[(codes & 0x7).long()]
    return torch.where((codes & 0x8) != 0, -mag, mag)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape", [pytest.param((5, 96), id="small"),
                                   model_sized((768 * 2, 2048), id="qwen3-30b-w13-expert"),
                                   model_sized((6144, 2560), id="coder-480b-w2-expert")])
def test_downcast_to_mxfp(check, dtype, shape):
    c = check("_downcast_to_mxfp", "downcast_to_mxfp")
    interpreter_cannot("it fails on the kernel's tensor `and` masks / unsanitized integer ops")
    torch.manual_seed(25)
    x = torch.randn(shape, device=DEVICE, dtype=dtype) * 3
    q, s, _ = c(x, -1)
    R, L = shape
    assert q.shape == (R, L // 2) and q.dtype == torch.uint8 and s.shape == (R, L // 32)
    xb = x.float().view(R, L // 32, 32)
    # the shared scale: 2^(floor(log2(max|x| rounded up to a power of two's mantissa carry)) - 2), as
    # an e8m0 biased exponent; the values divided by it rounded to E2M1 (ties to even)
    amax = xb.abs().amax(-1)
    bits = amax.view(torch.int32)
    rounded = ((bits + 0x200000) & 0x7F800000).view(torch.float32)
    exp = torch.floor(torch.log2(torch.where(rounded == 0, torch.full_like(rounded, 2.0 ** -126), rounded))) - 2
    exp = exp.clamp(-127, 127)
    ref_scale_code = (exp + 127).to(torch.uint8)
    c.compare("scales", s, ref_scale_code, dtype=dtype, shape=shape, atol=0, rtol=0, exact=True)
    deq_scale = torch.exp2(exp)[..., None]
    vals = _e2m1_codes_to_float(torch.stack([q & 0xF, q >> 4], -1).view(R, L // 32, 32))
    ref_vals = _round_e2m1((xb / deq_scale).clamp(-6, 6))
    c.compare("values", vals, ref_vals, dtype=dtype, shape=shape, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------
# Walsh-Hadamard transform (INT4 KV cache rotation): _hadamard_mma_kernel through
# _triton_hadamard_transform
# ---------------------------------------------------------------------------------------------

def sylvester_hadamard(d, device):
    H = torch.ones(1, 1, device=device)
    while H.shape[0] < d:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


@pytest.mark.parametrize("dtype", DTYPES + [torch.float32], ids=_ids)
@pytest.mark.parametrize("shape", [pytest.param((5, 3, 64), id="small"),
                                   pytest.param((7, 16), id="small-d16"),
                                   model_sized((4096, 4, 128), id="qwen3-30b-kv-heads"),
                                   model_sized((2048, 8, 128), id="coder-480b-kv-heads")])
def test_hadamard_transform(check, dtype, shape):
    c = check("_hadamard_mma_kernel", "_triton_hadamard_transform")
    # float32 input runs in bf16 (the launcher's work dtype), then back to float32
    interpreter_bf16_arith(torch.bfloat16 if dtype == torch.float32 else dtype)
    torch.manual_seed(26)
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    out = c(x)
    work = torch.bfloat16 if dtype == torch.float32 else dtype
    ref = x.to(work).float() @ sylvester_hadamard(shape[-1], DEVICE)  # unnormalized: x @ H
    e = _eps(work)
    c.compare("out", out, ref, dtype=dtype, shape=shape, atol=e * 1e-2 * _rms(ref), rtol=e)


# ---------------------------------------------------------------------------------------------
# Coverage: every kernel of every bundle has a check here
# ---------------------------------------------------------------------------------------------

KERNEL_CHECKS = {
    "_rms_norm_kernel": ["test_rms_norm_kernel"],
    "_triton_mrope_forward": ["test_triton_mrope"],
    "fused_moe_kernel": ["test_fused_experts", "test_fused_moe_kernel_gemm"],
    "kernel_unified_attention": ["test_unified_attention"],
    "reduce_segments": ["test_unified_attention"],
    "reshape_and_cache_kernel_flash": ["test_reshape_and_cache_flash"],
    "_swiglustep_and_mul_kernel": ["test_swiglustep_and_mul"],
    "_swiglu_limit_pad_aware_kernel": ["test_swiglu_limit_pad_aware"],
    "_per_token_group_quant_fp8": ["test_per_token_group_quant_fp8"],
    "_per_token_group_quant_fp8_colmajor": ["test_per_token_group_quant_fp8"],
    "_per_token_quant_int8": ["test_per_token_quant_int8"],
    "_nvfp4_quant_dequant_kernel": ["test_nvfp4_quant_dequant"],
    "fused_moe_kernel_gptq_awq": ["test_fused_moe_kernel_gptq_awq"],
    "matmul_kernel_persistent": ["test_matmul_persistent"],
    "matmul_kernel_descriptor_persistent": ["test_matmul_descriptor_persistent"],
    "bmm_kernel": ["test_bmm_batch_invariant"],
    "_pack_topk_ids_weights_kernel": ["test_pack_topk_ids_weights"],
    "compute_identity_kernel": ["test_zero_experts_identity"],
    "moe_fused_mul_sum_kernel": ["test_moe_fused_mul_sum"],
    "_splitk_reduce_kernel": ["test_splitk_reduce"],
    "_reduce_terms_kernel": ["test_bf16x3_router_gemm"],
    "_rocm_fp32_router_gemm_kernel": ["test_rocm_fp32_router_gemm"],
    "_fwd_kernel": ["test_context_attention_fwd"],
    "_triton_bailing_mrope_forward": ["test_triton_bailing_mrope"],
    "_unpermute_activation_kernel": ["test_unpermute_activation"],
    "_finalize_lora_kernel": ["test_finalize_lora"],
    "_downcast_to_mxfp": ["test_downcast_to_mxfp"],
    "_hadamard_mma_kernel": ["test_hadamard_transform"],
}


@pytest.mark.parametrize("path", BUNDLES or [None], ids=lambda p: bundles_mod.label(p) if p else "none")
def test_kernel_coverage(path):
    if path is None:
        pytest.skip("no bundle files (set VLLM_BUNDLE_GPU_BUNDLES or build bundles_out/)")
    inv = bundles_mod.inventory(path)
    missing = [k for k in inv.kernels if k not in KERNEL_CHECKS]
    assert not missing, f"{bundles_mod.label(path)}: no check for kernel(s) {missing} (add one to KERNEL_CHECKS)"
    for k in inv.kernels:
        for name in KERNEL_CHECKS[k]:
            assert callable(globals().get(name)), f"KERNEL_CHECKS[{k!r}] names {name}, which is not a test here"


# ---------------------------------------------------------------------------------------------
# Fan-out: one child pytest per bundle
# ---------------------------------------------------------------------------------------------

def _run_child(path: Path, workdir: Path, deadline: float | None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("VLLM_BUNDLE_GPU_CHILD_TIMEOUT", "3000"))
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
        if timeout < 10:
            return {"rc": "not run: VLLM_BUNDLE_GPU_DEADLINE_S reached", "seconds": 0.0, "log": "", "cases": []}
    xml, js = workdir / "junit.xml", workdir / "results.json"
    env = dict(os.environ, **{bundles_mod.ENV_BUNDLES: str(path), "VLLM_BUNDLE_GPU_RESULTS": str(js),
                              CHILD_ENV: "1", "PYTHONUNBUFFERED": "1"})
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-rfEs", "-p", "no:cacheprovider",
           f"--junitxml={xml}"]
    if CPU_DEV:
        cmd.append("--noconftest")
    if os.environ.get("VLLM_BUNDLE_GPU_TRITON_K"):
        cmd += ["-k", os.environ["VLLM_BUNDLE_GPU_TRITON_K"]]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=bundles_mod.ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        rc, log = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out_s = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        rc, log = f"timeout after {timeout:.0f} s", out_s
    out = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "log": log, "cases": []}
    if xml.exists():
        for tc in ET.parse(xml).getroot().iter("testcase"):
            status, msg = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = tc.find(tag)
                if el is not None:
                    status = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    msg = (el.get("message") or "") + "\n" + (el.text or "")
                    break
            out["cases"].append({"name": tc.get("name"), "status": status, "message": msg.strip()})
    if js.exists():
        out["results"] = json.loads(js.read_text())
    return out


@pytest.fixture(scope="session")
def children(tmp_path_factory):
    jobs = int(os.environ.get("VLLM_BUNDLE_GPU_JOBS", "3"))
    dl = os.environ.get("VLLM_BUNDLE_GPU_DEADLINE_S")
    deadline = time.monotonic() + float(dl) if dl else None
    base = tmp_path_factory.mktemp("triton_children")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = {p: pool.submit(_run_child, p, base / bundles_mod.label(p).replace("/", "__"), deadline)
               for p in BUNDLES}
    yield futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("path", BUNDLES if FAN_OUT else [None],
                         ids=lambda p: bundles_mod.label(p) if p else "single-bundle")
def test_bundle_in_own_process(path, request, results):
    if path is None:
        pytest.skip("one bundle (or a child process): its checks run in this process")
    r = request.getfixturevalue("children")[path].result()
    label = bundles_mod.label(path)
    counts = {}
    for case in r["cases"]:
        counts[case["status"]] = counts.get(case["status"], 0) + 1
    bad = [case for case in r["cases"] if case["status"] in ("failed", "error")]
    child_checks = (r.get("results") or {}).get("checks", [])
    results.setdefault("checks", []).extend(child_checks)
    results.setdefault("triton_bundles", {})[label] = {
        "rc": r["rc"], "seconds": r["seconds"], "counts": counts,
        "failed": [{"name": b["name"], "message": b["message"][:2000]} for b in bad],
        "skipped": sorted({c["message"].splitlines()[0][:200] for c in r["cases"] if c["status"] == "skipped"}),
        "checks": len(child_checks)}
    if r["rc"] != 0 or bad:
        detail = "\n".join(f"- {b['name']}: {b['message'][:1500]}" for b in bad[:20])
        pytest.fail(f"{label}: child pytest rc={r['rc']}, {counts}\n{detail}\n--- child log tail ---\n"
                    f"{r['log'][-6000:]}", pytrace=False)
