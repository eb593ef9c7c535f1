"""Which top-level definitions of a bundle nothing reaches (A7's `unreachable_definitions` and `unused_imports`).

A bundle must hold only what its symbol needs: a top-level definition that the symbol, the example and the
module's own import-time code never reach is a closure defect. This module finds them on the composed text's
AST, with a name-level reachability over the module's top-level statements.

Units. Every top-level statement is a unit; compound statements at module level (`if`, `try`, `with`, `for`,
`while`) are not units themselves: each statement inside is, and the names their headers load (the `if` test,
the `except` types, the `with` items, the `for` iterable) are loads of every unit inside. A unit binds names:
- `def`/`class`: its name; everything it evaluates or may run (decorators, defaults, bases, keywords, the class
  body, the function and method bodies, nested scopes) is its loads. Methods are part of their class.
- assignment to plain names (`x = ...`, `a, b = ...`, `x: T = v`, `x += v`): those names, whatever the right-hand
  side calls. An assignment kept only for its right-hand side's side effect is reported like any other (its note
  says it calls something: `logger = init_logger(__name__)` unused is a defect: the logger it registers is never
  used by the symbol). `x: T` without a value binds nothing and is ignored.
- `import a.b as c`, `from m import n`: one unit per alias (each can be removed alone); `import a.b.c` binds `a`
  and is needed only if reached code loads the attribute chain `a.b.c` (else it is reported as unused).
- a mutation of a bundle-defined object (`Foo.attr = v`, `registry[k] = v`, `Foo.x += 1`, `exec(code, m.__dict__)`,
  and A2's module-object idiom `sys.modules[m.__name__] = m`) binds nothing but belongs to that object: it is
  reached when the object is.
- custom ops are names too, spelled as the attribute chain that reaches them: `direct_register_custom_op(
  op_name="x", ...)` (vLLM's helper, default library) binds `torch.ops.vllm.x`, or `torch.ops.<ns>.x` where the
  bundle's `vllm_lib` is `Library("<ns>", ...)` (A5 gives each bundle its own namespace) (a registration nothing reaches is
  reported under that name), `@torch.library.custom_op("ns::x")` makes its function bind `torch.ops.ns.x` too, and
  reaching the op reaches its `@register_fake("ns::x")` / `@f.register_fake` implementations. Reached code reaches
  an op through the chain `torch.ops.ns.x...`. (A5 rewires `torch.ops.vllm.x(...)` call sites to the Python function,
  so a registration the bundle keeps is reached only where a `torch.ops` chain still names it.)
A unit reached through an owner keeps the names it binds reached too.

Roots (reached unconditionally): the target symbol, `invocation_example`, every module-level dunder binding
(`__getattr__`, `__all__`, ...: the interpreter uses them by name), and every statement that runs for its
side effect: an expression statement (a call: `pynvml.nvmlInit()`, `lib.define(...)`) other than a constant
(docstring) or a custom-op registration, a mutation of something that is not a bundle-defined object (`sys.modules[k] = v`,
`torch.ops.foo = ...`, `globals()[k] = v`), `del`, `assert`, `raise`, `match`, `from m import *`.
A decorated def/class is not a root: a registering decorator (`@CustomOp.register("x")`) fills a registry that
only matters when something reads it, and that something is then what reaches the class.

Edges: the global names a unit loads (`ast.Name` in Load or Del context, `x` in `x += 1`), resolved through
scopes: a name bound in an enclosing function (parameter, assignment, import, def, `for`/`with`/`except` target,
walrus; minus `global` declarations) or earlier in a class body is not a global; comprehension targets and lambda
parameters are local to them. Triton kernels are ordinary functions here: globals their bodies load
(`tl.constexpr` constants, helpers) are Name loads. The CUDA section is ordinary Python: wrappers call
`_build_cuda_extension_if_needed()`, which loads `_CUDA_TRANSLATION_UNITS`, `_CUDA_SOURCES`, ... by name.
`obj.attr` reaches nothing by itself (only its root name `obj`). Names in strings count where the bundle looks
names up: a unit that calls `globals()` (or `vars()`, or reads `sys.modules[__name__]`) reaches every top-level
name spelled by an identifier string constant it holds (`globals()["x"]`, `N = {"role": "x"}; G.get(N[role])`);
`__all__` reaches the names it lists.

Annotations. With `from __future__ import annotations` (every bundle has it) annotations are strings that run
nothing, so names used only there are not edges, except where something evaluates them:
- a function's signature annotations when the function escapes: it is decorated by anything but a decorator
  known not to read annotations (`property`, `classmethod`, `staticmethod`, `lru_cache`, `cache`, `wraps`,
  `triton.jit`, ...; see `_SAFE_DECORATORS`), or its name is used as a value (passed, stored): e.g.
  `direct_register_custom_op(op_func=f)` and `@torch.library.custom_op` run `torch.library.infer_schema`, which
  evaluates `f`'s annotations in the bundle's globals;
- class-body annotations of a class with a decorator other than the safe ones (all names; e.g. pydantic-style
  config decorators), or of a `@dataclass` (only what `dataclasses` looks up by name in the module:
  the leading `ClassVar`, `InitVar`, `KW_ONLY`, or the module name in `typing.ClassVar`/`dataclasses.InitVar`);
- everything, when the bundle calls `get_type_hints` or passes `eval_str=` (then any annotation may be read).
Bases (`NamedTuple`, `TypedDict`, `nn.Module`) do not evaluate string annotations. Annotations of local
variables are never evaluated. Without the future import, signature, module-level and class-body annotations are
evaluated when defined, so they are edges; names in string constants inside an evaluated annotation count too.
"""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass, field

