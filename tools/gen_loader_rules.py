"""vLLM's weight-loading conventions per model file, read from the source trees: models/vllm-loader-rules.json.

    python tools/gen_loader_rules.py ~/.cache/vllm-bundler/sdist/vllm-0.26.0-23e9fa19d7e2 \
        ~/.cache/vllm-bundler/sdist/vllm-0.33.0-f4c33c2503d5 [--out models/vllm-loader-rules.json]

tools/parity.py maps a bundle's (vLLM's) parameters onto transformers' layer with these rules; it runs where vLLM's
source is absent, so they are committed. For each `vllm/model_executor/models/<file>.py` (literals only, by ast):
- `packed`: merged parameter -> the checkpoint parameters it holds, in order: the classes'
  `packed_modules_mapping` dicts and the loaders' `stacked_params_mapping` tuples (param, shard, shard_id: shard
  ids q, k, v or 0, 1, ... give the order);
- `experts`: the checkpoint names of the experts' gate, up and down projections (FusedMoE's `ckpt_names=(gate,
  down, up)`, `make_expert_params_mapping(ckpt_gate_proj_name=..., ...)`), where the file names them; up is "" for
  non-gated experts (NemotronH's `("up_proj", "down_proj", None)`: w13 holds up_proj alone); or an
  `expert_params_mapping` comprehension over literal names choosing "w13" or "w2" by a literal test (Dbrx's
  `("w13" if weight_name in ["w1", "v1"] else "w2", ...) for weight_name in ["w1", "v1", "w2"]`: w1, v1 gate and up).
- `mapper`: the literal renames of the file's `WeightsMapper(orig_to_new_suffix=..., orig_to_new_substr=...)`, as
  [kind, checkpoint text, vLLM text] (Aria's `router.weight` -> `router_weight`, `experts.fc1` ->
  `experts.gate_up_proj`); prefixes (model-level paths), regexes, dropped names (None) and deletions are left out.
  Module renames inside a layer, written as a dict of f-strings `{f"{src}.self_attn.qkv_proj.": f"{dst}.mixer.qkv_proj."}`
  (a per-layer prefix map: Cosmos3 Edge's), are kept as ["layer_prefix", ".self_attn.", ".mixer."]: the literal tails
  after the layer's path, their common trailing modules dropped. A `load_weights` that renames a checkpoint name
  literally (`n = n.replace("A_log", "A")`, `n.replace(".block_sparse_moe.router.layer.weight", ".block_sparse_moe.
  gate.weight")`: GraniteMoe*'s) gives ["substr", old, new] too; one that deletes text under a test naming where
  (`if "mlp.gate.wg." in name: name = name.replace("wg.", "")`: HunYuan's) gives that place without it,
  ["substr", "mlp.gate.wg.", "mlp.gate."]. A class that borrows another's mapper
  (`hf_to_vllm_mapper = GptOssForCausalLM.hf_to_vllm_mapper`: openai_privacy_filter.py's) names it in
  `mapper_from`, and the file's `mapper` holds the renames of the file that defines that class.
- `head_interleaved`: the fused q/k/v parameters whose checkpoint rows the loader regroups from [heads, 3, head_dim]
  to vLLM's [3, heads, head_dim] (GPT-NeoX's and Bloom's `query_key_value`: an `if "<name>" in name:` block that
  views the weight as (heads, 3, -1) and transposes dims 0 and 1).
- `rotary_permuted`: the checkpoint modules (parts of a merged parameter) whose weight rows the loader permutes in
  each head from interleaved pairs [head_dim/2, 2] to halves [2, head_dim/2], for a neox-style rotary (Llama 4's
  `permute_qk_weight_for_rotary`: a function that views the weight as (heads, rows // heads // 2, 2, in) and
  transposes dims 1 and 2, for the names it tests with `"<name>" in modules`, of the file's merged parts).
`default` holds, for each merged name, the mapping most files give it, and FusedMoE's default expert names: the
rules of a file that states none. Each version's file is read; where versions disagree the later one wins (its
`mapper` keeps the earlier's renames too) and the conflict is listed in `conflicts`.
- `scaled`: the modules whose weight `load_weights` multiplies in place after loading, under a config flag, by an
  expression of config fields (LongCat-Flash's `if self.config.mla_scale_kv_lora ...: self_attn.kv_a_layernorm.weight
  .data *= (self.config.hidden_size / self.config.kv_lora_rank) ** 0.5`): {module: {"when": flag, "factor": text}}.
`transformed`: parameters vLLM's layers store as a function of the checkpoint's, by the weight loader they set
(`set_weight_attrs(self.A, {"weight_loader": loader})` where the loader, a def or an assignment in the same function,
applies `-torch.exp(...)`: the Mamba mixers' A = -exp(A_log)), read from vllm/model_executor/layers and models:
{parameter name: {"op": "neg_exp", "files": [...]}}.
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import re
import sys
from pathlib import Path

QKV_ORDER = {"q": 0, "k": 1, "v": 2}
MAPPER_KINDS = ("substr", "suffix")
FUSED_MOE_DEFAULT = {"gate": "gate_proj", "down": "down_proj", "up": "up_proj"}


def _const(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _regroups_heads(block: list) -> bool:
    """Whether statements view a tensor as (heads, 3, ...) and then transpose dims 0 and 1."""
    calls = [n for stmt in block for n in ast.walk(stmt) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    views = [c for c in calls if c.func.attr in ("view", "reshape") and c.args and any(
        isinstance(t, ast.Tuple) and len(t.elts) > 1 and _const(t.elts[1]) == 3 for t in ast.walk(c.args[0]))]
    return bool(views) and any(c.func.attr == "transpose" and [_const(a) for a in c.args] == [0, 1] for c in calls)


def _permutes_rotary(fn) -> bool:
    """Whether a function views a tensor as (heads, rows // heads // 2, 2, in) and transposes dims 1 and 2."""
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    views = [c for c in calls if c.func.attr in ("view", "reshape") and len(c.args) == 4 and _const(c.args[2]) == 2]
    return bool(views) and any(c.func.attr == "transpose" and [_const(a) for a in c.args] == [1, 2] for c in calls)


def rotary_permuted(tree, packed: dict) -> list:
    """The checkpoint modules a permuting function (_permutes_rotary) tests by name, of those merged into a parameter
    (`packed`): the names it tests otherwise (Mistral's own format's wq, wk; an embedding) are not a layer's."""
    parts = {p for v in packed.values() for p in v}
    out = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and _permutes_rotary(fn):
            out += [_const(n.left) for n in ast.walk(fn) if isinstance(n, ast.Compare) and isinstance(n.ops[0], ast.In)
                    and _const(n.left) in parts and _const(n.left) not in out]
    return out


def _comprehension_experts(node) -> dict:
    """{gate, up, down} from `[("w13" if n in [a, b] else "w2", ...) for n in [a, b, c]]` (a, b, c literal), else {}."""
    if not (isinstance(node, ast.ListComp) and len(node.generators) == 1 and isinstance(node.elt, ast.Tuple)
            and isinstance(node.generators[0].target, ast.Name) and isinstance(node.elt.elts[0], ast.IfExp)):
        return {}
    names, choice = _const(node.generators[0].iter), node.elt.elts[0]
    test = choice.test
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name) and test.left.id == node.generators[0].target.id
            and isinstance(test.ops[0], ast.In) and isinstance(_const(test.comparators[0]), (list, tuple))):
        return {}
    merged = {n: _const(choice.body) if n in _const(test.comparators[0]) else _const(choice.orelse) for n in names}
    w13, w2 = [n for n in names if merged[n] == "w13"], [n for n in names if merged[n] == "w2"]
    return {"gate": w13[0], "up": w13[1], "down": w2[0]} if len(w13) == 2 and len(w2) == 1 else {}


