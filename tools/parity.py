"""Parity of a decoder-layer bundle with transformers' layer of the same architecture, on a GPU.

    python tools/parity.py bundles_out/Qwen3DecoderLayer.py --config models/Qwen--Qwen3-30B-A3B/config.json \
        [--case prefill:32] [--case decode:2x64] [--json out.json]

Runs where torch, triton, ninja and transformers are installed, never vLLM. For each case:
1. the bundle's `invocation_example(workload=..., tokens=..., batch=..., context=...)` builds the layer, with
   random weights, and its KV cache (decode: a random context of `context` tokens per sequence);
2. the norm weights are randomised (the example fills them with 1), the same weights are loaded into
   transformers' decoder layer through the mapping vLLM's loader uses (parity_mapping.py), in bf16 and in float32;
3. the bundle's forward (through the example's `forward`), transformers-bf16 and the float32 reference run on
   the same input; decode reads the context K/V back from the bundle's paged cache into a transformers cache.
vLLM's layers return (hidden_states, residual): a layer that reads its `residual` argument defers the last residual
add to the next layer's norm (the output is their sum); one that overwrites it unread (Cohere's parallel block, the
post-norm layers) returns the whole stream in hidden_states (defers_residual).

Reported per case: the relative L2 error and the max abs error of the bundle and of transformers-bf16 against
the float32 reference. Pass: the bundle's error <= 2x transformers-bf16's and < 2e-2. MoE: tokens whose top-k
expert set differs from the float32 reference's (a bf16 near-tie) are counted and left out of the judged error.
One broken control per case (the gate/up halves swapped in the reference's weights) must fail the same check.

Without a GPU, `--cpu` runs transformers' side alone (cpu_reference): the bundle's layer built on CPU
(tools/cpu_build_check.py), its weights mapped and transformers' layer run in float32 and bf16, so a mapping error,
a `no reference` or a non-finite reference shows before a GPU run.

A bundle whose architecture transformers lacks: one line, `no reference`, exit 0 with the row recorded.
A weight that cannot be mapped: exit 2 naming the parameter on each side.

This file: the bundle's side, the cases, metrics, verdicts and the CLI; parity_reference.py: transformers' layer and
the inputs its model gives it; parity_mapping.py: vLLM's weights mapped onto it.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import sys
import time
import traceback
from pathlib import Path

from parity_mapping import (MappingError, NoReference, into_loaded_image, loaded_scales, loader_rules, map_weights,
                            w13_interleaved)
from parity_reference import (bidirectional, context_cache, cross_context, extra_inputs, hf_classes, hf_config,
                              hf_forward, hf_layer, mapping_args, per_layer_assumed, raise_if_norm_groups_differ,
                              raise_if_part_of_layer, read_config, reference_class, rope_built, states_both_ways)
from parity_reference import hf_call, hf_inputs, hf_shapes  # noqa: F401 - benchmarks/layer_speed.py's parity.<name>

TOL_RATIO = 2.0
TOL_ABS = 2e-2


def load_bundle(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def _source(bundle) -> str:
    """The text of a bundle: a loaded module or its path."""
    return Path(getattr(bundle, "__file__", bundle)).read_text(encoding="utf-8")


def symbol_of(bundle) -> str:
    m = re.search(r"^# invocation_example: (\w+)", _source(bundle), re.M)
    if not m:
        raise SystemExit(f"parity: {getattr(bundle, '__file__', bundle)}: no invocation_example header (not a bundle?)")
    return m.group(1)


def bundle_config(bundle) -> Path | None:
    """The model config the bundle (a module or its path) was built from (its `# config:` header; relative to the
    project root), or None."""
    m = re.search(r"^# config: (\S+)", _source(bundle), re.M)
    return Path(m.group(1)) if m and m.group(1) != "(none)" else None


def example_assumed(bundle) -> dict:
    """The config fields the bundle's example assumed where the config states none (its `derived` table: field ->
    [value, rule]; printed as `invocation_example: assumed config.<field>=...`), as field -> value."""
    import ast

    m = re.search(r"^    derived = (\{.*\})$", _source(bundle), re.M)
    return {k: v[0] for k, v in ast.literal_eval(m.group(1)).items()} if m else {}


def example_inputs(bundle, rows: int) -> dict:
    """The forward inputs beyond the hidden states and positions that the bundle's example makes (its `extra_inputs`
    table, by A6's forward_inputs rules), made as it makes them for `rows` tokens: ("tensor", width) [rows, width]
    random, ("ids", n) [rows] ids in [0, n), another kind its value; ("hidden", _) is the hidden states, left out."""
    import ast

    import torch

    m = re.search(r"for n, \(k, v\) in (\{.*?\})\.items\(\) if k != \"hidden\"", _source(bundle))
    gen = torch.Generator().manual_seed(3)
    out = {}
    for name, (kind, value) in (ast.literal_eval(m.group(1)) if m else {}).items():
        if kind == "tensor":
            out[name] = torch.randn(rows, value, generator=gen)
        elif kind == "ids":
            out[name] = torch.randint(0, value, (rows,), generator=gen)
        elif kind != "hidden":
            out[name] = value
    return out


def model_file_of(mod, symbol: str) -> str | None:
    """The vLLM model file (a name in vllm/model_executor/models/) the bundle inlined `symbol`'s class from."""
    m = re.search(rf"^# --- Inlined from vllm/model_executor/models/(\w+\.py):\S* .*\n(?:(?!# --- )[#@].*\n)*class {symbol}\b",
                  _source(mod), re.M)
    return m.group(1) if m else None


