"""The CPU side of benchmarks/layer_speed.py and of the bundle CLI's `bench --cuda-graph`: the suite it reads, its
sizes and options, result-file naming, the rates against the GPU's peak, transformers' fast settings and decode
step (on CPU, with tools/parity.py's tiny layers), and the one-line refusals without a GPU."""

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "layer_speed.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import layer_speed  # noqa: E402
from test_bundle_cli import _cli, bundle  # noqa: E402,F401 - the decoder-layer mock bundle and its runner
from test_parity_mapping import SYMBOL, TINY, _as_vllm, _hf_layer  # noqa: E402

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message is checked where there is no GPU")


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_suite_is_the_decoder_layers_with_a_model(tmp_path):
    layers = layer_speed.suite(ROOT / "targets" / "BUILD", tmp_path)
    assert [la["target"] for la in layers] == ["targets:qwen3_moe_layer", "targets:qwen3_layer",
                                               "targets:qwen3_layer_flex", "targets:qwen3_layer_flex128",
                                               "targets:qwen3_moe_layer_flex128", "targets:qwen3_layer_rocm_attn",
                                               "targets:llama_layer"]
    assert layers[0]["bundle"] == str(tmp_path / "Qwen3MoeDecoderLayer.py") and layers[0]["variant"] == {}
    assert layers[2]["variant"] == {"attention_backend": "FLEX_ATTENTION"}
    assert layers[2]["bundle"] == str(tmp_path / "flex" / "Qwen3DecoderLayer.py")
    assert layers[0]["model"] == "Qwen/Qwen3-Coder-480B-A35B-Instruct"
    build = tmp_path / "BUILD"
    build.write_text('monolithic_bundle(name="a", symbol="XDecoderLayer", model="o/m", output_path="v/X.py", '
                     'variant={"dtype": "float16"})\nmonolithic_bundle(name="b", symbol="YDecoderLayer")\n'
                     'monolithic_bundle(name="c", symbol="RMSNorm", model="o/m")\n')
    (got,) = layer_speed.suite(build, tmp_path / "out")
    assert got["name"] == "a" and got["bundle"] == str(tmp_path / "out" / "v" / "X.py")
    assert got["variant"] == {"dtype": "float16"}


def test_only_selects_by_name_address_or_symbol(tmp_path):
    layers = layer_speed.suite(ROOT / "targets" / "BUILD", tmp_path)
    assert [la["name"] for la in layer_speed.select(layers, [])] == [la["name"] for la in layers]
    got = layer_speed.select(layers, ["qwen3_layer,LlamaDecoderLayer", "targets:qwen3_moe_layer"])
    assert [la["name"] for la in got] == ["qwen3_moe_layer", "qwen3_layer", "llama_layer"]
    assert [la["name"] for la in layer_speed.select(layers, ["Qwen3DecoderLayer"])] == [
        "qwen3_layer", "qwen3_layer_flex", "qwen3_layer_flex128", "qwen3_layer_rocm_attn"]
    with pytest.raises(layer_speed.UsageError, match="--only nope: no such decoder layer in the suite; choose from "
                                                     "qwen3_moe_layer, qwen3_layer, qwen3_layer_flex, "
                                                     "qwen3_layer_flex128, qwen3_moe_layer_flex128, "
                                                     "qwen3_layer_rocm_attn, llama_layer"):
        layer_speed.select(layers, ["nope"])


def test_sizes():
    every = layer_speed.cases([], False)
    assert [layer_speed.case_label(c) for c in every] == [
        "prefill:32", "prefill:512", "prefill:4096", "prefill:8192", "prefill:32768",
        "decode:1x4096", "decode:8x4096", "decode:64x4096", "decode:256x4096"]
    assert every[5] == ("decode", 1, 1, 4096) and every[4] == ("prefill", 32768, 1, 0)
    assert [layer_speed.case_label(c) for c in layer_speed.cases([], True)] == ["prefill:4096", "decode:64x4096"]
    given = layer_speed.cases(["prefill:2x512,decode:8x4+100", "decode:2x64"], True)
    assert [layer_speed.case_label(c) for c in given] == ["prefill:2x512", "decode:8x4+100", "decode:2x64"]
    # a label parses back to its case: the worker gets the labels
    assert layer_speed.cases([layer_speed.case_label(c) for c in every + given], False) == every + given
    with pytest.raises(layer_speed.UsageError, match=r"--sizes 'sideways:3': write prefill:T"):
        layer_speed.cases(["sideways:3"], False)


