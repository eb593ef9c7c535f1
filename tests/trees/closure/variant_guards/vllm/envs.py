import os
from typing import Any, Callable

environment_variables: dict[str, Callable[[], Any]] = {
    "VLLM_FAST_PATH": lambda: bool(int(os.getenv("VLLM_FAST_PATH", "0"))),
    "VLLM_MODE": lambda: os.getenv("VLLM_MODE", "Auto").lower(),
    "VLLM_FROM_ENV": lambda: os.environ["VLLM_FROM_ENV"],
}


def __getattr__(name: str):
    if name in environment_variables:
        return environment_variables[name]()
    raise AttributeError(name)
