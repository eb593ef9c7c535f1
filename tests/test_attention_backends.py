"""The variant's attention backend (issue 20): TRITON_ATTN, FLEX_ATTENTION or (an MLA-only layer) TRITON_MLA. A1
keeps the chosen backend's classes only (bound for vLLM's by-name import, its branches decided), A6 builds that
backend's metadata, and a FLEX_ATTENTION bundle's attention agrees with torch SDPA on CPU."""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.stage_steps import build_bundle
from bundler_lib.common.example_roots import BACKEND_ROOTS
from bundler_lib.errors import StageError
from bundler_lib.example import attention_metadata, decoder, state
from bundler_lib.variant import CHOICES, resolve
from tests.test_closure_helpers import TREES, build_all, load, node_ids
from tests.triton_interpreter import PREAMBLE

ROOT = Path(__file__).resolve().parents[1]
QWEN3 = "Qwen/Qwen3-30B-A3B"
QWEN3_CONFIG = ROOT / "models" / "Qwen--Qwen3-30B-A3B" / "config.json"
BACKENDS = CHOICES["attention_backend"][1]


def test_variant_takes_each_backend_and_refuses_another_in_one_line():
    assert resolve(None)["attention_backend"] == "TRITON_ATTN"
    assert resolve({"attention_backend": "FLEX_ATTENTION"})["attention_backend"] == "FLEX_ATTENTION"
    with pytest.raises(StageError) as e:
        resolve({"attention_backend": "FLASH_ATTN"})
    msg = str(e.value)
    assert "\n" not in msg and "attention_backend='FLASH_ATTN'" in msg
    assert "allowed values for attention_backend: 'TRITON_ATTN', 'TRITON_ATTN_DIFFKV', 'FLEX_ATTENTION'" in msg


FLEX_128 = {"attention_backend": "FLEX_ATTENTION", "flex_attn_q_block_size": 128, "flex_attn_kv_block_size": 128,
            "flex_attn_block_m": 128, "flex_attn_block_n": 64}


@pytest.mark.parametrize("variant, needles", [
    ({"flex_attn_block_m": 64}, ["flex_attn_block_m=64", "only with attention_backend FLEX_ATTENTION, not TRITON_ATTN"]),
    ({**FLEX_128, "flex_attn_q_block_size": None}, ["flex_attn_q_block_size=None", "expected an integer"]),
    ({"attention_backend": "FLEX_ATTENTION", "flex_attn_block_m": 64},
     ["flex_attn_block_m=64", "flex_attn_q_block_size (16, its default) divisible by it"]),
    ({**FLEX_128, "flex_attn_kv_block_size": 32}, ["flex_attn_block_n=64", "flex_attn_kv_block_size (32) divisible"]),
    ({**FLEX_128, "flex_attn_block_n": 48}, ["flex_attn_block_n=48", "allowed values for flex_attn_block_n: 16, 32"]),
    ({**FLEX_128, "flex_attn_block_n": "x"}, ["flex_attn_block_n='x'", "expected an integer", "such as 16"]),
])
def test_flex_knobs_follow_vllms_rules(variant, needles):
    """vLLM's FlexAttention knobs (its attention_config flex_attn_*): unset, vLLM's defaults; given, checked by vLLM's
    own rules (FlexAttentionMetadataBuilder._get_block_sizes) before any stage runs, one line each."""
    assert {k: v for k, v in resolve(FLEX_128).items() if k.startswith("flex_")} == {
        k: v for k, v in FLEX_128.items() if k.startswith("flex_")}
    assert resolve({"flex_attn_block_m": "32", "flex_attn_q_block_size": 64,
                    "attention_backend": "FLEX_ATTENTION"})["flex_attn_block_m"] == 32
    assert all(resolve(None)[k] is None for k in FLEX_128 if k.startswith("flex_"))
    with pytest.raises(StageError) as e:
        resolve(variant)
    msg = str(e.value)
    assert "\n" not in msg and "Remedy" in msg and all(n in msg for n in needles), msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_has_roots_and_a_metadata_template(backend):
    variant = {"attention_backend": backend}
    assert BACKEND_ROOTS[backend] and f"({backend})" in attention_metadata.snippet(variant)
    assert set(attention_metadata.required(variant)) <= set(state.roles({"variant": variant}))


