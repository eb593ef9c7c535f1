"""Variant choices that prune the closure (A1 guards).

A variant is a dict of choices; `resolve()` fills the defaults (a bundle that runs on one NVIDIA GPU)
and rejects unknown keys or values with a StageError that lists what is allowed.
"""

from __future__ import annotations

from bundler_lib.errors import StageError

STAGE = "A1 graph"

# key: (default, allowed values)
CHOICES: dict[str, tuple[object, tuple]] = {
    "platform": ("cuda", ("cuda", "rocm", "cpu", "xpu", "tpu")),
    "dtype": ("bfloat16", ("bfloat16", "float16", "float32")),
    # tensor / expert parallel sizes on one node (pipeline parallelism is not offered); ep is vLLM's expert-parallel
    # group, tp x dp ranks, with dp 1 here: 1 (experts replicated, sharded by tp) or tp (experts placed over the ranks)
    "tp": (1, (1, 2, 4, 8)),
    "pp": (1, (1,)),
    "ep": (1, (1, 2, 4, 8)),
    # how the groups of a multi-GPU bundle (tp or ep > 1) communicate: "torch" binds the platform's device
    # communicator to vLLM's DeviceCommunicatorBase, NCCL through torch.distributed: custom all-reduce, quick
    # all-reduce, symmetric memory, FlashInfer and pynccl (libnccl through ctypes) stay out of the bundle
    "communicator": ("torch", ("torch",)),
    "quantization": ("none", ("none",)),
    # vLLM's attention backend (an AttentionBackendEnum member): TRITON_ATTN, its Triton unified attention;
    # TRITON_ATTN_DIFFKV, the same for V heads of another size than K's (the Triton choice of a layer that asks for a
    # `*_DIFFKV` backend, MiMo-V2; vLLM's FLASH_ATTN_DIFFKV needs its FlashAttention extension); FLEX_ATTENTION,
    # torch's flex_attention compiled by torch (no kernel of vLLM's own); ROCM_ATTN, vLLM's "PagedAttention and Triton
    # prefix prefill" backend, whose kernels are Triton (prefill in 128-row blocks: prefix_prefill.py) and so run on
    # NVIDIA too (its ROCm-only kernels sit behind platform checks A1 decides); TRITON_MLA, the Triton decode backend
    # of an MLA-only layer (vLLM's MLAAttention and not its Attention: A1 gives such a layer this backend, since the
    # others refuse use_mla)
    "attention_backend": ("TRITON_ATTN", ("TRITON_ATTN", "TRITON_ATTN_DIFFKV", "FLEX_ATTENTION", "ROCM_ATTN",
                                          "TRITON_MLA")),
    "moe_backend": ("triton", ("triton",)),
    "custom_ops": ("enabled", ("enabled", "disabled")),
    # dispatch priority of vLLM's IR ops (vllm.ir): its own CUDA kernels first, as vLLM sets it without
    # inductor codegen ("native" only: the torch implementations)
    "ir_op_priority": ("vllm_c,native", ("vllm_c,native", "native")),
    # KV cache dtype ("auto": the model's dtype, not quantized)
    "kv_cache_dtype": ("auto", ("auto",)),
    # which attention the layer does (AttentionType members, lower case)
    "attn_type": ("decoder", ("decoder", "encoder", "encoder_only", "encoder_decoder")),
    "lora": ("none", ("none",)),
    # KV cache transfer between vLLM instances (disaggregated prefill, KV connectors): none, so
    # kv_transfer_config is None and no KV connector is ever created
    "kv_transfer": ("none", ("none",)),
    # vllm.envs flags: "defaults" decides branches on them by their default values (the bundle then
    # ignores those environment variables); "runtime" keeps every branch
    "envs": ("defaults", ("defaults", "runtime")),
    # how vLLM's CUDA platform queries the GPU (device name, capability, memory): "torch" binds
    # current_platform to vLLM's NonNvmlCudaPlatform (torch.cuda, as vLLM does where NVML is unavailable),
    # "nvml" to the class vLLM picks at import (NvmlCudaPlatform when NVML initialises), which embeds the
    # vendored vllm/third_party/pynvml.py whole (about 6,100 lines)
    "gpu_queries": ("torch", ("torch", "nvml")),
    # CUDA compute capability of the target GPU (major*10+minor): 90 = H100/H200
    "cuda_capability": (90, (70, 75, 80, 86, 89, 90, 100, 103, 110, 120, 121)),
}
# vLLM's AttentionConfig knobs of its FLEX_ATTENTION backend (its --attention-config): the flex_attention kernel's
# BLOCK_M / BLOCK_N tiles and the block mask's logical query / KV block sizes. None: vLLM's defaults (on torch >= 2.9
# 16-token blocks of both, built directly from the block table); a KV block other than the cache's 16-token block
# makes vLLM build the mask with create_block_mask over the whole cache instead (README: the prefill backends).
FLEX_KEYS = ("flex_attn_block_m", "flex_attn_block_n", "flex_attn_q_block_size", "flex_attn_kv_block_size")
CHOICES.update({k: (None, (None, 16, 32, 64, 128, 256)) for k in FLEX_KEYS})
# vLLM's smallest query and KV blocks (torch >= 2.9), which a larger tile must not exceed unless its block is given
FLEX_DEFAULT_BLOCK = 16

