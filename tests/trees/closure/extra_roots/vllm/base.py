# SPDX-License-Identifier: Apache-2.0
class MethodBase:
    def process(self):
        return "base"


class Linear(MethodBase):
    def process(self):
        return "linear"
