"""tools/parity.py's weight mapping: transformers' state dict of one decoder layer from vLLM's, by the conventions
vLLM's loader applies to a checkpoint (models/vllm-loader-rules.json, read from vLLM's source by
tools/gen_loader_rules.py: merged parameters, fused experts, WeightsMapper renames, transforms of the loaded tensor),
each undone. Torch is needed only for the tensors passed in."""

from __future__ import annotations

import json
import re
from pathlib import Path

# vLLM's loader conventions per model file (merged parameters and the checkpoint parameters they hold, the experts'
# checkpoint names), read from vLLM's source by tools/gen_loader_rules.py: this machine has no vLLM.
LOADER_RULES = Path(__file__).resolve().parents[1] / "models" / "vllm-loader-rules.json"
# vLLM's fused expert tensors, [E, 2I, H] (gate then up) and [E, H, I] (down), under the MoE block's `experts`
# (0.26.0's FusedMoE keeps them one level down, in `routed_experts`), and their biases [E, 2I] and [E, H].
EXPERT_TENSOR = re.compile(r"^(?P<base>(?:.*\.)?experts)\.(?:[\w.]*\.)?(?P<which>w13|w2)_(?P<leaf>weight|bias)$")
# transformers' fused expert tensors where its checkpoint conversion names none.
FUSED_EXPERTS = {"w13": "gate_up_proj", "w2": "down_proj"}
# vLLM's MoE activations that take w13's rows gate and up interleaved (g0 u0 g1 u1 ...), as its loader keeps them
# from the checkpoint (MoEActivation's comment: SWIGLUOAI "expects gate/up *interleaved* in w13", gpt-oss's layout);
# every other gated one takes them gate then up.
W13_INTERLEAVED = {"swigluoai"}
# transformers' load conversions map_weights applies exactly to the checkpoint's tensors: one operation, splitting
# one tensor into equal parts along a dim or joining several along one, with no count read from the config.
EXACT_CONVERSIONS = {"Chunk", "Concatenate"}
# vLLM parameters with no transformers counterpart (the attention's scalar quantisation scales).
NO_COUNTERPART = re.compile(r"(^|\.)_?(k|v|q|prob)_scale$|(^|\.)_(k|v|q|prob)_scale_float$")


class MappingError(Exception):
    pass


class NoReference(MappingError):
    """transformers' layer cannot be compared with the bundle's in this case: the row records `no reference` with
    this reason."""


class DifferentLayer(NoReference):
    """vLLM's and transformers' layers compute differently for this config: vLLM builds a dense MLP where transformers
    builds a MoE block (HunYuan's num_experts=1: vLLM's dense path), or transformers applies norms or whole modules
    vLLM's layer does not build (a flag transformers' config lacks or ignores turns them off in vLLM: HY-V3's qk_norm,
    Step-3.5's head-wise attention gate g_proj)."""


class PartOfLayer(NoReference):
    """vLLM's layer is a part of transformers' layer (FalconH1's attention alone, its SSM mixer alone): there is no
    layer-level reference."""