def test_options():
    a = layer_speed.parse_args(["--quick"])
    assert (a.warmup, a.iters, a.dry_run) == (3, 20, False)
    assert layer_speed.parse_args([]).warmup == 5
    assert layer_speed.parse_args(["--quick", "--warmup", "7", "--iters", "50"]).warmup == 7
    res = _run("--iters", "19")
    assert res.returncode == 2 and "--iters 19: at least 20 timed runs" in res.stderr
    res = _run("--warmup", "0")
    assert res.returncode == 2 and "--warmup 0: at least one" in res.stderr


def test_result_file_is_the_next_free_one(tmp_path):
    assert layer_speed.result_path(tmp_path, "2026-12-06") == tmp_path / "2026-12-06-layer-speed-1.json"
    (tmp_path / "2026-12-06-layer-speed-1.json").write_text("{}")
    (tmp_path / "2026-12-06-layer-speed-2.json").write_text("{}")
    (tmp_path / "2026-12-05-layer-speed-3.json").write_text("{}")
    got = layer_speed.reserve_result(tmp_path, "2026-12-06")
    assert got == tmp_path / "2026-12-06-layer-speed-3.json" and got.exists()
    assert (tmp_path / "2026-12-06-layer-speed-1.json").read_text() == "{}"
    assert layer_speed.reserve_result(tmp_path, "2026-12-06").name == "2026-12-06-layer-speed-4.json"


def test_peak_by_device_name():
    assert layer_speed.peak_of("NVIDIA H100 80GB HBM3") == {"name": "H100 SXM", "tflops": 989.0, "tbps": 3.35}
    assert layer_speed.peak_of("NVIDIA H200")["tbps"] == 4.8
    assert layer_speed.peak_of("NVIDIA H100 PCIe")["name"] == "H100 PCIe"
    assert layer_speed.peak_of("NVIDIA GeForce RTX 4090") is None


def test_summary_and_rates():
    s = layer_speed.summarize([float(t) for t in range(20, 0, -1)])  # 1..20 ms, unordered
    assert s == {"iters": 20, "median_ms": 10.5, "min_ms": 1.0, "p10_ms": 3.0, "p90_ms": 19.0, "max_ms": 20.0}
    peak = layer_speed.peak_of("NVIDIA H100 80GB HBM3")
    # memory-bound: 1 TFLOP and 6.7 GB in 4 ms (the roofline: 6.7 GB / 3.35 TB/s = 2 ms)
    r = layer_speed.rates({"flops": 10**12, "bytes": 67 * 10**8}, 4.0, peak)
    assert r["tflops"] == 250.0 and r["gbps"] == 1675.0
    assert r["frac_peak_bw"] == 0.5 and r["frac_peak_flops"] == pytest.approx(250 / 989, abs=1e-4)
    assert (r["roofline_ms"], r["frac_roofline"], r["bound"]) == (2.0, 0.5, "memory")
    r = layer_speed.rates({"flops": 989 * 10**12, "bytes": 10**9}, 2000.0, peak)
    assert (r["roofline_ms"], r["frac_roofline"], r["bound"]) == (1000.0, 0.5, "compute")
    assert set(layer_speed.rates({"flops": 1, "bytes": 1}, 1.0, None)) == {"tflops", "gbps"}


