"""What one top-level statement of the bundle binds and reads (`_Refs`, one `_Unit` per statement), under the
module-wide facts that decide which annotations count (`_Module`): the edges of A7's reachability graph."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from bundler_lib.common.annotations import decorator_name, safe_decorator
from bundler_lib.common.names import dotted
from bundler_lib.common.scopes import body_bindings, comprehension_targets, scope_bindings


_DATACLASS_LOOKUPS = frozenset({"ClassVar", "InitVar", "KW_ONLY"})


DUNDER = re.compile(r"^__\w+__$")


@dataclass
class Unit:
    line: int
    start: int  # first line, decorators included
    kind: str  # function, class, assignment, import, statement
    binds: tuple[str, ...] = ()
    bases: tuple[str | None, ...] = ()  # root names of attribute/subscript targets (None: not a name)
    owners: tuple[str, ...] = ()
    root: bool = False
    probe: bool = False  # an import in a `try` that catches ImportError: never unused
    bare_guard: bool = False  # ... whose ImportError handlers only `pass`: its names stay unbound without it
    loads: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    cond: list = field(default_factory=list)  # (condition, names): annotation loads that count if ...
    uses_globals: bool = False
    global_decls: set[str] = field(default_factory=set)
    submodule: str | None = None
    note: str = ""


class ModuleFacts:
    """Facts about the whole module that decide which annotations count."""

    def __init__(self, postponed: bool):
        self.postponed = postponed
        self.value_names: set[str] = set()  # names loaded other than as the callee of a call
        self.evaluates_annotations = False  # get_type_hints / eval_str seen
        self.default_op_ns = "vllm"  # the namespace of vLLM's `vllm_lib` (A5 gives the bundle its own)


def name_of(node: ast.AST) -> str:
    return dotted(node) or ""




def target_bases(t: ast.AST, out: list) -> None:
    """Root names of the attribute/subscript targets in t (None where the root is not a plain name)."""
    if isinstance(t, (ast.Tuple, ast.List)):
        for e in t.elts:
            target_bases(e, out)
    elif isinstance(t, ast.Starred):
        target_bases(t.value, out)
    elif isinstance(t, (ast.Attribute, ast.Subscript)):
        node = t
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        out.append(node.id if isinstance(node, ast.Name) else None)


# A7's policy on the kinds of common/scopes.body_bindings: a comprehension's targets are its own scope's, and
# `global`/`nonlocal` bind nothing here (a `nonlocal` name is the enclosing function's: local there already)
_A7_NOT_BOUND = frozenset({"comprehension", "global", "nonlocal"})


def _function_locals(fn: ast.AST) -> set[str]:
    """Names local to a function or lambda scope (parameters and whatever its body binds, minus `global`)."""
    bound = list(scope_bindings(fn))
    declared_global = {b.name for b in bound if b.kind == "global"}
    return {b.name for b in bound if b.kind not in _A7_NOT_BOUND} - declared_global


def _string_names(node: ast.AST) -> set[str]:
    """Names inside string constants that parse as expressions (string annotations)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            try:
                inner = ast.parse(sub.value.strip(), mode="eval")
            except SyntaxError:
                continue
            out.update(n.id for n in ast.walk(inner) if isinstance(n, ast.Name))
    return out


def _leading_name(ann: ast.AST) -> str | None:
    """What `dataclasses` looks up in the module for a field annotation: the leading identifier of its text."""
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        m = re.match(r"^(?:\s*(\w+)\s*\.)?\s*(\w+)", ann.value)
        if not m or m.group(2) not in _DATACLASS_LOOKUPS:
            return None
        return m.group(1) or m.group(2)
    while isinstance(ann, ast.Subscript):
        ann = ann.value
    if isinstance(ann, ast.Name):
        return ann.id if ann.id in _DATACLASS_LOOKUPS else None
    if isinstance(ann, ast.Attribute) and isinstance(ann.value, ast.Name) and ann.attr in _DATACLASS_LOOKUPS:
        return ann.value.id
    return None


