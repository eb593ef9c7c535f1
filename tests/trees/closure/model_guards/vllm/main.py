from vllm.helpers import (MoEActivation, ZeroExpertRouter, gelu, grouped, mrope, norm_weight, sigmoid_router, silu,
                          zero_experts)


class GatedNorm:
    # a string `activation`, not the model's MoEActivation: the model's fact does not decide it
    def __init__(self, activation="swish"):
        self.activation = activation
        if self.activation not in ["swish", "silu", "sigmoid"]:
            raise ValueError(self.activation)
        self.weight = norm_weight()


def target(activation, scoring_func="softmax", use_grouped_topk=False, rope_parameters=None, router=None):
    out = silu() if activation == MoEActivation.SILU else gelu()
    if scoring_func == "sigmoid":
        out += sigmoid_router()
    if use_grouped_topk:
        out += grouped()
    rope_parameters = rope_parameters or {}
    if "mrope_section" in rope_parameters:
        out += mrope()
    if isinstance(router, ZeroExpertRouter):
        out += zero_experts()
    return out + GatedNorm(activation="sigmoid").weight
