from vllm.accel_ops import accel_ops
from vllm.helpers import accel_helper, auto_only_helper, fused_helper, runtime_helper, wrapped_helper


def predicate_target():
    out = ""
    if accel_ops.is_enabled():
        out += accel_helper()
    if not accel_ops.is_fused_enabled():
        out += "+unfused"
    else:
        out += fused_helper()
    if accel_ops.is_auto():
        out += auto_only_helper()
    if accel_ops.is_wrapped():
        out += wrapped_helper()
    if accel_ops.is_runtime():
        out += runtime_helper()
    return out
