from vllm.platforms import current_platform

IS_ROCM = current_platform.is_rocm()
REBOUND = current_platform.is_rocm()


def rebind():
    global REBOUND
    REBOUND = True
