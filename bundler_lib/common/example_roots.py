"""What A6's invocation_example() needs beyond a symbol's own closure: data both A1 (which reaches it) and
A6 (which calls it) read, so that neither stage imports the other.

Roots are `file::Name` or `file::Class.method` (a method root keeps that method on every reached class and
reaches no class itself). A root with a trigger in `ROOT_TRIGGERS` applies only once the closure reaches the
trigger, the definition that needs it at run time.
"""

from __future__ import annotations

import ast

from bundler_lib.common import owner_parts
from bundler_lib.variant import defaults

DEFAULT_BACKEND = defaults()["attention_backend"]

# What the decoder-layer example calls or needs that a layer's own code does not reach (vLLM's loader and
# engine do): A1 takes these as extra roots of a decoder-layer bundle, or the example stops at that step.
# Seen on an H100 with a 0.26.0 bundle: without the process_weights_after_loading methods the MoE kernel
# is never built (`assert self.moe_kernel is not None`); without the attention backend's classes the attention
# backend cannot be selected (its qualname is imported at run time).
DECODER_LAYER_ROOTS = (
    "vllm/model_executor/layers/quantization/base_config.py::QuantizeMethodBase.process_weights_after_loading",
    "vllm/model_executor/layers/linear.py::UnquantizedLinearMethod.process_weights_after_loading",
    "vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py::"
    "UnquantizedFusedMoEMethod.process_weights_after_loading",
    "vllm/model_executor/layers/attention/attention.py::Attention.process_weights_after_loading",
    "vllm/v1/worker/workspace.py::WorkspaceManager",
    "vllm/v1/worker/workspace.py::_manager",
)

_BACKENDS = "vllm/v1/attention/backends"
# Per variant `attention_backend` (variant.py), the backend's definitions the example needs: its backend and impl
# classes, and what step 6 of example/decoder.py builds the attention metadata with. TRITON_ATTN: the metadata class
# and its launch constants (the fields are filled by hand). FLEX_ATTENTION and ROCM_ATTN: the backend's own metadata
# builder (from get_builder_cls), given the layer's KV cache spec and a CommonAttentionMetadata, as vLLM's model
# runner does; ROCM_ATTN's cache also has its own shape (get_kv_cache_shape) and views (PagedAttention.split_kv_cache).
BACKEND_ROOTS = {
    "TRITON_ATTN": tuple(f"{_BACKENDS}/triton_attn.py::{n}" for n in (
        "TritonAttentionBackend", "TritonAttentionImpl", "TritonAttentionMetadata", "MIN_LAUNCH_GRID_SIZE_2D",
        "NUM_PAR_SOFTMAX_SEGMENTS")),
    # V heads of their own size (`head_size_v`): TRITON_ATTN's subclasses, TRITON_ATTN's metadata
    "TRITON_ATTN_DIFFKV": tuple(f"{_BACKENDS}/triton_attn_diffkv.py::{n}" for n in (
        "TritonAttentionDiffKVBackend", "TritonAttentionDiffKVImpl")) + tuple(
        f"{_BACKENDS}/triton_attn.py::{n}" for n in (
            "TritonAttentionMetadata", "MIN_LAUNCH_GRID_SIZE_2D", "NUM_PAR_SOFTMAX_SEGMENTS")),
    "FLEX_ATTENTION": tuple(f"{_BACKENDS}/flex_attention.py::{n}" for n in (
        "FlexAttentionBackend", "FlexAttentionImpl", "FlexAttentionBackend.get_builder_cls",
        "FlexAttentionMetadataBuilder.build")) + (
        "vllm/v1/attention/backend.py::CommonAttentionMetadata",
        "vllm/model_executor/layers/attention/attention.py::Attention.get_kv_cache_spec"),
    "ROCM_ATTN": tuple(f"{_BACKENDS}/rocm_attn.py::{n}" for n in (
        "RocmAttentionBackend", "RocmAttentionImpl", "RocmAttentionBackend.get_builder_cls",
        "RocmAttentionBackend.get_kv_cache_shape", "RocmAttentionMetadataBuilder.build")) + (
        "vllm/v1/attention/ops/paged_attn.py::PagedAttention.split_kv_cache",
        "vllm/v1/attention/backend.py::CommonAttentionMetadata",
        "vllm/model_executor/layers/attention/attention.py::Attention.get_kv_cache_spec"),
    # an MLA-only layer (decode only, example/mla.py): the backend and impl, the MLA metadata the example fills by
    # hand, MLAAttention's post-load step (W_UK_T, W_UV from kv_b_proj) and the prefill selector it stands in for
    "TRITON_MLA": tuple(f"{_BACKENDS}/mla/triton_mla.py::{n}" for n in ("TritonMLABackend", "TritonMLAImpl")) + tuple(
        f"vllm/model_executor/layers/attention/mla_attention.py::{n}" for n in (
            "MLACommonMetadata", "MLACommonDecodeMetadata", "MLAAttention.process_weights_after_loading")) + (
        f"{_BACKENDS}/mla/prefill/selector.py::get_mla_prefill_backend",),
}
MLA_BACKEND = "TRITON_MLA"


