"""The predicate oracle of the guard evaluator: the values of predicates the tree defines that the variant
decides (a class's predicate classmethod, a module-level predicate function called with known arguments, a
module-level name bound once to a decided test). `Predicates` owns the evaluator it answers for
(`Predicates(...).ge`); what needs vLLM's names (envs defaults, Unquantized* bases, CustomOp) comes from `names`.
"""

from __future__ import annotations

import ast
import copy

from .defs import Defs, caches, returned
from .guards import _UNKNOWN, GuardEval, Oracle, Where
from .index import TreeIndex, bound_names


class Predicates(Oracle):
    def __init__(self, index: TreeIndex, defs: Defs, variant: dict, names: Oracle):
        self.index, self.defs, self.names = index, defs, names
        self._predicates: dict[tuple[str, str], bool | None] = {}
        self._values: dict[tuple[str, str], object] = {}
        self._live: dict[tuple[str, str], tuple[str, ast.Assign] | None] = {}
        self.ge = GuardEval(variant, self)

    # what vLLM's names decide
    def unquantized_bases(self) -> set[str]:
        return self.names.unquantized_bases()

    def env_default(self, name: str):
        return self.names.env_default(name)

    def is_custom_op(self, module: str, cls: ast.ClassDef, defines: str | None = None) -> bool:
        return self.names.is_custom_op(module, cls, defines)

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
        found, pruned = self.defs.sole_def(module, name, ast.Assign), False
        if found is None:
            found, pruned = self._sole_live_assign(module, name), True
        if found is None or len(found[1].targets) != 1 or not isinstance(found[1].targets[0], ast.Name):
            return None
        key = (found[0], name)
        if key not in self._predicates:
            self._predicates[key] = None   # a binding that reaches itself stays undecided
            if not self._rebound(found[0], name):
                # a literal decides only where the variant pruned the name's other bindings
                self._predicates[key], _ = self.ge.evaluate(found[1].value, Where(module=found[0],
                                                                                  literal_bools=pruned))
        return self._predicates[key]

    def global_value(self, module: str, name: str):
        """The value of a module-level `name` bound once (never rebound through `global`) to a call of a module-level
        function whose value the variant decides (`device_platform = _check_platform()`, which returns "nvidia"
        where `current_platform.is_cuda()`), or _UNKNOWN."""
        found = self._sole_call_binding(module, name)
        if found is None:
            return _UNKNOWN
        key = (found[0], f"global:{name}")
        if key not in self._values:
            self._values[key] = _UNKNOWN   # a binding that reaches itself stays undecided
            self._values[key] = self.ge._value(found[1], Where(module=found[0]))
        return self._values[key]

    def _sole_call_binding(self, module: str, name: str) -> tuple[str, ast.Call] | None:
        """(module, the call) where a module-level `name` is bound by one plain assignment, never rebound through
        `global`, to a call of a plain name (`x = f(...)`)."""
        found = self.defs.sole_def(module, name, ast.Assign)
        if (found is None or len(found[1].targets) != 1 or not isinstance(found[1].targets[0], ast.Name)
                or not isinstance(found[1].value, ast.Call) or not isinstance(found[1].value.func, ast.Name)
                or self._rebound(found[0], name)):
            return None
        return found[0], found[1].value

    def _rebound(self, module: str, name: str) -> bool:
        """Whether some function of `module` rebinds its global `name` (`global name`)."""
        return any(isinstance(x, ast.Global) and name in x.names for x in ast.walk(self.index.get(module).tree))

    def _sole_live_assign(self, module: str, name: str) -> tuple[str, ast.Assign] | None:
        """(module, Assign) of a module-level name bound by one plain assignment and otherwise only inside
        module-level `if`s whose taken branch (the variant decides the test) does not bind it
        (`FLAG = False` / `if envs.VLLM_USE_X: ... FLAG = True`)."""
        key = (module, name)
        if key not in self._live:
            self._live[key] = None   # a test that reads the name itself stays undecided
            self._live[key] = self._find_live_assign(module, name)
        return self._live[key]

    def _find_live_assign(self, module: str, name: str) -> tuple[str, ast.Assign] | None:
        t = self.defs.res.name(module, name)
        if t.kind != "node" or len(t.stmts) < 2:
            return None
        assigns = [s.node for s in t.stmts if isinstance(s.node, ast.Assign)]
        if len(assigns) != 1:
            return None
        for s in t.stmts:
            if s.node is assigns[0]:
                continue
            if not isinstance(s.node, ast.If):
                return None
            taken, _ = self.ge.evaluate(s.node.test, Where(module=t.module))
            if taken is None or any(name in bound_names(st) for st in (s.node.body if taken else s.node.orelse)):
                return None
        return t.module, assigns[0]

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

    def function_value(self, module: str, name: str, args: tuple = ()):
        """The value `name(*args)` returns (args: known values or _UNKNOWN): a module-level function with plain
        positional parameters whose body (its docstring aside) starts with ifs the variant and the known argument
        values decide, the first one taken being `return <literal or decided value>`
        (`def _detect_output_quant_key(output, output_scale, ...): if output_scale is None and ...: return None`)."""
        dist = self._distribution_version(module, name, args)
        if dist is not None:
            return dist
        found = self.defs.sole_def(module, name, ast.FunctionDef)
        if found is None:
            return _UNKNOWN
        key = (found[0], f"value:{name}{args!r}")
        if key not in self._values:
            self._values[key] = _UNKNOWN   # a function that reaches itself stays undecided
            self._values[key] = self._function_value(found[0], found[1], args)
        return self._values[key]

    def _distribution_version(self, module: str, name: str, args: tuple) -> str | None:
        """`version("<pkg>")`, importlib.metadata's, for a top-level package of the tree (TreeIndex.distribution_version).
        A bundle's code is never installed, so the query would raise PackageNotFoundError where vLLM finds itself
        (`"cpu" in version("vllm")`)."""
        b = self.index.get(module).imports.get(name)
        if (b is None or (b.module, b.attr) != ("importlib.metadata", "version") or len(args) != 1
                or not isinstance(args[0], str)):
            return None
        return self.index.distribution_version(args[0])

    def _function_value(self, module: str, fn: ast.FunctionDef, args: tuple):
        a = fn.args
        if (a.posonlyargs or a.vararg or a.kwarg or a.kwonlyargs or len(args) > len(a.args)
                or len(args) < len(a.args) - len(a.defaults) or not all(caches(d) for d in fn.decorator_list)):
            return _UNKNOWN
        params = {p.arg: v for p, v in zip(a.args, args) if v is not _UNKNOWN}
        stored = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
        if stored & set(params):
            return _UNKNOWN   # a parameter rebound: its value is not the argument's
        names = frozenset({p.arg for p in a.args} | stored)
        where = Where(module=module, params=params, local_names=names)
        for st in fn.body:
            if isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant):
                continue   # the docstring
            if isinstance(st, ast.Return):
                return _UNKNOWN if st.value is None else self.ge._known(st.value, where)
            if not isinstance(st, ast.If):
                return _UNKNOWN
            value, _ = self.ge.evaluate(st.test, where)
            if value is None:
                return _UNKNOWN
            if value:
                first = st.body[0]
                if isinstance(first, ast.Return):
                    return None if first.value is None else self.ge._known(first.value, where)
                return _UNKNOWN
            if st.orelse:
                return _UNKNOWN
        return _UNKNOWN

    def instance_constant(self, module: str, name: str) -> bool:
        """A module-level name bound once (never rebound through `global`) to a call of a class the tree
        defines (`kNvfp4Dynamic = QuantKey(...)`): an instance, never None."""
        found = self._sole_call_binding(module, name)
        return found is not None and self.defs.sole_def(found[0], found[1].func.id, ast.ClassDef) is not None

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
