"""A6: the config class vLLM loads the model's config through, applied to the example's config as vLLM applies it.

vLLM reads a checkpoint's config.json through its own class where its registry names one for the model_type
(`_CONFIG_REGISTRY` in `vllm/transformers_utils/config.py`, the class's module from `_CLASS_TO_MODULE` in
`configs/__init__.py`: KimiLinearConfig for kimi_linear), and a model file rebuilds its config through a class it
defines for that model_type (0.26.0's longcat_flash.py: `FlashConfig(**hf_config.__dict__)`). The generated config
(transformers' class's `to_dict()`) lacks what that class gives: the attributes its `__init__` sets from its
arguments (FlashConfig: `moe_intermediate_size` from `expert_ffn_hidden_size`), its properties
(KimiLinearConfig.is_moe) and its methods (`is_kda_layer(i)`). The class's source is run here on the config's
fields (and the values `config_rules` derives for the keys they lack), under a stand-in PretrainedConfig that keeps
every keyword argument as an attribute, as transformers' does (transformers and vLLM are not imported). A key the
config lacks takes the instance's value; a method taking no argument or a layer index is recorded in `_methods`
for every layer, where the config does not record it.
"""

from __future__ import annotations

import __future__
import ast
import copy
import inspect
import json
import sys
from pathlib import Path

from bundler_lib.example import config_rules
from bundler_lib.example.model_config import modalities, rope_parameters, text_config

REGISTRY_FILE = "vllm/transformers_utils/config.py"
CONFIGS_INIT = "vllm/transformers_utils/configs/__init__.py"
# what A6 reads of the tree (rules/package.py hands these in beside the graph's own files)
TREE_GLOBS = (REGISTRY_FILE, "vllm/transformers_utils/configs/*.py")
_BASES = ("PretrainedConfig", "PreTrainedConfig")


class _PretrainedConfig:
    """transformers' PretrainedConfig as a config class's __init__ uses it: every keyword argument an attribute."""

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _assigned(module: ast.Module, name: str) -> ast.expr | None:
    for node in module.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == name:
            return node.value
    return None


def _class_def(module: ast.Module, name: str | None = None, model_type: str | None = None) -> ast.ClassDef | None:
    """The PretrainedConfig subclass of `module` named `name`, or declaring `model_type = "<model_type>"`."""
    for node in module.body:
        if not (isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in _BASES
                                                        for b in node.bases)):
            continue
        if name is not None and node.name == name:
            return node
        declared = _assigned(ast.Module(body=node.body, type_ignores=[]), "model_type")
        if model_type is not None and isinstance(declared, ast.Constant) and declared.value == model_type:
            return node
    return None


def _registered(tree: Path, model_type: str) -> tuple[str, ast.Module, ast.ClassDef] | None:
    """(file, module, class) of the config class vLLM's registry names for `model_type`, or None."""
    registry = _parse(tree / REGISTRY_FILE)
    init = _parse(tree / CONFIGS_INIT)
    call = _assigned(registry, "_CONFIG_REGISTRY") if registry else None
    if not isinstance(call, ast.Call) or init is None:
        return None
    entries: dict = {}
    for kw in call.keywords:
        if kw.arg is not None:
            entries[kw.arg] = kw.value
        elif isinstance(kw.value, ast.Dict):   # **{"name-with-dash": "Class"}
            entries.update({k.value: v for k, v in zip(kw.value.keys, kw.value.values) if isinstance(k, ast.Constant)})
    cname = entries.get(model_type)
    modules = _assigned(init, "_CLASS_TO_MODULE")
    if not (isinstance(cname, ast.Constant) and isinstance(modules, ast.Dict)):
        return None
    mod = next((v.value for k, v in zip(modules.keys, modules.values)
                if isinstance(k, ast.Constant) and k.value == cname.value and isinstance(v, ast.Constant)), None)
    if not mod:
        return None
    rel = mod.replace(".", "/") + ".py"
    module = _parse(tree / rel)
    cls = _class_def(module, name=cname.value) if module else None
    return (rel, module, cls) if cls else None


def find(tree: Path, graph: dict, model_type: str) -> tuple[str, ast.Module, ast.ClassDef] | None:
    """(file, module, class) of the config class vLLM loads `model_type`'s config through: its registry's, else one
    the layer's own module defines with that model_type; None where there is neither."""
    found = _registered(tree, model_type)
    if found:
        return found
    rel = graph.get("def_file")
    module = _parse(tree / rel) if isinstance(rel, str) else None
    cls = _class_def(module, model_type=model_type) if module else None
    return (rel, module, cls) if cls else None


