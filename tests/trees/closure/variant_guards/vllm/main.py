import vllm.envs as envs
from vllm.helpers import (AttentionType, encoder_helper, fast_helper, fp8_helper, from_env_helper,
                          is_quantized_kv_cache, kv_fp8_helper, lora_helper, mode_auto_helper, nvfp4_helper,
                          plain_helper)
from vllm.utils.import_utils import resolve_obj_by_qualname
from vllm.v1.attention.backends.registry import AttentionBackendEnum


def target(kv_cache_dtype="auto", attn_type=AttentionType.DECODER, quant_dtype=None, use_fp8_w8a8=False,
           is_lora_enabled=False, backend=AttentionBackendEnum.TRITON_ATTN):
    out = plain_helper()
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
    return out, resolve_obj_by_qualname(backend.value).name
