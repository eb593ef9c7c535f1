# A stand-in for a bundle of Qwen3MoeDecoderLayer: vLLM's module state, and a layer that reads it the way
# vLLM's does (current config, parallel groups, forward context, paged KV cache, TRITON_ATTN metadata),
# computing attention and the MoE in plain torch. Used to check the plumbing of A6's decoder example.
import functools

import torch

_current_vllm_config = None
_forward_context = None
_WORLD = None
_TP = None
_EP = None
_manager_workspace = None


class WorkspaceManager:
    def __init__(self, device, num_ubatches=None):
        self.device = device


def get_current_vllm_config():
    assert _current_vllm_config is not None, "Current vLLM config is not set"
    return _current_vllm_config


@functools.lru_cache
def get_cached_compilation_config():
    return get_current_vllm_config().compilation_config


def get_forward_context():
    assert _forward_context is not None, "Forward context is not set"
    return _forward_context


class _Attention(torch.nn.Module):
    def __init__(self, num_heads, head_size, num_kv_heads, prefix):
        super().__init__()
        cfg = get_current_vllm_config()
        assert cfg.attention_config.backend == "TRITON_ATTN"
        self.num_heads, self.head_size, self.num_kv_heads = num_heads, head_size, num_kv_heads
        self.layer_name = prefix
        self.impl = object()
        self.kv_cache = torch.tensor([])
        cfg.compilation_config.static_forward_context[prefix] = self

    def forward(self, q, k, v):
        ctx = get_forward_context()
        layer = ctx.no_compile_layers[self.layer_name]
        md = ctx.attn_metadata[self.layer_name]
        slots = ctx.slot_mapping[self.layer_name]
        kv = layer.kv_cache.transpose(1, 2)  # (blocks, block_size, kv_heads, 2*hs)
        blocks, bs = kv.shape[0], kv.shape[1]
        flat = kv.reshape(blocks * bs, self.num_kv_heads, 2 * self.head_size)
        T = md.num_actual_tokens
        flat[slots, :, : self.head_size] = k.view(T, self.num_kv_heads, self.head_size)
        flat[slots, :, self.head_size:] = v.view(T, self.num_kv_heads, self.head_size)
        out = torch.empty(T, self.num_heads, self.head_size, dtype=q.dtype, device=q.device)
        qh = q.view(T, self.num_heads, self.head_size)
        g = self.num_heads // self.num_kv_heads
        qsl = md.query_start_loc.tolist()
        for b in range(len(qsl) - 1):
            s_len = int(md.seq_lens[b])
            nb = -(-s_len // bs)
            idx = (md.block_table[b, :nb].long()[:, None] * bs + torch.arange(bs, device=q.device)).reshape(-1)[:s_len]
            kk = flat[idx, :, : self.head_size].float().repeat_interleave(g, dim=1)
            vv = flat[idx, :, self.head_size:].float().repeat_interleave(g, dim=1)
            qq = qh[qsl[b]:qsl[b + 1]].float()
            n_new = qq.shape[0]
            scores = torch.einsum("qhd,khd->hqk", qq, kk) * self.head_size ** -0.5
            qpos = torch.arange(s_len - n_new, s_len, device=q.device)
            mask = torch.arange(s_len, device=q.device)[None, :] > qpos[:, None]
            scores.masked_fill_(mask[None], float("-inf"))
            out[qsl[b]:qsl[b + 1]] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), vv).to(q.dtype)
        return out.view(T, -1)


class Qwen3MoeDecoderLayer(torch.nn.Module):
    def __init__(self, vllm_config, prefix=""):
        super().__init__()
        assert get_current_vllm_config() is vllm_config
        assert _EP.device_group.size() == 1 and _TP.world_size == 1
        assert get_cached_compilation_config().custom_ops == ["all"]
        hf = vllm_config.model_config.hf_text_config
        H, Hq, Hkv, Dh = hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads, hf.head_dim
        E, I = hf.num_experts, hf.moe_intermediate_size
        self.top_k = hf.num_experts_per_tok
        self.qkv = torch.nn.Parameter(torch.empty((Hq + 2 * Hkv) * Dh, H))
        self.o = torch.nn.Parameter(torch.empty(H, Hq * Dh))
        self.gate = torch.nn.Parameter(torch.empty(E, H))
        self.w13 = torch.nn.Parameter(torch.empty(E, 2 * I, H))
        self.w2 = torch.nn.Parameter(torch.empty(E, H, I))
        self.norm = torch.nn.Parameter(torch.empty(H))
        self.sizes = (Hq * Dh, Hkv * Dh)
        self.attn = _Attention(Hq, Dh, Hkv, prefix + ".self_attn.attn")
        assert self.qkv.device.type == "cuda" and self.qkv.dtype == torch.bfloat16

    def forward(self, positions, hidden_states, residual):
        assert positions.shape[0] == hidden_states.shape[0]
        residual = hidden_states
        x = hidden_states * self.norm
        q, k, v = (x @ self.qkv.t()).split([self.sizes[0], self.sizes[1], self.sizes[1]], dim=-1)
        a = self.attn(q, k, v) @ self.o.t()
        h = a + residual
        probs = (h.float() @ self.gate.float().t()).softmax(-1)
        w, ids = probs.topk(self.top_k, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(h, dtype=torch.float32)
        for j in range(self.top_k):
            for e in ids[:, j].unique().tolist():
                rows = ids[:, j] == e
                gu = h[rows].float() @ self.w13[e].float().t()
                gate, up = gu.chunk(2, dim=-1)
                out[rows] += w[rows, j, None] * ((torch.nn.functional.silu(gate) * up) @ self.w2[e].float().t())
        return out.to(h.dtype), h
