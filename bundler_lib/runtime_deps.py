"""What a bundle needs where it runs: the tree's torch and Python versions (A0 reads them) and the
dependencies the bundle's own import statements name (A7 computes them and writes the PEP 723 block).

The tree's versions, first found wins:
- torch: `requirements/cuda.txt` (`torch==X.Y.Z`), `pyproject.toml` (`torch == X.Y.Z` in build-system
  requires), `CMakeLists.txt` (`set(TORCH_SUPPORTED_VERSION_CUDA "X.Y.Z")`: the torch vLLM's CMake builds its
  CUDA sources against, and the one an sdist always holds). The bundle embeds those sources: it needs
  `torch>=X.Y`.
- Python: `pyproject.toml` `requires-python`, else the lowest of CMake's `PYTHON_SUPPORTED_VERSIONS`.

Dependencies: every module a bundle imports at module level without a guard (not inside `try` ... `except
ImportError`, not under `if TYPE_CHECKING`) that is not in the standard library is a dependency, by its top-level
name; `torch`, `triton` and `ninja` always are (`torch.utils.cpp_extension.load` builds with ninja). A module torch itself
requires (`typing_extensions`) comes with torch and is not declared.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

from bundler_lib.common.scopes import statements_within

# Files A0 reads for them (tree-relative); the rule declares them as A0's inputs.
TREE_FILES = ("requirements/cuda.txt", "pyproject.toml", "CMakeLists.txt")

BASE = ("torch", "triton", "ninja")
# import name -> distribution name, where they differ or where torch brings the module itself
DISTRIBUTION = {"torch": "torch", "triton": "triton", "ninja": "ninja"}
PROVIDED_BY_TORCH = {"typing_extensions"}  # torch's own requirement (typing-extensions>=4.10)
# Never a dependency: an import of vLLM in a bundle is a closure defect, which A7's import check reports.
NEVER = {"vllm"}

_PIN = re.compile(r"^\s*torch\s*==\s*([0-9]+)\.([0-9]+)(?:\.[0-9]+)?\b", re.M)
_CMAKE_TORCH = re.compile(r'set\(\s*TORCH_SUPPORTED_VERSION_CUDA\s+"([0-9]+)\.([0-9]+)(?:\.[0-9]+)?"\s*\)')
_CMAKE_PY = re.compile(r"set\(\s*PYTHON_SUPPORTED_VERSIONS((?:\s+\"[0-9.]+\")+)\s*\)")


def _read(tree: Path, rel: str) -> str | None:
    p = Path(tree) / rel
    try:
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
    except OSError:
        return None


def tree_targets(tree: Path) -> dict:
    """{torch: "X.Y" or None, requires_python: str or None, sources: {torch, requires_python}, notes}."""
    out = {"torch": None, "requires_python": None, "sources": {}, "notes": []}
    texts = {rel: _read(tree, rel) for rel in TREE_FILES}
    pyproject = {}
    if texts["pyproject.toml"]:
        try:
            pyproject = tomllib.loads(texts["pyproject.toml"])
        except tomllib.TOMLDecodeError as e:
            out["notes"].append(f"pyproject.toml does not parse ({e}): not used")
    build_reqs = "\n".join(str(r) for r in pyproject.get("build-system", {}).get("requires", []))
    for rel, text in (("requirements/cuda.txt", texts["requirements/cuda.txt"]), ("pyproject.toml", build_reqs)):
        m = _PIN.search(text or "")
        if m:
            out["torch"], out["sources"]["torch"] = f"{m.group(1)}.{m.group(2)}", rel
            break
    else:
        m = _CMAKE_TORCH.search(texts["CMakeLists.txt"] or "")
        if m:
            out["torch"] = f"{m.group(1)}.{m.group(2)}"
            out["sources"]["torch"] = "CMakeLists.txt (TORCH_SUPPORTED_VERSION_CUDA)"
    rp = pyproject.get("project", {}).get("requires-python")
    if isinstance(rp, str) and rp.strip():
        out["requires_python"], out["sources"]["requires_python"] = rp.strip(), "pyproject.toml"
    else:
        m = _CMAKE_PY.search(texts["CMakeLists.txt"] or "")
        if m:
            versions = sorted((tuple(int(x) for x in v.split(".")) for v in re.findall(r'"([0-9.]+)"', m.group(1))))
            out["requires_python"] = ">=" + ".".join(map(str, versions[0]))
            out["sources"]["requires_python"] = "CMakeLists.txt (PYTHON_SUPPORTED_VERSIONS)"
    if out["torch"] is None:
        out["notes"].append("the tree names no torch version (" + ", ".join(TREE_FILES) +
                            "): the bundle declares torch without a lower bound")
    return out


def _guards_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if h.type is None or any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError",
                                                                       "Exception", "BaseException")
                                 for n in names):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """Top-level module names the bundle imports: (unguarded at module level, guarded at module level,
    inside functions or classes)."""
    hard, guarded, inner = set(), set(), set()

    def names(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name.split(".")[0] for a in node.names]
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            return [node.module.split(".")[0]]
        return []

    def walk(stmts, into: set[str]) -> None:
        for st in stmts:
            into.update(names(st))
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for sub in statements_within(st.body):
                    inner.update(names(sub))
            elif isinstance(st, ast.Try):
                walk(st.body, guarded if _guards_import_error(st) else into)
                for h in st.handlers:
                    walk(h.body, into)
                walk(st.orelse, into)
                walk(st.finalbody, into)
            elif isinstance(st, ast.If):
                if not _is_type_checking(st.test):
                    walk(st.body, into)
                walk(st.orelse, into)
            elif isinstance(st, (ast.With, ast.For, ast.While)):
                walk(st.body, into)
                walk(getattr(st, "orelse", []), into)

    walk(tree.body, hard)
    return hard, guarded - hard, inner - hard - guarded


def _third_party(names: set[str]) -> list[str]:
    return sorted(n for n in names if n not in sys.stdlib_module_names and n != "__future__")


def declared_dependencies(tree: ast.Module, targets: dict) -> tuple[list[str], dict]:
    """(PEP 508 requirement strings, details): torch at the tree's version, triton, ninja, and every other
    module the bundle imports unguarded at module level."""
    hard, guarded, inner = module_imports(tree)
    torch_req = "torch>=" + targets["torch"] if targets.get("torch") else "torch"
    deps = {"torch": torch_req, "triton": "triton", "ninja": "ninja"}
    for name in _third_party(hard):
        if name in PROVIDED_BY_TORCH or name in deps or name in NEVER:
            continue
        dist = DISTRIBUTION.get(name, name.replace("_", "-"))
        deps.setdefault(dist, dist)
    details = {
        "optional_imports": [n for n in _third_party(guarded) if n not in deps and n not in PROVIDED_BY_TORCH],
        "run_time_imports": [n for n in _third_party(inner) if n not in deps and n not in PROVIDED_BY_TORCH],
    }
    ordered = [deps[k] for k in BASE] + sorted(v for k, v in deps.items() if k not in BASE)
    return ordered, details


def requirement_name(req: str) -> str:
    return re.split(r"[<>=!~ ;\[]", req, 1)[0]


def pep723_block(requires_python: str | None, deps: list[str]) -> str:
    lines = ["# /// script"]
    if requires_python:
        lines.append(f'# requires-python = "{requires_python}"')
    lines.append("# dependencies = [")
    lines += [f'#     "{d}",' for d in deps]
    lines += ["# ]", "# ///"]
    return "\n".join(lines) + "\n"


# PEP 723's reference implementation
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")


def read_pep723(script: str) -> dict | None:
    """The `script` block's TOML, read as PEP 723's reference code reads it."""
    matches = [m for m in _PEP723.finditer(script) if m.group("type") == "script"]
    if len(matches) > 1:
        raise ValueError("multiple script blocks found")
    if not matches:
        return None
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in matches[0].group("content").splitlines(keepends=True))
    return tomllib.loads(content)
