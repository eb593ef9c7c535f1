"""Class members: within a class only what is read is kept.

Rules (engine.py hooks):
- ClassMembers: a method (and, in a plain class, a class attribute whose value runs no code) is left out until
  the closure reads its name; dunder methods, `forward` and what the class body itself reads are kept; a root
  class keeps every member but `root_drops` (the other platforms' forwards); @overload stubs never run.
- ClassConstants: `Cls.CONST` where the class body binds CONST to a literal is replaced by that literal.
- SelfReads: a `self.<name>` read in a method of class C reaches the member <name> of class D only when a
  reached class has both C and D in its MRO (or has a base the tree does not resolve).
- AbstractStubs: an abstract method of an ABC that does nothing is kept only when something can run it
  (abstract.py): called by name on its class, through super(), or as a class/static method.
"""

from __future__ import annotations

import ast

from bundler_lib.common.scopes import nodes_within

from .abstract import abstract_stubs, c3, declares_abc, super_reads
from .defs import Defs, bases
from .engine import Rule
from .index import overload_stubs

# External bases under which a class attribute stays a plain class attribute.
_PLAIN_EXTERNAL_BASES = {"object", "ABC", "abc.ABC", "Generic", "typing.Generic", "nn.Module", "torch.nn.Module"}


def _always_kept(name: str) -> bool:
    """Methods called by protocol rather than by name in the code."""
    return (name.startswith("__") and name.endswith("__")) or name == "forward"


def member_name(st: ast.stmt, attributes: bool) -> str | None:
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


class Mro:
    """Method resolution orders over the bases the tree defines (shared by SelfReads and AbstractStubs)."""

    def __init__(self, defs: Defs):
        self.defs = defs
        self._mros: dict[int, list[ast.ClassDef]] = {}
        self._open: dict[int, bool] = {}   # id(ClassDef) -> it has a base the tree does not resolve
        self.module_of: dict[int, str] = {}   # id(ClassDef) -> its module, for the classes of MROs

    def of(self, module: str, cls: ast.ClassDef, depth: int = 0) -> list[ast.ClassDef]:
        """The class's method resolution order over the bases the tree defines."""
        hit = self._mros.get(id(cls))
        if hit is not None:
            return hit
        self.module_of[id(cls)] = module
        self._mros[id(cls)] = [cls]   # a cycle or a too deep chain ends here
        found_bases = []
        for b in bases(cls):
            found = self.defs.base_def(module, b)
            if found is not None and depth < 30:
                found_bases.append(self.of(*found, depth + 1))
        self._mros[id(cls)] = out = c3(cls, found_bases)
        return out

    def open_bases(self, module: str, cls: ast.ClassDef) -> bool:
        """The class has a base that is neither a class of the tree nor an import from outside it."""
        hit = self._open.get(id(cls))
        if hit is None:
            hit = False
            for base in bases(cls):
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if not isinstance(root, ast.Name):
                    hit = True
                elif self.defs.base_def(module, base) is None:
                    hit = self.defs.res.name(module, root.id).kind not in ("external", "builtin")
                if hit:
                    break
            self._open[id(cls)] = hit
        return hit


