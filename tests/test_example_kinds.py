"""A6 layer kinds: decoder-layer-like classes found by their signature (A1's `root_signature`), and the kinds
without a template (cross-attention inputs, attention-free configs), whose build succeeds and whose example
raises one line naming what is missing."""

import ast
import json
import textwrap
from pathlib import Path

import pytest

from bundler_lib import example as a6
from bundler_lib.common.example_roots import (ATTENTION, BACKEND_ROOTS, DEFAULT_BACKEND, INIT_INPUTS, MLA_ATTENTION,
                                              decoder_layer_roots, extra_roots, is_block_candidate, is_decoder_layer,
                                              is_layer_stack, layer_signature)
from bundler_lib.example import decoder, forward_inputs
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]
TREES = Path(__file__).parent / "trees" / "stages" / "example"
MOCK = TREES / "decoder_mock"
TINY = TREES / "configs" / "tiny_qwen3_moe.json"
MAMBA = ROOT / "models" / "transformers--mamba" / "config.json"


def _sig(src: str) -> dict:
    return layer_signature(ast.parse(textwrap.dedent(src)).body[0])


BLOCK = _sig('''
    class BloomBlock(nn.Module):
        def __init__(self, config, cache_config=None, quant_config=None, prefix=""):
            pass
        def forward(self, position_ids: torch.Tensor, hidden_states):
            pass
''')


def test_layer_signature():
    assert BLOCK == {"__init__": {"required": ["config"], "optional": ["cache_config", "quant_config", "prefix"],
                                  "annotations": {}},
                     "forward": {"required": ["position_ids", "hidden_states"], "optional": [],
                                 "annotations": {"position_ids": "torch.Tensor"}}}
    assert _sig("class A(B):\n    x = 1\n") == {}  # without find_class, a method A inherits is absent
    assert layer_signature(ast.parse("def f(x): pass").body[0]) is None
    kw = _sig("class A:\n    def forward(self, h, *, step: int, extra: 'torch.Tensor | None' = None): pass\n")
    assert kw["forward"] == {"required": ["h", "step"], "optional": ["extra"],
                             "annotations": {"step": "int", "extra": "'torch.Tensor | None'"}}


def test_layer_signature_reads_inherited_methods_from_the_base():
    """A method the class inherits is its nearest base's (MolmoDecoderNormAfterLayer: its own forward, its base's
    __init__), the base found through `find_class`."""
    mod = ast.parse(textwrap.dedent('''
        class Base(nn.Module):
            def __init__(self, config: Config, prefix: str = ""):
                pass
            def forward(self, positions, hidden_states, residual):
                pass
        class NormAfter(Base):
            def forward(self, positions, hidden_states, residual, **kw):
                pass
    '''))
    classes = {c.name: c for c in mod.body}
    sig = layer_signature(classes["NormAfter"], lambda name, within: classes.get(name))
    assert sig["__init__"] == {"required": ["config"], "optional": ["prefix"],
                               "annotations": {"config": "Config", "prefix": "str"}}
    assert sig["forward"]["required"] == ["positions", "hidden_states", "residual"]
    assert is_decoder_layer("NormAfter", "class", sig)
    assert not is_decoder_layer("NormAfter", "class", layer_signature(classes["NormAfter"]))


def test_layer_signature_records_the_literal_values_a_str_input_is_passed_to():
    """An __init__ str the class passes on by name to a part whose own parameter is `Literal[...]` (HrmText's
    `stack_kind`) records the Literal's values; a str passed under another name, or to a plain `str`, records none."""
    mod = ast.parse(textwrap.dedent('''
        class Attn(nn.Module):
            def __init__(self, config, stack_kind: Literal["L", "H"], other: str = "x"):
                pass
        class Layer(nn.Module):
            def __init__(self, config, stack_kind: str, mode: str):
                self.attn = Attn(config, stack_kind=stack_kind, other=mode)
                self.mlp = Attn(config, stack_kind=mode)
            def forward(self, positions, hidden_states):
                pass
    '''))
    classes = {c.name: c for c in mod.body}
    sig = layer_signature(classes["Layer"], lambda name, within: classes.get(name))
    assert sig["__init__"]["choices"] == {"stack_kind": ["L", "H"]}
    assert "choices" not in layer_signature(classes["Layer"])["__init__"]


def test_layer_signature_records_the_values_of_an_input_annotated_literal():
    """An __init__ parameter annotated `Literal[...]` itself (vLLM 0.33.0's HrmTextDecoderLayer `stack_kind`) records
    its values, with no part to look into; a Literal of a non-constant records none."""
    sig = _sig('''
        class Layer(nn.Module):
            def __init__(self, config, stack_kind: Literal["L", "H"], mode: typing.Literal[X, "b"] = "b"):
                pass
            def forward(self, positions, hidden_states):
                pass
    ''')
    assert sig["__init__"]["choices"] == {"stack_kind": ["L", "H"]}


STACK_SRC = '''
    class AltUp(nn.Module):
        def __init__(self, hidden_size, altup_num_inputs, altup_active_idx):
            self.altup_active_idx = altup_active_idx
        def predict(self, hidden_states):
            return hidden_states[self.altup_active_idx]
        def plain(self, hidden_states):
            return hidden_states[0]
    class Layer(nn.Module):
        def __init__(self, config, prefix=""):
            self.altup = AltUp(config.hidden_size, altup_num_inputs=config.altup_num_inputs,
                               altup_active_idx=config.altup_active_idx)
        def forward(self, positions, hidden_states, per_layer_input):
            return self.altup.predict(hidden_states)
'''