def _tail(node) -> str | None:
    """The literal text after the formatted values of an f-string that starts with one (`f"{prefix}.mlp."`)."""
    if (isinstance(node, ast.JoinedStr) and len(node.values) == 2 and isinstance(node.values[0], ast.FormattedValue)
            and isinstance(node.values[1], ast.Constant) and str(node.values[1].value).startswith(".")):
        return node.values[1].value
    return None


def _layer_prefix(orig: str, new: str) -> list:
    """["layer_prefix", orig, new] with the modules both end with dropped (".a.x." and ".b.x." -> ".a.", ".b.")."""
    a, b = orig.strip(".").split("."), new.strip(".").split(".")
    while len(a) > 1 and len(b) > 1 and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    return ["layer_prefix", "." + ".".join(a) + ".", "." + ".".join(b) + "."]


def _neg_exp(node) -> bool:
    """Whether the subtree holds `-torch.exp(...)`."""
    return any(isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and isinstance(n.operand, ast.Call)
               and isinstance(n.operand.func, ast.Attribute) and n.operand.func.attr == "exp"
               and isinstance(n.operand.func.value, ast.Name) and n.operand.func.value.id == "torch"
               for n in ast.walk(node))


def transformed_params(source: str) -> dict:
    """{vLLM parameter name: op} for the parameters whose weight loader transforms the checkpoint tensor."""
    out = {}
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        loaders = {n.name for n in ast.walk(fn) if isinstance(n, ast.FunctionDef) and n is not fn and _neg_exp(n)}
        loaders |= {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign) and _neg_exp(n.value)
                    for t in n.targets if isinstance(t, ast.Name)}
        for call in ast.walk(fn):
            if (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "set_weight_attrs"
                    and len(call.args) == 2 and isinstance(call.args[0], ast.Attribute)
                    and isinstance(call.args[1], ast.Dict)):
                for k, v in zip(call.args[1].keys, call.args[1].values):
                    if _const(k) == "weight_loader" and isinstance(v, ast.Name) and v.id in loaders:
                        out[call.args[0].attr] = "neg_exp"
    return out


