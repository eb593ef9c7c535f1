def rocm_helper(x):
    return -x


def rebound_helper(x):
    return x * 10


def shadow_helper():
    return "shadow"


def compile_helper(fn):
    return fn
