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


# publish_bundle: the bundle and its artifacts switched in together, the bundle checked against A7.report.json

import hashlib
import json

from bundler_lib.artifacts import PublishError, publish_bundle


def _build(text):
    bundle = text.encode()
    sha = hashlib.sha256(bundle).hexdigest()
    return bundle, {"A1.graph.json": text.encode(), "A7.report.json": json.dumps({"sha256": sha}).encode()}, sha


def _publish(dist, bundle, arts, sha):
    return publish_bundle(dist, ".bundles/t.x", "B.py", "artifacts/t", bundle, arts, sha)


def _seen(dist):
    return (dist / "B.py").read_bytes(), _tree(dist / "artifacts" / "t")


def test_publish_switches_bundle_and_artifacts_together(tmp_path):
    dist = tmp_path / "bundles_out"
    b1, a1, s1 = _build("one")
    assert _publish(dist, b1, a1, s1)
    assert _seen(dist) == (b1, a1)
    # relative symlinks through one switch, <store>/current
    assert os.readlink(dist / "B.py") == ".bundles/t.x/current/B.py"
    assert os.readlink(dist / "artifacts" / "t") == "../.bundles/t.x/current/artifacts"
    before = os.readlink(dist / ".bundles/t.x/current")
    b2, a2, s2 = _build("two")
    assert _publish(dist, b2, a2, s2)
    assert _seen(dist) == (b2, a2)
    assert os.readlink(dist / ".bundles/t.x/current") != before
    assert sorted(os.listdir(dist / ".bundles/t.x")) == sorted(["current", os.readlink(dist / ".bundles/t.x/current")])
    assert not _publish(dist, b2, a2, s2)  # unchanged: nothing rewritten


def test_publish_refuses_a_bundle_that_differs_from_its_report(tmp_path):
    """The cache-poisoning defence: a bundle whose bytes are not the ones A7.report.json names replaces nothing."""
    dist = tmp_path / "bundles_out"
    b1, a1, s1 = _build("one")
    _publish(dist, b1, a1, s1)
    b2, a2, s2 = _build("two")
    poisoned = b2 + b"\nimport os; os.system('payload')\n"
    with pytest.raises(PublishError, match="A7.report.json names " + s2):
        _publish(dist, poisoned, a2, hashlib.sha256(poisoned).hexdigest())
    assert _seen(dist) == (b1, a1)
    assert len(os.listdir(dist / ".bundles/t.x")) == 2  # current and the one build: no partial build left


def test_publish_to_a_blocked_path_leaves_the_previous_build(tmp_path):
    dist = tmp_path / "bundles_out"
    b1, a1, s1 = _build("one")
    _publish(dist, b1, a1, s1)
    (dist / "B.py").unlink()
    (dist / "B.py").mkdir()
    b2, a2, s2 = _build("two")
    with pytest.raises(PublishError, match=r"bundles_out/B.py is a directory.*Remedy"):
        _publish(dist, b2, a2, s2)
    assert _tree(dist / "artifacts" / "t") == a1


def test_publish_replaces_the_earlier_layout(tmp_path):
    """bundles_out/B.py a plain file and artifacts/t a plain directory (written before the switch existed)."""
    dist = tmp_path / "bundles_out"
    replace_file(dist / "B.py", b"old")
    replace_directory(dist / "artifacts" / "t", {"A7.report.json": b"{}"})
    replace_directory(dist / "artifacts" / "name", {"A7.report.json": b"{}"})  # artifacts/<target name>/
    b1, a1, s1 = _build("one")
    publish_bundle(dist, ".bundles/t.x", "B.py", "artifacts/t", b1, a1, s1, legacy_artifacts_dir="artifacts/name")
    assert _seen(dist) == (b1, a1)
    assert sorted(os.listdir(dist / "artifacts")) == ["t"]
