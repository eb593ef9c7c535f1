import torch

vllm_lib = torch.library.Library("vllm_op_by_name_fixture", "FRAGMENT")


def direct_register_custom_op(op_name, op_func, mutates_args=(), fake_impl=None, target_lib=None):
    lib = target_lib or vllm_lib
    lib.define(op_name + torch.library.infer_schema(op_func, mutates_args=mutates_args))
    lib.impl(op_name, op_func, "CompositeExplicitAutograd")
    if fake_impl is not None:
        lib._register_fake(op_name, fake_impl)


# vLLM >= 0.34's: the op looked up by its name at import time
def eager_bypass_custom_op(op_name, op_func, target_lib=None):
    op = getattr(getattr(torch.ops, (target_lib or vllm_lib).ns), op_name)

    def wrapper(*args, **kwargs):
        if torch.compiler.is_compiling():
            return op(*args, **kwargs)
        return op_func(*args, **kwargs)

    return wrapper
