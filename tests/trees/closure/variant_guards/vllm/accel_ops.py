import functools

import vllm.envs as envs


def is_supported() -> bool:
    return False


def if_supported(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if is_supported():
            return func(*args, **kwargs)
        return None

    return wrapper


def unknown_decorator(func):
    return func


class accel_ops:
    _ENABLED = envs.VLLM_FAST_PATH
    _MODE_AUTO = envs.VLLM_MODE == "auto"
    _LITERAL_OFF = False

    @classmethod
    @if_supported
    def is_enabled(cls) -> bool:
        return cls._ENABLED

    @classmethod
    def is_fused_enabled(cls) -> bool:
        """Reads another predicate of the class."""
        return cls.is_enabled() and cls._LITERAL_OFF

    @classmethod
    def is_auto(cls) -> bool:
        return cls._MODE_AUTO

    @classmethod
    @unknown_decorator
    def is_wrapped(cls) -> bool:
        return cls._ENABLED

    @classmethod
    def is_runtime(cls) -> bool:
        return cls._ENABLED or len(envs.VLLM_FROM_ENV) > 0