class ClassMembers(Rule):
    name = "class-members"
    decides = "which methods and class attributes of a reached class are kept (those read by name)"

    def __init__(self, defs: Defs, root_drops: set[str]):
        self.defs = defs
        self.root_drops = root_drops   # members a root class leaves out too (the other platforms' forwards)

    def skip(self, g, n) -> set[int]:
        skip = set()
        if not isinstance(n.stmt, ast.ClassDef):
            return skip
        # names the class body itself reads (e.g. a helper def called while the class is created)
        body_reads = set()
        for st in n.stmt.body:
            parts = [st] if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) else st.decorator_list
            for part in parts:
                body_reads |= {x.id for x in ast.walk(part) if isinstance(x, ast.Name)
                               and not isinstance(x.ctx, ast.Store)}
        root = n.key in g.roots
        plain = not root and self._plain_class(n.module, n.stmt)
        stubs = overload_stubs(n.stmt.body)
        if not root:
            n.abstract = abstract_stubs(n.stmt.body)
        for st in n.stmt.body:
            name = member_name(st, plain)
            if id(st) in stubs:
                skip.add(id(st))
                n.dropped[id(st)] = st
                n.stubs.add(id(st))
            elif (name and not _always_kept(name) and name not in body_reads
                    and (not root or name in self.root_drops)):
                skip.add(id(st))
                n.dropped[id(st)] = st
        return skip

    def scanned(self, g, n, before: set) -> None:
        if not isinstance(n.stmt, ast.ClassDef):
            return
        n.ctor_deps = set(n.deps) - before   # class body, bases, decorators, dunder methods
        for st in list(n.dropped.values()):
            if id(st) not in n.stubs:
                g.member_waits(n, st, member_name(st, True))

    def _plain_class(self, module: str, cls: ast.ClassDef, depth: int = 0) -> bool:
        """A class whose body assignments are only class attributes: no decorator or metaclass keyword that
        could turn them into fields (dataclass, pydantic, NamedTuple, Enum members), through every base."""
        if cls.decorator_list or cls.keywords or depth > 20:
            return False
        for base in bases(cls):
            text = ast.unparse(base)
            if text in _PLAIN_EXTERNAL_BASES:
                continue
            if not isinstance(base, ast.Name):
                return False
            found = self.defs.sole_def(module, base.id, ast.ClassDef)
            if found is None or not self._plain_class(*found, depth + 1):
                return False
        return True


class ClassConstants(Rule):
    name = "class-constants"
    decides = "`Cls.CONST` bound to a literal in the class body is read as that literal (the class not reached)"
    link_kinds = ("node",)

    def link(self, g, n, ref, t, used) -> bool:
        """`Cls.CONST` where the class body assigns CONST a literal: use the literal, not the class."""
        if used >= len(ref.attrs):
            return False
        st = t.stmts[-1].node
        if len(t.stmts) != 1 or not isinstance(st, ast.ClassDef):
            return False
        if st.keywords or any("Enum" in ast.unparse(b) or "Flag" in ast.unparse(b) for b in st.bases):
            return False   # enum members and metaclass-made attributes are not their literals
        attr = ref.attrs[used]
        if not isinstance(getattr(ref.nodes[used + 1], "ctx", None), ast.Load):
            return False
        value, field_default = _class_binding(st, attr)
        if value is None or not (attr.isupper() or field_default):
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


def _class_binding(st: ast.ClassDef, attr: str) -> tuple[ast.expr | None, bool]:
    """(the last value the class body binds `attr` to, whether that is a dataclass-style field's default)."""
    value = None
    field_default = False
    for b in st.body:
        if isinstance(b, ast.Assign) and len(b.targets) == 1 and isinstance(b.targets[0], ast.Name) \
                and b.targets[0].id == attr:
            value = b.value
        elif isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name) and b.target.id == attr:
            value = b.value
            field_default = bool(st.decorator_list)   # a dataclass-style field's default
    return value, field_default


