"""A4 CUDA collector: `run(tree, graph, out)` writes A4.cuda.py and A4.manifest.json.

The work is in bundler_lib/cuda/: registry.py (op registrations), cmake.py (compile settings),
cpp.py (includes, definitions), collect.py (planning) and emit.py (the generated section)."""

from __future__ import annotations

from pathlib import Path

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.common.contract import load_graph

STAGE = "A4 cuda"


def run(tree: Path, graph: Path, out: Path, stub_ops: tuple[str, ...] = ()) -> None:
    """`stub_ops`: fnmatch patterns (e.g. `_C.*quant*`) of ops the target lets go unbundled when they
    cannot be embedded; each becomes a wrapper that raises NotImplementedError naming the op."""
    import fnmatch

    from bundler_lib.cuda.collect import collect

    graph = Path(graph)
    g = load_graph(graph, STAGE)
    for e in g.get("cuda_ops", []):
        op = e.get("op") or f"{e.get('namespace')}.{e.get('name')}"
        if any(fnmatch.fnmatchcase(op, p) for p in stub_ops):
            e["optional"] = True
    text, manifest = collect(Path(tree), g)
    out = Path(out)
    write_text(out / "A4.cuda.py", text)
    write_json(out / "A4.manifest.json", manifest)
