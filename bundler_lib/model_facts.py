"""What vLLM's layer code branches on that the model's config.json decides (A1 guards).

A bundle built for a model (the target's `model` field) keeps only the branches that model takes: its
activation, router scoring, rope type, and the absence of grouped top-k, zero experts or dual-chunk
attention; the activation not where the model file passes its own (for_model_file), the rope type not where the
layer's code writes its own (for_reached_code). Without a model config nothing here is decided. The facts are
recorded in A1.graph.json.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from bundler_lib.errors import StageError

STAGE = "A1 graph"


MOE_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
_MOE_SIGNS = ("num_experts_per_tok", "moe_intermediate_size", "moe_topk")


def load(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise StageError(STAGE, f"--model-config {path}", "file not found",
                         "commit the model's config.json under models/<org>--<name>/") from None
    return facts(parse(data, str(path)))


def parse(data: bytes, where: str) -> dict:
    """The config in `data` (a config.json), checked for what facts() and the later stages read; a bad value
    raises StageError naming `where` (the workspace file when the Pants rule checks it)."""
    try:
        config = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StageError(STAGE, where, f"not UTF-8 (byte {e.start})", "save the file as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise StageError(STAGE, where, f"not valid JSON ({e})", "fix the file") from None
    if not isinstance(config, dict):
        raise StageError(STAGE, where, "not a JSON object", "use the model's config.json")
    check(config, where)
    return config


def check(config: dict, where: str) -> None:
    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise StageError(STAGE, f"{where} text_config", f"is {text!r}, not a JSON object",
                         "give the language model's config as an object, or remove text_config")
    for cfg, prefix in ((config, ""), *(((text, "text_config."),) if isinstance(text, dict) else ())):
        for key in ("rope_scaling", "rope_parameters", "dual_chunk_attention_config"):
            v = cfg.get(key)
            if v is not None and not isinstance(v, dict):
                raise StageError(STAGE, f"{where} {prefix}{key}", f"is {v!r}, not a JSON object or null",
                                 f"give {key} as an object such as {{\"rope_type\": \"default\"}}, or null")
        moe = any(cfg.get(k) not in (None, False, 0) for k in _MOE_SIGNS) or "moe" in str(cfg.get("model_type", "")).lower() or any(
            "moe" in str(a).lower() for a in cfg.get("architectures") or [] if isinstance(cfg.get("architectures"), list))
        for key in MOE_EXPERT_KEYS:
            if key not in cfg:
                continue
            v = cfg[key]
            if v is None and not moe:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if moe else 0):
                raise StageError(STAGE, f"{where} {prefix}{key}", f"is {v!r}" + (" on an MoE model" if moe else ""),
                                 f"set {key} to the model's number of experts (a positive integer)")


def facts(config: dict) -> dict:
    """Name at a guard site -> its value for this model (enum members as ["enum", Enum, MEMBER])."""
    text = config.get("text_config") or config
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    rope.setdefault("rope_theta", text.get("rope_theta", 10000))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    rope.setdefault("rope_type", rope_type)
    out = {
        "rope_parameters": rope,
        "rope_type": rope_type,
        "scaling_type": rope_type,
        "dual_chunk_attention_config": text.get("dual_chunk_attention_config"),
        "use_grouped_topk": bool(text.get("n_group") or text.get("num_expert_group") or text.get("topk_group")),
        "zero_expert_type": text.get("zero_expert_type"),
        # clamped SwiGLU (GPT-OSS style `swiglu_limit`)
        "gemm1_clamp_limit": text.get("swiglu_limit"),
        "clamp_limit": text.get("swiglu_limit"),
    }
    # only where the config states it: a model file may pass its own literal (NemotronH's scoring_func="sigmoid"), so
    # vLLM's default is no fact about this model
    if "scoring_func" in text:
        out["scoring_func"] = text["scoring_func"]
    # router classes this model never builds: `isinstance(x, Cls)` is False
    out["absent_classes"] = sorted(
        ([] if out["zero_expert_type"] is not None else ["ZeroExpertRouter"])
        + ([] if out["use_grouped_topk"] else ["GroupedTopKRouter"]))
    act = text.get("hidden_act") or text.get("hidden_activation")
    if isinstance(act, str):
        out["hidden_act"] = act
        out["activation"] = ["enum", "MoEActivation", act.upper()]
    return out


def for_model_file(facts: dict, source: str | None, members: set[str]) -> dict:
    """`facts` for the layer defined in `source` (the model file): where that file passes its own `activation=`
    string naming one of `members` (the values of the activation fact's enum) other than the config's hidden_act
    (gpt-oss's FusedMoE(activation="swigluoai")), the config is no fact about the activation vLLM's code branches
    on, which is then left undecided."""
    if "activation" not in facts or not source:
        return facts
    literals = {k.value.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) for k in n.keywords
                if k.arg == "activation" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)}
    if (literals & members) - {facts.get("hidden_act")}:
        return {k: v for k, v in facts.items() if k != "activation"}
    return facts


def for_reached_code(facts: dict, code) -> dict:
    """`facts` for a layer whose reached code is `code` ((statement, ids of its parts not reached: a class's methods
    never called) pairs): where it writes a rope type of its own into a `["rope_type"]` (a string other than the
    config's: deepseek_v2.py's `config.rope_parameters["rope_type"] = "deepseek_yarn"` before get_rope, which 0.33.0's
    deepseek_eagle3.py reaches through DeepseekV2MLAAttention), the config is no fact about the rope type get_rope
    branches on, which is then left undecided."""
    if "rope_type" not in facts:
        return facts
    written = set().union(*(_rope_types_written(stmt, skip) for stmt, skip in code))
    if written - {facts["rope_type"]}:
        return {k: v for k, v in facts.items() if k not in ("rope_type", "scaling_type")}
    return facts


def _rope_types_written(stmt: ast.AST, skip) -> set[str]:
    """The strings assigned to a `...["rope_type"]` in `stmt` outside the parts whose ids are in `skip`: the value's,
    or each arm's of a conditional one."""
    def values(e: ast.expr) -> set[str]:
        if isinstance(e, ast.IfExp):
            return values(e.body) | values(e.orelse)
        return {e.value} if isinstance(e, ast.Constant) and isinstance(e.value, str) else set()

    out, todo = set(), [stmt]
    while todo:
        n = todo.pop()
        if id(n) in skip:
            continue
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                                             and t.slice.value == "rope_type" for t in n.targets):
            out |= values(n.value)
        todo.extend(ast.iter_child_nodes(n))
    return out
