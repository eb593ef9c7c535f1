from vllm.ext import run


def target():
    return run(1)
