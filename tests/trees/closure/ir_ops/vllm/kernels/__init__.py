from . import other_c, vllm_c
