"""The distribution-version rule: a call of importlib.metadata's `version("<pkg>")` for a top-level package of the
tree is replaced by the version the tree's source states (TreeIndex.distribution_version). A bundle's code is never
installed as that distribution, so the call would raise PackageNotFoundError where the tree asks about itself at run
time (vLLM 0.34's triton_utils/importing.py asks `vllm_version_matches_substr("cpu")` at import, inside an
`except Exception` that then turns Triton off). The guard evaluator answers the same question where it decides a
branch (predicates.py); this rule covers the calls that stay in the bundle, whichever way `version` was imported
(at module level or in the function, `from importlib.metadata import version as v`, `import importlib.metadata`)."""

from __future__ import annotations

import ast

from .engine import Rule, import_stmt

_VERSION_FUNCTIONS = ("importlib.metadata.version", "importlib_metadata.version")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _objects(bindings) -> dict[str, str]:
    """{bound name: the object it binds} of external import bindings."""
    return {b.name: import_stmt(b)[1] for b in bindings if b.external}


def _dotted(e: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(e, ast.Name):
        return names.get(e.id)
    if isinstance(e, ast.Attribute):
        base = _dotted(e.value, names)
        return None if base is None else f"{base}.{e.attr}"
    return None


def version_calls(node: ast.AST, names: dict[str, str], imported):
    """The calls `version("<literal>")` in `node` whose function is importlib.metadata's, given the names bound
    around it (`imported(body)`: those a function's own imports add); each with its literal."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names = {**names, **imported(node.body)}
    for child in ast.iter_child_nodes(node):
        if (isinstance(child, ast.Call) and len(child.args) == 1 and not child.keywords
                and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str)
                and _dotted(child.func, names) in _VERSION_FUNCTIONS):
            yield child, child.args[0].value
        yield from version_calls(child, names, imported)


class DistributionVersion(Rule):
    name = "distribution-version"
    decides = "importlib.metadata.version(<a package of the tree>) reads as the version its source states"

    def __init__(self, index):
        self.index = index

    def scanned(self, g, n, before) -> None:
        if n.stmt is None:
            return
        info = self.index.get(n.module)
        for call, package in version_calls(n.stmt, _objects(info.imports.values()),
                                           lambda body: self._imported(info, body)):
            version = self.index.distribution_version(package)
            if version is None:
                continue
            n.extra_edits.append({"op": "span", "line": call.lineno, "col": call.col_offset,
                                  "end_line": call.end_lineno, "end_col": call.end_col_offset, "text": repr(version)})
            g.notes.append(f"{n.file}:{call.lineno}: {ast.unparse(call)} reads as {version!r}, the version the "
                           f"tree's source states (the bundle is not installed as {package!r})")

    def _imported(self, info, body: list[ast.stmt]) -> dict[str, str]:
        """{bound name: object} of the imports in a function's own body (not in nested defs), as the index binds
        them."""
        found, todo = [], list(body)
        while todo:
            st = todo.pop()
            if isinstance(st, (ast.Import, ast.ImportFrom)):
                found += self.index.import_bindings(info, st, False)
            elif not isinstance(st, _SCOPES):
                todo.extend(c for c in ast.iter_child_nodes(st) if isinstance(c, ast.stmt))
        return _objects(found)
