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


def yarn_rope():
    return "yarn"


def deepseek_rope():
    return "deepseek_yarn"


def get_rope(rope_parameters):
    scaling_type = rope_parameters.get("rope_type", "default")
    if scaling_type == "yarn":
        return yarn_rope()
    elif scaling_type == "deepseek_yarn":
        return deepseek_rope()
    return "default"