def _example(state: dict, B: int, q: int, ctx: int, bs=4, H_kv=2, Dh=16) -> dict:
    """What a decoder-layer bundle's invocation_example returns, on CPU: `state` as the layer's parameters, B
    sequences of q new tokens after ctx cached ones in a paged KV cache of `bs`-token blocks."""
    g = torch.Generator().manual_seed(0)
    nb = -(-(ctx + q) // bs)
    return {"module": types.SimpleNamespace(named_parameters=state.items), "prefix": "model.layers.0",
            "sizes": {"B": B, "new_tokens": q, "context": ctx},
            "inputs": {"hidden_states": torch.randn(B * q, 64, generator=g),
                       "positions": torch.arange(ctx, ctx + q).repeat(B),
                       "kv_cache": torch.randn(B * nb, H_kv, bs, 2 * Dh, generator=g),
                       "block_table": torch.arange(B * nb, dtype=torch.int32).view(B, nb)}}


class _Spy:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_transformers_step_fast_settings_and_a_steady_cache(model_type, monkeypatch):
    """transformers' side on CPU: the example's weights (as vLLM names them) in transformers' layer, its experts
    through grouped_mm, decode over the example's paged context, and a cache cropped back after each step."""
    from transformers.integrations import moe

    spy = _Spy(moe.ExpertsInterface._global_mapping["grouped_mm"])
    monkeypatch.setitem(moe.ExpertsInterface._global_mapping, "grouped_mm", spy)
    cfg = {"model_type": model_type, **TINY[model_type]}
    config = layer_speed.hf_fast_config(cfg, model_type)
    assert config._attn_implementation == "sdpa" and config._experts_implementation == "grouped_mm"
    ref = _hf_layer(model_type)
    state = _as_vllm({n: p.detach() for n, p in ref.named_parameters()})
    B, ctx, bs, H_kv, Dh = 2, 6, 4, 2, 16
    ex = _example(state, B, 1, ctx)
    assert ex["inputs"]["block_table"].tolist() == [[0, 1], [2, 3]]
    found = layer_speed.parity.hf_classes(model_type, SYMBOL[model_type])
    inputs = _Spy(layer_speed.parity.hf_inputs)
    monkeypatch.setattr(layer_speed.parity, "hf_inputs", inputs)
    step = layer_speed.transformers_step(ex, found, config)
    first, second = step(), step()
    assert first.shape == (B, 1, 64) and torch.isfinite(first).all()
    assert torch.equal(first, second)  # the same context each step: the appended token was cropped
    assert inputs.calls == 1  # mask and rotary built once, outside the timed step, as the model does for all layers
    assert spy.calls == (2 if model_type == "qwen3_moe" else 0)
    # the same layer, in the same settings, over a cache of the same context, built directly
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    kv = torch.cat([ex["inputs"]["kv_cache"][[0, 1]], ex["inputs"]["kv_cache"][[2, 3]]]).view(B, 2, H_kv, bs, 2 * Dh)
    kv = kv.permute(0, 2, 1, 3, 4).reshape(B, H_kv, 2 * bs, 2 * Dh)[:, :, :ctx]
    cache.update(kv[..., :Dh].contiguous(), kv[..., Dh:].contiguous(), 0)
    fast = found[1](config, 0).eval()
    fast.load_state_dict(ref.state_dict())
    x = ex["inputs"]["hidden_states"].view(B, 1, 64)
    pos = ex["inputs"]["positions"].view(B, 1)
    with torch.no_grad():
        want = fast(x, position_ids=pos, position_embeddings=found[2](config)(x, pos), attention_mask=None,
                   past_key_values=cache, use_cache=True)
    want = want[0] if isinstance(want, tuple) else want
    torch.testing.assert_close(first, want, rtol=1e-4, atol=1e-4)


def test_dry_run_prints_the_plan_without_a_gpu(tmp_path):
    res = _run("--dry-run", "--quick", "--only", "qwen3_layer", "--bundles-dir", str(tmp_path),
               "--out-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("layer_speed plan: 1 layers x 2 sizes, 3 warm-ups, 20 rounds; transformers "
                               '{"attn_implementation": "sdpa", "experts_implementation": "grouped_mm"}')
    assert lines[0].endswith("-layer-speed-1.json")
    assert "targets:qwen3_layer: Qwen3DecoderLayer (Qwen/Qwen3-30B-A3B)" in lines[1]
    assert lines[1].endswith("NOT BUILT (./pants package targets:qwen3_layer)")
    assert lines[2] == "  sizes: prefill:4096, decode:64x4096"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_missing_bundles_refused_in_one_line(tmp_path):
    (tmp_path / "Qwen3DecoderLayer.py").write_text("")
    res = _run("--bundles-dir", str(tmp_path), "--out-dir", str(tmp_path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"layer_speed: {tmp_path}/Qwen3MoeDecoderLayer.py does not exist (6 of 7 bundles missing): build them "
        "first: ./pants package targets:qwen3_moe_layer targets:qwen3_layer_flex targets:qwen3_layer_flex128 "
        "targets:qwen3_moe_layer_flex128 targets:qwen3_layer_rocm_attn targets:llama_layer"]


@no_gpu
def test_no_gpu_refused_in_one_line(tmp_path):
    for name in ("Qwen3MoeDecoderLayer", "Qwen3DecoderLayer", "flex/Qwen3DecoderLayer", "flex128/Qwen3DecoderLayer",
                 "flex128/Qwen3MoeDecoderLayer", "rocm_attn/Qwen3DecoderLayer", "LlamaDecoderLayer"):
        (tmp_path / f"{name}.py").parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.py").write_text("")
    res = _run("--quick", "--bundles-dir", str(tmp_path), "--out-dir", str(tmp_path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1] == (
        "layer_speed: no CUDA GPU (torch.cuda.is_available() is False): the bundles' kernels need one; --dry-run "
        "prints the plan anywhere")
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("layer_speed")] == [res.stderr.strip().splitlines()[-1]]
    assert list(tmp_path.glob("*.json")) == []


def test_bench_cuda_graph_option(bundle):  # noqa: F811 - the fixture
    res = _cli(bundle, "bench", "--help")
    assert res.returncode == 0 and "--cuda-graph" in res.stdout
    code = (f"import importlib.util as u; s = u.spec_from_file_location('m', {str(bundle)!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); print(callable(m._bundle_cuda_graph))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.split() == ["True"], res.stderr


def test_bench_profile_splits_the_time_by_kernel(bundle):  # noqa: F811 - the fixture
    """`bench --profile N`'s table, on CPU (operators stand in for kernels): each kernel once per forward with its
    share of the time, the largest first, the tail summed into one row."""
    import importlib.util

    assert "--profile" in _cli(bundle, "bench", "--help").stdout
    spec = importlib.util.spec_from_file_location("mock_bundle_profile", bundle)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    got = mod._bundle_profile(lambda: torch.relu(a @ b).sum(), 3, top=2)
    assert got["device"] == "cpu" and got["forwards"] == 3
    names = [k["name"] for k in got["kernels"]]
    assert len(names) == 3 and names[-1].endswith(" others)") and "aten::mm" in names[:2], names
    mm = got["kernels"][names.index("aten::mm")]
    assert mm["calls_per_forward"] == 1.0 and mm["ms_per_forward"] > 0
    assert [k["share"] for k in got["kernels"][:2]] == sorted((k["share"] for k in got["kernels"][:2]), reverse=True)
    assert abs(sum(k["share"] for k in got["kernels"]) - 1) < 0.01
    assert abs(sum(k["ms_per_forward"] for k in got["kernels"]) - got["ms_per_forward"]) < 0.01


@no_gpu
def test_bench_cuda_graph_refused_without_a_gpu(bundle):  # noqa: F811 - the fixture
    res = _cli(bundle, "bench", "--cuda-graph", "--iters", "3")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1].startswith("MockBundle.py bench: no CUDA GPU"), res.stderr



def test_cuda_graph_capture_holds_only_the_forward(bundle, monkeypatch):  # noqa: F811 - the fixture
    """_bundle_cuda_graph's order of work, with torch.cuda's stream and graph calls recorded: warm-ups on a side
    stream, then one forward inside the capture, where the forward's own synchronize does nothing (and is restored
    after)."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("mock_bundle_graph", bundle)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    events = []

    class Stream:
        def wait_stream(self, other):
            events.append("wait")

    @contextlib.contextmanager
    def scope(name, *_):
        events.append(name)
        yield
        events.append("/" + name)

    def synchronize(device=None):
        events.append("sync")

    def forward():
        torch.cuda.synchronize()
        events.append("forward")
        return "out"

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: scope("side"))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: "graph")
    monkeypatch.setattr(torch.cuda, "graph", lambda g: scope("capture " + g))
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    assert mod._bundle_cuda_graph(forward, 2) == ("graph", "out")
    assert events == ["wait", "side", "sync", "forward", "sync", "forward", "/side", "wait",
                      "capture graph", "forward", "/capture graph"]
    assert torch.cuda.synchronize is synchronize


def test_worker_rows_on_cpu(tmp_path, monkeypatch):
    """The GPU path's plumbing on CPU, CUDA events replaced by a wall clock: one row per size, written as each
    finishes, with both sides' (three for decode) timings, rates against the device's peak and the ratios."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "qwen3_moe", **TINY["qwen3_moe"]}))
    path = tmp_path / "Qwen3MoeDecoderLayer.py"
    path.write_text("# invocation_example: Qwen3MoeDecoderLayer (decoder_layer example, written by A6)\n"
                    f"# config: {cfg} sha256=0\n")
    state = _as_vllm({n: p.detach() for n, p in _hf_layer("qwen3_moe").named_parameters()})
    asked = []

    def invocation_example(small, workload, tokens, batch, context):
        asked.append((small, workload, tokens, batch, context))
        if tokens == 16:
            raise RuntimeError("out of memory, say")
        ex = _example(state, batch, tokens, context)

        def forward():
            launches.append(os.environ.get("VLLM_BUNDLE_ATTENTION_TUNED"))
            return ex["inputs"]["hidden_states"] * 2
        ex.update(forward=forward, cost={"flops": 10**9, "bytes": 10**8})
        return ex

    graphs, launches = [], []
    mod = types.SimpleNamespace(__file__=str(path), invocation_example=invocation_example,
                                _bundle_cuda_graph=lambda fw, warmup: graphs.append(warmup) or
                                (types.SimpleNamespace(replay=fw), None),
                                kernel_unified_attention=types.SimpleNamespace(forced=None))  # a tunable launch
    monkeypatch.delenv("VLLM_BUNDLE_ATTENTION_TUNED", raising=False)
    monkeypatch.setattr(layer_speed.parity, "load_bundle", lambda p: mod)

    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self):
            self.t = time.perf_counter()

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    rows = tmp_path / "rows.jsonl"
    assert layer_speed.worker({"name": "moe", "bundle": str(path)}, ["prefill:8,prefill:16,decode:2x6"], 2, 20, rows) == 0
    got = [json.loads(line) for line in rows.read_text().splitlines()]
    assert asked == [(False, "prefill", 8, 1, 0), (False, "prefill", 16, 1, 0), (False, "decode", 1, 2, 6)]
    assert graphs == [2]
    assert [r["case"] for r in got] == ["prefill:8", "prefill:16", "decode:2x6"]
    assert [r["status"] for r in got] == ["ok", "error", "ok"], got
    assert got[1]["error"].strip().endswith("RuntimeError: out of memory, say")
    del got[1]
    assert got[0]["reference"] == "transformers qwen3_moe.Qwen3MoeDecoderLayer"
    assert "bundle_cuda_graph" not in got[0] and "ratio_cuda_graph" in got[1]
    for r in got:
        for side in ("bundle", "transformers"):
            assert r[side]["iters"] == 20 and r[side]["frac_peak_bw"] > 0
        assert r["ratio"] == round(r["transformers"]["median_ms"] / r["bundle"]["median_ms"], 3)
    # prefill also times vLLM's attention launch beside the bundle's (the variable set for that side's calls only)
    assert got[0]["attention_launch_speedup"] == round(
        got[0]["bundle_vllm_attention_launch"]["median_ms"] / got[0]["bundle"]["median_ms"], 3)
    assert "bundle_vllm_attention_launch" not in got[1]
    assert set(launches) == {None, "0"} and "VLLM_BUNDLE_ATTENTION_TUNED" not in os.environ


def test_driver_writes_one_result_file_from_the_workers(tmp_path, monkeypatch):
    """main() on a pretend GPU, the per-layer processes replaced: one worker per layer with the sizes, warm-ups
    and rounds asked, its rows gathered (also from a worker stopped by --budget-s), one new result file."""
    for name in ("Qwen3MoeDecoderLayer", "Qwen3DecoderLayer", "flex/Qwen3DecoderLayer", "flex128/Qwen3DecoderLayer",
                 "flex128/Qwen3MoeDecoderLayer", "rocm_attn/Qwen3DecoderLayer", "LlamaDecoderLayer"):
        (tmp_path / f"{name}.py").parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.py").write_text(name)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "2000-01-01-layer-speed-1.json").write_text("{}")
    workers = []

    def run(cmd, **kw):
        if cmd[0] == "nvidia-smi":
            return subprocess.CompletedProcess(cmd, 0, stdout="550.54.15\n", stderr="")
        layer = json.loads(cmd[cmd.index("--worker") + 1])
        workers.append((layer["name"], cmd[cmd.index("--sizes") + 1], cmd[cmd.index("--warmup") + 1],
                        cmd[cmd.index("--iters") + 1], kw.get("timeout")))
        rows = Path(cmd[cmd.index("--rows") + 1])
        rows.write_text(json.dumps({"case": "prefill:32", "status": "ok"}) + "\n")
        if layer["name"] == "qwen3_layer":
            raise subprocess.TimeoutExpired(cmd, kw["timeout"])
        return subprocess.CompletedProcess(cmd, 0)

    class Date(layer_speed.datetime.date):
        @classmethod
        def today(cls):
            return cls(2000, 1, 1)

    monkeypatch.setattr(layer_speed.subprocess, "run", run)
    monkeypatch.setattr(layer_speed.datetime, "date", Date)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    args = ["--bundles-dir", str(tmp_path), "--out-dir", str(tmp_path / "out"), "--sizes", "prefill:32,decode:8x64",
            "--iters", "25", "--budget-s", "500"]
    assert layer_speed.main(args) == 1  # a layer stopped, and one size each
    assert [w[:4] for w in workers] == [(n, "prefill:32,decode:8x64", "5", "25")
                                        for n in ("qwen3_moe_layer", "qwen3_layer", "qwen3_layer_flex",
                                                  "qwen3_layer_flex128", "qwen3_moe_layer_flex128",
                                                  "qwen3_layer_rocm_attn", "llama_layer")]
    assert all(0 < w[4] <= 500 for w in workers)
    assert (tmp_path / "out" / "2000-01-01-layer-speed-1.json").read_text() == "{}"
    result = json.loads((tmp_path / "out" / "2000-01-01-layer-speed-2.json").read_text())
    assert (result["gpu"], result["driver"], result["peak"]["tbps"]) == ("NVIDIA H200", "550.54.15", 4.8)
    assert result["settings"]["iters"] == 25 and result["transformers"] and result["torch"]
    layers = result["layers"]
    assert [la["status"] for la in layers] == ["ok", "stopped: --budget-s spent", "ok", "ok", "ok", "ok", "ok"]
    flex128 = {"attention_backend": "FLEX_ATTENTION", "flex_attn_q_block_size": 128, "flex_attn_kv_block_size": 128,
               "flex_attn_block_m": 128, "flex_attn_block_n": 64}
    assert [la["variant"] for la in layers] == [{}, {}, {"attention_backend": "FLEX_ATTENTION"}, flex128, flex128,
                                                {"attention_backend": "ROCM_ATTN"}, {}]
    assert all(la["rows"] == [{"case": "prefill:32", "status": "ok"}] for la in layers)
    assert layers[0]["bundle_sha256"] == layer_speed.hashlib.sha256(b"Qwen3MoeDecoderLayer").hexdigest()
    assert result["settings"]["torch_compile_shapes"].startswith("torch's default")
    # --static-shapes reaches every worker and the result says so
    cmds = []
    monkeypatch.setattr(layer_speed.subprocess, "run", lambda cmd, **kw: cmds.append(cmd) or run(cmd, **kw))
    layer_speed.main(args + ["--only", "llama_layer", "--static-shapes"])
    assert [c[-1] for c in cmds if "--worker" in c] == ["--static-shapes"]
    result = json.loads((tmp_path / "out" / "2000-01-01-layer-speed-3.json").read_text())
    assert result["settings"]["torch_compile_shapes"].startswith("static")


@pytest.mark.parametrize("static", [False, True])
def test_static_shapes_compiles_one_static_graph_per_size(static):
    """torch.compile on three sizes: by default the second size recompiles with a dynamic (symbolic) size and the
    third reuses it (the size becomes an input of the graph); after static_shapes() each size gets a graph of its
    own."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(any(not isinstance(x, torch.Tensor) for x in example_inputs))  # a size passed in: dynamic
        return gm.forward

    torch._dynamo.reset()
    with torch._dynamo.config.patch(automatic_dynamic_shapes=True):
        if static:
            layer_speed.static_shapes()
        f = torch.compile(lambda x: x * 2 + 1, backend=backend)
        for n in (8, 16, 32):
            assert torch.equal(f(torch.ones(n)), torch.full((n,), 3.0))
    torch._dynamo.reset()
    assert graphs == ([False] * 3 if static else [False, True])
    if static:
        assert torch._dynamo.config.automatic_dynamic_shapes is True  # the patch restored torch's default
