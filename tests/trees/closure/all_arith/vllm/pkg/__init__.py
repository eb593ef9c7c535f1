from vllm.pkg.impl import HAS_FAST, helper

__all__ = [
    "helper",
]

if HAS_FAST:

    def fast():
        return "fast"

    __all__ += ["fast"]
else:

    def fast():
        raise NotImplementedError("no fast path")
