"""A6's cross-attention template (bundler_lib/example/cross_attention.py): a decoder layer whose forward takes the
encoder's output gets it, and its cross-attention its own KV cache and metadata, as vLLM's engine sets them up.

On CPU with a stand-in bundle (tests/trees/stages/example/decoder_mock): a layer with a paged self-attention and a
cross-attention that reads its metadata the way vLLM's CrossAttention impl does (not causal, seq_lens the encoder
lengths, its own block table; K/V written through the metadata's slot mapping when the encoder's output is given)."""

import ast
import json
import re
import textwrap
from pathlib import Path

import torch

from bundler_lib import example as a6
from bundler_lib.common.example_roots import layer_signature
from bundler_lib.example import cross_attention, decoder

ROOT = Path(__file__).resolve().parents[1]
MOCK = Path(__file__).parent / "trees" / "stages" / "example" / "decoder_mock"
TINY = MOCK.parent / "configs" / "tiny_qwen3_moe.json"
WHISPER = ROOT / "models" / "transformers--whisper" / "config.json"

LAYER = textwrap.dedent('''
    class _Cross(_Attention):
        attn_type = "encoder_decoder"

        def forward(self, q, k, v):
            ctx = get_forward_context()
            md = ctx.attn_metadata[self.layer_name]
            assert md.causal is False and md.max_seq_len == int(md.seq_lens.max())
            kv = self.kv_cache.transpose(1, 2)
            bs = kv.shape[1]
            flat = kv.reshape(kv.shape[0] * bs, self.num_kv_heads, 2 * self.head_size)
            if k is not None:  # the first step: the encoder's K/V written through the cross slots
                flat[md.slot_mapping, :, : self.head_size] = k.view(-1, self.num_kv_heads, self.head_size)
                flat[md.slot_mapping, :, self.head_size:] = v.view(-1, self.num_kv_heads, self.head_size)
            out = []
            qsl = md.query_start_loc.tolist()
            g = self.num_heads // self.num_kv_heads
            for b in range(len(qsl) - 1):
                s = int(md.seq_lens[b])
                idx = (md.block_table[b].long()[:, None] * bs + torch.arange(bs)).reshape(-1)[:s]
                kk = flat[idx, :, : self.head_size].float().repeat_interleave(g, dim=1)
                vv = flat[idx, :, self.head_size:].float().repeat_interleave(g, dim=1)
                qq = q[qsl[b]:qsl[b + 1]].view(-1, self.num_heads, self.head_size).float()
                p = (torch.einsum("qhd,khd->hqk", qq, kk) * self.head_size ** -0.5).softmax(-1)
                out.append(torch.einsum("hqk,khd->qhd", p, vv).reshape(qq.shape[0], -1))
            return torch.cat(out).to(q.dtype)


    class Qwen3MoeDecoderLayer(torch.nn.Module):
        def __init__(self, vllm_config, prefix=""):
            super().__init__()
            hf = vllm_config.model_config.hf_text_config
            H, Hq, Hkv, Dh = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads, hf.head_dim
            self.sizes = (Hq * Dh, Hkv * Dh)
            self.qkv = torch.nn.Parameter(torch.empty((Hq + 2 * Hkv) * Dh, H))
            self.q = torch.nn.Parameter(torch.empty(Hq * Dh, H))
            self.kv = torch.nn.Parameter(torch.empty(2 * Hkv * Dh, H))
            self.o = torch.nn.Parameter(torch.empty(H, Hq * Dh))
            self.self_attn = _Attention(Hq, Dh, Hkv, prefix + ".self_attn.attn")
            self.encoder_attn = _Cross(Hq, Dh, Hkv, prefix + ".encoder_attn.attn")

        def forward(self, hidden_states, encoder_hidden_states):
            q, k, v = (hidden_states @ self.qkv.t()).split([self.sizes[0], self.sizes[1], self.sizes[1]], dim=-1)
            h = hidden_states + self.self_attn(q, k, v) @ self.o.t()
            ck = cv = None
            if encoder_hidden_states is not None:
                ck, cv = (encoder_hidden_states @ self.kv.t()).split([self.sizes[1], self.sizes[1]], dim=-1)
            self.last_h = h
            return h + self.encoder_attn(h @ self.q.t(), ck, cv) @ self.o.t()
''')


