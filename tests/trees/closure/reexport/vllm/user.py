from vllm.layers import Thing


class Target(Thing):
    pass
