"""Minimality of the closure, per bundle: the bundle's Python lines (A2 + A3 sections, the embedded CUDA
strings of A4 left out) against the lines of the module-level import closure of the symbol's module
(what a module bundler would have to ship) and against the lines of the modules the bundle touches.
Also A1+A2+A3 build time per symbol, cold (a fresh process per stage, as Pants runs them).

    $(./pants --toolchain-python) benchmarks/closure_size.py   # after `./pants package targets::`

Reads bundles_out/**/artifacts/*/A1.graph.json; results to benchmarks/results/<date>-closure-size-<n>.json.
"""

from __future__ import annotations

import ast
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import vllm_tree  # noqa: E402

# The closure study's hand-trimmed estimates (0.26.0), to beat.
STUDY = {"SiluAndMul": 397, "RMSNorm": 981, "get_rope": 1122, "fused_experts": 3089,
         "Qwen3DecoderLayer": 8892, "LlamaDecoderLayer": 8924, "Qwen3MoeDecoderLayer": 18316}


def module_file(tree: Path, module: str) -> Path | None:
    base = tree / module.replace(".", "/")
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def top_level_import_closure(tree: Path, start: Path) -> set[Path]:
    """Files reached by following repo-local imports executed at import time (module level, not inside
    functions), transitively, including the packages' __init__ files."""
    seen, todo = set(), [start]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        rel = f.relative_to(tree).with_suffix("")
        pkg = list(rel.parts[:-1])
        for i in range(1, len(rel.parts)):
            init = tree.joinpath(*rel.parts[:i], "__init__.py")
            if init.is_file():
                todo.append(init)
        try:
            body = ast.parse(f.read_text(encoding="utf-8")).body
        except SyntaxError:
            continue
        stack = list(body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.If, ast.Try)):  # module-level control flow still runs at import
                stack += node.body + node.orelse + getattr(node, "finalbody", [])
                for h in getattr(node, "handlers", []):
                    stack += h.body
                continue
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[: len(pkg) - node.level + 1] if node.level > 1 else pkg
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] == "vllm":
                    target = module_file(tree, name)
                    if target:
                        todo.append(target)
    return seen


def lines(path: Path) -> int:
    return path.read_text(encoding="utf-8", errors="replace").count("\n")


def timed_stages(tree: Path, graph: dict) -> float:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cmd = [py, "-m", "bundler_lib", "graph", "--tree", str(tree), "--out", tmp, "--symbol", graph["symbol"]]
        if graph.get("hint"):
            cmd += ["--hint", graph["hint"]]
        subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
        for stage in ("collect-python", "collect-triton"):
            subprocess.run([py, "-m", "bundler_lib", stage, "--tree", str(tree), "--graph", f"{tmp}/A1.graph.json",
                            "--out", tmp], check=True, cwd=REPO, capture_output=True)
        return time.perf_counter() - t0


def main() -> None:
    rows = []
    for gpath in sorted((REPO / "bundles_out").glob("**/artifacts/*/A1.graph.json")):
        art = gpath.parent
        graph = json.loads(gpath.read_text())
        version = "0.33.0" if "vllm-0.33.0" in str(gpath) else "0.26.0"
        tree = vllm_tree(version)
        bundle_lines = lines(art / "A2.inline.py") + lines(art / "A3.triton.py")
        module_closure = top_level_import_closure(tree, tree / graph["def_file"])
        touched = sum(lines(tree / f) for f in graph["files"])
        graph["hint"] = graph["def_file"]
        rows.append({
            "symbol": graph["symbol"], "vllm": version, "target": art.name,
            "bundle_python_lines": bundle_lines,
            "module_level_closure": {"files": len(module_closure), "lines": sum(lines(f) for f in module_closure)},
            "touched_modules": {"files": len(graph["files"]), "lines": touched},
            "study_estimate_lines": STUDY.get(graph["symbol"]) if version == "0.26.0" else None,
            "a1_a2_a3_cold_s": round(timed_stages(tree, graph), 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    date = datetime.date.today().isoformat()
    out = REPO / "benchmarks" / "results"
    n = 1
    while (path := out / f"{date}-closure-size-{n}.json").exists():
        n += 1
    import os

    path.write_text(json.dumps({"benchmark": "closure_size", "date": date, "cpus": os.cpu_count(),
                                "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                                "rows": rows}, indent=2) + "\n")
    print(f"saved {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
