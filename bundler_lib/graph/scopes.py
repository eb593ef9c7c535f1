"""Scopes of a scanned definition: the names its bodies bind, its parameters and their literal defaults."""

from __future__ import annotations

import ast

from .index import ImportBinding, ModuleInfo, TreeIndex


def literal_defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, object]:
    """Parameters whose default is a literal (None, a bool, a number, a string) and that no code of the function
    binds again (no assignment, no nested parameter or target of the same name)."""
    a = fn.args
    positional = a.posonlyargs + a.args
    pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults))
    pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
    out = {k.arg: d.value for k, d in pairs
           if isinstance(d, ast.Constant) and isinstance(d.value, (type(None), bool, int, float, str))}
    if not out:
        return out
    own = {id(x) for x in positional + a.kwonlyargs}
    for x in ast.walk(fn):
        if isinstance(x, ast.Name) and not isinstance(x.ctx, ast.Load):
            out.pop(x.id, None)
        elif isinstance(x, ast.arg) and id(x) not in own:
            out.pop(x.arg, None)
        elif isinstance(x, (ast.Global, ast.Nonlocal)):
            for nm in x.names:
                out.pop(nm, None)
    return out


class _Scope:
    def __init__(self, kind: str, local: set[str], imports: dict[str, ImportBinding], globals_: set[str]):
        self.kind = kind        # module, function, class
        self.local = local
        self.imports = imports
        self.globals = globals_


def _class_locals(cls: ast.ClassDef, index: TreeIndex, info: ModuleInfo) -> tuple[set, dict, set]:
    """_collect_locals of a class body, computed once per class (each of its methods is scanned on its own;
    the index holds the class's tree, so its id stays its own)."""
    hit = index.class_locals.get(id(cls))
    if hit is None:
        hit = index.class_locals[id(cls)] = _collect_locals(cls.body, index, info)[:3]
    return set(hit[0]), dict(hit[1]), set(hit[2])


def _collect_locals(body: list[ast.stmt], index: TreeIndex, info: ModuleInfo, params: set | None = None):
    """Names bound in a function/class body (not descending into nested scopes): (local names, repo-local
    imports, `global` names, single assignments). Single assignments: the local names bound exactly once, by
    a plain `name = expr`, not parameters (`params`); guards may read `expr` for `name` (e.g. `strategy =
    envs.X` then `if strategy != "":`)."""
    local: set[str] = set()
    imports: dict[str, ImportBinding] = {}
    globals_: set[str] = set()
    count: dict[str, int] = {}
    value: dict[str, ast.expr] = {}
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    stack: list = list(reversed(body))
    while stack:
        n = stack.pop()
        if isinstance(n, scopes):
            local.add(n.name)
            stack.extend(n.decorator_list)
            continue
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, ast.Global):
            globals_.update(n.names)
            continue
        if isinstance(n, ast.Nonlocal):
            continue
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            for b in index.import_bindings(info, n, False):
                if b.external:
                    local.add(b.name)
                else:
                    imports[b.name] = b
            continue
        if isinstance(n, ast.Name):
            if isinstance(n.ctx, (ast.Store, ast.Del)):
                local.add(n.id)
                count[n.id] = count.get(n.id, 0) + 1
            continue
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            value[n.targets[0].id] = n.value
        elif isinstance(n, ast.ExceptHandler) and n.name:
            local.add(n.name)
        elif isinstance(n, ast.MatchAs) and n.name:
            local.add(n.name)
        for f in n._fields:
            v = getattr(n, f, None)
            if isinstance(v, list):
                stack.extend(x for x in v if isinstance(x, ast.AST))
            elif isinstance(v, ast.AST):
                stack.append(v)
    local -= globals_
    for g in globals_:
        imports.pop(g, None)
    params = params or set()
    single = {k: v for k, v in value.items() if count.get(k) == 1 and k not in params}
    return local, imports, globals_, single
