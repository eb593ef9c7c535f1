"""A6 example stage: see `core.py` (kind, workload, the example), `model_config.py` (dims and flags), `templates.py`
(the generated text) and `decoder.py` (decoder layers)."""

from bundler_lib.example.core import classify, derive, generate, run


def extra_roots(graph: dict) -> list[str]:
    """What the example of this symbol needs beyond the symbol's own closure (`file::Name` or
    `file::Class.method`): roots A1 may add so that invocation_example() can run. Empty for most symbols."""
    if classify(graph) == "decoder_layer":
        from bundler_lib.common.example_roots import PARALLEL_ROOTS
        from bundler_lib.example import decoder
        from bundler_lib.variant import world_size
        variant = graph.get("variant") or {}
        return decoder.extra_roots(variant) + (list(PARALLEL_ROOTS) if world_size(variant) > 1 else [])
    return []


__all__ = ["classify", "derive", "extra_roots", "generate", "run"]
