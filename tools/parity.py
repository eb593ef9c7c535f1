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
vLLM's layers return (hidden_states, residual): a layer that reads its `residual` argument defers the last residual
add to the next layer's norm (the output is their sum); one that overwrites it unread (Cohere's parallel block, the
post-norm layers) returns the whole stream in hidden_states (defers_residual).

Reported per case: the relative L2 error and the max abs error of the bundle and of transformers-bf16 against
the float32 reference. Pass: the bundle's error <= 2x transformers-bf16's and < 2e-2. MoE: tokens whose top-k
expert set differs from the float32 reference's (a bf16 near-tie) are counted and left out of the judged error.
One broken control per case (the gate/up halves swapped in the reference's weights) must fail the same check.

A bundle whose architecture transformers lacks: one line, `no reference`, exit 0 with the row recorded.
A weight that cannot be mapped: exit 2 naming the parameter on each side.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

TOL_RATIO = 2.0
TOL_ABS = 2e-2

# vLLM's loader conventions per model file (merged parameters and the checkpoint parameters they hold, the experts'
# checkpoint names), read from vLLM's source by tools/gen_loader_rules.py: this machine has no vLLM.
LOADER_RULES = Path(__file__).resolve().parents[1] / "models" / "vllm-loader-rules.json"
# vLLM's fused expert tensors, [E, 2I, H] (gate then up) and [E, H, I] (down), under the MoE block's `experts`
# (0.26.0's FusedMoE keeps them one level down, in `routed_experts`), and their biases [E, 2I] and [E, H].
EXPERT_TENSOR = re.compile(r"^(?P<base>(?:.*\.)?experts)\.(?:[\w.]*\.)?(?P<which>w13|w2)_(?P<leaf>weight|bias)$")
# transformers' fused expert tensors where its checkpoint conversion names none.
FUSED_EXPERTS = {"w13": "gate_up_proj", "w2": "down_proj"}
# vLLM parameters with no transformers counterpart (the attention's scalar quantisation scales).
NO_COUNTERPART = re.compile(r"(^|\.)_?(k|v|q|prob)_scale$|(^|\.)_(k|v|q|prob)_scale_float$")


class MappingError(Exception):
    pass


class NoReference(MappingError):
    """transformers' layer cannot be compared with the bundle's in this case: the row records `no reference` with
    this reason."""


class PartOfLayer(NoReference):
    """vLLM's layer is a part of transformers' layer (FalconH1's attention alone, its SSM mixer alone): there is no
    layer-level reference."""


def loader_rules(model_file: str | None = None, model_type: str | None = None) -> dict:
    """The rules map_weights applies for a layer of vLLM's `model_file` (a name in vllm/model_executor/models/)
    compared with transformers' `model_type`: `packed` (vLLM's merged parameter -> checkpoint parameters, in order:
    the file's own over the default most files share), `experts` (checkpoint names of gate, up, down), `renames`
    (transformers' checkpoint renames for the model_type, as (regex, replacement)), `fused` (transformers' fused
    expert tensor for gate+up and for down, from its checkpoint conversion), `mapper` (the file's WeightsMapper
    renames, checkpoint -> vLLM: [kind, checkpoint text, vLLM text]) and `head_interleaved` (fused q/k/v modules
    whose checkpoint rows [heads, 3, head_dim] the loader regroups to [3, heads, head_dim]) and `transformed`
    (parameter name -> the function of the checkpoint tensor vLLM's weight loader stores: neg_exp, the Mamba mixers'
    A = -exp(A_log))."""
    table = json.loads(LOADER_RULES.read_text())
    own = table["files"].get(model_file or "", {})
    rules = {"packed": {**table["default"]["packed"], **own.get("packed", {})},
             "experts": dict(own.get("experts") or table["default"]["experts"]), "renames": [], "fused": {},
             "mapper": own.get("mapper", []), "head_interleaved": own.get("head_interleaved", []),
             "transformed": {k: v["op"] for k, v in table.get("transformed", {}).items()}}
    if model_type:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        for t in get_checkpoint_conversion_mapping(model_type) or []:
            src = [t.source_patterns] if isinstance(t.source_patterns, str) else list(t.source_patterns)
            dst = [t.target_patterns] if isinstance(t.target_patterns, str) else list(t.target_patterns)
            if type(t).__name__ == "WeightRenaming":
                rules["renames"] += list(zip(src, dst))
            elif len(dst) == 1 and all("*" in s for s in src):
                leaves = tuple(sorted(s.rsplit("*.", 1)[1].split(".")[0] for s in src))
                rules["fused"][leaves] = dst[0].rsplit(".", 1)[-1]
    return rules


def _rename(name: str, renames: list) -> str:
    """transformers' name of a checkpoint parameter of one layer (renames apply to the model-level key)."""
    full = "model.layers.0." + name
    for pattern, repl in renames:
        full = re.sub(pattern, repl, full)
    return re.sub(r"^.*?layers\.\d+\.", "", full, count=1)


def _from_vllm(name: str, mapper: list) -> list[str]:
    """The checkpoint names vLLM's WeightsMapper may rename to `name`, nearest first: each of its literal suffix and
    substring renames undone at one place, then all of them undone together (the module renames inside a layer are
    _hf_name's). The layer's path is the text before `name`, so a rename's leading "." may match at its start (Jamba's
    ".self_attn." -> "." leaves `qkv_proj.weight` of `self_attn.qkv_proj.weight`); where a rename's vLLM text occurs
    more than once, which place it came from is not known: each is a candidate."""
    dotted = "." + name
    out = []
    for kind, orig, new in mapper:
        if kind == "suffix" and dotted.endswith(new):
            out.append(dotted[: len(dotted) - len(new)] + orig)
        elif kind == "substr":
            at = dotted.find(new)
            while at >= 0:
                out.append(dotted[:at] + orig + dotted[at + len(new):])
                at = dotted.find(new, at + 1)
    whole = dotted
    for kind, orig, new in mapper:
        if kind == "suffix" and whole.endswith(new):
            whole = whole[: len(whole) - len(new)] + orig
        elif kind == "substr" and new != ".":
            whole = whole.replace(new, orig)
    return [n[1:] for n in dict.fromkeys(out + [whole]) if n.startswith(".")]


def _hf_name(name: str, rules: dict, hf_shapes: dict) -> str:
    """transformers' name of a checkpoint parameter `name` of vLLM's layer: by transformers' renames, else, where that
    names none of transformers' parameters, after undoing the model file's WeightsMapper (Aria's router_weight), else
    after undoing one of its module renames inside the layer (`layer_prefix`: Cosmos3 Edge's mixer, from self_attn
    or mlp: the first that names a transformers parameter)."""
    plain = _rename(name, rules["renames"])
    if plain in hf_shapes or not rules.get("mapper"):
        return plain
    for candidate in _from_vllm(name, rules["mapper"]):
        mapped = _rename(candidate, rules["renames"])
        if mapped in hf_shapes:
            return mapped
    for kind, orig, new in rules["mapper"]:
        if kind == "layer_prefix" and ("." + name).startswith(new):
            renamed = _rename(orig[1:] + name[len(new) - 1:], rules["renames"])
            if renamed in hf_shapes:
                return renamed
    return plain


def _split_sizes(names: list[str], hf_shapes: dict[str, tuple], total: int) -> list[int]:
    sizes = [hf_shapes[n][0] for n in names]
    if sum(sizes) != total:
        raise MappingError(f"vLLM's merged parameter has {total} rows, transformers' {', '.join(names)} "
                           f"have {sizes} (sum {sum(sizes)})")
    return sizes


def _packed_parts(vname: str, packed: dict) -> tuple[str, list[str]] | None:
    """(vLLM's merged module, the checkpoint modules it holds) for a merged parameter, else None."""
    module, _, leaf = vname.rpartition(".")
    for merged in sorted(packed, key=len, reverse=True):
        parts = packed[merged]
        if parts != [merged] and (module == merged or module.endswith("." + merged)):
            stem = module[: len(module) - len(merged)]
            return module, [f"{stem}{p}.{leaf}" for p in parts]
    return None


def _is_gate_up(parts: list[str], rules: dict) -> bool:
    leaves = [p.rsplit(".", 2)[-2] for p in parts]
    return leaves in ([rules["experts"]["gate"], rules["experts"]["up"]], ["gate_proj", "up_proj"])


def head_interleaved(vname: str, rules: dict) -> bool:
    """Whether vLLM's loader regrouped this parameter's checkpoint rows (rules' `head_interleaved`)."""
    module = vname.rpartition(".")[0]
    return any(module == m or module.endswith("." + m) for m in rules.get("head_interleaved", []))


# The inverse of each function a vLLM weight loader applies to a checkpoint tensor (rules' `transformed`).
UNDO_LOADED = {"neg_exp": lambda t: (-t.float()).log().to(t.dtype)}


def untransformed(vname: str, t, rules: dict):
    """The checkpoint tensor of vLLM parameter `vname`, where vLLM's loader stored a function of it (rules'
    `transformed`, by the parameter's own name)."""
    op = rules.get("transformed", {}).get(vname.rpartition(".")[2])
    return UNDO_LOADED[op](t) if op else t


def regroup_heads(t, num_heads: int, to_vllm: bool):
    """Rows [heads, 3, head_dim] (the checkpoint's) <-> [3, heads, head_dim] (vLLM's), as vLLM's loader regroups a
    fused q/k/v weight or bias (GPT-NeoX's, Bloom's _repack_qkv)."""
    groups = (num_heads, 3) if to_vllm else (3, num_heads)
    return t.reshape(*groups, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def map_weights(vllm_state: dict, hf_shapes: dict[str, tuple], control: bool = False, rules: dict | None = None,
                layout: dict | None = None, transposed: frozenset = frozenset(), num_heads: int | None = None,
                zeroed: list | None = None, buffers: dict | None = None) -> dict:
    """transformers' state dict (name -> tensor) from vLLM's, for one decoder layer, by vLLM's loader rules
    (loader_rules(); default: the rules most vLLM model files share, no renames). `hf_shapes` names every
    transformers parameter and its shape; `layout` its fused experts' layouts (hf_experts_layout); `transposed` its
    weights stored [in, out] (hf_transposed: GPT-2's Conv1D), mapped in vLLM's [out, in] and transposed last;
    `num_heads` the attention heads, for the fused q/k/v rows vLLM's loader regroups (rules' head_interleaved).
    control=True maps deliberately wrong: the gate and up halves swapped (a merged MLP's or the experts' w13);
    a layer without them gets k and v of its merged qkv swapped; one with neither, the rows of its first matrix
    rolled by one.
    A vLLM parameter whose name transformers lacks takes the one unclaimed transformers parameter of its shape one
    module down or up (AXK1's post_mlp_layernorm, under mlp in transformers). A vLLM bias with no counterpart whose
    weight maps (a LayerNorm with bias where transformers' has none: Dbrx's norm_1) is listed in `zeroed`, where one
    is given: the caller zeroes it in vLLM's layer, which makes both compute the same. `buffers` names transformers'
    persistent buffers and their shapes: a vLLM parameter may map onto one (MiniMax-M2's e_score_correction_bias, a
    parameter in vLLM, a buffer in transformers); none needs a vLLM weight.
    Raises PartOfLayer where vLLM's layer is one part of transformers' (all of vLLM's parameters map under one of
    transformers' submodules, or map and leave whole submodules of transformers' without a weight), else
    MappingError naming the parameter on each side that has no counterpart."""
    kw = dict(control=control, rules=rules or loader_rules(), layout=layout, transposed=transposed,
              num_heads=num_heads, zeroed=zeroed)
    buffers = buffers or {}
    try:
        return _map_weights(vllm_state, hf_shapes, buffers=buffers, **kw)
    except PartOfLayer:
        raise
    except MappingError as e:
        for child in sorted({h.split(".", 1)[0] for h in hf_shapes if "." in h}):
            inner = {h: s for h, s in hf_shapes.items() if h.startswith(child + ".")}
            try:
                _map_weights({f"{child}.{n}": t for n, t in vllm_state.items()}, inner,
                             buffers={h: s for h, s in buffers.items() if h.startswith(child + ".")}, **kw)
            except MappingError:
                continue
            raise PartOfLayer(f"vLLM's layer is transformers' layer's `{child}` alone (all its parameters map there): "
                              f"no layer-level reference") from e
        raise


def _map_weights(vllm_state: dict, hf_shapes: dict[str, tuple], control: bool, rules: dict, layout, transposed,
                 num_heads, zeroed, buffers: dict) -> dict:
    required = set(hf_shapes)
    hf_shapes = {**buffers, **hf_shapes}
    final_shapes, hf_shapes = hf_shapes, {n: s[::-1] if n in transposed else s for n, s in hf_shapes.items()}
    swap_gate_up = control and any(
        ((m := EXPERT_TENSOR.match(n)) and m["which"] == "w13") or ((pp := _packed_parts(n, rules["packed"]))
                                                                    and _is_gate_up(pp[1], rules)) for n in vllm_state)
    applied = swap_gate_up
    out: dict = {}
    pending = []  # (vLLM name, tensor, transformers name tried): resolved once the other parameters are claimed
    orient: dict = {}  # experts module -> whether transformers' fused tensors are vLLM's transposed
    square = []  # fused expert weights whose shape fits both ways: oriented as their sibling's
    for vname, t in vllm_state.items():
        if NO_COUNTERPART.search(vname):
            continue
        t = untransformed(vname, t, rules)
        if head_interleaved(vname, rules):
            if not num_heads:
                raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)}: vLLM's loader regroups its rows by "
                                   "head; map_weights needs num_heads (the config's num_attention_heads)")
            t = regroup_heads(t, num_heads, to_vllm=False)
        expert = EXPERT_TENSOR.match(vname)
        if expert is not None:
            if not _map_experts(vname, t, expert, rules, hf_shapes, layout or {}, out, swap_gate_up, orient):
                square.append((vname, t, expert))
            continue
        packed = _packed_parts(vname, rules["packed"])
        if packed is not None:
            names = [_hf_name(n, rules, hf_shapes) for n in packed[1]]
            gate_up = _is_gate_up(packed[1], rules)
            if all(n in hf_shapes for n in names):
                chunks = list(t.split(_split_sizes(names, hf_shapes, t.shape[0]), dim=0))
                if swap_gate_up and gate_up:
                    chunks = chunks[::-1]
                elif control and not swap_gate_up and len(chunks) == 3 and chunks[1].shape == chunks[2].shape:
                    chunks, applied = [chunks[0], chunks[2], chunks[1]], True
                out.update(zip(names, chunks))
                continue
            if _hf_name(vname, rules, hf_shapes) not in hf_shapes:
                tried = [n for n in names if n not in hf_shapes] + [_hf_name(vname, rules, hf_shapes)]
                raise _no_counterpart(vname, t, tried, hf_shapes)
            if swap_gate_up and gate_up:  # transformers keeps it merged, as vLLM does
                t = t.roll(t.shape[0] // 2, dims=0)
        hname = _hf_name(vname, rules, hf_shapes)
        if hname not in hf_shapes:
            pending.append((vname, t, hname))
            continue
        out[hname] = t
    for vname, t, expert in square:
        if not _map_experts(vname, t, expert, rules, hf_shapes, layout or {}, out, swap_gate_up, orient):
            raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} is square: whether transformers' fused tensor "
                               "holds it transposed cannot be told by shape, and no sibling tensor tells it")
    for vname, t, hname in pending:
        near = [h for h in hf_shapes if h not in out and tuple(hf_shapes[h]) == tuple(t.shape) and (
            h.endswith("." + hname) and h.count(".") == hname.count(".") + 1
            or hname.endswith("." + h) and hname.count(".") == h.count(".") + 1)]
        if len(near) == 1:
            out[near[0]] = t
        elif (zeroed is not None and vname.endswith(".bias")
              and _hf_name(vname[: -len("bias")] + "weight", rules, hf_shapes) in out):
            zeroed.append(vname)
        else:
            raise _no_counterpart(vname, t, [hname], hf_shapes)
    if control and not applied:
        first = next(n for n, t in out.items() if t.dim() == 2)
        out[first] = out[first].roll(1, dims=0)
    out = {n: t.t() if n in transposed else t for n, t in out.items()}
    hf_shapes = final_shapes
    missing = sorted(required - set(out))
    held, lacking = {n.split(".", 1)[0] for n in out}, {n.split(".", 1)[0] for n in missing}
    if missing and out and not held & lacking:
        raise PartOfLayer(f"vLLM's layer is a part of transformers' layer: its parameters map into transformers' "
                          f"{', '.join(sorted(held))} and none into {', '.join(sorted(lacking))}: no layer-level "
                          "reference")
    if missing:
        raise MappingError(f"transformers parameter {missing[0]} {tuple(hf_shapes[missing[0]])} gets no vLLM "
                           f"weight ({len(missing)} in all); vLLM has {sorted(vllm_state)[:8]}")
    for n, t in out.items():
        if tuple(t.shape) != tuple(hf_shapes[n]):
            raise MappingError(f"transformers parameter {n} {tuple(hf_shapes[n])} gets a vLLM weight of shape "
                               f"{tuple(t.shape)}")
    return out


