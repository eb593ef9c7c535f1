"""Fold the output folders of benchmarks/gpu_checks.sh (fetched from the GPU machine) into one results file,
benchmarks/results/<date>-gpu-checks-<n>.json (never overwritten):

    python benchmarks/gpu_results.py --commit <sha> [LABEL=]DIR [[LABEL=]DIR...]

With a LABEL, that folder's examples are keyed `<LABEL>/<bundle>` (e.g. one folder per vLLM version).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def fold(dirs: list[str]) -> dict:
    out: dict = {"env": {}, "cuda_ops": None, "triton_kernels": None, "examples": {}}
    for arg in dirs:
        label, _, path = arg.rpartition("=")
        d = Path(path)
        for env in sorted(d.glob("env-*.txt")):
            out["env"].setdefault("machine", env.read_text().strip().splitlines())
        ops = next((_load(f) for f in sorted(d.glob("cuda-ops*.json"))), None)
        if ops:
            checks = ops.get("checks", [])
            out["cuda_ops"] = {
                "env": ops.get("env"), "builds": {k: {x: v.get(x) for x in ("ops", "cold_build_s", "warm_build_s",
                                                                              "cuda_files", "cuda_lines", "failed")}
                                                  for k, v in ops.get("builds", {}).items()},
                "checks": len(checks), "ops": sorted({c["op"] for c in checks}),
                "worst_err_over_tol": max((c["max_abs_err"] / max(c["tol"] * (1 + c["ref_max_abs"]), 1e-30)
                                           for c in checks if c.get("tol")), default=None),
                "log_tail": next((tail for f in sorted(d.glob("*.log")) + sorted(d.glob("log.txt"))
                                  if "passed" in (tail := f.read_text()[-400:])), None)}
        tk = _load(d / "triton-kernels.json")
        if tk:
            checks = tk.get("checks", [])
            out["triton_kernels"] = {
                "env": tk.get("env"), "checks": len(checks),
                "failed_checks": [c for c in checks if c.get("ok") is False],
                "kernels": sorted({c["kernel"] for c in checks}),
                "per_bundle": {b: v.get("counts") for b, v in (tk.get("triton_bundles") or {}).items()},
                "worst_err_over_tol": max((c.get("worst_err_over_tol") or 0 for c in checks), default=None)}
        for f in sorted(d.glob("examples-*.json")):
            r = _load(f) or {}
            kind, _, name = f.stem[len("examples-"):].partition("-")
            out["examples"].setdefault(f"{label}/{name}" if label else name, {})[kind] = {
                k: r.get(k) for k in ("example", "import_s", "example_s")} | (
                {"error_last_line": r.get("error", "").strip().splitlines()[-1][:400]} if r.get("error") else {})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="[LABEL=]DIR")
    p.add_argument("--commit", required=True, help="the commit the bundles were built from")
    p.add_argument("--note", default="")
    a = p.parse_args()
    date = datetime.date.today().isoformat()
    res = {"benchmark": "gpu_checks", "date": date, "commit": a.commit, "note": a.note,
           "examples_meaning": "tools/run_bundle.py: cold = empty bundle cache, bundles in parallel (includes the "
                               "CUDA build); warm = a second process; full = model-sized inputs, warm",
           **fold(a.dirs)}
    out = REPO / "benchmarks" / "results"
    n = 1
    while (path := out / f"{date}-gpu-checks-{n}.json").exists():
        n += 1
    path.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    print(f"saved {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
