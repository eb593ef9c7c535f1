"""A5 binder: merge the A4 (CUDA), A3 (Triton) and A2 (Python) sections into one module and rewire every
compiled-op call site to the bundle's own wrappers.

Rewrites (libcst, on the merged module):
- `torch.ops.<ns>.<op>` and `torch.ops.<ns>.<op>.<overload>` (e.g. `.default`), for ns != "vllm", to A4's
  wrapper of that op (`_C_rms_norm`); called or used as a value alike;
- `torch.ops.vllm.<op>[.<overload>]` to the inlined Python function bound to it (A1 `python_custom_ops`);
- `hasattr(torch.ops.<ns>, "<op>")` to `True` for a bundled op;
- `getattr(torch.ops.<ns>, "<op>"[, default])` as `torch.ops.<ns>.<op>`; to its default where A4 could only
  stub the op (A1 marks an op whose every call site is such a getattr with a default `required: false`);
- the string `"<ns>::<op>"` (register_fake and friends) to the bundle's own `"<unique_ns>::<op>"`;
- every torch.library namespace the merged code registers ops into from Python (`registered_namespaces`:
  `Library("vllm_ir", "FRAGMENT")` of vLLM's IR, `Library("vllm", "FRAGMENT")` that `direct_register_custom_op`
  defines into, `torch.library.custom_op / triton_op / define("ns::op")`; not `Library(ns, "IMPL")`, not
  torch's own) to the bundle's own, `vllm_bundle_<key[:16]>_<ns>` (`namespace_key`: sha256 over the symbol and
  the merged sections), at the registration and at every read, together: `torch.ops.<ns>` (and longer chains),
  `getattr/hasattr(torch.ops, "<ns>")`, `"<ns>::<op>"` strings and schemas, `f"<ns>::{...}"`, the string in
  `Library("<ns>", ...)` and in comparisons with `.namespace`/`.ns`. So any number of bundles, and an installed
  vLLM, register their ops in one process without a clash. A read left naming a renamed namespace fails the stage;
- in a block inlined from a module whose data files A3 embedded (A3.data.json `anchors`), the expression for
  that module's directory (`os.path.dirname(os.path.realpath(__file__))`, `Path(__file__).parent`, ...) to
  `_bundle_data_dir("<its directory in the tree>")` (`_bundle_data_path(...)` for the Path forms), defined by
  A3's data section (A3.data.py), which goes between the Triton and the Python sections;
- `@torch.compile(...)` and `@torch.compiler.assume_constant_result` decorators that run at import (top-level
  functions, methods of top-level classes) to helpers defined after the imports (`LAZY_DECORATORS`): the same
  effect without importing torch._dynamo/torch._inductor at import (torch.compile is called at the first call).
Then it fails if any `vllm` import or any `torch.ops._C*`, `torch.ops._moe_C*` or `torch.ops.vllm` reference
remains. Writes A5.module.py and A5.bindmap.json (status, rewrites, namespaces, entry_symbol, public_signatures,
notes)."""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import libcst as cst

from bundler_lib.artifacts import read_json, write_json, write_text
from bundler_lib.common.contract import load_graph
from bundler_lib.common.data_anchors import DATA_JSON, DATA_PY, SECTION_NAMES, anchor_kind, helper_call
from bundler_lib.common.names import dotted as ast_dotted
from bundler_lib.errors import StageError

STAGE = "A5 bind"
LEFTOVER_NS = re.compile(r"^(_\w*C\w*|vllm)$")  # _C, _moe_C, _C_cache_ops, _rocm_C, vllm, ...
# "ns::op", "ns::op.overload", "ns::op(Tensor x) -> Tensor": an op's qualified name or schema
QUALIFIED = re.compile(r"([A-Za-z_]\w*)::([A-Za-z_]\w*)(?:\.\w+)?(?:\(.*\)(?:\s*->.*)?)?")
# attributes whose value is a namespace (`op_overload.namespace == "vllm_ir"`, `lib.ns`)
NAMESPACE_ATTRS = ("namespace", "ns")


# ----------------------------------------------------------------------------- inputs

def _load_json(inputs: Path, name: str, required: bool = True):
    p = inputs / name
    if not p.exists():
        if required:
            raise StageError(STAGE, str(p), "not found", f"run the stage that writes {name} first")
        return None
    try:
        return read_json(p)
    except ValueError as e:
        raise StageError(STAGE, str(p), f"not valid JSON ({e})", f"re-run the stage that writes {name}") from None


def _load_text(inputs: Path, name: str, required: bool = True) -> str:
    p = inputs / name
    if not p.exists() and not required:
        return ""
    if not p.exists():
        raise StageError(STAGE, str(p), "not found", f"run the stage that writes {name} first")
    return p.read_text(encoding="utf-8")


