from vllm import two
from vllm.one import rms_norm


def target(x):
    return rms_norm(x) + two.rms_norm(x)