def _config_fields(node) -> str | None:
    """`node`, an expression of `self.config.<field>` reads, constants and arithmetic, as text over the fields alone
    (`(hidden_size / q_lora_rank) ** 0.5`); None for anything else."""
    text = ast.unparse(node)
    if "self" in text.replace("self.config.", ""):
        return None
    text = text.replace("self.config.", "")
    ok = all(isinstance(n, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.operator, ast.unaryop,
                            ast.Load)) for n in ast.walk(ast.parse(text, mode="eval")))
    return text if ok else None


def _config_read(node) -> bool:
    """Whether `node` is `self.config.<field>`."""
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "config"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "self")


def scaled_params(fn: ast.FunctionDef) -> dict:
    """{vLLM module: {"when": config flag, "factor": expression of config fields}} for the weights a `load_weights`
    scales in place after loading under a config flag (`if self.config.mla_scale_q_lora ...:
    self_attn.q_a_layernorm.weight.data *= (self.config.hidden_size / self.config.q_lora_rank) ** 0.5`:
    LongCat-Flash's): vLLM's parameter holds the checkpoint's times the factor."""
    out = {}
    for node in ast.walk(fn):
        if not isinstance(node, ast.If):
            continue
        flags = [n.attr for n in ast.walk(node.test) if _config_read(n)]
        for stmt in node.body:
            t = getattr(stmt, "target", None)
            if (isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Mult) and len(flags) == 1
                    and isinstance(t, ast.Attribute) and t.attr == "data" and isinstance(t.value, ast.Attribute)
                    and t.value.attr == "weight" and isinstance(t.value.value, ast.Attribute)):
                factor = _config_fields(stmt.value)
                if factor:
                    out[t.value.value.attr] = {"when": flags[0], "factor": factor}
    return out


