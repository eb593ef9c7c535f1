"""A6 layer kinds: decoder-layer-like classes found by their signature (A1's `root_signature`), and the kinds
without a template (cross-attention inputs, attention-free configs), whose build succeeds and whose example
raises one line naming what is missing."""

import ast
import json
import textwrap
from pathlib import Path

import pytest

from bundler_lib import example as a6
from bundler_lib.common.example_roots import INIT_INPUTS, is_decoder_layer, layer_signature
from bundler_lib.example import decoder
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


def test_cross_attention_inputs_have_no_template(tmp_path):
    rec = a6.run(_graph(tmp_path, ["hidden_states", "encoder_hidden_states"]), "tiny/qwen3-moe", TINY, None,
                 tmp_path / "o")
    assert rec["template"] == "decoder_layer" and rec["status"] == "no_template"
    assert "encoder_hidden_states" in rec["missing"][0]
    src = (tmp_path / "o" / "A6.example.py").read_text()
    with pytest.raises(NotImplementedError) as ei:
        _bundle_ns(src)["invocation_example"](small=True)
    msg = str(ei.value)
    assert "no example template for Qwen3MoeDecoderLayer" in msg and "encoder_hidden_states" in msg
    assert "\n" not in msg
    ok = a6.run(_graph(tmp_path, ["positions", "hidden_states", "residual"]), "tiny/qwen3-moe", TINY, None,
                tmp_path / "ok")
    assert ok["status"] == "ok" and ok["missing"] == []


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
