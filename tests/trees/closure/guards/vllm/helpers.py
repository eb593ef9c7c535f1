def rocm_helper():
    return "rocm"


def cuda_helper():
    return "cuda"


def quant_helper():
    return "quant"


def plain_helper():
    return "plain"
