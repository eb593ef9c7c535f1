"""A6: the decoder-layer example of a layer stack, a class built from the decoder layers it runs (A1's
`layer_lists`: Gemma4's Self/CrossDecoderLayers, `decoder_layers: list[Gemma4DecoderLayer]`, which vLLM's model builds
and hands each half of its layers). The example builds `STACK_LAYERS` of those layers from the example's layer on, as
vLLM's model does (prefix `model.layers.<i>`, so each reads its own entries of the per-layer config), hands them to
the stack, and runs the stack with the decoder-layer example's inputs (each attention layer gets its own KV cache).
"""

from __future__ import annotations

from bundler_lib.example import state

# Few layers: enough for the stack to hand one layer's output to the next, small enough to build anywhere.
STACK_LAYERS = 2

_BUILD = '''\
                # a layer stack: the decoder layers it runs, built as vLLM's model builds them (prefix
                # model.layers.<i>: the config's entries for layer i), {n} from this layer on (layer_stack.py)
                stack_layers = []
                for i in range(layer_idx, min(dims.get("num_layers") or layer_idx + {n}, layer_idx + {n})):
                    own = dict(given, prefix=f"model.layers.{{i}}", layer_idx=i, layer_id=i)
                    kw_i = {{}}
                    for pname, prm in list(inspect.signature({layer}.__init__).parameters.items())[1:]:
                        if pname in own:
                            kw_i[pname] = own[pname]
                        elif prm.default is inspect.Parameter.empty and prm.kind not in (prm.VAR_POSITIONAL,
                                                                                         prm.VAR_KEYWORD):
                            raise NotImplementedError(
                                f"invocation_example: {layer}.__init__ needs {{pname!r}}, which the layer-stack "
                                "example cannot supply (no template for this layer's construction)")
                    stack_layers.append({layer}(**kw_i))
                given.update({{p: stack_layers for p in {params!r}}})
'''
_CONSTRUCT = '''\
                layer = {symbol}(**kw)
'''
# A1's parameters of the stack's own __init__ (a decorator's wrapper, vLLM's support_torch_compile, hides them from
# inspect.signature) get their values; vLLM's model owns the layers (its `layers`) and the stack may keep them in a
# plain list: held by the stack too, so that filling the weights and binding the KV caches reach them.
_STACK_CONSTRUCT = '''\
                kw.update({{p: given[p] for p in {params!r} if p in given}})
                layer = {symbol}(**kw)
                if not any(m is stack_layers[0] for m in layer.modules()):
                    layer.add_module("example_layers", torch.nn.ModuleList(stack_layers))
'''


def _layers(graph: dict) -> tuple[dict, list[str]]:
    """({param: the layer class's name in the bundle}, the `file::Name` A1 did not reach) of a layer stack."""
    lists = ((graph.get("root_signature") or {}).get("__init__") or {}).get("layer_lists") or {}
    names = state.emit_names(graph)
    found = {p: names.get(tuple(q.split("::", 1))) for p, q in lists.items()}
    return {p: n for p, n in found.items() if n}, sorted(lists[p] for p, n in found.items() if not n)


def missing(graph: dict) -> list[str]:
    """What the layer-stack example lacks: a decoder-layer class of the stack that is not in the bundle, or more
    than one class (the example builds the layers of one)."""
    layers, absent = _layers(graph)
    out = [f"the stack's decoder layers {q}: not in the bundle (A1 did not reach it)" for q in absent]
    if len(set(layers.values())) > 1:
        out.append(f"the stack takes layers of several classes ({', '.join(sorted(set(layers.values())))}): the "
                   "layer-stack example builds layers of one")
    return out


def pieces(graph: dict, symbol: str) -> tuple[dict, list[str]]:
    """(the decoder template's `stack_build` code and its `construct` code, notes): for a decoder layer, no
    `stack_build` and its plain construction."""
    layers, _ = _layers(graph)
    if not layers or missing(graph):
        return {"stack_build": "", "construct": _CONSTRUCT.format(symbol=symbol)}, []
    layer = next(iter(layers.values()))
    init = (graph.get("root_signature") or {}).get("__init__") or {}
    params = list(init.get("required") or []) + list(init.get("optional") or [])
    return ({"stack_build": _BUILD.format(n=STACK_LAYERS, layer=layer, params=sorted(layers)),
             "construct": _STACK_CONSTRUCT.format(symbol=symbol, params=params)},
            [f"layer stack: {STACK_LAYERS} {layer} built from the example's layer on (prefix model.layers.<i>) and "
             f"handed to it as {', '.join(sorted(layers))}"])
