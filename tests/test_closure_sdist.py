"""A1 + A2 + A3 on the real vLLM 0.26.0 sdist: RMSNorm and SiluAndMul bundle sections import without vLLM."""

import re

import pytest

from tests.test_closure_helpers import build_all, import_in_subprocess, node_ids, undefined_runtime_names

CASES = [
    ("RMSNorm", "vllm/model_executor/layers/layernorm.py",
     {"vllm/model_executor/layers/layernorm.py::RMSNorm", "vllm/model_executor/custom_op.py::CustomOp",
      "vllm/ir/ops/layernorm.py::rms_norm", "vllm/ir/ops/layernorm.py::fused_add_rms_norm",
      # vLLM's CUDA implementations of those IR ops, selected by the variant's priority (not aiter's, not oink's)
      "vllm/kernels/vllm_c.py::rms_norm", "vllm/kernels/vllm_c.py::fused_add_rms_norm",
      "vllm/ir/ops/layernorm.py::_bundle_ir_op_priority",
      # the variant's gpu_queries=torch: the platform vLLM uses where NVML is unavailable, no vendored pynvml
      "vllm/platforms/cuda.py::NonNvmlCudaPlatform"},
     {"vllm/model_executor/layers/layernorm.py::GemmaRMSNorm", "vllm/model_executor/layers/layernorm.py::poly_norm",
      "vllm/kernels/aiter_ops.py::rms_norm", "vllm/kernels/oink_ops.py::rms_norm",
      "vllm/platforms/cuda.py::NvmlCudaPlatform", "vllm/platforms/cuda.py::pynvml"}),
    ("SiluAndMul", None,
     {"vllm/model_executor/layers/activation.py::SiluAndMul", "vllm/model_executor/custom_op.py::CustomOp"},
     {"vllm/model_executor/layers/activation.py::SiluAndMulWithClamp",
      # custom ops on: CustomOp.dispatch_forward never compiles forward_native (maybe_compile), and reads
      # current_platform only in branches the variant decides
      "vllm/model_executor/utils.py::maybe_disable_graph_partition", "vllm/platforms/__init__.py::current_platform",
      "vllm/model_executor/layers/activation.py::_swiglustep_and_mul_kernel",
      "vllm/platforms/cuda.py::NvmlCudaPlatform", "vllm/platforms/cuda.py::CudaPlatform",
      "vllm/platforms/cuda.py::pynvml"}),
]


@pytest.mark.parametrize("symbol, hint, present, absent", CASES, ids=[c[0] for c in CASES])
def test_real_tree_closure_imports_without_vllm(vllm_0_26_0, tmp_path, symbol, hint, present, absent):
    g, a2, a3 = build_all(vllm_0_26_0, tmp_path, symbol, hint=hint)
    ids = node_ids(g)
    assert present <= ids
    assert not (absent & ids)
    assert g["def_file"] == (hint or "vllm/model_executor/layers/activation.py")
    # the symbol comes after everything it needs (the IR ops' implementations and their priority, which it
    # does not name, may follow)
    topo = a2["topo_order"]
    sym = next(i for i in topo if i.endswith("::" + symbol))
    assert all(topo.index(b) < topo.index(sym) for a, b in g["edges"] if a == sym and b != sym)
    assert a2["status"] == "ok" and a3["status"] == "ok"
    # no file outside the tree's Python sources, no vllm import left in the section
    assert all(f.startswith("vllm/") and f.endswith(".py") for f in g["files"])
    text = (tmp_path / "A2.inline.py").read_text()
    assert not re.search(r"^\s*(import vllm|from vllm[. ]|from \.)", text, re.M)
    assert not any("vllm" in r.split()[1] for r in a2["external_reqs"] if r.startswith(("import", "from")))
    assert "OK True" in import_in_subprocess(tmp_path, symbol)
    assert undefined_runtime_names(tmp_path / "assembled.py") == set()


def test_silu_and_mul_keeps_the_cuda_op_and_prunes_platform_branches(vllm_0_26_0, tmp_path):
    g, _, _ = build_all(vllm_0_26_0, tmp_path, "SiluAndMul")
    assert [c["op"] for c in g["cuda_ops"]] == ["_C.silu_and_mul"]
    preds = {(x["file"], x["predicate"], x["value"]) for x in g["guards"]}
    assert ("vllm/model_executor/custom_op.py", "current_platform.is_rocm()", False) in preds
    text = (tmp_path / "A2.inline.py").read_text()
    assert "def forward_hip" not in text   # never reached on cuda


