# SPDX-License-Identifier: Apache-2.0
class MLAAttention:
    def __init__(self, n):
        self.n = n
