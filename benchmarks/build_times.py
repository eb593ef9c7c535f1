"""Build-time benchmark: cold build (stage caches and A1's memo empty, vLLM tree already present; the first one,
which also starts pantsd, reported apart), no-op rebuild,
edit outside the closure and edit inside it, each repeated, with the number of processes each run
executed (Pants' own counters). Runs the real ./pants (with pantsd, as a user would) in a temporary
workspace holding a local copy of the pinned vLLM tree.

    $(./pants --toolchain-python) benchmarks/build_times.py [--target qwen3_moe_layer] [--repeat 5]

Results go to benchmarks/results/<date>-build-times-<target>-<n>.json (never overwritten).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import vllm_tree  # noqa: E402
from pants_workspace import Workspace  # noqa: E402

OUTSIDE_FILE = "vllm/entrypoints/cli/main.py"


def timed(ws: Workspace, name: str, *extra: str):
    t0 = time.perf_counter()
    run = ws.pants(*extra, "package", f"targets:{name}", pantsd=True)
    elapsed = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"build failed:\n{run.stderr[-4000:]}")
    return elapsed, run.executed, run.executed_stages


def summary(samples):
    times = [t for t, _, _ in samples]
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "runs": [{"s": round(t, 3), "processes": n, "stages": st} for t, n, st in samples],
    }


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": round(mem, 1), "os": platform.platform(),
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", default="qwen3_moe_layer", help="a target of targets/BUILD")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cold-repeat", type=int, default=5, help="cold builds after the first (which starts pantsd)")
    args = p.parse_args()
    tree = vllm_tree("0.26.0")

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.add_tree("third_party/vllm", tree)
        # The repo's own targets, reading the local copy instead of the sdist.
        build = (REPO / "targets/BUILD").read_text().replace('vllm=":vllm_0_26_0"', 'vllm=":vllm_local"')
        ws.write("targets/BUILD", build)
        cold = []
        memo = Path(os.environ.get("VLLM_BUNDLER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME")
                                                                    or Path.home() / ".cache") / "vllm-bundler")
        memo = memo / "named_caches" / "bundler_graph_memo"   # A1's memo (rules/stages.py): a stage cache too
        # The first build of the workspace also starts pantsd (a once-per-session cost, reported on its own);
        # each cold build after it has an empty store and memo, so pantsd reinitialises its scheduler.
        for i in range(args.cold_repeat + 1):
            shutil.rmtree(memo, ignore_errors=True)
            store = Path(tmp) / f"store{i}"
            cold.append(timed(ws, args.target, f"--local-store-dir={store}"))
            print(f"cold #{i}{' (pantsd starting)' if i == 0 else ''}: {cold[-1][0]:.2f}s, {cold[-1][1]} processes",
                  flush=True)
        first, cold = cold[0], cold[1:]
        store = f"--local-store-dir={Path(tmp) / 'store0'}"
        timed(ws, args.target, store)  # warm-up: pantsd up with this store
        noop = [timed(ws, args.target, store) for _ in range(args.repeat)]
        print("no-op:", summary(noop)["median_s"], flush=True)
        graph = json.loads((ws.root / f"bundles_out/artifacts/targets.{args.target}/A1.graph.json").read_text())
        symbol = graph["symbol"]
        assert OUTSIDE_FILE not in graph["files"]
        outside, inside = [], []
        node = next(n for n in graph["python_nodes"] if n["name"] == symbol)
        for _ in range(args.repeat):
            f = ws.root / "third_party/vllm" / OUTSIDE_FILE
            f.write_text(f.read_text() + f"# edit {uuid.uuid4().hex}\n")
            outside.append(timed(ws, args.target, store))
        print("edit outside:", summary(outside)["median_s"], flush=True)
        for _ in range(args.repeat):
            f = ws.root / "third_party/vllm" / node["file"]
            lines = f.read_text().splitlines(keepends=True)
            i = node["line"] - 1
            lines[i] = lines[i].rstrip("\n") + f"  # edit {uuid.uuid4().hex}\n"
            f.write_text("".join(lines))
            inside.append(timed(ws, args.target, store))
        print("edit inside:", summary(inside)["median_s"], flush=True)
        subprocess.run(["pkill", "-f", f"pantsd \\[{ws.root}"], check=False)  # the daemon of this workspace

    toolchain = Path(subprocess.run([str(REPO / "pants"), "--toolchain-python"], capture_output=True, text=True).stdout.strip())
    versions = subprocess.run([str(toolchain), "-c", "import sys, torch, triton, libcst; print(sys.version.split()[0], torch.__version__, triton.__version__, libcst.__version__ if hasattr(libcst, '__version__') else '')"],
                              capture_output=True, text=True).stdout.split()
    result = {
        "benchmark": "build_times",
        "date": datetime.date.today().isoformat(),
        "target": args.target,
        "symbol": symbol,
        "vllm": "0.26.0 (local tree copied from the pinned sdist)",
        "machine": machine(),
        "versions": {"pants": "2.17.1", "stage_python": versions[0] if versions else "", "torch": versions[1] if len(versions) > 1 else "",
                     "triton": versions[2] if len(versions) > 2 else ""},
        "cold_first_build_starting_pantsd": summary([first]),
        "cold": summary(cold),
        "noop": summary(noop),
        "edit_outside_closure": summary(outside),
        "edit_inside_closure": summary(inside),
        "targets_s": {"noop": 1.0, "edit_outside_closure": 3.0, "cold": 10.0},
    }
    out_dir = REPO / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 1
    while (path := out_dir / f"{result['date']}-build-times-{args.target}-{n}.json").exists():
        n += 1
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
