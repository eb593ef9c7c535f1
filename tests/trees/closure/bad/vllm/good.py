from vllm.broken import broken_fn


def calls_broken():
    return broken_fn()


def Duplicate():
    pass


def RMSNormish():
    pass
