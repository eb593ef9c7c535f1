"""A7 package: composition, checks, atomic write, failure policy."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from bundler_lib import package as a7
from bundler_lib.__main__ import main
from bundler_lib.errors import StageError
from bundler_lib.package.import_check import check_import

OK = Path(__file__).parent / "trees" / "stages" / "package" / "ok"


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    shutil.copytree(OK, d)
    return d


def _report(out):
    return json.loads((out / "A7.report.json").read_text())


def test_ok(inputs, tmp_path):
    out = tmp_path / "out"
    rep = a7.run(inputs, out, "TinyNorm.py")
    data = (out / "TinyNorm.py").read_bytes()
    assert rep == _report(out)
    assert rep["status"] == "ok"
    assert rep["path"] == "TinyNorm.py"
    assert rep["size"] == len(data)
    assert rep["sha256"] == hashlib.sha256(data).hexdigest()
    assert rep["checks"] == {"syntax": "ok", "import": "ok", "undefined_names": "ok",
                             "cuda_build": "not applicable (the bundle has no CUDA section)",
                             "unreachable_definitions": "none", "unused_imports": "none",
                             "optional_imports_read": "none"}
    assert rep["notes"] == []
    text = data.decode()
    # Order: notice, module, example. The notice is comments at the very top.
    assert text.startswith("# This file contains code from a source tree licensed under the Apache License")
    assert text.index("limitations under the License.") < text.index("from __future__") < text.index(
        "class TinyNorm") < text.index("def invocation_example")
    # Nothing but the two files is left in the output folder (no temp files).
    assert sorted(p.name for p in out.iterdir()) == ["A7.report.json", "TinyNorm.py"]
    assert (out / "TinyNorm.py").stat().st_mode & 0o777 == 0o644
    # The bundle imports and its example runs.
    ns = {}
    exec(compile(text, "TinyNorm.py", "exec"), ns)
    assert ns["invocation_example"]().shape == (4, 16)


def test_deterministic(inputs, tmp_path):
    a7.run(inputs, tmp_path / "a", "TinyNorm.py")
    a7.run(inputs, tmp_path / "b", "TinyNorm.py")
    for n in ("TinyNorm.py", "A7.report.json"):
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    assert str(tmp_path) not in (tmp_path / "a" / "A7.report.json").read_text()


def test_syntax_error_refused(inputs, tmp_path):
    (inputs / "A5.module.py").write_text("import torch\n\ndef broken(:\n    pass\n")
    out = tmp_path / "out"
    with pytest.raises(StageError) as ei:
        a7.run(inputs, out, "TinyNorm.py")
    assert ei.value.input == "A5.module.py"
    assert "A5.module.py line 3" in ei.value.problem
    assert not (out / "TinyNorm.py").exists()
    rep = _report(out)
    assert rep["status"] == "failed" and rep["checks"]["syntax"].startswith("failed")
    assert rep["checks"]["import"] == "not run" and rep["checks"]["unreachable_definitions"] == "not run"
    assert sorted(p.name for p in out.iterdir()) == ["A7.report.json"]


def test_syntax_error_in_example_named(inputs, tmp_path):
    (inputs / "A6.example.py").write_text("def invocation_example(small=False)\n    pass\n")
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert ei.value.input == "A6.example.py"


def test_vllm_import_fails_clearly(inputs, tmp_path):
    mod = (inputs / "A5.module.py").read_text()
    (inputs / "A5.module.py").write_text(mod.replace("import torch\n", "import torch\nfrom vllm.logger import init_logger\n", 1))
    out = tmp_path / "out"
    # An earlier good bundle in the output folder must not survive a failed run.
    a7.run(OK, out, "TinyNorm.py")
    with pytest.raises(StageError) as ei:
        a7.run(inputs, out, "TinyNorm.py")
    msg = ei.value.message()
    assert msg.startswith("[A7 package] A5.module.py:")
    assert "No module named 'vllm" in msg and "must not import vllm" in msg
    assert not (out / "TinyNorm.py").exists()
    rep = _report(out)
    assert rep["status"] == "failed"
    assert rep["checks"]["import"].startswith("failed")
    assert "from vllm.logger import init_logger" in rep["details"]["import_error"]
    assert str(tmp_path) not in json.dumps(rep)
    assert sorted(p.name for p in out.iterdir()) == ["A7.report.json"]


def test_allow_import_failure(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + "\nimport vllm\n")
    out = tmp_path / "out"
    rep = a7.run(inputs, out, "TinyNorm.py", allow_import_failure=True)
    assert rep["status"] == "ok_with_failures"
    assert rep["checks"]["import"].startswith("failed")
    assert (out / "TinyNorm.py").exists()


def test_compiling_at_import_is_caught(inputs, tmp_path):
    mod = (inputs / "A5.module.py").read_text()
    mod += "\nfrom torch.utils.cpp_extension import load_inline\n_ext = load_inline(name='x', cpp_sources=[''])\n"
    (inputs / "A5.module.py").write_text(mod)
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert "load_inline" in ei.value.problem


def test_compiling_at_import_is_caught_even_when_the_refusal_is_swallowed(inputs, tmp_path):
    """A7 refuses load_inline at import; a bundle that catches the refusal still fails: the call is recorded."""
    mod = (inputs / "A5.module.py").read_text()
    mod += ("\nfrom torch.utils.cpp_extension import load_inline\ntry:\n    _ext = load_inline(name='x', cpp_sources=[''])\n"
            "except Exception:\n    _ext = None\n")
    (inputs / "A5.module.py").write_text(mod)
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert "importing the bundle called load_inline" in ei.value.problem
    assert not (tmp_path / "out" / "TinyNorm.py").exists()


def test_cuda_initialised_at_import_is_caught(inputs, tmp_path):
    """Importing a bundle must not initialise CUDA (the runtime has no GPU: the module marks torch's CUDA state
    initialised as torch.cuda.init() leaves it)."""
    mod = (inputs / "A5.module.py").read_text() + "\ntorch.cuda._initialized = True\n"
    (inputs / "A5.module.py").write_text(mod)
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert "importing the bundle initialised CUDA" in ei.value.problem
    assert not (tmp_path / "out" / "TinyNorm.py").exists()


def test_example_call_at_import_is_caught_statically(inputs, tmp_path):
    ex = (inputs / "A6.example.py").read_text() + "\nif True:\n    _r = invocation_example(small=True)\n"
    (inputs / "A6.example.py").write_text(ex)
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert ei.value.input == "A6.example.py"
    assert "calls invocation_example()" in ei.value.problem


def test_example_run_at_import_is_caught(inputs, tmp_path):
    ex = (inputs / "A6.example.py").read_text() + "\ninvocation_example()\nraise SystemExit(3)\n"
    (inputs / "A6.example.py").write_text(ex)
    with pytest.raises(StageError):
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")


def test_missing_symbol(inputs, tmp_path):
    g = json.loads((inputs / "A1.graph.json").read_text())
    g["symbol"] = "NotThere"
    (inputs / "A1.graph.json").write_text(json.dumps(g))
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "NotThere.py")
    assert "does not define the target symbol 'NotThere'" in ei.value.problem


def test_undefined_names_recorded(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text()
                                         + "\n\ndef uses_missing():\n    return missing_helper(1)\n")
    rep = a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert rep["checks"]["undefined_names"] == "found 1"
    assert rep["details"]["undefined_names"][0].endswith("undefined name 'missing_helper'")
    assert rep["status"] == "ok_with_failures"
    with pytest.raises(StageError):
        a7.run(inputs, tmp_path / "out2", "TinyNorm.py", strict_undefined_names=True)


def test_cuda_build_check(inputs, tmp_path):
    rep = a7.run(inputs, tmp_path / "o1", "TinyNorm.py", probe_cuda=True)
    assert rep["checks"]["cuda_build"] == "not applicable (the bundle has no CUDA section)"
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + (
        "\n\ndef _build_cuda_extension_if_needed():\n"
        "    raise RuntimeError('the CUDA build ran')\n"))
    rep = a7.run(inputs, tmp_path / "o2", "TinyNorm.py")
    assert rep["checks"]["cuda_build"] == "skipped (not requested)" and rep["status"] == "ok"
    rep = a7.run(inputs, tmp_path / "o3", "TinyNorm.py", probe_cuda=True)
    if torch.cuda.is_available():
        assert rep["checks"]["cuda_build"] == "failed" and "the CUDA build ran" in rep["details"]["cuda_build_error"]
        assert rep["status"] == "ok_with_failures"
    else:
        assert rep["checks"]["cuda_build"] == "skipped (no GPU)" and rep["status"] == "ok"


def test_import_timeout(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + "\nimport time\ntime.sleep(60)\n")
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py", import_timeout=3)
    assert "timed out" in ei.value.problem


@pytest.mark.parametrize("name", ["../x.py", "x", "a/b.py", "1x.py", ""])
def test_bad_bundle_name(inputs, tmp_path, name):
    with pytest.raises(StageError):
        a7.run(inputs, tmp_path / "out", name)


def test_missing_input(inputs, tmp_path):
    (inputs / "A6.example.py").unlink()
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert "A6.example.py" in ei.value.input


def test_cli_prints_nothing(inputs, tmp_path, capsys):
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "o"), "--bundle-name", "TinyNorm.py"]) == 0
    assert capsys.readouterr().out == ""


def test_undefined_names_only_in_annotations_are_not_failures(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text()
                                         + "\n\nconfig: VllmConfig | None = None\n\n\ndef f(x: 'GroupCoordinator') -> LogScope:\n"
                                           "    return x\n")
    rep = a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert rep["status"] == "ok"
    assert rep["checks"]["undefined_names"] == "ok (3 only in postponed annotations)"
    assert len(rep["details"]["undefined_names_in_annotations"]) == 3


def test_type_strings_of_cast_are_not_failures(inputs, tmp_path):
    """typing.cast never evaluates its type string (pyflakes checks it like an annotation); a real read of the
    same name elsewhere still counts."""
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text()
                                         + "\n\nfrom typing import cast\n\n\ndef f(q):\n"
                                           "    c = cast(\"HummingConfig\", q)\n    return c\n\n\n"
                                           "def g(q):\n    return HummingConfig(q)\n")
    rep = a7.run(inputs, tmp_path / "out", "TinyNorm.py")
    assert rep["checks"]["undefined_names"] == "found 1 (and 1 only in annotations)"
    assert rep["details"]["undefined_names"][0].endswith("undefined name 'HummingConfig'")


ORPHANS = """

