"""A2: slice the Python closure verbatim, in A1's emission order, with provenance comments.

Reads A1.graph.json and only the files it lists (graph["files"]). Writes A2.inline.py (the inlined blocks)
and A2.manifest.json (status, inlined, skipped, external_reqs, topo_order, notes).
"""

from __future__ import annotations

from pathlib import Path

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.common.imports import FUTURE, section_imports
from bundler_lib.common.slices import SourceFiles, check_syntax, read_graph, render_blocks

STAGE = "A2 collect-python"


def run(tree: Path, graph: Path, out: Path) -> dict:
    g = read_graph(Path(graph), STAGE)
    files = SourceFiles(tree, g["files"], STAGE)
    py = [n for n in g["python_nodes"] if n.get("section", "python") == "python"]
    skipped = [{"name": n["name"], "id": n["id"], "reason": "triton section (A3)"}
               for n in g["python_nodes"] if n.get("section") == "triton"]
    # a file's header goes with its first block in final order: A3 (triton) comes before A2
    headers_done = {n["file"] for n in g["python_nodes"] if n.get("section") == "triton"}
    text, inlined = render_blocks(g, py, files, headers_done)
    text = (text + "\n") if text else ""
    reqs, req_notes = section_imports(g, py, text)
    external_reqs = [FUTURE] + reqs
    check_syntax(FUTURE + "\n" + "\n".join(reqs) + "\n" + text, "A2.inline.py", STAGE)
    out = Path(out)
    write_text(out / "A2.inline.py", text)
    manifest = {
        "status": "ok",
        "symbol": g["symbol"],
        "inlined": inlined,
        "skipped": skipped,
        "external_reqs": external_reqs,
        "topo_order": [n["id"] for n in py],
        "notes": list(g.get("notes", [])) + req_notes,
        "stats": {"blocks": len(inlined), "lines": text.count("\n")},
    }
    write_json(out / "A2.manifest.json", manifest)
    return manifest
