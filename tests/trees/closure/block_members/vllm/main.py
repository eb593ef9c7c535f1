# SPDX-License-Identifier: Apache-2.0
import math

from vllm.op import HAS_ZLIB, SCALE, exp


def target(x):
    return exp(x) * SCALE + 0 * uses_attribute_named_log(1.0) + 0 * HAS_ZLIB


def uses_attribute_named_log(x):
    return math.log(x)   # reads attribute `log` of a module: not the block's `log`
