"""Which decorators read the annotations of what they decorate: one answer for A1 (which annotation names a
bundle must keep) and A7 (which annotation names count as reads)."""

from __future__ import annotations

import ast

from bundler_lib.common.names import dotted

# Decorators (by their last dotted part, or full dotted name) known not to read the decorated function's or
# class's annotations; any other decorator is assumed to read them (infer_schema, cute.jit, pydantic, ...).
SAFE_DECORATORS = frozenset({
    "property", "classmethod", "staticmethod", "abstractmethod", "cached_property", "lru_cache", "cache",
    "wraps", "overload", "override", "final", "setter", "getter", "deleter", "contextmanager",
    "asynccontextmanager", "no_grad", "inference_mode", "total_ordering", "unique", "runtime_checkable",
    "triton.jit", "triton.autotune", "triton.heuristics",
})


def decorator_name(d: ast.AST) -> str:
    return dotted(d.func if isinstance(d, ast.Call) else d) or ""


def safe_decorator(d: ast.AST) -> bool:
    """The decorator `d` does not read annotations."""
    name = decorator_name(d)
    return name in SAFE_DECORATORS or name.rsplit(".", 1)[-1] in SAFE_DECORATORS
