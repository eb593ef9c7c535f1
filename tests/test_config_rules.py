"""A6's config derivation rules (bundler_lib/example/config_rules.py) and the example's config stand-in that
applies them (state.py's snippet), on CPU."""

import json
from pathlib import Path

import pytest

from bundler_lib.example import config_rules, state

LLAMA_LIKE = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 4, "rms_norm_eps": 1e-6,
              "max_seq_len": 8192, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}


def _d(cfg):
    return {k: v for k, (v, _) in config_rules.derived(cfg).items()}


def test_head_dim_kv_heads_and_synonyms():
    got = _d({**LLAMA_LIKE, "num_key_value_heads": None})
    assert got["head_dim"] == 128
    assert got["num_key_value_heads"] == 32
    assert got["max_position_embeddings"] == 8192
    assert got["layer_norm_epsilon"] == got["layer_norm_eps"] == got["norm_eps"] == 1e-6
    assert "rms_norm_eps" not in got  # present: never derived
    assert _d({**LLAMA_LIKE, "kv_channels": 96})["head_dim"] == 96
    assert _d({**LLAMA_LIKE, "num_kv_heads": 8})["num_key_value_heads"] == 8


def test_rope_rules():
    got = _d(LLAMA_LIKE)
    assert got["rope_theta"] == 5e5
    assert got["partial_rotary_factor"] == 1.0 and got["rotary_dim"] == 128
    # transformers 5's rope_scaling is rope_parameters, a dict even for the default rope (InternS1-Pro reads
    # rope_scaling.get(...) from it)
    assert got["rope_scaling"] == LLAMA_LIKE["rope_parameters"]
    partial = {**LLAMA_LIKE, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0,
                                                 "partial_rotary_factor": 0.5}}
    got = _d(partial)
    assert got["rotary_dim"] == 64
    assert got["rope_scaling"]["type"] == "yarn" and got["rope_scaling"]["factor"] == 4.0
    assert _d({**LLAMA_LIKE, "rotary_pct": 0.25})["rotary_dim"] == 32
    assert _d({"hidden_size": 8, "num_attention_heads": 2, "rotary_emb_base": 1e4})["rope_theta"] == 1e4


def test_rope_fields_per_layer_type_are_the_full_attention_layers():
    """transformers 5 nests a checkpoint's rope_theta and partial_rotary_factor per layer type (MiMo-V2-Flash's
    {"full_attention": {...0.334...}, "sliding_attention": {...}}); vLLM reads the top-level fields, a checkpoint's
    full-attention layers' (zoo-gpu-1: partial_rotary_factor 1.0 "not stated", theta vLLM's default 1e6: the whole
    head rotated, MiMoV2FlashDecoderLayer parity rel L2 0.138)."""
    per_type = {"full_attention": {"rope_type": "default", "rope_theta": 5e6, "partial_rotary_factor": 0.334},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}}
    got = _d({**LLAMA_LIKE, "head_dim": 192, "rope_parameters": per_type})
    assert (got["rope_theta"], got["partial_rotary_factor"], got["rotary_dim"]) == (5e6, 0.334, 64)
    got = _d({**LLAMA_LIKE, "rope_parameters": {"sliding_attention": per_type["sliding_attention"]}})
    assert "rope_theta" not in got and got["partial_rotary_factor"] == 1.0


def test_layer_types_and_mlp_layer_types():
    assert _d(LLAMA_LIKE)["layer_types"] == ["full_attention"] * 4
    # which layers slide is model-specific: no rule, the key stays missing (the example names it)
    assert "layer_types" not in _d({**LLAMA_LIKE, "sliding_window": 4096})
    assert _d({**LLAMA_LIKE, "sliding_window": 4096, "use_sliding_window": False})["layer_types"][0] == "full_attention"
    got = _d({**LLAMA_LIKE, "mlp_layer_types": ["dense", "dense", "sparse", "sparse"]})
    assert got["first_k_dense_replace"] == 2
    assert got["is_moe_layer"] == [False, False, True, True]
    assert "first_k_dense_replace" not in _d({**LLAMA_LIKE, "mlp_layer_types": ["dense", "mixture"]})


