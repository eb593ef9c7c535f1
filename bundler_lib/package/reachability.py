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
  so a registration the bundle keeps is reached only where a `torch.ops` chain still names it, or where a
  module-level assignment passes the op's name and a function to a call, which looks the op up by name:
  vLLM >= 0.34's `_op = eager_bypass_custom_op("x", x_impl)`.)
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
  `triton.jit`, ...; see `common/annotations.py`), or its name is used as a value (passed, stored): e.g.
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
from dataclasses import dataclass

from bundler_lib.common.annotations import decorator_name
from bundler_lib.common.imports import catches_import_error, is_absent_binding
from bundler_lib.common.op_lookups import named_op_calls
from bundler_lib.common.scopes import alias_name, target_names
from bundler_lib.package.op_registrations import default_op_namespace, op_decorator, registered_op
from bundler_lib.package.references import DUNDER, ModuleFacts, References, Unit, name_of, target_bases


ROOT_NAMES = ("invocation_example",)


_MARKER = re.compile(
    r"^# (?:--- Inlined from (?P<src>.+?) ---|===== (?P<sec>.+?) =====|(?P<ex>invocation_example): .*)\s*$")


@dataclass(frozen=True)
class Definition:
    name: str
    line: int
    kind: str  # function, class, assignment, import
    note: str = ""  # the import statement; "decorated"; "calls on its right-hand side"


@dataclass(frozen=True)
class OptionalRead:
    """A name only an optional import binds (its `try` handler passes, or binds the absent package's stand-in), read
    by reached code: without the package, that code raises NameError, or ModuleNotFoundError naming the package
    where it calls the stand-in."""
    name: str
    line: int
    statement: str
    readers: tuple[str, ...]  # the reached top-level definitions that read it (`L<line>` for statements)


@dataclass
class Result:
    unreachable: list[Definition]  # defs, classes, assignments nothing reaches
    unused_imports: list[Definition]
    postponed_annotations: bool
    reached: set[str]  # the top-level names reached
    optional_reads: list[OptionalRead]


def _is_sys_modules_store(stmt: ast.Assign) -> bool:
    return (len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Subscript)
            and name_of(stmt.targets[0].value) == "sys.modules" and isinstance(stmt.value, ast.Name))


def _exec_into(stmt: ast.Expr) -> str | None:
    """`exec(code, X.__dict__)`: the name X whose namespace the statement fills."""
    c = stmt.value
    if (isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "exec" and len(c.args) >= 2
            and isinstance(c.args[1], ast.Attribute) and c.args[1].attr == "__dict__"
            and isinstance(c.args[1].value, ast.Name)):
        return c.args[1].value.id
    return None


