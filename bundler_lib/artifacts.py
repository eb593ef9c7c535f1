"""Deterministic artifact writing: sorted JSON, atomic writes, no timestamps or absolute paths."""

import hashlib
import json
import os
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
