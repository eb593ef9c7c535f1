"""Abstract-method stubs: left out of the bundle where nothing can run them.

An `@abstractmethod` of an ABC whose body does nothing (a docstring, `pass`, `...`, `raise NotImplementedError`)
never runs on an instance: ABCMeta refuses to create an instance of a class that inherits it without an
override. It runs only when called through `super()` or off the class by name (a class or static method may
run on the abstract class itself: those are kept). Where neither is in the closure, leaving it out changes no
behaviour.
"""

from __future__ import annotations

import ast


def _is_abstract(fn: ast.stmt) -> bool:
    return isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
        ast.unparse(d) in ("abstractmethod", "abc.abstractmethod") for d in fn.decorator_list)


def _does_nothing(fn: ast.FunctionDef) -> bool:
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]   # the docstring
    if not body:
        return True
    if len(body) != 1:
        return False
    st = body[0]
    if isinstance(st, ast.Pass) or (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant)
                                    and st.value.value is Ellipsis):
        return True
    if isinstance(st, ast.Raise) and st.exc is not None:
        exc = st.exc.func if isinstance(st.exc, ast.Call) else st.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def abstract_stubs(body: list[ast.stmt]) -> set[int]:
    """id()s of the abstract methods in a class body whose bodies do nothing."""
    return {id(st) for st in body if _is_abstract(st) and _does_nothing(st)}


def declares_abc(cls: ast.ClassDef) -> bool:
    """The class names ABC as a base or ABCMeta as its metaclass (itself, not through its bases)."""
    return (any(ast.unparse(b) in ("ABC", "abc.ABC") for b in cls.bases)
            or any(k.arg == "metaclass" and ast.unparse(k.value) in ("ABCMeta", "abc.ABCMeta")
                   for k in cls.keywords))


def super_reads(cls: ast.ClassDef) -> set[str]:
    """The names the class body reads through `super().<name>`."""
    return {x.attr for x in ast.walk(cls) if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Call)
            and isinstance(x.value.func, ast.Name) and x.value.func.id == "super"}


def c3(own, bases_mros: list[list]) -> list:
    """C3 linearization; items are compared by identity. Falls back to depth-first order if inconsistent."""
    seqs = [list(s) for s in bases_mros if s] + [[s[0] for s in bases_mros if s]]
    out = [own]
    while any(seqs):
        head = None
        for s in seqs:
            if s and not any(s[0] is x for t in seqs for x in t[1:]):
                head = s[0]
                break
        if head is None:   # inconsistent: keep the remaining classes in depth-first order
            for s in seqs:
                for x in s:
                    if not any(x is y for y in out):
                        out.append(x)
            break
        out.append(head)
        seqs = [s[1:] if s and s[0] is head else s for s in seqs]
    return out
