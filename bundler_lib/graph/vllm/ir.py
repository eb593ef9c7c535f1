"""vLLM's IR ops (vllm.ir): their implementations register when vllm.kernels is imported
(Platform.import_ir_kernels) and dispatch by the priority the worker sets once
(KernelConfig.ir_op_priority.set_default(), vllm/v1/worker/worker_base.py)."""

from __future__ import annotations

import ast
from ..engine import Rule


class IrOpPriority(Rule):
    name = "ir-op-priority"
    decides = ("for each IR op reached: the registrations of the variant's providers (vllm/kernels/<provider>.py) "
               "and a statement that sets the variant's ir_op_priority as the worker does")

    def __init__(self, index, variant: dict):
        self.index = index
        self.priority = str(variant.get("ir_op_priority", "native")).split(",")

    def finish(self, g) -> list[str]:
        """Reach the providers of the IR ops in the closure; returns the ops set."""
        ops = self._ops(g)
        if not ops:
            return []
        impls, registered = self._impls(g, ops)
        g.drain()
        names = sorted(ops)
        priority = self.priority
        # an op takes the variant's providers that implement it (set_default refuses any other), native at least
        setter = "".join(f"@@{i}@@.set_default(@@NAME@@[{k!r}])\n" for i, k in enumerate(names))
        template = ("# The bundle builder (A1): vLLM's worker sets this dispatch priority of the IR ops at start-up\n"
                    "# (KernelConfig.ir_op_priority.set_default(), vllm/v1/worker/worker_base.py); this bundle's\n"
                    f"# variant (ir_op_priority={','.join(priority)}) sets it for the IR ops it holds, each with the\n"
                    "# providers that implement it.\n"
                    f"@@NAME@@ = {dict((k, self._for_op(k, registered)) for k in names)!r}\n" + setter)
        module, st, _ = ops[names[0]]
        g.reach_attr("set_default")   # the method the statement calls on each op
        g.synthetic(module, "_bundle_ir_op_priority", template, [ops[k] for k in names] + impls,
                    file=self.index.get(module).path, line=st.line, end_line=st.end_line)
        g.drain()
        g.notes.append(f"IR ops {', '.join(names)}: priority {priority} set at import as vLLM's worker sets it; "
                       f"implementations reached: {', '.join(f'{m}.{n}' for m, _, n in impls) or 'native only'}")
        return names

    def _ops(self, g) -> dict[str, tuple]:
        """The IR ops the closure reaches: name -> (module, Stmt, name) of their @register_op definitions."""
        ops: dict[str, tuple] = {}
        for n in list(g.nodes.values()):
            if not n.module.startswith("vllm.ir.ops.") or n.stmt is None:
                continue
            node = n.stmt
            decorators = [getattr(d.func if isinstance(d, ast.Call) else d, "id", None)
                          for d in getattr(node, "decorator_list", [])]
            if isinstance(node, ast.FunctionDef) and "register_op" in decorators:
                st = next(x for x in self.index.get(n.module).defs[node.name] if x.node is node)
                ops[node.name] = (n.module, st, node.name)
        return ops

    def _for_op(self, op: str, registered: set[tuple[str, str]]) -> list[str]:
        return [p for p in self.priority if p == "native" or (op, p) in registered] or ["native"]

    def _impls(self, g, ops: dict) -> tuple[list[tuple], set[tuple[str, str]]]:
        """Reach the `@<op>.register_impl("<provider>")` definitions of the variant's providers; also returns the
        (op, provider) pairs they register."""
        impls: list[tuple] = []
        registered: set[tuple[str, str]] = set()
        for provider in self.priority:
            module = f"vllm.kernels.{provider}"
            if provider == "native" or not self.index.has_module(module):
                continue
            info = self.index.get(module)
            for name, stmts in sorted(info.defs.items()):
                for st in stmts:
                    for d in getattr(st.node, "decorator_list", []):
                        f = d.func if isinstance(d, ast.Call) else None
                        if (isinstance(f, ast.Attribute) and f.attr == "register_impl"
                                and isinstance(f.value, ast.Attribute) and f.value.attr in ops
                                and d.args and isinstance(d.args[0], ast.Constant) and d.args[0].value == provider):
                            g.node_for(module, st)
                            impls.append((module, st, name))
                            registered.add((f.value.attr, provider))
        return impls, registered