def _no_counterpart(vname, t, tried: list, hf_shapes: dict) -> MappingError:
    """The error for a vLLM parameter none of whose transformers names (`tried`) exists, naming the transformers
    parameters of the same leaf name elsewhere in the layer, if any."""
    leaf = ".".join(tried[-1].rsplit(".", 2)[-2:])
    like = sorted(f"{h} {tuple(s)}" for h, s in hf_shapes.items() if h.endswith("." + leaf) or h == leaf)
    return MappingError(f"vLLM parameter {vname} {tuple(t.shape)} has no transformers counterpart "
                        f"({' or '.join(tried)})" + (f"; transformers has {', '.join(like[:4])}" if like else ""))


def hf_transposed(layer) -> frozenset:
    """transformers' weights in `layer` stored [in, out]: those of its Conv1D modules (GPT-2's), by module type."""
    from transformers.pytorch_utils import Conv1D

    return frozenset(f"{n}.weight" for n, m in layer.named_modules() if isinstance(m, Conv1D))


def hf_experts_layout(layer) -> dict:
    """{experts module name: (transposed, concatenated)} of transformers' fused experts in `layer`: its
    `use_experts_implementation` flags (transposed: [E, H, 2I] and [E, I, H]; not concatenated: gate and up
    interleaved along 2I)."""
    return {n: (bool(m.is_transposed), bool(getattr(m, "is_concatenated", True)))
            for n, m in layer.named_modules() if hasattr(m, "is_transposed")}


