"""The reachability check (A7 `unreachable_definitions` / `unused_imports`) on small hand-written modules, and
validated against the remove-each-definition method on the SiluAndMul bundle built by the stages."""

import ast
import json
import symtable
import textwrap
from pathlib import Path

from bundler_lib.package import reachability as R
from bundler_lib.package.import_check import check_import
from bundler_lib.common.scopes import target_names
from bundler_lib.package.static_checks import find_undefined_names
from bundler_lib.__main__ import main

FUTURE = "from __future__ import annotations\n"


def _src(body: str, future: bool = True) -> str:
    """A module: the future import (line 1) then the dedented body (its leading newline makes line 2 blank)."""
    return (FUTURE if future else "") + textwrap.dedent(body)


def _analyze(body: str, symbol: str = "Target", future: bool = True) -> R.Result:
    return R.analyze(ast.parse(_src(body, future)), symbol)


def _unreachable(body: str, symbol: str = "Target", future: bool = True) -> list[str]:
    return [d.name for d in _analyze(body, symbol, future).unreachable]


def test_reachable_chain_has_no_defect():
    src = """
    import torch

    SCALE = 2.0

    def _leaf(x):
        return x * SCALE

    def _middle(x):
        return _leaf(x) + 1

    class Target(torch.nn.Module):
        def forward(self, x):
            return _middle(x)

    def invocation_example(small=False):
        return Target()(torch.ones(2))
    """
    res = _analyze(src)
    assert res.unreachable == [] and res.unused_imports == []
    assert {"_leaf", "_middle", "SCALE", "torch", "Target", "invocation_example"} <= res.reached


def test_unreachable_def_and_what_only_it_uses():
    src = """
    def _used():
        return 1

    def _only_from_orphan():
        return 2

    ORPHAN_CONST = 3

    def orphan():
        return _only_from_orphan() + ORPHAN_CONST

    class Target:
        def f(self):
            return _used()
    """
    res = _analyze(src)
    assert [(d.name, d.line, d.kind) for d in res.unreachable] == [
        ("_only_from_orphan", 6, "function"), ("ORPHAN_CONST", 9, "assignment"), ("orphan", 11, "function")]
    assert R.unreachable_definitions(ast.parse(_src(src)), "Target") == [
        ("_only_from_orphan", 6), ("ORPHAN_CONST", 9), ("orphan", 11)]


def test_class_only_in_a_postponed_annotation_is_unreachable():
    body = """
    class OnlyAnnotated:
        pass

    class Target:
        def f(self, x: OnlyAnnotated) -> OnlyAnnotated:
            y: OnlyAnnotated = x
            return y
        attr: OnlyAnnotated = None

    config: OnlyAnnotated = None
    """
    assert _unreachable(body) == ["OnlyAnnotated", "config"]
    # Without the future import, signature, class-body and module-level annotations run when defined.
    assert _unreachable(body, future=False) == ["config"]


def test_annotations_read_at_run_time_count():
    src = """
    import torch
    from typing import ClassVar, Optional
    from dataclasses import dataclass

    class Shape:
        pass

    class Opt:
        pass

    class FieldType:
        pass

    def impl(x: Optional[torch.Tensor], s: "Shape") -> torch.Tensor:  # infer_schema evaluates these
        return x

    schema = torch.library.infer_schema(impl, mutates_args=[])

    @dataclass
    class Cfg:
        kind: ClassVar[int] = 0  # dataclasses looks ClassVar up in the module
        f: FieldType = None  # ... but evaluates nothing else

    @torch.library.custom_op("vllm::my_op", mutates_args=[])
    def my_op(x: Opt) -> torch.Tensor:
        return x

    class Target:
        def f(self):
            return schema, Cfg(), my_op
    """
    res = _analyze(src)
    assert [d.name for d in res.unreachable] == ["FieldType"]
    assert res.unused_imports == []


