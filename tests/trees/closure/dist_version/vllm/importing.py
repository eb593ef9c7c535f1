from importlib.metadata import version

HAS_FAST = True
try:
    if "cpu" in version("vllm"):
        HAS_FAST = False
except ImportError:
    HAS_FAST = False


def fast(x):
    return x * 2


def slow(x):
    return x + 1
