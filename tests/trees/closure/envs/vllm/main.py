import vllm.envs as envs
from vllm.platforms import current_platform
from vllm.shapes import Limits, Shape

DEFAULT = Shape.PER_TOKEN


def _early():
    if not current_platform.is_rocm():
        return "cuda"
    from vllm.rocm_only import rocm_thing

    return rocm_thing()


def target():
    return (envs.A, Limits.MAX_TOKENS, DEFAULT.col, _early())
