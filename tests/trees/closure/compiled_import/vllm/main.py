def fast_path(x):
    from vllm.vllm_flash_attn.layers.rotary import apply_rotary_emb as rot

    return rot(x)


def target(x, fast=False):
    return fast_path(x) if fast else x + 1
