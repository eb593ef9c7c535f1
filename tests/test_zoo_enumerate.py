"""The zoo (benchmarks/zoo.py): what it enumerates from the tree, the BUILD it writes, and the models it maps.

CPU only, no Pants: the enumeration and the model mapping read the tree and the committed
`models/transformers-architectures.json` (tools/gen_model_configs.py writes it from transformers 5.17.0).
"""

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import zoo  # noqa: E402


@pytest.fixture(scope="module")
def zoo_0_26_0(vllm_0_26_0):
    return zoo.enumerate_zoo(vllm_0_26_0)


def _by(syms, name, file_stem=None):
    return [s for s in syms if s.name == name and (file_stem is None or Path(s.file).stem == file_stem)]


def test_enumeration_on_the_real_sdist(zoo_0_26_0):
    syms = zoo_0_26_0
    # the issue counts 129 (116 *DecoderLayer, gemma4's two *DecoderLayers, 11 blocks); the stack rule also finds
    # FalconH1ParallelHybrid and molmo's two *DecoderNormAfterLayer variants: 132 on 0.26.0
    assert 125 <= len(syms) <= 140, len(syms)
    names = {s.name for s in syms}
    for expected in ("GPT2Block", "Qwen3MoeDecoderLayer", "Qwen3DecoderLayer", "BloomBlock", "MPTBlock", "GPTJBlock",
                     "DbrxBlock", "BailingMoeBlock", "GLMBlock", "SarvamMLABlock", "GPTNeoXLayer", "PhiLayer",
                     "FalconH1ParallelHybrid", "Gemma4SelfDecoderLayers", "WhisperDecoderLayer"):
        assert expected in names, expected
    # gpt_oss' TransformerBlock (built through `self.block_cls`), not pixtral's vision TransformerBlock
    tb = _by(syms, "TransformerBlock")
    assert [s.file for s in tb] == ["vllm/model_executor/models/gpt_oss.py"] and tb[0].hint == tb[0].file
    # encoder stacks and per-layer helpers are not decoder layers
    for not_a_layer in ("WhisperEncoderLayer", "WhisperCausalEncoderLayer", "LoopGateProjection", "CLIPEncoderLayer",
                        "Qwen2VisionBlock", "PPMissingLayer"):
        assert not_a_layer not in names, not_a_layer
    assert sum(1 for s in syms if s.name.endswith("DecoderLayer")) == 116
    assert sum(1 for s in syms if s.name.endswith("DecoderLayers")) == 2
    llamas = _by(syms, "LlamaDecoderLayer")
    assert sorted(Path(s.file).stem for s in llamas) == ["llama", "llama_eagle", "llama_eagle3"]
    assert all(s.hint == s.file for s in llamas) and len({s.target for s in syms}) == len(syms)
    assert _by(syms, "Qwen3MoeDecoderLayer")[0].hint is None


def test_committed_build_is_up_to_date(zoo_0_26_0):
    committed = (ROOT / "targets" / "zoo" / "vllm_0_26_0" / "BUILD").read_text()
    assert zoo.build_file(zoo_0_26_0, "0.26.0") == committed, (
        "targets/zoo/vllm_0_26_0/BUILD is stale: run `python3 benchmarks/zoo.py --version 0.26.0 --targets-only`")
    # every output under zoo/<version>/, one per target; every model named has its generated config
    outputs = re.findall(r'output_path="([^"]+)"', committed)
    assert len(outputs) == len(set(outputs)) == len(zoo_0_26_0)
    assert all(o.startswith("zoo/0.26.0/") for o in outputs)
    for model in set(re.findall(r'model="([^"]+)"', committed)):
        d = ROOT / "models" / model.replace("/", "--")
        assert json.loads((d / "config.json").read_text())["model_type"], model
        source = (d / "SOURCE.txt").read_text()
        assert ("transformers 5.17.0" in source or "(parsed, not imported)" in source
                or source.startswith("published config.json of ")), model


def test_committed_build_0_33_0_is_up_to_date(vllm_0_33_0):
    committed = (ROOT / "targets" / "zoo" / "vllm_0_33_0" / "BUILD").read_text()
    assert zoo.build_file(zoo.enumerate_zoo(vllm_0_33_0), "0.33.0") == committed, (
        "targets/zoo/vllm_0_33_0/BUILD is stale: run `python3 benchmarks/zoo.py --version 0.33.0 --targets-only`")


