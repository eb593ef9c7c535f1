"""A6: the decoder-layer example on several GPUs (a variant with tp or ep > 1), run under
`torchrun --nproc-per-node N <bundle>.py run`.

Each rank (one process per GPU, `LOCAL_RANK` its GPU):
- initialises torch.distributed (NCCL) and vLLM's parallel state as `initialize_model_parallel` lays it out on one
  node with dp, pp and context parallelism 1: the world group, the tp group over every rank, the ep group over the
  same ranks (expert parallelism reuses the tp ranks), and one-rank dcp/pcp/pp/dp groups; each a `GroupCoordinator`
  of the bundle, whose device communicator the variant binds to vLLM's `DeviceCommunicatorBase` (NCCL through
  torch.distributed);
- loads the weights as vLLM's loader does: the full (unsharded) tensors are made from the same seed on every rank
  and passed to each parameter's `weight_loader` (merged q/k/v and gate/up by shard id, experts one by one by global
  id: the loader keeps the rank's shard or skips an expert placed elsewhere);
- runs the forward, and on rank 0 compares its output with the tp=1 bundle's for the same weights, inputs and KV
  cache (every rank holds the whole output after the layer's all-reduce; the ranks' outputs are gathered and must
  agree too).

The helpers below are plain functions, unit-tested here and written into the bundle verbatim (`source`); the
example's body calls them at three places (`hooks`). A bundle for one GPU gets none of this text.
"""

from __future__ import annotations

import inspect
import textwrap

from bundler_lib.example import state
from bundler_lib.variant import world_size

GROUP_COORDINATOR = (state.GROUP_FILE, "GroupCoordinator")
# bf16 tolerance of the comparison with the tp=1 bundle: relative L2 error of the output (the collectives add the
# partial sums in another order; a MoE token whose top-k experts tie in bf16 may route differently)
REL_L2_TOLERANCE = 2e-2
SEED = 0


def _bundle_parallel_env(environ, world, variant_text, bundle):
    """(rank, local rank) of this process; one line naming the remedy where it is not one of `world` torchrun
    processes."""
    got = environ.get("WORLD_SIZE")
    if got is None or int(got) != world:
        where = "WORLD_SIZE is not set" if got is None else f"WORLD_SIZE is {got}"
        raise RuntimeError(f"invocation_example: this bundle is built for {variant_text} ({world} GPUs, one process "
                           f"each) and {where}: run it as `torchrun --nproc-per-node {world} {bundle} run`")
    return int(environ["RANK"]), int(environ.get("LOCAL_RANK", environ["RANK"]))


def _bundle_group_layout(world, tp, moe):
    """{group: its ranks lists}, as vLLM's initialize_model_parallel lays out one node with dp, pp, pcp and dcp 1:
    tp over every rank, ep (MoE models only) over the same ranks, the others one rank each."""
    every = [list(range(world))]
    alone = [[r] for r in range(world)]
    assert tp == world, "one node, dp and pp 1: the tp group is the world"
    layout = {"_TP": every, "_DCP": alone, "_PCP": alone, "_PP": alone, "_DP": alone}
    if moe:
        layout["_EP"] = every
    return layout


def _bundle_load_plan(prefix, module):
    """How vLLM's loader fills the parameters of one module (its own, not its children's): [(parameter name,
    parameter, full shape, loads)], loads a list of (index into the full tensor, loader args, loader kwargs), or
    None where the parameter is not sharded (copied whole)."""
    own = list(module.named_parameters(recurse=False))
    out = []
    if hasattr(module, "global_num_experts") and hasattr(module, "w13_weight"):
        E = module.global_num_experts
        tp = module.moe_config.moe_parallel_config.tp_size
        for pname, p in own:
            name = f"{prefix}.{pname}" if prefix else pname
            if pname == "w13_weight":
                I = p.shape[1] // 2 * tp
                loads = [((e, slice(i * I, (i + 1) * I)), (), {"weight_name": name, "shard_id": s, "expert_id": e})
                         for e in range(E) for i, s in enumerate(("w1", "w3"))]
                out.append((name, p, (E, 2 * I, p.shape[2]), loads))
            elif pname == "w2_weight":
                I = p.shape[2] * tp
                loads = [((e,), (), {"weight_name": name, "shard_id": "w2", "expert_id": e}) for e in range(E)]
                out.append((name, p, (E, p.shape[1], I), loads))
            else:
                raise NotImplementedError(f"invocation_example: no loading plan for the experts' {name}")
        return out
    for pname, p in own:
        name = f"{prefix}.{pname}" if prefix else pname
        if getattr(p, "weight_loader", None) is None or not hasattr(module, "output_size"):
            out.append((name, p, tuple(p.shape), None))
            continue
        rows = module.output_size
        full = (rows,) + ((module.input_size,) if p.dim() == 2 else ())
        if hasattr(module, "total_num_kv_heads"):   # merged q, k, v (QKVParallelLinear)
            kv = module.total_num_kv_heads
            sizes = [("q", module.total_num_heads * module.head_size), ("k", kv * module.head_size),
                     ("v", kv * getattr(module, "v_head_size", module.head_size))]
        elif getattr(module, "output_sizes", None):   # merged gate/up (MergedColumnParallelLinear)
            sizes = list(enumerate(module.output_sizes))
        else:
            sizes = [(None, rows)]
        loads, start = [], 0
        for shard, n in sizes:
            loads.append(((slice(start, start + n),), () if shard is None else (shard,), {}))
            start += n
        if start != rows:
            raise NotImplementedError(f"invocation_example: {name}: shards of {start} rows for {rows}")
        out.append((name, p, full, loads))
    return out


