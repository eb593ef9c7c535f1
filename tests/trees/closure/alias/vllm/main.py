import vllm.ops as ops2
from vllm.ops import compute as do_compute


def target(x):
    return do_compute(x) + ops2.other(x)
