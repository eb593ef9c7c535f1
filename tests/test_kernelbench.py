"""The KernelBench export (`kernelbench=True`, bundler_lib/example/kernelbench.py): the problem file a decoder-layer
bundle gets beside it, loaded the way KernelBench's eval loads a reference (`exec` of its text into a dict, then
`Model(*get_init_inputs())` and `model(*get_inputs())`), and published through the bundle's `current` switch.

The fast tests run the template on a small stand-in bundle (its `invocation_example` has the decoder layer's
contract: module, forward, inputs, sizes); the Pants test builds the suite's Qwen3DecoderLayer and loads its problem
in the bundle runtime, where the bundle's clean no-GPU error must come out of `Model(...)`. The GPU test is
tests/gpu/test_kernelbench_gpu.py."""

import ast
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from bundler_lib.artifacts import publish_bundle
from bundler_lib.errors import StageError
from bundler_lib.example import kernelbench

STAND_IN = b'''
import torch
RUNS = []
QUOTES = r"a\\'b''' + b"'''" + b'''" + """ " """


def invocation_example(small=False, workload=None, tokens=None, batch=None, context=None):
    RUNS.append((workload, batch, tokens, context))
    T = batch * tokens
    layer = torch.nn.Linear(8, 8).to(torch.bfloat16)
    h = torch.randn(T, 8).to(torch.bfloat16)

    def forward(x=None, residual=None):
        x = h if x is None else x
        return layer(x), x

    return {"module": layer, "forward": forward, "inputs": {"hidden_states": h}, "sizes": {"T": T}}
'''

RECORD = {"template": "decoder_layer", "symbol": "StandInDecoderLayer", "model_name": "Org/Model",
          "dims": {"H": 8, "max_ctx": 2048}, "workload": {"kind": "decode"}, "flags": {"dtype": "bfloat16"}}


def _load(source):
    """What KernelBench's load_original_model_and_inputs does with a reference's text."""
    context = {}
    compile(source, "<string>", "exec")
    exec(source, context)
    return context["Model"], context["get_init_inputs"], context["get_inputs"]


@pytest.fixture
def problem():
    source = kernelbench.generate(STAND_IN, "StandIn.py", RECORD)
    yield source
    for name in [n for n in sys.modules if n.startswith("vllm_bundle_kernelbench_")]:
        del sys.modules[name]


def test_problem_runs_as_kernelbench_loads_it(problem):
    import torch

    Model, get_init_inputs, get_inputs = _load(problem)
    assert get_init_inputs() == ["decode", 64, 1, 2047]  # 64 sequences, 1 new token, context within max_ctx
    with torch.no_grad():
        model = Model(*get_init_inputs())
    (x,) = get_inputs()
    assert x.shape == (64, 8)
    out = model(x)
    # hidden_states + residual of the layer's forward, in the bundle's dtype
    assert torch.equal(out, model.layer(x.to(torch.bfloat16)) + x.to(torch.bfloat16))


def test_bundle_is_executed_once_per_process(problem):
    Model, get_init_inputs, _ = _load(problem)
    Model(*get_init_inputs())
    Model2, _, _ = _load(problem)  # KernelBench execs the reference again for the next sample
    Model2(*get_init_inputs())
    (bundle,) = [m for n, m in sys.modules.items() if n.startswith("vllm_bundle_kernelbench_")]
    assert len(bundle.RUNS) == 2


def test_precision_casts_only_the_input_and_output(problem):
    import torch

    Model, get_init_inputs, get_inputs = _load(problem)
    model = Model(*get_init_inputs())
    weight = model.layer.weight
    model = model.to(dtype=torch.float32)  # what KernelBench does with its default precision
    assert model.layer.weight is weight and weight.dtype == torch.bfloat16
    (x,) = get_inputs()
    out = model(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, (model.layer(x.to(torch.bfloat16)) + x.to(torch.bfloat16)).float())


def test_embedded_bundle_is_the_bundle_byte_for_byte(problem):
    kernelbench.check(problem, STAND_IN, "StandIn.kernelbench.py")
    assert f"BUNDLE_SHA256 = '{hashlib.sha256(STAND_IN).hexdigest()}'" in problem
    with pytest.raises(StageError, match="does not embed the bundle A7 checked"):
        kernelbench.check(problem, STAND_IN + b"# altered\n", "StandIn.kernelbench.py")
    with pytest.raises(StageError, match="defines no get_inputs"):
        kernelbench.check(problem.replace("def get_inputs(", "def get_inputz("), STAND_IN, "x.kernelbench.py")


@pytest.mark.parametrize("text", ["plain", "ends with a backslash \\", "has ''' and \"\"\" both", "ends with '",
                                  'ends with "', "a\\'''b", "\\n stays two characters"])
def test_literal_round_trips(text):
    assert ast.literal_eval(kernelbench._literal(text)) == text


def test_literal_is_raw_where_it_can_be():
    assert kernelbench._literal('x = "\\n"\n').startswith("r'''")