from bundler_lib.common.names import dotted

ROOT_NAMES = ("invocation_example",)

# Decorators (by their last dotted part, or full dotted name) known not to read the decorated function's
# annotations; a function with any other decorator is assumed to have them read (infer_schema, cute.jit, ...).
_SAFE_DECORATORS = frozenset({
    "property", "classmethod", "staticmethod", "abstractmethod", "cached_property", "lru_cache", "cache",
    "wraps", "overload", "override", "final", "setter", "getter", "deleter", "contextmanager",
    "asynccontextmanager", "no_grad", "inference_mode", "total_ordering", "unique", "runtime_checkable",
    "triton.jit", "triton.autotune", "triton.heuristics",
})
_DATACLASS_LOOKUPS = frozenset({"ClassVar", "InitVar", "KW_ONLY"})
_DUNDER = re.compile(r"^__\w+__$")
_MARKER = re.compile(
    r"^# (?:--- Inlined from (?P<src>.+?) ---|===== (?P<sec>.+?) =====|(?P<ex>invocation_example): .*)\s*$")


@dataclass(frozen=True)
class Definition:
    name: str
    line: int
    kind: str  # function, class, assignment, import
    note: str = ""  # the import statement; "decorated"; "calls on its right-hand side"


@dataclass
class Result:
    unreachable: list[Definition]  # defs, classes, assignments nothing reaches
    unused_imports: list[Definition]
    postponed_annotations: bool
    reached: set[str]  # the top-level names reached


@dataclass
class _Unit:
    line: int
    start: int  # first line, decorators included
    kind: str  # function, class, assignment, import, statement
    binds: tuple[str, ...] = ()
    bases: tuple[str | None, ...] = ()  # root names of attribute/subscript targets (None: not a name)
    owners: tuple[str, ...] = ()
    root: bool = False
    loads: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)
    cond: list = field(default_factory=list)  # (condition, names): annotation loads that count if ...
    uses_globals: bool = False
    global_decls: set[str] = field(default_factory=set)
    submodule: str | None = None
    note: str = ""


class _Module:
    """Facts about the whole module that decide which annotations count."""

    def __init__(self, postponed: bool):
        self.postponed = postponed
        self.value_names: set[str] = set()  # names loaded other than as the callee of a call
        self.evaluates_annotations = False  # get_type_hints / eval_str seen
        self.default_op_ns = "vllm"  # the namespace of vLLM's `vllm_lib` (A5 gives the bundle its own)


def _dotted(node: ast.AST) -> str:
    return dotted(node) or ""


def _decorator_name(d: ast.AST) -> str:
    return _dotted(d.func if isinstance(d, ast.Call) else d)


