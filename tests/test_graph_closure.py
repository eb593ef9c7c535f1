"""A1 graph + A2/A3 collectors on small on-disk trees, one per resolution feature: exact closures."""

import ast
import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from bundler_lib.artifacts import read_json
from bundler_lib.errors import StageError
from bundler_lib.graph import build
from tests.test_closure_helpers import TREES, build_all, import_in_subprocess, load, node_ids

ROOT = Path(__file__).resolve().parents[1]


def test_relative_imports(tmp_path):
    g, a2, _ = build_all(TREES / "relative", tmp_path, "target")
    assert node_ids(g) == {"vllm/a/helpers.py::helper", "vllm/util.py::CONST", "vllm/a/mod.py::target"}
    assert g["files"] == ["vllm/a/helpers.py", "vllm/a/mod.py", "vllm/util.py"]
    assert load(tmp_path).target() == 42
    text = (tmp_path / "A2.inline.py").read_text()
    assert "# --- Inlined from vllm/a/mod.py:L7-L8 (Apache-2.0) ---" in text
    assert text.count("SPDX-License-Identifier") == 3   # once per source file
    assert "import" not in text   # repo-local imports dropped


def test_reexport_through_init(tmp_path):
    g, a2, _ = build_all(TREES / "reexport", tmp_path, "Target")
    assert node_ids(g) == {"vllm/layers/impl.py::Thing", "vllm/user.py::Target"}
    assert a2["external_reqs"] == ["from __future__ import annotations", "import math"]
    assert load(tmp_path).Target().v == 2.0


def test_aliases_are_rewritten(tmp_path):
    g, _, _ = build_all(TREES / "alias", tmp_path, "target")
    assert node_ids(g) == {"vllm/ops.py::compute", "vllm/ops.py::other", "vllm/main.py::target"}
    text = (tmp_path / "A2.inline.py").read_text()
    assert "return compute(x) + other(x)" in text
    assert load(tmp_path).target(3) == 10


def test_mro_methods_reached_through_self(tmp_path):
    g, _, _ = build_all(TREES / "mro", tmp_path, "Child")
    assert node_ids(g) == {"vllm/base.py::Base", "vllm/base.py::used_helper", "vllm/child.py::Child"}
    text = (tmp_path / "A2.inline.py").read_text()
    assert "def used(self)" in text and "def unused(self)" not in text and "def __init__" in text
    assert load(tmp_path).Child().forward() == 1


def test_decorator_registration_and_custom_ops(tmp_path):
    # torch.ops.vllm.my_op becomes a direct call of my_op_impl (A5), never registered: nothing evaluates its
    # annotations, so NameType (read only there) stays out
    g, _, _ = build_all(TREES / "decorator", tmp_path, "Target")
    assert node_ids(g) == {"vllm/registry.py::op_registry", "vllm/registry.py::register",
                           "vllm/layer.py::my_op_impl", "vllm/layer.py::Target"}
    assert g["python_custom_ops"] == [{"op": "my_op", "target": "my_op_impl"}]
    assert [c["op"] for c in g["cuda_ops"]] == ["_C.some_kernel"]
    assert g["cuda_ops"][0]["call_sites"] == [{"file": "vllm/layer.py", "line": 23}]
    text = (tmp_path / "A2.inline.py").read_text()
    assert "return my_op_impl(x)" in text and "torch.ops._C.some_kernel(x)" in text
    m = load(tmp_path)
    assert m.op_registry == {"target": m.Target}


def test_runtime_annotations(tmp_path):
    g, _, _ = build_all(TREES / "annotations", tmp_path / "std", "Target")
    # a stdlib dataclass under the bundle's postponed annotations reads only ClassVar/InitVar of its field
    # annotations; parameter annotations and TYPE_CHECKING imports are never read
    assert node_ids(g) == {"vllm/conf.py::Target"}
    mod = load(tmp_path / "std")
    assert mod.Target().field is None
    assert [f.name for f in dataclasses.fields(mod.Target)] == ["field", "hf_field"]   # registry: a ClassVar
    reqs = read_json(tmp_path / "std" / "A2.manifest.json")["external_reqs"]
    assert "from typing import ClassVar" in reqs
    # an external import read only by a parameter annotation is never executed (hf_like_pkg is not installed:
    # were it installed, importing the bundle would not import it): it is left out, as A7 fails on an import
    # nothing at run time uses
    assert g["imports_annotation_only"] == ["from hf_like_pkg import HFConfig"]
    assert not any("hf_like_pkg import HFConfig" in r for r in reqs) and "import typing" not in reqs
    notes = read_json(tmp_path / "std" / "A2.manifest.json")["notes"]
    assert "import read only by annotations, left out (annotations are never evaluated): " \
           "from hf_like_pkg import HFConfig" in notes
    # a decorator of the tree's own (vLLM's pydantic @config) may read the field annotations: followed, the
    # external one guarded
    g, _, _ = build_all(TREES / "annotations", tmp_path / "conf", "ConfTarget")
    assert node_ids(g) == {"vllm/types.py::FieldType", "vllm/conf.py::ConfTarget", "vllm/conf.py::config"}
    reqs = read_json(tmp_path / "conf" / "A2.manifest.json")["external_reqs"]
    assert any(r.startswith("try:\n    from hf_like_pkg import HFFieldType\n") for r in reqs)
    # a closure that reads annotations (typing.get_type_hints) follows every dataclass's
    g, _, _ = build_all(TREES / "annotations", tmp_path / "hints", "HintsTarget")
    assert node_ids(g) == {"vllm/types.py::FieldType", "vllm/hints.py::HintsTarget"}
    assert any("typing.get_type_hints" in x for x in g["notes"])
    mod = load(tmp_path / "hints")
    assert mod.HintsTarget().hints()["field"] == typing.Optional[mod.FieldType]
    # decorators known not to read annotations (common/annotations.py, A7's list too) keep them unread
    g, _, _ = build_all(TREES / "annotations", tmp_path / "proto", "ProtoTarget")
    assert node_ids(g) == {"vllm/proto.py::ProtoTarget"}
    assert isinstance(type("Impl", (), {"field": 1, "run": lambda self: 1})(), load(tmp_path / "proto").ProtoTarget)


def test_function_local_import(tmp_path):
    g, _, _ = build_all(TREES / "localimport", tmp_path, "target")
    assert node_ids(g) == {"vllm/lazy.py::lazy_fn", "vllm/main.py::target"}
    text = (tmp_path / "A2.inline.py").read_text()
    assert "from vllm." not in text and "import" not in text
    assert load(tmp_path).target() == 7


def test_guard_pruning(tmp_path):
    g, _, _ = build_all(TREES / "guards", tmp_path, "target")
    assert node_ids(g) == {"vllm/helpers.py::cuda_helper", "vllm/helpers.py::plain_helper",
                           "vllm/main.py::target"}
    preds = {(x["predicate"], x["value"], x["kept"]) for x in g["guards"]}
    assert preds == {("current_platform.is_rocm()", False, "orelse"), ("quant_config is not None", False, "none")}
    text = (tmp_path / "A2.inline.py").read_text()
    assert "rocm" not in text and "quant_helper" not in text and "current_platform" not in text
    assert load(tmp_path).target() == "cudaplain"