def _bundle_full_tensor(torch, name, shape, device, dtype, seed):
    """The full (unsharded) tensor of a parameter, the same on every rank: norm weights 1, biases 0, others
    N(0, 1/fan_in), from a generator seeded by the seed and the name."""
    import zlib

    if name.endswith("bias"):
        return torch.zeros(shape, device=device, dtype=dtype)
    if len(shape) == 1:
        return torch.ones(shape, device=device, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    # drawn in the layer's dtype: a MoE layer's full experts (Qwen3-Coder-480B's: 15 GB in bf16) twice over in
    # float32 would not fit beside the layer
    return torch.empty(shape, device=device, dtype=dtype).normal_(0.0, shape[-1] ** -0.5, generator=g)


def _bundle_load_full_weights(torch, layer, device, dtype, seed):
    """Fill every parameter of `layer` from the full tensors through vLLM's weight loaders (what each rank keeps
    is the loader's choice)."""
    for mname, m in layer.named_modules():
        for name, p, shape, loads in _bundle_load_plan(mname, m):
            full = _bundle_full_tensor(torch, name, shape, device, dtype, seed)
            if loads is None:
                p.data.copy_(full)
            for index, args, kwargs in loads or ():
                p.weight_loader(p, full[index], *args, **kwargs)


def _bundle_kv_heads(rank, tp, total):
    """The KV heads rank `rank` of `tp` holds of `total` (vLLM's QKVParallelLinear: split, or replicated when tp
    exceeds them)."""
    if tp <= total:
        n = total // tp
        return list(range(rank * n, (rank + 1) * n))
    return [rank // (tp // total)]


def _bundle_fill_kv(kv_cache, heads, seed):
    """The KV cache (blocks, kv heads, block size, 2 x head dim) from one generator per global head: the same
    context for tp=1 and every rank."""
    import torch

    for local, h in enumerate(heads):
        g = torch.Generator(device=kv_cache.device).manual_seed(seed * 1_000_003 + h)
        view = kv_cache[:, local]
        view.copy_(torch.randn(view.shape, generator=g, device=kv_cache.device, dtype=torch.float32))


def _bundle_find_reference(here, symbol, environ):
    """The tp=1 bundle of the same symbol: $BUNDLE_REFERENCE, else `<symbol>.py` in a parent directory."""
    import os

    if environ.get("BUNDLE_REFERENCE"):
        return environ["BUNDLE_REFERENCE"]
    d = os.path.dirname(os.path.abspath(here))
    while True:
        parent = os.path.dirname(d)
        candidate = os.path.join(parent, symbol + ".py")
        if os.path.isfile(candidate):
            return candidate
        if parent == d:
            raise RuntimeError(f"invocation_example: no tp=1 bundle {symbol}.py above {here}: build it (the suite's "
                               "target) or set BUNDLE_REFERENCE to its path")
        d = parent


def _bundle_compare(torch, got, want, outputs, tolerance):
    """{relative L2 error, largest difference between ranks}; AssertionError where out of tolerance."""
    rel = float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-30))
    ranks = max(float((o.float() - got.float()).abs().max()) for o in outputs)
    if rel > tolerance or ranks != 0.0:
        raise AssertionError(f"parallel check: relative L2 error {rel:.3g} against the tp=1 bundle (tolerance "
                             f"{tolerance}), largest difference between ranks {ranks}")
    return {"rel_l2_vs_tp1": rel, "max_diff_between_ranks": ranks}


HELPERS = (_bundle_parallel_env, _bundle_group_layout, _bundle_load_plan, _bundle_full_tensor,
           _bundle_load_full_weights, _bundle_kv_heads, _bundle_fill_kv, _bundle_find_reference, _bundle_compare)

