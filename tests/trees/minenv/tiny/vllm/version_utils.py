# As vllm/utils/torch_utils.py: packaging imported at module level, read inside a function that module-level
# code calls (HAS_OPAQUE_TYPE = is_torch_equal_or_newer(...)). A2 guards the imports (they are read only in a
# function body); without a fallback the bundle raises NameError at import where packaging is not installed.
from packaging import version
from packaging.version import Version

import torch


def is_torch_equal_or_newer(target: str) -> bool:
    try:
        return version.parse(str(torch.__version__)) >= version.parse(target)
    except Exception:
        return Version(str(torch.__version__)) >= Version(target)


HAS_NEW_TORCH = is_torch_equal_or_newer("2.0")
