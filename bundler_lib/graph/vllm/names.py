"""What the guard evaluator learns from vLLM's own names: the defaults of `vllm.envs` flags, the bases of the
`Unquantized*` classes (a tree-wide scan), which classes are CustomOps and which have a native forward."""

from __future__ import annotations

import ast
import re

from ..defs import Defs, bases
from ..guards import _UNKNOWN, Oracle, _compare
from ..index import TreeIndex
from ..scans import TreeScans


def unquantized_bases_scan(index: TreeIndex):
    """The scan: names of every class an `Unquantized*` class of the tree derives from (textually), sorted."""
    def scan(_: str) -> list[str]:
        cls_re = re.compile(r"^class\s+(\w+)\s*\(([^)]*)\)", re.M)
        found: dict[str, set[str]] = {}
        for rel in sorted(index.files.values()):
            text = index.text(rel)
            if text is None:
                continue
            for m in cls_re.finditer(text):
                names = {b.strip().split(".")[-1].split("[")[0] for b in m.group(2).split(",")}
                found.setdefault(m.group(1), set()).update(x for x in names if x.isidentifier())
        out: set[str] = set()
        stack = [c for c in found if c.startswith("Unquantized")]
        while stack:
            c = stack.pop()
            for b in found.get(c, ()):
                if b not in out:
                    out.add(b)
                    stack.append(b)
        return sorted(out)
    return scan


class VllmNames(Oracle):
    """The evaluator's answers that rest on vLLM's names (the predicates of the tree are predicates.py's)."""

    def __init__(self, index: TreeIndex, defs: Defs, scans: TreeScans):
        self.index, self.defs, self.scans = index, defs, scans
        self._env_defaults: dict | None = None
        self._unq: set[str] | None = None

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

    def unquantized_bases(self) -> set[str]:
        """Names of every class an `Unquantized*` class of the tree derives from (by name, textually)."""
        if self._unq is None:
            self._unq = set(self.scans.get("unquantized_bases"))
        return self._unq

    def is_custom_op(self, module: str, cls: ast.ClassDef, defines: str | None = None, depth: int = 0) -> bool:
        """`cls` is vLLM's CustomOp or derives from it (through bases the tree defines); with `defines`, `cls` or a
        base below CustomOp defines that method (CustomOp's own forward_native only raises NotImplementedError)."""
        if cls.name == "CustomOp" and any(isinstance(b, ast.FunctionDef) and b.name == "enabled" for b in cls.body):
            return defines is None
        if depth > 20:
            return False
        if any(isinstance(b, ast.FunctionDef) and b.name == defines for b in cls.body):
            defines = None
        for base in bases(cls):
            found = self.defs.sole_def(module, base.id, ast.ClassDef) if isinstance(base, ast.Name) else None
            if found is not None and self.is_custom_op(*found, defines, depth + 1):
                return True
        return False


def env_default_value(e: ast.expr):
    """The value of an envs.py lambda body when no environment variable is set, or _UNKNOWN.
    Understands os.getenv / os.environ.get with a literal default, bool/int/float/str, .lower() and the like,
    comparisons and membership against literals, and/or/not."""
    if isinstance(e, ast.Constant):
        return e.value
    if isinstance(e, (ast.Tuple, ast.List, ast.Set)):
        items = [env_default_value(x) for x in e.elts]
        return _UNKNOWN if any(x is _UNKNOWN for x in items) else tuple(items)
    if isinstance(e, ast.Call) and not e.keywords:
        f = e.func
        src = ast.unparse(f)
        if src in ("os.getenv", "os.environ.get") and 1 <= len(e.args) <= 2:
            return env_default_value(e.args[1]) if len(e.args) == 2 else None
        if isinstance(f, ast.Name) and f.id in ("bool", "int", "float", "str") and len(e.args) == 1:
            v = env_default_value(e.args[0])
            if v is _UNKNOWN:
                return _UNKNOWN
            try:
                return {"bool": bool, "int": int, "float": float, "str": str}[f.id](v)
            except (TypeError, ValueError):
                return _UNKNOWN
        if isinstance(f, ast.Attribute) and f.attr in ("lower", "upper", "strip") and not e.args:
            v = env_default_value(f.value)
            return getattr(v, f.attr)() if isinstance(v, str) else _UNKNOWN
        return _UNKNOWN
    if isinstance(e, ast.Compare) and len(e.ops) == 1:
        a, b = env_default_value(e.left), env_default_value(e.comparators[0])
        if a is _UNKNOWN or b is _UNKNOWN:
            return _UNKNOWN
        op = e.ops[0]
        try:
            if isinstance(op, ast.In):
                return a in b
            if isinstance(op, ast.NotIn):
                return a not in b
        except TypeError:
            return _UNKNOWN
        if isinstance(op, (ast.Is, ast.IsNot)) and b is None:
            return (a is None) == isinstance(op, ast.Is)
        return _compare_any(a, op, b)
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
        v = env_default_value(e.operand)
        return _UNKNOWN if v is _UNKNOWN else not v
    if isinstance(e, ast.BoolOp):
        vals = [env_default_value(x) for x in e.values]
        if any(v is _UNKNOWN for v in vals):
            return _UNKNOWN
        out = vals[0]
        for v in vals[1:]:
            out = (out and v) if isinstance(e.op, ast.And) else (out or v)
        return out
    return _UNKNOWN


def _compare_any(a, op: ast.cmpop, b):
    try:
        if isinstance(op, ast.Eq):
            return a == b
        if isinstance(op, ast.NotEq):
            return a != b
        return _compare(a, op, b) if isinstance(op, (ast.Gt, ast.GtE, ast.Lt, ast.LtE)) else _UNKNOWN
    except TypeError:
        return _UNKNOWN
