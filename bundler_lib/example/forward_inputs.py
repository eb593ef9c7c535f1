"""A6: the inputs a decoder layer takes beyond those every decoder-layer example gives (the config, cache/quant
configs, prefix, layer index to `__init__`; positions, hidden_states, residual to `forward`), derived by general
rules from A1's `root_signature` (each parameter's annotation text) and the model's text config:

- a forward input, required or optional, naming an encoder or cross-attention (`encoder_hidden_states`): none
  here; the cross-attention template gives it (`cross_attention.py`, which says what it does not cover);
- an `__init__` input `x` where the config holds a per-layer list `xs` (one entry per layer: `layer_types`): this
  layer's entry, as vLLM's model passes it (`layer_type=config.layer_types[i]`);
- `int`: the config's value where it has a key of that name; one named for the max position (`max_position`,
  EmbeddingGemma2's `__init__`) is the config's max_position_embeddings (or a synonym); else a forward's int selects what the layer holds
  per step/loop/block (`current_step`, `loop_idx`): the layer index where the name says `layer`, else 0. An
  `__init__` int is given so where its name says index (`*_idx`, `*_index`, `*_id`), or where it counts the entries
  of one list the config holds (`num_hybrid_layers` = `len(hybrid_layer_ids)`, as vLLM's model passes it); any
  other (`d_model`) is a size no rule knows;
- an `__init__` input annotated `Literal[...]`, or a `str` that the layer passes on to a part whose parameter of
  that name is a `Literal` (A1's `choices`: HrmText's `stack_kind`, `Literal["L", "H"]`): the first value, one of
  the kinds of layer vLLM's model builds;
- `bool` (`__init__`): False, the option off (the EAGLE draft's `disable_input_layernorm`: the layer keeps every
  part, as vLLM builds all but the draft's first layer);
- `torch.Tensor` (forward): `[T, width]` random in the model dtype: the width is the config's one
  hidden-size/dim key naming the input (`hidden_size_per_layer_input` for `per_layer_input`, not
  `vocab_size_per_layer_input`); an input named for hidden states or embeddings (`original_hidden_states`,
  `inputs_embeds`, Eagle3's `embeds`) is `[T, hidden_size]`; another has no rule; where the forward takes neither
  `hidden_states` nor `x`, its first such input named `*_hidden_states` is the hidden states themselves (Bart's
  `decoder_hidden_states`);
- an optional forward input (default None) that vLLM's model passes the layer where the config enables the part
  using it (A1's `enabled_by`: Gemma4's `per_layer_input`, under `hidden_size_per_layer_input` > 0): a tensor by
  the rule above where the config enables it (the layer would otherwise skip a part it builds), else left out;
- a forward input the layer hands first to a part built with a config width (A1's `reads`: EmbeddingGemma2's
  `self.input_layernorm(h)`, the norm built `RMSNorm(config.hidden_size, ...)`), before any rule above: token ids in
  [0, config.<key>) where the key is the vocabulary's (an embedding: Gemma4SelfDecoderLayers' `input_ids`), the
  hidden states where it is hidden_size (a [T, hidden_size] tensor where the forward takes `hidden_states` too),
  else `[T, config.<key>]`;
- an input vLLM's model passes as its own attribute: built as the model builds it (`model_parts.py`);
- a forward input no rule above gives whose annotation allows None (`torch.Tensor | None`, `Optional[...]`,
  required only by position: Ernie 4.5 VL's `visual_token_mask`): None, the input absent (text-only tokens).

The hidden states themselves are `[T, hidden_size]`, or a stack of them where A1 found the forward hands them to a
part that indexes them by a config index (`stacks`: Gemma3n's AltUp, `[altup_num_inputs, T, hidden_size]`, as
vLLM's model stacks its projections of the embeddings before the layers): `hidden_stack`.

An input no rule covers is named in the example's `missing` (status `no_template`), with why.
"""

from __future__ import annotations

import re

from bundler_lib.common.example_roots import FORWARD_INPUTS, INIT_INPUTS
from bundler_lib.example import config_rules, cross_attention

_INDEX_NAME = re.compile(r"(^|_)(idx|index|id)(_|$)")
_COUNT_NAME = re.compile(r"^num_(\w+?)s$")
_HIDDEN_WIDTH_WORDS = ("hidden_states", "embeds")


def _is_int(annotation: str | None) -> bool:
    return annotation == "int"


def _is_tensor(annotation: str | None) -> bool:
    return bool(annotation) and annotation.split("|")[0].strip() in ("torch.Tensor", "Tensor")


def _optional(annotation: str | None) -> bool:
    """`X | None` or `Optional[X]`: None is a value the parameter takes."""
    return bool(annotation) and ("None" in [a.strip() for a in annotation.split("|")]
                                 or annotation.startswith(("Optional[", "typing.Optional[")))


