"""A6: step 6 of the decoder-layer example, the attention metadata, per variant `attention_backend`.

Each backend has the names the example looks up in the bundle (`ROLES`, role -> (file, name), resolved by
state.py like its own state), the roles without which its example cannot run (`REQUIRED`), and the code of step 6
(`_SNIPPETS`), which sets `attn_metadata` for B sequences of q_len new tokens after ctx cached ones (block_table,
slots, seq_len, num_blocks and the attention layers are the example's). The extra roots that put these names in
the bundle are A1's data (common/example_roots.py BACKEND_ROOTS).
"""

from bundler_lib.common.example_roots import DEFAULT_BACKEND, MLA_ATTENTION, MLA_BACKEND, mla_only
from bundler_lib.example import mla

_TRITON = "vllm/v1/attention/backends/triton_attn.py"
_MLA = "vllm/model_executor/layers/attention/mla_attention.py::MLAAttention"

_TRITON_ROLES = {
    "TritonAttentionMetadata": (_TRITON, "TritonAttentionMetadata"),
    "MIN_LAUNCH_GRID_SIZE_2D": (_TRITON, "MIN_LAUNCH_GRID_SIZE_2D"),
    "NUM_PAR_SOFTMAX_SEGMENTS": (_TRITON, "NUM_PAR_SOFTMAX_SEGMENTS"),
}
# TRITON_ATTN_DIFFKV (V heads of their own size, MiMo-V2) is TRITON_ATTN's metadata with V-sized softmax segments.
ROLES = {
    "TRITON_ATTN": _TRITON_ROLES,
    "TRITON_ATTN_DIFFKV": _TRITON_ROLES,
    "FLEX_ATTENTION": {
        "CommonAttentionMetadata": ("vllm/v1/attention/backend.py", "CommonAttentionMetadata"),
    },
    MLA_BACKEND: mla.ROLES,
}

# TRITON_ATTN's metadata falls back on a stand-in with the same fields; FLEX_ATTENTION's builder needs the real one.
REQUIRED = {"TRITON_ATTN": [], "TRITON_ATTN_DIFFKV": [], "FLEX_ATTENTION": ["CommonAttentionMetadata"],
            MLA_BACKEND: mla.REQUIRED}

_TRITON_SNIPPET = '''\
            # 6. The attention metadata (@BACKEND@): the fields of its metadata class, filled by hand.
            min_grid = _get("MIN_LAUNCH_GRID_SIZE_2D") or 128
            segments = _get("NUM_PAR_SOFTMAX_SEGMENTS") or 16
            seq_threshold_3D = max(1, min_grid // H_kv)
            dh_pad = 1 << (Dv - 1).bit_length()  # the softmax segments hold outputs: V-sized
            md_fields = dict(
                num_actual_tokens=T, max_query_len=q_len,
                query_start_loc=torch.arange(0, T + 1, q_len, device=device, dtype=torch.int32),
                max_seq_len=seq_len, seq_lens=torch.full((B,), seq_len, device=device, dtype=torch.int32),
                block_table=block_table, slot_mapping=slots,
                seq_threshold_3D=seq_threshold_3D, num_par_softmax_segments=segments,
                softmax_segm_output=torch.empty(seq_threshold_3D, H_q, segments, dh_pad, device=device,
                                                dtype=torch.float32),
                softmax_segm_max=torch.empty(seq_threshold_3D, H_q, segments, device=device, dtype=torch.float32),
                softmax_segm_expsum=torch.empty(seq_threshold_3D, H_q, segments, device=device, dtype=torch.float32),
                causal=True, use_cascade=False, common_prefix_len=0, cu_prefix_query_lens=None, prefix_kv_lens=None,
                suffix_kv_lens=None, scheduler_metadata=None, prefix_scheduler_metadata=None, mm_prefix_range=None,
                mm_prefix_range_tensor=None, rswa_prefix_lens=None, rswa_window=None)
            md_cls = _get("TritonAttentionMetadata")
            with _Step("building the attention metadata"):
                if md_cls is not None:
                    # fields differ across vLLM versions (0.33.0 dropped use_cascade): pass those it declares
                    accepted = inspect.signature(md_cls).parameters
                    attn_metadata = md_cls(**{k: v for k, v in md_fields.items() if k in accepted})
                else:
                    attn_metadata = _StandIn("attn_metadata", **md_fields)
'''

