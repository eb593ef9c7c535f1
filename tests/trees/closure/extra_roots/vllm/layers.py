# SPDX-License-Identifier: Apache-2.0
from vllm.attn import Attention, helper
from vllm.backend import SIZE
from vllm.base import Linear


class WithAttention:
    def __init__(self):
        self.proj = Linear()
        self.attn = Attention()
        self.n = SIZE


class WithoutAttention:
    def __init__(self):
        self.proj = Linear()
        self.n = helper() + SIZE
