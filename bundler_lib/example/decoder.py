"""A6: the invocation example of a `*DecoderLayer`, run outside vLLM's engine.

What vLLM's own code needs before a decoder layer runs (closure study, "Running a forward outside vLLM's
engine"): a current vLLM config whose `model_config.hf_text_config` holds the model's fields, a
single-process parallel state, the variant's attention backend and the triton MoE backend, a workspace
manager, weights filled and `process_weights_after_loading` run, a KV cache bound to the attention
layer, the attention metadata, and the call inside a forward context. The config and state come from
`state.py` (stand-ins set on the bundle's own module state), the attention metadata from `attention_metadata.py`;
this file adds the rest.
"""

from bundler_lib.common.example_roots import FORWARD_INPUTS, RECURRENT_STATE_ROOTS, decoder_layer_roots
from bundler_lib.example import (attention_metadata, cross_attention, distributed, forward_inputs, layer_stack, mla,
                                 model_parts, recurrent_state, state)

# The forward context is set where the bundle has it: a layer whose closure never reads it (an MLP-only block of a
# hybrid model) leaves it out, and runs without it.
REQUIRED = ["vllm_config"]


def extra_roots(variant: dict) -> list[str]:
    """`file::Name` or `file::Class.method` the decoder-layer example needs beyond the layer's closure (extra roots
    A1 reads as data, common/example_roots.py)."""
    return list(example_roots(variant)) + list(RECURRENT_STATE_ROOTS)


def example_roots(variant: dict) -> tuple[str, ...]:
    return decoder_layer_roots(attention_metadata.backend(variant))

# A layer kind without a template: the example stops first, naming what it lacks (the body after it keeps the
# names the example roots reach, as for any decoder layer).
_NO_TEMPLATE = '''\
    raise NotImplementedError("invocation_example: no example template for {symbol}: it needs "
                              + "; ".join({missing!r}))
'''

_INSTALL = "    restore = _install(vllm_config)\n"
_KV_CACHE = '''\
                for _, a in attn_layers:
                    kv_cache = torch.empty(num_blocks, block_size, H_kv, Dh + Dv, device=device, dtype=dtype)
                    kv_cache.normal_(0.0, 1.0, generator=gen)
                    a.kv_cache = kv_cache.permute(0, 2, 1, 3)
'''

