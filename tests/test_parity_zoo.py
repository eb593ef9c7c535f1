"""tools/parity.py's weight mapping over the zoo (CPU): for every zoo symbol whose model is one of transformers'
(models/transformers-zoo-<version>.tsv), transformers' decoder layer of that symbol is built on CPU from its
config shrunk (tiny_config), vLLM's parameters of the same layer are made from it the way vLLM's loader fills
them from a checkpoint (as_vllm: the checkpoint names transformers renames back, q/k/v and gate/up merged by the
model file's rules, experts stacked into w13 [E, 2I, H] and w2 [E, H, I]), and parity_mapping.map_weights must give back
transformers' parameters name for name, shape for shape, value for value, at a dense and at an MoE layer; the
broken control must map differently. EXCEPTIONS lists the symbols that do not map, each with its cause."""

import json
import math
import re
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import parity_mapping  # noqa: E402
import parity_reference  # noqa: E402

# Widths are divided by one power of two (hidden_size to about TINY_HIDDEN, still a multiple of the head count),
# so their ratios hold; head counts stay; expert counts and top-k are capped.
TINY_HIDDEN = 128
WIDTH = re.compile(r"hidden_size|intermediate|head_dim|ffn|_dim$|^n_embd$|^d_model$|lora_rank|d_state|state_size"
                   r"|dt_rank|kv_channels|d_head|headdim|d_ssm|_rank$|rotary_dim|_size_per_layer_input")
EXPERT_COUNT = re.compile(r"^(num_experts|n_routed_experts|num_local_experts|moe_num_experts|zero_expert_num)$")
TOP_K = re.compile(r"per_tok$|top_?k$|^moe_k$")

# Zoo symbols whose weights do not map by the rules, and why (checked: each must still fail, strictly).
EXCEPTIONS = {
    "Lfm2MoeAttentionDecoderLayer": "Lfm2MoeConfig's default layer_types is None (the reference checkpoint lists "
                                    "them): transformers' layer indexes it and cannot be built from the config alone "
                                    "(tools/parity.py takes the bundle's example's assumption, which this test lacks)",
    "Lfm2MoeShortConvDecoderLayer": "as Lfm2MoeAttentionDecoderLayer: Lfm2MoeConfig's layer_types is None",
}


HEADS = re.compile(r"n_heads$|num_heads$|num_attention_heads$|num_key_value_heads$")


