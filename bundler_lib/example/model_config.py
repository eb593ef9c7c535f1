"""A6's reading of the model: the config.json a target names, and the dims and flags derived from it (H, H_q,
H_kv, Dh, max context, MoE sizes, rope, attention flags), or the generic Llama-like ones when it names none."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from bundler_lib.errors import StageError

STAGE = "A6 example"

# Defaults of a symbol built without a model ("shape-only" example): a Llama-like 8B.
GENERIC_DIMS = {"H": 4096, "H_q": 32, "H_kv": 8, "Dh": 128, "max_ctx": 8192, "intermediate_size": 14336,
                "eps": 1e-6, "rope_theta": 10000.0}


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


def modalities(cfg: dict, nested: str) -> int:
    """The modalities of a multimodal config: its text config (`nested`) and each other sub-config (vision, audio);
    1 where the text config is the whole config."""
    if not nested:
        return 1
    return 1 + sum(1 for k, v in cfg.items() if k != nested and k.endswith("_config") and isinstance(v, dict)
                   and ("model_type" in v or "hidden_size" in v))


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




def generic_dims_and_flags() -> tuple[dict, dict]:
    """The dims and flags of a shape-only example (no model): GENERIC_DIMS."""
    dims = {k: v for k, v in GENERIC_DIMS.items() if k not in ("rope_theta",)}
    dims["Dh_source"] = "given"
    flags = {"moe": None, "sliding_window": None, "rope_parameters": {"rope_type": "default",
             "rope_theta": GENERIC_DIMS["rope_theta"]}, "rope_theta": GENERIC_DIMS["rope_theta"],
             "rope_scaling": None, "qk_norm": False, "attention_bias": False, "hidden_act": "silu",
             "dtype": "bfloat16"}
    return dims, flags


class _KeyReader:
    """Reads the text config's keys for derive(): which key each dim came from (`used`), and the notes."""

    def __init__(self, tc: dict, src: str, notes: list[str], modalities: int = 1):
        self.tc, self.src, self.notes, self.modalities = tc, src, notes, modalities
        self.used: dict[str, str] = {}
        self.layer = example_layer(tc)
        self.n_layers, _ = _first(tc, ["num_hidden_layers", "n_layer", "num_layers"])

    def pick(self, keys: list[str]) -> tuple[Any, str | None]:
        """_first, where a per-layer list (one entry per hidden layer, as vLLM indexes it by layer) gives the
        entry of the example's layer."""
        v, k = _first(self.tc, keys)
        if isinstance(v, (list, tuple)) and self.modalities > 1 and len(v) == self.modalities != self.n_layers:
            # one entry per modality of a multimodal model, the language model's first (vLLM's Ernie 4.5 VL reads
            # moe_intermediate_size[0] for its text experts, [1] for its vision experts)
            self.notes.append(f"{k} is per modality: the text model's {v[0]!r} is used")
            return v[0], f"{k}[0]"
        if isinstance(v, (list, tuple)):
            if not isinstance(self.n_layers, int) or len(v) != self.n_layers:
                raise StageError(STAGE, self.src, f"{k} is a list of {len(v)} entries, not one per layer "
                                 f"(num_hidden_layers = {self.n_layers!r})", "give one value, or one per layer")
            self.notes.append(f"{k} is per layer: layer {self.layer}'s {v[self.layer]!r} is used")
            return v[self.layer], f"{k}[{self.layer}]"
        return v, k

    def need(self, name: str, keys: list[str]) -> int:
        v, k = self.pick(keys)
        if v is None:
            raise StageError(STAGE, self.src, f"has no {name} (looked for {', '.join(keys)})",
                             "pass the config.json of a transformer language model")
        self.used[name] = k
        return _int(v, k, self.src)


def derive(cfg: dict, src: str, heads_required: bool = True) -> tuple[dict, dict, dict, list[str]]:
    """(dims, flags, keys used, notes) of a model config. Raises StageError on an inconsistent config. Without
    `heads_required`, a config without attention heads (a state-space model's) gives H_q, H_kv, Dh = None."""
    notes: list[str] = []
    tc, nested = text_config(cfg)
    if nested:
        notes.append(f"dims read from the config's {nested}")
    r = _KeyReader(tc, src, notes, modalities(cfg, nested))
    dims = _dims(r, heads_required)
    flags: dict[str, Any] = {"moe": _moe(r, dims)}
    flags.update(_layer_flags(cfg, tc, r.used, src))
    return dims, flags, r.used, notes