def _read(name: str, key: str, fields: dict) -> tuple[list | None, str | None]:
    """A forward input the layer hands to a part built with config.<key> first: token ids where the key is the
    vocabulary's (an embedding's rows), the hidden states where it is hidden_size, else a [T, width] tensor."""
    v = fields.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        return None, (f"forward input {name}: the layer hands it to a part built with config.{key}, which the "
                      "config lacks")
    why = f"the layer hands it to a part built with config.{key} first"
    if "vocab" in key:
        return ["ids", v, f"[T] token ids in [0, config.{key}) ({why}: an embedding's rows)"], None
    if key == "hidden_size":
        return ["hidden", v, why], None
    return ["tensor", v, f"[T, config.{key}] ({why})"], None


def _int_value(name: str, fields: dict, layer: int, where: str) -> tuple[int, str] | None:
    """(value, why) of an int input, or None where no rule gives it."""
    if isinstance(fields.get(name), int) and not isinstance(fields.get(name), bool):
        return fields[name], f"config.{name}"
    if name.startswith("max_position") or name in config_rules.MAX_LEN_KEYS:
        got = config_rules.max_len(fields)
        return None if got is None else (got[0], f"config.{got[1]} (the config's max position, as vLLM's model "
                                                 "passes it)")
    if where == "__init__" and not _INDEX_NAME.search(name):
        return _count(name, fields)
    if "layer" in name:
        return layer, "the layer index (the name says layer)"
    return 0, "an index: 0, the first step/loop/block the layer holds"


def _count(name: str, fields: dict) -> tuple[int, str] | None:
    """`num_<stem>s` where the config holds one list of those entries (`<stem>_ids`, `<stem>_idxs`,
    `<stem>_indices`, `<stem>s`): its length, as vLLM's model passes it (`num_hybrid_layers=len(hybrid_layer_ids)`)."""
    m = _COUNT_NAME.match(name)
    if not m:
        return None
    stem = m.group(1)
    lists = [k for k in (f"{stem}_ids", f"{stem}_idxs", f"{stem}_indices", f"{stem}s")
             if isinstance(fields.get(k), list)]
    if len(lists) != 1:
        return None
    return len(fields[lists[0]]), f"len(config.{lists[0]}) (the count of the entries the config lists)"


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


def _one(name: str, ann: str | None, fields: dict, dims: dict, where: str,
         choices: list | None = None, assumed: dict | None = None,
         reads: str | None = None) -> tuple[list | None, str | None]:
    """([kind, value, why], None) for an input a rule covers, else (None, why not); `choices`: the values A1 found
    the parameter accepts; `assumed`: {key: rule} of the fields config_rules derived; `reads`: the config key of the
    width of the part the forward hands the input to (A1's `reads`)."""
    layer = int(dims.get("layer") or 0)
    if reads and where == "forward":
        return _read(name, reads, fields)
    per_layer = fields.get(name + "s")
    if where == "__init__" and isinstance(per_layer, list) and len(per_layer) == dims.get("num_layers") \
            and layer < len(per_layer):
        # vLLM's model passes each layer its entry of the per-layer list (`layer_type=config.layer_types[i]`)
        rule = (assumed or {}).get(name + "s")
        return ["value", per_layer[layer], f"config.{name}s[{layer}] (this layer's entry of the per-layer list"
                + (f"; assumed: {rule})" if rule else ")")], None
    if _is_int(ann):
        value = _int_value(name, fields, layer, where)
        if value is None:
            return None, (f"{where} input {name} (int): neither an index by its name, a config key nor the count "
                          "of a list the config holds (a size no rule knows)")
        return ["int", value[0], value[1]], None
    if where == "__init__" and choices:
        return ["value", choices[0], f"{choices[0]!r}, the first of the values {choices} of the Literal it or its "
                "part is annotated"], None
    if ann == "bool" and where == "__init__":
        return ["value", False, "an option of the layer's construction: off (the layer keeps every part)"], None
    width = _tensor_width(name, fields, dims["H"]) if _is_tensor(ann) and where == "forward" else None
    if width is not None:
        return ["tensor", width[0], width[1]], None
    if _optional(ann) and where == "forward":
        return ["value", None, f"None (its annotation {ann} allows it: the layer handles the input's absence)"], None
    if _is_tensor(ann) and where == "forward":
        return None, (f"forward input {name} ({ann}): no config size names it and it is not named for hidden "
                      "states, so its width is unknown")
    return None, f"{where} input {name} ({ann or 'no annotation'}): no rule gives a value of this type"


