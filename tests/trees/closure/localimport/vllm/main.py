def target():
    from vllm.lazy import lazy_fn

    return lazy_fn()