def test_a1_decides_and_binds_the_variant_backend(tmp_path, monkeypatch):
    """On a tiny tree: `backend == AttentionBackendEnum.X` is decided by the variant, and vLLM's by-name import
    resolves to the chosen backend's class only."""
    g, _, _ = build_all(TREES / "variant_guards", tmp_path, "target", variant={"attention_backend": "FLEX_ATTENTION"})
    ids = node_ids(g)
    assert "vllm/helpers.py::flex_helper" in ids
    assert "vllm/v1/attention/backends/flex_attention.py::FlexAttentionBackend" in ids
    assert not any("triton_attn" in i or "flash_attn" in i for i in ids)
    assert ("backend == AttentionBackendEnum.FLEX_ATTENTION", True) in {(x["predicate"], x["value"])
                                                                         for x in g["guards"]}
    monkeypatch.setenv("VLLM_FROM_ENV", "0")
    m = load(tmp_path)
    assert m.target(backend=m.AttentionBackendEnum.FLEX_ATTENTION) == ("plain+auto+flex", "flex")
    with pytest.raises(ImportError, match="not in this bundle"):
        m.resolve_obj_by_qualname("vllm.v1.attention.backends.triton_attn.TritonAttentionBackend")


def test_a1_gives_an_mla_only_layer_the_mla_backend(tmp_path):
    """A layer whose closure reaches vLLM's MLAAttention and not its Attention is built with TRITON_MLA (the other
    backends refuse use_mla), said in a note; one reaching both keeps the variant's backend."""
    from bundler_lib import graph as a1
    g = a1.run(tree=TREES / "mla_only", out=tmp_path / "mla", symbol="MlaDecoderLayer")
    assert g["variant"]["attention_backend"] == "TRITON_MLA"
    assert any(n.startswith("attention_backend TRITON_ATTN -> TRITON_MLA: ") for n in g["notes"])
    g = a1.run(tree=TREES / "mla_only", out=tmp_path / "both", symbol="BothDecoderLayer")
    assert g["variant"]["attention_backend"] == "TRITON_ATTN" and not any("TRITON_MLA" in n for n in g["notes"])
    # reaching Attention only through the model loader's isinstance checks builds none (H100: DeepseekV2Eagle3's
    # layer built under TRITON_ATTN, 'MLA not supported')
    g = a1.run(tree=TREES / "mla_only", out=tmp_path / "draft", symbol="DraftDecoderLayer")
    assert "vllm/model_executor/layers/attention/attention.py::Attention" in {n["id"] for n in g["python_nodes"]}
    assert g["variant"]["attention_backend"] == "TRITON_MLA"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "TRITON_MLA"])
def test_a1_keeps_the_chosen_backend_on_the_real_tree(tmp_path, vllm_0_26_0, backend):
    """Qwen3DecoderLayer: the chosen backend's roots (and what its metadata template uses) are in the closure, no
    other backend's module is."""
    from bundler_lib import graph as a1
    g = a1.run(tree=vllm_0_26_0, out=tmp_path, symbol="Qwen3DecoderLayer", variant={"attention_backend": backend},
               model_config=QWEN3_CONFIG)
    ids, files = node_ids(g), {n["file"] for n in g["python_nodes"]}
    # which model the example builds (A5 keys the namespaces on it)
    assert g["model_config_sha256"] == hashlib.sha256(Path(QWEN3_CONFIG).read_bytes()).hexdigest()
    chosen = {r.split("::")[0] for r in BACKEND_ROOTS[backend]}  # TRITON_ATTN_DIFFKV's: triton_attn.py's too
    for b, roots in BACKEND_ROOTS.items():
        backend_file = roots[0].split("::")[0]
        assert (backend_file in files) is (backend_file in chosen), (b, backend_file)
    defs = {r if "." not in r.split("::")[1] else r.rsplit(".", 1)[0] for r in BACKEND_ROOTS[backend]}
    assert defs <= ids, defs - ids
    qual = next(n for n in g["notes"] if n.startswith("resolve_obj_by_qualname("))
    assert qual.endswith(f"variant attention_backend={backend}")
    found, _ = state.resolve(g)
    assert [r for r in decoder.REQUIRED + attention_metadata.required(g["variant"]) if not found[r]] == []


