"""A6: the decoder-layer example of an MLA-only layer (vLLM's MLAAttention, not its Attention), decode only.

A1 gives such a layer the TRITON_MLA backend (graph/__init__.py; vLLM's other backends refuse use_mla). vLLM 0.26.0's
MLAAttention.__init__ also selects an MLA prefill backend (get_mla_prefill_backend); on SM90 the only one is FLASH_ATTN,
flash_attn_varlen_func of vLLM's FlashAttention extension (vllm_flash_attn, not in the sdist), so the selector raises
ValueError and the layer cannot be built. Prefill (forward_mha) runs on that backend only; decode (forward_mqa: the
query absorbed into the latent, TRITON_MLA's decode_attention_fwd over the latent cache, then W_UV) never calls it.
So the example is decode only: it stands in for the selector while the layer is built (a prefill backend that refuses
to run), fills a latent KV cache [blocks, block_size, kv_lora_rank + qk_rope_head_dim] with random values, and fills
MLACommonMetadata with its decode part as TritonMLAMetadataBuilder.build does for B requests of one new token.
"""

_ATTN = "vllm/model_executor/layers/attention/mla_attention.py"

ROLES = {
    "MLACommonMetadata": (_ATTN, "MLACommonMetadata"),
    "MLACommonDecodeMetadata": (_ATTN, "MLACommonDecodeMetadata"),
    "MLAAttention": (_ATTN, "MLAAttention"),
    "get_mla_prefill_backend": ("vllm/v1/attention/backends/mla/prefill/selector.py", "get_mla_prefill_backend"),
}
REQUIRED = list(ROLES)
ATTENTION_ROLE = "MLAAttention"
NOTE = ("decode only (MLA, attention backend TRITON_MLA): every request has one new token over a random latent KV "
        "cache; the prefill path needs vLLM's FlashAttention extension (the only MLA prefill backend on SM90 in vLLM "
        "0.26.0), so the example stands in for the prefill backend selector while the layer is built")

# First, before anything is built: decode only.
CHECK = '''\
    if workload != "decode" or (tokens or 1) != 1:
        raise NotImplementedError(
            f"invocation_example: {symbol} is decode only (MLA attention, TRITON_MLA): workload={{workload!r}}, "
            f"tokens={{tokens!r}} needs an MLA prefill backend, and vLLM 0.26.0 has only FLASH_ATTN on SM90 "
            "(vllm_flash_attn, not in the sdist): pass workload='decode' and tokens=None or 1")
    print("invocation_example: {symbol}: decode only (MLA attention, TRITON_MLA): one new token per request over "
          "a random latent KV cache; prefill needs vLLM's FlashAttention extension", file=sys.stderr)
'''

# Before step 3 (the build): the prefill backend selector stood in for until the example returns.
SETUP = '''\
    class _DecodeOnlyPrefill:
        """The MLA prefill backend the layer holds: decode (forward_mqa) never calls it."""

        def __init__(self, **_):
            pass

        def supports_quant_output(self, quant_key):
            return False

        def run_prefill_new_tokens(self, *a, **k):
            raise NotImplementedError("invocation_example: decode only: no MLA prefill backend runs here "
                                      "(vLLM 0.26.0 has only FLASH_ATTN on SM90, vllm_flash_attn)")

        run_prefill_context_chunk = run_prefill_new_tokens

    _selector = N["get_mla_prefill_backend"]
    _saved_selector = G[_selector]
    G[_selector] = lambda *a, **k: _DecodeOnlyPrefill
    _restore_state = _install(vllm_config)

    def restore():
        G[_selector] = _saved_selector
        _restore_state()

'''

# Step 5: the latent cache, vLLM's MLA get_kv_cache_shape (blocks, block_size, head_size), one "head".
KV_CACHE = '''\
                for _, a in attn_layers:
                    a.kv_cache = torch.empty(num_blocks, block_size, Dh, device=device, dtype=dtype)
                    a.kv_cache.normal_(0.0, 1.0, generator=gen)
'''
KV_WIDTH = "Dh  # the latent: kv_lora_rank + qk_rope_head_dim per token"

SNIPPET = '''\
            # 6. The attention metadata (TRITON_MLA): decode only, MLACommonMetadata and its decode part, as
            # TritonMLAMetadataBuilder.build fills them for B requests of one new token (no prefill part).
            with _Step("building the attention metadata"):
                seq_lens = torch.full((B,), seq_len, device=device, dtype=torch.int32)
                attn_metadata = _get("MLACommonMetadata")(
                    num_reqs=B, max_query_len=q_len, max_seq_len=seq_len, num_actual_tokens=T,
                    query_start_loc=torch.arange(0, T + 1, q_len, device=device, dtype=torch.int32),
                    slot_mapping=slots, num_decodes=B, num_decode_tokens=T, num_prefills=0, head_dim=Dh,
                    prefill=None, decode=_get("MLACommonDecodeMetadata")(block_table=block_table, seq_lens=seq_lens,
                                                                         dcp_tot_seq_lens=None))
'''
