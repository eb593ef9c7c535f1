"""Caching, proved with Pants' own counters over a local copy of the real vLLM 0.26.0 tree:
a no-op rebuild executes no process; an edit outside the closure re-executes A1 only; an edit inside
a closure file re-executes only the stages that read it (A6: only the layer's own module) and those downstream
whose inputs changed."""

import json
import uuid

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants

BUILD = """
vllm_source_tree(name="vllm_local", root="third_party/vllm")
monolithic_bundle(name="rms_norm", symbol="RMSNorm", vllm=":vllm_local",
                  symbol_file_hint="vllm/model_executor/layers/layernorm.py")
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("caching"))
    ws.add_tree("third_party/vllm", vllm_0_26_0)
    ws.write("targets/BUILD", BUILD)
    first = ws.pants("package", "targets:rms_norm")
    assert first.returncode == 0, first.stderr[-4000:]
    return ws


def _graph(ws):
    return json.loads((ws.root / "bundles_out/artifacts/targets.rms_norm/A1.graph.json").read_text())


def _comment_on_first_line(ws, node: dict) -> None:
    """A comment at the end of the definition's first line: same line numbers, new bytes in A2's slice."""
    path = ws.root / "third_party/vllm" / node["file"]
    lines = path.read_text().splitlines(keepends=True)
    i = node["line"] - 1
    lines[i] = lines[i].rstrip("\n") + f"  # edit {uuid.uuid4().hex}\n"
    path.write_text("".join(lines))


def test_noop_rebuild_executes_nothing(built):
    run = built.pants("package", "targets:rms_norm")
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.executed == 0, run.stderr[-4000:]
    assert run.executed_stages == []
    assert [p for p, _, _ in run.wrote()] == ["bundles_out/RMSNorm.py"]


def test_edit_outside_closure_reexecutes_a1_only(built):
    closure = set(_graph(built)["files"])
    outside = "vllm/entrypoints/cli/main.py"
    assert outside not in closure
    path = built.root / "third_party/vllm" / outside
    path.write_text(path.read_text() + f"\n# edit {uuid.uuid4().hex}\n")
    run = built.pants("package", "targets:rms_norm")
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.executed_stages == ["A1"], run.stderr[-4000:]
    assert run.executed == 1


def test_edit_inside_closure_reexecutes_only_its_readers(built):
    graph = _graph(built)
    node = next(n for n in graph["python_nodes"] if n["name"] == "RMSNorm")
    _comment_on_first_line(built, node)
    run = built.pants("package", "targets:rms_norm")
    assert run.returncode == 0, run.stderr[-4000:]
    triton_files = {k["file"] for k in graph["triton_kernels"]}
    # A6 reads the layer's own module (a config class it may define, bundler_lib/example/config_class.py)
    expected = ["A1", "A2", *(["A3"] if node["file"] in triton_files else []), "A5",
                *(["A6"] if node["file"] == graph["def_file"] else []), "A7"]
    assert run.executed_stages == expected, run.stderr[-4000:]
    assert run.executed == len(expected)
    bundle = (built.root / "bundles_out/RMSNorm.py").read_text()
    assert "# edit " in bundle


def test_edit_to_one_stage_code_reexecutes_that_stage_only(built):
    """Each stage process takes only the bundler_lib modules it imports: an edit to A4's code (cuda/emit.py) or
    A6's (example/cli.py) re-runs that stage alone (a comment changes no artifact, so nothing after it re-runs)."""
    for rel, stage in (("bundler_lib/cuda/emit.py", "A4"), ("bundler_lib/example/cli.py", "A6")):
        path = built.root / rel
        path.write_text(path.read_text() + f"\n# edit {uuid.uuid4().hex}\n")
        run = built.pants("package", "targets:rms_norm")
        assert run.returncode == 0, run.stderr[-4000:]
        assert run.executed_stages == [stage], run.stderr[-4000:]
        assert run.executed == 1


def test_edit_elsewhere_in_closure_leaves_a6_cached(built):
    """A6 reads the layer's own module and vLLM's config-class files alone: an edit to another closure file
    re-runs the stages that read it and leaves A6's cached output in place."""
    from fnmatch import fnmatch

    from bundler_lib.example.config_class import TREE_GLOBS

    graph = _graph(built)
    node = next(n for n in graph["python_nodes"] if n["file"] != graph["def_file"]
                and not any(fnmatch(n["file"], g) for g in TREE_GLOBS))
    _comment_on_first_line(built, node)
    run = built.pants("package", "targets:rms_norm")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "A2" in run.executed_stages and "A6" not in run.executed_stages, run.stderr[-4000:]
