import torch

from vllm.parallel import get_tensor_model_parallel_world_size, get_tp_group

_FUSED_AR = getattr(torch.ops, "nothing_here", None)


def _all_reduce(x):
    return torch.ops._C.all_reduce(x)


def make_workspace():
    return torch.ops._C.make_workspace()


class NormTP:
    def __init__(self):
        self.tp_world = get_tensor_model_parallel_world_size()
        self.tp_group = get_tp_group()
        self.workspace = None
        if _FUSED_AR is not None and self.tp_world > 1:
            self.workspace = make_workspace()

    def forward(self, x):
        if self.tp_group.world_size > 1:
            x = _all_reduce(x)
        if get_tensor_model_parallel_world_size() == 1:
            return x + 1
        return torch.ops._C.fused_allreduce_norm(x)


def target():
    return NormTP().forward(1)