def _graph(tmp_path, forward, optional=(), backend=None):
    g = json.loads((MOCK / "A1.graph.json").read_text())
    g["root_signature"] = {"__init__": {"required": ["vllm_config"], "optional": ["prefix"]},
                           "forward": {"required": forward, "optional": list(optional),
                                       "annotations": {"encoder_hidden_states": "torch.Tensor | None"}}}
    if backend:
        g.setdefault("variant", {})["attention_backend"] = backend
    p = tmp_path / "A1.graph.json"
    p.write_text(json.dumps(g))
    return p


def _run(tmp_path, monkeypatch, **kw):
    rec = a6.run(_graph(tmp_path, ["hidden_states", "encoder_hidden_states"]), "tiny/qwen3-moe", TINY, None,
                 tmp_path / "o")
    src = (tmp_path / "o" / "A6.example.py").read_text()
    src = re.sub(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 8 << 30))
    ns = {"__name__": "mock_bundle"}
    exec(compile((MOCK / "mock_bundle.py").read_text() + LAYER, "mock_bundle.py", "exec"), ns)
    exec(compile(src, "A6.example.py", "exec"), ns)
    return rec, ns["invocation_example"](small=True, **kw)


def _cross_reference(layer, h, kc, vc):
    """The cross-attention's output for the decoder states h over the encoder's K/V kc, vc ([S, Hkv, Dh])."""
    a = layer.encoder_attn
    g = a.num_heads // a.num_kv_heads
    q = (h @ layer.q.t()).view(h.shape[0], a.num_heads, a.head_size).float()
    p = (torch.einsum("qhd,khd->hqk", q, kc.float().repeat_interleave(g, 1)) * a.head_size ** -0.5).softmax(-1)
    return torch.einsum("hqk,khd->qhd", p, vc.float().repeat_interleave(g, 1)).reshape(h.shape[0], -1)


@torch.no_grad()
def test_cross_template_is_chosen_and_prefill_writes_the_encoder_kv(tmp_path, monkeypatch):
    rec, res = _run(tmp_path, monkeypatch, workload="prefill")
    assert rec["status"] == "ok" and rec["missing"] == []
    assert any(n.startswith("cross-attention: forward input encoder_hidden_states") for n in rec["notes"])
    layer, S = res["module"], cross_attention.SMALL_ENCODER_TOKENS
    B, H = res["sizes"]["B"], 256
    assert res["sizes"]["encoder_tokens"] == S
    enc = res["inputs"]["encoder_hidden_states"]
    assert tuple(enc.shape) == (B * S, H)
    # the cross cache holds, at the slots of the encoder tokens, the K/V projected from the encoder's output
    a = layer.encoder_attn
    assert a.kv_cache.data_ptr() != layer.self_attn.kv_cache.data_ptr()
    flat = a.kv_cache.transpose(1, 2).reshape(-1, a.num_kv_heads, 2 * a.head_size)
    kv = enc @ layer.kv.t()
    slots = torch.arange(S) + a.kv_cache.shape[2]  # block 0 is the null block: the first sequence starts at block 1
    assert torch.equal(flat[slots, :, : a.head_size].reshape(S, -1), kv[:S, : a.num_kv_heads * a.head_size])
    assert res["cost"]["flops"] > 0 and res["cost"]["bytes"] > 0
    # the output: the residual stream after self-attention plus the non-causal attention of each sequence's
    # new tokens over all S of its encoder tokens
    kc, vc = kv.view(B * S, 2, a.num_kv_heads, a.head_size).unbind(1)
    h, q_len = layer.last_h, res["sizes"]["new_tokens"]
    want = torch.cat([_cross_reference(layer, h[b * q_len:(b + 1) * q_len], kc[b * S:(b + 1) * S],
                                       vc[b * S:(b + 1) * S]) for b in range(B)])
    want = h.float() + want.to(h.dtype).float() @ layer.o.t().float()
    assert (res["outputs"]["hidden_states"].float() - want).abs().max() < 0.1


