from enum import Enum


class AttentionType(str, Enum):
    DECODER = "decoder"
    ENCODER_ONLY = "encoder_only"


def plain_helper():
    return "plain"


def fast_helper():
    return "fast"


def mode_auto_helper():
    return "+auto"


def from_env_helper():
    return "+env"


def kv_fp8_helper():
    return "+kvfp8"


def fp8_helper():
    return "+fp8"


def nvfp4_helper():
    return "+nvfp4"


def encoder_helper():
    return "+encoder"


def lora_helper():
    return "+lora"


def is_quantized_kv_cache(kv_cache_dtype):
    return kv_cache_dtype != "auto"


def accel_helper():
    return "+accel"


def fused_helper():
    return "+fused"


def auto_only_helper():
    return "+auto"


def wrapped_helper():
    return "+wrapped"


def runtime_helper():
    return "+runtime"


def eplb_helper():
    return "+eplb"


def kv_transfer_helper():
    return "+kv_transfer"


_KV_CONNECTOR_AGENT = None


def has_kv_transfer_group():
    return _KV_CONNECTOR_AGENT is not None


def flex_helper():
    return "+flex"
