"""A6 decoder-layer example: generated from the Qwen3 configs; its engine plumbing (config, groups, KV cache,
attention metadata, forward context) checked against a mock bundle on a GPU when there is one."""

import ast
import json
from pathlib import Path

import pytest
import torch

from bundler_lib import example as a6
from bundler_lib.example import decoder, state

ROOT = Path(__file__).resolve().parents[1]
TREES = Path(__file__).parent / "trees" / "stages" / "example"
CODER = ROOT / "models" / "Qwen--Qwen3-Coder-480B-A35B-Instruct" / "config.json"
TINY = TREES / "configs" / "tiny_qwen3_moe.json"
MOCK = TREES / "decoder_mock"


def _gen(tmp_path, graph, config, model=None, workload=None):
    rec = a6.run(graph, model, config, workload, tmp_path)
    return (tmp_path / "A6.example.py").read_text(), rec


def _bundle_ns(src):
    ns = {"__name__": "mock_bundle"}
    exec(compile((MOCK / "mock_bundle.py").read_text(), "mock_bundle.py", "exec"), ns)
    exec(compile(src, "A6.example.py", "exec"), ns)
    return ns


def _fake_cuda_entry_points(monkeypatch):
    """CUDA's entry points the example checks before it builds the layer, faked for a CPU run up to the build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (80 << 30, 80 << 30))
    cpu_generator = torch.Generator
    monkeypatch.setattr(torch, "Generator", lambda device=None: cpu_generator())


def test_coder_480b_decoder_example_generated(tmp_path):
    src, rec = _gen(tmp_path, TREES / "Qwen3MoeDecoderLayer" / "A1.graph.json", CODER,
                    "Qwen/Qwen3-Coder-480B-A35B-Instruct")
    assert rec["template"] == "decoder_layer"
    assert rec["workload"]["kind"] == "decode" and rec["workload"]["kv_cache"]
    tree = ast.parse(src)
    # definitions and constants only (tune-moe's helpers after the first four), the command line last
    assert [type(n).__name__ for n in tree.body[:4]] == ["FunctionDef", "Assign", "FunctionDef", "FunctionDef"]
    assert {type(n).__name__ for n in tree.body[4:-1]} <= {"FunctionDef", "ClassDef", "Assign"}
    assert type(tree.body[-1]).__name__ == "If"
    assert "layer = Qwen3MoeDecoderLayer(**kw)" in src and '"vllm_config": vllm_config' in src
    assert "'num_experts': 160" in src and "'head_dim': 128" in src
    # The graph fixture has no python_nodes: the example says what it lacks.
    assert any("the graph lacks" in n for n in rec["notes"])
    ns = _bundle_ns(src)
    with pytest.raises(RuntimeError, match="lacks vLLM's module state"):
        ns["invocation_example"](small=True)


def test_names_resolved_through_renames(tmp_path):
    found, missing = state.resolve(json.loads((MOCK / "A1.graph.json").read_text()))
    assert "vllm/config/vllm.py::_current_vllm_config" not in missing
    assert found["workspace"] == "_manager_workspace"
    assert found["groups"]["_EP"] == "_EP" and found["groups"]["_PP"] is None
    assert found["TritonAttentionMetadata"] is None


def test_real_graph_names(tmp_path, vllm_0_26_0):
    """On A1's real graph of Qwen3MoeDecoderLayer: the state the example sets is in the closure."""
    from bundler_lib import graph as a1
    out = tmp_path / "a1"
    a1.run(tree=vllm_0_26_0, out=out, symbol="Qwen3MoeDecoderLayer", hint=None, variant={})
    g = json.loads((out / "A1.graph.json").read_text())
    found, _ = state.resolve(g)
    missing = [r for r in decoder.REQUIRED if not found[r]]
    assert missing == [], missing
    src, rec = _gen(tmp_path / "a6", out / "A1.graph.json", CODER, "Qwen/Qwen3-Coder-480B-A35B-Instruct")
    compile(src, "A6.example.py", "exec")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_decoder_example_needs_a_gpu(tmp_path):
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", TINY, "tiny/qwen3-moe")
    ns = _bundle_ns(src)
    with pytest.raises(RuntimeError, match="CUDA GPU"):
        ns["invocation_example"](small=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("workload", ["decode", "prefill"])
@pytest.mark.parametrize("small", [True, False])
def test_decoder_example_plumbing_on_gpu(tmp_path, workload, small):
    src, rec = _gen(tmp_path, MOCK / "A1.graph.json", TINY, "tiny/qwen3-moe", workload)
    ns = _bundle_ns(src)
    res = ns["invocation_example"](small=small)
    sizes = res["sizes"]
    T, H = sizes["T"], 256
    assert res["outputs"]["hidden_states"].shape == (T, H)
    if workload == "decode":
        assert sizes["new_tokens"] == 1 and sizes["context"] == (64 if small else 4095)
        assert sizes["B"] == (2 if small else sizes["B"]) and sizes["B"] >= 1
    else:
        assert sizes["B"] == 1 and sizes["context"] == 0 and T == (32 if small else 4096)  # max_ctx caps it
    # The new tokens' K went to the slots the metadata names, in the cache's logical layout.
    layer, inp = res["module"], res["inputs"]
    md = inp["attn_metadata"]
    with torch.no_grad():
        k = (inp["hidden_states"] * layer.norm @ layer.qkv.t())[:, 512:640].view(T, 2, 64)
    kv = inp["kv_cache"].transpose(1, 2)
    flat = kv.reshape(-1, 2, 128)
    assert torch.equal(flat[md.slot_mapping, :, :64], k)
    # Positions follow the context; metadata is consistent.
    assert int(inp["positions"][0]) == sizes["context"]
    assert md.query_start_loc.tolist()[-1] == T and md.max_seq_len == sizes["context"] + sizes["new_tokens"]
    # The module state is restored after the call.
    assert ns["_current_vllm_config"] is None and ns["_forward_context"] is None
    assert ns["_manager_workspace"] is None
    assert isinstance(res["defaults_used"], list)


def test_extra_roots():
    g = json.loads((TREES / "Qwen3MoeDecoderLayer" / "A1.graph.json").read_text())
    roots = a6.extra_roots(g)
    assert "vllm/model_executor/layers/fused_moe/unquantized_fused_moe_method.py::" \
           "UnquantizedFusedMoEMethod.process_weights_after_loading" in roots
    assert "vllm/v1/attention/backends/triton_attn.py::TritonAttentionBackend" in roots
    assert a6.extra_roots(json.loads((TREES / "RMSNorm" / "A1.graph.json").read_text())) == []


def test_qwen3_30b_a3b_decoder_example_generated(tmp_path):
    src, rec = _gen(tmp_path, MOCK / "A1.graph.json", ROOT / "models" / "Qwen--Qwen3-30B-A3B" / "config.json",
                    "Qwen/Qwen3-30B-A3B", "prefill")
    assert rec["workload"] == {"kind": "prefill", "source": "given", "reason": "requested by the target",
                               "shapes": rec["workload"]["shapes"], "kv_cache": True}
    assert (rec["dims"]["H"], rec["dims"]["H_q"], rec["dims"]["H_kv"], rec["dims"]["Dh"]) == (2048, 32, 4, 128)
    assert "'num_experts': 128" in src and "# workload: prefill (given" in src
    compile(src, "A6.example.py", "exec")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decoder_example_sizes_and_forward_on_gpu(tmp_path):
    """tokens/batch/context set the sizes; `forward` reruns the layer in the same context on new inputs."""
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", TINY, "tiny/qwen3-moe", "decode")
    ns = _bundle_ns(src)
    res = ns["invocation_example"](small=True, workload="decode", tokens=2, batch=3, context=20)
    assert {k: res["sizes"][k] for k in ("B", "new_tokens", "context", "T")} == \
        {"B": 3, "new_tokens": 2, "context": 20, "T": 6}
    x = res["inputs"]["hidden_states"]
    kept = x.clone()
    out, residual = res["forward"](x)
    assert torch.equal(x, kept)  # the input is not updated in place
    again, _ = res["forward"](x)
    assert torch.equal(out, again)
    assert ns["_current_vllm_config"] is None and ns["_forward_context"] is None
    res = ns["invocation_example"](small=True, workload="prefill", tokens=48)
    assert res["sizes"]["T"] == 48 and res["sizes"]["context"] == 0
    with pytest.raises(ValueError, match="workload='sideways'"):
        ns["invocation_example"](small=True, workload="sideways")


def test_decoder_layer_without_model_built_from_the_generic_config(tmp_path):
    """No model: the decoder template still runs (A1's extra roots are used), from GENERIC_DIMS as HF keys,
    recorded as not model-aware."""
    graph = MOCK / "A1.graph.json"
    src, rec = _gen(tmp_path, graph, None)
    assert rec["template"] == "decoder_layer" and a6.extra_roots(json.loads(graph.read_text()))
    assert rec["model_name"] is None and rec["config"] == "generic" and rec["sources"]["config"] is None
    assert (rec["dims"]["H"], rec["dims"]["H_q"], rec["dims"]["H_kv"], rec["dims"]["Dh"]) == (4096, 32, 8, 128)
    assert rec["dims"]["layer"] == 0 and rec["sources"]["keys"]["H"] == "hidden_size"
    assert "'num_hidden_layers': 32" in src and "layer = Qwen3MoeDecoderLayer(**kw)" in src


def test_a_config_key_the_layer_lacks_is_one_line(tmp_path, monkeypatch):
    """A layer reading a key the (generic) config lacks stops the example with one line naming the key; a read
    with a default still gets the default. Run on CPU with CUDA's entry points faked up to the layer's build."""
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", None)
    ns = _bundle_ns(src)
    seen = {}

    class Layer(torch.nn.Module):
        def __init__(self, config, prefix=""):
            super().__init__()
            seen["default"] = getattr(config, "moe_layer_freq", "absent")
            config.num_local_experts

    ns["Qwen3MoeDecoderLayer"] = Layer
    _fake_cuda_entry_points(monkeypatch)
    with pytest.raises(AttributeError) as ei:
        ns["invocation_example"](small=True)
    msg = str(ei.value)
    assert "config.num_local_experts, which the generic Llama-like config (no model) lacks" in msg
    assert "\n" not in msg and seen["default"] == "absent"


@pytest.mark.parametrize("where,causal", [(None, True), ("attention", False), ("holder", False), ("holder", True)])
@torch.no_grad()
def test_metadata_causal_is_what_the_layer_states(tmp_path, monkeypatch, where, causal):
    """The attention metadata's causal flag is the layer's: False where its attention, or the module holding it,
    states `causal` False (vLLM's DFlash drafter puts its layers' causal into CommonAttentionMetadata), else True
    (the example had causal=True for every layer)."""
    import re
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", TINY, "tiny/qwen3-moe", "prefill")
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    ns = _bundle_ns(src)
    seen = []

    class Recording(ns["_Attention"]):
        def __init__(self, *args):
            super().__init__(*args)
            if where == "attention":
                self.causal = causal

        def forward(self, q, k, v):
            seen.append(ns["get_forward_context"]().attn_metadata[self.layer_name].causal)
            return super().forward(q, k, v)

    class Layer(torch.nn.Module):
        def __init__(self, vllm_config, prefix=""):
            super().__init__()
            hf = vllm_config.model_config.hf_text_config
            H, Hq, Hkv, Dh = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads, hf.head_dim
            self.sizes = [Hq * Dh, Hkv * Dh, Hkv * Dh]
            self.qkv = torch.nn.Parameter(torch.empty(sum(self.sizes), H))
            self.o = torch.nn.Parameter(torch.empty(H, Hq * Dh))
            self.attn = Recording(Hq, Dh, Hkv, prefix + ".self_attn.attn")
            if where == "holder":
                self.causal = causal

        def forward(self, positions, hidden_states, residual):
            return self.attn(*(hidden_states @ self.qkv.t()).split(self.sizes, dim=-1)) @ self.o.t(), hidden_states

    ns["_Attention"], ns["Qwen3MoeDecoderLayer"] = Recording, Layer
    ns["invocation_example"](small=True)
    assert seen and set(seen) == {causal}


def test_a_second_output_is_the_residual_only_where_it_is_one(tmp_path):
    """The example's `_call` takes a layer's second output for the residual stream where the forward takes `residual`
    or returns one of the hidden states' shape (Stablelm); Gemma4SelfDecoderLayers returns its per-layer inputs
    [T, layers, per-layer width] there (H100: `residual: shape (2, 30, 256), expected (2, 2304)`)."""
    import inspect

    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", TINY, "tiny/qwen3-moe")
    fn = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "_call")
    x = torch.randn(3, 8)

    def run(forward):
        ns = {"layer": forward, "fparams": inspect.signature(forward).parameters, "positions": None,
              "extra_inputs": {}}
        exec(compile(ast.Module([fn], []), "A6.example.py", "exec"), ns)
        return ns["_call"](x, None)

    def takes_residual(positions, hidden_states, residual):
        return hidden_states, torch.zeros(3, 5)

    def stablelm(positions, hidden_states):
        return hidden_states, hidden_states + 1

    def per_layer_inputs(positions, hidden_states):
        return hidden_states, torch.zeros(3, 2, 4)

    assert run(takes_residual)[1].shape == (3, 5)
    assert run(stablelm)[1].shape == (3, 8)
    assert run(per_layer_inputs)[1] is None


