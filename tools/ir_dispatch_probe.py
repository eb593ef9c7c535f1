"""GPU probe: a bundle's IR ops dispatch to vLLM's CUDA kernels (vllm_c) and RMSNorm's output, plain and with a
residual, equals a float32 reference (bf16/fp16, small and model-sized). python tools/ir_dispatch_probe.py BUNDLE"""
import importlib.util, json, sys, time, torch
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("b", path); m = importlib.util.module_from_spec(spec)
sys.modules["b"] = m; spec.loader.exec_module(m)
res = {"bundle": path, "priority": {k: m.IrOp.registry[k].get_priority() for k in sorted(m.IrOp.registry)}}
t0 = time.perf_counter()
out = m.invocation_example(small=True)
torch.cuda.synchronize()
res["example_s"] = round(time.perf_counter() - t0, 2)
res["cuda_ext_built"] = m._CUDA_EXT_PATH is not None
if path.endswith("RMSNorm.py"):
    layer = out["module"]
    for dtype in (torch.bfloat16, torch.float16):
        for rows in (7, 4096):
            layer = layer.to(dtype)
            h = layer.weight.shape[0]
            x = torch.randn(rows, h, device="cuda", dtype=dtype)
            r = torch.randn(rows, h, device="cuda", dtype=dtype)
            w = layer.weight.float()
            def ref(v):
                v = v.float()
                return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + layer.variance_epsilon) * w
            calls = {"rms_norm": 0, "fused_add_rms_norm": 0}
            originals = {n: getattr(m, "_C_" + n) for n in calls}
            for n, real in originals.items():
                def counted(*a, _n=n, _real=real, **k):
                    calls[_n] += 1
                    return _real(*a, **k)
                setattr(m, "_C_" + n, counted)
            with torch.no_grad():
                y = layer(x.clone())
                y2, r2 = layer(x.clone(), r.clone())
            for n, f in originals.items():
                setattr(m, "_C_" + n, f)
            tol = 2 ** -7 if dtype == torch.bfloat16 else 2 ** -10
            e1 = ((y.float() - ref(x)).abs() / (1 + ref(x).abs())).max().item()
            e2 = ((y2.float() - ref(x.float() + r.float())).abs() / (1 + ref(x.float() + r.float()).abs())).max().item()
            res.setdefault("checks", []).append({"dtype": str(dtype), "rows": rows, "hidden": h, "rel_err": e1,
                                                 "rel_err_residual": e2, "tol": tol, "ok": e1 <= tol and e2 <= 2 * tol,
                                                 "cuda_calls": dict(calls)})
print(json.dumps(res))