def test_layer_signature_records_a_stacked_input():
    """A forward input handed whole to a part's method that indexes it by an index the config gives the part is a
    stack, as many as the one count the config gives the part (Gemma3n's AltUp); indexed by a constant, it is not."""
    classes = {c.name: c for c in ast.parse(textwrap.dedent(STACK_SRC)).body}
    sig = layer_signature(classes["Layer"], lambda name, within: classes.get(name))
    assert sig["forward"]["stacks"] == {"hidden_states": {"count": "altup_num_inputs", "index": "altup_active_idx"}}
    classes = {c.name: c for c in ast.parse(textwrap.dedent(STACK_SRC.replace(".predict(", ".plain("))).body}
    assert "stacks" not in layer_signature(classes["Layer"], lambda name, within: classes.get(name))["forward"]


ENABLED_SRC = '''
    class Layer(nn.Module):
        def __init__(self, config, prefix=""):
            self.ple_dim = getattr(config, "hidden_size_per_layer_input", 0)
            if self.ple_dim is not None and self.ple_dim > 0:
                self.gate = Linear(config.hidden_size, self.ple_dim)
            else:
                self.gate = None
            if config.use_extra:
                self.extra = Linear(config.hidden_size, config.hidden_size)
        def forward(self, positions, hidden_states, residual, per_layer_input=None, mask=None, scale=None):
            if per_layer_input is not None and self.gate is not None:
                hidden_states = hidden_states + self.gate(hidden_states) * per_layer_input
            if mask is not None:
                hidden_states = hidden_states * mask
            if scale is not None and self.extra is not None:
                hidden_states = hidden_states * scale
            return hidden_states, None
    class Model(nn.Module):
        def forward(self, positions, h, per_layer_inputs):
            for i, layer in enumerate(self.layers):
                h, _ = layer(positions, h, None, per_layer_input=per_layer_inputs[:, i], mask=None)
            return h
'''


def test_layer_signature_records_optional_inputs_a_config_enables():
    """An optional forward input that a loop over layers in the module passes by name, used under an `if` on a part
    __init__ builds under one config key (Gemma4's per_layer_input, hidden_size_per_layer_input) records that key;
    one the loop passes as None (mask), or does not pass (scale, though config-guarded), records none."""
    mod = ast.parse(textwrap.dedent(ENABLED_SRC))
    sig = layer_signature(mod.body[0], None, mod)
    assert sig["forward"]["enabled_by"] == {"per_layer_input": "hidden_size_per_layer_input"}
    assert "enabled_by" not in layer_signature(mod.body[0])["forward"]   # no module: no call site to read
    mod = ast.parse(textwrap.dedent(ENABLED_SRC.replace("self.gate = Linear", "self.gate2 = Linear")))
    assert "enabled_by" not in layer_signature(mod.body[0], None, mod)["forward"]   # the part is not config-built


def test_decoder_layers_by_signature_not_only_by_name():
    assert is_decoder_layer("BloomBlock", "class", BLOCK)
    assert is_decoder_layer("AnyDecoderLayer", "class", None)
    assert not is_decoder_layer("BloomBlock", "function", BLOCK)
    moe_block = _sig('''
        class SparseMoeBlock(nn.Module):
            def __init__(self, vllm_config, prefix=""):
                pass
            def forward(self, hidden_states):
                pass
    ''')
    attention = _sig('''
        class Attention(nn.Module):
            def __init__(self, config, hidden_size, num_heads, prefix=""):
                pass
            def forward(self, positions, hidden_states):
                pass
    ''')
    assert not is_decoder_layer("SparseMoeBlock", "class", moe_block)
    assert not is_decoder_layer("LlamaAttention", "class", attention)  # needs dims the example cannot give


def test_the_signature_rule_matches_what_the_example_gives():
    """is_decoder_layer accepts the __init__ parameters the decoder example supplies, by name."""
    given = decoder._BODY[decoder._BODY.index("given = {{"):decoder._BODY.index("kw = {{}}")]
    assert sorted(n for n in INIT_INPUTS if f'"{n}":' in given) == sorted(INIT_INPUTS)


def _graph(tmp_path, forward_required):
    g = json.loads((MOCK / "A1.graph.json").read_text())
    g["root_signature"] = {"__init__": {"required": ["vllm_config"], "optional": ["prefix"]},
                           "forward": {"required": forward_required, "optional": []}}
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    return p


def _bundle_ns(src):
    ns = {"__name__": "mock_bundle"}
    exec(compile((MOCK / "mock_bundle.py").read_text(), "mock_bundle.py", "exec"), ns)
    exec(compile(src, "A6.example.py", "exec"), ns)
    return ns


def test_encoder_attention_refuses_a_cached_context(tmp_path):
    """A layer whose attention keeps no KV cache (the variant's attn_type encoder_only: the privacy filter's) runs
    prefill; asked for decode or a context it refuses in one line before building anything (H100: parity's decode
    ran the privacy filter over a random paged cache: 'residual: non-finite values'). A decoder's does not refuse."""
    p = _graph(tmp_path, ["positions", "hidden_states"])
    g = json.loads(p.read_text())
    g["variant"] = {**(g.get("variant") or {}), "attn_type": "encoder_only"}
    p.write_text(json.dumps(g))
    rec = a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "enc")
    assert rec["status"] == "ok" and rec["workload"]["kind"] == "prefill"
    fn = _bundle_ns((tmp_path / "enc" / "A6.example.py").read_text())["invocation_example"]
    for kw in ({"workload": "decode"}, {"workload": "prefill", "context": 64}):
        with pytest.raises(NotImplementedError, match="encoder_only.*no cached context") as ei:
            fn(small=True, **kw)
        assert "\n" not in str(ei.value)
    g["variant"]["attn_type"] = "decoder"
    p.write_text(json.dumps(g))
    a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "dec")
    assert "no cached context" not in (tmp_path / "dec" / "A6.example.py").read_text()


