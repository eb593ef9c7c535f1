# SPDX-License-Identifier: Apache-2.0
from vllm.a import A_REASON
from vllm.b import B_REASON


def target():
    return A_REASON, B_REASON
