import torch


def fancy_available():
    # vLLM 0.34's fused_mqa_topk_available(): the op is used only where the build has it
    return hasattr(torch.ops._C, "fancy_op")


def fancy(x):
    return torch.ops._C.fancy_op(x)


def plain(x):
    return torch.ops._C.plain_op(x)


def target(x):
    if fancy_available():
        return fancy(x)
    return plain(x)
