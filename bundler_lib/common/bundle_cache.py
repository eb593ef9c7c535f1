"""The bundle cache: the one folder a bundle writes to at run time (its embedded data files, its compiled CUDA
units, its tuned attention launches), shared by every bundle of the machine.

The sections that write there (A3's data, A4's CUDA build, A6's tune-attention) are independent: a bundle may hold
any of them without the others, so each carries its own copy of `_bundle_cache_base` under its own name
(`helper(name)`), generated from the one definition here."""

from __future__ import annotations

import inspect


def _bundle_cache_base():
    """$VLLM_BUNDLE_CACHE, else $XDG_CACHE_HOME/vllm_bundles, else ~/.cache/vllm_bundles."""
    import os

    return os.environ.get("VLLM_BUNDLE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vllm_bundles")


def helper(name: str) -> str:
    """`_bundle_cache_base`'s source, defining `name` instead."""
    return inspect.getsource(_bundle_cache_base).replace("def _bundle_cache_base(", f"def {name}(", 1)
