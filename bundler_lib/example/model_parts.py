"""A6: the parts a decoder layer (or a layer stack) takes from vLLM's model, built as the model builds them (A1's
`owner_parts`, common/owner_parts.py: Gemma4SelfDecoderLayers' embeddings and per-layer projections, handed to its
`__init__`; InternS2Mobius's `meta_mlp`, a module list the model owns and hands each layer's `forward`).

Each part is the model's own expression, its names those of the bundle, evaluated with the example's vLLM config,
the model's config and the model's prefix (`model`); a part built under a condition the config does not meet is
None, as in the model. A part of the `forward` is kept by the layer as a submodule too, so that filling the weights
and processing them after loading reach it, as they reach the model's.
"""

from __future__ import annotations

import ast

from bundler_lib.example import state

_BUILD = '''\
                # the model's parts the layer takes, built as vLLM's model builds them (model_parts.py)
                model_parts = {{}}
{parts}                given.update({{n: model_parts[n] for n in {init!r}}})
'''
_PART = '''\
                model_parts[{name!r}] = (lambda vllm_config, config, prefix: {value})(vllm_config, hf, "model")
'''
_ATTACH = '''\
                for pname in {forward!r}:
                    if isinstance(model_parts[pname], torch.nn.Module):
                        layer.add_module(f"model_{{pname}}", model_parts[pname])
'''
_FORWARD = '''\
        extra_inputs.update({{n: model_parts[n] for n in {forward!r}}})
'''


def _parts(graph: dict) -> dict:
    """{method: {param: part}} of A1's `owner_parts`."""
    sig = graph.get("root_signature") or {}
    return {m: found for m in ("__init__", "forward") if (found := (sig.get(m) or {}).get("owner_parts"))}


def _source(part: dict, names: dict) -> str:
    """The part's expression (under its condition) with each name it reads as the bundle names it."""
    rename = {n: names.get(tuple(q.split("::", 1))) if "::" in q else q for n, q in part["names"].items()}

    class _Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.parse(rename[node.id], mode="eval").body if node.id in rename else node

    value = ast.unparse(_Rename().visit(ast.parse(part["expr"], mode="eval")))
    if part.get("when"):
        value = f"({value}) if ({ast.unparse(_Rename().visit(ast.parse(part['when'], mode='eval')))}) else None"
    return value


def missing(graph: dict) -> list[str]:
    """The parts whose names are not all in the bundle (A1 did not resolve or reach them)."""
    names = state.emit_names(graph)
    out = []
    for method, found in _parts(graph).items():
        for param, part in found.items():
            absent = [q or n for n, q in part["names"].items()
                      if not q or ("::" in q and tuple(q.split("::", 1)) not in names)]
            if absent:
                out.append(f"{method} input {param}: the model builds it as {part['expr']}, but the bundle lacks "
                           f"{', '.join(absent)}")
    return out


def pieces(graph: dict) -> tuple[dict, list[str]]:
    """(the decoder template's `model_parts`, `attach_parts` and `forward_parts` code, notes)."""
    parts = _parts(graph)
    if not parts or missing(graph):
        return {"model_parts": "", "attach_parts": "", "forward_parts": ""}, []
    names = state.emit_names(graph)
    code = "".join(_PART.format(name=p, value=_source(part, names))
                   for found in parts.values() for p, part in found.items())
    init, forward = sorted(parts.get("__init__") or {}), sorted(parts.get("forward") or {})
    notes = [f"{m} input {p} = {part['expr']}" + (f" if {part['when']} else None" if part.get("when") else "")
             + " (the model's part, built as vLLM's model builds it)" for m, found in parts.items()
             for p, part in found.items()]
    return ({"model_parts": _BUILD.format(parts=code, init=init),
             "attach_parts": _ATTACH.format(forward=forward) if forward else "",
             "forward_parts": _FORWARD.format(forward=forward) if forward else ""}, notes)
