"""A0 license: identification, the decision, the notice, determinism."""

import json
from pathlib import Path

import pytest

from bundler_lib import license as a0
from bundler_lib.__main__ import main
from bundler_lib.errors import StageError

TREES = Path(__file__).parent / "trees" / "stages" / "license"


def _run(name, tmp_path):
    rec = a0.run(TREES / name, tmp_path)
    assert json.loads((tmp_path / "A0.license.json").read_text()) == rec
    return rec


def _header_text(rec):
    return "#\n".join(rec["headers_to_prepend"])


def test_apache_ok(tmp_path):
    rec = _run("apache", tmp_path)
    assert rec["status"] == "ok"
    assert rec["repo_license"] == "Apache-2.0"
    assert rec["license_files"] == ["LICENSE"]
    assert rec["notice_files"] == []
    text = _header_text(rec)
    assert all(ln.startswith("#") for ln in text.splitlines())
    # The application notice of the LICENSE's appendix, verbatim (as comments).
    assert '# Licensed under the Apache License, Version 2.0 (the "License");' in text
    assert "#     http://www.apache.org/licenses/LICENSE-2.0" in text
    assert "# limitations under the License." in text
    assert "[yyyy]" not in text
    assert "no NOTICE file at the tree's root" in rec["notes"]
    compile(text, "h", "exec")


def test_apache_with_notice(tmp_path):
    rec = _run("apache_notice", tmp_path)
    assert rec["notice_files"] == ["NOTICE"]
    assert len(rec["headers_to_prepend"]) == 2
    notice = (TREES / "apache_notice" / "NOTICE").read_text()
    block = rec["headers_to_prepend"][1]
    for line in notice.splitlines():
        assert ("# " + line).rstrip() in block.splitlines()


def test_mit_ok_full_text(tmp_path):
    rec = _run("mit", tmp_path)
    assert rec["repo_license"] == "MIT"
    text = _header_text(rec)
    assert "# Copyright (c) 2023 Example Authors" in text
    assert "# The above copyright notice and this permission notice shall be included in all" in text


def test_bsd3_ok(tmp_path):
    rec = _run("bsd3", tmp_path)
    assert rec["repo_license"] == "BSD-3-Clause"
    assert rec["license_files"] == ["LICENSE.txt"]


def test_dual_ok(tmp_path):
    rec = _run("dual", tmp_path)
    assert rec["repo_license"] == "Apache-2.0 OR MIT"
    assert rec["license_files"] == ["LICENSE-APACHE", "LICENSE-MIT"]


@pytest.mark.parametrize("name,file,lic", [("gpl", "COPYING", "GPL-3.0"), ("agpl", "LICENSE", "AGPL-3.0")])
def test_copyleft_refused(tmp_path, name, file, lic):
    with pytest.raises(StageError) as ei:
        a0.run(TREES / name, tmp_path)
    msg = ei.value.message()
    assert msg.startswith("[A0 license] tree/" + file)
    assert lic in msg and "Remedy:" in msg
    assert not (tmp_path / "A0.license.json").exists()


def test_missing_refused(tmp_path):
    with pytest.raises(StageError) as ei:
        a0.run(TREES / "missing", tmp_path)
    assert "no LICENSE" in ei.value.problem
    assert ei.value.input == "tree/LICENSE"
    assert not (tmp_path / "A0.license.json").exists()


def test_unknown_refused(tmp_path):
    with pytest.raises(StageError) as ei:
        a0.run(TREES / "unknown", tmp_path)
    assert "could not be identified" in ei.value.problem


def test_not_a_directory(tmp_path):
    with pytest.raises(StageError):
        a0.run(tmp_path / "nope", tmp_path)


def test_spdx_first_line_wins():
    assert a0.identify("SPDX-License-Identifier: MIT\n\nsome text")[0] == "MIT"
    assert a0.identify("SPDX-License-Identifier: GPL-2.0-only\n")[0] == "GPL-2.0-only"
    assert not a0.is_permissive("GPL-2.0-only")
    assert a0.is_permissive("Apache-2.0 OR MIT")
    assert not a0.is_permissive("Apache-2.0 OR GPL-3.0")


def test_lgpl_identified():
    assert a0.identify("GNU LESSER GENERAL PUBLIC LICENSE\n Version 2.1, February 1999")[0] == "LGPL-2.1"


def test_deterministic_bytes(tmp_path):
    a0.run(TREES / "apache_notice", tmp_path / "x")
    a0.run(TREES / "apache_notice", tmp_path / "y")
    assert (tmp_path / "x" / "A0.license.json").read_bytes() == (tmp_path / "y" / "A0.license.json").read_bytes()
    assert str(TREES) not in (tmp_path / "x" / "A0.license.json").read_text()


def test_cli(tmp_path, capsys):
    assert main(["license", "--tree", str(TREES / "apache"), "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["A0", "--tree", str(TREES / "gpl"), "--out", str(tmp_path / "g")]) == 2
    assert "[A0 license]" in capsys.readouterr().err


def test_real_tree(vllm_0_26_0, tmp_path):
    rec = a0.run(vllm_0_26_0, tmp_path)
    assert rec["repo_license"] == "Apache-2.0"
    assert rec["license_files"] == ["LICENSE"]


def test_spdx_exceptions_and_expressions():
    assert a0.is_permissive("Apache-2.0 WITH LLVM-exception")
    assert a0.is_permissive("(MIT OR Apache-2.0)")
    assert not a0.is_permissive("GPL-2.0-only WITH Classpath-exception-2.0")