def _map_experts(vname, t, expert, rules, hf_shapes, layout, out, swap, orient: dict) -> bool:
    """vLLM's fused experts ([E, 2I, H] gate then up, [E, H, I]; biases [E, 2I], [E, H]) onto transformers' fused
    tensor (named by its checkpoint conversion; laid out as hf_experts_layout says, else as vLLM's unless only the
    transposed shape fits) or onto its per-expert modules (`experts.{e}.<checkpoint name>.weight`). A square weight
    (Aria's w2 where H == I: both orientations fit) takes the orientation `orient` records for its experts module
    from the other tensor; False where none is recorded yet (the caller retries it after the others)."""
    which, leaf, E = expert["which"], expert["leaf"], t.shape[0]
    ckpt = [n for n in ([rules["experts"]["gate"], rules["experts"]["up"]] if which == "w13"
                        else [rules["experts"]["down"]]) if n]  # up is "" for non-gated experts
    base = _rename(expert["base"] + ".0." + ckpt[0] + ".weight", rules["renames"]).rsplit(".0.", 1)[0]
    fused = base + "." + rules["fused"].get(tuple(sorted(ckpt)), FUSED_EXPERTS[which]) + ("_bias" if leaf == "bias" else "")
    if fused not in hf_shapes:  # a checkpoint's fused tensor vLLM's WeightsMapper renames (Aria's experts.fc1.weight)
        fused = _hf_name(f"{expert['base']}.{FUSED_EXPERTS[which]}.{leaf}", rules, hf_shapes)
    if fused in hf_shapes:
        transposed, concatenated = layout.get(base, (None, True))
        w = t.roll(t.shape[1] // 2, dims=1) if swap and which == "w13" else t
        if which == "w13" and not concatenated:  # gate and up interleaved: g0 u0 g1 u1 ...
            g, u = w.chunk(2, dim=1)
            w = _interleave(g, u)
        if leaf == "weight" and transposed is None:
            fits = {flip for flip in (False, True) if tuple(hf_shapes[fused]) == tuple(w.transpose(1, 2).shape
                                                                                        if flip else w.shape)}
            if len(fits) == 2 and base not in orient:
                return False
            transposed = orient[base] if len(fits) == 2 else True in fits
            orient.setdefault(base, transposed)
        if leaf == "weight" and transposed:
            w = w.transpose(1, 2)
        if tuple(hf_shapes[fused]) != tuple(w.shape):
            raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} does not fit transformers' "
                               f"{fused} {tuple(hf_shapes[fused])}")
        out[fused] = w.contiguous()
        return True
    first = _rename(f"{expert['base']}.0.{ckpt[0]}.{leaf}", rules["renames"])
    if first not in hf_shapes:
        raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} has no transformers counterpart ({fused} or {first})")
    for e in range(E):
        names = [_rename(f"{expert['base']}.{e}.{c}.{leaf}", rules["renames"]) for c in ckpt]
        chunks = list(t[e].split(_split_sizes(names, hf_shapes, t.shape[1]), dim=0))
        out.update(zip(names, chunks[::-1] if swap and len(chunks) == 2 else chunks))
    return True