def loader_rules(model_file: str | None = None, model_type: str | None = None) -> dict:
    """The rules map_weights applies for a layer of vLLM's `model_file` (a name in vllm/model_executor/models/)
    compared with transformers' `model_type`: `packed` (vLLM's merged parameter -> checkpoint parameters, in order:
    the file's own over the default most files share), `experts` (checkpoint names of gate, up, down), `renames`
    (transformers' checkpoint renames for the model_type, as (regex, replacement)), `fused` (transformers' fused
    expert tensor for gate+up and for down, from its checkpoint conversion), `converted` (transformers' other
    conversions of the model_type it applies exactly, EXACT_CONVERSIONS: its WeightConverter objects, matched and
    named by transformers' own code: HrmText's attn.gqkv_proj.weight chunked into gate_proj, q_proj, k_proj, v_proj;
    Kimi Linear's q/k/v_conv1d concatenated into conv1d), `mapper` (the file's WeightsMapper
    renames, checkpoint -> vLLM: [kind, checkpoint text, vLLM text]) and `head_interleaved` (fused q/k/v modules
    whose checkpoint rows [heads, 3, head_dim] the loader regroups to [3, heads, head_dim]), `rotary_permuted`
    (checkpoint modules whose weight rows the loader permutes in each head for a neox-style rotary: Llama 4's q_proj,
    k_proj) and `transformed` (parameter name -> the function of the checkpoint tensor vLLM's weight loader stores:
    neg_exp, the Mamba mixers' A = -exp(A_log)), `scaled` (module -> {when: config flag, factor: expression of config
    fields} its load_weights multiplies the weight by: LongCat-Flash's MLA norms; loaded_scales gives the factors a
    config turns on, the caller's `loaded_scale`); the caller adds `w13_interleaved` (w13_interleaved(layer): vLLM's
    expert tensors whose rows hold gate and up interleaved) and `unapplied` (vLLM's modules of the layer its forward
    never applies: parity.modules_unapplied)."""
    table = json.loads(LOADER_RULES.read_text())
    own = table["files"].get(model_file or "", {})
    rules = {"packed": {**table["default"]["packed"], **own.get("packed", {})},
             "experts": dict(own.get("experts") or table["default"]["experts"]), "renames": [], "fused": {},
             "converted": [],
             "mapper": own.get("mapper", []), "head_interleaved": own.get("head_interleaved", []),
             "rotary_permuted": own.get("rotary_permuted", []), "scaled": own.get("scaled", {}),
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
            elif type(t).__name__ == "WeightConverter" and len(t.operations) == 1 and (
                    type(t.operations[0]).__name__ in EXACT_CONVERSIONS
                    and t.operations[0].num_shards_attribute is None):
                rules["converted"].append(t)
    return rules


def _rename(name: str, renames: list) -> str:
    """transformers' name of a checkpoint parameter of one layer (renames apply to the model-level key)."""
    full = "model.layers.0." + name
    for pattern, repl in renames:
        full = re.sub(pattern, repl, full)
    return _in_layer(full)


def _in_layer(full: str) -> str:
    return re.sub(r"^.*?layers\.\d+\.", "", full, count=1)


def _converted(name: str, rules: dict):
    """(transformers' conversion, the runtime names it gives, the index of its source that matched) for checkpoint
    parameter `name` of one layer, where one of the rules' `converted` takes it, as transformers' loader names them
    (core_model_loading.rename_source_key): the renames, then the first conversion whose source matches, each of its
    targets in place of the first; else None."""
    full = "model.layers.0." + name
    for pattern, repl in rules["renames"]:
        full = re.sub(pattern, repl, full)
    for conv in rules.get("converted", ()):
        renamed, source = conv.rename_source_key(full)
        if source is not None:
            prefix, _, suffix = renamed.partition(conv.target_patterns[0])
            names = [_in_layer(prefix + t + suffix) for t in conv.target_patterns]
            return conv, names, conv.source_patterns.index(source)
    return None


def _apply_conversion(vname: str, t, hname: str, rules: dict, hf_shapes: dict, out: dict, joined: dict) -> bool:
    """Whether transformers' load conversion of vLLM parameter `vname`'s checkpoint tensor `t` (by its own name or a
    name vLLM's WeightsMapper renames) gives transformers' parameters: a split's parts go to `out`; a part of a join
    to `joined` (its target -> (conversion, {source index: (vname, t, hname)})), joined once every part is there."""
    for name in dict.fromkeys([vname, *_from_vllm(vname, rules.get("mapper", []))]):
        found = _converted(name, rules)
        if found is None or not all(n in hf_shapes for n in found[1]):
            continue
        conv, names, index = found
        if type(conv.operations[0]).__name__ == "Chunk":
            out.update(zip(names, t.chunk(len(names), dim=conv.operations[0].dim)))
        else:
            joined.setdefault(names[0], (conv, {}))[1][index] = (vname, t, hname)
        return True
    return False


def _join(joined: dict, out: dict, pending: list) -> None:
    """transformers' joined parameters whose every part vLLM holds, concatenated in its sources' order; the parts of
    one with a part missing are pending as before."""
    import torch

    for target, (conv, parts) in joined.items():
        if len(parts) == len(conv.source_patterns):
            out[target] = torch.cat([parts[i][1] for i in range(len(parts))], dim=conv.operations[0].dim)
        else:
            pending.extend(parts.values())


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


# Each function a vLLM weight loader applies to a checkpoint tensor, forward.
LOADED = {"neg_exp": lambda t: -t.float().exp()}


def into_loaded_image(vllm_state: dict, rules: dict) -> list[str]:
    """vLLM's parameters that its loader stores as a function of the checkpoint's tensor (rules' `transformed`),
    overwritten in place by that function of their current values, which are the checkpoint's then: the example fills
    them as any weight (Mamba2's A with 1.0, Mamba's with entries of either sign), outside the function's image
    (A = -exp(A_log) < 0), where undoing it gives transformers NaN (log of a positive A). The names written."""
    import torch

    written = []
    with torch.no_grad():
        for vname, t in vllm_state.items():
            op = rules.get("transformed", {}).get(vname.rpartition(".")[2])
            if op:
                t.copy_(LOADED[op](t).to(t.dtype))
                written.append(vname)
    return written


def loaded_scales(scaled: dict, cfg: dict) -> dict:
    """{module: factor} of rules' `scaled` whose flag the config (`cfg`, its fields) turns on, the factor's expression
    evaluated over the config's fields."""
    return {m: float(eval(s["factor"], {"__builtins__": {}}, dict(cfg))) for m, s in scaled.items() if cfg.get(s["when"])}


def untransformed(vname: str, t, rules: dict):
    """The checkpoint tensor of vLLM parameter `vname`, where vLLM's loader stored a function of it (rules'
    `transformed`, by the parameter's own name; `loaded_scale`, module -> factor, by its module's name: the weight
    divided by it)."""
    op = rules.get("transformed", {}).get(vname.rpartition(".")[2])
    module, _, leaf = vname.rpartition(".")
    scale = rules.get("loaded_scale", {}).get(module.rpartition(".")[2]) if leaf == "weight" else None
    t = t / scale if scale else t
    return UNDO_LOADED[op](t) if op else t


def w13_interleaved(layer) -> list[str]:
    """vLLM's w13 parameters of `layer` (name -> for loader_rules' `w13_interleaved`) whose experts' activation takes
    gate and up interleaved (W13_INTERLEAVED: gpt-oss's swigluoai)."""
    return sorted(f"{m_name}.{n}".lstrip(".") for m_name, m in layer.named_modules()
                  if getattr(getattr(m, "activation", None), "value", None) in W13_INTERLEAVED
                  for n, _ in m.named_parameters() if n.rpartition(".")[2].startswith("w13_"))


def uninterleaved(t):
    """vLLM's w13 rows (dim 1) interleaved g0 u0 g1 u1 ... as gate then up, the layout map_weights takes."""
    import torch

    return torch.cat([t[:, 0::2], t[:, 1::2]], dim=1)


def regroup_heads(t, num_heads: int, to_vllm: bool):
    """Rows [heads, 3, head_dim] (the checkpoint's) <-> [3, heads, head_dim] (vLLM's), as vLLM's loader regroups a
    fused q/k/v weight or bias (GPT-NeoX's, Bloom's _repack_qkv)."""
    groups = (num_heads, 3) if to_vllm else (3, num_heads)
    return t.reshape(*groups, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def permute_rotary(t, head_dim: int, to_vllm: bool):
    """The rows of each head: interleaved pairs [head_dim/2, 2] (the checkpoint's, for transformers' complex rotary)
    <-> halves [2, head_dim/2] (vLLM's, for its neox-style rotary), as Llama 4's loader permutes q_proj and k_proj
    (permute_qk_weight_for_rotary)."""
    groups = (head_dim // 2, 2) if to_vllm else (2, head_dim // 2)
    return t.reshape(-1, *groups, *t.shape[1:]).transpose(1, 2).reshape(t.shape)


def rotary_unpermuted(ckpt_name: str, t, rules: dict, head_dim: int | None):
    """The checkpoint's rows of weight `ckpt_name`, where vLLM's loader permuted them (rules' rotary_permuted)."""
    module, _, leaf = ckpt_name.rpartition(".")
    if leaf != "weight" or not set(module.split(".")) & set(rules.get("rotary_permuted", [])):
        return t
    if not head_dim:
        raise MappingError(f"vLLM parameter {ckpt_name} {tuple(t.shape)}: vLLM's loader permutes its rows in each "
                           "head for its rotary; map_weights needs head_dim (the config's)")
    return permute_rotary(t, head_dim, to_vllm=False)


def map_weights(vllm_state: dict, hf_shapes: dict[str, tuple], control: bool = False, rules: dict | None = None,
                layout: dict | None = None, transposed: frozenset = frozenset(), num_heads: int | None = None,
                zeroed: list | None = None, buffers: dict | None = None, head_dim: int | None = None) -> dict:
    """transformers' state dict (name -> tensor) from vLLM's, for one decoder layer, by vLLM's loader rules
    (loader_rules(); default: the rules most vLLM model files share, no renames). `hf_shapes` names every
    transformers parameter and its shape; `layout` its fused experts' layouts (hf_experts_layout); `transposed` its
    weights stored [in, out] (hf_transposed: GPT-2's Conv1D), mapped in vLLM's [out, in] and transposed last;
    `num_heads` the attention heads, for the fused q/k/v rows vLLM's loader regroups (rules' head_interleaved);
    `head_dim` for the q/k rows it permutes in each head (rules' rotary_permuted). A parameter vLLM derives from
    the loaded ones after loading (rules' `derived`: MLA's W_UV and W_UK_T, from kv_b_proj) has no counterpart.
    control=True maps deliberately wrong: the gate and up halves swapped (a merged MLP's or the experts' w13);
    a layer without them gets k and v of its merged qkv swapped; one with neither, the rows of its first matrix
    rolled by one.
    A vLLM parameter whose name transformers lacks takes the one unclaimed transformers parameter of its shape one
    module down or up (AXK1's post_mlp_layernorm, under mlp in transformers). A vLLM bias with no counterpart whose
    weight maps (a LayerNorm with bias where transformers' has none: Dbrx's norm_1) is listed in `zeroed`, where one
    is given: the caller zeroes it in vLLM's layer, which makes both compute the same; of a merged bias transformers
    holds for some parts only (Whisper's k_proj has none), those parts' rows are listed as (name, first, end). A vLLM parameter with no
    counterpart under a module vLLM's forward never applies (rules' `unapplied`: AXK1's post_mlp_layernorm of a dense
    layer) is left out. `buffers` names transformers'
    persistent buffers and their shapes: a vLLM parameter may map onto one (MiniMax-M2's e_score_correction_bias, a
    parameter in vLLM, a buffer in transformers); none needs a vLLM weight.
    Raises PartOfLayer where vLLM's layer is one part of transformers' (all of vLLM's parameters map under one of
    transformers' submodules, or map and leave whole submodules of transformers' without a weight), else
    MappingError naming the parameter on each side that has no counterpart."""
    kw = dict(control=control, rules=rules or loader_rules(), layout=layout, transposed=transposed,
              num_heads=num_heads, zeroed=zeroed, head_dim=head_dim)
    buffers = buffers or {}
    try:
        return _map_weights(vllm_state, hf_shapes, buffers=buffers, **kw)
    except NoReference:
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
        _raise_if_dense_against_experts(vllm_state, hf_shapes, e)
        raise


def _map_weights(vllm_state: dict, hf_shapes: dict[str, tuple], control: bool, rules: dict, layout, transposed,
                 num_heads, zeroed, buffers: dict, head_dim) -> dict:
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
    joined: dict = {}  # transformers' parameters its load conversion joins from several checkpoint tensors
    for vname, t in vllm_state.items():
        if NO_COUNTERPART.search(vname) or vname.rpartition(".")[2] in rules.get("derived", ()):
            continue
        t = _checkpoint_tensor(vname, t, rules, num_heads, head_dim)
        expert = EXPERT_TENSOR.match(vname)
        if expert is not None:
            if not _map_experts(vname, t, expert, rules, hf_shapes, layout or {}, out, swap_gate_up, orient):
                square.append((vname, t, expert))
            continue
        packed = _packed_parts(vname, rules["packed"])
        if packed is not None and _merged_bias_unheld(vname, packed[1], rules, hf_shapes):
            pending.append((vname, t, _hf_name(vname, rules, hf_shapes)))
            continue
        if packed is not None and zeroed is not None and (held := _merged_bias_part_held(vname, t, packed[1], rules,
                                                                                           hf_shapes, zeroed)):
            out.update(held)
            continue
        if packed is not None:
            parts, t, swapped_kv = _split_packed(vname, t, packed[1], rules, hf_shapes, control, swap_gate_up,
                                                 head_dim)
            applied |= swapped_kv
            if parts is not None:
                out.update(parts)
                continue
        hname = _hf_name(vname, rules, hf_shapes)
        if hname not in hf_shapes:
            if not _apply_conversion(vname, t, hname, rules, hf_shapes, out, joined):
                pending.append((vname, t, hname))
            continue
        out[hname] = t
    _join(joined, out, pending)
    for vname, t, expert in square:
        if not _map_experts(vname, t, expert, rules, hf_shapes, layout or {}, out, swap_gate_up, orient):
            raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} is square: whether transformers' fused tensor "
                               "holds it transposed cannot be told by shape, and no sibling tensor tells it")
    _resolve_pending(pending, out, hf_shapes, rules, zeroed)
    if control and not applied:
        first = next(n for n, t in out.items() if t.dim() == 2)
        out[first] = out[first].roll(1, dims=0)
    out = {n: t.t() if n in transposed else t for n, t in out.items()}
    _check_complete(out, required, final_shapes, vllm_state)
    return out


def _checkpoint_tensor(vname: str, t, rules: dict, num_heads, head_dim):
    """The checkpoint's tensor of vLLM parameter `vname`: the loader's transform undone, its rows regrouped and
    permuted back."""
    t = rotary_unpermuted(vname, untransformed(vname, t, rules), rules, head_dim)
    if vname in rules.get("w13_interleaved", ()):
        t = uninterleaved(t)
    if head_interleaved(vname, rules):
        if not num_heads:
            raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)}: vLLM's loader regroups its rows by "
                               "head; map_weights needs num_heads (the config's num_attention_heads)")
        t = regroup_heads(t, num_heads, to_vllm=False)
    return t


