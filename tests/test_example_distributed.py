"""A6 on several GPUs (example/distributed.py), what a CPU can check: the torchrun check, the group layout against
vLLM's initialize_model_parallel, the loading plan against loaders that shard as vLLM's do, the KV heads of a rank,
the comparison, and the hooks written into the decoder-layer example."""

import json
from pathlib import Path

import pytest
import torch

from bundler_lib.example import decoder, distributed as d

TREES = Path(__file__).parent / "trees" / "stages" / "example"
MOCK = TREES / "decoder_mock"


def test_a_multi_gpu_bundle_outside_torchrun_fails_in_one_line():
    with pytest.raises(RuntimeError) as e:
        d._bundle_parallel_env({}, 2, "tp=2, ep=2", "bundles_out/parallel/ep2/X.py")
    msg = str(e.value)
    assert "\n" not in msg and "WORLD_SIZE is not set" in msg and "tp=2, ep=2 (2 GPUs" in msg
    assert "torchrun --nproc-per-node 2 bundles_out/parallel/ep2/X.py run" in msg
    with pytest.raises(RuntimeError, match="WORLD_SIZE is 4"):
        d._bundle_parallel_env({"WORLD_SIZE": "4", "RANK": "0"}, 2, "tp=2", "X.py")
    assert d._bundle_parallel_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, 2, "tp=2", "X.py") == (1, 1)


def _vllm_layout(world, tp):
    """vllm/distributed/parallel_state.py initialize_model_parallel's group ranks with dp, pp, pcp, dcp 1."""
    dp = pp = pcp = dcp = 1
    all_ranks = torch.arange(world).reshape(-1, dp, pp, pcp, tp)
    ranks = {
        "_TP": all_ranks.view(-1, tp).unbind(0),
        "_DCP": all_ranks.reshape(-1, dcp).unbind(0),
        "_PCP": all_ranks.transpose(3, 4).reshape(-1, pcp).unbind(0),
        "_PP": all_ranks.transpose(2, 4).reshape(-1, pp).unbind(0),
        "_DP": all_ranks.transpose(1, 4).reshape(-1, dp).unbind(0),
        "_EP": all_ranks.transpose(1, 2).reshape(-1, dp * pcp * tp).unbind(0),
    }
    return {g: [x.tolist() for x in r] for g, r in ranks.items()}


@pytest.mark.parametrize("world", [2, 4, 8])
def test_group_layout_is_vllms(world):
    assert d._bundle_group_layout(world, world, True) == _vllm_layout(world, world)
    assert "_EP" not in d._bundle_group_layout(world, world, False)   # no EP group for a dense model


class _Linear(torch.nn.Module):
    """A vLLM parallel linear layer for rank `rank` of `tp`: global sizes, the rank's shard, and a weight_loader
    that narrows as vLLM's do (column: output rows of each shard; row: input columns; replicated: whole)."""

    def __init__(self, kind, in_size, out_sizes, rank, tp, heads=None):
        super().__init__()
        self.kind, self.rank, self.tp, self.input_size = kind, rank, tp, in_size
        self.output_size = sum(out_sizes)
        if kind == "qkv":
            self.total_num_heads, self.total_num_kv_heads, self.head_size = heads
        elif kind == "merged":
            self.output_sizes = out_sizes
        self.parts = out_sizes
        rows = self.output_size // tp if kind != "replicated" and kind != "row" else self.output_size
        cols = in_size // tp if kind == "row" else in_size
        self.weight = torch.nn.Parameter(torch.zeros(rows, cols), requires_grad=False)
        self.weight.weight_loader = self.weight_loader

    def weight_loader(self, param, loaded, shard=None):
        if self.kind == "row":
            n = param.shape[1]
            param.data.copy_(loaded[:, self.rank * n:(self.rank + 1) * n])
            return
        if self.kind == "replicated":
            param.data.copy_(loaded)
            return
        index = {"q": 0, "k": 1, "v": 2}.get(shard, shard or 0)
        start = sum(self.parts[:index]) // self.tp
        n = self.parts[index] // self.tp
        param.data[start:start + n].copy_(loaded[self.rank * n:(self.rank + 1) * n])


