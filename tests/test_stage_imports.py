"""No stage module imports another stage's module: what stages share lives in bundler_lib/common/ (or the
shared artifacts/errors/variant helpers). KNOWN lists the imports that remain, each with what removes it; the
test fails on any other, and on a KNOWN entry that is gone (delete it from the list then)."""

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
    "A5": ["bind.py"],
    "A6": ["example/"],
    "A7": ["package.py", "reachability.py"],
}
# shared by every stage: artifacts.py, errors.py, variant.py, sdist.py, common/; __main__.py dispatches to all

# (importing module, imported module): what removes it
KNOWN = {
    ("bundler_lib/collect_python.py", "bundler_lib.graph.edits"):
        "import apply_edits, file_header, license_of from bundler_lib.common.edits (then delete graph/edits.py)",
    ("bundler_lib/collect_triton.py", "bundler_lib.collect_python"):
        "move FUTURE, SourceFiles, check_syntax, external_statements, hard_imports... that A2 and A3 share "
        "into bundler_lib/common/ (A2's collect_python.py and A3 both import them from there)",
    ("bundler_lib/bind.py", "bundler_lib.data_files"):
        "move the data-file constants and helpers A5 reads into bundler_lib/common/ (A3 writes A3.data.json; "
        "A5 should read only that artifact and the shared names)",
}


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
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, "a stage imports another stage's module (move what they share to bundler_lib/common/): " + \
        "; ".join(f"{a} -> {b} ({why})" for (a, b), why in sorted(new.items()))
    gone = [k for k in KNOWN if k not in found]
    assert not gone, f"no longer imported, delete from KNOWN: {gone}"
