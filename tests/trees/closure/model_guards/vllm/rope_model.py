from vllm.helpers import get_rope


def plain_rope_target(config):
    return get_rope(config.rope_parameters)
