"""What binding must not leave behind: vLLM imports, compiled-op references, reads of a renamed namespace."""

from __future__ import annotations

import ast
import re

from bundler_lib.bind.namespaces import QUALIFIED, _const_str
from bundler_lib.common.names import dotted as ast_dotted


LEFTOVER_NS = re.compile(r"^(_\w*C\w*|vllm)$")  # _C, _moe_C, _C_cache_ops, _rocm_C, vllm, ...


# A line as the parser (and ast.get_source_segment) splits the source: at \r\n, \r or \n only, its end kept
_SOURCE_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


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
        self._lines: list[str] | None = None

    def _segment(self, node: ast.expr) -> str | None:
        """ast.get_source_segment(self.text, node), over the node's own lines: that function splits the whole
        text, character by character, on every call (0.2 s on a 1.3 MB module)."""
        if self._lines is None:
            self._lines = _SOURCE_LINE.findall(self.text)
        span = ast.Constant(None, lineno=1, end_lineno=node.end_lineno - node.lineno + 1,
                            col_offset=node.col_offset, end_col_offset=node.end_col_offset)
        return ast.get_source_segment("".join(self._lines[node.lineno - 1:node.end_lineno]), span)

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
                where = (f"{d}({self._segment(v)})", node.lineno)
                # a probe that fails gracefully without vLLM (caught ImportError) is noted, not fatal
                (self.probes if any(self._guarded) else self.imports).append(where)
        self.generic_visit(node)


def defined_at_top(text: str, names) -> list[str]:
    """Those of `names` that a line at column 0 of the module binds or names (a def, class, assignment, or
    any statement starting with the name): a textual check for the bundle builder's own helper names."""
    return sorted(n for n in names if re.search(r"^(?:(?:async\s+)?def\s+|class\s+)?" + re.escape(n) + r"\b",
                                                 text, re.M))