def _stmt_list(value, source: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise StageError(STAGE, source, "is not a list of import statements", "re-run that stage")
    out = []
    for v in value:
        if isinstance(v, dict):
            v = v.get("stmt") or v.get("statement") or v.get("import")
        if not isinstance(v, str) or not v.strip():
            raise StageError(STAGE, source, f"entry {v!r} is not an import statement", "re-run that stage")
        v = v.strip("\n")
        if not re.match(r"^\s*(import|from|try:|if )", v):
            v = f"import {v.strip()}"  # a bare module name
        try:
            ast.parse(v)
        except SyntaxError as e:
            raise StageError(STAGE, source, f"entry {v!r} does not parse ({e.msg})", "re-run that stage") from None
        out.append(v)
    return out


def merge_imports(*lists: list[str]) -> list[str]:
    """Union, deduplicated; `from __future__` first, then `import x`, then `from x import y`
    (each sorted), then compound statements (try/except guards) in first-seen order."""
    seen, uniq = set(), []
    for lst in lists:
        for s in lst:
            key = "\n".join(l.rstrip() for l in s.strip("\n").splitlines())
            if key not in seen:
                seen.add(key)
                uniq.append(key)

    def kind(s):
        if s.startswith("from __future__"):
            return 0
        if "\n" in s:
            return 3
        return 1 if s.startswith("import ") else 2

    simple = sorted((s for s in uniq if kind(s) < 3), key=lambda s: (kind(s), s))
    return simple + [s for s in uniq if kind(s) == 3]


# ----------------------------------------------------------------------------- rewriting

def dotted(node) -> str | None:
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


class Rewriter(cst.CSTTransformer):
    def __init__(self, wrappers: dict[tuple[str, str], str], pyops: dict[str, str], bundle_ns: str | None,
                 stubs: set | None = None, ns_map: dict[str, str] | None = None):
        self.wrappers = wrappers      # (ns, op) -> wrapper name
        self.pyops = pyops            # vllm op -> python target
        self.bundle_ns = bundle_ns
        self.stubs = stubs or set()   # (ns, op) whose A4 wrapper is a stub that raises (op not bundled)
        self.ns_map = ns_map or {}    # torch.library namespace the bundle registers -> the bundle's own
        self.counts: dict[tuple[str, str], int] = {}
        self._made: set[str] = set(wrappers.values()) | set(pyops.values())
        self._made_from: dict[int, str] = {}
        self._keep_ns: set[int] = set()   # `torch.ops.<ns>` nodes inside a chain that becomes a wrapper/function
        self._bare_ok: set[int] = set()   # string nodes that name a namespace (Library(...), getattr(torch.ops, ..))

    def _count(self, frm: str, to: str):
        self.counts[(frm, to)] = self.counts.get((frm, to), 0) + 1

    def _target(self, ns: str, op: str) -> str | None:
        if ns == "vllm":
            return self.pyops.get(op)
        return self.wrappers.get((ns, op))

    def visit_Attribute(self, node):
        d = dotted(node)
        if d is not None:
            parts = d.split(".")
            if len(parts) == 4 and parts[:2] == ["torch", "ops"] and self._target(parts[2], parts[3]):
                self._keep_ns.add(id(node.value))
        return True

    def _mark_bare(self, node):
        if isinstance(node, cst.SimpleString):
            self._bare_ok.add(id(node))

    def visit_Call(self, node):
        # where a plain string names a namespace: Library("ns", kind), getattr/hasattr(torch.ops, "ns")
        if not self.ns_map:
            return True
        f = dotted(node.func) or ""
        if f.rsplit(".", 1)[-1] == "Library":
            for i, a in enumerate(node.args):
                if (a.keyword is None and i == 0) or (a.keyword is not None and a.keyword.value == "ns"):
                    self._mark_bare(a.value)
        elif f in ("getattr", "hasattr") and len(node.args) >= 2 and dotted(node.args[0].value) == "torch.ops":
            self._mark_bare(node.args[1].value)
        return True

    def visit_Comparison(self, node):
        # `op.namespace == "ns"`, `lib.ns != "ns"`
        if not self.ns_map:
            return True
        sides = [node.left] + [c.comparator for c in node.comparisons]
        if any(isinstance(x, cst.Attribute) and x.attr.value in NAMESPACE_ATTRS for x in sides):
            for x in sides:
                self._mark_bare(x)
        return True

    def leave_Attribute(self, original_node, updated_node):
        d = dotted(original_node)
        if d is None:
            return updated_node
        parts = d.split(".")
        if len(parts) == 3 and parts[:2] == ["torch", "ops"] and parts[2] in self.ns_map \
                and id(original_node) not in self._keep_ns:
            new = self.ns_map[parts[2]]
            self._count(d, f"torch.ops.{new}")
            return updated_node.with_changes(attr=cst.Name(new))
        if len(parts) == 4 and parts[0] == "torch" and parts[1] == "ops":
            t = self._target(parts[2], parts[3])
            if t:
                new = cst.Name(t)
                self._made_from[id(new)] = d
                return new
        if len(parts) == 5 and parts[0] == "torch" and parts[1] == "ops" and isinstance(updated_node.value, cst.Name) \
                and updated_node.value.value in self._made:
            # torch.ops.<ns>.<op>.<overload>: the wrapper is the op's only overload
            t = updated_node.value.value
            self._made_from.pop(id(updated_node.value), None)
            self._count(d, t)
            return updated_node.value.with_changes()
        return updated_node

    def leave_Call(self, original_node, updated_node):
        f = updated_node.func
        if (isinstance(f, cst.Name) and f.value == "getattr" and len(updated_node.args) in (2, 3)
                and all(a.keyword is None and not a.star for a in updated_node.args)):
            # getattr(torch.ops.<ns>, "<op>"[, default]) binds like torch.ops.<ns>.<op>; an op A4 could only
            # stub (optional, not embedded) gives the default instead, as the lookup would without the op
            d = dotted(original_node.args[0].value)
            s = updated_node.args[1].value
            parts = (d or "").split(".")
            if len(parts) == 3 and parts[:2] == ["torch", "ops"] and isinstance(s, cst.SimpleString):
                name = s.evaluated_value
                t = self._target(parts[2], name) if isinstance(name, str) else None
                if t:
                    default = (parts[2], name) in self.stubs and len(updated_node.args) == 3
                    new = updated_node.args[2].value if default else cst.Name(t)
                    self._count(f"getattr({d}, {name!r}{', <default>' if len(updated_node.args) == 3 else ''})",
                                cst.Module([]).code_for_node(new) if default else t)
                    return new
        if isinstance(f, cst.Name) and f.value == "hasattr" and len(updated_node.args) == 2:
            d = dotted(original_node.args[0].value)
            s = updated_node.args[1].value
            if d and isinstance(s, cst.SimpleString):
                parts = d.split(".")
                if len(parts) == 3 and parts[:2] == ["torch", "ops"]:
                    name = s.evaluated_value
                    if isinstance(name, str) and self._target(parts[2], name):
                        value = "False" if (parts[2], name) in self.stubs else "True"
                        self._count(f"hasattr({d}, {name!r})", value)
                        return cst.Name(value)
        return updated_node

    def leave_FormattedString(self, original_node, updated_node):
        # f"ns::{name}": the literal head names the namespace
        parts = updated_node.parts
        if self.ns_map and parts and isinstance(parts[0], cst.FormattedStringText):
            m = re.match(r"(\w+)::", parts[0].value)
            if m and m.group(1) in self.ns_map:
                new = self.ns_map[m.group(1)]
                self._count(f"f-string {m.group(0)}...", f"{new}::...")
                head = parts[0].with_changes(value=new + parts[0].value[len(m.group(1)):])
                return updated_node.with_changes(parts=[head, *parts[1:]])
        return updated_node

    def leave_SimpleString(self, original_node, updated_node):
        try:
            v = updated_node.evaluated_value
        except Exception:
            return updated_node
        if not isinstance(v, str):
            return updated_node
        if self.ns_map:
            new = None
            if v in self.ns_map and id(original_node) in self._bare_ok:
                new = self.ns_map[v]
            else:
                m = QUALIFIED.fullmatch(v)
                if m and m.group(1) in self.ns_map:
                    new = self.ns_map[m.group(1)] + v[len(m.group(1)):]
            if new is not None and updated_node.raw_value == v:  # (one with escapes is left for the check)
                self._count(v, new)
                q = updated_node.quote
                return updated_node.with_changes(value=f"{updated_node.prefix}{q}{new}{q}")
        m = re.fullmatch(r"(\w+)::(\w+)(\.\w+)?", v)
        if m and m.group(1) != "vllm" and (m.group(1), m.group(2)) in self.wrappers and self.bundle_ns \
                and (m.group(1), m.group(2)) not in self.stubs:
            new = f"{self.bundle_ns}::{m.group(2)}{m.group(3) or ''}"
            q = updated_node.quote
            prefix = updated_node.prefix
            self._count(v, new)
            return updated_node.with_changes(value=f"{prefix}{q}{new}{q}")
        return updated_node


_MAY_REWRITE = re.compile(r"torch\s*\.\s*ops|::|hasattr")


def _blocks(body: list[ast.stmt]) -> list[tuple[int, int, ast.stmt]]:
    """Line ranges [start, end) (0-based) of statements, decorators included; statements sharing a line are
    merged (the node is then the first one's)."""
    blocks: list[list] = []
    for node in body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        if blocks and start < blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], node.end_lineno)
            blocks[-1][2] = None
        else:
            blocks.append([start, node.end_lineno, node])
    return [(a, b, n) for a, b, n in blocks]