# The glue, in invocation_example before its device check (the torchrun check first, so that it holds anywhere):
# this process's GPU, torch.distributed and the groups (made once per process, under the example's config:
# DeviceCommunicatorBase reads it).
_SETUP = '''\
import os

_rank, _local_rank = _bundle_parallel_env(os.environ, {world}, {variant_text!r}, __file__)
if device.type == "cuda":
    torch.cuda.set_device(_local_rank)
    device = torch.device("cuda", _local_rank)
    gen = torch.Generator(device=device).manual_seed(0)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl", device_id=device)
if device.type == "cuda" and G.get("_bundle_parallel_groups") is None:
    _coordinator = G[{coordinator!r}]
    _saved_config = _get("vllm_config")
    _set("vllm_config", vllm_config)
    try:
        G[N["groups"]["_WORLD"]] = _coordinator([list(range({world}))], _local_rank, "nccl", False,
                                                group_name="world")
        for _g, _ranks in _bundle_group_layout({world}, {tp}, bool(moe)).items():
            if N["groups"].get(_g):
                G[N["groups"][_g]] = _coordinator(_ranks, _local_rank, "nccl", True, group_name=_g[1:].lower())
    finally:
        _set("vllm_config", _saved_config)
    G["_bundle_parallel_groups"] = True
'''

# In the weight step, after the random fill: the full weights through vLLM's loaders.
_WEIGHTS = "_bundle_load_full_weights(torch, layer, device, dtype, {seed})\n"

# Before the example returns: the same forward by the tp=1 bundle, compared on rank 0.
_CHECK = '''\
import importlib.util
import json

_x = torch.randn(T, H, generator=torch.Generator(device=device).manual_seed({seed} + 1), device=device,
                 dtype=torch.float32).to(dtype)
if attn is not None:
    _bundle_fill_kv(attn.kv_cache, _bundle_kv_heads(_rank, {tp}, dims["H_kv"]), {seed})
_out = forward(_x)[0]
_outputs = [torch.empty_like(_out) for _ in range({world})]
torch.distributed.all_gather(_outputs, _out.contiguous())
if _rank == 0:
    _path = _bundle_find_reference(__file__, {symbol!r}, os.environ)
    _spec = importlib.util.spec_from_file_location("_bundle_tp1_reference", _path)
    _ref = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _ref   # its dataclasses look their module up there
    _spec.loader.exec_module(_ref)
    _info = _ref._BUNDLE_INFO
    if _info.get("variant", {{}}).get("tp", 1) != 1 or _info.get("model") != _BUNDLE_INFO["model"]:
        raise RuntimeError(f"invocation_example: {{_path}} is not the tp=1 bundle of {{_BUNDLE_INFO['model']}}: set "
                           "BUNDLE_REFERENCE to it")
    _ex = _ref.invocation_example(workload=workload, tokens=q_len, batch=B, context=ctx)
    with torch.no_grad():
        _bundle_load_full_weights(torch, _ex["module"], device, dtype, {seed})
    if _ex["inputs"].get("kv_cache") is not None:
        _bundle_fill_kv(_ex["inputs"]["kv_cache"], list(range(dims["H_kv"])), {seed})
    _want = _ex["forward"](_x)[0]
    print(json.dumps({{"parallel_check": {{"world": {world}, "variant": {variant_text!r}, "reference": _path,
                      **_bundle_compare(torch, _out, _want, _outputs, {tolerance})}}}}))
torch.distributed.barrier()
'''


def hooks(graph: dict, symbol: str) -> dict[str, str]:
    """The three hooks of the decoder-layer example (`parallel_setup`, `parallel_weights`, `parallel_check`),
    indented for their places; empty for a bundle of one GPU."""
    variant = graph.get("variant") or {}
    world = world_size(variant)
    if world == 1:
        return {"parallel_setup": "", "parallel_weights": "", "parallel_check": ""}
    tp, ep = variant["tp"], variant.get("ep", 1)
    names = state.emit_names(graph)
    coordinator = names.get(GROUP_COORDINATOR)
    if coordinator is None:
        raise NotImplementedError(f"A1 did not reach {GROUP_COORDINATOR[0]}::{GROUP_COORDINATOR[1]}")
    text = f"tp={tp}" + (f", ep={ep}" if ep > 1 else "")
    helpers = "".join(inspect.getsource(f) + "\n" for f in HELPERS)
    setup = helpers + _SETUP.format(world=world, variant_text=text, coordinator=coordinator, tp=tp)
    check = _CHECK.format(seed=SEED, tp=tp, world=world, symbol=symbol, variant_text=text, tolerance=REL_L2_TOLERANCE)
    return {"parallel_setup": textwrap.indent(setup, "    "),
            "parallel_weights": textwrap.indent(_WEIGHTS.format(seed=SEED), "        "),
            "parallel_check": textwrap.indent(check, "        ")}