@pytest.mark.parametrize("name,file_stem,model_type", [
    ("MixtralDecoderLayer", None, "mixtral"),
    ("Qwen3MoeDecoderLayer", None, "qwen3_moe"),
    ("GPT2Block", None, "gpt2"),                       # GPT2LMHeadModel also serves gpt-sw3: the named type wins
    ("Gemma3DecoderLayer", None, "gemma3_text"),        # Gemma3ForCausalLM is the text model
    ("PhiMoEDecoderLayer", None, "phimoe"),             # vLLM's PhiMoEForCausalLM is transformers' PhimoeForCausalLM
    ("TransformerBlock", None, "gpt_oss"),
    ("LlamaDecoderLayer", "llama", "llama"),
    ("LlamaDecoderLayer", "llama_eagle", "llama"),      # an EAGLE draft subclassing llama's layer takes its type
    ("Ernie4_5_VLMoeDecoderLayer", None, "ernie4_5_vl_moe"),   # registered through ernie45_vl, which imports it
    ("ArcticDecoderLayer", None, "arctic"),   # remote code transformers lacks: vLLM 0.26.0's own ArcticConfig
    ("GLMBlock", None, "chatglm"),            # ChatGLMModel -> vLLM's ChatGLMConfig
    ("InternLMDecoderLayer", None, None),     # remote code, and vLLM defines no InternLM2 config either
    # transformers knows no registered architecture: the config class the layer's `config` is annotated with
    ("DeepseekV2Eagle3DecoderLayer", None, "deepseek_v2"),   # DeepseekV2Config | DeepseekV3Config | None
    ("Rnj1DecoderLayer", None, "gemma3_text"),
    ("MolmoDecoderLayer", None, None),        # `config: PretrainedConfig`: no model's class
    ("Molmo2DecoderLayer", None, "molmo2.TextConfig"),   # molmo2.py's own dataclass, a default for every field
])
def test_model_type_mapping(zoo_0_26_0, name, file_stem, model_type):
    (s,) = _by(zoo_0_26_0, name, file_stem)
    assert s.model_type == model_type, s.model_reason
    if model_type is None:
        assert s.model is None and "knows none of the architectures" in s.model_reason
    elif name == "Molmo2DecoderLayer":
        assert s.model == f"vllm-0.26.0/{model_type}" and "a dataclass with a default for every field" in s.model_reason
    elif name in ("ArcticDecoderLayer", "GLMBlock"):
        assert s.model == f"vllm-0.26.0/{model_type}" and "vLLM 0.26.0's own config class" in s.model_reason
    else:
        assert s.model == f"transformers/{model_type}"


def test_a_published_config_naming_the_architecture(zoo_0_26_0):
    # DeciLMForCausalLM is remote code: its layer reads config.block_configs, which the LlamaConfig its `config` is
    # annotated with lacks; the published Nemotron-Super config names the architecture
    (s,) = _by(zoo_0_26_0, "DeciLMDecoderLayer")
    assert s.model == "nvidia/Llama-3_3-Nemotron-Super-49B-v1" and s.model_type == "nemotron-nas", s.model_reason
    assert "its published config names DeciLMForCausalLM" in s.model_reason


