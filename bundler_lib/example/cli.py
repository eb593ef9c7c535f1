"""A6: the bundle's command line, `python <bundle>.py run|bench|check|info`.

Written after `invocation_example()`: `_BUNDLE_INFO` (what the build knew: symbol, model, variant, the ops and
kernels A1 reached) and `_bundle_main()`, called only under `if __name__ == "__main__":` (importing the bundle
still runs nothing). run/bench/check need a CUDA GPU and say so in one line without one; info does not.
`bench --cuda-graph` also times the forward captured in a CUDA graph and replayed (`_bundle_cuda_graph()`, which
benchmarks/layer_speed.py uses too); `bench --profile N` adds where the time goes, kernel by kernel
(`_bundle_profile`). `tune-moe` tunes the fused-MoE kernel for this GPU (moe_tune.py), `tune-attention` the
prefill launch of vLLM's unified attention kernel (attention_tune.py, in bundles that reach it); their helpers come
between `_bundle_main` and the `__main__` guard.
"""

import pprint

from bundler_lib.example import attention_tune, moe_tune

_CLI = '''

_BUNDLE_INFO = {info}


def _bundle_cuda_graph(forward, warmup=3):
    """`forward` (no arguments) captured in a CUDA graph: (the graph, its outputs, which each replay rewrites).

    Warmed up on a side stream first, so Triton's compilation, workspaces and library handles are made outside the
    capture. A decoder layer's forward installs vLLM's module state (config, forward context, a fresh workspace
    manager) on each call: Python attribute writes, no GPU work, so the graph holds only the GPU work (the input copy
    and the layer's kernels, over the example's KV cache and metadata at their fixed addresses; workspace buffers
    allocated during the capture stay in the graph's memory pool). The forward ends with torch.cuda.synchronize(),
    which a capturing stream refuses: it does nothing while the graph is captured."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(1, warmup)):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        synchronize, torch.cuda.synchronize = torch.cuda.synchronize, lambda device=None: None
        try:
            out = forward()
        finally:
            torch.cuda.synchronize = synchronize
    return graph, out


def _bundle_main(argv=None):
    """The bundle's command line: run the example, time it, check it, or describe the bundle."""
    import argparse
    import json
    import re
    import sys

    prog = __file__.rsplit("/", 1)[-1] if "__file__" in globals() else "bundle"
    p = argparse.ArgumentParser(prog=prog, description=f"{{_BUNDLE_INFO['symbol']}} from vLLM as one file: "
                                "run its example, time it, check it, or describe it.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{{run,bench,check,info,tune-moe,tune-attention}}")

    def sizes(sp):
        sp.add_argument("--small", action="store_true", help="the quick sanity size")
        sp.add_argument("--workload", choices=("prefill", "decode"), help="default: the bundle's own")
        sp.add_argument("--tokens", type=int, help="new tokens per sequence")
        sp.add_argument("--batch", type=int, help="sequences")
        sp.add_argument("--context", type=int, help="cached tokens per sequence (decode)")

    sizes(sub.add_parser("run", help="run invocation_example once and print what it built and computed"))
    bench = sub.add_parser("bench", help="time the forward with CUDA events: median, spread, TFLOP/s, GB/s")
    sizes(bench)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--iters", type=int, default=20)
    bench.add_argument("--json", help="also write the result here")
    bench.add_argument("--cuda-graph", action="store_true",
                       help="also time the forward captured in a CUDA graph and replayed (as vLLM runs decode)")
    bench.add_argument("--profile", type=int, metavar="N", default=0,
                       help="also profile N forwards (torch.profiler): where the GPU time goes, kernel by kernel")
    sub.add_parser("check", help="the bundle's self-test: its example at small size, prefill and decode, "
                                 "with the references it carries, and a repeatability check")
    sub.add_parser("info", help="symbol, model, variant, ops and kernels embedded, dependencies, closure size")
    tune = sub.add_parser("tune-moe", help="tune the fused-MoE kernel for this GPU as vLLM's benchmark_moe.py --tune "
                                          "does and write its config file where the bundle loads it")
    tune.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                      default=list(_BUNDLE_MOE_BATCH_SIZES), help="comma-separated M (tokens); default: vLLM's list")
    tune.add_argument("--budget-s", type=float, help="stop each batch size's sweep at its share of this many seconds")
    tune_attn = sub.add_parser("tune-attention", help="time the prefill launch constants of vLLM's unified attention "
                                                      "kernel on this GPU and write the fastest where bundles read them")
    tune_attn.add_argument("--tokens", type=lambda s: [int(x) for x in s.split(",")],
                           default=[512, 4096, 32768], help="comma-separated prefill lengths (one sequence)")
    tune_attn.add_argument("--budget-s", type=float, help="stop each length's sweep at its share of this many seconds")
    args = p.parse_args(argv)

    if args.command == "tune-moe":
        return _bundle_tune_moe(args, prog, globals())
    if args.command == "tune-attention":
        {tune_attention}

    if args.command == "info":
        text = open(__file__, encoding="utf-8").read()
        deps = re.search(r"^# /// script\\n((?:#.*\\n)*?)# ///$", text, re.M)
        blocks = re.findall(r"^# --- Inlined from (\\S+):L(\\d+)-L(\\d+)", text, re.M)
        out = dict(_BUNDLE_INFO)
        out["declared"] = "".join(l[2:] + "\\n" for l in deps.group(1).splitlines()).strip() if deps else None
        out["inlined_blocks"] = len(blocks)
        out["inlined_vllm_lines"] = sum(int(b) - int(a) + 1 for _, a, b in blocks)
        out["inlined_files"] = len({{f for f, _, _ in blocks}})
        print(json.dumps(out, indent=2))
        return 0

    import torch

    if not torch.cuda.is_available():
        print(f"{{prog}} {{args.command}}: no CUDA GPU (torch.cuda.is_available() is False): the bundle's kernels "
              "need one; `info` works anywhere", file=sys.stderr)
        return 2
    kw = {{}}
    if args.command in ("run", "bench"):
        kw = {{k: getattr(args, k) for k in ("workload", "tokens", "batch", "context") if getattr(args, k) is not None}}
        kw["small"] = args.small
    if args.command == "run":
        import time
        t0 = time.perf_counter()
        ex = invocation_example(**kw)
        torch.cuda.synchronize()
        shown = {{k: (tuple(v.shape), str(v.dtype)) if hasattr(v, "shape") else type(v).__name__
                  for k, v in (ex.get("outputs") or {{}}).items()}}
        print(json.dumps({{"symbol": _BUNDLE_INFO["symbol"], "workload": ex.get("workload"), "sizes": ex.get("sizes"),
                          "outputs": shown, "seconds": round(time.perf_counter() - t0, 3)}}, indent=2, default=str))
        return 0
    if args.command == "check":
        failed = 0
        for wl in ("prefill", "decode"):
            try:
                ex = invocation_example(small=True, workload=wl)
                fw = ex.get("forward")
                if fw is not None:
                    a, b = fw(), fw()
                    a = a[0] if isinstance(a, tuple) else a
                    b = b[0] if isinstance(b, tuple) else b
                    if not torch.equal(a, b):
                        raise AssertionError("two forwards on the same input differ")
                print(f"check {{wl}}: ok {{ex.get('sizes')}}" + (f" max_abs_err={{ex['max_abs_err']}}"
                                                                if ex.get("max_abs_err") else ""))
            except NotImplementedError as e:
                print(f"check {{wl}}: not supported: {{e}}")
            except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
                failed += 1
                print(f"check {{wl}}: FAILED: {{type(e).__name__}}: {{e}}")
        return 1 if failed else 0
    ex = invocation_example(**kw)
    fw = ex.get("forward")
    if fw is None:
        print(f"{{prog}} bench: this example has no forward to time", file=sys.stderr)
        return 2
    cost = ex.get("cost") or {{}}

    def timed(fn):
        for _ in range(max(1, args.warmup)):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(max(1, args.iters)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        times.sort()
        med = times[len(times) // 2]
        got = {{"iters": len(times), "median_ms": round(med, 4), "min_ms": round(times[0], 4),
               "max_ms": round(times[-1], 4), "p10_ms": round(times[len(times) // 10], 4),
               "p90_ms": round(times[(len(times) * 9) // 10], 4)}}
        if cost:
            got["tflops"] = round(cost["flops"] / (med * 1e-3) / 1e12, 3)
            got["gbps"] = round(cost["bytes"] / (med * 1e-3) / 1e9, 1)
        return got

    res = {{"symbol": _BUNDLE_INFO["symbol"], "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "workload": ex.get("workload"), "sizes": ex.get("sizes"), **timed(fw)}}
    if cost:
        res["cost_estimate"] = cost
    failed = False
    if args.cuda_graph:
        def tensors(o):
            return [t for t in (o if isinstance(o, tuple) else (o,)) if hasattr(t, "shape")]

        try:
            graph, out = _bundle_cuda_graph(fw, args.warmup)
            res["cuda_graph"] = timed(graph.replay)
            graphed = [t.clone() for t in tensors(out)]
            res["cuda_graph"]["max_abs_diff_vs_eager"] = max(
                float((g.float() - e.float()).abs().max()) for g, e in zip(graphed, tensors(fw())))
            res["cuda_graph_speedup"] = round(res["median_ms"] / res["cuda_graph"]["median_ms"], 3)
        except Exception as e:  # noqa: BLE001 - reported beside the eager result
            res["cuda_graph"] = {{"error": f"{{type(e).__name__}}: {{e}}"}}
            failed = True
    if args.profile > 0:
        res["profile"] = _bundle_profile(fw, args.profile)
    print(json.dumps(res, indent=2, default=str))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2, default=str)
    return 1 if failed else 0


def _bundle_profile(forward, iters, top=15):
    """Where `forward`'s time goes: torch.profiler over `iters` calls after one warm-up, the GPU kernels (CPU
    operators where there is no GPU) by their total time per call, the largest `top` and the rest summed."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    gpu = torch.cuda.is_available()
    forward()
    if gpu:
        torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            forward()
        if gpu:
            torch.cuda.synchronize()
    field = "self_device_time_total" if gpu else "self_cpu_time_total"
    rows = sorted(((e.key, e.count, getattr(e, field)) for e in prof.key_averages() if getattr(e, field) > 0),
                  key=lambda r: -r[2])
    total = sum(us for _, _, us in rows) or 1.0
    rest = rows[top:]
    if rest:
        rows = rows[:top] + [(f"({{len(rest)}} others)", sum(r[1] for r in rest), sum(r[2] for r in rest))]
    return {{"device": "cuda" if gpu else "cpu", "forwards": iters, "ms_per_forward": round(total / iters / 1e3, 4),
            "kernels": [{{"name": k[:160], "calls_per_forward": round(n / iters, 2),
                         "ms_per_forward": round(us / iters / 1e3, 4), "share": round(us / total, 4)}}
                        for k, n, us in rows]}}
'''

