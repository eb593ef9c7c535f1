import torch
import torch.distributed

from vllm.torch_utils import direct_register_custom_op
from vllm.utils.import_utils import resolve_obj_by_qualname

_groups = {}


def all_reduce(x, group_name):
    return _groups[group_name].communicator.all_reduce(x)


# registered after `import torch.distributed`, which binds `torch` too (vLLM's parallel_state.py)
direct_register_custom_op(op_name="all_reduce", op_func=all_reduce)


class Group:
    def __init__(self, world_size):
        cls = resolve_obj_by_qualname("vllm.distributed.device_communicators.cuda_communicator.CudaCommunicator")
        self.communicator = cls(world_size)
        _groups["g"] = self

    def all_reduce(self, x):
        return torch.ops.vllm.all_reduce(x, group_name="g")


def target(world_size):
    return Group(world_size).all_reduce(3)
