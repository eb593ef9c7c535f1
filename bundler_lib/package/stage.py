"""A7's stage: compose the bundle from A0, A5 and A6, run the checks, write the bundle and A7.report.json."""

from __future__ import annotations

import ast
import concurrent.futures
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from bundler_lib import runtime_deps
from bundler_lib.artifacts import read_json, sha256_bytes, write_atomic, write_json
from bundler_lib.common.collector import without_cycle_collection
from bundler_lib.common.contract import load_graph
from bundler_lib.common.imports import top_package
from bundler_lib.errors import StageError
from bundler_lib.package import reachability
from bundler_lib.package.compose import compose, locate
from bundler_lib.package.import_check import IMPORT_TIMEOUT_S, check_import
from bundler_lib.package.stage_name import STAGE
from bundler_lib.package.static_checks import find_undefined_names, top_level_example_calls


REPORT = "A7.report.json"


_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.py$")


UNREACHABLE_MODES = ("report", "error")


_LISTED_IN_ERROR = 5
_UNDEFINED = re.compile(r"^(L\d+): .*?'([^']+)'")  # pyflakes' message: its line and the name


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


@dataclass(frozen=True)
class _Composed:
    """The composed bundle, and the two inputs its lines come from."""
    name: str
    symbol: str
    source: str
    module: str
    example: str

    def locate(self, line: int) -> tuple[str, int]:
        return locate(self.source, self.module, self.example, line)


@without_cycle_collection  # the collector was a third of the stage's CPU time (2 MB bundle: 2.9 -> 2.1 s)
def run(inputs: Path, out: Path, bundle_name: str, allow_import_failure: bool = False,
        probe_cuda: bool = False, strict_undefined_names: bool = False,
        import_timeout: float = IMPORT_TIMEOUT_S, unreachable: str = "report",
        runtime_python: Path | None = None, isolate: bool = True) -> dict:
    """unreachable: "report" records unreachable definitions and unused imports; "error" also fails on them.
    The CLI's `--import-check required` (the default) sets all three failure policies to strict: one StageError
    names every problem found. runtime_python: the bundle runtime's interpreter for the import check (default:
    this one). isolate: run that check under bubblewrap (never skipped silently: a StageError when impossible)."""
    inputs, out = Path(inputs), Path(out)
    _check_options(bundle_name, unreachable, runtime_python)
    a0, graph, module, example = _read_inputs(inputs)
    symbol = graph.get("symbol") or ""

    # What the bundle needs where it runs, declared in a PEP 723 block after the notice: the tree's torch,
    # triton, ninja and whatever else the bundle imports unguarded at module level.
    targets, deps, dep_details = _runtime_dependencies(a0, module)
    block = runtime_deps.pep723_block(targets.get("requires_python"), deps)
    dep_names = tuple(runtime_deps.requirement_name(d) for d in deps)

    source = compose(_header(a0), module, example, block)
    bundle = _Composed(bundle_name, symbol, source, module, example)
    data = source.encode("utf-8")
    report = _new_report(bundle_name, symbol, data, targets, deps, dep_details)
    bundle_path = out / bundle_name

    tree, undefined, annotation_only, reach, res = _check_concurrently(
        bundle, report, bundle_path, probe_cuda, import_timeout, runtime_python, isolate, dep_names)
    _record_runtime(report, bundle_path, res, deps, runtime_python, isolate)
    undefined = _record_undefined_names(report, undefined, annotation_only)
    problems, fail_input = _import_problems(bundle, tree, res, probe_cuda)
    if problems:
        report["checks"]["import"] = "failed: " + "; ".join(problems)
        report["details"]["import_error"] = res.get("error") or res.get("stderr_tail", "")
    else:
        report["checks"]["import"] = "ok"
    _record_cuda_build(report, tree, res, probe_cuda)
    _record_reachability(report, source, reach)

    # Every fatal problem goes into one error line: what, the first few, how many, the remedy.
    fatal, remedies = [], []
    if problems:
        _import_fatal(report, problems, fail_input, allow_import_failure, fatal, remedies)
    if undefined:
        bound = bound_by(graph, undefined)
        if bound:
            report["details"]["undefined_names_bound_by"] = bound
        if strict_undefined_names:
            _undefined_fatal(undefined, fatal, remedies, bound)
            fail_input = "A5.module.py" if not fatal[:-1] else fail_input
        else:
            report["notes"].append(f"pyflakes finds {len(undefined)} undefined name(s); see details.undefined_names")
            report["status"] = "ok_with_failures"
    if probe_cuda and report["checks"]["cuda_build"] == "failed":
        report["status"] = "ok_with_failures"
    if reach.unreachable or reach.unused_imports:
        _unreachable_found(report, reach, symbol, unreachable == "error", fatal, remedies)
    if fatal:
        strict_hint = "" if allow_import_failure else " (or set import_check=\"report\" on the target to write it anyway)"
        _fail(report, bundle_path, fail_input, "; ".join(fatal), "; ".join(remedies) + strict_hint)

    write_atomic(bundle_path, data)
    os.chmod(bundle_path, 0o644)  # a product file, readable like any source file (mkstemp makes it 0600)
    write_json(out / REPORT, report)
    return report


