from vllm.ops import fused_or_plain, mixed, required_lookup


def target(x):
    return fused_or_plain(x) + required_lookup(x) + mixed(x)
