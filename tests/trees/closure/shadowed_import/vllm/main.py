def target(x, use_other=False):
    if use_other:
        from other_pkg import attn_func
    else:
        from vllm.fa_utils import attn_func
    return attn_func(x)