def decoder_layer_roots(attention_backend: str) -> tuple[str, ...]:
    """The decoder-layer example's extra roots with the variant's attention backend."""
    return DECODER_LAYER_ROOTS + BACKEND_ROOTS[attention_backend]


# On several GPUs (a variant with tp or ep > 1) the example makes vLLM's parallel state itself: one GroupCoordinator
# per group over torch.distributed (example/distributed.py), as initialize_model_parallel lays them out on one node.
# The engine's init_distributed_environment / initialize_model_parallel are not roots: they reach elastic EP, stateless
# groups and the TCP store, which a layer on one node never uses.
PARALLEL_ROOTS = ("vllm/distributed/parallel_state.py::GroupCoordinator",)

ATTENTION = "vllm/model_executor/layers/attention/attention.py::Attention"
MLA_ATTENTION = "vllm/model_executor/layers/attention/mla_attention.py::MLAAttention"


def backend_trigger(attention_backend: str) -> str:
    """The definition whose reach makes a backend's roots apply: MLAAttention for the MLA backend, else `Attention`."""
    return MLA_ATTENTION if attention_backend == MLA_BACKEND else ATTENTION


# vLLM's weight loader checks modules against `Attention` (isinstance, layerwise reload) and builds none
_LOADER = "vllm/model_executor/model_loader/"


def mla_only(reached: set[str], edges) -> bool:
    """Whether a closure (its `file::Name` definitions; `edges`: (referrer, referred) pairs of them) reaches vLLM's
    MLAAttention and builds no `Attention`: none of its definitions but the model loader's refers to `Attention`
    (DeepseekV2Eagle3DecoderLayer reaches it only through the loader's isinstance checks). No backend but an MLA
    one builds such a layer; DeepseekV2's layer, whose own code builds either, keeps its standard attention."""
    return MLA_ATTENTION in reached and not any(dst == ATTENTION and not src.startswith(_LOADER)
                                                for src, dst in edges)
# The backend classes are looked up by qualname when an `Attention` layer is built: a layer without one (MLA,
# linear attention, state-space) needs none of them. A layer that never reads the tp group needs no coordinator.
# What the example's recurrent state (example/recurrent_state.py) calls, as vLLM's engine does: each state layer's
# get_state_shape/get_state_dtype (the engine sizes the cache with them; the layer's own code may not call them),
# the launch metadata of the causal-conv1d kernel, which the mamba metadata builder computes (the builder itself
# needs the scheduler's batch), and the selective-state-update backend the model runner initializes (vLLM's default,
# Triton). Each applies only where the closure reaches what needs it.
_MAMBA_BASE = "vllm/model_executor/layers/mamba/abstract.py::MambaBase"
_SSU = "vllm/model_executor/layers/mamba/ops/ssu_dispatch.py"
RECURRENT_STATE_TRIGGERS = {
    f"{_MAMBA_BASE}.get_state_shape": _MAMBA_BASE,
    f"{_MAMBA_BASE}.get_state_dtype": _MAMBA_BASE,
    "vllm/v1/attention/backends/utils.py::compute_causal_conv1d_metadata": _MAMBA_BASE,
    f"{_SSU}::TritonSSUBackend": f"{_SSU}::get_mamba_ssu_backend",
}
RECURRENT_STATE_ROOTS = tuple(RECURRENT_STATE_TRIGGERS)
ROOT_TRIGGERS = {**{r: backend_trigger(b) for b, roots in BACKEND_ROOTS.items() for r in roots},
                 **RECURRENT_STATE_TRIGGERS,
                 **{r: "vllm/distributed/parallel_state.py::get_tp_group" for r in PARALLEL_ROOTS}}


