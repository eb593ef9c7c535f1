"""The text of A6's `invocation_example`: its header comment, signature and docstring, the prelude every kind of
symbol shares (device, dtype, memory budget, token counts), and the body of each kind (`template_body`)."""

from __future__ import annotations

import math
from typing import Any


def py_literal(obj: Any) -> str:
    """A Python literal for a JSON-like value, deterministic (sorted keys)."""
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in items) + "}"
    if isinstance(obj, (list, tuple)):
        inner = ", ".join(py_literal(v) for v in obj)
        return f"[{inner}]" if isinstance(obj, list) else f"({inner}{',' if len(obj) == 1 else ''})"
    if isinstance(obj, float):
        if math.isinf(obj) or math.isnan(obj):
            return f"float({str(obj)!r})"
        return repr(obj)
    return repr(obj)


def header(symbol: str, template: str, model_name: str | None, src: str | None, sha: str | None,
            dims: dict, flags: dict, workload: dict, width: int = 100) -> str:
    lines = [
        "#" * width,
        f"# invocation_example: {symbol} ({template} example, written by A6)",
        f"# model: {model_name or '(none: generic Llama-like dims, not model-aware)'}",
        f"# config: {src + ' sha256=' + sha if src else '(none)'}",
        "# dims: " + ", ".join(f"{k}={dims[k]}" for k in ("H", "H_q", "H_kv", "Dh", "max_ctx") if k in dims)
        + (f" (Dh {dims['Dh_source']})" if "Dh_source" in dims else ""),
    ]
    extra = {k: v for k, v in dims.items() if k not in ("H", "H_q", "H_kv", "Dh", "max_ctx", "Dh_source")}
    if extra:
        lines.append("#       " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
    lines.append(f"# workload: {workload['kind']} ({workload['source']}: {workload['reason']})")
    lines.append(f"# shapes: {workload['shapes']}")
    fl = []
    for k in ("sliding_window", "rope_theta", "rope_scaling", "qk_norm", "attention_bias", "hidden_act", "dtype"):
        if k in flags:
            fl.append(f"{k}={flags[k]}")
    if flags.get("moe"):
        m = flags["moe"]
        fl.append("moe(" + ", ".join(f"{k}={m[k]}" for k in ("num_experts", "top_k", "moe_intermediate_size",
                                                              "norm_topk_prob", "shared_expert_intermediate_size")) + ")")
    if fl:
        cur = "# flags:"
        for item in fl:
            if len(cur) + len(item) + 1 > width:
                lines.append(cur)
                cur = "#       "
            cur += " " + item
        lines.append(cur)
    lines.append("# Defined only: call invocation_example(small=True) for a quick check on a GPU.")
    lines.append("#" * width)
    return "\n".join(lines) + "\n"


SIGNATURE = "small=False, workload=None, tokens=None, batch=None, context=None"

# The part every template shares: device, dtype, the memory budget, and the token counts.
PRELUDE = '''\
    import torch

    dims = {dims}
    flags = {flags}
    workload = workload or {workload!r}
    if workload not in ("prefill", "decode"):
        raise ValueError(f"invocation_example: workload={{workload!r}}: pass 'prefill' or 'decode'")
    for _name, _value in (("tokens", tokens), ("batch", batch), ("context", context)):
        if _value is not None and (not isinstance(_value, int) or _value < (0 if _name == "context" else 1)):
            raise ValueError(f"invocation_example: {{_name}}={{_value!r}}: pass a positive integer or None")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    dtype = getattr(torch, {dtype!r}, torch.bfloat16)
    GiB = 1 << 30
    if device.type == "cuda":
        free_bytes, _total = torch.cuda.mem_get_info(device)
        # The live set: about 20% of free memory, between 2 and 8 GiB.
        budget = min(max(int(free_bytes * 0.2), 2 * GiB), 8 * GiB, int(free_bytes * 0.9))
    else:
        free_bytes, budget = 0, 0
        small = True  # no GPU: only the sanity size makes sense

    def _clamp(v, lo, hi):
        return max(lo, min(hi, v))

    def _prefill_tokens(bytes_per_token):
        # prefill: 8k to 32k tokens, within memory and the max context
        if small:
            return min(16, dims["max_ctx"])
        t = _clamp(budget // max(1, bytes_per_token), 8192, 32768)
        t = min(t, dims["max_ctx"])
        return max(16, t // 16 * 16)

    def _decode_tokens(bytes_per_token):
        # decode without a KV cache: one new token for each of a batch of sequences
        if small:
            return 4
        return _clamp(budget // max(1, bytes_per_token), 1, 256)

    def _tokens(bytes_per_token):
        if tokens is not None:
            return tokens
        return _decode_tokens(bytes_per_token) if workload == "decode" else _prefill_tokens(bytes_per_token)

    def _check(name, t, shape):
        if tuple(t.shape) != tuple(shape):
            raise AssertionError(f"{{name}}: shape {{tuple(t.shape)}}, expected {{tuple(shape)}}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise AssertionError(f"{{name}}: non-finite values")

    gen = torch.Generator(device=device).manual_seed(0)

    def _randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32).mul_(scale).to(dtype)
'''

_BODIES: dict[str, str] = {}

_BODIES["norm"] = '''\
    H, eps = dims["H"], dims["eps"]
    T = _tokens(16 * H)
    layer = {sym}(H, eps=eps).to(device=device, dtype=dtype)
    x = _randn(T, H)
    residual = _randn(T, H)
{weight}    out = layer(x.clone())
    _check("out", out, (T, H))
    out2, res2 = layer(x.clone(), residual.clone())
    _check("out (with residual)", out2, (T, H))
    _check("residual", res2, (T, H))
    if device.type == "cuda":
        torch.cuda.synchronize()
    errors = {{}}
{reference}    cost = {{"flops": 6 * T * H, "bytes": (4 * T * H + H) * torch.finfo(dtype).bits // 8}}  # read x, residual; write both
    return {{"module": layer, "inputs": {{"x": x, "residual": residual}}, "outputs": {{"out": out, "out_residual": (out2, res2)}},
            "forward": lambda: layer(x.clone(), residual.clone()), "cost": cost,
            "sizes": {{"T": T, "H": H}}, "workload": workload, "max_abs_err": errors}}
'''
# RMSNorm's own definition (x * rsqrt(mean(x^2) + eps) * w, in float32), checked in bf16 tolerance.
_NORM_WEIGHT = '''\
    with torch.no_grad():
        layer.weight.copy_(1.0 + 0.1 * _randn(H).float())
'''
_NORM_REFERENCE = '''\
    def _rms_ref(v):
        v = v.float()
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * layer.weight.float()

    def _close(name, got, want, tol=3e-2):
        err = (got.float() - want.float()).abs().max().item()
        errors[name] = err
        if err > tol * max(1.0, want.float().abs().max().item()):
            raise AssertionError(f"{{name}}: max abs error {{err}} against the float32 reference")

    _close("out", out, _rms_ref(x))
    summed = (x.float() + residual.float()).to(dtype)
    _close("residual", res2, summed)
    _close("out (with residual)", out2, _rms_ref(summed))
'''

_BODIES["act_and_mul"] = '''\
    I = dims["I"]
    T = _tokens(14 * I)
    layer = {sym}().to(device=device)
    x = _randn(T, 2 * I)
    out = layer(x)
    _check("out", out, (T, I))
    if device.type == "cuda":
        torch.cuda.synchronize()
    errors = {{}}
{reference}    cost = {{"flops": 6 * T * I, "bytes": 3 * T * I * torch.finfo(dtype).bits // 8}}
    return {{"module": layer, "inputs": {{"x": x}}, "outputs": {{"out": out}}, "sizes": {{"T": T, "I": I}},
            "forward": lambda: layer(x), "cost": cost,
            "workload": workload, "max_abs_err": errors}}
'''
# SiluAndMul's own definition: silu(x[:, :I]) * x[:, I:], in float32.
_SILU_REFERENCE = '''\
    want = torch.nn.functional.silu(x[:, :I].float()) * x[:, I:].float()
    errors["out"] = (out.float() - want).abs().max().item()
    if errors["out"] > 3e-2 * max(1.0, want.abs().max().item()):
        raise AssertionError(f"out: max abs error {{errors['out']}} against the float32 reference")
'''

_BODIES["activation"] = '''\
    I = dims["I"]
    T = _tokens(12 * I)
    layer = {sym}().to(device=device)
    x = _randn(T, I)
    out = layer(x)
    _check("out", out, (T, I))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {{"module": layer, "inputs": {{"x": x}}, "outputs": {{"out": out}}, "sizes": {{"T": T, "I": I}},
            "forward": lambda: layer(x), "cost": {{"flops": 5 * T * I, "bytes": 2 * T * I * torch.finfo(dtype).bits // 8}},
            "workload": workload}}
'''

_BODIES["rope"] = '''\
    H_q, H_kv, Dh, max_ctx = dims["H_q"], dims["H_kv"], dims["Dh"], dims["max_ctx"]
    T = _tokens(12 * (H_q + H_kv) * Dh)
    rope_parameters = flags.get("rope_parameters") or {{"rope_type": "default", "rope_theta": 10000.0}}
{build}
    if workload == "decode":
        # one new token per sequence, each at a long position within the max context
        positions = torch.randint(max_ctx // 2, max_ctx, (T,), generator=gen, device=device)
    else:
        positions = torch.arange(T, device=device)
    q = _randn(T, H_q * Dh)
    k = _randn(T, H_kv * Dh)
    q_out, k_out = rope(positions, q.clone(), k.clone())
    _check("query", q_out, (T, H_q * Dh))
    _check("key", k_out, (T, H_kv * Dh))
    if device.type == "cuda":
        torch.cuda.synchronize()
    cost = {{"flops": 3 * T * (H_q + H_kv) * Dh, "bytes": 2 * T * (H_q + H_kv) * Dh * torch.finfo(dtype).bits // 8}}
    return {{"module": rope, "inputs": {{"positions": positions, "query": q, "key": k}},
            "forward": lambda: rope(positions, q.clone(), k.clone()), "cost": cost,
            "outputs": {{"query": q_out, "key": k_out}}, "sizes": {{"T": T}}, "workload": workload}}
'''
_ROPE_BUILD = {
    "get_rope": '''\
    rope = {sym}(Dh, max_ctx, is_neox_style=True, rope_parameters=dict(rope_parameters), dtype=dtype)
    rope = rope.to(device)''',
    "class": '''\
    rotary_dim = int(Dh * rope_parameters.get("partial_rotary_factor", 1.0))
    rope = {sym}(Dh, rotary_dim, max_ctx, float(rope_parameters.get("rope_theta", 10000.0)), True, dtype)
    rope = rope.to(device)''',
}

_BODIES["fused_experts"] = '''\
    H = dims["H"]
    moe = flags.get("moe") or {{"num_experts": 8, "top_k": 2, "moe_intermediate_size": dims.get("I", 1024),
                               "norm_topk_prob": True}}
    E, top_k, I = moe["num_experts"], moe["top_k"], moe["moe_intermediate_size"]
    weight_bytes = E * 3 * H * I * torch.finfo(dtype).bits // 8
    if device.type == "cuda" and weight_bytes > free_bytes * 0.8:
        raise MemoryError(f"the experts' weights take {{weight_bytes / GiB:.1f}} GiB, more than this GPU has free")
    T = _tokens(4 * H + top_k * (6 * I + 4 * H) + 64)
    # Weights in vLLM's layout: w1 = [E, 2I, H] (gate then up), w2 = [E, H, I].
    w1 = _randn(E, 2 * I, H, scale=H ** -0.5)
    w2 = _randn(E, H, I, scale=I ** -0.5)
    x = _randn(T, H)
    # The router: softmax in fp32, top-k, renormalised when the model says so.
    router_logits = torch.randn(T, E, generator=gen, device=device, dtype=torch.float32)
    topk_weights, topk_ids = torch.topk(torch.softmax(router_logits, dim=-1), top_k, dim=-1)
    if moe.get("norm_topk_prob", True):
        topk_weights = topk_weights / topk_weights.sum(dim=-1, keepdim=True)
    topk_ids = topk_ids.to(torch.int32)
    out = {sym}(x, w1, w2, topk_weights, topk_ids)
    _check("out", out, (T, H))
    if device.type == "cuda":
        torch.cuda.synchronize()
    touched = min(E, T * top_k)  # experts whose weights the kernels read
    cost = {{"flops": 2 * T * top_k * 3 * H * I, "bytes": (touched * 3 * H * I + 2 * T * H) * torch.finfo(dtype).bits // 8}}
    return {{"module": None, "forward": lambda: {sym}(x, w1, w2, topk_weights, topk_ids), "cost": cost,
            "inputs": {{"hidden_states": x, "w1": w1, "w2": w2, "topk_weights": topk_weights,
            "topk_ids": topk_ids}}, "outputs": {{"out": out}}, "sizes": {{"T": T, "E": E, "top_k": top_k, "I": I}},
            "workload": workload}}
'''

_BODIES["generic"] = '''\
    target = globals().get({sym!r})
    if target is None:
        raise NameError("the bundle does not define {sym}")
    # A6 has no invocation template for this kind of symbol: the example only resolves it.
    return {{"module": target, "inputs": {{}}, "outputs": {{}}, "sizes": {{}}, "workload": workload}}
'''


def template_body(template: str, symbol: str, kind: str | None) -> tuple[str, list[str]]:
    """(the body of a template other than `decoder_layer`, notes) for `symbol` (of graph kind `kind`)."""
    if template == "rope":
        build = _ROPE_BUILD["get_rope" if kind == "function" else "class"].format(sym=symbol)
        return _BODIES["rope"].format(build=build), []
    if template == "norm":
        exact = symbol == "RMSNorm"  # the reference is RMSNorm's own formula, not a variant's (Gemma: 1 + w)
        body = _BODIES["norm"].format(sym=symbol, weight=_NORM_WEIGHT if exact else "",
                                      reference=_NORM_REFERENCE if exact else "")
        return body, ["the example also checks RMSNorm against its float32 formula (bf16 tolerance)"] if exact else []
    if template == "act_and_mul":
        exact = symbol == "SiluAndMul"
        body = _BODIES["act_and_mul"].format(sym=symbol, reference=_SILU_REFERENCE if exact else "")
        return body, (["the example also checks SiluAndMul against its float32 formula (bf16 tolerance)"]
                      if exact else [])
    return _BODIES[template].format(sym=symbol), []


def docstring(symbol: str, model_name: str | None, workload: str, template: str) -> str:
    return (f'    """Build {symbol} for {model_name or "generic dims"} and run one {workload} forward on '
            f'random inputs.\n\n    small=True: a quick sanity size. workload: "prefill" or "decode" (default '
            f'{workload}); tokens, batch, context: the sizes (new tokens per sequence, sequences, cached tokens '
            f'per sequence), chosen from memory when None.\n    Returns a dict: module, inputs, outputs, sizes, '
            f'workload{", forward" if template == "decoder_layer" else ""}.\n'
            f'    Defined only: importing the bundle never calls it.\n    """\n')
