from vllm.helpers import get_rope


def rewritten_rope_target(config):
    # the model file's own rope type (vLLM's deepseek_v2.py), not the config's
    if config.rope_parameters["rope_type"] != "default":
        config.rope_parameters["rope_type"] = (
            "deepseek_yarn" if config.rope_parameters.get("apply_yarn_scaling", True) else "deepseek_llama_scaling")
    return get_rope(config.rope_parameters)
