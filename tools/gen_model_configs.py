"""Model configs for the zoo, from transformers' own config classes (offline: the hub is not reached).

    $(./pants --toolchain-python) tools/gen_model_configs.py [--version 0.26.0 ...]

1. Sets up (once) a venv with transformers==5.17.0 under ~/.cache/vllm-bundler (`VLLM_BUNDLER_CACHE`):
   Python 3.11 and pip, no torch (configs need none; `configuration_auto` and the config classes import
   without it). 5.17.0 is the GPU machine's transformers, so a later parity run on that machine uses the
   very classes these configs came from.
2. Reads transformers' auto-model tables (`models/auto/modeling_auto.py`, every `*_MAPPING_NAMES`, parsed,
   not imported: importing it needs torch) into `models/transformers-architectures.json`:
   architecture class name -> model_type(s), and config class name -> model_type(s) (`CONFIG_MAPPING_NAMES`).
3. Maps each zoo symbol (benchmarks/zoo.py) to a model_type: the symbol's module -> the architectures vLLM's
   registry (`vllm/model_executor/models/registry.py`) implements in that module -> transformers' model_type
   of those architectures (see `zoo.map_models` for the choice among several; where transformers knows none of
   them, vLLM's own config class of that name, else the transformers config class the layer's `config` parameter
   is annotated with).
4. Writes `models/transformers--<model_type>/config.json` = `AutoConfig.for_model(<model_type>, **<OVERRIDES>)
   .to_dict()` and the plain values of the properties the model's config classes define (`config_data`)
   (the config class's defaults, which describe its reference checkpoint) and `SOURCE.txt` beside it
   (transformers version, config class, the reference checkpoint of the module's
   `@auto_docstring(checkpoint=...)`). The class's `attribute_map` aliases are written too (the config object
   answers to them: `num_experts_per_tok` is Ernie 4.5's `moe_k`), and `_methods`: the value of each method the
   model's config classes define that takes no argument or a layer index, for every layer (`method_values`: vLLM's
   KimiLinearConfig.is_kda_layer(i)), which the example's config answers calls from. A target names it as
   `model="transformers/<model_type>"`.
      `models/transformers-zoo-<version>.tsv` lists every zoo symbol with its model or why it has none.
5. From vLLM's OWN config classes (`vllm/transformers_utils/configs/*.py` of each version's tree, subclasses of
   transformers' PretrainedConfig, loaded by path in the same venv, vLLM itself not imported): writes
   `models/vllm-<version>--<model_type>/config.json` = `<Class>().to_dict()` and `SOURCE.txt`, and
   `models/vllm-<version>-configs.json` (each model_type's module and class, or why it could not be loaded or
   built). zoo.py maps an architecture transformers does not know to such a config
   (`model="vllm-<version>/<model_type>"`); the directories of those no zoo symbol maps to are removed. A zoo
   layer whose `config` is annotated with a dataclass of its own module, a literal default for every field
   (molmo2.py's TextConfig), gets `models/vllm-<version>--<module>.<Class>/` from those defaults (parsed).

OVERRIDES: a config class can leave None a value vLLM reads (DeepseekV2Config's num_experts_per_tok: vLLM would
fail too), or default to a toy size no real checkpoint has (BloomConfig: hidden_size 64); the generated config carries
the reference checkpoint's published value, and records it. The class is built with these values (its aliases and
the fields it derives from them follow), and `tests/test_model_configs.py` refuses a toy-sized config.

The directory is named by model_type, not by the reference checkpoint, because the file is the class's
defaults, not the checkpoint's published config.json (they can differ: dtype, token ids, rope extras).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRANSFORMERS = "5.17.0"
CACHE = Path(os.environ.get("VLLM_BUNDLER_CACHE", Path.home() / ".cache" / "vllm-bundler"))
VENV = CACHE / f"transformers-{TRANSFORMERS}-py311"
MODELS = REPO / "models"

# model_type -> {key: (value, where it is published)}: values the config class leaves None or lacks though vLLM reads
# them (vLLM would fail on the class's own config too), or defaults to a toy size, as the reference checkpoint
# publishes them.
_KIMI = ("moonshotai/Kimi-Linear-48B-A3B-Instruct config.json at revision e1df551a447157d4658b573f9a695d57658590e9 "
         "(its fields as a public test file quotes them verbatim, pinned by that revision)")
_LONGCAT = ("meituan-longcat/LongCat-Flash-Chat config.json (as mlx-community/LongCat-Flash-Chat-bf16 republishes it; "
            "hf-internal-testing/LongCat-ShortCat, transformers' test checkpoint, sets the same)")
_HUNYUAN = "tencent/Hunyuan-A13B-Instruct config.json (recalled offline, not re-read; its card: 64+1 experts, 8 active)"
OVERRIDES = {
    # transformers' DbrxAttention clamps q/k/v by clip_qkv unconditionally (its class default None fails there);
    # vLLM's dbrx.py clamps only where it is set
    "dbrx": {"attn_config": ({"clip_qkv": 8}, "databricks/dbrx-instruct config.json (attn_config.clip_qkv; "
                                              "dbrx-base publishes the same)")},
    # transformers' BloomConfig defaults are a toy (hidden_size 64, 8 heads of 8: no attention backend takes head 8)
    "bloom": {"hidden_size": (1024, "bigscience/bloom-560m config.json"),
              "n_head": (16, "bigscience/bloom-560m config.json"),
              "n_layer": (24, "bigscience/bloom-560m config.json")},
    # DeepseekV2Config defaults to plain RoPE; every DeepSeek V2/V3 checkpoint (and an Eagle3 draft of one, whose
    # layer copies its rope_scaling and makes it deepseek_yarn unconditionally) publishes YaRN scaling
    "deepseek_v2": {"num_experts_per_tok": (6, "deepseek-ai/DeepSeek-V2-Lite config.json (64 routed experts, 6 "
                                               "activated)"),
                    "rope_parameters": ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                         "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707,
                                         "original_max_position_embeddings": 4096},
                                        "deepseek-ai/DeepSeek-V2-Lite config.json (rope_scaling, type yarn)"),
                    "max_position_embeddings": (163840, "deepseek-ai/DeepSeek-V2-Lite config.json")},
    # vLLM's cohere_asr.py (its layers and its arch-config convertor) reads the checkpoint's NeMo layout,
    # transf_decoder.config_dict; transformers' CohereAsrConfig holds the same decoder under its own names (its
    # defaults are that checkpoint's: hidden_size=hidden_size, intermediate_size=inner_size, num_hidden_layers=
    # num_layers, max_position_embeddings=max_sequence_length)
    "cohere_asr": {"transf_decoder": ({"config_dict": {"hidden_size": 1024, "inner_size": 4096,
                                                       "num_attention_heads": 8, "num_layers": 8, "hidden_act": "relu",
                                                       "max_sequence_length": 1024}},
                                      "CohereLabs/cohere-transcribe-03-2026 config.json (transf_decoder)")},
    # vLLM's chatglm.py reads config.original_rope directly; its ChatGLMConfig (adapted from ChatGLM2-6B) lacks it
    "chatglm": {"original_rope": (True, "THUDM/chatglm2-6b config.json (chatglm3-6b and glm-4-9b publish the same)")},
    # vLLM's minimax_m2.py reads config.scoring_func directly; transformers' class lacks it because its modeling
    # code always routes by sigmoid with a score-correction bias (modeling_minimax_m2.py)
    "minimax_m2": {"scoring_func": ("sigmoid", "MiniMaxAI/MiniMax-M2 config.json"),
                   "use_routing_bias": (True, "MiniMaxAI/MiniMax-M2 config.json")},
    # transformers' HunYuanMoEV1Config defaults to one expert (num_experts 1), where vLLM's hunyuan_v1.py builds a dense
    # MLP and transformers' layer a MoE block. vLLM reads the keys below; transformers' class lacks
    # moe_intermediate_size, use_mixed_mlp_moe, num_shared_expert and use_qk_norm, its modeling always building one
    # shared expert of intermediate_size and the q/k norms. The checkpoint gives moe_topk, moe_intermediate_size and
    # num_shared_expert per layer, every entry the same: given here as the int both take
    "hunyuan_v1_moe": {"num_experts": (64, _HUNYUAN),
                       "moe_topk": (8, _HUNYUAN),
                       "intermediate_size": (3072, _HUNYUAN),
                       "moe_intermediate_size": (3072, _HUNYUAN),
                       "use_mixed_mlp_moe": (True, _HUNYUAN),
                       "num_shared_expert": (1, _HUNYUAN),
                       "use_qk_norm": (True, _HUNYUAN),
                       "num_key_value_heads": (8, _HUNYUAN)},
    # vLLM's kimi_linear.py asserts its MLA's use_nope and reads the checkpoint's linear_attn_config block (which
    # layers are KDA, 1-based; the KDA heads) and the MoE keys below through its own KimiLinearConfig, whose
    # defaults differ (first_k_dense_replace 0); transformers' class folds that block into layer_types and
    # linear_* fields and lacks the rest, its modeling having them built in
    "kimi_linear": {
        "mla_use_nope": (True, _KIMI),
        "linear_attn_config": ({"head_dim": 128, "num_heads": 32, "short_conv_kernel_size": 4,
                                "kda_layers": [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 25, 26],
                                "full_attn_layers": [4, 8, 12, 16, 20, 24, 27]}, _KIMI),
        "first_k_dense_replace": (1, _KIMI),
        "moe_layer_freq": (1, _KIMI),
        "moe_router_activation_func": ("sigmoid", _KIMI),
        "use_grouped_topk": (True, _KIMI)},
    # vLLM's longcat_flash.py asserts zero_expert_type and (0.33.0) reads mla_scale_q_lora/mla_scale_kv_lora;
    # transformers' class lacks them because its modeling always scales the LoRA ranks and makes the zero
    # experts identities (modeling_longcat_flash.py)
    "longcat_flash": {"zero_expert_type": ("identity", _LONGCAT),
                      "mla_scale_q_lora": (True, _LONGCAT),
                      "mla_scale_kv_lora": (True, _LONGCAT),
                      # 0.33.0 reads it from transformers' class, which (like the checkpoint) lacks it
                      "moe_intermediate_size": (2048, "derived, not published: LongCat-Flash-Chat's config.json names "
                                                      "it expert_ffn_hidden_size (2048), as vLLM 0.26.0's FlashConfig "
                                                      "reads it (moe_intermediate_size = expert_ffn_hidden_size)")},
    # vLLM 0.33.0's BailingMoeV3TextConfig (Ling 3.0) defaults no_kda_lora to False, which its own KDA layer refuses
    # ("BailingMoeV3 KDA currently expects no_kda_lora=True"); every Ling 3.0 checkpoint sets it
    "bailing_hybrid": {"no_kda_lora": (True, "inclusionAI/Ling-3.0-tiny config.json at revision "
                                             "a2ee06c0f2de5b171701aee7f73f70a1da75483b (as a public test file pins "
                                             "and quotes it)")},
}


def find_python311() -> str:
    """python3.11 on PATH, else under pyenv (as the ./pants launcher finds it)."""
    check = "import sys; assert sys.version_info[:2] == (3, 11); print(sys.executable)"
    cands = [shutil.which("python3.11")]
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() if shutil.which(
        "pyenv") else str(Path.home() / ".pyenv")
    cands += sorted(str(p) for p in Path(root or Path.home() / ".pyenv").glob("versions/3.11.*/bin/python3.11"))
    for c in cands:
        if c and subprocess.run([c, "-c", check], capture_output=True).returncode == 0:
            return c
    raise SystemExit("gen_model_configs: Python 3.11 not found on PATH or under pyenv (e.g. `pyenv install 3.11`)")


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if (VENV / ".ready").exists():
        return py
    print(f"setting up {VENV} (transformers=={TRANSFORMERS}, no torch; first run only)", file=sys.stderr)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([find_python311(), "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"transformers=={TRANSFORMERS}"], check=True)
    (VENV / ".ready").touch()
    return py


# ------------------------------------------------------------------ run inside the venv (--inner-*)
def _transformers_dir() -> Path:
    import importlib.util
    return Path(importlib.util.find_spec("transformers").origin).parent


def inner_arch(out: Path) -> None:
    """architecture -> model_types, from every `*_MAPPING_NAMES` table of modeling_auto.py (parsed)."""
    import transformers
    src = (_transformers_dir() / "models" / "auto" / "modeling_auto.py").read_text(encoding="utf-8")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    archs: dict[str, list[str]] = {}
    tables = []
    for st in ast.parse(src).body:
        if not (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
                and st.targets[0].id.endswith("_MAPPING_NAMES")):
            continue
        tables.append(st.targets[0].id)
        try:
            pairs = ast.literal_eval(st.value.args[0] if isinstance(st.value, ast.Call) else st.value)
        except (ValueError, IndexError, SyntaxError):
            continue
        for mt, names in (pairs.items() if isinstance(pairs, dict) else pairs):
            for n in (names if isinstance(names, (tuple, list)) else (names,)):
                if mt in CONFIG_MAPPING_NAMES:
                    archs.setdefault(n, [])
                    if mt not in archs[n]:
                        archs[n].append(mt)
    norm = lambda s: re.sub(r"[^a-z0-9]", "", s.lower())   # noqa: E731
    for a, mts in archs.items():   # the model_type named like the architecture first (LlamaForCausalLM: llama)
        stem = norm(re.sub(r"(For[A-Z]\w*|Model|LMHeadModel)$", "", a))
        order = list(mts)
        mts.sort(key=lambda mt: (norm(mt) != stem, order.index(mt)))
    out.write_text(json.dumps({"transformers": transformers.__version__,
                               "source": "transformers/models/auto/modeling_auto.py: " + ", ".join(tables),
                               "model_types": sorted(CONFIG_MAPPING_NAMES),
                               "config_classes": {c: sorted(mt for mt, n in CONFIG_MAPPING_NAMES.items() if n == c)
                                                  for c in sorted(set(CONFIG_MAPPING_NAMES.values()))},
                               "architectures": dict(sorted(archs.items()))}, indent=1, sort_keys=True) + "\n")


def _model_classes(cfg) -> tuple[list[type], type]:
    """(the classes of `cfg`'s MRO below transformers' PretrainedConfig: the model's own, that base)."""
    out = []
    for klass in type(cfg).__mro__:
        if klass.__name__ in ("PretrainedConfig", "PreTrainedConfig"):
            return out, klass
        out.append(klass)
    return out, object


def method_values(cfg) -> dict:
    """name -> {"value": v} or {"by_layer": [v0, v1, ...]}: each public method the model's config classes define
    that takes no argument, or one (a layer index: unannotated or `int`) evaluated for every layer index
    0..num_hidden_layers-1, where every value is a plain JSON value (vLLM's KimiLinearConfig.is_kda_layer(i): the
    layer calls it; a JSON file cannot hold a method). Each is evaluated on a copy of `cfg`, so a method with side
    effects changes neither `cfg` nor another method's values."""
    import copy
    import inspect
    layers = getattr(cfg, "num_hidden_layers", None)
    out: dict[str, dict] = {}
    own, base = _model_classes(cfg)
    for klass in own:
        for k, v in sorted(vars(klass).items()):
            # an override of the base's API (to_dict, ...) is not the model's
            if k.startswith("_") or k in out or hasattr(base, k) or not inspect.isfunction(v):
                continue
            params = list(inspect.signature(v).parameters.values())[1:]
            if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) or len(params) > 1:
                continue
            try:
                if not params:
                    entry = {"value": getattr(copy.deepcopy(cfg), k)()}
                elif params[0].annotation in (int, "int", inspect.Parameter.empty) and isinstance(layers, int):
                    method = getattr(copy.deepcopy(cfg), k)
                    entry = {"by_layer": [method(i) for i in range(layers)]}
                else:
                    continue
                json.dumps(entry)
            except Exception:   # noqa: BLE001  (fails on the class's defaults, or not a plain value: left out)
                continue
            out[k] = entry
    return out


