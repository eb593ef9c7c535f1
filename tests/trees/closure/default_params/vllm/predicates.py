from vllm.deps import make_state


class BreakDep:
    pass


class KVQuantDep:
    pass


def capture_enabled():
    return False


def should_load(method):
    """Whether a quantization method loads weights."""
    return method is not None and not isinstance(method, str)


def wrap(fn):
    if not capture_enabled():
        return fn
    return BreakDep()


def init_quant(quant_config=None):
    method = quant_config.get_method() if quant_config else None
    if should_load(method):
        return KVQuantDep()
    return make_state()
