"""Scopes of a scanned definition: the names its bodies bind, its parameters and their literal defaults."""

from __future__ import annotations

import ast

from bundler_lib.common.scopes import body_bindings, nodes_within

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
    for x in nodes_within(fn):
        t = type(x)
        if t is ast.Name:
            if type(x.ctx) is not ast.Load:
                out.pop(x.id, None)
        elif t is ast.arg:
            if id(x) not in own:
                out.pop(x.arg, None)
        elif t is ast.Global or t is ast.Nonlocal:
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


# A1's policy on the kinds of common/scopes.body_bindings: `global` and `nonlocal` names are not the scope's (the
# first also drops a same-named import), imports are sorted by the index into repo-local (followed) and external
# (plain locals), comprehension targets belong to the comprehension's scope
_A1_NOT_LOCAL = frozenset({"global", "nonlocal", "import", "comprehension"})


def _collect_locals(body: list[ast.stmt], index: TreeIndex, info: ModuleInfo, params: set | None = None):
    """Names bound in a function/class body (not descending into nested scopes): (local names, repo-local
    imports, `global` names, single assignments). Single assignments: the local names bound exactly once, by
    a plain `name = expr`, not parameters (`params`); guards may read `expr` for `name` (e.g. `strategy =
    envs.X` then `if strategy != "":`)."""
    bound = [(i, b) for i, st in enumerate(body) for b in body_bindings([st])]
    globals_ = {b.name for _, b in bound if b.kind == "global"}
    local: set[str] = set()
    count: dict[str, int] = {}
    value: dict[str, ast.expr] = {}
    statements: dict[int, tuple[int, ast.stmt]] = {}
    for i, b in bound:
        if b.kind == "import":
            statements[id(b.node)] = (i, b.node)
        if b.kind in _A1_NOT_LOCAL:
            continue
        local.add(b.name)
        count[b.name] = count.get(b.name, 0) + 1
        if isinstance(b.node, ast.Assign) and len(b.node.targets) == 1 and isinstance(b.node.targets[0], ast.Name):
            value[b.name] = b.node.value
    # a name several repo-local imports bind resolves to one: that of the body's last statement importing it,
    # and within that (compound) statement its first import
    per_statement: dict[int, dict[str, ImportBinding]] = {}
    for i, st in statements.values():
        for ib in index.import_bindings(info, st, False):
            if ib.external:
                local.add(ib.name)
            else:
                per_statement.setdefault(i, {}).setdefault(ib.name, ib)
    imports: dict[str, ImportBinding] = {}
    for i in sorted(per_statement):
        imports.update(per_statement[i])
    local -= globals_
    for g in globals_:
        imports.pop(g, None)
    params = params or set()
    single = {k: v for k, v in value.items() if count.get(k) == 1 and k not in params}
    return local, imports, globals_, single


def repeated_assignments(body: list[ast.stmt], params: set) -> dict[str, tuple[ast.expr, ...]]:
    """{name: its values} for each local a function body binds more than once, every time by a plain
    `name = expr` (`use_custom = f(...)`, then `use_custom = False` under an `if`); not parameters. Whatever
    binding a read sees, its value is one of these."""
    values: dict[str, list] = {}
    other: set[str] = set()
    for b in body_bindings(body):
        if isinstance(b.node, ast.Assign) and len(b.node.targets) == 1 and isinstance(b.node.targets[0], ast.Name):
            values.setdefault(b.name, []).append(b.node.value)
        else:
            other.add(b.name)
    return {k: tuple(v) for k, v in values.items() if len(v) > 1 and k not in other and k not in params}
