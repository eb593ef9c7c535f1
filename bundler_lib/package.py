"""A7 package and verify: compose the bundle, check it, write it atomically.

The bundle is, in this order: the A0 notice (`#` comment lines at the very top), A5's module, A6's example.
Checks, all on the composed text before it is written:
- `syntax`: it parses (`compile`); a failure is a StageError and nothing is written but the report.
- `import`: a subprocess of this same interpreter imports the file by path with `vllm` made unimportable
  (a meta-path finder), `TORCH_EXTENSIONS_DIR` pointed at an empty temporary folder that must stay empty,
  and `torch.utils.cpp_extension.load`/`load_inline` made to fail if called: importing must compile
  nothing and run nothing. It also checks that the target symbol and `invocation_example` are defined.
  A failure writes the report (`status: failed`, the error's tail) and raises, unless
  `allow_import_failure` is set: then the bundle is written and the report says `ok_with_failures`.
- `undefined_names`: pyflakes' undefined-name messages (recorded, not fatal unless `strict_undefined_names`).
- `cuda_build`: only when `probe_cuda` is set and the subprocess sees a GPU: calls the bundle's
  `_build_cuda_extension_if_needed()`.
- `unreachable_definitions` / `unused_imports` (`bundler_lib.reachability`): top-level defs, classes, assigned
  names and custom-op registrations that nothing reaches from the target symbol, `invocation_example` and the
  module's import-time code, and import lines nothing reached uses: closure defects. `none` or `found N`, the
  list (line, name, kind, the `# --- Inlined from` block it sits in) in details; fatal only with
  `unreachable="error"`.

`A7.report.json`: status (`ok`, `ok_with_failures`, `failed`), path (the bundle's name, relative to the
output folder), size, sha256, symbol, checks {syntax, import, undefined_names, cuda_build, unreachable_definitions,
unused_imports} (one line each), details (error tails, the undefined names, the unreachable definitions and unused
imports), notes. Nothing here is timed or names an absolute path.

The import check's interpreter starts first (importing torch and the bundle is most of A7's time) and the other
checks run in this process meanwhile, on one parse of the bundle.
"""

import ast
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bundler_lib import reachability, runtime_deps
from bundler_lib.artifacts import read_json, sha256_bytes, write_atomic, write_json
from bundler_lib.common.contract import load_graph
from bundler_lib.errors import StageError

STAGE = "A7 package"
REPORT = "A7.report.json"
IMPORT_TIMEOUT_S = 300
_TAIL = 3000

_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")
UNREACHABLE_MODES = ("report", "error")
_LISTED_IN_ERROR = 5