def test_mlp_layer_types_as_sparse_step_and_dense_layers():
    # the Qwen convention (mlp_only_layers, decoder_sparse_step) reproducing mlp_layer_types
    types = ["dense", "sparse", "dense", "sparse"]
    got = _d({**LLAMA_LIKE, "mlp_layer_types": types})
    assert got["mlp_only_layers"] == [0, 2] and got["decoder_sparse_step"] == 1
    assert [i not in got["mlp_only_layers"] and (i + 1) % got["decoder_sparse_step"] == 0
            for i in range(4)] == [t == "sparse" for t in types]
    assert "decoder_sparse_step" not in _d(LLAMA_LIKE)


def test_hybrid_layer_pattern_marks_sliding_layers():
    got = _d({**LLAMA_LIKE, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]})
    assert got["hybrid_layer_pattern"] == [0, 1, 1]
    assert "hybrid_layer_pattern" not in _d({**LLAMA_LIKE, "layer_types": ["full_attention", "linear_attention"]})


def test_residual_stream_block_widths():
    got = _d({**LLAMA_LIKE, "hidden_size": 2048})
    assert got["block_dim"] == got["conv_dim"] == 2048
    assert "block_dim" not in _d({"num_attention_heads": 2})


def test_activation_names_and_query_scalar():
    got = _d({**LLAMA_LIKE, "hidden_act": "silu"})
    assert got["hidden_activation"] == got["activation_function"] == "silu"
    assert _d({**LLAMA_LIKE, "activation_function": "gelu"})["hidden_act"] == "gelu"
    assert "hidden_act" not in _d(LLAMA_LIKE)
    assert _d(LLAMA_LIKE)["query_pre_attn_scalar"] == 128
    assert _d({**LLAMA_LIKE, "head_dim": 256})["query_pre_attn_scalar"] == 256


def test_flags_and_bias():
    assert _d({**LLAMA_LIKE, "attention_bias": True})["qkv_bias"] is True


def _stand_in(cfg, extra_globals=None):
    """Run the example's config part on CPU: (hf, config_assumed)."""
    src = ("def f(dims, flags, dtype, device):\n"
           + state.snippet({}, cfg, DIMS, {}, "the test config")
           + "    return hf, config_assumed\n")
    ns = dict(extra_globals or {})
    exec(compile(src, "snippet.py", "exec"), ns)
    import torch
    return ns["f"](DIMS, {}, torch.float32, torch.device("cpu"))


DIMS = {"H": 4096, "H_q": 32, "H_kv": 8, "Dh": 128, "max_ctx": 8192, "eps": 1e-6}


def test_stand_in_applies_rules_logs_and_fails_clearly(capsys):
    hf, assumed = _stand_in({**LLAMA_LIKE, "num_key_value_heads": 8, "head_dim": None,
                             "attn_config": {"kv_n_heads": 2, "inner": {"x": 1}}})
    assert hf.head_dim == 128 and hf.use_residual is False and hf.qkv_bias is False
    assert assumed[0].startswith("config.head_dim=128 (") and len(assumed) == 3
    assert hf.head_dim == 128 and len(assumed) == 3  # read once, logged once
    assert "assumed config.use_residual=False" in capsys.readouterr().err
    assert not hasattr(hf, "__wrapped__")
    assert getattr(hf, "is_causal", True) is True and not hasattr(hf, "use_x")  # the reader's default stands
    # nested sub-configs: by attribute and as a mapping
    assert hf.attn_config.kv_n_heads == 2 and hf.attn_config["kv_n_heads"] == 2 and hf.attn_config.inner.x == 1
    with pytest.raises(AttributeError, match=r"config\.attn_config\.clip_qkv, which the test config lacks"):
        hf.attn_config.clip_qkv
    assert hf.attn_config.rope_theta == 1e4  # moved out of the sub-config: the top-level rule (flags give no rope)
    with pytest.raises(AttributeError, match=r"reads config\.original_rope.*assumed so far: config\.head_dim=128"):
        hf.original_rope
    assert getattr(hf, "original_rope", None) is None


def test_a_synonym_the_config_states_none_stays_none_to_a_getattr_with_default():
    """Cohere2Moe's config states rms_norm_eps None beside layer_norm_eps 1e-5 and vLLM picks RMSNorm where
    `getattr(config, "rms_norm_eps", None)` is set: the example answered 1e-5 from the synonym, an RMSNorm where
    transformers (and the checkpoint) have a LayerNorm (zoo-gpu-1: Cohere2MoeDecoderLayer prefill ratio 2.42).
    Read directly, the key still takes its synonym's value."""
    cfg = {**LLAMA_LIKE, "rms_norm_eps": None, "layer_norm_eps": 1e-5}
    hf, assumed = _stand_in(cfg)
    assert getattr(hf, "rms_norm_eps", None) is None and "states None" in assumed[0]
    hf, _ = _stand_in(cfg)
    assert hf.rms_norm_eps == 1e-5


