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
        4096: {"BLOCK_M": 64, "TILE_SIZE": 64, "num_warps": 4, "num_stages": 2},
        32768: {"BLOCK_M": 64, "TILE_SIZE": 32, "num_warps": 4, "num_stages": 2},
    },
}

MEASURED = {
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=4,head_size=128,dtype=bfloat16.json":
        "benchmarks/results/2026-12-07-attn-bench-3.json: the fastest of vLLM's launch and 10 candidates at 512, "
        "4,096 and 32,768 tokens (1.49x, 2.67x, 3.61x vLLM's launch; outputs as close to SDPA as vLLM's)",
    "unified_attention,device_name=NVIDIA_H100_80GB_HBM3,queries_per_kv=8,head_size=128,dtype=bfloat16.json":
        "benchmarks/results/2026-12-07-attn-bench-4.json: the fastest of vLLM's launch and 4 candidates at 4,096 and "
        "32,768 tokens (2.71x, 3.32x vLLM's launch); in Qwen3DecoderLayer at 32k the layer 118.1 -> 40.9 ms "
        "(2026-12-07-layer-speed-3.json), parity at 4,096 unchanged (0.808x, 2026-12-07-parity-tuned-attention-1.json)",
}
