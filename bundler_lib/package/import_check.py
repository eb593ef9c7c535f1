"""The import check: a child interpreter imports the bundle with vLLM unimportable and extension builds refused,
isolated (bubblewrap) so that it reads nothing of the host's but the interpreter and the bundle."""

from __future__ import annotations

import importlib.util
import io
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tokenize
from pathlib import Path

from bundler_lib.errors import StageError
from bundler_lib.package.stage_name import STAGE


IMPORT_TIMEOUT_S = 300


_TAIL = 3000


# Runs in the child interpreter: argv = [bundle path, module name, symbol or "", probe_cuda 0/1, declared
# distribution names (JSON), the stage interpreter's sys.version]; in the stage interpreter (no bundle runtime)
# the parent's sys.path comes in VLLM_BUNDLER_SYS_PATH (JSON). Prints one JSON line after a marker.
_CHILD = r'''
import importlib.abc, importlib.metadata, importlib.util, json, os, sys, traceback
if "VLLM_BUNDLER_SYS_PATH" in os.environ:
    sys.path[:] = [p for p in json.loads(os.environ.pop("VLLM_BUNDLER_SYS_PATH")) if p]
_MARK = "@@A7-RESULT@@"
path, modname, symbol, probe = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if sys.argv[6] != sys.version:  # the stage's bytecode is its interpreter's: another one compiles the bundle itself
    try:
        os.remove(importlib.util.cache_from_source(path))
    except (OSError, NotImplementedError):
        pass
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


def check_import(source: str, bundle_name: str, symbol: str, probe_cuda: bool, timeout: float,
                  cancel: threading.Event | None = None, procs: list | None = None,
                  runtime_python: Path | None = None, isolate: bool = True, deps: tuple[str, ...] = (),
                  code=None) -> dict:
    """Import the composed bundle in a child interpreter (the bundle runtime's when given, under bubblewrap
    when `isolate`); return the child's result dict. The child is appended to `procs` once started; setting
    `cancel` (then killing what `procs` holds) stops it early. `code`: the bundle compiled by this interpreter
    (`compile(source, ..., dont_inherit=True, optimize=0)`), which the child runs instead of compiling the
    source again where it is this same interpreter version."""
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
        data = source.encode("utf-8")
        bundle.write_bytes(data)
        if code is not None:
            _write_bytecode(bundle, data, code)
        env = _child_env(ext, home)
        python, py_args = _interpreter(runtime_python, env, work)
        scrub = [(str(work) + os.sep, ""), (str(td), "<tmp>")] + [
            (p.rstrip(os.sep) + os.sep, "<sys.path>/") for p in sys.path if p and os.path.isabs(p)]
        if runtime_python is not None:
            scrub.append((os.path.dirname(os.path.dirname(python)) + os.sep, "<runtime>/"))
        cmd = [python, *py_args, "-c", _CHILD, str(bundle), modname, symbol or "", "1" if probe_cuda else "0",
               json.dumps(list(deps)), sys.version]
        if isolate:
            cmd = _isolation_for(python, env, runtime_python, td, work) + cmd
        if cancel is not None and cancel.is_set():
            return {"import": "not run", "error": "", "extensions_dir": []}
        done = _run_child(cmd, work, env, timeout, cancel, procs, scrub)
        if isinstance(done, dict):
            return done
        return _child_result(done, ext, scrub)


def _write_bytecode(bundle: Path, data: bytes, code) -> None:
    """`code` as the .pyc the child's import looks for beside the bundle: hash-based and checked, so the import
    uses it only for exactly these source bytes (and only an interpreter with the same bytecode: its magic
    number; the child also drops it when its sys.version differs)."""
    try:
        if tokenize.detect_encoding(io.BytesIO(data).readline)[0] != "utf-8":
            return  # the child decodes the file as its coding cookie says, not as the stage's text
    except SyntaxError:
        return
    pyc = Path(importlib.util.cache_from_source(str(bundle)))
    pyc.parent.mkdir(exist_ok=True)
    checked_hash = 0b11
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + checked_hash.to_bytes(4, "little")
                    + importlib.util.source_hash(data) + marshal.dumps(code))


def _child_env(ext: Path, home: Path) -> dict[str, str]:
    """This environment, with the extensions folder, home and caches inside the check's own folder, and none of
    the variables that change what the interpreter imports."""
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
    return env


def _interpreter(runtime_python: Path | None, env: dict[str, str], work: Path) -> tuple[str, list[str]]:
    """(the child's interpreter, its arguments): the stage interpreter with its own sys.path, handed over in
    `env`, or the bundle runtime isolated from the user's site and the current directory."""
    if runtime_python is None:  # the stage interpreter itself (by hand, unit tests): its own sys.path
        env["VLLM_BUNDLER_SYS_PATH"] = json.dumps([p for p in sys.path if p and Path(p).resolve() != work.resolve()])
        return _outside_tmp(sys.executable), []
    return _outside_tmp(runtime_python), ["-I"]  # the bundle runtime: its own sys.path only


def _isolation_for(python: str, env: dict[str, str], runtime_python: Path | None, td: Path, work: Path) -> list[str]:
    # what the interpreter reads (its environment; the stage interpreter's sys.path) and lies under /tmp,
    # which the check's private /tmp would hide
    seen = [os.path.dirname(os.path.dirname(python))] + (
        json.loads(env["VLLM_BUNDLER_SYS_PATH"]) if runtime_python is None else [])
    tmp_roots = sorted({os.path.realpath(r) for r in seen if os.path.isabs(r) and os.path.exists(r)
                        and os.path.realpath(r).startswith("/tmp/")
                        and not os.path.realpath(r).startswith(os.path.realpath(td))})
    return isolation_prefix(td, work, tuple(tmp_roots))


def _run_child(cmd: list[str], work: Path, env: dict[str, str], timeout: float, cancel: threading.Event | None,
               procs: list | None, scrub: list[tuple[str, str]]) -> subprocess.CompletedProcess | dict:
    """subprocess.run(..., capture_output=True, text=True, timeout=timeout), with the child made reachable; on a
    timeout, the check's result."""
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
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _child_result(proc: subprocess.CompletedProcess, ext: Path, scrub: list[tuple[str, str]]) -> dict:
    """The child's result line (or the failure its exit gives), its errors scrubbed of host paths, and what it
    left in TORCH_EXTENSIONS_DIR."""
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