def _dims(r: _KeyReader, heads_required: bool) -> dict[str, Any]:
    """H, the attention heads, the max context, and the sizes the config states."""
    H = r.need("H", ["hidden_size", "n_embd", "d_model", "dim"])
    H_q, H_kv, Dh, dh_source = _head_dims(r, H, heads_required)
    v, k = r.pick(["max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                   "max_seq_len", "model_max_length", "max_target_positions"])  # the last: Whisper's decoder
    if v is None:
        max_ctx, r.used["max_ctx"] = 4096, "(default 4096: no max_position_embeddings)"
        r.notes.append("the config gives no max context; 4096 assumed")
    else:
        max_ctx, r.used["max_ctx"] = _int(v, k, r.src), k
    dims: dict[str, Any] = {"H": H, "H_q": H_q, "H_kv": H_kv, "Dh": Dh, "Dh_source": dh_source,
                            "max_ctx": max_ctx, "layer": r.layer}
    v, k = r.pick(["intermediate_size", "ffn_hidden_size", "n_inner"])
    if v is not None:
        dims["intermediate_size"], r.used["intermediate_size"] = _int(v, k, r.src), k
    v, k = _first(r.tc, ["rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"])
    dims["eps"] = float(v) if v is not None else 1e-6
    r.used["eps"] = k or "(default 1e-6)"
    for name, keys in (("num_layers", ["num_hidden_layers", "n_layer", "num_layers"]),
                       ("vocab_size", ["vocab_size"])):
        v, k = _first(r.tc, keys)
        if v is not None:
            dims[name], r.used[name] = _int(v, k, r.src), k
    return dims


def _head_dims(r: _KeyReader, H: int, heads_required: bool) -> tuple[Any, Any, Any, Any]:
    """(H_q, H_kv, Dh, where Dh came from); all None for an attention-free layer when heads are not required."""
    head_keys = ["num_attention_heads", "n_head", "n_heads", "num_heads"]
    if not heads_required and r.pick(head_keys)[0] is None:
        r.notes.append(f"no attention heads ({', '.join(head_keys)}): an attention-free layer")
        return None, None, None, None
    H_q = r.need("H_q", head_keys)
    v, k = r.pick(["num_key_value_heads", "n_kv_heads", "num_kv_heads", "multi_query_group_num"])
    if v is None and r.tc.get("multi_query") is True:
        v, k = 1, "multi_query"
    if v is None:
        H_kv, r.used["H_kv"] = H_q, "(= H_q: no num_key_value_heads)"
    else:
        H_kv, r.used["H_kv"] = _int(v, k, r.src), k
    if H_q % H_kv != 0:
        raise StageError(STAGE, r.src, f"num_attention_heads {H_q} is not a multiple of num_key_value_heads "
                         f"{H_kv}", "check the model's config.json (grouped-query attention needs H_q % H_kv == 0)")
    v, k = r.pick(["head_dim", "kv_channels", "attention_head_dim"])
    if v is not None:
        Dh, dh_source, r.used["Dh"] = _int(v, k, r.src), "given", k
        if Dh * H_q != H:
            r.notes.append(f"head_dim {Dh} is given: H_q*Dh = {H_q * Dh} != hidden_size {H} (allowed when given)")
    else:
        # as vLLM's layers do without head_dim: hidden_size // num_attention_heads, remainder or not
        Dh, dh_source, r.used["Dh"] = H // H_q, "derived", "hidden_size // num_attention_heads"
        if Dh * H_q != H:
            r.notes.append(f"no head_dim: {H} // {H_q} = {Dh} (as vLLM derives it), though {H_q} heads * {Dh} "
                           f"!= hidden_size {H}")
    return H_q, H_kv, Dh, dh_source


def _moe(r: _KeyReader, dims: dict) -> dict | None:
    """The MoE flags (experts, top-k, the experts' intermediate size, routing), or None for a dense model."""
    v, k = _first(r.tc, MOE_EXPERT_KEYS)
    E = int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0
    if E <= 0:
        return None
    tc, src, used = r.tc, r.src, r.used
    used["num_experts"] = k
    top_k, tk = r.pick(MOE_TOPK_KEYS)
    if top_k is None:
        raise StageError(STAGE, src, f"is a MoE config ({k} = {E}) without num_experts_per_tok (vLLM's "
                         "router needs it)", "give the checkpoint's num_experts_per_tok in the config (a "
                         "generated config: in tools/gen_model_configs.py's OVERRIDES)")
    used["top_k"] = tk
    top_k = _int(top_k, tk, src)
    if top_k > E:
        raise StageError(STAGE, src, f"num_experts_per_tok {top_k} > num_experts {E}", "check the config")
    mi, mk = r.pick(["moe_intermediate_size", "expert_intermediate_size"])
    if mi is None:
        mi, mk = dims.get("intermediate_size"), used.get("intermediate_size")
    if mi is None:
        raise StageError(STAGE, src, "is a MoE config without moe_intermediate_size", "check the config")
    used["moe_intermediate_size"] = mk
    return {
        "num_experts": E,
        "top_k": top_k,
        "moe_intermediate_size": _int(mi, mk, src),
        "norm_topk_prob": bool(tc.get("norm_topk_prob", False)),
        "shared_expert_intermediate_size": int(tc.get("shared_expert_intermediate_size") or 0),
        "decoder_sparse_step": int(tc.get("decoder_sparse_step") or 1),
        "mlp_only_layers": list(tc.get("mlp_only_layers") or []),
    }


def _layer_flags(cfg: dict, tc: dict, used: dict[str, str], src: str) -> dict[str, Any]:
    """The attention, rope, activation and dtype flags."""
    flags: dict[str, Any] = {}
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
    return flags


def activation_size(dims: dict, flags: dict, used: dict) -> None:
    """Sets dims["I"], the intermediate size an activation sees: the experts' when every layer is MoE."""
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


def read_config(model: str | None, model_config: Path | None) -> tuple[dict | None, str | None, str | None]:
    """(the config, the path it is named by, its sha256); all None without a model."""
    if model_config is None:
        if model:
            raise StageError(STAGE, f"model {model}", "has no config.json (the hub is not reachable)",
                             f"commit its config.json as models/{model.replace('/', '--')}/config.json and pass it")
        return None, None, None
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
    return cfg, _config_source(p, model), hashlib.sha256(raw).hexdigest()


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


def model_name_of(model: str | None, model_config: Path | None, cfg: dict | None) -> str | None:
    if model:
        return model
    if model_config is not None:
        d = Path(model_config).parent.name
        if "--" in d:
            return d.replace("--", "/", 1)
    if cfg and isinstance(cfg.get("_name_or_path"), str) and cfg["_name_or_path"]:
        return cfg["_name_or_path"]
    return None

