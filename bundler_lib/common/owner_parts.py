"""The parts a layer takes from the model that owns it: an input of a layer's `__init__` or `forward` that a class of
the layer's own module (vLLM's model) passes as one of its own attributes (`embed_tokens=self.embed_tokens`,
`meta_mlp=self.meta_mlp`), where its `__init__` builds that attribute in one statement (`self.<a> = <expr>` or
`self.register_buffer("<a>", <expr>)`, under `if`s at most). A1 records the expression (`owner_parts`), with the
model's locals and its own attributes it reads replaced by their values, and the condition it is built under; A6
builds the part from it as the model does (its parameters `vllm_config`, `prefix`, and `config`: a local the model
reads from `vllm_config.model_config.<...config>` is the model's config).

Also, by what the layer does with them (`reads`): a forward input the layer hands to one of its parts built with a
config width first (`self.norm = RMSNorm(config.hidden_size, ...)`; `self.norm(h)`), directly or through one of its
own methods, or to a model part built so: {input: config key}.
"""

from __future__ import annotations

import ast
import builtins
import copy

# What A6 binds when it builds a part: the model's `__init__` parameters and its config.
BOUND = ("vllm_config", "config", "prefix")
_BUILTINS = set(dir(builtins))


def _self_attr(e: ast.AST) -> str | None:
    return e.attr if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == "self" else None


def _passed_attr(e: ast.AST) -> str | None:
    """`a` of `self.a` or `getattr(self, "a", default)`."""
    if (isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "getattr" and len(e.args) >= 2
            and isinstance(e.args[0], ast.Name) and e.args[0].id == "self" and isinstance(e.args[1], ast.Constant)):
        return e.args[1].value if isinstance(e.args[1].value, str) else None
    return _self_attr(e)


def _init(cls: ast.ClassDef) -> ast.FunctionDef | None:
    return next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)


def _definition(init: ast.FunctionDef, attr: str) -> tuple[ast.expr, ast.expr | None] | None:
    """(value, condition) of the one statement of `init` that builds `self.<attr>` (other than None)."""
    found: list = []

    def visit(stmts, conds):
        for st in stmts:
            if isinstance(st, ast.If):
                visit(st.body, conds + [st.test])
                visit(st.orelse, conds + [ast.UnaryOp(ast.Not(), st.test)])
            elif isinstance(st, ast.With):
                visit(st.body, conds)
            elif isinstance(st, ast.Assign) and len(st.targets) == 1 and _self_attr(st.targets[0]) == attr:
                found.append((st.value, conds))
            elif (isinstance(st, ast.Expr) and isinstance(st.value, ast.Call)
                  and _self_attr(st.value.func) == "register_buffer" and len(st.value.args) >= 2
                  and isinstance(st.value.args[0], ast.Constant) and st.value.args[0].value == attr):
                found.append((st.value.args[1], conds))

    visit(init.body, [])
    found = [(v, c) for v, c in found if not (isinstance(v, ast.Constant) and v.value is None)]
    if len(found) != 1:
        return None
    value, conds = found[0]
    when = None if not conds else conds[0] if len(conds) == 1 else ast.BoolOp(ast.And(), conds)
    return value, when


def _is_model_config(value: ast.expr) -> bool:
    """An expression reading `vllm_config.model_config.<x>config` (hf_config, hf_text_config, text_config)."""
    return any(isinstance(e, ast.Attribute) and e.attr.endswith("config") and isinstance(e.value, ast.Attribute)
               and e.value.attr == "model_config" and isinstance(e.value.value, ast.Name)
               and e.value.value.id == "vllm_config" for e in ast.walk(value))


class _Substitute(ast.NodeTransformer):
    """Replaces the model's locals and `self.<x>` reads by their (single) values; a model-config local by `config`."""

    def __init__(self, init: ast.FunctionDef):
        assigned: dict = {}
        for st in ast.walk(init):
            if isinstance(st, ast.Assign) and len(st.targets) == 1:
                t = st.targets[0]
                key = ("name", t.id) if isinstance(t, ast.Name) else ("self", _self_attr(t)) if _self_attr(t) else None
                if key:
                    assigned.setdefault(key, []).append(st.value)
        self.values = {k: v[0] for k, v in assigned.items() if len(v) == 1}
        self.configs = {n for (kind, n), v in self.values.items() if kind == "name" and _is_model_config(v)}
        self.bound: set = set()
        self.depth = 0

    def _value(self, key):
        if key not in self.values or self.depth > 20:
            return None
        self.depth += 1
        try:
            return self.visit(copy.deepcopy(self.values[key]))
        finally:
            self.depth -= 1

    def visit_Name(self, node):
        if node.id in self.bound:
            return node
        if node.id in self.configs:
            return ast.Name("config", ast.Load())
        got = self._value(("name", node.id))
        return got if got is not None else node

    def visit_Attribute(self, node):
        got = self._value(("self", node.attr)) if _self_attr(node) else None
        return got if got is not None else self.generic_visit(node)


