from vllm import ir

CUDA_ALIKE = True


def _fast_half(x):
    return x * 0.5


@ir.ops.rms_norm.register_impl("vllm_c", supported=CUDA_ALIKE)
def rms_norm(x):
    return _fast_half(x)


@ir.ops.scale.register_impl("vllm_c")
def scale(x):
    return x * 3