# Both backends' CPU checks: the bundle (argv[1]) loaded as on an H100 (cpu_build_check's answers, tools/ at argv[2],
# emitted names argv[3], cases argv[4]); `_EXEC` runs it after an optional rewrite of `src`.
_LOAD = textwrap.dedent('''
    import json, re, sys, torch
    import torch.nn.functional as F
    sys.path.insert(0, sys.argv[2])
    import cpu_build_check
    cpu_build_check._as_h100()
    path, names = sys.argv[1], json.loads(sys.argv[3])
    src = re.sub(r'raise RuntimeError\\("invocation_example: \\w+ runs on a CUDA GPU[^\\n]*', "pass", open(path).read())
''')
_EXEC = textwrap.dedent('''
    mod = type(sys)("cpu_bundle")
    sys.modules[mod.__name__] = mod
    exec(compile(src, path, "exec"), mod.__dict__)
    mod.PIN_MEMORY = False
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.mem_get_info = lambda *a, **k: (8 << 30, 8 << 30)


    def sdpa_rel_err(got, q, k, v, ctx, n, scale):
        """One sequence's attention output `got` and query `q` ([n, H, D]) against SDPA over its k, v
        ([H_kv, ctx + n, D]), causal after the context: the largest error relative to the output's largest value."""
        causal = torch.arange(ctx + n)[None, :] <= (ctx + torch.arange(n))[:, None]
        ref = F.scaled_dot_product_attention(q.transpose(0, 1).float(), k, v, attn_mask=causal, scale=scale,
                                             enable_gqa=True)
        return ((got.float().transpose(0, 1) - ref).abs().max() / ref.abs().max()).item()
''')


# FLEX_ATTENTION: the KV cache write (a CUDA op) in torch, flex_attention eager; each case's attention output
# against SDPA over the context and the new tokens.
_COMPARE = _LOAD + _EXEC + textwrap.dedent('''
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    impl = getattr(mod, names["FlexAttentionImpl"])
    setattr(mod, names["flex_attention_compiled"], flex_attention)
    setattr(mod, names["create_block_mask_compiled"], create_block_mask)
    seen, forward = [], impl.forward

    def kv_write(self, layer, key, value, kv_cache, slot_mapping):
        flat = kv_cache.transpose(1, 2).flatten(0, 1)
        flat[slot_mapping, :, :self.head_size] = key
        flat[slot_mapping, :, self.head_size:] = value

    def recorded(self, layer, query, key, value, kv_cache, md, output, *a, **k):
        out = forward(self, layer, query, key, value, kv_cache, md, output, *a, **k)
        seen.append((self, query.clone(), kv_cache, md, out.clone()))
        return out

    impl.do_kv_cache_update, impl.forward = kv_write, recorded
    for case in json.loads(sys.argv[4]):
        ex = mod.invocation_example(small=True, **case)
        self, q, kv, md, out = seen[-1]
        B, n, ctx, bs = (ex["sizes"][k] for k in ("B", "new_tokens", "context", "block_size"))
        flat = kv.transpose(1, 2).flatten(0, 1)
        err = 0.0
        for b in range(B):
            idx = (md.block_table[b].long()[:, None] * bs + torch.arange(bs)).reshape(-1)[:ctx + n]
            k, v = (flat[idx, :, s].transpose(0, 1).float() for s in (slice(0, self.head_size),
                                                                       slice(self.head_size, None)))
            err = max(err, sdpa_rel_err(out[b * n:(b + 1) * n], q[b * n:(b + 1) * n], k, v, ctx, n, self.scale))
        print(json.dumps({"case": case, "sizes": ex["sizes"], "metadata": type(md).__name__, "rel_err": err,
                          "blocks": list(md.block_mask.BLOCK_SIZE), "direct_build": md.direct_build}))
''')


# (the variant's flex_attn_* knobs, the block mask's block sizes and whether vLLM builds it from the block table,
# the vLLM version: 0.34.0 is one the project was not developed against)
FLEX_CASES = {"vllm-defaults": ({}, [16, 16], True, "0_26_0"),
              "flex128": ({k: v for k, v in FLEX_128.items() if k.startswith("flex_")}, [128, 128], False, "0_26_0"),
              "vllm-0.34.0": ({}, [16, 16], True, "0_34_0")}


@pytest.fixture(scope="module", params=sorted(FLEX_CASES))
def flex_bundle(request, tmp_path_factory, runtime_python):
    """Qwen3DecoderLayer with FLEX_ATTENTION, A0 to A7 (strict), its norm and rotary on their torch paths (their
    CUDA kernels need a GPU): with vLLM's default knobs, with the 128-token blocks of targets:*_flex128, and of
    vLLM 0.34.0."""
    knobs, blocks, direct, version = FLEX_CASES[request.param]
    out = tmp_path_factory.mktemp("flex")
    variant = {"attention_backend": "FLEX_ATTENTION", "custom_ops": "disabled", "ir_op_priority": "native", **knobs}
    tree = request.getfixturevalue(f"vllm_{version}")
    report = build_bundle(tree, out, "Qwen3DecoderLayer", QWEN3, QWEN3_CONFIG, runtime_python, variant)
    assert report["status"] == "ok"
    return out, blocks, direct


