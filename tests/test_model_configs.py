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


def test_a_sub_config_override_keeps_its_other_fields(monkeypatch):
    # DBRX's attn_config.clip_qkv: the override sets that field of the nested sub-config, the others stay the class's
    sys.path.insert(0, str(REPO / "tools"))
    import gen_model_configs
    monkeypatch.setitem(gen_model_configs.OVERRIDES, "toy", {"attn_config": ({"clip_qkv": 8}, "w"), "n": (2, "w")})
    data = {"attn_config": {"clip_qkv": None, "kv_n_heads": 8}, "n": 1}
    gen_model_configs.with_overrides(data, "toy")
    assert data["attn_config"] == {"clip_qkv": 8, "kv_n_heads": 8} and data["n"] == 2


def _carries(committed, value) -> bool:
    if isinstance(value, dict) and isinstance(committed, dict):
        return all(_carries(committed.get(k), v) for k, v in value.items())
    return committed == value


def test_committed_configs_carry_their_overrides():
    # a value added to OVERRIDES reaches the committed config only when tools/gen_model_configs.py is rerun
    sys.path.insert(0, str(REPO / "tools"))
    import gen_model_configs
    bad = []
    for mt, over in gen_model_configs.OVERRIDES.items():
        paths = [p for p in CONFIGS if p.parent.name.split("--", 1)[-1] == mt]
        if not paths:
            bad.append(f"{mt}: no committed config")
        for path in paths:
            cfg = json.loads(path.read_text())
            bad += [f"{path.parent.name}: {k}={cfg.get(k)!r}, OVERRIDES {v!r}" for k, (v, _) in over.items()
                    if not _carries(cfg.get(k), v)]
    assert not bad, "rerun tools/gen_model_configs.py:\n" + "\n".join(bad)


_EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")


def expert_counts(cfg: dict, where: str = "") -> list[tuple[str, object]]:
    """(key, value) of each expert count the config states (a nested sub-config's too; None: no MoE)."""
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict) and not k.startswith("_"):
            out += expert_counts(v, f"{where}{k}.")
        elif k in _EXPERT_COUNTS and v is not None:
            out.append((where + k, v))
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_no_committed_config_has_a_single_expert(path):
    # a config class's default of one expert (HunYuanMoEV1Config's num_experts 1) is no MoE checkpoint: vLLM builds a
    # dense MLP where transformers builds a MoE block
    one = [f"{k}={v!r}" for k, v in expert_counts(json.loads(path.read_text())) if not (isinstance(v, int) and v > 1)]
    assert not one, (f"{path.relative_to(REPO)} states {', '.join(one)}: give the reference checkpoint's published "
                     "expert counts in tools/gen_model_configs.py's OVERRIDES and rerun it")


def test_single_experts_are_found():
    assert expert_counts({"num_experts": 1, "ffn_config": {"moe_num_experts": 4}, "num_local_experts": None}) == [
        ("num_experts", 1), ("ffn_config.moe_num_experts", 4)]


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


# ---------------------------------------------------------------- what vLLM asserts of a checkpoint's config
_CONFIG_NAMES = ("config", "hf_config", "hf_text_config")


def _config_key(node) -> str | None:
    """`K` of `config.K` (or hf_config.K)."""
    import ast
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in _CONFIG_NAMES:
        return node.attr
    return None


def _checked(test) -> tuple[str, str] | None:
    """(subject, what) of an assert's test: `X is not None` -> "not None", `X is True` -> "True", `X` -> "truthy"."""
    import ast
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.comparators[0], ast.Constant):
        op, value = test.ops[0], test.comparators[0].value
        if isinstance(op, ast.IsNot) and value is None:
            return test.left, "not None"
        if isinstance(op, ast.Is) and value is True:
            return test.left, "True"
        return None
    return (test, "truthy") if isinstance(test, ast.Attribute) else None


