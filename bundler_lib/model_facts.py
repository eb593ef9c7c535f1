"""What vLLM's layer code branches on that the model's config.json decides (A1 guards).

A bundle built for a model (the target's `model` field) keeps only the branches that model takes: its
activation, router scoring, rope type, and the absence of grouped top-k, zero experts or dual-chunk
attention. Without a model config nothing here is decided. The facts are recorded in A1.graph.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from bundler_lib.errors import StageError

STAGE = "A1 graph"


def load(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(STAGE, f"--model-config {path}", "file not found",
                         "commit the model's config.json under models/<org>--<name>/") from None
    except json.JSONDecodeError as e:
        raise StageError(STAGE, f"--model-config {path}", f"not valid JSON ({e})", "fix the file") from None
    if not isinstance(config, dict):
        raise StageError(STAGE, f"--model-config {path}", "not a JSON object", "pass the model's config.json")
    return facts(config)


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
        "scoring_func": text.get("scoring_func", "softmax"),
        "use_grouped_topk": bool(text.get("n_group") or text.get("num_expert_group") or text.get("topk_group")),
        "zero_expert_type": text.get("zero_expert_type"),
        # clamped SwiGLU (GPT-OSS style `swiglu_limit`)
        "gemm1_clamp_limit": text.get("swiglu_limit"),
        "clamp_limit": text.get("swiglu_limit"),
    }
    # router classes this model never builds: `isinstance(x, Cls)` is False
    out["absent_classes"] = sorted(
        ([] if out["zero_expert_type"] is not None else ["ZeroExpertRouter"])
        + ([] if out["use_grouped_topk"] else ["GroupedTopKRouter"]))
    act = text.get("hidden_act") or text.get("hidden_activation")
    if isinstance(act, str):
        out["hidden_act"] = act
        out["activation"] = ["enum", "MoEActivation", act.upper()]
    return out