def test_guard_pruning_other_platform(tmp_path):
    g = build(TREES / "guards", "target", variant={"platform": "rocm"})
    assert "vllm/helpers.py::rocm_helper" in node_ids(g)
    assert "vllm/helpers.py::cuda_helper" not in node_ids(g)


def test_pruned_blocks_keep_a_pass(tmp_path):
    # every statement of a block pruned (two decided ifs, not one): the block keeps a `pass` indented like them,
    # in an if/else/elif/for/try/finally body and a function's; a block whose keyword goes with it (the dedented
    # branch of a decided if) gets none
    g, _, _ = build_all(TREES / "pruned_body", tmp_path, "Config")
    text = (tmp_path / "A2.inline.py").read_text()
    ast.parse(text)
    assert "is_rocm" not in text and "quant_config is not None" not in text
    assert text.count("\n            pass\n") == 6 and text.count("\n    pass\n") == 1
    assert "        if check:\n            pass\n\n            # a comment between" in text
    assert "        else:\n            pass\n" in text and "        finally:\n            pass\n" in text
    m = load(tmp_path)
    assert m.Config().mode == "A" and m.Config(check=False, mode="b").mode == "b"


def test_augmented_assignment_kept_whole_or_dropped_whole(tmp_path):
    # a block reached for `fast` also does `__all__ += [...]`: nothing reads __all__, so the `+=` goes (its
    # first binding never came)
    g, _, _ = build_all(TREES / "all_arith", tmp_path / "drop", "target")
    assert node_ids(g) == {"vllm/pkg/__init__.py::fast", "vllm/pkg/impl.py::HAS_FAST", "vllm/main.py::target"}
    text = (tmp_path / "drop" / "A2.inline.py").read_text()
    assert "__all__" not in text
    assert any(n.startswith("vllm/pkg/__init__.py:12: `__all__ += ...` dropped") for n in g["notes"])
    assert load(tmp_path / "drop").target() == "fast"
    # something reads pkg.__all__: its first binding is in the closure, and the `+=` comes after it
    g, _, _ = build_all(TREES / "all_arith", tmp_path / "keep", "target_names")
    assert ["vllm/pkg/__init__.py::fast", "vllm/pkg/__init__.py::__all__"] in g["edges"]
    text = (tmp_path / "keep" / "A2.inline.py").read_text()
    assert text.index("_pkg__all__ = [") < text.index("_pkg__all__ += [")
    assert load(tmp_path / "keep", "bundle_keep").target_names() == ["helper", "fast"]


def test_getattr_op_lookup_is_an_op_reference(tmp_path):
    # getattr(torch.ops.<ns>, "<op>"[, default]) is found like torch.ops.<ns>.<op>; with a default (and no direct
    # reference elsewhere) the op is optional (`required: false`: A4 stubs it where it cannot embed it, and A5
    # then binds the lookup to its default)
    g = build(TREES / "getattr_op", "target")
    ops = {e["op"]: e for e in g["cuda_ops"]}
    assert set(ops) == {"_C.fused_norm", "_C.rms_norm", "_C.silu_and_mul", "_moe_C.topk_softmax"}
    assert ops["_C.fused_norm"]["required"] is False
    assert ops["_C.fused_norm"]["call_sites"] == [{"file": "vllm/ops.py", "line": 4, "getattr_default": True}]
    assert all("required" not in ops[o] for o in ("_C.rms_norm", "_C.silu_and_mul", "_moe_C.topk_softmax"))
    assert ops["_C.silu_and_mul"]["call_sites"] == [{"file": "vllm/ops.py", "line": 15}]
    assert len(ops["_moe_C.topk_softmax"]["call_sites"]) == 2
    assert any(n.startswith("vllm/ops.py:4: getattr(torch.ops._C, 'fused_norm', <default>)") for n in g["notes"])


def test_function_local_binding_shadows_the_module_level_import(tmp_path):
    # `from other_pkg import attn_func` in one branch makes attn_func local to the whole function: the other
    # branch's `from vllm.fa_utils import attn_func` cannot be stood in for by a module-level import (what
    # fa_utils binds, `from flash_pkg import attn_func`, would be unused); that branch raises a clear ImportError
    g, _, _ = build_all(TREES / "shadowed_import", tmp_path, "target")
    assert node_ids(g) == {"vllm/main.py::target"}
    assert g["imports_external"] == [] and g["imports_runtime_only"] == []
    assert all(n["imports"] == [] for n in g["python_nodes"])
    text = (tmp_path / "A2.inline.py").read_text()
    assert "flash_pkg" not in text and "from other_pkg import attn_func" in text
    with pytest.raises(ImportError, match="vllm.fa_utils.attn_func: bound otherwise in the same function"):
        load(tmp_path).target(1)


def test_name_collisions_renamed_consistently(tmp_path):
    g, _, _ = build_all(TREES / "collision", tmp_path, "target")
    assert node_ids(g) == {"vllm/one.py::logger", "vllm/one.py::rms_norm", "vllm/two.py::logger",
                           "vllm/two.py::rms_norm", "vllm/main.py::target"}
    assert g["renames"] == {"vllm/two.py::logger": "logger_two", "vllm/two.py::rms_norm": "rms_norm_two"}
    m = load(tmp_path)
    assert m.target(1) == 12
    assert m.logger.name == "one" and m.logger_two.name == "two"


def test_triton_kernels_helpers_and_globals(tmp_path):
    g, a2, a3 = build_all(TREES / "triton", tmp_path, "target")
    kinds = {(k["name"], k["kind"]) for k in g["triton_kernels"]}
    assert kinds == {("_kernel", "kernel"), ("_helper", "helper"), ("SCALE", "constexpr"), ("_kernel2", "kernel")}
    assert node_ids(g) == {"vllm/kern.py::_kernel", "vllm/kern.py::_helper", "vllm/kern.py::SCALE",
                           "vllm/kern2.py::_kernel2", "vllm/kern2.py::SCALE",
                           "vllm/consts.py::BLOCK", "vllm/kern.py::target"}
    assert sorted(k["name"] for k in a3["kernels"]) == ["_kernel", "_kernel2"]
    assert "@triton.autotune" in (tmp_path / "A3.triton.py").read_text()
    assert [x["name"] for x in a2["inlined"]] == ["BLOCK", "target"]
    assert "import triton" in a3["imports"]
    m = load(tmp_path)
    assert callable(m.target)


def test_unknown_symbol_lists_near_names():
    with pytest.raises(StageError) as e:
        build(TREES / "bad", "RMSNormis")
    assert "not defined at top level anywhere in the tree" in str(e.value)
    assert "RMSNormish" in str(e.value)


def test_ambiguous_symbol_asks_for_hint():
    with pytest.raises(StageError) as e:
        build(TREES / "bad", "Duplicate")
    msg = str(e.value)
    assert "defined in several places: vllm/good.py:8, vllm/other.py:1" in msg
    assert "symbol_file_hint" in msg
    g = build(TREES / "bad", "Duplicate", hint="vllm/other.py")
    assert g["def_file"] == "vllm/other.py"