# What the decoder-layer example builds a layer from and passes its forward, by parameter name (example/decoder.py).
INIT_INPUTS = ("vllm_config", "config", "hf_config", "text_config", "cache_config", "quant_config", "prefix",
               "layer_idx", "layer_id", "model_config", "parallel_config", "rope_parameters")
CONFIG_INPUTS = ("vllm_config", "config", "hf_config", "text_config")
FORWARD_INPUTS = ("positions", "position_ids", "hidden_states", "x", "residual")


def layer_signature(cls: ast.AST | None, find_class=None, module: ast.Module | None = None) -> dict | None:
    """The parameters after `self` of a class's `__init__` and `forward` (A1 records it as `root_signature`):
    {method: {"required": [...], "optional": [...], "annotations": {param: source text}}}; None for a non-class.
    `__init__` also has "choices" ({param: [values]}, `_literal_choices`) where it passes a str on to a Literal;
    `__init__` has "layer_lists" ({param: class name}, `_layer_lists`) where it takes a list of decoder layers (a
    layer stack; A1 qualifies each name as `file::Name`);
    `forward` has "stacks" ({param: {"count": field, "index": field}}, `_input_stacks`) for a stacked input, and
    "enabled_by" ({param: config key}, `_config_enabled_inputs`, read in `module`, the class's own module) for an
    optional input the model passes where the config enables the part that uses it, and "reads" ({param: config
    key}, owner_parts.forward_reads) for an input the layer hands to a part built with that config width first.
    Either method has "owner_parts" ({param: part}, owner_parts.py) for a required input the model (a class of
    `module`) passes as its own attribute, built as the model builds it (A1 qualifies each part's names).
    A method the class inherits is its nearest base's (`find_class(name, cls)`: the ClassDef the base name `name`
    that class `cls` names resolves to, or None), else absent."""
    if not isinstance(cls, ast.ClassDef):
        return None
    out: dict = {}
    fns: dict = {}
    todo, seen = [cls], set()
    while todo and len(out) < 2:
        c = todo.pop(0)
        if id(c) in seen:
            continue
        seen.add(id(c))
        for fn in c.body:
            if (isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in ("__init__", "forward")
                    and fn.name not in out):
                out[fn.name] = _parameters(fn.args)
                fns[fn.name] = (fn, c)
                choices = _literal_choices(fn, c, find_class) if fn.name == "__init__" else {}
                if choices:
                    out[fn.name]["choices"] = choices
                stack = _layer_lists(fn, c, find_class) if fn.name == "__init__" else {}
                if stack:
                    out[fn.name]["layer_lists"] = stack
        if find_class is not None:
            bases = [b.id if isinstance(b, ast.Name) else b.attr for b in c.bases
                     if isinstance(b, (ast.Name, ast.Attribute))]
            todo += [k for k in (find_class(b, c) for b in bases) if isinstance(k, ast.ClassDef)]
    stacks = _input_stacks(fns["__init__"][0], *fns["forward"], find_class) if len(fns) == 2 else {}
    if stacks:
        out["forward"]["stacks"] = stacks
    enabled = _config_enabled_inputs(fns["__init__"][0], fns["forward"][0], module) if len(fns) == 2 else {}
    if enabled:
        out["forward"]["enabled_by"] = enabled
    if len(fns) == 2:
        skip = {"__init__": set(INIT_INPUTS) | set(out["__init__"].get("layer_lists") or {}),
                "forward": set(FORWARD_INPUTS)}
        want = {m: [p for p in out[m]["required"] if p not in skip[m]] for m in skip}
        parts = owner_parts.owner_parts(cls.name, want, module)
        for method, found in parts.items():
            out[method]["owner_parts"] = found
        reads = {p: k for p, k in owner_parts.forward_reads(fns["__init__"][0], *fns["forward"],
                                                             parts.get("__init__") or {}).items()
                 if p not in FORWARD_INPUTS}
        if reads:
            out["forward"]["reads"] = reads
    return out


