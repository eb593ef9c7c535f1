"""A6 example: dims/flags/workload from the model configs, validation, and the generated examples
(run on CPU with `small=True` against tiny reference implementations of the symbols)."""

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch

from bundler_lib import example as a6
from bundler_lib.__main__ import main
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]
TREES = Path(__file__).parent / "trees" / "stages" / "example"
CONFIGS = TREES / "configs"
CODER = ROOT / "models" / "Qwen--Qwen3-Coder-480B-A35B-Instruct" / "config.json"
A3B = ROOT / "models" / "Qwen--Qwen3-30B-A3B" / "config.json"


def _gen(tmp_path, symbol, model=None, config=None, workload=None):
    out = tmp_path / symbol
    rec = a6.run(TREES / symbol / "A1.graph.json", model, config, workload, out)
    src = (out / "A6.example.py").read_text()
    assert json.loads((out / "A6.model.json").read_text()) == rec
    return src, rec


# ---------------------------------------------------------------- dims and flags of the real configs

def test_dims_qwen3_coder_480b():
    dims, flags, used, notes = a6.derive(json.loads(CODER.read_text()), "c")
    assert (dims["H"], dims["H_q"], dims["H_kv"], dims["Dh"]) == (6144, 96, 8, 128)
    assert dims["Dh_source"] == "given"  # and 96 * 128 != 6144, which is right
    assert dims["max_ctx"] == 262144
    assert flags["moe"] == {"num_experts": 160, "top_k": 8, "moe_intermediate_size": 2560, "norm_topk_prob": True,
                            "shared_expert_intermediate_size": 0, "decoder_sparse_step": 1, "mlp_only_layers": []}
    assert flags["qk_norm"] is True and used["qk_norm"] == "use_qk_norm"
    assert flags["sliding_window"] is None
    assert flags["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000000}
    assert flags["rope_scaling"] is None
    assert any("96 * 128" in n or "12288 != hidden_size 6144" in n for n in notes)


def test_dims_qwen3_30b_a3b():
    dims, flags, used, _ = a6.derive(json.loads(A3B.read_text()), "c")
    assert (dims["H"], dims["H_q"], dims["H_kv"], dims["Dh"], dims["max_ctx"]) == (2048, 32, 4, 128, 40960)
    assert flags["moe"]["num_experts"] == 128 and flags["moe"]["moe_intermediate_size"] == 768
    assert flags["qk_norm"] is True  # no use_qk_norm key: known from the model type
    assert flags["rope_theta"] == 1000000.0


def test_dims_derived_head_size_and_rope_scaling():
    dims, flags, used, _ = a6.derive(json.loads((CONFIGS / "llama_derived.json").read_text()), "c")
    assert dims["Dh"] == 128 and dims["Dh_source"] == "derived"
    assert flags["moe"] is None
    assert flags["rope_parameters"]["rope_type"] == "llama3" and flags["rope_parameters"]["rope_theta"] == 500000.0
    assert flags["qk_norm"] is False


def test_sliding_window_and_legacy_rope_type():
    dims, flags, _, _ = a6.derive(json.loads((CONFIGS / "sliding.json").read_text()), "c")
    assert flags["sliding_window"] == 4096
    assert flags["rope_parameters"] == {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}


@pytest.mark.parametrize("name,words", [
    ("bad_gqa.json", "not a multiple of num_key_value_heads"),
    ("no_hidden.json", "has no H"),
    ("broken.json", "not valid JSON"),
])
def test_bad_configs_refused(tmp_path, name, words):
    with pytest.raises(StageError) as ei:
        a6.run(TREES / "RMSNorm" / "A1.graph.json", "x/y", CONFIGS / name, None, tmp_path)
    assert words in ei.value.problem
    assert ei.value.stage == "A6 example" and ei.value.remedy
    assert not (tmp_path / "A6.example.py").exists()


def test_head_dim_derived_with_a_remainder_is_a_note():
    """No head_dim and hidden_size not a multiple of the heads (glm4_moe): vLLM takes hidden_size // heads."""
    dims, _, used, notes = a6.derive(json.loads((CONFIGS / "derived_remainder.json").read_text()), "c")
    assert dims["Dh"] == 4100 // 32 and dims["Dh_source"] == "derived"
    assert used["Dh"] == "hidden_size // num_attention_heads"
    assert any("4100 // 32 = 128" in n for n in notes)


def test_per_layer_lists_take_the_example_layer():
    """A per-layer list (gemma3n's intermediate_size) gives the entry of the layer the example builds."""
    cfg = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "intermediate_size": [96, 128, 160]}
    dims, _, used, notes = a6.derive(cfg, "c")
    assert dims["layer"] == 0 and dims["intermediate_size"] == 96
    assert used["intermediate_size"] == "intermediate_size[0]"
    # in a MoE model whose even layers are dense, the example builds layer 1: its entries are used
    moe = {**cfg, "num_experts": 4, "num_experts_per_tok": 2, "decoder_sparse_step": 2,
           "moe_intermediate_size": [32, 48, 32]}
    dims, flags, _, notes = a6.derive(moe, "c")
    assert dims["layer"] == 1 and dims["intermediate_size"] == 128 and flags["moe"]["moe_intermediate_size"] == 48
    assert any("moe_intermediate_size is per layer: layer 1's 48" in n for n in notes)


