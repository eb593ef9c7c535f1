"""Bad inputs through the real Pants engine: one clear error naming the stage, the input and the
remedy, a non-zero exit, and no bundle written."""

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants


BUILD = """
vllm_source_tree(name="tiny", root="third_party/tiny")
vllm_source_tree(name="gpl", root="third_party/gpl")
vllm_sdist(name="bad_sha", version="0.26.0", sha256="%s")
monolithic_bundle(name="unknown", symbol="NoSuchSymbol", vllm=":tiny")
monolithic_bundle(name="ambiguous", symbol="Dup", vllm=":tiny")
monolithic_bundle(name="gpl_tree", symbol="Foo", vllm=":gpl", output_path="gpl/Foo.py")  # not Foo.py: no_model writes it
monolithic_bundle(name="no_model", symbol="Foo", vllm=":tiny", model="NoOrg/NoModel")
monolithic_bundle(name="sha", symbol="RMSNorm", vllm=":bad_sha")
""" % ("0" * 64)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, vllm_0_26_0):
    ws = Workspace(tmp_path_factory.mktemp("bad_input"))
    license_text = (vllm_0_26_0 / "LICENSE").read_text()
    for tree, lic in (("tiny", license_text), ("gpl", "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n")):
        ws.write(f"third_party/{tree}/LICENSE", lic)
        ws.write(f"third_party/{tree}/vllm/__init__.py", "")
        ws.write(f"third_party/{tree}/vllm/a.py", "import torch\n\n\nclass Foo:\n    def f(self):\n        return torch.zeros(1)\n")
        ws.write(f"third_party/{tree}/vllm/b.py", "class Dup:\n    pass\n")
        ws.write(f"third_party/{tree}/vllm/c.py", "class Dup:\n    pass\n")
    ws.write("targets/BUILD", BUILD)
    return ws


@pytest.mark.parametrize(
    "target, expected",
    [
        ("unknown", ["A1", "NoSuchSymbol", "Remedy"]),
        ("ambiguous", ["A1", "Dup", "vllm/b.py", "vllm/c.py", "symbol_file_hint"]),
        ("gpl_tree", ["A0", "LICENSE", "Remedy"]),
        ("no_model", ["A6", "NoOrg/NoModel", "models/NoOrg--NoModel/config.json", "Remedy"]),
        ("sha", ["sha256", "0" * 64, "Remedy"]),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(ws, target, expected):
    run = ws.pants("package", f"targets:{target}")
    assert run.returncode != 0, run.stderr[-3000:]
    for text in expected:
        assert text in run.stderr, f"{text!r} missing from:\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert not list((ws.root / "bundles_out").glob("**/*.py")) if (ws.root / "bundles_out").exists() else True
    assert run.wrote() == []
