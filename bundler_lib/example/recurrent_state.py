"""A6: the recurrent state of a decoder layer's mamba / short-conv / linear-attention modules, set up as vLLM's
engine sets it.

vLLM's state-space and linear-attention layers (MambaMixer, MambaMixer2, ShortConv, the gated delta nets, a
model's own `MambaBase` subclass) register in `compilation_config.static_forward_context[prefix]`, read their state
from `self.kv_cache` (one tensor per entry of their `get_state_shape()` / `get_state_dtype()`, indexed by a
per-sequence slot; the engine binds it, some layers set no placeholder) and their metadata from
`forward_context.attn_metadata[prefix]`, an instance of the metadata class their own code asserts (a subclass of
`BaseMambaAttentionMetadata`, or `GDNAttentionMetadata`, `LinearAttentionMetadata`). The engine builds that
metadata with the backend's builder (`vllm/v1/attention/backends/mamba_attn.py`, `BaseMambaAttentionMetadataBuilder.
_compute_common_metadata` and, for chunked scans, `_compute_chunk_metadata`; `gdn_attn.py`, `linear_attn.py`),
which needs the scheduler's batch; the example fills the same fields for its own batch (mamba_cache_mode 'none', no
speculative tokens, no prefix caching), by name, each class taking those it declares, with vLLM's
`compute_causal_conv1d_metadata` for the conv kernel's launch grid (an extra root of A1, common/example_roots.py).

Nothing here names a model: a module holds recurrent state when it is not attention and has a `kv_cache` or a
`get_state_shape`, and its metadata class is the dataclass its methods name that splits the batch into decodes and
prefills (fields `num_decodes`, `num_prefills`; the most derived where its code names a base too). A state with
other metadata stops the example naming the module.
"""

from __future__ import annotations

from bundler_lib.common.example_roots import RECURRENT_STATE_ROOTS

MAMBA_BASE = ("vllm/model_executor/layers/mamba/abstract.py", "MambaBase")
# role -> (file, name) of what the generated code uses from the bundle
ROLES = {"_mamba_ssu_backend": ("vllm/model_executor/layers/mamba/ops/ssu_dispatch.py", "_mamba_ssu_backend"),
         **{r.split("::")[1]: tuple(r.split("::")) for r in RECURRENT_STATE_ROOTS if "." not in r.split("::")[1]}}


def holds_state(graph: dict) -> bool:
    """Whether the layer's closure reaches vLLM's base of state-space layers (its modules may hold mamba state)."""
    from bundler_lib.example.state import emit_names
    return MAMBA_BASE in emit_names(graph)


def resolve(graph: dict) -> dict:
    """role -> the name it has in the bundle (None: A1 did not reach it)."""
    from bundler_lib.example.state import emit_names
    names = emit_names(graph)
    return {role: names.get(key) for role, key in ROLES.items()}


def notes_and_needs(graph: dict) -> tuple[list[str], list[str]]:
    """(notes, `file::Name` the example needs) for a layer holding recurrent state; empty for another."""
    if not holds_state(graph):
        return [], []
    found = resolve(graph)
    needs = [f"{f}::{n}" for f, n in ROLES.values()]
    notes = ["recurrent state: each mamba/short-conv module's state is allocated from its get_state_shape/"
             "get_state_dtype, one slot per sequence, with its metadata (prefill without, decode with state)"]
    # the backend is needed only where the closure reaches the selective state update that reads it
    wanted = [r for r in ROLES
              if r != "_mamba_ssu_backend" and (r != "TritonSSUBackend" or found["_mamba_ssu_backend"])]
    absent = [f"{ROLES[r][0]}::{ROLES[r][1]}" for r in wanted if not found[r]]
    if absent:
        notes.append("A1 did not reach (the recurrent-state example needs): " + ", ".join(absent))
    return notes, needs


def snippet(graph: dict, symbol: str) -> str:
    """Code (inside invocation_example, after state.snippet) defining `_recurrent_modules(layer, attn_layers)`,
    `_state_bytes(mods)` and `_bind_recurrent_state(mods, B, q_len, ctx)`."""
    from bundler_lib.example.templates import py_literal
    return _SNIPPET.format(names=py_literal(resolve(graph)), symbol=symbol)