def test_cross_attention_inputs_without_the_encoder_output_have_no_template(tmp_path):
    """The cross-attention template (test_example_cross_attention.py) gives the encoder's hidden states only: a
    cross input naming none (mllama-like `cross_attention_states`) keeps no_template."""
    rec = a6.run(_graph(tmp_path, ["hidden_states", "cross_attention_states"]), "tiny/qwen3-moe", TINY, None,
                 tmp_path / "o")
    assert rec["template"] == "decoder_layer" and rec["status"] == "no_template"
    assert "cross_attention_states" in rec["missing"][0]
    src = (tmp_path / "o" / "A6.example.py").read_text()
    with pytest.raises(NotImplementedError) as ei:
        _bundle_ns(src)["invocation_example"](small=True)
    msg = str(ei.value)
    assert "no example template for Qwen3MoeDecoderLayer" in msg and "cross_attention_states" in msg
    assert "\n" not in msg
    ok = a6.run(_graph(tmp_path, ["positions", "hidden_states", "residual"]), "tiny/qwen3-moe", TINY, None,
                tmp_path / "ok")
    assert ok["status"] == "ok" and ok["missing"] == []


def _with_nodes(p, node_ids, backend):
    g = json.loads(p.read_text())
    for node_id in node_ids:
        f, name = node_id.split("::")
        g["python_nodes"].append(dict(g["python_nodes"][0], id=node_id, file=f, name=name, emit_name=name,
                                      names=[{"name": name, "emit_name": name}], kind="class"))
        g.setdefault("edges", []).append([f"{g['def_file']}::{g['symbol']}", node_id])  # the layer builds it
    g["variant"] = {**g.get("variant", {}), "attention_backend": backend}
    out = p.parent / "-".join([n.split("::")[1] for n in node_ids] + [backend]) / "A1.graph.json"
    out.parent.mkdir()
    out.write_text(json.dumps(g))
    return out


def test_mla_only_attention_takes_the_decode_only_mla_template(tmp_path):
    """A layer reaching vLLM's MLAAttention and not its Attention (LongCat-Flash's FlashDecoderLayer), which A1 gives
    TRITON_MLA, gets the decode-only MLA template (mla.py): the prefill selector stood in for, the latent cache, the
    MLA metadata, use_mla. One reaching both (DeepseekV2's layer) keeps the standard template under a standard backend
    (use_mla=False) and takes the MLA one under TRITON_MLA; an MLA-only layer under a standard backend, or a layer
    without MLA under TRITON_MLA, has none, naming why."""
    p = _graph(tmp_path, ["positions", "hidden_states"])
    mla_only, both = [MLA_ATTENTION], [MLA_ATTENTION, ATTENTION]
    rec = a6.run(_with_nodes(p, mla_only, "TRITON_MLA"), "tiny/qwen3-moe", TINY, None, tmp_path / "mla")
    assert rec["status"] == "ok" and rec["missing"] == []
    assert any(n.startswith("decode only (MLA, attention backend TRITON_MLA): ") for n in rec["notes"])
    src = (tmp_path / "mla" / "A6.example.py").read_text()
    assert "_DecodeOnlyPrefill" in src and "_get('MLAAttention')" in src and "use_mla=True" in src
    assert "num_decodes=B, num_decode_tokens=T, num_prefills=0" in src
    with pytest.raises(NotImplementedError, match="decode only") as ei:
        _bundle_ns(src)["invocation_example"](small=True, workload="prefill")
    assert "\n" not in str(ei.value)
    rec = a6.run(_with_nodes(p, both, "TRITON_ATTN"), "tiny/qwen3-moe", TINY, None, tmp_path / "both")
    assert rec["status"] == "ok", rec["missing"]
    src = (tmp_path / "both" / "A6.example.py").read_text()
    assert "_DecodeOnlyPrefill" not in src and "_get('Attention')" in src and "use_mla=False" in src
    rec = a6.run(_with_nodes(p, mla_only, "TRITON_ATTN"), "tiny/qwen3-moe", TINY, None, tmp_path / "mla_triton")
    assert len(rec["missing"]) == 1 and rec["missing"][0].startswith("MLA attention")
    assert "TRITON_MLA" in rec["missing"][0]
    rec = a6.run(_with_nodes(p, both, "TRITON_MLA"), "tiny/qwen3-moe", TINY, None, tmp_path / "both_mla")
    assert rec["status"] == "ok" and "_DecodeOnlyPrefill" in (tmp_path / "both_mla" / "A6.example.py").read_text()
    rec = a6.run(_with_nodes(p, [ATTENTION], "TRITON_MLA"), "tiny/qwen3-moe", TINY, None, tmp_path / "plain_mla")
    assert len(rec["missing"]) == 1 and "without MLA attention" in rec["missing"][0]


def test_attention_free_config_has_no_template(tmp_path):
    """A state-space model's config (no attention heads) builds a decoder layer's bundle; the example says what
    it lacks. A template that needs heads (a norm's, say) still refuses the config."""
    rec = a6.run(_graph(tmp_path, ["hidden_states", "residual"]), "transformers/mamba", MAMBA, None, tmp_path / "o")
    assert rec["status"] == "no_template" and rec["dims"]["H"] == 768 and rec["dims"]["H_q"] is None
    assert any("num_attention_heads" in m for m in rec["missing"])
    with pytest.raises(NotImplementedError, match="num_attention_heads"):
        _bundle_ns((tmp_path / "o" / "A6.example.py").read_text())["invocation_example"](small=True)
    with pytest.raises(StageError, match="has no H_q"):
        a6.run(TREES / "RMSNorm" / "A1.graph.json", "transformers/mamba", MAMBA, None, tmp_path / "n")


