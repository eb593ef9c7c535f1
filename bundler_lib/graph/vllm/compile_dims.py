"""vLLM's `@support_torch_compile` infers a class's dynamic dims when it decorates it, from the annotation objects
of its `forward` (`torch.Tensor`, `torch.Tensor | None`, `IntermediateTensors`, ...; vllm/compilation/
decorators.py), and raises where it finds none. In the bundle annotations are postponed: strings, never those
objects. So the decorator of a class whose module evaluated its annotations gets `dynamic_arg_dims` written out,
computed from the same annotations as vLLM's inference would (dim 0 of each such parameter)."""

from __future__ import annotations

import ast

from ..engine import Rule

_DECORATOR = "support_torch_compile"
_DYNAMIC = {"torch.Tensor", "torch.FloatTensor", "IntermediateTensors"}


def _dotted(e: ast.expr) -> str | None:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        head = _dotted(e.value)
        return f"{head}.{e.attr}" if head else None
    return None


def dynamic_annotation(a: ast.expr | None) -> bool:
    """The annotation is one vLLM's inference takes: T or `T | None` or `Optional[T]`, T in _DYNAMIC."""
    if a is None:
        return False
    if isinstance(a, ast.BinOp) and isinstance(a.op, ast.BitOr):
        none = [x for x in (a.left, a.right) if isinstance(x, ast.Constant) and x.value is None]
        other = [x for x in (a.left, a.right) if not (isinstance(x, ast.Constant) and x.value is None)]
        return len(none) == 1 and len(other) == 1 and dynamic_annotation(other[0])
    if isinstance(a, ast.Subscript) and (_dotted(a.value) or "").split(".")[-1] == "Optional":
        return dynamic_annotation(a.slice)
    return _dotted(a) in _DYNAMIC


def _decorator(d: ast.expr) -> bool:
    f = d.func if isinstance(d, ast.Call) else d
    return (_dotted(f) or "").split(".")[-1] == _DECORATOR


def dims_edit(cls: ast.ClassDef) -> dict | None:
    """The edit writing `dynamic_arg_dims` into the class's `@support_torch_compile` (None where it gives them,
    or its forward has no parameter vLLM's inference takes)."""
    deco = next((d for d in cls.decorator_list if _decorator(d)), None)
    fwd = next((f for f in cls.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == "forward"),
               None)
    if deco is None or fwd is None or (isinstance(deco, ast.Call) and (
            deco.args or any(k.arg in ("dynamic_arg_dims", None) for k in deco.keywords))):
        return None
    a = fwd.args
    dims = {p.arg: 0 for p in (a.posonlyargs + a.args)[1:] + a.kwonlyargs if dynamic_annotation(p.annotation)}
    if not dims:
        return None
    kw = f"dynamic_arg_dims={dims!r}"
    if not isinstance(deco, ast.Call):
        line, col, text = deco.end_lineno, deco.end_col_offset, f"({kw})"
    elif deco.keywords:   # right after the last argument (before its trailing comma, if any)
        last = deco.keywords[-1].value
        line, col, text = last.end_lineno, last.end_col_offset, f", {kw}"
    else:
        line, col, text = deco.end_lineno, deco.end_col_offset - 1, kw
    return {"op": "span", "line": line, "col": col, "end_line": line, "end_col": col, "text": text}


class CompileDims(Rule):
    name = "compile-dims"
    decides = ("`@support_torch_compile` on a class of a module without postponed annotations: the dynamic dims "
               "its inference would take from forward's annotations, written out")

    def __init__(self, index):
        self.index = index

    def finish(self, g) -> None:
        for n in list(g.nodes.values()):
            if not isinstance(n.stmt, ast.ClassDef):
                continue
            info = self.index.get(n.module)
            if info.future_annotations:
                continue   # strings in vLLM as well: its own inference sees what the bundle's does
            edit = dims_edit(n.stmt)
            if edit is not None:
                n.extra_edits.append(edit)
                g.notes.append(f"{info.path}:{n.stmt.lineno} {n.stmt.name}: @support_torch_compile given "
                               f"{edit['text'].strip(', ()')} (vLLM infers them from forward's annotations, "
                               "which the bundle postpones)")
