"""References of one top-level definition: the module-level names it reads, with scoping,
function-local imports, guard pruning (dead branches are not followed) and the edits A2 applies.

Edits (all positions are 1-based lines and 0-based UTF-8 byte columns of the original file):
  {"op": "span", "line", "col", "end_line", "end_col", "text"}   replace a span
  {"op": "delete", "line", "end_line"}                          drop whole lines
  {"op": "pass", "line", "end_line", "indent"}                  replace whole lines with `pass`
  {"op": "dedent", "line", "end_line", "cols"}                  remove `cols` leading spaces
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from bundler_lib.common.annotations import safe_decorator
from bundler_lib.common.imports import catches_import_error
from bundler_lib.common.scopes import TOKENS, comprehension_targets, parameter_names
from bundler_lib.variant import PLATFORMS

from .branches import IfPruner, remove_stmt, span
from .guards import PLATFORM_NAMES, GuardEval, Where, _tail
from .imports_scan import ImportScanning
from .index import ImportBinding, ModuleInfo, TreeIndex
from .scopes import _class_locals, _collect_locals, _Scope, literal_defaults, repeated_assignments


@dataclass
class Ref:
    name: str
    attrs: list[str]                   # attribute chain after the name
    nodes: list[ast.AST]               # [Name, Attribute(attrs[0]), Attribute(attrs[1]), ...]
    importtime: bool
    binding: ImportBinding | None = None   # a function-local import the name is bound to
    line: int = 0
    annotation: bool = False               # read in a function annotation (lazy in the bundle)
    decorated: bool = False                # ... of a function with a non-trivial decorator
    call_arg0: str | None = None           # the ref is called with this string constant first
    called: bool = False                   # called (or used as a decorator): its body runs
    call: ast.Call | None = None           # the call whose function the ref is (its arguments)
    # `getattr(<ref>, "<literal>"[, default])`: the literal (the ref reads that attribute), and whether a
    # default is given (the lookup may fail without harm)
    getattr_attr: str | None = None
    getattr_default: bool = False
    hasattr_probe: bool = False            # `hasattr(<ref>, "<literal>")`: the code checks the attribute is there


@dataclass
class Guard:
    line: int
    end_line: int
    predicate: str
    value: bool
    kept: str                          # "body", "orelse", "none"
    assumes: str = ""                  # what the value rests on besides the variant: the parameter defaults of a
                                       # held branch, the package a choice needs that the bundle lacks


@dataclass
class Scan:
    refs: list[Ref] = field(default_factory=list)
    edits: list[dict] = field(default_factory=list)
    guards: list[Guard] = field(default_factory=list)
    local_imports: list[ImportBinding] = field(default_factory=list)   # repo-local, function-level
    ext_local_imports: list[str] = field(default_factory=list)
    dead_imports: list[tuple[int, str]] = field(default_factory=list)  # vllm modules without source
    skipped: list[int] = field(default_factory=list)   # ids of the skipped statements met in live code
    attrs: set[str] = field(default_factory=set)      # attribute names read or written (method reach)
    # `self.<name>` / `cls.<name>` in a method: (name, the method's class); reaches only the classes that
    # `self` can be an instance of
    self_attrs: list[tuple[str, ast.ClassDef]] = field(default_factory=list)
    dynamic: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, text, importtime)
    held: list[Held] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)   # (line, what A1 decided there)


@dataclass
class Held:
    """A branch of a module-level function that is dead if the parameters `params` keep their defaults at every
    call in the closure (the graph decides that once the closure is known). `scan` holds what the branch (and
    its test) reads, followed if the branch is released; `edits` and `guard` prune it if it is not."""
    params: frozenset[str]
    scan: Scan
    edits: list[dict]
    guard: Guard


class RefScanner(ImportScanning):
    def __init__(self, index: TreeIndex, info: ModuleInfo, guard_eval: GuardEval, dataclass_annotations: bool = False):
        self.index = index
        self.info = info
        self.ge = guard_eval
        # follow stdlib dataclasses' field annotations (when the closure reads annotations at run time)
        self.dataclass_annotations = dataclass_annotations
        # what the evaluator is told of the code being scanned (Where)
        self.cls: tuple[str, ast.ClassDef] | None = None   # the class whose body or method is being scanned
        self.locals: dict[str, ast.expr] = {}   # the enclosing function's single assignments
        self.repeated: dict[str, tuple] = {}   # its locals bound several times by plain assignments: their values
        self.foreign_predicates: frozenset = frozenset()   # names bound to another platform's `-> bool` functions
        self.local_names: frozenset = frozenset()   # names local to the enclosing functions
        self.arg_names: frozenset = frozenset()   # parameters of the enclosing functions never rebound there
        self.none_params: frozenset = frozenset()   # parameters of the enclosing function that default to None
        self.platform_names = PLATFORM_NAMES   # with the `p = current_platform` aliases this scan has seen
        self.scan = Scan()
        self.scopes: list[_Scope] = []
        self.runtime_depth = 0
        self.follow_annotations = False
        self.annot = None
        self.annot_importtime = False
        self.branches = IfPruner(info.lines)   # the edits of decided ifs
        self.receiver: tuple[str, ast.ClassDef] | None = None   # the method's `self`/`cls` and its class
        # in the body of a module-level function: its literal parameter defaults, for held branches
        self.defaults: dict[str, object] = {}
        self.holding = False   # scanning a held branch (no branch inside it is held)
        self.import_guards: list[int] = []   # scope depths of the try bodies whose handlers catch ImportError

    # ------------------------------------------------------------ entry
    def run(self, stmt: ast.stmt, skip: set | None = None, cls: ast.ClassDef | None = None) -> Scan:
        self.skip = skip or set()
        self.cls = (self.info.name, cls) if cls is not None else None
        self.scopes = [_Scope("module", set(), {}, set())]
        if cls is not None:   # a method scanned on its own: its decorators see the class body
            local, imports, globals_ = _class_locals(cls, self.index, self.info)
            self.scopes.append(_Scope("class", local, imports, globals_))
        self._stmt_list([stmt], top=True)
        return self.scan

    # ------------------------------------------------------------ helpers
    def _where(self, **known) -> Where:
        return Where(module=self.info.name, cls=self.cls, locals=self.locals, repeated=self.repeated,
                     foreign_predicates=self.foreign_predicates, local_names=self.local_names,
                     platform_names=self.platform_names, arg_names=self.arg_names, none_params=self.none_params,
                     **known)

    def _evaluate(self, test: ast.expr):
        return self.ge.evaluate(test, self._where())

    def _lookup(self, name: str):
        """'local', an ImportBinding, or None (module global)."""
        for sc in reversed(self.scopes[1:]):
            if sc.kind == "class" and sc is not self.scopes[-1]:
                continue  # class scope is invisible to nested functions
            if name in sc.globals:
                return None
            if name in sc.local:   # bound locally otherwise too: local throughout (shadows the import)
                return "local"
            if name in sc.imports:
                return sc.imports[name]
        return None

    def _declared_global(self, name: str) -> bool:
        return self._lookup(name) is None and len(self.scopes) > 1 and any(name in sc.globals for sc in self.scopes[1:])

    def _ref(self, name_node: ast.Name, chain: list[ast.Attribute]):
        b = self._lookup(name_node.id)
        if b == "local":
            return
        self.scan.refs.append(Ref(
            name=name_node.id, attrs=[a.attr for a in chain], nodes=[name_node] + chain,
            importtime=self.runtime_depth == 0 and (self.annot is None or (self.annot and self.annot_importtime)),
            binding=b if isinstance(b, ImportBinding) else None, line=name_node.lineno,
            annotation=self.annot is not None, decorated=bool(self.annot)))

    def _external_root(self, d: ast.expr) -> bool:
        f = d.func if isinstance(d, ast.Call) else d
        while isinstance(f, ast.Attribute):
            f = f.value
        if not isinstance(f, ast.Name):
            return False
        b = self.info.imports.get(f.id)
        return b is not None and b.external and f.id not in self.info.defs

    # ------------------------------------------------------------ statements
    def _stmt_list(self, body: list[ast.stmt], top: bool = False) -> bool:
        """Scan a block; whether it always ends early (a decided return/raise: the rest is deleted)."""
        for i, st in enumerate(body):
            if id(st) in self.skip:
                self.scan.skipped.append(id(st))
                continue   # a member scanned on its own once reached (class members, block members)
            term = self._stmt(st, sole=len(body) == 1 and not top)
            if term and i + 1 < len(body):
                # a decided branch that always returns/raises: the rest of the block is dead
                rest = body[i + 1:]
                a = min([rest[0].lineno] + [d.lineno for d in getattr(rest[0], "decorator_list", [])])
                self.scan.edits.append({"op": "delete", "line": a, "end_line": rest[-1].end_lineno})
                self.scan.guards.append(Guard(line=a, end_line=rest[-1].end_lineno,
                                              predicate="unreachable after a decided return/raise",
                                              value=False, kept="none"))
            if term:
                return True
        return False

    def _remove_stmt(self, st: ast.stmt, sole: bool):
        self.scan.edits.append(remove_stmt(st, sole))

    def _stmt(self, st: ast.stmt, sole: bool):
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(st)
        elif isinstance(st, ast.ClassDef):
            self._class(st)
        elif isinstance(st, (ast.Import, ast.ImportFrom)):
            return self._import(st, sole)
        elif isinstance(st, ast.If):
            return self._if(st, sole)
        elif isinstance(st, ast.Try) and any(catches_import_error(h) for h in st.handlers):
            self.import_guards.append(len(self.scopes))
            try:
                self._stmt_list(st.body)
            finally:
                self.import_guards.pop()
            for h in st.handlers:
                self._generic(h)
            self._stmt_list(st.orelse)
            self._stmt_list(st.finalbody)
        elif (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
              and isinstance(st.value, (ast.Name, ast.Attribute))
              and (st.value.id if isinstance(st.value, ast.Name) else st.value.attr) == "current_platform"):
            self.platform_names = self.platform_names | {st.targets[0].id}   # `p = current_platform`
            self._expr(st.value)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name) and self._declared_global(st.target.id):
            self._ref(st.target, [])
            self._expr(st.value)
        elif isinstance(st, ast.AnnAssign):
            if self.scopes[-1].kind == "class" and self.follow_annotations == "classvar":
                # a stdlib dataclass reads only whether a field is a ClassVar / InitVar
                head = st.annotation.value if isinstance(st.annotation, ast.Subscript) else st.annotation
                if _tail(head) in ("ClassVar", "InitVar"):
                    self._expr(head, runtime=True)
            elif self.scopes[-1].kind == "class" and self.follow_annotations:
                self._expr(st.annotation, runtime=True)
            self._expr(st.target)
            if st.value is not None:
                self._expr(st.value)
        else:
            self._generic(st)

    def _generic(self, n: ast.AST):
        # ExceptHandler, withitem, match_case, comprehension, keyword, arguments...
        if isinstance(n, ast.ExceptHandler):
            if n.type is not None:
                self._expr(n.type)
            self._stmt_list(n.body)
            return
        for _, value in ast.iter_fields(n):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    self._stmt_list(value)
                else:
                    for v in value:
                        if isinstance(v, ast.expr):
                            self._expr(v)
                        elif isinstance(v, ast.AST):
                            self._generic(v)
            elif isinstance(value, ast.expr):
                self._expr(value)
            elif isinstance(value, ast.AST):
                self._generic(value)

    def _stdlib_dataclass(self, d: ast.expr) -> bool:
        f = d.func if isinstance(d, ast.Call) else d
        if isinstance(f, ast.Attribute):
            return f.attr == "dataclass" and isinstance(f.value, ast.Name) and self._binds(f.value.id, "dataclasses", None)
        return isinstance(f, ast.Name) and self._binds(f.id, "dataclasses", "dataclass")

    def _binds(self, name: str, module: str, attr: str | None) -> bool:
        """`name` is the module-level import of `module` (attr None) or of `module.attr`."""
        b = self.info.imports.get(name)
        return b is not None and b.external and b.module == module and b.attr == attr and name not in self.info.defs

    def _decorators(self, decos):
        for d in decos:
            before = len(self.scan.refs)
            self._expr(d)
            for r in self.scan.refs[before:]:
                r.called = True

    def _function(self, fn):
        self._decorators(fn.decorator_list)
        args = fn.args
        for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self._expr(d)
        nontrivial = [d for d in fn.decorator_list if not safe_decorator(d)]
        # annotations are followed when a decorator may read them; they are needed at import time only
        # when that decorator is the tree's own (e.g. an op registry inferring a schema)
        self.annot = bool(nontrivial)
        self.annot_importtime = any(not self._external_root(d) for d in nontrivial)
        for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None:
                self._expr(a.annotation)
        if fn.returns is not None:
            self._expr(fn.returns)
        self.annot = None
        params = parameter_names(args)
        local, imports, globals_, single = _collect_locals(fn.body, self.index, self.info, params)
        receiver = self.receiver
        if self.scopes[-1].kind == "class" and self.cls is not None:
            first = (args.posonlyargs + args.args)[:1]
            static = any(ast.unparse(d) == "staticmethod" for d in fn.decorator_list)
            self.receiver = ((first[0].arg, self.cls[1])
                             if first and not static and first[0].arg not in local else None)
        elif receiver is not None and (receiver[0] in params or receiver[0] in local):
            self.receiver = None
        arg_names = (self.arg_names | set(params)) - local
        local.update(params)
        defaults = self.defaults
        literal = literal_defaults(fn)
        self.defaults = literal if len(self.scopes) == 1 else {}
        self.scopes.append(_Scope("function", local, imports, globals_))
        self.runtime_depth += 1
        saved = (self.locals, self.local_names, self.arg_names, self.none_params, self.repeated,
                 self.foreign_predicates)
        self.locals, self.local_names = single, self.local_names | local | set(imports)
        self.repeated = repeated_assignments(fn.body, set(params))
        self.foreign_predicates = self.foreign_predicates | self._foreign_predicates(imports)
        self.arg_names = frozenset(arg_names - set(imports))
        self.none_params = frozenset(k for k, v in literal.items() if v is None)
        if not self._native_instead(fn):
            self._stmt_list(fn.body)
        (self.locals, self.local_names, self.arg_names, self.none_params, self.repeated,
         self.foreign_predicates) = saved
        self.defaults = defaults
        self.receiver = receiver
        self.runtime_depth -= 1
        self.scopes.pop()

    def _class(self, cls: ast.ClassDef):
        self._decorators(cls.decorator_list)
        for b in cls.bases:
            self._expr(b)
        for k in cls.keywords:
            self._expr(k.value)
        local, imports, globals_ = _class_locals(cls, self.index, self.info)
        self.scopes.append(_Scope("class", local, imports, globals_))
        prev, prev_cls = self.follow_annotations, self.cls
        self.cls = (self.info.name, cls)
        # field annotations are read by the decorator that makes fields of them (pydantic, vLLM's @config);
        # a stdlib dataclass under postponed annotations (the bundle's) only asks which are ClassVar/InitVar
        self.follow_annotations = any(not safe_decorator(d) for d in cls.decorator_list)
        if (cls.decorator_list and not self.dataclass_annotations
                and all(self._stdlib_dataclass(d) for d in cls.decorator_list)):
            self.follow_annotations = "classvar"
        self._stmt_list([st for st in cls.body if id(st) not in self.skip])
        self.follow_annotations, self.cls = prev, prev_cls
        self.scopes.pop()

    # ------------------------------------------------------------ guards
    def _if(self, st: ast.If, sole: bool) -> bool:
        value, atoms = self._evaluate(st.test)
        lacked = self._lacked_choice(st) if value is None else None
        if lacked:   # a choice whose package the bundle lacks: not taken, as where that package is not installed
            value = False
        if value is None and self._hold(st, sole, atoms):
            return False
        if value is None:
            for e, v in atoms:
                self._span(e, "True" if v else "False")
                self._record(e, v, st, "both")
            self._expr(st.test, skip={id(e) for e, _ in atoms})
            self._stmt_list(st.body)
            self._stmt_list(st.orelse)
            return False
        live = st.body if value else st.orelse
        self._record(st.test, value, st, "body" if value else ("orelse" if st.orelse else "none"),
                     f"the bundle lacks the package {lacked!r}, which this module imports for that choice"
                     if lacked else "")
        self.branches.prune_if(st, value, sole, self.scan.edits)
        self._stmt_list(live)
        return self._exits(live) and len(self.scopes) > 1

    def _hold(self, st: ast.If, sole: bool, atoms: list) -> bool:
        """In a module-level function's own body, an `if` that its parameters' defaults decide: scan the live
        branch as usual and hold the other (Held). `atoms`: what the variant alone decides in the test.
        Returns whether it did."""
        if (not self.defaults or self.holding or len(self.scopes) != 2 or self.scopes[-1].kind != "function"
                or self.branches.is_elif(st) or self.branches.written_elif(st)):
            return False
        where = self._where(params=self.defaults)
        value, _ = self.ge.evaluate(st.test, where)
        used = where.used_params
        if value is None or not used:
            return False
        main = self.scan
        self.scan, self.holding = Scan(), True
        try:
            for e, v in atoms:   # as for an undecided if
                self._span(e, "True" if v else "False")
                self._record(e, v, st, "both")
            self._expr(st.test, skip={id(e) for e, _ in atoms})
            self._stmt_list(st.orelse if value else st.body)
            held_scan, self.scan = self.scan, Scan()
            self.branches.prune_if(st, value, sole, self.scan.edits)
            edits = self.scan.edits
        finally:
            self.scan, self.holding = main, False
        assumes = ", ".join(f"{p}={self.defaults[p]!r}" for p in sorted(used))
        guard = Guard(line=st.lineno, end_line=st.end_lineno, predicate=ast.unparse(st.test), value=value,
                      kept="body" if value else ("orelse" if st.orelse else "none"),
                      assumes=f"every call in the closure leaves {assumes}")
        main.held.append(Held(frozenset(used), held_scan, edits, guard))
        self._stmt_list(st.body if value else st.orelse)
        return True

    def _exits(self, stmts: list[ast.stmt]) -> bool:
        """The block always returns or raises (through decided or two-sided ifs)."""
        if not stmts:
            return False
        last = stmts[-1]
        if isinstance(last, (ast.Return, ast.Raise)):
            return True
        if isinstance(last, ast.If):
            v, _ = self._evaluate(last.test)
            if v is not None:
                return self._exits(last.body if v else last.orelse)
            return self._exits(last.body) and self._exits(last.orelse)
        return False

    def _record(self, e, v, st, kept, assumes=""):
        self.scan.guards.append(Guard(line=st.lineno, end_line=st.end_lineno,
                                      predicate=ast.unparse(e), value=bool(v), kept=kept, assumes=assumes))

    def _span(self, e: ast.AST, text: str):
        self.scan.edits.append(span(e, text))

    def _expr(self, e: ast.expr, runtime: bool = False, skip: set | None = None):
        if runtime:
            self.runtime_depth += 1
        try:
            self._walk_expr(e, skip or set())
        finally:
            if runtime:
                self.runtime_depth -= 1

    def _walk_expr(self, e: ast.AST, skip: set):
        if id(e) in skip:
            return
        if isinstance(e, ast.Call):
            self._walk_call(e, skip)
            return
        if isinstance(e, ast.Attribute):
            self._walk_attribute(e, skip)
            return
        if isinstance(e, ast.Name):
            # a `global x` that is only assigned needs no module-level binding of x: only a read does (`del x`
            # and `x += ...` read it)
            if isinstance(e.ctx, ast.Load) or (isinstance(e.ctx, ast.Del) and self._declared_global(e.id)):
                self._ref(e, [])
            return
        if isinstance(e, ast.IfExp):
            value, atoms = self._evaluate(e.test)
            if value is not None:
                self._span(e.test, "True" if value else "False")
                self._span(e.orelse if value else e.body, "None")   # the dead arm names nothing inlined
                self.scan.guards.append(Guard(line=e.lineno, end_line=e.end_lineno,
                                              predicate=ast.unparse(e.test), value=value,
                                              kept="body" if value else "orelse"))
                self._walk_expr(e.body if value else e.orelse, skip)
                return
        if isinstance(e, ast.Dict) and self._platform_keyed(e, skip):
            return
        if isinstance(e, ast.Lambda):
            self._walk_lambda(e, skip)
            return
        if isinstance(e, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            self._walk_comprehension(e, skip)
            return
        if isinstance(e, ast.NamedExpr):
            self._walk_expr(e.value, skip)
            return
        for c in ast.iter_child_nodes(e):
            if type(c) not in TOKENS:
                self._walk_expr(c, skip)

    def _platform_keyed(self, e: ast.Dict, skip: set) -> bool:
        """A dict literal keyed by platform (`{PlatformEnum.CUDA: [...], PlatformEnum.CPU: [...]}`, vLLM's kernel
        tables): another platform's entries are read only on that platform, their values become None."""
        platform = self.ge.variant.get("platform")
        keyed = [k is not None and isinstance(k, ast.Attribute) and _tail(k.value) == "PlatformEnum" for k in e.keys]
        if not e.keys or not all(keyed):
            return False
        for k, v in zip(e.keys, e.values):
            self._walk_expr(k, skip)
            if k.attr.lower() in PLATFORMS and k.attr.lower() != platform:
                self._span(v, "None")
                self.scan.guards.append(Guard(line=v.lineno, end_line=v.end_lineno,
                                              predicate=f"current_platform._enum == {ast.unparse(k)}", value=False,
                                              kept="none"))
            else:
                self._walk_expr(v, skip)
        return True

    def _walk_call(self, e: ast.Call, skip: set):
        if isinstance(e.func, ast.Name) and e.func.id in self.foreign_predicates:
            # another platform's yes/no question (guards.py): no; the call, and the stub its import became, never run
            self._span(e, "False")
            self.scan.guards.append(Guard(line=e.lineno, end_line=e.end_lineno, predicate=ast.unparse(e.func) + "(...)",
                                          value=False, kept="none"))
            return
        if isinstance(e.func, ast.Name) and e.func.id in (
                "getattr", "hasattr", "setattr") and len(e.args) >= 2 and isinstance(e.args[1], ast.Constant) \
                and isinstance(e.args[1].value, str):
            self.scan.attrs.add(e.args[1].value)
        fname = e.func.attr if isinstance(e.func, ast.Attribute) else getattr(e.func, "id", "")
        if fname in ("import_module", "__import__") and not (
                e.args and isinstance(e.args[0], ast.Constant)
                and not str(e.args[0].value).split(".")[0] in self.index.top_packages):
            self.scan.dynamic.append((e.lineno, ast.unparse(e)[:120], self.runtime_depth == 0))
        before = len(self.scan.refs)
        self._walk_expr(e.func, skip)
        for r in self.scan.refs[before:]:
            r.called = True
        if len(self.scan.refs) == before + 1 and self.scan.refs[-1].nodes[-1] is e.func:
            self.scan.refs[-1].call = e
        if (len(self.scan.refs) == before + 1 and e.args and isinstance(e.args[0], ast.Constant)
                and isinstance(e.args[0].value, str)):
            self.scan.refs[-1].call_arg0 = e.args[0].value
        for i, c in enumerate(e.args + [k.value for k in e.keywords]):
            before = len(self.scan.refs)
            self._walk_expr(c, skip)
            if (i == 0 and isinstance(e.func, ast.Name) and e.func.id in ("getattr", "hasattr")
                    and self._lookup(e.func.id) is None
                    and 2 <= len(e.args) <= (3 if e.func.id == "getattr" else 2) and not e.keywords
                    and isinstance(e.args[1], ast.Constant)
                    and isinstance(e.args[1].value, str) and len(self.scan.refs) == before + 1
                    and self.scan.refs[-1].nodes[-1] is c):
                self.scan.refs[-1].getattr_attr = e.args[1].value
                self.scan.refs[-1].getattr_default = len(e.args) == 3
                self.scan.refs[-1].hasattr_probe = e.func.id == "hasattr"

    def _walk_attribute(self, e: ast.Attribute, skip: set):
        chain = []
        cur = e
        while isinstance(cur, ast.Attribute):
            chain.append(cur)
            cur = cur.value
        on_self = isinstance(cur, ast.Name) and self.receiver is not None and cur.id == self.receiver[0]
        for a in chain[:-1] if on_self else chain:
            self.scan.attrs.add(a.attr)
        if on_self:
            self.scan.self_attrs.append((chain[-1].attr, self.receiver[1]))
        if isinstance(cur, ast.Name):
            self._ref(cur, list(reversed(chain)))
            return
        self._walk_expr(cur, skip)

    def _walk_lambda(self, e: ast.Lambda, skip: set):
        for d in e.args.defaults + [d for d in e.args.kw_defaults if d is not None]:
            self._walk_expr(d, skip)
        names = set(parameter_names(e.args))
        self.scopes.append(_Scope("function", names, {}, set()))
        self.runtime_depth += 1
        receiver = self.receiver
        if receiver is not None and receiver[0] in names:
            self.receiver = None
        self._walk_expr(e.body, skip)
        self.receiver = receiver
        self.runtime_depth -= 1
        self.scopes.pop()

    def _walk_comprehension(self, e: ast.expr, skip: set):
        names = comprehension_targets(e.generators)
        self._walk_expr(e.generators[0].iter, skip)
        self.scopes.append(_Scope("function", names, {}, set()))
        for i, g in enumerate(e.generators):
            if i:
                self._walk_expr(g.iter, skip)
            for c in g.ifs:
                self._walk_expr(c, skip)
        if isinstance(e, ast.DictComp):
            self._walk_expr(e.key, skip)
            self._walk_expr(e.value, skip)
        else:
            self._walk_expr(e.elt, skip)
        self.scopes.pop()


class Scanner:
    """Scans statements of the tree with one evaluator (the graph's engine calls it for every node)."""

    def __init__(self, index: TreeIndex, ge: GuardEval, dataclass_annotations: bool = False):
        self.index, self.ge, self.dataclass_annotations = index, ge, dataclass_annotations

    def stmt(self, info: ModuleInfo, stmt: ast.stmt, skip: set | None = None, cls: ast.ClassDef | None = None) -> Scan:
        """References of one top-level statement (`skip`: ids of class-body statements left out; `cls`: the
        class of a method scanned on its own)."""
        return RefScanner(self.index, info, self.ge, self.dataclass_annotations).run(stmt, skip, cls)

    def expr(self, info: ModuleInfo, expr: ast.expr) -> Scan:
        """References of one module-level expression (e.g. one entry of a dict literal)."""
        r = RefScanner(self.index, info, self.ge, self.dataclass_annotations)
        r.skip = set()
        r.scopes = [_Scope("module", set(), {}, set())]
        r._expr(expr)
        return r.scan