def test_a1_records_the_signature_and_the_roots_of_a_block(tmp_path, vllm_0_26_0):
    """On the real tree: BloomBlock (not named *DecoderLayer) gets the decoder example and its extra roots."""
    from bundler_lib import graph as a1
    a1.run(tree=vllm_0_26_0, out=tmp_path, symbol="BloomBlock", hint=None, variant={})
    g = json.loads((tmp_path / "A1.graph.json").read_text())
    assert g["root_signature"]["forward"]["required"] == ["position_ids", "hidden_states"]
    assert a6.classify(g) == "decoder_layer"
    assert any(n.startswith("extra roots (needed by invocation_example())") for n in g["notes"])


def _fwd(required, annotations, init_required=("config",), init_annotations=None):
    return {"__init__": {"required": list(init_required), "optional": ["prefix"],
                         "annotations": init_annotations or {}},
            "forward": {"required": required, "optional": [], "annotations": annotations}}


FIELDS = {"hidden_size": 64, "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 100,
          "num_loops": 3}
DIMS = {"H": 64, "layer": 5, "num_layers": 8}


def test_forward_input_rules():
    """Each rule of forward_inputs.py: a forward int is an index (the layer index where the name says layer), an
    int the config names is the config's; an __init__ int only where its name says index; a tensor is [T, width],
    the width the config's hidden-size key naming it or hidden_size for hidden states/embeddings; cross-attention
    inputs (even optional) are left to the cross-attention template; an unknown width, size or type stay missing."""
    sig = _fwd(["positions", "hidden_states", "step", "layer_index", "num_loops", "inputs_embeds",
                "original_hidden_states", "per_layer_input"],
               {"step": "int", "layer_index": "int", "num_loops": "int", "inputs_embeds": "torch.Tensor",
                "original_hidden_states": "torch.Tensor", "per_layer_input": "torch.Tensor"})
    init, fwd, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert init == {} and missing == []
    assert {n: v[:2] for n, v in fwd.items()} == {
        "step": ["int", 0], "layer_index": ["int", 5], "num_loops": ["int", 3],
        "inputs_embeds": ["tensor", 64], "original_hidden_states": ["tensor", 64], "per_layer_input": ["tensor", 8]}
    sig = _fwd(["hidden_states", "mask", "mode"], {"mask": "torch.Tensor", "mode": "str"},
               init_required=("config", "bare_block_idx", "layer_idx_in_stack", "num_loops", "d_model",
                              "num_hybrid_layers", "stack_kind"),
               init_annotations={"bare_block_idx": "int", "layer_idx_in_stack": "int", "num_loops": "int",
                                 "d_model": "int", "num_hybrid_layers": "int", "stack_kind": "str"})
    sig["forward"]["optional"] = ["encoder_hidden_states"]
    init, fwd, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert {n: v[1] for n, v in init.items()} == {"bare_block_idx": 0, "layer_idx_in_stack": 5, "num_loops": 3}
    assert fwd == {}
    assert [m.split(":")[0] for m in missing] == [
        "__init__ input d_model (int)", "__init__ input num_hybrid_layers (int)",
        "__init__ input stack_kind (str)", "forward input mask (torch.Tensor)", "forward input mode (str)"]
    assert "width is unknown" in missing[3]
    # an __init__ input whose plural is a per-layer config list: this layer's entry (Qwen3Next's layer_type)
    sig = _fwd(["hidden_states"], {}, init_required=("vllm_config", "layer_type"), init_annotations={"layer_type": "str"})
    per_layer = dict(FIELDS, layer_types=[f"kind{i}" for i in range(DIMS["num_layers"])])
    init, _, missing = forward_inputs.derive(sig, per_layer, DIMS)
    assert init["layer_type"][1] == f"kind{DIMS['layer']}" and missing == []
    assert forward_inputs.derive(sig, dict(FIELDS, layer_types=["a"]), DIMS)[2]   # not one entry per layer


def test_init_count_of_a_config_list_and_bool_option():
    """An __init__ `num_<x>s` counts the one list the config holds of those entries (Zamba2's num_hybrid_layers =
    len(hybrid_layer_ids)); an __init__ bool is the option off (the EAGLE draft's disable_input_layernorm)."""
    sig = _fwd(["hidden_states"], {}, init_required=("config", "num_hybrid_layers", "disable_input_layernorm"),
               init_annotations={"num_hybrid_layers": "int", "disable_input_layernorm": "bool"})
    init, _, missing = forward_inputs.derive(sig, dict(FIELDS, hybrid_layer_ids=[6, 12, 18]), DIMS)
    assert {n: v[1] for n, v in init.items()} == {"num_hybrid_layers": 3, "disable_input_layernorm": False}
    assert missing == [] and "len(config.hybrid_layer_ids)" in init["num_hybrid_layers"][2]
    # two lists could be counted: no rule picks one
    _, _, missing = forward_inputs.derive(sig, dict(FIELDS, hybrid_layer_ids=[6], hybrid_layers=[1, 2]), DIMS)
    assert [m.split(":")[0] for m in missing] == ["__init__ input num_hybrid_layers (int)"]


def test_init_max_position_is_the_configs_max_position():
    """An __init__ int named for the max position (EmbeddingGemma2's `max_position`) is the config's
    max_position_embeddings, or the synonym vLLM accepts that the config holds; with neither it stays missing."""
    sig = _fwd(["hidden_states"], {}, init_required=("config", "max_position"), init_annotations={"max_position": "int"})
    init, _, missing = forward_inputs.derive(sig, dict(FIELDS, max_position_embeddings=4096), DIMS)
    assert missing == [] and init["max_position"][:2] == ["int", 4096]
    init, _, missing = forward_inputs.derive(sig, dict(FIELDS, n_positions=2048), DIMS)
    assert missing == [] and init["max_position"][:2] == ["int", 2048] and "config.n_positions" in init["max_position"][2]
    _, _, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert [m.split(":")[0] for m in missing] == ["__init__ input max_position (int)"]


