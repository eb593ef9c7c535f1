"""Classes vLLM imports by qualified name at run time (`resolve_obj_by_qualname`, e.g. the attention backend):
the bundle has no vllm modules, so it gets a resolver bound to the inlined classes its variant selects."""

from __future__ import annotations

import ast

from bundler_lib.errors import StageError
from bundler_lib.variant import (BY_NAME_REGISTRIES, COMMUNICATOR_METHOD, COMMUNICATORS, platform_class,
                                  world_size)
from ..engine import Rule

STAGE = "A1 graph"

_TEMPLATE = ("def @@NAME@@(qualname: str):\n"
             "    \"\"\"vLLM's resolve_obj_by_qualname, bundled: the classes this bundle's variant selects by\n"
             "    name are bound here; other vllm names are not in the bundle.\"\"\"\n"
             "    bound = {\n@@ENTRIES@@    }\n"
             "    if qualname in bound:\n"
             "        return bound[qualname]\n"
             "    module_name, obj_name = qualname.rsplit('.', 1)\n"
             "    if module_name.split('.')[0] == 'vllm':\n"
             "        raise ImportError(f'{qualname} is not in this bundle (it holds: {sorted(bound)}); '\n"
             "                          'rebuild it with a variant that selects it')\n"
             "    return getattr(importlib.import_module(module_name), obj_name)\n")


class ByNameResolver(Rule):
    name = "by-name-resolver"
    decides = ("vLLM's resolve_obj_by_qualname is replaced by a resolver over the classes the variant selects by "
               "name (attention_backend -> its backend class, inlined; on several GPUs the platform's device "
               "communicator -> the variant's `communicator` class)")
    link_kinds = ("node",)

    def __init__(self, index, variant: dict):
        self.index, self.variant = index, variant

    def link(self, g, n, ref, t, used) -> bool:
        if not (t.name == "resolve_obj_by_qualname" and t.module.endswith("import_utils")):
            return False
        syn = self._resolver(g, t)
        g.depend(n, ref, syn.key, t.name, used)
        return True

    def _resolver(self, g, t):
        bound: list[tuple[str, tuple]] = []
        for key, (mod, enum) in sorted(BY_NAME_REGISTRIES.items()):
            qual = self._registry_value(mod, enum, str(self.variant[key]))
            if qual is None:
                continue
            cmod, _, cname = qual.rpartition(".")
            ct = g.res.name(cmod, cname) if self.index.has_module(cmod) else None
            if ct is None or ct.kind != "node":
                raise StageError(STAGE, f"variant {key}={self.variant[key]!r}",
                                 f"{enum}.{self.variant[key]} names {qual}, which is not defined in the tree",
                                 "choose a variant value whose class is in this vLLM tree")
            bound.append((qual, (ct.module, ct.stmts[-1], ct.name)))
            g.notes.append(f"resolve_obj_by_qualname({qual!r}) is bound to the inlined {cname}: "
                           f"variant {key}={self.variant[key]}")
        bound += self._communicator(g)
        entries = "".join(f"    {q!r}: @@{i}@@,\n" for i, (q, _) in enumerate(bound))
        info = self.index.get(t.module)
        st = t.stmts[-1]
        return g.synthetic(t.module, t.name, _TEMPLATE.replace("@@ENTRIES@@", entries), [d for _, d in bound],
                           imports=["import importlib"], file=info.path, line=st.line, end_line=st.end_line)

    def _communicator(self, g) -> list[tuple[str, tuple]]:
        """On several GPUs: the qualified name the platform's get_device_communicator_cls() returns, bound to the
        class of the variant's `communicator` choice (recorded in the notes)."""
        if world_size(self.variant) == 1:
            return []
        pmod = platform_class(self.variant)[0]
        named = self._method_return(pmod, COMMUNICATOR_METHOD) if self.index.has_module(pmod) else None
        cmod, cname = COMMUNICATORS[self.variant["communicator"]]
        ct = g.res.name(cmod, cname) if self.index.has_module(cmod) else None
        if named is None or ct is None or ct.kind != "node":
            raise StageError(STAGE, f"variant communicator={self.variant['communicator']!r}",
                             f"{pmod}.{COMMUNICATOR_METHOD}() or {cmod}.{cname} is not in the tree",
                             "build a multi-GPU bundle from a vLLM tree that has both, or set tp and ep to 1")
        g.notes.append(f"resolve_obj_by_qualname({named!r}) is bound to the inlined {cname}: variant communicator="
                       f"{self.variant['communicator']} (collectives are NCCL through torch.distributed; custom "
                       "all-reduce, quick all-reduce, symmetric memory, FlashInfer and pynccl are left out)")
        return [(named, (ct.module, ct.stmts[-1], ct.name))]

    def _method_return(self, module: str, method: str) -> str | None:
        """The string constant a method of a class of `module` returns (the platform's communicator name)."""
        for node in ast.walk(self.index.get(module).tree):
            if isinstance(node, ast.FunctionDef) and node.name == method:
                for r in ast.walk(node):
                    if (isinstance(r, ast.Return) and isinstance(r.value, ast.Constant)
                            and isinstance(r.value.value, str)):
                        return r.value.value
        return None

    def _registry_value(self, module: str, enum: str, member: str) -> str | None:
        if not self.index.has_module(module):
            return None
        for st in self.index.get(module).defs.get(enum, []):
            if not isinstance(st.node, ast.ClassDef):
                continue
            for b in st.node.body:
                if (isinstance(b, ast.Assign) and len(b.targets) == 1 and isinstance(b.targets[0], ast.Name)
                        and b.targets[0].id == member and isinstance(b.value, ast.Constant)
                        and isinstance(b.value.value, str)):
                    return b.value.value
        return None