def _deletions_in_place(fn: ast.FunctionDef) -> list[list[str]]:
    """["substr", place, place without old] for each `n.replace(old, "")` under `if "<place>" in n:` where place
    holds old and more: a deletion alone names no place to undo it at (any text would do), the test names it."""
    out = []
    for node in ast.walk(fn):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
                and isinstance(node.test.ops[0], ast.In) and isinstance(_const(node.test.left), str)
                and isinstance(node.test.comparators[0], ast.Name)):
            continue
        place, var = _const(node.test.left), node.test.comparators[0].id
        for call in (c for st in node.body for c in ast.walk(st)):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "replace"
                    and getattr(call.func.value, "id", None) == var and len(call.args) == 2):
                old, new = (_const(a) for a in call.args)
                kept = place.replace(old, "") if isinstance(old, str) and old and old in place else ""
                if new == "" and kept.strip("."):
                    out.append(["substr", place, kept])
    return out


def file_rules(source: str) -> dict:
    packed: dict = {}
    experts: dict = {}
    mapper: list = []
    interleaved: list = []
    borrowed = None
    scaled: dict = {}
    tree = ast.parse(source)
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.name == "load_weights":
            scaled.update(scaled_params(fn))
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "replace"
                        and isinstance(call.func.value, ast.Name) and len(call.args) == 2):
                    old, new = (_const(a) for a in call.args)
                    if isinstance(old, str) and isinstance(new, str) and old and new and ["substr", old, new] not in mapper:
                        mapper.append(["substr", old, new])
            for rule in _deletions_in_place(fn):
                if rule not in mapper:
                    mapper.append(rule)
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.In)
                and isinstance(_const(node.test.left), str) and _regroups_heads(node.body)):
            if _const(node.test.left) not in interleaved:
                interleaved.append(_const(node.test.left))
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if _tail(k) and _tail(v) and _tail(k) != _tail(v):
                    rule = _layer_prefix(_tail(k), _tail(v))
                    if rule not in mapper:
                        mapper.append(rule)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            value = _const(node.value) if node.value is not None else None
            if (name == "hf_to_vllm_mapper" and isinstance(node.value, ast.Attribute)
                    and node.value.attr == name and isinstance(node.value.value, ast.Name)):
                borrowed = node.value.value.id
            elif name == "expert_params_mapping" and _comprehension_experts(node.value):
                experts = _comprehension_experts(node.value)
            elif name == "packed_modules_mapping" and isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, (list, tuple)) and all(isinstance(p, str) for p in v):
                        packed[k.strip(".")] = [p.strip(".") for p in v]
            elif name == "stacked_params_mapping" and isinstance(value, list):
                shards = collections.defaultdict(list)
                for item in value:
                    if isinstance(item, tuple) and len(item) == 3 and all(isinstance(s, str) for s in item[:2]):
                        order = QKV_ORDER.get(item[2], item[2]) if isinstance(item[2], (str, int)) else None
                        if isinstance(order, int):
                            shards[item[0].strip(".")].append((order, item[1].strip(".")))
                for k, parts in shards.items():
                    packed.setdefault(k, [p for _, p in sorted(parts)])
        elif isinstance(node, ast.Call):
            kw = {k.arg: _const(k.value) for k in node.keywords if k.arg}
            for kind in MAPPER_KINDS:
                for orig, new in (kw.get(f"orig_to_new_{kind}") or {}).items():
                    if isinstance(orig, str) and isinstance(new, str) and new and [kind, orig, new] not in mapper:
                        mapper.append([kind, orig, new])
            names = kw.get("ckpt_names")
            if (isinstance(names, tuple) and len(names) == 3 and all(isinstance(n, str) for n in names[:2])
                    and isinstance(names[2], (str, type(None)))):
                experts = {"gate": names[0], "down": names[1], "up": names[2] or ""}
            elif (all(isinstance(kw.get(f"ckpt_{r}_proj_name"), str) for r in ("gate", "down"))
                  and "ckpt_up_proj_name" in kw and isinstance(kw["ckpt_up_proj_name"], (str, type(None)))):
                experts = {r: kw[f"ckpt_{r}_proj_name"] or "" for r in ("gate", "down", "up")}
    permuted = rotary_permuted(tree, packed)
    out = {}
    if packed:
        out["packed"] = packed
    if experts:
        out["experts"] = experts
    if mapper:
        out["mapper"] = mapper
    if borrowed and borrowed not in {c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}:
        out["mapper_from"] = borrowed
    if interleaved:
        out["head_interleaved"] = interleaved
    if permuted:
        out["rotary_permuted"] = permuted
    if scaled:
        out["scaled"] = scaled
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", type=Path, help="extracted vLLM source trees, oldest first")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "vllm-loader-rules.json")
    a = p.parse_args(argv)
    files: dict = {}
    conflicts: list = []
    counts: dict = collections.defaultdict(collections.Counter)
    transformed: dict = {}
    defined_in: dict = {}  # model class -> the file defining it
    for tree in a.trees:
        root = tree / "vllm" / "model_executor"
        for f in sorted(root.glob("layers/**/*.py")) + sorted(root.glob("models/*.py")):
            for param, op in transformed_params(f.read_text(encoding="utf-8")).items():
                entry = transformed.setdefault(param, {"op": op, "files": []})
                if entry["op"] != op:
                    conflicts.append(f"{f.relative_to(root)}: {param} loaded as {op}, elsewhere {entry['op']}")
                rel = str(f.relative_to(root))
                if rel not in entry["files"]:
                    entry["files"].append(rel)
        models = tree / "vllm" / "model_executor" / "models"
        if not models.is_dir():
            print(f"gen_loader_rules: {tree} has no vllm/model_executor/models: pass an extracted vLLM sdist", file=sys.stderr)
            return 2
        for f in sorted(models.glob("*.py")):
            for cls in re.findall(r"^class (\w+)", f.read_text(encoding="utf-8"), re.M):
                defined_in[cls] = f.name
        for f in sorted(models.glob("*.py")):
            rules = file_rules(f.read_text(encoding="utf-8"))
            if not rules:
                continue
            for k, v in rules.get("packed", {}).items():
                counts[k][tuple(v)] += 1
            old = files.get(f.name)
            if old is not None and old != rules:
                conflicts.append(f"{f.name}: {tree.name} differs from the earlier tree")
                # renames only name candidates (parity keeps one that names a transformers parameter): all are kept
                kept = [r for r in old.get("mapper", []) if r not in rules.get("mapper", [])]
                if kept:
                    rules["mapper"] = rules.get("mapper", []) + kept
                # a scaling the later file folds otherwise (0.33's longcat_flash.py: in a weight loader) is kept
                if old.get("scaled"):
                    rules["scaled"] = {**old["scaled"], **rules.get("scaled", {})}
            files[f.name] = rules
    for rules in files.values():
        lent = files.get(defined_in.get(rules.get("mapper_from")), {}).get("mapper", [])
        if lent:
            rules["mapper"] = rules.get("mapper", []) + [r for r in lent if r not in rules.get("mapper", [])]
    default = {"packed": {k: list(c.most_common(1)[0][0]) for k, c in sorted(counts.items())
                          if c.most_common(1)[0][1] > 1 and c.most_common(1)[0][0] != (k,)},
               "experts": FUSED_MOE_DEFAULT}
    result = {"generated_by": "tools/gen_loader_rules.py", "trees": [t.name for t in a.trees], "default": default,
              "transformed": transformed, "conflicts": conflicts, "files": dict(sorted(files.items()))}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{a.out}: {len(files)} model files, {len(default['packed'])} default merges, {len(conflicts)} conflicts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