def _safe_decorator(d: ast.AST) -> bool:
    name = _decorator_name(d)
    return name in _SAFE_DECORATORS or name.rsplit(".", 1)[-1] in _SAFE_DECORATORS


def _target_names(t: ast.AST, out: list[str]) -> None:
    if isinstance(t, ast.Name):
        out.append(t.id)
    elif isinstance(t, (ast.Tuple, ast.List)):
        for e in t.elts:
            _target_names(e, out)
    elif isinstance(t, ast.Starred):
        _target_names(t.value, out)


def _target_bases(t: ast.AST, out: list) -> None:
    """Root names of the attribute/subscript targets in t (None where the root is not a plain name)."""
    if isinstance(t, (ast.Tuple, ast.List)):
        for e in t.elts:
            _target_bases(e, out)
    elif isinstance(t, ast.Starred):
        _target_bases(t.value, out)
    elif isinstance(t, (ast.Attribute, ast.Subscript)):
        node = t
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        out.append(node.id if isinstance(node, ast.Name) else None)


def _function_locals(fn: ast.AST) -> set[str]:
    """Names local to a function or lambda scope (parameters and whatever its body binds, minus `global`)."""
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    if isinstance(fn, ast.Lambda):
        return names
    declared_global: set[str] = set()
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            todo.extend(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                todo.extend(node.args.defaults + [d for d in node.args.kw_defaults if d is not None])
            else:
                todo.extend(node.bases + [k.value for k in node.keywords])
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name):
            if not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            continue
        if isinstance(node, ast.NamedExpr):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((al.asname or al.name.split(".")[0]) for al in node.names if al.name != "*")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Global):
            declared_global.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        if isinstance(node, ast.comprehension):  # its target is the comprehension's, not the function's
            todo.append(node.iter)
            todo.extend(node.ifs)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return names - declared_global


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


