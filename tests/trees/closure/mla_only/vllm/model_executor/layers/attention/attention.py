# SPDX-License-Identifier: Apache-2.0
class Attention:
    def __init__(self, n):
        self.n = n