def _check_options(bundle_name: str, unreachable: str, runtime_python: Path | None) -> None:
    if not _NAME_OK.match(bundle_name or ""):
        raise StageError(STAGE, f"--bundle-name {bundle_name!r}", "is not a plain Python file name",
                         "pass the file name only, e.g. RMSNorm.py (a valid module name ending in .py)")
    if unreachable not in UNREACHABLE_MODES:
        raise StageError(STAGE, f"--unreachable {unreachable!r}", "is not a known mode",
                         "pass one of: " + ", ".join(UNREACHABLE_MODES))
    if runtime_python is not None and not Path(runtime_python).exists():
        raise StageError(STAGE, f"--runtime-python {runtime_python}", "does not exist",
                         "run Pants through ./pants, which sets up the bundle runtime (3rdparty/bundle_runtime.txt)")


def _read_inputs(inputs: Path) -> tuple[dict, dict, str, str]:
    """(A0.license.json, A1.graph.json, A5.module.py, A6.example.py), each checked."""
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
    module = (inputs / "A5.module.py").read_text(encoding="utf-8")
    example = (inputs / "A6.example.py").read_text(encoding="utf-8")
    if not module.strip():
        raise StageError(STAGE, "A5.module.py", "is empty", "re-run A5 (bind)")
    return a0, graph, module, example


def _runtime_dependencies(a0: dict, module: str) -> tuple[dict, list[str], dict]:
    """(A0's runtime targets, the requirements the module's unguarded imports declare, their details)."""
    targets = a0.get("runtime") if isinstance(a0.get("runtime"), dict) else {}
    try:
        module_tree = ast.parse(module)
    except SyntaxError:
        module_tree = ast.Module(body=[], type_ignores=[])  # the syntax check names the problem
    deps, dep_details = runtime_deps.declared_dependencies(module_tree, targets)
    return targets, deps, dep_details


def _new_report(bundle_name: str, symbol: str, data: bytes, targets: dict, deps: list[str], dep_details: dict) -> dict:
    return {
        "status": "ok",
        "path": bundle_name,
        "symbol": symbol,
        "size": len(data),
        "sha256": sha256_bytes(data),
        "checks": {"syntax": "not run", "import": "not run", "undefined_names": "not run",
                   "cuda_build": "skipped (not requested)", "unreachable_definitions": "not run",
                   "unused_imports": "not run", "optional_imports_read": "not run"},
        "dependencies": {"requires_python": targets.get("requires_python"), "declared": deps, **dep_details,
                         "targets_from": targets.get("sources", {})},
        "details": {},
        "notes": [],
    }


def _fail(report: dict, bundle_path: Path, input_name: str, problem: str, remedy: str):
    """Writes the failed report (and removes an earlier run's bundle, not this run's result), then raises."""
    report["status"] = "failed"
    if bundle_path.exists():
        bundle_path.unlink()
    write_json(bundle_path.parent / REPORT, report)
    raise StageError(STAGE, input_name, problem, remedy)


