"""tools/parity.py's transformers side: the decoder layer of the bundle's architecture (class, config, built on meta
and given the mapped weights) and the inputs its model gives it (rotary embeddings, causal mask, ALiBi bias, cache,
extra inputs), as transformers' model builds them for one layer."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import re
from pathlib import Path

from parity_mapping import (MappingError, NoReference, PartOfLayer, hf_experts_layout, hf_transposed, map_weights,
                            permute_rotary)

def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z]+[a-z0-9_]*|[a-z0-9_]+", name.lower() if name.islower() else name)


def _modeling(model_type: str):
    """transformers' modeling module of a model_type (its config class's package), or None."""
    from transformers import CONFIG_MAPPING

    try:
        module = CONFIG_MAPPING[model_type].__module__
    except KeyError:
        return None
    return importlib.import_module(module.replace(".configuration_", ".modeling_"))


def hf_layer_classes(mod) -> list:
    """The layer classes a transformers modeling module defines (its GradientCheckpointingLayer subclasses)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, GradientCheckpointingLayer)
            and c.__module__ == mod.__name__]


def hf_classes(model_type: str, symbol: str):
    """(model_type, decoder layer class, rotary embedding class or None): transformers' layer of the same name
    as the vLLM symbol (a `LlamaDecoderLayer` is llama's, whatever config sizes it), else, of the config's
    model_type's layers, the one whose name shares most words with the symbol (case-insensitively; a tie goes to
    a `...DecoderLayer`; encoder layers only for an encoder symbol or a model that has no other); None when transformers has none. The rotary
    class is the module's `...RotaryEmbedding` whose name shares the longest prefix with the layer's."""
    stem = symbol[: -len("DecoderLayer")] if symbol.endswith("DecoderLayer") else symbol
    for mt in dict.fromkeys([_snake(stem), model_type]):
        try:
            mod = _modeling(mt)
        except ImportError:
            continue
        if mod is None:
            continue
        layers = hf_layer_classes(mod)
        exact = [c for c in layers if c.__name__.lower() == symbol.lower()]
        if not exact and mt != model_type:
            continue
        want = {w.lower() for w in _words(symbol)}
        pool = exact or [c for c in layers if "Encoder" not in c.__name__ or "Encoder" in symbol] or layers
        if not pool:
            continue

        def score(c):
            words = {w.lower() for w in _words(c.__name__)}
            return len(want & words) / len(want | words), c.__name__.endswith("DecoderLayer")

        cls = max(pool, key=score)
        if mt != model_type and _modeling(model_type) is mod:
            mt = model_type  # the symbol's class is the config's own model's (a multimodal config's text model)
        return mt, cls, _rotary(mod, cls)
    return None


def raise_if_part_of_layer(model_type: str, symbol: str, vllm_forward=None) -> None:
    """PartOfLayer where transformers' modeling module of `model_type` defines a class of the symbol's name that is no
    layer class (hf_layer_classes) and one of its layer classes names it (takes or builds it): transformers has that
    block only as a part of its layer (Zamba2's Zamba2AttentionDecoderLayer, the shared_transformer its
    Zamba2HybridLayer calls with the model's layer index and the original embeddings before its own linear and Mamba
    layer; hf_classes would pick the nearest layer class by name). The reason names the inputs its forward requires
    that vLLM's (`vllm_forward`, where given) does not take."""
    import inspect

    import torch

    mod = _modeling(model_type)
    if mod is None:
        return
    layers = hf_layer_classes(mod)
    part = next((c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, torch.nn.Module)
                 and c.__module__ == mod.__name__ and c.__name__.lower() == symbol.lower()), None)
    if part is None or part in layers:
        return
    holders = [c.__name__ for c in layers if re.search(rf"\b{part.__name__}\b", inspect.getsource(c))]
    if not holders:
        return
    lacking = []
    if vllm_forward is not None:
        theirs = inspect.signature(vllm_forward).parameters
        lacking = [n for n, p in list(inspect.signature(part.forward).parameters.items())[1:]
                   if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in theirs]
    raise PartOfLayer(f"transformers' {part.__name__} is no decoder layer of its own (no layer class): it is a part of "
                      f"its {', '.join(holders)}, which calls it inside its own forward"
                      + (f" with inputs vLLM's layer does not take ({', '.join(lacking)})" if lacking else "")
                      + ": no layer-level reference")


