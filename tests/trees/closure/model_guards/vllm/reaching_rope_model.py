from vllm.rewritten_rope_model import rewritten_rope_target


def reaching_rope_target(config):
    # the rope type written by another file this layer reaches (0.33.0's deepseek_eagle3.py through deepseek_v2.py)
    return rewritten_rope_target(config)