def test_list_not_per_layer_refused():
    cfg = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "intermediate_size": [96, 128]}
    with pytest.raises(StageError, match="intermediate_size is a list of 2 entries, not one per layer"):
        a6.derive(cfg, "c")


def test_per_modality_pair_takes_the_text_entry():
    """In the text config of a multimodal model, a list with one entry per modality (Ernie 4.5 VL's
    moe_intermediate_size [text, vision]) gives the text model's entry; without a second modality it is refused."""
    text = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "num_experts": 4,
            "num_experts_per_tok": 2, "moe_intermediate_size": [96, 32]}
    cfg = {"text_config": text, "vision_config": {"hidden_size": 32, "model_type": "v"}}
    dims, flags, used, notes = a6.derive(cfg, "c")
    assert flags["moe"]["moe_intermediate_size"] == 96 and used["moe_intermediate_size"] == "moe_intermediate_size[0]"
    assert any("per modality" in n for n in notes)
    with pytest.raises(StageError, match="is a list of 2 entries, not one per layer"):
        a6.derive({"text_config": text, "quantization_config": {"bits": 4}}, "c")


def test_moe_without_top_k_refused_with_the_generator_remedy():
    """transformers' DeepseekV2Config leaves num_experts_per_tok None: vLLM's router needs it."""
    cfg = {"hidden_size": 64, "num_attention_heads": 4, "n_routed_experts": 8, "num_experts_per_tok": None,
           "moe_intermediate_size": 32}
    with pytest.raises(StageError) as ei:
        a6.derive(cfg, "c")
    assert "without num_experts_per_tok" in ei.value.problem and "OVERRIDES" in ei.value.remedy
    dims, flags, used, _ = a6.derive({**cfg, "num_experts_per_tok": None, "moe_k": 2}, "c")  # Ernie's name
    assert flags["moe"]["top_k"] == 2 and used["top_k"] == "moe_k"


def test_missing_config_refused(tmp_path):
    with pytest.raises(StageError):
        a6.run(TREES / "RMSNorm" / "A1.graph.json", "x/y", tmp_path / "nope.json", None, tmp_path)
    with pytest.raises(StageError) as ei:  # a model without its config
        a6.run(TREES / "RMSNorm" / "A1.graph.json", "Org/Model", None, None, tmp_path)
    assert "models/Org--Model/config.json" in ei.value.remedy


# ---------------------------------------------------------------- classification and workload

@pytest.mark.parametrize("symbol,template", [
    ("RMSNorm", "norm"), ("SiluAndMul", "act_and_mul"), ("get_rope", "rope"), ("fused_experts", "fused_experts"),
    ("Qwen3MoeDecoderLayer", "decoder_layer"), ("extract_layer_index", "generic")])