def _split_packed(vname: str, t, parts: list, rules: dict, hf_shapes: dict, control: bool, swap_gate_up: bool,
                  head_dim):
    """(transformers' parameters -> rows, t, whether the control's k/v swap was applied) for vLLM's merged parameter
    `vname` holding checkpoint `parts`; (None, t, False) where transformers keeps it merged, as vLLM does (t rolled by
    half for the control's gate/up swap)."""
    names = [_hf_name(n, rules, hf_shapes) for n in parts]
    gate_up = _is_gate_up(parts, rules)
    if all(n in hf_shapes for n in names):
        chunks = [rotary_unpermuted(p, c, rules, head_dim)
                  for p, c in zip(parts, t.split(_split_sizes(names, hf_shapes, t.shape[0]), dim=0))]
        swapped_kv = False
        if swap_gate_up and gate_up:
            chunks = chunks[::-1]
        elif control and not swap_gate_up and len(chunks) == 3 and chunks[1].shape == chunks[2].shape:
            chunks, swapped_kv = [chunks[0], chunks[2], chunks[1]], True
        return dict(zip(names, chunks)), t, swapped_kv
    if _hf_name(vname, rules, hf_shapes) not in hf_shapes:
        tried = [n for n in names if n not in hf_shapes] + [_hf_name(vname, rules, hf_shapes)]
        raise _no_counterpart(vname, t, tried, hf_shapes)
    if swap_gate_up and gate_up:
        t = t.roll(t.shape[0] // 2, dims=0)
    return None, t, False


def _resolve_pending(pending: list, out: dict, hf_shapes: dict, rules: dict, zeroed) -> None:
    """Each vLLM parameter whose transformers name is missing takes the one unclaimed transformers parameter of its
    shape one module down or up; else, a bias whose weight maps is listed in `zeroed` (where given); else, one of a
    module vLLM's forward never applies (rules' `unapplied`) is left out."""
    for vname, t, hname in pending:
        near = [h for h in hf_shapes if h not in out and tuple(hf_shapes[h]) == tuple(t.shape) and (
            h.endswith("." + hname) and h.count(".") == hname.count(".") + 1
            or hname.endswith("." + h) and hname.count(".") == h.count(".") + 1)]
        if len(near) == 1:
            out[near[0]] = t
        elif zeroed is not None and vname.endswith(".bias") and _weight_mapped(vname, rules, hf_shapes, out):
            zeroed.append(vname)
        elif vname.split(".", 1)[0] in rules.get("unapplied", ()):
            continue
        else:
            raise _no_counterpart(vname, t, [hname], hf_shapes)


def _merged_bias_unheld(vname: str, parts: list, rules: dict, hf_shapes: dict) -> bool:
    """Whether `vname` is a merged bias transformers holds neither merged nor in parts (PhiMoE's qkv_proj.bias, which
    vLLM always builds, where the config's attention_bias is false): _resolve_pending's bias rule decides it."""
    return vname.endswith(".bias") and not any(
        _hf_name(n, rules, hf_shapes) in hf_shapes for n in [*parts, vname])


def _merged_bias_part_held(vname: str, t, parts: list, rules: dict, hf_shapes: dict, zeroed: list) -> dict:
    """transformers' biases -> rows for a merged bias transformers holds for some of its parts only (Whisper's
    qkv_proj.bias: q_proj and v_proj have a bias, k_proj none; vLLM's loader leaves that part zero), split by the
    parts' weights' rows; each part transformers lacks goes to `zeroed` as (vname, first row, end row). {} where
    transformers holds every part's bias, or none, or the weights do not tell the rows."""
    if not vname.endswith(".bias"):
        return {}
    names = [_hf_name(n, rules, hf_shapes) for n in parts]
    weights = [_hf_name(n[: -len("bias")] + "weight", rules, hf_shapes) for n in parts]
    held = [n in hf_shapes for n in names]
    if all(held) or not any(held) or not all(w in hf_shapes for w in weights):
        return {}
    rows = [hf_shapes[w][0] for w in weights]
    if sum(rows) != t.shape[0]:
        return {}
    out, start = {}, 0
    for name, n, is_held in zip(names, rows, held):
        if is_held:
            out[name] = t[start:start + n]
        else:
            zeroed.append((vname, start, start + n))
        start += n
    return out


def _weight_mapped(bias: str, rules: dict, hf_shapes: dict, out: dict) -> bool:
    """Whether the weight of vLLM's `bias` was mapped: merged or each of the checkpoint parts it holds."""
    weight = bias[: -len("bias")] + "weight"
    packed = _packed_parts(weight, rules["packed"])
    parts = [_hf_name(n, rules, hf_shapes) for n in (packed[1] if packed else [])]
    return _hf_name(weight, rules, hf_shapes) in out or bool(parts) and all(n in out for n in parts)


def _check_complete(out: dict, required: set, hf_shapes: dict, vllm_state: dict) -> None:
    """Every required transformers parameter mapped, each of its shape: PartOfLayer where vLLM's parameters fill some
    of transformers' submodules and none of the others, else MappingError naming the first parameter left out."""
    missing = sorted(required - set(out))
    held, lacking = {n.split(".", 1)[0] for n in out}, {n.split(".", 1)[0] for n in missing}
    if missing and out and not held & lacking:
        raise PartOfLayer(f"vLLM's layer is a part of transformers' layer: its parameters map into transformers' "
                          f"{', '.join(sorted(held))} and none into {', '.join(sorted(lacking))}: no layer-level "
                          "reference")
    if missing and all(len(hf_shapes[n]) == 1 and "norm" in n.rpartition(".")[0] and _norms_absent(n, out)
                       for n in missing):
        raise DifferentLayer(f"transformers' layer applies {', '.join(n.rpartition('.')[0] for n in missing)}, which "
                             "vLLM's layer does not build (for this config it skips that normalisation): they compute "
                             "differently")
    modules = sorted({n.rpartition(".")[0] for n in missing})
    if missing and all("norm" not in m and not any(o.startswith(m + ".") for o in out) for m in modules):
        raise DifferentLayer(f"transformers' layer applies {', '.join(modules)}, which vLLM's layer does not build for "
                             "this config (every vLLM parameter has its counterpart; these modules have none): they "
                             "compute differently")
    if missing:
        raise MappingError(f"transformers parameter {missing[0]} {tuple(hf_shapes[missing[0]])} gets no vLLM "
                           f"weight ({len(missing)} in all); vLLM has {sorted(vllm_state)[:8]}")
    for n, t in out.items():
        if tuple(t.shape) != tuple(hf_shapes[n]):
            raise MappingError(f"transformers parameter {n} {tuple(hf_shapes[n])} gets a vLLM weight of shape "
                               f"{tuple(t.shape)}")


def _raise_if_dense_against_experts(vllm_state: dict, hf_shapes: dict, error: MappingError) -> None:
    """DifferentLayer where vLLM's layer holds no experts and transformers' does, and vLLM has parameters in the module
    transformers' experts are in: vLLM built its dense MLP there."""
    experts = sorted({h.split(".experts.", 1)[0] for h in hf_shapes if ".experts." in h})
    if (experts and not any(EXPERT_TENSOR.match(n) or ".experts." in n for n in vllm_state)
            and any(n.startswith(e + ".") for n in vllm_state for e in experts)):
        raise DifferentLayer(f"vLLM's layer builds a dense MLP where transformers' builds a MoE block "
                             f"({', '.join(e + '.experts' for e in experts)}): for this config they compute "
                             f"differently ({error})") from error


def _norms_absent(norm_weight: str, out: dict) -> bool:
    """Whether the module holding transformers' norm `norm_weight` (self_attn for self_attn.k_norm.weight) gets no
    norm of vLLM's at all: vLLM's layer skips that normalisation there (one norm of several left out is a mapping
    error)."""
    parent = norm_weight.rsplit(".", 2)[0] + "." if norm_weight.count(".") > 1 else ""
    return not any(o.startswith(parent) and "norm" in o.rpartition(".")[0] for o in out)


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
        w = _unread_experts_padded(w, hf_shapes[fused])
        if tuple(hf_shapes[fused]) != tuple(w.shape):
            raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} does not fit transformers' "
                               f"{fused} {tuple(hf_shapes[fused])}")
        out[fused] = w.contiguous()
        return True
    if _map_flattened(t, which, leaf, base, ckpt, hf_shapes, out, swap):
        return True
    first = _rename(f"{expert['base']}.0.{ckpt[0]}.{leaf}", rules["renames"])
    if first not in hf_shapes:
        raise MappingError(f"vLLM parameter {vname} {tuple(t.shape)} has no transformers counterpart ({fused} or {first})")
    for e in range(E):
        names = [_rename(f"{expert['base']}.{e}.{c}.{leaf}", rules["renames"]) for c in ckpt]
        chunks = list(t[e].split(_split_sizes(names, hf_shapes, t.shape[1]), dim=0))
        out.update(zip(names, chunks[::-1] if swap and len(chunks) == 2 else chunks))
    return True


