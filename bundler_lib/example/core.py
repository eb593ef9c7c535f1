"""A6 model-aware invocation example: `A6.example.py` (the source of `invocation_example`) and `A6.model.json`.

Reads `A1.graph.json` (symbol, kind, def_file, variant, python_nodes) and, when a model is given, its
`config.json`. Derives the dims (H, H_q, H_kv, Dh, max context, MoE sizes) and flags, checks them, picks a
workload (given, or inferred: decode when the example uses a KV cache, else prefill), and writes the
source of `invocation_example(small=False)` for the kind of symbol:

- `norm`: RMSNorm-like layers, `Cls(H, eps=eps)` on `[T, H]` (and with a residual);
- `act_and_mul`: SiluAndMul-like layers on `[T, 2*I]` -> `[T, I]`; `activation`: elementwise `[T, I]`;
- `rope`: `get_rope(Dh, max_ctx, ...)` (or a RotaryEmbedding class) on positions, q `[T, H_q*Dh]`, k `[T, H_kv*Dh]`;
- `fused_experts`: the Triton MoE function on `[T, H]` with `w1 [E, 2I, H]`, `w2 [E, H, I]` and routed top-k;
- `decoder_layer`: a `*DecoderLayer` built and run through vLLM's own engine setup (see `decoder.py`);
- `generic`: no template: the example only resolves the symbol (said in the notes).

The example is a function definition only (never run on import); it sizes itself with
`torch.cuda.mem_get_info()`, builds the layer, allocates inputs, runs one forward and checks the output
shapes, and returns a dict (module, inputs, outputs, sizes). `small=True` gives a quick sanity size.
Everything written is deterministic: no timestamps, no absolute paths (the config is named by its
`models/<org>--<name>/config.json` path or file name, and its sha256).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.common.contract import load_graph
from bundler_lib.common.example_roots import is_decoder_layer
from bundler_lib.errors import StageError
from bundler_lib.example import cli

STAGE = "A6 example"
EXAMPLE = "A6.example.py"
MODEL_JSON = "A6.model.json"

# Defaults of a symbol built without a model ("shape-only" example): a Llama-like 8B.
GENERIC_DIMS = {"H": 4096, "H_q": 32, "H_kv": 8, "Dh": 128, "max_ctx": 8192, "intermediate_size": 14336,
                "eps": 1e-6, "rope_theta": 10000.0}

GiB = 1 << 30


def generic_config() -> dict:
    """GENERIC_DIMS as a Hugging Face config (the keys vLLM's Llama-like layers read): what a decoder layer is
    built from when the target names no model."""
    d = GENERIC_DIMS
    return {"hidden_size": d["H"], "num_attention_heads": d["H_q"], "num_key_value_heads": d["H_kv"],
            "head_dim": d["Dh"], "max_position_embeddings": d["max_ctx"], "intermediate_size": d["intermediate_size"],
            "rms_norm_eps": d["eps"], "rope_parameters": {"rope_type": "default", "rope_theta": d["rope_theta"]},
            "num_hidden_layers": 32, "vocab_size": 128256, "hidden_act": "silu", "attention_bias": False,
            "tie_word_embeddings": False, "dtype": "bfloat16"}


# --------------------------------------------------------------------------------------------------
# config -> dims, flags


def _first(cfg: dict, keys: list[str]) -> tuple[Any, str | None]:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k], k
    return None, None


def _int(value: Any, key: str, src: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise StageError(STAGE, src, f"{key} = {value!r} is not a positive integer",
                         "check the model's config.json")
    return int(value)


def text_config(cfg: dict) -> tuple[dict, str]:
    """The language-model part of a config (multimodal configs nest it under text_config/llm_config)."""
    for k in ("text_config", "llm_config", "language_config"):
        sub = cfg.get(k)
        if isinstance(sub, dict) and ("hidden_size" in sub or "num_attention_heads" in sub):
            return sub, k
    return cfg, ""


def rope_parameters(cfg: dict) -> dict | None:
    """vLLM's normalised rope parameters (`rope_type`, `rope_theta`, the scaling keys), as its config patching
    gives them (`transformers_utils/config.py`: patch_rope_parameters)."""
    params = cfg.get("rope_parameters")
    params = dict(params) if isinstance(params, dict) else {}
    theta, _ = _first(cfg, ["rope_theta", "rotary_emb_base"])
    scaling = cfg.get("rope_scaling")
    if isinstance(scaling, dict):
        for k, v in scaling.items():
            params.setdefault(k, v)
    if theta is not None:
        params.setdefault("rope_theta", theta)
    if not params:
        return None
    if "rope_type" not in params:
        params["rope_type"] = params.pop("type", "default")
    else:
        params.pop("type", None)
    if params["rope_type"] == "su":
        params["rope_type"] = "longrope"
    prf, _ = _first(cfg, ["partial_rotary_factor", "rotary_pct", "rotary_emb_fraction"])
    if prf is not None:
        params.setdefault("partial_rotary_factor", prf)
    return params


MOE_EXPERT_KEYS = ["num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"]
MOE_TOPK_KEYS = ["num_experts_per_tok", "moe_topk", "moe_top_k", "moe_k", "top_k", "num_selected_experts"]


def example_layer(tc: dict) -> int:
    """The index of the layer the decoder example builds: 0, or in a MoE model whose dense and sparse layers
    alternate (decoder_sparse_step, mlp_only_layers) the first sparse one."""
    v, _ = _first(tc, MOE_EXPERT_KEYS)
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
        return 0
    step, dense = int(tc.get("decoder_sparse_step") or 1), list(tc.get("mlp_only_layers") or [])
    layer = 0
    while (layer + 1) % step != 0 or layer in dense:
        layer += 1
    return layer


def derive(cfg: dict, src: str, heads_required: bool = True) -> tuple[dict, dict, dict, list[str]]:
    """(dims, flags, keys used, notes) of a model config. Raises StageError on an inconsistent config. Without
    `heads_required`, a config without attention heads (a state-space model's) gives H_q, H_kv, Dh = None."""
    notes: list[str] = []
    tc, nested = text_config(cfg)
    if nested:
        notes.append(f"dims read from the config's {nested}")
    used: dict[str, str] = {}
    layer = example_layer(tc)
    n_layers, _ = _first(tc, ["num_hidden_layers", "n_layer", "num_layers"])

    def pick(keys: list[str]) -> tuple[Any, str | None]:
        """_first, where a per-layer list (one entry per hidden layer, as vLLM indexes it by layer) gives the
        entry of the example's layer."""
        v, k = _first(tc, keys)
        if isinstance(v, (list, tuple)):
            if not isinstance(n_layers, int) or len(v) != n_layers:
                raise StageError(STAGE, src, f"{k} is a list of {len(v)} entries, not one per layer "
                                 f"(num_hidden_layers = {n_layers!r})", "give one value, or one per layer")
            notes.append(f"{k} is per layer: layer {layer}'s {v[layer]!r} is used")
            return v[layer], f"{k}[{layer}]"
        return v, k

    def need(name: str, keys: list[str]) -> int:
        v, k = pick(keys)
        if v is None:
            raise StageError(STAGE, src, f"has no {name} (looked for {', '.join(keys)})",
                             "pass the config.json of a transformer language model")
        used[name] = k
        return _int(v, k, src)

    H = need("H", ["hidden_size", "n_embd", "d_model", "dim"])
    head_keys = ["num_attention_heads", "n_head", "n_heads", "num_heads"]
    if not heads_required and pick(head_keys)[0] is None:
        notes.append(f"no attention heads ({', '.join(head_keys)}): an attention-free layer")
        H_q = H_kv = Dh = dh_source = None
    else:
        H_q = need("H_q", head_keys)
        v, k = pick(["num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num"])
        if v is None and tc.get("multi_query") is True:
            v, k = 1, "multi_query"
        if v is None:
            H_kv, used["H_kv"] = H_q, "(= H_q: no num_key_value_heads)"
        else:
            H_kv, used["H_kv"] = _int(v, k, src), k
        if H_q % H_kv != 0:
            raise StageError(STAGE, src, f"num_attention_heads {H_q} is not a multiple of num_key_value_heads "
                             f"{H_kv}", "check the model's config.json (grouped-query attention needs H_q % H_kv == 0)")
        v, k = pick(["head_dim", "kv_channels", "attention_head_dim"])
        if v is not None:
            Dh, dh_source, used["Dh"] = _int(v, k, src), "given", k
            if Dh * H_q != H:
                notes.append(f"head_dim {Dh} is given: H_q*Dh = {H_q * Dh} != hidden_size {H} (allowed when given)")
        else:
            # as vLLM's layers do without head_dim: hidden_size // num_attention_heads, remainder or not
            Dh, dh_source, used["Dh"] = H // H_q, "derived", "hidden_size // num_attention_heads"
            if Dh * H_q != H:
                notes.append(f"no head_dim: {H} // {H_q} = {Dh} (as vLLM derives it), though {H_q} heads * {Dh} "
                             f"!= hidden_size {H}")
    v, k = pick(["max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                 "max_seq_len", "model_max_length"])
    if v is None:
        max_ctx, used["max_ctx"] = 4096, "(default 4096: no max_position_embeddings)"
        notes.append("the config gives no max context; 4096 assumed")
    else:
        max_ctx, used["max_ctx"] = _int(v, k, src), k
    dims: dict[str, Any] = {"H": H, "H_q": H_q, "H_kv": H_kv, "Dh": Dh, "Dh_source": dh_source,
                            "max_ctx": max_ctx, "layer": layer}
    v, k = pick(["intermediate_size", "ffn_hidden_size", "n_inner"])
    if v is not None:
        dims["intermediate_size"], used["intermediate_size"] = _int(v, k, src), k
    v, k = _first(tc, ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"])
    dims["eps"] = float(v) if v is not None else 1e-6
    used["eps"] = k or "(default 1e-6)"
    for name, keys in (("num_layers", ["num_hidden_layers", "n_layer", "num_layers"]),
                       ("vocab_size", ["vocab_size"])):
        v, k = _first(tc, keys)
        if v is not None:
            dims[name], used[name] = _int(v, k, src), k

    # MoE
    flags: dict[str, Any] = {}
    v, k = _first(tc, MOE_EXPERT_KEYS)
    E = int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0
    if E > 0:
        used["num_experts"] = k
        top_k, tk = pick(MOE_TOPK_KEYS)
        if top_k is None:
            raise StageError(STAGE, src, f"is a MoE config ({k} = {E}) without num_experts_per_tok (vLLM's "
                             "router needs it)", "give the checkpoint's num_experts_per_tok in the config (a "
                             "generated config: in tools/gen_model_configs.py's OVERRIDES)")
        used["top_k"] = tk
        top_k = _int(top_k, tk, src)
        if top_k > E:
            raise StageError(STAGE, src, f"num_experts_per_tok {top_k} > num_experts {E}", "check the config")
        mi, mk = pick(["moe_intermediate_size", "expert_intermediate_size"])
        if mi is None:
            mi, mk = dims.get("intermediate_size"), used.get("intermediate_size")
        if mi is None:
            raise StageError(STAGE, src, "is a MoE config without moe_intermediate_size", "check the config")
        used["moe_intermediate_size"] = mk
        flags["moe"] = {
            "num_experts": E,
            "top_k": top_k,
            "moe_intermediate_size": _int(mi, mk, src),
            "norm_topk_prob": bool(tc.get("norm_topk_prob", False)),
            "shared_expert_intermediate_size": int(tc.get("shared_expert_intermediate_size") or 0),
            "decoder_sparse_step": int(tc.get("decoder_sparse_step") or 1),
            "mlp_only_layers": list(tc.get("mlp_only_layers") or []),
        }
    else:
        flags["moe"] = None

    # attention / rope flags
    sw = tc.get("sliding_window")
    use_sw = tc.get("use_sliding_window")
    if use_sw is False or sw in (None, 0):
        flags["sliding_window"] = None
    else:
        flags["sliding_window"] = _int(sw, "sliding_window", src)
    rp = rope_parameters(tc)
    flags["rope_parameters"] = rp
    flags["rope_theta"] = float(rp["rope_theta"]) if rp and "rope_theta" in rp else None
    flags["rope_scaling"] = tc.get("rope_scaling") if isinstance(tc.get("rope_scaling"), dict) else None
    if "use_qk_norm" in tc:
        flags["qk_norm"], used["qk_norm"] = bool(tc["use_qk_norm"]), "use_qk_norm"
    elif "qk_norm" in tc:
        flags["qk_norm"], used["qk_norm"] = bool(tc["qk_norm"]), "qk_norm"
    elif str(tc.get("model_type", "")).startswith("qwen3"):
        flags["qk_norm"], used["qk_norm"] = True, "model_type (Qwen3 models always normalise q and k)"
    else:
        flags["qk_norm"], used["qk_norm"] = False, "(not stated)"
    flags["attention_bias"] = bool(tc.get("attention_bias", tc.get("qkv_bias", False)))
    flags["hidden_act"] = tc.get("hidden_act") or tc.get("activation_function")
    flags["tie_word_embeddings"] = bool(tc.get("tie_word_embeddings", False))
    flags["dtype"] = str(tc.get("torch_dtype") or tc.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    flags["model_type"] = tc.get("model_type") or cfg.get("model_type")
    flags["architectures"] = cfg.get("architectures") or []
    return dims, flags, used, notes


# --------------------------------------------------------------------------------------------------
# what the symbol is


def classify(graph: dict) -> str:
    sym = graph.get("symbol") or ""
    kind = graph.get("kind") or ""
    f = graph.get("def_file") or ""
    base = PurePosixPath(f).name
    if is_decoder_layer(sym, kind, graph.get("root_signature")):
        return "decoder_layer"
    if kind == "class" and (re.search(r"(RMSNorm|LayerNorm)$", sym) or base == "layernorm.py"):
        return "norm"
    if base == "activation.py" and kind == "class":
        return "act_and_mul" if re.search(r"And(Mul|Silu)|AndMul", sym) else "activation"
    if sym == "get_rope" or ("rotary_embedding" in f and kind == "class" and sym.endswith("RotaryEmbedding")
                             and sym in ("RotaryEmbedding", "RotaryEmbeddingBase")):
        return "rope"
    if kind == "function" and sym == "fused_experts":
        return "fused_experts"
    return "generic"


def uses_kv_cache(template: str) -> bool:
    return template == "decoder_layer"


def _config_source(model_config: Path | None, model: str | None) -> str | None:
    if model_config is None:
        return None
    parts = PurePosixPath(Path(model_config).as_posix()).parts
    if "models" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("models"):])
    if model:  # the rules hand the config in as model/config.json; it is committed under models/
        return f"models/{model.replace('/', '--')}/config.json"
    if not Path(model_config).is_absolute():
        return Path(model_config).as_posix()
    return Path(model_config).name


def _model_name(model: str | None, model_config: Path | None, cfg: dict | None) -> str | None:
    if model:
        return model
    if model_config is not None:
        d = Path(model_config).parent.name
        if "--" in d:
            return d.replace("--", "/", 1)
    if cfg and isinstance(cfg.get("_name_or_path"), str) and cfg["_name_or_path"]:
        return cfg["_name_or_path"]
    return None


# --------------------------------------------------------------------------------------------------
# code generation


def _py(obj: Any) -> str:
    """A Python literal for a JSON-like value, deterministic (sorted keys)."""
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(obj, (list, tuple)):
        inner = ", ".join(_py(v) for v in obj)
        return f"[{inner}]" if isinstance(obj, list) else f"({inner}{',' if len(obj) == 1 else ''})"
    if isinstance(obj, float):
        if math.isinf(obj) or math.isnan(obj):
            return f"float({str(obj)!r})"
        return repr(obj)
    return repr(obj)


def _header(symbol: str, template: str, model_name: str | None, src: str | None, sha: str | None,
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
_PRELUDE = '''\
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



def _workload(template: str, requested: str | None, dims: dict, flags: dict) -> dict:
    kv = uses_kv_cache(template)
    if requested:
        kind, source, reason = requested, "given", "requested by the target"
    elif kv:
        kind, source, reason = "decode", "inferred", "the example uses a KV cache and at most 4 new tokens"
    else:
        kind, source, reason = "prefill", "inferred", "the example uses no KV cache"
    if template == "decoder_layer":
        shapes = ("decode: batch B of 1..4 new tokens over a cached context C (C <= max_ctx), B scaled to a "
                  "2-8 GiB live set (about 20% of free GPU memory); small: B=2, 1 token, C=64"
                  if kind == "decode" else
                  "prefill: one sequence of 8k..32k tokens (within memory and max_ctx); small: 32 tokens")
    elif template == "generic":
        shapes = "none (no invocation template)"
    elif kind == "decode":
        shapes = "decode: T = 1 new token for each of up to 256 sequences (memory-bound); small: T=4"
    else:
        shapes = "prefill: T = 8k..32k tokens within memory and max_ctx; small: T=16"
    return {"kind": kind, "source": source, "reason": reason, "shapes": shapes, "kv_cache": kv}


def generate(graph: dict, model: str | None, model_config: Path | None, workload: str | None) -> tuple[str, dict]:
    """(source of A6.example.py, the A6.model.json record)."""
    symbol = graph.get("symbol")
    if not symbol or not isinstance(symbol, str):
        raise StageError(STAGE, "A1.graph.json", "has no symbol", "re-run A1 (graph)")
    template = classify(graph)
    notes: list[str] = []
    cfg = None
    src = sha = None
    used: dict = {}
    if model_config is not None:
        p = Path(model_config)
        if not p.is_file():
            raise StageError(STAGE, f"--model-config {p.name}", "does not exist",
                             f"commit the model's config.json under models/<org>--<name>/ (model {model!r})")
        raw = p.read_bytes()
        try:
            cfg = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise StageError(STAGE, _config_source(p, model) or p.name, f"is not valid JSON ({e})",
                             "replace it with the model's published config.json") from None
        if not isinstance(cfg, dict):
            raise StageError(STAGE, _config_source(p, model) or p.name, "is not a JSON object",
                             "replace it with the model's published config.json")
        src, sha = _config_source(p, model), hashlib.sha256(raw).hexdigest()
    elif model:
        raise StageError(STAGE, f"model {model}", "has no config.json (the hub is not reachable)",
                         f"commit its config.json as models/{model.replace('/', '--')}/config.json and pass it")
    model_name = _model_name(model, model_config, cfg)

    config_kind = "model" if cfg is not None else None
    config_label = f"the config {src}"
    if cfg is None and template == "decoder_layer":
        # a decoder layer is built from a config: without a model, the generic one (not model-aware)
        cfg, config_kind, config_label = generic_config(), "generic", "the generic Llama-like config (no model)"
        notes.append("no model: the layer is built from a generic Llama-like config (GENERIC_DIMS as Hugging Face "
                     "keys); not model-aware: a key the layer reads beyond those stops the example, naming it")
    if cfg is not None:
        dims, flags, used, dnotes = derive(cfg, src or "the generic config", heads_required=template != "decoder_layer")
        notes += dnotes
    else:
        config_kind, config_label = "generic", "the generic dims (no model)"
        dims = {k: v for k, v in GENERIC_DIMS.items() if k not in ("rope_theta",)}
        dims["Dh_source"] = "given"
        flags = {"moe": None, "sliding_window": None, "rope_parameters": {"rope_type": "default",
                 "rope_theta": GENERIC_DIMS["rope_theta"]}, "rope_theta": GENERIC_DIMS["rope_theta"],
                 "rope_scaling": None, "qk_norm": False, "attention_bias": False, "hidden_act": "silu",
                 "dtype": "bfloat16"}
        notes.append("no model: generic Llama-like dims (shape-only example)")

    # The intermediate size an activation sees: the experts' when every layer is MoE.
    moe = flags.get("moe")
    if moe and not moe["mlp_only_layers"] and moe["decoder_sparse_step"] == 1:
        dims["I"] = moe["moe_intermediate_size"]
        used["I"] = "moe_intermediate_size (every layer is MoE)"
    elif "intermediate_size" in dims:
        dims["I"] = dims["intermediate_size"]
        used["I"] = used.get("intermediate_size", "intermediate_size")
    else:
        dims["I"] = 4 * dims["H"]
        used["I"] = "(4 * H: no intermediate_size)"

    wl = _workload(template, workload, dims, flags)
    if workload == "decode" and template in ("norm", "act_and_mul", "activation", "rope", "fused_experts"):
        notes.append("decode for a layer without a KV cache: one new token per sequence of a batch")
    if template == "generic":
        notes.append(f"no invocation template for {symbol} ({graph.get('kind')} in {graph.get('def_file')}): "
                     "the example only resolves the symbol")

    dtype_name = {"bfloat16": "bfloat16", "float16": "float16", "half": "float16", "float32": "float32",
                  "float": "float32"}.get(str(flags.get("dtype", "bfloat16")).replace("torch.", ""), "bfloat16")
    if flags.get("dtype") and dtype_name != str(flags["dtype"]).replace("torch.", ""):
        notes.append(f"config dtype {flags['dtype']!r} is run as {dtype_name}")

    missing: list[str] = []
    if template == "decoder_layer":
        from bundler_lib.example import decoder
        missing = decoder.missing_template(graph, dims)
        body, dnotes, needs = decoder.body(graph, symbol, dims, flags, cfg, config_label, missing)
        notes += dnotes
    else:
        needs = []
        if template == "rope":
            build = _ROPE_BUILD["get_rope" if graph.get("kind") == "function" else "class"].format(sym=symbol)
            body = _BODIES["rope"].format(build=build)
        elif template == "norm":
            exact = symbol == "RMSNorm"  # the reference is RMSNorm's own formula, not a variant's (Gemma: 1 + w)
            body = _BODIES["norm"].format(sym=symbol, weight=_NORM_WEIGHT if exact else "",
                                          reference=_NORM_REFERENCE if exact else "")
            if exact:
                notes.append("the example also checks RMSNorm against its float32 formula (bf16 tolerance)")
        elif template == "act_and_mul":
            exact = symbol == "SiluAndMul"
            body = _BODIES["act_and_mul"].format(sym=symbol, reference=_SILU_REFERENCE if exact else "")
            if exact:
                notes.append("the example also checks SiluAndMul against its float32 formula (bf16 tolerance)")
        else:
            body = _BODIES[template].format(sym=symbol)
        if template != "generic":
            # vLLM layers read the current config when built (CustomOp dispatch): set the bundle's state.
            from bundler_lib.example import state
            found, _ = state.resolve(graph)
            if found["vllm_config"]:
                body = (state.snippet(graph, cfg, dims, flags, config_label)
                        + "    restore = _install(vllm_config)\n    try:\n"
                        + "".join(("    " + ln if ln.strip() else ln) for ln in body.splitlines(True))
                        + "    finally:\n        restore()\n")
                notes.append("the example sets the bundle's vLLM config state (stand-ins) around the build and "
                             "forward, and restores it")
                needs = [f"{f}::{n}" for f, n in state.STATE.values()]
    json_dims = {k: v for k, v in dims.items()}
    prelude = _PRELUDE.format(dims=_py(json_dims), flags=_py(flags), workload=wl["kind"], dtype=dtype_name)
    header = _header(symbol, template, model_name, src, sha, dims, flags, wl)
    doc = (f'    """Build {symbol} for {model_name or "generic dims"} and run one {wl["kind"]} forward on '
           f'random inputs.\n\n    small=True: a quick sanity size. workload: "prefill" or "decode" (default '
           f'{wl["kind"]}); tokens, batch, context: the sizes (new tokens per sequence, sequences, cached tokens '
           f'per sequence), chosen from memory when None.\n    Returns a dict: module, inputs, outputs, sizes, '
           f'workload{", forward" if template == "decoder_layer" else ""}.\n'
           f'    Defined only: importing the bundle never calls it.\n    """\n')
    source = header + f"def invocation_example({SIGNATURE}):\n" + doc + prelude + "\n" + body

    record = {
        "status": "no_template" if missing else "ok",
        "missing": missing,
        "symbol": symbol,
        "template": template,
        "model_name": model_name,
        "config": config_kind,
        "dims": dims,
        "flags": flags,
        "workload": wl,
        "sources": {"config": src, "config_sha256": sha, "keys": used},
        "needs": needs,
        "notes": notes,
    }
    source += cli.source(graph, record)
    compile(source, EXAMPLE, "exec")  # a template bug is ours: fail here, not in A7
    return source, record


def run(graph: Path, model: str | None, model_config: Path | None, workload: str | None, out: Path) -> dict:
    g = load_graph(graph, STAGE)
    if workload not in (None, "prefill", "decode"):
        raise StageError(STAGE, f"--workload {workload}", "is neither prefill nor decode", "pass one of them or none")
    source, record = generate(g, model, Path(model_config) if model_config else None, workload)
    out = Path(out)
    write_text(out / EXAMPLE, source)
    write_json(out / MODEL_JSON, record)
    return record