def drop_unused_stubs(text: str, names: list[str]) -> tuple[str, list[str]]:
    """Remove the A4 stub wrappers (`def <name>(...)`: docstring `Stub: ...`, `raise NotImplementedError(...)`)
    that nothing names any more (every lookup of the op took its default): dead code in the bundle."""
    dropped = []
    for w in names:
        if len(re.findall(rf"\b{re.escape(w)}\b", text)) != 1:
            continue
        text, k = re.subn(rf"\n*def {re.escape(w)}\([^\n]*\):\n    \"\"\"Stub:[^\n]*\n"
                          rf"    raise NotImplementedError\([^\n]*\)\n", "\n", text)
        if k == 1:
            dropped.append(w)
    return text, dropped


def top_level_blocks(text: str) -> list[tuple[int, int]]:
    """Line ranges [start, end) (0-based) of the module's top-level statements, decorators included;
    statements sharing a line are merged."""
    return [(a, b) for a, b, _ in _blocks(ast.parse(text).body)]


_WRAP = "class _A5_wrapped_block:\n"


def _rewrite_chunk(chunk: str, indented: bool, wrappers, pyops, bundle_ns, stubs, counts: dict,
                   ns_map: dict | None = None) -> str:
    """libcst over one statement; an indented one (a method) is wrapped in a class to parse on its own."""
    rw = Rewriter(wrappers, pyops, bundle_ns, stubs, ns_map)
    code = cst.parse_module(_WRAP + chunk if indented else chunk).visit(rw).code
    if indented:
        assert code.startswith(_WRAP)
        code = code[len(_WRAP):]
    # 4-part rewrites: count those whose Name survived (not folded into a 5-part one)
    for frm in rw._made_from.values():
        ns, op = frm.split(".")[2:4]
        rw._count(frm, rw._target(ns, op))
    for k, v in rw.counts.items():
        counts[k] = counts.get(k, 0) + v
    return code


def _may_rewrite(ns_map: dict | None) -> re.Pattern:
    """What a statement's text must hold for libcst to look at it: `torch.ops`, `::`, `hasattr`, and a string
    that is (or starts with `<ns>::` for) a namespace the bundle registers."""
    if not ns_map:
        return _MAY_REWRITE
    names = "|".join(re.escape(n) for n in sorted(ns_map))
    return re.compile(_MAY_REWRITE.pattern + r"""|["'](?:""" + names + r""")(?:["']|::)""")


