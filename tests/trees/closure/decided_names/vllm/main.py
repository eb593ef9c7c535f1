from typing import overload

from vllm.consts import IS_ROCM, REBOUND
from vllm.custom_op import CustomOp
from vllm.helpers import rebound_helper, rocm_helper, shadow_helper


class MyOp(CustomOp):
    def forward_native(self, x):
        return x

    def forward_cuda(self, x):
        if IS_ROCM:
            return rocm_helper(x)
        if REBOUND:
            return rebound_helper(x)
        return x + 1

    @overload
    def scale(self, x: int) -> int: ...

    @overload
    def scale(self, x: float) -> float: ...

    def scale(self, x):
        return x * 2


@overload
def stub_fn(x: int) -> int: ...


def stub_fn(x):
    return x + 3


def shadowed(IS_ROCM=True):
    if IS_ROCM:
        return shadow_helper()
    return ""


def target():
    op = MyOp()
    return op(1), op.scale(2), stub_fn(3), shadowed()
