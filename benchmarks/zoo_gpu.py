"""The zoo on the GPU: every zoo bundle's invocation_example, cold once and warm, at small and at model size.

    python benchmarks/zoo_gpu.py BUNDLE_DIR OUT_DIR [--jobs N] [--full-jobs N] [--only SUBSTR] [--budget-s S]
        [--timeout-s S] [--parity CASES [--parity-jobs N]] [--retry-from ZOO_GPU_JSON]

BUNDLE_DIR holds the bundles (`bundles_out/zoo/<ver>/*.py`) and, beside them, their artifacts
(`artifacts/<target>/A6.model.json`: whether the example is model-aware, its template and config). For each
bundle, in its own processes (`tools/run_bundle.py`, which imports it with vLLM absent and calls
`invocation_example`):
  1. small, cold: the first run in a fresh bundle cache compiles its CUDA units and Triton kernels. The units are
     keyed by content and shared between bundles (A4), so most bundles find theirs already built by another;
  2. small, warm: the same again, everything cached;
  3. model size (`--full`);
  4. with `--parity CASES` (tools/parity.py's case syntax, comma-separated: `prefill:32,decode:2x64`), for each
     bundle whose small example ran: tools/parity.py against transformers' layer with the same weights, all the
     cases in one process. The row's `parity` holds each case's errors and verdict, or `no reference` where
     transformers has no such layer, or the harness's one-line refusal (a weight that does not map: rc 2).
Up to `--jobs` bundles run their small examples at once (`--full-jobs` for model size: each sizes itself from the
free memory it sees). Each finished bundle writes `OUT_DIR/rows/<bundle>.json` at once, so a run cut short
(`--budget-s`, or the machine's time limit) keeps what it measured, and a later run with the same OUT_DIR resumes
where it stopped. At the end (or at the budget) `OUT_DIR/zoo-gpu.json` gathers the rows with the GPU and versions.
Runs where torch, triton and ninja are installed; never vLLM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tools" / "run_bundle.py"
PARITY = REPO / "tools" / "parity.py"
# Per case of tools/parity.py's rows, the fields a zoo row keeps.
PARITY_KEYS = ("case", "status", "reference", "bundle_rel_l2", "bundle_max_abs", "hf_bf16_rel_l2", "ratio",
               "control_rel_l2", "routing_differs_tokens", "reason", "seconds")


def model_record(bundle: Path) -> dict:
    """A6.model.json of the bundle's target (artifacts/<target>/ beside it), or {} when absent. The target's folder
    ends in the bundle's name (`targets.zoo.vllm_0_26_0.LlamaDecoderLayer__llama` for a symbol that several
    variants build); otherwise the record whose symbol the bundle is named after."""
    records = []
    for m in sorted((bundle.parent / "artifacts").glob("*/A6.model.json")):
        try:
            records.append((m.parent.name, json.loads(m.read_text())))
        except (OSError, json.JSONDecodeError):
            continue
    for target, rec in records:
        if target.rsplit(".", 1)[-1] == bundle.stem:
            return rec
    return next((rec for _, rec in records if rec.get("symbol") == bundle.stem), {})


def _child(cmd: list[str], timeout_s: float, cache: str, tail_chars: int, cwd=None) -> tuple:
    """Run `cmd --json <file>` with the bundle cache `cache`: (rc or "timeout", the output's tail, wall seconds,
    the JSON it wrote or {})."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = dict(os.environ, VLLM_BUNDLE_CACHE=cache)
    t0 = time.perf_counter()
    # its own process group: a timeout kills the compilers it started too, not only the Python process
    p = subprocess.Popen(cmd + ["--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, cwd=cwd, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout_s)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        text, _ = p.communicate()
        rc = "timeout"
    tail = (text or "")[-tail_chars:]
    wall = round(time.perf_counter() - t0, 2)
    try:
        res = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        res = {}
    out.unlink(missing_ok=True)
    return rc, tail, wall, res


def _run(bundle: Path, full: bool, cache: str, timeout_s: float) -> dict:
    cmd = [sys.executable, str(RUNNER), str(bundle)] + (["--full"] if full else [])
    rc, tail, wall, res = _child(cmd, timeout_s, cache, 8000)
    ok = res.get("example") == "ok"
    row = {"ok": ok, "wall_s": wall, "rc": rc, "import_s": res.get("import_s"), "example_s": res.get("example_s")}
    if not ok:
        row["error"] = _ends(res.get("error") or res.get("example") or tail)
    return row


def _ends(text: str, head: int = 800, tail: int = 1500) -> str:
    """The start and the end of an error: a Python error's cause comes first, a C++ abort's message before its
    stack frames."""
    return text if len(text) <= head + tail else text[:head] + "\n[...]\n" + text[-tail:]


def one(bundle: Path, rows: Path, cache: str, timeout_s: float, full: bool) -> dict:
    path = rows / f"{bundle.stem}.json"
    row = json.loads(path.read_text()) if path.exists() else None
    if row is None:
        rec = model_record(bundle)
        row = {"symbol": bundle.stem, "template": rec.get("template"), "status": rec.get("status"),
               "config": rec.get("config") or ("model" if rec.get("model_name") else None),
               "model": rec.get("model_name"),
               "model_aware": bool(rec.get("model_name")) and rec.get("template") not in (None, "generic")
               and rec.get("status", "ok") == "ok"}
        row["small_cold"] = _run(bundle, False, cache, timeout_s)
        row["small_warm"] = _run(bundle, False, cache, timeout_s) if row["small_cold"]["ok"] else None
        path.write_text(json.dumps(row, indent=1))
    if full and "full" not in row:
        row["full"] = _run(bundle, True, cache, timeout_s) if row["small_cold"]["ok"] else None
        path.write_text(json.dumps(row, indent=1))
    return row


def parity_status(case_statuses: list) -> str:
    """A bundle's parity verdict from its cases': `ok` (every case passed), `ok_partial` (those with a reference
    passed, the others have none: an MLA layer's latent cache cannot be copied for decode), `no reference`,
    `FAIL` (a case failed), `error` (none of those: the harness stopped). A case the bundle's example refuses (`not
    applicable`: an MLA layer's decode-only example asked for prefill) counts as one without a reference."""
    s = {"no reference" if c == "not applicable" else c for c in case_statuses}
    if "FAIL" in s:
        return "FAIL"
    if not s or not s <= {"ok", "no reference"}:
        return "error"
    return "no reference" if s == {"no reference"} else "ok" if s == {"ok"} else "ok_partial"


def _parity(bundle: Path, cases: list[str], timeout_s: float, cache: str) -> dict:
    """tools/parity.py on one bundle, in its own process (from the project root: the bundle's `# config:` path is
    relative to it): {status, rc, wall_s, cases: [...]} or the error's tail."""
    cmd = [sys.executable, str(PARITY), str(bundle.resolve())]
    for c in cases:
        cmd += ["--case", c]
    rc, tail, wall, res = _child(cmd, timeout_s, cache, 1500, cwd=REPO)
    rows = [{k: r[k] for k in PARITY_KEYS if k in r} for r in res.get("rows", [])]
    status = parity_status([r.get("status") for r in rows])
    row = {"status": status, "rc": rc, "wall_s": wall, "cases": rows}
    if status == "error":
        row["error"] = next((r.get("error") for r in res.get("rows", []) if r.get("error")), None) or tail
        row["error"] = row["error"][-1500:]
    return row


def parity_one(bundle: Path, rows: Path, cache: str, timeout_s: float, cases: list[str]) -> dict | None:
    path = rows / f"{bundle.stem}.json"
    row = json.loads(path.read_text()) if path.exists() else None
    if row is None or "parity" in row or not (row.get("small_cold") or {}).get("ok"):
        return None
    row["parity"] = _parity(bundle, cases, timeout_s, cache)
    path.write_text(json.dumps(row, indent=1))
    return row


def environment() -> dict:
    env = {"date": datetime.date.today().isoformat(), "python": platform.python_version()}
    try:
        env["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                     "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        env["gpu"] = None
    try:
        import torch
        import triton
        env.update(torch=torch.__version__, cuda=torch.version.cuda, triton=triton.__version__)
    except ImportError as e:
        env["import_error"] = str(e)
    return env


def passed(row: dict) -> bool:
    """Whether a zoo row passed: its examples ran (small, and model size where it ran) and its parity, where it ran,
    is neither FAIL nor error."""
    ran = all(bool(row.get(k) and row[k].get("ok")) for k in ("small_cold", "full") if k in row)
    return ran and (row.get("parity") or {}).get("status") not in ("FAIL", "error")


def summarize(rows: list[dict]) -> dict:
    aware = [r for r in rows if r.get("model_aware")]

    def ok(r, k):
        return bool(r.get(k) and r[k].get("ok"))
    parity = [r["parity"]["status"] for r in rows if r.get("parity")]
    return {
        "bundles": len(rows),
        "small_ok": sum(ok(r, "small_cold") for r in rows),
        "full_ok": sum(ok(r, "full") for r in rows),
        "model_aware": len(aware),
        "model_aware_small_and_full_ok": sum(ok(r, "small_cold") and ok(r, "full") for r in aware),
        "full_not_run": sum("full" not in r for r in rows),
        **({"parity_" + k.replace(" ", "_"): parity.count(k) for k in ("ok", "ok_partial", "FAIL", "no reference",
                                                                            "error")}
           if parity else {}),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--full-jobs", type=int, default=2)
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--budget-s", type=float, default=None, help="stop starting new bundles after this many seconds")
    p.add_argument("--timeout-s", type=float, default=300.0, help="per run")
    p.add_argument("--cache", default=None, help="bundle cache (default: OUT_DIR/cache, kept between resumed runs)")
    p.add_argument("--parity", default=None, metavar="CASES",
                   help="run tools/parity.py on each bundle whose example ran, with these cases (comma-separated, "
                        "e.g. prefill:32,decode:2x64)")
    p.add_argument("--parity-jobs", type=int, default=2)
    p.add_argument("--retry-from", type=Path, metavar="ZOO_GPU_JSON",
                   help="only the bundles that did not pass in that result (an earlier run's zoo-gpu.json or "
                        "benchmarks/results/*-zoo-gpu-*.json): an example that failed, or parity FAIL or error")
    a = p.parse_args(argv)
    cases = [c for c in (a.parity or "").split(",") if c]
    if a.parity is not None:
        sys.path.insert(0, str(REPO / "tools"))
        from parity import parse_case  # noqa: PLC0415 - the case syntax is the harness's

        for c in cases:
            try:
                parse_case(c)
            except argparse.ArgumentTypeError as e:
                print(f"error: --parity: {e}")
                return 2
    bundles = sorted(b for b in a.bundle_dir.glob("*.py") if not b.name.endswith(".kernelbench.py"))
    if a.only:
        bundles = [b for b in bundles if any(s in b.stem for s in a.only)]
    if a.retry_from is not None:
        try:
            failed = {r["symbol"] for r in json.loads(a.retry_from.read_text())["rows"] if not passed(r)}
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: --retry-from {a.retry_from}: not a zoo-gpu result ({type(e).__name__}: {e}): pass the "
                  "zoo-gpu.json an earlier run wrote")
            return 2
        bundles = [b for b in bundles if b.stem in failed]
    if not bundles:
        print(f"error: no bundles in {a.bundle_dir}: build the zoo first (./pants package targets/zoo/...)")
        return 2
    rows_dir = a.out_dir / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    cache = a.cache or str((a.out_dir / "cache").resolve())
    t0 = time.perf_counter()

    def within_budget() -> bool:
        return a.budget_s is None or time.perf_counter() - t0 < a.budget_s

    for full, jobs in ((False, a.jobs), (True, a.full_jobs)):
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futs = {}
            for b in bundles:
                futs[pool.submit(lambda b=b: one(b, rows_dir, cache, a.timeout_s, full) if within_budget() else None)] = b
            for f in as_completed(futs):
                r = f.result()
                if r is not None:
                    k = "full" if full else "small_cold"
                    res = r.get(k) or {}
                    print(f"{'full ' if full else 'small'} {futs[f].stem}: {'ok' if res.get('ok') else 'FAIL'} "
                          f"{res.get('wall_s')} s", flush=True)
    if cases:
        with ThreadPoolExecutor(max_workers=a.parity_jobs) as pool:
            futs = {pool.submit(lambda b=b: parity_one(b, rows_dir, cache, a.timeout_s, cases) if within_budget()
                                else None): b for b in bundles}
            for f in as_completed(futs):
                r = f.result()
                if r is not None:
                    worst = max((c.get("ratio") or 0 for c in r["parity"]["cases"]), default=None)
                    print(f"parity {futs[f].stem}: {r['parity']['status']} worst ratio {worst}", flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(rows_dir.glob("*.json"))]
    result = {"benchmark": "zoo-gpu", **environment(), "bundle_dir": str(a.bundle_dir), "jobs": a.jobs,
              "full_jobs": a.full_jobs, "parity_cases": cases or None, "seconds": round(time.perf_counter() - t0, 1),
              "summary": summarize(rows), "rows": rows}
    (a.out_dir / "zoo-gpu.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