def tiny_config(cfg: dict, largest: int | None = None) -> dict:
    """The config with its widths divided by the largest power of two (at most `largest`) that keeps hidden_size at
    least TINY_HIDDEN and, where the head size derives from it (no head_dim given), a multiple of every head count."""
    hidden = cfg["hidden_size"]
    heads = 1 if cfg.get("head_dim") else math.lcm(
        *[v for k, v in cfg.items() if HEADS.search(k) and isinstance(v, int) and v > 0] or [1])
    factor = 1
    while (hidden // (2 * factor) >= TINY_HIDDEN and hidden % (2 * factor * heads) == 0
           and (largest is None or 2 * factor <= largest)):
        factor *= 2
    out = {}
    for k, v in cfg.items():
        if isinstance(v, bool) or not isinstance(v, int):
            out[k] = v
        elif WIDTH.search(k) and v >= factor:
            out[k] = max(2, v // factor)
        elif EXPERT_COUNT.search(k):
            out[k] = min(v, 4)
        elif TOP_K.search(k):
            out[k] = min(v, 2)
        elif k == "vocab_size":
            out[k] = 64
        else:
            out[k] = v
    return out, factor


def zoo_cases() -> list:
    """(symbol, model_type, vLLM model file) of every zoo symbol with a transformers model, both versions."""
    cases = set()
    for tsv in sorted(ROOT.glob("models/transformers-zoo-*.tsv")):
        for line in tsv.read_text().splitlines():
            if line.startswith("#"):
                continue
            _target, symbol, file, model = line.split("\t")[:4]
            if model.startswith("transformers/"):
                cases.add((symbol, model.split("/", 1)[1], Path(file).name))
    return sorted(cases)


def _unrename(name: str, renames: list) -> str:
    """The checkpoint name transformers renames to `name` (its literal renames, undone in reverse order)."""
    full = "model.layers.0." + name
    for src, dst in reversed(renames):
        literal = lambda p: p.replace("\\", "").strip("^$")  # noqa: E731
        full = full.replace(literal(dst), literal(src))
    return re.sub(r"^.*?layers\.0\.", "", full, count=1)


def unconverted(hf: dict, rules: dict) -> dict:
    """The checkpoint's tensors from which transformers' load conversions (the rules' `converted`) made `hf`, by
    transformers' own reverse of each (reverse_transform): a split joined again, a join split."""
    out, groups = {}, {}
    for name, t in hf.items():
        for i, conv in enumerate(rules["converted"]):
            rev = conv.reverse_transform()
            key, source = rev.rename_source_key("model.layers.0." + name)
            if source is not None:
                groups.setdefault((i, key), (rev, {}))[1][rev.source_patterns.index(source)] = t
                break
        else:
            out[name] = t
    for (_, key), (rev, parts) in groups.items():
        dim, strip = rev.operations[0].dim, lambda n: re.sub(r"^.*?layers\.0\.", "", n, count=1)  # noqa: E731
        if len(rev.target_patterns) == 1:
            out[strip(key)] = torch.cat([parts[i] for i in sorted(parts)], dim=dim)
        else:
            prefix, _, suffix = key.partition(rev.target_patterns[0])
            out.update({strip(prefix + p + suffix): c for p, c in
                        zip(rev.target_patterns, parts[0].chunk(len(rev.target_patterns), dim=dim))})
    return out


def as_vllm(hf: dict, rules: dict, layout: dict, transposed: frozenset = frozenset(), num_heads: int = 0,
            head_dim: int = 0) -> dict:
    """vLLM's parameters of the layer, filled from transformers' the way vLLM's loader fills them from a checkpoint
    (from the checkpoint's tensors transformers' load conversions made its own from, unconverted; transformers' fused
    experts: laid out as `layout`, parity_mapping.hf_experts_layout, says; its Conv1D weights, `transposed`, stored
    [in, out], transposed as vLLM's GPT-2 loader does; fused q/k/v rows regrouped by head where the rules say the
    loader does, GPT-NeoX's; q/k rows permuted in each head where they say so, Llama 4's)."""
    hf = {n: t.t() if n in transposed else t for n, t in hf.items()}
    hf = {n: parity_mapping.regroup_heads(t, num_heads, to_vllm=True) if parity_mapping.head_interleaved(n, rules) else t
          for n, t in hf.items()}
    permuted = set(rules["rotary_permuted"])
    hf = {n: parity_mapping.permute_rotary(t, head_dim, to_vllm=True)
          if n.endswith(".weight") and permuted & set(_unrename(n, rules["renames"]).split(".")[:-1]) else t
          for n, t in hf.items()}
    hf = unconverted(hf, rules)
    experts = rules["experts"]
    gate_up = rules["fused"].get(tuple(sorted([experts["gate"], experts["up"]])), "gate_up_proj")
    ckpt, out = {}, {}
    for name, t in hf.items():
        m = re.fullmatch(r"(?P<base>.*experts)\.(?P<leaf>\w+?)(?P<bias>_bias)?", name)
        if m and m["base"] in layout:
            transposed, concatenated = layout[m["base"]]
            which = "w13" if m["leaf"] == gate_up else "w2"
            w = t.transpose(1, 2) if transposed and not m["bias"] else t
            if which == "w13" and not concatenated:
                w = torch.cat([w[:, 0::2], w[:, 1::2]], dim=1)
            base = _unrename(m["base"] + ".0.x", rules["renames"])[:-4]
            out[f"{base}.{which}_{'bias' if m['bias'] else 'weight'}"] = w.contiguous()
        else:
            ckpt[_unrename(name, rules["renames"])] = t
    per_expert = re.compile(r"(?P<base>.*experts)\.(?P<e>\d+)\.(?P<leaf>\w+)\.weight")
    stacked: dict = {}
    for name in list(ckpt):
        m = per_expert.fullmatch(name)
        if m and m["leaf"] in experts.values():
            stacked.setdefault(m["base"], {}).setdefault(int(m["e"]), {})[m["leaf"]] = ckpt.pop(name)
    for base, by_e in stacked.items():
        E = range(len(by_e))
        out[base + ".w13_weight"] = torch.stack([torch.cat([by_e[e][experts["gate"]], by_e[e][experts["up"]]]) for e in E])
        out[base + ".w2_weight"] = torch.stack([by_e[e][experts["down"]] for e in E])
    for merged, parts in sorted(rules["packed"].items(), key=lambda kv: -len(kv[0])):
        if parts == [merged]:
            continue
        for name in list(ckpt):
            module, _, leaf = name.rpartition(".")
            if module == parts[0] or module.endswith("." + parts[0]):
                stem = module[: len(module) - len(parts[0])]
                names = [f"{stem}{p}.{leaf}" for p in parts]
                if all(n in ckpt for n in names):
                    out[f"{stem}{merged}.{leaf}"] = torch.cat([ckpt.pop(n) for n in names])
    out.update(ckpt)
    out["self_attn.attn._k_scale"] = torch.tensor(1.0)  # vLLM's scalar scales have no counterpart
    return out


def build(symbol: str, model_type: str, layer_idx: int):
    full = parity_reference.read_config(ROOT / "models" / f"transformers--{model_type}" / "config.json")
    found = parity_reference.hf_classes(full["model_type"], symbol)
    assert found is not None, f"transformers has no layer for {symbol} ({full['model_type']})"
    mt, cls, _rope = found
    largest = None
    while True:  # a config whose validation ties widths together (mrope sections) takes a smaller factor
        cfg, factor = tiny_config(full, largest)
        try:
            config = parity_reference.hf_config(cfg, mt)
            break
        except Exception:  # noqa: BLE001 - transformers' validation errors share no base class
            if factor == 1:
                raise
            largest = factor // 2
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = parity_reference.new_layer(cls, config, layer_idx)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return mt, config, layer


def layer_indices(config) -> list:
    """A first and a last layer: dense and MoE where the model mixes them (first_k_dense_replace, mlp_only_layers)."""
    n = int(getattr(config, "num_hidden_layers", 1) or 1)
    return sorted({0, n - 1})


def check_case(symbol: str, model_type: str, file: str):
    mt, config, _ = build(symbol, model_type, 0)
    rules = parity_mapping.loader_rules(file, mt)
    for idx in layer_indices(config):
        _, config, layer = build(symbol, model_type, idx)
        hf = {n: p.detach() for n, p in layer.named_parameters()}
        shapes = {n: tuple(t.shape) for n, t in hf.items()}
        layout, transposed = parity_mapping.hf_experts_layout(layer), parity_mapping.hf_transposed(layer)
        heads = getattr(config, "num_attention_heads", None)
        head_dim = parity_reference.head_dim(config) if rules["rotary_permuted"] else 0
        vllm = as_vllm(hf, rules, layout, transposed, heads, head_dim)
        mapped = parity_mapping.map_weights(vllm, shapes, rules=rules, layout=layout, transposed=transposed, num_heads=heads,
                                            head_dim=head_dim)
        assert sorted(mapped) == sorted(hf), f"layer {idx}: names differ"
        for n, t in hf.items():
            assert torch.equal(mapped[n], t), f"layer {idx}: {n} differs"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = parity_reference.hf_layer(type(layer), config, idx, mapped, torch.float32)
        for n, b in layer.named_buffers():  # transformers' own: computed by its __init__, not left on meta
            assert torch.equal(dict(loaded.named_buffers())[n], b), f"layer {idx}: buffer {n} differs"
        control = parity_mapping.map_weights(vllm, shapes, control=True, rules=rules, layout=layout,
                                             transposed=transposed, num_heads=heads, head_dim=head_dim)
        assert any(not torch.equal(control[n], hf[n]) for n in hf), f"layer {idx}: the control maps the same"


CASES = zoo_cases()


@pytest.mark.parametrize("symbol,model_type,file", [
    pytest.param(*c, marks=pytest.mark.xfail(strict=True, reason=EXCEPTIONS[c[0]])) if c[0] in EXCEPTIONS else c
    for c in CASES], ids=[f"{c[0]}-{c[2][:-3]}" for c in CASES])
def test_zoo_layer_maps(symbol, model_type, file):
    check_case(symbol, model_type, file)


def test_exceptions_are_zoo_symbols():
    assert set(EXCEPTIONS) <= {c[0] for c in CASES}


def test_loader_rules_file_is_what_the_trees_say(vllm_0_26_0, vllm_0_33_0, tmp_path):
    """models/vllm-loader-rules.json is tools/gen_loader_rules.py's output for the pinned trees (regenerate it)."""
    import gen_loader_rules

    out = tmp_path / "rules.json"
    assert gen_loader_rules.main([str(vllm_0_26_0), str(vllm_0_33_0), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(parity_mapping.LOADER_RULES.read_text())


def test_loader_rules_read_from_source():
    import gen_loader_rules

    src = '''
class M:
    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"]}
    def load_weights(self):
        stacked_params_mapping = [(".gate_up_proj", ".up_proj", 1), (".gate_up_proj", ".gate_proj", 0)]
        self.experts = FusedMoE(ckpt_names=("w1", "w2", "w3"))
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_suffix={"router.weight": "router_weight"},
                                      orig_to_new_prefix={"model.": ""}, orig_to_new_substr={"mlp.": "", "a": None})
    def _repack_qkv(self, weights):
        for name, w in weights:
            if "query_key_value" in name:
                w = w.view((self.heads, 3, -1) + w.shape[1:]).transpose(0, 1).reshape(w.shape)
            if "dense" in name:
                w = w.view((self.heads, 2, -1)).flatten()
    def prefix_map():
        for i in range(2):
            src, dst = f"layers.{i}", f"model.layers.{2 * i}"
            m.update({f"{src}.self_attn.qkv_proj.": f"{dst}.mixer.qkv_proj.", f"{src}.mlp.": f"{dst}.mlp."})
'''
    assert gen_loader_rules.file_rules(src) == {
        "packed": {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]},
        "experts": {"gate": "w1", "down": "w2", "up": "w3"},
        "mapper": [["suffix", "router.weight", "router_weight"], ["layer_prefix", ".self_attn.", ".mixer."]],
        "head_interleaved": ["query_key_value"]}


def test_rotary_permuted_modules_read_from_source():
    """A function viewing a weight as (heads, rows // heads // 2, 2, in) and transposing dims 1 and 2 (Llama 4's
    permute_qk_weight_for_rotary) names the merged parts it tests; Mistral's own format's wq/wk (no merged part) and
    a merely reshaping function give none."""
    import gen_loader_rules

    src = '''
class M:
    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"]}
    def permute(self, name, w):
        modules = name.split(".")
        if "wk" in modules or "k_proj" in modules or "embed_tokens" in modules:
            w = w.view(n_heads, f_out // n_heads // 2, 2, f_in).transpose(1, 2).reshape(f_out, f_in)
        return w
    def other(self, w):
        if "q_proj" in modules:
            return w.view(n_heads, f_out // n_heads // 2, 2, f_in)
'''
    assert gen_loader_rules.file_rules(src)["rotary_permuted"] == ["k_proj"]
    assert "rotary_permuted" not in gen_loader_rules.file_rules(src.replace(".transpose(1, 2)", ""))


def test_a_borrowed_weights_mapper_is_the_lenders():
    """openai_privacy_filter.py's class borrows gpt_oss.py's mapper (`hf_to_vllm_mapper = GptOssForCausalLM.
    hf_to_vllm_mapper`): its rules hold gpt_oss.py's renames (.self_attn. -> .attn.), so vLLM's attn.qkv_proj splits
    onto transformers' self_attn.q/k/v_proj (H200: exit 2, attn.qkv_proj.weight has no counterpart); a mapper of a
    class the file defines is read from the file itself."""
    import gen_loader_rules
    import torch

    src = "class P:\n    hf_to_vllm_mapper = GptOssForCausalLM.hf_to_vllm_mapper\n"
    assert gen_loader_rules.file_rules(src) == {"mapper_from": "GptOssForCausalLM"}
    assert gen_loader_rules.file_rules(src + "class GptOssForCausalLM:\n    pass\n") == {}
    rules = parity_mapping.loader_rules("openai_privacy_filter.py")
    assert ["substr", ".self_attn.", ".attn."] in rules["mapper"]
    shapes = {"self_attn.q_proj.weight": (8, 4), "self_attn.k_proj.weight": (2, 4), "self_attn.v_proj.weight": (2, 4)}
    out = parity_mapping.map_weights({"attn.qkv_proj.weight": torch.randn(12, 4)}, shapes, rules=rules)
    assert sorted(out) == sorted(shapes)


def test_a_deletion_under_a_test_naming_its_place_is_a_rename_of_that_place():
    """HunYuan's loader drops "wg." where the name holds "mlp.gate.wg." (its router's weight is mlp.gate.weight in
    vLLM, mlp.gate.wg.weight in the checkpoint and transformers): the test names where, so the rule can be undone
    there; a deletion with no such place (or of the whole place) gives none."""
    import gen_loader_rules

    src = '''
class M:
    def load_weights(self, weights):
        for name, w in weights:
            if "mlp.gate.wg." in name:
                name = name.replace("wg.", "")
            if "_timm_module." in name:
                name = name.replace("_timm_module.", "")
            name = name.replace("rotary_emb.", "")
'''
    assert gen_loader_rules.file_rules(src)["mapper"] == [["substr", "mlp.gate.wg.", "mlp.gate."]]
    rules = {"renames": [], "mapper": [["substr", "mlp.gate.wg.", "mlp.gate."]]}
    assert parity_mapping._hf_name("mlp.gate.weight", rules, {"mlp.gate.wg.weight": (4, 8)}) == "mlp.gate.wg.weight"
