"""A7's dependency scan (runtime_deps.py): what a bundle declares in its PEP 723 block."""

import ast
import textwrap

from bundler_lib import runtime_deps

SRC = textwrap.dedent("""
    from __future__ import annotations
    import os
    import typing
    import torch
    import typing_extensions
    import numpy.linalg
    import vllm
    try:
        import scipy
    except ImportError:
        scipy = None
    if typing.TYPE_CHECKING:
        import pandas
    if os.environ.get("X"):
        import yaml

    def f():
        import regex
        return regex
""")


def test_declared_dependencies():
    deps, details = runtime_deps.declared_dependencies(ast.parse(SRC), {"torch": "2.11"})
    # torch at the tree's version, triton, ninja, then every other third-party module imported unguarded at
    # module level (an `if` other than TYPE_CHECKING guards nothing); vllm never, typing_extensions comes with torch
    assert deps == ["torch>=2.11", "triton", "ninja", "numpy", "yaml"]
    assert details == {"optional_imports": ["scipy"], "run_time_imports": ["regex"]}


def test_module_imports_split():
    hard, guarded, inner = runtime_deps.module_imports(ast.parse(SRC))
    assert {"numpy", "yaml", "vllm", "torch", "os"} <= hard and "pandas" not in hard | guarded | inner
    assert guarded == {"scipy"} and inner == {"regex"}