def derived_parameters(source: str) -> list[str]:
    """The parameters a bundle's code creates only after loading (process_weights_after_loading's replace_parameter
    of a name nothing registers: vLLM's MLA attention's W_UV and W_UK_T, copies of kv_b_proj's halves), which no
    checkpoint tensor loads; a parameter replaced by a processed one of its own name (the experts' w13_weight,
    registered by create_weights) is a loaded one."""
    made = set(re.findall(r'replace_parameter\(\s*\w+,\s*"(\w+)"', source))
    return sorted(n for n in made if not re.search(rf'register_parameter\(\s*"{n}"|\.{n}\s*=\s*(?:torch\.nn\.|nn\.)?'
                                                    rf'Parameter\(', source))


def defers_residual(forward_source: str) -> bool:
    """Whether a vLLM layer's forward (its source) leaves the last residual add to the next layer: it takes a
    `residual` argument and reads it before any statement of its body assigns it (Llama's `if residual is None`,
    a fused add-norm). Cohere's `residual = hidden_states` first discards it and returns the full stream."""
    import ast
    import textwrap

    fn = ast.parse(textwrap.dedent(forward_source)).body[0]
    if "residual" not in [a.arg for a in fn.args.args + fn.args.kwonlyargs]:
        return False
    for stmt in fn.body:
        names = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == "residual"]
        if any(isinstance(n.ctx, ast.Load) for n in names):
            return True
        if any(isinstance(n.ctx, ast.Store) for n in names):
            return False
    return False


def modules_unapplied(layer, forward_source: str) -> list[str]:
    """The child modules of vLLM's `layer` its forward (its source) names only in branches a test over `self` alone
    (its attributes and constants, no call) rules out for this layer: built and never applied (AXK1's
    post_mlp_layernorm, applied `if self.is_layer_sparse`, is in every layer; a dense one never applies it). A branch
    whose test reads anything else (an input, a call) counts as reachable."""
    import ast
    import textwrap

    children = {n for n, _ in layer.named_children()}
    named: dict = {}  # child -> whether a reachable statement names it

    def value(test):
        if any(isinstance(n, (ast.Call, ast.Lambda, ast.NamedExpr)) or isinstance(n, ast.Name) and n.id != "self"
               for n in ast.walk(test)):
            return None
        try:
            return bool(eval(compile(ast.Expression(test), "<test>", "eval"), {"__builtins__": {}}, {"self": layer}))
        except Exception:  # noqa: BLE001 - an attribute the layer lacks, an unorderable comparison: not decided
            return None

    def visit(node, live: bool):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr in children:
            named[node.attr] = named.get(node.attr, False) or live
        if isinstance(node, (ast.If, ast.IfExp)):
            taken = value(node.test)
            visit(node.test, live)
            for branch, reached in ((node.body, taken is not False), (node.orelse, taken is not True)):
                for child in branch if isinstance(branch, list) else [branch]:
                    visit(child, live and reached)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, live)

    visit(ast.parse(textwrap.dedent(forward_source)).body[0], True)
    return sorted(n for n, reached in named.items() if not reached)


