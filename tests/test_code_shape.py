"""The shape of bundler_lib's code (issue 16): no module over MAX_MODULE_LINES lines, no function or method
(nested ones included) over MAX_FUNCTION_LINES. Generated-code templates are string literals assigned at module
level, not functions, so they count only towards their module's size."""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "bundler_lib"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    mods = sorted(LIB.rglob("*.py"))
    assert len(mods) > 50, f"found only {len(mods)} modules under {LIB}"
    return mods


def test_no_module_over_the_limit():
    long = []
    for p in _modules():
        n = len(p.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            long.append(f"{p.relative_to(LIB.parent)}: {n} lines")
    assert not long, (f"modules over {MAX_MODULE_LINES} lines (split them into cohesive modules): "
                      + "; ".join(long))


def test_no_function_over_the_limit():
    long = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(LIB.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps): "
                      + "; ".join(long))
