"""Issue 15 cases 3, 4, 6 and 10 through the real Pants engine, from the issue's reproductions: each refusal is
one line naming the target and field (or path) and the remedy, exits non-zero, runs no stage where the rule can
know beforehand, and leaves the previous bundle and its artifacts as they were."""

import hashlib
import json
import os
import shutil

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants

FOO = "import torch\n\n\nclass Foo:\n    def f(self):\n        return torch.zeros(1)\n"
BUILD = """
vllm_source_tree(name="tiny", root="third_party/tiny")
vllm_source_tree(name="leaky", root="third_party/leaky")
monolithic_bundle(name="foo", symbol="Foo", vllm=":tiny")
monolithic_bundle(name="leak", symbol="Foo", vllm=":leaky", output_path="leak/Foo.py")
monolithic_bundle(name="latin1", symbol="Bar", vllm=":tiny", output_path="latin1/Bar.py")
monolithic_bundle(name="dotdot", symbol="Foo", vllm=":tiny", output_path="x/../A.py")
monolithic_bundle(name="rope", symbol="Foo", vllm=":tiny", model="Bad/Rope", output_path="m/rope.py")
monolithic_bundle(name="textcfg", symbol="Foo", vllm=":tiny", model="Bad/Text", output_path="m/text.py")
monolithic_bundle(name="experts", symbol="Foo", vllm=":tiny", model="Bad/Experts", output_path="m/experts.py")
monolithic_bundle(name="badjson", symbol="Foo", vllm=":tiny", model="Bad/Json", output_path="m/json.py")
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("outputs"))
    lic = (vllm_0_26_0 / "LICENSE").read_text()
    for tree in ("tiny", "leaky"):
        ws.write(f"third_party/{tree}/LICENSE", lic)
        ws.write(f"third_party/{tree}/vllm/__init__.py", "")
        ws.write(f"third_party/{tree}/vllm/a.py", FOO)
        ws.write(f"third_party/{tree}/csrc/none.cu", "// no compiled ops\n")  # A4 reads csrc/ and CMakeLists.txt
        ws.write(f"third_party/{tree}/CMakeLists.txt", "cmake_minimum_required(VERSION 3.26)\n")
    # case 10: the file defining Bar has a Latin-1 byte in a comment
    (ws.root / "third_party/tiny/vllm/latin.py").write_bytes(b"# caf\xe9\nclass Bar:\n    pass\n")
    # case 6: a relative symlink inside the tree to a workspace file outside it
    os.symlink("../../../pants.toml", ws.root / "third_party/leaky/vllm/leak_toml.py")
    qwen = json.loads((ws.root / "models/Qwen--Qwen3-30B-A3B/config.json").read_text())
    for name, change in (("Rope", {"rope_scaling": "yes"}), ("Text", {"text_config": "oops"}),
                         ("Experts", {"num_experts": None})):
        ws.write(f"models/Bad--{name}/config.json", json.dumps({**qwen, **change}))
    ws.write("models/Bad--Json/config.json", '{"hidden_size": 8,,}')
    ws.write("targets/BUILD", BUILD)
    return ws


def _state(ws):
    """Everything under bundles_out/, links followed: path -> bytes."""
    out = ws.root / "bundles_out"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(ws):
    run = ws.pants("package", "targets:foo")
    assert run.returncode == 0, run.stderr[-4000:]
    return ws


def _refused(run, *needles):
    assert run.returncode != 0, run.stdout + run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.wrote() == []
    for n in needles:
        assert n in run.stderr, f"{n!r} missing from:\n{run.stderr[-3000:]}"
    # the error is one line: every needle and the remedy on it
    lines = [line for line in run.stderr.splitlines() if all(n in line for n in needles) and "Remedy" in line]
    assert len(lines) == 1, run.stderr[-3000:]
    return lines[0]


def test_layout_bundle_and_artifacts_through_one_switch(built):
    out = built.root / "bundles_out"
    bundle = (out / "Foo.py").read_bytes()
    report = json.loads((out / "artifacts/targets.foo/A7.report.json").read_text())
    assert report["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert os.readlink(out / "Foo.py").endswith("/current/Foo.py")
    assert os.readlink(out / "artifacts/targets.foo").endswith("/current/artifacts")
    assert not os.path.isabs(os.readlink(out / "Foo.py"))


def test_case3_same_symbol_twice_is_refused_before_any_stage(built):
    """Two monolithic_bundles with the same symbol and no output_path both wrote bundles_out/Foo.py."""
    before = _state(built)
    other = built.root / "targets/other/BUILD"
    built.write("targets/other/BUILD", 'monolithic_bundle(name="twin", symbol="Bar", vllm="//targets:tiny", '
                                       'output_path="Foo.py")\n')
    try:
        for spec in ("targets/other:twin", "targets:foo"):
            run = built.pants("package", spec)
            _refused(run, "targets/other:twin", "targets:foo", "both write bundles_out/Foo.py")
            assert run.executed_stages == [], spec
            assert _state(built) == before
    finally:
        shutil.rmtree(other.parent)


def test_case3_same_target_name_in_two_directories_keeps_two_artifact_dirs(built):
    built.write("targets/other/BUILD", 'monolithic_bundle(name="foo", symbol="Foo", vllm="//targets:tiny", '
                                       'output_path="other/Foo.py")\n')
    try:
        run = built.pants("package", "targets:foo", "targets/other:foo")
        assert run.returncode == 0, run.stderr[-3000:]
        out = built.root / "bundles_out"
        assert (out / "artifacts/targets.foo/A7.report.json").is_file()
        assert (out / "other/artifacts/targets.other.foo/A7.report.json").is_file()
        # a path inside another target's is a collision too
        built.write("targets/other/BUILD", 'monolithic_bundle(name="foo", symbol="Foo", vllm="//targets:tiny", '
                                           'output_path="Foo.py/Inner.py")\n')
        run = built.pants("package", "targets:foo")
        _refused(run, "targets/other:foo", "targets:foo", "bundles_out/Foo.py/Inner.py", "one inside the other")
    finally:
        shutil.rmtree(built.root / "targets/other")


def test_case4_a_blocked_bundle_path_leaves_the_previous_build(built):
    """The bundle path blocked by a directory: the artifacts were swapped before the bundle failed."""
    out = built.root / "bundles_out"
    arts = {p.name: p.read_bytes() for p in (out / "artifacts/targets.foo").iterdir()}
    current = os.readlink(out / os.readlink(out / "Foo.py").rsplit("/", 1)[0])
    tree_file = built.root / "third_party/tiny/vllm/a.py"
    tree_file.write_text(FOO.replace("zeros(1)", "zeros(2)"))  # a new build: other bundle, other artifacts
    (out / "Foo.py").unlink()
    (out / "Foo.py").mkdir()
    try:
        run = built.pants("package", "targets:foo")
        line = _refused(run, "targets:foo", "bundles_out/Foo.py is a directory")
        assert "IsADirectoryError" not in run.stderr, line
        assert {p.name: p.read_bytes() for p in (out / "artifacts/targets.foo").iterdir()} == arts
        assert os.readlink(out / "artifacts" / os.readlink(out / "artifacts/targets.foo").rsplit("/", 1)[0]) == current
    finally:
        (out / "Foo.py").rmdir()
        run = built.pants("package", "targets:foo")
        tree_file.write_text(FOO)
    assert run.returncode == 0, run.stderr[-3000:]
    (path, _, sha), = run.wrote()
    report = json.loads((out / "artifacts/targets.foo/A7.report.json").read_text())
    assert sha == report["sha256"] == hashlib.sha256((out / "Foo.py").read_bytes()).hexdigest()
    assert "torch.zeros(2)" in (out / "Foo.py").read_text()


def test_case6_symlink_out_of_the_tree_is_refused(built):
    before = _state(built)
    run = built.pants("package", "targets:leak")
    _refused(run, "targets:leaky", "third_party/leaky/vllm/leak_toml.py", "pants.toml")
    assert run.executed_stages == []
    assert _state(built) == before


@pytest.mark.parametrize("target, needles", [
    ("rope", ["targets:rope", "models/Bad--Rope/config.json rope_scaling", "'yes'"]),
    ("textcfg", ["targets:textcfg", "models/Bad--Text/config.json text_config", "'oops'"]),
    ("experts", ["targets:experts", "models/Bad--Experts/config.json num_experts", "MoE"]),
    ("badjson", ["targets:badjson", "models/Bad--Json/config.json", "not valid JSON"]),
    ("dotdot", ["targets:dotdot", "`output_path` 'x/../A.py' contains `..`"]),
])
def test_case10_bad_field_or_model_config_is_one_line_before_any_stage(built, target, needles):
    before = _state(built)
    run = built.pants("package", f"targets:{target}")
    line = _refused(run, *needles)
    assert "model/config.json" not in line.replace("models/", "")
    assert run.executed_stages == []
    assert _state(built) == before


def test_case10_non_utf8_file_defining_the_symbol_is_named(built):
    before = _state(built)
    run = built.pants("package", "targets:latin1")
    _refused(run, "vllm/latin.py", "byte 0xe9 at offset 5")
    assert "not defined at top level" not in run.stderr
    assert _state(built) == before