def test_published_configs_on_a_small_tree(tmp_path):
    """Where transformers knows no registered architecture, a published config naming it wins over the config
    class the layer's `config` is annotated with; a generated config (transformers--*, vllm-<version>--*) naming it
    is not a published one."""
    models = tmp_path / zoo.MODELS
    models.mkdir(parents=True)
    (models / "registry.py").write_text('_TEXT_GENERATION_MODELS = {"FooForCausalLM": ("foo", "FooForCausalLM"),\n'
                                        '                           "BarForCausalLM": ("bar", "BarForCausalLM")}\n')
    layer = ("from transformers import LlamaConfig\nimport torch.nn as nn\n\n"
             "class {}DecoderLayer(nn.Module):\n    def __init__(self, config: LlamaConfig): pass\n")
    (models / "foo.py").write_text(layer.format("Foo"))
    (models / "bar.py").write_text(layer.format("Bar"))
    (models / "baz.py").write_text("from .foo import FooDecoderLayer\n\nclass BazDecoderLayer(FooDecoderLayer): pass\n")
    md = tmp_path / "models"
    for d, arch in (("acme--Foo-7B", "FooForCausalLM"), ("transformers--bar", "BarForCausalLM")):
        (md / d).mkdir(parents=True)
        (md / d / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": d.lower()}))
    (md / "transformers--llama").mkdir()
    (md / "transformers--llama" / "config.json").write_text("{}")
    assert zoo.published_configs(md) == {"FooForCausalLM": ["acme/Foo-7B"]}
    arch_map = {"architectures": {}, "config_classes": {"LlamaConfig": ["llama"]}}
    syms = {s.name: s for s in zoo.enumerate_zoo(tmp_path, arch_map, md)}
    foo, bar = syms["FooDecoderLayer"], syms["BarDecoderLayer"]
    assert (foo.model, foo.model_type, foo.model_org) == ("acme/Foo-7B", "acme--foo-7b", "acme"), foo.model_reason
    assert (bar.model, bar.model_type) == ("transformers/llama", "llama"), bar.model_reason
    assert syms["BazDecoderLayer"].model == "acme/Foo-7B"   # an unregistered subclass takes its base's
    assert 'model="acme/Foo-7B",' in zoo.build_file([foo], "0.26.0")


def test_a_vllm_text_config_class_named_for_the_architecture(vllm_0_33_0):
    # BailingMoeV3ForCausalLM: transformers knows it not; vLLM 0.33.0's BailingMoeV3TextConfig (the text config of
    # its VL model, model_type bailing_hybrid) is named for it
    (s,) = _by(zoo.enumerate_zoo(vllm_0_33_0), "BailingMoeV3DecoderLayer")
    assert s.model_type == "bailing_hybrid" and s.model == "vllm-0.33.0/bailing_hybrid", s.model_reason
    assert "BailingMoeV3TextConfig" in s.model_reason


def test_declared_attention_type_becomes_the_variant(zoo_0_26_0):
    # OpenAIPrivacyFilterForTokenClassification is @attn_type("encoder_only"): its layer's EncoderOnlyAttention runs
    # the backend's encoder path, which the default decoder variant would prune
    (s,) = _by(zoo_0_26_0, "OpenAIPrivacyFilterDecoderLayer")
    assert s.variant == {"attn_type": "encoder_only"} and "declares attn_type 'encoder_only'" in s.model_reason
    assert [x.name for x in zoo_0_26_0 if "attn_type" in x.variant] == ["OpenAIPrivacyFilterDecoderLayer"]
    assert 'variant={"attn_type": "encoder_only"},' in zoo.build_file([s], "0.26.0")


def test_a_diffkv_attention_gets_the_triton_diffkv_backend(zoo_0_26_0):
    """mimo_v2.py picks its attention backend among AttentionBackendEnum's *_DIFFKV members (V heads of 128, K of
    192): its layer gets the variant's Triton one (vLLM's FLASH_ATTN_DIFFKV needs its FlashAttention extension);
    openpangu.py imports FlashAttentionDiffKVBackend itself, naming no member, and keeps the default."""
    (s,) = _by(zoo_0_26_0, "MiMoV2FlashDecoderLayer")
    assert s.variant == {"attention_backend": "TRITON_ATTN_DIFFKV"}
    assert [x.name for x in zoo_0_26_0 if "attention_backend" in x.variant] == ["MiMoV2FlashDecoderLayer"]
    assert 'variant={"attention_backend": "TRITON_ATTN_DIFFKV"},' in zoo.build_file([s], "0.26.0")


def test_stack_rule_on_a_small_tree(tmp_path):
    """The forms a decoder stack's layer function takes: a class, `self.<attr>`, a parameter (its default and what
    subclasses pass), a local function choosing from a module-level dict; an encoder stack and a make_layers not
    assigned to start/end_layer are left out."""
    models = tmp_path / zoo.MODELS
    models.mkdir(parents=True)
    (models / "registry.py").write_text('_TEXT_GENERATION_MODELS = {"FooForCausalLM": ("foo", "FooForCausalLM")}\n')
    (models / "foo.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from .utils import make_layers

        class ABlock(nn.Module): pass
        class BBlock(nn.Module): pass
        class CBlock(ABlock): pass
        class DBlock(nn.Module): pass
        class EBlock(nn.Module): pass
        class Gate(nn.Module): pass
        class EncLayer(nn.Module): pass
        class NotALayer: pass
        KINDS = {"a": DBlock, "b": EBlock}

        class FooModel(nn.Module):
            block_cls = ABlock
            def __init__(self, config, layer_type=BBlock):
                self.start_layer, self.end_layer, self.layers = make_layers(2, lambda prefix: self.block_cls(prefix))
                self.start_layer, self.end_layer, self.h = make_layers(2, lambda prefix: layer_type(prefix))
                _, _, self.gates = make_layers(2, lambda prefix: Gate(prefix))

        class BarModel(FooModel):
            block_cls = CBlock
            def __init__(self, config):
                super().__init__(config, layer_type=NotALayer)
                def get_layer(prefix):
                    layer_class = KINDS[config.kind]
                    return layer_class(prefix)
                self.start_layer, self.end_layer, self.layers = make_layers(2, get_layer)

        class FooEncoder(nn.Module):
            def __init__(self):
                self.start_layer, self.end_layer, self.layers = make_layers(2, lambda prefix: EncLayer())

        class FooDecoderLayer(nn.Module): pass
    '''))
    syms = zoo.enumerate_zoo(tmp_path, arch_map={"architectures": {"FooForCausalLM": ["foo"]}},
                             models_dir=tmp_path / "no-models")
    got = {s.name: s.rules for s in syms}
    assert got == {"ABlock": ["stack"], "BBlock": ["stack"], "CBlock": ["stack"], "DBlock": ["stack"],
                   "EBlock": ["stack"], "FooDecoderLayer": ["name"]}
    assert all(s.model_type == "foo" and s.model is None for s in syms)


def test_annotated_config_class_on_a_small_tree(tmp_path):
    """A layer of an architecture transformers does not know takes the transformers config class its `config`
    parameter is annotated with (the first, imported from transformers), its subclasses after it; an annotation
    naming no transformers config class, or a class of an unregistered module, gives none."""
    models = tmp_path / zoo.MODELS
    models.mkdir(parents=True)
    (models / "registry.py").write_text('_TEXT_GENERATION_MODELS = {"FooForCausalLM": ("foo", "FooForCausalLM")}\n')
    src = textwrap.dedent('''
        from dataclasses import dataclass
        import torch.nn as nn
        from transformers import BarConfig, PretrainedConfig
        from transformers import BazConfig as Baz

        class FooDecoderLayer(nn.Module):
            def __init__(self, vllm_config, config: Baz | BarConfig | None = None): pass

        class FooDraftDecoderLayer(FooDecoderLayer): pass

        class QuxDecoderLayer(nn.Module):
            def __init__(self, config: PretrainedConfig): pass

        @dataclass
        class TextConfig:
            hidden_size: int = 1024
            rope_scaling_layers: tuple[int, ...] | None = None

        @dataclass
        class PartialConfig:
            hidden_size: int

        class TextDecoderLayer(nn.Module):
            def __init__(self, config: TextConfig): pass

        class PartialDecoderLayer(nn.Module):
            def __init__(self, config: PartialConfig): pass
    ''')
    (models / "foo.py").write_text(src)
    (models / "unregistered.py").write_text(src)
    arch_map = {"architectures": {}, "config_classes": {"BarConfig": ["bar"], "BazConfig": ["baz"]}}
    syms = {(s.name, Path(s.file).stem): s for s in zoo.enumerate_zoo(tmp_path, arch_map, tmp_path / "no-models")}
    assert syms[("FooDecoderLayer", "foo")].model_type == "baz"
    assert "annotates `config` as transformers' BazConfig" in syms[("FooDecoderLayer", "foo")].model_reason
    assert syms[("FooDraftDecoderLayer", "foo")].model_type == "baz"
    assert syms[("QuxDecoderLayer", "foo")].model_type is None
    assert syms[("FooDecoderLayer", "unregistered")].model_type is None
    # the module's own dataclass, a literal default for every field: vLLM's own config class of that module
    text = syms[("TextDecoderLayer", "foo")]
    assert (text.model_type, text.model_org) == ("foo.TextConfig", "vllm-None")
    assert zoo.dataclass_defaults(zoo._parse(models / "foo.py"), "TextConfig") == {
        "hidden_size": 1024, "rope_scaling_layers": None}
    assert syms[("PartialDecoderLayer", "foo")].model_type is None


def test_stage_seconds_from_the_workunit_log(tmp_path):
    """Each target's seconds per stage: the stage processes that ran (rules/stages.py's descriptions), A3's two
    summed, across the log files of a run; other workunits and other processes are not counted."""
    def wu(name, description, secs, nanos=0):
        return {"name": name, "description": description, "duration_secs": secs, "duration_nanos": nanos}
    t = "targets/zoo/vllm_0_26_0:FooDecoderLayer"
    (tmp_path / "run1.json").write_text(json.dumps([
        wu("run_local_process", f"A1 graph: {t}", 2, 500_000_000),
        wu("run_local_process", f"A3 collect-triton: {t}", 1),
        wu("run_local_process", f"A3 collect-triton: {t}", 0, 250_000_000),
        wu("rules.stages.run_stage", f"A1 graph: {t}", 9),
        wu("run_local_process", "Extract vllm-0.26.0.tar.gz", 3),
    ]))
    (tmp_path / "run2.json").write_text(json.dumps([wu("run_local_process", f"A7 package: {t}", 4)]))
    assert zoo.stage_seconds(tmp_path) == {t: {"A1": 2.5, "A3": 1.25, "A7": 4.0}}
