"""A6 model-aware invocation example: `A6.example.py` (the source of `invocation_example`) and `A6.model.json`.

Reads `A1.graph.json` (symbol, kind, def_file, variant, python_nodes) and, when a model is given, its
`config.json`. Derives the dims (H, H_q, H_kv, Dh, max context, MoE sizes) and flags, checks them, picks a
workload (given, or inferred: decode when the example uses a KV cache, else prefill), and writes the
source of `invocation_example(small=False)` for the kind of symbol:

- `norm`: RMSNorm-like layers, `Cls(H, eps=eps)` on `[T, H]` (and with a residual);
- `act_and_mul`: SiluAndMul-like layers on `[T, 2*I]` -> `[T, I]`; `activation`: elementwise `[T, I]`;
- `rope`: `get_rope(Dh, max_ctx, ...)` (or a RotaryEmbedding class) on positions, q `[T, H_q*Dh]`, k `[T, H_kv*Dh]`;
- `fused_experts`: the Triton MoE function on `[T, H]` with `w1 [E, 2I, H]`, `w2 [E, H, I]` and routed top-k;
- `decoder_layer`: a `*DecoderLayer` built and run through vLLM's own engine setup (see `decoder.py`), or a layer stack
  built from a few of them (`layer_stack.py`);
- `generic`: no template: the example only resolves the symbol (said in the notes).

The example is a function definition only (never run on import); it sizes itself with
`torch.cuda.mem_get_info()`, builds the layer, allocates inputs, runs one forward and checks the output
shapes, and returns a dict (module, inputs, outputs, sizes). `small=True` gives a quick sanity size.
Everything written is deterministic: no timestamps, no absolute paths (the config is named by its
`models/<org>--<name>/config.json` path or file name, and its sha256).
The config and what is derived from it live in `model_config.py`, the generated text in `templates.py`.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from bundler_lib.artifacts import write_json, write_text
from bundler_lib.common.contract import load_graph
from bundler_lib.common.example_roots import ATTENTION, is_block_candidate, is_decoder_layer, is_layer_stack
from bundler_lib.errors import StageError
from bundler_lib.example import attention_metadata, cli
from bundler_lib.example.model_config import (STAGE, activation_size, derive, generic_config, generic_dims_and_flags,
                                              model_name_of, read_config)
from bundler_lib.example.templates import PRELUDE, SIGNATURE, docstring, header, py_literal, template_body

EXAMPLE = "A6.example.py"
MODEL_JSON = "A6.model.json"


# --------------------------------------------------------------------------------------------------
# what the symbol is


def classify(graph: dict) -> str:
    sym = graph.get("symbol") or ""
    kind = graph.get("kind") or ""
    f = graph.get("def_file") or ""
    base = PurePosixPath(f).name
    sig = graph.get("root_signature")
    if (is_decoder_layer(sym, kind, sig) or is_layer_stack(kind, sig)
            or (is_block_candidate(sym, kind, sig) and reaches_attention(graph))):
        return "decoder_layer"
    if kind == "class" and (re.search(r"(RMSNorm|LayerNorm)$", sym) or base == "layernorm.py"):
        return "norm"
    if base == "activation.py" and kind == "class":
        return "act_and_mul" if re.search(r"And(Mul|Silu)|AndMul", sym) else "activation"
    if sym == "get_rope" or ("rotary_embedding" in f and kind == "class" and sym.endswith("RotaryEmbedding")
                             and sym in ("RotaryEmbedding", "RotaryEmbeddingBase")):
        return "rope"
    if kind == "function" and sym == "fused_experts":
        return "fused_experts"
    return "generic"


def reaches_attention(graph: dict) -> bool:
    """Whether the symbol's closure (A1's graph) holds vLLM's `Attention` layer."""
    from bundler_lib.example.state import emit_names
    return tuple(ATTENTION.split("::")) in emit_names(graph)


