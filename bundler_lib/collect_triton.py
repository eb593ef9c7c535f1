"""A3: copy the @triton.jit kernels, their jitted helpers and the module globals they read, verbatim.

Reads A1.graph.json and only the files of graph["triton_kernels"]. Writes A3.triton.py and
A3.manifest.json (status, kernels (file, lines, meta), helpers, imports, notes).
"""

from __future__ import annotations

import ast
from pathlib import Path

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.collect_python import (FUTURE, SourceFiles, check_syntax, external_statements, hard_imports,
                                        read_graph, render_blocks)

STAGE = "A3 collect-triton"


def _meta(lines: list[str], a: int, b: int) -> dict:
    """Launch meta visible in the kernel's definition: decorators and constexpr parameters."""
    src = "".join(lines[a - 1:b])
    try:
        fn = ast.parse(src).body[0]
    except SyntaxError:
        return {}
    meta: dict = {"decorators": [ast.unparse(d) for d in getattr(fn, "decorator_list", [])]}
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        meta["constexpr_params"] = [x.arg for x in fn.args.args + fn.args.kwonlyargs
                                    if x.annotation is not None and "constexpr" in ast.unparse(x.annotation)]
    return meta


def run(tree: Path, graph: Path, out: Path) -> dict:
    g = read_graph(Path(graph), STAGE)
    tk = g.get("triton_kernels", [])
    files = SourceFiles(tree, sorted({k["file"] for k in tk}), STAGE)
    by_id = {n["id"]: n for n in g["python_nodes"]}
    nodes = [n for n in g["python_nodes"] if n.get("section") == "triton"]
    for k in tk:   # graphs without section marks: fall back on triton_kernels
        if k.get("id") not in by_id:
            nodes.append(dict(k, id=k.get("id", f"{k['file']}::{k['name']}"), edits=[], imports=[]))
    text, inlined = render_blocks(g, nodes, files, set())
    text = (text + "\n") if text else ""
    imports = sorted({imp for n in nodes for imp in n.get("imports", [])})
    imports, imp_notes = external_statements(imports, set(g.get("imports_runtime_only", [])), hard_imports(g))
    check_syntax(FUTURE + "\n" + "\n".join(imports) + "\n" + text, "A3.triton.py", STAGE)
    kinds = {k.get("id", f"{k['file']}::{k['name']}"): k.get("kind") for k in tk}
    kernels, helpers, globals_ = [], [], []
    for n, item in zip(nodes, inlined):
        kind = kinds.get(n["id"], "constexpr")
        entry = {"name": n["name"], "emit_name": n["emit_name"], "file": n["file"],
                 "lines": [n["line"], n["end_line"]]}
        if kind == "kernel":
            entry["meta"] = _meta(files.lines(n["file"]), n["line"], n["end_line"])
            kernels.append(entry)
        elif kind == "helper":
            helpers.append(entry)
        else:
            globals_.append(entry)
    out = Path(out)
    write_text(out / "A3.triton.py", text)
    manifest = {
        "status": "ok",
        "symbol": g["symbol"],
        "kernels": kernels,
        "helpers": helpers,
        "globals": globals_,
        "imports": ([FUTURE] + imports) if nodes else [],
        "topo_order": [n["id"] for n in nodes],
        "notes": imp_notes,
    }
    write_json(out / "A3.manifest.json", manifest)
    return manifest