def test_nvml_gpu_queries_embed_the_vendored_pynvml(vllm_0_26_0, tmp_path):
    g, _, _ = build_all(vllm_0_26_0, tmp_path, "RMSNorm", hint="vllm/model_executor/layers/layernorm.py",
                        variant={"gpu_queries": "nvml"})
    ids = node_ids(g)
    assert {"vllm/platforms/cuda.py::CudaPlatform", "vllm/platforms/cuda.py::NvmlCudaPlatform",
            "vllm/platforms/cuda.py::NonNvmlCudaPlatform"} <= ids
    assert any("vllm/third_party/pynvml.py" in i for i in ids)


def test_pruned_config_checks_keep_a_pass(vllm_0_26_0, tmp_path):
    # VllmConfig.__post_init__: both statements of an `if` body are decided away (pp > 1, a KV connector);
    # the body keeps a `pass` and the section parses (it failed A2 before)
    g, a2, _ = build_all(vllm_0_26_0, tmp_path, "LlamaDecoderLayer",
                         hint="vllm/model_executor/models/llama_eagle3.py")
    assert a2["status"] == "ok"
    text = (tmp_path / "A2.inline.py").read_text()
    assert re.search(r"and self\.model_config\.enable_return_routed_experts\n\s*\):\n\s+pass\n", text)


def test_getattr_op_lookup_only_used_with_tp_is_pruned_in_the_real_tree(vllm_0_26_0):
    # rms_norm_tp.py: `_MINIMAX_FUSED_AR_RMS_QK = getattr(torch.ops._C, "minimax_allreduce_rms_qk", None)` is an op
    # reference (tests/trees/closure/getattr_op), read only under `self.tp_world > 1`: on tp=1 it is not reached
    from bundler_lib.graph import build
    g = build(vllm_0_26_0, "MiniMaxM2DecoderLayer")
    assert "_C.minimax_allreduce_rms_qk" not in {e["op"] for e in g["cuda_ops"]}
    assert any(x["file"] == "vllm/model_executor/layers/minimax_rms_norm/rms_norm_tp.py" and "tp_world > 1" in
               x["predicate"] and x["value"] is False for x in g["guards"])


def test_unquantized_mla_never_quantizes_its_output(vllm_0_26_0, tmp_path):
    # MLAAttention.forward_impl's fused output quantization (`quant_key`, None without output scales) is
    # pruned on an unquantized variant: no CUTLASS FP4 quant op to embed
    from bundler_lib import graph
    g = graph.run(tree=vllm_0_26_0, out=tmp_path, symbol="DeepseekV2DecoderLayer", hint=None, variant=None)
    ops = {c["op"] for c in g["cuda_ops"]}
    assert "_C.scaled_fp4_quant" not in ops
    preds = {(x["file"], x["predicate"], x["value"]) for x in g["guards"]}
    assert ("vllm/model_executor/layers/attention/mla_attention.py", "quant_key is not None", False) in preds
    # QuantFP8's Python custom op, registered (name positional) in fp8_utils.py, called in input_quant_fp8.py
    assert {"op": "triton_per_token_group_quant_fp8", "target": "_triton_per_token_group_quant_fp8_impl"} in g[
        "python_custom_ops"]
    assert not [u for u in g["unresolved"] if u["name"].startswith("torch.ops.vllm.")]


def test_unquantized_draft_layer_reaches_no_quantization_registry(vllm_0_26_0, tmp_path):
    # get_draft_quant_config -> VllmConfig._get_quantization_config: `model_config.quantization is not None` is
    # False without quantization, so the registry (and its CPU-only kernels) is never reached
    from bundler_lib import graph
    g = graph.run(tree=vllm_0_26_0, out=tmp_path, symbol="Qwen3Eagle3DecoderLayer", hint=None, variant=None)
    ops = {c["op"] for c in g["cuda_ops"]}
    assert not ops & {"_C.convert_weight_packed", "_C.fp8_scaled_mm_cpu", "_C.scaled_fp4_quant"}
    assert not any(f.startswith("vllm/model_executor/kernels/linear/") for f in g["files"])
    preds = {(x["file"], x["predicate"], x["value"]) for x in g["guards"]}
    assert ("vllm/config/vllm.py", "model_config.quantization is not None", False) in preds