def test_classify(symbol, template):
    assert a6.classify(json.loads((TREES / symbol / "A1.graph.json").read_text())) == template


def test_workload_inferred_and_given(tmp_path):
    _, rec = _gen(tmp_path / "a", "RMSNorm", "Qwen/Qwen3-30B-A3B", A3B)
    assert rec["workload"]["kind"] == "prefill" and rec["workload"]["source"] == "inferred"
    _, rec = _gen(tmp_path / "b", "RMSNorm", "Qwen/Qwen3-30B-A3B", A3B, "decode")
    assert rec["workload"]["kind"] == "decode" and rec["workload"]["source"] == "given"
    _, rec = _gen(tmp_path / "c", "Qwen3MoeDecoderLayer", "Qwen/Qwen3-Coder-480B-A35B-Instruct", CODER)
    assert rec["workload"]["kind"] == "decode" and rec["workload"]["kv_cache"] is True
    # a layer whose attention keeps no KV cache (vLLM's encoder-only attention) has no decode step
    g = json.loads((TREES / "Qwen3MoeDecoderLayer" / "A1.graph.json").read_text())
    g["variant"] = {**(g.get("variant") or {}), "attn_type": "encoder_only"}
    (tmp_path / "enc.json").write_text(json.dumps(g))
    rec = a6.run(tmp_path / "enc.json", "Qwen/Qwen3-Coder-480B-A35B-Instruct", CODER, None, tmp_path / "d")
    assert (rec["workload"]["kind"], rec["workload"]["source"]) == ("prefill", "inferred")
    assert "encoder_only" in rec["workload"]["reason"]


# ---------------------------------------------------------------- the generated source

def test_header_and_definition_only(tmp_path):
    src, rec = _gen(tmp_path, "RMSNorm", "Qwen/Qwen3-Coder-480B-A35B-Instruct", CODER)
    head = src.split("def invocation_example", 1)[0]
    assert "# model: Qwen/Qwen3-Coder-480B-A35B-Instruct" in head
    assert "# config: models/Qwen--Qwen3-Coder-480B-A35B-Instruct/config.json sha256=" in head
    assert "H=6144, H_q=96, H_kv=8, Dh=128, max_ctx=262144" in head
    assert "# workload: prefill" in head and "qk_norm=True" in head and "num_experts=160" in head
    assert "torch.cuda.mem_get_info" in src
    tree = ast.parse(src)
    # Definitions only, and the command line under `if __name__ == "__main__":`: nothing runs on import.
    assert [type(n).__name__ for n in tree.body[:4]] == ["FunctionDef", "Assign", "FunctionDef", "FunctionDef"]
    assert [tree.body[0].name, tree.body[1].targets[0].id, tree.body[2].name, tree.body[3].name] == \
        ["invocation_example", "_BUNDLE_INFO", "_bundle_cuda_graph", "_bundle_main"]
    # then tune-moe's helpers (moe_tune.py): definitions and constants of their own names
    helpers = tree.body[4:-1]
    assert helpers and all(type(n).__name__ in ("FunctionDef", "ClassDef", "Assign") for n in helpers)
    assert all((n.targets[0].id if isinstance(n, ast.Assign) else n.name).lower().startswith("_bundle")
               for n in helpers)
    assert ast.unparse(tree.body[-1].test) == "__name__ == '__main__'"
    assert [a.arg for a in tree.body[0].args.args] == ["small", "workload", "tokens", "batch", "context"]
    assert rec["sources"]["config"] == "models/Qwen--Qwen3-Coder-480B-A35B-Instruct/config.json"
    assert str(ROOT) not in src and str(ROOT) not in json.dumps(rec)


def test_deterministic(tmp_path):
    for d in ("a", "b"):
        a6.run(TREES / "SiluAndMul" / "A1.graph.json", "Qwen/Qwen3-30B-A3B", A3B, None, tmp_path / d)
    for n in ("A6.example.py", "A6.model.json"):
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()