def test_flex_attention_matches_sdpa_on_cpu(flex_bundle):
    """Prefill (40 tokens: not a whole number of blocks), decode over a context, and a chunk of new tokens after a
    context: the metadata vLLM's FlexAttention builder makes from the example's batch, over the paged KV cache,
    gives SDPA's attention (bf16), with the block mask the variant's knobs ask for (128-token blocks: built by
    create_block_mask over the cache, not from the block table). Run by the toolchain's interpreter (same torch as
    the bundle runtime): the builder's async_tensor_h2d reads `np.ndarray`, and numpy is an optional package the
    bundle runtime lacks."""
    flex_bundle, blocks, direct = flex_bundle
    names = state.emit_names(json.loads((flex_bundle / "A1.graph.json").read_text()))
    flex = "vllm/v1/attention/backends/flex_attention.py"
    names = {n: names[(flex, n)] for n in ("FlexAttentionImpl", "flex_attention_compiled", "create_block_mask_compiled")}
    cases = [{"workload": "prefill", "tokens": 40}, {"workload": "decode", "batch": 3, "context": 50},
             {"workload": "decode", "tokens": 3, "batch": 2, "context": 37}]
    proc = subprocess.run([sys.executable, "-c", _COMPARE, str(flex_bundle / "Qwen3DecoderLayer.py"),
                           str(ROOT / "tools"), json.dumps(names), json.dumps(cases)],
                          capture_output=True, text=True, timeout=600, cwd=flex_bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["case"] for r in rows] == cases
    assert all(r["metadata"] == "FlexAttentionMetadata" for r in rows)
    assert all(r["blocks"] == blocks and r["direct_build"] is direct for r in rows), rows
    assert all(r["rel_err"] < 2e-2 for r in rows), rows


# ROCM_ATTN's example on CPU: its Triton kernels (prefix_prefill's prefill, the paged decode kernel) in Triton's
# interpreter (the example in float16), the KV cache write (vLLM's reshape_and_cache, a CUDA op) in torch into the backend's paged layout;
# each case's attention output against SDPA over the cache's context and new tokens, and the example's context
# (`inputs["kv_cache"]`, the other backends' layout) against what the backend's cache holds.
_ROCM_COMPARE = PREAMBLE + _LOAD + textwrap.dedent('''
    # the example in float16 (tests/triton_interpreter.py)
    src = re.sub(r"\\n    dtype = getattr\\(torch, 'bfloat16'.*", "\\n    dtype = torch.float16", src)
''') + _EXEC + textwrap.dedent('''
    impl, paged = getattr(mod, names["RocmAttentionImpl"]), getattr(mod, names["PagedAttention"])
    seen, forward = [], impl.forward

    def logical(self, kv_cache):
        """[blocks, H_kv, block_size, Dh] K and V of the backend's paged cache."""
        k, v = paged.split_kv_cache(kv_cache, self.num_kv_heads, self.head_size)
        return k.permute(0, 1, 3, 2, 4).flatten(-2), v.transpose(2, 3)

    def kv_write(self, layer, key, value, kv_cache, slot_mapping):
        k, v = paged.split_kv_cache(kv_cache, self.num_kv_heads, self.head_size)
        blk, off = slot_mapping // v.shape[3], slot_mapping % v.shape[3]
        k[blk, :, :, off, :] = key.view(key.shape[0], key.shape[1], k.shape[2], k.shape[4])
        v[blk, :, :, off] = value

    def recorded(self, layer, query, key, value, kv_cache, md, output, *a, **k):
        out = forward(self, layer, query, key, value, kv_cache, md, output, *a, **k)
        seen.append((self, query.clone(), kv_cache, md, out.clone()))
        return out

    impl.do_kv_cache_update, impl.forward = kv_write, recorded
    for case in json.loads(sys.argv[4]):
        ex = mod.invocation_example(small=True, **case)
        self, q, kv, md, out = seen[-1]
        B, n, ctx, bs = (ex["sizes"][k] for k in ("B", "new_tokens", "context", "block_size"))
        K, V = logical(self, kv)
        given = ex["inputs"]["kv_cache"]
        err, ctx_same = 0.0, True
        for b in range(B):
            blocks = md.block_table[b].long()
            k, v = (c[blocks].transpose(0, 1).flatten(1, 2)[:, :ctx + n].float() for c in (K, V))
            g = given[blocks].transpose(0, 1).flatten(1, 2)[:, :ctx]
            ctx_same &= torch.equal(g[..., :self.head_size], K[blocks].transpose(0, 1).flatten(1, 2)[:, :ctx])
            ctx_same &= torch.equal(g[..., self.head_size:], V[blocks].transpose(0, 1).flatten(1, 2)[:, :ctx])
            err = max(err, sdpa_rel_err(out[b * n:(b + 1) * n], q[b * n:(b + 1) * n], k, v, ctx, n, self.scale))
        print(json.dumps({"case": case, "metadata": type(md).__name__, "rel_err": err, "context_same": ctx_same}))
''')


