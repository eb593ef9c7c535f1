from vllm.helpers import MoEActivation, gelu, silu


def experts(activation):
    return silu() if activation == MoEActivation.SILU else gelu()


def literal_target():
    # the model file's own activation, not the config's hidden_act
    return experts(activation="gelu")
