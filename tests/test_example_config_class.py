"""A6 runs the config class vLLM loads the model's config through (bundler_lib/example/config_class.py) on the
example's config, on a tiny on-disk vLLM tree: its registry's class, else the layer module's class of that model_type."""

import textwrap

from bundler_lib.example import config_class

REGISTRY = '''\
_CONFIG_REGISTRY: dict[str, type] = LazyConfigDict(
    other="OtherConfig",
    toy="ToyConfig",
    **{"broken-one": "BrokenConfig"},
)
'''
CONFIGS_INIT = '''\
_CLASS_TO_MODULE: dict[str, str] = {
    "ToyConfig": "vllm.transformers_utils.configs.toy",
    "BrokenConfig": "vllm.transformers_utils.configs.toy",
}
'''
TOY = '''\
import math

from transformers.configuration_utils import PretrainedConfig
from vllm.logger import init_logger

logger = init_logger(__name__)


class ToyConfig(PretrainedConfig):
    model_type = "toy"

    def __init__(self, hidden_size=64, expert_size: Unknown = None, linear_layers=None, first_k_dense_replace=0,
                 **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.moe_intermediate_size = expert_size or 2 * hidden_size
        self.linear_layers = linear_layers
        self.zero_experts = None
        self.first_k_dense_replace = first_k_dense_replace
        self.scale = math.sqrt(hidden_size)

    @property
    def is_moe(self):
        return self.moe_intermediate_size is not None

    def is_linear_layer(self, layer_idx: int):
        return self.linear_layers is not None and (layer_idx + 1) in self.linear_layers

    def is_dense_layer(self, layer_idx):
        return layer_idx < self.first_k_dense_replace

    def upper(self, name):
        return name.upper()


class BrokenConfig(PretrainedConfig):
    model_type = "broken-one"

    def __init__(self, **kwargs):
        logger.info("needs vLLM's logger")
        super().__init__(**kwargs)
'''
FLASHY = '''\
import torch
from transformers import PretrainedConfig


class FlashyConfig(PretrainedConfig):
    model_type = "flashy"

    def __init__(self, num_layers=4, **kwargs):
        super().__init__(**kwargs)
        self.num_hidden_layers = num_layers
        self.moe_intermediate_size = self.expert_ffn_hidden_size if hasattr(self, "expert_ffn_hidden_size") else 1
'''
LAYER = {"def_file": "vllm/model_executor/models/flashy.py"}
TOY_CFG = {"model_type": "toy", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4,
           "expert_size": 32, "mlp_layer_types": ["dense", "sparse", "sparse", "sparse"]}


def _tree(tmp_path):
    files = {"vllm/transformers_utils/config.py": REGISTRY, "vllm/transformers_utils/configs/__init__.py": CONFIGS_INIT,
             "vllm/transformers_utils/configs/toy.py": TOY, "vllm/model_executor/models/flashy.py": FLASHY}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    return tmp_path


def test_the_registry_class_gives_its_derived_keys_properties_and_methods(tmp_path):
    cfg, prov, notes = config_class.apply(TOY_CFG, LAYER, _tree(tmp_path))
    assert prov == {"class": "ToyConfig", "file": "vllm/transformers_utils/configs/toy.py",
                    "values": ["is_moe", "linear_layers", "moe_intermediate_size", "scale", "zero_experts"], "methods": ["is_dense_layer",
                                                                                      "is_linear_layer"]}
    assert cfg["moe_intermediate_size"] == 32 and cfg["scale"] == 8.0 and cfg["is_moe"] is True
    assert cfg["zero_experts"] is None and "zero_experts" in cfg  # vLLM's config has the key: the layer reads None
    assert "first_k_dense_replace" not in cfg  # config_rules derives it (mlp_layer_types): its rule stays
    # the class was built with the rules' values: first_k_dense_replace 1 from mlp_layer_types
    assert cfg["_methods"] == {"is_dense_layer": {"by_layer": [True, False, False, False]},
                               "is_linear_layer": {"by_layer": [False] * 4}}
    assert notes[0].startswith("vLLM loads the config through its ToyConfig (vllm/transformers_utils/configs/toy.py)")


def test_the_layer_modules_class_of_the_model_type(tmp_path):
    cfg, prov, _ = config_class.apply({**TOY_CFG, "model_type": "flashy", "expert_ffn_hidden_size": 16}, LAYER,
                                      _tree(tmp_path))
    assert prov["class"] == "FlashyConfig" and cfg["moe_intermediate_size"] == 16
    assert cfg["num_hidden_layers"] == 4  # a key the config gives keeps its value


def test_the_example_config_answers_from_the_class(tmp_path):
    from test_config_rules import _stand_in
    cfg, _, _ = config_class.apply(TOY_CFG, LAYER, _tree(tmp_path))
    hf, assumed = _stand_in(cfg)
    assert hf.moe_intermediate_size == 32 and hf.is_moe is True and hf.is_linear_layer(2) is False
    assert hf.zero_experts is None
    assert hf.first_k_dense_replace == 1 and assumed[0].startswith("config.first_k_dense_replace=1 (")


def test_no_class_or_one_that_cannot_run_leaves_the_config(tmp_path):
    tree = _tree(tmp_path)
    other = {**TOY_CFG, "model_type": "other"}  # registered, but no such class in the tree
    assert config_class.apply(other, LAYER, tree) == (other, None, [])
    broken = {**TOY_CFG, "model_type": "broken-one"}
    cfg, prov, notes = config_class.apply(broken, LAYER, tree)
    assert cfg == broken and prov is None
    assert notes == ["vLLM's BrokenConfig (vllm/transformers_utils/configs/toy.py) could not be run on the config "
                     "(NameError: name 'logger' is not defined); the config is read as generated"]


def test_a6_applies_the_class_given_the_tree(tmp_path):
    # the stage's CLI, as the rule runs it (--tree): the dims see the class's values, the record names the class
    import json
    from bundler_lib.__main__ import main
    from test_example import TREES
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**TOY_CFG, "intermediate_size": 128, "num_experts": 4, "num_experts_per_tok": 2}))
    assert main(["example", "--graph", str(TREES / "RMSNorm" / "A1.graph.json"), "--model-config", str(cfg),
                 "--tree", str(_tree(tmp_path / "tree")), "--out", str(tmp_path / "o")]) == 0
    rec = json.loads((tmp_path / "o" / "A6.model.json").read_text())
    assert rec["flags"]["moe"]["moe_intermediate_size"] == 32
    assert rec["sources"]["config_class"]["class"] == "ToyConfig"
    assert any(n.startswith("vLLM loads the config through its ToyConfig") for n in rec["notes"])