def _bound_in(e: ast.AST) -> set:
    """Names an expression binds itself (comprehension targets, lambda parameters)."""
    out = set()
    for n in ast.walk(e):
        if isinstance(n, ast.comprehension):
            out |= {t.id for t in ast.walk(n.target) if isinstance(t, ast.Name)}
        elif isinstance(n, ast.Lambda):
            out |= {a.arg for a in n.args.args + n.args.kwonlyargs}
    return out


def _part(init: ast.FunctionDef, attr: str) -> dict | None:
    """{"expr", "when", "names"} of the model's `self.<attr>`, or None where its value reads what A6 cannot bind."""
    got = _definition(init, attr)
    if got is None:
        return None
    sub = _Substitute(init)
    value, when = got
    sub.bound = _bound_in(value)
    value = sub.visit(copy.deepcopy(value))
    if when is not None:
        sub.bound = set()
        when = sub.visit(copy.deepcopy(when))
    bound = _bound_in(value)
    free = sorted({n.id for e in (value, when) if e is not None for n in ast.walk(e)
                   if isinstance(n, ast.Name) and n.id not in bound and n.id not in BOUND and n.id not in _BUILTINS})
    if "self" in free:
        return None
    return {"expr": ast.unparse(value), "when": None if when is None else ast.unparse(when),
            "names": {n: None for n in free}}


def owner_parts(name: str, want: dict, module: ast.Module | None) -> dict:
    """{method: {param: part}} for the inputs `want[method]` of class `name`'s `__init__`/`forward` that a class of
    `module` passes as its own attribute: to `name(...)` (`__init__`), or to a layer it calls in a loop (`forward`)."""
    if module is None:
        return {}
    out: dict = {}
    for owner in (c for c in ast.walk(module) if isinstance(c, ast.ClassDef) and c.name != name):
        oinit = _init(owner)
        if oinit is None:
            continue
        loops = {n.id for loop in ast.walk(owner) if isinstance(loop, (ast.For, ast.AsyncFor))
                 for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
        for call in ast.walk(owner):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
                continue
            method = "__init__" if call.func.id == name else "forward" if call.func.id in loops else None
            for k in call.keywords if method else ():
                attr = _passed_attr(k.value)
                if k.arg in want[method] and attr and k.arg not in out.get(method, {}):
                    part = _part(oinit, attr)
                    if part is not None:
                        out.setdefault(method, {})[k.arg] = part
    return out


def _width_key(call: ast.expr, configs: set) -> str | None:
    """`k` of a part built `Cls(config.k, ...)`."""
    if not (isinstance(call, ast.Call) and call.args):
        return None
    first = call.args[0]
    if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id in configs:
        return first.attr
    return None


def forward_reads(init: ast.FunctionDef, fwd: ast.FunctionDef, cls: ast.ClassDef, init_parts: dict) -> dict:
    """{forward input: config key} for each input the layer hands first to a part built `Cls(config.<key>, ...)`
    by its own `__init__` (a config input, or a local read from the model's config) or by the model (`init_parts`,
    an `__init__` input the layer keeps as `self.<part>`), in `forward` or in a method of the class `forward`
    hands it to first."""
    configs = {a.arg for a in init.args.args + init.args.kwonlyargs if a.arg in ("config", "hf_config",
                                                                                  "text_config")}
    configs |= {st.targets[0].id for st in ast.walk(init) if isinstance(st, ast.Assign) and len(st.targets) == 1
                and isinstance(st.targets[0], ast.Name) and _is_model_config(st.value)}
    keys: dict = {}
    for st in ast.walk(init):
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and _self_attr(st.targets[0]):
            attr, v = _self_attr(st.targets[0]), st.value
            if isinstance(v, ast.Name) and v.id in init_parts:
                k = _width_key(ast.parse(init_parts[v.id]["expr"], mode="eval").body, {"config"})
            else:
                k = _width_key(v, configs)
            if k:
                keys[attr] = k
    methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}

    def handed(fn: ast.FunctionDef, param: str, depth: int) -> str | None:
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Name)
                    and call.args[0].id == param):
                continue
            attr = _self_attr(call.func)
            if attr in keys:
                return keys[attr]
            inner = methods.get(attr) if attr else None
            if inner is not None and depth == 0 and len(inner.args.args) > 1:
                got = handed(inner, inner.args.args[1].arg, 1)
                if got:
                    return got
        return None

    return {p: k for p in [a.arg for a in fwd.args.args[1:] + fwd.args.kwonlyargs] if (k := handed(fwd, p, 0))}
