"""`./pants package` of the repo's own targets (the pinned 0.26.0 sdist) through the real engine."""

import json
import re

import pytest

from pants_workspace import REPO, Workspace

pytestmark = pytest.mark.pants

STAGE_ARTIFACTS = [
    "A0.license.json", "A1.graph.json", "A2.inline.py", "A2.manifest.json", "A3.triton.py",
    "A3.manifest.json", "A3.data_reads.json", "A3.data.py", "A3.data.json", "A4.cuda.py", "A4.manifest.json", "A5.module.py", "A5.bindmap.json",
    "A6.example.py", "A6.model.json", "A7.report.json",
]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("package"))
    ws.write_targets((REPO / "targets/BUILD").read_text())
    run = ws.pants("package", "targets:rms_norm", "targets:silu_and_mul", "targets:qwen3_moe_layer")
    return ws, run


def test_package_writes_bundles_and_one_line_each(packaged):
    ws, run = packaged
    assert run.returncode == 0, run.stderr[-4000:]
    wrote = run.wrote()
    assert sorted(p for p, _, _ in wrote) == [
        "bundles_out/Qwen3MoeDecoderLayer.py", "bundles_out/RMSNorm.py", "bundles_out/SiluAndMul.py"]
    for path, size, sha in wrote:
        data = (ws.root / path).read_bytes()
        assert len(data) == size
        import hashlib
        assert hashlib.sha256(data).hexdigest() == sha
    # exactly one line per bundle, on stdout, nothing before or after it on the line; none in the log
    lines = [line for line in run.stdout.splitlines() if "WROTE" in line]
    assert len(lines) == 3 and all(re.fullmatch(r"WROTE bundles_out/\w+\.py size=\d+ sha256=[0-9a-f]{64}", l)
                                   for l in lines), run.stdout
    assert "WROTE" not in run.stderr
    # written by renaming complete files into place: no temporary file or directory is left behind
    leftovers = [p for p in (ws.root / "bundles_out").rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


@pytest.mark.parametrize("name", ["rms_norm", "silu_and_mul", "qwen3_moe_layer"])
def test_stage_artifacts_are_kept_with_status(packaged, name):
    ws, _ = packaged
    art = ws.root / "bundles_out" / "artifacts" / f"targets.{name}"
    assert sorted(p.name for p in art.iterdir()) == sorted(STAGE_ARTIFACTS)
    for p in art.glob("*.json"):
        status = json.loads(p.read_text())["status"]
        if p.name == "A7.report.json" and name == "qwen3_moe_layer":
            assert status in ("ok", "ok_with_failures")
        else:
            assert status == "ok", (p, status)


@pytest.mark.parametrize("name", ["rms_norm", "silu_and_mul"])
def test_small_bundles_pass_the_import_check(packaged, name):
    ws, _ = packaged
    report = json.loads((ws.root / "bundles_out" / "artifacts" / f"targets.{name}" / "A7.report.json").read_text())
    assert report["status"] == "ok"
    assert report["checks"]["import"] == "ok", report


def test_bundle_starts_with_the_license_and_has_provenance(packaged):
    ws, _ = packaged
    text = (ws.root / "bundles_out/RMSNorm.py").read_text()
    assert "Apache License" in text.splitlines()[0:40].__str__()
    assert "# --- Inlined from vllm/model_executor/layers/layernorm.py:L" in text
    assert "def invocation_example(" in text
    assert not re.search(r"^\s*(import|from)\s+vllm\b", text, re.M)


def test_artifacts_name_no_absolute_path_or_host(packaged):
    import socket

    ws, _ = packaged
    for p in (ws.root / "bundles_out").rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            host = socket.gethostname()
            for needle in (str(ws.root), "pants-sandbox", str(REPO), *([host] if len(host) >= 6 else [])):
                assert needle not in text, (p, needle)
