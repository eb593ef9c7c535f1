"""Without a GPU: run a decoder-layer bundle's invocation_example() up to the built layer (construction, weights,
process_weights_after_loading), to check A6's config and state stand-ins on CPU before a GPU run.

    python tools/cpu_build_check.py bundles_out/zoo/0.26.0/Olmo3DecoderLayer.py [...]

The example's CUDA check is skipped and torch.cuda answers what layers ask while being built as an H100 would
(capability 9.0, one device, streams that do nothing); the example stops where it would first touch the GPU
(its memory query before sizing the KV cache). Prints per bundle `BUILT` with the attention layers found and the
config values the example assumed, or `FAILED` with the example's one-line error. Nothing runs a kernel: a
layer that builds here may still fail its forward on the GPU.
"""

import re
import sys
import types

import torch


class _Built(Exception):
    pass


class _Stream:
    def __init__(self, *a, **k):
        pass

    def wait_stream(self, stream):
        pass


def _as_h100():
    torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
    torch.cuda.get_device_name = lambda *a, **k: "NVIDIA H100 (cpu_build_check)"
    torch.cuda.device_count = lambda: 1
    torch.cuda.current_device = lambda: 0
    torch.cuda.Stream = _Stream


def check(path: str) -> str:
    src = open(path).read()
    src, n = re.subn(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    if not n or "# 4. Shapes" not in src:
        return f"SKIPPED {path}: not a decoder-layer example"
    i = src.index("torch.cuda.synchronize()", src.index("# 4. Shapes"))
    src = src[:i] + "raise _Built(layer, attn_layers, config_assumed)" + src[i + len("torch.cuda.synchronize()"):]
    name = "cpu_build_check_bundle_" + re.sub(r"\W", "_", path)
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # dataclasses in the bundle look their module up
    mod.__dict__["_Built"] = _Built
    exec(compile(src, path, "exec"), mod.__dict__)
    try:
        mod.invocation_example(small=True)
    except _Built as e:
        layer, attn, assumed = e.args
        return f"BUILT {type(layer).__name__}: {len(attn)} attention layer(s); config assumed: {assumed}"
    except Exception as e:  # the example's own one-line error is the result
        return f"FAILED {type(e).__name__}: {e}"
    return "FAILED: the example returned before sizing its inputs"


if __name__ == "__main__":
    _as_h100()
    for p in sys.argv[1:]:
        print(check(p), flush=True)
