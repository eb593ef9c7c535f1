# SPDX-License-Identifier: Apache-2.0
try:
    B_REASON = None
    raise ImportError("b is missing")
except ImportError as e:
    B_REASON = str(e)