def test_syntax_error_names_file_and_line():
    with pytest.raises(StageError) as e:
        build(TREES / "bad", "calls_broken")
    assert "vllm/broken.py:1" in str(e.value) and "syntax error" in str(e.value)


@pytest.mark.parametrize("variant, text", [
    ({"platform": "metal"}, "allowed values for platform: 'cuda', 'rocm', 'cpu', 'xpu', 'tpu'"),
    ({"colour": "red"}, "unknown variant key"),
    ({"tp": 3}, "variant tp=3: unknown variant value"),
    ({"tp": 16}, "allowed values for tp: 1, 2, 4, 8"),
    ({"pp": 2}, "allowed values for pp: 1"),
    ({"tp": 2, "ep": 4}, "variant ep=4: with tp=2 the expert-parallel group is 1 or tp=2 GPUs"),
    ({"ep": 2}, "set tp to the same value"),
])
def test_bad_variant(variant, text):
    with pytest.raises(StageError) as e:
        build(TREES / "relative", "target", variant=variant)
    assert text in str(e.value)


def test_deterministic(tmp_path):
    """Processes with different hash seeds build the same graph, byte for byte (the order of every list and dict
    included: one built from a set would follow the seed); one process builds it twice the same too."""
    code = "import json, sys; from bundler_lib.graph import build; print(json.dumps(build(sys.argv[1], 'target')))"
    outs = set()
    for seed in ("0", "1", "2", "3"):
        p = subprocess.run([sys.executable, "-c", code, str(TREES / "collision")], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert p.returncode == 0, p.stderr
        outs.add(p.stdout)
    assert len(outs) == 1
    a = build(TREES / "collision", "target")
    assert json.dumps(a) + "\n" == outs.pop()
    assert json.dumps(build(TREES / "collision", "target")) == json.dumps(a)


@pytest.mark.parametrize("cap, kept", [
    (90, {"at_least_90", "exactly_90", "family_9x"}),
    (89, {"below_90", "not_90", "other_family"}),
    (100, {"at_least_90", "not_90", "other_family"}),
])
def test_capability_guards(cap, kept):
    """has_device_capability(90) is `cap >= 90`, is_device_capability(90) `cap == 90`,
    is_device_capability_family(90) `cap // 10 == 9`: each branch the variant's capability decides is pruned."""
    g = build(TREES / "capability", "target", variant={"cuda_capability": cap})
    helpers = {"at_least_90", "below_90", "exactly_90", "not_90", "family_9x", "other_family"}
    assert {n["name"] for n in g["python_nodes"]} & helpers == kept
    assert {x["value"] for x in g["guards"]} <= {True, False} and len(g["guards"]) == 3


def test_forward_kept_without_being_named(tmp_path):
    """torch calls `forward` by protocol (`Layer()(x)`): kept though nothing in the closure names it, while a
    method nothing reads is left out."""
    g, _, _ = build_all(TREES / "protocol", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert "def forward(self, x):" in text and "def unused" not in text
    assert load(tmp_path).target(1) == 2


def test_triton_collision_renamed_inside_kernel_body(tmp_path):
    g, _, a3 = build_all(TREES / "triton", tmp_path, "target")
    assert g["renames"] == {"vllm/kern2.py::SCALE": "SCALE_kern2"}
    text = (tmp_path / "A3.triton.py").read_text()
    assert "SCALE_kern2: tl.constexpr = 3" in text
    assert "tl.load(x_ptr + offs) * SCALE_kern2)" in text
    assert {k["name"] for k in a3["kernels"]} == {"_kernel", "_kernel2"}


def test_module_getattr_dict_entries_constants_and_early_return(tmp_path):
    g, _, _ = build_all(TREES / "envs", tmp_path, "target")
    assert g["imports_runtime_only"] == ["import os"]   # read only inside functions
    assert node_ids(g) == {
        "vllm/envs.py::helper_a", "vllm/envs.py::environment_variables", "vllm/envs.py::__getattr__",
        "vllm/shapes.py::_Shape", "vllm/shapes.py::Shape", "vllm/shapes.py::Shape.<13>", "vllm/main.py::DEFAULT",
        "vllm/main.py::_early", "vllm/main.py::target"}
    text = (tmp_path / "A2.inline.py").read_text()
    assert '"A": lambda: helper_a()' in text and "helper_b" not in text and "the B flag" not in text
    assert "return (_envs__getattr__('A'), 512, DEFAULT.col, _early())" in text
    assert "rocm" not in text
    assert load(tmp_path).target() == (1, 512, -1, "cuda")


def test_target_keeps_its_name_over_an_import(tmp_path):
    g, a2, _ = build_all(TREES / "targetname", tmp_path, "Linear")
    assert node_ids(g) == {"vllm/other.py::make", "vllm/mod.py::Linear"}
    assert "from torch.nn import Linear as Linear_torch_nn_Linear" in a2["external_reqs"]
    m = load(tmp_path)
    import torch
    assert m.Linear.__module__ == m.__name__
    assert isinstance(m.Linear().build(), torch.nn.Linear)


def test_variant_guards_envs_kv_cache_quant_attn_type_lora_and_by_name_classes(tmp_path, monkeypatch):
    g, _, _ = build_all(TREES / "variant_guards", tmp_path, "target")
    helpers = {i.split("::")[1] for i in node_ids(g) if i.startswith("vllm/helpers.py::")}
    # decided by the variant: envs at their defaults, kv cache "auto", unquantized, decoder, no LoRA
    assert helpers == {"AttentionType", "plain_helper", "mode_auto_helper", "from_env_helper"}
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert ("envs.VLLM_FAST_PATH", False) in preds and ("envs.VLLM_MODE == 'auto'", True) in preds
    assert ("use_fp8_w8a8", False) in preds and ("quant_dtype == 'nvfp4'", False) in preds
    assert ("is_lora_enabled", False) in preds
    # an attn_type parameter defaulting to None is the caller's (none given here), not the variant's decoder
    assert not any(x["predicate"] == "attn_type is not None" for x in g["guards"])
    # one GPU, no LoRA, no KV transfer: no EPLB state, no LoRA context, no KV connector
    assert {("self.eplb_state is not None", False), ("lora_context is not None", False),
            ("vllm_config.kv_transfer_config is not None or has_kv_transfer_group()", False)} <= preds
    # the attention backend named by the variant is bound for resolve_obj_by_qualname; the others are not
    assert "vllm/v1/attention/backends/triton_attn.py::TritonAttentionBackend" in node_ids(g)
    assert not any("flash_attn" in i for i in node_ids(g))
    monkeypatch.setenv("VLLM_FROM_ENV", "0")
    m = load(tmp_path)
    assert m.target() == ("plain+auto", "triton")
    with pytest.raises(ImportError, match="not in this bundle"):
        m.resolve_obj_by_qualname("vllm.v1.attention.backends.flash_attn.FlashAttentionBackend")


def test_branches_held_on_parameter_defaults(tmp_path):
    # a branch of a module-level function that its parameters' defaults decide is dead when every call in
    # the closure leaves them at their defaults (directly or by forwarding the caller's own defaults)
    g, _, _ = build_all(TREES / "default_params", tmp_path, "target")
    ids = node_ids(g)
    assert {i for i in ids if i.startswith("vllm/deps.py::")} == {
        "vllm/deps.py::PlainRouter", "vllm/deps.py::ReleasedDep", "vllm/deps.py::EscapedDep",
        "vllm/deps.py::make_state"}
    held = {(x["predicate"], x["assumes"]) for x in g["guards"] if "assumes" in x}
    assert held == {
        ("custom_fn is not None", "every call in the closure leaves custom_fn=None"),
        ("bias is not None or scoring == 'sigmoid'", "every call in the closure leaves bias=None, scoring='softmax'"),
        ("flag", "every call in the closure leaves flag=False")}
    # released(flag=x > 100) may set flag; escaped() is also a dict value any caller may call
    text = (tmp_path / "A2.inline.py").read_text()
    assert "CustomRouter" not in text and "BiasRouter" not in text and "FlagDep" not in text
    assert "return ReleasedDep(x).x" in text and "return EscapedDep(x)" in text
    # module-level predicate functions, with and without arguments, decide branches too
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert ("not capture_enabled()", True) in preds and ("should_load(method)", False) in preds
    assert "BreakDep" not in text and "KVQuantDep" not in text
    assert load(tmp_path).target(3) == ("PlainRouter", 9, 3, 2, None)
    assert load(tmp_path).target(101)[1] == 101 + 202 + 101


def test_envs_runtime_variant_keeps_env_branches(tmp_path):
    g = build(TREES / "variant_guards", "target", variant={"envs": "runtime"})
    ids = {i.split("::")[1] for i in node_ids(g)}
    assert {"fast_helper", "mode_auto_helper"} <= ids


def test_model_config_decides_branches(tmp_path):
    from bundler_lib import model_facts
    facts = model_facts.facts({"hidden_act": "silu", "rope_theta": 1000000, "rope_scaling": None})
    g = build(TREES / "model_guards", "target", model_facts=facts)
    helpers = {i.split("::")[1] for i in node_ids(g) if i.startswith("vllm/helpers.py::")}
    # the decided conditional expression keeps only its live arm; scoring_func, which the config does not state, stays
    # undecided (a model file may pass its own literal)
    assert helpers == {"silu", "sigmoid_router", "norm_weight"}
    assert g["model_facts"]["activation"] == ["enum", "MoEActivation", "SILU"]
    for stated, kept in (("softmax", False), ("sigmoid", True)):
        g = build(TREES / "model_guards", "target", model_facts=model_facts.facts({"hidden_act": "silu",
                                                                                    "scoring_func": stated}))
        assert ("sigmoid_router" in {i.split("::")[1] for i in node_ids(g)}) is kept, stated
    # without a model config every branch stays
    g = build(TREES / "model_guards", "target")
    assert {"gelu", "sigmoid_router", "grouped", "mrope", "zero_experts", "ZeroExpertRouter"} <= {
        i.split("::")[1] for i in node_ids(g)}


def test_a_model_files_own_activation_leaves_the_activation_undecided():
    """gpt-oss's model file passes FusedMoE(activation="swigluoai") with hidden_act "silu" in its config: the config
    decides no activation there (zoo-gpu-1: apply_moe_activation pruned to silu_and_mul, TransformerBlock parity
    rel L2 0.48)."""
    from bundler_lib import model_facts
    g = build(TREES / "model_guards", "literal_target", model_facts=model_facts.facts({"hidden_act": "silu"}))
    assert {"silu", "gelu"} <= {i.split("::")[1] for i in node_ids(g)}
    assert "activation" not in g["model_facts"]
    g = build(TREES / "model_guards", "literal_target", model_facts=model_facts.facts({"hidden_act": "gelu"}))
    assert "silu" not in {i.split("::")[1] for i in node_ids(g)}


def test_a_model_files_own_rope_type_leaves_the_rope_type_undecided():
    """vLLM's deepseek_v2.py rewrites config.rope_parameters["rope_type"] to "deepseek_yarn" before get_rope: the
    config's "yarn" decides no rope type there, nor in a layer of another file reaching it (0.33.0's
    DeepseekV2Eagle3DecoderLayer) (H100: DeepseekV2DecoderLayer's get_rope pruned to YaRN's rotary, cos/sin x1.369
    instead of DeepSeek's x1.0, parity rel L2 0.21 against transformers-bf16's 0.0054)."""
    from bundler_lib import model_facts
    facts = model_facts.facts({"hidden_act": "silu", "rope_parameters": {"rope_type": "yarn", "factor": 40.0}})
    for target in ("rewritten_rope_target", "reaching_rope_target"):  # the write in the layer's file, or one it reaches
        g = build(TREES / "model_guards", target, model_facts=facts)
        assert {"yarn_rope", "deepseek_rope"} <= {i.split("::")[1] for i in node_ids(g)}, target
        assert "rope_type" not in g["model_facts"] and "scaling_type" not in g["model_facts"]
    # a file whose other code writes a rope type (rope_model.normalised, never reached) leaves the fact standing
    g = build(TREES / "model_guards", "plain_rope_target", model_facts=facts)
    assert "deepseek_rope" not in {i.split("::")[1] for i in node_ids(g)}
    assert g["model_facts"]["rope_type"] == "yarn"


def test_missing_model_config_fails_naming_it(tmp_path):
    from bundler_lib import model_facts
    with pytest.raises(StageError, match="models/<org>--<name>"):
        model_facts.load(tmp_path / "nope.json")


def test_decided_elif_keeps_the_chain(tmp_path):
    # `if A: .. elif <decided False>: .. else: ..` must keep `else` under `if A` (seen on the GPU:
    # TritonAttentionImpl's sliding_window chain lost its else and always ran it)
    build_all(TREES / "elif_chain", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert "amd" not in text and "is_rocm" not in text
    m = load(tmp_path)
    assert m.target() == ((-1, -1), "other", "cuda", "default")
    assert m.target(5, 1) == ((4, 0), "one", "one", "default")
    assert m.target(None, 2) == ((-1, -1), "two", "cuda", "default")


def test_import_of_compiled_vllm_code_raises_only_when_taken(tmp_path):
    # vllm_flash_attn & co. are compiled parts of vLLM with no source in the tree: the name stays bound,
    # the bundle imports, and only the path that needs it fails, naming what is missing
    g, _, _ = build_all(TREES / "compiled_import", tmp_path, "target")
    assert any("vllm.vllm_flash_attn.layers.rotary" in n for n in g["notes"])
    m = load(tmp_path)
    assert m.target(1) == 2
    with pytest.raises(ImportError, match="vllm.vllm_flash_attn.layers.rotary.apply_rotary_emb"):
        m.target(1, fast=True)
    # a function-level import from another platform's module: not inlined, the name raises where it is used
    assert "vllm/platforms/rocm.py" not in g["files"]
    with pytest.raises(ImportError, match=r"vllm.platforms.rocm.get_cdna_version: specific to the rocm platform "
                                          r"\(the bundle is built for cuda\)"):
        m.target(1, rocm=True)
    g_rocm = build(TREES / "compiled_import", "target", variant={"platform": "rocm"})
    assert "vllm/platforms/rocm.py" in g_rocm["files"]


def test_platform_forward_needing_compiled_code_runs_forward_native(tmp_path):
    # a CustomOp's forward_cuda that imports compiled vLLM code the tree lacks (vllm_flash_attn's rotary kernel)
    # cannot run in the bundle: it delegates to forward_native (the class's own or its base's), with a note;
    # a compiled import with an ImportError fallback keeps the forward as written
    g, _, _ = build_all(TREES / "native_forward", tmp_path, "target")
    notes = [n for n in g["notes"] if "runs" in n and "forward_native" in n]
    assert len(notes) == 2 and all("vllm.vllm_flash_attn.layers.rotary" in n for n in notes)
    assert any("Rotate.forward_cuda runs Rotate.forward_native" in n for n in notes)
    text = (tmp_path / "A2.inline.py").read_text()
    assert text.count("return self.forward_native(x, scale)") == 2 and "return apply_rotary_emb(x)" in text
    assert "from vllm._fast_ops import negate" not in text and "return x * 10" in text
    m = load(tmp_path)
    assert m.target(1) == (9, 2, 10)
    # a CustomOp with no forward_native below CustomOp's own: the compiled import still raises where it is taken
    with pytest.raises(ImportError, match="vllm.vllm_flash_attn.layers.rotary.apply_rotary_emb"):
        m.target(1, no_native=True)
    g_rocm = build(TREES / "native_forward", "target", variant={"platform": "rocm"})
    assert not any("forward_native" in n for n in g_rocm["notes"])


def test_choice_of_a_package_the_bundle_lacks_is_not_taken(tmp_path):
    # a resolver's branch that returns a choice named after a package its module imports (that choice's
    # implementation) and the bundle neither requires nor replaces is decided False, recorded with what it assumes:
    # the resolver picks as where that package is not installed. A choice of a package the bundle has, or that
    # the module does not import, stays.
    g, _, _ = build_all(TREES / "lacked_choice", tmp_path, "target")
    lacked = [(x["predicate"], x["value"], x["kept"], x["assumes"]) for x in g["guards"] if x.get("assumes")]
    assert lacked == [("requested in ('fastkern', 'auto') and fast", False, "none",
                       "the bundle lacks the package 'fastkern', which this module imports for that choice")]
    m = load(tmp_path)
    assert m.target(1) == m.target(1, {"backend": "fastkern"}) == ("triton", 2)
    assert m.target(1, {"backend": "json"}) == ("json", 11)
    assert m.target(1, {"backend": "otherkern"}) == ("otherkern", 2)


def test_ir_op_providers_and_priority(tmp_path):
    """vLLM registers IR op implementations when vllm.kernels is imported and its worker sets their dispatch
    priority: the bundle reaches the variant's providers' implementations of the IR ops it holds (not the
    other ops', not other providers') and sets the priority at import."""
    g, _, _ = build_all(TREES / "ir_ops", tmp_path, "Norm")
    ids = node_ids(g)
    assert {"vllm/kernels/vllm_c.py::rms_norm", "vllm/kernels/vllm_c.py::_fast_half",
            "vllm/ir/ops/norm.py::_bundle_ir_op_priority"} <= ids
    assert not any(i.startswith("vllm/kernels/other_c.py") for i in ids)
    assert "vllm/kernels/vllm_c.py::scale" not in ids and "vllm/ir/ops/norm.py::scale" not in ids
    m = load(tmp_path)
    # gelu has no vllm_c implementation: its priority holds only the providers that implement it
    assert m.Norm().forward(4.0) == ("vllm_c", 2.0, "native", 5.0)
    g2, _, _ = build_all(TREES / "ir_ops", tmp_path / "native", "Norm", variant={"ir_op_priority": "native"})
    assert not any(i.startswith("vllm/kernels/") for i in node_ids(g2))
    assert load(tmp_path / "native").Norm().forward(4.0) == ("native", 2.0, "native", 5.0)


def test_unread_class_attributes_and_other_platforms_forwards_left_out(tmp_path):
    g, _, _ = build_all(TREES / "mro", tmp_path, "Op")
    text = (tmp_path / "A2.inline.py").read_text()
    # the target keeps its public API but not the forwards CustomOp dispatches to on other platforms
    assert "def extra_api" in text and "def forward_native" in text and "def forward_cuda" in text
    assert "def forward_xpu" not in text and "def forward_hip" not in text
    # a plain class keeps the attributes something reads (by attribute, hasattr, or its own body)
    for kept in ('read_attr: str = "read"', "made_at_class_creation = make_default()", "hasattr_probe = True",
                 "BODY_CONST = 3", 'read_attr = "module"'):
        assert kept in text
    for dropped in ("unread_attr", "unread_decl", "other_unread", "never read anywhere"):
        assert dropped not in text
    # dataclass fields and enum members are never left out
    assert "unread_field: int = 2" in text and "UNUSED_MEMBER = 2" in text
    mod = load(tmp_path)
    op = mod.Op()
    assert op.extra_api(1) == ("read", "module", mod.Kind.A, 1, 1) and op.probe() is True
    assert mod.Fields(1, 5).unread_field == 5


def test_predicate_classmethods_decided_by_the_variant(tmp_path, monkeypatch):
    g, _, _ = build_all(TREES / "variant_guards", tmp_path, "predicate_target")
    helpers = {i.split("::")[1] for i in node_ids(g) if i.startswith("vllm/helpers.py::")}
    # is_enabled (an env flag off by default, under a call-through-or-None decorator), is_fused_enabled (another
    # predicate and a literal) and is_auto (an env comparison) are decided; an unknown decorator or a run-time
    # value leaves the branch in
    assert helpers == {"auto_only_helper", "wrapped_helper", "runtime_helper"}
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert {("accel_ops.is_enabled()", False), ("not accel_ops.is_fused_enabled()", True),
            ("accel_ops.is_auto()", True)} <= preds
    monkeypatch.setenv("VLLM_FROM_ENV", "x")
    assert load(tmp_path).predicate_target() == "+unfused+auto+runtime"
    g2 = build(TREES / "variant_guards", "predicate_target", variant={"envs": "runtime"})
    assert "vllm/helpers.py::accel_helper" in node_ids(g2)


def test_names_bound_to_decided_tests_custom_ops_on_and_overload_stubs(tmp_path):
    g, _, _ = build_all(TREES / "decided_names", tmp_path, "target")
    helpers = {i.split("::")[1] for i in node_ids(g) if i.startswith("vllm/helpers.py::")}
    # IS_ROCM (bound once to a decided test) prunes its branch; REBOUND (rebound through `global`) and a
    # parameter shadowing IS_ROCM do not; custom ops on: `enabled` (a local bound to self.enabled()) is True,
    # so dispatch_forward never reaches maybe_compile
    assert helpers == {"rebound_helper", "shadow_helper"}
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert {("IS_ROCM", False), ("not enabled", False)} <= preds
    text = (tmp_path / "A2.inline.py").read_text()
    assert "def maybe_compile" not in text and "IS_ROCM =" not in text
    # @overload stubs are typing only: the implementations are kept, the stubs are not
    assert "@overload" not in text and "def stub_fn(x):" in text and "def scale(self, x):" in text
    assert load(tmp_path).target() == (2, 4, 6, "shadow")
    g2 = build(TREES / "decided_names", "target", variant={"custom_ops": "disabled"})
    assert "vllm/helpers.py::compile_helper" in node_ids(g2)


def test_abstract_stubs_nothing_can_run_are_left_out(tmp_path):
    build_all(TREES / "abstract_stubs", tmp_path, "target")
    tree = ast.parse((tmp_path / "A2.inline.py").read_text())
    methods = {c.name: sorted(f.name for f in c.body if isinstance(f, ast.FunctionDef))
               for c in tree.body if isinstance(c, ast.ClassDef)}
    # Base is an ABC: an instance method's stub runs only through super() (via_super); a static/class
    # method's may run on Base itself (kind); Plain is not an ABC, so its stub stays
    assert methods["Base"] == ["kind", "run", "via_super"]
    assert methods["Plain"] == ["apply"]
    assert load(tmp_path).target() == (1120, -2)


def test_self_reads_reach_only_the_classes_self_can_be(tmp_path):
    build_all(TREES / "self_reach", tmp_path, "target")
    tree = ast.parse((tmp_path / "A2.inline.py").read_text())
    methods = {c.name: sorted(f.name for f in c.body if isinstance(f, ast.FunctionDef))
               for c in tree.body if isinstance(c, ast.ClassDef)}
    # self.helper() in Runner.run reaches Runner's and its subclass's helper, not Unrelated's; self.hook() in
    # Mixin.go reaches Hooks.hook through Mixed; a base written layers_mod.Layer is followed; obj.shared()
    # (not self) reaches `shared` on every class
    assert methods["Unrelated"] == ["shared"]
    assert methods["Runner"] == ["helper", "run"]
    assert methods["FastRunner"] == ["helper"]
    assert methods["Hooks"] == ["hook"]
    assert methods["Layer"] == ["layer_part"]
    assert load(tmp_path).target() == (1, 10, 100, 1000, 30000)


def test_quantization_keys_decided_when_unquantized(tmp_path):
    # with quantization none, an attention's fused output quantization scales are None (only a quantized model's
    # compile pass passes them), so the key a function derives from them is None and every comparison of it
    # against the QuantKey constants is False; the model's quantization method is None too
    g, _, _ = build_all(TREES / "quant_key", tmp_path, "target")
    assert g["cuda_ops"] == []
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert {("quant_key == kNvfp4Dynamic", False), ("quant_key in (kFp8Dynamic128Sym, kFp8Dynamic64Sym)", False),
            ("use_quant_output", False), ("model_config.quantization is not None", False)} <= preds
    text = (tmp_path / "A2.inline.py").read_text()
    assert "return output * output_scale" in text   # a parameter its function rebinds: undecided
    assert load(tmp_path).target() == (2, 3, None)


def test_tensor_parallel_branches_pruned_on_one_gpu(tmp_path):
    # tp = 1: `self.tp_world > 1`, `self.tp_group.world_size > 1` and `get_..._world_size() == 1` are decided,
    # so the all-reduce paths and their ops are not in the closure
    g, _, _ = build_all(TREES / "tp_one", tmp_path, "target")
    assert g["cuda_ops"] == []
    preds = {(x["predicate"], x["value"]) for x in g["guards"]}
    assert {("_FUSED_AR is not None and self.tp_world > 1", False), ("self.tp_group.world_size > 1", False),
            ("get_tensor_model_parallel_world_size() == 1", True)} <= preds
    assert not {"vllm/norm.py::make_workspace", "vllm/norm.py::_all_reduce", "vllm/norm.py::_FUSED_AR"} & node_ids(g)
    assert load(tmp_path).target() == 2


def test_python_custom_op_registered_in_another_module(tmp_path):
    # torch.ops.vllm.group_quant is called in quant/input_quant.py and registered (its name positional, as
    # vLLM's fp8_utils.py writes it) in quant/fp8_utils.py: bound to the function registered there
    g, _, _ = build_all(TREES / "cross_module_op", tmp_path, "target")
    assert g["python_custom_ops"] == [{"op": "group_quant", "target": "_group_quant_impl"}]
    assert not g["unresolved"]
    assert "vllm/quant/fp8_utils.py::_group_quant_impl" in node_ids(g)
    assert "vllm/quant/fp8_utils.py::_unused_impl" not in node_ids(g)


def test_op_looked_up_by_name_at_import_keeps_its_registration(tmp_path):
    """vLLM >= 0.34: `_op = eager_bypass_custom_op("scaled", scaled_impl)` looks the op up in torch.ops at import
    time, so the module's `direct_register_custom_op(op_name="scaled", op_func=scaled_impl, ...)` is kept, before
    it; a call given another op's name but not its function keeps nothing."""
    g, _, _ = build_all(TREES / "op_by_name", tmp_path, "target")
    regs = [n for n in g["python_nodes"] if n["kind"] == "attached" and n["file"] == "vllm/layer_utils.py"]
    assert [(n["line"], n["end_line"]) for n in regs] == [(14, 14)]
    assert {"vllm/layer_utils.py::scaled_fake", "vllm/torch_utils.py::direct_register_custom_op"} <= node_ids(g)
    assert "vllm/layer_utils.py::unused_impl" not in node_ids(g)
    assert any("eager_bypass_custom_op('scaled', ...) looks the op up by name" in x for x in g["notes"])
    text = (tmp_path / "A2.inline.py").read_text()
    assert text.index('direct_register_custom_op(op_name="scaled"') < text.index('_scaled_op = eager_bypass_custom_op(')
    assert import_in_subprocess(tmp_path, "target").strip() == "OK True"


def test_module_used_as_a_value_embedded_or_a_stand_in(tmp_path):
    """A module object used as a value at run time: one that imports nothing of the tree is embedded whole; one
    that imports the tree (vLLM 0.34's `return bf16x3_router_gemm_sm90`) is a stand-in whose attributes raise
    ImportError naming it, so only the path that uses it fails."""
    g, _, _ = build_all(TREES / "module_value", tmp_path, "target")
    assert not g["unresolved"]
    assert any("module vllm.pkg.light is used as a value: embedded whole" in x for x in g["notes"])
    assert any("vllm/main.py:4: module vllm.pkg.heavy is used as a value and imports the tree: a stand-in" in x
               for x in g["notes"])
    assert "vllm/pkg/helper.py::double" not in node_ids(g)
    mod = load(tmp_path)
    assert mod.target(1.5) == 11
    with pytest.raises(ImportError, match=r"heavy\.run: vllm\.pkg\.heavy is used as a module object .* this path "
                                          r"is not in the bundle"):
        mod.target(1, fast=False)


def test_op_the_code_checks_for_with_hasattr_is_optional(tmp_path):
    """`hasattr(torch.ops._C, "fancy_op")` before the code uses the op (vLLM 0.34's sparse-MLA indexer op, which
    needs CUTLASS headers): the op is optional wherever it is called (A4 stubs it where it cannot embed it, A5 binds
    the check to False there); an op only called stays required."""
    g, _, _ = build_all(TREES / "probed_op", tmp_path, "target")
    ops = {o["op"]: o for o in g["cuda_ops"]}
    assert ops["_C.fancy_op"]["required"] is False
    assert [s.get("hasattr", False) for s in ops["_C.fancy_op"]["call_sites"]] == [True, False]
    assert "required" not in ops["_C.plain_op"]
    assert any("hasattr(torch.ops._C, 'fancy_op'): the code checks for the op before using it" in x for x in g["notes"])


def test_another_platforms_kernel_table_entries_not_reached(tmp_path):
    # a kernel table keyed by platform: on cuda the CPU entry is never read, so its kernel (and its CPU-only
    # op) is not in the closure; entries of platforms the variant does not name (out of tree) stay
    g, _, _ = build_all(TREES / "platform_table", tmp_path, "target")
    assert g["cuda_ops"] == []
    ids = node_ids(g)
    assert "vllm/kernels.py::CpuKernel" not in ids
    assert {"vllm/kernels.py::CudaKernel", "vllm/kernels.py::OotKernel"} <= ids
    assert ("current_platform._enum == PlatformEnum.CPU", False) in {(x["predicate"], x["value"]) for x in g["guards"]}
    assert load(tmp_path).target(1) == 2


def test_held_branches_literals_and_values(tmp_path):
    """A branch held on a parameter's default is pruned when every call omits it or passes the default's own
    literal; a literal equal to it but of another type (0 for False) sets it, and a function used as a value may
    get any argument."""
    g, _, _ = build_all(TREES / "held_literals", tmp_path, "target")
    ids = {i.split("::")[1] for i in node_ids(g)}
    assert "FlagDep" not in ids
    assert {"TypedDep", "ValueDep", "typed", "as_value"} <= ids
    assert [(x["predicate"], x["value"], x["line"]) for x in g["guards"]] == [("flag", False, 17)]
    assert load(tmp_path).target(3) == 3 + 3 + 30 + 3 + 300


def test_type_checking_block_pruned(tmp_path):
    """`if TYPE_CHECKING:` is False in the bundle: its body (imports, calls) never enters the closure."""
    g, _, _ = build_all(TREES / "type_checking", tmp_path, "target")
    assert node_ids(g) == {"vllm/main.py::DEFAULT", "vllm/main.py::target"}
    assert [(x["predicate"], x["value"], x["kept"]) for x in g["guards"]] == [("TYPE_CHECKING", False, "orelse")]
    assert load(tmp_path).target() is None and load(tmp_path).target(5) == 5


def test_license_header_once_per_file(tmp_path):
    """A file's copyright/SPDX lines go with the first block taken from it, once, however many blocks follow."""
    build_all(TREES / "headers", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert text.count("# --- Inlined from vllm/lib.py") == 2   # one and two: two blocks (unused between)
    assert text.count("SPDX-License-Identifier") == 2
    assert text.count("Copyright lib authors") == 1 and text.count("Copyright main authors") == 1
    assert text.index("Copyright lib authors") < text.index("def one")
    assert load(tmp_path).target() == 3


def test_write_only_global_keeps_no_module_binding(tmp_path):
    # `_lazy_init` declares four globals: `_impl_a` is read, `_counter += 1` and `del _gone` read theirs, and
    # `_impl_b` is only assigned: its module-level `= None` is not needed (A7 would call it unreachable)
    g, _, _ = build_all(TREES / "write_only_global", tmp_path, "target")
    assert node_ids(g) == {"vllm/lazy.py::_impl_a", "vllm/lazy.py::_counter", "vllm/lazy.py::_gone",
                           "vllm/lazy.py::_lazy_init", "vllm/lazy.py::target"}
    m = load(tmp_path)
    assert m.target(-3) == 4 and m._impl_b is len


@pytest.mark.parametrize("symbol,with_attention", [("WithAttention", True), ("WithoutAttention", False)])
def test_extra_roots_method_roots_and_triggers(symbol, with_attention):
    # a method root keeps the method on reached classes and reaches no class; a root with a trigger applies
    # only once the trigger is reached (backend.py is reached for SIZE either way)
    from bundler_lib.graph import vllm as rules
    from bundler_lib.graph.index import TreeIndex
    from bundler_lib.variant import resolve as resolve_variant
    c = rules.closure(TreeIndex(TREES / "extra_roots"), {**resolve_variant(None), "model_facts": {}}, False)
    c.engine.build("vllm.layers", symbol)
    missing = c.engine.add_roots(["vllm/base.py::MethodBase.process", "vllm/attn.py::Attention.process",
                                  "vllm/backend.py::Backend", "vllm/gone.py::Nothing"], "test",
                                 {"vllm/backend.py::Backend": "vllm/attn.py::Attention"})
    names = {f"{n.file}::{x}" for n in c.engine.nodes.values() for x in n.names}
    assert missing == ["vllm/gone.py::Nothing"]
    assert "vllm/base.py::MethodBase" in names   # reached as Linear's base, not as a root
    assert ("vllm/attn.py::Attention" in names) is with_attention
    assert ("vllm/backend.py::Backend" in names) is with_attention
    assert "process" in c.engine.attr_names


def test_compiled_import_in_a_try_fails_as_without_the_extension(tmp_path):
    # `from vllm.compiled_allocator import ...` has no source in the tree: in the bundle it raises the
    # ModuleNotFoundError Python would, the rest of the try body is dead (Library is not reached) and the handler runs
    g, _, _ = build_all(TREES / "import_guard", tmp_path, "target")
    assert "vllm/wrapper.py::Library" not in node_ids(g)
    text = (tmp_path / "A2.inline.py").read_text()
    assert "raise ModuleNotFoundError(\"No module named 'vllm.compiled_allocator'" in text
    assert "Library()" not in text
    assert load(tmp_path).target() == (False, None, None)
    # a name of the failing import that the closure reads (behind the flag the handler sets) and the handler
    # does not bind becomes a function raising ImportError; one nothing reads gets none
    g, _, _ = build_all(TREES / "import_guard", tmp_path / "flag", "maybe_create")
    text = (tmp_path / "flag" / "A2.inline.py").read_text()
    assert "def fast_path(*args, **kwargs):" in text and "def init_module(" not in text
    m = load(tmp_path / "flag")
    assert m.maybe_create() is None
    with pytest.raises(ImportError, match="vllm.compiled_allocator.fast_path is compiled vLLM code"):
        m.fast_path()


def test_except_as_name_is_renamed_with_its_uses(tmp_path):
    # two modules bind `e` at module level (`except ... as e:`): the bundle renames one, at the `as` and its uses
    g, _, _ = build_all(TREES / "except_name", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert load(tmp_path).target() == ("a is missing", "b is missing")
    assert text.count(" as e:") == 1 and text.count(" as e_") == 1


def test_block_members_reached_name_by_name(tmp_path):
    # `exp` is read, `log` is not: the block keeps both `exp = ...` lines and drops both `log = ...` (so
    # fast_log is not reached); SCALE reads exp2 inside its own block, which keeps both `exp2 = ...` (both
    # branches live: IS_ROCM is not a decided predicate)
    g, _, _ = build_all(TREES / "block_members", tmp_path, "target")
    ids = node_ids(g)
    assert "vllm/helpers.py::fast_log" not in ids and "vllm/helpers.py::rocm_exp" in ids
    text = (tmp_path / "A2.inline.py").read_text()
    assert "log = " not in text and text.count("exp = math.exp") == 2 and "exp2 = math.exp" in text
    # defs, classes and external imports of a block are members too; an import in a `try` body is a probe and
    # stays
    assert "fast_json" not in text and "UnreadFallback" not in text and "class Unread" not in text
    assert "import zlib as probe_zlib" in text and "HAS_ZLIB = False" in text
    assert abs(load(tmp_path).target(0.0) - 2.718281828) < 1e-6


def test_block_keeps_the_op_function_the_closure_calls_and_drops_its_registrations(tmp_path):
    # an `if` block (vLLM's `if has_flashinfer():`) defines several custom ops; the closure calls one through
    # torch.ops.vllm: the block keeps that op's function only. Registrations (direct_register_custom_op, the
    # torch.library-decorated defs and their fakes) bind nothing a bundle reads (A5 calls the function directly)
    g, _, _ = build_all(TREES / "block_ops", tmp_path, "target")
    assert g["python_custom_ops"] == [{"op": "fast_concat", "target": "_fast_concat"}]
    text = (tmp_path / "A2.inline.py").read_text()
    assert "def _fast_concat(" in text
    for gone in ("_fast_concat_fake", "direct_register_custom_op", "fast_mm", "register_fake", "custom_op("):
        assert gone not in text, gone
    assert load(tmp_path).target(1) == 1


def test_flag_whose_other_binding_the_variant_pruned_is_decided(tmp_path):
    # FAST_ENABLED = False, and = True only in a branch the variant prunes: `if FAST_ENABLED and ...` is decided
    # False, so `fast` (bound only in the pruned branch) is never needed; PLAIN, a literal bound once, decides
    # nothing
    g, _, _ = build_all(TREES / "pruned_binding", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert "fast(x)" not in text and "def literal_helper" in text
    assert ("FAST_ENABLED and x > 0", False) in {(x["predicate"], x["value"]) for x in g["guards"]}
    assert load(tmp_path).target() == 2


def test_compile_decorator_gets_the_dims_it_infers_from_annotations(tmp_path):
    # vLLM's @support_torch_compile infers dynamic dims from forward's annotation objects; the bundle's postponed
    # annotations are strings: A1 writes the dims out, as the inference would find them
    g, _, _ = build_all(TREES / "compile_dims", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert "lambda config: config, dynamic_arg_dims={'positions': 0, 'x': 0}" in text
    assert "@support_torch_compile(dynamic_arg_dims={'x': 0})" in text
    assert load(tmp_path).target() == ({"positions": 0, "x": 0}, {"x": 0})


def test_own_distribution_version_is_the_trees(tmp_path):
    # the bundle is never installed: `version("vllm")` (importlib.metadata's) would raise PackageNotFoundError,
    # an ImportError, where vLLM finds itself; A1 answers it with the tree's version (vllm/_version.py), so
    # `"cpu" in version("vllm")` is decided False and the import it needed is left out
    g, _, _ = build_all(TREES / "dist_version", tmp_path, "target")
    text = (tmp_path / "A2.inline.py").read_text()
    assert 'version("vllm")' not in text and "importlib.metadata" not in text
    assert ("'cpu' in version('vllm')", False) in {(x["predicate"], x["value"]) for x in g["guards"]}
    assert load(tmp_path).target() == 6


def test_distribution_version_queried_at_run_time(tmp_path):
    """A `version("vllm")` call the bundle keeps (in a function, whose caller's test A1 cannot decide: vLLM 0.34's
    vllm_version_matches_substr, called at import inside `except Exception`) is replaced by the tree's version, in
    both spellings (`from importlib.metadata import version as v` in the function, `importlib.metadata.version` imported
    at module level); another
    distribution's (torch) is left to ask importlib.metadata."""
    g, _, _ = build_all(TREES / "dist_version", tmp_path, "target_at_run_time")
    text = (tmp_path / "A2.inline.py").read_text()
    assert 'dist_version("vllm")' not in text and 'importlib.metadata.version("vllm")' not in text
    assert 'importlib.metadata.version("torch")' in text
    assert sum("reads as '0.26.0'" in x for x in g["notes"]) == 2
    assert load(tmp_path).target_at_run_time() == (6, "0.26.0")


def test_import_time_gpu_query_the_variant_decides_is_its_value(tmp_path):
    """A module-level name bound at import to a test that queries the GPU (vLLM 0.34's flash-linear-attention
    utils: `is_nvidia_hopper = is_nvidia and ("NVIDIA H" in current_platform.get_device_name(0) or
    current_platform.get_device_capability(0).major >= 9)`), which the variant decides (sm_90; `is_nvidia` through
    a name bound to a cached function returning "nvidia" on CUDA), is bound to its value: importing the bundle
    queries no GPU (the bundle's platform asks torch.cuda, which initialises CUDA or fails without one)."""
    g, _, _ = build_all(TREES / "foreign_platform_queries", tmp_path, "target_hopper", variant={"cuda_capability": 90})
    text = (tmp_path / "A2.inline.py").read_text()
    assert "IS_HOPPER = True" in text and "current_platform.get_device_name(0)" not in text
    assert any("IS_HOPPER = True, as the variant decides" in x for x in g["notes"])
    assert load(tmp_path).target_hopper() is True


@pytest.mark.parametrize("cap, precision", [(90, None), (75, "ieee")])
def test_platform_queries_the_variant_answers(tmp_path, cap, precision):
    """On CUDA: a module-level `if`/`elif` of platform tests binding one name by import in each branch resolves to
    the taken branch's (vLLM's paged_attn.py: `ops` is _custom_ops, not xpu_ops); another platform's `-> bool`
    function (vllm.platforms.rocm's use_rocm_custom_paged_attention) is False, so a local bound only to it and to
    False is too, and the branch it chose goes; `get_device_capability() == (7, 5)` is the variant's capability."""
    g, _, _ = build_all(TREES / "foreign_platform_queries", tmp_path, "target", variant={"cuda_capability": cap})
    text = (tmp_path / "A2.inline.py").read_text()
    assert "xpu" not in text and "rocm_kernel" not in text and "get_device_capability" not in text
    assert ("use_custom_kernel(...)", False) in {(x["predicate"], x["value"]) for x in g["guards"]}
    m = load(tmp_path)
    assert m.target(1) == (("cuda", ("triton", 1)), precision)
    assert m.target(1, pow2=False) == (("cuda", ("triton", 1)), precision)
