import torch

from vllm.torch_utils import direct_register_custom_op, eager_bypass_custom_op


def scaled_impl(x: torch.Tensor, scale: float) -> torch.Tensor:
    return x * scale


def scaled_fake(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(x)


direct_register_custom_op(op_name="scaled", op_func=scaled_impl, fake_impl=scaled_fake)
_scaled_op = eager_bypass_custom_op("scaled", scaled_impl)


def unused_impl(x: torch.Tensor) -> torch.Tensor:
    return x


direct_register_custom_op(op_name="unused", op_func=unused_impl)
_SUFFIX = "!"


def _tag(name, suffix):
    return name + suffix


# a call given an op's name and a name that is not that op's function: not a lookup of the op
_label = _tag("unused", _SUFFIX)


def target(x):
    return _scaled_op(x, 2.0) + len(_label)