def config_data(cfg) -> dict:
    """`cfg.to_dict()` plus the values of the public properties its model's config classes define (Falcon's
    `rotary`, Jamba's `layers_num_experts`: vLLM reads them from the object, `to_dict()` leaves them out), where
    they are plain JSON values, and its methods' values (`method_values`) as `_methods`."""
    data = cfg.to_dict()
    methods = method_values(cfg)
    for klass in _model_classes(cfg)[0]:
        for k, v in sorted(vars(klass).items()):
            if isinstance(v, property) and not k.startswith("_") and k not in data:
                try:
                    value = getattr(cfg, k)
                    json.dumps(value)
                except Exception:   # noqa: BLE001  (not a plain value: left out)
                    continue
                data[k] = value
    if methods:
        data["_methods"] = methods
    return data


def _methods_line(data: dict) -> str:
    return (f"methods recorded (_methods, method_values): {', '.join(sorted(data['_methods']))}\n"
            if data.get("_methods") else "")


def override_values(model_type: str) -> dict:
    """OVERRIDES' values for `model_type`, as keyword arguments of its config class."""
    return {k: v for k, (v, _) in OVERRIDES.get(model_type, {}).items()}


def with_overrides(data: dict, model_type: str) -> dict:
    """Adds OVERRIDES' values for `model_type` to `data`, and records them in `_overrides`; returns them. A dict given
    for a nested sub-config (DBRX's attn_config) sets those of its fields; the others keep the class's values."""
    over = OVERRIDES.get(model_type, {})
    for k, (v, _) in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    if over:
        data["_overrides"] = {k: f"{v!r} from {where}" for k, (v, where) in over.items()}
    return over


