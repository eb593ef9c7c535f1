"""A bundle declares what it needs (a PEP 723 block) and A7 proves it: the import check runs in the bundle runtime
(a venv holding torch, triton and ninja only, no `packaging`), under bubblewrap. Stage-level tests, no Pants
(tests/test_pants_minimal_env.py drives the same through the real engine)."""

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from bundler_lib import package as a7
from bundler_lib.__main__ import main
from bundler_lib.errors import StageError

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "trees" / "minenv" / "tiny"
OK = Path(__file__).parent / "trees" / "stages" / "package" / "ok"

# PEP 723's reference implementation (https://peps.python.org/pep-0723/#reference-implementation), kept here
# rather than imported from the code under test.
REGEX = r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"


def pep723(script: str) -> dict | None:
    matches = list(filter(lambda m: m.group("type") == "script", re.finditer(REGEX, script)))
    if len(matches) > 1:
        raise ValueError("Multiple script blocks found")
    if len(matches) == 1:
        content = "".join(line[2:] if line.startswith("# ") else line[1:]
                          for line in matches[0].group("content").splitlines(keepends=True))
        return tomllib.loads(content)
    return None


def _stages(tree: Path, out: Path, symbol: str, runtime: Path | None, extra: tuple[str, ...] = ()) -> int:
    graph = str(out / "A1.graph.json")
    for argv in (["license", "--tree", str(tree)], ["graph", "--tree", str(tree), "--symbol", symbol],
                 ["collect-python", "--tree", str(tree), "--graph", graph],
                 ["collect-triton", "--tree", str(tree), "--graph", graph],
                 ["collect-cuda", "--tree", str(tree), "--graph", graph], ["bind", "--inputs", str(out)],
                 ["example", "--graph", graph]):
        assert main(argv + ["--out", str(out)]) == 0, argv[0]
    rt = ["--runtime-python", str(runtime)] if runtime else []
    return main(["package", "--inputs", str(out), "--bundle-name", f"{symbol}.py", "--out", str(out), *rt, *extra])


def test_runtime_holds_exactly_the_declared_packages(runtime_python):
    """The promised environment: no packaging (the toolchain has it through pytest), torch's vendored copy."""
    code = ("import importlib.metadata as m, importlib.util as u, json; "
            "print(json.dumps([u.find_spec('packaging') is None, u.find_spec('vllm') is None, "
            "sorted(d.metadata['Name'].lower() for d in m.distributions())]))")
    no_packaging, no_vllm, dists = json.loads(subprocess.run(
        [str(runtime_python), "-I", "-c", code], capture_output=True, text=True, check=True).stdout)
    assert no_packaging and no_vllm
    assert {"torch", "triton", "ninja"} <= set(dists) and "packaging" not in dists and "pytest" not in dists


def test_tree_versions_from_the_real_sdists(vllm_0_26_0, vllm_0_33_0, tmp_path):
    """A0 reads the torch the tree's CUDA sources build against (an sdist holds CMakeLists.txt)."""
    from bundler_lib import license as a0
    assert a0.run(vllm_0_26_0, tmp_path / "a")["runtime"]["torch"] == "2.11"
    rec = a0.run(vllm_0_33_0, tmp_path / "b")["runtime"]
    assert rec["torch"] == "2.14" and rec["requires_python"] == ">=3.11"


