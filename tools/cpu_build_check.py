"""Without a GPU: run a decoder-layer bundle's invocation_example() up to the built layer (construction, weights,
process_weights_after_loading), to check A6's config and state stand-ins on CPU before a GPU run.

    python tools/cpu_build_check.py bundles_out/zoo/0.26.0/Olmo3DecoderLayer.py [...]

The example's CUDA check is skipped and torch.cuda answers what layers ask while being built as an H100 would
(capability 9.0, one device, streams that do nothing); the example stops where it would first touch the GPU
(its memory query before sizing the KV cache). Prints per bundle `BUILT` with the attention layers found and the
config values the example assumed, or `FAILED` with the example's one-line error. Nothing runs a kernel: a
layer that builds here may still fail its forward on the GPU.

    python tools/cpu_build_check.py --to-kernel [--workload prefill|decode] [--tokens N] [--batch N] [--context N] \
        bundles_out/zoo/0.26.0/Mamba2DecoderLayer.py [...]

goes on through the forward: the GPU's memory query answers 80 GiB free; the example sizes its inputs, allocates the
KV cache and the recurrent (mamba/conv) state, builds the metadata and runs the layer's forward with vLLM's custom
ops on their native (torch) paths and every Triton launch recorded and skipped (its outputs keep whatever their
buffers held), so the Python around the kernels runs: the metadata fields each layer reads, the shapes it splits
and views. It stops at the first CUDA op of the bundle (which needs a GPU) or at the example's own check of the
output's values. Prints `FORWARD` (or `STOPPED` with the error) with the Triton kernels launched in order, the
state bound to each layer and the metadata in the forward context (per layer name: its class and fields).

    python tools/cpu_build_check.py --meta-over 2 bundles_out/zoo/0.26.0/FlashDecoderLayer.py

makes each tensor of more than 2 GiB that torch.empty/zeros/ones/rand/randn create on the meta device (shape and
dtype kept, no memory): a layer whose model-size weights exceed this machine's memory (LongCat-Flash's 512 experts:
24 GiB) is built all the same; a forward over such weights computes nothing, so use it to check the build.
"""

import ast
import math
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
    # an H100 SXM's: 132 SMs (TRITON_MLA sizes its KV splits by them), 80 GiB
    torch.cuda.get_device_properties = lambda *a, **k: types.SimpleNamespace(
        name="NVIDIA H100 (cpu_build_check)", major=9, minor=0, multi_processor_count=132, total_memory=80 << 30)


def tensors_over_on_meta(gib: float) -> None:
    """torch's factories put a tensor of more than `gib` GiB (a shape of ints, its dtype's size) on the meta device."""
    limit = gib * (1 << 30)

    def wrap(factory):
        def made(*size, **kw):
            shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
            itemsize = (kw.get("dtype") or torch.get_default_dtype()).itemsize
            if shape and all(isinstance(n, int) for n in shape) and math.prod(shape) * itemsize > limit:
                kw["device"] = "meta"
            return factory(*size, **kw)
        return made

    for name in ("empty", "zeros", "ones", "rand", "randn"):
        setattr(torch, name, wrap(getattr(torch, name)))


class NotDecoderLayerExample(Exception):
    pass


def build(path: str):
    """(the bundle's module, its layer, its attention layers, the config values assumed, the layer's prefix): the
    bundle's invocation_example(small=True) run on CPU up to the built layer. The example's own error propagates;
    NotDecoderLayerExample where the bundle has no decoder-layer example; RuntimeError where it returns before sizing
    its inputs."""
    src = open(path).read()
    src, n = re.subn(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    if not n or "# 4. Shapes" not in src:
        raise NotDecoderLayerExample(path)
    i = src.index("torch.cuda.synchronize()", src.index("# 4. Shapes"))
    src = (src[:i] + "raise _Built(layer, attn_layers, config_assumed, prefix)"
           + src[i + len("torch.cuda.synchronize()"):])
    mod = _exec_bundle(src, path, _Built=_Built)
    try:
        mod.invocation_example(small=True)
    except _Built as e:
        return (mod, *e.args)
    raise RuntimeError("the example returned before sizing its inputs")


def _exec_bundle(src: str, path: str, **names) -> types.ModuleType:
    """The bundle's text `src` run as a module (its __file__ `path`, registered in sys.modules: dataclasses in the
    bundle look their module up), with `names` defined before it runs."""
    name = "cpu_build_check_bundle_" + re.sub(r"\W", "_", path)
    mod = types.ModuleType(name)
    mod.__file__ = path
    sys.modules[name] = mod
    mod.__dict__.update(names)
    exec(compile(src, path, "exec"), mod.__dict__)
    return mod


def check(path: str) -> str:
    try:
        _mod, layer, attn, assumed, _prefix = build(path)
    except NotDecoderLayerExample:
        return f"SKIPPED {path}: not a decoder-layer example"
    except Exception as e:  # the example's own one-line error is the result
        return f"FAILED {type(e).__name__}: {e}"
    return f"BUILT {type(layer).__name__}: {len(attn)} attention layer(s); config assumed: {assumed}"


def _record_launches(mod: types.ModuleType, launched: list, seen: list):
    """Every Triton launch appends the kernel's name to `launched` and does nothing; the first records the forward
    context then set (the bundle's module state) in `seen`."""
    from triton.runtime import autotuner, jit

    def launch(self, *a, **k):
        fn = self
        while not hasattr(fn, "__name__") and hasattr(fn, "fn"):
            fn = fn.fn
        launched.append(getattr(fn, "__name__", type(self).__name__))
        if not seen:
            seen.extend([v for v in list(mod.__dict__.values()) if getattr(v, "_path", None) == "forward_context"][:1])

    jit.JITFunction.run = autotuner.Autotuner.run = autotuner.Heuristics.run = launch


def _summary(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype}{list(value.shape)}".replace("torch.", "")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_summary(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_summary(v) for v in value) + ")"
    return repr(value)


