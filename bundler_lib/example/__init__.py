"""A6 example stage: see `core.py` (dims, flags, workload, templates) and `decoder.py` (decoder layers)."""

from bundler_lib.example.core import classify, derive, generate, run

__all__ = ["classify", "derive", "generate", "run"]
