"""Each bundled op, built from the generated CUDA section, against a float32 torch reference
(bf16 and fp16; a small shape and model-sized shapes of Qwen3-30B-A3B / Qwen3-Coder-480B)."""

import inspect
import math

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu

DTYPES = [torch.bfloat16, torch.float16] if hasattr(torch, "bfloat16") else []
# tolerance against a float32 reference computed from the same low-precision inputs
TOL = {torch.bfloat16: 2.5e-2, torch.float16: 3e-3}


def _wrapper(section, op):
    name = "_" + op.split(".")[0].lstrip("_") + "_" + op.split(".")[1]
    fn = getattr(section, name, None)
    if fn is None:
        pytest.skip(f"{op} not in this section")
    return fn


def _check(section, op, dtype, shape, out, ref, tol):
    out, ref = out.float(), ref.float()
    err = (out - ref).abs()
    max_abs = err.max().item() if err.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 1.0
    section.RESULTS["checks"].append({"section": section.LABEL, "op": op, "dtype": str(dtype).replace("torch.", ""),
                              "shape": list(shape), "max_abs_err": max_abs, "ref_max_abs": scale,
                              "tol": tol})
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)


def _ref_rms(x, w, eps):
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()


NORM_SHAPES = [(7, 128), (4096, 2048), (2048, 6144)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES + [(64, 32, 128)], ids=str)
def test_rms_norm(section, dtype, shape):
    fn = _wrapper(section, "_C.rms_norm")
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    w = (1 + 0.1 * torch.randn(shape[-1], device="cuda")).to(dtype)
    out = torch.empty_like(x)
    fn(out, x, w, 1e-6)
    torch.cuda.synchronize()
    _check(section, "_C.rms_norm", dtype, shape, out, _ref_rms(x, w, 1e-6).to(dtype), TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=str)
def test_fused_add_rms_norm(section, dtype, shape):
    fn = _wrapper(section, "_C.fused_add_rms_norm")
    torch.manual_seed(1)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    res = torch.randn(shape, device="cuda", dtype=dtype)
    w = (1 + 0.1 * torch.randn(shape[-1], device="cuda")).to(dtype)
    s = x.float() + res.float()
    ref_res = s.to(dtype)
    ref_out = _ref_rms(ref_res, w, 1e-5).to(dtype)
    fn(x, res, w, 1e-5)
    torch.cuda.synchronize()
    _check(section, "_C.fused_add_rms_norm[residual]", dtype, shape, res, ref_res, TOL[dtype])
    _check(section, "_C.fused_add_rms_norm", dtype, shape, x, ref_out, TOL[dtype])


GATE_SHAPES = [(7, 2 * 64), (4096, 2 * 768), (1024, 2 * 2560)]


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


GATED = {
    "_C.silu_and_mul": lambda g: torch.nn.functional.silu(g),
    "_C.gelu_and_mul": lambda g: torch.nn.functional.gelu(g),
    "_C.gelu_tanh_and_mul": _gelu_tanh,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", GATE_SHAPES, ids=str)
@pytest.mark.parametrize("op", sorted(GATED))
def test_gated_activation(section, op, dtype, shape):
    fn = _wrapper(section, op)
    torch.manual_seed(2)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    d = shape[-1] // 2
    out = torch.empty(shape[0], d, device="cuda", dtype=dtype)
    fn(out, x)
    torch.cuda.synchronize()
    xf = x.float()
    ref = (GATED[op](xf[:, :d]) * xf[:, d:]).to(dtype)
    _check(section, op, dtype, shape, out, ref, TOL[dtype])


ELEMENTWISE = {
    "_C.gelu_new": _gelu_tanh,
    "_C.gelu_fast": _gelu_tanh,
    "_C.gelu_quick": lambda x: x * torch.sigmoid(1.702 * x),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 128), (4096, 2048)], ids=str)
@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_elementwise_activation(section, op, dtype, shape):
    fn = _wrapper(section, op)
    torch.manual_seed(3)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    out = torch.empty_like(x)
    fn(out, x)
    torch.cuda.synchronize()
    # gelu_new / gelu_fast round intermediates to the input type in the kernel: 2x tolerance
    tol = TOL[dtype] * (2 if op != "_C.gelu_quick" else 1)
    _check(section, op, dtype, shape, out, ELEMENTWISE[op](x.float()).to(dtype), tol)


