"""A1's structure: a generic engine (graph/engine.py) calling named rules; vLLM's names only under graph/vllm/;
size limits; A1 imports no other stage. And the engine on its own, on a tiny tree, with and without a rule."""

import ast
import gc
from pathlib import Path

from bundler_lib.graph import engine as engine_mod
from bundler_lib.graph.engine import HOOKS, Engine
from bundler_lib.graph.guards import GuardEval
from bundler_lib.graph.index import TreeIndex
from bundler_lib.graph.refs import Scanner
from bundler_lib.graph.resolve import Resolver
from bundler_lib.graph.vllm import RULES
from bundler_lib.variant import resolve as resolve_variant

GRAPH = Path(__file__).resolve().parents[1] / "bundler_lib" / "graph"

# modules of the other stages (and their helpers), which A1 must not import
OTHER_STAGES = ("bundler_lib.example", "bundler_lib.collect_python", "bundler_lib.collect_triton",
                "bundler_lib.collect_cuda", "bundler_lib.cuda", "bundler_lib.bind", "bundler_lib.package",
                "bundler_lib.data_files", "bundler_lib.license")


def _graph_files() -> list[Path]:
    return sorted(GRAPH.rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body \
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant):
            out.add(id(n.body[0].value))
    return out


def test_engine_knows_nothing_of_vllm():
    tree = ast.parse(Path(engine_mod.__file__).read_text())
    docs = _docstrings(tree)
    words = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            words.append(n.value)
        elif isinstance(n, ast.Name):
            words.append(n.id)
        elif isinstance(n, ast.Attribute):
            words.append(n.attr)
        elif isinstance(n, ast.ImportFrom):
            words.append(n.module or "")
            assert n.level == 0 or n.module in ("index", "refs", "resolve"), n.module
    assert not [w for w in words if "vllm" in w.lower() or "torch" in w.lower()]


def test_rules_are_named_and_listed():
    doc = ast.get_docstring(ast.parse((GRAPH / "vllm" / "__init__.py").read_text()))
    names = [r.name for r in RULES]
    assert len(set(names)) == len(names)
    for r in RULES:
        assert r.decides, r
        assert r.name in doc, f"rule {r.name} missing from the list in graph/vllm/__init__.py"
        hooks = [h for h in HOOKS if hasattr(r, h)]
        assert hooks, f"rule {r.name} answers no engine hook"
        assert ("link" in hooks) == bool(r.link_kinds), r.name
    # the order matters where two rules answer one hook (the first that decides wins)
    assert names.index("self-reads") < names.index("held-branches") < names.index("abstract-stubs")
    assert names.index("ir-op-priority") < names.index("held-branches")   # finish: reach, then settle
    assert names.index("current-platform") < names.index("module-getattr")


def test_size_limits():
    for path in _graph_files():
        text = path.read_text()
        assert len(text.splitlines()) <= 600, path
        for n in ast.walk(ast.parse(text)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([n.lineno] + [d.lineno for d in n.decorator_list])
                assert n.end_lineno - start + 1 <= 80, f"{path}: {n.name}"
    core = Path(engine_mod.__file__).read_text().splitlines()
    assert len(core) < 500


def test_a1_imports_no_other_stage():
    for path in _graph_files():
        for n in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else (
                [n.module or ""] if isinstance(n, ast.ImportFrom) and n.level == 0 else [])
            for m in mods:
                assert not m.startswith(OTHER_STAGES), f"{path} imports {m}"


def _tree(tmp_path: Path) -> TreeIndex:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from pkg.b import helper, unused\n\n\n"
        "def root(x):\n"
        "    return helper(x) + skipped(x)\n\n\n"
        "def skipped(x):\n"
        "    return x\n")
    (pkg / "b.py").write_text("def helper(x):\n    return x + 1\n\n\ndef unused():\n    return 0\n")
    return TreeIndex(tmp_path)


def test_a_parsed_tree_is_out_of_the_cyclic_collectors_reach(tmp_path):
    index = _tree(tmp_path)
    gc.unfreeze()
    tree = index.get("pkg.a").tree
    assert tree not in gc.get_objects(), "the index left a parsed tree to the cyclic collector"


def _engine(index: TreeIndex, rules: list) -> Engine:
    return Engine(index, Resolver(index), Scanner(index, GuardEval(resolve_variant(None))), rules)


def test_engine_without_rules(tmp_path):
    index = _tree(tmp_path)
    g = _engine(index, [])
    g.build("pkg.a", "root")
    g.finish()
    assert sorted(n.name for n in g.nodes.values()) == ["helper", "root", "skipped"]


class _DropSkipped:
    name = "drop-skipped"
    decides = "a reference to `skipped` is not followed"
    link_kinds = ("node",)

    def link(self, g, n, ref, t, used) -> bool:
        return t.name == "skipped"


def test_a_rule_decides_a_link(tmp_path):
    index = _tree(tmp_path)
    g = _engine(index, [_DropSkipped()])
    g.build("pkg.a", "root")
    assert sorted(n.name for n in g.nodes.values()) == ["helper", "root"]
