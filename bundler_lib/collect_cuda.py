"""A4 CUDA collector: `run(tree, graph, out)` writes A4.cuda.py and A4.manifest.json.

The work is in bundler_lib/cuda/: registry.py (op registrations), cmake.py (compile settings),
cpp.py (includes, definitions), collect.py (planning) and emit.py (the generated section)."""

from __future__ import annotations

import json
from pathlib import Path

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.errors import StageError

STAGE = "A4 cuda"


def run(tree: Path, graph: Path, out: Path, stub_ops: tuple[str, ...] = ()) -> None:
    """`stub_ops`: fnmatch patterns (e.g. `_C.*quant*`) of ops the target lets go unbundled when they
    cannot be embedded; each becomes a wrapper that raises NotImplementedError naming the op."""
    import fnmatch

    from bundler_lib.cuda.collect import collect

    graph = Path(graph)
    try:
        g = json.loads(graph.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(STAGE, str(graph), "not found", "run A1 (graph) first and pass its A1.graph.json") from None
    except json.JSONDecodeError as e:
        raise StageError(STAGE, str(graph), f"not valid JSON ({e})", "re-run A1 (graph)") from None
    if not isinstance(g, dict) or not isinstance(g.get("cuda_ops", []), list):
        raise StageError(STAGE, str(graph), "has no list `cuda_ops`", "re-run A1 (graph); see docs/stage-contract.md")
    for e in g.get("cuda_ops", []):
        if not isinstance(e, dict) or not (e.get("op") or (e.get("namespace") and e.get("name"))):
            raise StageError(STAGE, str(graph), f"cuda_ops entry {e!r} lacks `op` (or `namespace` and `name`)",
                             "re-run A1 (graph); see docs/stage-contract.md")
    for e in g.get("cuda_ops", []):
        op = e.get("op") or f"{e.get('namespace')}.{e.get('name')}"
        if any(fnmatch.fnmatchcase(op, p) for p in stub_ops):
            e["optional"] = True
    text, manifest = collect(Path(tree), g)
    out = Path(out)
    write_text(out / "A4.cuda.py", text)
    write_json(out / "A4.manifest.json", manifest)
