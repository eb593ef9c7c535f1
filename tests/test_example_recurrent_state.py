"""A6's recurrent state (example/recurrent_state.py): which layers hold it (by the closure reaching vLLM's MambaBase),
the roots A1 adds for it, and the generated code on a small stand-in of a bundle (a mixer holding conv and ssm
state, its metadata dataclass, vLLM's conv1d launch metadata stubbed): state allocated from get_state_shape/
get_state_dtype, metadata filled as vLLM's mamba metadata builder fills it; a gated delta net (no kv_cache placeholder,
its own metadata dataclass) as vLLM's GDN metadata builder fills it."""

import dataclasses
import types

import pytest
import torch

from bundler_lib.common.example_roots import RECURRENT_STATE_ROOTS, ROOT_TRIGGERS, extra_roots
from bundler_lib.example import decoder, recurrent_state

MAMBA_BASE = {"file": "vllm/model_executor/layers/mamba/abstract.py", "name": "MambaBase", "emit_name": "MambaBase"}
CONV_MD = {"file": "vllm/v1/attention/backends/utils.py", "name": "compute_causal_conv1d_metadata",
           "emit_name": "compute_causal_conv1d_metadata"}
MD_BASE = {"file": "vllm/v1/attention/backends/mamba_attn.py", "name": "BaseMambaAttentionMetadata",
           "emit_name": "BaseMambaAttentionMetadata"}
SSU = {"file": "vllm/model_executor/layers/mamba/ops/ssu_dispatch.py", "name": "_mamba_ssu_backend",
       "emit_name": "_mamba_ssu_backend"}
TRITON_SSU = {"file": "vllm/model_executor/layers/mamba/ops/ssu_dispatch.py", "name": "TritonSSUBackend",
              "emit_name": "TritonSSUBackend"}
MAMBA_GRAPH = {"symbol": "ToyMambaDecoderLayer", "kind": "class",
               "python_nodes": [MAMBA_BASE, CONV_MD, MD_BASE, SSU, TRITON_SSU]}


def test_a_layer_holds_state_when_its_closure_reaches_mamba_base():
    assert recurrent_state.holds_state(MAMBA_GRAPH)
    assert not recurrent_state.holds_state({"python_nodes": [CONV_MD, MD_BASE]})
    notes, needs = recurrent_state.notes_and_needs({"python_nodes": [MAMBA_BASE]})
    assert any("compute_causal_conv1d_metadata" in n for n in notes if "did not reach" in n)
    assert f"{CONV_MD['file']}::{CONV_MD['name']}" in needs
    assert not any("TritonSSUBackend" in n for n in notes)  # no selective state update reached: not needed
    notes, _ = recurrent_state.notes_and_needs({"python_nodes": [MAMBA_BASE, SSU]})
    assert any("TritonSSUBackend" in n for n in notes if "did not reach" in n)
    assert recurrent_state.notes_and_needs({"python_nodes": [MD_BASE]}) == ([], [])


def test_a_state_space_layer_without_attention_heads_has_a_template():
    no_heads = {"H": 64, "H_q": None, "H_kv": None, "Dh": None, "max_ctx": 128, "eps": 1e-6}
    assert decoder.missing_template(MAMBA_GRAPH, no_heads) == []
    assert "attention heads" in decoder.missing_template({"python_nodes": [MD_BASE]}, no_heads)[0]


def test_the_roots_apply_only_where_the_closure_needs_them():
    roots, when = extra_roots("ToyMambaDecoderLayer", "class")
    assert when == ROOT_TRIGGERS
    assert set(RECURRENT_STATE_ROOTS) <= set(roots)
    assert ROOT_TRIGGERS["vllm/model_executor/layers/mamba/abstract.py::MambaBase.get_state_shape"] == \
        "vllm/model_executor/layers/mamba/abstract.py::MambaBase"
    assert ROOT_TRIGGERS["vllm/model_executor/layers/mamba/ops/ssu_dispatch.py::TritonSSUBackend"].endswith(
        "::get_mamba_ssu_backend")
    assert extra_roots("SiluAndMul", "class") == ([], {})


# ------------------------------------------------------------------------------------------------------------------
# the generated code on a stand-in bundle


