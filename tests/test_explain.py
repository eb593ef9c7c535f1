"""`explain` on a small tree built by the real A1/A2/A3 stages: every edge kind, line numbers mapped back
through A1's edits (with and without the tree), the example's roots, --pruned, --top, closure.html."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from bundler_lib import explain as ex
from bundler_lib.closure_artifacts import line_map, load_blocks, resolve
from bundler_lib.explain_html import squarify
from tests.test_closure_helpers import build_all

FILES = {
    "vllm/__init__.py": "",
    "vllm/platforms.py": """\
        class _P:
            def is_rocm(self):
                return False


        current_platform = _P()
        """,
    "vllm/registry.py": """\
        op_registry = {}


        def register(name):
            def deco(cls):
                op_registry[name] = cls
                return cls

            return deco


        def direct_register_custom_op(op_name, op_func, mutates_args=None, fake_impl=None):
            pass
        """,
    "vllm/helpers.py": """\
        import torch


        def scale(x):
            return x * 2


        def rocm_scale(x):
            return x * 5


        class Base(torch.nn.Module):
            def shared(self, x):
                return x


        def my_op_impl(x):
            return x * 3


        class Consts:
            @staticmethod
            def factor():
                return 4
        """,
    "vllm/layer.py": """\
        import torch

        from vllm.helpers import Base, Consts, my_op_impl, rocm_scale, scale
        from vllm.platforms import current_platform
        from vllm.registry import direct_register_custom_op, register



        @register("target")
        class Target(Base):
            def __init__(self):
                super().__init__()
                self.k = Consts.factor()
                direct_register_custom_op(op_name="my_op", op_func=my_op_impl)

            def forward(self, x):
                if current_platform.is_rocm():
                    y = rocm_scale(x)

                    y = y + 1
                else:
                    y = scale(x)

                return torch.ops.vllm.my_op(y) + self.shared(y) * self.k
        """,
}


def write_tree(root: Path, files=FILES) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    (root / "LICENSE").write_text("Apache License 2.0\n")
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    tree = write_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("art")
    g, _, _ = build_all(tree, out, "Target")
    return tree, out, g


def _ref_at(tree: Path, edge: dict) -> str:
    return (tree / edge["file"]).read_text().splitlines()[edge["line"] - 1]


@pytest.mark.parametrize("use_tree", [True, False])
def test_why_every_edge_names_the_next_definition_at_its_line(small, use_tree):
    tree, out, g = small
    c = ex.Closure(out, tree=tree if use_tree else None, use_tree=use_tree)
    assert (c.tree is not None) == use_tree
    kinds = {}
    for b in c.blocks:
        p = c.path(b.id)
        assert p is not None, b.id
        for e in p:
            line = _ref_at(tree, e)
            names = [e["to_name"]] + e.get("original_names", [])
            assert any(re.search(rf"\b{re.escape(n)}\b", line) for n in names), (e, line)
            kinds[e["to_name"]] = e["kind"]
    assert kinds["scale"] == "call"
    assert kinds["Base"] == "base class"
    assert kinds["register"] == "decorator"
    assert kinds["Consts"] == "attribute read"
    assert kinds["my_op_impl"] == "registration"


def test_lines_map_back_through_deleted_branches(small):
    """The pruned rocm branch (with its blank line) is gone from the inlined text: every line after it still
    maps to its own line of the file, with the tree and without it."""
    tree, out, g = small
    for with_tree in (tree, None):
        blk = next(b for b in load_blocks(out, g, with_tree) if b.name == "Target")
        src = (tree / "vllm/layer.py").read_text().splitlines()
        assert "rocm_scale" not in blk.text
        spans = {e["line"] for e in blk.node["edits"] if e["op"] == "span"}   # A1 rewrote these
        assert len(spans) == 1
        for text, o in zip(blk.text.splitlines(), blk.orig_lines):
            if text.strip() and o not in spans:
                assert src[o - 1].strip() == text.strip(), (o, text)


def test_line_map_needs_the_tree_only_for_dropped_blank_runs():
    src = ["class A:", "    def a(self):", "        pass", "", "    def b(self):", "        pass", "",
           "    def c(self):", "        pass"]
    edits = [{"op": "delete", "line": 5, "end_line": 6}]
    out = ["class A:", "    def a(self):", "        pass", "", "    def c(self):", "        pass"]
    assert line_map(1, 9, edits, out, src) == ([1, 2, 3, 4, 8, 9], True)
    assert line_map(1, 9, edits, out)[0] == [1, 2, 3, 4, 8, 9]


def test_example_roots_and_unknown_name(small, capsys, tmp_path):
    tree, out, g = small
    c = ex.Closure(out, use_tree=False)
    g2 = dict(g, notes=g["notes"] + ["extra roots (needed by invocation_example()): vllm/helpers.py::Consts"])
    c.graph, c.extra = g2, [("vllm/helpers.py::Consts", "vllm/helpers.py::Consts", "needed by invocation_example()")]
    c.succ = {k: [x for x in v if x != "vllm/helpers.py::Consts"] for k, v in c.succ.items()}
    c._example = ["def invocation_example(small=False):", "    return Consts.FACTOR"]
    p = c.path("vllm/helpers.py::Consts")
    assert [(e["kind"], e["file"], e["line"]) for e in p] == [("example root", "A6.example.py", 2)]
    args = _args(str(out), why=["nothing_like_this"], html=str(tmp_path / "c.html"))
    assert ex.run(args) == 1
    assert "nothing_like_this: not in this bundle's closure" in capsys.readouterr().out


def _args(target, **kw):
    import argparse
    p = argparse.ArgumentParser()
    ex.add_arguments(p)
    a = p.parse_args([target])
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def test_cli_why_pruned_top_and_html(small, capsys):
    tree, out, g = small
    from bundler_lib.__main__ import main
    assert main(["explain", str(out), "--why", "scale", "--pruned", "--top", "3", "--tree", str(tree)]) == 0
    text = capsys.readouterr().out
    assert "-> scale  [call at vllm/layer.py:22]" in text
    assert re.search(r"vllm/layer.py:17-22  if current_platform.is_rocm\(\)  -> False: pruned the if-branch", text)
    assert re.search(r"top 3 definitions by inlined lines:\n\s+\d+  Target  \(vllm/layer.py:9, python\)", text)
    html = (out / "closure.html").read_text()
    assert html.count('class="d"') == len(g["python_nodes"])
    assert "http" not in html.replace("http://www.w3.org", "") and "<link" not in html and "src=" not in html
    paths = json.loads(re.search(r'<script id="paths" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert paths["paths"]["vllm/helpers.py::scale"][-1]["to_name"] == "scale"


def test_resolve_bundle_path_and_target(tmp_path):
    art = tmp_path / "bundles_out" / "vllm-x" / "artifacts" / "targets.v.t1"
    art.mkdir(parents=True)
    (art / "A1.graph.json").write_text("{}")
    bundle = tmp_path / "bundles_out" / "vllm-x" / "T.py"
    bundle.write_text("x = 1\n")
    import hashlib
    (art / "A7.report.json").write_text(json.dumps({"path": "T.py", "sha256": hashlib.sha256(b"x = 1\n").hexdigest()}))
    assert resolve("bundles_out/vllm-x/T.py", tmp_path) == art
    (tmp_path / "targets" / "v").mkdir(parents=True)
    (tmp_path / "targets" / "v" / "BUILD").write_text(
        'monolithic_bundle(\n    name="t1",\n    symbol="T",\n    output_path="vllm-x/T.py",\n)\n')
    assert resolve("targets/v:t1", tmp_path) == art
    assert resolve(str(art), tmp_path) == art


def test_squarify_fills_the_rectangle():
    rects = squarify([6, 6, 4, 3, 2, 2, 1], 0, 0, 600, 400)
    assert abs(sum(w * h for _, _, w, h in rects) - 600 * 400) < 1e-6
    assert all(0 <= x and 0 <= y and x + w <= 600 + 1e-6 and y + h <= 400 + 1e-6 for x, y, w, h in rects)
    assert max(max(w / h, h / w) for _, _, w, h in rects) < 3
