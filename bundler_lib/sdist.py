"""Fetch a vLLM sdist through the package index pip is configured with, verify it, extract it.

The index URL comes from pip's own configuration (PIP_INDEX_URL, pip.conf), then pip's default;
no registry host is named here. The sha256 pin is checked before anything is extracted.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from bundler_lib.errors import StageError

STAGE = "sdist"
# What the stages read from an sdist; the rest (tests, docs, benchmarks) is left out.
EXTRACT_TOP = ("vllm", "csrc", "cmake", "CMakeLists.txt", "LICENSE", "NOTICE")


def index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        try:
            out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                                 text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key.strip().endswith(".index-url") and not key.strip().endswith("extra-index-url"):
                url = value.strip().strip("'\"")
    if not url:
        from pip._internal.models.index import PyPI  # pip's default index, without naming it here

        url = PyPI.simple_url
    return url.rstrip("/")


def _sdist_url(version: str, sha256: str) -> str:
    page = f"{index_url()}/vllm/"
    req = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            files = json.load(resp)["files"]
    except Exception as e:  # noqa: BLE001 - any failure here is a fetch failure
        raise StageError(STAGE, f"vllm=={version}", f"cannot read the package index page {page} ({e})",
                         "check the network and pip's index configuration (PIP_INDEX_URL)") from None
    name = f"vllm-{version}.tar.gz"
    for f in files:
        if f["filename"] == name:
            listed = f.get("hashes", {}).get("sha256")
            if listed and listed != sha256:
                raise StageError(STAGE, f"vllm=={version}",
                                 f"sha256 pin {sha256} does not match the index's {listed}",
                                 "fix the sha256 of the vllm_sdist target (or the version)")
            return f["url"]
    raise StageError(STAGE, f"vllm=={version}", f"the index has no {name}",
                     "check the version of the vllm_sdist target")


def fetch(version: str, sha256: str, out: Path) -> Path:
    """Download vllm-<version>.tar.gz into `out`, verified against `sha256`."""
    url = _sdist_url(version, sha256)
    dest = Path(out) / f"vllm-{version}.tar.gz"
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=out, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=600) as resp:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != sha256:
            raise StageError(STAGE, f"vllm=={version}", f"downloaded sdist has sha256 {h.hexdigest()}, pin is {sha256}",
                             "fix the sha256 of the vllm_sdist target")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def extract(archive: Path, out: Path) -> None:
    """Extract the tree's vllm/, csrc/, cmake/, CMakeLists.txt, LICENSE (and NOTICE) into `out`."""
    out = Path(out)
    with tarfile.open(archive) as tar:
        members = []
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if len(parts) < 2 or parts[1] not in EXTRACT_TOP or not (m.isfile() or m.isdir()):
                continue
            m.name = str(Path(*parts[1:]))
            members.append(m)
        if not members:
            raise StageError(STAGE, str(archive), "holds no vllm/ tree", "point at a vLLM sdist")
        tar.extractall(out, members=members, filter="data")


def ensure_tree(version: str, sha256: str, cache: Path) -> Path:
    """Fetch and extract once into `cache`; later calls return the cached tree (for tests and scripts)."""
    tree = Path(cache) / f"vllm-{version}-{sha256[:12]}"
    if (tree / ".complete").exists():
        return tree
    Path(cache).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = fetch(version, sha256, Path(tmp))
        staging = Path(tmp) / "tree"
        extract(archive, staging)
        (staging / ".complete").touch()
        if tree.exists():
            shutil.rmtree(tree)
        os.replace(staging, tree)
    return tree


def main(argv=None) -> int:
    """`python -m bundler_lib.sdist fetch|extract ...`: kept apart from the stage CLI so that the
    (cached) download depends on this file only, not on every stage's code."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m bundler_lib.sdist")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download vllm-<version>.tar.gz through pip's index, verify sha256")
    f.add_argument("--version", required=True)
    f.add_argument("--sha256", required=True)
    x = sub.add_parser("extract", help="extract the parts of an sdist the stages read")
    x.add_argument("--archive", type=Path, required=True)
    c = sub.add_parser("checkout", help="fetch, verify and extract into a directory (a local tree to edit)")
    c.add_argument("--version", required=True)
    c.add_argument("--sha256", required=True)
    for sp in (f, x, c):
        sp.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            args.out.mkdir(parents=True, exist_ok=True)
            fetch(args.version, args.sha256, args.out)
        elif args.cmd == "extract":
            args.out.mkdir(parents=True, exist_ok=True)
            extract(args.archive, args.out)
        else:
            if args.out.exists() and any(args.out.iterdir()):
                raise StageError(STAGE, str(args.out), "exists and is not empty", "remove it or pick another --out")
            with tempfile.TemporaryDirectory() as tmp:
                extract(fetch(args.version, args.sha256, Path(tmp)), args.out)
            print(f"vllm {args.version} extracted to {args.out}")
    except StageError as e:
        print(f"error: {e.message()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