def rewrite(module_text: str, wrappers, pyops, bundle_ns, stubs=None, ns_map=None) -> tuple[str, dict]:
    """Rewire op references statement by statement: only statements whose text can hold one go through
    libcst (a whole 30k-line module through a libcst transformer takes tens of seconds); in a class, only its
    methods (and other body statements) that can."""
    may = _may_rewrite(ns_map)
    lines = module_text.splitlines(keepends=True)
    out, counts, pos = [], {}, 0
    for start, end, node in _blocks(ast.parse(module_text).body):
        out.append("".join(lines[pos:start]))
        chunk = "".join(lines[start:end])
        pos = end
        if not may.search(chunk):
            out.append(chunk)
            continue
        inner = _blocks(node.body) if isinstance(node, ast.ClassDef) and node.body else []
        head_end = inner[0][0] if inner else end
        if not inner or may.search("".join(lines[start:head_end])):
            out.append(_rewrite_chunk(chunk, False, wrappers, pyops, bundle_ns, stubs, counts, ns_map))
            continue
        out.append("".join(lines[start:head_end]))
        p2 = head_end
        for s0, s1, _ in inner:
            out.append("".join(lines[p2:s0]))
            sub = "".join(lines[s0:s1])
            out.append(_rewrite_chunk(sub, True, wrappers, pyops, bundle_ns, stubs, counts, ns_map)
                       if may.search(sub) else sub)
            p2 = s1
        out.append("".join(lines[p2:end]))
    out.append("".join(lines[pos:]))
    return "".join(out), counts


# ----------------------------------------------------------------------------- the bundle's own namespaces

# Namespaces torch itself owns: code may add kernels or ops to them (`Library("aten", "IMPL")`), never rename.
TORCH_NAMESPACES = frozenset({
    "aten", "prim", "prims", "_prims", "debugprims", "rngprims", "quantized", "_quantized", "quantized_decomposed",
    "c10d", "c10d_functional", "_c10d_functional", "_c10d_functional_autograd", "_dtensor", "inductor", "higher_order", "profiler",
    "fsdp", "mkldnn", "onednn", "_quantized_decomposed", "_test", "symm_mem", "streams"})
# torch.library calls whose first argument names the op as "ns::name" and define it
_OP_DEFINING = ("custom_op", "triton_op", "define")
BUNDLE_NS_PREFIX = "vllm_bundle_"


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def registered_namespaces(text: str) -> dict[str, list[str]]:
    """The torch.library namespaces the module's code registers ops into, each with how (sorted, unique):
    `[torch.library.]Library("ns", "FRAGMENT" | "DEF")` (vLLM's `vllm_lib` that `direct_register_custom_op`
    defines into, the IR's `vllm_ir_torch_lib`, ...), and `torch.library.custom_op / triton_op / define("ns::op")`
    (decorators included). `Library("ns", "IMPL")` only adds kernels to ops defined elsewhere (torch's `aten`):
    not a registration. Namespaces torch owns and the bundle's own (`vllm_bundle_*`, A4's) are left out."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        f = ast_dotted(node.func) or ""
        tail = f.rsplit(".", 1)[-1]
        ns = how = None
        if tail == "Library":
            kw = {k.arg: k.value for k in node.keywords}
            ns = _const_str(node.args[0] if node.args else kw.get("ns"))
            kind = _const_str(node.args[1] if len(node.args) > 1 else kw.get("kind"))
            if ns is None or kind not in ("DEF", "FRAGMENT"):
                continue
            how = f"{f}({ns!r}, {kind!r})"
        elif tail in _OP_DEFINING and node.args:
            name = _const_str(node.args[0])
            m = QUALIFIED.fullmatch(name) if name else None
            if not m or (tail == "define" and "library" not in f and f != "define"):
                continue  # `lib.define("op(...)")` names no namespace: the Library does
            ns, how = m.group(1), f"{f}({m.group(1)}::{m.group(2)})"
        if ns and ns not in TORCH_NAMESPACES and not ns.startswith(BUNDLE_NS_PREFIX) and ns.isidentifier():
            found.setdefault(ns, set()).add(how)
    return {ns: sorted(v) for ns, v in sorted(found.items())}


def namespace_key(symbol: str, module_text: str, data_text: str = "") -> str:
    """The bundle's namespace key: sha256 over the symbol and everything A5 merges (imports, the A4, A3 and
    A2 sections, A3's data section) before rewriting. Deterministic (the same inputs give the same key); two
    bundles that differ in any inlined line get different keys."""
    h = hashlib.sha256()
    for part in ("vllm-bundler A5 namespaces v1", symbol or "", module_text, data_text):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def namespace_map(ns_map: dict, registered: dict, key: str, a4m: dict, wrappers: dict) -> dict:
    """A5.bindmap.json `namespaces`: every torch.library namespace the bundle's ops live in, and whose it was."""
    cuda = sorted({ns for ns, _ in wrappers})
    return {
        "key": key,
        "python": [{"from": ns, "to": ns_map[ns], "registered_by": registered[ns]} for ns in sorted(ns_map)],
        "cuda": [{"from": ns, "to": a4m.get("namespace")} for ns in cuda] if a4m.get("namespace") else [],
    }