def _check_concurrently(bundle: _Composed, report: dict, bundle_path: Path, probe_cuda: bool, import_timeout: float,
                        runtime_python: Path | None, isolate: bool, dep_names: tuple[str, ...]) -> tuple:
    """(the bundle's tree, undefined names, those only in annotations, what nothing reaches, the import check's
    result). The import check (3.) is the slowest: its interpreter starts once the bundle is compiled (it runs
    that code object instead of compiling the bundle again) and the other checks run meanwhile."""
    # 1. syntax (one parse; its tree serves every check below)
    tree, code = _syntax_tree(bundle, report, bundle_path)
    cancel, procs = threading.Event(), []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    importing = pool.submit(check_import, bundle.source, bundle.name, bundle.symbol, probe_cuda, import_timeout,
                            cancel, procs, runtime_python, isolate, dep_names, code)
    try:
        # 2. undefined names (pyflakes)
        undefined, annotation_only = find_undefined_names(bundle.source, bundle.name, tree)
        # 5. what nothing reaches
        reach = reachability.analyze(tree, bundle.symbol)
        res = importing.result()
    except BaseException:
        cancel.set()
        for p in list(procs):
            p.kill()
        raise
    finally:
        pool.shutdown(wait=True)
    return tree, undefined, annotation_only, reach, res