def _context_summary(fwd) -> str:
    layers = getattr(fwd, "no_compile_layers", None) or {}
    state = {k: _summary(m.kv_cache) for k, m in layers.items() if isinstance(getattr(m, "kv_cache", None), tuple)}
    md = {k: f"{type(v).__name__}({_summary({f: x for f, x in vars(v).items() if x is not None})})"
          for k, v in (getattr(fwd, "attn_metadata", None) or {}).items()}
    return f"state {state}; metadata {md}"


def _forward_context_in(exc: BaseException) -> list:
    """The forward context a frame of the exception's traceback (or its cause's) holds, as a list of at most one."""
    while exc is not None:
        tb = exc.__traceback__
        while tb is not None:
            found = [v for v in tb.tb_frame.f_locals.values() if getattr(v, "_path", None) == "forward_context"]
            if found:
                return found[:1]
            tb = tb.tb_next
        exc = exc.__cause__
    return []


def check_to_kernel(path: str) -> str:
    src = open(path).read()
    src, n = re.subn(r'raise RuntimeError\("invocation_example: \w+ runs on a CUDA GPU[^\n]*', "pass", src)
    if not n:
        return f"SKIPPED {path}: not a decoder-layer example"
    mod = _exec_bundle(on_native_paths(src), path)
    if "PIN_MEMORY" in mod.__dict__:
        mod.PIN_MEMORY = False  # vLLM's pinned host buffers need a GPU
    launched, seen = [], []
    _record_launches(mod, launched, seen)
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.mem_get_info = lambda *a, **k: (80 << 30, 80 << 30)
    try:
        mod.invocation_example(small=True, **_workload_args())
        outcome = "FORWARD ran"
    except AssertionError as e:  # the example's output check reads the skipped kernels' buffers
        outcome = f"FORWARD ran to the output check ({e}: the kernels were skipped)"
    except Exception as e:
        outcome = f"STOPPED {type(e).__name__}: {str(e).split('. Stand-in config defaults')[0]}"
        seen = seen or _forward_context_in(e)
    return f"{outcome}; Triton kernels launched: {launched}; " + (_context_summary(seen[0]) if seen else "")


def on_native_paths(src: str) -> str:
    """The bundle's text with vLLM's custom ops and IR ops on their torch paths: `custom_ops=['none']`, and
    `_bundle_ir_op_priority` (a list, or a dict of op -> list) naming only `native`."""
    def native(m: re.Match) -> str:
        value = ast.literal_eval(m.group(1))
        value = {op: ["native"] for op in value} if isinstance(value, dict) else ["native"]
        return f"_bundle_ir_op_priority = {value!r}"

    src = src.replace("custom_ops=['all']", "custom_ops=['none']")
    return re.sub(r"^_bundle_ir_op_priority = (.*)$", native, src, flags=re.M)


def _workload_args() -> dict:
    """--workload prefill|decode, --tokens N, --batch N, --context N as invocation_example's arguments."""
    out, argv = {}, sys.argv[1:]
    for key in ("workload", "tokens", "batch", "context"):
        if f"--{key}" in argv:
            v = argv[argv.index(f"--{key}") + 1]
            out[key] = v if key == "workload" else int(v)
    return out


if __name__ == "__main__":
    _as_h100()
    args = sys.argv[1:]
    if "--meta-over" in args:
        tensors_over_on_meta(float(args[args.index("--meta-over") + 1]))
    paths = [a for i, a in enumerate(args) if not a.startswith("--") and not (i and args[i - 1] in (
        "--workload", "--tokens", "--batch", "--context", "--meta-over"))]
    for p in paths:
        print(check_to_kernel(p) if "--to-kernel" in args else check(p), flush=True)
