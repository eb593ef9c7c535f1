"""The names Python binds in a scope, as both scope analyses read them: A1's references (graph/refs.py, with
graph/engine.py and graph/augassign.py) and A7's reachability (package/references.py, package/reachability.py)."""

from __future__ import annotations

import ast


def parameter_names(a: ast.arguments) -> list[str]:
    """The names a function's or a lambda's parameters bind."""
    out = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    out.extend(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    return out


def alias_name(al: ast.alias) -> str:
    """The name one clause of an import binds: `import a.b` binds a; `import a.b as c`, `from m import n as c`
    bind c."""
    return al.asname or al.name.split(".")[0]


def target_names(t: ast.AST, out: list[str]) -> None:
    """Append the names an assignment target binds (`a`, `a, (b, *c)`; not `x.attr` or `x[k]`)."""
    if isinstance(t, ast.Name):
        out.append(t.id)
    elif isinstance(t, (ast.Tuple, ast.List)):
        for e in t.elts:
            target_names(e, out)
    elif isinstance(t, ast.Starred):
        target_names(t.value, out)


def comprehension_targets(generators: list[ast.comprehension]) -> set[str]:
    """The names a comprehension's `for` targets bind in its own scope."""
    out: list[str] = []
    for g in generators:
        target_names(g.target, out)
    return set(out)