def rel_l2(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def worst_token_share(a, b) -> float:
    """The share of the squared error (rows of a against b) in its worst row: near 1 where one token's error is the
    whole (one token sent through other experts), about 1/rows where the error is spread (precision)."""
    err = (a.float() - b.float()).pow(2).sum(-1)
    return float(err.max() / err.sum().clamp_min(1e-30))


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


def _router_logits(out):
    """A router's logits from its output: the tensor, or in its tuple the floating tensor of two or more dims with the
    most columns, the first of those (vLLM's gate returns (logits, bias); transformers' GraniteMoe router returns
    (top-k indices, top-k weights, logits): the weights have k columns, the logits one per expert)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    floats = [t for t in out if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() >= 2]
    return max(floats, key=lambda t: t.shape[-1])


def _router_topk(module, x, k):
    """Hook the router of `module` (the MoE block's `gate` or `router`: vLLM's and transformers' names, e.g.
    Mixtral's block_sparse_moe.gate, PhiMoE's mlp.router) during one call of x; the top-k expert sets."""
    got = []
    gate = None
    for n, m in module.named_modules():
        if n.rsplit(".", 1)[-1] in ("gate", "router") and "." in n:
            gate = m
    if gate is None:  # a dense layer (the config may still be an MoE model's)
        return x(), None
    h = gate.register_forward_hook(lambda m, i, o: got.append(_router_logits(o)))
    try:
        result = x()
    finally:
        h.remove()
    logits = got[-1].float()
    return result, logits.topk(k, dim=-1).indices.sort(dim=-1).values


def run_case(mod, symbol: str, cfg: dict, workload: str, tokens: int, batch: int, context: int) -> dict:
    """One case's row: the bundle's layer, transformers-bf16 and the control against the float32 reference."""
    import torch

    row = {"case": f"{workload}:{batch}x{tokens}" + (f"+{context}" if workload == "decode" else ""),
           "workload": workload, "batch": batch, "tokens": tokens, "context": context}
    try:
        ex = mod.invocation_example(small=True, workload=workload, tokens=tokens, batch=batch, context=context)
    except NotImplementedError as e:  # the bundle refuses this workload (e.g. an MLA layer's decode-only example)
        return dict(row, status="not applicable", reason=str(e))
    layer = ex["module"]
    if not isinstance(layer, torch.nn.Module):  # A6's generic example: no invocation template for this symbol
        return dict(row, status="no reference", reason=f"the bundle's invocation_example builds no {symbol} (it "
                    f"returns {getattr(layer, '__name__', type(layer).__name__)} unbuilt): no layer to compare")
    ref, no_ref = _layer_reference(mod, symbol, cfg, layer, ex["prefix"], row)
    if no_ref:
        return no_ref
    top_k = int(cfg.get("num_experts_per_tok") or 0)
    y_bundle, bundle_sets = _bundle_output(ex, layer, top_k)
    bf16 = _hf_output(ex, layer, ref, ref["state"], torch.bfloat16, top_k)
    fp32 = _hf_output(ex, layer, ref, ref["state"], torch.float32, top_k)
    y_ctl, _ = _hf_output(ex, layer, ref, ref["control"], torch.float32, top_k)
    return _judged(row, ex, top_k, (y_bundle, bundle_sets), bf16, fp32, y_ctl)


def _layer_reference(mod, symbol: str, cfg: dict, layer, prefix: str, row: dict):
    """`layer`'s norms randomised, then transformers' side of a case for it (_reference): (ref, None), or (None, the
    row's `no reference` verdict) where transformers has neither `symbol` nor a decoder layer of the model type."""
    _randomise_norms(layer)
    run = layer_run(layer)
    if run:
        return None, dict(row, status="no reference", reason=f"{symbol} runs a list of decoder layers ({run}): "
                                                             "transformers has a class for one layer, none for a run")
    raise_if_part_of_layer(cfg["model_type"], symbol, type(layer).forward)
    found = hf_classes(cfg["model_type"], symbol)
    if found is None:
        return None, dict(row, status="no reference", reason=f"transformers has no {symbol} and no decoder layer for "
                                                             f"{cfg['model_type']}")
    return _reference(mod, symbol, cfg, found, layer, int(prefix.rsplit(".", 1)[-1]), row), None


def layer_run(layer) -> str | None:
    """Where `layer` holds a list of decoder layers (a YOCO half, Gemma4's Self/CrossDecoderLayers: an nn.ModuleList
    child of `...Layer` modules), that list as `name: N x Class`; else None."""
    import torch

    for name, child in layer.named_children():
        kinds = {type(m).__name__ for m in child} if isinstance(child, torch.nn.ModuleList) else set()
        if len(kinds) == 1 and next(iter(kinds)).endswith("Layer"):
            return f"{name}: {len(child)} x {kinds.pop()}"
    return None


def _randomise_norms(layer) -> None:
    """The norm weights randomised: the example fills them with 1, which would hide a norm mapped wrong."""
    import torch

    gen = torch.Generator(device=next((p.device for p in layer.parameters()), "cpu")).manual_seed(1)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if p.dim() == 1 and "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, device=p.device))


def _reference(mod, symbol: str, cfg: dict, found: tuple, layer, bundle_idx: int, row: dict) -> dict:
    """transformers' side of a case: its layer class, rotary class, config and layer index, and the mapped weights
    (`state`, and the broken `control`). A bias transformers' layer lacks is zeroed in vLLM's layer (the same
    computation); a parameter vLLM's loader stores transformed is first put in its transform's image
    (into_loaded_image); a parameter of a module vLLM's forward never applies in this layer (modules_unapplied, the
    rules' `unapplied`) that transformers has no counterpart of is left out. Records the reference, its index where it
    is not the bundle's, the layer type it was given where the config holds none that fits, the zeroed biases and the
    unapplied modules in `row`. Where vLLM's layer states that it attends both ways (states_both_ways), so does the
    reference (`both_ways`; the row's attends_both_ways)."""
    import inspect

    import torch

    model_type, hf_cls, rope_cls = found
    per_layer = per_layer_assumed(cfg, example_assumed(mod))
    config = hf_config(cfg, model_type, per_layer)
    row["reference"] = f"transformers {model_type}.{hf_cls.__name__}"
    rules = dict(loader_rules(model_file_of(mod, symbol), model_type), w13_interleaved=w13_interleaved(layer),
                 unapplied=modules_unapplied(layer, inspect.getsource(type(layer).forward)),
                 derived=derived_parameters(_source(mod)))
    rules["loaded_scale"] = loaded_scales(rules["scaled"], cfg)
    if rules["unapplied"]:
        row["unapplied_modules"] = rules["unapplied"]
    vllm_state = {n: p.detach() for n, p in layer.named_parameters()}
    into_loaded_image(vllm_state, rules)
    types = list(getattr(config, "layer_types", None) or [])
    try:
        hf_cls, rope_cls, layer_idx, meta = reference_class(hf_cls, rope_cls, config, bundle_idx, vllm_state, rules)
    except NoReference:
        raise
    except MappingError as e:
        raise _unreferenced(e, symbol, model_file_of(mod, symbol), hf_cls, per_layer) from e
    row["reference"] = f"transformers {model_type}.{hf_cls.__name__}"
    if rope_cls is not None and not rope_built(rope_cls, config):
        rope_cls = None
    if types and types != config.layer_types:  # reference_class gave the index a type the config holds nowhere
        row["reference_layer_type"] = config.layer_types[layer_idx]
    if layer_idx != bundle_idx:
        row["reference_layer_idx"] = layer_idx
    raise_if_norm_groups_differ(layer, meta)
    shapes = {n: tuple(p.shape) for n, p in meta.named_parameters()}
    kw = mapping_args(meta, config, rules)
    zeroed: list = []
    state = map_weights(vllm_state, shapes, zeroed=zeroed, **kw)
    control = map_weights(vllm_state, shapes, control=True, zeroed=[], **kw)
    if zeroed:
        with torch.no_grad():
            for n in zeroed:
                name, rows = (n, slice(None)) if isinstance(n, str) else (n[0], slice(n[1], n[2]))
                vllm_state[name][rows].zero_()
        row["zeroed_biases"] = zeroed
    if states_both_ways(layer):
        row["attends_both_ways"] = True
    return dict(cls=hf_cls, rope_cls=rope_cls, config=config, layer_idx=layer_idx, state=state, control=control,
                keys_permuted=bool(rules["rotary_permuted"]), both_ways=states_both_ways(layer))


def cpu_reference(path: Path, cfg: dict) -> dict:
    """--cpu: the harness's transformers side alone, without a GPU: the bundle's layer built on CPU as
    cpu_build_check builds it (no kernel runs), its norms randomised, its weights mapped onto transformers' layer
    (_reference), and that layer run in float32 and bf16 on random tokens. The row records the reference, the mapping's
    records, whether the float32 output is finite (FAIL where not: a weight put outside what transformers takes,
    Mamba's A before into_loaded_image) and transformers-bf16's error against it over the tokens whose top-k experts
    are the same in both (routing_differs_tokens: the others). A mapping error or `no reference`
    shows as it would on the GPU. Inputs beyond the hidden states and positions (Gemma 4's per_layer_input) are made
    by the example's table (example_inputs), the example stopping before it makes them."""
    import torch

    import cpu_build_check

    cpu_build_check._as_h100()
    mod, layer, _attn, _assumed, prefix = cpu_build_check.build(str(path))
    symbol = symbol_of(path)
    row = {"case": "cpu"}
    ref, no_ref = _layer_reference(mod, symbol, cfg, layer, prefix, row)
    if no_ref:
        return no_ref
    del ref["control"]  # the GPU run's; freed before transformers' layers are built (a MoE's experts: GiBs)
    B, q = 1, 8
    x = torch.randn(B, q, ref["config"].hidden_size, generator=torch.Generator().manual_seed(2))
    positions = torch.arange(q).view(B, q)
    extra = extra_inputs(ref["cls"].forward, type(layer).forward, example_inputs(path, B * q), B, q)
    buffers = {n: b.detach() for n, b in layer.named_buffers()}
    top_k = int(cfg.get("num_experts_per_tok") or 0)
    out, sets = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        hf = hf_layer(ref["cls"], ref["config"], ref["layer_idx"], ref["state"], dtype, buffers, ref["both_ways"])
        rope = ref["rope_cls"](ref["config"]) if ref["rope_cls"] is not None else None
        run = functools.partial(hf_forward, hf, ref["config"], x.to(dtype), positions, rope, None, ref["layer_idx"],
                                extra)
        y, sets[dtype] = _router_topk(hf, run, top_k) if top_k else (run(), None)
        out[dtype] = y.float().reshape(B * q, -1)
    keep = torch.ones(B * q, dtype=torch.bool)
    if sets[torch.float32] is not None:  # a bf16 near-tie sending a token to other experts, as _judged leaves out
        keep = ~(sets[torch.bfloat16] != sets[torch.float32]).any(dim=-1)
        row["routing_differs_tokens"] = int((~keep).sum())
    finite = bool(torch.isfinite(out[torch.float32]).all())
    return dict(row, status="ok" if finite else "FAIL", hf_fp32_finite=finite,
                hf_bf16_rel_l2=rel_l2(out[torch.bfloat16][keep], out[torch.float32][keep]))


def _cpu_main(bundle: Path, cfg_path: Path, json_out: Path | None) -> int:
    """--cpu's CLI: one row, printed and written like the GPU run's; exit 2 on a mapping error."""
    try:
        row = cpu_reference(bundle, read_config(cfg_path))
    except NoReference as e:
        row = {"case": "cpu", "status": "no reference", "reason": str(e)}
    except MappingError as e:
        print(f"parity: {bundle.name}: {e}", file=sys.stderr)
        return 2
    print(bundle.name, json.dumps(row), flush=True)
    if json_out:
        json_out.write_text(json.dumps({"bundle": str(bundle), "symbol": symbol_of(bundle), "config": str(cfg_path),
                                        "device": "cpu", "rows": [row]}, indent=2) + "\n")
    return 0 if row["status"] in ("ok", "no reference") else 1


def _unreferenced(error: MappingError, symbol: str, model_file: str | None, hf_cls, per_layer: dict) -> MappingError:
    """The error where no transformers layer of the config takes vLLM's parameters: NoReference where vLLM's class is
    a variant of the model transformers lacks (its model file extends the name of transformers' modeling module:
    llama_eagle3.py's EAGLE-3 draft layer, its hidden_norm and its qkv_proj over [embeddings, hidden states]), or
    where the per-layer fields are the example's assumption (per_layer: under every layer 'full_attention'
    transformers builds no Lfm2Moe short-conv layer); else `error`."""
    module = hf_cls.__module__.rpartition(".modeling_")[2]
    if model_file and Path(model_file).stem.startswith(module + "_"):
        return NoReference(f"vLLM's {symbol} is {model_file}'s, a variant of transformers' {module} layer that "
                           f"transformers does not have ({error})")
    if per_layer:
        return NoReference(f"the config states no {', '.join(per_layer)} (the bundle's example assumed "
                           f"{'; '.join(f'{k}={v[:2]}...' for k, v in per_layer.items())}): under them transformers "
                           f"builds no layer vLLM's parameters map onto ({error})")
    return error


def _bundle_output(ex, layer, top_k: int):
    """(the bundle's output [B*q, H] in float32, its top-k expert sets or None). A layer that defers its last residual
    add (defers_residual) returns hidden_states + residual."""
    import inspect

    deferred = defers_residual(inspect.getsource(type(layer).forward))

    def forward():
        o, r = ex["forward"](ex["inputs"]["hidden_states"])
        return o.float() + r.float() if deferred and r is not None else o.float()

    return _router_topk(layer, forward, top_k) if top_k else (forward(), None)


def _hf_output(ex, layer, ref: dict, state: dict, dtype, top_k: int):
    """(transformers' output [B, q, H] in float32 holding `state` in `dtype`, its top-k expert sets or None), on the
    bundle's input and, for decode, the bundle's context copied into its cache."""
    import torch

    B, q, ctx = ex["sizes"]["B"], ex["sizes"]["new_tokens"], ex["sizes"]["context"]
    x, positions = ex["inputs"]["hidden_states"], ex["inputs"]["positions"].view(B, q)
    config, idx = ref["config"], ref["layer_idx"]
    extra = extra_inputs(ref["cls"].forward, type(layer).forward, ex["inputs"], B, q)
    buffers = {n: b.detach() for n, b in layer.named_buffers()}
    hf = hf_layer(ref["cls"], config, idx, state, dtype, buffers, ref.get("both_ways", False))
    if ctx and bidirectional(hf):
        raise NoReference(f"transformers' {ref['cls'].__name__} attends both ways (an encoder's layer, or vLLM's "
                          "states none of its attentions causal), so it has no decode over a cached context to compare")
    rope = ref["rope_cls"](config).to("cuda") if ref["rope_cls"] is not None else None
    xin = x.view(*x.shape[:-2], B, q, x.shape[-1]).to(dtype)  # [T, H] or a stack [S, T, H] (hidden_stack)

    def probe(cache, position=None):  # one token through transformers' layer into `cache` (at the decode position)
        pos = positions[:1, :1] if position is None else torch.full_like(positions[:1, :1], position)
        return hf_forward(hf, config, xin[..., :1, :1, :], pos, rope, cache, idx, extra)

    cache = context_cache(ex, dtype, config, idx, probe, ref["keys_permuted"], layer) if ctx else None
    if ctx and ex["sizes"].get("encoder_tokens"):  # a cross-attention layer's decode: the encoder's K/V cached
        cache, encoder = cross_context(ex, dtype, config, idx, cache, ref["cls"].forward)
        extra = {**extra, **encoder}
    run = functools.partial(hf_forward, hf, config, xin, positions, rope, cache, idx, extra)
    y, sets = _router_topk(hf, run, top_k) if top_k else (run(), None)
    del hf, probe, run
    torch.cuda.empty_cache()
    return y.float(), sets


def _judged(row: dict, ex, top_k: int, bundle, bf16, ref, y_ctl) -> dict:
    """`row` with the errors of the bundle's and transformers-bf16's outputs ((output, top-k sets) each) and the
    control's against the float32 reference's, over the tokens whose top-k expert set is the reference's on both
    bf16 sides (a near-tie one of them breaks the other way sends the token through other experts: Llama 4's top-1
    router), and the verdict. routing_differs_tokens counts the tokens left out, routing_differs each side's."""
    import torch

    B, q = ex["sizes"]["B"], ex["sizes"]["new_tokens"]
    H = ex["inputs"]["hidden_states"].shape[-1]
    (y_bundle, bundle_sets), (y_bf16, bf16_sets), (y_ref, ref_sets) = bundle, bf16, ref
    keep = torch.ones(B * q, dtype=torch.bool, device=y_bundle.device)
    if top_k and ref_sets is not None:
        differs = {side: (sets != ref_sets).any(dim=-1) for side, sets in (("bundle", bundle_sets),
                                                                            ("hf_bf16", bf16_sets)) if sets is not None}
        for side_differs in differs.values():
            keep &= ~side_differs
        row["routing_differs_tokens"] = int((~keep).sum())
        row["routing_differs"] = {side: int(d.sum()) for side, d in differs.items()}
    if not keep.any():
        raise MappingError(f"every token's top-{top_k} experts differ between a bf16 router (the bundle's or "
                           "transformers') and the float32 reference's: no token to compare (a router mapped wrong, or "
                           "its logits not where _router_logits looks)")
    # each output's rows per token ([B*q, H], or a stack of them: Gemma 3n's AltUp predictions [S, B*q, H])
    yb, yh, yr, yc = (t.reshape(-1, B * q, H)[:, keep].reshape(-1, H) for t in (y_bundle, y_bf16, y_ref, y_ctl))
    row.update(
        bundle_rel_l2=rel_l2(yb, yr), bundle_max_abs=max_abs(yb, yr),
        hf_bf16_rel_l2=rel_l2(yh, yr), hf_bf16_max_abs=max_abs(yh, yr),
        control_rel_l2=rel_l2(yb, yc), judged_tokens=int(keep.sum()), tokens_total=B * q,
        bundle_worst_token_share=worst_token_share(yb, yr), hf_bf16_worst_token_share=worst_token_share(yh, yr))
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
    p.add_argument("--cpu", action="store_true", help="without a GPU: transformers' side alone (cpu_reference)")
    args = p.parse_args(argv)
    symbol = symbol_of(args.bundle)
    cfg_path = args.config or bundle_config(args.bundle)
    if cfg_path is None:  # the zoo builds a bundle without a config where transformers has none of its architectures
        row = {"case": "-", "status": "no reference", "reason": "built without a model config (transformers knows "
                                                                "none of its architectures); --config compares one"}
        print(f"parity: {args.bundle.name}: no reference: {row['reason']}")
        if args.json:
            args.json.write_text(json.dumps({"bundle": str(args.bundle), "symbol": symbol, "config": None,
                                             "rows": [row]}, indent=2) + "\n")
        return 0
    if args.cpu:
        return _cpu_main(args.bundle, cfg_path, args.json)
    import torch

    if not torch.cuda.is_available():
        print("parity: no CUDA GPU (torch.cuda.is_available() is False): the bundle's kernels need one", file=sys.stderr)
        return 2
    mod = load_bundle(args.bundle)
    cfg = read_config(cfg_path)
    cases = args.case or [parse_case("prefill:32"), parse_case("prefill:512"), parse_case("decode:2x64")]
    import transformers

    rows = []
    for kind, n, b, c in cases:
        t0 = time.perf_counter()
        try:
            row = run_case(mod, symbol, cfg, kind, n, b, c)
        except NoReference as e:
            row = {"case": f"{kind}:{b}x{n}+{c}", "status": "no reference", "reason": str(e)}
            print(f"parity: {args.bundle.name}: no reference: {e}")
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
    return 0 if all(r["status"] in ("ok", "no reference", "not applicable") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
