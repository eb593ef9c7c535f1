"""The committed model configs (models/*/config.json) describe real checkpoints: none is toy-sized, as a config
class's defaults can be (transformers' BloomConfig: hidden_size 64, heads of 8, which no attention backend takes);
tools/gen_model_configs.py's OVERRIDES carry the reference checkpoint's published sizes."""

import json
import sys
from pathlib import Path

import pytest

from bundler_lib.example.model_config import derive

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(REPO.glob("models/*/config.json"))
MIN_HIDDEN, MIN_HEAD_DIM = 256, 32


def toy_sizes(cfg: dict, src: str) -> list[str]:
    dims, _, _, _ = derive(cfg, src, heads_required=False)
    out = []
    if dims["H"] < MIN_HIDDEN:
        out.append(f"hidden size {dims['H']} < {MIN_HIDDEN}")
    if dims["Dh"] is not None and dims["Dh"] < MIN_HEAD_DIM:
        out.append(f"head dim {dims['Dh']} < {MIN_HEAD_DIM}")
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_no_committed_config_is_toy_sized(path):
    src = path.relative_to(REPO).as_posix()
    toy = toy_sizes(json.loads(path.read_text()), src)
    assert not toy, (f"{src} is toy-sized ({'; '.join(toy)}): give the reference checkpoint's published sizes in "
                     "tools/gen_model_configs.py's OVERRIDES and rerun it")


def test_toy_sizes_are_found():
    assert toy_sizes({"hidden_size": 64, "n_head": 8}, "t") == ["hidden size 64 < 256", "head dim 8 < 32"]
    assert toy_sizes({"hidden_size": 1024, "n_head": 16}, "t") == []


def test_overrides_reach_the_aliases():
    # OVERRIDES build the class with the published values, so an alias (BloomConfig's num_attention_heads is n_head)
    # says the same as the key overridden
    sys.path.insert(0, str(REPO / "tools"))
    import gen_model_configs
    bloom = json.loads((REPO / "models/transformers--bloom/config.json").read_text())
    over = gen_model_configs.override_values("bloom")
    assert bloom["hidden_size"] == over["hidden_size"] == 1024
    assert bloom["num_attention_heads"] == bloom["n_head"] == over["n_head"] == 16
    assert bloom["num_hidden_layers"] == bloom["n_layer"] == 24


def _toy_layered():
    import importlib.util
    spec = importlib.util.spec_from_file_location("toy_layered", REPO / "tests/trees/model_configs/toy_layered.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_config_class_methods_are_recorded_per_layer():
    # a method taking a layer index is recorded for every layer, one taking nothing once; one taking anything
    # else or giving no plain value is left out; the base's API is not the model's
    sys.path.insert(0, str(REPO / "tools"))
    import gen_model_configs
    data = gen_model_configs.config_data(_toy_layered().ToyLayeredConfig())
    assert data["_methods"] == {"is_linear_layer": {"by_layer": [False, True, False, True]},
                                "mlp_kind": {"value": "dense"}, "grow": {"value": None}}
    assert data["num_hidden_layers"] == 4  # evaluated on copies
