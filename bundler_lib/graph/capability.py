"""The GPU's compute capability in a guard: what the platform's capability queries answer for the variant's
`cuda_capability` (major*10+minor: 90 is (9, 0))."""

from __future__ import annotations

import ast


def _tail(e: ast.expr) -> str | None:
    return e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else None


def _capability(e: ast.expr):
    if isinstance(e, ast.Constant) and type(e.value) is int:
        return e.value
    if isinstance(e, ast.Tuple) and len(e.elts) == 2 and all(
            isinstance(x, ast.Constant) and type(x.value) is int for x in e.elts):
        return e.elts[0].value * 10 + e.elts[1].value
    return None


def _platform_call(e: ast.expr, platform_names) -> str | None:
    """The method of `current_platform.<method>(...)`, else None."""
    if isinstance(e, ast.Call) and not e.keywords and isinstance(e.func, ast.Attribute) and _tail(
            e.func.value) in platform_names:
        return e.func.attr
    return None


def query(e: ast.expr, cap: int, platform_names) -> bool | None:
    """current_platform.has_device_capability(90) / is_device_capability((9, 0)) / ..._family(100)."""
    method = _platform_call(e, platform_names)
    if method not in ("has_device_capability", "is_device_capability", "is_device_capability_family") or len(
            e.args) != 1:
        return None
    want = _capability(e.args[0])
    if want is None:
        return None
    if method == "has_device_capability":
        return cap >= want
    if method == "is_device_capability":
        return cap == want
    return cap // 10 == want // 10


_OPS = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}


def compared(e: ast.Compare, cap: int, platform_names) -> bool | None:
    """current_platform.get_device_capability() <op> (7, 5) (vLLM's prefix_prefill: IS_TURING)."""
    left, op, right = e.left, e.ops[0], e.comparators[0]
    want = _capability(right) if isinstance(right, ast.Tuple) else None
    if (_platform_call(left, platform_names) != "get_device_capability" or left.args or want is None
            or type(op) not in _OPS):
        return None
    return _OPS[type(op)](cap, want)