def _config_enabled_inputs(init: ast.FunctionDef, fwd: ast.FunctionDef, module: ast.Module | None) -> dict:
    """{input: config key} for each forward input whose default is None that a loop over layers in the layer's
    module passes by name (`for i, layer in enumerate(layers): layer(..., per_layer_input=x)`) and that the forward
    uses under an `if` reading a part (`self.<part>`) which `__init__` builds under an `if` reading one config key
    (`config.<key>`, or `self.<attr>` set from `config.<key>` or `getattr(config, "<key>", ...)`): Gemma4's
    `per_layer_input`, whose gate exists only where `hidden_size_per_layer_input > 0`."""
    a = fwd.args
    positional = a.posonlyargs + a.args
    defaults = list(zip(positional[len(positional) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs,
                                                                                               a.kw_defaults))
    optional = {p.arg for p, d in defaults if isinstance(d, ast.Constant) and d.value is None}
    if not optional or module is None:
        return {}
    passed = set()
    for loop in ast.walk(module):
        if isinstance(loop, (ast.For, ast.AsyncFor)):
            items = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
            passed |= {k.arg for st in loop.body for c in ast.walk(st)
                       if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in items
                       for k in c.keywords if k.arg in optional
                       and not (isinstance(k.value, ast.Constant) and k.value.value is None)}
    if not passed:
        return {}
    configs = {p.arg for p in init.args.args + init.args.kwonlyargs if p.arg in CONFIG_INPUTS}

    def config_key(e: ast.AST) -> str | None:
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id in configs:
            return e.attr
        if (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "getattr" and len(e.args) >= 2
                and isinstance(e.args[0], ast.Name) and e.args[0].id in configs
                and isinstance(e.args[1], ast.Constant) and isinstance(e.args[1].value, str)):
            return e.args[1].value
        return None

    from_config = {_self_attr(st.targets[0]): config_key(st.value) for st in ast.walk(init)
                   if isinstance(st, ast.Assign) and len(st.targets) == 1 and _self_attr(st.targets[0])
                   and config_key(st.value)}

    def keys_read(test: ast.AST) -> set:
        return {k for e in ast.walk(test) for k in (config_key(e), from_config.get(_self_attr(e))) if k}

    built_under = {}
    for cond in ast.walk(init):
        keys = keys_read(cond.test) if isinstance(cond, ast.If) else set()
        if len(keys) == 1:
            built_under.update({_self_attr(st.targets[0]): next(iter(keys)) for b in cond.body for st in ast.walk(b)
                                if isinstance(st, ast.Assign) and len(st.targets) == 1 and _self_attr(st.targets[0])
                                and not (isinstance(st.value, ast.Constant) and st.value.value is None)})
    out = {}
    for cond in ast.walk(fwd):
        if not isinstance(cond, ast.If):
            continue
        names = {e.id for e in ast.walk(cond.test) if isinstance(e, ast.Name)} & passed
        keys = {built_under[p] for e in ast.walk(cond.test) if (p := _self_attr(e)) in built_under}
        if len(names) == 1 and len(keys) == 1:
            out[names.pop()] = keys.pop()
    return out


_LIST_TYPES = ("list", "List", "Sequence", "tuple", "Tuple")


def _layer_lists(fn: ast.FunctionDef, cls: ast.ClassDef, find_class) -> dict:
    """{param: class name} for each `__init__` parameter annotated as a list of one class that is a decoder layer
    (`list[X]`, `Sequence[X]`; X found through `find_class`, by `is_decoder_layer`): the layers a layer stack runs,
    which vLLM's model builds and hands it (Gemma4's Self/CrossDecoderLayers: `decoder_layers: list[Gemma4DecoderLayer]`)."""
    out: dict = {}
    for a in fn.args.args + fn.args.kwonlyargs:
        ann = a.annotation
        if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
            ann = ast.parse(ann.value, mode="eval").body   # a quoted annotation
        if not (isinstance(ann, ast.Subscript) and ast.unparse(ann.value).split(".")[-1] in _LIST_TYPES
                and isinstance(ann.slice, ast.Name)):
            continue
        elem = find_class(ann.slice.id, cls) if find_class is not None else None
        if isinstance(elem, ast.ClassDef) and is_decoder_layer(elem.name, "class", layer_signature(elem, find_class)):
            out[a.arg] = ann.slice.id
    return out


def is_layer_stack(kind: str, signature: dict | None) -> bool:
    """A class built from the decoder layers it runs (`layer_lists`): A6 builds a few of them and runs the stack with
    the decoder-layer example's inputs."""
    return kind == "class" and bool(((signature or {}).get("__init__") or {}).get("layer_lists"))


def stack_layer_roots(signature: dict | None) -> list[str]:
    """The `file::Name` of each decoder-layer class a layer stack is built from (A1 qualified them)."""
    return sorted({v for v in (((signature or {}).get("__init__") or {}).get("layer_lists") or {}).values()
                   if "::" in v})


def owner_part_roots(signature: dict | None) -> list[str]:
    """The `file::Name` each model part a layer takes reads (`owner_parts`, A1 qualified them)."""
    return sorted({v for m in (signature or {}).values() if isinstance(m, dict)
                   for part in (m.get("owner_parts") or {}).values() for v in part["names"].values()
                   if v and "::" in v})


def _self_attr(e: ast.AST) -> str | None:
    """`x` of `self.x`, else None."""
    return e.attr if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self" else None


def _input_stacks(init: ast.FunctionDef, fwd: ast.FunctionDef, cls: ast.ClassDef, find_class) -> dict:
    """{input: {"count": field, "index": field}} for a forward input the layer hands whole to a method of a part
    that indexes it with an index the config gives: a stack over its first dimension, as many as the one count
    (`*num*`) the config gives the part (Gemma3n's AltUp: `self.altup.predict(hidden_states)` reads
    `hidden_states[self.altup_active_idx]`, the part built with `altup_active_idx=config.altup_active_idx,
    altup_num_inputs=config.altup_num_inputs`; the part keeps each such parameter as `self.<parameter>`)."""
    parts = {_self_attr(st.targets[0]): st.value for st in ast.walk(init)
             if isinstance(st, ast.Assign) and len(st.targets) == 1 and _self_attr(st.targets[0])
             and isinstance(st.value, ast.Call) and isinstance(st.value.func, ast.Name)}
    params = {a.arg for a in fwd.args.args[1:] + fwd.args.kwonlyargs}
    out: dict = {}
    for call in ast.walk(fwd):
        if not (find_class is not None and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and _self_attr(call.func.value) in parts and call.args and isinstance(call.args[0], ast.Name)
                and call.args[0].id in params):
            continue
        ctor = parts[_self_attr(call.func.value)]
        part = find_class(ctor.func.id, cls)
        method = next((f for f in getattr(part, "body", []) if isinstance(f, ast.FunctionDef)
                       and f.name == call.func.attr and len(f.args.args) > 1), None)
        if not isinstance(part, ast.ClassDef) or method is None:
            continue
        given = {k.arg: k.value.attr for k in ctor.keywords if k.arg and isinstance(k.value, ast.Attribute)
                 and isinstance(k.value.value, ast.Name) and k.value.value.id == "config"}
        x = method.args.args[1].arg
        index = {given[_self_attr(s.slice)] for s in ast.walk(method) if isinstance(s, ast.Subscript)
                 and isinstance(s.value, ast.Name) and s.value.id == x and _self_attr(s.slice) in given}
        counts = {f for k, f in given.items() if "num" in k.split("_")}
        if len(index) == 1 and len(counts) == 1:
            out[call.args[0].id] = {"count": counts.pop(), "index": index.pop()}
    return out


def _literal_choices(fn: ast.FunctionDef, cls: ast.ClassDef, find_class) -> dict:
    """{param: [values]} for each parameter of `__init__` annotated `Literal[...]` itself (vLLM 0.33.0's HrmText
    `stack_kind: Literal["L", "H"]`), and each `str` one that it passes on by the same name to a class whose own
    `__init__` annotates that parameter `Literal[...]` (0.26.0's HrmText `stack_kind: str`, passed to its
    attention's `stack_kind: Literal["L", "H"]`): the values the layer or its part accepts."""
    params = fn.args.args + fn.args.kwonlyargs
    strs = {a.arg for a in params if a.annotation is not None and ast.unparse(a.annotation) == "str"}
    out: dict = {a.arg: v for a in params if (v := _literal_values(a.annotation))}
    for call in ast.walk(fn):
        if find_class is None or not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        passed = {k.arg for k in call.keywords
                  if k.arg in strs and isinstance(k.value, ast.Name) and k.value.id == k.arg}
        part = find_class(call.func.id, cls) if passed else None
        init = next((f for f in getattr(part, "body", []) if isinstance(f, ast.FunctionDef) and f.name == "__init__"),
                    None) if isinstance(part, ast.ClassDef) else None
        for a in (init.args.args + init.args.kwonlyargs) if init else []:
            values = _literal_values(a.annotation) if a.arg in passed else None
            if values:
                out.setdefault(a.arg, values)
    return out


def _literal_values(annotation: ast.AST | None) -> list | None:
    """The values of a `Literal["a", "b"]` annotation, else None."""
    if not (isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) in ("Literal", "typing.Literal")):
        return None
    elts = annotation.slice.elts if isinstance(annotation.slice, ast.Tuple) else [annotation.slice]
    values = [e.value for e in elts if isinstance(e, ast.Constant)]
    return values if len(values) == len(elts) else None