def _load(rel: str, module: ast.Module, node: ast.ClassDef) -> type:
    """The class from its source: its module's standard-library imports, a stand-in base, annotations unevaluated."""
    ns = {"__name__": rel[:-3].replace("/", "."), **{b: _PretrainedConfig for b in _BASES}}
    for stmt in module.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            roots = [a.name.split(".")[0] for a in stmt.names] if isinstance(stmt, ast.Import) else \
                [(stmt.module or "").split(".")[0]]
            if getattr(stmt, "level", 0) == 0 and all(r in sys.stdlib_module_names for r in roots):
                exec(compile(ast.Module(body=[stmt], type_ignores=[]), rel, "exec"), ns)
    flags = __future__.annotations.compiler_flag
    exec(compile(ast.Module(body=[node], type_ignores=[]), rel, "exec", flags=flags, dont_inherit=True), ns)
    return ns[node.name]


def _plain(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _methods(cls: type, obj, layers) -> dict:
    """name -> {"value": v} / {"by_layer": [...]}: the class's own public methods taking no argument or a layer
    index, each evaluated on a copy of `obj`, where every value is plain."""
    out = {}
    for k, v in sorted(vars(cls).items()):
        if k.startswith("_") or not inspect.isfunction(v):
            continue
        params = list(inspect.signature(v).parameters.values())[1:]
        if len(params) > 1 or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
            continue
        try:
            if not params:
                entry = {"value": getattr(copy.deepcopy(obj), k)()}
            elif isinstance(layers, int):
                method = getattr(copy.deepcopy(obj), k)
                entry = {"by_layer": [method(i) for i in range(layers)]}
            else:
                continue
        except Exception:   # noqa: BLE001  (the method fails on this config: the layer calling it stops there)
            continue
        if _plain(entry):
            out[k] = entry
    return out


def apply(cfg: dict, graph: dict, tree: Path) -> tuple[dict, dict | None, list[str]]:
    """(config, provenance or None, notes): `cfg` with its text config given what the config class vLLM loads it
    through gives (see the module docstring); `cfg` itself where no such class is found or it cannot be run."""
    tc, nested = text_config(cfg)
    mt = tc.get("model_type") or cfg.get("model_type")
    found = find(tree, graph, mt) if isinstance(mt, str) else None
    if not found:
        return cfg, None, []
    rel, module, node = found
    fields = {k: v for k, v in tc.items() if isinstance(k, str) and k.isidentifier() and not k.startswith("_")}
    seen = {**fields, "rope_parameters": rope_parameters(tc) or {"rope_type": "default", "rope_theta": 10000.0}}
    by_rules = config_rules.derived({**seen, config_rules.MODALITIES: modalities(cfg, nested)})
    try:
        cls = _load(rel, module, node)
        obj = cls(**copy.deepcopy({**{k: v for k, (v, _) in by_rules.items()}, **seen}))
    except Exception as e:   # noqa: BLE001  (its source needs what the stand-in lacks: the config as generated)
        return cfg, None, [f"vLLM's {node.name} ({rel}) could not be run on the config ({type(e).__name__}: {e}); "
                           "the config is read as generated"]
    values = {}
    for k in sorted(set(vars(obj)) | {k for k, v in vars(cls).items() if isinstance(v, property)}):
        if k.startswith("_") or k in by_rules or seen.get(k) is not None:
            continue
        try:
            v = getattr(obj, k)
        except Exception:   # noqa: BLE001  (a property failing on this config: left to the layer)
            continue
        if _plain(v) and not (v is None and k in seen):   # None too: vLLM's config has the key (zero_expert_type)
            values[k] = v
    recorded = tc.get("_methods") if isinstance(tc.get("_methods"), dict) else {}
    methods = {k: e for k, e in _methods(cls, obj, seen.get("num_hidden_layers")).items()
               if k not in recorded and k not in fields}
    new_tc = {**tc, **values}
    if methods:
        new_tc["_methods"] = {**recorded, **methods}
    out = {**cfg, nested: new_tc} if nested else new_tc
    provenance = {"class": node.name, "file": rel, "values": sorted(values), "methods": sorted(methods)}
    notes = [f"vLLM loads the config through its {node.name} ({rel}): "
             + (f"its __init__ and properties give {', '.join(f'{k}={values[k]!r}' for k in sorted(values))}"
                if values else "it gives no key the config lacks")
             + (f"; its methods {', '.join(sorted(methods))} are answered from it per layer" if methods else "")]
    return out, provenance, notes
