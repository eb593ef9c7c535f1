"""Resolve a name (and its attribute chain) read in a module to what defines it."""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from .index import ImportBinding, Stmt, TreeIndex

_BUILTINS = set(dir(builtins)) | {"__name__", "__file__", "__doc__", "__spec__", "__package__",
                                  "__path__", "__builtins__", "__loader__", "__debug__"}


@dataclass
class Target:
    kind: str                       # node, module, external, builtin, dynamic, unresolved
    module: str = ""
    name: str = ""                  # the defined name (node), the attribute (dynamic)
    stmts: tuple[Stmt, ...] = ()
    binding: ImportBinding | None = None
    reason: str = ""


class Resolver:
    def __init__(self, index: TreeIndex):
        self.index = index
        self._memo: dict[tuple[str, str, bool], Target] = {}
        self._active: set[tuple[str, str, bool]] = set()
        # (module, If) -> the branch the variant takes (True: its body), None where undecided; set by the variant's
        # closure (vllm/__init__.py)
        self.branch_taken = None

    def module_exists(self, mod: str) -> bool:
        return self.index.has_module(mod)

    def import_target(self, b: ImportBinding) -> Target:
        if b.external:
            return Target("external", module=b.module, name=b.name, binding=b)
        if b.attr is None:
            if self.module_exists(b.module):
                return Target("module", module=b.module)
            return Target("unresolved", module=b.module, name=b.name,
                          reason=f"module {b.module} has no Python source in the tree")
        return self.member(b.module, b.attr)

    def member(self, mod: str, attr: str) -> Target:
        sub = f"{mod}.{attr}"
        if not self.module_exists(mod):
            if self.module_exists(sub):
                return Target("module", module=sub)
            return Target("unresolved", module=mod, name=attr,
                          reason=f"module {mod} has no Python source in the tree")
        info = self.index.get(mod)
        b2 = info.imports.get(attr)
        if attr not in info.defs and self.module_exists(sub) and (
                b2 is None or (b2.attr is None and b2.module == sub)
                or (b2.attr is not None and f"{b2.module}.{b2.attr}" == sub)):
            return Target("module", module=sub)
        return self.name(mod, attr, outside=True)

    def name(self, mod: str, name: str, _depth: int = 0, outside: bool = False) -> Target:
        key = (mod, name, outside)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if _depth > 50 or key in self._active:
            return Target("unresolved", module=mod, name=name, reason=f"import cycle through {mod}.{name}")
        self._active.add(key)
        try:
            t = self._name(mod, name, _depth, outside)
        finally:
            self._active.discard(key)
        self._memo[key] = t
        return t

    def _name(self, mod: str, name: str, _depth: int, outside: bool) -> Target:
        info = self.index.get(mod)
        t: Target | None = None
        b = info.imports.get(name)
        if b is not None and not b.top and len(info.branch_imports.get(name, ())) > 1 and self.branch_taken:
            # bound by imports in several branches of module-level ifs (`if is_cuda_alike(): from vllm import
            # _custom_ops as ops` / `elif is_xpu(): ... as ops`): the one binding whose branches the variant takes
            live = [a for a, path in info.branch_imports[name]
                    if all(self.branch_taken(mod, st) is taken for st, taken in path)]
            if len(live) == 1:
                b = live[0]
        if b is not None and not b.external and not b.top and not self.index.has_source(b.module):
            # an import of compiled vLLM code inside a module-level block (`try: from vllm.ext import f`): the
            # name is the block's (it fails there in the bundle, graph/imports_scan.py)
            holder = [s for s in info.stmts if s.kind == "block" and s.line <= b.stmt.lineno <= s.end_line]
            if holder:
                return Target("node", module=mod, name=name, stmts=(holder[0],))
        if b is not None:
            if b.external:
                t = Target("external", module=b.module, name=name, binding=b)
            elif name not in info.defs or b.top:
                t = self.import_target(b)
        if t is None and name in info.defs:
            t = Target("node", module=mod, name=name, stmts=tuple(info.defs[name]))
        if t is None:
            for star in info.stars:
                if self.module_exists(star):
                    r = self.name(star, name, _depth + 1, outside=True)
                    if r.kind != "unresolved":
                        t = r
                        break
        if t is None and name in _BUILTINS and not outside:
            t = Target("builtin", name=name)
        if t is None and info.has_getattr and outside:
            t = Target("dynamic", module=mod, name=name)
        if t is None:
            t = Target("unresolved", module=mod, name=name,
                       reason=f"{name!r} is not defined in {info.path}")
        return t

    def chain(self, t: Target, attrs: list[str]) -> tuple[Target, int]:
        """Follow module attributes: returns the final target and how many attrs it consumed."""
        used = 0
        while t.kind == "module" and used < len(attrs):
            t = self.member(t.module, attrs[used])
            used += 1
        return t, used