_BODY = '''\
{attn_check}    missing = [r for r in {required!r} if not N.get(r)]
    if missing:
        raise RuntimeError("invocation_example: this bundle lacks vLLM's module state " + ", ".join(missing)
                           + " (A1 did not reach it): the layer cannot be set up outside vLLM's engine")
{parallel_setup}    if device.type != "cuda":
        raise RuntimeError("invocation_example: {symbol} runs on a CUDA GPU (Triton attention and MoE kernels)")

    layer_idx = dims["layer"]  # A6's choice (core.example_layer): the per-layer config values are this layer's
    prefix = f"model.layers.{{layer_idx}}"
    old_dtype = torch.get_default_dtype()
{install}    try:
        # 3. Build the layer as vLLM's loader does: default dtype, on the device; fill the weights.
        with _Step("building {symbol}"):
            torch.set_default_dtype(dtype)
            with torch.device(device):
                # vLLM's decoder layers take their inputs by name: the whole config, or the model's config with
                # cache/quant configs, a prefix, a layer index; anything else has a default or is not supported
                given = {{"vllm_config": vllm_config, "config": hf, "hf_config": hf, "text_config": hf,
                         "cache_config": vllm_config.cache_config, "quant_config": None, "prefix": prefix,
                         "layer_idx": layer_idx, "layer_id": layer_idx, "model_config": vllm_config.model_config,
                         "parallel_config": vllm_config.parallel_config, "rope_parameters": hf.rope_parameters}}
                given.update({init_inputs!r})  # A6's values for this layer's other inputs (forward_inputs.py)
{model_parts}{stack_build}                kw = {{}}
                for pname, prm in list(inspect.signature({symbol}.__init__).parameters.items())[1:]:
                    if pname in given:
                        kw[pname] = given[pname]
                    elif prm.default is inspect.Parameter.empty and prm.kind not in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
                        raise NotImplementedError(
                            f"invocation_example: {symbol}.__init__ needs {{pname!r}}, which the decoder-layer example "
                            "cannot supply (no template for this layer's construction)")
{construct}{attach_parts}        with _Step("filling the weights"), torch.no_grad():
            for pname, p in layer.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0)  # norm weights (the layer has no biases unless attention_bias)
                    if pname.endswith("bias"):
                        p.zero_()
                elif p.is_floating_point():
                    p.normal_(0.0, p.shape[-1] ** -0.5, generator=gen if p.device.type == gen.device.type else None)
{parallel_weights}        # As vLLM's loader (model_loader/utils.py process_weights_after_loading): quant methods, then attention.
        qm_base = _get("QuantizeMethodBase")
        attn_cls = _get({attn_role!r})
        # A method the bundle lacks was not reached from the layer (A1 follows the layer, not the loader).
        post_load_missing = []
        with _Step("process_weights_after_loading"):
            for _, m in layer.named_modules():
                qm = getattr(m, "quant_method", None)
                if qm is None or (qm_base is not None and not isinstance(qm, qm_base)):
                    continue
                fn = getattr(qm, "process_weights_after_loading", None)
                if fn is None:
                    post_load_missing.append(type(qm).__name__ + ".process_weights_after_loading")
                else:
                    fn(m)
            attn_layers = [(n, m) for n, m in layer.named_modules()
                           if (isinstance(m, attn_cls) if attn_cls is not None
                               else hasattr(m, "impl") and hasattr(m, "kv_cache"))]
            for _, m in attn_layers:
                fn = getattr(m, "process_weights_after_loading", None)
                if fn is None:
                    post_load_missing.append(type(m).__name__ + ".process_weights_after_loading")
                else:  # the activation dtype where it takes one (vLLM < 0.34; 0.34 takes none)
                    fn(*([dtype] if inspect.signature(fn).parameters else []))
        # vLLM's engine binds a `kv_cache` to each module holding per-sequence state (attention, mamba, short conv)
        recurrent = _recurrent_modules(layer, attn_layers)  # mamba/short-conv state (recurrent_state.py)
{cross_select}        # several attention layers (one per step/loop/block of a recurrent layer): each gets its own KV cache, of
        # the same sizes, and the same metadata
        if len({{(a.num_heads, a.num_kv_heads, a.head_size) for _, a in attn_layers}}) > 1:
            raise NotImplementedError(
                f"invocation_example: {symbol}'s {{len(attn_layers)}} attention layers differ in heads or head size; "
                "the decoder-layer example sizes one KV cache and one metadata for all of them")
        attn = attn_layers[0][1] if attn_layers else None
        if attn is None:
            H_q = H_kv = Dh = Dv = 0  # an attention-free layer: no KV cache, no attention metadata, no attention cost
        else:
            # the cache and metadata follow the attention built (its head size can differ from the config's dims)
            H_q, H_kv, Dh = attn.num_heads, attn.num_kv_heads, attn.head_size
            # the V head's size (another than K's: DiffKV; MLA's output of its latent attention: kv_lora_rank)
            Dv = getattr(attn, "head_size_v", getattr(attn, "kv_lora_rank", Dh))
        kv_width = {kv_width}
        attn_names = [getattr(a, "layer_name", prefix + ".self_attn.attn") for _, a in attn_layers]
        # the metadata's causal flag, as the layer decides it: False where an attention, or the module holding it,
        # states `causal` False (vLLM's DFlash drafter puts its layers' causal into CommonAttentionMetadata)
        causal = not any(getattr(m, "causal", None) is False for n, a in attn_layers
                         for m in (a, layer.get_submodule(n.rpartition(".")[0])))

        # 4. Shapes, within the memory left after the weights.
        torch.cuda.synchronize()
        free_now, _ = torch.cuda.mem_get_info(device)
        live = min(max(int(free_now * 0.2), 2 * GiB), 8 * GiB, int(free_now * 0.9))
        kv_bytes_per_token = len(attn_layers) * kv_width * torch.finfo(dtype).bits // 8
        act_bytes_per_token = 2 * (8 * H + 3 * (H_q + 2 * H_kv) * Dh) + int(moe.get("top_k", 0)) * 2 * (
            6 * int(moe.get("moe_intermediate_size", 0)) + 2 * H) + 4 * int(moe.get("num_experts", 0))
        # tokens, batch, context (the function's arguments) override what memory and `small` choose
        if workload == "decode":
            q_len = tokens or 1
            ctx = context if context is not None else (64 if small else min(max_ctx - q_len, 32768))
            per_seq = (ctx + q_len) * kv_bytes_per_token + q_len * act_bytes_per_token + _state_bytes(recurrent)
{cross_per_seq}            B = batch or (2 if small else _clamp(live // max(1, per_seq), 1, 256))
        else:
            B, ctx = batch or 1, context or 0
            if tokens:
                q_len = tokens
            else:
                q_len = 32 if small else _clamp(live // (act_bytes_per_token + kv_bytes_per_token), 8192, 32768)
                q_len = max(16, min(q_len, max_ctx) // 16 * 16)
        if ctx + q_len > max_ctx:
            raise ValueError(f"invocation_example: context {{ctx}} + {{q_len}} new tokens exceed the model's "
                             f"max context {{max_ctx}}")
        T = B * q_len
        seq_len = ctx + q_len
        blocks_per_seq = -(-seq_len // block_size)
        # block 0 is vLLM's null block: its block pool never hands it out (FlexAttention masks it)
        num_blocks = B * blocks_per_seq + 1

        block_table = torch.arange(1, num_blocks, device=device, dtype=torch.int32).view(B, blocks_per_seq)
        new_pos = torch.arange(ctx, seq_len, device=device)
        positions = new_pos.repeat(B)
        attn_metadata, slots = None, None
        if attn is not None:
            # 5. The KV cache: logical (blocks, kv_heads, block_size, K head + V head), stored NHD (the shape and
            # stride order of the TRITON_ATTN(_DIFFKV) and FLEX_ATTENTION get_kv_cache_shape; another backend's own:
            # attention_metadata.py), the context filled.
            with _Step("allocating the KV cache"):
{kv_cache}
            slots = (block_table[:, new_pos // block_size].long() * block_size + (new_pos % block_size)).reshape(-1)
{metadata}{cross_setup}
        with _Step("allocating the recurrent state and building its metadata"):
            state_metadata = _bind_recurrent_state(recurrent, B, q_len, ctx)

        # 7. The forward context, as set_forward_context would make it, and one forward.
        fwd = _StandIn(
            "forward_context", no_compile_layers=compilation_config.static_forward_context,
            attn_metadata={{**{{n: attn_metadata for n in attn_names}}, **state_metadata}},
            slot_mapping={{n: slots for n in attn_names}}, dp_metadata=None,
            cudagraph_runtime_mode=(graph_enum.NONE if graph_enum is not None else None), batch_descriptor=None,
            ubatch_slices=None, is_padding=None, skip_compiled=False, all_moe_layers=None, moe_layer_index=0,
            additional_kwargs={{}}, virtual_engine=0)
        hidden_shape = {hidden_shape}  # [T, H], or a stack of them (forward_inputs.hidden_stack)
        hidden_states = _randn(*hidden_shape)
        # the layer's other forward inputs, by A6's rules (forward_inputs.py): indices, [T, width] tensors
        # token ids ("ids": [T] in [0, vocab)); an input that is the hidden states is given them (_call)
        extra_inputs = {{n: (_randn(T, v) if k == "tensor" else torch.randint(0, v, (T,), generator=gen, device=device)
                            if k == "ids" else v) for n, (k, v) in {extra_inputs!r}.items() if k != "hidden"}}
{forward_parts}{cross_forward}
        # the forward's inputs by name (positions / position_ids, hidden_states / x, residual, the others)
        fparams = inspect.signature(layer.forward).parameters
        unknown = [n for n, prm in fparams.items() if prm.default is inspect.Parameter.empty
                   and prm.kind not in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD)
                   and n not in {forward_inputs!r} and n not in extra_inputs and n not in {hidden_inputs!r}]
        if unknown:
            raise NotImplementedError(f"invocation_example: {symbol}.forward needs {{unknown}}, which the decoder-layer "
                                      "example cannot supply (no template for these inputs)")

        def _call(x, residual):
            """(hidden_states, residual) of one call; residual is None for a layer that adds it itself."""
            kw = {{}}
            for n in fparams:
                if n in ("positions", "position_ids"):
                    kw[n] = positions
                elif n in {hidden_inputs!r}:
                    kw[n] = x
                elif n == "residual":
                    kw[n] = residual
                elif n in extra_inputs:
                    kw[n] = extra_inputs[n]
            got = layer(**kw)
            if not isinstance(got, tuple):
                return got, None
            # a second output is the residual stream where the forward takes `residual` or returns one of the hidden
            # states' shape (Stablelm); another (Gemma4SelfDecoderLayers' per-layer inputs) is no residual
            stream = "residual" in fparams or (got[1] is not None and got[1].shape == got[0].shape)
            return got[0], got[1] if stream else None

        def forward(x=None, residual=None):
            """The layer's forward on new hidden states `x` (hidden_shape; default: the example's), in
            the same context. vLLM's layers update their input in place: `x` is not changed, a copy is passed."""
            x = hidden_states if x is None else x
            again = _install(vllm_config)
            try:
                _set("forward_context", fwd)
                with torch.inference_mode():
                    o, r = _call(x.clone(), None if residual is None else residual.clone())
                torch.cuda.synchronize()
                return o, r
            finally:
                again()

        _set("forward_context", fwd)
        with _Step(f"the forward of {symbol} ({{workload}}: B={{B}}, new tokens={{q_len}}, context={{ctx}})"):
            with torch.inference_mode():
                out, residual = _call(hidden_states.clone(), None)
            torch.cuda.synchronize()
        _check("hidden_states", out, hidden_shape)
        if residual is not None:
            _check("residual", residual, (T, H))
        # What one forward must compute and move at least (an estimate, for achieved TFLOP/s and GB/s): every
        # weight once (of the experts, those T * top_k routed tokens can reach), the context's K/V, x in and out.
        elem = torch.finfo(dtype).bits // 8
        top_k, E = int(moe.get("top_k") or 0), int(moe.get("num_experts") or 0)
        expert_params = sum(p.numel() for n, p in layer.named_parameters() if ".experts." in n)
        dense_params = sum(p.numel() for n, p in layer.named_parameters()) - expert_params
        touched = min(1.0, T * top_k / E) if E else 0.0
        cost = {{"flops": 2 * T * dense_params + (2 * T * top_k * expert_params // E if E else 0)
                 + 2 * B * q_len * (ctx + (q_len + 1) // 2) * H_q * (Dh + Dv),
                 "bytes": int((dense_params + touched * expert_params) * elem)
                 + B * (ctx + q_len) * kv_width * elem + 2 * T * H * elem
                 + (2 if ctx else 1) * B * _state_bytes(recurrent)}}  # recurrent state read (with context), written
{cross_cost}{parallel_check}        return {{"module": layer, "cost": cost, "inputs": {{"positions": positions, "hidden_states": hidden_states,
                "residual": None, "kv_cache": None if attn is None else {kv_input}, "attn_metadata": attn_metadata,
                "block_table": block_table, "state": {{m.prefix: m.kv_cache for _, m, _ in recurrent}},
                "state_metadata": state_metadata, **extra_inputs{cross_inputs}}},
                "outputs": {{"hidden_states": out, "residual": residual}}, "forward": forward, "prefix": prefix,
                "sizes": {{"B": B, "new_tokens": q_len, "context": ctx, "T": T, "kv_blocks": num_blocks,
                          "block_size": block_size{cross_sizes}}}, "workload": workload, "defaults_used": list(defaults_used),
                "config_assumed": list(config_assumed),
                "post_load_missing": sorted(set(post_load_missing))}}
    finally:
        torch.set_default_dtype(old_dtype)
        restore()
'''


