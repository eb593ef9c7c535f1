"""A6: the inputs a decoder layer takes beyond those every decoder-layer example gives (the config, cache/quant
configs, prefix, layer index to `__init__`; positions, hidden_states, residual to `forward`), derived by general
rules from A1's `root_signature` (each parameter's annotation text) and the model's text config:

- an input naming an encoder or cross-attention (`encoder_hidden_states`): none. The decoder layer reads the
  encoder's K/V from a cross-attention KV cache that an encoder run fills (prefill) and the engine keeps (decode);
  the example has no encoder and no template for that cache, so the layer keeps `no_template`;
- `int`: an index into what the layer holds per step/loop/block: the layer index where the name says `layer`,
  else 0; a count (`num_*`, `n_*`) is the config's value of that name, else 1 (the smallest layer; index 0 is in
  it);
- `torch.Tensor`: `[T, width]` random in the model dtype: the width is the config's one hidden-size/dim key
  naming the input (`hidden_size_per_layer_input` for `per_layer_input`, not `vocab_size_per_layer_input`); an input named for hidden states or embeddings
  (`original_hidden_states`, `inputs_embeds`) is `[T, hidden_size]`; another has no rule.

An input no rule covers is named in the example's `missing` (status `no_template`), with why.
"""

from __future__ import annotations

from bundler_lib.common.example_roots import FORWARD_INPUTS, INIT_INPUTS

_COUNT_PREFIXES = ("num_", "n_")
_HIDDEN_WIDTH_WORDS = ("hidden_states", "embeds", "embedding")


def _is_int(annotation: str | None) -> bool:
    return annotation == "int"


def _is_tensor(annotation: str | None) -> bool:
    return bool(annotation) and annotation.split("|")[0].strip() in ("torch.Tensor", "Tensor")


def _cross_attention(name: str) -> bool:
    return "encoder" in name or "cross" in name


def _int_value(name: str, fields: dict, layer: int) -> tuple[int, str]:
    if name.startswith(_COUNT_PREFIXES):
        if isinstance(fields.get(name), int) and not isinstance(fields.get(name), bool):
            return fields[name], f"config.{name}"
        return 1, "a count the config does not give: 1, the smallest layer (the indices given are 0)"
    if "layer" in name:
        return layer, "the layer index (the name says layer)"
    return 0, "an index: 0, the first step/loop/block the layer holds"


def _tensor_width(name: str, fields: dict, hidden: int) -> tuple[int, str] | None:
    """(width, why) of a `[T, width]` tensor input, or None where no rule gives it."""
    sized = sorted(k for k, v in fields.items() if name in k and k != name
                   and ("hidden_size" in k or k.endswith(("_dim", "_width")))
                   and isinstance(v, int) and not isinstance(v, bool) and v > 0)
    if len(sized) == 1:
        return fields[sized[0]], f"[T, config.{sized[0]}]"
    if any(w in name for w in _HIDDEN_WIDTH_WORDS):
        return hidden, "[T, hidden_size] (named for hidden states or embeddings)"
    return None


def _derive(params: list[str], annotations: dict, fields: dict, dims: dict, where: str,
            given: tuple[str, ...]) -> tuple[dict, list[str]]:
    """({name: [kind, value, why]}, what no rule covers) for the required `params` of `where` not in `given`."""
    plan, missing = {}, []
    for name in params:
        if name in given:
            continue
        ann = annotations.get(name)
        if _cross_attention(name):
            missing.append(f"{where} input {name}: cross-attention (an encoder's output, read through an encoder "
                           "KV cache that the example has no template for)")
        elif _is_int(ann):
            value, why = _int_value(name, fields, int(dims.get("layer") or 0))
            plan[name] = ["int", value, why]
        elif _is_tensor(ann) and where == "forward":
            width = _tensor_width(name, fields, dims["H"])
            if width is None:
                missing.append(f"forward input {name} ({ann}): no config size names it and it is not named for "
                               "hidden states, so its width is unknown")
            else:
                plan[name] = ["tensor", width[0], width[1]]
        else:
            missing.append(f"{where} input {name} ({ann or 'no annotation'}): no rule gives a value of this type")
    return plan, missing


def derive(signature: dict | None, fields: dict, dims: dict) -> tuple[dict, dict, list[str]]:
    """(__init__ inputs, forward inputs, what no rule covers) of a decoder layer beyond what every decoder-layer
    example gives; `fields` is the model's text config, `dims` A6's (`H`, `layer`)."""
    sig = signature or {}
    out, missing = [], []
    for method, given in (("__init__", INIT_INPUTS), ("forward", FORWARD_INPUTS)):
        m = sig.get(method) or {}
        plan, miss = _derive(m.get("required", []), m.get("annotations") or {}, fields, dims, method, given)
        out.append(plan)
        missing += miss
    return out[0], out[1], missing


def notes(init: dict, forward: dict) -> list[str]:
    return [f"{method} input {name} = {'[T, %d] random' % v if kind == 'tensor' else v} ({why})"
            for method, plan in (("__init__", init), ("forward", forward)) for name, (kind, v, why) in plan.items()]