class _Builder:
    def __init__(self, mod: ModuleFacts):
        self.mod = mod
        self.units: list[Unit] = []

    def refs(self, *nodes) -> References:
        r = References(self.mod)
        for n in nodes:
            if n is not None:
                r.visit(n)
        return r

    def add(self, stmt, kind: str, guard: References, refs: References | None = None, **kw) -> Unit:
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        u = Unit(line=stmt.lineno, start=start, kind=kind, **kw)
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

    def build(self, stmts, guard: References, probe: bool = False, bare: bool = False) -> None:
        """`probe`: the statements run inside a `try` that catches ImportError, where an import is a probe (its
        success or failure decides what the module defines) even when nothing reads the name it binds; `bare`:
        that `try`'s ImportError handlers only pass."""
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._definition(s, guard)
            elif isinstance(s, ast.Import):
                for al in s.names:
                    sub = al.name if (al.asname is None and "." in al.name) else None
                    text = f"import {al.name}" + (f" as {al.asname}" if al.asname else "")
                    self.add(s, "import", guard, binds=(alias_name(al),), submodule=sub, note=text,
                             probe=probe, bare_guard=bare)
            elif isinstance(s, ast.ImportFrom):
                self._import_from(s, guard, probe, bare)
            elif isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                self._assignment(s, guard)
            elif isinstance(s, ast.Expr):
                self._expression(s, guard)
            elif isinstance(s, (ast.If, ast.While, ast.For, ast.AsyncFor, ast.With, ast.AsyncWith, ast.Try,
                                getattr(ast, "TryStar", ast.Try))):
                self._compound(s, guard, probe)
            elif isinstance(s, (ast.Pass, ast.Global, ast.Nonlocal, ast.Break, ast.Continue, ast.Return)):
                continue
            else:  # del, assert, raise, match, ...: run for their effect
                self.add(s, "statement", guard, self.refs(s), root=True)

    def _definition(self, s, guard: References) -> None:
        kind = "class" if isinstance(s, ast.ClassDef) else "function"
        note = "decorated: " + ", ".join("@" + decorator_name(d) for d in s.decorator_list) \
            if s.decorator_list else ""
        binds, owners, ops = [s.name], [], []
        for d in s.decorator_list:
            role, key = op_decorator(d)
            if role == "defines":  # @torch.library.custom_op("ns::op"): the function is torch.ops.ns.op
                binds.append(key)
                ops.append(key)
            elif role == "implements":  # @torch.library.register_fake("ns::op"), @f.register_fake
                owners.append(key)
        u = self.add(s, kind, guard, self.refs(s), binds=tuple(binds), owners=tuple(owners), note=note)
        u.loads.update(ops)  # reaching the op reaches its fake/kernel registrations

    def _import_from(self, s: ast.ImportFrom, guard: References, probe: bool, bare: bool) -> None:
        if s.module == "__future__":
            return
        src = "." * (s.level or 0) + (s.module or "")
        for al in s.names:
            text = f"from {src} import {al.name}" + (f" as {al.asname}" if al.asname else "")
            if al.name == "*":
                self.add(s, "statement", guard, root=True, note=text)
            else:
                self.add(s, "import", guard, binds=(al.asname or al.name,), note=text, probe=probe, bare_guard=bare)

    def _assignment(self, s, guard: References) -> None:
        if isinstance(s, ast.AnnAssign) and s.value is None:
            return  # `x: T` binds nothing
        targets = s.targets if isinstance(s, ast.Assign) else [s.target]
        names: list[str] = []
        bases: list = []
        for t in targets:
            target_names(t, names)
            target_bases(t, bases)
        note = "calls on its right-hand side" if any(
            isinstance(n, ast.Call) for n in ast.walk(s.value)) else ""
        u = self.add(s, "assignment", guard, self.refs(s), binds=tuple(dict.fromkeys(names)),
                     bases=tuple(bases), note=note)
        u.loads.update(f"torch.ops.{self.mod.default_op_ns}.{op}" for _, op, _ in named_op_calls(s.value))
        if isinstance(s, ast.Assign) and _is_sys_modules_store(s):
            u.owners = (s.value.id,)  # resolved in analyze(): a module object registering itself

    def _expression(self, s: ast.Expr, guard: References) -> None:
        if isinstance(s.value, ast.Constant):
            return  # a docstring or `...`
        into = _exec_into(s)
        op = registered_op(s, self.mod.default_op_ns)
        if op:  # direct_register_custom_op(op_name="x", ...) defines torch.ops.vllm.x
            self.add(s, "registration", guard, self.refs(s), binds=(op,),
                     note="direct_register_custom_op")
        else:
            self.add(s, "statement", guard, self.refs(s), root=into is None,
                     owners=(into,) if into else ())

    def _compound(self, s, guard: References, probe: bool) -> None:
        """if/while, for, with and try: their bodies, guarded by what their header reads; loop and with targets
        are assignments."""
        if isinstance(s, (ast.If, ast.While)):
            self.build(s.body + s.orelse, self._merge(guard, self.refs(s.test)), probe)
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            g = self._merge(guard, self.refs(s.iter))
            names = []
            target_names(s.target, names)
            self.add(s, "assignment", g, binds=tuple(dict.fromkeys(names)), note="a for-loop target")
            self.build(s.body + s.orelse, g, probe)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            g = self._merge(guard, self.refs(*[i.context_expr for i in s.items]))
            for i in s.items:
                if i.optional_vars is not None:
                    names = []
                    target_names(i.optional_vars, names)
                    self.add(s, "assignment", g, binds=tuple(names), note="a with-statement target")
            self.build(s.body, g, probe)
        else:
            g = self._merge(guard, self.refs(*[h.type for h in s.handlers]))
            catching = [h for h in s.handlers if catches_import_error(h)]
            # a bare guard: its ImportError handlers pass, or bind the stand-ins of an absent package
            bare = bool(catching) and all(isinstance(x, ast.Pass) or is_absent_binding(x)
                                          for h in catching for x in h.body)
            self.build(s.body, g, probe or bool(catching), bare)
            for x in (x for h in s.handlers for x in h.body):
                if bare and is_absent_binding(x):
                    self.add(x, "assignment", g, self.refs(x), binds=tuple(t.id for t in x.targets),
                             note="an absent package's stand-in", bare_guard=True)
                else:
                    self.build([x], g, probe)
            self.build(s.orelse + s.finalbody, g, probe)

    def _merge(self, a: References, b: References) -> References:
        r = References(self.mod)
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
    mod = ModuleFacts(postponed_annotations(tree))
    mod.default_op_ns = default_op_namespace(tree)
    b = _Builder(mod)
    b.build(tree.body, References(mod))
    units = b.units
    defined = {n for u in units for n in u.binds}
    by_name = _resolve_owners(units)
    known: dict[int, set[str]] = {}  # id(unit) -> its edges, asked again for every optional name's readers

    def edges(u: Unit) -> set[str]:
        out = known.get(id(u))
        if out is None:
            out = known[id(u)] = _edges(u, mod, defined)
        return out

    reached_units, reached = _reach(units, by_name, [n for n in (symbol, *roots) if n], edges)
    unreachable, unused = _unreached(units, reached_units)
    key = lambda d: (d.line, d.name)  # noqa: E731
    optional = _optional_reads(units, reached_units, edges)
    return Result(sorted(unreachable, key=key), sorted(unused, key=key), mod.postponed, reached, optional)


