"""Decorators that would import torch._dynamo/torch._inductor at import time, replaced by lazy helpers."""

from __future__ import annotations

import ast

from bundler_lib.common.names import dotted as ast_dotted


# Decorators from torch's compiler API that import torch._dynamo and torch._inductor (seconds) when they run,
# i.e. when the bundle is imported; each is pointed at a helper that has the same effect without the import.
LAZY_DECORATORS = {
    "torch.compile": ("_bundle_lazy_torch_compile", '''
def _bundle_lazy_torch_compile(model=None, **kwargs):
    """`torch.compile` for a decorator that runs when the bundle is imported (put there by the bundle
    builder's A5): the same call, made at the function's first call. torch.compile compiles at the first call
    anyway; calling it at import would import torch._dynamo and torch._inductor, which takes seconds."""
    import functools

    if model is None:
        return lambda fn: _bundle_lazy_torch_compile(fn, **kwargs)
    compiled = None

    @functools.wraps(model)
    def compiled_on_first_call(*args, **kw):
        nonlocal compiled
        if compiled is None:
            compiled = torch.compile(model, **kwargs)
        return compiled(*args, **kw)

    return compiled_on_first_call
'''),
    "torch.compiler.assume_constant_result": ("_bundle_lazy_assume_constant_result", '''
def _bundle_lazy_assume_constant_result(fn):
    """`torch.compiler.assume_constant_result` for a decorator that runs when the bundle is imported (put there
    by the bundle builder's A5): the mark torch._dynamo.decorators.assume_constant_result sets, without
    importing torch._dynamo (seconds); torch's own function once torch._dynamo is loaded."""
    import sys

    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True
    return fn
'''),
}


def lazy_import_time_decorators(text: str) -> tuple[str, dict[str, int]]:
    """Point the LAZY_DECORATORS (bare or called) that run at import, on top-level functions and classes and
    on methods of top-level classes, at their helpers; calls inside function bodies stay as they are.
    Returns the text and the count per decorator."""
    spans = []

    def decorators(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for d in node.decorator_list:
                    f = d.func if isinstance(d, ast.Call) else d
                    name = ast_dotted(f)
                    if name in LAZY_DECORATORS:
                        spans.append((f.lineno, f.col_offset, f.end_lineno, f.end_col_offset, name))
            if isinstance(node, ast.ClassDef):
                decorators(node.body)

    decorators(ast.parse(text).body)
    counts: dict[str, int] = {}
    if not spans:
        return text, counts
    lines = [l.encode("utf-8") for l in text.splitlines(keepends=True)]
    for l0, c0, l1, c1, name in sorted(spans, reverse=True):  # ast offsets are UTF-8 byte offsets
        lines[l0 - 1] = lines[l0 - 1][:c0] + LAZY_DECORATORS[name][0].encode() + lines[l1 - 1][c1:]
        del lines[l0:l1]
        counts[name] = counts.get(name, 0) + 1
    return b"".join(lines).decode("utf-8"), counts
