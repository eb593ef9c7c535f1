"""Issue 21 (CPU part): tensor- and expert-parallel variants. What tp and ep decide in A1's guards, and the device
communicator of a multi-GPU bundle bound to vLLM's DeviceCommunicatorBase (NCCL through torch.distributed)."""

import ast

import pytest

from bundler_lib.common.example_roots import PARALLEL_ROOTS, ROOT_TRIGGERS, extra_roots
from bundler_lib.errors import StageError
from bundler_lib.graph.guards import GuardEval, Where
from bundler_lib.variant import resolve, world_size
from tests.test_closure_helpers import TREES, build_all, load, node_ids


def _decide(expr: str, **variant):
    return GuardEval(resolve(variant)).evaluate(ast.parse(expr, mode="eval").body, Where())[0]


@pytest.mark.parametrize("variant, world", [({}, 1), ({"tp": 2}, 2), ({"tp": 8, "ep": 8}, 8), ({"tp": "4"}, 4)])
def test_world_size(variant, world):
    assert world_size(resolve(variant)) == world


@pytest.mark.parametrize("expr, tp1, tp2, tp2_ep2", [
    # the tp group's size, whoever reads it
    ("get_tensor_model_parallel_world_size() > 1", False, True, True),
    ("get_tp_group().world_size == 1", True, False, False),
    ("self.tp_group.world_size > 1", False, True, True),
    # a local tp size: the MoE's own under expert parallelism (1), so decided only while ep is 1
    ("self.tp_size > 1", False, True, None),
    ("ep_size > 1", False, False, True),
    ("self.use_ep", False, False, True),
    # all-to-all kernels need dp, pcp or sequence parallelism besides ep: off with dp 1
    ("self.moe_parallel_config.use_all2all_kernels", False, False, False),
    ("use_deepep_ll_kernels", False, False, False),
    ("dp_size > 1", False, False, False),
    ("self.eplb_state is not None", False, False, False),
    # the engine's message-queue broadcaster (shared memory + ZeroMQ) is never made
    ("use_message_queue_broadcaster and self.world_size > 1", False, False, False),
])
def test_parallel_sizes_and_expert_parallel_switches(expr, tp1, tp2, tp2_ep2):
    assert _decide(expr) is tp1
    assert _decide(expr, tp=2) is tp2
    assert _decide(expr, tp=2, ep=2) is tp2_ep2


def test_ep_must_span_the_tp_ranks():
    with pytest.raises(StageError) as e:
        resolve({"tp": 4, "ep": 2})
    assert e.value.input == "variant ep=2" and "allowed values for ep with tp=4: 1, 4" in e.value.remedy


def test_one_gpu_binds_no_communicator(tmp_path):
    g, _, _ = build_all(TREES / "communicator", tmp_path, "target")
    assert "vllm/distributed/device_communicators/base_device_communicator.py::DeviceCommunicatorBase" not in node_ids(g)
    assert not any("communicator" in n for n in g["notes"])


def test_several_gpus_bind_the_platform_communicator_to_torch_distributed(tmp_path):
    # CudaCommunicator (pynccl through ctypes, custom all-reduce, ...) stays out: the name the platform returns is
    # bound to DeviceCommunicatorBase, and the choice is in the notes
    g, _, _ = build_all(TREES / "communicator", tmp_path, "target", variant={"tp": 2})
    ids = node_ids(g)
    assert "vllm/distributed/device_communicators/base_device_communicator.py::DeviceCommunicatorBase" in ids
    assert not any("cuda_communicator" in i for i in ids)
    assert "ctypes" not in g["imports_external"]
    # torch.ops.vllm.all_reduce in a module that also imports torch.distributed: the registered function, called
    assert g["python_custom_ops"] == [{"op": "all_reduce", "target": "all_reduce"}]
    assert any("CudaCommunicator'" in n and "bound to the inlined DeviceCommunicatorBase" in n
               and "variant communicator=torch" in n for n in g["notes"])
    assert load(tmp_path).target(2) == 6


def test_a_multi_gpu_decoder_layer_reaches_the_group_coordinator():
    (one, _), (two, when) = (extra_roots("Qwen3MoeDecoderLayer", "class", None, w) for w in (1, 2))
    assert "vllm/distributed/parallel_state.py::GroupCoordinator" in two and not set(PARALLEL_ROOTS) & set(one)
    assert when == ROOT_TRIGGERS
    assert extra_roots("RMSNorm", "class", None, 2) == ([], {})
    assert ROOT_TRIGGERS["vllm/distributed/parallel_state.py::GroupCoordinator"].endswith("::get_tp_group")
