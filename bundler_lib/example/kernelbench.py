"""A6 KernelBench export: `<bundle>.kernelbench.py`, a KernelBench reference problem for a decoder-layer bundle.

KernelBench (github.com/ScalingIntelligence/KernelBench, `src/kernelbench/eval.py`) loads a reference by
`exec(source, context)` of its text, then `Model(*get_init_inputs())` under `torch.no_grad()`, moves the model
and each tensor of `get_inputs()` to the GPU, cast to its `precision`, and compares `model(*inputs)`, one tensor,
with the candidate's. The file written here is such a reference:

- `Model(workload, batch, tokens, context)` builds the layer with its runtime context (vLLM config state,
  forward context, the attention backend's metadata, a filled KV cache) through the bundle's own
  `invocation_example(...)`, which also runs one forward; `Model.forward(hidden_states)` re-runs the layer in
  that context through the example's `forward` and returns `hidden_states + residual` (the residual stream
  after the layer, what a transformers decoder layer returns); moving or casting the Model leaves the layer where
  and as the example built it (its kernels expect its dtypes): KernelBench's `precision` casts input and output;
- `get_init_inputs()` gives those sizes, `get_inputs()` the `[T, H]` hidden states (T = batch * tokens), with the
  model's H; positions, metadata and cache are context, not inputs (KernelBench casts every input tensor to its
  float precision).

The bundle is embedded, not imported from beside the file: KernelBench reads a reference as text and `exec`s it
with no `__file__`, so a sibling cannot be found, and a problem is one file. The embedded source is executed once
per process as a module of its own (`sys.modules`, keyed by the bundle's sha256: the bundle registers its
torch.library ops once; a second `exec` of the reference reuses it), its lines registered in `linecache` so that
`inspect.getsource` (`@triton.jit`) reads them.

Written only for the `decoder_layer` template (the one whose example returns a `forward` over hidden states in a
runtime context). Checked at build time by `check()`: it compiles, defines what KernelBench reads, and its
embedded text is exactly the bundle A7 imported and whose sha256 it names; the CPU and GPU tests run it.
"""

from __future__ import annotations

import ast
import hashlib

from bundler_lib.errors import StageError

STAGE = "A6 kernelbench"
SUFFIX = ".kernelbench.py"
KERNELBENCH_NAMES = ("Model", "get_init_inputs", "get_inputs")

_TEMPLATE = '''\
"""KernelBench reference problem: vLLM's {symbol} ({model}), {workload}, as one file.

Written by vllm-bundler beside {bundle_name}, which it embeds (at the end of this file, BUNDLE_SHA256):
KernelBench `exec`s a reference's text, with no `__file__` to find a sibling by. Load it as KernelBench does
(`exec(src, ctx)`; `Model(*get_init_inputs())`; `model(*get_inputs())` on a CUDA GPU) and evaluate with
`precision=torch.{dtype}`, the bundle's dtype: the layer keeps its dtypes whatever the model is cast to, so
another precision only casts the input and output.

Model(*get_init_inputs()) builds the layer and its runtime context (vLLM config state, forward context,
attention metadata, a KV cache of `context` random tokens per sequence) with the bundle's
invocation_example(), which runs one forward; forward(hidden_states [T, H]) runs the layer again in that
context and returns hidden_states + residual after it. Sizes: H={H}, T = BATCH * TOKENS.
"""

import linecache
import sys
import types

import torch
import torch.nn as nn

BUNDLE_NAME = {bundle_name!r}
BUNDLE_SHA256 = {sha256!r}
WORKLOAD = {workload!r}
BATCH = {batch!r}
TOKENS = {tokens!r}
CONTEXT = {context!r}
HIDDEN_SIZE = {H!r}


def _bundle():
    """The embedded bundle as a module, executed once per process."""
    name = "vllm_bundle_kernelbench_" + BUNDLE_SHA256[:16]
    module = sys.modules.get(name)
    if module is None:
        filename = f"<{{BUNDLE_NAME}} sha256={{BUNDLE_SHA256[:16]}}>"
        linecache.cache[filename] = (len(_BUNDLE_SOURCE), None, _BUNDLE_SOURCE.splitlines(True), filename)
        module = types.ModuleType(name)
        sys.modules[name] = module
        try:
            exec(compile(_BUNDLE_SOURCE, filename, "exec"), module.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
    return module


class Model(nn.Module):
    """vLLM's {symbol} in its runtime context, as the bundle's invocation_example() sets it up."""

    def __init__(self, workload=WORKLOAD, batch=BATCH, tokens=TOKENS, context=CONTEXT):
        super().__init__()
        example = _bundle().invocation_example(workload=workload, tokens=tokens, batch=batch, context=context)
        if example["sizes"]["T"] != batch * tokens:
            raise RuntimeError(f"Model: the example ran {{example['sizes']}}, not batch={{batch}} x tokens={{tokens}}")
        self.layer = example["module"]
        self._forward = example["forward"]
        self._dtype = example["inputs"]["hidden_states"].dtype

    def _apply(self, fn, recurse=True):
        # .to(device, precision) / .cuda() / .float() leave the layer where and as invocation_example built it: its
        # kernels expect its dtypes (some of its tensors are float32 by design), its context holds its device
        return self

    def forward(self, hidden_states):
        out, residual = self._forward(hidden_states.to(self._dtype))
        out = out if residual is None else out + residual
        return out.to(hidden_states.dtype)


def get_inputs():
    return [torch.randn(BATCH * TOKENS, HIDDEN_SIZE)]


def get_init_inputs():
    return [WORKLOAD, BATCH, TOKENS, CONTEXT]


# The bundle, {bundle_name}, verbatim.
_BUNDLE_SOURCE = {literal}
'''