# First, before anything is built: attention that keeps no KV cache (an encoder's) has no context to run over.
_CACHELESS_CHECK = '''\
    if workload == "decode" or context:
        raise NotImplementedError(
            f"invocation_example: {symbol}'s attention is {attn_type} (vLLM keeps no KV cache for it: it runs over "
            f"each sequence's own tokens), so workload={{workload!r}}, context={{context!r}} has no cached context to "
            "run over: pass workload='prefill' and context=None")
'''


def _attention_pieces(variant: dict, symbol: str) -> dict:
    """The parts of the body that follow the attention: MLA's decode-only setup, latent cache and width (mla.py);
    an encoder's attention refuses a cached context."""
    if attention_metadata.is_mla(variant):
        return {"attn_check": mla.CHECK.format(symbol=symbol), "install": mla.SETUP, "attn_role": mla.ATTENTION_ROLE,
                "kv_cache": mla.KV_CACHE, "kv_input": "attn.kv_cache", "kv_width": mla.KV_WIDTH}
    check = (_CACHELESS_CHECK.format(symbol=symbol, attn_type=variant["attn_type"])
             if attention_metadata.is_cacheless(variant) else "")
    return {"attn_check": check, "install": _INSTALL, "attn_role": "Attention",
            "kv_cache": attention_metadata.kv_cache(variant, _KV_CACHE),
            "kv_input": attention_metadata.kv_input(variant), "kv_width": "H_kv * (Dh + Dv)  # K and V heads per token"}


