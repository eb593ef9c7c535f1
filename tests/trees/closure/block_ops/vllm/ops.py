# SPDX-License-Identifier: Apache-2.0
import importlib.util

import torch

from vllm.torch_utils import direct_register_custom_op


def has_fast():
    return importlib.util.find_spec("fast_pkg") is not None


# as vLLM's utils/flashinfer.py: one block registers several ops; the closure calls one of them
if has_fast():

    def _fast_concat(x):
        return x + 1

    def _fast_concat_fake(x):
        return x

    direct_register_custom_op(op_name="fast_concat", op_func=_fast_concat, fake_impl=_fast_concat_fake)

    @torch.library.custom_op("vllm::fast_mm", mutates_args=[])
    def fast_mm(x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.library.register_fake("vllm::fast_mm")
    def fast_mm_fake(x):
        return x