class SelfReads(Rule):
    name = "self-reads"
    decides = "which classes' members a `self.<name>` read reaches (the classes `self` can be an instance of)"

    def __init__(self, mro: Mro):
        self.mro = mro
        # `self.<name>` reads: name -> {id(ClassDef): ClassDef} of the classes whose methods read it
        self._self_reads: dict[str, dict[int, ast.ClassDef]] = {}

    def absorb(self, g, n, scan) -> None:
        for a, cls in scan.self_attrs:
            if a not in g.attr_names:
                self._self_reads.setdefault(a, {})[id(cls)] = cls

    def release(self, g) -> bool:
        """Queue the pending members that a `self.<name>` read can reach: `self` in a method of class C is an
        instance of a reached class E whose MRO holds C; the member of class D runs when D is in E's MRO too.
        A class with a base the tree does not resolve may hold any class. Returns whether any was queued."""
        names = [a for a in self._self_reads if g.waits_for(a)]
        if not names:
            return False
        mros = []
        for d in list(g.nodes.values()):
            if isinstance(d.stmt, ast.ClassDef):
                mro = self.mro.of(d.module, d.stmt)
                mros.append(({id(c) for c in mro},
                             any(self.mro.open_bases(self.mro.module_of[id(c)], c) for c in mro)))
        queued = False
        for a in names:
            readers = self._self_reads[a]

            def reached(n, st) -> bool:
                d = id(n.stmt)
                return any(opened or (d in ids and any(c in ids for c in readers)) for ids, opened in mros)

            queued = g.release_waiting(a, reached) or queued
        return queued


class AbstractStubs(Rule):
    name = "abstract-stubs"
    decides = "an abstract method that does nothing is left out unless something can run it (abstract.py)"

    def __init__(self, index, mro: Mro):
        self.index, self.mro = index, mro
        self._deferred: dict[int, tuple] = {}   # abstract stubs reached by name, not kept yet
        self._released: set[int] = set()
        self._supers: dict[int, set[str]] = {}   # id(ClassDef) -> names it reads through super()
        self._attrs_of: dict[tuple[str, int], set[tuple[str, str]]] = {}
        self._in_source: dict[tuple[str, str], bool] = {}

    def defer(self, g, n, st) -> bool:
        if id(st) in n.abstract and id(st) not in self._released:
            self._deferred[id(st)] = (n, st)   # reached by name: kept once a reached class inherits it
            return True
        return False

    def release(self, g) -> bool:
        released = [k for k, (n, st) in self._deferred.items() if self._needed(g, n, st)]
        for k in released:
            self._released.add(k)
            g.enqueue(*self._deferred.pop(k))
        return bool(released)

    def _needed(self, g, n, st: ast.FunctionDef) -> bool:
        """Something can run the abstract stub `st` of class node `n` (abstract.py)."""
        if any(ast.unparse(d) in ("classmethod", "staticmethod") for d in st.decorator_list):
            return True   # runs on the abstract class itself
        if not any(declares_abc(c) for c in self.mro.of(n.module, n.stmt)):
            return True   # not enforced: an instance may run the stub
        nodes = [d for d in list(g.nodes.values()) if d.stmt is not None]
        cls, meth = n.stmt.name, st.name
        sources = {}
        for d in nodes:
            if d.module not in sources:
                sources[d.module] = self._mentions(d.module, cls) and self._mentions(d.module, meth)
            if sources[d.module] and (cls, meth) in self._name_attrs(d):
                return True
        for d in nodes:
            if isinstance(d.stmt, ast.ClassDef):
                mro = self.mro.of(d.module, d.stmt)
                k = next((i for i, c in enumerate(mro) if c is n.stmt), None)
                if k is not None and any(st.name in self._super_reads(c) for c in mro[:k + 1]):
                    return True
        return False

    def _mentions(self, module: str, word: str) -> bool:
        """`word` occurs in the module's source (searched once per module and word: every release asks again)."""
        hit = self._in_source.get((module, word))
        if hit is None:
            hit = self._in_source[module, word] = word in self.index.get(module).source
        return hit

    def _super_reads(self, cls: ast.ClassDef) -> set[str]:
        hit = self._supers.get(id(cls))
        if hit is None:
            hit = self._supers[id(cls)] = super_reads(cls)
        return hit

    def _name_attrs(self, n) -> set[tuple[str, str]]:
        """(name, attr) of every `name.attr` in the node's statement."""
        hit = self._attrs_of.get(n.key)
        if hit is None:
            hit = self._attrs_of[n.key] = {(x.value.id, x.attr) for x in nodes_within(n.stmt)
                                            if type(x) is ast.Attribute and type(x.value) is ast.Name}
        return hit