# Runs in the child interpreter: argv = [bundle path, module name, symbol or "", probe_cuda 0/1, declared
# distribution names (JSON)]; in the stage interpreter (no bundle runtime) the parent's sys.path comes in
# VLLM_BUNDLER_SYS_PATH (JSON). Prints one JSON line after a marker.
_CHILD = r'''
import importlib.abc, importlib.metadata, importlib.util, json, os, sys, traceback
if "VLLM_BUNDLER_SYS_PATH" in os.environ:
    sys.path[:] = [p for p in json.loads(os.environ.pop("VLLM_BUNDLER_SYS_PATH")) if p]
_MARK = "@@A7-RESULT@@"
path, modname, symbol, probe = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
res = {"import": "not run", "error": "", "symbol": None, "example": None, "cuda_build": None, "build_calls": [],
       "installed": {}, "missing": []}
for _d in json.loads(sys.argv[5]):
    try:
        res["installed"][_d] = importlib.metadata.version(_d)
    except importlib.metadata.PackageNotFoundError:
        res["missing"].append(_d)
if res["missing"]:
    print(_MARK + json.dumps(res), flush=True)
    sys.exit(0)

class _NoVllm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, p=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError(
                f"No module named {name!r} (vLLM is made unimportable for the bundle's import check: "
                "the bundle must not import vllm)", name=name)
        return None

for k in [k for k in sys.modules if k == "vllm" or k.startswith("vllm.")]:
    del sys.modules[k]
sys.meta_path.insert(0, _NoVllm())

_build_allowed = [False]

def _guard_builds(_ce):
    for _n in ("load", "load_inline"):
        _orig = getattr(_ce, _n)
        def _guard(*a, __orig=_orig, __n=_n, **k):
            res["build_calls"].append(__n)
            if not _build_allowed[0]:
                raise RuntimeError(f"torch.utils.cpp_extension.{__n} called while importing the bundle: "
                                   "the CUDA build must be lazy (only on first use)")
            return __orig(*a, **k)
        setattr(_ce, _n, _guard)

# The guard is put on torch.utils.cpp_extension when something imports it, not by importing it here: importing it
# imports setuptools, which puts its vendored packages (packaging among them) on sys.path, and would hide from
# the check a bundle that needs them at import time.
class _GuardCppExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, p=None, target=None):
        if name != "torch.utils.cpp_extension":
            return None
        for f in sys.meta_path:
            if f is self or not hasattr(f, "find_spec"):
                continue
            spec = f.find_spec(name, p, target)
            if spec is not None and spec.loader is not None:
                _exec = spec.loader.exec_module
                def exec_module(module, __exec=_exec):
                    __exec(module)
                    _guard_builds(module)
                spec.loader.exec_module = exec_module
                return spec
        return None

sys.meta_path.insert(1, _GuardCppExtension())

try:
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    res["import"] = "ok"
    res["symbol"] = (not symbol) or hasattr(mod, symbol)
    res["example"] = callable(getattr(mod, "invocation_example", None))
    try:
        import torch
        res["cuda_initialized"] = bool(torch.cuda.is_initialized())
    except Exception:
        res["cuda_initialized"] = None
    if probe:
        build = getattr(mod, "_build_cuda_extension_if_needed", None)
        import torch
        if build is None:
            res["cuda_build"] = "not applicable (the bundle has no CUDA section)"
        elif not torch.cuda.is_available():
            res["cuda_build"] = "skipped (no GPU)"
        else:
            _build_allowed[0] = True
            try:
                build()
                res["cuda_build"] = "ok"
            except BaseException:
                res["cuda_build"] = "failed"
                res["error"] = traceback.format_exc()
except BaseException:
    res["import"] = "failed"
    res["error"] = traceback.format_exc()
sys.stdout.flush()
print(_MARK + json.dumps(res), flush=True)
'''


def _tail(text: str, n: int = _TAIL) -> str:
    text = text.rstrip()
    return text if len(text) <= n else "..." + text[-n:]


def _scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    """Remove absolute, host-specific paths from an error text (the report must be deterministic)."""
    for old, new in sorted(replacements, key=lambda r: -len(r[0])):
        if old:
            text = text.replace(old, new)
    return re.sub(r"\b0x[0-9a-fA-F]{6,}\b", "0x...", text)  # object addresses differ run to run


def _top_level_example_calls(tree: ast.Module) -> list[int]:
    """Lines where module-level code (outside any def/class body) calls invocation_example."""
    lines = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.ClassDef):
            for d in node.decorator_list + node.bases:
                visit(d)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "invocation_example":
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in tree.body:
        visit(stmt)
    return sorted(lines)


def _header(a0: dict) -> str:
    blocks = a0.get("headers_to_prepend")
    if isinstance(blocks, str):
        blocks = [blocks]
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, str) and b.strip() for b in blocks):
        raise StageError(STAGE, "A0.license.json", "has no headers_to_prepend (the license notice)",
                         "re-run A0 (license) on the tree")
    out = []
    for b in blocks:
        lines = b.rstrip("\n").split("\n")
        # Every line must be a comment: whatever is not yet one is made one.
        out.append("".join((ln if ln.lstrip().startswith("#") else ("# " + ln).rstrip()) + "\n" for ln in lines))
    return "#\n".join(out)


