"""Compiled-op call sites rewritten to the bundle's own wrappers and namespaces (libcst), block by block."""

from __future__ import annotations

import ast
import re

import libcst as cst

from bundler_lib.bind.namespaces import QUALIFIED


# attributes whose value is a namespace (`op_overload.namespace == "vllm_ir"`, `lib.ns`)
NAMESPACE_ATTRS = ("namespace", "ns")


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
    def __init__(self, wrappers: dict[tuple[str, str], str], pyops: dict[str, str], cuda_ns: dict | None,
                 stubs: set | None = None, ns_map: dict[str, str] | None = None):
        self.wrappers = wrappers      # (ns, op) -> wrapper name
        self.pyops = pyops            # vllm op -> python target
        self.cuda_ns = cuda_ns or {}  # (ns, op) -> the namespace A4 registers the bundled op in
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
        if m and m.group(1) != "vllm" and (m.group(1), m.group(2)) in self.cuda_ns \
                and (m.group(1), m.group(2)) not in self.stubs:
            new = f"{self.cuda_ns[m.group(1), m.group(2)]}::{m.group(2)}{m.group(3) or ''}"
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


def _rewrite_chunk(chunk: str, indented: bool, wrappers, pyops, cuda_ns, stubs, counts: dict,
                   ns_map: dict | None = None) -> str:
    """libcst over one statement; an indented one (a method) is wrapped in a class to parse on its own."""
    rw = Rewriter(wrappers, pyops, cuda_ns, stubs, ns_map)
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


def rewrite(module_text: str, wrappers, pyops, cuda_ns, stubs=None, ns_map=None) -> tuple[str, dict]:
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
            out.append(_rewrite_chunk(chunk, False, wrappers, pyops, cuda_ns, stubs, counts, ns_map))
            continue
        out.append("".join(lines[start:head_end]))
        p2 = head_end
        for s0, s1, _ in inner:
            out.append("".join(lines[p2:s0]))
            sub = "".join(lines[s0:s1])
            out.append(_rewrite_chunk(sub, True, wrappers, pyops, cuda_ns, stubs, counts, ns_map)
                       if may.search(sub) else sub)
            p2 = s1
        out.append("".join(lines[p2:end]))
    out.append("".join(lines[pos:]))
    return "".join(out), counts
