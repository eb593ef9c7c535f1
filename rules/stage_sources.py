"""What each stage process runs: the import closure of its entry module within bundler_lib, computed from the
sources at rule time (rules/toolchain.py), so an edit to one stage's code re-runs that stage only (and the stages
after it whose inputs change). Pure Python: the tests import it without Pants."""

from __future__ import annotations

import ast

STAGE_MODULES = {
    "license": "bundler_lib.license",
    "graph": "bundler_lib.graph",
    "collect-python": "bundler_lib.collect_python",
    "collect-triton": "bundler_lib.collect_triton",
    "collect-cuda": "bundler_lib.collect_cuda",
    "bind": "bundler_lib.bind",
    "example": "bundler_lib.example",
    "package": "bundler_lib.package",
}
ENTRY = "bundler_lib/__main__.py"


def _module_path(module: str, files) -> str | None:
    base = module.replace(".", "/")
    for p in (base + ".py", base + "/__init__.py"):
        if p in files:
            return p
    return None


def _imports(path: str, source: bytes, top_level_only: bool) -> set[str]:
    """The bundler_lib modules a file imports (a `from p import x` adds p.x too: it may be a module)."""
    tree = ast.parse(source, path)
    package = path[:-len("/__init__.py")] if path.endswith("/__init__.py") else path.rsplit("/", 1)[0]
    out: set[str] = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split("/")
                base = ".".join(parts[:len(parts) - node.level + 1])
                mod = base + ("." + node.module if node.module else "")
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m == "bundler_lib" or m.startswith("bundler_lib.")}


def stage_sources(files: dict, stage: str) -> list[str]:
    """The bundler_lib files `python -m bundler_lib <stage>` imports: __main__'s module-level imports, the
    stage's module and everything it imports (at any depth, in functions too), with their packages' __init__."""
    todo = [m for m in _imports(ENTRY, files[ENTRY], True)] + [STAGE_MODULES[stage], "bundler_lib"]
    seen = {ENTRY}
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):   # a module's packages run first
            p = _module_path(".".join(parts[:i]), files)
            if p is not None and p not in seen:
                seen.add(p)
                todo.extend(_imports(p, files[p], False))
    return sorted(seen)
