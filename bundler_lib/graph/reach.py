"""Symbol-level reachability: from the target definition, follow every reference it can make at run
time (dead guard branches excluded), parsing only the modules it reaches."""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field

from bundler_lib.errors import StageError
from bundler_lib.variant import BY_NAME_REGISTRIES, foreign_forwards, foreign_platform, platform_class

from .abstract import abstract_stubs, c3, declares_abc, super_reads
from .guards import _UNKNOWN, GuardEval, env_default_value
from .index import Stmt, TreeIndex, _mutated_base, overload_stubs
from .refs import Held, Ref, Scan, literal_defaults, scan_expr, scan_stmt
from .resolve import Resolver, Target

STAGE = "A1 graph"


@dataclass
class Node:
    key: tuple[str, int]            # (module, stmt idx) or (module, -n) for synthetic nodes
    module: str
    file: str
    names: list[str]
    kind: str                       # function, class, assign, block, synthetic
    line: int
    end_line: int
    stmt: ast.stmt | None
    scan: Scan | None = None
    triton: str | None = None       # kernel / helper when @triton.jit
    synthetic: dict | None = None   # {"template": "...{CudaPlatform}...", "deps": {placeholder: key}}
    # resolved references: (ref, target node key, defined name, attrs consumed)
    links: list[tuple[Ref, tuple[str, int], str, int]] = field(default_factory=list)
    op_links: list[tuple[Ref, str, tuple[str, int], str]] = field(default_factory=list)
    deps: dict[tuple[str, int], bool] = field(default_factory=dict)   # key -> importtime
    calls: set = field(default_factory=set)    # deps called at import time (their bodies run)
    ctor_deps: set | None = None               # class: what creating/instantiating it can run
    ext_links: list[tuple[Ref, str, str, str]] = field(default_factory=list)  # ref, stmt, bound, object
    scans: list[Scan] = field(default_factory=list)    # method scans (class nodes)
    attached: list[tuple[str, int]] = field(default_factory=list)  # `X.a = v` statements after X
    extra_edits: list[dict] = field(default_factory=list)
    entries: dict | None = None       # keyed dict: {key: (key node, value node)}; None otherwise
    entries_kept: set = field(default_factory=set)
    dropped: dict[int, ast.stmt] = field(default_factory=dict)   # id -> class-body methods not reached
    stubs: set[int] = field(default_factory=set)   # ids of dropped @overload stubs (never reached)
    abstract: set[int] = field(default_factory=set)   # ids of abstract methods that do nothing (abstract.py)

    @property
    def name(self) -> str:
        return self.names[0]


def _accessor_of(fn: ast.AST, dname: str) -> bool:
    """fn(name, ...) reads dict `dname` only as `dname[name]` or `name in dname`."""
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.args.args:
        return False
    p = fn.args.args[0].arg
    ok_ids = set()
    uses = 0
    for x in ast.walk(fn):
        if isinstance(x, ast.Subscript) and isinstance(x.value, ast.Name) and x.value.id == dname \
                and isinstance(x.slice, ast.Name) and x.slice.id == p:
            ok_ids.add(id(x.value))
        elif isinstance(x, ast.Compare) and len(x.ops) == 1 and isinstance(x.ops[0], (ast.In, ast.NotIn)) \
                and isinstance(x.left, ast.Name) and x.left.id == p and isinstance(x.comparators[0], ast.Name) \
                and x.comparators[0].id == dname:
            ok_ids.add(id(x.comparators[0]))
    for x in ast.walk(fn):
        if isinstance(x, ast.Name) and x.id == dname:
            uses += 1
            if id(x) not in ok_ids:
                return False
    return uses > 0


def _always_kept(name: str) -> bool:
    """Methods called by protocol rather than by name in the code."""
    return (name.startswith("__") and name.endswith("__")) or name == "forward"


def _bases(cls: ast.ClassDef) -> list[ast.expr]:
    """The class's bases, `Base[T]` read as `Base`."""
    return [b.value if isinstance(b, ast.Subscript) else b for b in cls.bases]


def _returned(fn: ast.FunctionDef) -> ast.expr | None:
    """The expression of a function whose body (its docstring aside) is one `return <expr>`."""
    body = [b for b in fn.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        return None
    return body[0].value


def _caches(d: ast.expr) -> bool:
    """A decorator that only caches the function's result."""
    name = ast.unparse(d)
    return name in ("cache", "functools.cache", "lru_cache", "functools.lru_cache") or name.startswith(
        ("lru_cache(", "functools.lru_cache("))


_ANNOTATION_READERS = {"get_type_hints", "get_annotations"}

# External bases under which a class attribute stays a plain class attribute.
_PLAIN_EXTERNAL_BASES = {"object", "ABC", "abc.ABC", "Generic", "typing.Generic", "nn.Module", "torch.nn.Module"}


def _member_name(st: ast.stmt, attributes: bool) -> str | None:
    """The name a class-body statement defines, where it may be left out until read by that name: a method;
    with `attributes`, also a class attribute whose value runs no code (`name = <literal or name>`,
    `name: T = ...`, `name: T`)."""
    if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return st.name
    if not attributes:
        return None
    if isinstance(st, ast.Assign) and len(st.targets) == 1:
        target, value = st.targets[0], st.value
    elif isinstance(st, ast.AnnAssign) and st.simple:
        target, value = st.target, st.value
    else:
        return None
    if not isinstance(target, ast.Name) or target.id.startswith("__"):
        return None
    if value is not None and any(isinstance(x, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr))
                                 for x in ast.walk(value)):
        return None
    return target.id


def _is_triton_jit(st: ast.stmt) -> bool:
    if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for d in st.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        t = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else "")
        if t == "jit":
            base = f.value if isinstance(f, ast.Attribute) else None
            if base is None or (isinstance(base, ast.Name) and base.id in ("triton", "tl")):
                return True
    return False


def import_stmt(b) -> tuple[str, str]:
    """(import statement text, the object it binds) for an external ImportBinding."""
    if b.attr is None:
        if b.name == b.module.split(".")[0] and b.name != b.module and "." in b.module:
            return f"import {b.module}", b.name
        if b.name == b.module:
            return f"import {b.module}", b.module
        return f"import {b.module} as {b.name}", b.module
    stmt = f"from {b.module} import {b.attr}" + (f" as {b.name}" if b.name != b.attr else "")
    return stmt, f"{b.module}.{b.attr}"