def _other_inputs(graph: dict, cfg: dict | None, dims: dict, flags: dict) -> tuple[dict, dict, list[str]]:
    # the config as the example's answers it: its fields, and config_rules' values for the keys it lacks
    fields, derived, _ = state.config_fields(cfg, dims, flags)
    return forward_inputs.derive(graph.get("root_signature"), {**{k: v for k, (v, _) in derived.items()}, **fields},
                                 dims, {k: rule for k, (_, rule) in derived.items()})


def _hidden_stack(graph: dict, cfg: dict | None, dims: dict, flags: dict) -> tuple[list[int], str | None, str | None]:
    return forward_inputs.hidden_stack(graph.get("root_signature"), state.hf_fields(cfg, dims, flags))


def missing_template(graph: dict, dims: dict, cfg: dict | None = None, flags: dict | None = None) -> list[str]:
    """What this decoder layer needs that the example has no template for (empty: it can run): inputs its own
    __init__/forward require beyond those every example gives that no rule of forward_inputs.py derives (A1's
    root_signature) nor the cross-attention template (cross_attention.py), and attention heads (a state-space
    layer's config has none: its mamba state)."""
    out = list(_other_inputs(graph, cfg, dims, flags or {})[2]) + attention_metadata.unsupported(graph)
    out += cross_attention.missing(graph.get("root_signature"), graph.get("variant") or {})
    out += layer_stack.missing(graph)
    out += model_parts.missing(graph)
    stack_missing = _hidden_stack(graph, cfg, dims, flags or {})[2]
    if stack_missing:
        out.append(stack_missing)
    if dims.get("H_q") is None and not recurrent_state.holds_state(graph):
        out.append("attention heads: the config has no num_attention_heads and the layer reaches no state-space "
                   "layer (vLLM's MambaBase) whose state the example could set up")
    return out


