import inspect

import torch


def support_torch_compile(cls=None, *, dynamic_arg_dims=None, enable_if=None):
    # vLLM's inference (vllm/compilation/decorators.py): from the annotation objects of forward
    def wrap(cls):
        dims = dynamic_arg_dims
        if dims is None:
            dims = {k: 0 for k, v in inspect.signature(cls.forward).parameters.items()
                    if v.annotation in [torch.Tensor, torch.Tensor | None]}
        if not dims:
            raise ValueError(f"No dynamic dimensions found in the forward method of {cls}.")
        cls.dims = dims
        return cls
    return wrap(cls) if cls is not None else wrap
