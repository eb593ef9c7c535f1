from vllm.helpers import get_rope


def plain_rope_target(config):
    return get_rope(config.rope_parameters)


def normalised(rope_parameters):
    # a rope type written where the layer never goes (vLLM's transformers_utils/config.py beside set_default_rope_theta)
    rope_parameters["rope_type"] = "longrope"
    return rope_parameters
