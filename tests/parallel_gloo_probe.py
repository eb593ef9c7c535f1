"""Run by tests/test_pants_parallel.py in the bundle runtime: two CPU processes (gloo) import a tp=2 bundle and use
its own vLLM code as the multi-GPU example does, without GPUs: GroupCoordinators whose communicator is the bound
DeviceCommunicatorBase (all-reduce, all-gather), and vLLM's weight loaders fed by example/distributed.py's plan
(each rank's shard of q/k/v, gate/up and the row-parallel weight is its part of the full tensor). Each rank
prints one JSON line. Usage: python parallel_gloo_probe.py BUNDLE PORT"""

import collections
import importlib.util
import json
import os
import sys
import types

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bundler_lib.example import distributed as d  # noqa: E402


class _Config(types.SimpleNamespace):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Config() if name.endswith("_config") else (1 if name.endswith("_size") else None)
        setattr(self, name, value)
        return value


def _layers(m):
    m._current_vllm_config = _Config(
        quant_config=None, parallel_config=_Config(tensor_parallel_size=2, enable_expert_parallel=False),
        compilation_config=_Config(custom_ops=["all"], enabled_custom_ops=collections.Counter(),
                                   disabled_custom_ops=collections.Counter(), static_forward_context={}))
    mods = torch.nn.Module()
    mods.qkv = m.QKVParallelLinear(16, 4, 4, 2, bias=False, quant_config=None, prefix="qkv")
    mods.gate_up = m.MergedColumnParallelLinear(16, [24, 24], bias=False, quant_config=None, prefix="gate_up")
    mods.o = m.RowParallelLinear(16, 16, bias=False, quant_config=None, prefix="o")
    with torch.no_grad():
        d._bundle_load_full_weights(torch, mods, torch.device("cpu"), torch.float32, 0)
    return dict(mods.named_parameters())


def main(rank, world, path, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    spec = importlib.util.spec_from_file_location("tp2_bundle", path)
    m = sys.modules["tp2_bundle"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    m._WORLD = m.GroupCoordinator([list(range(world))], rank, "gloo", False, group_name="world")
    m._TP = m.GroupCoordinator(d._bundle_group_layout(world, world, False)["_TP"], rank, "gloo", True, group_name="tp")
    reduced = m.tensor_model_parallel_all_reduce(torch.full((3,), float(rank + 1)))
    gathered = m.tensor_model_parallel_all_gather(torch.full((2, 1), float(rank)), -1)
    p = _layers(m)
    full = {k: d._bundle_full_tensor(torch, k, s, torch.device("cpu"), torch.float32, 0)
            for k, s in (("qkv.weight", (32, 16)), ("gate_up.weight", (48, 16)), ("o.weight", (16, 16)))}
    r = rank
    shards = {"q": torch.equal(p["qkv.weight"][:8], full["qkv.weight"][r * 8:(r + 1) * 8]),
              "k": torch.equal(p["qkv.weight"][8:12], full["qkv.weight"][16 + r * 4:16 + (r + 1) * 4]),
              "v": torch.equal(p["qkv.weight"][12:], full["qkv.weight"][24 + r * 4:24 + (r + 1) * 4]),
              "gate": torch.equal(p["gate_up.weight"][:12], full["gate_up.weight"][r * 12:(r + 1) * 12]),
              "up": torch.equal(p["gate_up.weight"][12:], full["gate_up.weight"][24 + r * 12:24 + (r + 1) * 12]),
              "o": torch.equal(p["o.weight"], full["o.weight"][:, r * 8:(r + 1) * 8])}
    mine = {"rank": rank, "communicator": type(m._TP.device_communicator).__name__,
            "all_reduce": reduced.tolist(), "all_gather": gathered.tolist(), "shards": shards}
    sys.stdout.write(json.dumps(mine) + "\n")   # one write: the ranks' lines do not interleave
    sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.spawn(main, args=(2, sys.argv[1], int(sys.argv[2])), nprocs=2)