def test_model_name_from_config_path(tmp_path):
    _, rec = _gen(tmp_path, "RMSNorm", None, A3B)
    assert rec["model_name"] == "Qwen/Qwen3-30B-A3B"


# Tiny reference implementations standing in for the bundle's symbols (the example only uses their names).
class RMSNorm(torch.nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))

    def forward(self, x, residual=None):
        if residual is not None:
            x = x + residual
            residual = x
        v = x.float().pow(2).mean(-1, keepdim=True)
        out = (x.float() * torch.rsqrt(v + self.eps)).to(x.dtype) * self.weight
        return out if residual is None else (out, residual)


class SiluAndMul(torch.nn.Module):
    def forward(self, x):
        d = x.shape[-1] // 2
        return torch.nn.functional.silu(x[..., :d]) * x[..., d:]


class _Rope(torch.nn.Module):
    def __init__(self, head_size):
        super().__init__()
        self.head_size = head_size

    def forward(self, positions, q, k):
        return q, k


def get_rope(head_size, max_position, is_neox_style=True, rope_parameters=None, dtype=None):
    assert rope_parameters["rope_type"] == "default"
    return _Rope(head_size)


def fused_experts(x, w1, w2, topk_weights, topk_ids):
    out = torch.zeros_like(x, dtype=torch.float32)
    for j in range(topk_ids.shape[1]):
        for t in range(x.shape[0]):
            e = int(topk_ids[t, j])
            h = w1[e].float() @ x[t].float()
            i = h.shape[0] // 2
            out[t] += topk_weights[t, j] * (w2[e].float() @ (torch.nn.functional.silu(h[:i]) * h[i:]))
    return out.to(x.dtype)


SYMBOLS = {"RMSNorm": RMSNorm, "SiluAndMul": SiluAndMul, "get_rope": get_rope, "fused_experts": fused_experts,
           "extract_layer_index": lambda prefix: 0}


def _run_example(src, **kw):
    ns = dict(SYMBOLS)
    exec(compile(src, "A6.example.py", "exec"), ns)
    return ns["invocation_example"](**kw)


@pytest.mark.parametrize("symbol", ["RMSNorm", "SiluAndMul", "get_rope", "extract_layer_index"])
@pytest.mark.parametrize("workload", [None, "decode"])
def test_examples_run_small_on_cpu(tmp_path, symbol, workload):
    src, rec = _gen(tmp_path, symbol, "Qwen/Qwen3-Coder-480B-A35B-Instruct", CODER, workload)
    res = _run_example(src, small=True)
    assert res["workload"] == (workload or "prefill")
    if symbol == "RMSNorm":
        assert res["outputs"]["out"].shape == (16 if workload is None else 4, 6144)
    if symbol == "SiluAndMul":
        assert res["outputs"]["out"].shape[1] == 2560  # the experts' intermediate size


def test_fused_experts_small_on_cpu(tmp_path):
    src, rec = _gen(tmp_path, "fused_experts", "Qwen/Qwen3-30B-A3B", A3B)
    res = _run_example(src, small=True)
    assert res["outputs"]["out"].shape == (16, 2048)
    assert res["inputs"]["w1"].shape == (128, 2 * 768, 2048)
    assert res["inputs"]["topk_ids"].dtype == torch.int32


def test_shape_only_without_model(tmp_path):
    src, rec = _gen(tmp_path, "RMSNorm")
    assert rec["model_name"] is None and rec["dims"]["H"] == 4096
    assert _run_example(src, small=True)["outputs"]["out"].shape == (16, 4096)
    assert rec["config"] == "generic"


def test_cli(tmp_path, capsys):
    g = tmp_path / "A1.graph.json"
    shutil.copy(TREES / "RMSNorm" / "A1.graph.json", g)
    assert main(["example", "--graph", str(g), "--model", "Qwen/Qwen3-30B-A3B", "--model-config", str(A3B),
                 "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out == ""
    assert main(["A6", "--graph", str(g), "--model-config", str(CONFIGS / "bad_gqa.json"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "[A6 example]" in capsys.readouterr().err
