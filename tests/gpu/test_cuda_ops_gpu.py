"""Each bundled op, built from the generated CUDA section, against a float32 torch reference
(bf16 and fp16; a small shape and model-sized shapes of Qwen3-30B-A3B / Qwen3-Coder-480B)."""

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
    import inspect
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


def test_build_is_cached_and_lazy(section):
    """The build ran once; the wrappers call straight into the loaded library afterwards."""
    import os
    assert section._CUDA_EXT_PATH and os.path.exists(section._CUDA_EXT_PATH)
    b = section.RESULTS["builds"][section.LABEL]
    assert b["warm_build_s"] < b["cold_build_s"]
    assert b["warm_build_s"] < 10.0