def _parameters(a: ast.arguments) -> dict:
    positional = (a.posonlyargs + a.args)[1:]
    n_required = len(positional) - len(a.defaults)
    req = [x.arg for x in positional[:n_required]]
    opt = [x.arg for x in positional[n_required:]]
    for x, d in zip(a.kwonlyargs, a.kw_defaults):
        (req if d is None else opt).append(x.arg)
    ann = {x.arg: ast.unparse(x.annotation) for x in positional + a.kwonlyargs if x.annotation is not None}
    return {"required": req, "optional": opt, "annotations": ann}


def _builds_from_config(signature: dict | None) -> tuple[dict, dict] | None:
    """(__init__, forward) of a class built from a whole config with nothing else required that the example
    cannot give, whose forward takes `hidden_states`; else None."""
    init, fwd = (signature or {}).get("__init__"), (signature or {}).get("forward")
    if not init or not fwd:
        return None
    if not (set(init["required"]) & set(CONFIG_INPUTS)) or not set(init["required"]) <= set(INIT_INPUTS):
        return None
    return (init, fwd) if "hidden_states" in set(fwd["required"]) | set(fwd["optional"]) else None


def is_decoder_layer(symbol: str, kind: str, signature: dict | None = None) -> bool:
    """A6's `decoder_layer` template (example/core.py classify): a class named `*DecoderLayer`, or one whose
    signature is a decoder layer's (GPT-style blocks: BloomBlock, GPTJBlock, GPTNeoXLayer): built from a whole
    config (`_builds_from_config`), with a forward taking `positions`/`position_ids`. A block whose forward takes
    no positions (GPT2Block) is a decoder layer only once its closure reaches `Attention` (`is_block_candidate`;
    an MLP/MoE block has the same signature)."""
    if kind != "class":
        return False
    if symbol.endswith("DecoderLayer"):
        return True
    sig = _builds_from_config(signature)
    return sig is not None and bool((set(sig[1]["required"]) | set(sig[1]["optional"]))
                                    & {"positions", "position_ids"})