def test_a_stand_in_config_method_called_gives_its_default(tmp_path, monkeypatch):
    """A field of vLLM's config that the layer calls as a method (0.34's Qwen3-VL:
    `mm_config.is_multimodal_pruning_enabled()`) gets a method returning the logged default, not the default itself
    (`'bool' object is not callable`); read as a field, it is still the value."""
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", None)
    ns = _bundle_ns(src)
    seen = {}

    class Layer(torch.nn.Module):
        def __init__(self, config, prefix=""):
            super().__init__()
            mm = ns["_current_vllm_config"].model_config.multimodal_config
            seen["called"] = mm.is_multimodal_pruning_enabled()
            seen["read"] = mm.is_encoder_only
            raise RuntimeError("stop here")

    ns["Qwen3MoeDecoderLayer"] = Layer
    _fake_cuda_entry_points(monkeypatch)
    with pytest.raises(RuntimeError, match="stop here") as ei:
        ns["invocation_example"](small=True)
    assert seen == {"called": False, "read": False}
    assert "multimodal_config.is_multimodal_pruning_enabled()=False" in str(ei.value)


def test_a_synonym_the_config_does_not_state_is_absent_to_getattr(tmp_path, monkeypatch):
    """A key the model's config does not state (not even as an attribute_map alias), which a synonym rule answers:
    `config.rms_norm_eps` is the synonym's value (layer_norm_eps), but `getattr(config, "rms_norm_eps", None)` gets
    its default, as from the model's config object: 0.34's Cohere picks RMSNorm when it is set (select_norm_impl),
    which transformers' CohereConfig never sets (parity 2.95x transformers-bf16's error on the GPU)."""
    cfg = json.loads(TINY.read_text())
    cfg["layer_norm_eps"] = cfg.pop("rms_norm_eps")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    src, _ = _gen(tmp_path, MOCK / "A1.graph.json", tmp_path / "config.json", "tiny/qwen3-moe")
    ns = _bundle_ns(src)
    seen = {}

    class Layer(torch.nn.Module):
        def __init__(self, config, prefix=""):
            super().__init__()
            seen["getattr"] = getattr(config, "rms_norm_eps", None)
            seen["hasattr"] = hasattr(config, "rms_norm_eps")
            seen["read"] = config.rms_norm_eps
            raise RuntimeError("stop here")

    ns["Qwen3MoeDecoderLayer"] = Layer
    _fake_cuda_entry_points(monkeypatch)
    with pytest.raises(RuntimeError, match="stop here"):
        ns["invocation_example"](small=True)
    assert seen == {"getattr": None, "hasattr": False, "read": cfg["layer_norm_eps"]}