def test_init_per_layer_entry_of_a_derived_list():
    """The per-layer list rule also reads a list config_rules derives for the example's config (the generic config
    has no layer_types: every layer 'full_attention'), as InternS2Mobius's `layer_type`, and says it was assumed."""
    from bundler_lib.example.model_config import derive, generic_config
    cfg = generic_config()
    dims, flags, _, _ = derive(cfg, "generic", heads_required=False)
    graph = {"root_signature": _fwd(["positions", "hidden_states"], {}, init_required=("vllm_config", "layer_type"),
                                    init_annotations={"layer_type": "str"})}
    init, _, missing = decoder._other_inputs(graph, cfg, dims, flags)
    assert missing == [] and init["layer_type"][:2] == ["value", "full_attention"]
    assert "assumed: every layer 'full_attention'" in init["layer_type"][2]


def test_init_str_takes_the_first_literal_value_its_part_accepts():
    """An __init__ str with A1's `choices` (the Literal its part takes it as) is the first value; without them no
    rule gives a str."""
    sig = _fwd(["hidden_states"], {}, init_required=("config", "stack_kind"), init_annotations={"stack_kind": "str"})
    sig["__init__"]["choices"] = {"stack_kind": ["L", "H"]}
    init, _, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert missing == [] and init["stack_kind"][:2] == ["value", "L"]
    sig["__init__"]["annotations"]["stack_kind"] = "Literal['L', 'H']"
    init, _, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert missing == [] and init["stack_kind"][:2] == ["value", "L"]
    del sig["__init__"]["choices"]
    _, _, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert [m.split(":")[0] for m in missing] == ["__init__ input stack_kind (Literal['L', 'H'])"]


def test_optional_input_the_config_enables_is_a_tensor():
    """An optional forward input A1 found enabled by a config key (`enabled_by`) is [T, width] where the config
    enables it (non-zero), left out (the layer's default None) where not, and missing where its width is unknown."""
    sig = _fwd(["positions", "hidden_states"], {"per_layer_input": "torch.Tensor | None"})
    sig["forward"]["optional"] = ["per_layer_input"]
    sig["forward"]["enabled_by"] = {"per_layer_input": "hidden_size_per_layer_input"}
    _, fwd, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert missing == [] and fwd["per_layer_input"][:2] == ["tensor", 8]
    _, fwd, missing = forward_inputs.derive(sig, dict(FIELDS, hidden_size_per_layer_input=0), DIMS)
    assert missing == [] and fwd == {}
    sig["forward"]["enabled_by"] = {"per_layer_input": "use_ple"}
    _, fwd, missing = forward_inputs.derive(sig, {"hidden_size": 64, "use_ple": True}, DIMS)
    assert fwd == {} and [m.split(":")[0] for m in missing] == ["forward input per_layer_input (torch.Tensor | None)"]


def test_stacked_hidden_states_take_the_config_count():
    stacks = {"hidden_states": {"count": "altup_num_inputs", "index": "altup_active_idx"}}
    sig = _fwd(["positions", "hidden_states"], {})
    sig["forward"]["stacks"] = stacks
    assert forward_inputs.hidden_stack(sig, dict(FIELDS, altup_num_inputs=4))[::2] == ([4], None)
    assert forward_inputs.hidden_stack(_fwd(["positions", "hidden_states"], {}), FIELDS) == ([], None, None)
    shape, _, missing = forward_inputs.hidden_stack(sig, FIELDS)
    assert shape == [] and "config.altup_num_inputs" in missing


def test_hidden_states_under_their_own_name():
    """A forward taking neither hidden_states nor x: its input named *_hidden_states is the hidden states (Bart's
    decoder_hidden_states), not a random tensor beside them; beside hidden_states it stays a tensor."""
    sig = _fwd(["decoder_hidden_states"], {"decoder_hidden_states": "torch.Tensor"})
    _, fwd, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert missing == [] and fwd["decoder_hidden_states"][:2] == ["hidden", 64]
    sig = _fwd(["hidden_states", "original_hidden_states"], {"original_hidden_states": "torch.Tensor"})
    assert forward_inputs.derive(sig, FIELDS, DIMS)[1]["original_hidden_states"][:2] == ["tensor", 64]


def test_forward_input_that_may_be_none():
    """A required forward input whose annotation allows None, and no other rule gives: None (Ernie 4.5 VL's
    visual_token_mask); one a width rule gives stays a tensor; a plain tensor of unknown width stays missing."""
    sig = _fwd(["hidden_states", "visual_token_mask", "inputs_embeds", "mode", "mask"],
               {"visual_token_mask": "torch.Tensor | None", "inputs_embeds": "torch.Tensor | None",
                "mode": "Optional[str]", "mask": "torch.Tensor"})
    _, fwd, missing = forward_inputs.derive(sig, FIELDS, DIMS)
    assert {n: v[:2] for n, v in fwd.items()} == {"visual_token_mask": ["value", None], "inputs_embeds": ["tensor", 64],
                                                  "mode": ["value", None]}
    assert [m.split(":")[0] for m in missing] == ["forward input mask (torch.Tensor)"]