class _Refs(ast.NodeVisitor):
    """The global names one unit loads, resolving function, lambda, comprehension and class scopes."""

    def __init__(self, mod: _Module):
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
        d = _dotted(node)
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
        if (_dotted(node.value) == "sys.modules" and isinstance(node.slice, ast.Name)
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
        elif any(not _safe_decorator(d) for d in node.decorator_list):
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
        targets: list[str] = []
        for g in gens:
            _target_names(g.target, targets)
        saved = self.class_bound
        self.class_bound = None
        self.scopes.append(set(targets))
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
            if _decorator_name(d).rsplit(".", 1)[-1] == "dataclass":
                mode = "leading" if mode == "none" else mode
            elif not _safe_decorator(d):
                mode = "all"
        saved = self.class_bound, self.class_mode
        self.class_bound, self.class_mode = set(), mode
        for s in node.body:
            self.visit(s)
            self.class_bound |= _bound_here(s)
        self.class_bound, self.class_mode = saved


def _bound_here(stmt: ast.AST) -> set[str]:
    """Names a class-body statement binds in the class namespace (nested scopes' own names excluded)."""
    out: set[str] = set()
    todo = [stmt]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            out.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((al.asname or al.name.split(".")[0]) for al in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _is_sys_modules_store(stmt: ast.Assign) -> bool:
    return (len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript)
            and _dotted(stmt.targets[0].value) == "sys.modules" and isinstance(stmt.value, ast.Name))


def _exec_into(stmt: ast.Expr) -> str | None:
    """`exec(code, X.__dict__)`: the name X whose namespace the statement fills."""
    c = stmt.value
    if (isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "exec" and len(c.args) >= 2
            and isinstance(c.args[1], ast.Attribute) and c.args[1].attr == "__dict__"
            and isinstance(c.args[1].value, ast.Name)):
        return c.args[1].value.id
    return None


_OP_DEFINERS = frozenset({"custom_op", "triton_op"})
_OP_IMPLEMENTERS = frozenset({"register_fake", "register_kernel", "register_autograd", "register_torch_dispatch",
                              "register_vmap", "impl_abstract", "register_impl"})


def _op_key(qualname: str) -> str | None:
    """"ns::op" -> "torch.ops.ns.op" (the attribute chain that reaches the op)."""
    ns, sep, op = qualname.partition("::")
    return f"torch.ops.{ns}.{op.split('.')[0]}" if sep and ns.isidentifier() and op else None


def _op_decorator(d: ast.AST) -> tuple[str | None, str | None]:
    """("defines", op) for @custom_op("ns::op"); ("implements", op or function name) for @register_fake("ns::op")
    and @f.register_fake; (None, None) otherwise."""
    if isinstance(d, ast.Call):
        last = _decorator_name(d).rsplit(".", 1)[-1]
        first = d.args[0] if d.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            key = _op_key(first.value)
            if key and last in _OP_DEFINERS:
                return "defines", key
            if key and last in _OP_IMPLEMENTERS:
                return "implements", key
        d = d.func
    if isinstance(d, ast.Attribute) and d.attr in _OP_IMPLEMENTERS and isinstance(d.value, ast.Name):
        return "implements", d.value.id
    return None, None


def _default_op_ns(tree: ast.Module) -> str:
    """The namespace of the library `direct_register_custom_op` defines into by default: vLLM's module-level
    `vllm_lib = Library("vllm", "FRAGMENT")`, which A5 renames to the bundle's own namespace."""
    for s in tree.body:
        if (isinstance(s, ast.Assign) and [_dotted(t) for t in s.targets] == ["vllm_lib"]
                and isinstance(s.value, ast.Call) and _dotted(s.value.func).endswith("Library") and s.value.args
                and isinstance(s.value.args[0], ast.Constant) and isinstance(s.value.args[0].value, str)):
            return s.value.args[0].value
    return "vllm"


def _registered_op(stmt: ast.Expr, default_ns: str = "vllm") -> str | None:
    """`direct_register_custom_op(op_name="x", ...)` (vLLM's helper, default library): "torch.ops.vllm.x"
    (`torch.ops.<ns>.x` where the bundle's `vllm_lib` is `Library("<ns>", ...)`)."""
    c = stmt.value
    if not (isinstance(c, ast.Call) and _dotted(c.func).rsplit(".", 1)[-1] == "direct_register_custom_op"):
        return None
    kw = {k.arg: k.value for k in c.keywords}
    if "target_lib" in kw or None in kw:
        return None
    name = kw.get("op_name", c.args[0] if c.args else None)
    if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value.isidentifier():
        return f"torch.ops.{default_ns}.{name.value}"
    return None


class _Builder:
    def __init__(self, mod: _Module):
        self.mod = mod
        self.units: list[_Unit] = []

    def refs(self, *nodes) -> _Refs:
        r = _Refs(self.mod)
        for n in nodes:
            if n is not None:
                r.visit(n)
        return r

    def add(self, stmt, kind: str, guard: _Refs, refs: _Refs | None = None, **kw) -> _Unit:
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        u = _Unit(line=stmt.lineno, start=start, kind=kind, **kw)
        for r in (guard, refs):
            if r is not None:
                u.loads |= r.loads
                u.chains |= r.chains
                u.strings |= r.strings
                u.cond += r.cond
                u.uses_globals |= r.uses_globals
                u.global_decls |= r.global_decls
        self.units.append(u)
        return u

    def build(self, stmts, guard: _Refs) -> None:
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(s, ast.ClassDef) else "function"
                note = "decorated: " + ", ".join("@" + _decorator_name(d) for d in s.decorator_list) \
                    if s.decorator_list else ""
                binds, owners, ops = [s.name], [], []
                for d in s.decorator_list:
                    role, key = _op_decorator(d)
                    if role == "defines":  # @torch.library.custom_op("ns::op"): the function is torch.ops.ns.op
                        binds.append(key)
                        ops.append(key)
                    elif role == "implements":  # @torch.library.register_fake("ns::op"), @f.register_fake
                        owners.append(key)
                u = self.add(s, kind, guard, self.refs(s), binds=tuple(binds), owners=tuple(owners), note=note)
                u.loads.update(ops)  # reaching the op reaches its fake/kernel registrations
            elif isinstance(s, ast.Import):
                for al in s.names:
                    sub = al.name if (al.asname is None and "." in al.name) else None
                    text = f"import {al.name}" + (f" as {al.asname}" if al.asname else "")
                    self.add(s, "import", guard, binds=(al.asname or al.name.split(".")[0],), submodule=sub,
                             note=text)
            elif isinstance(s, ast.ImportFrom):
                if s.module == "__future__":
                    continue
                src = "." * (s.level or 0) + (s.module or "")
                for al in s.names:
                    text = f"from {src} import {al.name}" + (f" as {al.asname}" if al.asname else "")
                    if al.name == "*":
                        self.add(s, "statement", guard, root=True, note=text)
                    else:
                        self.add(s, "import", guard, binds=(al.asname or al.name,), note=text)
            elif isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                if isinstance(s, ast.AnnAssign) and s.value is None:
                    continue  # `x: T` binds nothing
                targets = s.targets if isinstance(s, ast.Assign) else [s.target]
                names: list[str] = []
                bases: list = []
                for t in targets:
                    _target_names(t, names)
                    _target_bases(t, bases)
                note = "calls on its right-hand side" if any(
                    isinstance(n, ast.Call) for n in ast.walk(s.value)) else ""
                u = self.add(s, "assignment", guard, self.refs(s), binds=tuple(dict.fromkeys(names)),
                             bases=tuple(bases), note=note)
                if isinstance(s, ast.Assign) and _is_sys_modules_store(s):
                    u.owners = (s.value.id,)  # resolved in analyze(): a module object registering itself
            elif isinstance(s, ast.Expr):
                if isinstance(s.value, ast.Constant):
                    continue  # a docstring or `...`
                into = _exec_into(s)
                op = _registered_op(s, self.mod.default_op_ns)
                if op:  # direct_register_custom_op(op_name="x", ...) defines torch.ops.vllm.x
                    self.add(s, "registration", guard, self.refs(s), binds=(op,),
                             note="direct_register_custom_op")
                else:
                    self.add(s, "statement", guard, self.refs(s), root=into is None,
                             owners=(into,) if into else ())
            elif isinstance(s, (ast.If, ast.While)):
                self.build(s.body + s.orelse, self._merge(guard, self.refs(s.test)))
            elif isinstance(s, (ast.For, ast.AsyncFor)):
                g = self._merge(guard, self.refs(s.iter))
                names = []
                _target_names(s.target, names)
                self.add(s, "assignment", g, binds=tuple(dict.fromkeys(names)), note="a for-loop target")
                self.build(s.body + s.orelse, g)
            elif isinstance(s, (ast.With, ast.AsyncWith)):
                g = self._merge(guard, self.refs(*[i.context_expr for i in s.items]))
                for i in s.items:
                    if i.optional_vars is not None:
                        names = []
                        _target_names(i.optional_vars, names)
                        self.add(s, "assignment", g, binds=tuple(names), note="a with-statement target")
                self.build(s.body, g)
            elif isinstance(s, (ast.Try, getattr(ast, "TryStar", ast.Try))):
                g = self._merge(guard, self.refs(*[h.type for h in s.handlers]))
                body = s.body + [x for h in s.handlers for x in h.body] + s.orelse + s.finalbody
                self.build(body, g)
            elif isinstance(s, (ast.Pass, ast.Global, ast.Nonlocal, ast.Break, ast.Continue, ast.Return)):
                continue
            else:  # del, assert, raise, match, ...: run for their effect
                self.add(s, "statement", guard, self.refs(s), root=True)

    def _merge(self, a: _Refs, b: _Refs) -> _Refs:
        r = _Refs(self.mod)
        for x in (a, b):
            r.loads |= x.loads
            r.chains |= x.chains
            r.strings |= x.strings
            r.cond += x.cond
            r.uses_globals |= x.uses_globals
        return r


def postponed_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body)


