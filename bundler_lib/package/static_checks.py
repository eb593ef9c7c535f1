"""Checks on the composed text that run nothing: undefined names (pyflakes), module-level calls of the example."""

from __future__ import annotations

import ast
import re

from bundler_lib.common.scopes import statements_within


def top_level_example_calls(tree: ast.Module) -> list[int]:
    """Lines where module-level code (outside any def/class body) calls invocation_example."""
    lines = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.ClassDef):
            for d in node.decorator_list + node.bases:
                visit(d)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "invocation_example":
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in tree.body:
        visit(stmt)
    return sorted(lines)


def _annotation_names(tree: ast.AST) -> set[tuple[int, str]]:
    """(line, name) of every name used inside an annotation (string annotations included)."""
    out: set[tuple[int, str]] = set()

    def collect(node: ast.AST | None) -> None:
        if node is None:
            return
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                out.add((sub.lineno, sub.id))
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                try:
                    inner = ast.parse(sub.value, mode="eval")
                except SyntaxError:
                    continue
                for n in ast.walk(inner):
                    if isinstance(n, ast.Name):
                        out.add((sub.lineno, n.id))
                        out.add((sub.lineno + n.lineno - 1, n.id))

    # Annotations belong to statements (def, AnnAssign)
    for node in statements_within(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            collect(node.returns)
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                if arg is not None:
                    collect(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            collect(node.annotation)
    return out


_CAST_STRING = re.compile(r"""\bcast\(\s*(?:"([^"]*)"|'([^']*)')""")


def _in_cast_string(lines: list[str], lineno: int, name: str) -> bool:
    """`name` is read only by the type string of a `cast("T", x)` on that line (pyflakes checks it as an
    annotation; typing.cast never evaluates it)."""
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    for m in _CAST_STRING.finditer(line):
        try:
            inner = ast.parse(m.group(1) if m.group(1) is not None else m.group(2), mode="eval")
        except SyntaxError:
            continue
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(inner)):
            return True
    return False


def find_undefined_names(source: str, filename: str, tree: ast.Module) -> tuple[list[str] | None, list[str]]:
    """pyflakes' undefined names, split into (used at run time, used only in annotations). With
    `from __future__ import annotations` the latter are never evaluated by the bundle itself."""
    try:
        from pyflakes import checker, messages
    except ImportError:
        return None, []
    w = checker.Checker(tree, filename=filename)
    kinds = (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)
    in_annotations = _annotation_names(tree)
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names) for n in tree.body)
    lines = source.splitlines()
    runtime, annotation_only = [], []
    for m in sorted(w.messages, key=lambda m: (m.lineno, getattr(m, "col", 0), str(m.message_args))):
        if isinstance(m, kinds):
            text = f"L{m.lineno}: {m.message % m.message_args}"
            name = m.message_args[0] if m.message_args else ""
            if (postponed and (m.lineno, name) in in_annotations) or _in_cast_string(lines, m.lineno, name):
                annotation_only.append(text)
            else:
                runtime.append(text)
    return runtime, annotation_only