def body(graph: dict, symbol: str, dims: dict, flags: dict, cfg: dict, config_label: str,
         no_template: list[str]) -> tuple[str, list[str], list[str]]:
    """(the function body, notes, the vLLM names the example needs) for a decoder layer; with `no_template`
    (missing_template's), the body raises NotImplementedError naming it first."""
    found, _ = state.resolve(graph)
    variant = graph.get("variant") or {}
    roles, required, roots = state.roles(graph), REQUIRED + attention_metadata.required(variant), example_roots(variant)
    missing = [f"{roles[r][0]}::{roles[r][1]}" for r in required if not found[r]]
    notes = ["decoder layer: vLLM's engine state is set by the example itself with stand-in config objects "
             "(explicit fields plus logged defaults); best effort, to be verified on a GPU"]
    if missing:
        notes.append("the graph lacks " + ", ".join(missing) + ": the example will raise until A1 reaches it")
    absent = sorted(k for k, v in found.items() if k != "groups" and not v)
    if absent:
        notes.append("not in the bundle (the example falls back to stand-ins or defaults): " + ", ".join(absent))
    needs = sorted(set(roots) | {f"{f}::{n}" for f, n in roles.values()}
                   | {f"{state.GROUP_FILE}::{g}" for g in state.GROUPS})
    have = state.emit_names(graph)
    absent_roots = [r for r in roots if "." not in r.split("::")[1]
                    and tuple(r.split("::")) not in have]
    if absent_roots:
        notes.append("A1 did not reach (extra roots the example needs): " + ", ".join(absent_roots))
    if no_template:
        notes.append("no template: the example raises NotImplementedError naming " + "; ".join(no_template))
    elif attention_metadata.is_mla(variant):
        notes.append(mla.NOTE)
    rnotes, rneeds = recurrent_state.notes_and_needs(graph)
    notes += rnotes
    needs = sorted(set(needs) | set(rneeds))
    init_inputs, fwd_inputs, _ = _other_inputs(graph, cfg, dims, flags)
    notes += forward_inputs.notes(init_inputs, fwd_inputs)
    stack, stack_note, _ = _hidden_stack(graph, cfg, dims, flags)
    notes += [stack_note] if stack_note else []
    cross, cnotes = cross_attention.pieces(graph.get("root_signature"), cfg, symbol)
    notes += cnotes
    stack_code, snotes = layer_stack.pieces(graph, symbol)
    notes += snotes
    parts_code, pnotes = model_parts.pieces(graph)
    notes += pnotes
    src = (state.snippet(graph, cfg, dims, flags, config_label) + recurrent_state.snippet(graph, symbol)
           + (_NO_TEMPLATE.format(symbol=symbol, missing=no_template) if no_template else "")
           + _BODY.format(required=required, symbol=symbol, metadata=attention_metadata.snippet(variant),
                          forward_inputs=FORWARD_INPUTS, **_attention_pieces(variant, symbol),
                          hidden_shape="(" + "".join(f"{k}, " for k in stack) + "T, H)",
                          init_inputs={n: v for n, (_, v, _) in init_inputs.items()},
                          extra_inputs={n: (k, v) for n, (k, v, _) in fwd_inputs.items()},
                          hidden_inputs=("hidden_states", "x") + tuple(sorted(
                              n for n, (k, _, _) in fwd_inputs.items() if k == "hidden")),
                          **cross, **stack_code, **parts_code, **distributed.hooks(graph, symbol)))
    return src, notes, needs
