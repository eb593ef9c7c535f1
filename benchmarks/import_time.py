"""Import time of built bundles, in fresh processes with vLLM blocked, side by side with `import torch, triton`
(what every bundle imports anyway): median, spread, and where the time beyond torch goes.

    python benchmarks/import_time.py bundles_out/*.py [--runs 5] [--json out.json]

Each run is a new interpreter (the bundle's directory first on sys.path, a meta-path finder refusing `vllm`);
the baseline and the bundles are interleaved run by run, so machine noise hits them alike. One more run per
bundle under `-X importtime` lists the heaviest modules the bundle pulls in beyond the baseline's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BLOCK_VLLM = (
    "import sys\n"
    "class _NoVllm:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'vllm' or name.startswith('vllm.'):\n"
    "            raise ImportError('vllm is blocked')\n"
    "sys.meta_path.insert(0, _NoVllm())\n"
)


def _run(code: str, cwd: Path, extra: list[str] = ()) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, *extra, "-c", BLOCK_VLLM + code], cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{code!r} failed in {cwd}:\n{r.stderr[-3000:]}")
    return dt, r.stderr


def _stats(xs: list[float]) -> dict:
    return {"median_s": round(statistics.median(xs), 3), "min_s": round(min(xs), 3), "max_s": round(max(xs), 3),
            "runs_s": [round(x, 3) for x in xs]}


def _importtime(stderr: str) -> dict[str, tuple[int, int]]:
    """module -> (self us, cumulative us) from -X importtime output."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line[len("import time:"):].split("|")
            try:
                out[parts[2].strip()] = (int(parts[0]), int(parts[1]))
            except ValueError:
                continue
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundles", type=Path, nargs="+")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    base_code = "import torch, triton"
    _run(base_code, Path.cwd())  # warm the page cache
    times: dict[str, list[float]] = {"baseline": []}
    for b in a.bundles:
        _run(f"import {b.stem}", b.parent.resolve())
        times[str(b)] = []
    for _ in range(a.runs):
        times["baseline"].append(_run(base_code, Path.cwd())[0])
        for b in a.bundles:
            times[str(b)].append(_run(f"import {b.stem}", b.parent.resolve())[0])
    _, base_err = _run(base_code, Path.cwd(), ["-X", "importtime"])
    base_mods = _importtime(base_err)
    import torch
    import triton
    res = {"benchmark": "import_time", "python": platform.python_version(), "torch": torch.__version__,
           "triton": triton.__version__, "machine": platform.platform(), "cpus": __import__("os").cpu_count(),
           "cuda_available": torch.cuda.is_available(), "runs": a.runs,
           "baseline": {"code": base_code, **_stats(times["baseline"])}, "bundles": {}}
    for b in a.bundles:
        _, err = _run(f"import {b.stem}", b.parent.resolve(), ["-X", "importtime"])
        mods = _importtime(err)
        extra = {m: v for m, v in mods.items() if m not in base_mods}
        heavy = sorted(extra.items(), key=lambda kv: -kv[1][0])[:12]
        st = _stats(times[str(b)])
        res["bundles"][b.name if b.parent.name == "bundles_out" else f"{b.parent.name}/{b.name}"] = {
            **st, "ratio_to_baseline": round(st["median_s"] / res["baseline"]["median_s"], 2),
            "bundle_module_self_s": round(mods.get(b.stem, (0, 0))[0] / 1e6, 3),
            "extra_modules": len(extra),
            "torch_compiler_loaded": any(m.startswith(("torch._dynamo", "torch._inductor")) for m in extra),
            "heaviest_extra_modules_self_s": {m: round(v[0] / 1e6, 3) for m, v in heavy}}
        r = res["bundles"]
        name = list(r)[-1]
        print(f"{name}: {r[name]['median_s']} s (x{r[name]['ratio_to_baseline']} of torch+triton "
              f"{res['baseline']['median_s']} s); dynamo/inductor loaded: {r[name]['torch_compiler_loaded']}",
              flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
