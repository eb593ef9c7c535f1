"""Parity of a decoder-layer bundle with transformers' layer of the same architecture, on a GPU.

    python tools/parity.py bundles_out/Qwen3DecoderLayer.py --config models/Qwen--Qwen3-30B-A3B/config.json \
        [--case prefill:32] [--case decode:2x64] [--json out.json]

Runs where torch, triton, ninja and transformers are installed, never vLLM. For each case:
1. the bundle's `invocation_example(workload=..., tokens=..., batch=..., context=...)` builds the layer, with
   random weights, and its KV cache (decode: a random context of `context` tokens per sequence);
2. the norm weights are randomised (the example fills them with 1), the same weights are loaded into
   transformers' decoder layer through the mapping vLLM's loader uses (MAPPING below), in bf16 and in float32;
3. the bundle's forward (through the example's `forward`), transformers-bf16 and the float32 reference run on
   the same input; decode reads the context K/V back from the bundle's paged cache into a transformers cache.
vLLM's layers return (hidden_states, residual) with the last residual add deferred: the output is their sum.

Reported per case: the relative L2 error and the max abs error of the bundle and of transformers-bf16 against
the float32 reference. Pass: the bundle's error <= 2x transformers-bf16's and < 2e-2. MoE: tokens whose top-k
expert set differs from the float32 reference's (a bf16 near-tie) are counted and left out of the judged error.
One broken control per case (the gate/up halves swapped in the reference's weights) must fail the same check.

A bundle whose architecture transformers lacks: one line, `no reference`, exit 0 with the row recorded.
A weight that cannot be mapped: exit 2 naming the parameter on each side.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import re
import sys
import time
import traceback
from pathlib import Path

TOL_RATIO = 2.0
TOL_ABS = 2e-2

# vLLM's merged parameters and the transformers parameters they hold, in order (vLLM's stacked_params_mapping
# in the models' load_weights; MoE experts as FusedMoE.make_expert_params_mapping lays them out). A name is a
# suffix of the parameter name; `{e}` is an expert index. Every architecture of the suite uses these; an
# architecture that needs more adds a row.
MERGED = [
    ("self_attn.qkv_proj.weight", ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"]),
    ("self_attn.qkv_proj.bias", ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]),
    ("mlp.gate_up_proj.weight", ["mlp.gate_proj.weight", "mlp.up_proj.weight"]),
    ("mlp.shared_expert.gate_up_proj.weight", ["mlp.shared_expert.gate_proj.weight", "mlp.shared_expert.up_proj.weight"]),
]
# vLLM's fused expert tensors, [E, 2I, H] (gate then up) and [E, H, I] (down), under the MoE block's `experts`
# (0.26.0's FusedMoE keeps them one level down, in `routed_experts`); transformers' fused or per-expert names.
EXPERT_TENSOR = re.compile(r"^(?P<base>(?:.*\.)?experts)\.(?:[\w.]*\.)?(?P<which>w13|w2)_weight$")
EXPERTS = {
    "w13": {"fused": "gate_up_proj", "split": ["{e}.gate_proj.weight", "{e}.up_proj.weight"]},
    "w2": {"fused": "down_proj", "split": ["{e}.down_proj.weight"]},
}
# vLLM parameters with no transformers counterpart (the attention's scalar quantisation scales).
NO_COUNTERPART = re.compile(r"(^|\.)_?(k|v|q|prob)_scale$|(^|\.)_(k|v|q|prob)_scale_float$")
GATE_UP = ("gate_proj", "up_proj", "gate_up_proj", "w13_weight")


class MappingError(Exception):
    pass


def _split_sizes(names: list[str], hf_shapes: dict[str, tuple], total: int) -> list[int]:
    sizes = [hf_shapes[n][0] for n in names]
    if sum(sizes) != total:
        raise MappingError(f"vLLM's merged parameter has {total} rows, transformers' {', '.join(names)} "
                           f"have {sizes} (sum {sum(sizes)})")
    return sizes


def map_weights(vllm_state: dict, hf_shapes: dict[str, tuple], control: bool = False) -> dict:
    """transformers' state dict (name -> tensor) from vLLM's, for one decoder layer. `hf_shapes` names every
    transformers parameter and its shape. control=True swaps the gate and up halves (a deliberately wrong
    mapping). Raises MappingError naming the parameter on each side that has no counterpart."""
    out: dict = {}
    used: set = set()
    for vname, t in vllm_state.items():
        if NO_COUNTERPART.search(vname):
            used.add(vname)
            continue
        merged = next(((m, parts) for m, parts in MERGED if vname == m or vname.endswith("." + m)), None)
        expert = EXPERT_TENSOR.match(vname)
        if vname in hf_shapes and merged is None and expert is None:
            out[vname] = t
            used.add(vname)
            continue
        if merged is not None:
            m, parts = merged
            prefix = vname[: len(vname) - len(m)]
            names = [prefix + p for p in parts]
            if not all(n in hf_shapes for n in names):
                missing = [n for n in names if n not in hf_shapes]
                raise MappingError(f"vLLM parameter {vname} has no transformers counterpart {missing}")
            chunks = list(t.split(_split_sizes(names, hf_shapes, t.shape[0]), dim=0))
            if control and len(chunks) == 2 and any(g in vname for g in GATE_UP):
                chunks = chunks[::-1]
            out.update(zip(names, chunks))
            used.add(vname)
            continue
        if expert is not None:
            spec = EXPERTS[expert["which"]]
            E = t.shape[0]
            fused = expert["base"] + "." + spec["fused"]
            if fused in hf_shapes:
                w = t
                if control and expert["which"] == "w13":
                    w = w.roll(w.shape[1] // 2, dims=1)  # gate and up halves swapped
                if tuple(hf_shapes[fused]) == (E, w.shape[2], w.shape[1]) and w.shape[1] != w.shape[2]:
                    w = w.transpose(1, 2)
                elif tuple(hf_shapes[fused]) != tuple(w.shape):
                    raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} does not fit transformers' "
                                       f"{fused} {tuple(hf_shapes[fused])}")
                out[fused] = w.contiguous()
            else:
                names = [expert["base"] + "." + spec["split"][0].format(e=0)]
                if names[0] not in hf_shapes:
                    raise MappingError(f"vLLM parameter {vname} has no transformers counterpart "
                                       f"({fused} or {names[0]})")
                for e in range(E):
                    names = [expert["base"] + "." + n.format(e=e) for n in spec["split"]]
                    chunks = list(t[e].split(_split_sizes(names, hf_shapes, t.shape[1]), dim=0))
                    if control and len(chunks) == 2:
                        chunks = chunks[::-1]
                    out.update(zip(names, chunks))
            used.add(vname)
            continue
        raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} has no transformers counterpart")
    missing = sorted(set(hf_shapes) - set(out))
    if missing:
        raise MappingError(f"transformers parameter {missing[0]} {tuple(hf_shapes[missing[0]])} gets no vLLM "
                           f"weight ({len(missing)} in all); vLLM has {sorted(vllm_state)[:8]}")
    for n, t in out.items():
        if tuple(t.shape) != tuple(hf_shapes[n]):
            raise MappingError(f"transformers parameter {n} {tuple(hf_shapes[n])} gets a vLLM weight of shape "
                               f"{tuple(t.shape)}")
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def hf_classes(model_type: str, symbol: str):
    """(model_type, decoder layer class, rotary embedding class or None): transformers' layer of the same name
    as the vLLM symbol (a `LlamaDecoderLayer` is llama's, whatever config sizes it), else the only decoder layer
    of the config's model_type; None when transformers has neither."""
    stem = symbol[: -len("DecoderLayer")] if symbol.endswith("DecoderLayer") else symbol
    for mt in dict.fromkeys([_snake(stem), model_type]):
        try:
            mod = importlib.import_module(f"transformers.models.{mt}.modeling_{mt}")
        except ImportError:
            continue
        layers = [n for n in dir(mod) if n.endswith("DecoderLayer") and isinstance(getattr(mod, n), type)]
        name = symbol if symbol in layers else (layers[0] if len(layers) == 1 and mt == model_type else None)
        if name is None:
            continue
        ropes = [n for n in dir(mod) if n.endswith("RotaryEmbedding") and isinstance(getattr(mod, n), type)]
        return mt, getattr(mod, name), (getattr(mod, ropes[0]) if ropes else None)
    return None


def hf_config(cfg: dict, model_type: str | None = None):
    """transformers' config of `model_type` (default: the config's own) holding the config's fields."""
    from transformers import AutoConfig

    fields = dict(cfg)
    model_type = model_type or fields["model_type"]
    fields.pop("model_type", None)
    for k in ("architectures", "transformers_version", "torch_dtype", "dtype"):
        fields.pop(k, None)
    config = AutoConfig.for_model(model_type, **fields)
    config._attn_implementation = "sdpa"  # eager needs tens of GiB for the scores at long prefill
    return config


def load_bundle(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def symbol_of(mod) -> str:
    m = re.search(r"^# invocation_example: (\w+)", Path(mod.__file__).read_text(encoding="utf-8"), re.M)
    if not m:
        raise SystemExit(f"parity: {mod.__file__}: no invocation_example header (not a bundle?)")
    return m.group(1)


def bundle_config(mod) -> Path | None:
    """The model config the bundle was built from (its `# config:` header; relative to the project root), or None."""
    m = re.search(r"^# config: (\S+)", Path(mod.__file__).read_text(encoding="utf-8"), re.M)
    return Path(m.group(1)) if m and m.group(1) != "(none)" else None


def read_config(path: Path) -> dict:
    """The model's fields (a multimodal config's `text_config`)."""
    cfg = json.loads(Path(path).read_text())
    return cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg


def rel_l2(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def hf_forward(layer, x, positions, rope, cache=None):
    import torch

    pos = positions
    emb = rope(x, pos) if rope is not None else None
    kw = dict(position_ids=pos, position_embeddings=emb, attention_mask=None)
    if cache is not None:
        kw.update(past_key_values=cache, use_cache=True)
    with torch.no_grad():
        out = layer(x, **kw)
    return out[0] if isinstance(out, tuple) else out


def context_cache(ex, dtype, config, layer_idx):
    """transformers' cache holding the bundle's context K/V (the paged cache: K then V in the last dim)."""
    import torch
    from transformers import DynamicCache

    kv = ex["inputs"]["kv_cache"]  # [blocks, H_kv, block_size, 2*Dh] (a view of NHD storage)
    bt = ex["inputs"]["block_table"]
    ctx = ex["sizes"]["context"]
    Dh = kv.shape[-1] // 2
    seqs = []
    for b in range(bt.shape[0]):
        blocks = kv[bt[b].long()]  # [nb, H_kv, bs, 2Dh]
        seqs.append(blocks.permute(1, 0, 2, 3).reshape(kv.shape[1], -1, 2 * Dh)[:, :ctx])
    both = torch.stack(seqs).to(dtype)  # [B, H_kv, ctx, 2Dh]
    cache = DynamicCache(config=config)
    cache.update(both[..., :Dh].contiguous(), both[..., Dh:].contiguous(), layer_idx)
    return cache


def hf_shapes(hf_cls, config, layer_idx: int) -> dict:
    """Every parameter of transformers' layer and its shape (built on meta: nothing allocated)."""
    import torch

    with torch.device("meta"):
        return {n: tuple(p.shape) for n, p in hf_cls(config, layer_idx).named_parameters()}


def hf_layer(hf_cls, config, layer_idx: int, state: dict, dtype):
    """transformers' layer in eval mode holding `state` (map_weights' output) in `dtype`. Built on meta and given
    the mapped tensors (assign): where the dtype is the bundle's, it shares their storage (no second copy of an MoE
    layer's experts)."""
    import torch

    with torch.device("meta"):
        hf = hf_cls(config, layer_idx)
    missing, unexpected = hf.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    if missing or unexpected:
        raise MappingError(f"transformers' layer did not take the mapped weights: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    left = [n for n, b in hf.named_buffers() if b.is_meta]
    if left:
        raise MappingError(f"transformers' {hf_cls.__name__} has buffers the mapping does not set: {left[:4]}")
    return hf.eval()


def _router_topk(module, x, k):
    """Hook the router of `module` (a linear named mlp.gate) during one call of x; the top-k expert sets."""
    got = []
    gate = None
    for n, m in module.named_modules():
        if n.endswith("mlp.gate"):
            gate = m
    if gate is None:  # a dense layer (the config may still be an MoE model's)
        return x(), None
    h = gate.register_forward_hook(lambda m, i, o: got.append(o[0] if isinstance(o, tuple) else o))
    try:
        result = x()
    finally:
        h.remove()
    logits = got[-1].float()
    return result, logits.topk(k, dim=-1).indices.sort(dim=-1).values


def run_case(mod, symbol: str, cfg: dict, workload: str, tokens: int, batch: int, context: int) -> dict:
    import torch

    row = {"case": f"{workload}:{batch}x{tokens}" + (f"+{context}" if workload == "decode" else ""),
           "workload": workload, "batch": batch, "tokens": tokens, "context": context}
    ex = mod.invocation_example(small=True, workload=workload, tokens=tokens, batch=batch, context=context)
    layer = ex["module"]
    gen = torch.Generator(device="cuda").manual_seed(1)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if p.dim() == 1 and "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, device=p.device))
    vllm_state = {n: p.detach() for n, p in layer.named_parameters()}
    found = hf_classes(cfg["model_type"], symbol)
    if found is None:
        return dict(row, status="no reference", reason=f"transformers has no {symbol} and no decoder layer for "
                                                       f"{cfg['model_type']}")
    model_type, hf_cls, rope_cls = found
    config = hf_config(cfg, model_type)
    row["reference"] = f"transformers {model_type}.{hf_cls.__name__}"
    layer_idx = int(ex["prefix"].rsplit(".", 1)[-1])
    shapes = hf_shapes(hf_cls, config, layer_idx)
    hf_state = map_weights(vllm_state, shapes)
    control_state = map_weights(vllm_state, shapes, control=True)
    B, q, ctx = ex["sizes"]["B"], ex["sizes"]["new_tokens"], ex["sizes"]["context"]
    H = ex["inputs"]["hidden_states"].shape[-1]
    x = ex["inputs"]["hidden_states"]  # [B*q, H]
    positions = ex["inputs"]["positions"].view(B, q)
    top_k = int(cfg.get("num_experts_per_tok") or 0)

    def bundle_fwd():
        o, r = ex["forward"](x)
        return (o.float() + (r.float() if r is not None else 0))

    if top_k:
        y_bundle, bundle_sets = _router_topk(layer, bundle_fwd, top_k)
    else:
        y_bundle, bundle_sets = bundle_fwd(), None
    y_bundle = y_bundle.view(B, q, H)

    def hf_run(state, dtype):
        hf = hf_layer(hf_cls, config, layer_idx, state, dtype)
        rope = rope_cls(config).to("cuda") if rope_cls is not None else None
        cache = context_cache(ex, dtype, config, layer_idx) if ctx else None
        xin = x.view(B, q, H).to(dtype)
        call = lambda: hf_forward(hf, xin, positions, rope, cache).float()  # noqa: E731
        y, sets = _router_topk(hf, call, top_k) if top_k else (call(), None)
        del hf
        torch.cuda.empty_cache()
        return y, sets

    y_bf16, _ = hf_run(hf_state, torch.bfloat16)
    y_ref, ref_sets = hf_run(hf_state, torch.float32)
    y_ctl, _ = hf_run(control_state, torch.float32)
    keep = torch.ones(B * q, dtype=torch.bool, device="cuda")
    if top_k and bundle_sets is not None and ref_sets is not None:
        keep = (bundle_sets == ref_sets).all(dim=-1)
        row["routing_differs_tokens"] = int((~keep).sum())
    yb, yh, yr, yc = (t.reshape(B * q, H)[keep] for t in (y_bundle, y_bf16, y_ref, y_ctl))
    row.update(
        bundle_rel_l2=rel_l2(yb, yr), bundle_max_abs=max_abs(yb, yr),
        hf_bf16_rel_l2=rel_l2(yh, yr), hf_bf16_max_abs=max_abs(yh, yr),
        control_rel_l2=rel_l2(yb, yc), judged_tokens=int(keep.sum()), tokens_total=B * q)
    row["ratio"] = row["bundle_rel_l2"] / max(row["hf_bf16_rel_l2"], 1e-12)

    def passes(err):
        return err <= TOL_RATIO * row["hf_bf16_rel_l2"] and err < TOL_ABS

    row["pass"] = bool(passes(row["bundle_rel_l2"]))
    row["control_fails"] = not passes(row["control_rel_l2"])
    row["status"] = "ok" if row["pass"] and row["control_fails"] else "FAIL"
    return row


def parse_case(text: str) -> tuple[str, int, int, int]:
    """prefill:T, prefill:BxT, decode:BxC (one new token after C cached) or decode:BxT+C."""
    m = re.fullmatch(r"(prefill|decode):(?:(\d+)x)?(\d+)(?:\+(\d+))?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"--case {text!r}: write prefill:T, prefill:BxT, decode:BxC or decode:BxT+C")
    kind, b, n, c = m.group(1), int(m.group(2) or 1), int(m.group(3)), m.group(4)
    if kind == "prefill":
        return kind, n, b, 0
    return (kind, n, b, int(c)) if c is not None else (kind, 1, b, n)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--config", type=Path, help="the model's config.json (default: the one the bundle names)")
    p.add_argument("--case", action="append", type=parse_case,
                   help="prefill:T, prefill:BxT, decode:BxC, decode:BxT+C (default: prefill:32, prefill:512, decode:2x64)")
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("parity: no CUDA GPU (torch.cuda.is_available() is False): the bundle's kernels need one", file=sys.stderr)
        return 2
    mod = load_bundle(args.bundle)
    symbol = symbol_of(mod)
    cfg_path = args.config or bundle_config(mod)
    if cfg_path is None:
        print(f"parity: {args.bundle}: built without a model config; pass --config", file=sys.stderr)
        return 2
    cfg = read_config(cfg_path)
    cases = args.case or [parse_case("prefill:32"), parse_case("prefill:512"), parse_case("decode:2x64")]
    import transformers

    rows = []
    for kind, n, b, c in cases:
        t0 = time.perf_counter()
        try:
            row = run_case(mod, symbol, cfg, kind, n, b, c)
        except MappingError as e:
            print(f"parity: {args.bundle.name}: {e}", file=sys.stderr)
            return 2
        except Exception:  # noqa: BLE001 - reported in the row
            row = {"case": f"{kind}:{b}x{n}+{c}", "status": "error", "error": traceback.format_exc()[-3000:]}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        keys = ("status", "bundle_rel_l2", "hf_bf16_rel_l2", "ratio", "control_rel_l2", "routing_differs_tokens")
        print(args.bundle.name, row["case"], {k: (round(row[k], 5) if isinstance(row.get(k), float) else row.get(k))
                                              for k in keys if k in row}, flush=True)
        if row["status"] == "no reference":
            break
    result = {"bundle": str(args.bundle), "symbol": symbol, "config": str(cfg_path),
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "transformers": transformers.__version__, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["status"] in ("ok", "no reference") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