def _literal(text: str) -> str:
    """A Python literal whose value is `text`: a raw triple-quoted string where one can hold it (readable), else
    an escaped one; checked by evaluating it."""
    escaped = text.replace("\\", "\\\\").replace("'''", "\\'\\'\\'")
    candidates = [f"r'''{text}'''", f'r"""{text}"""',
                  "'''" + (escaped[:-1] + "\\'" if escaped.endswith("'") else escaped) + "'''", repr(text)]
    for lit in candidates:
        try:
            if ast.literal_eval(lit) == text:
                return lit
        except (SyntaxError, ValueError):
            continue
    raise AssertionError("repr() always round-trips")


def sizes(record: dict) -> dict:
    """The problem's fixed sizes, from the A6 record: decode 64 sequences of 1 new token over 4,096 cached ones,
    prefill one sequence of 4,096 tokens (both within the model's max context)."""
    max_ctx = int(record["dims"]["max_ctx"])
    if record["workload"]["kind"] == "decode":
        return {"workload": "decode", "batch": 64, "tokens": 1, "context": max(0, min(4096, max_ctx - 1))}
    return {"workload": "prefill", "batch": 1, "tokens": max(16, min(4096, max_ctx) // 16 * 16), "context": 0}


def generate(bundle: bytes, bundle_name: str, record: dict) -> str:
    """The source of `<bundle stem>.kernelbench.py` for a bundle and its A6 record (A6.model.json)."""
    if record.get("template") != "decoder_layer":
        raise StageError(
            STAGE, f"`kernelbench` of {record.get('symbol')}",
            f"needs a decoder layer built from a model (A6 template `decoder_layer`); its example is "
            f"`{record.get('template')}`", "remove `kernelbench=True`, or set `model` on a *DecoderLayer target")
    text = bundle.decode("utf-8")
    dtype = str(record.get("flags", {}).get("dtype") or "bfloat16").replace("torch.", "")
    return _TEMPLATE.format(symbol=record["symbol"], model=record.get("model_name"), bundle_name=bundle_name,
                            sha256=hashlib.sha256(bundle).hexdigest(), dtype=dtype, H=int(record["dims"]["H"]),
                            literal=_literal(text), **sizes(record))


def check(source: str, bundle: bytes, path: str) -> None:
    """Refuse (StageError) a KernelBench file that does not compile, lacks a name KernelBench reads, or embeds
    anything but `bundle`."""
    try:
        tree = ast.parse(source, path)
        compile(tree, path, "exec")
    except SyntaxError as e:
        raise StageError(STAGE, path, f"does not compile ({e.msg}, line {e.lineno})",
                         "report it: the KernelBench template is the bundler's") from None
    defined = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    missing = [n for n in KERNELBENCH_NAMES if n not in defined]
    embedded = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and [getattr(t, "id", None) for t in n.targets] == ["_BUNDLE_SOURCE"]]
    if missing or embedded != [bundle.decode("utf-8")]:
        problem = (f"defines no {', '.join(missing)}" if missing
                   else "does not embed the bundle A7 checked, byte for byte")
        raise StageError(STAGE, path, problem, "report it: the KernelBench template is the bundler's")
