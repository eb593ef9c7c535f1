"""A6's model parts (common/owner_parts.py, example/model_parts.py): a layer's input that vLLM's model passes as its
own attribute is built as the model builds it (Gemma4SelfDecoderLayers' embeddings and per-layer projections,
InternS2Mobius's `meta_mlp`); a forward input is recognised by the part the layer hands it to (token ids for an
embedding built with the vocabulary size, the hidden states for a norm built with hidden_size: EmbeddingGemma2's
`h`, Gemma4SelfDecoderLayers' `input_ids`)."""

import ast
import json
import re
import textwrap
from pathlib import Path

from bundler_lib import example as a6
from bundler_lib.common.example_roots import extra_roots, layer_signature

TREES = Path(__file__).parent / "trees" / "stages" / "example"
MOCK = TREES / "decoder_mock"
TINY = TREES / "configs" / "tiny_qwen3_moe.json"
LAYER_FILE = "vllm/model_executor/models/qwen3_moe.py"

MODULE = '''
    class Embedding(nn.Module):
        def __init__(self, num, dim, prefix=""):
            pass
    class RMSNorm(nn.Module):
        def __init__(self, dim, eps=1e-6):
            pass
    class Bank(nn.Module):
        def __init__(self, *, vllm_config, prefix=""):
            pass
    class Qwen3MoeDecoderLayer(nn.Module):
        def __init__(self, vllm_config, *, embed, scale, extra, prefix=""):
            config = vllm_config.model_config.hf_text_config
            self.embed = embed
            self.norm = RMSNorm(config.hidden_size)
        def forward(self, positions, h, ids, bank: nn.ModuleList, residual=None):
            x = self.lookup(ids)
            return self.norm(h) + x + bank[0](h)
        def lookup(self, token_ids):
            return self.embed(token_ids)
    class Model(nn.Module):
        def __init__(self, *, vllm_config, prefix=""):
            config = vllm_config.model_config.hf_text_config
            width = config.hidden_size
            self.extra_width = getattr(config, "extra_width", 0)
            self.embed = Embedding(config.vocab_size, width, prefix=f"{prefix}.embed")
            self.register_buffer("scale", torch.tensor(width ** 0.5), persistent=False)
            if self.extra_width > 0:
                self.extra = RMSNorm(self.extra_width)
            else:
                self.extra = None
            self.bank = nn.ModuleList(Bank(vllm_config=vllm_config, prefix=f"{prefix}.bank.{i}")
                                      for i in range(config.num_experts))
            self.layers = [Qwen3MoeDecoderLayer(vllm_config, embed=self.embed, scale=self.scale,
                                                extra=getattr(self, "extra", None))]
        def forward(self, positions, h):
            for layer in self.layers:
                h = layer(positions, h, None, bank=self.bank)
            return h
'''


def _signature() -> dict:
    module = ast.parse(textwrap.dedent(MODULE))
    classes = {c.name: c for c in module.body}
    return layer_signature(classes["Qwen3MoeDecoderLayer"], lambda name, within: classes.get(name), module)


def test_layer_signature_records_the_models_parts_and_what_the_forward_reads():
    """The model's attributes a layer is handed (to __init__ by name, to forward in the model's loop over its
    layers) are its parts: their expressions with the model's locals and attributes replaced, the condition they
    are built under, the names they read; a forward input is read by the part it is handed to first, in forward or
    in a method of the layer: the embedding (vocab_size), the norm (hidden_size). The parts' names are extra roots
    once A1 qualified them."""
    sig = _signature()
    init, fwd = sig["__init__"]["owner_parts"], sig["forward"]["owner_parts"]
    assert init["embed"] == {"expr": "Embedding(config.vocab_size, config.hidden_size, prefix=f'{prefix}.embed')",
                             "when": None, "names": {"Embedding": None}}
    assert init["scale"]["expr"] == "torch.tensor(config.hidden_size ** 0.5)"
    assert init["extra"] == {"expr": "RMSNorm(getattr(config, 'extra_width', 0))",
                             "when": "getattr(config, 'extra_width', 0) > 0", "names": {"RMSNorm": None}}
    assert fwd == {"bank": {"expr": "nn.ModuleList((Bank(vllm_config=vllm_config, prefix=f'{prefix}.bank.{i}') "
                                    "for i in range(config.num_experts)))",
                            "when": None, "names": {"Bank": None, "nn": None}}}
    assert sig["forward"]["reads"] == {"h": "hidden_size", "ids": "vocab_size"}
    init["embed"]["names"]["Embedding"] = f"{LAYER_FILE}::Embedding"
    roots, _ = extra_roots("Qwen3MoeDecoderLayer", "class", sig)
    assert f"{LAYER_FILE}::Embedding" in roots


def _parts_graph(tmp_path, bundle_names: dict) -> Path:
    """The mock decoder layer's graph with the signature of MODULE's layer, its names qualified as A1 does."""
    g = json.loads((MOCK / "A1.graph.json").read_text())
    sig = _signature()
    qualified = {"Embedding": f"{LAYER_FILE}::Embedding", "RMSNorm": f"{LAYER_FILE}::RMSNorm",
                 "Bank": f"{LAYER_FILE}::Bank", "nn": "torch.nn", "torch": "torch"}
    for method in ("__init__", "forward"):
        for part in sig[method]["owner_parts"].values():
            part["names"] = {n: qualified[n] for n in part["names"]}
    g["root_signature"] = sig
    g["python_nodes"] += [{"id": f"{LAYER_FILE}::{n}", "file": LAYER_FILE, "name": n, "emit_name": e,
                           "kind": "class", "section": "python", "line": 1, "end_line": 2}
                          for n, e in bundle_names.items()]
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    return p


