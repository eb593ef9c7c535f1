"""The closure engine: a worklist over the tree's top-level statements. From the roots it scans each reached
statement (refs.py), resolves what it reads (resolve.py) and reaches those definitions in turn, parsing only
the modules it reaches. It knows Python, not vLLM: every decision beyond "a name read is a definition
reached" is a rule's.

Rules are objects with any of these hooks (Rule below; the engine calls each hook on the rules that define
it, in the order they were given):

    skip(g, n) -> set[int]         ids of class-body statements of node n left out of its scan; each is held
                                   until something reads its name (g.member_waits) or a rule queues it
    claim(g, n) -> bool            n is the rule's to process (True: the engine does not scan it)
    scanned(g, n, before)          n's own scan was absorbed (`before`: its deps until then)
    defer(g, n, st) -> bool        member `st` of n was reached by name; True: it waits (the rule queues it)
    absorb(g, n, scan)             a scan was added to n (before its references are linked)
    link(g, n, ref, t, used) -> bool   a reference resolved to target t (kinds named by `link_kinds`);
                                   True: the rule linked it, the engine does nothing more
    external(g, n, ref, binding)   a reference to an import from outside the tree (after the engine records
                                   the import)
    registers(expr) -> bool        `expr` (a call, or a decorator) registers an op whose uses a later stage binds:
                                   in a module-level block it binds nothing the bundle reads (_members_of_block)
    release(g) -> bool             the worklist is empty: queue what the closure now reaches; True if it did
    finish(g)                      the closure is complete (may still reach more, then settles)

The rules of a vLLM graph, and what each decides, are listed in graph/vllm/__init__.py (RULES).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from bundler_lib.common.scopes import alias_name

from .index import Stmt, TreeIndex, _mutated_base
from .refs import Ref, Scan, Scanner
from .resolve import Resolver, Target

_ANNOTATION_READERS = {"get_type_hints", "get_annotations"}
HOOKS = ("skip", "claim", "scanned", "defer", "absorb", "link", "external", "registers", "release", "finish")


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
    dropped: dict[int, ast.stmt] = field(default_factory=dict)   # id -> class-body methods, block members not reached
    # a module-level block (`if`/`try`/...): its simple assignments by the names they bind, and the names read
    block_members: dict[str, list[ast.stmt]] = field(default_factory=dict)
    wanted: set[str] = field(default_factory=set)
    stubs: set[int] = field(default_factory=set)   # ids of dropped @overload stubs (never reached)
    abstract: set[int] = field(default_factory=set)   # ids of abstract methods that do nothing (abstract.py)

    @property
    def name(self) -> str:
        return self.names[0]


class Rule:
    """A named rule of the closure (see the module docstring for the hooks). `decides`: one line for readers."""
    name = "rule"
    decides = ""
    link_kinds: tuple[str, ...] = ()   # the target kinds (node, external, module, dynamic) `link` is asked about


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


def _members_of_block(st: ast.stmt, external, registers, in_try: bool = False):
    """The `name = value` statements (plain names only), the undecorated defs and classes (and those only an op
    registration decorates), op registration calls (`registers(expr)`: the rules' hook), and the imports of external modules
    (`external(stmt)`; the bundle keeps them as written) outside any `try` body (there an import is a probe whose
    failure decides the rest) in the bodies of a module-level compound statement, outside any def or class."""
    for field_name in ("body", "orelse", "finalbody", "handlers"):
        probing = in_try or (field_name == "body" and isinstance(st, ast.Try))
        for sub in getattr(st, field_name, None) or []:
            if isinstance(sub, ast.Assign) and all(isinstance(t, ast.Name) for t in sub.targets):
                yield sub
            elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name) and sub.value is not None:
                yield sub
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
                    not sub.decorator_list or all(registers(d) for d in sub.decorator_list)):
                yield sub
            elif isinstance(sub, ast.Expr) and registers(sub.value):
                yield sub
            elif isinstance(sub, (ast.Import, ast.ImportFrom)) and not probing and external(sub):
                yield sub
            elif isinstance(sub, (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.ExceptHandler)) or \
                    type(sub).__name__ == "TryStar":
                yield from _members_of_block(sub, external, registers, probing)


def _member_names(st: ast.stmt) -> list[str]:
    if isinstance(st, ast.Expr):
        return []
    if isinstance(st, ast.Assign):
        return [t.id for t in st.targets]
    if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [st.name]
    if isinstance(st, (ast.Import, ast.ImportFrom)):
        return [alias_name(a) for a in st.names]
    return [st.target.id]


class Engine:
    def __init__(self, index: TreeIndex, res: Resolver, scanner: Scanner, rules: list):
        self.index, self.res, self.scanner = index, res, scanner
        self.rules = list(rules)
        self._hooks = {h: [getattr(r, h) for r in self.rules if hasattr(r, h)] for h in HOOKS}
        self._link_rules: dict[str, list] = {}
        for r in self.rules:
            if hasattr(r, "link"):
                for kind in r.link_kinds:
                    self._link_rules.setdefault(kind, []).append(r.link)
        self.nodes: dict[tuple[str, int], Node] = {}
        self.externals: dict[str, tuple[str, str]] = {}   # import statement -> (bound name, object)
        self.lazy_refs: set[int] = set()   # id() of refs read only by annotations that are never evaluated
        self.notes: list[str] = []
        self.unresolved: list[dict] = []
        self.dynamic: list[dict] = []   # importlib.import_module / __import__ calls: not followed
        self.queue: list[tuple[str, int]] = []   # nodes to scan
        self.mqueue: list[tuple[Node, object]] = []   # members (or a rule's (handler, item)) to process
        self.attr_names: set[str] = set()   # every attribute name the closure reads
        self.pending: dict[str, list[tuple[Node, ast.stmt]]] = {}   # attribute name -> members waiting for it
        self.roots: set[tuple[str, int]] = set()
        self.entered: set[tuple[str, int]] = set()   # nodes reached other than by a reference in the code

    # ------------------------------------------------------------ nodes
    def node_for(self, module: str, st: Stmt, by_ref: bool = False) -> Node:
        key = (module, st.idx)
        if not by_ref:
            self.entered.add(key)
        n = self.nodes.get(key)
        if n is None:
            info = self.index.get(module)
            n = Node(key=key, module=module, file=info.path, names=list(st.names), kind=st.kind,
                     line=st.line, end_line=st.end_line, stmt=st.node)
            if _is_triton_jit(st.node):
                n.triton = "kernel"
            if st.kind == "attached":
                n.names = [f"{_mutated_base(st.node) or 'registration'}.<{st.line}>"]
            self.nodes[key] = n
            self.queue.append(key)
            for nm in st.names:
                for att in info.attached.get(nm, []):
                    a = self.node_for(module, att)
                    n.attached.append(a.key)
        return n

    def synthetic(self, module: str, name: str, template: str, deps: list, imports=(), file=None,
                  line=None, end_line=None) -> Node:
        """A node the bundle gets in place of code (`template`, with @@NAME@@ and @@i@@ for the emitted names of
        `deps`, [(module, Stmt, defined name)]), placed at `line` of `module` (its __getattr__ by default)."""
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

    def depend(self, n: Node, ref: Ref, key: tuple[str, int], name: str, used: int) -> None:
        """n reads node `key` (as `name`) through `ref`."""
        n.deps[key] = n.deps.get(key, False) or ref.importtime
        n.links.append((ref, key, name, used))
        self.want(self.nodes.get(key), name)

    def want(self, t: Node | None, name: str) -> None:
        """The closure reads `name` of node `t`: where `t` is a module-level block, the members binding it."""
        if t is not None and t.kind == "block" and name not in t.wanted:
            t.wanted.add(name)
            for st in t.block_members.get(name, ()):
                self.mqueue.append((t, st))

    def _block_members(self, n: Node) -> set[int]:
        """A module-level block is reached name by name: its simple assignments (`log = tl.log` in an `if`/`else`
        choosing kernels), its undecorated defs and classes and its imports (`_members_of_block`) wait until a name
        they bind is read; the ones never read are left out of the bundle.
        A block entered other than by a reference (a root) keeps them all. Returns the ids to skip now."""
        if n.key in self.entered:
            return set()
        skip = set()
        for st in _members_of_block(n.stmt, lambda imp: self._external_import(n.module, imp),
                                    lambda e: any(h(e) for h in self._hooks["registers"])):
            names = _member_names(st)
            for name in names:
                n.block_members.setdefault(name, []).append(st)
            if not any(x in n.wanted for x in names):
                n.dropped[id(st)] = st
                skip.add(id(st))
        return skip

    def _external_import(self, module: str, st: ast.stmt) -> bool:
        info = self.index.get(module)
        return all(b.external for b in self.index.import_bindings(info, st, False))

    def unresolved_ref(self, n: Node, ref: Ref, reason: str) -> None:
        text = ".".join([ref.name] + ref.attrs)
        self.unresolved.append({"file": n.file, "line": ref.line, "name": text, "reason": reason,
                                "importtime": ref.importtime})

    # ------------------------------------------------------------ roots and the worklist
    def build(self, module: str, name: str) -> Node:
        info = self.index.get(module)
        stmts = info.defs[name]
        root = None
        self.roots = {(module, st.idx) for st in stmts}
        for st in stmts:
            n = self.node_for(module, st)
            root = root or n
        self.drain()
        return root

    def add_roots(self, roots: list[str], why: str, when: dict[str, str] | None = None,
                  anywhere: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Reach `file::Name` where the closure reaches that file (a root in `anywhere`: whether or not it does)
        and, when `when` names a trigger `file::Name` for the root, reaches that definition too (what the root
        serves). A method root `file::Class.method` reaches no class: it keeps that method on every class the
        closure reaches, as a caller that calls it on any module would. Repeated until no root newly applies.
        Returns the roots the tree does not define."""
        when = when or {}
        missing, added = [], []
        todo = list(roots)
        while True:
            reached = {n.module for n in self.nodes.values()}
            reached_defs = {f"{n.file}::{name}" for n in self.nodes.values() for name in n.names}
            progress = False
            for r in list(todo):
                path, _, qual = r.partition("::")
                module = self.index.module_of_path(path)
                name, _, method = qual.partition(".")
                if module is None or name not in self.index.get(module).defs:
                    missing.append(r)
                    todo.remove(r)
                    continue
                if (module not in reached and r not in anywhere) or (r in when and when[r] not in reached_defs):
                    continue
                todo.remove(r)
                added.append(r)
                progress = True
                if method:
                    self.reach_attr(method)
                else:
                    for st in self.index.get(module).defs[name]:
                        self.node_for(module, st)
            self.drain()
            if not progress:
                break
        if added or missing:   # a root whose trigger the closure never reached is not worth a note
            self.notes.append(f"extra roots ({why}): " + ", ".join(added)
                              + (f"; not in this tree: {', '.join(missing)}" if missing else ""))
        return missing

    def finish(self) -> None:
        """The closure is complete: the rules' last steps (finish hooks, in order)."""
        for hook in self._hooks["finish"]:
            hook(self)

    def reach_attr(self, a: str) -> None:
        """The closure reads attribute `a`: the members waiting for that name are processed."""
        if a not in self.attr_names:
            self.attr_names.add(a)
            for item in self.pending.pop(a, []):
                self.mqueue.append(item)

    def waits_for(self, name: str) -> bool:
        """Some member waits for attribute `name` to be read."""
        return name in self.pending

    def release_waiting(self, name: str, which) -> bool:
        """Process the members waiting for `name` for which `which(n, st)` holds (before `name` is read);
        returns whether any was."""
        keep, released = [], False
        for n, st in self.pending[name]:
            if which(n, st):
                self.mqueue.append((n, st))
                released = True
            else:
                keep.append((n, st))
        if keep:
            self.pending[name] = keep
        else:
            del self.pending[name]
        return released

    def enqueue(self, n: Node, item) -> None:
        """Process `item` of node n: a member statement of its class, or a rule's (handler, arg), called as
        handler(engine, n, arg)."""
        self.mqueue.append((n, item))

    def member_waits(self, n: Node, st: ast.stmt, name: str) -> None:
        """Member `st` of n is processed once attribute `name` is read (now, if it already is)."""
        if name in self.attr_names:
            self.mqueue.append((n, st))
        else:
            self.pending.setdefault(name, []).append((n, st))

    def drain(self) -> None:
        while True:
            while self.queue or self.mqueue:
                if self.mqueue:
                    n, st = self.mqueue.pop(0)
                    self._process_member(n, st)
                    continue
                key = self.queue.pop(0)
                self._process(self.nodes[key])
            if not any(release(self) for release in self._hooks["release"]):
                return

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

    # ------------------------------------------------------------ processing
    def _process(self, n: Node) -> None:
        if n.stmt is None:
            return
        skip = self._block_members(n) if n.kind == "block" else set()
        for hook in self._hooks["skip"]:
            skip |= hook(self, n)
        if any(claim(self, n) for claim in self._hooks["claim"]):
            return
        n.scan = self.scanner.stmt(self.index.get(n.module), n.stmt, skip)
        if n.block_members:   # members in a branch the scan pruned are gone with it: no longer members
            live = set(n.scan.skipped)
            for i in [i for i in n.dropped if i not in live]:
                del n.dropped[i]
            n.block_members = {k: [st for st in v if id(st) in live or id(st) not in skip]
                               for k, v in n.block_members.items()}
        before = set(n.deps)
        self.absorb(n, n.scan)
        for hook in self._hooks["scanned"]:
            hook(self, n, before)

    def _process_member(self, n: Node, st) -> None:
        if isinstance(st, tuple):   # a rule's own item: (handler, item)
            st[0](self, n, st[1])
            return
        if id(st) not in n.dropped:
            return
        if any(defer(self, n, st) for defer in self._hooks["defer"]):
            return
        del n.dropped[id(st)]
        scan = self.scanner.stmt(self.index.get(n.module), st,
                                 cls=n.stmt if isinstance(n.stmt, ast.ClassDef) else None)
        n.scans.append(scan)
        self.absorb(n, scan)

    def absorb(self, n: Node, scan: Scan) -> None:
        """Follow what a scan of n reads."""
        for a in scan.attrs:
            self.reach_attr(a)
        for hook in self._hooks["absorb"]:
            hook(self, n, scan)
        for line, text, importtime in scan.dynamic:
            self.dynamic.append({"file": n.file, "line": line, "call": text, "importtime": importtime})
        for line, mod in scan.dead_imports:
            self.notes.append(f"{n.file}:{line}: import of {mod} dropped (no Python source in the tree; "
                              "compiled extension or generated file)")
        for line, text in scan.notes:
            self.notes.append(f"{n.file}:{line}: {text}")
        for ref in scan.refs:
            self._link(n, ref)

    def _link(self, n: Node, ref: Ref) -> None:
        if ref.binding is not None:
            t = self.res.import_target(ref.binding)
        else:
            t = self.res.name(n.module, ref.name)
        t, used = self.res.chain(t, ref.attrs)
        if ref.annotation and not ref.decorated:
            # annotations are lazy strings in the bundle: only keep the cheap external ones
            if t.kind == "external":
                self.lazy_refs.add(id(ref))
                self._external(t, n, ref)
            return
        for link in self._link_rules.get(t.kind, ()):
            if link(self, n, ref, t, used):
                return
        if t.kind == "node":
            for st in t.stmts:
                dep = self.node_for(t.module, st, by_ref=True)
                if ref.importtime and (ref.called or used < len(ref.attrs)):
                    n.calls.add(dep.key)   # called, or an attribute of it read at import time
                self.depend(n, ref, dep.key, t.name, used)
        elif t.kind == "external":
            self._external(t, n, ref)
        elif t.kind == "builtin":
            return
        elif t.kind == "dynamic":
            self.unresolved_ref(n, ref, f"{t.name} is provided dynamically by {self.index.get(t.module).path}")
        elif t.kind == "module":
            self.unresolved_ref(n, ref, f"module {t.module} used as a value (not through an attribute)")
        else:
            self.unresolved_ref(n, ref, t.reason)

    def _external(self, t: Target, n: Node, ref: Ref) -> None:
        b = t.binding
        stmt, obj = import_stmt(b)
        n.ext_links.append((ref, stmt, b.name, obj))
        self.externals.setdefault(stmt, (b.name, obj))
        for hook in self._hooks["external"]:
            hook(self, n, ref, b)