def _optional_reads(units: list[Unit], reached_units: set[int], edges) -> list[OptionalRead]:
    """The names only a bare-guarded import binds that reached units read, with their readers."""
    bound_otherwise = {n for u in units if not u.bare_guard for n in u.binds}
    out = []
    for u in units:
        name = u.binds[0] if u.bare_guard and u.kind == "import" else None
        if name is None or name in bound_otherwise:
            continue
        readers = tuple(sorted({(r.binds[0] if r.binds else f"L{r.line}") for i in sorted(reached_units)
                                for r in [units[i]] if r is not u and name in edges(r)}))
        if readers:
            out.append(OptionalRead(name, u.line, u.note, readers))
    return sorted(out, key=lambda r: (r.line, r.name))


def _resolve_owners(units: list[Unit]) -> dict[str, list[int]]:
    """Settles each unit's owners (an owner the bundle does not define makes the unit a root) and roots the
    dunder assignments; returns name -> the units that bind or are owned by it."""
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
        if any(DUNDER.match(n) for n in u.binds):
            u.root = True
            if "__all__" in u.binds:
                u.uses_globals = True
        for n in u.binds + u.owners:
            by_name.setdefault(n, []).append(i)
    return by_name


def _edges(u: Unit, mod: ModuleFacts, defined: set[str]) -> set[str]:
    """The defined names a unit reaches: what it loads, the annotations evaluated, strings where it reads
    globals(), and the torch.ops.<ns>.<op> it calls."""
    out = set(u.loads)
    for cond, names in u.cond:
        if cond == "always" or cond == "all" and mod.evaluates_annotations or (
                isinstance(cond, tuple) and cond[1] in mod.value_names):
            out |= names
    if u.uses_globals:
        out |= u.strings & defined
    out.update(".".join(c.split(".")[:4]) for c in u.chains if c.startswith("torch.ops."))
    return out & defined


def _reach(units: list[Unit], by_name: dict[str, list[int]], todo: list[str], edges) -> tuple[set[int], set[str]]:
    """(the units reached, the names reached) from the roots `todo` and the root units."""
    reached_units: set[int] = set()
    reached: set[str] = set()
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
    return reached_units, reached


def _unreached(units: list[Unit], reached_units: set[int]) -> tuple[list[Definition], list[Definition]]:
    """(the definitions nothing reaches, the imports nothing uses)."""
    chains = {c for i in reached_units for c in units[i].chains}
    written = {n for i in reached_units for n in units[i].global_decls}
    unreachable, unused = [], []
    for i, u in enumerate(units):
        if u.kind == "import":
            if i not in reached_units and not u.probe:
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
    return unreachable, unused


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