def is_block_candidate(symbol: str, kind: str, signature: dict | None = None) -> bool:
    """A class built from a whole config whose forward takes hidden_states but no positions: a decoder layer
    (GPT2Block) when its closure reaches `ATTENTION` (A1's graph), an MLP/MoE block otherwise."""
    return (kind == "class" and not is_decoder_layer(symbol, kind, signature)
            and _builds_from_config(signature) is not None)


def extra_roots(symbol: str, kind: str, signature: dict | None = None, world_size: int = 1,
                attention_backend: str = DEFAULT_BACKEND) -> tuple[list[str], dict[str, str]]:
    """(the roots A1 adds for the example of `symbol` (a `class` or `function`, with its `layer_signature`) on
    `world_size` GPUs with `attention_backend`, their triggers): a block candidate's roots all wait for `ATTENTION`;
    empty for most symbols."""
    parallel = list(PARALLEL_ROOTS) if world_size > 1 else []
    if is_layer_stack(kind, signature):
        return (stack_layer_roots(signature) + owner_part_roots(signature)
                + list(decoder_layer_roots(attention_backend) + RECURRENT_STATE_ROOTS) + parallel, dict(ROOT_TRIGGERS))
    if is_decoder_layer(symbol, kind, signature):
        return (owner_part_roots(signature) + list(decoder_layer_roots(attention_backend) + RECURRENT_STATE_ROOTS)
                + parallel, dict(ROOT_TRIGGERS))
    if is_block_candidate(symbol, kind, signature):
        roots = list(decoder_layer_roots(attention_backend)) + parallel
        return roots, {r: backend_trigger(attention_backend) for r in roots}
    return [], {}
