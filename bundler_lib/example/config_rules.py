"""A6: config keys a layer reads that the config class does not define, derived by general rules.

A generated config (`models/*/config.json`: the config class's `to_dict()`) lacks keys that a real checkpoint's
config.json carries or that vLLM's own config loading derives (`vllm/transformers_utils/config.py`
`patch_rope_parameters`; `vllm/config/model.py` `get_head_size`, `get_total_num_kv_heads`, `_get_and_verify_max_len`).
The example's config answers a missing key (or one the class leaves at None) from the first rule of `RULES` that
applies, logs it (`config_assumed`, printed, and named in any error of the example), and stops with one line
naming the key where no rule does. Rules are general: never one model's name or value.
"""

from __future__ import annotations

# Synonyms vLLM itself accepts for one field (first present wins), from vLLM 0.26.0's config loading.
MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_sequence_length", "max_seq_length", "seq_len", "max_position_embedding")
_EPS_KEYS = ("layer_norm_epsilon", "layer_norm_eps", "rms_norm_eps", "norm_eps", "norm_epsilon",
             "layernorm_epsilon")
_THETA_KEYS = ("rope_theta", "rotary_emb_base")
_PARTIAL_KEYS = ("partial_rotary_factor", "rotary_pct", "rotary_emb_fraction")
# The MLP's activation under the names config classes give it (Gemma's hidden_activation, GPT-2's and Exaone's
# activation_function); A6's model_config reads hidden_act or activation_function alike.
_ACT_KEYS = ("hidden_act", "hidden_activation", "activation_function")
# The key state.config_fields adds to the fields the rules see: the number of modalities of the model (1: text only).
MODALITIES = "_modalities"

# A flag no config states is off: a missing `use_*` / `is_*` / `*_bias` key read as `config.key` is False (listed
# only where read); `getattr(config, key, default)` and `hasattr` keep the reader's own default.
FLAG_PREFIXES = ("use_", "is_")
FLAG_SUFFIXES = ("_bias",)
FLAG_RULE = "a use_*/is_*/*_bias flag the config does not set: off"


class _Absent(Exception):
    """The rule does not apply (its inputs are missing too)."""


def _given(cfg: dict, key: str):
    v = cfg.get(key)
    if v is None:
        raise _Absent(key)
    return v


def _first(cfg: dict, keys: tuple[str, ...], exclude: str):
    for k in keys:
        if k != exclude and cfg.get(k) is not None:
            return cfg[k], k
    raise _Absent(exclude)


def _rope(cfg: dict) -> dict:
    rp = cfg.get("rope_parameters")
    return rp if isinstance(rp, dict) else {}


def _synonym(keys):
    def rule(cfg, key):
        v, k = _first(cfg, keys, key)
        return v, f"= {k} (a synonym vLLM accepts)"
    rule.synonym = True
    return rule


def is_synonym(key: str) -> bool:
    """Whether `key`'s rule answers it from a synonym: a config class that states it None beside a synonym tells the
    two apart (Cohere2Moe's rms_norm_eps None, layer_norm_eps 1e-5: LayerNorm)."""
    return getattr(RULES.get(key), "synonym", False)


def _head_dim(cfg, key):
    if cfg.get("kv_channels") is not None:
        return cfg["kv_channels"], "= kv_channels"
    return (_given(cfg, "hidden_size") // _given(cfg, "num_attention_heads"),
            "= hidden_size // num_attention_heads (vLLM's ModelConfig.get_head_size)")


def _kv_heads(cfg, key):
    for k in ("n_head_kv", "num_kv_heads"):
        if cfg.get(k) is not None:
            return cfg[k], f"= {k} (a synonym vLLM accepts)"
    return _given(cfg, "num_attention_heads"), "= num_attention_heads (no grouped-query attention stated)"


def _rope_field(cfg: dict, key: str):
    """(value, rule) of rope field `key` in rope_parameters, or None. Rope parameters per layer type (transformers
    5's {"full_attention": {...}, "sliding_attention": {...}}): the top-level field is the full-attention layers', as
    a checkpoint's config.json holds it (it names the sliding layers' apart: swa_rope_theta, rope_local_base_freq)."""
    rp = _rope(cfg)
    if rp.get(key) is not None:
        return rp[key], f"= rope_parameters['{key}']"
    full = rp.get("full_attention")
    if isinstance(full, dict) and full.get(key) is not None:
        return full[key], (f"= rope_parameters['full_attention']['{key}'] (rope parameters per layer type: the "
                           "top-level field is the full-attention layers')")
    return None


def _rope_theta(cfg, key):
    if _rope_field(cfg, "rope_theta"):
        return _rope_field(cfg, "rope_theta")
    v, k = _first(cfg, _THETA_KEYS, key)
    return v, f"= {k} (vLLM's patch_rope_parameters)"


def _partial(cfg, key):
    if _rope_field(cfg, "partial_rotary_factor"):
        return _rope_field(cfg, "partial_rotary_factor")
    try:
        v, k = _first(cfg, _PARTIAL_KEYS, key)
        return v, f"= {k} (vLLM's patch_rope_parameters)"
    except _Absent:
        return 1.0, "no partial rotary stated: the whole head rotates"


