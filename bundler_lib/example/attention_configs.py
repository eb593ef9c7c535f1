"""Prefill launch constants of vLLM's unified attention kernel measured fastest on a GPU class, shipped in every
bundle that reaches the kernel (attention_tune.py): the default wherever the bundle cache holds no `tune-attention`
file for the GPU and shape. Keys are tune-attention's file names; values its tables ({tokens per sequence: BLOCK_M,
TILE_SIZE, num_warps, num_stages}); MEASURED names where each table was measured. A GPU or shape not listed here
keeps vLLM's launch until tune-attention is run on it."""

SHIPPED = {
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=4,head_size=128,dtype=bfloat16.json": {
        512: {"BLOCK_M": 128, "TILE_SIZE": 64, "num_warps": 8, "num_stages": 3},
        4096: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        32768: {"BLOCK_M": 64, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 2},
    },
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=8,head_size=128,dtype=bfloat16.json": {
        512: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        4096: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        8192: {"BLOCK_M": 64, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 2},
        32768: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
    },
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=12,head_size=128,dtype=bfloat16.json": {
        512: {"BLOCK_M": 128, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 2},
        4096: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        8192: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        32768: {"BLOCK_M": 128, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
    },
}

MEASURED = {
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=4,head_size=128,dtype=bfloat16.json":
        "benchmarks/results/2026-12-07-attn-bench-3.json: the fastest of vLLM's launch and 10 candidates at 512, "
        "4,096 and 32,768 tokens (1.49x, 2.67x, 3.61x vLLM's launch; outputs as close to SDPA as vLLM's)",
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=8,head_size=128,dtype=bfloat16.json":
        "benchmarks/results/2026-12-07-tune-attention-1.txt: `tune-attention` of LlamaDecoderLayer (its example: "
        "32 q / 4 KV heads), the fastest of vLLM's launch and 72 candidates at 512, 4,096, 8,192 and 32,768 tokens "
        "(1.46x, 2.90x, 3.13x, 3.21x vLLM's launch); Qwen3DecoderLayer's run before it, same shape, found its fastest "
        "within 9% of these",
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=12,head_size=128,dtype=bfloat16.json":
        "benchmarks/results/2026-12-07-tune-attention-1.txt: `tune-attention` of Qwen3MoeDecoderLayer "
        "(Qwen3-Coder-480B: 96 q / 8 KV heads), vLLM's launch and up to 72 candidates at 512, 4,096, 8,192 and "
        "32,768 tokens (1.75x, 3.75x, 3.89x, 3.83x vLLM's launch; at 32,768 its 110 s budget timed 12 of them)",
}