@dataclasses.dataclass
class BaseMambaAttentionMetadata:
    num_prefills: int
    num_prefill_tokens: int
    num_decodes: int
    num_decode_tokens: int
    num_reqs: int
    has_initial_states_p: torch.Tensor | None
    query_start_loc_p: torch.Tensor | None
    state_indices_tensor_p: torch.Tensor | None
    state_indices_tensor_d: torch.Tensor | None
    seq_lens: torch.Tensor
    nums_dict: dict | None = None


@dataclasses.dataclass
class ToyChunkedMetadata(BaseMambaAttentionMetadata):
    chunk_size: int = 0
    prep_initial_states: bool = False
    cu_chunk_seqlen_p: torch.Tensor | None = None
    seq_idx_p: torch.Tensor | None = None
    last_chunk_indices_p: torch.Tensor | None = None


@dataclasses.dataclass
class ToyOtherMetadata(BaseMambaAttentionMetadata):
    pass


class ToyMixer(torch.nn.Module):
    prefix = "model.layers.0.mixer"

    def __init__(self):
        super().__init__()
        self.kv_cache = (torch.tensor([]), torch.tensor([]))

    def get_state_shape(self):
        return (3, 10), (4, 5, 6)

    def get_state_dtype(self):
        return torch.bfloat16, torch.float32

    def forward_impl(self, md):
        assert isinstance(md, ToyChunkedMetadata)


@dataclasses.dataclass
class ToyGDNMetadata:
    """vLLM's GDNAttentionMetadata (gdn_attn.py): its own dataclass, no BaseMambaAttentionMetadata."""
    num_prefills: int
    num_prefill_tokens: int
    num_decodes: int
    num_decode_tokens: int
    num_spec_decodes: int
    num_spec_decode_tokens: int
    num_actual_tokens: int
    has_initial_state: torch.Tensor | None = None
    non_spec_query_start_loc: torch.Tensor | None = None
    non_spec_state_indices_tensor: torch.Tensor | None = None
    prefill_query_start_loc: torch.Tensor | None = None
    prefill_state_indices: torch.Tensor | None = None
    prefill_has_initial_state: torch.Tensor | None = None
    nums_dict: dict | None = None


class ToyGatedDeltaNet(torch.nn.Module):
    """As vLLM's GatedDeltaNetAttention: no `kv_cache` until the engine binds one, its metadata read by prefix."""
    prefix = "model.layers.0.linear_attn"

    def get_state_shape(self):
        return (3, 8), (2, 4, 4)

    def get_state_dtype(self):
        return torch.bfloat16, torch.bfloat16

    def _forward_core(self, md):
        assert isinstance(md, ToyGDNMetadata)


@dataclasses.dataclass
class ToyLinearMetadata:
    """vLLM's LinearAttentionMetadata (linear_attn.py): one state index and query start per sequence."""
    num_prefills: int
    num_prefill_tokens: int
    num_decodes: int
    num_decode_tokens: int
    query_start_loc: torch.Tensor
    seq_lens: torch.Tensor
    state_indices_tensor: torch.Tensor


class ToyLinearAttention(ToyGatedDeltaNet):
    prefix = "model.layers.1.self_attn"

    def _forward_core(self, md):
        assert isinstance(md, ToyLinearMetadata)


class ToyMixerNamingItsBase(ToyMixer):
    def check(self, md):
        return isinstance(md, BaseMambaAttentionMetadata)


class ToyStateNoMetadata(torch.nn.Module):
    kv_cache = (torch.tensor([]),)


class ToyTwoMetadata(ToyMixer):
    def other(self, md):
        return isinstance(md, (ToyChunkedMetadata, ToyOtherMetadata))


class ToySSU:
    def __init__(self, mamba_config):
        self.config = mamba_config