def test_stand_in_is_the_bundles_config_class():
    class PretrainedConfig:
        pass

    class ToyConfig(PretrainedConfig):
        model_type = "toy"
        head_dim = None  # a class-level default (a dataclass field): the derivation rule still answers

        @property
        def rotary(self):
            return not self.alibi

    hf, _ = _stand_in({**LLAMA_LIKE, "model_type": "toy", "alibi": False}, {"ToyConfig": ToyConfig})
    assert isinstance(hf, ToyConfig)
    assert hf.rotary is True and hf.head_dim == 128
    hf, _ = _stand_in({**LLAMA_LIKE, "model_type": "other"}, {"ToyConfig": ToyConfig})
    assert not isinstance(hf, ToyConfig)


def test_stand_in_never_takes_transformers_class():
    # the example runs the same without transformers: a property of transformers' config class is a value of
    # the model's config.json (tools/gen_model_configs.py), never read from an installed transformers
    pytest.importorskip("transformers")
    hf, _ = _stand_in({**LLAMA_LIKE, "model_type": "falcon", "alibi": False})
    assert type(hf).__mro__[1].__module__ != "transformers.models.falcon.configuration_falcon"
    assert "rotary" not in dir(type(hf))
    falcon = json.loads((Path(__file__).resolve().parents[1] / "models/transformers--falcon/config.json").read_text())
    assert falcon["rotary"] is True and falcon["head_dim"] == 64


def test_stand_in_reads_a_list_as_its_text(capsys):
    # a config class's tuple that the layer reads as a checkpoint's comma-separated string (.strip().split(","))
    hf, assumed = _stand_in({**LLAMA_LIKE, "moe_layers_enum": [4, 5, 6]})
    assert hf.moe_layers_enum == [4, 5, 6] and isinstance(hf.moe_layers_enum, list)
    assert [int(i) for i in hf.moe_layers_enum.strip().split(",")] == [4, 5, 6]
    assert assumed == ["config.moe_layers_enum='4,5,6' (" + config_rules.LIST_AS_TEXT_RULE + ")"]
    assert "assumed config.moe_layers_enum='4,5,6'" in capsys.readouterr().err
    with pytest.raises(AttributeError):
        hf.moe_layers_enum.no_such_method
    assert hf.layer_types.count("full_attention") == 4  # a derived list is one too; a list's own methods stay
    import copy
    assert copy.deepcopy(hf.moe_layers_enum) == [4, 5, 6]  # copied as a list (vLLM deep-copies configs)


def test_stand_in_reads_a_list_of_dicts_by_attribute():
    """A list of dicts is a list of sub-configs: remote-code config classes turn them into objects, which vLLM reads
    by attribute (DeciLMConfig's block_configs[i].attention.no_op, models/nvidia--Llama-3_3-Nemotron-Super-49B-v1)."""
    blocks = [{"attention": {"n_heads_in_group": 8, "no_op": False}, "ffn": {"ffn_mult": 2.625, "no_op": False}},
              {"attention": {"n_heads_in_group": None, "no_op": True}, "ffn": {"ffn_mult": 1.0, "no_op": False}}]
    hf, _ = _stand_in({**LLAMA_LIKE, "block_configs": blocks, "moe_layers_enum": [4, 5]})
    assert hf.block_configs[0].attention.n_heads_in_group == 8 and hf.block_configs[1].attention.no_op is True
    assert hasattr(hf.block_configs[0].ffn, "ffn_mult") and hf.block_configs[0].ffn["ffn_mult"] == 2.625
    assert hf.block_configs == blocks and hf.moe_layers_enum.strip() == "4,5"
    with pytest.raises(AttributeError, match=r"config\.block_configs\[1\]\.ffn\.clip_qkv, which the test config"):
        hf.block_configs[1].ffn.clip_qkv
    import copy
    assert copy.deepcopy(hf.block_configs) == blocks