def test_get_type_hints_makes_every_annotation_count():
    """A module that calls get_type_hints (by name or as typing.get_type_hints) evaluates its annotations: a
    class named only by a dataclass field's annotation is then reached; otherwise it is not."""
    body = """
    from dataclasses import dataclass
    {imp}

    class FieldType:
        pass

    @dataclass
    class Cfg:
        f: FieldType = None

    class Target:
        def f(self):
            return Cfg(), {call}
    """
    def unreachable(imp, call):
        return _unreachable(body.replace("{imp}", imp).replace("{call}", call))

    assert unreachable("", "None") == ["FieldType"]
    assert unreachable("from typing import get_type_hints", "get_type_hints(Cfg)") == []
    assert unreachable("import typing", "typing.get_type_hints(Cfg)") == []


def test_triton_kernel_body_reaches_globals():
    src = """
    import triton
    import triton.language as tl

    BLOCK_DEFAULT: tl.constexpr = tl.constexpr(128)
    NOT_USED: tl.constexpr = tl.constexpr(7)

    @triton.jit
    def _helper(x):
        return x * 2

    @triton.jit
    def _kernel(x_ptr, n, BLOCK: tl.constexpr):
        offs = tl.arange(0, BLOCK_DEFAULT)
        tl.store(x_ptr + offs, _helper(tl.load(x_ptr + offs)))

    def Target(x):
        _kernel[(1,)](x, x.numel(), BLOCK=128)
    """
    res = _analyze(src)
    assert [d.name for d in res.unreachable] == ["NOT_USED"]
    assert {"_kernel", "_helper", "BLOCK_DEFAULT", "tl", "triton"} <= res.reached
    assert res.unused_imports == []


def test_module_level_side_effects_are_roots():
    src = """
    import logging
    import sys
    import types

    def init_logger(name):
        return logging.getLogger(name)

    logger = init_logger(__name__)   # an assignment: kept only if something uses logger

    REGISTRY = {}

    def register(cls):
        REGISTRY[cls.__name__] = cls
        init_logger("registry").info("registered %s", cls)
        return cls

    class Registered:
        pass

    register(Registered)             # a call: runs for its effect, so it is a root

    class Patched:
        pass

    Patched.extra = register         # a mutation of a bundle object belongs to it (Patched is unused)

    _mod = types.ModuleType("m")
    sys.modules[_mod.__name__] = _mod   # A2's module-object idiom: belongs to _mod
    exec(compile("X = 1", "m", "exec"), _mod.__dict__)

    if sys.platform == "linux":
        _PLATFORM_HELPER = lambda: 1
        print("a side effect in a block")

    class Target:
        pass
    """
    res = _analyze(src)
    by_name = {d.name: d for d in res.unreachable}
    assert list(by_name) == ["logger", "Patched", "_mod", "_PLATFORM_HELPER"]
    assert by_name["logger"].note == "calls on its right-hand side"
    assert {"register", "Registered", "REGISTRY", "init_logger", "logging", "sys"} <= res.reached
    assert [d.name for d in res.unused_imports] == ["types"]


def test_scopes_shadowing_and_string_lookups():
    src = """
    def helper():
        return 0

    def also_shadowed():
        return 1

    def by_globals():
        return 2

    def by_all():
        return 3

    __all__ = ["by_all"]

    class Target:
        also_shadowed = 5
        value = also_shadowed            # the class attribute, defined above in the class body

        def f(self, helper):
            return helper() + [helper for helper in range(3)][0]

        def g(self):
            return globals()["by_globals"]()
    """
    assert _unreachable(src) == ["helper", "also_shadowed"]


