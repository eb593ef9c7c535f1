"""Everything of A1 that knows vLLM's names, and the rules of a vLLM graph.

`closure(index, variant)` builds the engine (engine.py) with these rules, in this order (the order matters
where two rules answer the same hook: the first that decides wins; see each rule's `decides`):

 1. class-members            classes.ClassMembers          methods/class attributes kept only when read by name
 2. class-constants          classes.ClassConstants        `Cls.CONST` bound to a literal read as the literal
 3. foreign-platform-modules vllm.platform                 another platform's modules are not inlined
 4. keyed-dicts              modules.KeyedDicts            dict entries read by name kept one by one
 5. by-name-resolver         vllm.by_name                  resolve_obj_by_qualname bound to the variant's classes
 6. self-reads               classes.SelfReads             `self.<name>` reaches the classes `self` can be
 7. ir-op-priority           vllm.ir                       IR-op providers and the worker's priority statement
 8. held-branches            held.HeldBranches             branches dead while parameters keep their defaults
 9. abstract-stubs           classes.AbstractStubs         abstract methods that do nothing, unless runnable
10. torch-ops                vllm.ops                      compiled ops (A4) and Python custom ops
11. current-platform         vllm.platform                 current_platform bound to the variant's class
12. module-getattr           modules.ModuleGetattr         names a module's __getattr__ provides
13. module-value             modules.ModuleValue           a module used as a value embedded whole
14. compile-dims             vllm.compile_dims             @support_torch_compile given the dims it infers
15. distribution-version     distribution.DistributionVersion  importlib.metadata.version("vllm") as the tree's version
16. decided-device-queries   vllm.platform                 an import-time GPU query the variant decides, as its value

Branch pruning itself is the guard evaluator's (guards.py, asked by the scanner, refs.py), with the predicate
oracle (predicates.py) and what vLLM's names decide (vllm/names.py: envs defaults, Unquantized* bases, CustomOp).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..classes import AbstractStubs, ClassConstants, ClassMembers, Mro, SelfReads
from ..defs import Defs
from ..distribution import DistributionVersion
from ..engine import Engine
from ..guards import Where
from ..held import HeldBranches
from ..index import TreeIndex
from ..modules import KeyedDicts, ModuleGetattr, ModuleValue
from ..predicates import Predicates
from ..refs import Scanner
from ..resolve import Resolver
from ..scans import TreeScans
from .by_name import ByNameResolver
from .compile_dims import CompileDims
from .ir import IrOpPriority
from .names import VllmNames, unquantized_bases_scan
from .ops import TorchOps, python_namespaces_scan, registrations_scan
from .platform import CurrentPlatform, DecidedDeviceQueries, ForeignPlatformModules, root_drops

RULES = (ClassMembers, ClassConstants, ForeignPlatformModules, KeyedDicts, ByNameResolver, SelfReads, IrOpPriority,
         HeldBranches, AbstractStubs, TorchOps, CurrentPlatform, ModuleGetattr, ModuleValue, CompileDims,
         DistributionVersion, DecidedDeviceQueries)


def tree_scans(index: TreeIndex) -> TreeScans:
    """The tree-wide text scans the rules use, by name (recomputed by the memo)."""
    return TreeScans({"unquantized_bases": unquantized_bases_scan(index),
                      "python_namespaces": python_namespaces_scan(index),
                      "registration": registrations_scan(index)})


@dataclass
class Closure:
    engine: Engine
    scans: TreeScans
    ops: TorchOps


def closure(index: TreeIndex, variant: dict, dataclass_annotations: bool = False) -> Closure:
    """A graph engine for `variant` with the rules above (`dataclass_annotations`: follow every stdlib dataclass
    field annotation, for a closure that reads annotations at run time)."""
    res = Resolver(index)
    defs = Defs(index, res)
    scans = tree_scans(index)
    preds = Predicates(index, defs, variant, VllmNames(index, defs, scans))
    res.branch_taken = lambda module, st: preds.ge.evaluate(st.test, Where(module=module))[0]
    mro = Mro(defs)
    keyed = KeyedDicts(index)
    ops = TorchOps(index, scans)
    rules = [ClassMembers(defs, root_drops(variant)), ClassConstants(), ForeignPlatformModules(variant), keyed,
             ByNameResolver(index, variant), SelfReads(mro), IrOpPriority(index, variant), HeldBranches(),
             AbstractStubs(index, mro), ops, CurrentPlatform(index, variant), ModuleGetattr(index, keyed),
             ModuleValue(index), CompileDims(index), DistributionVersion(index),
             DecidedDeviceQueries(preds)]
    assert tuple(type(r) for r in rules) == RULES
    engine = Engine(index, res, Scanner(index, preds.ge, dataclass_annotations), rules)
    return Closure(engine, scans, ops)
