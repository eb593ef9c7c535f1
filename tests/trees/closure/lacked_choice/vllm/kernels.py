import json

from vllm.platforms import current_platform


def _resolve_backend(config):
    """A resolver's pick among implementations, as vLLM's are: the variant decides the capability, not the request."""
    requested = config.get("backend", "auto")
    if not current_platform.is_cuda():
        return requested, "triton"
    fast = current_platform.is_device_capability(90)
    if requested in ("fastkern", "auto") and fast:
        return requested, "fastkern"
    if requested == "json":   # a choice named after a package every bundle has
        return requested, "json"
    if requested == "otherkern":   # named after a package this module does not import
        return requested, "otherkern"
    return requested, "triton"


def fastkern_impl(x):
    from fastkern.ops import run

    return run(x)


def json_impl(x):
    return json.loads(json.dumps(x)) + 10


def triton_impl(x):
    return x + 1


def target(x, config=None):
    requested, active = _resolve_backend(config or {})
    if active == "fastkern":
        return active, fastkern_impl(x)
    if active == "json":
        return active, json_impl(x)
    return active, triton_impl(x)