def inner_configs(model_types: list[str], out_dir: Path) -> None:
    import transformers
    from transformers import AutoConfig
    report = {}
    for mt in model_types:
        try:
            cfg = AutoConfig.for_model(mt, **override_values(mt))
            data = config_data(cfg)
            # the config object also answers to its attribute_map's aliases (Ernie4_5_MoeConfig: num_experts_per_tok
            # is moe_k): write them too, so a reader of the JSON sees what vLLM reads from the object
            aliases = {k: data[v] for k, v in (getattr(type(cfg), "attribute_map", None) or {}).items()
                       if k not in data and v in data}
            data.update(aliases)
            over = with_overrides(data, mt)
            text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        except Exception as e:   # noqa: BLE001  (recorded, never fatal)
            report[mt] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
            continue
        amap = getattr(type(cfg), "attribute_map", None) or {}
        mod = sys.modules[type(cfg).__module__]
        ckpt = re.findall(r"checkpoint\s*=\s*[\"']([^\"']+)[\"']", Path(mod.__file__).read_text(encoding="utf-8"))
        d = out_dir / f"transformers--{mt}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(text)
        (d / "SOURCE.txt").write_text(
            f"generated by tools/gen_model_configs.py: AutoConfig.for_model({mt!r}).to_dict()\n"
            f"transformers {transformers.__version__}\n"
            f"config class {type(cfg).__module__}.{type(cfg).__name__}\n"
            f"reference checkpoint {ckpt[0] if ckpt else '(none named in the config module)'}\n"
            f"aliases added from attribute_map: {', '.join(f'{k}={amap[k]}' for k in sorted(aliases)) or '-'}\n"
            f"overrides (OVERRIDES): {'; '.join(f'{k}={v!r} from {w}' for k, (v, w) in over.items()) or '-'}\n"
            f"{_methods_line(data)}")
        report[mt] = {"ok": True, "config_class": type(cfg).__name__, "checkpoint": ckpt[0] if ckpt else None}
    print(json.dumps(report))