def test_case1_packaging_at_import_imports_in_the_runtime(runtime_python, tmp_path):
    """Issue 15 case 1: `from packaging.version import Version` guarded by A2, called at import
    (HAS_OPAQUE_TYPE-like): the bundle imports where packaging is not installed, through torch's vendored copy."""
    out = tmp_path / "out"
    assert _stages(TINY, out, "TinyLayer", runtime_python) == 0
    rep = json.loads((out / "A7.report.json").read_text())
    assert rep["status"] == "ok" and rep["checks"]["import"] == "ok", rep
    assert rep["dependencies"]["runtime"]["interpreter"] == "bundle runtime"
    assert rep["dependencies"]["runtime"]["isolated"].startswith("bubblewrap")
    text = (out / "TinyLayer.py").read_text()
    assert "from torch._vendor.packaging.version import Version" in text
    # and it runs there: the import-time comparison went through the fallback
    code = ("import importlib.util, sys, torch\n"
            f"spec = importlib.util.spec_from_file_location('TinyLayer', {str(out / 'TinyLayer.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['TinyLayer'] = m; spec.loader.exec_module(m)\n"
            "assert 'packaging' not in sys.modules and m.HAS_NEW_TORCH is True\n"
            "print(m.TinyLayer()(torch.ones(2, 8)).shape)\n")
    proc = subprocess.run([str(runtime_python), "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "torch.Size([2, 4])" in proc.stdout, proc.stderr[-2000:]


def test_pep723_block_parses_and_declares_the_trees_torch(runtime_python, tmp_path):
    out = tmp_path / "out"
    assert _stages(TINY, out, "TinyLayer", runtime_python) == 0
    text = (out / "TinyLayer.py").read_text()
    meta = pep723(text)
    assert meta == {"requires-python": ">=3.10", "dependencies": ["torch>=2.11", "triton", "ninja"]}
    # right after the license notice, before any code; the provenance comments untouched
    assert text.index("limitations under the License.") < text.index("# /// script") < text.index("from __future__")
    assert "# --- Inlined from vllm/layer.py:L7-L15 (Apache-2.0) ---" in text
    # 0.33.0's torch pin (CMake's TORCH_SUPPORTED_VERSION_CUDA "2.14.0") gives torch>=2.14
    tree = tmp_path / "tree33"
    shutil.copytree(TINY, tree)
    (tree / "CMakeLists.txt").write_text('set(PYTHON_SUPPORTED_VERSIONS "3.11" "3.12")\n'
                                         'set(TORCH_SUPPORTED_VERSION_CUDA "2.14.0")\n')
    assert _stages(tree, tmp_path / "out33", "TinyLayer", runtime_python) == 0
    meta = pep723((tmp_path / "out33" / "TinyLayer.py").read_text())
    assert meta["dependencies"][0] == "torch>=2.14" and meta["requires-python"] == ">=3.11"
    rep = json.loads((tmp_path / "out33" / "A7.report.json").read_text())
    assert any("torch 2.13.0" in n for n in rep["notes"])  # checked with an older torch: said, not hidden


def test_an_undeclarable_import_is_declared_and_missing_from_the_runtime_fails(runtime_python, tmp_path):
    """A module-level import outside torch/triton/stdlib is a declared dependency; the runtime lacks it: one line
    naming it, no bundle."""
    inputs = tmp_path / "in"
    shutil.copytree(OK, inputs)
    module = (inputs / "A5.module.py").read_text()
    (inputs / "A5.module.py").write_text(module.replace("import torch\n", "import torch\nimport numpy\n", 1)
                                         + "\n_NP = numpy.float32\n")
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py", runtime_python=runtime_python)
    msg = ei.value.message()
    assert "\n" not in msg and "declares numpy" in msg and "3rdparty/bundle_runtime.txt" in msg
    assert not (tmp_path / "out" / "TinyNorm.py").exists()


def test_isolation_missing_or_broken_bwrap_fails_loudly(tmp_path, monkeypatch):
    inputs = tmp_path / "in"
    shutil.copytree(OK, inputs)
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "o1", "TinyNorm.py")
    assert "bubblewrap is not installed" in ei.value.problem and "\n" not in ei.value.message()
    # a bwrap that cannot create its namespaces (as in a container without user namespaces)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "o2", "TinyNorm.py")
    assert "cannot isolate the import check (bwrap: No permissions to creating new namespace)" in ei.value.problem
    assert not (tmp_path / "o2" / "TinyNorm.py").exists()


def test_strict_by_default_one_line_and_report_mode(tmp_path):
    """Issue 17 item 2 at the stage: the CLI default fails on an undefined name, unreachable definitions and
    unused imports together, in one line with the first few and the counts; `report` writes the bundle."""
    inputs = tmp_path / "in"
    shutil.copytree(OK, inputs)
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text()
                                         + "\n\nimport os\n\n\ndef orphan():\n    return 1\n\n\nBROKEN = SiluAndMul\n")
    out = tmp_path / "out"
    err = tmp_path / "err.txt"
    proc = subprocess.run([str(Path(__import__("sys").executable)), "-m", "bundler_lib", "package", "--inputs",
                           str(inputs), "--out", str(out), "--bundle-name", "TinyNorm.py"],
                          capture_output=True, text=True, cwd=ROOT)
    err.write_text(proc.stderr)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "undefined name(s): SiluAndMul" in line
    assert "check that every file the closure reaches exists in the tree" in line  # no node of A1 emits it
    assert "nothing reaches" in line and "orphan" in line and "os" in line
    assert 'import_check="report"' in line and "Remedy:" in line
    assert not (out / "TinyNorm.py").exists()
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "rep"), "--bundle-name", "TinyNorm.py",
                 "--import-check", "report"]) == 0
    rep = json.loads((tmp_path / "rep" / "A7.report.json").read_text())
    assert rep["status"] == "ok_with_failures" and (tmp_path / "rep" / "TinyNorm.py").exists()


def test_undefined_name_that_a_node_of_a1_emits_is_traced_to_it(tmp_path, capsys):
    """An undefined name that A1 resolved to a node (a block whose inlined text lost the binding: OpenPangu's
    fa_utils.py imports under `if current_platform.is_cuda():`) is named with that node's source span."""
    inputs = tmp_path / "in"
    shutil.copytree(OK, inputs)
    g = json.loads((inputs / "A1.graph.json").read_text())
    g["python_nodes"] = [{"id": "vllm/x/utils.py::fused_op", "file": "vllm/x/utils.py", "line": 21, "end_line": 62,
                          "kind": "block", "name": "fused_op", "emit_name": "fused_op", "section": "python",
                          "edits": [{"op": "delete", "line": 22, "end_line": 23}], "imports": [],
                          "importtime_deps": [], "importtime_imports": [],
                          "names": [{"name": "fused_op", "emit_name": "fused_op"},
                                    {"name": "other", "emit_name": "other"}]}]
    (inputs / "A1.graph.json").write_text(json.dumps(g))
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + "\n\ndef broken():\n    return fused_op, other\n")
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "out"), "--bundle-name",
                 "TinyNorm.py"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "undefined name(s): fused_op" in line
    assert "A1 resolved fused_op, other to vllm/x/utils.py:L21-L62 (a block), whose inlined text does not define them" \
        in line
    assert not (tmp_path / "out" / "TinyNorm.py").exists()
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "rep"), "--bundle-name", "TinyNorm.py",
                 "--import-check", "report"]) == 0
    rep = json.loads((tmp_path / "rep" / "A7.report.json").read_text())
    assert rep["details"]["undefined_names_bound_by"] == {"fused_op": "vllm/x/utils.py:L21-L62 (a block)",
                                                          "other": "vllm/x/utils.py:L21-L62 (a block)"}
