from vllm.helpers import cuda_helper, plain_helper, quant_helper, rocm_helper
from vllm.platforms import current_platform


def target(quant_config=None):
    if current_platform.is_rocm():
        out = rocm_helper()
    else:
        out = cuda_helper()
    if quant_config is not None:
        out += quant_helper()
    return out + plain_helper()
