"""The names Python binds in a scope, as both scope analyses read them: A1's references (graph/refs.py,
graph/scopes.py, with graph/engine.py and graph/augassign.py) and A7's reachability (package/references.py,
package/reachability.py). One walker (body_bindings) yields every binding of a scope; each stage keeps its policy
as a named filter on its kinds."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Binding:
    """One binding of a scope: the name, how it is bound (one of KINDS) and the node that binds it (the
    statement, handler, pattern, comprehension, `arg` or walrus)."""
    name: str
    kind: str
    node: ast.AST


KINDS = ("param", "assign", "del", "import", "def", "class", "for", "with", "except", "match", "walrus", "global",
         "nonlocal", "comprehension")

_NESTED = frozenset({ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda})
# the fields whose Store/Del names a node binds, and the kind of that binding
_TARGETS = {ast.Assign: ("targets", "assign"), ast.AugAssign: ("target", "assign"),
            ast.AnnAssign: ("target", "assign"), ast.Delete: ("targets", "del"), ast.For: ("target", "for"),
            ast.AsyncFor: ("target", "for"), ast.withitem: ("optional_vars", "with"),
            ast.NamedExpr: ("target", "walrus"), ast.comprehension: ("target", "comprehension")}
_BINDERS = frozenset({ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal, ast.ExceptHandler, ast.MatchAs,
                      ast.MatchStar, ast.MatchMapping, *_TARGETS})


def _node_types(base: type) -> set[type]:
    out = {base}
    for sub in base.__subclasses__():
        out |= _node_types(sub)
    return out


# the node types that hold nothing (contexts, operators): walks need not visit them
TOKENS = frozenset(_node_types(ast.expr_context) | _node_types(ast.operator) | _node_types(ast.boolop)
                   | _node_types(ast.unaryop) | _node_types(ast.cmpop))
_NODES = frozenset(_node_types(ast.AST) - TOKENS)
# the nodes body_bindings need not visit either: they bind nothing and hold no node that does (a name's binding
# is read off the target field of the node holding it; an import's aliases off the import)
_WALKED = _NODES - {ast.Name, ast.Constant, ast.alias}


def scope_bindings(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> Iterator[Binding]:
    """Every binding of a function's or lambda's own scope: its parameters, then what its body binds."""
    a = fn.args
    for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
        if x is not None:
            yield Binding(x.arg, "param", x)
    yield from body_bindings([fn.body] if isinstance(fn, ast.Lambda) else fn.body)


def body_bindings(body: list[ast.AST]) -> Iterator[Binding]:
    """Every binding the statements (or expressions) of one scope make, in source order, without entering a
    nested scope: of a nested def, class or lambda only what the enclosing scope evaluates (decorators, defaults,
    bases, keywords) is walked and its name bound; of a comprehension, its targets are yielded as kind
    "comprehension" (Python binds them in the comprehension's own scope; a caller decides) and its walruses as
    the enclosing scope's."""
    # the type tests keep the isinstance chain to the nodes that can bind (a few in a body's many): both scope
    # analyses walk every body they reach, so this loop is on A1's hot path
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        n = stack.pop()
        if type(n) in _NESTED:
            if not isinstance(n, ast.Lambda):
                yield Binding(n.name, "class" if isinstance(n, ast.ClassDef) else "def", n)
            stack.extend(reversed(_evaluated_outside(n)))
            continue
        if type(n) in _BINDERS:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                yield from (Binding(alias_name(al), "import", n) for al in n.names if al.name != "*")
            elif isinstance(n, (ast.Global, ast.Nonlocal)):
                yield from (Binding(nm, type(n).__name__.lower(), n) for nm in n.names)
            elif isinstance(n, ast.ExceptHandler) and n.name:
                yield Binding(n.name, "except", n)
            elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
                yield Binding(n.name, "match", n)
            elif isinstance(n, ast.MatchMapping) and n.rest:
                yield Binding(n.rest, "match", n)
            field_kind = _TARGETS.get(type(n))
            if field_kind is not None:
                targets = getattr(n, field_kind[0])
                out: list[str] = []
                for t in targets if isinstance(targets, list) else [targets]:
                    if t is not None:
                        target_names(t, out)
                yield from (Binding(nm, field_kind[1], n) for nm in out)
        for field in reversed(n._fields):
            v = getattr(n, field, None)
            if type(v) is list:
                stack += [x for x in reversed(v) if type(x) in _WALKED]
            elif type(v) in _WALKED:
                stack.append(v)


def nodes_within(root: ast.AST) -> list[ast.AST]:
    """Every node of `root`'s subtree, itself included, in no set order, but contexts and operators (which hold
    nothing): ast.walk for the hot loops that look for names, parameters or statements."""
    out = [root]
    for n in out:   # visits what the loop appends
        for field in n._fields:
            v = getattr(n, field, None)
            if type(v) is list:
                out += [x for x in v if type(x) in _NODES]
            elif type(v) in _NODES:
                out.append(v)
    return out


_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")


def statements_within(stmts: list[ast.AST]) -> list[ast.AST]:
    """Every statement of `stmts` and of the blocks nested in them (defs and classes included; with the
    `except` handlers and `match` cases that hold blocks), in no set order: statements live only in these
    lists, so this finds every import, def or annotated assignment without visiting the expressions."""
    out = list(stmts)
    for n in out:   # visits what the loop appends
        for field in _STATEMENT_LISTS:
            block = getattr(n, field, None)
            if type(block) is list:
                out += block
    return out


def _evaluated_outside(n: ast.AST) -> list[ast.AST]:
    """The parts of a nested def, class or lambda the enclosing scope evaluates."""
    if isinstance(n, ast.ClassDef):
        return n.decorator_list + n.bases + [k.value for k in n.keywords]
    a = n.args
    defaults = a.defaults + [d for d in a.kw_defaults if d is not None]
    return defaults if isinstance(n, ast.Lambda) else n.decorator_list + defaults
