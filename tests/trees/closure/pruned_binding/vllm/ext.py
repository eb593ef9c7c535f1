from vllm.helpers import fallback, literal_helper
from vllm.platforms import current_platform

FAST_ENABLED = False
if current_platform.is_rocm():
    from vllm.rocm_ext import fast   # compiled code the tree lacks
    FAST_ENABLED = True

PLAIN = False   # bound once to a literal: the variant decides nothing about it


def run(x):
    if FAST_ENABLED and x > 0:
        return fast(x)
    if PLAIN:
        return literal_helper(x)
    return fallback(x)