def compose(notice: str, module: str, example: str, script_block: str = "") -> str:
    """The bundle's text: notice, PEP 723 block, module, example, each separated by a blank line pair."""
    parts = [notice.rstrip("\n") + "\n"]
    if script_block:
        parts.append(script_block.rstrip("\n") + "\n")
    parts.append(module.strip("\n") + "\n")
    if example.strip():
        parts.append(example.strip("\n") + "\n")
    return "\n\n".join(parts)


def _locate(source: str, module: str, example: str, lineno) -> tuple[str, int]:
    """Which input a line of the composed bundle comes from, and its line there."""
    if not lineno:
        return "the composed bundle", 0
    m_at = source.find(module.strip("\n"))
    m_line = source[:m_at].count("\n") + 1 if m_at >= 0 else 1
    e_at = source.rfind(example.strip("\n")) if example.strip() else -1
    e_line = source[:e_at].count("\n") + 1 if e_at >= 0 else None
    if e_line and lineno >= e_line:
        return "A6.example.py", lineno - e_line + 1
    if lineno >= m_line:
        return "A5.module.py", lineno - m_line + 1
    return "A0.license.json (headers_to_prepend)", lineno


def _annotation_names(tree: ast.AST) -> set[tuple[int, str]]:
    """(line, name) of every name used inside an annotation (string annotations included)."""
    out: set[tuple[int, str]] = set()

    def collect(node: ast.AST | None) -> None:
        if node is None:
            return
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                out.add((sub.lineno, sub.id))
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                try:
                    inner = ast.parse(sub.value, mode="eval")
                except SyntaxError:
                    continue
                for n in ast.walk(inner):
                    if isinstance(n, ast.Name):
                        out.add((sub.lineno, n.id))
                        out.add((sub.lineno + n.lineno - 1, n.id))

    # Annotations belong to statements (def, AnnAssign), and statements live only in statement lists: walking
    # those lists finds them all without visiting the (many more) expression nodes.
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            collect(node.returns)
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]:
                if arg is not None:
                    collect(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            collect(node.annotation)
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                todo.extend(block)
    return out


_CAST_STRING = re.compile(r"""\bcast\(\s*(?:"([^"]*)"|'([^']*)')""")


def _in_cast_string(lines: list[str], lineno: int, name: str) -> bool:
    """`name` is read only by the type string of a `cast("T", x)` on that line (pyflakes checks it as an
    annotation; typing.cast never evaluates it)."""
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    for m in _CAST_STRING.finditer(line):
        try:
            inner = ast.parse(m.group(1) if m.group(1) is not None else m.group(2), mode="eval")
        except SyntaxError:
            continue
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(inner)):
            return True
    return False


def _undefined_names(source: str, filename: str, tree: ast.Module) -> tuple[list[str] | None, list[str]]:
    """pyflakes' undefined names, split into (used at run time, used only in annotations). With
    `from __future__ import annotations` the latter are never evaluated by the bundle itself."""
    try:
        from pyflakes import checker, messages
    except ImportError:
        return None, []
    w = checker.Checker(tree, filename=filename)
    kinds = (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)
    in_annotations = _annotation_names(tree)
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names) for n in tree.body)
    lines = source.splitlines()
    runtime, annotation_only = [], []
    for m in sorted(w.messages, key=lambda m: (m.lineno, getattr(m, "col", 0), str(m.message_args))):
        if isinstance(m, kinds):
            text = f"L{m.lineno}: {m.message % m.message_args}"
            name = m.message_args[0] if m.message_args else ""
            if (postponed and (m.lineno, name) in in_annotations) or _in_cast_string(lines, m.lineno, name):
                annotation_only.append(text)
            else:
                runtime.append(text)
    return runtime, annotation_only


def _outside_tmp(executable) -> str:
    """The interpreter's path with its environment's folder resolved (a Pants sandbox reaches a named cache
    through a symlink under /tmp, which the isolated check's private /tmp hides), the executable itself not
    resolved (a venv is found beside it)."""
    p = Path(os.path.abspath(executable))
    return str(Path(os.path.realpath(p.parent.parent)) / p.parent.name / p.name)