PLATFORMS = ("cuda", "rocm", "cpu", "xpu", "tpu")
# keys whose values are integers: written as integers or as strings of digits ("80")
INTEGER_KEYS = ("cuda_capability", "tp", "pp", "ep") + FLEX_KEYS


def normalise(key: str, value: object) -> object:
    """An integer key's value as an int (80 and "80" alike); other values as given. A value of the wrong
    type raises StageError."""
    if key not in INTEGER_KEYS:
        if not isinstance(value, str):
            raise StageError(STAGE, f"variant {key}={value!r}", "expected a string",
                             f"write it in quotes; allowed values for {key}: "
                             + ", ".join(repr(a) for a in CHOICES[key][1]))
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    example = next(a for a in CHOICES[key][1] if a is not None)
    raise StageError(STAGE, f"variant {key}={value!r}", "expected an integer",
                     f"write it as an integer such as {example} (or a string of digits); allowed values for "
                     f"{key}: " + ", ".join(repr(a) for a in CHOICES[key][1] if a is not None))


def defaults() -> dict:
    return {k: v[0] for k, v in CHOICES.items()}


def resolve(variant: dict | None) -> dict:
    """Defaults overridden by `variant`; unknown keys or values raise StageError."""
    if variant is None:
        variant = {}
    if not isinstance(variant, dict):
        raise StageError(STAGE, "variant", f"expected a JSON object, got {type(variant).__name__}",
                         "pass a JSON object such as {\"platform\": \"cuda\"}")
    out = defaults()
    for key in sorted(variant):
        value = variant[key]
        if key not in CHOICES:
            raise StageError(STAGE, f"variant key {key!r}", "unknown variant key",
                             "use one of: " + ", ".join(sorted(CHOICES)))
        allowed = CHOICES[key][1]
        value = normalise(key, value)
        if value not in allowed:
            raise StageError(STAGE, f"variant {key}={value!r}", "unknown variant value",
                             f"allowed values for {key}: " + ", ".join(repr(a) for a in allowed if a is not None))
        out[key] = value
    if out["ep"] not in (1, out["tp"]):
        raise StageError(STAGE, f"variant ep={out['ep']!r}", f"with tp={out['tp']} the expert-parallel group is 1 "
                         f"or tp={out['tp']} GPUs (vLLM's ep = tp x dp, dp is 1 here)",
                         f"allowed values for ep with tp={out['tp']}: 1, {out['tp']}" if out["tp"] > 1 else
                         "set tp to the same value (expert parallelism over tp ranks), or leave ep out")
    _check_flex(out)
    return out


