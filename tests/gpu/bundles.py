"""Built bundles for the GPU tests: which files, importing each one once per process, and the Triton
kernels a bundle file holds (read with ast: nothing is imported for that).

Which bundles: $VLLM_BUNDLE_GPU_BUNDLES = "path[,path...]" (relative paths are taken from the
repository root), else every bundles_out/*.py and bundles_out/vllm-0.33.0/*.py that exists (but the KernelBench
problems, *.kernelbench.py, tested by test_kernelbench_gpu.py).

A bundle is imported once per process under its own module name (its file's stem, as
tools/run_bundle.py does; `<version dir>__<stem>` when another bundle of that stem is already loaded, e.g.
bundles_out/RMSNorm.py and bundles_out/vllm-0.33.0/RMSNorm.py): it registers torch.library ops when imported
(vLLM's IR rms_norm, ...) in namespaces of its own (A5: `vllm_bundle_<hash>_vllm_ir`), so different bundles
share a process but the same one must not be executed twice, and Triton kernels find their globals through the
module, which must therefore stay in sys.modules.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_BUNDLES = "VLLM_BUNDLE_GPU_BUNDLES"
DEFAULT_DIRS = ("bundles_out", "bundles_out/vllm-0.33.0")


def bundle_paths() -> list[Path]:
    env = os.environ.get(ENV_BUNDLES, "").strip()
    if env:
        out = []
        for part in env.split(","):
            part = part.strip()
            if part:
                p = Path(part)
                out.append((p if p.is_absolute() else ROOT / p).resolve())
        return out
    out = []
    for d in DEFAULT_DIRS:
        out.extend(sorted(p.resolve() for p in (ROOT / d).glob("*.py") if not p.name.endswith(".kernelbench.py")))
    return out


def label(path: Path) -> str:
    """A short, stable name: the path relative to the repository root, without '.py'."""
    path = Path(path).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        rel = Path(path.parent.name) / path.name
    return str(rel.with_suffix(""))


# ---------------------------------------------------------------------------------------------
# The Triton kernels of a bundle file, by ast
# ---------------------------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _triton_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to the triton module, and names bound to triton.jit itself."""
    modules, jits = {"triton"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "triton":
                    modules.add(a.asname or "triton")
        elif isinstance(node, ast.ImportFrom) and node.module in ("triton", "triton.runtime.jit",
                                                                   "triton.runtime"):
            for a in node.names:
                if a.name == "jit":
                    jits.add(a.asname or "jit")
    return modules, jits


def _is_jit(fn: ast.FunctionDef, modules: set[str], jits: set[str]) -> bool:
    for dec in fn.decorator_list:
        name = _dotted(dec.func if isinstance(dec, ast.Call) else dec)
        if name in jits:
            return True
        head, _, tail = name.rpartition(".")
        if tail == "jit" and (head in modules or head.split(".")[0] in modules):
            return True
    return False


@dataclass
class Inventory:
    jitted: list[str]                 # every @triton.jit function (kernels and jitted helpers)
    kernels: list[str]                # jitted functions no other jitted function calls
    helpers: list[str]                # jitted functions called from jitted code
    launchers: dict[str, list[str]] = field(default_factory=dict)  # kernel -> functions launching it


def inventory(path: Path) -> Inventory:
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    modules, jits = _triton_aliases(tree)
    jitted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and _is_jit(n, modules, jits)]
    names = {n.name for n in jitted}
    called: set[str] = set()
    for fn in jitted:
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                callee = node.func.id if isinstance(node.func, ast.Name) else None
                if callee in names and callee != fn.name:
                    called.add(callee)
    kernels = [n.name for n in jitted if n.name not in called]
    launchers: dict[str, list[str]] = {k: [] for k in kernels}

    def walk(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope + [child.name] if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                ast.ClassDef)) else scope
            if (isinstance(child, ast.Subscript) and isinstance(child.value, ast.Name)
                    and child.value.id in launchers and scope):
                q = ".".join(scope)
                if q not in launchers[child.value.id]:
                    launchers[child.value.id].append(q)
            walk(child, inner)

    walk(tree, [])
    return Inventory(jitted=[n.name for n in jitted], kernels=kernels, helpers=sorted(called),
                     launchers=launchers)


# ---------------------------------------------------------------------------------------------
# Importing
# ---------------------------------------------------------------------------------------------

_LOADED: dict[Path, object] = {}


def load(path: Path):
    """Import the bundle once per process, under its file's stem (like tools/run_bundle.py)."""
    path = Path(path).resolve()
    if path in _LOADED:
        return _LOADED[path]
    name = path.stem
    other = sys.modules.get(name)
    if other is not None and Path(getattr(other, "__file__", "") or "").resolve() != path:
        # another bundle of that stem (the same symbol of another vLLM version): a name of its own
        name = re.sub(r"\W", "_", f"{path.parent.name}__{path.stem}")
        other = sys.modules.get(name)
        if other is not None and Path(getattr(other, "__file__", "") or "").resolve() != path:
            raise RuntimeError(f"module names {path.stem!r} and {name!r} are taken by other files: "
                               f"import one bundle of that name per process")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _LOADED[path] = module
    return module


class LaunchCounter:
    """Stands in for a kernel in the bundle's globals: counts `kernel[grid](...)` launches made by
    the bundle's own Python code and forwards everything to the real kernel."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.launches = 0

    def __getitem__(self, grid):
        self.launches += 1
        return self.kernel[grid]

    def __getattr__(self, name):
        return getattr(self.kernel, name)
