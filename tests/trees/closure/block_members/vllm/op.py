# SPDX-License-Identifier: Apache-2.0
import math
import os

from vllm.helpers import fast_log, rocm_exp

IS_ROCM = False

if os.environ.get("FAST", "0") == "1":
    exp = math.exp
    log = fast_log
else:
    exp = math.exp
    log = math.log

if IS_ROCM:
    exp2 = rocm_exp
else:
    exp2 = math.exp
    SCALE = exp2(1.0)