def _check_flex(out: dict) -> None:
    """vLLM's own rules for the FLEX_ATTENTION knobs (FlexAttentionMetadataBuilder._get_block_sizes), checked here
    instead of at the bundle's first call."""
    given = [k for k in FLEX_KEYS if out[k] is not None]
    if given and out["attention_backend"] != "FLEX_ATTENTION":
        raise StageError(STAGE, f"variant {given[0]}={out[given[0]]!r}",
                         f"vLLM reads it only with attention_backend FLEX_ATTENTION, not {out['attention_backend']}",
                         'add "attention_backend": "FLEX_ATTENTION" to the variant, or leave it out')
    for tile, block in (("flex_attn_block_m", "flex_attn_q_block_size"),
                        ("flex_attn_block_n", "flex_attn_kv_block_size")):
        size = out[block] if out[block] is not None else FLEX_DEFAULT_BLOCK
        if out[tile] is not None and size % out[tile]:
            raise StageError(STAGE, f"variant {tile}={out[tile]!r}",
                             f"vLLM needs {block} ({size}{'' if out[block] else ', its default'}) divisible by it",
                             f"set {block} to a multiple of {out[tile]}, or a smaller {tile}")


def world_size(variant: dict) -> int:
    """GPUs a bundle of this variant runs on (one process each): tp x pp (x dp, 1 here); ep reuses the tp ranks."""
    return variant.get("tp", 1) * variant.get("pp", 1)


def platform_predicates(variant: dict) -> dict[str, bool]:
    """Value of `current_platform.<method>()` for the variant's platform."""
    p = variant["platform"]
    return {
        "is_cuda": p == "cuda",
        "is_rocm": p == "rocm",
        "is_cuda_alike": p in ("cuda", "rocm"),
        "is_xpu": p == "xpu",
        "is_cpu": p == "cpu",
        "is_tpu": p == "tpu",
        "is_out_of_tree": False,
        "is_hpu": False,
        "is_neuron": False,
        "is_sleep_mode_available": p in ("cuda", "rocm"),
        "is_zen_cpu": False,
    }


# Qualified names of the platform class for `current_platform` (a lazily resolved module attribute).
PLATFORM_CLASS = {
    "cuda": ("vllm.platforms.cuda", "CudaPlatform"),
    "rocm": ("vllm.platforms.rocm", "RocmPlatform"),
    "cpu": ("vllm.platforms.cpu", "CpuPlatform"),
    "xpu": ("vllm.platforms.xpu", "XPUPlatform"),
    "tpu": ("vllm.platforms.tpu", "TpuPlatform"),
}


# The method vLLM's CustomOp dispatches `forward` to, per platform ("oot": an out-of-tree platform).
PLATFORM_FORWARD = {"cuda": "forward_cuda", "rocm": "forward_hip", "cpu": "forward_cpu", "xpu": "forward_xpu",
                    "tpu": "forward_tpu", "oot": "forward_oot"}


def foreign_forwards(variant: dict) -> set[str]:
    """CustomOp's forward methods for other platforms than the variant's: dead unless called by name."""
    return {m for p, m in PLATFORM_FORWARD.items() if p != variant["platform"]}


def platform_class(variant: dict) -> tuple[str, str]:
    """(module, class) that `current_platform` is bound to for the variant."""
    if variant["platform"] == "cuda" and variant.get("gpu_queries", "torch") == "torch":
        return "vllm.platforms.cuda", "NonNvmlCudaPlatform"
    return PLATFORM_CLASS[variant["platform"]]


def foreign_platform(module: str, platform: str) -> str | None:
    """The platform whose module `module` is (vllm.platforms.rocm), when that is not `platform`."""
    return next((p for p, (mod, _) in PLATFORM_CLASS.items() if mod == module and p != platform), None)


# Registries whose members name classes that vLLM imports by qualified name at run time
# (`resolve_obj_by_qualname`): variant key -> (module, enum class); the member named by the variant value
# holds the qualified name.
BY_NAME_REGISTRIES = {
    "attention_backend": ("vllm.v1.attention.backends.registry", "AttentionBackendEnum"),
}


# The device communicator of a group over several GPUs, per `communicator` choice: the platform's
# `get_device_communicator_cls()` names its own (CudaCommunicator: pynccl, custom all-reduce, symmetric memory,
# FlashInfer), which vLLM imports by name; the bundle binds that name to this class instead.
COMMUNICATOR_METHOD = "get_device_communicator_cls"
COMMUNICATORS = {
    "torch": ("vllm.distributed.device_communicators.base_device_communicator", "DeviceCommunicatorBase"),
}


def parallel_sizes(variant: dict) -> dict[str, int]:
    return {"tp": variant["tp"], "pp": variant["pp"], "ep": variant["ep"], "dp": 1}
