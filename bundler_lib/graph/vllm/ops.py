"""`torch.ops.<ns>.<name>` calls: vLLM's compiled ops (A4 embeds their CUDA sources) and its Python custom ops
(`torch.ops.vllm.<op>`, registered by `direct_register_custom_op`: bound to the inlined Python function)."""

from __future__ import annotations

import ast
import re

from bundler_lib.common.op_lookups import named_op_calls

from ..engine import Rule
from ..index import Stmt, TreeIndex
from ..scans import TreeScans

_COMPILED_NAMESPACES = {"vllm", "_C", "_moe_C", "_rocm_C", "_C_cache_ops", "_C_custom_ar"}


def python_namespaces_scan(index: TreeIndex):
    """The scan: op namespaces the tree registers from Python (`Library("ns", ...)`), vLLM's own aside."""
    def scan(_: str) -> list[str]:
        pat = re.compile(r"Library\(\s*[\"'](\w+)[\"']")
        found = set()
        for rel in sorted(index.files.values()):
            text = index.text(rel)
            if text is None:
                continue
            if "Library(" in text:
                found |= set(pat.findall(text))
        return sorted(found - _COMPILED_NAMESPACES)
    return scan


def registrations_scan(index: TreeIndex):
    """The scan: modules whose text registers an op named `op` (direct_register_custom_op(op_name="op", ...) or
    with the name positional, direct_register_custom_op("op", ...))."""
    texts: list[tuple[str, str]] = []   # (module, text) of the files that register custom ops

    def scan(op: str) -> list[str]:
        if not texts:
            for module, rel in sorted(index.files.items(), key=lambda kv: kv[1]):
                text = index.text(rel)
                if text is not None and "direct_register_custom_op" in text:
                    texts.append((module, text))
        name = r"[\"']" + re.escape(op) + r"[\"']"
        pat = re.compile(r"op_name\s*=\s*" + name + r"|direct_register_custom_op\(\s*" + name)
        return [module for module, text in texts if pat.search(text)]
    return scan


