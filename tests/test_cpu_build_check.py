"""tools/cpu_build_check.py: the bundle's text it runs puts vLLM's custom ops and IR ops on their torch paths."""

from tools.cpu_build_check import on_native_paths


def test_ir_op_priority_goes_native_as_a_list_and_per_op():
    src = ("x = dict(custom_ops=['all'])\n"
           "_bundle_ir_op_priority = {'fused_add_rms_norm': ['vllm_c', 'native'], 'rms_norm': ['vllm_c', 'native']}\n"
           "rms_norm.set_default(_bundle_ir_op_priority['rms_norm'])\n"
           "_bundle_ir_op_priority = ['vllm_c', 'native']\n")
    assert on_native_paths(src) == (
        "x = dict(custom_ops=['none'])\n"
        "_bundle_ir_op_priority = {'fused_add_rms_norm': ['native'], 'rms_norm': ['native']}\n"
        "rms_norm.set_default(_bundle_ir_op_priority['rms_norm'])\n"
        "_bundle_ir_op_priority = ['native']\n")


def test_the_gpu_answers_as_an_h100(monkeypatch):
    """TRITON_MLA's impl sizes its KV splits by the SM count when built: get_device_properties answers too."""
    import torch

    from tools import cpu_build_check
    for name in ("get_device_capability", "get_device_name", "device_count", "current_device", "Stream",
                 "get_device_properties"):
        monkeypatch.setattr(torch.cuda, name, getattr(torch.cuda, name))
    cpu_build_check._as_h100()
    props = torch.cuda.get_device_properties(0)
    assert (props.major, props.minor, props.multi_processor_count) == (9, 0, 132)
    assert torch.cuda.get_device_capability() == (9, 0)


def test_tensors_over_the_limit_go_to_meta(monkeypatch):
    """--meta-over: a layer's weights larger than the machine's memory (LongCat-Flash's experts) are built on meta."""
    import torch

    from tools import cpu_build_check
    for name in ("empty", "zeros", "ones", "rand", "randn"):
        monkeypatch.setattr(torch, name, getattr(torch, name))
    cpu_build_check.tensors_over_on_meta(1 / 1024)   # 1 MiB
    big = torch.empty(512, 1024, dtype=torch.bfloat16)   # 1 MiB: kept
    assert big.device.type == "cpu"
    assert torch.zeros((1024, 1024), dtype=torch.bfloat16).device.type == "meta"
    assert torch.randn(1024, 1024).shape == (1024, 1024) and torch.randn(1024, 1024).device.type == "meta"
    assert torch.ones(4).device.type == "cpu"
