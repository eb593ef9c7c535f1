"""A6: the decoder-layer example of a layer with cross-attention (Whisper, Bart, MBart, CohereASR, FireRedLID), run
as vLLM's engine runs it (vLLM 0.26.0 `model_executor/layers/attention/cross_attention.py`, `gpu_model_runner`).

A decoder layer whose forward takes the encoder's output (`encoder_hidden_states`) holds a `CrossAttention`
(`attn_type` `encoder_decoder`) beside its self-attention. vLLM gives that attention its own KV cache
(`CrossAttentionSpec`: the same block size, one slot per encoder token of each sequence) and its own metadata
(`CrossAttentionBuilder`: not causal, `seq_lens`/`max_seq_len` the encoder lengths, the cross cache's block table,
and a slot mapping over the encoder tokens). A sequence's first step (no computed tokens: prefill) gets the
encoder's output, `[sum of encoder lengths, hidden]`, whose K/V the layer computes and writes through that slot
mapping; a later step (decode, or any step after context) gets None and an empty slot mapping, and reads the cache
(the model's `enc_states = ... if len(encoder_outputs) else None`).

The example does the same: the encoder length is the config's `max_source_positions` (Whisper's encoder frames)
when it has one, else `DEFAULT_ENCODER_TOKENS` (30 s of audio at Whisper's 50 frames/s); `small=True` takes
`SMALL_ENCODER_TOKENS`. With context (decode) the cross cache holds random K/V, as a prior step would have left it.
The self-attention side is the decoder-layer example's own (`decoder.py`). The metadata is TRITON_ATTN's fields
(attention_metadata.py), with the cross values; another backend has no cross template.

The result's `inputs` hold the cross caches (`cross_kv_caches`, one a cross layer) and their `cross_block_table`.
The generated code is spliced into decoder.py's body at seven points (`pieces`); a layer without a cross input gets
the same text as before this template existed.
"""

from __future__ import annotations

from bundler_lib.example import attention_metadata

DEFAULT_ENCODER_TOKENS = 1500
SMALL_ENCODER_TOKENS = 64
ENCODER_LENGTH_KEY = "max_source_positions"
BACKENDS = ("TRITON_ATTN",)
_HIDDEN = ("hidden_states", "embeds")

# A layer without a cross-attention input: the attention layers it holds must all be its own (decoder.py's text).
_REFUSE = '''\
        cross = [n for n, a in attn_layers if getattr(a, "attn_type", "decoder") == "encoder_decoder"]
        if cross:
            raise NotImplementedError(
                f"invocation_example: {symbol}'s attention layers {{cross}} attend to an encoder's output (cross-"
                "attention: no template for the encoder KV cache and its metadata)")
'''

_SELECT = '''\
        # cross-attention (cross_attention.py): the layers reading the encoder's K/V get their own KV cache and
        # metadata below; the others are the decoder's self-attention, as in any decoder-layer example
        cross_layers = [(n, a) for n, a in attn_layers if getattr(a, "attn_type", "decoder") == "encoder_decoder"]
        attn_layers = [(n, a) for n, a in attn_layers if getattr(a, "attn_type", "decoder") != "encoder_decoder"]
        if not cross_layers or not attn_layers:
            raise NotImplementedError(
                f"invocation_example: {symbol} takes {input!r} but holds {{len(cross_layers)}} cross-attention and "
                f"{{len(attn_layers)}} self-attention layers; the cross-attention template needs at least one of each")
        if len({{(a.num_heads, a.num_kv_heads, a.head_size) for _, a in attn_layers + cross_layers}}) > 1:
            raise NotImplementedError(
                f"invocation_example: {symbol}'s cross- and self-attention differ in heads or head size; the "
                "cross-attention template shares the self-attention's metadata buffers")
        # encoder tokens per sequence: {source}
        S_enc = {small} if small else {tokens}
        cross_bytes_per_seq = len(cross_layers) * S_enc * 2 * cross_layers[0][1].num_kv_heads \\
            * cross_layers[0][1].head_size * torch.finfo(dtype).bits // 8
'''

_PER_SEQ = '''\
            per_seq += cross_bytes_per_seq
'''

_SETUP = '''\
            # the cross-attention's KV cache (vLLM's CrossAttentionSpec: the same block size, S_enc slots per
            # sequence after the null block) and its metadata, as vLLM's CrossAttentionBuilder derives it from the
            # batch's: not causal, the encoder lengths as seq_lens, the cross cache's block table, and the slots of
            # the encoder tokens where a sequence has no computed tokens (its K/V are computed and written now)
            enc_blocks = -(-S_enc // block_size)
            cross_block_table = torch.arange(1, 1 + B * enc_blocks, device=device, dtype=torch.int32).view(B, enc_blocks)
            with _Step("allocating the cross-attention KV cache"):
                for _, a in cross_layers:
                    cross_cache = torch.empty(1 + B * enc_blocks, block_size, H_kv, 2 * Dh, device=device, dtype=dtype)
                    cross_cache.normal_(0.0, 1.0, generator=gen)
                    a.kv_cache = cross_cache.permute(0, 2, 1, 3)
            if ctx == 0:
                enc_pos = torch.arange(S_enc, device=device)
                cross_slots = (cross_block_table[:, enc_pos // block_size].long() * block_size
                               + (enc_pos % block_size)).reshape(-1)
                encoder_hidden_states = _randn(B * S_enc, H)
            else:
                cross_slots = torch.empty(0, device=device, dtype=torch.int64)
                encoder_hidden_states = None
            cross_fields = dict(md_fields, causal=False, max_seq_len=S_enc,
                                seq_lens=torch.full((B,), S_enc, device=device, dtype=torch.int32),
                                block_table=cross_block_table, slot_mapping=cross_slots)
            with _Step("building the cross-attention metadata"):
                if md_cls is not None:
                    accepted = inspect.signature(md_cls).parameters
                    cross_metadata = md_cls(**{{k: v for k, v in cross_fields.items() if k in accepted}})
                else:
                    cross_metadata = _StandIn("attn_metadata", **cross_fields)
'''