def inner_vllm_configs(tree: Path, version: str, out_dir: Path) -> None:
    """Each PretrainedConfig subclass with a model_type that `vllm/transformers_utils/configs/*.py` defines,
    built with its defaults: `<out_dir>/vllm-<version>--<model_type>/`, and `vllm-<version>-configs.json`."""
    import importlib
    import inspect
    import types
    import transformers
    from transformers import PretrainedConfig
    pkg = "vllm.transformers_utils.configs"
    for name in ("vllm", "vllm.transformers_utils", pkg):   # packages without their __init__ (no vLLM import)
        m = types.ModuleType(name)
        m.__path__ = [str(tree / name.replace(".", "/"))]
        sys.modules[name] = m
    report: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for f in sorted((tree / pkg.replace(".", "/")).glob("*.py")):
        if f.stem == "__init__":
            continue
        rel = f.relative_to(tree).as_posix()
        try:
            mod = importlib.import_module(f"{pkg}.{f.stem}")
        except Exception as e:   # noqa: BLE001  (recorded, never fatal)
            skipped[rel] = f"not loadable without vLLM: {type(e).__name__}: {e}"[:300]
            continue
        for cname, cls in sorted(vars(mod).items()):
            mt = getattr(cls, "model_type", "") if inspect.isclass(cls) else ""
            if not (mt and issubclass(cls, PretrainedConfig) and cls.__module__ == mod.__name__) or mt in report:
                continue
            try:
                data = config_data(cls(**override_values(mt)))
                over = with_overrides(data, mt)
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
            except Exception as e:   # noqa: BLE001
                report[mt] = {"ok": False, "module": rel, "config_class": cname,
                              "error": f"{cname}() with its defaults: {type(e).__name__}: {e}"[:300]}
                continue
            d = out_dir / f"vllm-{version}--{mt}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "config.json").write_text(text)
            (d / "SOURCE.txt").write_text(
                f"generated by tools/gen_model_configs.py: {cname}().to_dict(), the class vLLM {version} defines in "
                f"{rel} (loaded by path with transformers {transformers.__version__}; vLLM not imported)\n"
                + (f"overrides (OVERRIDES): {'; '.join(f'{k}={v!r} from {w}' for k, (v, w) in over.items())}\n"
                   if over else "") + _methods_line(data))
            report[mt] = {"ok": True, "module": rel, "config_class": cname}
    (out_dir / f"vllm-{version}-configs.json").write_text(json.dumps(
        {"vllm": version, "transformers": transformers.__version__, "model_types": dict(sorted(report.items())),
         "modules_skipped": skipped}, indent=1, sort_keys=True) + "\n")


