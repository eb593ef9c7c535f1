# SPDX-License-Identifier: Apache-2.0
from vllm.model_executor.layers.attention.attention import Attention


def finalize_layerwise_processing(module):   # vLLM's reload: checks a module against Attention, builds none
    return isinstance(module, Attention)