LAYER = '''
class Embedding_1(torch.nn.Module):  # renamed in the bundle
    def __init__(self, num, dim, prefix=""):
        super().__init__()
        self.num, self.prefix = num, prefix
        self.weight = torch.nn.Parameter(torch.empty(num, dim))
    def forward(self, ids):
        return torch.nn.functional.embedding(ids, self.weight)
class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(dim))
    def forward(self, x):
        return x * self.weight
class Bank(torch.nn.Module):
    def __init__(self, *, vllm_config, prefix=""):
        super().__init__()
        self.prefix = prefix
        self.scale = torch.nn.Parameter(torch.empty(1))
    def forward(self, x):
        return x * self.scale
class Qwen3MoeDecoderLayer(torch.nn.Module):
    def __init__(self, vllm_config, *, embed, scale, extra, prefix=""):
        super().__init__()
        hf = vllm_config.model_config.hf_text_config
        self.embed, self.scale, self.extra = embed, scale, extra
        self.norm = RMSNorm(hf.hidden_size)
    def forward(self, positions, h, ids, bank, residual=None):
        return self.norm(h) + self.embed(ids) * self.scale + bank[0](h)
'''


def _run(tmp_path, monkeypatch, bundle_src):
    import torch
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    ns = {"__name__": "mock_bundle"}
    exec(compile((MOCK / "mock_bundle.py").read_text(), "mock_bundle.py", "exec"), ns)
    exec(compile(bundle_src + src, "A6.example.py", "exec"), ns)
    return ns["invocation_example"](small=True, workload="prefill")


def test_the_example_builds_the_models_parts_and_reads_the_inputs(tmp_path, monkeypatch):
    """On CPU: the example builds each part as the model does (the bundle's name of its class, the model's prefix,
    None where the config does not enable it), hands the __init__ ones to the layer and the forward ones to its
    forward, held by the layer so that their weights are filled; the token ids are in [0, vocab) and the input
    read as hidden states is the example's hidden states."""
    import torch
    cfg = json.loads(TINY.read_text())
    rec = a6.run(_parts_graph(tmp_path, {"Embedding": "Embedding_1", "RMSNorm": "RMSNorm", "Bank": "Bank"}),
                 "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    assert rec["status"] == "ok", rec["missing"]
    res = _run(tmp_path, monkeypatch, LAYER)
    layer, T, H = res["module"], res["sizes"]["T"], cfg["hidden_size"]
    assert layer.embed.prefix == "model.embed" and tuple(layer.embed.weight.shape) == (cfg["vocab_size"], H)
    assert float(layer.scale) == H ** 0.5 and layer.extra is None
    bank = layer.model_bank
    assert [b.prefix for b in bank] == [f"model.bank.{i}" for i in range(cfg["num_experts"])]
    assert all(b.scale.item() == 1.0 for b in bank)  # filled with the layer's weights
    ids, x = res["inputs"]["ids"], res["inputs"]["hidden_states"]
    assert ids.dtype == torch.int64 and ids.shape == (T,) and 0 <= int(ids.min()) and int(ids.max()) < cfg["vocab_size"]
    want = x + layer.embed(ids) * layer.scale + x
    assert torch.allclose(res["outputs"]["hidden_states"].float(), want.float())


def test_a_part_the_bundle_lacks_has_no_template(tmp_path):
    """A part whose class the bundle lacks (A1 did not reach it): the example raises, naming the input and the
    model's expression."""
    rec = a6.run(_parts_graph(tmp_path, {"Embedding": "Embedding_1", "RMSNorm": "RMSNorm"}), "tiny/qwen3-moe",
                 TINY, None, tmp_path / "o")
    assert rec["status"] == "no_template"
    assert any("forward input bank" in m and f"{LAYER_FILE}::Bank" in m for m in rec["missing"]), rec["missing"]


def test_a1_reaches_the_parts_gemma4s_self_decoder_stack_takes(vllm_0_26_0):
    """On vLLM 0.26.0's tree: Gemma4SelfDecoderLayers' parts are those Gemma4Model builds, their names qualified;
    A1 reaches each part's class though the layers never do (VocabParallelEmbedding: only the model embeds)."""
    from bundler_lib import graph
    g = graph.build(vllm_0_26_0, "Gemma4SelfDecoderLayers")
    parts = g["root_signature"]["__init__"]["owner_parts"]
    assert sorted(parts) == sorted(["embed_tokens", "normalizer", "embed_tokens_per_layer", "embed_scale_per_layer",
                                    "per_layer_model_projection", "per_layer_projection_norm", "per_layer_input_scale",
                                    "per_layer_projection_scale"])
    emb = "vllm/model_executor/layers/vocab_parallel_embedding.py::VocabParallelEmbedding"
    assert parts["embed_tokens"]["names"] == {"VocabParallelEmbedding": emb}
    assert parts["normalizer"]["names"] == {"torch": "torch"}
    assert parts["embed_tokens_per_layer"]["when"].startswith("getattr(config, 'hidden_size_per_layer_input', 0)")
    assert emb in {n["id"] for n in g["python_nodes"]}
    assert g["root_signature"]["forward"]["reads"] == {"input_ids": "vocab_size"}
