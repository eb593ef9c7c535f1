"""A6: step 6 of the decoder-layer example, the attention metadata, per variant `attention_backend`.

Each backend has the names the example looks up in the bundle (`ROLES`, role -> (file, name), resolved by
state.py like its own state), the roles without which its example cannot run (`REQUIRED`), and the code of step 6
(`_SNIPPETS`), which sets `attn_metadata` for B sequences of q_len new tokens after ctx cached ones (block_table,
slots, seq_len, num_blocks and the attention layers are the example's). A backend whose KV cache is not the others'
(NHD, K and V heads side by side) also has the code of step 5 (`_KV_CACHES`) and the name of the context as the
example's readers take it (`_KV_INPUTS`). The extra roots that put these names in
the bundle are A1's data (common/example_roots.py BACKEND_ROOTS).
"""

from bundler_lib.common.example_roots import DEFAULT_BACKEND, MLA_ATTENTION, MLA_BACKEND, mla_only
from bundler_lib.example import mla
from bundler_lib.variant import world_size

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
    "ROCM_ATTN": {
        "CommonAttentionMetadata": ("vllm/v1/attention/backend.py", "CommonAttentionMetadata"),
        "PagedAttention": ("vllm/v1/attention/ops/paged_attn.py", "PagedAttention"),
    },
    MLA_BACKEND: mla.ROLES,
}

# TRITON_ATTN's metadata falls back on a stand-in with the same fields; the builders (FLEX_ATTENTION's, ROCM_ATTN's)
# need the real one, ROCM_ATTN's cache its PagedAttention views.
REQUIRED = {"TRITON_ATTN": [], "TRITON_ATTN_DIFFKV": [], "FLEX_ATTENTION": ["CommonAttentionMetadata"],
            "ROCM_ATTN": ["CommonAttentionMetadata", "PagedAttention"], MLA_BACKEND: mla.REQUIRED}

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
                causal=causal, use_cascade=False, common_prefix_len=0, cu_prefix_query_lens=None, prefix_kv_lens=None,
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

_BUILDER_SNIPPET = '''\
            # 6. The attention metadata (@BACKEND@): the backend's own builder, as vLLM's model runner calls it,
            # over the batch's CommonAttentionMetadata@NOTE@.
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
                    slot_mapping=slots, causal=causal)
                builder = attn.attn_backend.get_builder_cls()(attn.get_kv_cache_spec(vllm_config), attn_names,
                                                              vllm_config, device)
                attn_metadata = builder.build(common_prefix_len=0, common_attn_metadata=common)
'''

_SNIPPETS = {
    MLA_BACKEND: mla.SNIPPET,
    "TRITON_ATTN": _TRITON_SNIPPET.replace("@BACKEND@", "TRITON_ATTN"),
    "TRITON_ATTN_DIFFKV": _TRITON_SNIPPET.replace("@BACKEND@", "TRITON_ATTN_DIFFKV"),
    "FLEX_ATTENTION": _BUILDER_SNIPPET.replace("@BACKEND@", "FLEX_ATTENTION").replace(
        "@NOTE@", "; the builder also builds the block mask"),
    "ROCM_ATTN": _BUILDER_SNIPPET.replace("@BACKEND@", "ROCM_ATTN").replace("@NOTE@", ""),
}


# ROCM_ATTN's cache (step 5): get_kv_cache_shape's (2, blocks, block_size, H_kv, Dh), which its
# PagedAttention.split_kv_cache views as K [blocks, H_kv, Dh/x, block_size, x] and V [blocks, H_kv, Dh, block_size]
# (x: 16 bytes of elements), filled from a random context in the other backends' layout; `kv_logical` keeps that
# layout for the example's readers (a copy of the context: the layer reads and writes its own cache).
_PAGED_KV_CACHE = '''\
                split, kv_logical = _get("PagedAttention").split_kv_cache, {}
                for _, a in attn_layers:
                    logical = torch.empty(num_blocks, block_size, H_kv, Dh + Dv, device=device, dtype=dtype)
                    logical.normal_(0.0, 1.0, generator=gen)
                    kv_logical[a] = logical.permute(0, 2, 1, 3)
                    a.kv_cache = torch.empty(a.attn_backend.get_kv_cache_shape(num_blocks, block_size, H_kv, Dh),
                                             device=device, dtype=dtype)
                    k_cache, v_cache = split(a.kv_cache, H_kv, Dh)
                    pack = k_cache.shape[-1]
                    k_cache.copy_(kv_logical[a][..., :Dh].unflatten(-1, (Dh // pack, pack)).permute(0, 1, 3, 2, 4))
                    v_cache.copy_(kv_logical[a][..., Dh:].transpose(2, 3))
'''
_KV_CACHES = {"ROCM_ATTN": _PAGED_KV_CACHE}
_KV_INPUTS = {"ROCM_ATTN": "kv_logical[attn]"}


def kv_cache(variant: dict, default: str) -> str:
    """Step 5 for the variant's backend: its own (`_KV_CACHES`), else `default` (NHD)."""
    return _KV_CACHES.get(backend(variant), default)


def kv_input(variant: dict) -> str:
    """The expression of the context the example hands its readers, [blocks, H_kv, block_size, Dh + Dv]."""
    return _KV_INPUTS.get(backend(variant), "attn.kv_cache")


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
    example's use_mla=False, as with VLLM_MLA_DISABLE) and its MLA attention under TRITON_MLA (use_mla=True). A
    backend with a KV cache of its own layout (`_KV_CACHES`) runs on one GPU only: the multi-GPU example fills each
    rank's heads of the common layout (distributed.py)."""
    ids = {n.get("id") for n in graph.get("python_nodes", [])}
    b = backend(graph.get("variant") or {})
    if b in _KV_CACHES and world_size(graph.get("variant") or {}) > 1:
        return [f"attention backend {b} on several GPUs: its KV cache has a layout of its own, whose heads the "
                "multi-GPU example does not fill per rank; build it with tp=1 and ep=1, or another backend"]
    if b == MLA_BACKEND and MLA_ATTENTION not in ids:
        return [f"attention backend {MLA_BACKEND} for a layer without MLA attention (vLLM's MLAAttention): build it "
                "with a standard backend (the variant's attention_backend)"]
    if b != MLA_BACKEND and mla_only(ids, graph.get("edges") or []):
        return [f"MLA attention (vLLM's MLAAttention, no standard-attention path) with attention backend {b}, "
                f"which refuses use_mla: rebuild the graph (A1 gives an MLA-only layer {MLA_BACKEND})"]
    return []


def is_mla(variant: dict) -> bool:
    return backend(variant) == MLA_BACKEND


# vLLM runs attention of these types over each sequence's own tokens, keeping no KV cache (no context to decode over)
CACHELESS_ATTN_TYPES = ("encoder", "encoder_only")


def is_cacheless(variant: dict) -> bool:
    return (variant or {}).get("attn_type", "decoder") in CACHELESS_ATTN_TYPES