def bundle_namespaces(registered, key: str) -> dict[str, str]:
    """{namespace the code registers: the bundle's own}: `vllm_bundle_<key[:16]>_<ns>`."""
    return {ns: f"{BUNDLE_NS_PREFIX}{key[:16]}_{ns}" for ns in sorted(registered)}


# ----------------------------------------------------------------------------- import-time torch.compile

# Decorators from torch's compiler API that import torch._dynamo and torch._inductor (seconds) when they run,
# i.e. when the bundle is imported; each is pointed at a helper that has the same effect without the import.
LAZY_DECORATORS = {
    "torch.compile": ("_bundle_lazy_torch_compile", '''
def _bundle_lazy_torch_compile(model=None, **kwargs):
    """`torch.compile` for a decorator that runs when the bundle is imported (put there by the bundle
    builder's A5): the same call, made at the function's first call. torch.compile compiles at the first call
    anyway; calling it at import would import torch._dynamo and torch._inductor, which takes seconds."""
    import functools

    if model is None:
        return lambda fn: _bundle_lazy_torch_compile(fn, **kwargs)
    compiled = None

    @functools.wraps(model)
    def compiled_on_first_call(*args, **kw):
        nonlocal compiled
        if compiled is None:
            compiled = torch.compile(model, **kwargs)
        return compiled(*args, **kw)

    return compiled_on_first_call
'''),
    "torch.compiler.assume_constant_result": ("_bundle_lazy_assume_constant_result", '''
def _bundle_lazy_assume_constant_result(fn):
    """`torch.compiler.assume_constant_result` for a decorator that runs when the bundle is imported (put there
    by the bundle builder's A5): the mark torch._dynamo.decorators.assume_constant_result sets, without
    importing torch._dynamo (seconds); torch's own function once torch._dynamo is loaded."""
    import sys

    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn
'''),
}


def lazy_import_time_decorators(text: str) -> tuple[str, dict[str, int]]:
    """Point the LAZY_DECORATORS (bare or called) that run at import, on top-level functions and classes and
    on methods of top-level classes, at their helpers; calls inside function bodies stay as they are.
    Returns the text and the count per decorator."""
    spans = []

    def decorators(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for d in node.decorator_list:
                    f = d.func if isinstance(d, ast.Call) else d
                    name = ast_dotted(f)
                    if name in LAZY_DECORATORS:
                        spans.append((f.lineno, f.col_offset, f.end_lineno, f.end_col_offset, name))
            if isinstance(node, ast.ClassDef):
                decorators(node.body)

    decorators(ast.parse(text).body)
    counts: dict[str, int] = {}
    if not spans:
        return text, counts
    lines = [l.encode("utf-8") for l in text.splitlines(keepends=True)]
    for l0, c0, l1, c1, name in sorted(spans, reverse=True):  # ast offsets are UTF-8 byte offsets
        lines[l0 - 1] = lines[l0 - 1][:c0] + LAZY_DECORATORS[name][0].encode() + lines[l1 - 1][c1:]
        del lines[l0:l1]
        counts[name] = counts.get(name, 0) + 1
    return b"".join(lines).decode("utf-8"), counts


# ----------------------------------------------------------------------------- module-directory anchors

PROVENANCE = re.compile(r"^# --- Inlined from (\S+?):L\d+")
DATA_SENTINEL = "# @@ A5: the data section goes here @@\n"


def _anchor_spans(chunk: str) -> list[tuple[int, int, int, int, str, str]]:
    """(line, col, end_line, end_col, kind, source) of the module-directory anchors in `chunk`, outermost only;
    lines 1-based, columns UTF-8 byte offsets (as in ast)."""
    found = []
    for node in ast.walk(ast.parse(chunk)):
        kind = anchor_kind(node)
        if kind:
            found.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, kind,
                          ast.unparse(node)))
    found.sort()
    out = []
    for f in found:
        if out and (f[0], f[1]) < (out[-1][2], out[-1][3]):
            continue  # inside the previous one
        out.append(f)
    return out


def rewrite_anchors(module_text: str, dirs: dict[str, str]) -> tuple[str, dict, dict, list]:
    """Rewrite the module-directory anchors of blocks inlined from a file of `dirs` ({file: module dir}) to
    the data helper. Returns (text, {(from, to): count}, {file: count}, [(line, file, source) left as is])."""
    lines = module_text.splitlines(keepends=True)
    owner, cur = [], None
    for ln in lines:
        m = PROVENANCE.match(ln)
        if m:
            cur = m.group(1)
        owner.append(cur)
    out, counts, per_file, left, pos = [], {}, {}, [], 0
    for start, end in top_level_blocks(module_text):
        out.append("".join(lines[pos:start]))
        chunk = "".join(lines[start:end])
        pos = end
        if "__file__" in chunk:
            spans = _anchor_spans(chunk)
            f = owner[start]
            if f not in dirs:
                left += [(start + a[0], f, a[5]) for a in spans]
            elif spans:
                buf = [ln.encode("utf-8") for ln in chunk.splitlines(keepends=True)]
                for a, col, b, end_col, kind, src in reversed(spans):
                    new = helper_call(kind, dirs[f])
                    buf[a - 1] = buf[a - 1][:col] + new.encode("utf-8") + buf[b - 1][end_col:]
                    for i in range(a, b):
                        buf[i] = b""
                    counts[(src, new)] = counts.get((src, new), 0) + 1
                    per_file[f] = per_file.get(f, 0) + 1
                chunk = b"".join(buf).decode("utf-8")
        out.append(chunk)
    out.append("".join(lines[pos:]))
    return "".join(out), counts, per_file, left


