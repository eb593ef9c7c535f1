"""Minimality of the closure, per bundle, read from the written bundle:
- inlined_vllm_lines: the lines of vLLM's code the bundle carries (each inlined block's own lines: not its
  provenance comment, the file's copyright notice repeated with a file's first block, or the blank lines
  between blocks; a module embedded whole counts all its source lines). This is what the closure study's
  hand-trimmed estimates count, and what the issue's targets are compared with.
- bundle_python_lines: every line of the bundle outside the embedded CUDA/C++ strings (the notice, imports,
  A4's loader and op wrappers, A6's example included).
against the lines of the module-level import closure of the symbol's module (what a module bundler would
have to ship) and the lines of the modules the bundle touches. Also A1+A2+A3 build time per symbol, cold
(a fresh process per stage, as Pants runs them).

    $(./pants --toolchain-python) benchmarks/closure_size.py   # after `./pants --tag=-zoo package targets::`

Reads bundles_out/**/artifacts/*/A1.graph.json (not the zoo's, under bundles_out/zoo/); results to benchmarks/results/<date>-closure-size-<n>.json.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
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
# The closure issue's targets (0.26.0), for inlined_vllm_lines.
TARGETS = {"SiluAndMul": 400, "RMSNorm": 1000, "get_rope": 1100, "fused_experts": 3100,
           "Qwen3DecoderLayer": 8900, "LlamaDecoderLayer": 8900, "Qwen3MoeDecoderLayer": 15000}


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


PROVENANCE = re.compile(r"# --- Inlined from (\S+):L(\d+)-L(\d+) ")


def bundle_lines(bundle: Path) -> tuple[int, int]:
    """(inlined vLLM lines, Python lines outside the embedded CUDA strings) of a written bundle."""
    text = bundle.read_text(encoding="utf-8")
    lines_ = text.split("\n")
    cuda: set[int] = set()   # 0-based lines of the _CUDA_SRC_<n> / _CUDA_TU_<n> string assignments
    for st in ast.parse(text).body:
        if (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
                and re.fullmatch(r"_CUDA_(SRC|TU)_\d+", st.targets[0].id)):
            cuda.update(range(st.lineno - 1, st.end_lineno))
    starts = [i for i, ln in enumerate(lines_) if i not in cuda and PROVENANCE.match(ln)]
    inlined = 0
    for j, s in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(lines_)
        block = []
        for i in range(s + 1, end):
            if i in cuda or lines_[i].startswith(("# =====", "def invocation_example")):
                break   # the next section
            block.append(lines_[i])
        while block and not block[-1].strip():
            block.pop()
        k = 0
        while k < len(block) and block[k].startswith("#"):
            k += 1   # the file's notice (first block of a file) and generated-block remarks
        body = block[k:]
        if any("exec(compile(" in ln for ln in body):   # a module embedded whole, as one string
            m = PROVENANCE.match(lines_[s])
            inlined += int(m.group(3)) - int(m.group(2)) + 1
        else:
            inlined += len(body)
    return inlined, len(lines_) - 1 - len(cuda)


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
        if "zoo" in gpath.relative_to(REPO / "bundles_out").parts:
            continue   # the zoo has its own benchmark (benchmarks/zoo.py)
        art = gpath.parent
        graph = json.loads(gpath.read_text())
        version = "0.33.0" if "vllm-0.33.0" in str(gpath) else "0.26.0"
        tree = vllm_tree(version)
        inlined, python_lines = bundle_lines(art.parent.parent / f"{graph['symbol']}.py")
        module_closure = top_level_import_closure(tree, tree / graph["def_file"])
        touched = sum(lines(tree / f) for f in graph["files"])
        graph["hint"] = graph["def_file"]
        rows.append({
            "symbol": graph["symbol"], "vllm": version, "target": art.name,
            "inlined_vllm_lines": inlined,
            "bundle_python_lines": python_lines,
            "module_level_closure": {"files": len(module_closure), "lines": sum(lines(f) for f in module_closure)},
            "touched_modules": {"files": len(graph["files"]), "lines": touched},
            "study_estimate_lines": STUDY.get(graph["symbol"]) if version == "0.26.0" else None,
            "target_lines": TARGETS.get(graph["symbol"]) if version == "0.26.0" else None,
            "beats_target": (inlined < TARGETS[graph["symbol"]]) if version == "0.26.0" else None,
            "a1_a2_a3_cold_s": round(timed_stages(tree, graph), 2),
        })
        print(json.dumps(rows[-1]), flush=True)
    date = datetime.date.today().isoformat()
    out = REPO / "benchmarks" / "results"
    n = 1
    while (path := out / f"{date}-closure-size-{n}.json").exists():
        n += 1
    path.write_text(json.dumps({"benchmark": "closure_size", "date": date, "cpus": os.cpu_count(),
                                "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                                "rows": rows}, indent=2) + "\n")
    print(f"saved {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