def test_imports():
    src = """
    import os
    import os.path
    import collections.abc
    import torch.nn.functional as F
    from typing import Optional, Any
    try:
        from fast_lib import fast_op
    except ImportError:
        fast_op = None

    def Target(x: Optional[int]) -> Any:
        return F.relu(os.getcwd())
    """
    res = _analyze(src)
    # an import in a `try` that catches ImportError is a probe: its failure decides what the module defines, so
    # it is not unused; the except branch's fallback nothing reads is unreachable
    assert [(d.name, d.line) for d in res.unused_imports] == [
        ("os", 4), ("collections", 5), ("Any", 7), ("Optional", 7)]
    assert "nothing reached uses the attribute os.path" in res.unused_imports[0].note
    assert [d.name for d in res.unreachable] == ["fast_op"]
    plain = _analyze(src.replace("try:", "if True:").replace("except ImportError:", "else:"))
    assert ("fast_op", 9) in [(d.name, d.line) for d in plain.unused_imports]


def test_custom_op_registrations():
    src = """
    import torch

    def direct_register_custom_op(op_name, op_func, fake_impl=None):
        pass

    def _used_impl(x):
        return x

    def _dead_impl(x):
        return x

    def _dead_fake(x):
        return x

    direct_register_custom_op(op_name="used", op_func=_used_impl)
    direct_register_custom_op(op_name="dead", op_func=_dead_impl, fake_impl=_dead_fake)

    @torch.library.custom_op("vllm::decorated", mutates_args=[])
    def decorated(x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.library.register_fake("vllm::decorated")
    def _decorated_fake(x):
        return x

    def Target(x):
        return torch.ops.vllm.used(x) + decorated(x)
    """
    res = _analyze(src)
    assert [d.name for d in res.unreachable] == ["_dead_impl", "_dead_fake", "torch.ops.vllm.dead"]
    assert {"_decorated_fake", "_used_impl", "direct_register_custom_op"} <= res.reached

    # as A5 binds it: vLLM's `vllm_lib` and every read of its namespace renamed to the bundle's own
    own = "vllm_bundle_0123456789abcdef_vllm"
    bound = src.replace("import torch\n", f"import torch\n\n    vllm_lib = Library({own!r}, 'FRAGMENT')\n").replace(
        "fake_impl=None):\n        pass", "fake_impl=None):\n        vllm_lib.define(op_name)")
    res = _analyze(bound.replace("vllm::", f"{own}::").replace("torch.ops.vllm.", f"torch.ops.{own}."))
    assert [d.name for d in res.unreachable] == ["_dead_impl", "_dead_fake", f"torch.ops.{own}.dead"]
    assert {"_decorated_fake", "_used_impl", "direct_register_custom_op", "vllm_lib"} <= res.reached


def test_op_looked_up_by_name_reaches_its_registration():
    """vLLM >= 0.34's `_op = eager_bypass_custom_op("x", x_impl)` names the op by a string: its registration is
    reached through that assignment (not reported), another op's is not."""
    src = """
    def direct_register_custom_op(op_name, op_func, fake_impl=None):
        pass

    def eager_bypass_custom_op(op_name, op_func):
        return op_func

    def _x_impl(x):
        return x

    def _x_fake(x):
        return x

    def _y_impl(x):
        return x

    direct_register_custom_op(op_name="x", op_func=_x_impl, fake_impl=_x_fake)
    direct_register_custom_op(op_name="y", op_func=_y_impl)
    _x_op = eager_bypass_custom_op("x", _x_impl)

    def Target(t):
        return _x_op(t)
    """
    res = _analyze(src)
    assert [d.name for d in res.unreachable] == ["_y_impl", "torch.ops.vllm.y"]
    assert {"_x_fake", "direct_register_custom_op"} <= res.reached


def test_write_only_global_is_noted():
    src = """
    _CACHE = None
    _READ = None

    def Target():
        global _CACHE, _READ
        _CACHE = 1
        _READ = 2
        return _READ
    """
    res = _analyze(src)
    assert [(d.name, d.note) for d in res.unreachable] == [
        ("_CACHE", "reached code assigns it (`global`) but never reads it")]


def test_provenance_and_describe():
    src = "# header\nimport os\n\n# --- Inlined from vllm/a.py:L1-L3 (Apache-2.0) ---\ndef f():\n    pass\n"
    where = R.Provenance(src)
    assert where(2) == "the module's imports (A5)" and where(5) == "vllm/a.py:L1-L3 (Apache-2.0)"
    d = R.Definition("f", 5, "function")
    assert R.describe(d, where(5)) == "L5 f (function; vllm/a.py:L1-L3 (Apache-2.0))"


