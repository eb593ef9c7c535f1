def fast_path(x):
    from vllm.vllm_flash_attn.layers.rotary import apply_rotary_emb as rot

    return rot(x)


def rocm_path(x):
    # another platform's module, imported where it is used (as vllm/_aiter_ops.py does)
    from vllm.platforms.rocm import get_cdna_version

    return x * get_cdna_version()


def target(x, fast=False, rocm=False):
    if rocm:
        return rocm_path(x)
    return fast_path(x) if fast else x + 1