class TorchOps(Rule):
    name = "torch-ops"
    decides = ("a torch.ops call is a compiled op of the tree (cuda_ops, for A4), a vLLM Python custom op (reaches "
               "the function registered for it) or another library's op; an op that module-level code looks up by "
               "its name (a call given the name and the op's function) keeps its registration, before that code; "
               "a compiled op the code checks for with hasattr(torch.ops.<ns>, \"<op>\") is optional")

    def __init__(self, index: TreeIndex, scans: TreeScans):
        self.index, self.scans = index, scans
        self.cuda_ops: dict[str, dict] = {}
        self.python_custom_ops: dict[str, tuple[str, int]] = {}
        self._registrations: dict[str, tuple[str, ast.Call] | None] = {}
        self._probed: set[str] = set()   # ops some code checks for with hasattr(torch.ops.<ns>, "<op>")
        self._py_ns: set[str] | None = None

    @staticmethod
    def registers(e: ast.expr) -> bool:
        """A custom-op registration: `direct_register_custom_op(...)`, `@torch.library.custom_op(...)`,
        `@torch.library.register_fake(...)` / `@f.register_fake`. A5 binds `torch.ops.vllm.<op>` call sites to the
        op's Python function, so in a block the registration binds nothing the bundle reads (a block member never
        wanted); a def so decorated is wanted by its name, as an undecorated one."""
        f = e.func if isinstance(e, ast.Call) else e
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        return name in ("direct_register_custom_op", "register_fake") or ast.unparse(f) == "torch.library.custom_op"

    def external(self, g, n, ref, b) -> None:
        attrs = ref.attrs
        if len(attrs) == 2 and ref.getattr_attr:   # getattr(torch.ops.<ns>, "<op>"[, default])
            attrs = attrs + [ref.getattr_attr]
        # `import torch` or `import torch.distributed` (which binds `torch` too)
        is_torch = b.attr is None and (b.module == "torch" or (b.name == "torch" and b.module.startswith("torch.")))
        if not (is_torch and ref.name == b.name and len(attrs) >= 3 and attrs[0] == "ops"):
            return
        ns, op = attrs[1], attrs[2]
        if len(ref.attrs) == 2 and ns == "vllm":
            return   # a Python custom op looked up by name: left to the namespace renaming (A5)
        if ns == "vllm":
            self._python_custom_op(g, n, ref, op)
        elif ns in ("aten", "prims", "prim", "higher_order"):
            pass   # torch's own operators
        elif not ns.startswith("_"):
            g.notes.append(f"{n.file}:{ref.line}: torch.ops.{ns}.{op} belongs to an external operator "
                           "library, not to the tree's compiled extensions")
        elif ns in self._python_namespaces():
            g.notes.append(f"{n.file}:{ref.line}: torch.ops.{ns}.{op} is registered from Python "
                           f"(torch.library.Library({ns!r})), not a compiled op")
        else:
            entry = self.cuda_ops.setdefault(f"{ns}.{op}", {"op": f"{ns}.{op}", "namespace": ns,
                                                           "name": op, "call_sites": []})
            site = {"file": n.file, "line": ref.line}
            optional = len(ref.attrs) == 2 and ref.getattr_default
            if len(ref.attrs) == 2 and ref.hasattr_probe:
                # hasattr(torch.ops.<ns>, "<op>"): vLLM's code checks the op was built before it uses it, so the
                # op is optional wherever it is called: A4 stubs it where it cannot embed it, and A5 binds the
                # check to False there (as in a vLLM build without the op)
                site["hasattr"] = True
                self._probed.add(entry["op"])
                g.notes.append(f"{n.file}:{ref.line}: hasattr(torch.ops.{ns}, {op!r}): the code checks for the op "
                               f"before using it; {ns}.{op} is optional (A4 stubs it where it cannot embed it)")
            elif optional:
                # getattr(torch.ops.<ns>, "<op>", default): the code runs without the op (the default), so the
                # op is optional: A4 embeds it where it can, else A5 binds the lookup to its default
                site["getattr_default"] = True
                g.notes.append(f"{n.file}:{ref.line}: getattr(torch.ops.{ns}, {op!r}, <default>): a lookup that "
                               f"may fail; {ns}.{op} is optional unless also referenced directly (A5 binds the lookup "
                               "to its wrapper, or to the default where A4 could only stub it)")
            if entry["op"] in self._probed or (not entry["call_sites"] and optional):
                entry["required"] = False   # checked for, or while every call site is such a getattr
            elif not optional:
                entry.pop("required", None)
            if site not in entry["call_sites"]:
                entry["call_sites"].append(site)

    def scanned(self, g, n, before: set) -> None:
        """Module-level code that passes an op's name and its function to a call (vLLM >= 0.34's
        `_op = eager_bypass_custom_op("name", impl)`, which looks the op up in torch.ops at import time) needs the
        op registered: the module's own top-level `direct_register_custom_op(op_name="name", op_func=impl, ...)`
        becomes a node that n depends on at import time (everywhere else the bundle calls an op's function
        directly and registers nothing)."""
        if n.kind not in ("assign", "block") or n.stmt is None:
            return
        for call, op, passed in named_op_calls(n.stmt):
            reg = self._find_registration(op)
            if reg is None or reg[0] != n.module or _op_func(reg[1]) not in passed:
                continue
            st = _top_level_stmt(self.index.get(n.module).tree, reg[1])
            if st is None:
                continue
            dep = g.node_for(n.module, st, by_ref=True)
            n.deps[dep.key] = True
            g.notes.append(f"{n.file}:{call.lineno}: {ast.unparse(call.func)}({op!r}, ...) looks the op up by name "
                           f"at import time: its registration (line {st.line}) is kept and runs first")

    def _python_namespaces(self) -> set[str]:
        if self._py_ns is None:
            self._py_ns = set(self.scans.get("python_namespaces"))
        return self._py_ns

    def _python_custom_op(self, g, n, ref, op: str) -> None:
        reg = self._find_registration(op)
        if reg is None:
            g.unresolved_ref(n, ref, f"torch.ops.vllm.{op}: no direct_register_custom_op(op_name={op!r}) found")
            return
        module, call = reg
        func = None
        for kw in call.keywords:
            if kw.arg == "op_func":
                func = kw.value
        if func is None and len(call.args) >= 2:
            func = call.args[1]
        if not isinstance(func, ast.Name):
            g.unresolved_ref(n, ref, f"torch.ops.vllm.{op}: op_func is not a plain name")
            return
        t = g.res.name(module, func.id)
        if t.kind != "node":
            g.unresolved_ref(n, ref, f"torch.ops.vllm.{op}: op_func {func.id} does not resolve ({t.reason})")
            return
        # A5 binds the op to this function: it is called directly, never registered, so nothing evaluates
        # its annotations (no schema is inferred)
        st = t.stmts[-1]
        # in a module-level block (`if has_flashinfer(): def f ...; direct_register_custom_op(...)`), f only
        dep = g.node_for(t.module, st, by_ref=st.kind == "block")
        g.want(dep, t.name)
        n.deps[dep.key] = n.deps.get(dep.key, False) or ref.importtime
        n.op_links.append((ref, op, dep.key, t.name))
        self.python_custom_ops[op] = dep.key

    def _find_registration(self, op: str):
        """(module, the direct_register_custom_op call) registering `op`, or None."""
        if op in self._registrations:
            return self._registrations[op]
        found = None
        for module in self.scans.get("registration", op):
            found = _registration_in(self.index.get(module).tree, op)
            if found:
                found = (module, found)
                break
        self._registrations[op] = found
        return found


def _registration_in(tree: ast.AST, op: str) -> ast.Call | None:
    for sub in ast.walk(tree):
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
                return sub
    return None


def _op_func(call: ast.Call) -> str | None:
    """The name of the function a direct_register_custom_op call registers (op_func=, or the second argument)."""
    func = next((k.value for k in call.keywords if k.arg == "op_func"), call.args[1] if len(call.args) > 1 else None)
    return func.id if isinstance(func, ast.Name) else None


def _top_level_stmt(tree: ast.Module, call: ast.Call) -> Stmt | None:
    """`call` as a statement of the module's body (an expression statement), as an index Stmt, else None."""
    for i, st in enumerate(tree.body):
        if isinstance(st, ast.Expr) and st.value is call:
            return Stmt(idx=i, node=st, names=[], kind="attached", line=st.lineno, end_line=st.end_lineno)
    return None
