from .norm import gelu, rms_norm, scale
