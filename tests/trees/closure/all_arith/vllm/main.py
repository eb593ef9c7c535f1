from vllm import pkg
from vllm.pkg import fast


def target():
    return fast()


def target_names():
    return pkg.__all__