def _functions():
    """The snippet's functions, in a namespace standing for a bundle (what state.snippet defines, stubbed)."""
    conv_calls = []
    G = {"BaseMambaAttentionMetadata": BaseMambaAttentionMetadata, "ToyChunkedMetadata": ToyChunkedMetadata,
         "ToyOtherMetadata": ToyOtherMetadata, "ToyGDNMetadata": ToyGDNMetadata, "TritonSSUBackend": ToySSU,
         "ToyLinearMetadata": ToyLinearMetadata,
         "_mamba_ssu_backend": None,
         "compute_causal_conv1d_metadata": lambda qsl, device: (conv_calls.append(qsl) or ({8: {}}, None, None))}

    class StandIn(types.SimpleNamespace):
        def __init__(self, _path, **fields):
            super().__init__(**fields)

    vllm_config = StandIn("vllm_config", model_config=StandIn("model_config", get_mamba_chunk_size=lambda: 4))
    src = ("def _make(G, torch, inspect, types, device, gen, vllm_config, _StandIn):\n"
           + recurrent_state.snippet(MAMBA_GRAPH, "ToyMambaDecoderLayer")
           + "    return _recurrent_modules, _bind_recurrent_state, _chunks, _state_bytes\n")
    ns = {}
    exec(compile(src, "recurrent_state_snippet", "exec"), ns)
    import inspect
    fns = ns["_make"](G, torch, inspect, types, torch.device("cpu"), torch.Generator().manual_seed(0), vllm_config,
                      StandIn)
    return fns, G, conv_calls


def test_state_modules_found_by_the_metadata_class_their_code_names():
    (recurrent, _, _, state_bytes), _, _ = _functions()
    layer = torch.nn.Module()
    layer.mixer = ToyMixer()
    layer.attn = torch.nn.Module()
    layer.attn.kv_cache = torch.tensor([])
    mods = recurrent(layer, [("attn", layer.attn)])
    assert [(n, c) for n, _, c in mods] == [("mixer", ToyChunkedMetadata)]
    assert state_bytes(mods) == 3 * 10 * 2 + 4 * 5 * 6 * 4
    layer.other = ToyStateNoMetadata()
    with pytest.raises(NotImplementedError, match=r"\['other \(ToyStateNoMetadata\)'\]"):
        recurrent(layer, [("attn", layer.attn)])
    two = torch.nn.Module()
    two.mixer = ToyTwoMetadata()
    with pytest.raises(NotImplementedError, match="several state metadata classes"):
        recurrent(two, [])
    based = torch.nn.Module()
    based.mixer = ToyMixerNamingItsBase()
    assert [c for _, _, c in recurrent(based, [])] == [ToyChunkedMetadata]  # the most derived


def test_a_gated_delta_net_without_a_kv_cache_placeholder_gets_its_own_metadata_in_every_workload():
    """A state layer the engine alone binds a kv_cache to (vLLM's gated delta nets) is found by its get_state_shape,
    and its metadata (not mamba's) is registered under its prefix for decode, prefill and chunked prefill."""
    (recurrent, bind, _, _), _, _ = _functions()
    layer = torch.nn.Module()
    layer.linear_attn = ToyGatedDeltaNet()
    mods = recurrent(layer, [])
    assert [(n, c) for n, _, c in mods] == [("linear_attn", ToyGDNMetadata)]
    md = bind(mods, 3, 1, 64)["model.layers.0.linear_attn"]
    conv, ssm = layer.linear_attn.kv_cache
    assert (conv.shape, ssm.shape) == ((4, 3, 8), (4, 2, 4, 4)) and ssm[1:].abs().sum() > 0
    assert (md.num_decodes, md.num_decode_tokens, md.num_prefills, md.num_spec_decodes, md.num_actual_tokens) \
        == (3, 3, 0, 0, 3)
    assert md.non_spec_state_indices_tensor.tolist() == [1, 2, 3]
    assert md.non_spec_query_start_loc.tolist() == [0, 1, 2, 3]
    assert md.has_initial_state is None and md.prefill_state_indices is None
    md = bind(mods, 2, 6, 0)["model.layers.0.linear_attn"]
    assert (md.num_prefills, md.num_prefill_tokens, md.num_decodes, md.num_actual_tokens) == (2, 12, 0, 12)
    assert md.non_spec_query_start_loc.tolist() == md.prefill_query_start_loc.tolist() == [0, 6, 12]
    assert md.prefill_state_indices.tolist() == md.non_spec_state_indices_tensor.tolist() == [1, 2]
    assert md.has_initial_state.tolist() == md.prefill_has_initial_state.tolist() == [False, False]
    assert md.nums_dict == {8: {}}
    md = bind(mods, 1, 6, 5)["model.layers.0.linear_attn"]  # chunked prefill: new tokens after cached ones
    assert (md.num_prefills, md.num_decodes) == (1, 0) and md.prefill_has_initial_state.tolist() == [True]