def _rope_ref(positions, x, cache, head_size, is_neox):
    # x: [T, H*D]; cache: [max_pos, rot] (cos | sin)
    T = x.shape[0]
    xf = x.float().view(T, -1, head_size)
    rot = cache.shape[1]
    cos, sin = cache[positions].float().chunk(2, dim=-1)  # [T, rot/2]
    cos, sin = cos[:, None, :], sin[:, None, :]
    xr, xp = xf[..., :rot], xf[..., rot:]
    if is_neox:
        x1, x2 = xr[..., : rot // 2], xr[..., rot // 2:]
        o = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    else:
        x1, x2 = xr[..., 0::2], xr[..., 1::2]
        o = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
    return torch.cat([o, xp], dim=-1).view(T, -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tokens,hq,hk", [(7, 4, 2), (4096, 32, 4), (2048, 96, 8)], ids=str)
@pytest.mark.parametrize("is_neox", [True, False])
def test_rotary_embedding(section, dtype, tokens, hq, hk, is_neox):
    fn = _wrapper(section, "_C.rotary_embedding")
    torch.manual_seed(4)
    D, max_pos, base = 128, 8192, 1e6
    inv = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float32, device="cuda") / D))
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float32, device="cuda"), inv)
    cache = torch.cat([freqs.cos(), freqs.sin()], dim=-1)  # fp32 [max_pos, D]
    pos = torch.randint(0, max_pos, (tokens,), device="cuda", dtype=torch.int64)
    q = torch.randn(tokens, hq * D, device="cuda", dtype=dtype)
    k = torch.randn(tokens, hk * D, device="cuda", dtype=dtype)
    rq, rk = _rope_ref(pos, q, cache, D, is_neox).to(dtype), _rope_ref(pos, k, cache, D, is_neox).to(dtype)
    fn(pos, q, k, D, cache, is_neox)
    torch.cuda.synchronize()
    shape = (tokens, hq, hk, D)
    _check(section, f"_C.rotary_embedding[{'neox' if is_neox else 'gptj'}]", dtype, shape, q, rq, TOL[dtype])
    _check(section, f"_C.rotary_embedding[{'neox' if is_neox else 'gptj'},key]", dtype, shape, k, rk, TOL[dtype])


@pytest.mark.parametrize("gdtype", [torch.float32] + DTYPES, ids=str)
@pytest.mark.parametrize("tokens,experts,k", [(7, 128, 8), (4096, 128, 8), (1024, 160, 8)], ids=str)
@pytest.mark.parametrize("renorm", [True, False])
def test_topk_softmax(section, gdtype, tokens, experts, k, renorm):
    fn = _wrapper(section, "_moe_C.topk_softmax")
    torch.manual_seed(5)
    g = torch.randn(tokens, experts, device="cuda", dtype=gdtype)
    w = torch.empty(tokens, k, device="cuda", dtype=torch.float32)
    ids = torch.empty(tokens, k, device="cuda", dtype=torch.int32)
    tei = torch.empty(tokens, k, device="cuda", dtype=torch.int32)

    params = list(inspect.signature(fn).parameters)
    args = [w, ids, tei, g, renorm]
    sig = inspect.signature(fn).parameters
    args += [None for name in params[5:] if sig[name].default is inspect.Parameter.empty]  # bias, is_padding
    fn(*args)
    torch.cuda.synchronize()
    p = torch.softmax(g.float(), dim=-1)
    ref_w, _ = torch.topk(p, k, dim=-1)
    if renorm:
        ref_w = ref_w / ref_w.sum(-1, keepdim=True)
    # weights: sorted, compared with the reference's top-k (robust to ties)
    got_sorted, _ = torch.sort(w, dim=-1, descending=True)
    _check(section, f"_moe_C.topk_softmax[renorm={renorm}]", gdtype, (tokens, experts, k), got_sorted, ref_w, 1e-5)
    # indices: distinct, and each one's probability is the weight reported for it
    assert (ids >= 0).all() and (ids < experts).all()
    assert (torch.sort(ids, -1).values.diff(dim=-1) != 0).all()
    chosen = torch.gather(p, 1, ids.long())
    if renorm:
        chosen = chosen / chosen.sum(-1, keepdim=True)
    torch.testing.assert_close(w, chosen, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tokens,experts,k,block", [(7, 64, 8, 16), (3, 128, 8, 64), (4096, 128, 8, 64),
                                                    (1024, 160, 8, 16)], ids=str)
