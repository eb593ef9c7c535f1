"""Prefill attention alone, on one GPU: vLLM's Triton attention kernels (from function bundles) against torch SDPA.

    python benchmarks/attention_speed.py --unified bundles_out/attention_kernels/unified_attention.py \
        --prefix-prefill bundles_out/attention_kernels/prefix_prefill.py \
        --triton-prefill bundles_out/attention_kernels/triton_prefill_attention.py [--tokens 512,4096,32768] \
        [--iters 20] [--out results.json]

One sequence of T new tokens, no cached context, causal, bf16 (`--dtype`), Qwen3-8B's attention shape (32 query heads, 8 KV
heads, head size 128; `--heads`, `--kv-heads`, `--head-size`). The kernels (each bundle is optional; build them with
`./pants package targets/attention_kernels::`):
- `unified_attention` (triton_unified_attention.py; the TRITON_ATTN backend's): Q against the paged KV cache,
  blocks of 16 tokens ([blocks, 16, kv_heads, head]) holding the sequence's K and V, as after vLLM's cache write;
- prefix_prefill's `context_attention_fwd` (the ROCM_ATTN backend's prefill): the new tokens' own K and V, an
  empty paged cache (no context), as ROCM_ATTN's chunked_prefill_paged_decode calls it;
- triton_prefill_attention's `context_attention_fwd` (ROCM_ATTN's encoder attention, here causal): K and V only;
- torch SDPA (`scaled_dot_product_attention(is_causal=True, enable_gqa=True)`) on [1, heads, T, head];
- `--unified-launch BLOCK_M:TILE:WARPS:STAGES,...`: unified_attention again, once per tuple, its prefill (2D) launch
  given those constants in place of vLLM's (BLOCK_M 16, TILE 32, Triton's default warps and stages) through the
  bundle's own tunable launch (`tune-attention`'s, bundler_lib/example/attention_tune.py): how far launch tuning
  alone closes the gap to SDPA. The plain `unified_attention` row is vLLM's launch (VLLM_BUNDLE_ATTENTION_TUNED=0:
  no tuned file in the bundle cache applies).
The cache write is not timed. Each kernel: warm-ups, then `--iters` (at least 10) calls timed with CUDA events, the
kernels taking turns in each round: median, min, max (ms), achieved TFLOP/s (4 * T^2 / 2 * head * heads for the causal
half), SDPA's median over the kernel's (above 1: the kernel is faster), and the largest absolute difference of the
kernel's output from SDPA's. Writes one JSON (`--out`) with the GPU, driver, CUDA, torch and triton versions.
Without a CUDA GPU it exits 2 with one line (`--help` works anywhere).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

DEVICE = "cuda"


def _fail(msg: str):
    print(f"attention_speed: {msg}", file=sys.stderr)
    sys.exit(2)


def _args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--unified", type=Path, help="bundle of vLLM's unified_attention (triton_unified_attention.py)")
    p.add_argument("--prefix-prefill", type=Path, help="bundle of prefix_prefill.py's context_attention_fwd")
    p.add_argument("--triton-prefill", type=Path, help="bundle of triton_prefill_attention.py's context_attention_fwd")
    p.add_argument("--unified-launch", default="", help="BLOCK_M:TILE:WARPS:STAGES tuples, comma-separated")
    p.add_argument("--tokens", default="512,4096,32768", help="prefill lengths, comma-separated")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-size", type=int, default=128)
    p.add_argument("--block-size", type=int, default=16, help="unified_attention's KV cache block (tokens)")
    p.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("attention-speed.json"))
    a = p.parse_args(argv)
    try:
        a.tokens = [int(t) for t in a.tokens.split(",")]
    except ValueError:
        _fail(f"--tokens {a.tokens!r}: expected comma-separated integers such as 512,4096,32768")
    try:
        launches = [tuple(int(x) for x in t.split(":")) for t in a.unified_launch.split(",") if t]
        assert all(len(t) == 4 for t in launches)
    except (ValueError, AssertionError):
        _fail(f"--unified-launch {a.unified_launch!r}: expected BLOCK_M:TILE:WARPS:STAGES tuples such as 64:64:4:2")
    a.unified_launch = launches
    if a.unified_launch and a.unified is None:
        _fail("--unified-launch needs --unified (the unified_attention bundle)")
    if a.iters < 10:
        _fail(f"--iters {a.iters}: at least 10 timed runs are needed (the default is 20)")
    if a.heads % a.kv_heads:
        _fail(f"--heads {a.heads} is not a multiple of --kv-heads {a.kv_heads}: give a grouped-query shape")
    for name in ("unified", "prefix_prefill", "triton_prefill"):
        path = getattr(a, name)
        if path is not None and not path.is_file():
            _fail(f"--{name.replace('_', '-')} {path}: no such file (build it: ./pants package "
                    "targets/attention_kernels::)")
    return a


def _load(path: Path, symbol: str):
    """`symbol` of the bundle at `path`, imported as a module of its own."""
    name = f"_attention_bundle_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod   # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return getattr(mod, symbol)


def _versions() -> dict:
    out = {}
    for dist in ("torch", "triton"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    try:
        res = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        out["driver"] = res.stdout.split("\n")[0].strip() or None
    except (OSError, subprocess.TimeoutExpired):
        out["driver"] = None
    return out


def _calls(a, fns: dict, T: int):
    """{kernel: (call, output)} for one sequence of T tokens, and SDPA's reference output [T, heads, head]."""
    import torch

    H, KV, D, bs = a.heads, a.kv_heads, a.head_size, a.block_size
    dev, dt = DEVICE, getattr(torch, a.dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(T, H, D, device=dev, dtype=dt, generator=g)
    k = torch.randn(T, KV, D, device=dev, dtype=dt, generator=g)
    v = torch.randn(T, KV, D, device=dev, dtype=dt, generator=g)
    scale = D ** -0.5
    i32 = dict(device=dev, dtype=torch.int32)
    qs, ks, vs = (x.transpose(0, 1)[None] for x in (q, k, v))

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True,
                                                                scale=scale)

    calls = {"sdpa": (sdpa, None)}
    if "unified_attention" in fns:
        blocks = -(-T // bs)
        k_cache = torch.zeros(blocks * bs, KV, D, device=dev, dtype=dt)
        v_cache = torch.zeros_like(k_cache)
        k_cache[:T], v_cache[:T] = k, v
        k_cache, v_cache = k_cache.view(blocks, bs, KV, D), v_cache.view(blocks, bs, KV, D)
        table = torch.arange(blocks, **i32)[None]
        cu, seq_u = torch.tensor([0, T], **i32), torch.tensor([T], **i32)
        out_u = torch.empty_like(q)
        unified = fns["unified_attention"]
        proxy = unified.__globals__["kernel_unified_attention"]
        if not hasattr(proxy, "forced"):
            _fail(f"{a.unified}: its kernel has no tunable launch (built before tune-attention): rebuild it with "
                  "./pants package targets/attention_kernels::")
        def call_unified(launch=None, out=out_u):
            proxy.forced = None if launch is None else dict(zip(("BLOCK_M", "TILE_SIZE", "num_warps", "num_stages"),
                                                                launch))
            return unified(q=q, k=k_cache, v=v_cache, out=out, cu_seqlens_q=cu, max_seqlen_q=T, seqused_k=seq_u,
                           max_seqlen_k=T, softmax_scale=scale, causal=True, window_size=(-1, -1), block_table=table,
                           softcap=0, q_descale=None, k_descale=None, v_descale=None)
        calls["unified_attention"] = (call_unified, out_u)
        for launch in a.unified_launch:
            out_l = torch.empty_like(q)
            calls["unified_attention[{}:{}:{}:{}]".format(*launch)] = (
                lambda launch=launch, out_l=out_l: call_unified(launch, out_l), out_l)
    if "prefix_prefill" in fns:
        x = 16 // q.element_size()   # vLLM's paged layout: K [blocks, kv_heads, head/x, block, x]
        k_paged = torch.zeros(1, KV, D // x, bs, x, device=dev, dtype=dt)
        v_paged = torch.zeros(1, KV, D, bs, device=dev, dtype=dt)
        b_loc = torch.zeros(1, 1, **i32)
        start_p, seq_p = torch.tensor([0, T], **i32), torch.tensor([T], **i32)
        one = torch.tensor(1.0, device=dev)
        out_p = torch.empty_like(q)
        prefix = fns["prefix_prefill"]
        calls["prefix_prefill"] = (lambda: prefix(q, k, v, out_p, "auto", k_paged, v_paged, b_loc, start_p, seq_p, T, T,
                                              one, one, sm_scale=scale, skip_decode=True), out_p)
    if "triton_prefill" in fns:
        out_t = torch.empty_like(q)
        start_t, seq_t = torch.tensor([0], **i32), torch.tensor([T], **i32)
        prefill = fns["triton_prefill"]
        calls["triton_prefill"] = (lambda: prefill(q, k, v, out_t, start_t, seq_t, T, is_causal=True, softmax_scale=scale),
                                   out_t)
    return calls, sdpa()[0].transpose(0, 1)


def main(argv=None) -> int:
    a = _args(argv)
    os.environ["VLLM_BUNDLE_ATTENTION_TUNED"] = "0"
    import torch

    if not torch.cuda.is_available():
        _fail("no CUDA GPU (torch.cuda.is_available() is False): run it on a GPU machine")
    from layer_speed import time_side_by_side  # noqa: PLC0415 - the suite's timing loop, alternating round by round
    symbols = {"unified_attention": (a.unified, "unified_attention"),
               "prefix_prefill": (a.prefix_prefill, "context_attention_fwd"),
               "triton_prefill": (a.triton_prefill, "context_attention_fwd")}
    fns = {n: _load(path, sym) for n, (path, sym) in symbols.items() if path is not None}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "gpu": torch.cuda.get_device_name(), "cuda": torch.version.cuda, **_versions(),
              "shape": {"heads": a.heads, "kv_heads": a.kv_heads, "head_size": a.head_size, "dtype": a.dtype,
                        "causal": True, "sequences": 1, "block_size": a.block_size},
              "bundles": {n: str(p) for n, (p, _) in symbols.items() if p is not None},
              "unified_launch": ["BLOCK_M:TILE:WARPS:STAGES", *(":".join(map(str, t)) for t in a.unified_launch)],
              "iters": a.iters, "warmup": a.warmup, "rows": []}
    for T in a.tokens:
        calls, ref = _calls(a, fns, T)
        errs = {}
        for n, (fn, out) in calls.items():
            fn()
            if out is not None:
                errs[n] = (out.float() - ref.float()).abs().max().item()
        times = time_side_by_side({n: fn for n, (fn, _) in calls.items()}, a.warmup, a.iters)
        flops = 4 * T * T / 2 * a.head_size * a.heads
        sdpa_ms = statistics.median(times["sdpa"])
        row = {"T": T}
        for n, ts in times.items():
            med = statistics.median(ts)
            row[n] = {"median_ms": round(med, 4), "min_ms": round(min(ts), 4), "max_ms": round(max(ts), 4),
                      "tflops": round(flops / med / 1e9, 1)}
            if n != "sdpa":
                row[n]["sdpa_over_kernel"] = round(sdpa_ms / med, 3)
                row[n]["max_abs_diff_vs_sdpa"] = errs[n]
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        del calls, ref
        torch.cuda.empty_cache()
        a.out.write_text(json.dumps(result, indent=1) + "\n")   # rewritten per size: a run cut short keeps its rows
    return 0


if __name__ == "__main__":
    sys.exit(main())
