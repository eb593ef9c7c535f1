import torch
import triton
import triton.language as tl

from vllm.consts import BLOCK
from vllm.kern2 import _kernel2

SCALE: tl.constexpr = 2


@triton.jit
def _helper(x):
    return x * SCALE


@triton.autotune(configs=[triton.Config({"BLOCK_SIZE": 16}, num_warps=4)], key=["n"])
@triton.jit
def _kernel(x_ptr, n, BLOCK_SIZE: tl.constexpr):
    offs = tl.arange(0, BLOCK_SIZE)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(x_ptr + offs, _helper(x), mask=offs < n)


def target(x: torch.Tensor) -> torch.Tensor:
    _kernel[(1,)](x, x.numel())
    _kernel2[(1,)](x, BLOCK_SIZE=16)
    return x + BLOCK