def derive(signature: dict | None, fields: dict, dims: dict,
           assumed: dict | None = None) -> tuple[dict, dict, list[str]]:
    """(__init__ inputs, forward inputs, what no rule covers) of a decoder layer beyond what every decoder-layer
    example gives, for its required parameters; `fields` is the model's text config (with the keys config_rules
    derives, `assumed`: {key: rule}), `dims` A6's (`H`, `layer`)."""
    sig = signature or {}
    cross = cross_attention.inputs(sig)
    missing = []
    out = []
    for method, given in (("__init__", INIT_INPUTS), ("forward", FORWARD_INPUTS)):
        m = sig.get(method) or {}
        plan = {}
        for name in m.get("required", []):
            if name in given or name in cross or name in (m.get("layer_lists") or {}):  # a stack's layers: layer_stack.py
                continue
            if name in (m.get("owner_parts") or {}):  # the model's parts: model_parts.py
                continue
            got, why_not = _one(name, (m.get("annotations") or {}).get(name), fields, dims, method,
                                (m.get("choices") or {}).get(name), assumed, (m.get("reads") or {}).get(name))
            if got is None:
                missing.append(why_not)
            elif got[0] == "hidden" and {"hidden_states", "x"} & set(m.get("required", []) + m.get("optional", [])):
                plan[name] = ["tensor", got[1], f"[T, config.hidden_size] ({got[2]}), beside the hidden states"]
            else:
                plan[name] = got
        if method == "forward":
            _own_hidden_states(plan, m, dims["H"])
        out.append(plan)
    for name, key in ((sig.get("forward") or {}).get("enabled_by") or {}).items():
        got, why_not = _enabled(name, key, ((sig.get("forward") or {}).get("annotations") or {}).get(name), fields,
                                dims)
        if got is not None:
            out[1][name] = got
        elif why_not:
            missing.append(why_not)
    return out[0], out[1], missing


def _own_hidden_states(plan: dict, forward: dict, hidden: int) -> None:
    """A forward that takes neither `hidden_states` nor `x` takes the hidden states under its own name: its first
    required input named `*_hidden_states` of width hidden_size (Bart's `decoder_hidden_states`) is them, not a
    random tensor beside them."""
    if {"hidden_states", "x"} & set(forward.get("required", []) + forward.get("optional", [])):
        return
    name = next((n for n in forward.get("required", []) if n.endswith("_hidden_states")
                 and plan.get(n, [None])[0] == "tensor" and plan[n][1] == hidden), None)
    if name is not None:
        plan[name] = ["hidden", hidden, "the hidden states (the forward takes no hidden_states or x: this is its input "
                      "named for them)"]


def _enabled(name: str, key: str, ann: str | None, fields: dict, dims: dict) -> tuple[list | None, str | None]:
    """An optional forward input the model passes where config.<key> enables the part using it (A1's `enabled_by`):
    ([kind, value, why], None) where the config enables it, (None, None) where it does not (the default None, as
    the layer's part is not built), (None, why not) where it does and no rule gives the tensor."""
    v = fields.get(key)
    if not v or (isinstance(v, (int, float)) and v < 0):
        return None, None
    width = _tensor_width(name, fields, dims["H"]) if _is_tensor(ann) else None
    if width is None:
        return None, (f"forward input {name} ({ann}): config.{key}={v!r} enables the part that uses it and vLLM's "
                      "model passes it, but no config size names it and it is not named for hidden states")
    return ["tensor", width[0], f"{width[1]}: config.{key}={v!r} enables the part that uses it, and vLLM's model "
            "passes it"], None


def hidden_stack(signature: dict | None, fields: dict) -> tuple[list[int], str | None, str | None]:
    """(the leading dimensions of the hidden-states input, a note, what is missing) from A1's forward `stacks`:
    [config.<count>] where the layer indexes a stack of them; [] for plain [T, H] hidden states."""
    stacks = ((signature or {}).get("forward") or {}).get("stacks") or {}
    name = next((n for n in FORWARD_INPUTS if n in stacks), None)
    if name is None:
        return [], None, None
    count, index = stacks[name]["count"], stacks[name]["index"]
    k = fields.get(count)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return [], None, (f"forward input {name}: a stack indexed by config.{index}, of config.{count} entries, "
                          "which the config lacks")
    return [k], (f"forward input {name} = [{k}, T, H] random (a stack of config.{count} hidden states: the layer "
                 f"indexes it with config.{index})"), None


def notes(init: dict, forward: dict) -> list[str]:
    shown = {"tensor": lambda v: f"[T, {v}] random", "ids": lambda v: f"[T] random in [0, {v})",
             "hidden": lambda v: "the hidden states"}
    return [f"{method} input {name} = {shown.get(kind, lambda v: v)(v)} ({why})"
            for method, plan in (("__init__", init), ("forward", forward)) for name, (kind, v, why) in plan.items()]