def test_extra_inputs_reach_the_example(tmp_path):
    """A layer whose forward takes a step index and a per-layer tensor gets a runnable example (status ok) that
    passes them by name; one with an input no rule covers stays no_template, naming it."""
    p = _graph(tmp_path, ["positions", "hidden_states", "current_step", "inputs_embeds"])
    g = json.loads(p.read_text())
    g["root_signature"]["forward"]["annotations"] = {"current_step": "int", "inputs_embeds": "torch.Tensor"}
    p.write_text(json.dumps(g))
    rec = a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    assert rec["status"] == "ok" and rec["missing"] == []
    src = (tmp_path / "o" / "A6.example.py").read_text()
    assert "{'current_step': ('int', 0), 'inputs_embeds': ('tensor', %d)}" % rec["dims"]["H"] in src
    assert any(n.startswith("forward input current_step = 0") for n in rec["notes"])
    g["root_signature"]["forward"]["annotations"]["current_step"] = "str"
    p.write_text(json.dumps(g))
    rec = a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "n")
    assert rec["status"] == "no_template" and "current_step (str)" in rec["missing"][0]


def test_a_block_without_positions_is_a_decoder_layer_only_with_attention():
    """GPT2Block's signature (a whole config; forward(hidden_states)) is an MLP/MoE block's too: A1 gives it the
    decoder roots behind the Attention trigger, and A6 classifies it a decoder layer only where its graph holds
    vLLM's Attention."""
    sig = _fwd(["hidden_states"], {"hidden_states": "torch.Tensor"})
    assert not is_decoder_layer("GPT2Block", "class", sig) and is_block_candidate("GPT2Block", "class", sig)
    roots, when = extra_roots("GPT2Block", "class", sig)
    assert roots == list(decoder_layer_roots("TRITON_ATTN")) and set(when) == set(roots) and set(when.values()) == {ATTENTION}
    assert extra_roots("SomeMLP", "function", sig) == ([], {})
    g = json.loads((MOCK / "A1.graph.json").read_text())
    g.update(symbol="GPT2Block", root_signature=sig)
    without = a6.classify(g)
    f, name = ATTENTION.split("::")
    g["python_nodes"].append({"id": ATTENTION, "file": f, "name": name, "emit_name": name, "kind": "class"})
    assert (without, a6.classify(g)) == ("generic", "decoder_layer")


@pytest.mark.parametrize("symbol,template", [("GPT2Block", "decoder_layer"), ("Qwen3MoeSparseMoeBlock", "generic"),
                                             ("MolmoDecoderNormAfterLayer", "decoder_layer")])
def test_a1_blocks_on_the_real_tree(tmp_path, vllm_0_26_0, symbol, template):
    """GPT2Block (forward(hidden_states), reaching Attention) is a decoder layer with the decoder roots; an MoE block
    of the same signature reaches no Attention, gets none of them and stays generic; MolmoDecoderNormAfterLayer
    inherits its __init__ from MolmoDecoderLayer (A1 reads the base's)."""
    from bundler_lib import graph as a1
    a1.run(tree=vllm_0_26_0, out=tmp_path, symbol=symbol, hint=None, variant={})
    g = json.loads((tmp_path / "A1.graph.json").read_text())
    assert a6.classify(g) == template and g["root_signature"]["__init__"]["required"] in (["config"], ["vllm_config"])
    ids = {n["id"] for n in g["python_nodes"]}
    assert all((r.split(".process_weights")[0] in ids) is (template == "decoder_layer")
               for r in BACKEND_ROOTS["TRITON_ATTN"])