def test_prefill_sizes_fit_the_max_context():
    rec = {**RECORD, "dims": {"H": 8, "max_ctx": 1000}, "workload": {"kind": "prefill"}}
    assert kernelbench.sizes(rec) == {"workload": "prefill", "batch": 1, "tokens": 992, "context": 0}


def test_only_decoder_layers_get_a_problem():
    with pytest.raises(StageError, match="remove `kernelbench=True`"):
        kernelbench.generate(STAND_IN, "RMSNorm.py", {**RECORD, "symbol": "RMSNorm", "template": "norm"})


def test_published_through_the_current_switch(tmp_path):
    dist = tmp_path / "bundles_out"
    for text in ("one", "two"):
        bundle = text.encode()
        sha = hashlib.sha256(bundle).hexdigest()
        arts = {"A7.report.json": json.dumps({"sha256": sha}).encode()}
        publish_bundle(dist, ".bundles/t.x", "B.py", "artifacts/t", bundle, arts, sha,
                       extra_files={"B.kernelbench.py": b"problem " + bundle})
        assert os.readlink(dist / "B.kernelbench.py") == ".bundles/t.x/current/B.kernelbench.py"
        assert (dist / "B.kernelbench.py").read_bytes() == b"problem " + bundle
        assert (dist / "B.py").read_bytes() == bundle
    assert sorted(p.name for p in (dist / ".bundles/t.x").iterdir()) == sorted(
        ["current", os.readlink(dist / ".bundles/t.x/current")])  # the first build is gone


# ---------------------------------------------------------------------------------------------------------------
# Through the real Pants engine: the suite's Qwen3DecoderLayer

LOAD_IN_RUNTIME = """
import sys
src = open(sys.argv[1], encoding="utf-8").read()
context = {}
exec(compile(src, "<string>", "exec"), context)
init = context["get_init_inputs"]()
try:
    context["Model"](*init)
except RuntimeError as e:
    print("RAISED", e)
print("INPUTS", [tuple(t.shape) for t in context["get_inputs"]()], init)
"""


@pytest.mark.pants
def test_pants_writes_the_problem_beside_the_bundle(tmp_path, vllm_0_26_0, runtime_python):
    from pants_workspace import REPO, Workspace

    ws = Workspace(tmp_path / "ws")
    ws.write_targets((REPO / "targets/BUILD").read_text())
    ws.write("targets/other/BUILD", 'monolithic_bundle(name="inner", symbol="Bar", vllm="//targets:vllm_0_26_0", '
                                    'output_path="Qwen3DecoderLayer.kernelbench.py/Inner.py")\n')
    run = ws.pants("package", "targets/other:inner")
    assert run.returncode != 0 and "bundles_out/Qwen3DecoderLayer.kernelbench.py/Inner.py" in run.stderr, \
        run.stderr[-3000:]  # the problem's path is claimed: a bundle inside it is refused before any stage
    (ws.root / "targets/other/BUILD").unlink()
    run = ws.pants("package", "targets:qwen3_layer")
    assert run.returncode == 0, run.stderr[-4000:]
    assert [p for p, _, _ in run.wrote()] == ["bundles_out/Qwen3DecoderLayer.py"]
    out = ws.root / "bundles_out"
    link = os.readlink(out / "Qwen3DecoderLayer.kernelbench.py")
    assert link.startswith(".bundles/qwen3_layer.") and link.endswith("/current/Qwen3DecoderLayer.kernelbench.py")
    problem = (out / "Qwen3DecoderLayer.kernelbench.py").read_text()
    bundle = (out / "Qwen3DecoderLayer.py").read_bytes()
    kernelbench.check(problem, bundle, "Qwen3DecoderLayer.kernelbench.py")
    res = subprocess.run([str(runtime_python), "-c", LOAD_IN_RUNTIME, str(out / "Qwen3DecoderLayer.kernelbench.py")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    # the model's sizes (Qwen3-30B-A3B: hidden 2048), decode, and the bundle's own no-GPU error from Model(...)
    assert "INPUTS [(64, 2048)] ['decode', 64, 1, 4096]" in res.stdout, res.stdout
    assert "RAISED invocation_example: Qwen3DecoderLayer runs on a CUDA GPU" in res.stdout, res.stdout
    # off again: the link goes with it (the bundle stays); without a model it is refused before any stage
    ws.write_targets(re.sub(r"\n\s*kernelbench=True,[^\n]*", "", (REPO / "targets/BUILD").read_text()))
    run = ws.pants("package", "targets:qwen3_layer")
    assert run.returncode == 0, run.stderr[-4000:]
    assert (out / "Qwen3DecoderLayer.py").is_file() and not os.path.lexists(out / "Qwen3DecoderLayer.kernelbench.py")
    ws.write("targets/other/BUILD", 'monolithic_bundle(name="nomodel", symbol="Qwen3DecoderLayer", kernelbench=True, '
                                    'vllm="//targets:vllm_0_26_0", output_path="nomodel/Qwen3DecoderLayer.py")\n')
    run = ws.pants("package", "targets/other:nomodel")
    assert run.returncode != 0 and "`kernelbench=True` needs `model`" in run.stderr and not run.executed_stages, \
        run.stderr[-3000:]
