# SPDX-License-Identifier: Apache-2.0
import math


def fast_log(x):
    return math.log(x)


def rocm_exp(x):
    return math.exp(x) * 1.0
