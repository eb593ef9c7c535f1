import torch

from vllm.registry import direct_register_custom_op, register


NameType = str


def my_op_impl(x: torch.Tensor, name: NameType = "") -> torch.Tensor:
    return x * 3


def unused_impl(x: torch.Tensor) -> torch.Tensor:
    return x


direct_register_custom_op(op_name="my_op", op_func=my_op_impl)


@register("target")
class Target(torch.nn.Module):
    def forward(self, x):
        torch.ops._C.some_kernel(x)
        return torch.ops.vllm.my_op(x)
