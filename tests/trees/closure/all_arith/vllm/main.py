from vllm.pkg import fast


def target():
    return fast()