def test_a_draft_layer_runs_under_a_speculative_config():
    """A layer reaching vLLM's draft helpers (get_draft_quant_config: EAGLE drafts) gets a speculative config
    stand-in without a draft model config (unquantized); any other layer has none, as vLLM without spec decoding."""
    import torch

    def speculative(graph):
        src = ("def f(dims, flags, dtype, device):\n" + state.snippet(graph, LLAMA_LIKE, DIMS, {}, "the test config")
               + "    return vllm_config.speculative_config\n")
        ns = {}
        exec(compile(src, "snippet.py", "exec"), ns)
        return ns["f"](DIMS, {}, torch.float32, torch.device("cpu"))

    draft = {"python_nodes": [{"file": "vllm/model_executor/models/utils.py", "name": "get_draft_quant_config",
                               "emit_name": "get_draft_quant_config"}]}
    spec = speculative(draft)
    assert spec is not None and spec.draft_model_config is None
    assert speculative({}) is None


def test_a_called_flag_is_never_answered():
    # `config.is_kda_layer(i)` is a method of the model's config class (vLLM's KimiLinearConfig): the flag rule
    # answers a read of an is_* key, never a call of one, which stops with one line naming the method
    hf, assumed = _stand_in(LLAMA_LIKE)
    with pytest.raises(AttributeError, match=r"calls config\.is_kda_layer\(\.\.\.\), a method of the model's config"):
        hf.is_kda_layer(0)
    assert assumed == []
    assert hf.is_moe is False  # read, not called: off


def test_legacy_moe_layer_range_from_mlp_layer_types():
    # transformers 5 replaced Ernie 4.5's moe_layer_start_index/end_index/interval by mlp_layer_types; vLLM reads
    # the legacy fields, one entry per modality where the config's other moe_* fields are per modality
    types = ["dense", "sparse", "sparse", "sparse"]
    got = _d({**LLAMA_LIKE, "mlp_layer_types": types})
    assert (got["moe_layer_start_index"], got["moe_layer_end_index"], got["moe_layer_interval"]) == (1, 3, 1)
    got = _d({**LLAMA_LIKE, "mlp_layer_types": types, "moe_intermediate_size": [1536, 512],
              config_rules.MODALITIES: 2})
    assert got["moe_layer_start_index"] == [1, 1] and got["moe_layer_end_index"] == [3, 3]
    assert "moe_layer_interval" not in _d({**LLAMA_LIKE, "mlp_layer_types": ["dense", "sparse", "dense", "sparse"]})
    assert "moe_layer_start_index" not in _d({**LLAMA_LIKE, "mlp_layer_types": ["dense"] * 4})


def test_an_expert_count_is_read_per_modality(capsys):
    import copy
    text = {**LLAMA_LIKE, "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"], "moe_num_experts": 64,
            "moe_k": 6, "moe_intermediate_size": [1536, 512]}
    hf, assumed = _stand_in({"text_config": text, "vision_config": {"model_type": "vit", "hidden_size": 32}})
    assert max(hf.moe_num_experts) == 64 and hf.moe_num_experts[1] == 64 and hf.moe_num_experts + 1 == 65
    assert hf.moe_k == 6 and type(hf.moe_k) is int  # not an expert count: as given
    assert hf.moe_layer_start_index == [1, 1]
    assert "config.moe_num_experts=[64, 64] (" + config_rules.PER_MODALITY_RULE + ")" in assumed
    assert copy.deepcopy(hf.moe_num_experts) == 64
    hf, _ = _stand_in(text)  # text only: the count as given
    assert type(hf.moe_num_experts) is int


def test_the_config_answers_its_class_methods_from_the_generated_values():
    # tools/gen_model_configs.py records a config class's methods as values (`_methods`); the example's config
    # answers `config.is_linear_layer(i)` from them, and an index outside the table stops with one line
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import gen_model_configs
    from test_model_configs import _toy_layered
    data = gen_model_configs.config_data(_toy_layered().ToyLayeredConfig())
    hf, assumed = _stand_in({**LLAMA_LIKE, **data})
    assert [hf.is_linear_layer(i) for i in range(4)] == [False, True, False, True]
    assert hf.mlp_kind() == "dense" and assumed == []
    with pytest.raises(ValueError, match=r"config\.is_linear_layer\(4\): the test config records its values for "
                                         r"layer indices 0\.\.3 only"):
        hf.is_linear_layer(4)
    with pytest.raises(AttributeError, match=r"calls config\.head_of\(\.\.\.\), a method of the model's config class"):
        hf.head_of("q")
