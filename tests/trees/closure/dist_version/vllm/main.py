from vllm.importing import HAS_FAST, HAS_FAST_AT_RUN_TIME, fast, release, slow


def target():
    return fast(3) if HAS_FAST else slow(3)


def target_at_run_time():
    return (fast(3) if HAS_FAST_AT_RUN_TIME else slow(3)), release()[0]
