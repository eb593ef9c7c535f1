"""A1's memo: A1 takes the whole tree as input (any file may be reached), but its graph depends only on
what it read. Like Bazel's unused-inputs list, a run records what it read (the content of every file it
parsed, the tree's file list, the results of its tree-wide text scans) with its graph; the next run with
the same code and arguments recomputes only those scans and hashes only those files, and reuses the graph
when nothing differs. An edit to a file the closure never read then costs a scan of the tree, not a
closure walk. Used when VLLM_BUNDLER_A1_MEMO names a directory (the Pants rule gives A1 an append-only
cache); without it every run builds the graph."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ENV = "VLLM_BUNDLER_A1_MEMO"
KEEP = 64   # entries kept (one per code version, target and arguments), the least recently used dropped


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_digest() -> str:
    """The bundler_lib sources this process runs."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def key(args: dict) -> str:
    return _sha(json.dumps({"code": code_digest(), "python": sys.version, "args": args}, sort_keys=True,
                           default=str).encode())


def file_list_digest(index) -> str:
    return _sha("\n".join(f"{m}\t{r}" for m, r in sorted(index.files.items())).encode())


def record(index, scans: dict) -> dict:
    """What a finished run read: {files, reads: {path: sha256}, scans}."""
    return {"files": file_list_digest(index),
            "reads": {rel: _sha(index.text(rel).encode("utf-8")) for rel in sorted(index.reads)},
            "scans": scans}


def load(directory: str, k: str) -> dict | None:
    path = os.path.join(directory, f"{k}.json")
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        os.utime(path)
        return entry
    except (OSError, ValueError):
        return None


def still_valid(entry: dict, index, rescan) -> bool:
    """Nothing the recorded run read has changed. rescan(name) recomputes one recorded tree-wide scan."""
    rec = entry.get("record") or {}
    if rec.get("files") != file_list_digest(index):
        return False
    for rel, sha in rec.get("reads", {}).items():
        text = index.text(rel)
        if text is None or _sha(text.encode("utf-8")) != sha:
            return False
    return all(rescan(name) == value for name, value in rec.get("scans", {}).items())


def save(directory: str, k: str, entry: dict) -> None:
    """Atomically; a failure to write costs only the reuse."""
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f, sort_keys=True)
        os.replace(tmp, os.path.join(directory, f"{k}.json"))
        entries = sorted((e for e in os.scandir(directory) if e.name.endswith(".json")),
                         key=lambda e: e.stat().st_mtime, reverse=True)
        for e in entries[KEEP:]:
            os.unlink(e.path)
    except OSError as e:
        print(f"A1 memo: not saved ({e})", file=sys.stderr)