def _syntax_tree(bundle: _Composed, report: dict, bundle_path: Path) -> tuple[ast.Module, object]:
    """(the bundle's tree, its code object, as the import check's interpreter compiles it: not optimised)."""
    source, name = bundle.source, bundle.name
    try:
        tree = compile(source, name, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        code = compile(tree, name, "exec", dont_inherit=True, optimize=0)
        report["checks"]["syntax"] = "ok"
        return tree, code
    except SyntaxError as e:
        where, rel = bundle.locate(e.lineno)
        lines = source.split("\n")
        bad = lines[e.lineno - 1].strip() if e.lineno and e.lineno <= len(lines) else ""
        report["checks"]["syntax"] = f"failed: {e.msg} at bundle line {e.lineno} ({where} line {rel})"
        report["details"]["syntax"] = bad
        _fail(report, bundle_path, where, f"the composed bundle does not parse: {e.msg} at its line {e.lineno} "
              f"({where} line {rel}: {bad!r})", f"fix the stage that wrote {where}; the bundle must be valid Python")


def _record_runtime(report: dict, bundle_path: Path, res: dict, deps: list[str], runtime_python: Path | None,
                    isolate: bool) -> None:
    report["dependencies"]["runtime"] = {
        "interpreter": "bundle runtime" if runtime_python is not None else "stage interpreter",
        "isolated": "bubblewrap (read-only root, no network)" if isolate else "no",
        "installed": res.get("installed", {})}
    if res.get("missing"):
        # the environment, not the bundle: fatal whatever the import-check policy
        report["checks"]["import"] = "not run: the runtime lacks " + ", ".join(res["missing"])
        _fail(report, bundle_path, "the bundle runtime", f"the bundle declares {', '.join(res['missing'])}, which the "
              "bundle runtime (3rdparty/bundle_runtime.txt) does not hold, so its import cannot be checked",
              "remove the import that needs it from the closure, or add the package to 3rdparty/bundle_runtime.txt "
              "(./pants then rebuilds the runtime)")
    older = _older_than_declared(deps, res.get("installed", {}))
    if older:
        report["notes"].append("the import check ran with " + ", ".join(older) + " (the bundle declares newer: a "
                               "CPU check of the module-level code, not of the declared version)")


def _record_undefined_names(report: dict, undefined: list[str] | None, annotation_only: list[str]) -> list[str]:
    """Records pyflakes' undefined names; returns them ([] when pyflakes is not installed)."""
    checks = report["checks"]
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
    return undefined


def _import_problems(bundle: _Composed, tree: ast.Module, res: dict, probe_cuda: bool) -> tuple[list[str], str]:
    """3. import in a clean interpreter, vllm blocked, no compilation: (the problems, the input to fix)."""
    problems = []
    fail_input = "A5.module.py"
    calls = top_level_example_calls(tree)
    if calls:
        w, rel = bundle.locate(calls[0])
        fail_input = w
        problems.append(f"module-level code calls invocation_example() (bundle line {calls[0]}, {w} line {rel}): "
                        "importing the bundle must not run the example")
    if res.get("import") == "failed":
        err_lines = (res.get("error") or "").strip().splitlines()
        raised = err_lines[-1] if err_lines else "an error"
        where = ""
        for ln in err_lines:  # the innermost frame inside the bundle names the input to fix
            m = re.match(r'\s*File "%s", line (\d+)' % re.escape(bundle.name), ln)
            if m:
                w, rel = bundle.locate(int(m.group(1)))
                where = f" at bundle line {m.group(1)} ({w} line {rel})"
                fail_input = w if w.endswith(".py") else fail_input
        problems.append(f"importing it raised {raised}{where}")
    elif res.get("import") != "ok":
        problems.append(res.get("import", "failed"))
    else:
        if res.get("symbol") is False:
            problems.append(f"the bundle does not define the target symbol {bundle.symbol!r}")
        if res.get("example") is False:
            problems.append("the bundle does not define a callable invocation_example")
        if res.get("cuda_initialized"):
            problems.append("importing the bundle initialised CUDA")
    if res.get("build_calls") and not probe_cuda:
        problems.append("importing the bundle called " + ", ".join(sorted(set(res["build_calls"]))))
    if res.get("extensions_dir") and not probe_cuda:
        problems.append("importing the bundle wrote to TORCH_EXTENSIONS_DIR: " + ", ".join(res["extensions_dir"][:5]))
    return problems, fail_input


def _record_cuda_build(report: dict, tree: ast.Module, res: dict, probe_cuda: bool) -> None:
    """4. the CUDA build probe."""
    checks = report["checks"]
    has_cuda = any(isinstance(n, ast.FunctionDef) and n.name == "_build_cuda_extension_if_needed"
                   for n in tree.body)
    if not has_cuda:
        checks["cuda_build"] = "not applicable (the bundle has no CUDA section)"
    elif probe_cuda:
        checks["cuda_build"] = res.get("cuda_build") or "skipped (the bundle did not import)"
        if checks["cuda_build"] == "failed":
            report["details"]["cuda_build_error"] = res.get("error", "")


def _record_reachability(report: dict, source: str, reach) -> None:
    """5. unreachable definitions and unused imports; names of optional packages that reached code reads."""
    checks, details = report["checks"], report["details"]
    where = reachability.Provenance(source)
    checks["unreachable_definitions"] = f"found {len(reach.unreachable)}" if reach.unreachable else "none"
    checks["unused_imports"] = f"found {len(reach.unused_imports)}" if reach.unused_imports else "none"
    if reach.unreachable:
        details["unreachable_definitions"] = [reachability.describe(d, where(d.line)) for d in reach.unreachable]
    if reach.unused_imports:
        details["unused_imports"] = [reachability.describe(d, where(d.line)) for d in reach.unused_imports]
    _record_optional_reads(report, reach.optional_reads)


def _record_optional_reads(report: dict, reads: list) -> None:
    """Reached code that reads a name only a guarded optional import binds (its handler binds the absent package's
    stand-ins, common/imports.py ABSENT) raises ModuleNotFoundError naming the package where it calls one. Recorded, not fatal even in strict mode: reachability is per
    definition, not per path, so a read is code that may run (a CuTe-DSL kernel picked by capability at run time,
    a progress bar), and the zoo holds such reads that its forwards never take; where a read is on the path
    every forward takes, the class gets a replacement (common/imports.py FALLBACKS, EMBEDDED)."""
    packages = sorted({top_package(r.statement) for r in reads})
    report["checks"]["optional_imports_read"] = (
        f"found {len(reads)} (packages: {', '.join(packages)})" if reads else "none")
    if not reads:
        return
    report["dependencies"]["optional_read_at_run_time"] = packages
    report["details"]["optional_imports_read"] = [
        f"L{r.line} {r.name} ({r.statement}): read by {', '.join(r.readers[:_LISTED_IN_ERROR])}"
        + (f" and {len(r.readers) - _LISTED_IN_ERROR} more" if len(r.readers) > _LISTED_IN_ERROR else "")
        for r in reads]
    report["notes"].append(f"reached code reads {len(reads)} name(s) of optional package(s) the bundle does not "
                           f"declare ({', '.join(packages)}): where one is missing, a call into it raises "
                           "ModuleNotFoundError naming it; "
                           "see details.optional_imports_read")


def _import_fatal(report: dict, problems: list[str], fail_input: str, allow_import_failure: bool,
                  fatal: list[str], remedies: list[str]) -> None:
    if allow_import_failure:
        report["status"] = "ok_with_failures"
        report["notes"].append("the import check failed and allow_import_failure was set: the bundle is written anyway")
        return
    fatal.append(f"the bundle does not import cleanly without vLLM: {'; '.join(problems)}")
    if "No module named 'vllm" in report["details"].get("import_error", ""):
        remedies.append("make the closure self-contained (an import of vllm means a repo-local reference "
                        "A1/A2 did not inline); see A7.report.json details.import_error")
    else:
        remedies.append(f"fix what {fail_input} does at import time (importing the bundle must only define "
                        "things); see A7.report.json details.import_error")


def _undefined_fatal(undefined: list[str], fatal: list[str], remedies: list[str], bound: dict[str, str]) -> None:
    first = [(lambda m: f"{m.group(2)} ({m.group(1)})" if m else u)(_UNDEFINED.match(u))
             for u in undefined[:_LISTED_IN_ERROR]]
    more = len(undefined) - len(first)
    fatal.append(f"the bundle has {len(undefined)} undefined name(s): {', '.join(first)}"
                 + (f" and {more} more" if more > 0 else ""))
    if bound:
        at: dict[str, list[str]] = {}
        for name, where in sorted(bound.items()):
            at.setdefault(where, []).append(name)
        remedies.append("A1 resolved " + "; ".join(f"{', '.join(ns)} to {w}" for w, ns in list(at.items())[:3])
                        + ", whose inlined text does not define " + ("it" if len(bound) == 1 else "them")
                        + ": see the node's edits in A1.graph.json and its block in A2.inline.py")
    else:
        remedies.append("a definition the closure needs is missing: check that every file the closure reaches "
                        "exists in the tree (A1/A2 inline it), see A7.report.json details.undefined_names")


def bound_by(graph: dict, undefined: list[str]) -> dict[str, str]:
    """For each undefined name (pyflakes' message) that a node of A1's graph emits: that node's source span and
    kind."""
    names = {m.group(2) for m in map(_UNDEFINED.match, undefined) if m}
    where: dict[str, str] = {}
    for n in graph.get("python_nodes") or []:
        for b in n.get("names") or []:
            if b.get("emit_name") in names:
                where.setdefault(b["emit_name"], f"{n['file']}:L{n['line']}-L{n['end_line']} (a {n['kind']})")
    return where


def _unreachable_found(report: dict, reach, symbol: str, is_error: bool, fatal: list[str],
                       remedies: list[str]) -> None:
    found = [f"{len(reach.unreachable)} top-level definition(s)"] if reach.unreachable else []
    found += [f"{len(reach.unused_imports)} import(s)"] if reach.unused_imports else []
    what = " and ".join(found)
    if is_error:
        first = [f"L{d.line} {d.name}" for d in (reach.unreachable + reach.unused_imports)[:_LISTED_IN_ERROR]]
        more = len(reach.unreachable) + len(reach.unused_imports) - len(first)
        fatal.append(f"the bundle holds {what} that nothing reaches from {symbol or 'its symbol'}, "
                     f"invocation_example or its import-time code: {', '.join(first)}"
                     + (f" and {more} more" if more > 0 else ""))
        remedies.append("a closure defect: report it / A1 keeps definitions nothing uses (see A7.report.json "
                        "details.unreachable_definitions and details.unused_imports)")
    report["notes"].append(f"{what} nothing reaches (closure defects): see details.unreachable_definitions, "
                           "details.unused_imports")


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
