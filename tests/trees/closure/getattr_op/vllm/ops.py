import torch

# looked up by name, with a default: optional
_FUSED_NORM = getattr(torch.ops._C, "fused_norm", None)


def fused_or_plain(x):
    if _FUSED_NORM is not None:
        return _FUSED_NORM(x)
    return torch.ops._C.rms_norm(x)


def required_lookup(x):
    # looked up by name without a default: required, as a direct reference is
    return getattr(torch.ops._C, "silu_and_mul")(x)


def mixed(x):
    # one lookup with a default and one direct call: required
    op = getattr(torch.ops._moe_C, "topk_softmax", None)
    return op(x) if op is not None else torch.ops._moe_C.topk_softmax(x)