_MAIN = '''

if __name__ == "__main__":
    raise SystemExit(_bundle_main())
'''


def source(graph: dict, record: dict) -> str:
    """The command-line section for a bundle whose A6 record is `record`."""
    info = {
        "symbol": record["symbol"],
        "template": record["template"],
        "model": record.get("model_name"),
        "workload": record["workload"]["kind"],
        "variant": graph.get("variant") or {},
        "cuda_ops": sorted(o["op"] for o in graph.get("cuda_ops") or []),
        "triton_kernels": sorted(k["name"] for k in graph.get("triton_kernels") or [] if k.get("kind") == "kernel"),
        "python_custom_ops": sorted(o["op"] for o in graph.get("python_custom_ops") or []),
    }
    reaches = attention_tune.reaches(graph)
    tune_attention = "return _bundle_tune_attention(args, prog, globals())" if reaches else (
        'print(f"{prog} tune-attention: this bundle has no vLLM unified attention kernel: build one whose symbol "\n'
        '              "reaches the TRITON_ATTN backend", file=sys.stderr)\n        return 2')
    return (_CLI.format(info=pprint.pformat(info, width=100, sort_dicts=True), tune_attention=tune_attention)
            + moe_tune.source() + (attention_tune.source() if reaches else "") + _MAIN)