class _Experts(torch.nn.Module):
    """vLLM's routed experts on ep rank `rank` of `ep` (whole experts, linear placement) or tp rank of `tp`."""

    def __init__(self, E, H, I, rank, ep, tp):
        super().__init__()
        self.global_num_experts, self.rank, self.ep = E, rank, ep
        self.moe_config = type("C", (), {"moe_parallel_config": type("P", (), {"tp_size": tp})()})()
        self.tp, self.local = tp, E // ep
        self.w13_weight = torch.nn.Parameter(torch.zeros(E // ep, 2 * I // tp, H), requires_grad=False)
        self.w2_weight = torch.nn.Parameter(torch.zeros(E // ep, H, I // tp), requires_grad=False)
        for p in (self.w13_weight, self.w2_weight):
            p.weight_loader = self.weight_loader

    def weight_loader(self, param, loaded_weight, weight_name, shard_id, expert_id):
        e = expert_id - self.rank * self.local if self.ep > 1 else expert_id
        if not 0 <= e < self.local:
            return
        r = 0 if self.ep > 1 else self.rank
        if shard_id == "w2":
            n = param.shape[2]
            param.data[e].copy_(loaded_weight[:, r * n:(r + 1) * n])
        else:
            n = param.shape[1] // 2
            param.data[e, (0 if shard_id == "w1" else n):][:n].copy_(loaded_weight[r * n:(r + 1) * n])


class _Layer(torch.nn.Module):
    def __init__(self, rank, tp, ep):
        super().__init__()
        self.qkv_proj = _Linear("qkv", 8, [16, 8, 8], rank, tp, heads=(4, 2, 4))
        self.gate_up_proj = _Linear("merged", 8, [12, 12], rank, tp)
        self.o_proj = _Linear("row", 16, [8], rank, tp)
        self.gate = _Linear("replicated", 8, [4], rank, tp)
        self.experts = _Experts(4, 8, 6, rank, ep, 1 if ep > 1 else tp)
        self.norm = torch.nn.Parameter(torch.zeros(8), requires_grad=False)


def _load(rank, tp, ep):
    layer = _Layer(rank, tp, ep)
    with torch.no_grad():
        d._bundle_load_full_weights(torch, layer, torch.device("cpu"), torch.float32, 0)
    return dict(layer.named_parameters())


@pytest.mark.parametrize("tp, ep", [(2, 1), (2, 2)])
def test_the_ranks_shards_make_the_tp1_weights(tp, ep):
    full = _load(0, 1, 1)
    ranks = [_load(r, tp, ep) for r in range(tp)]
    q, k, v = 16, 8, 8
    for r, got in enumerate(ranks):
        n = q // tp, k // tp
        assert torch.equal(got["qkv_proj.weight"][:n[0]], full["qkv_proj.weight"][r * n[0]:(r + 1) * n[0]])
        assert torch.equal(got["qkv_proj.weight"][n[0]:n[0] + n[1]], full["qkv_proj.weight"][q + r * n[1]:q + (r + 1) * n[1]])
        assert torch.equal(got["qkv_proj.weight"][n[0] + n[1]:], full["qkv_proj.weight"][q + k + r * (v // tp):][:v // tp])
        assert torch.equal(got["o_proj.weight"], full["o_proj.weight"][:, r * 8:(r + 1) * 8])
        assert torch.equal(got["gate.weight"], full["gate.weight"])
        assert torch.equal(got["norm"], full["norm"]) and bool((got["norm"] == 1).all())
    assert torch.equal(torch.cat([torch.cat([g["gate_up_proj.weight"][:6] for g in ranks]),
                                  torch.cat([g["gate_up_proj.weight"][6:] for g in ranks])]), full["gate_up_proj.weight"])
    if ep > 1:   # whole experts, placed linearly
        assert torch.equal(torch.cat([g["experts.w13_weight"] for g in ranks]), full["experts.w13_weight"])
        assert torch.equal(torch.cat([g["experts.w2_weight"] for g in ranks]), full["experts.w2_weight"])
    else:        # every expert, its intermediate rows sharded
        assert torch.equal(torch.cat([g["experts.w2_weight"] for g in ranks], dim=2), full["experts.w2_weight"])
    assert full["qkv_proj.weight"].abs().sum() > 0 and not torch.equal(full["qkv_proj.weight"][:8], full["qkv_proj.weight"][8:16])


@pytest.mark.parametrize("rank, tp, total, heads", [(0, 2, 4, [0, 1]), (1, 2, 4, [2, 3]), (5, 8, 4, [2]),
                                                    (1, 2, 2, [1]), (3, 4, 8, [6, 7])])
def test_kv_heads_of_a_rank(rank, tp, total, heads):
    assert d._bundle_kv_heads(rank, tp, total) == heads


def test_kv_context_is_the_same_per_global_head():
    full = torch.empty(3, 4, 2, 6)
    d._bundle_fill_kv(full, [0, 1, 2, 3], 0)
    shard = torch.empty(3, 2, 2, 6)
    d._bundle_fill_kv(shard, d._bundle_kv_heads(1, 2, 4), 0)
    assert torch.equal(shard, full[:, 2:4])


def test_compare_within_bf16_tolerance():
    want = torch.randn(16, 32)
    got = want + 1e-3 * torch.randn(16, 32)
    assert d._bundle_compare(torch, got, want, [got, got.clone()], 2e-2)["max_diff_between_ranks"] == 0.0
    with pytest.raises(AssertionError, match="relative L2 error"):
        d._bundle_compare(torch, want + 0.1 * torch.randn(16, 32), want, [want], 2e-2)
    with pytest.raises(AssertionError, match="between ranks"):
        d._bundle_compare(torch, got, want, [got, got + 1e-3], 2e-2)


def _graph(variant, coordinator=True):
    g = json.loads((MOCK / "A1.graph.json").read_text())
    g["variant"] = {**g.get("variant", {}), **variant}
    if coordinator:
        g["python_nodes"].append({"file": "vllm/distributed/parallel_state.py", "name": "GroupCoordinator",
                                  "emit_name": "GroupCoordinator_x", "names": []})
    return g


def test_one_gpu_gets_no_parallel_text():
    assert set(d.hooks(_graph({"tp": 1, "ep": 1}), "Qwen3MoeDecoderLayer").values()) == {""}


def test_hooks_of_a_tp2_ep2_example():
    h = d.hooks(_graph({"tp": 2, "ep": 2}), "Qwen3MoeDecoderLayer")
    assert "_bundle_parallel_env(os.environ, 2, 'tp=2, ep=2', __file__)" in h["parallel_setup"]
    assert "G['GroupCoordinator_x']" in h["parallel_setup"]
    assert h["parallel_weights"] == "        _bundle_load_full_weights(torch, layer, device, dtype, 0)\n"
    assert "_bundle_find_reference(__file__, 'Qwen3MoeDecoderLayer'" in h["parallel_check"]
    with pytest.raises(NotImplementedError, match="parallel_state.py::GroupCoordinator"):
        d.hooks(_graph({"tp": 2}, coordinator=False), "Qwen3MoeDecoderLayer")


def test_the_example_of_a_tp2_bundle_stops_outside_torchrun(monkeypatch):
    """The whole decoder-layer example of a tp=2 graph compiles, and stops in one line before anything else."""
    g = _graph({"tp": 2})
    dims = {"H": 8, "H_q": 2, "H_kv": 1, "Dh": 4, "max_ctx": 64, "eps": 1e-6, "layer": 0}
    src, _, _ = decoder.body(g, "Qwen3MoeDecoderLayer", dims, {}, None, "the test config", [])
    text = ("def invocation_example(small=False, workload=None, tokens=None, batch=None, context=None):\n"
            "    import torch\n    dims = " + repr(dims) + "\n    flags = {}\n"
            "    device = torch.device('cpu')\n    dtype = torch.bfloat16\n" + src)
    ns = {"__name__": "tp2_example", "__file__": "bundles_out/parallel/tp2/X.py"}
    exec(compile((MOCK / "mock_bundle.py").read_text(), "mock_bundle.py", "exec"), ns)
    exec(compile(text, "A6.example.py", "exec"), ns)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match=r"^invocation_example: this bundle is built for tp=2 \(2 GPUs, one process "
                                           r"each\) and WORLD_SIZE is not set: run it as `torchrun --nproc-per-node 2 "
                                           r"bundles_out/parallel/tp2/X.py run`$"):
        ns["invocation_example"]()


def test_a6_names_the_group_coordinator_root_of_a_multi_gpu_graph():
    from bundler_lib import example as a6
    roots = a6.extra_roots(_graph({"tp": 2}))
    assert "vllm/distributed/parallel_state.py::GroupCoordinator" in roots
    assert "vllm/distributed/parallel_state.py::GroupCoordinator" not in a6.extra_roots(_graph({"tp": 1}))
