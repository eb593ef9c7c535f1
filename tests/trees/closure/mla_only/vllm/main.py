# SPDX-License-Identifier: Apache-2.0
from vllm.model_executor.layers.attention.attention import Attention
from vllm.model_executor.layers.attention.mla_attention import MLAAttention


class MlaDecoderLayer:   # LongCat-Flash's layer: MLA whatever use_mla
    def __init__(self, n):
        self.attn = MLAAttention(n)


class BothDecoderLayer:   # DeepseekV2's layer: MLA or standard attention, by use_mla
    def __init__(self, n, use_mla=False):
        self.attn = MLAAttention(n) if use_mla else Attention(n)


class DraftDecoderLayer:   # DeepseekV2Eagle3's layer: MLA always; its loader helpers check against Attention
    def __init__(self, n):
        from vllm.model_executor.model_loader.layerwise import finalize_layerwise_processing
        self.attn = MLAAttention(n)
        finalize_layerwise_processing(self.attn)
