"""What A6's invocation_example() needs beyond a symbol's own closure: data both A1 (which reaches it) and
A6 (which calls it) read, so that neither stage imports the other.

Roots are `file::Name` or `file::Class.method` (a method root keeps that method on every reached class and
reaches no class itself). A root with a trigger in `ROOT_TRIGGERS` applies only once the closure reaches the
trigger, the definition that needs it at run time.
"""

from __future__ import annotations

import ast

# What the decoder-layer example calls or needs that a layer's own code does not reach (vLLM's loader and
# engine do): A1 takes these as extra roots of a decoder-layer bundle, or the example stops at that step.
# Seen on an H100 with a 0.26.0 bundle: without the process_weights_after_loading methods the MoE kernel
# is never built (`assert self.moe_kernel is not None`); without the TRITON_ATTN classes the attention
# backend cannot be selected (its qualname is imported at run time).
DECODER_LAYER_ROOTS = (
    "vllm/model_executor/layers/quantization/base_config.py::QuantizeMethodBase.process_weights_after_loading",
    "vllm/model_executor/layers/linear.py::UnquantizedLinearMethod.process_weights_after_loading",
    "vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py::"
    "UnquantizedFusedMoEMethod.process_weights_after_loading",
    "vllm/model_executor/layers/attention/attention.py::Attention.process_weights_after_loading",
    "vllm/v1/attention/backends/triton_attn.py::TritonAttentionBackend",
    "vllm/v1/attention/backends/triton_attn.py::TritonAttentionImpl",
    "vllm/v1/attention/backends/triton_attn.py::TritonAttentionMetadata",
    "vllm/v1/attention/backends/triton_attn.py::MIN_LAUNCH_GRID_SIZE_2D",
    "vllm/v1/attention/backends/triton_attn.py::NUM_PAR_SOFTMAX_SEGMENTS",
    "vllm/v1/worker/workspace.py::WorkspaceManager",
    "vllm/v1/worker/workspace.py::_manager",
)

# On several GPUs (a variant with tp or ep > 1) the example makes vLLM's parallel state itself: one GroupCoordinator
# per group over torch.distributed (example/distributed.py), as initialize_model_parallel lays them out on one node.
# The engine's init_distributed_environment / initialize_model_parallel are not roots: they reach elastic EP, stateless
# groups and the TCP store, which a layer on one node never uses.
PARALLEL_ROOTS = ("vllm/distributed/parallel_state.py::GroupCoordinator",)

_ATTENTION = "vllm/model_executor/layers/attention/attention.py::Attention"
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
ROOT_TRIGGERS = {**{r: _ATTENTION for r in DECODER_LAYER_ROOTS if "/v1/attention/backends/" in r},
                 **RECURRENT_STATE_TRIGGERS,
                 **{r: "vllm/distributed/parallel_state.py::get_tp_group" for r in PARALLEL_ROOTS}}


# What the decoder-layer example builds a layer from and passes its forward, by parameter name (example/decoder.py).
INIT_INPUTS = ("vllm_config", "config", "hf_config", "text_config", "cache_config", "quant_config", "prefix",
               "layer_idx", "layer_id", "model_config", "parallel_config", "rope_parameters")
CONFIG_INPUTS = ("vllm_config", "config", "hf_config", "text_config")
FORWARD_INPUTS = ("positions", "position_ids", "hidden_states", "x", "residual")


def layer_signature(cls: ast.AST | None) -> dict | None:
    """The parameters after `self` of a class's own `__init__` and `forward` (A1 records it as `root_signature`):
    {method: {"required": [...], "optional": [...]}}; a method the class inherits is absent; None for a non-class."""
    if not isinstance(cls, ast.ClassDef):
        return None
    out = {}
    for fn in cls.body:
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in ("__init__", "forward"):
            a = fn.args
            positional = (a.posonlyargs + a.args)[1:]
            n_required = len(positional) - len(a.defaults)
            req = [x.arg for x in positional[:n_required]]
            opt = [x.arg for x in positional[n_required:]]
            for x, d in zip(a.kwonlyargs, a.kw_defaults):
                (req if d is None else opt).append(x.arg)
            out[fn.name] = {"required": req, "optional": opt}
    return out


def is_decoder_layer(symbol: str, kind: str, signature: dict | None = None) -> bool:
    """A6's `decoder_layer` template (example/core.py classify): a class named `*DecoderLayer`, or one whose own
    signature is a decoder layer's (GPT-style blocks: BloomBlock, GPTJBlock, GPTNeoXLayer): built from a whole
    config with nothing else required that the example cannot give, and a forward taking `hidden_states` and
    `positions`/`position_ids` (a block whose forward takes hidden_states only, GPT2Block, is indistinguishable
    from an MLP/MoE block by signature)."""
    if kind != "class":
        return False
    if symbol.endswith("DecoderLayer"):
        return True
    init, fwd = (signature or {}).get("__init__"), (signature or {}).get("forward")
    if not init or not fwd:
        return False
    fwd_params = set(fwd["required"]) | set(fwd["optional"])
    return (bool(set(init["required"]) & set(CONFIG_INPUTS)) and set(init["required"]) <= set(INIT_INPUTS)
            and "hidden_states" in fwd_params and bool(fwd_params & {"positions", "position_ids"}))


def extra_roots(symbol: str, kind: str, signature: dict | None = None, world_size: int = 1) -> list[str]:
    """The roots A1 adds for the example of `symbol` (a `class` or `function`, with its `layer_signature`) on
    `world_size` GPUs; empty for most symbols."""
    if not is_decoder_layer(symbol, kind, signature):
        return []
    return list(DECODER_LAYER_ROOTS + RECURRENT_STATE_ROOTS) + (list(PARALLEL_ROOTS) if world_size > 1 else [])