# The engine's split (BaseMambaAttentionMetadataBuilder._compute_common_metadata, decode_threshold 1): a sequence
# with one new token after cached ones is a decode (its state read from and written to its slot); any other is a
# prefill, with an initial state where it has context. Decodes come first. Slot 0 is vLLM's null block.
_SNIPPET = '''\
    RN = {names}  # role -> its name in this bundle (recurrent state, bundler_lib/example/recurrent_state.py)

    def _codes(code):
        yield code
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                yield from _codes(c)

    def _metadata_class(module):
        """The state metadata class the module's own methods name (the class they assert): a dataclass splitting
        the batch into decodes and prefills, the most derived where they name a base of it too."""
        found, seen = set(), set()
        for klass in type(module).__mro__:
            for name, fn in vars(klass).items():
                if name in seen:
                    continue  # a base's method the module's class replaces
                seen.add(name)
                code = getattr(inspect.unwrap(getattr(fn, "__func__", fn)), "__code__", None)
                for c in (_codes(code) if code is not None else ()):
                    found |= {{v for v in (G.get(n) for n in c.co_names) if isinstance(v, type)
                              and {{"num_decodes", "num_prefills"}} <= set(getattr(v, "__dataclass_fields__", ()))}}
        found = {{c for c in found if not any(o is not c and issubclass(o, c) for o in found)}}
        if len(found) > 1:
            raise NotImplementedError(f"invocation_example: {{type(module).__name__}} names several state metadata "
                                      f"classes {{sorted(c.__name__ for c in found)}}: no template for that")
        return found.pop() if found else None

    def _recurrent_modules(layer, attn_layers):
        """[(name, module, its metadata class)] for each module holding per-sequence state other than attention
        (vLLM's engine binds a `kv_cache` to each: those with a placeholder, and the state layers sized by their
        get_state_shape); one whose metadata the example cannot build stops it."""
        mods, other = [], []
        for n, m in layer.named_modules():
            if not (hasattr(m, "kv_cache") or hasattr(m, "get_state_shape")) or any(m is a for _, a in attn_layers):
                continue
            md_cls = _metadata_class(m) if hasattr(m, "get_state_shape") else None
            (mods.append((n, m, md_cls)) if md_cls is not None else other.append(f"{{n}} ({{type(m).__name__}})"))
        if other:
            raise NotImplementedError(
                f"invocation_example: {symbol} has state-holding modules {{other}} whose metadata is no dataclass "
                "of decodes and prefills (vLLM's mamba and gated-delta-net metadata): no template for that state yet")
        return mods

    def _state_bytes(mods):
        """Bytes of recurrent state per sequence, over the modules."""
        return sum(torch.Size(s).numel() * torch.empty(0, dtype=d).element_size()
                   for _, m, _ in mods for s, d in zip(m.get_state_shape(), m.get_state_dtype()))

    def _chunks(chunk_size, computed, qsl):
        """(cu_chunk_seqlen, seq_idx, last_chunk_indices) of prefills: vLLM's
        BaseMambaAttentionMetadataBuilder._compute_chunk_metadata (a chunk holds one sequence's tokens and ends
        where the sequence crosses a multiple of chunk_size)."""
        cu, seq_idx, last, pos = [], [], [], 0
        for i, done in enumerate(computed):
            new = qsl[i + 1] - qsl[i]
            lens = [min(-(-done // chunk_size) * chunk_size - done, new)] if done % chunk_size else []
            new -= sum(lens)
            lens += [min(chunk_size, new - j) for j in range(0, new, chunk_size)]
            for n in lens:
                seq_idx.append(i)
                cu.append(pos)
                pos += n
            last.append(len(cu) - 1)
        return cu + [pos], seq_idx, last

    def _state_fields(md_cls, B, q_len, ctx):
        """The metadata's fields for B sequences of q_len new tokens after ctx cached ones: those of vLLM's mamba
        metadata (BaseMambaAttentionMetadataBuilder), of its linear attention's (LinearAttentionMetadataBuilder.build)
        and of its gated delta net's (GDNAttentionMetadataBuilder.build, no speculative decodes: every sequence is a
        'non-spec' one; chunk_indices/chunk_offsets left to the chunk kernels, which derive them from the query start
        locations when None)."""
        qsl = torch.arange(0, B * q_len + 1, q_len, device=device, dtype=torch.int32)
        decode = q_len == 1 and ctx > 0
        n_d, n_p = (B, 0) if decode else (0, B)
        slots = torch.arange(1, B + 1, device=device, dtype=torch.int32).unsqueeze(-1)
        idx_d, idx_p = torch.split(slots, [n_d, n_p], dim=0)
        qsl_cpu = torch.arange(0, n_p * q_len + 1, q_len, dtype=torch.int32)
        f = dict(num_prefills=n_p, num_prefill_tokens=n_p * q_len, num_decodes=n_d, num_decode_tokens=n_d * q_len,
                 num_reqs=B, state_indices_tensor_d=idx_d[:, :1], state_indices_tensor_p=idx_p[:, 0],
                 has_initial_states_p=None, query_start_loc_p=None, num_computed_tokens_p=None,
                 query_start_loc_d=None, num_accepted_tokens=None, block_idx_last_scheduled_token=None,
                 block_idx_first_scheduled_token_p=None, block_idx_last_computed_token=None,
                 block_idx_last_scheduled_token_prev_step=None,
                 seq_lens=torch.full((B,), ctx + q_len, device=device, dtype=torch.int32),
                 num_spec_decodes=0, num_spec_decode_tokens=0, num_actual_tokens=B * q_len,
                 non_spec_query_start_loc=qsl, non_spec_state_indices_tensor=slots[:, 0], has_initial_state=None,
                 query_start_loc=qsl, state_indices_tensor=slots[:, 0])
        if n_p:
            conv_md = G.get(RN["compute_causal_conv1d_metadata"] or "")
            if conv_md is None:
                raise RuntimeError("invocation_example: this bundle lacks vLLM's compute_causal_conv1d_metadata "
                                   "(A1 did not reach it): the prefill metadata of the conv kernel cannot be built")
            initial = torch.full((n_p,), ctx > 0, device=device, dtype=torch.bool)
            f.update(query_start_loc_p=qsl_cpu.to(device), has_initial_states_p=initial, has_initial_state=initial,
                     prefill_query_start_loc=qsl_cpu.to(device), prefill_state_indices=idx_p[:, 0],
                     prefill_has_initial_state=initial)
            f["nums_dict"], f["batch_ptr"], f["token_chunk_offset_ptr"] = conv_md(qsl_cpu, device=device)
        accepted = inspect.signature(md_cls).parameters
        if n_p and "chunk_size" in accepted:  # a chunked scan (Mamba2): vLLM's Mamba2AttentionMetadataBuilder.build
            chunk_size = vllm_config.model_config.get_mamba_chunk_size()
            cu, seq_idx, last = _chunks(chunk_size, [ctx] * n_p, qsl_cpu.tolist())
            f.update(chunk_size=chunk_size, prep_initial_states=ctx > 0,
                     cu_chunk_seqlen_p=torch.tensor(cu, device=device, dtype=torch.int32),
                     seq_idx_p=torch.tensor(seq_idx, device=device, dtype=torch.int32),
                     last_chunk_indices_p=torch.tensor(last, device=device, dtype=torch.int32))
        return f

    def _bind_recurrent_state(mods, B, q_len, ctx):
        """Each module's state (one slot per sequence, random where the sequence has context, as after its
        prefill) bound to its `kv_cache`; returns {{prefix: metadata}} for the forward context."""
        out = {{}}
        ssu = RN["_mamba_ssu_backend"]
        if mods and ssu and G.get(ssu) is None:
            # vLLM's model runner sets the process's selective-state-update backend once (initialize_mamba_ssu_backend,
            # MambaConfig's default: Triton); it stays set, as in vLLM
            backend = G.get(RN["TritonSSUBackend"] or "")
            if backend is None:
                raise RuntimeError("invocation_example: this bundle lacks vLLM's TritonSSUBackend (A1 did not reach "
                                   "it): the selective-state-update backend cannot be initialized")
            vllm_config.mamba_config = _StandIn("vllm_config.mamba_config", enable_stochastic_rounding=False)
            G[ssu] = backend(vllm_config.mamba_config)
        for name, m, md_cls in mods:
            state = []
            for shape, dt in zip(m.get_state_shape(), m.get_state_dtype()):
                t = torch.zeros(B + 1, *shape, device=device, dtype=dt)
                if ctx > 0:
                    t[1:] = torch.randn(B, *shape, generator=gen, device=device).mul_(0.1).to(dt)
                state.append(t)
            m.kv_cache = tuple(state)
            fields = _state_fields(md_cls, B, q_len, ctx)
            params = inspect.signature(md_cls).parameters
            lacking = [p for p, prm in params.items() if p not in fields and prm.default is inspect.Parameter.empty]
            if lacking:
                raise NotImplementedError(f"invocation_example: {{md_cls.__name__}} needs {{lacking}}, which the "
                                          "recurrent-state example does not fill (a newer vLLM metadata field)")
            out[m.prefix] = md_cls(**{{k: v for k, v in fields.items() if k in params}})
        return out

'''
