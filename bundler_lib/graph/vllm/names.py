"""What the guard evaluator learns from vLLM's own names: the defaults of `vllm.envs` flags, the bases of the
`Unquantized*` classes (a tree-wide scan), which classes are CustomOps and which have a native forward."""

from __future__ import annotations

import ast
import re

from ..defs import Defs, bases
from ..guards import _UNKNOWN, Oracle, env_default_value
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