class Leftovers(ast.NodeVisitor):
    """What binding must not leave behind: vLLM imports and compiled-op references (with their lines)."""

    def __init__(self, text: str, renamed: dict | None = None):
        self.text = text
        self.renamed = renamed or {}   # namespaces A5 renamed: no read of the old name may remain
        self.namespaces: list[tuple[str, int]] = []
        self.bare: dict[str, int] = {}  # plain strings equal to a renamed namespace, left as they are
        self.ops: list[tuple[str, int]] = []
        self.imports: list[tuple[str, int]] = []
        self.probes: list[tuple[str, int]] = []  # importlib.import_module("vllm...") inside try/except ImportError
        self._guarded: list[bool] = []

    def visit_Try(self, node):
        names = set()
        for h in node.handlers:
            if h.type is None:
                names.add("BaseException")
            else:
                for n in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]):
                    names.add((ast_dotted(n) or "").split(".")[-1])
        self._guarded.append(bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}))
        self.generic_visit(node)
        self._guarded.pop()

    visit_TryStar = visit_Try

    def visit_Attribute(self, node):
        d = ast_dotted(node)
        if d:
            parts = d.split(".")
            if len(parts) >= 3 and parts[0] == "torch" and parts[1] == "ops" and LEFTOVER_NS.match(parts[2]):
                self.ops.append((".".join(parts[:4]), node.lineno))
                return
            if len(parts) >= 3 and parts[:2] == ["torch", "ops"] and parts[2] in self.renamed:
                self.namespaces.append((".".join(parts[:4]), node.lineno))
                return
        self.generic_visit(node)

    def visit_Constant(self, node):
        if self.renamed and isinstance(node.value, str):
            m = QUALIFIED.fullmatch(node.value)
            if m and m.group(1) in self.renamed:
                self.namespaces.append((repr(node.value), node.lineno))
            elif node.value in self.renamed:
                self.bare[node.value] = self.bare.get(node.value, 0) + 1

    def visit_JoinedStr(self, node):
        head = node.values[0] if node.values else None
        if self.renamed and isinstance(head, ast.Constant) and isinstance(head.value, str):
            m = re.match(r"(\w+)::", head.value)
            if m and m.group(1) in self.renamed:
                self.namespaces.append((f"f-string {head.value!r}...", node.lineno))
        self.generic_visit(node)

    def visit_Import(self, node):
        for a in node.names:
            if a.name == "vllm" or a.name.startswith("vllm."):
                self.imports.append((f"import {a.name}", node.lineno))

    def visit_ImportFrom(self, node):
        mod = node.module or ""
        if node.level:
            self.imports.append((f"from {'.' * node.level}{mod} import ...", node.lineno))
        elif mod == "vllm" or mod.startswith("vllm."):
            self.imports.append((f"from {mod} import ...", node.lineno))

    def visit_Call(self, node):
        d = ast_dotted(node.func)
        if self.renamed and node.args:
            # Library("<ns>", ...) / getattr(torch.ops, "<ns>") left with a namespace A5 renamed
            first = None
            if d in ("getattr", "hasattr") and len(node.args) > 1 and ast_dotted(node.args[0]) == "torch.ops":
                first = node.args[1]
            elif (d or "").rsplit(".", 1)[-1] == "Library":
                first = node.args[0]
            if _const_str(first) in self.renamed:
                self.namespaces.append((f"{d}({first.value!r}, ...)", node.lineno))
        # importlib.import_module("vllm...") / __import__("vllm...")
        if d in ("importlib.import_module", "__import__") and node.args:
            v = node.args[0]
            if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.split(".")[0] == "vllm":
                where = (f"{d}({ast.get_source_segment(self.text, v)})", node.lineno)
                # a probe that fails gracefully without vLLM (caught ImportError) is noted, not fatal
                (self.probes if any(self._guarded) else self.imports).append(where)
        self.generic_visit(node)


def defined_at_top(text: str, names) -> list[str]:
    """Those of `names` that a line at column 0 of the module binds or names (a def, class, assignment, or
    any statement starting with the name): a textual check for the bundle builder's own helper names."""
    return sorted(n for n in names if re.search(r"^(?:(?:async\s+)?def\s+|class\s+)?" + re.escape(n) + r"\b",
                                                 text, re.M))


def entry_module(text: str, symbol: str, tree: ast.Module | None = None) -> cst.Module:
    """Only the top-level statements that define `symbol`, as a module (for its public signatures). Without
    a tree, only the provenance blocks whose text defines it are parsed."""
    if tree is None:
        blocks = re.split(r"(?m)^(?=# --- Inlined from )", text)
        pat = re.compile(r"^(?:@.*\n)*(?:class|(?:async\s+)?def)\s+" + re.escape(symbol) + r"\b", re.M)
        text = "".join(b for b in blocks if pat.search(b))
        tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    parts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == symbol:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            parts.append("".join(lines[start:node.end_lineno]))
    return cst.parse_module("".join(parts))


# ----------------------------------------------------------------------------- signatures

def _sig(fn: cst.FunctionDef, module: cst.Module) -> str:
    s = "(" + module.code_for_node(fn.params) + ")" + (
        " -> " + module.code_for_node(fn.returns.annotation) if fn.returns else "")
    s = re.sub(r"\s*\n\s*", " ", s)
    return s.replace("( ", "(").replace(", )", ")").replace(",)", ")")


def public_signatures(module: cst.Module, symbol: str) -> dict[str, str]:
    out = {}
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == symbol:
            out[symbol] = _sig(stmt, module)
        elif isinstance(stmt, cst.ClassDef) and stmt.name.value == symbol:
            for s in stmt.body.body:
                if isinstance(s, cst.FunctionDef):
                    n = s.name.value
                    if not n.startswith("_") or n in ("__init__", "__call__"):
                        out[f"{symbol}.{n}"] = _sig(s, module)
    return out


