"""The predicate oracle of the guard evaluator: the values of predicates the tree defines that the variant
decides (a class's predicate classmethod, a module-level predicate function called with known arguments, a
module-level name bound once to a decided test). `Predicates` owns the evaluator it answers for
(`Predicates(...).ge`); what needs vLLM's names (envs defaults, Unquantized* bases, CustomOp) comes from `names`.
"""

from __future__ import annotations

import ast
import copy

from .defs import Defs, caches, returned
from .guards import GuardEval, Oracle, Where
from .index import TreeIndex


class Predicates(Oracle):
    def __init__(self, index: TreeIndex, defs: Defs, variant: dict, names: Oracle):
        self.index, self.defs, self.names = index, defs, names
        self._predicates: dict[tuple[str, str], bool | None] = {}
        self.ge = GuardEval(variant, self)

    # what vLLM's names decide
    def unquantized_bases(self) -> set[str]:
        return self.names.unquantized_bases()

    def env_default(self, name: str):
        return self.names.env_default(name)

    def is_custom_op(self, module: str, cls: ast.ClassDef) -> bool:
        return self.names.is_custom_op(module, cls)

    # ------------------------------------------------------------ predicates of the tree
    def method_predicate(self, module: str, cls_name: str, method: str) -> bool | None:
        """The value of `Cls.method()` where the variant decides it: a classmethod/staticmethod whose body is
        `return <test>`, the test reading class attributes bound to envs flags or literals
        (`_AITER_ENABLED = envs.VLLM_ROCM_USE_AITER`) and other such predicates of the class. A decorator
        that calls the method or returns None (vLLM's if_aiter_supported) keeps a False value falsy."""
        found = self.defs.sole_def(module, cls_name, ast.ClassDef)
        if found is None:
            return None
        key = (found[0], f"{cls_name}.{method}")
        if key in self._predicates:
            return self._predicates[key]
        self._predicates[key] = None   # a predicate that reaches itself stays undecided
        value = self._method_predicate(*found, method)
        self._predicates[key] = value
        return value

    def global_predicate(self, module: str, name: str) -> bool | None:
        """The value of a module-level `name` that is bound once, to a test the variant decides
        (`IS_ROCM = current_platform.is_rocm()`), and never rebound through `global`."""
        found = self.defs.sole_def(module, name, ast.Assign)
        if found is None or len(found[1].targets) != 1 or not isinstance(found[1].targets[0], ast.Name):
            return None
        key = (found[0], name)
        if key not in self._predicates:
            self._predicates[key] = None   # a binding that reaches itself stays undecided
            info = self.index.get(found[0])
            rebound = any(isinstance(x, ast.Global) and name in x.names for x in ast.walk(info.tree))
            if not rebound:
                self._predicates[key], _ = self.ge.evaluate(found[1].value, Where(module=found[0]))
        return self._predicates[key]

    def function_predicate(self, module: str, name: str, args: tuple = ()) -> bool | None:
        """The value of `name(*args)` for known argument values: a module-level function with plain positional
        parameters whose body returns a test the variant and those values decide
        (`def is_breakable_cudagraph_enabled(): return bool(envs.X)`,
        `def should_load_quant_weights(quant_method): return quant_method is not None and ...`)."""
        found = self.defs.sole_def(module, name, ast.FunctionDef)
        if found is None:
            return None
        key = (found[0], f"{name}{args!r}")
        if key not in self._predicates:
            self._predicates[key] = None   # a predicate that reaches itself stays undecided
            fn = found[1]
            a = fn.args
            test = returned(fn)
            if (not (a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg or a.defaults) and len(a.args) == len(args)
                    and all(caches(d) for d in fn.decorator_list) and test is not None):
                params = {p.arg: v for p, v in zip(a.args, args)}
                where = Where(module=found[0], literal_bools=True, params=params)
                self._predicates[key], _ = self.ge.evaluate(test, where)
        return self._predicates[key]

    def _method_predicate(self, module: str, cls: ast.ClassDef, method: str) -> bool | None:
        fn = next((b for b in cls.body if isinstance(b, ast.FunctionDef) and b.name == method), None)
        if fn is None:
            return None
        test = returned(fn)
        if test is None:
            return None
        kinds = self._kinds(module, fn)
        if kinds is None or not kinds & {"classmethod", "staticmethod"}:
            return None
        attrs = {}
        for b in cls.body:
            if isinstance(b, (ast.Assign, ast.AnnAssign)) and b.value is not None:
                targets = b.targets if isinstance(b, ast.Assign) else [b.target]
                for tg in targets:
                    if isinstance(tg, ast.Name):
                        attrs[tg.id] = b.value if tg.id not in attrs else None   # assigned twice: unknown
        first = fn.args.args[0].arg if fn.args.args and "classmethod" in kinds else None
        test = _Subst(self, module, cls.name, first, attrs).visit(copy.deepcopy(test))
        value, _ = self.ge.evaluate(test, Where(module=module, literal_bools=True))
        if value is None or (value is True and "or-none" in kinds):
            return None
        return value

    def _kinds(self, module: str, fn: ast.FunctionDef) -> set[str] | None:
        """What the predicate method's decorators make it (classmethod, staticmethod, or-none), or None when
        one of them is not understood."""
        kinds = set()
        for d in fn.decorator_list:
            name = ast.unparse(d)
            if name in ("classmethod", "staticmethod"):
                kinds.add(name)
            elif caches(d):
                continue
            elif isinstance(d, ast.Name) and self._calls_through_or_none(module, d.id):
                kinds.add("or-none")
            else:
                return None
        return kinds

    def _calls_through_or_none(self, module: str, name: str) -> bool:
        """A decorator whose wrapper returns the decorated function's result or None."""
        found = self.defs.sole_def(module, name, ast.FunctionDef)
        if found is None:
            return False
        deco = found[1]
        if not deco.args.args:
            return False
        func = deco.args.args[0].arg
        wrappers = [b for b in deco.body if isinstance(b, ast.FunctionDef)]
        if len(wrappers) != 1:
            return False
        for r in ast.walk(wrappers[0]):
            if isinstance(r, ast.Return):
                v = r.value
                if v is None or (isinstance(v, ast.Constant) and v.value is None):
                    continue
                if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == func:
                    continue
                return False
        return True


class _Subst(ast.NodeTransformer):
    """A predicate method's test with the class's attributes replaced by their values and its other predicates
    by theirs (or by a name nothing decides)."""

    def __init__(self, preds: Predicates, module: str, cls_name: str, first: str | None, attrs: dict):
        self.preds, self.module, self.cls_name, self.attrs = preds, module, cls_name, attrs
        self.receivers = (first, cls_name)

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.receivers \
                and self.attrs.get(node.attr) is not None:
            return self.attrs[node.attr]
        return self.generic_visit(node)

    def visit_Call(self, node):
        # cls.other_predicate(): its value, or a name nothing decides
        f = node.func
        if (not node.args and not node.keywords and isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name) and f.value.id in self.receivers):
            v = self.preds.method_predicate(self.module, self.cls_name, f.attr)
            return ast.Constant(value=v) if v is not None else ast.Name(id=f"{self.cls_name}.{f.attr}()")
        return self.generic_visit(node)
