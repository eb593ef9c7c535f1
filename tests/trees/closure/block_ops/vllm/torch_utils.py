import torch

_lib = torch.library.Library("vllm", "FRAGMENT")


def direct_register_custom_op(op_name, op_func, mutates_args=None, fake_impl=None):
    pass