def _unread_experts_padded(w, shape):
    """vLLM's fused expert tensor `w` [E, ...] where transformers' (`shape`) holds more experts of the same size: the
    extra ones NaN. transformers allocates rows for experts vLLM holds no weights for (LongCat-Flash's zero-computation
    experts: gate_up_proj over n_routed_experts + zero_expert_num; its forward routes them to an identity, reading no
    row); a layer that read them would give a non-finite output (a FAIL), never a silently wrong one."""
    import torch

    if len(shape) != w.dim() or shape[0] <= w.shape[0] or tuple(shape[1:]) != tuple(w.shape[1:]):
        return w
    return torch.cat([w, w.new_full((shape[0] - w.shape[0], *w.shape[1:]), float("nan"))])


def _map_flattened(t, which: str, leaf: str, base: str, ckpt: list, hf_shapes: dict, out: dict, swap: bool) -> bool:
    """vLLM's fused expert weight onto transformers' flattened experts: one 2-D tensor per checkpoint name under the
    experts module `base`, every expert's rows stacked, [E*F, H] (Dbrx's experts.mlp.w1, v1 and w2, the down
    projection transposed so); False where transformers has none."""
    names = [next((h for h, s in hf_shapes.items() if h.startswith(base + ".") and h.rsplit(".", 1)[-1] == c
                   and len(s) == 2), None) for c in ckpt]
    if leaf != "weight" or None in names:
        return False
    chunks = (t if which == "w13" else t.transpose(1, 2)).chunk(len(names), dim=1)  # each [E, F, H]
    out.update({n: c.reshape(-1, c.shape[-1]) for n, c in zip(names, chunks[::-1] if swap and len(chunks) == 2
                                                                  else chunks)})
    return True


def _interleave(a, b):
    """Rows of a and b alternating along dim 1: [E, 2I, ...] from two [E, I, ...]."""
    import torch

    return torch.stack([a, b], dim=2).flatten(1, 2)