def isolation_prefix(writable: Path, chdir: Path | None = None, readable: tuple[str, ...] = ()) -> list[str]:
    """bubblewrap around the import check: the whole file system read-only, a private /tmp, no network (a new
    network namespace holds only a loopback that is down), `writable` (the check's own folder) the one place it
    can write; `readable` folders under /tmp (an interpreter's environment, e.g. VLLM_BUNDLER_CACHE=/tmp/...) stay
    visible, read-only, in the private /tmp. Raises a StageError when bwrap is missing or cannot create its
    namespaces here: the check never runs unisolated."""
    bwrap = shutil.which("bwrap", path=os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin")
    if not bwrap:
        raise StageError(STAGE, "bwrap", "bubblewrap is not installed, and the import check (which runs the tree's "
                         "module-level code) must not run unisolated", "run ./pants, whose setup installs Debian's "
                         "bubblewrap, or `apt-get install -y bubblewrap`")
    w = str(writable)
    prefix = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-ipc",
              "--unshare-uts", "--tmpfs", "/tmp",
              *[a for r in readable for a in ("--ro-bind", r, r)],
              "--bind", w, w, "--die-with-parent", "--new-session", "--chdir", str(chdir or writable)]
    probe = subprocess.run(prefix + ["--", "/bin/true"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        msg = " ".join((probe.stderr or f"exit code {probe.returncode}").split())
        raise StageError(STAGE, "bwrap", f"cannot isolate the import check ({msg})",
                         "allow unprivileged user and network namespaces on this machine (or run as root); the "
                         "check is never run unisolated")
    return prefix + ["--"]


def _check_import(source: str, bundle_name: str, symbol: str, probe_cuda: bool, timeout: float,
                  cancel: threading.Event | None = None, procs: list | None = None,
                  runtime_python: Path | None = None, isolate: bool = True, deps: tuple[str, ...] = ()) -> dict:
    """Import the composed bundle in a child interpreter (the bundle runtime's when given, under bubblewrap
    when `isolate`); return the child's result dict. The child is appended to `procs` once started; setting
    `cancel` (then killing what `procs` holds) stops it early."""
    modname = bundle_name[:-3]
    with tempfile.TemporaryDirectory(prefix="a7-import-") as td:
        td = Path(td)
        work = td / "work"
        ext = td / "torch_extensions"
        home = td / "home"
        work.mkdir()
        ext.mkdir()
        home.mkdir()
        bundle = work / bundle_name
        bundle.write_text(source, encoding="utf-8")
        env = dict(os.environ)
        env.update({
            "TORCH_EXTENSIONS_DIR": str(ext),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(home),  # whatever the imported code caches goes here, inside the check's own folder
            "XDG_CACHE_HOME": str(home / ".cache"),
            "TRITON_CACHE_DIR": str(home / ".triton"),
        })
        for k in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "VLLM_BUNDLER_SYS_PATH"):
            env.pop(k, None)
        if runtime_python is None:  # the stage interpreter itself (by hand, unit tests): its own sys.path
            python = _outside_tmp(sys.executable)
            env["VLLM_BUNDLER_SYS_PATH"] = json.dumps(
                [p for p in sys.path if p and Path(p).resolve() != work.resolve()])
            py_args = []
        else:  # the bundle runtime: its own sys.path only, no user site, no current directory
            python = _outside_tmp(runtime_python)
            py_args = ["-I"]
        scrub = [(str(work) + os.sep, ""), (str(td), "<tmp>")] + [
            (p.rstrip(os.sep) + os.sep, "<sys.path>/") for p in sys.path if p and os.path.isabs(p)]
        if runtime_python is not None:
            scrub.append((os.path.dirname(os.path.dirname(python)) + os.sep, "<runtime>/"))
        cmd = [python, *py_args, "-c", _CHILD, str(bundle), modname, symbol or "", "1" if probe_cuda else "0",
               json.dumps(list(deps))]
        if isolate:
            # what the interpreter reads (its environment; the stage interpreter's sys.path) and lies under /tmp,
            # which the check's private /tmp would hide
            seen = [os.path.dirname(os.path.dirname(python))] + (
                json.loads(env["VLLM_BUNDLER_SYS_PATH"]) if runtime_python is None else [])
            tmp_roots = sorted({os.path.realpath(r) for r in seen if os.path.isabs(r) and os.path.exists(r)
                                and os.path.realpath(r).startswith("/tmp/")
                                and not os.path.realpath(r).startswith(os.path.realpath(td))})
            cmd = isolation_prefix(td, work, tuple(tmp_roots)) + cmd
        if cancel is not None and cancel.is_set():
            return {"import": "not run", "error": "", "extensions_dir": []}
        # subprocess.run(..., capture_output=True, text=True, timeout=timeout), with the child made reachable
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if procs is not None:
            procs.append(proc)
        if cancel is not None and cancel.is_set():
            proc.kill()
        with proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as e:
                proc.kill()
                proc.wait()
                err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
                return {"import": f"failed: timed out after {int(timeout)} s", "error": _scrub(_tail(err), scrub),
                        "extensions_dir": []}
        proc = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        leftovers = sorted(str(p.relative_to(ext)) for p in ext.rglob("*"))
        res = None
        for line in proc.stdout.splitlines():
            if line.startswith("@@A7-RESULT@@"):
                res = json.loads(line[len("@@A7-RESULT@@"):])
        if res is None:
            last = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            res = {"import": f"failed: the import check's interpreter exited with code {proc.returncode}"
                             + (f" ({_scrub(last[0], scrub)[:300]})" if last[0] else ""),
                   "error": proc.stderr}
        res["error"] = _scrub(_tail(res.get("error") or ""), scrub)
        res["stderr_tail"] = _scrub(_tail(proc.stderr, 1500), scrub) if res["import"] != "ok" else ""
        res["extensions_dir"] = leftovers
        return res


def run(inputs: Path, out: Path, bundle_name: str, allow_import_failure: bool = False,
        probe_cuda: bool = False, strict_undefined_names: bool = False,
        import_timeout: float = IMPORT_TIMEOUT_S, unreachable: str = "report",
        runtime_python: Path | None = None, isolate: bool = True) -> dict:
    """unreachable: "report" records unreachable definitions and unused imports; "error" also fails on them.
    The CLI's `--import-check required` (the default) sets all three failure policies to strict: one StageError
    names every problem found. runtime_python: the bundle runtime's interpreter for the import check (default:
    this one). isolate: run that check under bubblewrap (never skipped silently: a StageError when impossible)."""
    inputs, out = Path(inputs), Path(out)
    if not _NAME_OK.match(bundle_name or ""):
        raise StageError(STAGE, f"--bundle-name {bundle_name!r}", "is not a plain Python file name",
                         "pass the file name only, e.g. RMSNorm.py (a valid module name ending in .py)")
    if unreachable not in UNREACHABLE_MODES:
        raise StageError(STAGE, f"--unreachable {unreachable!r}", "is not a known mode",
                         "pass one of: " + ", ".join(UNREACHABLE_MODES))
    if runtime_python is not None and not Path(runtime_python).exists():
        raise StageError(STAGE, f"--runtime-python {runtime_python}", "does not exist",
                         "run Pants through ./pants, which sets up the bundle runtime (3rdparty/bundle_runtime.txt)")
    need = ["A0.license.json", "A1.graph.json", "A5.module.py", "A6.example.py"]
    missing = [n for n in need if not (inputs / n).is_file()]
    if missing:
        raise StageError(STAGE, ", ".join(missing), "missing from the inputs folder",
                         "run the earlier stages (A0 license, A1 graph, A5 bind, A6 example) and pass their folder")
    try:
        a0 = read_json(inputs / "A0.license.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StageError(STAGE, "A0.license.json", f"not valid JSON ({e})",
                         "re-run the stage that wrote it") from None
    graph = load_graph(inputs / "A1.graph.json", STAGE)
    if a0.get("status") != "ok":
        raise StageError(STAGE, "A0.license.json", f"license status is {a0.get('status')!r}, not 'ok'",
                         "fix the license problem A0 reported")
    symbol = graph.get("symbol") or ""
    module = (inputs / "A5.module.py").read_text(encoding="utf-8")
    example = (inputs / "A6.example.py").read_text(encoding="utf-8")
    if not module.strip():
        raise StageError(STAGE, "A5.module.py", "is empty", "re-run A5 (bind)")

    # What the bundle needs where it runs, declared in a PEP 723 block after the notice: the tree's torch,
    # triton, ninja and whatever else the bundle imports unguarded at module level.
    targets = a0.get("runtime") if isinstance(a0.get("runtime"), dict) else {}
    try:
        module_tree = ast.parse(module)
    except SyntaxError:
        module_tree = ast.Module(body=[], type_ignores=[])  # the syntax check below names the problem
    deps, dep_details = runtime_deps.declared_dependencies(module_tree, targets)
    requires_python = targets.get("requires_python")
    block = runtime_deps.pep723_block(requires_python, deps)
    dep_names = tuple(runtime_deps.requirement_name(d) for d in deps)

    source = compose(_header(a0), module, example, block)
    data = source.encode("utf-8")
    report = {
        "status": "ok",
        "path": bundle_name,
        "symbol": symbol,
        "size": len(data),
        "sha256": sha256_bytes(data),
        "checks": {"syntax": "not run", "import": "not run", "undefined_names": "not run",
                   "cuda_build": "skipped (not requested)", "unreachable_definitions": "not run",
                   "unused_imports": "not run"},
        "dependencies": {"requires_python": requires_python, "declared": deps, **dep_details,
                         "targets_from": targets.get("sources", {})},
        "details": {},
        "notes": [],
    }
    notes = report["notes"]
    checks = report["checks"]
    bundle_path = out / bundle_name
    report_path = out / REPORT

    def fail(input_name: str, problem: str, remedy: str):
        report["status"] = "failed"
        if bundle_path.exists():  # a bundle from an earlier run is not this run's result
            bundle_path.unlink()
        write_json(report_path, report)
        raise StageError(STAGE, input_name, problem, remedy)

    # The import check (3.) is the slowest: its interpreter starts now and the other checks run meanwhile.
    cancel, procs = threading.Event(), []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    importing = pool.submit(_check_import, source, bundle_name, symbol, probe_cuda, import_timeout, cancel, procs,
                            runtime_python, isolate, dep_names)
    try:
        # 1. syntax (one parse; its tree serves every check below)
        try:
            tree = compile(source, bundle_name, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
            compile(tree, bundle_name, "exec", dont_inherit=True)
            checks["syntax"] = "ok"
        except SyntaxError as e:
            where, rel = _locate(source, module, example, e.lineno)
            lines = source.split("\n")
            bad = lines[e.lineno - 1].strip() if e.lineno and e.lineno <= len(lines) else ""
            checks["syntax"] = f"failed: {e.msg} at bundle line {e.lineno} ({where} line {rel})"
            report["details"]["syntax"] = bad
            fail(where, f"the composed bundle does not parse: {e.msg} at its line {e.lineno} ({where} line {rel}: "
                        f"{bad!r})", f"fix the stage that wrote {where}; the bundle must be valid Python")
        # 2. undefined names (pyflakes)
        undefined, annotation_only = _undefined_names(source, bundle_name, tree)
        # 5. what nothing reaches
        reach = reachability.analyze(tree, symbol)
        res = importing.result()
    except BaseException:
        cancel.set()
        for p in list(procs):
            p.kill()
        raise
    finally:
        pool.shutdown(wait=True)
    report["dependencies"]["runtime"] = {
        "interpreter": "bundle runtime" if runtime_python is not None else "stage interpreter",
        "isolated": "bubblewrap (read-only root, no network)" if isolate else "no",
        "installed": res.get("installed", {})}
    if res.get("missing"):
        # the environment, not the bundle: fatal whatever the import-check policy
        checks["import"] = "not run: the runtime lacks " + ", ".join(res["missing"])
        fail("the bundle runtime", f"the bundle declares {', '.join(res['missing'])}, which the bundle runtime "
             "(3rdparty/bundle_runtime.txt) does not hold, so its import cannot be checked",
             "remove the import that needs it from the closure, or add the package to 3rdparty/bundle_runtime.txt "
             "(./pants then rebuilds the runtime)")
    older = _older_than_declared(deps, res.get("installed", {}))
    if older:
        notes.append("the import check ran with " + ", ".join(older) + " (the bundle declares newer: a CPU "
                     "check of the module-level code, not of the declared version)")
    if undefined is None:
        checks["undefined_names"] = "skipped (pyflakes is not installed)"
        undefined = []
    elif undefined:
        checks["undefined_names"] = f"found {len(undefined)}" + (
            f" (and {len(annotation_only)} only in annotations)" if annotation_only else "")
        report["details"]["undefined_names"] = undefined
    else:
        checks["undefined_names"] = "ok" + (
            f" ({len(annotation_only)} only in postponed annotations)" if annotation_only else "")
    if annotation_only:
        report["details"]["undefined_names_in_annotations"] = annotation_only

    # 3. import in a clean interpreter, vllm blocked, no compilation
    problems = []
    fail_input = "A5.module.py"
    calls = _top_level_example_calls(tree)
    if calls:
        w, rel = _locate(source, module, example, calls[0])
        fail_input = w
        problems.append(f"module-level code calls invocation_example() (bundle line {calls[0]}, {w} line {rel}): "
                        "importing the bundle must not run the example")
    if res.get("import") == "failed":
        err_lines = (res.get("error") or "").strip().splitlines()
        raised = err_lines[-1] if err_lines else "an error"
        where = ""
        for ln in err_lines:  # the innermost frame inside the bundle names the input to fix
            m = re.match(r'\s*File "%s", line (\d+)' % re.escape(bundle_name), ln)
            if m:
                w, rel = _locate(source, module, example, int(m.group(1)))
                where = f" at bundle line {m.group(1)} ({w} line {rel})"
                fail_input = w if w.endswith(".py") else fail_input
        problems.append(f"importing it raised {raised}{where}")
    elif res.get("import") != "ok":
        problems.append(res.get("import", "failed"))
    else:
        if res.get("symbol") is False:
            problems.append(f"the bundle does not define the target symbol {symbol!r}")
        if res.get("example") is False:
            problems.append("the bundle does not define a callable invocation_example")
        if res.get("cuda_initialized"):
            problems.append("importing the bundle initialised CUDA")
    if res.get("build_calls") and not probe_cuda:
        problems.append("importing the bundle called " + ", ".join(sorted(set(res["build_calls"]))))
    if res.get("extensions_dir") and not probe_cuda:
        problems.append("importing the bundle wrote to TORCH_EXTENSIONS_DIR: " + ", ".join(res["extensions_dir"][:5]))
    if problems:
        checks["import"] = "failed: " + "; ".join(problems)
        report["details"]["import_error"] = res.get("error") or res.get("stderr_tail", "")
    else:
        checks["import"] = "ok"

    # 4. cuda build probe
    has_cuda = any(isinstance(n, ast.FunctionDef) and n.name == "_build_cuda_extension_if_needed"
                   for n in tree.body)
    if not has_cuda:
        checks["cuda_build"] = "not applicable (the bundle has no CUDA section)"
    elif probe_cuda:
        checks["cuda_build"] = res.get("cuda_build") or "skipped (the bundle did not import)"
        if checks["cuda_build"] == "failed":
            report["details"]["cuda_build_error"] = res.get("error", "")

    # 5. unreachable definitions and unused imports
    where = reachability.Provenance(source)
    checks["unreachable_definitions"] = f"found {len(reach.unreachable)}" if reach.unreachable else "none"
    checks["unused_imports"] = f"found {len(reach.unused_imports)}" if reach.unused_imports else "none"
    if reach.unreachable:
        report["details"]["unreachable_definitions"] = [reachability.describe(d, where(d.line))
                                                        for d in reach.unreachable]
    if reach.unused_imports:
        report["details"]["unused_imports"] = [reachability.describe(d, where(d.line)) for d in reach.unused_imports]

    # Every fatal problem goes into one error line: what, the first few, how many, the remedy.
    fatal, remedies = [], []
    if problems:
        if not allow_import_failure:
            fatal.append(f"the bundle does not import cleanly without vLLM: {'; '.join(problems)}")
            if "No module named 'vllm" in report["details"].get("import_error", ""):
                remedies.append("make the closure self-contained (an import of vllm means a repo-local reference "
                                "A1/A2 did not inline); see A7.report.json details.import_error")
            else:
                remedies.append(f"fix what {fail_input} does at import time (importing the bundle must only define "
                                "things); see A7.report.json details.import_error")
        else:
            report["status"] = "ok_with_failures"
            notes.append("the import check failed and allow_import_failure was set: the bundle is written anyway")
    if undefined:
        if strict_undefined_names:
            first = [(lambda m: f"{m.group(2)} ({m.group(1)})" if m else u)(re.match(r"^(L\d+): .*?'([^']+)'", u))
                     for u in undefined[:_LISTED_IN_ERROR]]
            more = len(undefined) - len(first)
            fatal.append(f"the bundle has {len(undefined)} undefined name(s): {', '.join(first)}"
                         + (f" and {more} more" if more > 0 else ""))
            remedies.append("a definition the closure needs is missing: check that every file the closure reaches "
                            "exists in the tree (A1/A2 inline it), see A7.report.json details.undefined_names")
            fail_input = "A5.module.py" if not fatal[:-1] else fail_input
        else:
            notes.append(f"pyflakes finds {len(undefined)} undefined name(s); see details.undefined_names")
            report["status"] = "ok_with_failures"
    if probe_cuda and checks["cuda_build"] == "failed":
        report["status"] = "ok_with_failures"
    if reach.unreachable or reach.unused_imports:
        found = [f"{len(reach.unreachable)} top-level definition(s)"] if reach.unreachable else []
        found += [f"{len(reach.unused_imports)} import(s)"] if reach.unused_imports else []
        what = " and ".join(found)
        if unreachable == "error":
            first = [f"L{d.line} {d.name}" for d in (reach.unreachable + reach.unused_imports)[:_LISTED_IN_ERROR]]
            more = len(reach.unreachable) + len(reach.unused_imports) - len(first)
            fatal.append(f"the bundle holds {what} that nothing reaches from {symbol or 'its symbol'}, "
                         f"invocation_example or its import-time code: {', '.join(first)}"
                         + (f" and {more} more" if more > 0 else ""))
            remedies.append("a closure defect: report it / A1 keeps definitions nothing uses (see A7.report.json "
                            "details.unreachable_definitions and details.unused_imports)")
        notes.append(f"{what} nothing reaches (closure defects): see details.unreachable_definitions, "
                     "details.unused_imports")
    if fatal:
        strict_hint = "" if allow_import_failure else " (or set import_check=\"report\" on the target to write it anyway)"
        fail(fail_input, "; ".join(fatal), "; ".join(remedies) + strict_hint)

    write_atomic(bundle_path, data)
    os.chmod(bundle_path, 0o644)  # a product file, readable like any source file (mkstemp makes it 0600)
    write_json(report_path, report)
    return report


def _older_than_declared(deps: list[str], installed: dict) -> list[str]:
    """`name version` for each declared `name>=X.Y` the runtime holds at a lower version."""
    out = []
    for d in deps:
        m = re.match(r"^([A-Za-z0-9_.\-]+)>=([0-9]+(?:\.[0-9]+)*)$", d)
        have = installed.get(m.group(1)) if m else None
        if not m or not have:
            continue
        want = tuple(int(x) for x in m.group(2).split("."))
        got = tuple(int(x) for x in re.findall(r"^[0-9]+(?:\.[0-9]+)*", have)[0].split(".")[:len(want)]) \
            if re.match(r"^[0-9]", have) else ()
        if got and got < want:
            out.append(f"{m.group(1)} {have}")
    return out
