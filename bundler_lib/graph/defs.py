"""Definitions the tree makes once: a name or a base class resolved to its one statement (the rules' lookups)."""

from __future__ import annotations

import ast

from .index import TreeIndex
from .resolve import Resolver


def bases(cls: ast.ClassDef) -> list[ast.expr]:
    """The class's bases, `Base[T]` read as `Base`."""
    return [b.value if isinstance(b, ast.Subscript) else b for b in cls.bases]


def returned(fn: ast.FunctionDef) -> ast.expr | None:
    """The expression of a function whose body (its docstring aside) is one `return <expr>`."""
    body = [b for b in fn.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return None
    return body[0].value


def caches(d: ast.expr) -> bool:
    """A decorator that only caches the function's result."""
    name = ast.unparse(d)
    return name in ("cache", "functools.cache", "lru_cache", "functools.lru_cache") or name.startswith(
        ("lru_cache(", "functools.lru_cache("))


class Defs:
    """Lookups of single definitions through the resolver."""

    def __init__(self, index: TreeIndex, res: Resolver):
        self.index, self.res = index, res

    def sole_def(self, module: str, name: str, kind: type) -> tuple[str, ast.AST] | None:
        """(module, node) of what `name` in `module` resolves to, when that is one definition of type `kind`."""
        t = self.res.name(module, name)
        if t.kind != "node" or len(t.stmts) != 1 or not isinstance(t.stmts[0].node, kind):
            return None
        return t.module, t.stmts[0].node

    def base_def(self, module: str, base: ast.expr) -> tuple[str, ast.ClassDef] | None:
        """(module, ClassDef) of a base class written `Name` or `module.Name`, when the tree defines it once."""
        if isinstance(base, ast.Name):
            return self.sole_def(module, base.id, ast.ClassDef)
        attrs = []
        while isinstance(base, ast.Attribute):
            attrs.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name):
            return None
        t, used = self.res.chain(self.res.name(module, base.id), attrs[:-1])
        if used != len(attrs) - 1 or t.kind != "module":
            return None
        return self.sole_def(t.module, attrs[-1], ast.ClassDef)