# ----------------------------------------------------------------------------- run

def bind(graph: dict, a2_text: str, a2m: dict, a3_text: str, a3m: dict, a4_text: str, a4m: dict,
         data_text: str = "", datam: dict | None = None) -> tuple[str, dict]:
    datam = datam or {}
    imports = merge_imports(_stmt_list(a4m.get("imports"), "A4.manifest.json imports"),
                            _stmt_list(a3m.get("imports"), "A3.manifest.json imports"),
                            _stmt_list(datam.get("imports"), "A3.data.json imports"),
                            _stmt_list(a2m.get("external_reqs"), "A2.manifest.json external_reqs"))
    sections = []
    for name, text in (("A4", a4_text), ("A3", a3_text), ("A2", a2_text)):
        if text.strip():
            # the data section goes before A2; it is put in after the rewrites (they need not read it)
            sections.append((DATA_SENTINEL if name == "A2" else "") + text.rstrip("\n") + "\n")
    module_text = "\n".join(imports) + "\n\n\n" + "\n\n".join(sections)
    if DATA_SENTINEL not in module_text and data_text.strip():
        module_text += "\n\n" + DATA_SENTINEL

    wrappers = {}
    stubs = set()
    for w in a4m.get("wrappers", []):
        op = w.get("op", "")
        if "." not in op or not w.get("wrapper"):
            raise StageError(STAGE, "A4.manifest.json wrappers", f"entry {w!r} lacks op/wrapper", "re-run A4")
        ns, name = op.split(".", 1)
        wrappers[(ns, name)] = w["wrapper"]
        if w.get("stub"):
            stubs.add((ns, name))
    pyops = {}
    for e in graph.get("python_custom_ops", []) or []:
        op, target = e.get("op", ""), e.get("target")
        op = op.split(".")[-1] if op.startswith(("vllm.", "torch.ops.vllm.")) else op
        if not op or not target:
            raise StageError(STAGE, "A1.graph.json python_custom_ops", f"entry {e!r} lacks op/target", "re-run A1")
        pyops[op] = target

    try:
        registered = registered_namespaces(module_text)
        ns_key = namespace_key(graph.get("symbol") or "", module_text, data_text)
        ns_map = bundle_namespaces(registered, ns_key)
        out_text, counts = rewrite(module_text, wrappers, pyops, a4m.get("namespace"), stubs, ns_map)
    except SyntaxError as e:
        raise StageError(STAGE, "merged A4+A3+A2 module", f"does not parse ({e.msg} at line {e.lineno})",
                         "check the section artifacts; each must parse on its own") from None
    except cst.ParserSyntaxError as e:
        raise StageError(STAGE, "merged A4+A3+A2 module", f"does not parse ({e.message} at line {e.raw_line})",
                         "check the section artifacts; each must parse on its own") from None

    out_text, dropped_stubs = drop_unused_stubs(out_text, [wrappers[k] for k in sorted(stubs)])

    # module-directory anchors of the modules whose data A3 embedded, then the data section itself
    anchors = datam.get("anchors") or []
    dirs = {a["file"]: a["dir"] for a in anchors}
    out_text, anchor_counts, per_file, left = rewrite_anchors(out_text, dirs)
    for k, v in anchor_counts.items():
        counts[k] = counts.get(k, 0) + v
    expected: dict[str, int] = {}
    for a in anchors:
        expected[a["file"]] = expected.get(a["file"], 0) + 1
    if per_file != expected:
        raise StageError(STAGE, "A3.data.json anchors",
                         f"A3 found {expected} module-directory anchor(s) per file, the merged module has "
                         f"{per_file}", "run A3 (--scan-data-reads and the collection) from the same A1 graph "
                         "as A2")
    if data_text.strip():
        if not anchors:
            raise StageError(STAGE, "A3.data.py", "a data section without anchors to rewrite", "re-run A3")
        taken = defined_at_top(out_text, SECTION_NAMES)
        if taken:
            raise StageError(STAGE, "A3.data.py", f"its names are already defined in the module: {', '.join(taken)}",
                             "report a bundler bug (rename the data helpers in bundler_lib/common/data_anchors.py)")
    out_text = out_text.replace(DATA_SENTINEL, (data_text.rstrip("\n") + "\n\n\n") if data_text.strip() else "")
    out_text, lazy = lazy_import_time_decorators(out_text)
    if lazy:
        helpers = [LAZY_DECORATORS[name] for name in sorted(lazy)]
        taken = defined_at_top(out_text, {h for h, _ in helpers})
        if taken:
            raise StageError(STAGE, "merged module", f"{', '.join(taken)} already defined in it",
                             "report a bundler bug (rename the helpers in bundler_lib/bind.py)")
        head = "\n".join(imports) + "\n\n\n"
        if not out_text.startswith(head):
            raise StageError(STAGE, "merged module", "the import block changed while binding", "report a bundler bug")
        out_text = head + "".join(d.lstrip("\n") + "\n\n" for _, d in helpers) + out_text[len(head):]
        for name, n in lazy.items():
            counts[(f"@{name} (run at import)", LAZY_DECORATORS[name][0])] = n

    try:
        tree = ast.parse(out_text, "A5.module.py")
    except SyntaxError as e:
        raise StageError(STAGE, f"A5.module.py:{e.lineno}", f"does not parse ({e.msg})", "report a bundler bug") from None
    lv = Leftovers(out_text, ns_map)
    lv.visit(tree)
    if lv.namespaces:
        what, line = lv.namespaces[0]
        raise StageError(STAGE, f"A5.module.py:{line}",
                         f"{what} still names a namespace the bundle registers ({', '.join(sorted(ns_map))}) after "
                         "binding: two bundles, or a bundle and vLLM, would share it in one process",
                         "spell it as torch.ops.<ns>.<op>, getattr(torch.ops, \"<ns>\"), \"<ns>::<op>\" or "
                         "Library(\"<ns>\", ...), which A5 rewrites (or extend bundler_lib/bind.py's Rewriter)")
    if lv.imports:
        what, line = lv.imports[0]
        raise StageError(STAGE, f"A5.module.py:{line}", f"a vLLM import remains after binding: {what}"
                         + (f" (and {len(lv.imports) - 1} more)" if len(lv.imports) > 1 else ""),
                         "A2 must inline what it imports (rerun A1/A2), or the name must be listed in the graph")
    if lv.ops:
        ops = sorted({o for o, _ in lv.ops})
        op, line = lv.ops[0]
        raise StageError(STAGE, f"A5.module.py:{line}",
                         f"unbound compiled-op reference(s) remain: {', '.join(ops)}; A4 bundled "
                         f"{', '.join(f'{n}.{o}' for n, o in wrappers) or 'no ops'}, python_custom_ops: "
                         f"{', '.join(pyops) or 'none'}",
                         "A1 must list the op in cuda_ops (or python_custom_ops for torch.ops.vllm.*) so that A4/A5 "
                         "can bundle and rewire it")

    symbol = graph.get("symbol")
    entry = symbol
    for n in graph.get("python_nodes", []):
        if n.get("name") == symbol and n.get("file") == graph.get("def_file"):
            entry = n.get("emit_name") or symbol
    sigs = public_signatures(entry_module(out_text, entry, tree), entry)
    notes = []
    before = public_signatures(entry_module(a2_text, entry), entry) if a2_text.strip() else {}
    if before and before != sigs:
        raise StageError(STAGE, f"symbol {entry}", "its public signatures changed while binding",
                         "report a bundler bug")
    if entry and not sigs:
        notes.append(f"entry symbol {entry} is not defined at module level of the merged module")
    for what, line in lv.probes:
        notes.append(f"A5.module.py:{line}: {what} stays: an optional-module probe inside try/except ImportError "
                     "(without vLLM it takes the except branch)")
    for line, f, src in left:
        notes.append(f"`{src}` (block from {f}) is left as is: A3 embedded no data for that module, so it "
                     "names the bundle's directory")
    if anchors:
        notes.append(f"data files: {datam.get('files', 0)} embedded ({datam.get('bytes', 0)} bytes, key "
                     f"{str(datam.get('key', ''))[:16]}); module-directory anchors rewritten: "
                     + ", ".join(f"{f} ({n})" for f, n in sorted(per_file.items())))
        for n in datam.get("notes", []):
            notes.append(f"A3 data: {n}")
    for ns, n in sorted(lv.bare.items()):
        notes.append(f"{n} plain string(s) {ns!r} left as they are (not in a Library(...), getattr(torch.ops, ...) "
                     f"or .namespace comparison; the namespace itself is {ns_map[ns]})")
    if stubs:
        notes.append("ops not bundled (A1 marked them optional; their wrappers raise NotImplementedError): "
                     + ", ".join(sorted(f"{n}.{o}" for n, o in stubs)))
    if dropped_stubs:
        notes.append("stub wrappers nothing names any more (their getattr lookups took the default), left out: "
                     + ", ".join(dropped_stubs))
    unused = sorted(f"{ns}.{op}" for (ns, op), w in wrappers.items()
                    if not any(to == w for (_, to) in counts) and w not in dropped_stubs)
    if unused:
        notes.append("A4 wrappers with no call site left to rewire (kept, callable): " + ", ".join(unused))
    bindmap = {
        "status": "ok",
        "entry_symbol": entry,
        "public_signatures": sigs,
        "rewrites": [{"from": f, "to": t, "count": c} for (f, t), c in sorted(counts.items())],
        "namespaces": namespace_map(ns_map, registered, ns_key, a4m, wrappers),
        "imports": imports,
        "sections": [n for n, t in (("A4", a4_text), ("A3", a3_text), ("A3.data", data_text), ("A2", a2_text))
                     if t.strip()],
        "data_files": [{"root": d["root"], "rule": d["rule"], "files": [f["path"] for f in d["files"]]}
                       for d in datam.get("data", [])],
        "notes": notes,
    }
    return out_text, bindmap


def run(inputs: Path, out: Path) -> dict:
    inputs = Path(inputs)
    graph = load_graph(inputs / "A1.graph.json", STAGE)
    a2m = _load_json(inputs, "A2.manifest.json")
    a3m = _load_json(inputs, "A3.manifest.json")
    a4m = _load_json(inputs, "A4.manifest.json")
    datam = _load_json(inputs, DATA_JSON, required=False)  # absent: artifacts of an older A3
    text, bindmap = bind(graph, _load_text(inputs, "A2.inline.py"), a2m, _load_text(inputs, "A3.triton.py"), a3m,
                         _load_text(inputs, "A4.cuda.py"), a4m,
                         _load_text(inputs, DATA_PY, required=False), datam)
    out = Path(out)
    write_text(out / "A5.module.py", text)
    write_json(out / "A5.bindmap.json", bindmap)
    return bindmap
