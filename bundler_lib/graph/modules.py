"""Modules read other than by a plain name: a module-level `__getattr__` (and the dict literals it reads,
reached entry by entry), and a module object used as a value (embedded whole).

Rules (engine.py hooks):
- KeyedDicts: a module-level dict literal with string keys that the module's `__getattr__` (or a function
  `f(name)` reading it only as `d[name]` / `name in d`) reads keeps only the entries asked for by name.
- ModuleGetattr: a name a module provides through its `__getattr__` reaches that function (and the entry).
- ModuleValue: a module used as a value, with no repo-local imports, is embedded whole (executed at import);
  one that imports the tree, read at run time only, is a stand-in module whose attributes raise ImportError (a
  bundle inlines definitions, not modules), so only the path that uses it fails.
"""

from __future__ import annotations

import ast

from .engine import Rule
from .refs import Scan


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


class KeyedDicts(Rule):
    name = "keyed-dicts"
    decides = "which entries of a dict literal read by name (module __getattr__, an accessor function) are kept"
    link_kinds = ("node",)

    def __init__(self, index):
        self.index = index
        self.getattr_keys: dict[str, set[str]] = {}   # module -> the names asked of its __getattr__
        self._keyed: dict[str, set[int]] = {}
        self._full: set[tuple[str, int]] = set()

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

    def ask(self, g, module: str, name: str) -> None:
        """`name` is asked of the module's __getattr__: reach that entry of its keyed dicts."""
        self.getattr_keys.setdefault(module, set()).add(name)
        for k, node in list(g.nodes.items()):
            if k[0] == module and node.entries is not None:
                g.enqueue(node, (self.entry, name))

    def claim(self, g, n) -> bool:
        if n.key[1] not in self.keyed_dicts(n.module):
            return False
        value = n.stmt.value
        n.entries = {k.value: (k, v) for k, v in zip(value.keys, value.values)}
        n.scan = Scan()
        keys = self.getattr_keys.get(n.module, set())
        if n.key in self._full:
            keys = set(n.entries)
        for key in sorted(keys):
            g.enqueue(n, (self.entry, key))
        return True

    def entry(self, g, n, key: str) -> None:
        """Reach entry `key` of keyed dict node n."""
        if n.entries is None or key in n.entries_kept or key not in n.entries:
            return
        n.entries_kept.add(key)
        scan = g.scanner.expr(self.index.get(n.module), n.entries[key][1])
        n.scans.append(scan)
        g.absorb(n, scan)

    def link(self, g, n, ref, t, used) -> bool:
        if len(t.stmts) == 1 and self.keyed_dicts(t.module):
            self._accessor_call(g, ref, t)
        for st in t.stmts:
            if st.idx in self.keyed_dicts(t.module) and not (n.module == t.module and (
                    "__getattr__" in n.names or self._is_accessor(n, st.names[0]))):
                # read other than through __getattr__: keep every entry
                dep = g.node_for(t.module, st, by_ref=True)
                for key in sorted(k.value for k in st.node.value.keys):
                    g.enqueue(dep, (self.entry, key))
        return False

    def _accessor_call(self, g, ref, t) -> None:
        """A call of a function that reads a keyed dict only by its argument: reach the entry it names (a
        string constant), or every entry."""
        info = self.index.get(t.module)
        for idx in self.keyed_dicts(t.module):
            dname = next(s_.names[0] for s_ in info.stmts if s_.idx == idx)
            if t.stmts[0].kind == "function" and _accessor_of(t.stmts[0].node, dname):
                keys = [ref.call_arg0] if ref.call_arg0 else None
                self.getattr_keys.setdefault(t.module, set()).update(keys or [])
                for k2, node in list(g.nodes.items()):
                    if k2 == (t.module, idx):
                        for key in (keys or sorted(k.value for k in node.stmt.value.keys)):
                            g.enqueue(node, (self.entry, key))
                if keys is None:
                    self._full.add((t.module, idx))

    @staticmethod
    def _is_accessor(n, dname: str) -> bool:
        return n.kind == "function" and _accessor_of(n.stmt, dname)


class ModuleGetattr(Rule):
    name = "module-getattr"
    decides = "a name a module provides through its __getattr__ reaches that function (and its dict entry)"
    link_kinds = ("dynamic",)

    def __init__(self, index, keyed: KeyedDicts):
        self.index, self.keyed = index, keyed

    def link(self, g, n, ref, t, used) -> bool:
        info = self.index.get(t.module)
        ga = info.defs.get("__getattr__")
        if not ga:
            return False
        attr = ref.attrs[used - 1] if used else ref.name
        self.keyed.ask(g, t.module, attr)
        dep = g.node_for(t.module, ga[-1])
        g.depend(n, ref, dep.key, "@getattr:__getattr__", used)
        g.notes.append(f"{n.file}:{ref.line}: {'.'.join([ref.name] + ref.attrs[:used])} "
                       f"resolved through {info.path} __getattr__")
        return True


class ModuleValue(Rule):
    name = "module-value"
    decides = ("a module object used as a value is embedded whole when it imports nothing of the tree, else, read "
               "at run time only, a stand-in whose attributes raise ImportError")
    link_kinds = ("module",)

    def __init__(self, index):
        self.index = index

    def link(self, g, n, ref, t, used) -> bool:
        """A module object used as a value: embed a self-contained module (no repo-local imports)."""
        if used != len(ref.attrs):
            return False
        module = t.module
        info = self.index.get(module)
        name = "_module_" + module.replace(".", "_")
        for sub in ast.walk(info.tree):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                if (isinstance(sub, ast.ImportFrom) and sub.level) or any(
                        not b.external for b in self.index.import_bindings(info, sub, False)):
                    return False if ref.importtime else self._stand_in(g, n, ref, module, name, used)
        template = (f"@@NAME@@ = types.ModuleType(__name__ + '.' + {module!r})\n"
                    "sys.modules[@@NAME@@.__name__] = @@NAME@@\n"
                    f"exec(compile({info.source!r}, {info.path!r}, 'exec'), @@NAME@@.__dict__)\n")
        syn = g.synthetic(module, name, template, [], imports=["import sys", "import types"], file=info.path,
                          line=1, end_line=len(info.lines))
        g.depend(n, ref, syn.key, name, used)
        g.notes.append(f"{n.file}:{ref.line}: module {module} is used as a value: embedded whole "
                       f"({len(info.lines)} lines, executed at import)")
        return True

    @staticmethod
    def _stand_in(g, n, ref, module: str, name: str, used: int) -> bool:
        why = (f"{module} is used as a module object at {n.file}:{ref.line} and imports the tree: a bundle inlines "
               "definitions, not modules; this path is not in the bundle")
        getattr_src = 'def __getattr__(name):\n    raise ImportError(f"{__name__}.{name}: ' + why + '")'
        template = (f"@@NAME@@ = types.ModuleType(__name__ + '.' + {module!r})\n"
                    f"exec({getattr_src!r}, @@NAME@@.__dict__)\n")
        syn = g.synthetic(module, name, template, [], imports=["import types"], file=g.index.get(module).path,
                          line=1, end_line=1)
        g.depend(n, ref, syn.key, name, used)
        g.notes.append(f"{n.file}:{ref.line}: module {module} is used as a value and imports the tree: a stand-in "
                       "whose attributes raise ImportError (a bundle inlines definitions, not modules)")
        return True