@pytest.fixture(scope="module")
def rocm_bundle(tmp_path_factory, vllm_0_26_0, runtime_python) -> Path:
    """Qwen3DecoderLayer with ROCM_ATTN, A0 to A7 (strict), its norm and rotary on their torch paths."""
    out = tmp_path_factory.mktemp("rocm")
    variant = {"attention_backend": "ROCM_ATTN", "custom_ops": "disabled", "ir_op_priority": "native"}
    report = build_bundle(vllm_0_26_0, out, "Qwen3DecoderLayer", QWEN3, QWEN3_CONFIG, runtime_python, variant)
    assert report["status"] == "ok"
    return out


def test_rocm_attn_bundle_has_no_rocm_only_path(rocm_bundle):
    """vLLM's ROCm-only kernels sit behind `use_rocm_custom_paged_attention` (vllm.platforms.rocm) and a module-level
    `if is_cuda_alike(): ops = _custom_ops / elif is_xpu(): ops = xpu_ops`: A1 decides both for CUDA."""
    text = (rocm_bundle / "Qwen3DecoderLayer.py").read_text()
    assert "paged_attention_rocm" not in text and "xpu_ops" not in text and "_rocm_C" not in text
    assert "reshape_and_cache(" in text   # _custom_ops' KV cache write, the CUDA op


def test_rocm_attn_matches_sdpa_on_cpu(rocm_bundle):
    """Prefill (40 tokens: not a whole number of blocks) and decode over a context: the metadata ROCM_ATTN's own
    builder makes, its Triton kernels over its paged cache, give SDPA's attention (fp16); the example's context in
    the common layout is what the backend's cache holds."""
    names = state.emit_names(json.loads((rocm_bundle / "A1.graph.json").read_text()))
    names = {"RocmAttentionImpl": names[("vllm/v1/attention/backends/rocm_attn.py", "RocmAttentionImpl")],
             "PagedAttention": names[("vllm/v1/attention/ops/paged_attn.py", "PagedAttention")]}
    cases = [{"workload": "prefill", "tokens": 40}, {"workload": "decode", "batch": 2, "context": 37}]
    proc = subprocess.run([sys.executable, "-c", _ROCM_COMPARE, str(rocm_bundle / "Qwen3DecoderLayer.py"),
                           str(ROOT / "tools"), json.dumps(names), json.dumps(cases)],
                          capture_output=True, text=True, timeout=900, cwd=rocm_bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["case"] for r in rows] == cases
    assert all(r["metadata"] == "RocmAttentionMetadata" and r["context_same"] for r in rows), rows
    assert all(r["rel_err"] < 2e-2 for r in rows), rows


def test_a_backend_with_its_own_kv_layout_has_no_multi_gpu_example():
    """ROCM_ATTN's paged cache is not the layout whose heads the multi-GPU example fills per rank: with tp > 1 the
    example names that in one line (a standard-layout backend keeps its multi-GPU example)."""
    def missing(variant):
        return attention_metadata.unsupported({"python_nodes": [], "variant": variant})

    msg = missing({"attention_backend": "ROCM_ATTN", "tp": 2})
    assert len(msg) == 1 and "ROCM_ATTN on several GPUs" in msg[0] and "tp=1" in msg[0] and "\n" not in msg[0]
    assert missing({"attention_backend": "ROCM_ATTN"}) == missing({"attention_backend": "TRITON_ATTN", "tp": 2}) == []
