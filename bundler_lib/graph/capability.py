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
    """current_platform.get_device_capability() <op> (7, 5) (vLLM's prefix_prefill: IS_TURING), or its `.major` /
    `.minor` <op> an int (the flash-linear-attention utils' `get_device_capability(0).major >= 9`); the device
    queried may be given as 0, the one the variant describes."""
    left, op, right = e.left, e.ops[0], e.comparators[0]
    part = left.attr if isinstance(left, ast.Attribute) and left.attr in ("major", "minor") else None
    call = left.value if part else left
    if (_platform_call(call, platform_names) != "get_device_capability" or type(op) not in _OPS
            or not (not call.args or (len(call.args) == 1 and isinstance(call.args[0], ast.Constant)
                                      and call.args[0].value == 0))):
        return None
    if part:
        if not (isinstance(right, ast.Constant) and type(right.value) is int):
            return None
        return _OPS[type(op)](cap // 10 if part == "major" else cap % 10, right.value)
    want = _capability(right) if isinstance(right, ast.Tuple) else None
    return None if want is None else _OPS[type(op)](cap, want)