def raise_if_norm_groups_differ(layer, hf_meta) -> None:
    """NoReference where vLLM's `layer` holds a gated norm that normalizes in groups (Mamba2's Mixer2RMSNormGated
    under n_groups > 1: the width in `group_size` slices, as mamba_ssm's RMSNormGated) and transformers' layer
    (`hf_meta`, on meta) has a gated norm of that width (its forward takes a `gate`) that normalizes it whole: the two
    compute different layers (transformers 5.17's mamba2.MambaRMSNormGated ignores n_groups; H100: Mamba2DecoderLayer
    rel L2 0.36, the grouped norm on transformers' side gives the bundle's output). Probed: a copy of transformers' norm,
    weight 1, on a row whose groups hold different constants, must give each group the same RMS."""
    import copy
    import inspect

    import torch

    grouped = {int(m.weight.numel()): int(m.group_size) for m in layer.modules()
               if isinstance(getattr(m, "group_size", None), int) and isinstance(getattr(m, "weight", None), torch.Tensor)
               and m.weight.dim() == 1 and m.weight.numel() > m.group_size}
    for name, m in hf_meta.named_modules():
        w = getattr(m, "weight", None)
        if not (isinstance(w, torch.Tensor) and w.dim() == 1 and int(w.numel()) in grouped
                and "gate" in inspect.signature(m.forward).parameters):
            continue
        width, size = int(w.numel()), grouped[int(w.numel())]
        probe = copy.deepcopy(m).to_empty(device="cpu").float()
        with torch.no_grad():
            probe.weight.fill_(1.0)
            x = torch.arange(1, width // size + 1, dtype=torch.float32).repeat_interleave(size)[None]
            rms = probe(x, gate=torch.full_like(x, 30.0)).view(-1, size).pow(2).mean(-1).sqrt()
        if not torch.allclose(rms, rms[0].expand_as(rms), rtol=1e-3):
            raise NoReference(f"vLLM's gated norm normalizes its {width} channels in groups of {size} (n_groups "
                              f"{width // size}, as mamba_ssm's RMSNormGated), transformers' {name} "
                              f"({type(m).__name__}) normalizes them whole: different layers")


def _rotary(mod, cls):
    """The module's `...RotaryEmbedding` whose name shares the longest prefix with layer class `cls`'s, or None."""
    ropes = [c for c in vars(mod).values() if isinstance(c, type) and c.__name__.endswith("RotaryEmbedding")
             and c.__module__ == mod.__name__ and "Vision" not in c.__name__]
    return max(ropes, key=lambda c: len(os.path.commonprefix([c.__name__, cls.__name__])), default=None)


def rope_built(rope_cls, config) -> bool:
    """Whether transformers' model builds its rotary `rope_cls` for `config`: a model of its module that builds it
    under a test of its config (`self.rotary_emb = Rotary(config) if config.position_embedding_type == "rope" else
    None`: GraniteMoeHybrid's) gives its layers no position embeddings where the test is false; a test that reads
    more than the config is taken as true."""
    import ast
    import inspect
    import sys
    import textwrap

    mod = sys.modules[rope_cls.__module__]
    for cls in vars(mod).values():
        if not (isinstance(cls, type) and cls.__module__ == mod.__name__ and "__init__" in vars(cls)):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
        except (OSError, TypeError, SyntaxError):
            continue
        for e in ast.walk(tree):
            if (isinstance(e, ast.IfExp) and isinstance(e.body, ast.Call) and isinstance(e.body.func, ast.Name)
                    and e.body.func.id == rope_cls.__name__):
                try:
                    return bool(eval(compile(ast.Expression(e.test), "<rope test>", "eval"), {"config": config}))
                except (NameError, AttributeError):  # a test of more than the config (self.x): not decided here
                    continue
    return True


def hf_config(cfg: dict, model_type: str | None = None, per_layer: dict | None = None):
    """transformers' config of `model_type` (default: the config's own) holding the config's fields. A field left
    None takes the class's default, except head_dim and num_key_value_heads, which take what vLLM's ModelConfig
    derives (hidden_size // num_attention_heads; num_attention_heads); a field at the base config's default, a
    private one, or a read-only property of the class (derived from other fields; also through its
    attribute_map) is not passed. A nested sub-config lacking a field of the top-level rope_parameters takes its value
    (the bundle's example does the same). A per-layer field (`per_layer`: the bundle's example's assumptions, per_layer_
    assumed) that transformers' config leaves None, which its layers index, takes the example's value (Lfm2MoeConfig's
    layer_types). Attention is sdpa where the model supports it (eager needs tens of GiB for the scores at long
    prefill), else eager."""
    from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

    model_type = model_type or cfg["model_type"]
    cls = CONFIG_MAPPING[model_type]
    cfg = dict(cfg)
    if cfg.get("head_dim", 0) is None and cfg.get("hidden_size") and cfg.get("num_attention_heads"):
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    if cfg.get("num_key_value_heads", 0) is None:
        cfg["num_key_value_heads"] = cfg.get("num_attention_heads")
    base = PretrainedConfig().to_dict()

    def own(d: dict) -> dict:  # a config's own fields; a nested sub-config's too
        return {k: own(v) if isinstance(v, dict) and "_name_or_path" in v else v for k, v in d.items()
                if v is not None and not k.startswith("_") and (k not in base or base[k] != v)}

    def read_only(k: str) -> bool:
        return isinstance(getattr(cls, k, None), property) and getattr(cls, k).fset is None

    fields = {k: v for k, v in own(cfg).items() if k not in (
        "model_type", "architectures", "transformers_version", "torch_dtype", "dtype")
        and not read_only(cls.attribute_map.get(k, k))}
    config = AutoConfig.for_model(model_type, **fields)
    for sub in vars(config).values():  # rope fields transformers 5 moved to the top level, for a sub-config still
        if isinstance(sub, PretrainedConfig):  # reading them (Dbrx's attn_config.rope_theta), as the bundle's example
            for k, v in (getattr(config, "rope_parameters", None) or {}).items():
                if not hasattr(sub, k):
                    setattr(sub, k, v)
    mod = _modeling(model_type)
    models = [c for c in vars(mod).values() if isinstance(c, type) and hasattr(c, "_supports_sdpa")
              and c.__module__ == mod.__name__] if mod is not None else []
    config._attn_implementation = "sdpa" if not models or any(c._supports_sdpa for c in models) else "eager"
    for k, v in (per_layer or {}).items():
        if config.__dict__.get(k, 0) is None:
            setattr(config, k, v)
    return config


def per_layer_assumed(cfg: dict, assumed: dict) -> dict:
    """Of the fields the bundle's example assumed (`assumed`: field -> value), those the config states none of that
    hold one entry per layer (layer_types: the example's every layer 'full_attention')."""
    layers = cfg.get("num_hidden_layers")
    return {k: v for k, v in assumed.items() if cfg.get(k) is None and isinstance(v, list) and len(v) == layers}


def read_config(path: Path) -> dict:
    """The model's fields (a multimodal config's `text_config`)."""
    cfg = json.loads(Path(path).read_text())
    return cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg


CACHE_ARGS = ("past_key_values", "layer_past", "past_key_value")


# The layer arguments transformers' models fill with an ALiBi bias they build (Bloom's alibi, MPT's position_bias).
ALIBI_ARGS = ("alibi", "position_bias")


def alibi_bias(forward, config, x, keys: int):
    """The ALiBi bias transformers' model builds for its layers over `keys` keys (the cached ones and x's), by the
    build_*alibi* function of the layer's modeling module, called by its parameters' names (attention_mask: ones
    over the keys, num_heads, dtype, sequence_length:
    config.max_seq_len as MPT's model passes it, device); None where the module has none."""
    import inspect
    import sys

    import torch

    module = sys.modules[forward.__module__]
    build = next((f for n, f in vars(module).items() if n.startswith("build") and "alibi" in n and inspect.isfunction(f)),
                 None)
    if build is None:
        return None
    heads = next(getattr(config, k) for k in ("num_attention_heads", "n_head", "n_heads") if hasattr(config, k))
    values = dict(attention_mask=torch.ones(x.shape[0], keys, device=x.device), num_heads=heads,
                  dtype=x.dtype, sequence_length=getattr(config, "max_seq_len", None), device=x.device)
    return build(**{n: values[n] for n in inspect.signature(build).parameters if n in values})


def hf_forward_kwargs(forward, config, positions, emb, cache=None, mask=None, x=None) -> dict:
    """The keyword arguments of transformers' layer `forward` (a function; the hidden states go first, by position),
    by its signature: position ids, position embeddings, the attention mask (causal_mask's), the cache under the name
    the layer takes (past_key_values, or GPT-J's and Falcon's layer_past), the ALiBi bias the model builds (alibi_bias,
    where `x` is given and the config does not turn alibi off: Bloom's alibi, MPT's position_bias; H100: Bloom
    'NoneType' object has no attribute 'baddbmm'), over the keys the layer sees: the cache's and x's, not the
    positions' (the decode probe puts one token at the decode position in an empty cache; H200: Bloom alibi [16, 1,
    65] against scores [16, 1, 1]). A required argument the harness does not
    build (Falcon's `alibi`) gets None, as the model passes it where the config turns the feature off; where the
    config turns it on, one line names it."""
    import inspect

    params = inspect.signature(forward).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kw = dict(position_ids=positions, position_embeddings=emb, attention_mask=mask)
    if cache is not None:
        kw[next((n for n in CACHE_ARGS if n in params), "past_key_values")] = cache
        kw["use_cache"] = True
    kw = {k: v for k, v in kw.items() if takes_any or k in params}
    for name, p in list(params.items())[2:]:
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kw:
            if name in ALIBI_ARGS and getattr(config, "alibi", None) is not False and x is not None:
                bias = alibi_bias(forward, config, x, (cache.get_seq_length() if cache is not None else 0) + x.shape[1])
                if bias is not None:
                    kw[name] = bias
                    continue
            if getattr(config, name, None) or getattr(config, "use_" + name, None):
                raise MappingError(f"transformers' layer needs `{name}`, which its config turns on "
                                   f"({name}={getattr(config, name, None)!r}): the harness builds no {name}")
            kw[name] = None
    return kw


def layer_type(config, layer_idx: int) -> str | None:
    """The config's type of layer `layer_idx` (layer_types: full_attention, sliding_attention, ...), or None."""
    types = getattr(config, "layer_types", None)
    return types[layer_idx] if types and layer_idx < len(types) else None


def bidirectional(layer) -> bool:
    """Whether transformers' `layer` attends both ways: it has attention modules (an `is_causal` flag) and none is
    causal (an encoder's: OpenAIPrivacyFilterEncoderLayer, vLLM's EncoderOnlyAttention)."""
    flags = [m.is_causal for m in layer.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    return bool(flags) and not any(flags)


def states_both_ways(layer) -> bool:
    """Whether vLLM's `layer` states that it attends both ways: an attention of it (a module with `impl` and
    `kv_cache`), or the module holding one, has `causal` False (DFlash's drafter layers; the bundle's example gives
    its attention metadata the same flag)."""
    mods = dict(layer.named_modules())
    return any(getattr(m, "causal", None) is False for n, a in mods.items() if hasattr(a, "impl") and hasattr(
        a, "kv_cache") for m in (a, mods[n.rpartition(".")[0]]))


def causal_mask(config, x, positions, cache, layer_idx: int, both_ways: bool = False):
    """The mask transformers' model builds for layer `layer_idx` (create_causal_mask, or the sliding-window one for a
    sliding_attention layer; `both_ways`, an encoder's layer: the bidirectional one, sliding where the config has a
    window and no other layer type there): None where the attention applies causality itself (sdpa's is_causal), a
    4D mask where it does not (GPT-J's eager attention adds the mask it is given and nothing else). Sized by layer
    `layer_idx` of the cache (the one the context is in)."""
    from transformers.masking_utils import (create_bidirectional_mask, create_bidirectional_sliding_window_mask,
                                            create_causal_mask, create_sliding_window_causal_mask)

    window = getattr(config, "sliding_window", None) and layer_type(config, layer_idx) in (
        ("sliding_attention", None) if both_ways else ("sliding_attention",))
    if both_ways:
        make = create_bidirectional_sliding_window_mask if window else create_bidirectional_mask
        return make(config=config, inputs_embeds=x, attention_mask=None)
    make = create_sliding_window_causal_mask if window else create_causal_mask
    return make(config=config, inputs_embeds=x, attention_mask=None, past_key_values=cache,
                position_ids=positions, **({"layer_idx": layer_idx} if cache is not None else {}))


def rope_embeddings(rope, config, x, positions, layer_idx: int):
    """transformers' rotary embedding for layer `layer_idx`: a rotary that keeps one table per layer type (Gemma 3's,
    Gemma 4's) takes the layer's `layer_type`, as the model passes it. A multimodal rotary (mrope_section in the
    config's rope_parameters or its class) takes positions [3, batch, seq]: a text token's on all three axes, as the
    model expands them (H100: Ernie4_5_VLMoe IndexError, too many indices for a 2-D tensor)."""
    import inspect

    import torch

    if rope is None:
        return None
    if "mrope_section" in (getattr(config, "rope_parameters", None) or {}) or (
            isinstance(rope, torch.nn.Module) and "mrope_section" in _class_source(rope)):
        positions = positions[None].expand(3, *positions.shape)  # text tokens: one position on each of t, h, w
    if "layer_type" in inspect.signature(getattr(rope, "forward", rope)).parameters:  # a module or a function
        return rope(x, positions, layer_type(config, layer_idx))
    return rope(x, positions)


def _class_source(module) -> str:
    return _type_source(type(module))


@functools.lru_cache(maxsize=None)
def _type_source(cls) -> str:
    """A class's source, read once: inspect parses the whole module to find it (milliseconds a call)."""
    import inspect

    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def layer_mask(layer, mask):
    """The mask transformers' model gives `layer`, from the causal mask (causal_mask's): None where no submodule
    attends (each that takes an attention_mask applies it to padding only, apply_mask_to_padding_states: Mamba's,
    Mamba2's mixers get the model's 2-D padding mask, None without padding); a bool mask (True: masked) where an
    attention masks its scores with masked_fill (MPT's model converts its mask .to(torch.bool)); else `mask`."""
    import inspect

    takes = [m for n, m in layer.named_modules() if n and "attention_mask" in inspect.signature(m.forward).parameters]
    sources = [_class_source(m) for m in takes]
    if takes and all("apply_mask_to_padding_states" in src for src in sources):
        return None
    if mask is not None and any("masked_fill(attention_mask" in src for src in sources):
        return mask.bool()
    return mask


def extra_inputs(hf_forward_fn, vllm_forward_fn, inputs: dict, B: int, q: int) -> dict:
    """The inputs beyond the hidden states and positions that the bundle's example gives vLLM's layer and
    transformers' layer takes by the same name: a tensor of one row a token as [B, q, ...] (Gemma 4's per_layer_input:
    H100 Tensor * NoneType), the encoder's output (an `encoder_*` input: the sequences' encoder tokens back to back,
    A6's cross-attention example) as [B, encoder tokens, ...] (without it transformers' Bart layer skips its
    cross-attention), a number as it is (an index the example derives: A6's forward `int` inputs)."""
    import inspect

    import torch

    hf_params = inspect.signature(hf_forward_fn).parameters
    vllm_params = inspect.signature(vllm_forward_fn).parameters
    own = {"hidden_states", "positions", "residual", "position_ids", "position_embeddings", "attention_mask",
           "use_cache", *CACHE_ARGS}
    out = {}
    for name in (n for n in hf_params if n not in own and n in vllm_params and n in inputs):
        value = inputs[name]
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == B * q and not _encoder_input(name):
            out[name] = value.reshape(B, q, *value.shape[1:])
        elif isinstance(value, torch.Tensor) and value.dim() and value.shape[0] % B == 0 and _encoder_input(name):
            out[name] = value.reshape(B, -1, *value.shape[1:])
        elif isinstance(value, (int, float)):
            out[name] = value
    return out


def _encoder_input(name: str) -> bool:
    """An input holding the encoder's output, one row an encoder token (as A6's cross-attention template names it)."""
    return name.startswith("encoder_")


def hf_forward(layer, config, x, positions, rope, cache=None, layer_idx: int = 0, extra: dict | None = None):
    """transformers' `layer` on x: [B, q, H], or a stack of them [S, B, q, H] (Gemma 3n's AltUp predictions), whose
    rotary, mask and other inputs are those of one [B, q, H], as the model builds them from its embeddings."""
    return hf_call(layer, x, hf_inputs(layer, config, x, positions, rope, cache, layer_idx, extra))


def hf_call(layer, x, kw: dict):
    """transformers' `layer` on x with the keyword inputs `kw` (hf_inputs'): its hidden states out."""
    import torch

    with torch.no_grad():
        out = layer(x, **kw)
    return out[0] if isinstance(out, tuple) else out


def hf_inputs(layer, config, x, positions, rope, cache=None, layer_idx: int = 0, extra: dict | None = None) -> dict:
    """The keyword inputs transformers' model gives `layer` beside x (hf_forward's): its rotary embeddings, mask,
    cache and the `extra` inputs, built once per forward of the model for all its layers."""
    import torch

    tokens = x if x.dim() == 3 else x[0]
    emb = rope_embeddings(rope, config, tokens, positions, layer_idx)
    mask = layer_mask(layer, causal_mask(config, tokens, positions, cache, layer_idx, bidirectional(layer)))
    kw = hf_forward_kwargs(type(layer).forward, config, positions, emb, cache, mask, tokens)
    for name, t in (extra or {}).items():
        if isinstance(t, torch.Tensor):  # the rows of x's tokens (the decode probe's one); floats in x's dtype
            t = t[: tokens.shape[0]] if _encoder_input(name) else t[: tokens.shape[0], : tokens.shape[1]]
            t = t.to(x.dtype) if t.is_floating_point() else t
        kw[name] = t
    return kw


def context_cache(ex, dtype, config, layer_idx, probe=None, keys_permuted: bool = False, vllm_layer=None):
    """transformers' cache holding the bundle's context K/V (the paged cache: K then V in the last dim). `probe`
    (a function filling a cache with one token through transformers' layer, at a position it may be given) shows what
    that layer caches: where it is not per-head K and V of the bundle's sizes, the bundle's context cannot be copied
    (DeepSeek's MLA caches a latent and the rotary key, vLLM's non-MLA attention of the same model K and V per head):
    NoReference; where both are latent (latent_context), the latent is copied. `keys_permuted`: vLLM's loader permuted
    q's and k's rows in each head for its rotary (rules' rotary_permuted: Llama 4's), so its cached keys hold each
    head's dims in that order: put back in the checkpoint's, which transformers' queries have (q.k is the same only
    with both in one order). `vllm_layer`: the bundle's layer, whose rotary tells the order of an MLA cache's rotary
    key (vllm_rope_halves). None where the bundle's example gives the layer no cache and no recurrent
    state; NoReference where its context includes a recurrent state (a Mamba mixer's, FalconH1's parallel hybrid's
    too)."""
    kv = ex["inputs"]["kv_cache"]  # [blocks, H_kv, block_size, 2*Dh] (a view of NHD storage); MLA's [blocks, bs, W]
    if any(ex["inputs"].get("state") or {}):
        raise NoReference("the bundle's decode context includes its layer's recurrent state (Mamba's conv and SSM "
                          "state per sequence, random as after a prefill), which the harness does not copy into "
                          "transformers' cache")
    if kv is None:  # a layer that keeps no context (NemotronH's MLP block): its decode needs none
        return None
    bt = ex["inputs"]["block_table"]
    ctx = ex["sizes"]["context"]
    if kv.dim() == 3:
        return latent_context(kv, bt, ctx, dtype, config, layer_idx, probe, vllm_layer)
    Dh = kv.shape[-1] // 2
    if probe is not None:
        probed = kv_cache(config, layer_idx)
        probe(probed)
        keys, values = probed.layers[layer_idx].keys, probed.layers[layer_idx].values
        if (keys.shape[1], keys.shape[-1], values.shape[1], values.shape[-1]) != (kv.shape[1], Dh, kv.shape[1], Dh):
            raise NoReference(f"transformers' layer caches keys {tuple(keys.shape[1::2])} and values "
                              f"{tuple(values.shape[1::2])} per (head, dim), the bundle's paged cache K and V of "
                              f"{(kv.shape[1], Dh)} (a latent cache, MLA's, on one side): the context cannot be copied")
    both = _paged(kv, bt, ctx, dtype)
    keys = both[..., :Dh]
    if keys_permuted:
        keys = permute_rotary(keys.movedim(-1, 0), Dh, to_vllm=False).movedim(0, -1)
    cache = kv_cache(config, layer_idx)
    cache.update(keys.contiguous(), both[..., Dh:].contiguous(), layer_idx)
    return cache


def latent_context(kv, block_table, n: int, dtype, config, layer_idx: int, probe, vllm_layer):
    """transformers' cache holding the context of a bundle's MLA cache (vLLM's MLA backends: one row a token,
    [blocks, block_size, kv_lora_rank + rope dim], the normed latent then the rotated rotary key), where transformers'
    layer caches that latent too (`probe`: keys (1, kv_lora_rank) and values (1, rope dim), DeepSeek-V2's and the
    models copied from it): each row split at kv_lora_rank. The rotary key goes in the dim order transformers' rotary
    leaves it in (rotary_pairs: its own key turned at two positions), from vLLM's (vllm_rope_halves of `vllm_layer`,
    the bundle's layer): DeepSeek-V3's rope_interleave turns interleaved pairs and stores them as halves, vLLM's
    non-neox rotary keeps them interleaved. A layer of several attentions (LongCat-Flash's two, cache layers 2i and
    2i+1 in transformers) has each of the bundle's caches (attention_caches) copied into the cache layer the probe
    shows its attention writing, in order. NoReference where transformers' layer caches anything else."""
    W = kv.shape[-1]
    probed = kv_cache(config, layer_idx)
    probe(probed)
    written = [i for i, c in enumerate(probed.layers) if getattr(c, "keys", None) is not None and c.keys.numel()]
    keys, values = probed.layers[written[0]].keys, probed.layers[written[0]].values
    R, P = keys.shape[-1], values.shape[-1]
    if (keys.shape[1], values.shape[1], R + P) != (1, 1, W):
        raise NoReference(f"transformers' layer caches keys {tuple(keys.shape[1::2])} and values "
                          f"{tuple(values.shape[1::2])} per (head, dim), the bundle's MLA cache a latent of {W} per "
                          "token: the context cannot be copied")
    caches = attention_caches(vllm_layer, kv)
    if len(caches) != len(written):
        raise NoReference(f"transformers' layer writes {len(written)} cache layers, the bundle's layer holds "
                          f"{len(caches)} attention caches: the context cannot be copied")
    at_zero = kv_cache(config, layer_idx)
    probe(at_zero, 0)
    theirs = rotary_pairs(at_zero.layers[written[0]].values, values)
    rope_halves = vllm_rope_halves(vllm_layer, P) if vllm_layer is not None else None
    cache = kv_cache(config, layer_idx)
    for i, each in zip(written, caches):
        rows = _paged(each.unsqueeze(1), block_table, n, dtype)  # [B, 1, n, W]
        rope = rows[..., R:]
        if theirs is not None and rope_halves is not None and (theirs == "halves") != rope_halves:
            rope = permute_rotary(rope.movedim(-1, 0), P, to_vllm=theirs == "halves").movedim(0, -1)
        cache.update(rows[..., :R].contiguous(), rope.contiguous(), i)
    return cache


def attention_caches(vllm_layer, kv) -> list:
    """The bundle's self-attention caches of `vllm_layer`, in its modules' order (its attentions: `impl` and a
    `kv_cache` tensor; not a cross-attention's), `kv` (the example's, the first) alone where none is found."""
    import torch

    found = list({id(m.kv_cache): m.kv_cache for m in (vllm_layer.modules() if vllm_layer is not None else ())
                  if hasattr(m, "impl") and isinstance(getattr(m, "kv_cache", None), torch.Tensor)
                  and getattr(m, "attn_type", "decoder") != "encoder_decoder"}.values())
    return found if found and found[0] is kv else [kv]


def rotary_pairs(k0, k1) -> str | None:
    """Which dims a rotary turns together in a key: 'interleaved' (2i, 2i+1) or 'halves' (i, i + d/2), told by the
    key of one token at two positions (`k0`, `k1`): the pairs whose summed squares the turn keeps. None where neither
    pairing stands out (no turn: Kimi's NoPE latent)."""
    d = k0.shape[-1]
    k0, k1 = k0.float(), k1.float()

    def drift(pairs):
        return float((pairs(k1) - pairs(k0)).abs().sum() / pairs(k0).abs().sum().clamp_min(1e-30))

    interleaved = drift(lambda k: k[..., 0::2] ** 2 + k[..., 1::2] ** 2)
    halves = drift(lambda k: k[..., : d // 2] ** 2 + k[..., d // 2:] ** 2)
    if max(interleaved, halves) <= 2 * min(interleaved, halves):
        return None
    return "halves" if halves < interleaved else "interleaved"


def vllm_rope_halves(layer, dim: int):
    """Whether vLLM's rotary of width `dim` in `layer` turns halves (is_neox_style) rather than interleaved pairs: the
    attention's `rotary_emb` (DeepSeek-V3.2's indexer has its own, of the same width); None where there is none."""
    ropes = [m for n, m in layer.named_modules() if n.rpartition(".")[2] == "rotary_emb"
             and isinstance(getattr(m, "is_neox_style", None), bool) and getattr(m, "rotary_dim", None) == dim]
    return bool(ropes[0].is_neox_style) if ropes else None


def _paged(kv, block_table, n: int, dtype):
    """The first `n` tokens of each sequence in a paged cache ([blocks, H_kv, block_size, 2*Dh], a sequence's blocks
    its row of `block_table`), as [B, H_kv, n, 2*Dh] in `dtype`."""
    import torch

    seqs = []
    for b in range(block_table.shape[0]):
        blocks = kv[block_table[b].long()]  # [nb, H_kv, bs, 2Dh]
        seqs.append(blocks.permute(1, 0, 2, 3).reshape(kv.shape[1], -1, kv.shape[-1])[:, :n])
    return torch.stack(seqs).to(dtype)


def cross_context(ex, dtype, config, layer_idx: int, self_cache, hf_forward_fn):
    """(transformers' cache, the encoder inputs to give its layer) for a decode step of a cross-attention layer: the
    bundle's example gives vLLM's layer no encoder output (None) and the encoder's K/V in its cross cache (random, as
    a first step leaves it); transformers' EncoderDecoderCache holds them beside `self_cache` (the context's); its
    cross cache filled, the layer reads them (is_updated) and not the zero encoder output of the same length it gets,
    there only for its presence (Bart's layer skips its cross-attention without one). NoReference for more than one
    cross layer."""
    import inspect

    import torch
    from transformers import EncoderDecoderCache

    caches, S = ex["inputs"]["cross_kv_caches"], ex["sizes"]["encoder_tokens"]
    if len(caches) != 1:
        raise NoReference(f"the bundle's layer holds {len(caches)} cross-attention layers: the harness copies one")
    both = _paged(caches[0], ex["inputs"]["cross_block_table"], S, dtype)
    Dh = both.shape[-1] // 2
    cross = kv_cache(config, layer_idx)
    cross.update(both[..., :Dh].contiguous(), both[..., Dh:].contiguous(), layer_idx)
    cache = EncoderDecoderCache(self_cache if self_cache is not None else kv_cache(config, layer_idx), cross)
    params = inspect.signature(hf_forward_fn).parameters
    B, H = ex["sizes"]["B"], ex["inputs"]["hidden_states"].shape[-1]
    encoder = {n: torch.zeros(B, S, H, dtype=dtype, device=both.device) for n, v in ex["inputs"].items()
               if _encoder_input(n) and v is None and n in params}
    return cache, encoder


def kv_cache(config, layer_idx: int):
    """transformers' cache for `config`, keeping K/V at `layer_idx`: where the config's block type there keeps
    recurrent state alone (a linear-attention layer), a K/V layer replaces it, for an attention class built at that
    index (Jamba's attention layer at the bundle's index, a Mamba one in the config; H200: 'LinearAttentionLayer'
    object has no attribute 'update')."""
    from transformers import DynamicCache
    from transformers.cache_utils import CacheLayerMixin, DynamicLayer

    cache = DynamicCache(config=config)
    if layer_idx < len(cache.layers) and not isinstance(cache.layers[layer_idx], CacheLayerMixin):
        cache.layers[layer_idx] = DynamicLayer()
    return cache


def new_layer(hf_cls, config, layer_idx: int):
    """transformers' layer `hf_cls` for layer `layer_idx` (a layer class that takes no index gets the config alone)."""
    import inspect

    return hf_cls(config, layer_idx) if len(inspect.signature(hf_cls.__init__).parameters) > 2 else hf_cls(config)


def hf_shapes(hf_cls, config, layer_idx: int) -> dict:
    """Every parameter of transformers' layer and its shape (built on meta: nothing allocated)."""
    import torch

    with torch.device("meta"):
        return {n: tuple(p.shape) for n, p in new_layer(hf_cls, config, layer_idx).named_parameters()}


@contextlib.contextmanager
def params_on_meta():
    """Modules built inside get their parameters on meta (nothing allocated) and their buffers as their __init__
    computes them: rotary inv_freq, GPT-J's embed_positions, xIELU's beta and eps are transformers' own."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, None if param is None else
                 torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad))

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def hf_layer(hf_cls, config, layer_idx: int, state: dict, dtype, buffers: dict | None = None, both_ways: bool = False):
    """transformers' layer in eval mode holding `state` (map_weights' output) in `dtype`. Its parameters are built
    on meta and given the mapped tensors (assign): where the dtype is the bundle's, it shares their storage (no second
    copy of an MoE layer's experts). Its buffers are those its __init__ computes, except where vLLM's layer has one of
    the same name and shape (`buffers`: an activation's constants as vLLM set them). A buffer of vLLM's layer that
    transformers' layer lacks, at a module it has that has no attribute of that name, is given to it: transformers'
    model registers such buffers on its layers after building them (FalconH1Model's mup_vector on each mixer), so
    the layer alone lacks them (H100: AttributeError 'FalconH1Mixer' object has no attribute 'mup_vector').
    `both_ways`: its attentions made non-causal (is_causal False), as vLLM's layer states its own (states_both_ways)."""
    with params_on_meta():
        hf = new_layer(hf_cls, config, layer_idx)
    own = {n: b for n, b in hf.state_dict().items() if n in dict(hf.named_buffers())}  # the persistent ones
    taken = {n: b for n, b in (buffers or {}).items() if n in own and tuple(b.shape) == tuple(own[n].shape)}
    state = {**{k: v.to(dtype) for k, v in state.items()}, **{n: b.to(own[n].dtype) for n, b in taken.items()}}
    modules = dict(hf.named_modules())
    for n, b in (buffers or {}).items():
        path, _, leaf = n.rpartition(".")
        if path in modules and not hasattr(modules[path], leaf):
            modules[path].register_buffer(leaf, b.to(dtype) if b.is_floating_point() else b.clone(), persistent=False)
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    missing = [n for n in missing if n not in own]
    if missing or unexpected:
        raise MappingError(f"transformers' layer did not take the mapped weights: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    for m in hf.modules() if both_ways else ():
        if isinstance(getattr(m, "is_causal", None), bool):
            m.is_causal = False
    return hf.to(next(iter(state.values())).device).eval()


def head_dim(config) -> int | None:
    """The attention's head_dim: the config's, else hidden_size // num_attention_heads (vLLM's ModelConfig's)."""
    heads, hidden = getattr(config, "num_attention_heads", None), getattr(config, "hidden_size", None)
    return getattr(config, "head_dim", None) or (hidden // heads if heads and hidden else None)


def mapping_args(meta, config, rules: dict) -> dict:
    """map_weights' keyword arguments for transformers' layer `meta` (built on meta)."""
    persistent = meta.state_dict()
    return dict(rules=rules, layout=hf_experts_layout(meta), transposed=hf_transposed(meta),
                num_heads=getattr(config, "num_attention_heads", None),
                head_dim=head_dim(config) if rules["rotary_permuted"] else None,
                buffers={n: tuple(b.shape) for n, b in meta.named_buffers() if n in persistent})


# what building a transformers layer class from a config it was not written for raises: other arguments than (config,
# index), a key or sub-config it lacks, or a per-layer attribute read globally (transformers'
# AmbiguousGlobalPerLayerAttributeError, a RuntimeError: Gemma4VisionEncoderLayer on a Gemma 4 text config)
NOT_BUILDABLE = (TypeError, ValueError, IndexError, KeyError, AttributeError, RuntimeError)


def reference_layer(hf_cls, config, layer_idx: int, vllm_state: dict, rules: dict):
    """(index, transformers' layer on meta) to compare vLLM's layer `layer_idx` with: that index where vLLM's
    parameters map onto it, else the first index whose layer they map onto. A hybrid model's one transformers class
    builds the config's block type at each index (NemotronH's, GraniteMoeHybrid's layer types), which need not be the
    type of the vLLM layer the bundle's example built at that index (H100: exit 2, mixer.up_proj.weight / self_attn.
    qkv_proj.weight has no counterpart). Where none maps, the error is layer_idx's."""
    import torch

    def at(i):
        with torch.device("meta"):
            return new_layer(hf_cls, config, i)

    meta = at(layer_idx)
    try:
        map_weights(vllm_state, {n: tuple(p.shape) for n, p in meta.named_parameters()},
                    **mapping_args(meta, config, rules), zeroed=[])
        return layer_idx, meta
    except PartOfLayer:
        return layer_idx, meta
    except MappingError as first:
        seen = {tuple(sorted(n for n, _ in meta.named_parameters()))}
        for i in range(int(getattr(config, "num_hidden_layers", 0) or 0)):
            try:
                other = at(i)
            except NOT_BUILDABLE:  # no candidate
                continue
            names = tuple(sorted(n for n, _ in other.named_parameters()))
            if names in seen:
                continue
            seen.add(names)
            try:
                map_weights(vllm_state, {n: tuple(p.shape) for n, p in other.named_parameters()},
                            **mapping_args(other, config, rules), zeroed=[])
            except MappingError:
                continue
            return i, other
        raise first


def reference_class(hf_cls, rope_cls, config, layer_idx: int, vllm_state: dict, rules: dict):
    """(layer class, rotary class, index, transformers' layer on meta): reference_layer's for `hf_cls`, else for the
    first other layer class of its modeling module vLLM's parameters map onto. transformers may build one class per
    block type where vLLM's one class builds either (OlmoHybrid's attention and linear-attention layers: the name
    picks the attention one; H200: exit 2, linear_attn.in_proj_qkvg.weight has no counterpart), else `hf_cls`'s layer at
    `layer_idx` under a layer type the config holds nowhere (_retyped_layer: `config.layer_types` changed in place).
    Where none maps, the error is `hf_cls`'s."""
    import sys

    try:
        return (hf_cls, rope_cls, *reference_layer(hf_cls, config, layer_idx, vllm_state, rules))
    except NoReference:
        raise
    except MappingError as first:
        mod = sys.modules[hf_cls.__module__]
        for cls in hf_layer_classes(mod):
            if cls is hf_cls:
                continue
            try:
                return (cls, _rotary(mod, cls), *reference_layer(cls, config, layer_idx, vllm_state, rules))
            except (MappingError, *NOT_BUILDABLE):  # another class (other arguments, another model's config)
                continue
        retyped = _retyped_layer(hf_cls, config, layer_idx, vllm_state, rules)
        if retyped is None:
            raise first
        return (hf_cls, rope_cls, layer_idx, retyped)


def _retyped_layer(hf_cls, config, layer_idx: int, vllm_state: dict, rules: dict):
    """transformers' layer on meta at `layer_idx` under the first layer type (transformers' ALLOWED_LAYER_TYPES) the
    config's `layer_types` holds nowhere that vLLM's parameters map onto, that entry of `config.layer_types` set to it
    in place; None where none does (the entry kept). A config with no layer of vLLM's layer's type (GraniteMoeHybrid's
    default: every layer linear_attention, vLLM's attention layer built at the bundle's index; H200: exit 2,
    self_attn.qkv_proj.weight has no counterpart)."""
    import torch
    from transformers.configuration_utils import ALLOWED_LAYER_TYPES

    types = getattr(config, "layer_types", None)
    if not isinstance(types, list) or not 0 <= layer_idx < len(types):
        return None
    kept = types[layer_idx]
    for kind in (t for t in ALLOWED_LAYER_TYPES if t not in types):
        types[layer_idx] = kind
        try:
            with torch.device("meta"):
                meta = new_layer(hf_cls, config, layer_idx)
            map_weights(vllm_state, {n: tuple(p.shape) for n, p in meta.named_parameters()},
                        **mapping_args(meta, config, rules), zeroed=[])
            return meta
        except (MappingError, TypeError, ValueError, KeyError, AttributeError):
            continue
    types[layer_idx] = kept
    return None
