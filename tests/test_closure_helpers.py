"""Helpers for the closure tests (A1 graph, A2/A3 collectors)."""

import importlib.abc
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from bundler_lib import collect_python, collect_triton, graph

TREES = Path(__file__).resolve().parent / "trees" / "closure"


def build_all(tree: Path, out: Path, symbol: str, hint=None, variant=None):
    g = graph.run(tree=tree, out=out, symbol=symbol, hint=hint, variant=variant)
    a2 = collect_python.run(tree=tree, graph=out / "A1.graph.json", out=out)
    a3 = collect_triton.run(tree=tree, graph=out / "A1.graph.json", out=out)
    return g, a2, a3


def node_ids(g) -> set:
    return {n["id"] for n in g["python_nodes"]}


def assemble(out: Path) -> str:
    a2 = json.loads((out / "A2.manifest.json").read_text())
    a3 = json.loads((out / "A3.manifest.json").read_text())
    imps = []
    for i in ["from __future__ import annotations"] + a3["imports"] + a2["external_reqs"]:
        if i not in imps:
            imps.append(i)
    return "\n".join(imps) + "\n\n" + (out / "A3.triton.py").read_text() + "\n\n" + (out / "A2.inline.py").read_text()


class _BlockVllm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError(f"vllm is blocked in bundle tests: {name}")


def load(out: Path, name="bundle_under_test"):
    """Execute the assembled sections as a module, with `vllm` unimportable."""
    path = out / "assembled.py"
    path.write_text(assemble(out))   # a real file: triton.jit reads its source
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    finder = _BlockVllm()
    sys.meta_path.insert(0, finder)
    try:
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.meta_path.remove(finder)
    return mod


IMPORT_CHECK = r'''
import importlib.abc, sys, types
class B(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, B())
src = open(sys.argv[1]).read()
m = types.ModuleType("bundle"); sys.modules["bundle"] = m
exec(compile(src, sys.argv[1], "exec"), m.__dict__)
print("OK", sys.argv[2] in m.__dict__)
'''


def import_in_subprocess(out: Path, symbol: str) -> str:
    path = out / "assembled.py"
    path.write_text(assemble(out))
    r = subprocess.run([sys.executable, "-c", IMPORT_CHECK, str(path), symbol], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def undefined_runtime_names(path: Path) -> set:
    """Names pyflakes finds undefined once annotations (never evaluated in a bundle) are stripped."""
    import ast

    from pyflakes.api import check
    from pyflakes.reporter import Reporter

    class Strip(ast.NodeTransformer):
        def visit_arg(self, n):
            n.annotation = None
            return n

        def visit_FunctionDef(self, n):
            n.returns = None
            self.generic_visit(n)
            return n

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_AnnAssign(self, n):
            if n.value is None:
                return ast.Pass()
            return ast.copy_location(ast.Assign(targets=[n.target], value=n.value, lineno=n.lineno), n)

    tree = ast.fix_missing_locations(Strip().visit(ast.parse(Path(path).read_text())))
    import io
    out = io.StringIO()
    check(ast.unparse(tree), str(path), Reporter(out, io.StringIO()))
    return {ln.split("undefined name")[1].strip().strip("'") for ln in out.getvalue().splitlines()
            if "undefined name" in ln}