def write_dataclass_configs(zoo, tree: Path, version: str, syms: list) -> None:
    """`models/vllm-<version>--<module>.<Class>/`: the field defaults of the dataclass a zoo layer's `config` is
    annotated with (zoo.annotated_config_types: molmo2.py's TextConfig), parsed from the tree, not imported."""
    for s in syms:
        if not (s.model_org == f"vllm-{version}" and "." in (s.model_type or "")):
            continue
        cls = s.model_type.rsplit(".", 1)[1]
        data = zoo.dataclass_defaults(zoo._parse(tree / s.file), cls)
        d = MODELS / f"vllm-{version}--{s.model_type}"
        d.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**data, "model_type": s.model_type}, indent=2, sort_keys=True)
        (d / "config.json").write_text(text + "\n")
        (d / "SOURCE.txt").write_text(
            f"generated by tools/gen_model_configs.py: the field defaults of {cls}, the dataclass vLLM {version} "
            f"defines in {s.file} (parsed, not imported), which {s.name}'s `config` is annotated with; model_type "
            "is the module and class\n")


# ------------------------------------------------------------------ the driver
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="append", help="vLLM versions whose zoo needs models (default 0.26.0)")
    p.add_argument("--inner-arch", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--inner-configs", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--inner-vllm", nargs=2, metavar=("TREE", "VERSION"), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=MODELS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.inner_arch:
        inner_arch(a.inner_arch)
        return 0
    if a.inner_vllm:
        inner_vllm_configs(Path(a.inner_vllm[0]), a.inner_vllm[1], a.out)
        return 0
    if a.inner_configs is not None:
        inner_configs(a.inner_configs, a.out)
        return 0

    py = ensure_venv()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    me = str(Path(__file__).resolve())
    subprocess.run([str(py), me, "--inner-arch", str(MODELS / "transformers-architectures.json")], check=True, env=env)
    sys.path[:0] = [str(REPO / "benchmarks"), str(REPO / "tests")]
    import zoo
    from conftest import vllm_tree
    arch_map = zoo.load_arch_map()
    for version in a.version or ["0.26.0"]:
        for old in MODELS.glob(f"vllm-{version}--*"):
            shutil.rmtree(old)
        subprocess.run([str(py), me, "--out", str(MODELS), "--inner-vllm", str(vllm_tree(version)), version],
                       check=True, env=env)
    per_version = {}
    for version in a.version or ["0.26.0"]:
        # map with no config present yet: every symbol's model_type, whether or not transformers can build it
        per_version[version] = zoo.enumerate_zoo(vllm_tree(version), arch_map, Path("/nonexistent"))
        write_dataclass_configs(zoo, vllm_tree(version), version, per_version[version])
    wanted = sorted({s.model_type for syms in per_version.values() for s in syms
                     if s.model_type and s.model_org == "transformers"})
    r = subprocess.run([str(py), me, "--out", str(MODELS), "--inner-configs", *wanted], check=True, env=env,
                       capture_output=True, text=True)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    for mt, rep in sorted(report.items()):
        if not rep["ok"]:
            print(f"  {mt}: transformers could not build the config: {rep['error']}", file=sys.stderr)
    for version in per_version:
        syms = zoo.enumerate_zoo(vllm_tree(version), arch_map)
        lines = ["# target\tsymbol\tfile\tmodel\treason  (generated by tools/gen_model_configs.py)"]
        for s in syms:
            reason = s.model_reason
            if s.model_type and not s.model:
                reason += f": {report.get(s.model_type, {}).get('error', '')}"
            lines.append(f"{s.target}\t{s.name}\t{s.file}\t{s.model or '-'}\t{reason}")
        (MODELS / f"transformers-zoo-{version}.tsv").write_text("\n".join(lines) + "\n")
        used = {s.model for s in syms}
        for d in MODELS.glob(f"vllm-{version}--*"):   # vLLM's own configs no zoo symbol maps to are not kept
            if d.name.replace("--", "/", 1) not in used:
                shutil.rmtree(d)
        print(f"vLLM {version}: {len(syms)} zoo symbols, {sum(1 for s in syms if s.model)} with a model "
              f"({len(wanted)} model types wanted, {sum(1 for v in report.values() if v['ok'])} configs written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
