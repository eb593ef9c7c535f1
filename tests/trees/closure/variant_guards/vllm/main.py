import vllm.envs as envs
from vllm.helpers import (AttentionType, encoder_helper, eplb_helper, fast_helper, flex_helper, fp8_helper,
                          from_env_helper, has_kv_transfer_group, is_quantized_kv_cache, kv_fp8_helper,
                          kv_transfer_helper, lora_helper, mode_auto_helper, nvfp4_helper, plain_helper)
from vllm.utils.import_utils import resolve_obj_by_qualname
from vllm.v1.attention.backends.registry import AttentionBackendEnum


class Router:
    """On one GPU without LoRA or KV transfer: no EPLB state, no LoRA context, no KV connector."""

    def __init__(self, eplb_state=None):
        self.eplb_state = eplb_state
        self._lora_context = None

    def route(self, vllm_config):
        out = ""
        if self.eplb_state is not None:
            out += eplb_helper()
        lora_context = self._lora_context
        if lora_context is not None:
            out += lora_helper()
        if vllm_config.kv_transfer_config is not None or has_kv_transfer_group():
            out += kv_transfer_helper()
        return out


class EncoderOnly:
    """Checks an attention type only when its caller gives one (vLLM's EncoderOnlyAttention)."""

    def __init__(self, attn_type=None):
        if attn_type is not None:
            assert attn_type == AttentionType.ENCODER_ONLY, "only encoder-only attention"
        self.attn_type = AttentionType.ENCODER_ONLY


def target(kv_cache_dtype="auto", attn_type=AttentionType.DECODER, quant_dtype=None, use_fp8_w8a8=False,
           is_lora_enabled=False, backend=AttentionBackendEnum.TRITON_ATTN):
    out = plain_helper() + Router().route(None)
    EncoderOnly()
    if envs.VLLM_FAST_PATH:
        out += fast_helper()
    if envs.VLLM_MODE == "auto":
        out += mode_auto_helper()
    if envs.VLLM_FROM_ENV == "1":
        out += from_env_helper()
    if kv_cache_dtype.startswith("fp8") or is_quantized_kv_cache(kv_cache_dtype):
        out += kv_fp8_helper()
    if use_fp8_w8a8:
        out += fp8_helper()
    elif quant_dtype == "nvfp4":
        out += nvfp4_helper()
    if attn_type in (AttentionType.ENCODER_ONLY,):
        out += encoder_helper()
    if is_lora_enabled:
        out += lora_helper()
    if backend == AttentionBackendEnum.FLEX_ATTENTION:  # decided by the variant's attention_backend
        out += flex_helper()
    return out, resolve_obj_by_qualname(backend.value).name