@torch.no_grad()
def test_decode_reads_the_cross_cache_without_encoder_output(tmp_path, monkeypatch):
    _, res = _run(tmp_path, monkeypatch, workload="decode")
    assert res["workload"] == "decode" and res["sizes"]["context"] > 0
    assert res["inputs"]["encoder_hidden_states"] is None
    B, S = res["sizes"]["B"], res["sizes"]["encoder_tokens"]
    layer = res["module"]
    a = layer.encoder_attn
    bs = res["sizes"]["block_size"]
    blocks = -(-S // bs)
    assert a.kv_cache.shape[0] == 1 + B * blocks
    # the result names the cross cache and its block table (parity copies the encoder's K/V from them)
    assert res["inputs"]["cross_kv_caches"][0] is a.kv_cache
    assert res["inputs"]["cross_block_table"].tolist() == [[1 + b * blocks + i for i in range(blocks)] for b in range(B)]
    # each sequence's one new token attends to the S encoder tokens its cross cache holds (its blocks after block 0)
    flat = a.kv_cache.transpose(1, 2).reshape(-1, a.num_kv_heads, 2 * a.head_size)
    h, want = layer.last_h, []
    for b in range(B):
        enc = flat[bs * (1 + b * blocks): bs * (1 + b * blocks) + S]
        want.append(_cross_reference(layer, h[b:b + 1], enc[..., : a.head_size], enc[..., a.head_size:]))
    want = h.float() + torch.cat(want).to(h.dtype).float() @ layer.o.t().float()
    assert (res["outputs"]["hidden_states"].float() - want).abs().max() < 0.1


def test_missing_names_what_the_template_does_not_cover(tmp_path):
    sig = {"forward": {"required": ["hidden_states", "encoder_hidden_states"], "optional": ["encoder_mask"]}}
    assert cross_attention.inputs(sig) == ["encoder_hidden_states", "encoder_mask"]
    assert cross_attention.missing(sig, {})[0].startswith("forward input encoder_mask: cross-attention input")
    sig["forward"]["optional"] = []
    assert cross_attention.missing(sig, {}) == []
    assert "FLEX_ATTENTION" in cross_attention.missing(sig, {"attention_backend": "FLEX_ATTENTION"})[0]
    assert cross_attention.missing({"forward": {"required": ["cross_attention_states"]}}, {})
    rec = a6.run(_graph(tmp_path, ["hidden_states", "encoder_hidden_states"], backend="FLEX_ATTENTION"),
                 "tiny/qwen3-moe", TINY, None, tmp_path / "o")
    assert rec["status"] == "no_template" and "FLEX_ATTENTION" in rec["missing"][0]


def test_encoder_tokens_from_the_config():
    assert cross_attention.encoder_tokens(json.loads(WHISPER.read_text()))[0] == 1500
    assert cross_attention.encoder_tokens({"max_source_positions": 750})[0] == 750
    n, why = cross_attention.encoder_tokens({"hidden_size": 8})
    assert n == cross_attention.DEFAULT_ENCODER_TOKENS and "default" in why


def test_a_layer_without_cross_input_keeps_the_refusal():
    """A layer without a cross input: the text as before the template (its cross layers are refused, naming them)."""
    pieces, notes = cross_attention.pieces({"forward": {"required": ["hidden_states"]}}, None, "X")
    assert notes == [] and "attend to an encoder's output" in pieces["cross_select"]
    assert set(pieces) - {"cross_select"} and not any(v for k, v in pieces.items() if k != "cross_select")
    assert "{cross_select}" in decoder._BODY


def test_whisper_max_context_is_its_decoder_length():
    """vLLM's max-length keys include Whisper's `max_target_positions` (its decoder's positions): 448, not 4096."""
    from bundler_lib.example.model_config import derive
    assert derive(json.loads(WHISPER.read_text()), "whisper")[0]["max_ctx"] == 448


CROSS_LAYERS = [("whisper.py", "WhisperDecoderLayer"), ("nemotron_parse.py", "BartDecoderLayer"),
                ("nemotron_parse.py", "MBartDecoderLayer"), ("cohere_asr.py", "CohereASRDecoderLayer"),
                ("fireredlid.py", "FireRedLIDDecoderLayer")]


def test_real_tree_cross_layers_get_the_template(vllm_0_26_0):
    """vLLM 0.26.0's five decoder layers with cross-attention: their signature (as A1 records it) names the encoder's
    output, which the template gives, and nothing it leaves out."""
    for file, name in CROSS_LAYERS:
        tree = ast.parse((vllm_0_26_0 / "vllm/model_executor/models" / file).read_text())
        classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
        sig = layer_signature(classes[name], lambda base, _c: classes.get(base))
        assert cross_attention.encoder_input(sig) == "encoder_hidden_states", name
        assert cross_attention.missing(sig, {}) == [], name