def test_decode_binds_state_with_context_and_decode_metadata():
    (recurrent, bind, _, _), G, conv_calls = _functions()
    layer = torch.nn.Module()
    layer.mixer = ToyMixer()
    md = bind(recurrent(layer, []), 3, 1, 64)["model.layers.0.mixer"]
    conv, ssm = layer.mixer.kv_cache
    assert (conv.shape, conv.dtype, ssm.shape, ssm.dtype) == ((4, 3, 10), torch.bfloat16, (4, 4, 5, 6), torch.float32)
    assert not conv[0].any() and conv[1:].abs().sum() > 0  # slot 0 is vLLM's null block; the others hold state
    assert (md.num_decodes, md.num_decode_tokens, md.num_prefills, md.num_reqs) == (3, 3, 0, 3)
    assert md.state_indices_tensor_d.tolist() == [[1], [2], [3]] and md.state_indices_tensor_p.numel() == 0
    assert md.has_initial_states_p is None and md.chunk_size == 0 and md.seq_lens.tolist() == [65] * 3
    assert conv_calls == [] and isinstance(G["_mamba_ssu_backend"], ToySSU)


def test_prefill_without_state_and_its_chunks():
    (recurrent, bind, _, _), _, conv_calls = _functions()
    layer = torch.nn.Module()
    layer.mixer = ToyMixer()
    md = bind(recurrent(layer, []), 2, 6, 0)["model.layers.0.mixer"]
    assert not layer.mixer.kv_cache[1].any()
    assert (md.num_prefills, md.num_prefill_tokens, md.num_decodes) == (2, 12, 0)
    assert md.query_start_loc_p.tolist() == [0, 6, 12] and md.state_indices_tensor_p.tolist() == [1, 2]
    assert md.has_initial_states_p.tolist() == [False, False] and not md.prep_initial_states
    assert [q.tolist() for q in conv_calls] == [[0, 6, 12]] and md.nums_dict == {8: {}}
    # chunk_size 4: each sequence split at multiples of 4 of its own positions
    assert (md.chunk_size, md.cu_chunk_seqlen_p.tolist(), md.seq_idx_p.tolist(), md.last_chunk_indices_p.tolist()) \
        == (4, [0, 4, 6, 10, 12], [0, 0, 1, 1], [1, 3])


def test_chunks_follow_vllms_builder():
    """BaseMambaAttentionMetadataBuilder._compute_chunk_metadata: a first chunk finishes a partly computed one."""
    (_, _, chunks, _), _, _ = _functions()
    assert chunks(4, [0, 6], [0, 10, 13]) == ([0, 4, 8, 10, 12, 13], [0, 0, 0, 1, 1], [2, 4])
    assert chunks(4, [5], [0, 2]) == ([0, 2], [0], [0])


def test_new_tokens_after_context_are_a_prefill_from_the_state():
    """vLLM's split (decode_threshold 1): several new tokens after cached ones are a prefill with an initial state."""
    (recurrent, bind, _, _), _, _ = _functions()
    layer = torch.nn.Module()
    layer.mixer = ToyMixer()
    md = bind(recurrent(layer, []), 1, 6, 5)["model.layers.0.mixer"]
    assert (md.num_prefills, md.num_decodes) == (1, 0) and layer.mixer.kv_cache[0][1].abs().sum() > 0
    assert md.has_initial_states_p.tolist() == [True] and md.prep_initial_states
    assert md.cu_chunk_seqlen_p.tolist() == [0, 3, 6] and md.seq_lens.tolist() == [11]


def test_a_linear_attention_gets_its_per_sequence_state_indices():
    (recurrent, bind, _, _), _, _ = _functions()
    layer = torch.nn.Module()
    layer.self_attn = ToyLinearAttention()
    md = bind(recurrent(layer, []), 2, 1, 7)["model.layers.1.self_attn"]
    assert (md.num_decodes, md.num_prefills) == (2, 0) and md.seq_lens.tolist() == [8, 8]
    assert md.state_indices_tensor.tolist() == [1, 2] and md.query_start_loc.tolist() == [0, 1, 2]