class References(ast.NodeVisitor):
    """The global names one unit loads, resolving function, lambda, comprehension and class scopes."""

    def __init__(self, mod: ModuleFacts):
        self.mod = mod
        self.scopes: list[set[str]] = []  # enclosing function scopes' locals
        self.class_bound: set[str] | None = None  # set while directly in a class body
        self.class_mode = "none"  # which class-body annotations count: none, leading, all
        self.loads: set[str] = set()
        self.chains: set[str] = set()
        self.strings: set[str] = set()
        self.cond: list = []
        self.uses_globals = False
        self.global_decls: set[str] = set()
        self._in_annotation = False

    def _is_global(self, name: str) -> bool:
        if self.class_bound is not None and name in self.class_bound:
            return False
        return not any(name in s for s in self.scopes)

    # --- names, attributes, strings
    def visit_Name(self, node: ast.Name) -> None:
        if not isinstance(node.ctx, ast.Store) and self._is_global(node.id):
            self.loads.add(node.id)
            if not self._in_annotation and isinstance(node.ctx, ast.Load):
                self.mod.value_names.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        d = name_of(node)
        if d and self._is_global(d.split(".", 1)[0]):
            self.chains.add(d)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value.isidentifier():
            self.strings.add(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name):
            if self._is_global(f.id):
                self.loads.add(f.id)  # a callee: not a value use
                if f.id == "globals" or (f.id == "vars" and not node.args):
                    self.uses_globals = True
                if f.id == "get_type_hints":
                    self.mod.evaluates_annotations = True
        else:
            self.visit(f)
            if isinstance(f, ast.Attribute) and f.attr == "get_type_hints":
                self.mod.evaluates_annotations = True
        for k in node.keywords:
            if k.arg == "eval_str":
                self.mod.evaluates_annotations = True
        for a in node.args:
            self.visit(a)
        for k in node.keywords:
            self.visit(k.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if (name_of(node.value) == "sys.modules" and isinstance(node.slice, ast.Name)
                and node.slice.id == "__name__"):
            self.uses_globals = True
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.global_decls.update(node.names)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and self._is_global(node.target.id):
            self.loads.add(node.target.id)  # x += v reads x
        self.generic_visit(node)

    # --- annotations
    def _annotation(self, ann: ast.AST | None, cond) -> None:
        """cond: "always", None (never), "all" (if the module evaluates annotations), ("escapes", name)."""
        if ann is None or cond is None:
            return
        if cond != "always" and self.mod.evaluates_annotations:
            cond = "always"
        saved = self.loads, self.chains, self.strings, self._in_annotation
        self.loads, self.chains, self.strings, self._in_annotation = set(), set(), set(), True
        self.visit(ann)
        got = self.loads | {n for n in _string_names(ann) if self._is_global(n)}
        self.loads, self.chains, self.strings, self._in_annotation = saved
        if cond == "always":
            self.loads |= got
        elif got:
            self.cond.append((cond, got))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if self.class_bound is not None:  # directly in a class body
            if not self.mod.postponed or self.class_mode == "all":
                self._annotation(node.annotation, "always")
            else:
                lead = _leading_name(node.annotation) if self.class_mode == "leading" else None
                if lead and self._is_global(lead):
                    self.loads.add(lead)
                self._annotation(node.annotation, "all")
        elif not self.scopes:  # module level
            self._annotation(node.annotation, "all" if self.mod.postponed else "always")
        # local variable annotations are never evaluated
        if not isinstance(node.target, ast.Name):
            self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    # --- scopes
    def _function(self, node) -> None:
        for d in node.decorator_list:
            self.visit(d)
        a = node.args
        for d in a.defaults + [d for d in a.kw_defaults if d is not None]:
            self.visit(d)
        if not self.mod.postponed:
            cond = "always"
        elif any(not safe_decorator(d) for d in node.decorator_list):
            cond = "always"
        else:
            cond = ("escapes", node.name)
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
            if arg is not None:
                self._annotation(arg.annotation, cond)
        self._annotation(node.returns, cond)
        saved = self.class_bound
        self.class_bound = None
        self.scopes.append(_function_locals(node))
        for s in node.body:
            self.visit(s)
        self.scopes.pop()
        self.class_bound = saved

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)
        saved = self.class_bound
        self.class_bound = None
        self.scopes.append(_function_locals(node))
        self.visit(node.body)
        self.scopes.pop()
        self.class_bound = saved

    def _comprehension(self, node, elts) -> None:
        gens = node.generators
        self.visit(gens[0].iter)  # evaluated in the enclosing scope
        saved = self.class_bound
        self.class_bound = None
        self.scopes.append(comprehension_targets(gens))
        for i, g in enumerate(gens):
            if i:
                self.visit(g.iter)
            for c in g.ifs:
                self.visit(c)
        for e in elts:
            self.visit(e)
        self.scopes.pop()
        self.class_bound = saved

    def visit_ListComp(self, node):
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, [node.key, node.value])

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(d)
        mode = "none"
        for d in node.decorator_list:
            if decorator_name(d).rsplit(".", 1)[-1] == "dataclass":
                mode = "leading" if mode == "none" else mode
            elif not safe_decorator(d):
                mode = "all"
        saved = self.class_bound, self.class_mode
        self.class_bound, self.class_mode = set(), mode
        for s in node.body:
            self.visit(s)
            self.class_bound |= bound_here(s)
        self.class_bound, self.class_mode = saved


def bound_here(stmt: ast.AST) -> set[str]:
    """Names a class-body statement binds in the class namespace (nested scopes' own names excluded)."""
    return {b.name for b in body_bindings([stmt]) if b.kind not in _A7_NOT_BOUND}
