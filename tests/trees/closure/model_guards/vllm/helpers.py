from enum import Enum


class MoEActivation(Enum):
    SILU = "silu"
    GELU = "gelu"


class ZeroExpertRouter:
    pass


def silu():
    return "silu"


def gelu():
    return "gelu"


def sigmoid_router():
    return "+sigmoid"


def grouped():
    return "+grouped"


def mrope():
    return "+mrope"


def zero_experts():
    return "+zero"


def norm_weight():
    return "+norm"