# --- the check against the remove-each-definition method, on a real bundle built by the stages

ROOT = Path(__file__).resolve().parents[1]


def _build_silu_and_mul(tree: Path, out: Path) -> Path:
    graph = str(out / "A1.graph.json")
    cfg = ROOT / "models" / "Qwen--Qwen3-30B-A3B" / "config.json"
    for argv in (
        ["license", "--tree", str(tree)],
        ["graph", "--tree", str(tree), "--symbol", "SiluAndMul", "--hint", "vllm/model_executor/layers/activation.py"],
        ["collect-python", "--tree", str(tree), "--graph", graph],
        ["collect-triton", "--tree", str(tree), "--graph", graph],
        ["collect-cuda", "--tree", str(tree), "--graph", graph],
        ["bind", "--inputs", str(out)],
        ["example", "--graph", graph, "--model", "Qwen/Qwen3-30B-A3B", "--model-config", str(cfg)],
        ["package", "--inputs", str(out), "--bundle-name", "SiluAndMul.py"],
    ):
        assert main(argv + ["--out", str(out)]) == 0, argv[0]
    return out / "SiluAndMul.py"


def _bindings(tree: ast.Module) -> dict[str, list[tuple[ast.stmt, bool]]]:
    """name -> the module-level statements binding it, each with whether it is nested in a compound statement."""
    out: dict[str, list] = {}

    def walk(stmts, nested):
        for s in stmts:
            names: list[str] = []
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [s.name]
            elif isinstance(s, (ast.Import, ast.ImportFrom)):
                names = [a.asname or a.name.split(".")[0] for a in s.names if a.name != "*"]
                if isinstance(s, ast.ImportFrom) and s.module == "__future__":
                    names = []
            elif isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                for t in (s.targets if isinstance(s, ast.Assign) else [s.target]):
                    target_names(t, names)
            for n in names:
                out.setdefault(n, []).append((s, nested))
            for field in ("body", "orelse", "finalbody"):
                if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    walk(getattr(s, field, []) or [], True)
            for h in getattr(s, "handlers", []) or []:
                walk(h.body, True)

    walk(tree.body, False)
    return out


def _without(lines: list[str], stmts: list[tuple[ast.stmt, bool]]) -> str:
    """The source with those statements removed: blanked at top level, `pass` where nested (blocks stay valid)."""
    new = list(lines)
    for s, nested in stmts:
        start = min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])
        indent = lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
        for i in range(start - 1, s.end_lineno):
            new[i] = ""
        if nested:
            new[start - 1] = indent + "pass"
    return "\n".join(new)


def _undefined(text: str) -> set[str]:
    from pyflakes import checker, messages
    w = checker.Checker(ast.parse(text), filename="b.py")
    kinds = (messages.UndefinedName, messages.UndefinedExport, messages.UndefinedLocal)
    return {m.message_args[0] for m in w.messages if isinstance(m, kinds)}


def _read_as_global_but_unbound(text: str, name: str) -> bool:
    """CPython's own scope analysis: some function reads `name` as a global, and nothing binds it at module level
    (pyflakes counts a `global name` in a function as a binding, so it misses these: a NameError when called)."""
    top = symtable.symtable(text, "b.py", "exec")
    try:
        sym = top.lookup(name)
        if sym.is_assigned() or sym.is_imported():
            return False
    except KeyError:
        pass
    todo = list(top.get_children())
    while todo:
        t = todo.pop()
        todo.extend(t.get_children())
        try:
            s = t.lookup(name)
        except KeyError:
            continue
        if s.is_global() and s.is_referenced():
            return True
    return False


