"""The writer `pants package` uses for bundles_out/ (rules/write_out.py): complete files and directories
renamed into place, unchanged bytes left alone, a failed write leaving the old output as it was."""

import os
import stat

import pytest

from bundler_lib import artifacts
from bundler_lib.artifacts import replace_directory, replace_file


def _tree(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def test_replace_directory_holds_exactly_the_new_files(tmp_path):
    d = tmp_path / "artifacts" / "t"
    replace_directory(d, {"A1.graph.json": b"1", "sub/x.txt": b"x", "stale.json": b"old"})
    replace_directory(d, {"A1.graph.json": b"2", "sub/x.txt": b"x"})
    assert _tree(d) == {"A1.graph.json": b"2", "sub/x.txt": b"x"}
    assert sorted(p.name for p in d.parent.iterdir()) == ["t"]  # no temporary sibling left
    assert stat.S_IMODE(d.stat().st_mode) == 0o755


def test_unchanged_output_is_not_rewritten(tmp_path):
    d, f = tmp_path / "a", tmp_path / "B.py"
    replace_directory(d, {"x": b"1"})
    replace_file(f, b"bundle")
    before = (d.stat().st_ino, (d / "x").stat().st_ino, f.stat().st_ino)
    replace_directory(d, {"x": b"1"})
    replace_file(f, b"bundle")
    assert (d.stat().st_ino, (d / "x").stat().st_ino, f.stat().st_ino) == before
    replace_file(f, b"bundle 2")
    assert f.read_bytes() == b"bundle 2" and f.stat().st_ino != before[2]
    assert stat.S_IMODE(f.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_output(tmp_path, monkeypatch):
    d, f = tmp_path / "a", tmp_path / "B.py"
    replace_directory(d, {"x": b"old"})
    replace_file(f, b"old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(artifacts.os, "replace", boom)
    with pytest.raises(OSError):
        replace_directory(d, {"x": b"new", "y": b"new"})
    with pytest.raises(OSError):
        replace_file(f, b"new")
    assert _tree(d) == {"x": b"old"} and f.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["B.py", "a"]


def test_a_failed_rename_into_place_puts_the_old_directory_back(tmp_path, monkeypatch):
    d = tmp_path / "a"
    replace_directory(d, {"x": b"old"})
    real = os.replace

    def second_fails(src, dst):
        if ".tmp-" in str(src):
            raise OSError("rename failed")
        return real(src, dst)
    monkeypatch.setattr(artifacts.os, "replace", second_fails)
    with pytest.raises(OSError):
        replace_directory(d, {"x": b"new"})
    assert _tree(d) == {"x": b"old"} and sorted(os.listdir(tmp_path)) == ["a"]
