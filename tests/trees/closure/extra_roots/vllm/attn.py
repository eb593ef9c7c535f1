# SPDX-License-Identifier: Apache-2.0
class Attention:
    def process(self):
        return "attention"


def helper():
    return 1
