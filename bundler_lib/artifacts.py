"""Deterministic artifact writing: sorted JSON, atomic writes, no timestamps or absolute paths; and the bundle
writer of `pants package` (publish_bundle)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are ordinary readable files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _same_files(directory: Path, files: dict[str, bytes]) -> bool:
    if not directory.is_dir():
        return False
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    return present == set(files) and all((directory / n).read_bytes() == b for n, b in files.items())


def replace_directory(directory: Path, files: dict[str, bytes]) -> None:
    """Make `directory` hold exactly `files`: written complete in a sibling, then renamed into place."""
    if _same_files(directory, files):
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    old = None
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
        try:
            os.replace(tmp, directory)
        except BaseException:
            if old is not None:
                os.replace(old / directory.name, directory)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` so that a reader sees the old bytes or the new ones, never part of them."""
    if not (path.is_file() and path.read_bytes() == data):  # unchanged bytes are not rewritten
        write_atomic(path, data)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PublishError(Exception):
    """A bundle that cannot be put into place; nothing was replaced. One line, naming the path and the remedy."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in sorted(files.items()):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(p, 0o644)
    for d in sorted({(root / n).parent for n in files} | {root}, key=lambda d: -len(d.parts)):
        d.chmod(0o755)
        _fsync_dir(d)


def _link(link: Path, target: str) -> None:
    """Make `link` a symlink to `target`, atomically (a new link renamed over the old one)."""
    try:
        if os.readlink(link) == target:
            return
    except OSError:
        pass
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".{link.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    os.symlink(target, tmp)
    try:
        if link.is_dir() and not link.is_symlink():  # an artifacts directory of the earlier layout
            old = Path(tempfile.mkdtemp(prefix=f".{link.name}.old-", dir=link.parent))
            os.replace(link, old / link.name)
            os.replace(tmp, link)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, link)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _blocked(dist: Path, rel: str, want: str) -> str | None:
    """Why `dist/rel` cannot become our symlink (`want`: what the earlier layout left there), else None."""
    path = dist / rel
    for parent in list(reversed(path.relative_to(dist).parents))[1:]:
        p = dist / parent
        if os.path.lexists(p) and not p.is_dir():
            return f"{dist.name}/{parent.as_posix()} is a file, where a directory must be"
    if not os.path.lexists(path) or path.is_symlink():
        return None
    if want == "file" and path.is_dir():
        return f"{dist.name}/{rel} is a directory, where the bundle goes"
    if want == "dir" and not path.is_dir():
        return f"{dist.name}/{rel} is a file, where the artifacts directory goes"
    return None


def publish_bundle(dist: Path, store: str, bundle_path: str, artifacts_dir: str, bundle: bytes,
                   artifacts: dict[str, bytes], expected_sha256: str, legacy_artifacts_dir: str | None = None,
                   extra_files: dict[str, bytes] | None = None) -> bool:
    """Put a built bundle and its stage artifacts into `dist` together, or not at all; True when anything changed.

    Layout (all relative symlinks, so `dist` can move):
        <store>/<content hash>/<bundle name>, <store>/<content hash>/artifacts/A*.json   one complete build
        <store>/current -> <content hash>                                            the one switch
        <bundle_path>   -> <store>/current/<bundle name>
        <artifacts_dir> -> <store>/current/artifacts
        <extra path>    -> <store>/current/<its name>                                 each of `extra_files`
    A build is written complete in a temporary directory beside its place, fsynced, its bundle read back and
    checked against the sha256 that A7.report.json and the build name, then renamed into place; `current` is
    then switched by renaming a new symlink over it (atomic), so the bundle and its artifacts change in one
    step. Paths that cannot take the links are refused before anything is written. `legacy_artifacts_dir`: where
    the earlier layout kept this target's artifacts (`artifacts/<target name>/`), removed once the build is in.
    `extra_files`: more files of the build (path relative to `dist` -> bytes, e.g. the KernelBench problem),
    kept beside the bundle in the build directory under their file names."""
    dist = Path(dist)
    bundle_name = posixpath.basename(bundle_path)
    extras = {rel: (posixpath.basename(rel), data) for rel, data in (extra_files or {}).items()}
    for rel, want in ((bundle_path, "file"), (artifacts_dir, "dir"), *((rel, "file") for rel in extras)):
        why = _blocked(dist, rel, want)
        if why:
            raise PublishError(f"{why}. Remedy: move it away and package again; nothing was replaced")
    _check_sha(bundle, artifacts, expected_sha256, bundle_path)
    build = {bundle_name: bundle, **{f"artifacts/{n}": d for n, d in artifacts.items()}, **dict(extras.values())}
    h = hashlib.sha256()
    for name, data in sorted(build.items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    version = h.hexdigest()[:20]
    store_dir = dist / store
    store_dir.mkdir(parents=True, exist_ok=True)
    current = store_dir / "current"
    changed = False
    if not (os.path.islink(current) and os.readlink(current) == version and (store_dir / version).is_dir()):
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=store_dir))
        try:
            _write_tree(tmp, build)
            # just before the swap: the bytes on disk are the ones A7 reported
            _check_sha((tmp / bundle_name).read_bytes(), {"A7.report.json": (tmp / "artifacts" / "A7.report.json")
                                                          .read_bytes()}, expected_sha256, bundle_path)
            if os.path.lexists(store_dir / version):
                shutil.rmtree(store_dir / version)
            os.replace(tmp, store_dir / version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _link(current, version)
        _fsync_dir(store_dir)
        changed = True
    for rel, inside in ((bundle_path, bundle_name), (artifacts_dir, "artifacts"),
                        *((rel, name) for rel, (name, _) in extras.items())):
        link = dist / rel
        target = os.path.relpath(current / inside, link.parent)
        if os.readlink(link) != target if link.is_symlink() else True:
            _link(link, target)
            changed = True
    legacy = dist / legacy_artifacts_dir if legacy_artifacts_dir else None
    if legacy is not None and legacy != dist / artifacts_dir and legacy.is_dir() and not legacy.is_symlink() and all(
            p.is_file() and p.name.startswith("A") for p in legacy.iterdir()):
        shutil.rmtree(legacy, ignore_errors=True)
        changed = True
    for entry in store_dir.iterdir():  # earlier builds, and what an interrupted write left
        if entry.name not in ("current", version):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
    return changed


def _check_sha(bundle: bytes, artifacts: dict[str, bytes], expected: str, bundle_path: str) -> None:
    try:
        reported = json.loads(artifacts["A7.report.json"])["sha256"]
    except (KeyError, ValueError, TypeError):
        raise PublishError(f"the build of {bundle_path} has no A7.report.json naming its sha256. Remedy: rebuild "
                           "(`./pants package` after removing the cached result); nothing was replaced") from None
    actual = sha256_bytes(bundle)
    if not (actual == reported == expected):
        raise PublishError(
            f"the bundle for {bundle_path} has sha256 {actual}, but A7.report.json names {reported}: the stage "
            "result was altered after A7 wrote it (a poisoned or corrupt cache entry). Remedy: rebuild without the "
            "remote cache and report the cache entry; nothing was replaced")