# --- Inlined from vllm/model_executor/layers/orphans.py:L1-L9 (Apache-2.0) ---
import os


def _only_from_orphan():
    return 1


def orphan():
    return _only_from_orphan()
"""


def test_unreachable_definitions_reported(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + ORPHANS)
    out = tmp_path / "out"
    rep = a7.run(inputs, out, "TinyNorm.py")
    assert rep["status"] == "ok" and (out / "TinyNorm.py").exists()  # report mode (the default) only records
    assert rep["checks"]["unreachable_definitions"] == "found 2"
    assert rep["checks"]["unused_imports"] == "found 1"
    text = (out / "TinyNorm.py").read_text().split("\n")
    line = {n: text.index(f"def {n}():") + 1 for n in ("_only_from_orphan", "orphan")}
    where = "vllm/model_executor/layers/orphans.py:L1-L9 (Apache-2.0)"
    assert rep["details"]["unreachable_definitions"] == [
        f"L{line['_only_from_orphan']} _only_from_orphan (function; {where})",
        f"L{line['orphan']} orphan (function; {where})"]
    assert rep["details"]["unused_imports"] == [f"L{text.index('import os') + 1} os (import os)"]
    assert any("2 top-level definition(s) and 1 import(s) nothing reaches" in n for n in rep["notes"])


def test_unreachable_error_mode_fails(inputs, tmp_path):
    (inputs / "A5.module.py").write_text((inputs / "A5.module.py").read_text() + ORPHANS)
    out = tmp_path / "out"
    a7.run(OK, out, "TinyNorm.py")  # a good bundle from an earlier run must not survive the failed one
    with pytest.raises(StageError) as ei:
        a7.run(inputs, out, "TinyNorm.py", unreachable="error")
    assert ei.value.input == "A5.module.py"
    assert "2 top-level definition(s) and 1 import(s) that nothing reaches" in ei.value.problem
    assert "_only_from_orphan" in ei.value.problem and "L" in ei.value.problem
    assert "a closure defect: report it / A1 keeps definitions nothing uses" in ei.value.remedy
    rep = _report(out)
    assert rep["status"] == "failed" and rep["checks"]["unreachable_definitions"] == "found 2"
    assert sorted(p.name for p in out.iterdir()) == ["A7.report.json"]
    # The CLI: strict by default (--import-check required) fails (exit 2) and writes no bundle;
    # --import-check report writes it, and --unreachable report overrides the strict default for this check.
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "c1"),
                 "--bundle-name", "TinyNorm.py"]) == 2
    assert not (tmp_path / "c1" / "TinyNorm.py").exists()
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "c2"),
                 "--bundle-name", "TinyNorm.py", "--import-check", "report"]) == 0
    assert (tmp_path / "c2" / "TinyNorm.py").exists()
    assert main(["package", "--inputs", str(inputs), "--out", str(tmp_path / "c3"),
                 "--bundle-name", "TinyNorm.py", "--unreachable", "report"]) == 0


def test_unreachable_clean_bundle_passes_error_mode(inputs, tmp_path):
    rep = a7.run(inputs, tmp_path / "out", "TinyNorm.py", unreachable="error")
    assert rep["status"] == "ok" and rep["checks"]["unreachable_definitions"] == "none"


def test_unreachable_bad_mode(inputs, tmp_path):
    with pytest.raises(StageError) as ei:
        a7.run(inputs, tmp_path / "out", "TinyNorm.py", unreachable="fail")
    assert "--unreachable" in ei.value.input


def test_optional_import_read_by_reached_code_is_reported_not_fatal(inputs, tmp_path):
    text = (inputs / "A5.module.py").read_text().replace("import torch\n", "import torch\ntry:\n    from einops "
                                                         "import rearrange\nexcept ImportError:  # optional package\n"
                                                         "    pass\n", 1)
    text = text.replace("        var = x.float()", "        x = rearrange(x, 'a b -> a b')\n        var = x.float()")
    (inputs / "A5.module.py").write_text(text)
    out = tmp_path / "out"
    rep = a7.run(inputs, out, "TinyNorm.py", strict_undefined_names=True, unreachable="error")
    assert rep["status"] == "ok" and (out / "TinyNorm.py").exists()
    assert rep["checks"]["optional_imports_read"] == "found 1 (packages: einops)"
    line = (out / "TinyNorm.py").read_text().split("\n").index("    from einops import rearrange") + 1
    assert rep["details"]["optional_imports_read"] == [f"L{line} rearrange (from einops import rearrange): read by "
                                                       "TinyNorm"]
    assert rep["dependencies"]["optional_read_at_run_time"] == ["einops"]
    assert any("raises ModuleNotFoundError naming it" in n for n in rep["notes"])


def _handed_over(source: str) -> dict:
    """The import check of `source` handed a code object that also defines `Marker` (the source does not)."""
    code = compile(source + "\nMarker = 1\n", "B.py", "exec", dont_inherit=True, optimize=0)
    return check_import(source, "B.py", "Marker", False, 120, code=code)


EXAMPLE_ONLY = "def invocation_example():\n    return 1\n"


def test_import_check_runs_the_stage_bytecode(tmp_path):
    """The child runs the code object A7 compiled for its syntax check instead of compiling the bundle again."""
    assert _handed_over(EXAMPLE_ONLY)["symbol"] is True
    assert check_import(EXAMPLE_ONLY, "B.py", "Marker", False, 120)["symbol"] is False


def test_import_check_compiles_where_its_interpreter_differs(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "version", sys.version + " (another build)")
    res = _handed_over(EXAMPLE_ONLY)
    assert res["import"] == "ok" and res["symbol"] is False


def test_import_check_compiles_a_bundle_with_a_coding_cookie(tmp_path):
    """The child decodes such a file as its cookie says: the stage's code object (from the text) may differ."""
    res = _handed_over("# -*- coding: latin-1 -*-\n" + EXAMPLE_ONLY)
    assert res["import"] == "ok" and res["symbol"] is False
