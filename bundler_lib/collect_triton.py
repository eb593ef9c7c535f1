"""A3: copy the @triton.jit kernels, their jitted helpers and the module globals they read, verbatim;
and embed the data files the reached code reads next to its module (see bundler_lib/data_files.py).

Two runs, each a cached process over exactly what it reads:
- `--scan-data-reads`: reads A1.graph.json, the files of graph["files"] that name `__file__` and the model's
  config.json (if any); writes A3.data_reads.json (the anchors, the data roots, the selection rule and the
  tree globs of the candidate files).
- the collection: reads A1.graph.json, the files of graph["triton_kernels"] and, with `--data-reads`, that
  A3.data_reads.json and the files its globs match; with `--moe-configs DIR`, the target's tuned fused-MoE configs
  (each at its workspace path under DIR), embedded beside vLLM's. Writes A3.triton.py and A3.manifest.json (status, kernels
  (file, lines, meta), helpers, imports, notes), A3.data.py (the data section) and A3.data.json (files,
  sha256, selection rule, the anchors A5 rewrites).
"""

from __future__ import annotations

import ast
from pathlib import Path

from bundler_lib import data_files
from bundler_lib.artifacts import write_json, write_text
from bundler_lib.common.imports import FUTURE, section_imports
from bundler_lib.common.slices import SourceFiles, check_syntax, read_graph, render_blocks

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


def scan_data_reads(tree: Path, graph: Path, out: Path, model_config: Path | None = None) -> dict:
    """A3.data_reads.json: what the reached code reads next to its module, and which files the target can
    select (the Pants rule declares those files as the collection's inputs)."""
    return data_files.run_scan(tree, read_graph(Path(graph), STAGE), model_config, out)


def run(tree: Path, graph: Path, out: Path, data_reads: Path | None = None, moe_configs: Path | None = None) -> dict:
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
    imports, imp_notes = section_imports(g, nodes, text)
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
    reads = data_files.load_reads(data_reads) if data_reads is not None else data_files.no_reads(
        "no data reads given (the scan found no file of the closure that names __file__, or was not run)")
    data_files.run_embed(tree, reads, out, moe_configs)
    return manifest