_FORWARD = '''\
        # the cross layers' metadata and slots in the forward context; the encoder's output (None: read the cache)
        cross_names = [getattr(a, "layer_name", f"{{prefix}}.{{n}}") for n, a in cross_layers]
        fwd.attn_metadata.update({{n: cross_metadata for n in cross_names}})
        fwd.slot_mapping.update({{n: cross_slots for n in cross_names}})
        extra_inputs[{input!r}] = encoder_hidden_states
'''

_COST = '''\
        # cross-attention: each new token attends to S_enc encoder tokens, whose K/V are read (and in the first step
        # projected from the encoder's output and written)
        n_cross = len(cross_layers)
        cost["flops"] += n_cross * 4 * T * S_enc * H_q * Dh + (
            n_cross * 2 * B * S_enc * H * 2 * H_kv * Dh if encoder_hidden_states is not None else 0)
        cost["bytes"] += n_cross * B * S_enc * 2 * H_kv * Dh * elem + (
            B * S_enc * H * elem if encoder_hidden_states is not None else 0)
'''


def inputs(signature: dict | None) -> list[str]:
    """The forward inputs, required or optional, that name an encoder or cross-attention (A1's root_signature)."""
    fwd = (signature or {}).get("forward") or {}
    return [n for n in fwd.get("required", []) + fwd.get("optional", []) if "encoder" in n or "cross" in n]


def encoder_input(signature: dict | None) -> str | None:
    """The one cross input the template gives (the encoder's output: named for hidden states or embeddings)."""
    named = [n for n in inputs(signature) if any(w in n for w in _HIDDEN)]
    return named[0] if len(named) == 1 else None


def missing(signature: dict | None, variant: dict) -> list[str]:
    """What of the layer's cross-attention the template does not give (empty: no cross input, or all covered)."""
    names = inputs(signature)
    if not names:
        return []
    given = encoder_input(signature)
    if given is None:
        return [f"forward inputs {names}: cross-attention, with no single input naming the encoder's hidden states "
                "(the template gives the encoder's output and nothing else)"]
    out = [f"forward input {n}: cross-attention input beside {given} (the template gives the encoder's output only)"
           for n in names if n != given]
    backend = attention_metadata.backend(variant)
    if backend not in BACKENDS:
        out.append(f"forward input {given}: cross-attention's metadata has a template for {', '.join(BACKENDS)} "
                   f"only, not the variant's {backend}")
    return out


def encoder_tokens(cfg: dict | None) -> tuple[int, str]:
    """(encoder tokens per sequence, where from): the config's `max_source_positions`, else the default."""
    v = (cfg or {}).get(ENCODER_LENGTH_KEY)
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v, f"config.{ENCODER_LENGTH_KEY} (the encoder's output length)"
    return DEFAULT_ENCODER_TOKENS, (f"{DEFAULT_ENCODER_TOKENS} (default: the config has no {ENCODER_LENGTH_KEY}; "
                                    "Whisper's 30 s of audio)")


def pieces(signature: dict | None, cfg: dict | None, symbol: str) -> tuple[dict, list[str]]:
    """(the text decoder.py's body splices in: select, per_seq, setup, forward, cost, sizes, inputs; notes)."""
    name = encoder_input(signature)
    if name is None:
        return {"cross_select": _REFUSE.format(symbol=symbol), "cross_per_seq": "", "cross_setup": "",
                "cross_forward": "", "cross_cost": "", "cross_sizes": "", "cross_inputs": ""}, []
    tokens, source = encoder_tokens(cfg)
    return {
        "cross_select": _SELECT.format(symbol=symbol, input=name, tokens=tokens, small=SMALL_ENCODER_TOKENS,
                                       source=source),
        "cross_per_seq": _PER_SEQ,
        "cross_setup": _SETUP.format(),
        "cross_forward": _FORWARD.format(input=name),
        "cross_cost": _COST,
        "cross_sizes": ', "encoder_tokens": S_enc',
        # the cross caches (one a cross layer) and their block table: what a decode step reads the encoder's K/V from
        "cross_inputs": ', "cross_kv_caches": [a.kv_cache for _, a in cross_layers], "cross_block_table": cross_block_table',
    }, [f"cross-attention: forward input {name} = [B * {tokens}, H] random (the encoder's output, {source}; "
        f"small: {SMALL_ENCODER_TOKENS}) where a sequence has no context, else None (its K/V read from the cross "
        "KV cache, random as a first step leaves it); the cross layers get their own cache and TRITON_ATTN metadata "
        "(not causal, seq_lens the encoder lengths)"]