def asserted_config_keys(src: str) -> set[tuple[str, str]]:
    """(key, what) a vLLM model module requires of the checkpoint's config: `assert config.K is not None` (or `is
    True`, or `assert config.K`); `assert self.P is True` in an `__init__` taking P, where the module passes
    `P=config.K`; and ("K", "holds S") for each read of `config.K["S"]`."""
    import ast
    tree = ast.parse(src)
    out: set[tuple[str, str]] = set()
    params: dict[str, str] = {}   # an __init__ parameter -> what the __init__ asserts of it
    for fn in ast.walk(tree):
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "__init__"):
            continue
        names = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
        selfs = {t.attr: st.value.id for st in ast.walk(fn) if isinstance(st, ast.Assign)
                 and isinstance(st.value, ast.Name) and st.value.id in names for t in st.targets
                 if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
        for st in ast.walk(fn):
            got = _checked(st.test) if isinstance(st, ast.Assert) else None
            if got and isinstance(got[0], ast.Attribute) and isinstance(got[0].value, ast.Name) \
                    and got[0].value.id == "self" and got[0].attr in selfs:
                params[selfs[got[0].attr]] = got[1]
    guarded = set()   # a subscript read under an `if` testing the same key (deepseek_v2's rope_parameters["factor"])
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            keys = {_config_key(n) for n in ast.walk(node.test)} - {None}
            guarded |= {id(n) for st in node.body for n in ast.walk(st)
                        if isinstance(n, ast.Subscript) and _config_key(n.value) in keys}
    for node in ast.walk(tree):
        got = _checked(node.test) if isinstance(node, ast.Assert) else None
        if got and _config_key(got[0]):
            out.add((_config_key(got[0]), got[1]))
        if isinstance(node, ast.Call):
            out |= {(_config_key(kw.value), params[kw.arg]) for kw in node.keywords
                    if kw.arg in params and _config_key(kw.value)}
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _config_key(node.value)
                and id(node) not in guarded
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            out.add((_config_key(node.value), f"holds {node.slice.value}"))
    return out


def unmet(cfg: dict, required: set[tuple[str, str]]) -> list[str]:
    """What `cfg` (its text config) does not meet of `required`; a key read by subscript only where the config
    carries it (a config of another layout lacks the key altogether: a gap of the model mapping, not a value)."""
    from bundler_lib.example.model_config import text_config
    tc, _ = text_config(cfg)
    out = []
    for key, what in sorted(required):
        v = tc.get(key)
        if what.startswith("holds "):
            ok = v is None or (isinstance(v, dict) and what[6:] in v)
        else:
            ok = {"not None": v is not None, "True": v is True, "truthy": bool(v)}[what]
        if not ok:
            out.append(f"{key} ({what}; the config has {v!r})")
    return out


def test_asserted_config_keys_are_found():
    src = '''
class A:
    def __init__(self, use_nope=False, other=None):
        self.use_nope = use_nope
        assert self.use_nope is True
class L:
    def __init__(self, config):
        assert config.zero_expert_type is not None
        assert config.num_heads % 2 == 0
        self.a = A(use_nope=config.mla_use_nope, other=config.x)
        n = hf_config.linear_attn_config["head_dim"]
        config.rope_parameters["partial_rotary_factor"] = 0.5
        if config.rope_parameters["rope_type"] != "default":
            f = config.rope_parameters["factor"]
'''
    found = asserted_config_keys(src)
    assert found == {("zero_expert_type", "not None"), ("mla_use_nope", "True"),
                     ("linear_attn_config", "holds head_dim"), ("rope_parameters", "holds rope_type")}
    assert unmet({"mla_use_nope": True, "zero_expert_type": "identity", "linear_attn_config": {"head_dim": 128},
                  "rope_parameters": {"rope_type": "default"}}, found) == []
    assert unmet({"mla_use_nope": False, "linear_attn_config": {"kda_layers": [1]}}, found) == [
        "linear_attn_config (holds head_dim; the config has {'kda_layers': [1]})",
        "mla_use_nope (True; the config has False)", "zero_expert_type (not None; the config has None)"]
    assert unmet({"mla_use_nope": True, "zero_expert_type": "identity"}, found) == []   # another layout


def _zoo_rows(version: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (REPO / f"models/transformers-zoo-{version}.tsv").read_text().splitlines()[1:]:
        target, _, file, model, _ = line.split("\t", 4)
        if model != "-":
            rows.append((target, file, model))
    return rows


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_committed_configs_meet_what_vllm_asserts(version, request):
    # a checkpoint vLLM runs meets the asserts its model module makes of the config (LongCat-Flash's
    # zero_expert_type, Kimi-Linear's mla_use_nope, the KDA heads in its linear_attn_config): the generated config
    # carries the published values (OVERRIDES), else the example stops where vLLM would on that config
    tree = request.getfixturevalue(f"vllm_{version.replace('.', '_')}")
    bad = []
    for target, file, model in _zoo_rows(version):
        cfg = json.loads((REPO / "models" / model.replace("/", "--", 1) / "config.json").read_text())
        missing = unmet(cfg, asserted_config_keys((tree / file).read_text(encoding="utf-8")))
        if missing:
            bad.append(f"{target} ({model}): {'; '.join(missing)}")
    assert not bad, ("configs lacking what vLLM asserts; give the checkpoint's published values in "
                     "tools/gen_model_configs.py's OVERRIDES and rerun it:\n" + "\n".join(bad))