def _interleave(a, b):
    """Rows of a and b alternating along dim 1: [E, 2I, ...] from two [E, I, ...]."""
    import torch

    return torch.stack([a, b], dim=2).flatten(1, 2)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z]+[a-z0-9_]*|[a-z0-9_]+", name.lower() if name.islower() else name)


def _modeling(model_type: str):
    """transformers' modeling module of a model_type (its config class's package), or None."""
    from transformers import CONFIG_MAPPING

    try:
        module = CONFIG_MAPPING[model_type].__module__
    except KeyError:
        return None
    return importlib.import_module(module.replace(".configuration_", ".modeling_"))


def hf_layer_classes(mod) -> list:
    """The layer classes a transformers modeling module defines (its GradientCheckpointingLayer subclasses)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, GradientCheckpointingLayer)
            and c.__module__ == mod.__name__]


def hf_classes(model_type: str, symbol: str):
    """(model_type, decoder layer class, rotary embedding class or None): transformers' layer of the same name
    as the vLLM symbol (a `LlamaDecoderLayer` is llama's, whatever config sizes it), else, of the config's
    model_type's layers, the one whose name shares most words with the symbol (case-insensitively; a tie goes to
    a `...DecoderLayer`; encoder layers only for an encoder symbol or a model that has no other); None when transformers has none. The rotary
    class is the module's `...RotaryEmbedding` whose name shares the longest prefix with the layer's."""
    stem = symbol[: -len("DecoderLayer")] if symbol.endswith("DecoderLayer") else symbol
    for mt in dict.fromkeys([_snake(stem), model_type]):
        try:
            mod = _modeling(mt)
        except ImportError:
            continue
        if mod is None:
            continue
        layers = hf_layer_classes(mod)
        exact = [c for c in layers if c.__name__.lower() == symbol.lower()]
        if not exact and mt != model_type:
            continue
        want = {w.lower() for w in _words(symbol)}
        pool = exact or [c for c in layers if "Encoder" not in c.__name__ or "Encoder" in symbol] or layers
        if not pool:
            continue

        def score(c):
            words = {w.lower() for w in _words(c.__name__)}
            return len(want & words) / len(want | words), c.__name__.endswith("DecoderLayer")

        cls = max(pool, key=score)
        if mt != model_type and _modeling(model_type) is mod:
            mt = model_type  # the symbol's class is the config's own model's (a multimodal config's text model)
        ropes = [c for c in vars(mod).values() if isinstance(c, type) and c.__name__.endswith("RotaryEmbedding")
                 and c.__module__ == mod.__name__ and "Vision" not in c.__name__]
        rope = max(ropes, key=lambda c: len(os.path.commonprefix([c.__name__, cls.__name__])), default=None)
        return mt, cls, rope
    return None


def hf_config(cfg: dict, model_type: str | None = None):
    """transformers' config of `model_type` (default: the config's own) holding the config's fields. A field left
    None takes the class's default, except head_dim and num_key_value_heads, which take what vLLM's ModelConfig
    derives (hidden_size // num_attention_heads; num_attention_heads); a field at the base config's default, a
    private one, or a read-only property of the class (derived from other fields; also through its
    attribute_map) is not passed. A nested sub-config lacking a field of the top-level rope_parameters takes its value
    (the bundle's example does the same). Attention is sdpa where the model supports it (eager needs tens of GiB for the scores at long
    prefill), else eager."""
    from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

    model_type = model_type or cfg["model_type"]
    cls = CONFIG_MAPPING[model_type]
    cfg = dict(cfg)
    if cfg.get("head_dim", 0) is None and cfg.get("hidden_size") and cfg.get("num_attention_heads"):
        cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    if cfg.get("num_key_value_heads", 0) is None:
        cfg["num_key_value_heads"] = cfg.get("num_attention_heads")
    base = PretrainedConfig().to_dict()

    def own(d: dict) -> dict:  # a config's own fields; a nested sub-config's too
        return {k: own(v) if isinstance(v, dict) and "_name_or_path" in v else v for k, v in d.items()
                if v is not None and not k.startswith("_") and (k not in base or base[k] != v)}

    def read_only(k: str) -> bool:
        return isinstance(getattr(cls, k, None), property) and getattr(cls, k).fset is None

    fields = {k: v for k, v in own(cfg).items() if k not in (
        "model_type", "architectures", "transformers_version", "torch_dtype", "dtype")
        and not read_only(cls.attribute_map.get(k, k))}
    config = AutoConfig.for_model(model_type, **fields)
    for sub in vars(config).values():  # rope fields transformers 5 moved to the top level, for a sub-config still
        if isinstance(sub, PretrainedConfig):  # reading them (Dbrx's attn_config.rope_theta), as the bundle's example
            for k, v in (getattr(config, "rope_parameters", None) or {}).items():
                if not hasattr(sub, k):
                    setattr(sub, k, v)
    mod = _modeling(model_type)
    models = [c for c in vars(mod).values() if isinstance(c, type) and hasattr(c, "_supports_sdpa")
              and c.__module__ == mod.__name__] if mod is not None else []
    config._attn_implementation = "sdpa" if not models or any(c._supports_sdpa for c in models) else "eager"
    return config


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


def model_file_of(mod, symbol: str) -> str | None:
    """The vLLM model file (a name in vllm/model_executor/models/) the bundle inlined `symbol`'s class from."""
    m = re.search(rf"^# --- Inlined from vllm/model_executor/models/(\w+\.py):\S* .*\n(?:(?!# --- )[#@].*\n)*class {symbol}\b",
                  _source(mod), re.M)
    return m.group(1) if m else None


def read_config(path: Path) -> dict:
    """The model's fields (a multimodal config's `text_config`)."""
    cfg = json.loads(Path(path).read_text())
    return cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg


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


def rel_l2(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


CACHE_ARGS = ("past_key_values", "layer_past", "past_key_value")


# The layer arguments transformers' models fill with an ALiBi bias they build (Bloom's alibi, MPT's position_bias).
ALIBI_ARGS = ("alibi", "position_bias")


def alibi_bias(forward, config, x, positions):
    """The ALiBi bias transformers' model builds for its layers, by the build_*alibi* function of the layer's modeling
    module, called by its parameters' names (attention_mask: ones over the keys, num_heads, dtype, sequence_length:
    config.max_seq_len as MPT's model passes it, device); None where the module has none."""
    import inspect
    import sys

    import torch

    module = sys.modules[forward.__module__]
    build = next((f for n, f in vars(module).items() if n.startswith("build") and "alibi" in n and inspect.isfunction(f)),
                 None)
    if build is None:
        return None
    heads = next(getattr(config, k) for k in ("num_attention_heads", "n_head", "n_heads") if hasattr(config, k))
    values = dict(attention_mask=torch.ones(x.shape[0], int(positions.max()) + 1, device=x.device), num_heads=heads,
                  dtype=x.dtype, sequence_length=getattr(config, "max_seq_len", None), device=x.device)
    return build(**{n: values[n] for n in inspect.signature(build).parameters if n in values})


def hf_forward_kwargs(forward, config, positions, emb, cache=None, mask=None, x=None) -> dict:
    """The keyword arguments of transformers' layer `forward` (a function; the hidden states go first, by position),
    by its signature: position ids, position embeddings, the attention mask (causal_mask's), the cache under the name
    the layer takes (past_key_values, or GPT-J's and Falcon's layer_past), the ALiBi bias the model builds (alibi_bias,
    where `x` is given and the config does not turn alibi off: Bloom's alibi, MPT's position_bias; H100: Bloom
    'NoneType' object has no attribute 'baddbmm'). A required argument the harness does not
    build (Falcon's `alibi`) gets None, as the model passes it where the config turns the feature off; where the
    config turns it on, one line names it."""
    import inspect

    params = inspect.signature(forward).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kw = dict(position_ids=positions, position_embeddings=emb, attention_mask=mask)
    if cache is not None:
        kw[next((n for n in CACHE_ARGS if n in params), "past_key_values")] = cache
        kw["use_cache"] = True
    kw = {k: v for k, v in kw.items() if takes_any or k in params}
    for name, p in list(params.items())[2:]:
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kw:
            if name in ALIBI_ARGS and getattr(config, "alibi", None) is not False and x is not None:
                bias = alibi_bias(forward, config, x, positions)
                if bias is not None:
                    kw[name] = bias
                    continue
            if getattr(config, name, None) or getattr(config, "use_" + name, None):
                raise MappingError(f"transformers' layer needs `{name}`, which its config turns on "
                                   f"({name}={getattr(config, name, None)!r}): the harness builds no {name}")
            kw[name] = None
    return kw


def layer_type(config, layer_idx: int) -> str | None:
    """The config's type of layer `layer_idx` (layer_types: full_attention, sliding_attention, ...), or None."""
    types = getattr(config, "layer_types", None)
    return types[layer_idx] if types and layer_idx < len(types) else None


def causal_mask(config, x, positions, cache, layer_idx: int):
    """The causal mask transformers' model builds for layer `layer_idx` (create_causal_mask, or the sliding-window
    one for a sliding_attention layer): None where the attention applies causality itself (sdpa's is_causal), a 4D
    mask where it does not (GPT-J's eager attention adds the mask it is given and nothing else). Sized by layer
    `layer_idx` of the cache (the one the context is in)."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    make = (create_sliding_window_causal_mask if layer_type(config, layer_idx) == "sliding_attention"
            and getattr(config, "sliding_window", None) else create_causal_mask)
    return make(config=config, inputs_embeds=x, attention_mask=None, past_key_values=cache,
                position_ids=positions, **({"layer_idx": layer_idx} if cache is not None else {}))


def rope_embeddings(rope, config, x, positions, layer_idx: int):
    """transformers' rotary embedding for layer `layer_idx`: a rotary that keeps one table per layer type (Gemma 3's,
    Gemma 4's) takes the layer's `layer_type`, as the model passes it. A multimodal rotary (mrope_section in the
    config's rope_parameters or its class) takes positions [3, batch, seq]: a text token's on all three axes, as the
    model expands them (H100: Ernie4_5_VLMoe IndexError, too many indices for a 2-D tensor)."""
    import inspect

    import torch

    if rope is None:
        return None
    if "mrope_section" in (getattr(config, "rope_parameters", None) or {}) or (
            isinstance(rope, torch.nn.Module) and "mrope_section" in _class_source(rope)):
        positions = positions[None].expand(3, *positions.shape)  # text tokens: one position on each of t, h, w
    if "layer_type" in inspect.signature(getattr(rope, "forward", rope)).parameters:  # a module or a function
        return rope(x, positions, layer_type(config, layer_idx))
    return rope(x, positions)


def _class_source(module) -> str:
    import inspect

    try:
        return inspect.getsource(type(module))
    except (OSError, TypeError):
        return ""


def layer_mask(layer, mask):
    """The mask transformers' model gives `layer`, from the causal mask (causal_mask's): None where no submodule
    attends (each that takes an attention_mask applies it to padding only, apply_mask_to_padding_states: Mamba's,
    Mamba2's mixers get the model's 2-D padding mask, None without padding); a bool mask (True: masked) where an
    attention masks its scores with masked_fill (MPT's model converts its mask .to(torch.bool)); else `mask`."""
    import inspect

    takes = [m for n, m in layer.named_modules() if n and "attention_mask" in inspect.signature(m.forward).parameters]
    sources = [_class_source(m) for m in takes]
    if takes and all("apply_mask_to_padding_states" in src for src in sources):
        return None
    if mask is not None and any("masked_fill(attention_mask" in src for src in sources):
        return mask.bool()
    return mask


def extra_inputs(hf_forward_fn, vllm_forward_fn, inputs: dict, B: int, q: int) -> dict:
    """The inputs beyond the hidden states and positions that the bundle's example gives vLLM's layer and
    transformers' layer takes by the same name (Gemma 4's per_layer_input: H100 Tensor * NoneType), one row a token,
    as [B, q, ...]."""
    import inspect

    import torch

    hf_params = inspect.signature(hf_forward_fn).parameters
    vllm_params = inspect.signature(vllm_forward_fn).parameters
    own = {"hidden_states", "positions", "residual", "position_ids", "position_embeddings", "attention_mask",
           "use_cache", *CACHE_ARGS}
    return {name: inputs[name].reshape(B, q, *inputs[name].shape[1:]) for name in hf_params
            if name not in own and name in vllm_params and isinstance(inputs.get(name), torch.Tensor)
            and inputs[name].dim() and inputs[name].shape[0] == B * q}


def hf_forward(layer, config, x, positions, rope, cache=None, layer_idx: int = 0, extra: dict | None = None):
    import torch

    emb = rope_embeddings(rope, config, x, positions, layer_idx)
    mask = layer_mask(layer, causal_mask(config, x, positions, cache, layer_idx))
    kw = hf_forward_kwargs(type(layer).forward, config, positions, emb, cache, mask, x)
    for name, t in (extra or {}).items():
        kw[name] = t[: x.shape[0], : x.shape[1]].to(x.dtype)
    with torch.no_grad():
        out = layer(x, **kw)
    return out[0] if isinstance(out, tuple) else out


def context_cache(ex, dtype, config, layer_idx, probe=None):
    """transformers' cache holding the bundle's context K/V (the paged cache: K then V in the last dim). `probe`
    (a function filling a cache with one token through transformers' layer) shows what that layer caches: where it
    is not per-head K and V of the bundle's sizes (DeepSeek's MLA caches a latent and the rotary key), the bundle's
    context cannot be copied: NoReference."""
    import torch
    from transformers import DynamicCache

    kv = ex["inputs"]["kv_cache"]  # [blocks, H_kv, block_size, 2*Dh] (a view of NHD storage)
    bt = ex["inputs"]["block_table"]
    ctx = ex["sizes"]["context"]
    Dh = kv.shape[-1] // 2
    if probe is not None:
        probed = DynamicCache(config=config)
        probe(probed)
        keys, values = probed.layers[layer_idx].keys, probed.layers[layer_idx].values
        if (keys.shape[1], keys.shape[-1], values.shape[1], values.shape[-1]) != (kv.shape[1], Dh, kv.shape[1], Dh):
            raise NoReference(f"transformers' layer caches keys {tuple(keys.shape[1::2])} and values "
                              f"{tuple(values.shape[1::2])} per (head, dim), the bundle's paged cache K and V of "
                              f"{(kv.shape[1], Dh)} (a latent cache, MLA's, on one side): the context cannot be copied")
    seqs = []
    for b in range(bt.shape[0]):
        blocks = kv[bt[b].long()]  # [nb, H_kv, bs, 2Dh]
        seqs.append(blocks.permute(1, 0, 2, 3).reshape(kv.shape[1], -1, 2 * Dh)[:, :ctx])
    both = torch.stack(seqs).to(dtype)  # [B, H_kv, ctx, 2Dh]
    cache = DynamicCache(config=config)
    cache.update(both[..., :Dh].contiguous(), both[..., Dh:].contiguous(), layer_idx)
    return cache


def new_layer(hf_cls, config, layer_idx: int):
    """transformers' layer `hf_cls` for layer `layer_idx` (a layer class that takes no index gets the config alone)."""
    import inspect

    return hf_cls(config, layer_idx) if len(inspect.signature(hf_cls.__init__).parameters) > 2 else hf_cls(config)


def hf_shapes(hf_cls, config, layer_idx: int) -> dict:
    """Every parameter of transformers' layer and its shape (built on meta: nothing allocated)."""
    import torch

    with torch.device("meta"):
        return {n: tuple(p.shape) for n, p in new_layer(hf_cls, config, layer_idx).named_parameters()}


@contextlib.contextmanager
def params_on_meta():
    """Modules built inside get their parameters on meta (nothing allocated) and their buffers as their __init__
    computes them: rotary inv_freq, GPT-J's embed_positions, xIELU's beta and eps are transformers' own."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, None if param is None else
                 torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad))

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def hf_layer(hf_cls, config, layer_idx: int, state: dict, dtype, buffers: dict | None = None):
    """transformers' layer in eval mode holding `state` (map_weights' output) in `dtype`. Its parameters are built
    on meta and given the mapped tensors (assign): where the dtype is the bundle's, it shares their storage (no second
    copy of an MoE layer's experts). Its buffers are those its __init__ computes, except where vLLM's layer has one of
    the same name and shape (`buffers`: an activation's constants as vLLM set them). A buffer of vLLM's layer that
    transformers' layer lacks, at a module it has that has no attribute of that name, is given to it: transformers'
    model registers such buffers on its layers after building them (FalconH1Model's mup_vector on each mixer), so
    the layer alone lacks them (H100: AttributeError 'FalconH1Mixer' object has no attribute 'mup_vector')."""
    import torch

    with params_on_meta():
        hf = new_layer(hf_cls, config, layer_idx)
    own = {n: b for n, b in hf.state_dict().items() if n in dict(hf.named_buffers())}  # the persistent ones
    taken = {n: b for n, b in (buffers or {}).items() if n in own and tuple(b.shape) == tuple(own[n].shape)}
    state = {**{k: v.to(dtype) for k, v in state.items()}, **{n: b.to(own[n].dtype) for n, b in taken.items()}}
    modules = dict(hf.named_modules())
    for n, b in (buffers or {}).items():
        path, _, leaf = n.rpartition(".")
        if path in modules and not hasattr(modules[path], leaf):
            modules[path].register_buffer(leaf, b.to(dtype) if b.is_floating_point() else b.clone(), persistent=False)
    missing, unexpected = hf.load_state_dict(state, strict=False, assign=True)
    missing = [n for n in missing if n not in own]
    if missing or unexpected:
        raise MappingError(f"transformers' layer did not take the mapped weights: missing {missing[:4]}, "
                           f"unexpected {unexpected[:4]}")
    return hf.to(next(iter(state.values())).device).eval()


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


def mapping_args(meta, config, rules: dict) -> dict:
    """map_weights' keyword arguments for transformers' layer `meta` (built on meta)."""
    persistent = meta.state_dict()
    return dict(rules=rules, layout=hf_experts_layout(meta), transposed=hf_transposed(meta),
                num_heads=getattr(config, "num_attention_heads", None),
                buffers={n: tuple(b.shape) for n, b in meta.named_buffers() if n in persistent})


def reference_layer(hf_cls, config, layer_idx: int, vllm_state: dict, rules: dict):
    """(index, transformers' layer on meta) to compare vLLM's layer `layer_idx` with: that index where vLLM's
    parameters map onto it, else the first index whose layer they map onto. A hybrid model's one transformers class
    builds the config's block type at each index (NemotronH's, GraniteMoeHybrid's layer types), which need not be the
    type of the vLLM layer the bundle's example built at that index (H100: exit 2, mixer.up_proj.weight / self_attn.
    qkv_proj.weight has no counterpart). Where none maps, the error is layer_idx's."""
    import torch

    def at(i):
        with torch.device("meta"):
            return new_layer(hf_cls, config, i)

    meta = at(layer_idx)
    try:
        map_weights(vllm_state, {n: tuple(p.shape) for n, p in meta.named_parameters()},
                    **mapping_args(meta, config, rules), zeroed=[])
        return layer_idx, meta
    except NoReference:
        return layer_idx, meta
    except MappingError as first:
        seen = {tuple(sorted(n for n, _ in meta.named_parameters()))}
        for i in range(int(getattr(config, "num_hidden_layers", 0) or 0)):
            try:
                other = at(i)
            except (TypeError, ValueError, IndexError, KeyError, AttributeError):  # not buildable: no candidate
                continue
            names = tuple(sorted(n for n, _ in other.named_parameters()))
            if names in seen:
                continue
            seen.add(names)
            try:
                map_weights(vllm_state, {n: tuple(p.shape) for n, p in other.named_parameters()},
                            **mapping_args(other, config, rules), zeroed=[])
            except MappingError:
                continue
            return i, other
        raise first


def run_case(mod, symbol: str, cfg: dict, workload: str, tokens: int, batch: int, context: int) -> dict:
    import inspect

    import torch

    row = {"case": f"{workload}:{batch}x{tokens}" + (f"+{context}" if workload == "decode" else ""),
           "workload": workload, "batch": batch, "tokens": tokens, "context": context}
    ex = mod.invocation_example(small=True, workload=workload, tokens=tokens, batch=batch, context=context)
    layer = ex["module"]
    if not isinstance(layer, torch.nn.Module):  # A6's generic example: no invocation template for this symbol
        return dict(row, status="no reference", reason=f"the bundle's invocation_example builds no {symbol} (it "
                    f"returns {getattr(layer, '__name__', type(layer).__name__)} unbuilt): no layer to compare")
    gen = torch.Generator(device="cuda").manual_seed(1)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if p.dim() == 1 and "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, device=p.device))
    vllm_state = {n: p.detach() for n, p in layer.named_parameters()}
    vllm_buffers = {n: b.detach() for n, b in layer.named_buffers()}
    found = hf_classes(cfg["model_type"], symbol)
    if found is None:
        return dict(row, status="no reference", reason=f"transformers has no {symbol} and no decoder layer for "
                                                       f"{cfg['model_type']}")
    model_type, hf_cls, rope_cls = found
    config = hf_config(cfg, model_type)
    row["reference"] = f"transformers {model_type}.{hf_cls.__name__}"
    rules = loader_rules(model_file_of(mod, symbol), model_type)
    bundle_idx = int(ex["prefix"].rsplit(".", 1)[-1])
    layer_idx, meta = reference_layer(hf_cls, config, bundle_idx, vllm_state, rules)
    if layer_idx != bundle_idx:
        row["reference_layer_idx"] = layer_idx
    shapes = {n: tuple(p.shape) for n, p in meta.named_parameters()}
    kw = mapping_args(meta, config, rules)
    zeroed: list = []
    hf_state = map_weights(vllm_state, shapes, zeroed=zeroed, **kw)
    control_state = map_weights(vllm_state, shapes, control=True, zeroed=[], **kw)
    if zeroed:  # biases transformers' layer lacks: zeroed in vLLM's layer, the same computation
        with torch.no_grad():
            for n in zeroed:
                vllm_state[n].zero_()
        row["zeroed_biases"] = zeroed
    B, q, ctx = ex["sizes"]["B"], ex["sizes"]["new_tokens"], ex["sizes"]["context"]
    H = ex["inputs"]["hidden_states"].shape[-1]
    x = ex["inputs"]["hidden_states"]  # [B*q, H]
    positions = ex["inputs"]["positions"].view(B, q)
    top_k = int(cfg.get("num_experts_per_tok") or 0)

    deferred = defers_residual(inspect.getsource(type(layer).forward))
    extra = extra_inputs(hf_cls.forward, type(layer).forward, ex["inputs"], B, q)

    def bundle_fwd():
        o, r = ex["forward"](x)
        return o.float() + r.float() if deferred and r is not None else o.float()

    if top_k:
        y_bundle, bundle_sets = _router_topk(layer, bundle_fwd, top_k)
    else:
        y_bundle, bundle_sets = bundle_fwd(), None
    y_bundle = y_bundle.view(B, q, H)

    def hf_run(state, dtype):
        hf = hf_layer(hf_cls, config, layer_idx, state, dtype, vllm_buffers)
        rope = rope_cls(config).to("cuda") if rope_cls is not None else None
        xin = x.view(B, q, H).to(dtype)
        probe = lambda c: hf_forward(hf, config, xin[:1, :1], positions[:1, :1], rope, c, layer_idx,  # noqa: E731
                                     extra)
        cache = context_cache(ex, dtype, config, layer_idx, probe) if ctx else None
        call = lambda: hf_forward(hf, config, xin, positions, rope, cache, layer_idx, extra).float()  # noqa: E731
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
    if not keep.any():
        raise MappingError(f"every token's top-{top_k} experts differ between the bundle's router and transformers': "
                           "no token to compare (a router mapped wrong, or its logits not where _router_logits looks)")
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
    return 0 if all(r["status"] in ("ok", "no reference") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