def uses_kv_cache(template: str) -> bool:
    return template == "decoder_layer"



def _workload(template: str, requested: str | None, dims: dict, flags: dict, attn_type: str = "decoder") -> dict:
    kv = uses_kv_cache(template)
    if requested:
        kind, source, reason = requested, "given", "requested by the target"
    elif kv and attn_type in attention_metadata.CACHELESS_ATTN_TYPES:
        # vLLM runs such attention over each sequence's own tokens, with no cached context to decode against
        kind, source, reason = "prefill", "inferred", f"the variant's attention ({attn_type}) keeps no KV cache"
    elif kv:
        kind, source, reason = "decode", "inferred", "the example uses a KV cache and at most 4 new tokens"
    else:
        kind, source, reason = "prefill", "inferred", "the example uses no KV cache"
    if template == "decoder_layer":
        shapes = ("decode: batch B of 1..4 new tokens over a cached context C (C <= max_ctx), B scaled to a "
                  "2-8 GiB live set (about 20% of free GPU memory); small: B=2, 1 token, C=64"
                  if kind == "decode" else
                  "prefill: one sequence of 8k..32k tokens (within memory and max_ctx); small: 32 tokens")
    elif template == "generic":
        shapes = "none (no invocation template)"
    elif kind == "decode":
        shapes = "decode: T = 1 new token for each of up to 256 sequences (memory-bound); small: T=4"
    else:
        shapes = "prefill: T = 8k..32k tokens within memory and max_ctx; small: T=16"
    return {"kind": kind, "source": source, "reason": reason, "shapes": shapes, "kv_cache": kv}


def _dims_and_flags(template: str, cfg: dict | None, src: str | None, notes: list[str]) -> tuple:
    """(config, config kind, config label, dims, flags, keys used): a decoder layer without a model is built from
    the generic config; another symbol without a model gets the generic dims."""
    config_kind = "model" if cfg is not None else None
    config_label = f"the config {src}"
    used: dict = {}
    if cfg is None and template == "decoder_layer":
        # a decoder layer is built from a config: without a model, the generic one (not model-aware)
        cfg, config_kind, config_label = generic_config(), "generic", "the generic Llama-like config (no model)"
        notes.append("no model: the layer is built from a generic Llama-like config (GENERIC_DIMS as Hugging Face "
                     "keys); not model-aware: a key the layer reads beyond those stops the example, naming it")
    if cfg is not None:
        dims, flags, used, dnotes = derive(cfg, src or "the generic config", heads_required=template != "decoder_layer")
        notes += dnotes
    else:
        config_kind, config_label = "generic", "the generic dims (no model)"
        dims, flags = generic_dims_and_flags()
        notes.append("no model: generic Llama-like dims (shape-only example)")
    return cfg, config_kind, config_label, dims, flags, used


def _dtype_name(flags: dict, notes: list[str]) -> str:
    dtype_name = {"bfloat16": "bfloat16", "float16": "float16", "half": "float16", "float32": "float32",
                  "float": "float32"}.get(str(flags.get("dtype", "bfloat16")).replace("torch.", ""), "bfloat16")
    if flags.get("dtype") and dtype_name != str(flags["dtype"]).replace("torch.", ""):
        notes.append(f"config dtype {flags['dtype']!r} is run as {dtype_name}")
    return dtype_name