_SNIPPETS = {
    MLA_BACKEND: mla.SNIPPET,
    "TRITON_ATTN": _TRITON_SNIPPET.replace("@BACKEND@", "TRITON_ATTN"),
    "TRITON_ATTN_DIFFKV": _TRITON_SNIPPET.replace("@BACKEND@", "TRITON_ATTN_DIFFKV"),
    "FLEX_ATTENTION": '''\
            # 6. The attention metadata (FLEX_ATTENTION): the backend's own builder, as vLLM's model runner calls it,
            # over the batch's CommonAttentionMetadata; the builder also builds the block mask.
            with _Step("building the attention metadata"):
                # what the engine sets once it has sized the KV cache and the batch (the builder's buffers)
                vllm_config.cache_config.num_gpu_blocks = num_blocks
                sched = vllm_config.scheduler_config
                sched.max_num_seqs = max(sched.max_num_seqs, B)
                sched.max_num_batched_tokens = max(sched.max_num_batched_tokens, T)
                qsl = torch.arange(0, T + 1, q_len, dtype=torch.int32)
                common = _get("CommonAttentionMetadata")(
                    query_start_loc=qsl.to(device), query_start_loc_cpu=qsl,
                    seq_lens=torch.full((B,), seq_len, device=device, dtype=torch.int32), num_reqs=B,
                    num_actual_tokens=T, max_query_len=q_len, max_seq_len=seq_len, block_table_tensor=block_table,
                    slot_mapping=slots, causal=True)
                builder = attn.attn_backend.get_builder_cls()(attn.get_kv_cache_spec(vllm_config), attn_names,
                                                              vllm_config, device)
                attn_metadata = builder.build(common_prefix_len=0, common_attn_metadata=common)
''',
}


def backend(variant: dict) -> str:
    """The variant's attention backend (the default for a graph written before the choice existed)."""
    return variant.get("attention_backend", DEFAULT_BACKEND)


def roles(variant: dict) -> dict[str, tuple[str, str]]:
    return ROLES[backend(variant)]


def required(variant: dict) -> list[str]:
    return REQUIRED[backend(variant)]


def snippet(variant: dict) -> str:
    return _SNIPPETS[backend(variant)]


def unsupported(graph: dict) -> list[str]:
    """The attention the variant's backend does not run: an MLA-only layer (vLLM's MLAAttention and not its
    `Attention`) with another backend than TRITON_MLA (A1 gives it TRITON_MLA), or TRITON_MLA for a layer without
    MLAAttention. A layer reaching both (DeepseekV2's) takes its standard attention under a standard backend (the
    example's use_mla=False, as with VLLM_MLA_DISABLE) and its MLA attention under TRITON_MLA (use_mla=True)."""
    ids = {n.get("id") for n in graph.get("python_nodes", [])}
    b = backend(graph.get("variant") or {})
    if b == MLA_BACKEND and MLA_ATTENTION not in ids:
        return [f"attention backend {MLA_BACKEND} for a layer without MLA attention (vLLM's MLAAttention): build it "
                "with a standard backend (the variant's attention_backend)"]
    if b != MLA_BACKEND and mla_only(ids, graph.get("edges") or []):
        return [f"MLA attention (vLLM's MLAAttention, no standard-attention path) with attention backend {b}, "
                f"which refuses use_mla: rebuild the graph (A1 gives an MLA-only layer {MLA_BACKEND})"]
    return []


def is_mla(variant: dict) -> bool:
    return backend(variant) == MLA_BACKEND