class Graph:
    def __init__(self, index: TreeIndex, variant: dict):
        self.index = index
        self.variant = variant
        self.res = Resolver(index)
        self.ge = GuardEval(variant)
        self._unq: set[str] | None = None
        self.ge.unquantized_bases = self.unquantized_bases
        self.ge.env_default = self.env_default
        self.ge.method_predicate = self.method_predicate
        self.ge.global_predicate = self.global_predicate
        self.ge.function_predicate = self.function_predicate
        self.ge.is_custom_op = self.is_custom_op
        self._predicates: dict[tuple[str, str], bool | None] = {}
        self._env_defaults: dict | None = None
        self.nodes: dict[tuple[str, int], Node] = {}
        self.externals: dict[str, tuple[str, str]] = {}   # import statement -> (bound name, object)
        self.lazy_refs: set[int] = set()   # id() of refs read only by annotations that are never evaluated
        self.notes: list[str] = []
        self.unresolved: list[dict] = []
        self.dynamic: list[dict] = []   # importlib.import_module / __import__ calls: not followed
        self.cuda_ops: dict[str, dict] = {}
        self.python_custom_ops: dict[str, tuple[str, int]] = {}
        self._custom_op_index: dict[str, tuple[str, ast.Call]] | None = None
        self._py_ns: set[str] | None = None
        self._queue: list[tuple[str, int]] = []
        self.attr_names: set[str] = set()
        self.roots: set[tuple[str, int]] = set()
        self.pending: dict[str, list[tuple[Node, ast.stmt]]] = {}
        self._mqueue: list[tuple[Node, ast.stmt]] = []
        self.annotated: set[tuple[str, int]] = set()   # nodes whose annotations are evaluated (custom ops)
        self.getattr_keys: dict[str, set[str]] = {}
        self._keyed: dict[str, set[int]] = {}
        self._full_dicts: set[tuple[str, int]] = set()
        self.scans: dict[str, object] = {}   # results of the tree-wide text scans this graph used (memo.py)
        self._deferred: dict[int, tuple[Node, ast.stmt]] = {}   # abstract stubs reached by name, not kept yet
        self._released: set[int] = set()
        self._mros: dict[int, list[ast.ClassDef]] = {}
        self._attrs_of: dict[tuple[str, int], set[tuple[str, str]]] = {}
        self._supers: dict[int, set[str]] = {}   # id(ClassDef) -> names it reads through super()
        # `self.<name>` reads: name -> {id(ClassDef): ClassDef} of the classes whose methods read it
        self._self_reads: dict[str, dict[int, ast.ClassDef]] = {}
        self._open: dict[int, bool] = {}   # id(ClassDef) -> it has a base the tree does not resolve
        self._class_module: dict[int, str] = {}   # id(ClassDef) -> its module, for the classes of MROs
        self._held: list[tuple[Node, Scan, Held]] = []   # branches dead while parameters keep their defaults
        self._entered: set[tuple[str, int]] = set()   # nodes reached other than by a reference in the code
        self._defaults: dict[tuple[str, int], dict[str, object]] = {}

    # ------------------------------------------------------------ nodes
    def node_for(self, module: str, st: Stmt, by_ref: bool = False) -> Node:
        key = (module, st.idx)
        if not by_ref:
            self._entered.add(key)
        n = self.nodes.get(key)
        if n is None:
            info = self.index.get(module)
            n = Node(key=key, module=module, file=info.path, names=list(st.names), kind=st.kind,
                     line=st.line, end_line=st.end_line, stmt=st.node)
            if _is_triton_jit(st.node):
                n.triton = "kernel"
            if st.kind == "attached":
                n.names = [f"{_mutated_base(st.node)}.<{st.line}>"]
            self.nodes[key] = n
            self._queue.append(key)
            for nm in st.names:
                for att in info.attached.get(nm, []):
                    a = self.node_for(module, att)
                    n.attached.append(a.key)
        return n

    def build(self, module: str, name: str) -> Node:
        info = self.index.get(module)
        stmts = info.defs[name]
        root = None
        # the target keeps every method (its public API) but the other platforms' forwards
        self.roots = {(module, st.idx) for st in stmts}
        for st in stmts:
            n = self.node_for(module, st)
            root = root or n
        self._drain()
        return root

    def add_roots(self, roots: list[str], why: str) -> list[str]:
        """Reach `file::Name` or `file::Class.method` too, where the closure reaches that file (a method root
        keeps that method on every reached class, as a caller that calls it on any module would); repeated
        until no root's file is newly reached. Returns the roots the tree does not define."""
        missing, added = [], []
        todo = list(roots)
        while True:
            reached = {n.module for n in self.nodes.values()}
            progress = False
            for r in list(todo):
                path, _, qual = r.partition("::")
                module = self.index.module_of_path(path)
                name, _, method = qual.partition(".")
                if module is None or name not in self.index.get(module).defs:
                    missing.append(r)
                    todo.remove(r)
                    continue
                if module not in reached:
                    continue
                todo.remove(r)
                added.append(r)
                progress = True
                for st in self.index.get(module).defs[name]:
                    self.node_for(module, st)
                if method:
                    self._reach_attr(method)
            self._drain()
            if not progress:
                break
        self.notes.append(f"extra roots ({why}): " + ", ".join(added)
                          + (f"; not in this tree: {', '.join(missing)}" if missing else ""))
        return missing

    def add_ir_providers(self) -> list[str]:
        """vLLM registers the implementations of its IR ops (vllm.ir) when vllm.kernels is imported
        (Platform.import_ir_kernels) and dispatches by the priority the worker sets once
        (KernelConfig.ir_op_priority.set_default(), vllm/v1/worker/worker_base.py). For each IR op the closure
        reaches: reach the registrations of the variant's providers (vllm/kernels/<provider>.py) and a
        statement that sets the variant's priority as the worker does. Returns the ops set."""
        priority = str(self.variant.get("ir_op_priority", "native")).split(",")
        ops: dict[str, tuple] = {}
        for n in list(self.nodes.values()):
            if not n.module.startswith("vllm.ir.ops.") or n.stmt is None:
                continue
            node = n.stmt
            decorators = [getattr(d.func if isinstance(d, ast.Call) else d, "id", None)
                          for d in getattr(node, "decorator_list", [])]
            if isinstance(node, ast.FunctionDef) and "register_op" in decorators:
                st = next(x for x in self.index.get(n.module).defs[node.name] if x.node is node)
                ops[node.name] = (n.module, st, node.name)
        if not ops:
            return []
        impls: list[tuple] = []
        for provider in priority:
            module = f"vllm.kernels.{provider}"
            if provider == "native" or not self.index.has_module(module):
                continue
            info = self.index.get(module)
            for name, stmts in sorted(info.defs.items()):
                for st in stmts:
                    for d in getattr(st.node, "decorator_list", []):
                        f = d.func if isinstance(d, ast.Call) else None
                        if (isinstance(f, ast.Attribute) and f.attr == "register_impl"
                                and isinstance(f.value, ast.Attribute) and f.value.attr in ops
                                and d.args and isinstance(d.args[0], ast.Constant) and d.args[0].value == provider):
                            self.node_for(module, st)
                            impls.append((module, st, name))
        self._drain()
        names = sorted(ops)
        setter = "".join(f"@@{i}@@.set_default(@@NAME@@)\n" for i in range(len(names)))
        template = ("# The bundle builder (A1): vLLM's worker sets this dispatch priority of the IR ops at start-up\n"
                    "# (KernelConfig.ir_op_priority.set_default(), vllm/v1/worker/worker_base.py); this bundle's\n"
                    f"# variant (ir_op_priority={','.join(priority)}) sets it for the IR ops it holds.\n"
                    f"@@NAME@@ = {priority!r}\n" + setter)
        module, st, _ = ops[names[0]]
        self._reach_attr("set_default")   # the method the statement calls on each op
        self._synthetic(module, "_bundle_ir_op_priority", template, [ops[k] for k in names] + impls,
                        file=self.index.get(module).path, line=st.line, end_line=st.end_line)
        self._drain()
        self.notes.append(f"IR ops {', '.join(names)}: priority {priority} set at import as vLLM's worker sets it; "
                          f"implementations reached: {', '.join(f'{m}.{n}' for m, _, n in impls) or 'native only'}")
        return names

    def annotation_readers(self) -> list[str]:
        """What in the closure evaluates annotations at run time (typing.get_type_hints and the like)."""
        found = set()
        for _, obj in self.externals.values():
            if obj.rsplit(".", 1)[-1] in _ANNOTATION_READERS:
                found.add(obj)
        for n in self.nodes.values():
            for ref, _, _, obj in n.ext_links:
                for a in ref.attrs[:1]:
                    if a in _ANNOTATION_READERS:
                        found.add(f"{obj}.{a}")
        if "__annotations__" in self.attr_names:
            found.add(".__annotations__")
        return sorted(found)

    def _reach_attr(self, a: str) -> None:
        if a not in self.attr_names:
            self.attr_names.add(a)
            for item in self.pending.pop(a, []):
                self._mqueue.append(item)

    def _drain(self) -> None:
        while True:
            while self._queue or self._mqueue:
                if self._mqueue:
                    n, st = self._mqueue.pop(0)
                    self._process_method(n, st)
                    continue
                key = self._queue.pop(0)
                self._process(self.nodes[key])
            if self._release_self_reads() or self._release_held():
                continue
            released = [k for k, (n, st) in self._deferred.items() if self._abstract_needed(n, st)]
            if not released:
                return
            for k in released:
                self._released.add(k)
                self._mqueue.append(self._deferred.pop(k))

    # ------------------------------------------------------------ members read through self
    def _release_self_reads(self) -> bool:
        """Queue the pending members that a `self.<name>` read can reach: `self` in a method of class C is an
        instance of a reached class E whose MRO holds C; the member of class D runs when D is in E's MRO too.
        A class with a base the tree does not resolve may hold any class. Returns whether any was queued."""
        names = [a for a in self._self_reads if a in self.pending]
        if not names:
            return False
        mros = []
        for d in list(self.nodes.values()):
            if isinstance(d.stmt, ast.ClassDef):
                mro = self._mro(d.module, d.stmt)
                mros.append(({id(c) for c in mro}, any(self._open_bases(self._class_module[id(c)], c) for c in mro)))
        queued = False
        for a in names:
            readers = self._self_reads[a]
            keep = []
            for n, st in self.pending[a]:
                d = id(n.stmt)
                if any(opened or (d in ids and any(c in ids for c in readers)) for ids, opened in mros):
                    self._mqueue.append((n, st))
                    queued = True
                else:
                    keep.append((n, st))
            if keep:
                self.pending[a] = keep
            else:
                del self.pending[a]
        return queued

    # ------------------------------------------------------------ branches held on parameter defaults
    def _release_held(self) -> bool:
        """Follow the held branches whose parameters some call in the closure may set to other than their
        default. The closure only grows, so a branch released stays released; one still held when the closure
        is complete is dead (settle_held). Returns whether any was released."""
        if not self._held:
            return False
        sites = self._call_sites()
        keep, released = [], []
        for item in self._held:
            n, _, h = item
            if all(self._default_everywhere(n.key, p, sites, set()) for p in h.params):
                keep.append(item)
            else:
                released.append(item)
        self._held = keep
        for n, _, h in released:
            n.scans.append(h.scan)
            self._absorb(n, h.scan)
        return bool(released)

    def settle_held(self) -> None:
        """The closure is complete: prune the branches still held."""
        for _, scan, h in self._held:
            scan.edits.extend(h.edits)
            scan.guards.append(h.guard)
        self._held = []

    def _call_sites(self) -> dict[tuple[str, int], list | None]:
        """Module-level function node -> [(calling node, ast.Call)] for every reference to it in the closure,
        or None when one is not a plain call (a value, a decorator, an attribute, a splat of arguments),
        or when it is reached otherwise (a root, a registration, a synthetic statement)."""
        sites: dict[tuple[str, int], list | None] = {}
        for d in self.nodes.values():
            linked = set()
            for ref, key, _, used in d.links:
                linked.add(key)
                t = self.nodes.get(key)
                if t is None or t.kind != "function" or sites.get(key, []) is None:
                    continue
                if used == len(ref.attrs) and ref.call is not None and not ref.importtime:
                    sites.setdefault(key, []).append((d, ref.call))
                else:
                    sites[key] = None
            for _, _, key, _ in d.op_links:
                sites[key] = None
            for key in d.deps:
                if key not in linked:
                    sites[key] = None
        for key in self._entered | self.roots:
            sites[key] = None
        return sites

    def _literal_defaults(self, n: Node) -> dict[str, object]:
        hit = self._defaults.get(n.key)
        if hit is None:
            fn = n.stmt
            ok = n.kind == "function" and isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and all(
                _caches(d) for d in fn.decorator_list)
            hit = self._defaults[n.key] = literal_defaults(fn) if ok else {}
        return hit

    def _default_everywhere(self, key: tuple[str, int], p: str, sites: dict, assumed: set) -> bool:
        """Every call of function `key` in the closure leaves parameter `p` at its literal default: it omits
        it, passes that literal, or forwards a parameter of the calling function that is the same default
        everywhere in turn."""
        calls = sites.get(key)
        n = self.nodes[key]
        defaults = self._literal_defaults(n)
        if calls is None or p not in defaults:
            return False
        if (key, p) in assumed:
            return True   # a cycle of forwards: nothing in it sets another value
        assumed.add((key, p))
        want = defaults[p]
        a = n.stmt.args
        positional = [x.arg for x in a.posonlyargs + a.args]

        def same(x) -> bool:
            return type(x) is type(want) and x == want

        for caller, call in calls:
            if any(isinstance(x, ast.Starred) for x in call.args) or any(k.arg is None for k in call.keywords):
                return False
            given = [k.value for k in call.keywords if k.arg == p]
            if p in positional and positional.index(p) < len(call.args):
                given.append(call.args[positional.index(p)])
            for v in given:
                if isinstance(v, ast.Constant) and same(v.value):
                    continue
                if (isinstance(v, ast.Name) and same(self._literal_defaults(caller).get(v.id, _UNKNOWN))
                        and self._default_everywhere(caller.key, v.id, sites, assumed)):
                    continue
                return False
        return True

    def _open_bases(self, module: str, cls: ast.ClassDef) -> bool:
        """The class has a base that is neither a class of the tree nor an import from outside it."""
        hit = self._open.get(id(cls))
        if hit is None:
            hit = False
            for base in _bases(cls):
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if not isinstance(root, ast.Name):
                    hit = True
                elif self._base_def(module, base) is None:
                    hit = self.res.name(module, root.id).kind not in ("external", "builtin")
                if hit:
                    break
            self._open[id(cls)] = hit
        return hit

    # ------------------------------------------------------------ abstract methods (abstract.py)
    def _mro(self, module: str, cls: ast.ClassDef, depth: int = 0) -> list[ast.ClassDef]:
        """The class's method resolution order over the bases the tree defines."""
        hit = self._mros.get(id(cls))
        if hit is not None:
            return hit
        self._class_module[id(cls)] = module
        self._mros[id(cls)] = [cls]   # a cycle or a too deep chain ends here
        bases = []
        for b in _bases(cls):
            found = self._base_def(module, b)
            if found is not None and depth < 30:
                bases.append(self._mro(*found, depth + 1))
        self._mros[id(cls)] = out = c3(cls, bases)
        return out

    def _abstract_needed(self, n: Node, st: ast.FunctionDef) -> bool:
        """Something can run the abstract stub `st` of class node `n` (abstract.py)."""
        if any(ast.unparse(d) in ("classmethod", "staticmethod") for d in st.decorator_list):
            return True   # runs on the abstract class itself
        if not any(declares_abc(c) for c in self._mro(n.module, n.stmt)):
            return True   # not enforced: an instance may run the stub
        nodes = [d for d in list(self.nodes.values()) if d.stmt is not None]
        cls, meth = n.stmt.name, st.name
        sources = {}
        for d in nodes:
            if d.module not in sources:
                src = self.index.get(d.module).source
                sources[d.module] = cls in src and meth in src
            if sources[d.module] and (cls, meth) in self._name_attrs(d):
                return True
        for d in nodes:
            if isinstance(d.stmt, ast.ClassDef):
                mro = self._mro(d.module, d.stmt)
                k = next((i for i, c in enumerate(mro) if c is n.stmt), None)
                if k is not None and any(st.name in self._super_reads(c) for c in mro[:k + 1]):
                    return True
        return False

    def _super_reads(self, cls: ast.ClassDef) -> set[str]:
        hit = self._supers.get(id(cls))
        if hit is None:
            hit = self._supers[id(cls)] = super_reads(cls)
        return hit

    def _name_attrs(self, n: Node) -> set[tuple[str, str]]:
        """(name, attr) of every `name.attr` in the node's statement."""
        hit = self._attrs_of.get(n.key)
        if hit is None:
            hit = self._attrs_of[n.key] = {(x.value.id, x.attr) for x in ast.walk(n.stmt)
                                            if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Name)}
        return hit

    def _process(self, n: Node) -> None:
        if n.stmt is None:
            return
        info = self.index.get(n.module)
        skip = set()
        if isinstance(n.stmt, ast.ClassDef):
            # names the class body itself reads (e.g. a helper def called while the class is created)
            body_reads = set()
            for st in n.stmt.body:
                parts = [st] if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) else st.decorator_list
                for part in parts:
                    body_reads |= {x.id for x in ast.walk(part) if isinstance(x, ast.Name)
                                   and not isinstance(x.ctx, ast.Store)}
            foreign = foreign_forwards(self.variant)
            plain = n.key not in self.roots and self._plain_class(n.module, n.stmt)
            stubs = overload_stubs(n.stmt.body)
            if n.key not in self.roots:
                n.abstract = abstract_stubs(n.stmt.body)
            for st in n.stmt.body:
                name = _member_name(st, plain)
                if id(st) in stubs:
                    skip.add(id(st))
                    n.dropped[id(st)] = st
                    n.stubs.add(id(st))
                elif (name and not _always_kept(name) and name not in body_reads
                        and (n.key not in self.roots or name in foreign)):
                    skip.add(id(st))
                    n.dropped[id(st)] = st
        if n.key[1] in self.keyed_dicts(n.module):
            value = n.stmt.value
            n.entries = {k.value: (k, v) for k, v in zip(value.keys, value.values)}
            n.scan = Scan()
            keys = self.getattr_keys.get(n.module, set())
            if n.key in self._full_dicts:
                keys = set(n.entries)
            for key in sorted(keys):
                self._mqueue.append((n, ("entry", key)))
            return
        n.scan = scan_stmt(self.index, info, n.stmt, self.ge, skip)
        before = set(n.deps)
        self._absorb(n, n.scan)
        if isinstance(n.stmt, ast.ClassDef):
            n.ctor_deps = set(n.deps) - before   # class body, bases, decorators, dunder methods
        for st in list(n.dropped.values()):
            if id(st) in n.stubs:
                continue
            name = _member_name(st, True)
            if name in self.attr_names:
                self._mqueue.append((n, st))
            else:
                self.pending.setdefault(name, []).append((n, st))

    def _plain_class(self, module: str, cls: ast.ClassDef, depth: int = 0) -> bool:
        """A class whose body assignments are only class attributes: no decorator or metaclass keyword that
        could turn them into fields (dataclass, pydantic, NamedTuple, Enum members), through every base."""
        if cls.decorator_list or cls.keywords or depth > 20:
            return False
        for base in _bases(cls):
            text = ast.unparse(base)
            if text in _PLAIN_EXTERNAL_BASES:
                continue
            if not isinstance(base, ast.Name):
                return False
            found = self._sole_def(module, base.id, ast.ClassDef)
            if found is None or not self._plain_class(*found, depth + 1):
                return False
        return True

    def _base_def(self, module: str, base: ast.expr) -> tuple[str, ast.ClassDef] | None:
        """(module, ClassDef) of a base class written `Name` or `module.Name`, when the tree defines it once."""
        if isinstance(base, ast.Name):
            return self._sole_def(module, base.id, ast.ClassDef)
        attrs = []
        while isinstance(base, ast.Attribute):
            attrs.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name):
            return None
        t, used = self.res.chain(self.res.name(module, base.id), attrs[:-1])
        if used != len(attrs) - 1 or t.kind != "module":
            return None
        return self._sole_def(t.module, attrs[-1], ast.ClassDef)

    def _sole_def(self, module: str, name: str, kind: type) -> tuple[str, ast.AST] | None:
        """(module, node) of what `name` in `module` resolves to, when that is one definition of type `kind`."""
        t = self.res.name(module, name)
        if t.kind != "node" or len(t.stmts) != 1 or not isinstance(t.stmts[0].node, kind):
            return None
        return t.module, t.stmts[0].node

    def keyed_dicts(self, module: str) -> set[int]:
        """Module-level dict literals with string keys that the module's __getattr__ reads: their entries
        are reached one by one, by the attribute names asked of the module."""
        if module not in self._keyed:
            info = self.index.get(module)
            out = set()
            ga = info.defs.get("__getattr__")
            if ga and ga[-1].kind == "function":
                names = {x.id for x in ast.walk(ga[-1].node) if isinstance(x, ast.Name)}
                for nm in names:
                    for st in info.defs.get(nm, []):
                        v = getattr(st.node, "value", None)
                        if (st.kind == "assign" and isinstance(v, ast.Dict) and v.keys and len(info.defs[nm]) == 1
                                and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in v.keys)):
                            out.add(st.idx)
            self._keyed[module] = out
        return self._keyed[module]

    def _is_accessor(self, n: Node, dname: str) -> bool:
        return n.kind == "function" and _accessor_of(n.stmt, dname)

    def _process_entry(self, n: Node, key: str) -> None:
        if n.entries is None or key in n.entries_kept or key not in n.entries:
            return
        n.entries_kept.add(key)
        scan = scan_expr(self.index, self.index.get(n.module), n.entries[key][1], self.ge)
        n.scans.append(scan)
        self._absorb(n, scan)

    def _process_method(self, n: Node, st) -> None:
        if isinstance(st, tuple):
            if st[0] == "entry":
                self._process_entry(n, st[1])
            return
        if id(st) not in n.dropped:
            return
        if id(st) in n.abstract and id(st) not in self._released:
            self._deferred[id(st)] = (n, st)   # reached by name: kept once a reached class inherits it
            return
        del n.dropped[id(st)]
        scan = scan_stmt(self.index, self.index.get(n.module), st, self.ge, cls=n.stmt)
        n.scans.append(scan)
        self._absorb(n, scan)

    def _absorb(self, n: Node, scan: Scan) -> None:
        for a in scan.attrs:
            self._reach_attr(a)
        for a, cls in scan.self_attrs:
            if a not in self.attr_names:
                self._self_reads.setdefault(a, {})[id(cls)] = cls
        for line, text, importtime in scan.dynamic:
            self.dynamic.append({"file": n.file, "line": line, "call": text, "importtime": importtime})
        for line, mod in scan.dead_imports:
            self.notes.append(f"{n.file}:{line}: import of {mod} dropped (no Python source in the tree; "
                              "compiled extension or generated file)")
        for ref in scan.refs:
            self._link(n, ref)
        for h in scan.held:
            self._held.append((n, scan, h))

    def _link(self, n: Node, ref: Ref) -> None:
        if ref.binding is not None:
            t = self.res.import_target(ref.binding)
        else:
            t = self.res.name(n.module, ref.name)
        t, used = self.res.chain(t, ref.attrs)
        if ref.annotation and not ref.decorated and n.key not in self.annotated:
            # annotations are lazy strings in the bundle: only keep the cheap external ones
            if t.kind == "external":
                self.lazy_refs.add(id(ref))
                self._external(t, n, ref)
            return
        if t.kind == "node" and used < len(ref.attrs) and self._class_constant(n, ref, t, used):
            return
        if t.kind == "node" and not ref.importtime and foreign_platform(t.module, self.variant["platform"]):
            # another platform's module: only reached on that platform (vLLM imports it lazily)
            self.notes.append(f"{n.file}:{ref.line}: {'.'.join([ref.name] + ref.attrs[:used])} not inlined: "
                              f"{t.module} is specific to another platform than {self.variant['platform']}")
            return
        if t.kind == "node" and len(t.stmts) == 1 and self.keyed_dicts(t.module):
            info = self.index.get(t.module)
            for idx in self.keyed_dicts(t.module):
                dname = next(s_.names[0] for s_ in info.stmts if s_.idx == idx)
                if t.stmts[0].kind == "function" and _accessor_of(t.stmts[0].node, dname):
                    keys = [ref.call_arg0] if ref.call_arg0 else None
                    self.getattr_keys.setdefault(t.module, set()).update(keys or [])
                    for k2, node in list(self.nodes.items()):
                        if k2 == (t.module, idx):
                            for key in (keys or sorted(k.value for k in node.stmt.value.keys)):
                                self._mqueue.append((node, ("entry", key)))
                    if keys is None:
                        self._full_dicts.add((t.module, idx))
        if t.kind == "node" and t.name == "resolve_obj_by_qualname" and t.module.endswith("import_utils"):
            syn = self._by_name_resolver(t)
            n.deps[syn.key] = n.deps.get(syn.key, False) or ref.importtime
            n.links.append((ref, syn.key, t.name, used))
            return
        if t.kind == "node":
            for st in t.stmts:
                dep = self.node_for(t.module, st, by_ref=True)
                if ref.importtime and (ref.called or used < len(ref.attrs)):
                    n.calls.add(dep.key)   # called, or an attribute of it read at import time
                if st.idx in self.keyed_dicts(t.module) and not (n.module == t.module and (
                        "__getattr__" in n.names or self._is_accessor(n, st.names[0]))):
                    # read other than through __getattr__: keep every entry
                    for key in sorted(k.value for k in st.node.value.keys):
                        self._mqueue.append((dep, ("entry", key)))
                n.deps[dep.key] = n.deps.get(dep.key, False) or ref.importtime
                n.links.append((ref, dep.key, t.name, used))
            return
        if t.kind == "external":
            self._external(t, n, ref)
            return
        if t.kind == "builtin":
            return
        if t.kind == "dynamic":
            self._dynamic(n, ref, t, used)
            return
        if t.kind == "module":
            if used == len(ref.attrs) and self._module_value(n, ref, t.module, used):
                return
            self._unresolved(n, ref, f"module {t.module} used as a value (not through an attribute)")
            return
        self._unresolved(n, ref, t.reason)

    def _class_constant(self, n: Node, ref: Ref, t: Target, used: int) -> bool:
        """`Cls.CONST` where the class body assigns CONST a literal: use the literal, not the class."""
        st = t.stmts[-1].node
        if len(t.stmts) != 1 or not isinstance(st, ast.ClassDef):
            return False
        if st.keywords or any("Enum" in ast.unparse(b) or "Flag" in ast.unparse(b) for b in st.bases):
            return False   # enum members and metaclass-made attributes are not their literals
        attr = ref.attrs[used]
        if not isinstance(getattr(ref.nodes[used + 1], "ctx", None), ast.Load):
            return False
        value = None
        field_default = False
        for b in st.body:
            if isinstance(b, ast.Assign) and len(b.targets) == 1 and isinstance(b.targets[0], ast.Name) \
                    and b.targets[0].id == attr:
                value = b.value
            elif isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name) and b.target.id == attr:
                value = b.value
                field_default = bool(st.decorator_list)   # a dataclass-style field's default
        if value is None:
            return False
        if not (attr.isupper() or field_default):
            return False   # a class attribute that may change at run time: keep reading the class
        if isinstance(value, ast.Call) and (getattr(value.func, "id", None) or getattr(value.func, "attr", "")) in (
                "Field", "field"):
            # dataclass / pydantic field: the class attribute is its default
            value = next((k.value for k in value.keywords if k.arg == "default"), None)
            if value is None:
                return False
        try:
            lit = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
        if not isinstance(lit, (int, float, str, bytes, bool, type(None))):
            return False
        first, last = ref.nodes[0], ref.nodes[used + 1]
        text = repr(lit) if last is ref.nodes[-1] else f"({lit!r})"
        n.extra_edits.append({"op": "span", "line": first.lineno, "col": first.col_offset,
                              "end_line": last.end_lineno, "end_col": last.end_col_offset, "text": text})
        return True

    def _unresolved(self, n: Node, ref: Ref, reason: str) -> None:
        text = ".".join([ref.name] + ref.attrs)
        self.unresolved.append({"file": n.file, "line": ref.line, "name": text, "reason": reason,
                                "importtime": ref.importtime})

    # ------------------------------------------------------------ externals and ops
    def _external(self, t: Target, n: Node, ref: Ref) -> None:
        b = t.binding
        stmt, obj = import_stmt(b)
        n.ext_links.append((ref, stmt, b.name, obj))
        self.externals.setdefault(stmt, (b.name, obj))
        # torch.ops.<ns>.<name>
        if b.module == "torch" and ref.name == b.name and len(ref.attrs) >= 3 and ref.attrs[0] == "ops":
            ns, op = ref.attrs[1], ref.attrs[2]
            if ns == "vllm":
                self._python_custom_op(n, ref, op)
            elif ns in ("aten", "prims", "prim", "higher_order"):
                pass   # torch's own operators
            elif not ns.startswith("_"):
                self.notes.append(f"{n.file}:{ref.line}: torch.ops.{ns}.{op} belongs to an external operator "
                                  "library, not to the tree's compiled extensions")
            elif ns in self.python_namespaces():
                self.notes.append(f"{n.file}:{ref.line}: torch.ops.{ns}.{op} is registered from Python "
                                  f"(torch.library.Library({ns!r})), not a compiled op")
            else:
                entry = self.cuda_ops.setdefault(f"{ns}.{op}", {"op": f"{ns}.{op}", "namespace": ns,
                                                               "name": op, "call_sites": []})
                site = {"file": n.file, "line": ref.line}
                if site not in entry["call_sites"]:
                    entry["call_sites"].append(site)

    def env_default(self, name: str):
        """Default value of envs.<name> from vllm/envs.py's environment_variables table."""
        if self._env_defaults is None:
            self._env_defaults = {}
            if self.index.has_module("vllm.envs"):
                for st in self.index.get("vllm.envs").defs.get("environment_variables", []):
                    v = getattr(st.node, "value", None)
                    if isinstance(v, ast.Dict):
                        for k, val in zip(v.keys, v.values):
                            if isinstance(k, ast.Constant) and isinstance(val, ast.Lambda):
                                self._env_defaults[k.value] = env_default_value(val.body)
        return self._env_defaults.get(name, _UNKNOWN)

    def method_predicate(self, module: str, cls_name: str, method: str) -> bool | None:
        """The value of `Cls.method()` where the variant decides it: a classmethod/staticmethod whose body is
        `return <test>`, the test reading class attributes bound to envs flags or literals
        (`_AITER_ENABLED = envs.VLLM_ROCM_USE_AITER`) and other such predicates of the class. A decorator
        that calls the method or returns None (vLLM's if_aiter_supported) keeps a False value falsy."""
        found = self._sole_def(module, cls_name, ast.ClassDef)
        if found is None:
            return None
        key = (found[0], f"{cls_name}.{method}")
        if key in self._predicates:
            return self._predicates[key]
        self._predicates[key] = None   # a predicate that reaches itself stays undecided
        value = self._method_predicate(*found, method)
        self._predicates[key] = value
        return value

    def global_predicate(self, module: str, name: str) -> bool | None:
        """The value of a module-level `name` that is bound once, to a test the variant decides
        (`IS_ROCM = current_platform.is_rocm()`), and never rebound through `global`."""
        found = self._sole_def(module, name, ast.Assign)
        if found is None or len(found[1].targets) != 1 or not isinstance(found[1].targets[0], ast.Name):
            return None
        key = (found[0], name)
        if key not in self._predicates:
            self._predicates[key] = None   # a binding that reaches itself stays undecided
            info = self.index.get(found[0])
            rebound = any(isinstance(x, ast.Global) and name in x.names for x in ast.walk(info.tree))
            if not rebound:
                with self.ge.evaluating_in(found[0]):
                    self._predicates[key], _ = self.ge.evaluate(found[1].value)
        return self._predicates[key]

    def function_predicate(self, module: str, name: str, args: tuple = ()) -> bool | None:
        """The value of `name(*args)` for known argument values: a module-level function with plain positional
        parameters whose body returns a test the variant and those values decide
        (`def is_breakable_cudagraph_enabled(): return bool(envs.X)`,
        `def should_load_quant_weights(quant_method): return quant_method is not None and ...`)."""
        found = self._sole_def(module, name, ast.FunctionDef)
        if found is None:
            return None
        key = (found[0], f"{name}{args!r}")
        if key not in self._predicates:
            self._predicates[key] = None   # a predicate that reaches itself stays undecided
            fn = found[1]
            a = fn.args
            test = _returned(fn)
            if (not (a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg or a.defaults) and len(a.args) == len(args)
                    and all(_caches(d) for d in fn.decorator_list) and test is not None):
                params = {p.arg: v for p, v in zip(a.args, args)}
                with self.ge.evaluating_in(found[0], literal_bools=True, params=params):
                    self._predicates[key], _ = self.ge.evaluate(test)
        return self._predicates[key]

    def is_custom_op(self, module: str, cls: ast.ClassDef, depth: int = 0) -> bool:
        """`cls` is vLLM's CustomOp or derives from it (through bases the tree defines)."""
        if cls.name == "CustomOp" and any(isinstance(b, ast.FunctionDef) and b.name == "enabled" for b in cls.body):
            return True
        if depth > 20:
            return False
        for base in _bases(cls):
            found = self._sole_def(module, base.id, ast.ClassDef) if isinstance(base, ast.Name) else None
            if found is not None and self.is_custom_op(*found, depth + 1):
                return True
        return False

    def _method_predicate(self, module: str, cls: ast.ClassDef, method: str) -> bool | None:
        fn = next((b for b in cls.body if isinstance(b, ast.FunctionDef) and b.name == method), None)
        if fn is None:
            return None
        returned = _returned(fn)
        if returned is None:
            return None
        kinds = set()
        for d in fn.decorator_list:
            name = ast.unparse(d)
            if name in ("classmethod", "staticmethod"):
                kinds.add(name)
            elif _caches(d):
                continue
            elif isinstance(d, ast.Name) and self._calls_through_or_none(module, d.id):
                kinds.add("or-none")
            else:
                return None
        if not kinds & {"classmethod", "staticmethod"}:
            return None
        attrs = {}
        for b in cls.body:
            if isinstance(b, (ast.Assign, ast.AnnAssign)) and b.value is not None:
                targets = b.targets if isinstance(b, ast.Assign) else [b.target]
                for tg in targets:
                    if isinstance(tg, ast.Name):
                        attrs[tg.id] = b.value if tg.id not in attrs else None   # assigned twice: unknown
        first = fn.args.args[0].arg if fn.args.args and "classmethod" in kinds else None

        class Subst(ast.NodeTransformer):
            def visit_Attribute(inner, node):
                if isinstance(node.value, ast.Name) and node.value.id in (first, cls.name) \
                        and attrs.get(node.attr) is not None:
                    return attrs[node.attr]
                return inner.generic_visit(node)

            def visit_Call(inner, node):
                # cls.other_predicate(): its value, or a name nothing decides
                f = node.func
                if (not node.args and not node.keywords and isinstance(f, ast.Attribute)
                        and isinstance(f.value, ast.Name) and f.value.id in (first, cls.name)):
                    v = self.method_predicate(module, cls.name, f.attr)
                    return ast.Constant(value=v) if v is not None else ast.Name(id=f"{cls.name}.{f.attr}()")
                return inner.generic_visit(node)

        test = Subst().visit(copy.deepcopy(returned))
        with self.ge.evaluating_in(module, literal_bools=True):
            value, _ = self.ge.evaluate(test)
        if value is None or (value is True and "or-none" in kinds):
            return None
        return value

    def _calls_through_or_none(self, module: str, name: str) -> bool:
        """A decorator whose wrapper returns the decorated function's result or None."""
        found = self._sole_def(module, name, ast.FunctionDef)
        if found is None:
            return False
        deco = found[1]
        if not deco.args.args:
            return False
        func = deco.args.args[0].arg
        wrappers = [b for b in deco.body if isinstance(b, ast.FunctionDef)]
        if len(wrappers) != 1:
            return False
        for r in ast.walk(wrappers[0]):
            if isinstance(r, ast.Return):
                v = r.value
                if v is None or (isinstance(v, ast.Constant) and v.value is None):
                    continue
                if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == func:
                    continue
                return False
        return True

    def unquantized_bases(self) -> set[str]:
        """Names of every class an `Unquantized*` class of the tree derives from (by name, textually)."""
        if self._unq is None:
            cls_re = re.compile(r"^class\s+(\w+)\s*\(([^)]*)\)", re.M)
            bases: dict[str, set[str]] = {}
            for rel in sorted(self.index.files.values()):
                text = self.index.text(rel)
                if text is None:
                    continue
                for m in cls_re.finditer(text):
                    names = {b.strip().split(".")[-1].split("[")[0] for b in m.group(2).split(",")}
                    bases.setdefault(m.group(1), set()).update(x for x in names if x.isidentifier())
            out: set[str] = set()
            stack = [c for c in bases if c.startswith("Unquantized")]
            while stack:
                c = stack.pop()
                for b in bases.get(c, ()):
                    if b not in out:
                        out.add(b)
                        stack.append(b)
            self._unq = out
            self.scans["unquantized_bases"] = sorted(out)
        return self._unq

    def python_namespaces(self) -> set[str]:
        """Op namespaces the tree registers from Python (`Library("ns", ...)`), "vllm" aside."""
        if self._py_ns is None:
            pat = re.compile(r"Library\(\s*[\"'](\w+)[\"']")
            found = set()
            for rel in sorted(self.index.files.values()):
                text = self.index.text(rel)
                if text is None:
                    continue
                if "Library(" in text:
                    found |= set(pat.findall(text))
            self._py_ns = found - {"vllm", "_C", "_moe_C", "_rocm_C", "_C_cache_ops", "_C_custom_ar"}
            self.scans["python_namespaces"] = sorted(self._py_ns)
        return self._py_ns

    def _python_custom_op(self, n: Node, ref: Ref, op: str) -> None:
        reg = self._find_registration(op)
        if reg is None:
            self._unresolved(n, ref, f"torch.ops.vllm.{op}: no direct_register_custom_op(op_name={op!r}) found")
            return
        module, call = reg
        func = None
        for kw in call.keywords:
            if kw.arg == "op_func":
                func = kw.value
        if func is None and len(call.args) >= 2:
            func = call.args[1]
        if not isinstance(func, ast.Name):
            self._unresolved(n, ref, f"torch.ops.vllm.{op}: op_func is not a plain name")
            return
        t = self.res.name(module, func.id)
        if t.kind != "node":
            self._unresolved(n, ref, f"torch.ops.vllm.{op}: op_func {func.id} does not resolve ({t.reason})")
            return
        key = (t.module, t.stmts[-1].idx)
        if key not in self.annotated:
            self.annotated.add(key)
            if key in self.nodes and self.nodes[key].scan is not None:
                self._queue.append(key)   # scan again, following its annotations
        dep = self.node_for(t.module, t.stmts[-1])
        n.deps[dep.key] = n.deps.get(dep.key, False) or ref.importtime
        n.op_links.append((ref, op, dep.key, t.name))
        self.python_custom_ops[op] = dep.key

    def scan(self, name: str):
        """Recompute a recorded tree-wide scan by its name in self.scans."""
        if name == "unquantized_bases":
            self._unq = None
            return sorted(self.unquantized_bases())
        if name == "python_namespaces":
            self._py_ns = None
            return sorted(self.python_namespaces())
        if name.startswith("registration:"):
            return self._registration_candidates(name.split(":", 1)[1])
        raise ValueError(f"unknown scan {name!r}")

    def _registration_candidates(self, op: str) -> list[str]:
        """Modules whose text registers an op named `op` (direct_register_custom_op(op_name=...)), in order."""
        if not hasattr(self, "_reg_texts"):
            self._reg_texts = []   # (module, text) of the files that register custom ops
            for module, rel in sorted(self.index.files.items(), key=lambda kv: kv[1]):
                text = self.index.text(rel)
                if text is None:
                    continue
                if "direct_register_custom_op" in text:
                    self._reg_texts.append((module, text))
        pat = re.compile(r"op_name\s*=\s*[\"']" + re.escape(op) + r"[\"']")
        return [module for module, text in self._reg_texts if pat.search(text)]

    def _find_registration(self, op: str):
        if self._custom_op_index is None:
            self._custom_op_index = {}
        if op in self._custom_op_index:
            return self._custom_op_index[op]
        candidates = self._registration_candidates(op)
        self.scans[f"registration:{op}"] = candidates
        found = None
        for module in candidates:
            info = self.index.get(module)
            for sub in ast.walk(info.tree):
                if isinstance(sub, ast.Call):
                    f = sub.func
                    fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                    if fname != "direct_register_custom_op":
                        continue
                    name = None
                    for kw in sub.keywords:
                        if kw.arg == "op_name" and isinstance(kw.value, ast.Constant):
                            name = kw.value.value
                    if name is None and sub.args and isinstance(sub.args[0], ast.Constant):
                        name = sub.args[0].value
                    if name == op:
                        found = (module, sub)
                        break
            if found:
                break
        self._custom_op_index[op] = found
        return found

    # ------------------------------------------------------------ dynamic attributes
    def _dynamic(self, n: Node, ref: Ref, t: Target, used: int) -> None:
        # current_platform: the variant decides the platform class
        if t.name == "current_platform" and t.module.endswith("platforms"):
            mod, cls = platform_class(self.variant)
            if self.index.has_module(mod):
                ct = self.res.name(mod, cls)
                if ct.kind != "node":
                    raise StageError(STAGE, f"variant platform={self.variant['platform']} "
                                     f"gpu_queries={self.variant.get('gpu_queries')}",
                                     f"the variant binds current_platform to {mod}.{cls}, which this tree does "
                                     "not define", "choose another gpu_queries value for this vLLM version")
                syn = self._synthetic(t.module, "current_platform",
                                      "@@NAME@@ = @@0@@()\n", [(ct.module, ct.stmts[-1], ct.name)])
                n.deps[syn.key] = n.deps.get(syn.key, False) or ref.importtime
                n.links.append((ref, syn.key, "current_platform", used))
                self.notes.append(f"current_platform (resolved lazily by {t.module} __getattr__) is bound "
                                  f"to {cls}() of {mod}: variant platform={self.variant['platform']}, "
                                  f"gpu_queries={self.variant.get('gpu_queries')}")
                return
        # module-level __getattr__(name): call it
        info = self.index.get(t.module)
        ga = info.defs.get("__getattr__")
        if ga:
            attr = ref.attrs[used - 1] if used else ref.name
            self.getattr_keys.setdefault(t.module, set()).add(attr)
            for k, node in list(self.nodes.items()):
                if k[0] == t.module and node.entries is not None:
                    self._mqueue.append((node, ("entry", attr)))
            dep = self.node_for(t.module, ga[-1])
            n.deps[dep.key] = n.deps.get(dep.key, False) or ref.importtime
            n.links.append((ref, dep.key, "@getattr:__getattr__", used))
            self.notes.append(f"{n.file}:{ref.line}: {'.'.join([ref.name] + ref.attrs[:used])} "
                              f"resolved through {info.path} __getattr__")
            return
        self._unresolved(n, ref, f"{t.name} is provided dynamically by {info.path}")

    def _by_name_resolver(self, t: Target) -> Node:
        """vLLM's resolve_obj_by_qualname imports a module by name. The bundle has no vllm modules: it gets
        a resolver over the classes its variant selects by name (e.g. the attention backend)."""
        bound: list[tuple[str, tuple]] = []
        for key, (mod, enum) in sorted(BY_NAME_REGISTRIES.items()):
            qual = self._registry_value(mod, enum, str(self.variant[key]))
            if qual is None:
                continue
            cmod, _, cname = qual.rpartition(".")
            ct = self.res.name(cmod, cname) if self.index.has_module(cmod) else None
            if ct is None or ct.kind != "node":
                raise StageError(STAGE, f"variant {key}={self.variant[key]!r}",
                                 f"{enum}.{self.variant[key]} names {qual}, which is not defined in the tree",
                                 "choose a variant value whose class is in this vLLM tree")
            bound.append((qual, (ct.module, ct.stmts[-1], ct.name)))
            self.notes.append(f"resolve_obj_by_qualname({qual!r}) is bound to the inlined {cname}: "
                              f"variant {key}={self.variant[key]}")
        entries = "".join(f"    {q!r}: @@{i}@@,\n" for i, (q, _) in enumerate(bound))
        template = ("def @@NAME@@(qualname: str):\n"
                    "    \"\"\"vLLM's resolve_obj_by_qualname, bundled: the classes this bundle's variant selects by\n"
                    "    name are bound here; other vllm names are not in the bundle.\"\"\"\n"
                    "    bound = {\n" + entries + "    }\n"
                    "    if qualname in bound:\n"
                    "        return bound[qualname]\n"
                    "    module_name, obj_name = qualname.rsplit('.', 1)\n"
                    "    if module_name.split('.')[0] == 'vllm':\n"
                    "        raise ImportError(f'{qualname} is not in this bundle (it holds: {sorted(bound)}); '\n"
                    "                          'rebuild it with a variant that selects it')\n"
                    "    return getattr(importlib.import_module(module_name), obj_name)\n")
        info = self.index.get(t.module)
        st = t.stmts[-1]
        return self._synthetic(t.module, t.name, template, [d for _, d in bound], imports=["import importlib"],
                               file=info.path, line=st.line, end_line=st.end_line)

    def _registry_value(self, module: str, enum: str, member: str) -> str | None:
        if not self.index.has_module(module):
            return None
        for st in self.index.get(module).defs.get(enum, []):
            if not isinstance(st.node, ast.ClassDef):
                continue
            for b in st.node.body:
                if (isinstance(b, ast.Assign) and len(b.targets) == 1 and isinstance(b.targets[0], ast.Name)
                        and b.targets[0].id == member and isinstance(b.value, ast.Constant)
                        and isinstance(b.value.value, str)):
                    return b.value.value
        return None

    def _module_value(self, n: Node, ref: Ref, module: str, used: int) -> bool:
        """A module object used as a value: embed a self-contained module (no repo-local imports)."""
        info = self.index.get(module)
        for sub in ast.walk(info.tree):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                if any(not b.external for b in self.index.import_bindings(info, sub, False)):
                    return False
                if isinstance(sub, ast.ImportFrom) and sub.level:
                    return False
        name = "_module_" + module.replace(".", "_")
        template = (f"@@NAME@@ = types.ModuleType(__name__ + '.' + {module!r})\n"
                    "sys.modules[@@NAME@@.__name__] = @@NAME@@\n"
                    f"exec(compile({info.source!r}, {info.path!r}, 'exec'), @@NAME@@.__dict__)\n")
        syn = self._synthetic(module, name, template, [], imports=["import sys", "import types"], file=info.path,
                              line=1, end_line=len(info.lines))
        n.deps[syn.key] = n.deps.get(syn.key, False) or ref.importtime
        n.links.append((ref, syn.key, name, used))
        self.notes.append(f"{n.file}:{ref.line}: module {module} is used as a value: embedded whole "
                          f"({len(info.lines)} lines, executed at import)")
        return True

    def _synthetic(self, module: str, name: str, template: str, deps: list, imports=(), file=None,
                   line=None, end_line=None) -> Node:
        info = self.index.get(module)
        for k, v in self.nodes.items():
            if v.kind == "synthetic" and v.module == module and v.name == name:
                return v
        ga = info.defs.get("__getattr__", [None])[-1]
        line = line or (ga.line if ga else 1)
        end = end_line or (ga.end_line if ga else 1)
        n = Node(key=(module, -1 - len([k for k in self.nodes if k[0] == module and k[1] < 0])),
                 module=module, file=info.path, names=[name], kind="synthetic", line=line, end_line=end,
                 stmt=None)
        dkeys = []
        for mod, st, dname in deps:
            d = self.node_for(mod, st)
            n.deps[d.key] = True
            dkeys.append((d.key, dname))
        n.synthetic = {"template": template, "deps": dkeys, "imports": list(imports)}
        self.nodes[n.key] = n
        return n
