import torch

from vllm.platforms import PlatformEnum, current_platform


class CudaKernel:
    def apply(self, x):
        return x + 1


class CpuKernel:
    def apply(self, x):
        return torch.ops._C.fp8_scaled_mm_cpu(x)


class OotKernel:
    def apply(self, x):
        return x + 2


# in priority order, per platform
_POSSIBLE_KERNELS: dict[PlatformEnum, list] = {
    PlatformEnum.CUDA: [CudaKernel],
    PlatformEnum.CPU: [
        CpuKernel,
    ],
    PlatformEnum.OOT: [OotKernel],
}


def choose_kernel():
    return _POSSIBLE_KERNELS[current_platform._enum][0]


def target(x):
    return choose_kernel()().apply(x)
