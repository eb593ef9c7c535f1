# SPDX-License-Identifier: Apache-2.0
try:
    A_REASON = None
    raise ImportError("a is missing")
except (ImportError,
        ModuleNotFoundError) as e:
    A_REASON = str(e)