def _rope_scaling(cfg, key):
    rp = _rope(cfg)
    if not rp:
        raise _Absent("rope_parameters")
    if rp.get("rope_type", "default") == "default":
        # not None: a layer reads keys from it (`rope_scaling.get("fope_init_factor")`)
        return dict(rp), "= rope_parameters (transformers 5's PreTrainedConfig.rope_scaling; rope_type 'default')"
    return {**rp, "type": rp["rope_type"]}, "= rope_parameters (the legacy field of a scaled RoPE)"


def _rotary_dim(cfg, key):
    head_dim, _ = derive_one(cfg, "head_dim")
    factor, _ = derive_one(cfg, "partial_rotary_factor")
    return int(head_dim * factor), "= int(head_dim * partial_rotary_factor)"


def _query_scalar(cfg, key):
    head_dim, _ = derive_one(cfg, "head_dim")
    return head_dim, "= head_dim (queries scaled by head_dim**-0.5, as standard attention)"


def _layer_types(cfg, key):
    n = _given(cfg, "num_hidden_layers")
    if cfg.get("sliding_window") is not None and cfg.get("use_sliding_window") is not False:
        raise _Absent("sliding_window")  # which layers slide is model-specific: no general rule
    return ["full_attention"] * n, "every layer 'full_attention' (no sliding window stated)"


def _mlp_types(cfg) -> list:
    types = _given(cfg, "mlp_layer_types")
    if not isinstance(types, list) or not set(types) <= {"dense", "sparse"}:
        raise _Absent("mlp_layer_types")
    return types


def _first_k_dense(cfg, key):
    types = _mlp_types(cfg)
    k = next((i for i, t in enumerate(types) if t != "dense"), len(types))
    return k, "= the leading 'dense' entries of mlp_layer_types"


def _is_moe_layer(cfg, key):
    return [t == "sparse" for t in _mlp_types(cfg)], "= [t == 'sparse' for t in mlp_layer_types]"


def _sparse_step(cfg, key):
    _mlp_types(cfg)
    return 1, "1, with mlp_only_layers the 'dense' entries of mlp_layer_types (every other layer sparse)"


def _mlp_only_layers(cfg, key):
    return [i for i, t in enumerate(_mlp_types(cfg)) if t == "dense"], "= the 'dense' indices of mlp_layer_types"


def _sparse_layers(cfg) -> list[int]:
    sparse = [i for i, t in enumerate(_mlp_types(cfg)) if t == "sparse"]
    if not sparse:
        raise _Absent("mlp_layer_types")
    return sparse


def per_modality_key(cfg: dict) -> str | None:
    """The moe_* field a multimodal config holds per modality (a list of one entry per modality, not per layer:
    Ernie 4.5 VL's moe_intermediate_size [text, vision]), or None. `cfg[MODALITIES]` is the model's modality count."""
    n = cfg.get(MODALITIES) or 1
    for k, v in cfg.items():
        if (n > 1 and k.startswith("moe_") and isinstance(v, list) and len(v) == n
                and len(v) != cfg.get("num_hidden_layers")):
            return k
    return None


def _moe_layer_bound(index, what):
    def rule(cfg, key):
        value = _sparse_layers(cfg)[index]
        per = per_modality_key(cfg)
        if per:
            return ([value] * len(cfg[per]), f"= the {what} 'sparse' index of mlp_layer_types, for each modality (the "
                                               f"config's {per} is per modality)")
        return value, f"= the {what} 'sparse' index of mlp_layer_types"
    return rule


def _moe_layer_interval(cfg, key):
    sparse = _sparse_layers(cfg)
    if sparse != list(range(sparse[0], sparse[-1] + 1)):
        raise _Absent("mlp_layer_types")  # sparse layers with gaps: no single interval
    return 1, "1: the 'sparse' entries of mlp_layer_types are contiguous"


def _hybrid_layer_pattern(cfg, key):
    types = _given(cfg, "layer_types")
    if not isinstance(types, list) or not set(types) <= {"full_attention", "sliding_attention"}:
        raise _Absent("layer_types")
    return ([int(t == "sliding_attention") for t in types],
            "= [t == 'sliding_attention' for t in layer_types] (1 marks a sliding-window layer)")


def _residual_width(cfg, key):
    return _given(cfg, "hidden_size"), ("= hidden_size (the width of a block that reads and writes the residual "
                                        "stream; the config states no other)")


def _qkv_bias(cfg, key):
    return _given(cfg, "attention_bias"), "= attention_bias"


