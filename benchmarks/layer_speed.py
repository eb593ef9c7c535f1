"""The suite's decoder-layer bundles against transformers' same layers with the same weights, on one GPU.

    python benchmarks/layer_speed.py [--only NAME] [--sizes prefill:4096,decode:64x4096] [--quick] [--dry-run]

The layers: the `monolithic_bundle` targets of targets/BUILD (`--build-file`) that have a model and whose symbol is a
`*DecoderLayer` (A6's decoder-layer example), their bundles under bundles_out/ (build them first:
`./pants package targets:qwen3_layer ...`). For each layer and size, in one process per layer (the MoE layers are
large: nothing is kept from one layer to the next), side by side in that process:
- the bundle: its own `invocation_example(small=False, workload=..., tokens=..., batch=..., context=...)` and the
  `forward` it returns (eager; the forward copies its input, which vLLM's layers update in place); for decode also
  that forward captured in a CUDA graph and replayed (the bundle's `_bundle_cuda_graph`, as `bench --cuda-graph`);
- for prefill, where the bundle's unified attention kernel has a tunable launch (bundler_lib/example/
  attention_tune.py), the same forward with that kernel launched as vLLM launches it (`bundle_vllm_attention_launch`;
  `attention_launch_speedup`: its median over the bundle's);
- transformers: its decoder layer of the same architecture holding the bundle's weights (tools/parity.py: the
  merged-weight mapping, the layer built on meta and sharing the bundle's tensors), in its fast settings:
  `attn_implementation="sdpa"` and, for MoE layers, `experts_implementation="grouped_mm"` (transformers 5.17 reads
  it from the config: `PreTrainedConfig.__init__` pops `experts_implementation`; `@use_experts_implementation`
  dispatches the experts' forward on `config._experts_implementation`, and a layer built outside a model keeps
  its per-expert loop unless the config names one). Rotary embeddings and the attention mask are built once,
  outside the timing, as a transformers model builds them for all its layers (the cache cropped back after each
  decode step keeps the mask's length). Decode runs over a DynamicCache filled with the bundle's context
  K/V (tools/parity.py), cropped back to that length after each step: each step pays transformers' `torch.cat`.

A target with a variant is one more layer: `--only qwen3_layer,qwen3_layer_flex` times the same layer with vLLM's
TRITON_ATTN and FLEX_ATTENTION attention backends, each against transformers (each layer's entry records its variant).

Sizes (`--sizes`, tools/parity.py's case syntax): prefill of 32, 512, 4k, 8k and 32k tokens; decode of one token
for 1, 8, 64 and 256 sequences of 4k tokens of context. CUDA events around each call, warm-ups, then the two (three)
calls alternate for `--iters` (at least 20) rounds: median, min, p10, p90, max. From the bundle example's cost
estimate (every weight once, of the experts those the routed tokens reach, the context's K/V): achieved TFLOP/s and
GB/s, their fractions of the GPU's peak (PEAKS, by device name) and of the roofline time. Ratio per row:
transformers' median / the bundle's (above 1: the bundle is faster).

`--static-shapes`: torch.compile specialises on every size (`torch._dynamo.config.automatic_dynamic_shapes` off,
the recompile limit raised), one kernel per shape as in a process that runs one shape. Without it torch recompiles
with dynamic shapes at the second size a compiled function sees (vLLM's FLEX_ATTENTION calls
`torch.compile(flex_attention, fullgraph=True)`), as a served model's varying batch sizes make it; the dynamic
kernel can be much slower (`2026-12-07-layer-speed-6.json` against `-7.json`). TRITON_ATTN's layers compile nothing.

Results: benchmarks/results/<date>-layer-speed-<n>.json (the next free n; rewritten after each layer, so a run cut
short keeps what it measured). `--budget-s` stops starting layers, and stops a layer's process, when the time is
spent (a 10-minute device slot). Without a CUDA GPU every mode but `--dry-run` exits 2 with one line.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import gc
import hashlib
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import parity  # noqa: E402

PREFILL_TOKENS = (32, 512, 4096, 8192, 32768)
DECODE_BATCHES = (1, 8, 64, 256)
DECODE_CONTEXT = 4096
DEFAULT_SIZES = tuple(f"prefill:{t}" for t in PREFILL_TOKENS) + tuple(
    f"decode:{b}x{DECODE_CONTEXT}" for b in DECODE_BATCHES)
QUICK_SIZES = ("prefill:4096", "decode:64x4096")  # the headline prefill size and its decode bandwidth goal
MIN_ITERS = 20
# transformers' fast settings (see the docstring); attn_implementation "sdpa" is tools/parity.py's hf_config's.
HF_SETTINGS = {"attn_implementation": "sdpa", "experts_implementation": "grouped_mm"}

# Dense (no sparsity) bf16 tensor-core peak and memory bandwidth, from NVIDIA's H100 and H200 data sheets; the first
# pattern that matches torch.cuda.get_device_name() applies. ("NVIDIA H100 80GB HBM3" is the SXM part.)
PEAKS = [
    (r"H100.*(SXM|HBM3)", "H100 SXM", 989e12, 3.35e12),
    (r"H100.*PCIe", "H100 PCIe", 756e12, 2.0e12),
    (r"H200", "H200", 989e12, 4.8e12),
]


class UsageError(Exception):
    """A bad input, reported in one line with exit status 2."""


# ------------------------------------------------------------------------------------------------ pure parts
def suite(build_file: Path, bundles_dir: Path) -> list[dict]:
    """The decoder layers of a BUILD file: `monolithic_bundle` targets with a model whose symbol names a decoder
    layer (as A6's classify does), in file order, with their variant (the choices given) and the path of their
    bundle."""
    address = os.path.relpath(build_file.parent, REPO)
    layers = []
    for node in ast.walk(ast.parse(build_file.read_text(encoding="utf-8"), str(build_file))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "monolithic_bundle"):
            continue
        kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords
              if k.arg in ("name", "symbol", "model", "output_path", "variant")}
        if not kw.get("model") or not str(kw.get("symbol", "")).endswith("DecoderLayer"):
            continue
        layers.append({"target": f"{address}:{kw['name']}", "name": kw["name"], "symbol": kw["symbol"],
                       "model": kw["model"], "variant": kw.get("variant") or {},
                       "bundle": str(bundles_dir / (kw.get("output_path") or kw["symbol"] + ".py"))})
    return layers


def select(layers: list[dict], only: list[str]) -> list[dict]:
    """The layers `only` names (target name, address or symbol; all when empty)."""
    wanted = [w for item in only for w in item.split(",") if w]
    unknown = [w for w in wanted if not any(w in (la["name"], la["target"], la["symbol"]) for la in layers)]
    if unknown:
        raise UsageError(f"--only {unknown[0]}: no such decoder layer in the suite; choose from "
                         + ", ".join(la["name"] for la in layers))
    return [la for la in layers if not wanted or {la["name"], la["target"], la["symbol"]} & set(wanted)]


def cases(sizes: list[str], quick: bool) -> list[tuple[str, int, int, int]]:
    """(workload, new tokens, batch, context) for each size: `--sizes` in tools/parity.py's case syntax, else
    the quick set with --quick, else every size."""
    texts = [s for item in sizes for s in item.split(",") if s] or list(QUICK_SIZES if quick else DEFAULT_SIZES)
    try:
        return [parity.parse_case(t) for t in texts]
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e).replace("--case", "--sizes")) from None


def case_label(case: tuple[str, int, int, int]) -> str:
    kind, n, b, c = case
    if kind == "prefill":
        return f"prefill:{b}x{n}" if b != 1 else f"prefill:{n}"
    return f"decode:{b}x{c}" if n == 1 else f"decode:{b}x{n}+{c}"


def result_path(out_dir: Path, date: str) -> Path:
    """The next free `<date>-layer-speed-<n>.json` (not created)."""
    n = 1
    while (path := out_dir / f"{date}-layer-speed-{n}.json").exists():
        n += 1
    return path


def reserve_result(out_dir: Path, date: str) -> Path:
    """The next free result file, created empty (exclusively: two runs never share one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    while True:
        path = result_path(out_dir, date)
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            continue


def peak_of(device_name: str) -> dict | None:
    for pattern, name, flops, bandwidth in PEAKS:
        if re.search(pattern, device_name):
            return {"name": name, "tflops": flops / 1e12, "tbps": bandwidth / 1e12}
    return None


def summarize(times_ms: list[float]) -> dict:
    t = sorted(times_ms)
    n = len(t)
    return {"iters": n, "median_ms": round(statistics.median(t), 4), "min_ms": round(t[0], 4),
            "p10_ms": round(t[n // 10], 4), "p90_ms": round(t[min(n - 1, (n * 9) // 10)], 4),
            "max_ms": round(t[-1], 4)}


def rates(cost: dict, median_ms: float, peak: dict | None) -> dict:
    """Achieved TFLOP/s and GB/s of one forward that must compute cost["flops"] and move cost["bytes"]; with the
    GPU's peak, their fractions of it and of the roofline time (the larger of the compute and the memory time)."""
    seconds = median_ms * 1e-3
    out = {"tflops": round(cost["flops"] / seconds / 1e12, 3), "gbps": round(cost["bytes"] / seconds / 1e9, 1)}
    if peak:
        compute_s = cost["flops"] / (peak["tflops"] * 1e12)
        memory_s = cost["bytes"] / (peak["tbps"] * 1e12)
        out.update(frac_peak_flops=round(compute_s / seconds, 4), frac_peak_bw=round(memory_s / seconds, 4),
                   roofline_ms=round(max(compute_s, memory_s) * 1e3, 4),
                   frac_roofline=round(max(compute_s, memory_s) / seconds, 4),
                   bound="compute" if compute_s >= memory_s else "memory")
    return out


def hf_fast_config(cfg: dict, model_type: str):
    """transformers' config for the model in its fast settings (HF_SETTINGS)."""
    return parity.hf_config({**cfg, "experts_implementation": HF_SETTINGS["experts_implementation"]}, model_type)


# ------------------------------------------------------------------------------------------------ GPU parts
def time_side_by_side(fns: dict, warmup: int, iters: int) -> dict[str, list[float]]:
    """Milliseconds of each call (CUDA events), the calls alternating round by round after `warmup` of each."""
    import torch

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times[k].append(start.elapsed_time(end))
    return times


def transformers_step(ex: dict, found, config):
    """One call of transformers' layer (`found`: parity.hf_classes' answer; `config`: hf_fast_config's) holding the
    example's weights, on its inputs: decode over a cache of the example's context, cropped back after each step."""
    _, hf_cls, rope_cls = found
    B, q, ctx = ex["sizes"]["B"], ex["sizes"]["new_tokens"], ex["sizes"]["context"]
    x = ex["inputs"]["hidden_states"]
    layer_idx = int(ex["prefix"].rsplit(".", 1)[-1])
    state = {k: p.detach() for k, p in ex["module"].named_parameters()}
    hf = parity.hf_layer(hf_cls, config, layer_idx,
                         parity.map_weights(state, parity.hf_shapes(hf_cls, config, layer_idx)), x.dtype)
    xin = x.view(B, q, x.shape[-1])
    positions = ex["inputs"]["positions"].view(B, q)
    rope = rope_cls(config).to(x.device) if rope_cls is not None else None
    cache = parity.context_cache(ex, x.dtype, config, layer_idx) if ctx else None
    kw = parity.hf_inputs(hf, config, xin, positions, rope, cache, layer_idx)

    def step():
        out = parity.hf_call(hf, xin, kw)
        if cache is not None:  # back to the context (only this layer's is filled): each step appends as much
            cache.layers[layer_idx].crop(-q)
        return out

    return step


def vllm_attention_launch(forward):
    """`forward` with the unified attention kernel's prefill launched as vLLM launches it (VLLM_BUNDLE_ATTENTION_TUNED=0
    for the call: the bundle's stand-in reads it at each launch), to time beside the bundle's tuned launch."""
    def call():
        before = os.environ.get("VLLM_BUNDLE_ATTENTION_TUNED")
        os.environ["VLLM_BUNDLE_ATTENTION_TUNED"] = "0"
        try:
            return forward()
        finally:
            if before is None:
                del os.environ["VLLM_BUNDLE_ATTENTION_TUNED"]
            else:
                os.environ["VLLM_BUNDLE_ATTENTION_TUNED"] = before
    return call


def measure(mod, found, config, case, warmup: int, iters: int, peak: dict | None) -> dict:
    """One row: the bundle (eager, and graphed for decode) and transformers on the same weights and inputs."""
    kind, n, b, c = case
    ex = mod.invocation_example(small=False, workload=kind, tokens=n, batch=b, context=c)
    fns = {"bundle": ex["forward"], "transformers": transformers_step(ex, found, config)}
    if kind == "prefill" and hasattr(getattr(mod, "kernel_unified_attention", None), "forced"):
        fns["bundle_vllm_attention_launch"] = vllm_attention_launch(ex["forward"])
    row = {"sizes": ex["sizes"], "cost": ex["cost"]}
    if kind == "decode":
        capture = getattr(mod, "_bundle_cuda_graph", None)
        if capture is None:
            row["bundle_cuda_graph"] = {"error": "the bundle has no _bundle_cuda_graph (built before "
                                                 "`bench --cuda-graph`): rebuild it"}
        else:
            try:
                graph, _ = capture(ex["forward"], warmup)
                fns["bundle_cuda_graph"] = graph.replay
            except Exception as e:  # noqa: BLE001 - recorded; eager timings still run
                row["bundle_cuda_graph"] = {"error": f"capture failed: {type(e).__name__}: {e}"[:2000]}
    for k, t in time_side_by_side(fns, warmup, iters).items():
        row[k] = summarize(t)
        row[k].update(rates(ex["cost"], row[k]["median_ms"], peak))
    row["ratio"] = round(row["transformers"]["median_ms"] / row["bundle"]["median_ms"], 3)
    if "bundle_vllm_attention_launch" in row:
        row["attention_launch_speedup"] = round(
            row["bundle_vllm_attention_launch"]["median_ms"] / row["bundle"]["median_ms"], 3)
    if "median_ms" in row.get("bundle_cuda_graph", {}):
        row["ratio_cuda_graph"] = round(row["transformers"]["median_ms"] / row["bundle_cuda_graph"]["median_ms"], 3)
    return row


def static_shapes() -> None:
    """torch.compile specialises on every shape it sees (one kernel each) instead of recompiling dynamically."""
    import torch._dynamo

    cfg = torch._dynamo.config
    cfg.automatic_dynamic_shapes = False
    # torch >= 2.7 names the limit recompile_limit (cache_size_limit before); 9 sizes of one layer must fit under it
    setattr(cfg, "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit", 64)


def worker(layer: dict, sizes: list[str], warmup: int, iters: int, rows_out: Path, static: bool = False) -> int:
    """Every size of one layer, one JSON line per row in `rows_out` as each finishes."""
    import torch

    if static:
        static_shapes()
    peak = peak_of(torch.cuda.get_device_name())
    mod = parity.load_bundle(Path(layer["bundle"]))
    symbol = parity.symbol_of(mod)
    cfg_path = parity.bundle_config(mod)
    if cfg_path is None:
        raise UsageError(f"{layer['bundle']}: built without a model config; give the target a model")
    cfg = parity.read_config(REPO / cfg_path)
    found = parity.hf_classes(cfg["model_type"], symbol)
    config = hf_fast_config(cfg, found[0]) if found else None
    with rows_out.open("a") as out:
        for case in cases(sizes, False):
            row = {"case": case_label(case)}
            t0 = time.perf_counter()
            if found is None:
                row.update(status="no reference", reason=f"transformers has no {symbol} and no decoder layer for "
                                                          f"{cfg['model_type']}")
            else:
                row["reference"] = f"transformers {found[0]}.{found[1].__name__}"
                try:
                    row.update(measure(mod, found, config, case, warmup, iters, peak), status="ok")
                except Exception:  # noqa: BLE001 - recorded in the row; the next size still runs
                    row.update(status="error", error=traceback.format_exc()[-3000:])
            gc.collect()
            torch.cuda.empty_cache()
            row["seconds"] = round(time.perf_counter() - t0, 2)
            out.write(json.dumps(row) + "\n")
            out.flush()
            short = {k: row[k] for k in ("status", "ratio", "ratio_cuda_graph", "attention_launch_speedup") if k in row}
            for k in ("bundle", "transformers", "bundle_cuda_graph", "bundle_vllm_attention_launch"):
                if "median_ms" in row.get(k, {}):
                    short[k + "_ms"] = row[k]["median_ms"]
            if row["status"] == "error":
                short["error"] = row["error"].strip().splitlines()[-1][:300]
            print(f"layer_speed: {layer['name']} {row['case']} {json.dumps(short)}", flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ driver
def _versions() -> dict:
    out = {}
    for dist in ("torch", "triton", "transformers"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _driver() -> str | None:
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = res.stdout.split("\n")[0].strip()
    return first if res.returncode == 0 and first else None


def _write(path: Path, result: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="a layer by target name, address or symbol (repeatable, or comma-separated)")
    p.add_argument("--sizes", action="append", default=[], metavar="CASE",
                   help="prefill:T or decode:BxC (tools/parity.py's syntax; repeatable, or comma-separated); "
                        f"default: {','.join(DEFAULT_SIZES)}")
    p.add_argument("--quick", action="store_true",
                   help=f"{','.join(QUICK_SIZES)} unless --sizes, and 3 warm-ups")
    p.add_argument("--warmup", type=int, help="warm-up calls of each side (default 5; 3 with --quick)")
    p.add_argument("--iters", type=int, default=MIN_ITERS, help=f"timed rounds, at least {MIN_ITERS}")
    p.add_argument("--budget-s", type=float, help="wall-clock seconds for the whole run: layers not started by then "
                   "are recorded as skipped, and a layer still running is stopped (its finished sizes are kept)")
    p.add_argument("--build-file", type=Path, default=REPO / "targets" / "BUILD")
    p.add_argument("--bundles-dir", type=Path, default=REPO / "bundles_out")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--static-shapes", action="store_true",
                   help="torch.compile specialises on every size instead of recompiling with dynamic shapes")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # one layer's process: its JSON description
    p.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.iters < MIN_ITERS:
        p.error(f"--iters {args.iters}: at least {MIN_ITERS} timed runs give a median and spread")
    if args.warmup is None:
        args.warmup = 3 if args.quick else 5
    if args.warmup < 1:
        p.error(f"--warmup {args.warmup}: at least one (the first calls compile Triton kernels and load CUDA ops)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.worker:
            return worker(json.loads(args.worker), args.sizes, args.warmup, args.iters, args.rows, args.static_shapes)
        layers = select(suite(args.build_file, args.bundles_dir), args.only)
        plan = cases(args.sizes, args.quick)
    except UsageError as e:
        print(f"layer_speed: {e}", file=sys.stderr)
        return 2
    date = datetime.date.today().isoformat()
    sizes = [case_label(c) for c in plan]
    if args.dry_run:
        print(f"layer_speed plan: {len(layers)} layers x {len(plan)} sizes, {args.warmup} warm-ups, {args.iters} "
              f"rounds; transformers {json.dumps(HF_SETTINGS)}; results "
              f"{os.path.relpath(result_path(args.out_dir, date))}")
        for la in layers:
            built = "built" if Path(la["bundle"]).exists() else f"NOT BUILT (./pants package {la['target']})"
            variant = f" variant {json.dumps(la['variant'])}" if la["variant"] else ""
            print(f"  {la['target']}: {la['symbol']} ({la['model']}){variant}, {os.path.relpath(la['bundle'])} "
                  f"{built}")
        print("  sizes: " + ", ".join(sizes))
        return 0
    missing = [la for la in layers if not Path(la["bundle"]).exists()]
    if missing:
        print(f"layer_speed: {missing[0]['bundle']} does not exist ({len(missing)} of {len(layers)} bundles missing): "
              f"build them first: ./pants package {' '.join(la['target'] for la in missing)}", file=sys.stderr)
        return 2
    versions = _versions()
    if versions["transformers"] is None:
        print("layer_speed: transformers is not installed: it is the reference (pip install transformers)",
              file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("layer_speed: no CUDA GPU (torch.cuda.is_available() is False): the bundles' kernels need one; "
              "--dry-run prints the plan anywhere", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name()
    path = reserve_result(args.out_dir, date)
    result = {"date": date, "gpu": gpu, "driver": _driver(), "cuda": torch.version.cuda, **versions,
              "python": sys.version.split()[0], "peak": peak_of(gpu), "argv": sys.argv[1:] if argv is None else argv,
              "settings": {"warmup": args.warmup, "iters": args.iters, "transformers": HF_SETTINGS,
                           "transformers_decode_cache": "DynamicCache filled with the bundle's context, cropped back "
                                                        "after each step (each step pays its torch.cat)",
                           "bundle": "invocation_example(small=False, ...)['forward'], eager (with the input copy); "
                                     "decode also CUDA-graphed (_bundle_cuda_graph)",
                           "ratio": "transformers median / bundle median",
                           "torch_compile_shapes": "static (one kernel per size)" if args.static_shapes
                           else "torch's default (dynamic from the second size)"},
              "layers": []}
    _write(path, result)
    deadline = time.monotonic() + args.budget_s if args.budget_s else None
    for la in layers:
        entry = dict(la, bundle=os.path.relpath(la["bundle"], REPO), rows=[],
                     bundle_sha256=hashlib.sha256(Path(la["bundle"]).read_bytes()).hexdigest())
        result["layers"].append(entry)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            entry["status"] = "skipped: --budget-s spent"
            _write(path, result)
            continue
        with tempfile.TemporaryDirectory() as d:
            rows = Path(d) / "rows.jsonl"
            rows.touch()
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(la), "--rows", str(rows),
                   "--warmup", str(args.warmup), "--iters", str(args.iters), "--sizes", ",".join(sizes)] + (
                ["--static-shapes"] if args.static_shapes else [])
            print(f"layer_speed: {la['target']} ({la['symbol']}, {la['model']}): {', '.join(sizes)}", flush=True)
            t0 = time.perf_counter()
            try:
                rc = subprocess.run(cmd, cwd=REPO, timeout=left).returncode
                entry["status"] = "ok" if rc == 0 else f"worker exited {rc} (its output is above)"
            except subprocess.TimeoutExpired:
                entry["status"] = "stopped: --budget-s spent"
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            entry["rows"] = [json.loads(line) for line in rows.read_text().splitlines() if line.strip()]
        _write(path, result)
    print(f"layer_speed: saved {os.path.relpath(path)}")
    ok = all(la.get("status") == "ok" and all(r["status"] in ("ok", "no reference") for r in la["rows"])
             and len(la["rows"]) == len(plan) for la in result["layers"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
