"""No stage module imports another stage's module: what stages share lives in bundler_lib/common/ (or the
shared artifacts/errors/variant helpers)."""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "bundler_lib"

# stage -> its modules (a path ending in / is a package); see docs/stage-contract.md
STAGES = {
    "A0": ["license.py"],
    "A1": ["graph/", "model_facts.py"],
    "A2": ["collect_python.py"],
    "A3": ["collect_triton.py", "data_files.py"],
    "A4": ["collect_cuda.py", "cuda/"],
    "A5": ["bind/"],
    "A6": ["example/"],
    "A7": ["package/"],
}
# shared by every stage: artifacts.py, errors.py, variant.py, sdist.py, common/; __main__.py dispatches to all

def _stage_of_path(rel: str) -> str | None:
    for stage, mods in STAGES.items():
        for m in mods:
            if rel == m or (m.endswith("/") and rel.startswith(m)):
                return stage
    return None


def _stage_of_module(module: str) -> str | None:
    if not module.startswith("bundler_lib."):
        return None
    parts = module.split(".")[1:]
    for i in range(len(parts), 0, -1):
        rel = "/".join(parts[:i])
        for cand in (rel + ".py", rel + "/"):
            stage = _stage_of_path(cand)
            if stage:
                return stage
    return None


def _imports(path: Path):
    """Every module the file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(["bundler_lib"] + list(path.relative_to(LIB).parent.parts))
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                yield a.name
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[:len(pkg.split(".")) - n.level + 1]
                mod = ".".join(base + ([n.module] if n.module else []))
            else:
                mod = n.module or ""
            yield mod
            for a in n.names:   # `from bundler_lib import data_files` imports a module
                if _is_module(f"{mod}.{a.name}"):
                    yield f"{mod}.{a.name}"


def _is_module(module: str) -> bool:
    if not module.startswith("bundler_lib."):
        return False
    rel = LIB.joinpath(*module.split(".")[1:])
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def _cross_stage() -> dict:
    found = {}
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        stage = _stage_of_path(rel)
        if stage is None:
            continue
        for mod in _imports(path):
            other = _stage_of_module(mod)
            if other and other != stage:
                found.setdefault((f"bundler_lib/{rel}", mod), f"{stage} imports {other}")
    return found


def test_no_stage_imports_another():
    found = _cross_stage()
    assert not found, "a stage imports another stage's module (move what they share to bundler_lib/common/): " + \
        "; ".join(f"{a} -> {b} ({why})" for (a, b), why in sorted(found.items()))
