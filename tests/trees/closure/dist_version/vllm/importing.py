import importlib.metadata
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


def version_matches(substr):
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        found = dist_version("vllm")
    except PackageNotFoundError:
        raise
    return substr in found


HAS_FAST_AT_RUN_TIME = True
try:
    if version_matches("cpu"):
        HAS_FAST_AT_RUN_TIME = False
except Exception:
    HAS_FAST_AT_RUN_TIME = False


def release():
    return importlib.metadata.version("vllm"), importlib.metadata.version("torch")