def test_moe_align_block_size(section, tokens, experts, k, block):
    fn = _wrapper(section, "_moe_C.moe_align_block_size")
    torch.manual_seed(6)
    topk_ids = torch.stack([torch.randperm(experts, device="cuda")[:k] for _ in range(tokens)]).to(torch.int32)
    n = topk_ids.numel()
    max_pad = n + experts * (block - 1)
    sorted_ids = torch.empty(max_pad, dtype=torch.int32, device="cuda")
    expert_ids = torch.empty((max_pad + block - 1) // block, dtype=torch.int32, device="cuda")
    post = torch.empty(1, dtype=torch.int32, device="cuda")
    fn(topk_ids, experts, block, sorted_ids, expert_ids, post, None)
    torch.cuda.synchronize()
    flat = topk_ids.flatten().cpu()
    counts = torch.bincount(flat.long(), minlength=experts)
    expect_post = int(sum(((c + block - 1) // block) * block for c in counts.tolist()))
    assert post.item() == expect_post
    s, e = sorted_ids[:expect_post].cpu(), expert_ids[: expect_post // block].cpu()
    seen = []
    for b in range(expect_post // block):
        ex = int(e[b])
        for t in s[b * block:(b + 1) * block].tolist():
            if t < n:
                assert int(flat[t]) == ex
                seen.append(t)
            else:
                assert t == n  # padding
    assert sorted(seen) == list(range(n))
    section.RESULTS["checks"].append({"section": section.LABEL, "op": "_moe_C.moe_align_block_size", "dtype": "int32",
                              "shape": [tokens, experts, k, block], "max_abs_err": 0.0, "exact": True})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tokens,k,hidden", [(7, 8, 128), (4096, 8, 2048), (512, 8, 6144)], ids=str)
def test_moe_sum(section, dtype, tokens, k, hidden):
    fn = _wrapper(section, "_moe_C.moe_sum")
    torch.manual_seed(7)
    x = torch.randn(tokens, k, hidden, device="cuda", dtype=dtype)
    out = torch.empty(tokens, hidden, device="cuda", dtype=dtype)
    fn(x, out)
    torch.cuda.synchronize()
    _check(section, "_moe_C.moe_sum", dtype, (tokens, k, hidden), out, x.float().sum(1).to(dtype), TOL[dtype])


# ---- ops the Qwen3MoeDecoderLayer bundle also reaches: clamped SwiGLU variants, weak_ref_tensor, and the
# sigmoid / sqrt-softplus / grouped (DeepSeek-V3) routers. References follow the kernels in
# csrc/libtorch_stable/activation_kernels.cu, csrc/libtorch_stable/ops.h and csrc/libtorch_stable/moe/*.cu.

CLAMP_SHAPES = [(7, 2 * 64), (7, 2 * 63), (4096, 2 * 768), (1024, 2 * 2560)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", CLAMP_SHAPES, ids=str)
@pytest.mark.parametrize("limit,alpha,beta", [(7.0, 1.0, 0.0), (7.0, 1.702, 1.0), (2.5, 1.0, 0.0)], ids=str)
def test_silu_and_mul_with_clamp(section, dtype, shape, limit, alpha, beta):
    """out = g * sigmoid(alpha * g) * (u + beta), g = x[:, :d].clamp(max=limit), u = x[:, d:].clamp(+-limit):
    SiluAndMulWithClamp.forward_native (activation.py) and the kernel's act_first+HAS_CLAMP branch of
    compute()/packed_compute(). d % 8 != 0 (2 * 63) takes the scalar path, the others the 128-bit one."""
    fn = _wrapper(section, "_C.silu_and_mul_with_clamp")
    torch.manual_seed(8)
    x = (4 * torch.randn(shape, device="cuda")).to(dtype)  # |x| > 7 for a few per cent: both clamps are hit
    d = shape[-1] // 2
    out = torch.empty(shape[0], d, device="cuda", dtype=dtype)
    fn(out, x, limit, alpha, beta)
    torch.cuda.synchronize()
    xf = x.float()
    g, u = xf[:, :d].clamp(max=limit), xf[:, d:].clamp(min=-limit, max=limit)
    ref = (g * torch.sigmoid(alpha * g) * (u + beta)).to(dtype)
    # the kernel rounds the activated half to the input type before the multiply, as silu_and_mul does
    _check(section, f"_C.silu_and_mul_with_clamp[limit={limit},alpha={alpha},beta={beta}]", dtype, shape, out, ref,
           TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7, 2 * 64), (7, 2 * 63), (4096, 2 * 768), (1024, 2 * 2880)], ids=str)
@pytest.mark.parametrize("params", [None, (1.0, 3.0)], ids=["default", "alpha1_limit3"])
def test_swigluoai_and_mul(section, dtype, shape, params):
    """GPT-OSS SwiGLU on INTERLEAVED gate/up (gate = x[:, 0::2], up = x[:, 1::2]):
    out = (up.clamp(+-limit) + 1) * g * sigmoid(alpha * g), g = gate.clamp(max=limit); defaults alpha=1.702,
    limit=7.0 (SwigluOAIAndMul.forward_native; vllm::swigluoai_and_mul computes it in float, one rounding)."""
    fn = _wrapper(section, "_C.swigluoai_and_mul")
    torch.manual_seed(9)
    x = (4 * torch.randn(shape, device="cuda")).to(dtype)
    d = shape[-1] // 2
    out = torch.empty(shape[0], d, device="cuda", dtype=dtype)
    if params is None:
        fn(out, x)  # the wrapper's (= the schema's) defaults
        alpha, limit = 1.702, 7.0
    else:
        alpha, limit = params
        fn(out, x, alpha, limit)
    torch.cuda.synchronize()
    xf = x.float()
    g, u = xf[:, 0::2].clamp(max=limit), xf[:, 1::2].clamp(min=-limit, max=limit)
    ref = ((u + 1) * g * torch.sigmoid(alpha * g)).to(dtype)
    _check(section, f"_C.swigluoai_and_mul[alpha={alpha},limit={limit}]", dtype, shape, out, ref, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES + [torch.float32, torch.int32], ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_weak_ref_tensor(section, dtype, layout):
    """ops.h weak_ref_tensor: from_blob(input.data_ptr, sizes, strides, device, dtype): a new tensor over the
    same memory (no copy, same shape and strides), so writes through either one show in the other."""
    fn = _wrapper(section, "_C.weak_ref_tensor")
    torch.manual_seed(10)
    base = torch.randint(-100, 100, (64, 256), device="cuda").to(dtype)
    before = base.clone()
    x = base if layout == "contiguous" else base[3:, 1::2]  # non-contiguous, with a storage offset
    w = fn(x)
    torch.cuda.synchronize()
    assert isinstance(w, torch.Tensor) and w is not x
    assert w.data_ptr() == x.data_ptr()
    assert tuple(w.shape) == tuple(x.shape) and w.stride() == x.stride()
    assert w.dtype == x.dtype and w.device == x.device
    _check(section, f"_C.weak_ref_tensor[{layout}]", dtype, tuple(x.shape), w, x, 0.0)
    x.mul_(2)  # a write through the original shows in the alias ...
    torch.cuda.synchronize()
    assert torch.equal(w, x)
    w.fill_(3)  # ... and one through the alias in the original
    torch.cuda.synchronize()
    assert (x == 3).all()
    if layout == "strided":  # memory next to the view is untouched
        outside = torch.ones_like(base, dtype=torch.bool)
        outside[3:, 1::2] = False
        assert torch.equal(base[outside], before[outside])


def _distinct_scores(tokens, experts, lo, hi, dtype, seed, device="cuda"):
    """[tokens, experts] router logits in dtype, each row `experts` DISTINCT values drawn from the values in
    [lo, hi) that bf16 and fp16 both hold exactly (multiples of 2**-10 that survive rounding through bf16):
    no ties in any dtype, and each row draws its own subset."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    cand = torch.arange(lo, hi, 2.0 ** -10, device=device, dtype=torch.float32).to(torch.bfloat16).float().unique()
    assert cand.numel() >= experts
    pick = torch.rand(tokens, cand.numel(), device=device, generator=g).argsort(dim=-1)[:, :experts]
    vals = cand[pick]
    out = vals.to(dtype)
    assert torch.equal(out.float(), vals), "grid not exact in this dtype"
    return out.contiguous()


def _ref_select(choice, k, eps):
    """Top-k expert ids per row by `choice` (float32), and the rows where the k-th and (k+1)-th choice values
    differ by more than eps, i.e. where the selection does not hinge on float rounding."""
    vals, order = torch.sort(choice, dim=-1, descending=True, stable=True)
    clear = torch.ones(choice.shape[0], dtype=torch.bool, device=choice.device)
    if k < choice.shape[1]:
        clear &= (vals[:, k - 1] - vals[:, k]) > eps
    return order[:, :k], clear


def _check_routing(section, op, dtype, shape, w, ids, score, ref_ids, clear, renorm, rsf, wtol, min_clear=0.9):
    """ids: in range, distinct per row, the reference's set wherever the choice is clear (compared as sets:
    the order within a row is not part of the contract); weights: the reference formula applied to the ids
    the kernel returned: score[ids] (unbiased), / their sum if renorm, * routed_scaling_factor."""
    T, E = score.shape
    assert w.dtype == torch.float32 and tuple(w.shape) == tuple(ref_ids.shape)
    assert tuple(ids.shape) == tuple(ref_ids.shape)
    il = ids.long()
    assert ((il >= 0) & (il < E)).all(), "expert id out of range"
    got = il.sort(dim=-1).values
    assert (got.diff(dim=-1) != 0).all(), "an expert picked twice in a row"
    n_clear = int(clear.sum())
    assert n_clear >= min(T - 1, min_clear * T), f"only {n_clear} of {T} rows have a clear top-k (inputs too tie-prone)"
    want = ref_ids.long().sort(dim=-1).values
    bad = (got != want).any(dim=-1) & clear
    if bad.any():
        r = int(bad.nonzero()[0, 0])
        raise AssertionError(f"{op}: {int(bad.sum())} of {int(clear.sum())} rows select other experts than the "
                             f"reference; row {r}: got {got[r].tolist()}, want {want[r].tolist()}")
    section.RESULTS["checks"].append({"section": section.LABEL, "op": op + "[ids]", "dtype": str(dtype).replace(
        "torch.", ""), "shape": list(shape), "max_abs_err": 0.0, "exact": True, "rows_compared": int(clear.sum()),
        "rows": T})
    ref_w = score.gather(1, il)
    if renorm:
        ref_w = ref_w / (ref_w.sum(dim=-1, keepdim=True) + 1e-20)
    _check(section, op, dtype, shape, w, ref_w * rsf, wtol)


def _routing_bufs(tokens, k):
    w = torch.empty(tokens, k, device="cuda", dtype=torch.float32)
    ids = torch.empty(tokens, k, device="cuda", dtype=torch.int32)
    tei = torch.empty(tokens, k, device="cuda", dtype=torch.int32)
    return w, ids, tei


def _check_token_expert_indices(tei, tokens, k):
    # source_rows[k * row + k_idx] = k_idx * num_rows + row (topk_softmax_kernels.cu / topk_softplus_sqrt_kernels.cu)
    want = (torch.arange(k, device="cuda")[None, :] * tokens + torch.arange(tokens, device="cuda")[:, None])
    assert torch.equal(tei.long(), want), "token_expert_indices"


@pytest.mark.parametrize("gdtype", [torch.float32] + DTYPES, ids=str)
@pytest.mark.parametrize("tokens,experts,k", [(7, 128, 8), (4096, 128, 8), (1024, 160, 8), (512, 256, 8)], ids=str)
@pytest.mark.parametrize("renorm", [True, False])
@pytest.mark.parametrize("biased,rsf", [(False, 1.0), (True, 2.5)], ids=["nobias", "bias_rsf2.5"])
def test_topk_sigmoid(section, gdtype, tokens, experts, k, renorm, biased, rsf):
    """sigmoid(logits) in float; experts chosen by sigmoid + bias (bias: selection only), weights the unbiased
    sigmoid, / their sum if renormalize, * routed_scaling_factor (topkGating / moeSigmoid+moeTopK in
    topk_softmax_kernels.cu; vllm_topk_sigmoid in fused_topk_bias_router.py). 160 experts (not a power of 2
    nor a listed multiple of 64) takes the workspace path moeSigmoid + moeTopK."""
    fn = _wrapper(section, "_moe_C.topk_sigmoid")
    torch.manual_seed(11)
    g = _distinct_scores(tokens, experts, -4.0, 4.0, gdtype, seed=11)
    bias = (0.1 * torch.randn(experts, device="cuda")).contiguous() if biased else None  # float32, as checked
    w, ids, tei = _routing_bufs(tokens, k)
    extra = [None] if "is_padding" in inspect.signature(fn).parameters else []   # 0.33.0 adds is_padding
    fn(w, ids, tei, g, renorm, bias, rsf, *extra)
    torch.cuda.synchronize()
    s = torch.sigmoid(g.float())
    ref_ids, clear = _ref_select(s + (bias if biased else 0.0), k, eps=1e-5)
    _check_routing(section, f"_moe_C.topk_sigmoid[renorm={renorm},bias={biased},rsf={rsf}]", gdtype,
                   (tokens, experts, k), w, ids, s, ref_ids, clear, renorm, rsf, 1e-5)
    _check_token_expert_indices(tei, tokens, k)


def _sqrt_softplus(x):
    # softplus with torch's (and the kernel's) threshold 20: x itself above it
    return torch.sqrt(torch.nn.functional.softplus(x.float()))


@pytest.mark.parametrize("gdtype", [torch.float32] + DTYPES, ids=str)
@pytest.mark.parametrize("tokens,experts,k", [(7, 128, 8), (4096, 128, 8), (1024, 256, 6), (512, 384, 6)], ids=str)
@pytest.mark.parametrize("renorm", [True, False])
@pytest.mark.parametrize("biased,rsf", [(False, 1.0), (True, 2.5)], ids=["nobias", "bias_rsf2.5"])
def test_topk_softplus_sqrt(section, gdtype, tokens, experts, k, renorm, biased, rsf):
    """score = sqrt(softplus(logit)) (softplus = x above 20); choice = score + bias; weights = the unbiased
    score of the chosen experts (kernel: max_val - bias[expert]), / their sum if renormalize,
    * routed_scaling_factor (topkGatingSoftplusSqrt, USE_HASH=false; _topk_softplus_sqrt_torch in
    fused_topk_bias_router.py). The kernel supports 1..512 powers of 2 and 192/320/384/448/576 experts only
    (160 is refused), so the model-sized cases are 128 (Qwen3-30B-A3B), 256 and 384."""
    fn = _wrapper(section, "_moe_C.topk_softplus_sqrt")
    torch.manual_seed(12)
    g = _distinct_scores(tokens, experts, -8.0, 24.0, gdtype, seed=12)  # > 20: the linear branch is hit too
    bias = (0.5 + 0.1 * torch.randn(experts, device="cuda")).contiguous() if biased else None
    w, ids, tei = _routing_bufs(tokens, k)
    extra = [None] if "is_padding" in inspect.signature(fn).parameters else []   # 0.33.0 adds is_padding
    fn(w, ids, tei, g, renorm, rsf, bias, None, None, *extra)
    torch.cuda.synchronize()
    s = _sqrt_softplus(g)
    ref_ids, clear = _ref_select(s + (bias if biased else 0.0), k, eps=1e-4)
    # __expf/__logf intrinsics, and (s + b) - b for the biased case: 5e-5
    _check_routing(section, f"_moe_C.topk_softplus_sqrt[renorm={renorm},bias={biased},rsf={rsf}]", gdtype,
                   (tokens, experts, k), w, ids, s, ref_ids, clear, renorm, rsf, 5e-5)
    _check_token_expert_indices(tei, tokens, k)


@pytest.mark.parametrize("gdtype", [torch.float32] + DTYPES, ids=str)
@pytest.mark.parametrize("tokens,experts,k", [(7, 256, 6), (1024, 256, 6), (512, 384, 6), (64, 128, 8)], ids=str)
@pytest.mark.parametrize("renorm", [True, False])
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32], ids=str)
def test_topk_softplus_sqrt_hash(section, gdtype, tokens, experts, k, renorm, id_dtype):
    """Hash MoE: ids = tid2eid[input_ids] (no selection, bias unused), weights sqrt(softplus(logit)) at
    those ids, / their sum if renormalize, * routed_scaling_factor. fp32 logits + k=6 + renormalize with
    256/384 experts take dsv4HashTopkSoftplusSqrt; the rest the USE_HASH branch of topkGatingSoftplusSqrt."""
    fn = _wrapper(section, "_moe_C.topk_softplus_sqrt")
    torch.manual_seed(13)
    vocab, rsf = 1000, 1.5
    g = _distinct_scores(tokens, experts, -8.0, 24.0, gdtype, seed=13)
    # distinct per row; contiguous [vocab, k] like the model's parameter (the kernel reads row token_id * k)
    tid2eid = torch.rand(vocab, experts, device="cuda").argsort(dim=-1)[:, :k].to(id_dtype).contiguous()
    input_ids = torch.randint(0, vocab, (tokens,), device="cuda").to(id_dtype)
    w, ids, tei = _routing_bufs(tokens, k)
    extra = [None] if "is_padding" in inspect.signature(fn).parameters else []   # 0.33.0 adds is_padding
    fn(w, ids, tei, g, renorm, rsf, None, input_ids, tid2eid, *extra)
    torch.cuda.synchronize()
    want = tid2eid[input_ids.long()].long()
    assert torch.equal(ids.long(), want), "hash MoE ids are tid2eid[input_ids], in that order"
    s = _sqrt_softplus(g)
    clear = torch.ones(tokens, dtype=torch.bool, device="cuda")
    _check_routing(section, f"_moe_C.topk_softplus_sqrt[hash,renorm={renorm},{str(id_dtype)[6:]}]", gdtype,
                   (tokens, experts, k), w, ids, s, want, clear, renorm, rsf, 5e-5)


def _ref_grouped(score, choice, n_group, topk_group, topk, eps, group_round=None):
    """DeepSeek-V3 grouped routing: group score = sum of the top-2 biased scores of each group; keep the
    topk_group best groups; top-k experts by biased score inside them (grouped_topk in
    grouped_topk_router.py). Returns the ids and the rows where neither choice is within eps of a tie."""
    T, E = choice.shape
    epg = E // n_group
    gs = choice.view(T, n_group, epg).topk(min(2, epg), dim=-1).values.sum(dim=-1)
    if group_round is not None:  # the generic kernel adds the two in the score dtype
        gs = gs.to(group_round).float()
    gvals, gorder = torch.sort(gs, dim=-1, descending=True, stable=True)
    clear = torch.ones(T, dtype=torch.bool, device=choice.device)
    if topk_group < n_group:
        clear &= (gvals[:, topk_group - 1] - gvals[:, topk_group]) > eps
    keep = torch.zeros(T, n_group, dtype=torch.bool, device=choice.device)
    keep.scatter_(1, gorder[:, :topk_group], True)
    masked = choice.masked_fill(~keep.repeat_interleave(epg, dim=1), float("-inf"))
    ids, clear_k = _ref_select(masked, topk, eps)
    return ids, clear & clear_k


# (tokens, experts, n_group, topk_group, topk, scoring_func, score dtypes); comments name the kernel taken
GROUPED_CASES = [
    (4096, 256, 8, 4, 8, 1, "all"),   # DeepSeek-V3: small_expert_count kernel, groups
    (7, 256, 8, 4, 8, 1, "all"),      # the same with <= 16 tokens (PDL launch)
    (33, 64, 4, 2, 4, 1, "all"),      # small: 16 experts per group
    (1024, 128, 1, 1, 8, 1, "all"),   # one group, 128 experts (Qwen3-30B-A3B count)
    (1024, 160, 1, 1, 8, 1, "all"),   # one group, 160 experts (Qwen3-Coder-480B count): 384-thread kernel
    (1024, 256, 8, 4, 8, 0, "all"),   # scoring_func 0: scores given (the softmax caller), groups
    (512, 256, 4, 2, 8, 0, "all"),    # 64 experts per group: generic grouped_topk_fused_kernel
    (512, 256, 4, 2, 8, 1, "fp32"),   # generic kernel with sigmoid (fp32 only: it rounds to the score dtype)
]


def _grouped_params():
    out = []
    for case in GROUPED_CASES:
        for dt in ([torch.float32] + DTYPES if case[-1] == "all" else [torch.float32]):
            out.append(pytest.param(dt, *case[:-1], id=f"{str(dt)[6:]}-{case[:-1]}"))
    return out


@pytest.mark.parametrize("dtype,tokens,experts,n_group,topk_group,topk,scoring", _grouped_params())
@pytest.mark.parametrize("renorm,rsf", [(True, 2.5), (False, 1.0)], ids=["renorm_rsf2.5", "norenorm"])
def test_grouped_topk(section, dtype, tokens, experts, n_group, topk_group, topk, scoring, renorm, rsf):
    """grouped_topk(scores, n_group, topk_group, topk, renormalize, routed_scaling_factor, bias, scoring_func)
    -> (float32 weights, int32 ids): score = sigmoid(logit) (scoring_func 1) or the input (0); choice =
    score + bias; DeepSeek-V3 group / expert selection (_ref_grouped); weights = unbiased score at the ids,
    * routed_scaling_factor, / (their sum + 1e-20) if renormalize (grouped_topk_kernels.cu)."""
    fn = _wrapper(section, "_moe_C.grouped_topk")
    torch.manual_seed(14)
    generic = (n_group > 1 and experts // n_group > 32)
    if scoring == 1:
        x = _distinct_scores(tokens, experts, -4.0, 4.0, dtype, seed=14)
        score = torch.sigmoid(x.float())
    else:  # positive "probabilities", as the softmax caller passes
        x = _distinct_scores(tokens, experts, 2.0 ** -4, 1.0, dtype, seed=14)
        score = x.float()
    if generic and dtype != torch.float32:
        # the generic kernel adds bias and group top-2 in the score dtype: a zero bias keeps choice == score
        bias = torch.zeros(experts, device="cuda", dtype=torch.float32)
        eps, group_round = 0.0, dtype
    else:
        bias = 0.05 * torch.randn(experts, device="cuda", dtype=torch.float32)
        eps, group_round = 2e-5, None
    vals, ids = fn(x, n_group, topk_group, topk, renorm, rsf, bias, scoring)
    torch.cuda.synchronize()
    assert vals.dtype == torch.float32 and ids.dtype == torch.int32
    ref_ids, clear = _ref_grouped(score, score + bias, n_group, topk_group, topk, eps, group_round)
    _check_routing(section, f"_moe_C.grouped_topk[groups={n_group}/{topk_group},scoring={scoring},renorm={renorm}]",
                   dtype, (tokens, experts, n_group, topk_group, topk), vals, ids, score, ref_ids, clear, renorm,
                   rsf, 1e-5, min_clear=0.8)


def test_build_is_cached_and_lazy(section):
    """The build ran once; the wrappers call straight into the loaded library afterwards."""
    import os
    assert section._CUDA_EXT_PATH and os.path.exists(section._CUDA_EXT_PATH)
    b = section.RESULTS["builds"][section.LABEL]
    assert b["warm_build_s"] < b["cold_build_s"]
    assert b["warm_build_s"] < 10.0
