from vllm.importing import HAS_FAST, fast, slow


def target():
    return fast(3) if HAS_FAST else slow(3)
