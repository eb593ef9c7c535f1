"""Module-level `x += v` is kept whole or dropped whole, once the closure is complete: where a statement of the
closure binds x before it (`__all__ = [...]`, reached for its own sake), the augmentation comes after it; where
none does (a block reached for another name also does `__all__ += [...]`), the augmentation is deleted, as
nothing in the bundle reads x."""

from __future__ import annotations

import ast

from bundler_lib.common.scopes import alias_name

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.BitOr: "|", ast.BitAnd: "&"}


def _module_level(st: ast.stmt):
    """The statements of `st` that run at module level (inside if/try/with/for/while, not in def/class)."""
    yield st
    if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return
    for field in ("body", "orelse", "finalbody"):
        for x in getattr(st, field, None) or []:
            if isinstance(x, ast.stmt):
                yield from _module_level(x)
    for h in getattr(st, "handlers", None) or []:
        for x in h.body:
            yield from _module_level(x)


def settle(g) -> None:
    for n in list(g.nodes.values()):
        if n.stmt is None or n.kind == "synthetic":
            continue
        for st in _module_level(n.stmt):
            if not (isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name)):
                continue
            x = st.target.id
            earlier = [m for m in g.nodes.values() if m is not n and m.module == n.module and x in m.names
                       and m.line < st.lineno]
            if earlier:
                for m in earlier:
                    n.deps[m.key] = True   # runs after x's earlier binding
                continue
            own = any(isinstance(o, (ast.Assign, ast.AnnAssign, ast.For, ast.With, ast.Import, ast.ImportFrom))
                      and o.lineno < st.lineno and x in {t.id for t in ast.walk(o) if isinstance(t, ast.Name)
                                                         and isinstance(t.ctx, ast.Store)} | {
                          alias_name(a) for a in getattr(o, "names", [])}
                      for o in _module_level(n.stmt))
            if own or st is n.stmt:
                continue
            n.extra_edits.append({"op": "delete", "line": st.lineno, "end_line": st.end_lineno})
            g.notes.append(f"{n.file}:{st.lineno}: `{x} {_OPS.get(type(st.op), '')}= ...` dropped: no "
                           f"statement of the closure binds {x} before it (nothing in the bundle reads {x})")
