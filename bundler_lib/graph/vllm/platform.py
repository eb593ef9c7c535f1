"""vLLM's platforms: `current_platform` is the class the variant selects; other platforms' modules and
forward methods are not in the bundle."""

from __future__ import annotations

import ast

from bundler_lib.errors import StageError
from bundler_lib.variant import foreign_forwards, foreign_platform, platform_class
from ..engine import Rule

STAGE = "A1 graph"


def root_drops(variant: dict) -> set[str]:
    """The members a root class leaves out: CustomOp's forwards for the other platforms."""
    return foreign_forwards(variant)


class ForeignPlatformModules(Rule):
    name = "foreign-platform-modules"
    decides = "a run-time reference into another platform's module (vllm.platforms.rocm on CUDA) is not inlined"
    link_kinds = ("node",)

    def __init__(self, variant: dict):
        self.platform = variant["platform"]

    def link(self, g, n, ref, t, used) -> bool:
        if ref.importtime or not foreign_platform(t.module, self.platform):
            return False
        # another platform's module: only reached on that platform (vLLM imports it lazily)
        g.notes.append(f"{n.file}:{ref.line}: {'.'.join([ref.name] + ref.attrs[:used])} not inlined: "
                       f"{t.module} is specific to another platform than {self.platform}")
        return True


class CurrentPlatform(Rule):
    name = "current-platform"
    decides = "`current_platform` (vllm.platforms' lazy __getattr__) is bound to the variant's platform class"
    link_kinds = ("dynamic",)

    def __init__(self, index, variant: dict):
        self.index, self.variant = index, variant

    def link(self, g, n, ref, t, used) -> bool:
        if not (t.name == "current_platform" and t.module.endswith("platforms")):
            return False
        mod, cls = platform_class(self.variant)
        if not self.index.has_module(mod):
            return False
        ct = g.res.name(mod, cls)
        if ct.kind != "node":
            raise StageError(STAGE, f"variant platform={self.variant['platform']} "
                             f"gpu_queries={self.variant.get('gpu_queries')}",
                             f"the variant binds current_platform to {mod}.{cls}, which this tree does "
                             "not define", "choose another gpu_queries value for this vLLM version")
        syn = g.synthetic(t.module, "current_platform", "@@NAME@@ = @@0@@()\n", [(ct.module, ct.stmts[-1], ct.name)])
        g.depend(n, ref, syn.key, "current_platform", used)
        g.notes.append(f"current_platform (resolved lazily by {t.module} __getattr__) is bound "
                       f"to {cls}() of {mod}: variant platform={self.variant['platform']}, "
                       f"gpu_queries={self.variant.get('gpu_queries')}")
        return True


# What a platform (or torch.cuda) answers about the GPU itself; vLLM's CUDA platform asks NVML, which does not
# initialise CUDA, but the bundle's platform asks torch.cuda, which does.
_DEVICE_QUERIES = frozenset({"get_device_name", "get_device_capability", "get_device_properties",
                             "get_device_total_memory", "get_device_uuid"})


class DecidedDeviceQueries(Rule):
    name = "decided-device-queries"
    decides = ("a module-level name bound to a test that queries the GPU at import, which the variant decides, is "
               "bound to that value: importing the bundle queries no GPU")

    def __init__(self, preds):
        self.preds = preds

    def scanned(self, g, n, before) -> None:
        st = n.stmt
        if not (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name)
                and any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr in _DEVICE_QUERIES
                        for c in ast.walk(st.value))):
            return
        value = self.preds.global_predicate(n.module, st.targets[0].id)
        if value is None:
            return
        v = st.value
        n.extra_edits.append({"op": "span", "line": v.lineno, "col": v.col_offset, "end_line": v.end_lineno,
                              "end_col": v.end_col_offset, "text": repr(value)})
        g.notes.append(f"{n.file}:{st.lineno}: {st.targets[0].id} = {value!r}, as the variant decides "
                       f"{ast.unparse(v)[:120]} (the import would query the GPU)")
