"""A1's memo (bundler_lib/graph/memo.py): a graph is reused only while nothing it read has changed."""

import shutil

import pytest

from bundler_lib.artifacts import dumps_json
from bundler_lib.graph import build
from tests.test_closure_helpers import TREES

REUSED = "A1: reused the graph of a previous run"


@pytest.fixture
def tree(tmp_path):
    t = tmp_path / "tree"
    shutil.copytree(TREES / "decorator", t)
    (t / "vllm" / "unrelated.py").write_text("def unrelated():\n    return 1\n")
    return t


def graph(tree, memo, capsys, **kw):
    g = build(tree, "Target", memo_dir=str(memo), **kw)
    return dumps_json(g), REUSED in capsys.readouterr().err


def test_reused_until_something_it_read_changes(tree, tmp_path, capsys):
    memo = tmp_path / "memo"
    first, reused = graph(tree, memo, capsys)
    assert not reused
    assert graph(tree, memo, capsys) == (first, True)
    # a file the closure never read: reused, and the same bytes as a fresh build
    (tree / "vllm" / "unrelated.py").write_text("def unrelated():\n    return 2\n")
    assert graph(tree, memo, capsys) == (first, True)
    assert dumps_json(build(tree, "Target")) == first
    # a file it parsed: built again
    layer = tree / "vllm" / "layer.py"
    layer.write_text(layer.read_text().replace("class Target", "# edited\nclass Target"))
    second, reused = graph(tree, memo, capsys)
    assert not reused and second != first and second == dumps_json(build(tree, "Target"))
    # a new file (the module set changed): built again
    (tree / "vllm" / "new_module.py").write_text("X = 1\n")
    assert graph(tree, memo, capsys)[1] is False
    assert graph(tree, memo, capsys)[1] is True
    # another variant or another symbol's run is its own entry
    assert graph(tree, memo, capsys, variant={"envs": "runtime"})[1] is False


def test_a_tree_wide_scan_that_changes_invalidates(tree, tmp_path, capsys):
    memo = tmp_path / "memo"
    graph(tree, memo, capsys)
    # a file that was not parsed, but names the custom op the closure calls: the registration scan differs
    (tree / "vllm" / "unrelated.py").write_text(
        "from vllm.registry import direct_register_custom_op\n\n\ndef other(x):\n    return x\n\n\n"
        "direct_register_custom_op(op_name=\"my_op\", op_func=other)\n")
    assert graph(tree, memo, capsys)[1] is False


def test_unusable_memo_directory_only_costs_the_reuse(tree, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    g, reused = graph(tree, blocker / "memo", capsys)
    assert not reused and g == dumps_json(build(tree, "Target"))
