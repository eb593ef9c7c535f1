"""Calls that name a custom op by a string and pass a function beside it: vLLM >= 0.34's
`_op = eager_bypass_custom_op("name", impl)`, which looks the op up in torch.ops by that name. A1 keeps the op's
registration for them (graph/vllm/ops.py); A7 counts them as uses of the op (package/reachability.py)."""

from __future__ import annotations

import ast


def named_op_calls(node: ast.AST) -> list[tuple[ast.Call, str, set[str]]]:
    """(the call, the string it is given first, the plain names among its other arguments) for each call under
    `node` whose first argument is a string and that passes at least one plain name."""
    out = []
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)):
            continue
        passed = {a.id for a in list(call.args[1:]) + [k.value for k in call.keywords] if isinstance(a, ast.Name)}
        if passed:
            out.append((call, call.args[0].value, passed))
    return out