def _body(graph: dict, symbol: str, template: str, dims: dict, flags: dict, cfg: dict | None, config_label: str,
          notes: list[str]) -> tuple[str, list[str], list[str]]:
    """(invocation_example's body, the roots it needs, what the decoder template misses)."""
    if template == "decoder_layer":
        from bundler_lib.example import decoder
        missing = decoder.missing_template(graph, dims, cfg, flags)
        body, dnotes, needs = decoder.body(graph, symbol, dims, flags, cfg, config_label, missing)
        notes += dnotes
        return body, needs, missing
    body, tnotes = template_body(template, symbol, graph.get("kind"))
    notes += tnotes
    needs: list[str] = []
    if template != "generic":
        # vLLM layers read the current config when built (CustomOp dispatch): set the bundle's state.
        from bundler_lib.example import state
        found, _ = state.resolve(graph)
        if found["vllm_config"]:
            body = (state.snippet(graph, cfg, dims, flags, config_label)
                    + "    restore = _install(vllm_config)\n    try:\n"
                    + "".join(("    " + ln if ln.strip() else ln) for ln in body.splitlines(True))
                    + "    finally:\n        restore()\n")
            notes.append("the example sets the bundle's vLLM config state (stand-ins) around the build and "
                         "forward, and restores it")
            needs = [f"{f}::{n}" for f, n in state.STATE.values()]
    return body, needs, []


def generate(graph: dict, model: str | None, model_config: Path | None, workload: str | None,
             tree: Path | None = None) -> tuple[str, dict]:
    """(source of A6.example.py, the A6.model.json record). `tree`: the vLLM files A6 reads (config_class.TREE_GLOBS
    and the graph's files), for the config class vLLM loads the model's config through."""
    symbol = graph.get("symbol")
    if not symbol or not isinstance(symbol, str):
        raise StageError(STAGE, "A1.graph.json", "has no symbol", "re-run A1 (graph)")
    template = classify(graph)
    notes: list[str] = []
    cfg, src, sha = read_config(model, model_config)
    model_name = model_name_of(model, model_config, cfg)
    config_class = None
    if cfg is not None and tree is not None:
        from bundler_lib.example import config_class as cc
        cfg, config_class, cnotes = cc.apply(cfg, graph, tree)
        notes += cnotes
    cfg, config_kind, config_label, dims, flags, used = _dims_and_flags(template, cfg, src, notes)
    activation_size(dims, flags, used)

    wl = _workload(template, workload, dims, flags, (graph.get("variant") or {}).get("attn_type", "decoder"))
    if workload == "decode" and template in ("norm", "act_and_mul", "activation", "rope", "fused_experts"):
        notes.append("decode for a layer without a KV cache: one new token per sequence of a batch")
    if template == "generic":
        notes.append(f"no invocation template for {symbol} ({graph.get('kind')} in {graph.get('def_file')}): "
                     "the example only resolves the symbol")
    dtype_name = _dtype_name(flags, notes)
    body, needs, missing = _body(graph, symbol, template, dims, flags, cfg, config_label, notes)

    prelude = PRELUDE.format(dims=py_literal(dims), flags=py_literal(flags), workload=wl["kind"], dtype=dtype_name)
    source = (header(symbol, template, model_name, src, sha, dims, flags, wl)
              + f"def invocation_example({SIGNATURE}):\n" + docstring(symbol, model_name, wl["kind"], template)
              + prelude + "\n" + body)
    record = {
        "status": "no_template" if missing else "ok",
        "missing": missing,
        "symbol": symbol,
        "template": template,
        "model_name": model_name,
        "config": config_kind,
        "dims": dims,
        "flags": flags,
        "workload": wl,
        "sources": {"config": src, "config_sha256": sha, "keys": used, "config_class": config_class},
        "needs": needs,
        "notes": notes,
    }
    source += cli.source(graph, record)
    compile(source, EXAMPLE, "exec")  # a template bug is ours: fail here, not in A7
    return source, record


def run(graph: Path, model: str | None, model_config: Path | None, workload: str | None, out: Path,
        tree: Path | None = None) -> dict:
    g = load_graph(graph, STAGE)
    if workload not in (None, "prefill", "decode"):
        raise StageError(STAGE, f"--workload {workload}", "is neither prefill nor decode", "pass one of them or none")
    source, record = generate(g, model, Path(model_config) if model_config else None, workload,
                              Path(tree) if tree else None)
    out = Path(out)
    write_text(out / EXAMPLE, source)
    write_json(out / MODEL_JSON, record)
    return record