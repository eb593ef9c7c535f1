# SPDX-License-Identifier: Apache-2.0
import math
import os

from vllm.helpers import fast_log, rocm_exp

IS_ROCM = False

if os.environ.get("FAST", "0") == "1":
    import json as fast_json   # never read: left out like the unread assignments
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


class Unread:
    pass


try:
    import zlib as probe_zlib   # a probe: kept though never read
    HAS_ZLIB = True
except ImportError:
    HAS_ZLIB = False

    class UnreadFallback(Unread):   # never read: left out
        pass
