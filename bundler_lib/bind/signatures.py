"""The entry symbol's public signatures, which binding must not change."""

from __future__ import annotations

import ast
import re

import libcst as cst


def entry_module(text: str, symbol: str, tree: ast.Module | None = None) -> cst.Module:
    """Only the top-level statements that define `symbol`, as a module (for its public signatures). Without
    a tree, only the provenance blocks whose text defines it are parsed."""
    if tree is None:
        blocks = re.split(r"(?m)^(?=# --- Inlined from )", text)
        pat = re.compile(r"^(?:@.*\n)*(?:class|(?:async\s+)?def)\s+" + re.escape(symbol) + r"\b", re.M)
        text = "".join(b for b in blocks if pat.search(b))
        tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    parts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == symbol:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            parts.append("".join(lines[start:node.end_lineno]))
    return cst.parse_module("".join(parts))


def _sig(fn: cst.FunctionDef, module: cst.Module) -> str:
    s = "(" + module.code_for_node(fn.params) + ")" + (
        " -> " + module.code_for_node(fn.returns.annotation) if fn.returns else "")
    s = re.sub(r"\s*\n\s*", " ", s)
    return s.replace("( ", "(").replace(", )", ")").replace(",)", ")")


def public_signatures(module: cst.Module, symbol: str) -> dict[str, str]:
    out = {}
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == symbol:
            out[symbol] = _sig(stmt, module)
        elif isinstance(stmt, cst.ClassDef) and stmt.name.value == symbol:
            for s in stmt.body.body:
                if isinstance(s, cst.FunctionDef):
                    n = s.name.value
                    if not n.startswith("_") or n in ("__init__", "__call__"):
                        out[f"{symbol}.{n}"] = _sig(s, module)
    return out
