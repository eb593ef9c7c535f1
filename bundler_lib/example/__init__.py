"""A6 example stage: see `core.py` (kind, workload, the example), `model_config.py` (dims and flags), `templates.py`
(the generated text) and `decoder.py` (decoder layers)."""

from bundler_lib.example.core import classify, derive, generate, run


def extra_roots(graph: dict) -> list[str]:
    """What the example of this symbol needs beyond the symbol's own closure (`file::Name` or
    `file::Class.method`): roots A1 may add so that invocation_example() can run. Empty for most symbols."""
    if classify(graph) == "decoder_layer":
        from bundler_lib.example import decoder
        return decoder.extra_roots()
    return []


__all__ = ["classify", "derive", "extra_roots", "generate", "run"]
