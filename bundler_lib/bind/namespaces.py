"""The torch.library namespaces the merged code registers ops into, and the bundle's own name for each."""

from __future__ import annotations

import ast
import hashlib
import json
import re

from bundler_lib.common.names import dotted as ast_dotted


# "ns::op", "ns::op.overload", "ns::op(Tensor x) -> Tensor": an op's qualified name or schema
QUALIFIED = re.compile(r"([A-Za-z_]\w*)::([A-Za-z_]\w*)(?:\.\w+)?(?:\(.*\)(?:\s*->.*)?)?")


# Namespaces torch itself owns: code may add kernels or ops to them (`Library("aten", "IMPL")`), never rename.
TORCH_NAMESPACES = frozenset({
    "aten", "prim", "prims", "_prims", "debugprims", "rngprims", "quantized", "_quantized", "quantized_decomposed",
    "c10d", "c10d_functional", "_c10d_functional", "_c10d_functional_autograd", "_dtensor", "inductor", "higher_order", "profiler",
    "fsdp", "mkldnn", "onednn", "_quantized_decomposed", "_test", "symm_mem", "streams"})


# torch.library calls whose first argument names the op as "ns::name" and define it
_OP_DEFINING = ("custom_op", "triton_op", "define")


BUNDLE_NS_PREFIX = "vllm_bundle_"


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def registered_namespaces(text: str) -> dict[str, list[str]]:
    """The torch.library namespaces the module's code registers ops into, each with how (sorted, unique):
    `[torch.library.]Library("ns", "FRAGMENT" | "DEF")` (vLLM's `vllm_lib` that `direct_register_custom_op`
    defines into, the IR's `vllm_ir_torch_lib`, ...), and `torch.library.custom_op / triton_op / define("ns::op")`
    (decorators included). `Library("ns", "IMPL")` only adds kernels to ops defined elsewhere (torch's `aten`):
    not a registration. Namespaces torch owns and the bundle's own (`vllm_bundle_*`, A4's) are left out."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        f = ast_dotted(node.func) or ""
        tail = f.rsplit(".", 1)[-1]
        ns = how = None
        if tail == "Library":
            kw = {k.arg: k.value for k in node.keywords}
            ns = _const_str(node.args[0] if node.args else kw.get("ns"))
            kind = _const_str(node.args[1] if len(node.args) > 1 else kw.get("kind"))
            if ns is None or kind not in ("DEF", "FRAGMENT"):
                continue
            how = f"{f}({ns!r}, {kind!r})"
        elif tail in _OP_DEFINING and node.args:
            name = _const_str(node.args[0])
            m = QUALIFIED.fullmatch(name) if name else None
            if not m or (tail == "define" and "library" not in f and f != "define"):
                continue  # `lib.define("op(...)")` names no namespace: the Library does
            ns, how = m.group(1), f"{f}({m.group(1)}::{m.group(2)})"
        if ns and ns not in TORCH_NAMESPACES and not ns.startswith(BUNDLE_NS_PREFIX) and ns.isidentifier():
            found.setdefault(ns, set()).add(how)
    return {ns: sorted(v) for ns, v in sorted(found.items())}


def namespace_key(symbol: str, module_text: str, data_text: str = "", variant: dict | None = None) -> str:
    """The bundle's namespace key: sha256 over the symbol, everything A5 merges (imports, the A4, A3 and A2
    sections, A3's data section) before rewriting, and A1's variant with the model's facts and config hash.
    Deterministic (the same inputs give the same key); two bundles that differ in any inlined line, or only in
    the variant or the model their example runs (FLEX_ATTENTION's block knobs, two sizes of one architecture: the
    same code), get different keys."""
    h = hashlib.sha256()
    for part in ("vllm-bundler A5 namespaces v1", symbol or "", module_text, data_text,
                 json.dumps(variant or {}, sort_keys=True, default=str)):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def namespace_map(ns_map: dict, registered: dict, key: str, cuda_ns: dict) -> dict:
    """A5.bindmap.json `namespaces`: every torch.library namespace the bundle's ops live in, and whose it was."""
    return {
        "key": key,
        "python": [{"from": ns, "to": ns_map[ns], "registered_by": registered[ns]} for ns in sorted(ns_map)],
        "cuda": [{"from": f"{ns}::{op}", "to": f"{cuda_ns[ns, op]}::{op}"} for ns, op in sorted(cuda_ns)],
    }


def bundle_namespaces(registered, key: str) -> dict[str, str]:
    """{namespace the code registers: the bundle's own}: `vllm_bundle_<key[:16]>_<ns>`."""
    return {ns: f"{BUNDLE_NS_PREFIX}{key[:16]}_{ns}" for ns in sorted(registered)}
