"""A1's nodes as verbatim slices of their files, A1's edits applied, each under a provenance comment (the
file, its lines and its license): the text A2 and A3 assemble into their sections."""

from __future__ import annotations

from pathlib import Path

from bundler_lib.common.contract import load_graph
from bundler_lib.common.edits import apply_edits, file_header, license_of
from bundler_lib.common.imports import indent_block, optional_nodes, top_package
from bundler_lib.errors import StageError


def read_graph(graph: Path, stage: str) -> dict:
    return load_graph(graph, stage, need=("python_nodes", "files", "symbol"))


class SourceFiles:
    def __init__(self, tree: Path, allowed: list[str], stage: str):
        self.tree = Path(tree)
        self.allowed = set(allowed)
        self.stage = stage
        self._cache: dict[str, list[str]] = {}

    def lines(self, rel: str) -> list[str]:
        if rel not in self.allowed:
            raise StageError(self.stage, rel, "not among the files A1 lists", "rerun the A1 graph stage")
        if rel not in self._cache:
            p = self.tree / rel
            try:
                self._cache[rel] = p.read_text(encoding="utf-8").splitlines(keepends=True)
            except FileNotFoundError:
                raise StageError(self.stage, str(p), "file listed by A1 is missing from the tree",
                                 "pass the same --tree as to the A1 graph stage") from None
        return self._cache[rel]


def render_blocks(g: dict, nodes: list[dict], files: SourceFiles, headers_done: set[str]) -> tuple[str, list]:
    """Render nodes as provenance-commented blocks. Returns (text, inlined entries)."""
    parts: list[str] = []
    inlined = []
    optional = optional_nodes(g)
    for n in nodes:
        rel = n["file"]
        lines = files.lines(rel)
        a, b = n["line"], n["end_line"]
        if b > len(lines) or a < 1:
            raise StageError(files.stage, f"{rel}:L{a}-L{b}", "the node's lines are outside the file",
                             "the tree changed since A1 ran: rerun the A1 graph stage")
        header = file_header(lines)
        lic = license_of(header)
        if "text" in n:
            body = n["text"]
            prov = (f"# --- Inlined from {rel}:L{a}-L{b} ({lic}) ---\n"
                    f"# (generated for {n['name']}: see A1.graph.json notes)\n")
        else:
            body = apply_edits(lines, a, b, n.get("edits", []))
            prov = f"# --- Inlined from {rel}:L{a}-L{b} ({lic}) ---\n"
        block = prov
        if rel not in headers_done:
            headers_done.add(rel)
            if header:
                block += "\n".join(header) + "\n"
        if n["id"] in optional:
            pkgs = sorted({top_package(st) for st in optional[n["id"]]})
            body = (f"try:  # needs {', '.join(pkgs)} at import time; skipped when missing\n"
                    + indent_block(body) + "except (ImportError, NameError, AttributeError):\n    pass\n")
        block += body
        parts.append(block)
        entry = {"name": n["name"], "emit_name": n["emit_name"], "id": n["id"], "file": rel,
                 "lines": [a, b], "kind": n["kind"]}
        if n["id"] in optional:
            entry["optional"] = sorted({top_package(st) for st in optional[n["id"]]})
        inlined.append(entry)
    return "\n\n".join(parts), inlined


def check_syntax(text: str, path: str, stage: str) -> None:
    try:
        compile(text, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        # find the provenance comment above the failing line
        lines = text.splitlines()
        where = ""
        for i in range((e.lineno or 1) - 1, -1, -1):
            if i < len(lines) and lines[i].startswith("# --- Inlined from "):
                where = lines[i][len("# --- Inlined from "):].split(" ")[0]
                break
        raise StageError(stage, f"{path}:{e.lineno} (block {where})", f"the assembled section does not parse ({e.msg})",
                         "report this as a bundler bug: an edit or a slice broke the source") from None


