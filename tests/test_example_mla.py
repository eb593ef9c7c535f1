"""The decode-only MLA template (example/mla.py) on a real layer: DeepseekV2's, built with TRITON_MLA from vLLM
0.26.0, run on CPU (cpu_build_check's H100 answers, its rotary on torch, the latent-cache write in torch, every
Triton launch recorded and skipped): the layer builds with the prefill selector stood in for, and its forward runs
vLLM's decode path through the attention: the latent cache written at the slots, TRITON_MLA's two decode kernels
launched with the metadata the example filled."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.stage_steps import build_bundle

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "models" / "transformers--deepseek_v2" / "config.json"

_RUN = '''
import json, re, sys, torch
sys.path.insert(0, sys.argv[2])
import cpu_build_check
cpu_build_check._as_h100()
path = sys.argv[1]
src = re.sub(r'raise RuntimeError\\("invocation_example: \\w+ runs on a CUDA GPU[^\\n]*', "pass", open(path).read())
mod = type(sys)("mla_bundle")
sys.modules[mod.__name__] = mod
exec(compile(cpu_build_check.on_native_paths(src), path, "exec"), mod.__dict__)
mod.PIN_MEMORY = False
torch.cuda.synchronize = lambda *a, **k: None
torch.cuda.mem_get_info = lambda *a, **k: (8 << 30, 8 << 30)
for v in list(mod.__dict__.values()):   # the rotary's CUDA op: its torch path
    if isinstance(v, type) and hasattr(v, "forward_native") and hasattr(v, "forward_cuda"):
        v.forward_cuda = v.forward_native
written = []

def concat_and_cache_mla(kv_c, k_pe, kv_cache, slot_mapping, kv_cache_dtype, scale):
    kv_cache.view(-1, kv_cache.shape[-1])[slot_mapping.long()] = torch.cat([kv_c, k_pe.squeeze(1)], -1)
    written.append((kv_cache, slot_mapping.clone(), torch.cat([kv_c, k_pe.squeeze(1)], -1).clone()))

mod.__dict__[sys.argv[3]] = concat_and_cache_mla
launched, seen = [], []
cpu_build_check._record_launches(mod, launched, seen)
try:
    mod.invocation_example(small=True)
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
md = next(iter(seen[0].attn_metadata.values())) if seen else None
cache, slots, rows = written[0]
print(json.dumps({"launched": launched, "error": error, "metadata": type(md).__name__,
                  "decodes": [md.num_decodes, md.num_decode_tokens, md.num_prefills, md.prefill is None],
                  "seq_lens": md.decode.seq_lens.tolist(), "cache": list(cache.shape),
                  "written": bool(torch.equal(cache.view(-1, cache.shape[-1])[slots.long()], rows))}))
'''


@pytest.fixture(scope="module")
def mla_bundle(tmp_path_factory, vllm_0_26_0, runtime_python) -> Path:
    out = tmp_path_factory.mktemp("mla")
    report = build_bundle(vllm_0_26_0, out, "DeepseekV2DecoderLayer", "transformers/deepseek_v2", CONFIG,
                          runtime_python, {"attention_backend": "TRITON_MLA"})
    assert report["status"] == "ok"
    return out


def test_mla_decode_runs_through_the_attention_on_cpu(mla_bundle, runtime_python):
    # the wrapper A4 writes for the compiled op _C_cache_ops::concat_and_cache_mla
    concat = "_C_cache_ops_concat_and_cache_mla"
    assert f"def {concat}(" in (mla_bundle / "DeepseekV2DecoderLayer.py").read_text()
    proc = subprocess.run([str(runtime_python), "-c", _RUN, str(mla_bundle / "DeepseekV2DecoderLayer.py"),
                           str(ROOT / "tools"), concat], capture_output=True, text=True, timeout=600, cwd=mla_bundle)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["launched"][:2] == ["_fwd_grouped_kernel_stage1", "_fwd_kernel_stage2"], row
    assert row["metadata"] == "MLACommonMetadata" and row["decodes"] == [2, 2, 0, True]
    assert row["seq_lens"] == [65, 65] and row["cache"][1:] == [16, 576] and row["written"]
