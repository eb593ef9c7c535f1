import functools

from vllm.platforms import current_platform

if current_platform.is_cuda_alike():
    from vllm import cuda_ops as ops
elif current_platform.is_xpu():
    from vllm.xpu_ops import xpu_ops as ops

IS_TURING = current_platform.get_device_capability() == (7, 5)


@functools.cache
def _vendor():
    if current_platform.is_cuda_alike():
        return "nvidia"
    return "other"


VENDOR = _vendor()
IS_NVIDIA = VENDOR == "nvidia"
# as vLLM 0.34's flash-linear-attention utils, at import
IS_HOPPER = IS_NVIDIA and (
    "NVIDIA H" in current_platform.get_device_name(0) or current_platform.get_device_capability(0).major >= 9
)


def target_hopper():
    return IS_HOPPER


def rocm_kernel(x):
    return ("rocm", x)


def triton_kernel(x):
    return ("triton", x)


def target(x, pow2=True):
    # as vLLM's chunked_prefill_paged_decode asks the ROCm platform whether its own kernel applies
    from vllm.platforms.rocm import use_custom_kernel

    use_custom = use_custom_kernel(128)
    if not pow2:
        use_custom = False
    if use_custom:
        out = rocm_kernel(x)
    else:
        out = triton_kernel(x)
    precision = "ieee" if IS_TURING else None
    return ops.write(out), precision