# key -> rule(cfg, key) -> (value, how it was derived); raises _Absent where it does not apply. Order matters
# only inside a rule that uses another key (rotary_dim reads head_dim and partial_rotary_factor through it).
RULES = {
    "head_dim": _head_dim,
    "num_key_value_heads": _kv_heads,
    "max_position_embeddings": _synonym(MAX_LEN_KEYS),
    **{k: _synonym(_EPS_KEYS) for k in _EPS_KEYS},
    "rope_theta": _rope_theta,
    "partial_rotary_factor": _partial,
    "rope_scaling": _rope_scaling,
    "rotary_dim": _rotary_dim,
    **{k: _synonym(_ACT_KEYS) for k in _ACT_KEYS},
    "query_pre_attn_scalar": _query_scalar,
    "layer_types": _layer_types,
    "first_k_dense_replace": _first_k_dense,
    "is_moe_layer": _is_moe_layer,
    "decoder_sparse_step": _sparse_step,
    # Ernie 4.5's legacy fields, which transformers 5 replaced by mlp_layer_types (vLLM reads the legacy ones)
    "moe_layer_start_index": _moe_layer_bound(0, "first"),
    "moe_layer_end_index": _moe_layer_bound(-1, "last"),
    "moe_layer_interval": _moe_layer_interval,
    "mlp_only_layers": _mlp_only_layers,
    "hybrid_layer_pattern": _hybrid_layer_pattern,
    "block_dim": _residual_width,
    "conv_dim": _residual_width,
    "qkv_bias": _qkv_bias,
}


def max_len(cfg: dict) -> tuple[int, str] | None:
    """(value, key) of the config's max position: max_position_embeddings or the first synonym vLLM accepts."""
    return next(((cfg[k], k) for k in MAX_LEN_KEYS if isinstance(cfg.get(k), int)), None)


def derive_one(cfg: dict, key: str):
    """(value, rule) for `key`: the config's own value where it has one, else the rule's; _Absent if neither."""
    if cfg.get(key) is not None:
        return cfg[key], "given"
    if key not in RULES:
        raise _Absent(key)
    return RULES[key](cfg, key)


def derived(cfg: dict) -> dict[str, list]:
    """{key: [value, rule]} for every key of RULES the config lacks (or leaves at None) that a rule supplies."""
    out = {}
    for key in RULES:
        if cfg.get(key) is not None:
            continue
        try:
            out[key] = list(RULES[key](cfg, key))
        except _Absent:
            pass
    return out


# A list the config holds (a config class's tuple or list) that the layer reads as text, with a string's methods: a
# checkpoint's config.json can store it as comma-separated text (`moe_layers_enum` "4,5,6" read with
# `.strip().split(",")`). The example's `_nested` wraps each list field in this class (state.py's snippet). Its
# entries are nested too: a list of dicts is a list of sub-configs read by attribute, as a remote-code config class
# turns them into objects (DeciLMConfig's block_configs[i].attention.n_heads_in_group).
LIST_AS_TEXT_RULE = "a list the config holds, read as text: its entries joined with ',' (a checkpoint's text form)"
LIST_FIELD_SOURCE = '''\
    class _ListField(list):
        """A list field of the config, its entries nested; a string's method reads it as its comma-separated text,
        logged."""

        def __init__(self, path, items):
            super().__init__(_nested(f"{path}[{i}]", v) for i, v in enumerate(items))
            self._path = path

        def __getattr__(self, name):
            if name.startswith("__") or not hasattr(str, name):
                raise AttributeError(name)
            text = ",".join(str(v) for v in self)
            config_assumed.append(f"config.{self._path}={text!r} (%s)")
            print(f"invocation_example: assumed config.{self._path}={text!r}: %s", file=sys.stderr)
            return getattr(text, name)

''' % (LIST_AS_TEXT_RULE, LIST_AS_TEXT_RULE)


# An expert count a multimodal config holds as one number while its other moe_* fields are per modality (Ernie 4.5
# VL: transformers 5 gives moe_num_experts 64, the checkpoint [64, 64], which vLLM indexes per modality). The example
# wraps it in this int subclass (state.py's snippet): indexed or iterated, it is the same count for each modality.
PER_MODALITY_RULE = "an expert count read per modality, where the config's other moe_* fields are: the same for each"
PER_MODALITY_SOURCE = '''\
    class _PerModality(int):
        """An expert count of a multimodal config, read per modality (indexed, iterated): the same for each, logged."""

        def __new__(cls, path, value, n):
            self = super().__new__(cls, value)
            self._path, self._n = path, n
            return self

        def __reduce__(self):
            return (type(self), (self._path, int(self), self._n))

        def _each(self):
            each = [int(self)] * self._n
            entry = f"config.{self._path}={each!r} (%s)"
            if entry not in config_assumed:
                config_assumed.append(entry)
                print(f"invocation_example: assumed config.{self._path}={each!r}: %s", file=sys.stderr)
            return each

        def __getitem__(self, i):
            return self._each()[i]

        def __iter__(self):
            return iter(self._each())

''' % (PER_MODALITY_RULE, PER_MODALITY_RULE)


def per_modality_counts(cfg: dict) -> dict[str, int]:
    """{key: modalities} for each expert count (MOE_EXPERT_KEYS) that PER_MODALITY_SOURCE wraps in `cfg`."""
    from bundler_lib.example.model_config import MOE_EXPERT_KEYS
    per = per_modality_key(cfg)
    if not per:
        return {}
    return {k: len(cfg[per]) for k in MOE_EXPERT_KEYS
            if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool)}
