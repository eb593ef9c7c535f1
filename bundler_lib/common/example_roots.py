"""What A6's invocation_example() needs beyond a symbol's own closure: data both A1 (which reaches it) and
A6 (which calls it) read, so that neither stage imports the other.

Roots are `file::Name` or `file::Class.method` (a method root keeps that method on every reached class and
reaches no class itself). A root with a trigger in `ROOT_TRIGGERS` applies only once the closure reaches the
trigger, the definition that needs it at run time.
"""

from __future__ import annotations

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

_ATTENTION = "vllm/model_executor/layers/attention/attention.py::Attention"
# The backend classes are looked up by qualname when an `Attention` layer is built: a layer without one (MLA,
# linear attention, state-space) needs none of them.
ROOT_TRIGGERS = {r: _ATTENTION for r in DECODER_LAYER_ROOTS if "/v1/attention/backends/" in r}


def is_decoder_layer(symbol: str, kind: str) -> bool:
    """A6's `decoder_layer` template (example/core.py classify): a class named `*DecoderLayer`."""
    return kind == "class" and symbol.endswith("DecoderLayer")


def extra_roots(symbol: str, kind: str) -> list[str]:
    """The roots A1 adds for the example of `symbol` (a `class` or `function`); empty for most symbols."""
    return list(DECODER_LAYER_ROOTS) if is_decoder_layer(symbol, kind) else []