def analyze(tree: ast.Module, symbol: str, roots: tuple[str, ...] = ROOT_NAMES) -> Result:
    """Reachability of the module's top-level definitions from `symbol`, `roots` and its import-time code."""
    mod = _Module(postponed_annotations(tree))
    mod.default_op_ns = _default_op_ns(tree)
    b = _Builder(mod)
    b.build(tree.body, _Refs(mod))
    units = b.units
    defined = {n for u in units for n in u.binds}
    objects = {n for u in units if u.kind != "import" for n in u.binds}  # bundle-defined, not imported

    by_name: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        if u.kind == "assignment" and u.bases:
            if u.owners and all(o in objects for o in u.owners):
                pass  # sys.modules[m.__name__] = m
            elif all(x in objects for x in u.bases):
                u.owners = tuple(dict.fromkeys(u.bases))
            else:
                u.owners, u.root = (), True
        elif u.kind == "statement" and u.owners and not all(o in objects for o in u.owners):
            u.owners, u.root = (), True
        elif u.kind in ("function", "class") and u.owners:
            u.owners = tuple(o for o in u.owners if o in objects or o.startswith("torch.ops."))
        if any(_DUNDER.match(n) for n in u.binds):
            u.root = True
            if "__all__" in u.binds:
                u.uses_globals = True
        for n in u.binds + u.owners:
            by_name.setdefault(n, []).append(i)

    def edges(u: _Unit) -> set[str]:
        out = set(u.loads)
        for cond, names in u.cond:
            if cond == "always" or cond == "all" and mod.evaluates_annotations or (
                    isinstance(cond, tuple) and cond[1] in mod.value_names):
                out |= names
        if u.uses_globals:
            out |= u.strings & defined
        out.update(".".join(c.split(".")[:4]) for c in u.chains if c.startswith("torch.ops."))
        return out & defined

    reached_units: set[int] = set()
    reached: set[str] = set()
    todo = [n for n in (symbol, *roots) if n]
    for i, u in enumerate(units):
        if u.root:
            reached_units.add(i)
            todo.extend(edges(u))
            todo.extend(u.binds)
    while todo:
        n = todo.pop()
        if n in reached:
            continue
        reached.add(n)
        for i in by_name.get(n, ()):
            if i not in reached_units:
                reached_units.add(i)
                todo.extend(edges(units[i]))
                todo.extend(units[i].binds)  # a unit reached through its owner keeps its names live too

    chains = {c for i in reached_units for c in units[i].chains}
    written = {n for i in reached_units for n in units[i].global_decls}
    unreachable, unused = [], []
    for i, u in enumerate(units):
        if u.kind == "import":
            if i not in reached_units:
                unused.append(Definition(u.binds[0], u.line, "import", u.note))
            elif u.submodule and not any(c == u.submodule or c.startswith(u.submodule + ".") for c in chains):
                unused.append(Definition(u.binds[0], u.line, "import",
                                         f"{u.note} (binds {u.binds[0]}, which is used, but nothing reached uses "
                                         f"the attribute {u.submodule})"))
        elif u.binds and i not in reached_units and not u.root:
            for n in u.binds:
                if n.startswith("torch.ops.") and u.kind != "registration":
                    continue  # the op a @custom_op function defines: the function is reported
                note = u.note
                if n in written:
                    note = (note + "; " if note else "") + "reached code assigns it (`global`) but never reads it"
                unreachable.append(Definition(n, u.line, u.kind, note))
    key = lambda d: (d.line, d.name)  # noqa: E731
    return Result(sorted(unreachable, key=key), sorted(unused, key=key), mod.postponed, reached)


def unreachable_definitions(tree: ast.Module, symbol: str) -> list[tuple[str, int]]:
    """(name, line) of every top-level def, class or assigned name nothing reaches, in line order."""
    return [(d.name, d.line) for d in analyze(tree, symbol).unreachable]


class Provenance:
    """The `# --- Inlined from <path>:L<a>-L<b> ---` comment (or section header) a bundle line falls under."""

    def __init__(self, source: str):
        self.lines, self.labels = [], []
        for i, text in enumerate(source.split("\n"), 1):
            if text.startswith("# "):
                m = _MARKER.match(text)
                if m:
                    self.lines.append(i)
                    self.labels.append(m.group("src") or m.group("sec") or "invocation_example (A6)")

    def __call__(self, line: int) -> str:
        k = bisect.bisect_right(self.lines, line) - 1
        return self.labels[k] if k >= 0 else "the module's imports (A5)"


def describe(d: Definition, where: str) -> str:
    """One report line: `L<line> <name> (<kind>[, note]; from <provenance>)`."""
    extra = f", {d.note}" if d.note and d.kind != "import" else ""
    if d.kind == "import":
        return f"L{d.line} {d.name} ({d.note})"
    return f"L{d.line} {d.name} ({d.kind}{extra}; {where})"