def test_cache_config_stand_in_is_replaceable(tmp_path):
    """A layer may copy its cache_config with `dataclasses.replace` (a per-loop sliding window): the stand-in is
    copied with its fields and the change, still a stand-in. Run on CPU up to the layer's build (cpu_build_check)."""
    from tools.cpu_build_check import check
    rec = a6.run(_graph(tmp_path, ["positions", "hidden_states"]), "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    layer = textwrap.dedent('''
        import dataclasses
        _Base = Qwen3MoeDecoderLayer
        class Qwen3MoeDecoderLayer(_Base):
            def __init__(self, vllm_config, prefix=""):
                cc = vllm_config.cache_config
                loop = dataclasses.replace(cc, sliding_window=8)
                assert (loop.sliding_window, loop.block_size, cc.sliding_window) == (8, cc.block_size, None)
                assert loop.not_set is None and "cache_config" in repr(loop)
                raise NotImplementedError("replaced")  # the mock layer itself needs a GPU
    ''')
    path = tmp_path / "bundle.py"
    path.write_text((MOCK / "mock_bundle.py").read_text() + layer + (tmp_path / "o" / "A6.example.py").read_text())
    assert rec["status"] == "ok" and check(str(path)) == "FAILED NotImplementedError: replaced"


def test_extra_inputs_are_passed_to_the_forward(tmp_path, monkeypatch):
    """On CPU, with an attention-free stand-in layer (no Triton kernel runs): the example builds the layer with its
    derived __init__ index and calls forward with the derived step index and [T, H] tensor, by name."""
    import re
    import torch
    p = _graph(tmp_path, ["positions", "hidden_states", "current_step", "inputs_embeds"])
    g = json.loads(p.read_text())
    g["root_signature"]["__init__"] = {"required": ["vllm_config", "block_idx"], "optional": [],
                                       "annotations": {"block_idx": "int"}}
    g["root_signature"]["forward"]["annotations"] = {"current_step": "int", "inputs_embeds": "torch.Tensor"}
    p.write_text(json.dumps(g))
    rec = a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    layer = textwrap.dedent('''
        class Qwen3MoeDecoderLayer(torch.nn.Module):
            def __init__(self, vllm_config, block_idx, prefix=""):
                super().__init__()
                assert block_idx == 0
                self.scale = torch.nn.Parameter(torch.ones(1))
            def forward(self, positions, hidden_states, current_step, inputs_embeds):
                assert current_step == 0 and inputs_embeds.shape == hidden_states.shape
                return hidden_states * self.scale + inputs_embeds
    ''')
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    ns = _bundle_ns(layer + src)
    res = ns["invocation_example"](small=True, workload="prefill")
    x, e = res["inputs"]["hidden_states"], res["inputs"]["inputs_embeds"]
    assert rec["status"] == "ok" and res["inputs"]["current_step"] == 0
    assert torch.equal(res["outputs"]["hidden_states"], x + e)
    # an attention layer reading an encoder's K/V (cross-attention) is refused, naming it, before any cache is made
    cross = layer.replace("self.scale = ", "self.cross = CrossAttention()\n        self.scale = ")
    cross += textwrap.dedent('''
        class CrossAttention(torch.nn.Module):
            impl, kv_cache, attn_type, num_heads, num_kv_heads, head_size = None, None, "encoder_decoder", 2, 2, 8
    ''')
    with pytest.raises(NotImplementedError, match=r"\['cross'\] attend to an encoder's output"):
        _bundle_ns(cross + src)["invocation_example"](small=True, workload="prefill")
    # one attention layer per step: each gets its own KV cache, and the forward context the metadata of each
    steps = layer.replace("self.scale = ",
                          "self.steps = torch.nn.ModuleList([Step('a'), Step('b')])\n        self.scale = ")
    steps = steps.replace("assert current_step == 0", "assert sorted(get_forward_context().attn_metadata) == "
                          "['a', 'b']\n        assert current_step == 0")
    steps += textwrap.dedent('''
        class Step(torch.nn.Module):
            impl, kv_cache, attn_type, num_heads, num_kv_heads, head_size = None, None, "decoder", 2, 2, 8
            def __init__(self, name):
                super().__init__()
                self.layer_name = name
    ''')
    res = _bundle_ns(steps + src)["invocation_example"](small=True, workload="prefill")
    a, b = res["module"].steps
    assert a.kv_cache.shape == b.kv_cache.shape == (res["sizes"]["kv_blocks"], 2, 16, 16)
    assert a.kv_cache.data_ptr() != b.kv_cache.data_ptr()


def test_stacked_hidden_states_and_v_heads_of_their_own_size(tmp_path, monkeypatch):
    """On CPU with stand-in layers: a layer taking a stack of hidden states (A1's `stacks`) gets and returns
    [count, T, H]; an attention layer whose V heads differ from K's (`head_size_v`, TRITON_ATTN_DIFFKV) gets a KV
    cache of K head + V head and V-sized softmax segments in its metadata."""
    import re
    import torch
    p = _graph(tmp_path, ["positions", "hidden_states"])
    g = json.loads(p.read_text())
    g["root_signature"]["forward"]["stacks"] = {"hidden_states": {"count": "num_experts", "index": "top_k"}}
    p.write_text(json.dumps(g))
    rec = a6.run(p, "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    assert rec["status"] == "ok" and any("= [8, T, H] random" in n for n in rec["notes"])
    layer = textwrap.dedent('''
        class Qwen3MoeDecoderLayer(torch.nn.Module):
            def __init__(self, vllm_config, prefix=""):
                super().__init__()
                self.attn = Attn()
                self.scale = torch.nn.Parameter(torch.ones(1))
            def forward(self, positions, hidden_states):
                return hidden_states * self.scale
        class Attn(torch.nn.Module):
            impl, kv_cache, attn_type, num_heads, num_kv_heads, head_size = None, None, "decoder", 2, 2, 64
            head_size_v = 32
    ''')
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    res = _bundle_ns(layer + src)["invocation_example"](small=True, workload="prefill")
    T = res["sizes"]["T"]
    assert res["inputs"]["hidden_states"].shape == res["outputs"]["hidden_states"].shape == (8, T, 256)
    assert res["module"].attn.kv_cache.shape == (res["sizes"]["kv_blocks"], 2, 16, 64 + 32)
    assert res["inputs"]["attn_metadata"].softmax_segm_output.shape[-1] == 32


STACK_SIG_SRC = '''
    class FooDecoderLayer(nn.Module):
        def __init__(self, config, prefix=""):
            pass
        def forward(self, positions, hidden_states, residual):
            pass
    class Linear(nn.Module):
        def __init__(self, n):
            pass
    class FooDecoderLayers(nn.Module):
        def __init__(self, *, vllm_config, decoder_layers: list[FooDecoderLayer], parts: "list[Linear]",
                     layer_idx_start: int):
            self.decoder_layers = decoder_layers
        def forward(self, positions, hidden_states):
            for layer in self.decoder_layers:
                hidden_states, _ = layer(positions, hidden_states, None)
            return hidden_states
'''


def test_layer_signature_records_the_decoder_layers_a_stack_is_built_from():
    """An __init__ parameter annotated as a list of a decoder-layer class (Gemma4's Self/CrossDecoderLayers:
    `decoder_layers: list[Gemma4DecoderLayer]`) is a layer stack's; a list of another class is not. A stack is a
    decoder-layer example (core.classify) whose extra roots add the decoder layer's class, once A1 qualified it."""
    classes = {c.name: c for c in ast.parse(textwrap.dedent(STACK_SIG_SRC)).body}
    sig = layer_signature(classes["FooDecoderLayers"], lambda name, within: classes.get(name))
    assert sig["__init__"]["layer_lists"] == {"decoder_layers": "FooDecoderLayer"}
    assert is_layer_stack("class", sig) and not is_layer_stack("class", BLOCK)
    assert a6.classify({"symbol": "FooDecoderLayers", "kind": "class", "root_signature": sig}) == "decoder_layer"
    sig["__init__"]["layer_lists"]["decoder_layers"] = "m.py::FooDecoderLayer"
    roots, _ = extra_roots("FooDecoderLayers", "class", sig)
    assert "m.py::FooDecoderLayer" in roots and set(decoder_layer_roots(DEFAULT_BACKEND)) <= set(roots)
    assert "layer_lists" not in layer_signature(classes["FooDecoderLayers"])["__init__"]  # the class is not found


def _stack_graph(tmp_path, layer_file="vllm/model_executor/models/qwen3_moe.py"):
    g = json.loads((MOCK / "A1.graph.json").read_text())
    g["symbol"] = "Stack"
    g["root_signature"] = {
        "__init__": {"required": ["vllm_config", "decoder_layers", "layer_idx_start"], "optional": ["prefix"],
                     "annotations": {"decoder_layers": "list[Qwen3MoeDecoderLayer]", "layer_idx_start": "int"},
                     "layer_lists": {"decoder_layers": f"{layer_file}::Qwen3MoeDecoderLayer"}},
        "forward": {"required": ["positions", "hidden_states"], "optional": [], "annotations": {}}}
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    return p


def test_layer_stack_runs_the_layers_it_is_built_from(tmp_path, monkeypatch):
    """On CPU with stand-in layers: the stack example builds STACK_LAYERS decoder layers as vLLM's model does (prefix
    model.layers.<i>), hands them to the stack (which keeps them in a plain list, as Gemma4's, behind a decorator
    hiding its __init__'s parameters, as support_torch_compile does), fills their weights,
    gives each attention its own KV cache and runs the stack's forward; a stack whose layer class the bundle lacks
    has no template, naming it."""
    import re
    import torch
    from bundler_lib.example.layer_stack import STACK_LAYERS
    rec = a6.run(_stack_graph(tmp_path), "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    assert rec["template"] == "decoder_layer" and rec["status"] == "ok", rec["missing"]
    layer = textwrap.dedent('''
        class Qwen3MoeDecoderLayer(torch.nn.Module):
            def __init__(self, vllm_config, prefix=""):
                super().__init__()
                self.prefix = prefix
                self.attn = Attn(prefix + ".self_attn.attn")
                self.scale = torch.nn.Parameter(torch.empty(1))
            def forward(self, positions, hidden_states, residual):
                return hidden_states * self.scale, None
        class Attn(torch.nn.Module):
            impl, kv_cache, attn_type, num_heads, num_kv_heads, head_size = None, None, "decoder", 2, 2, 8
            def __init__(self, name):
                super().__init__()
                self.layer_name = name
        def compiled(cls):  # as vLLM's support_torch_compile: a wrapper hides the parameters of __init__
            old_init = cls.__init__
            def __init__(self, *args, vllm_config=None, prefix="", **kwargs):
                old_init(self, *args, vllm_config=vllm_config, prefix=prefix, **kwargs)
            cls.__init__ = __init__
            return cls
        @compiled
        class Stack(torch.nn.Module):
            def __init__(self, *, vllm_config, decoder_layers, layer_idx_start, prefix=""):
                super().__init__()
                self.decoder_layers, self.layer_idx_start = decoder_layers, layer_idx_start
            def forward(self, positions, hidden_states):
                assert sorted(get_forward_context().attn_metadata) == [
                    l.prefix + ".self_attn.attn" for l in self.decoder_layers]
                for layer in self.decoder_layers:
                    hidden_states, _ = layer(positions, hidden_states, None)
                return hidden_states
    ''')
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    res = _bundle_ns(layer + src)["invocation_example"](small=True, workload="prefill")
    layers = res["module"].decoder_layers
    assert [l.prefix for l in layers] == [f"model.layers.{i}" for i in range(STACK_LAYERS)]
    assert res["module"].layer_idx_start == 0 and all(l.scale.item() == 1.0 for l in layers)
    assert len({l.attn.kv_cache.data_ptr() for l in layers}) == STACK_LAYERS
    assert torch.equal(res["outputs"]["hidden_states"], res["inputs"]["hidden_states"])
    rec = a6.run(_stack_graph(tmp_path, "vllm/model_executor/models/other.py"), "tiny/qwen3-moe", TINY, None,
                 tmp_path / "o2")
    assert rec["status"] == "no_template" and "other.py::Qwen3MoeDecoderLayer" in rec["missing"][0]


def test_heterogeneous_config_per_layer(tmp_path, monkeypatch):
    """transformers' heterogeneous config (`per_layer_config`: layer index as text -> the fields it overrides) is read
    as transformers' per-layer view: `config.per_layer_config[i]` is the config with layer i's overrides (vLLM
    0.33.0's Gemma4DecoderLayer reads its head_dim there); the global config keeps its own."""
    import re
    import torch
    cfg = json.loads(TINY.read_text())
    cfg["per_layer_config"] = {"01": {"head_dim": 128}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    rec = a6.run(_graph(tmp_path, ["positions", "hidden_states"]), "tiny/qwen3-moe", path, None, tmp_path / "o")
    layer = textwrap.dedent('''
        class Qwen3MoeDecoderLayer(torch.nn.Module):
            def __init__(self, vllm_config, prefix=""):
                super().__init__()
                hf = vllm_config.model_config.hf_text_config
                plc = hf.per_layer_config
                assert (plc[0].head_dim, plc[1].head_dim, hf.head_dim, len(plc)) == (64, 128, 64, 2)
                assert plc[1].hidden_size == hf.hidden_size and [c.head_dim for c in plc] == [64, 128]
                self.scale = torch.nn.Parameter(torch.ones(1))
            def forward(self, positions, hidden_states):
                return hidden_states * self.scale
    ''')
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    res = _bundle_ns(layer + src)["invocation_example"](small=True, workload="prefill")
    assert rec["status"] == "ok" and res["outputs"]["hidden_states"].shape == res["inputs"]["hidden_states"].shape
