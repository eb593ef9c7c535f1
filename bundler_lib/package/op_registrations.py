"""Custom-op registrations (`@custom_op("ns::op")`, `direct_register_custom_op(...)`, `@register_fake(...)`)
as reachability roots and edges: an op is reached through its qualified name."""

from __future__ import annotations

import ast

from bundler_lib.common.annotations import decorator_name
from bundler_lib.package.references import name_of


_OP_DEFINERS = frozenset({"custom_op", "triton_op"})


_OP_IMPLEMENTERS = frozenset({"register_fake", "register_kernel", "register_autograd", "register_torch_dispatch",
                              "register_vmap", "impl_abstract", "register_impl"})


def _op_key(qualname: str) -> str | None:
    """"ns::op" -> "torch.ops.ns.op" (the attribute chain that reaches the op)."""
    ns, sep, op = qualname.partition("::")
    return f"torch.ops.{ns}.{op.split('.')[0]}" if sep and ns.isidentifier() and op else None


def op_decorator(d: ast.AST) -> tuple[str | None, str | None]:
    """("defines", op) for @custom_op("ns::op"); ("implements", op or function name) for @register_fake("ns::op")
    and @f.register_fake; (None, None) otherwise."""
    if isinstance(d, ast.Call):
        last = decorator_name(d).rsplit(".", 1)[-1]
        first = d.args[0] if d.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            key = _op_key(first.value)
            if key and last in _OP_DEFINERS:
                return "defines", key
            if key and last in _OP_IMPLEMENTERS:
                return "implements", key
        d = d.func
    if isinstance(d, ast.Attribute) and d.attr in _OP_IMPLEMENTERS and isinstance(d.value, ast.Name):
        return "implements", d.value.id
    return None, None


def default_op_namespace(tree: ast.Module) -> str:
    """The namespace of the library `direct_register_custom_op` defines into by default: vLLM's module-level
    `vllm_lib = Library("vllm", "FRAGMENT")`, which A5 renames to the bundle's own namespace."""
    for s in tree.body:
        if (isinstance(s, ast.Assign) and [name_of(t) for t in s.targets] == ["vllm_lib"]
                and isinstance(s.value, ast.Call) and name_of(s.value.func).endswith("Library") and s.value.args
                and isinstance(s.value.args[0], ast.Constant) and isinstance(s.value.args[0].value, str)):
            return s.value.args[0].value
    return "vllm"


def registered_op(stmt: ast.Expr, default_ns: str = "vllm") -> str | None:
    """`direct_register_custom_op(op_name="x", ...)` (vLLM's helper, default library): "torch.ops.vllm.x"
    (`torch.ops.<ns>.x` where the bundle's `vllm_lib` is `Library("<ns>", ...)`)."""
    c = stmt.value
    if not (isinstance(c, ast.Call) and name_of(c.func).rsplit(".", 1)[-1] == "direct_register_custom_op"):
        return None
    kw = {k.arg: k.value for k in c.keywords}
    if "target_lib" in kw or None in kw:
        return None
    name = kw.get("op_name", c.args[0] if c.args else None)
    if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value.isidentifier():
        return f"torch.ops.{default_ns}.{name.value}"
    return None