def test_remove_each_reached_definition_breaks_the_bundle(vllm_0_26_0, tmp_path):
    bundle = _build_silu_and_mul(vllm_0_26_0, tmp_path)
    text = bundle.read_text()
    rep = json.loads((tmp_path / "A7.report.json").read_text())
    tree = ast.parse(text)
    res = R.analyze(tree, "SiluAndMul")
    assert rep["checks"]["unreachable_definitions"] == (f"found {len(res.unreachable)}" if res.unreachable else "none")
    assert rep["checks"]["unused_imports"] == (f"found {len(res.unused_imports)}" if res.unused_imports else "none")

    # 1. Removing at once everything the check calls unreachable or unused breaks nothing: no new undefined name
    #    used at run time, and the bundle still imports without vLLM, with its symbol and example.
    unused = {(d.name, d.line) for d in res.unused_imports + res.unreachable}
    pruned = _without(text.split("\n"), [(s, n) for name, bs in _bindings(tree).items() for s, n in bs
                                         if (name, s.lineno) in unused])
    pruned_tree = ast.parse(pruned)
    assert find_undefined_names(pruned, "b.py", pruned_tree)[0] == find_undefined_names(text, "b.py", tree)[0]
    res_import = check_import(pruned, "SiluAndMul.py", "SiluAndMul", False, 300)
    assert res_import["import"] == "ok" and res_import["symbol"] and res_import["example"], res_import
    assert R.analyze(pruned_tree, "SiluAndMul").reached == res.reached

    # 2. In the pruned bundle, every top-level name the check calls reached is needed: removing its module-level
    #    bindings leaves pyflakes an undefined name, or a function reading it as an unbound global (pyflakes
    #    takes `global x` in a function for a binding), or A7's import check without the symbol or example.
    lines = pruned.split("\n")
    base = _undefined(pruned)
    bindings = _bindings(pruned_tree)
    tested, not_broken = [], []
    for name in sorted(res.reached):
        binds = bindings.get(name, [])
        if not binds or any(len(_bindings_names(s)) > 1 for s, _ in binds):
            continue  # a pseudo name (torch.ops.*), or a statement binding several names
        changed = _without(lines, binds)
        tested.append(name)
        if name in ("SiluAndMul", "invocation_example"):
            broke = name not in _bindings(ast.parse(changed))
        else:
            broke = name in (_undefined(changed) - base) or _read_as_global_but_unbound(changed, name)
        if not broke:
            not_broken.append(name)
    assert len(tested) >= 45, tested   # the bundle has about 50 top-level names
    for name in not_broken:  # what neither static oracle sees must make the import itself fail
        res_import = check_import(_without(lines, bindings[name]), "SiluAndMul.py", "SiluAndMul", False, 300)
        assert res_import["import"] != "ok", name


def _bindings_names(s: ast.stmt) -> list[str]:
    if isinstance(s, (ast.Import, ast.ImportFrom)):
        return [a.asname or a.name for a in s.names]
    if isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        names: list[str] = []
        for t in (s.targets if isinstance(s, ast.Assign) else [s.target]):
            target_names(t, names)
        return names
    return [getattr(s, "name", "")]


def test_optional_reads_names_only_bare_guarded_imports_that_reached_code_reads():
    res = _analyze("""
    import torch
    try:
        from einops import rearrange
    except ImportError:  # optional package
        pass
    try:
        import cutlass
        HAS_CUTLASS = True
    except ImportError:
        HAS_CUTLASS = False
    try:
        import regex as re
    except ImportError:
        import re
    try:
        from tqdm import tqdm
    except ImportError:
        pass
    try:
        import numpy as np
    except ImportError:
        pass

    def _helper(x):
        return rearrange(x, "a b -> b a")

    class Target(torch.nn.Module):
        def forward(self, x):
            return _helper(x), re.compile("x"), cutlass if HAS_CUTLASS else np

    def unreached():
        return tqdm(rearrange)
    """)
    assert [(r.name, r.line, r.statement, r.readers) for r in res.optional_reads] == [
        ("rearrange", 5, "from einops import rearrange", ("_helper",)),
        ("np", 22, "import numpy as np", ("Target",))]
