"""The team remote cache (cache/, issue #5), proved with Pants' own counters against a real REAPI server.

One BuildGrid + Redis server (cache/server.sh) on 127.0.0.1, free ports, its data in a temp directory:
  1. workspace A (empty local store, writes on) builds `targets:qwen3_moe_layer`: every stage process
     runs and is written to the server;
  2. workspace B, at another absolute path, empty local store, reads only: every stage process is served
     by the remote cache, and the bundle has the same sha256 as A's;
  3. the server is restarted (stop, start): a third empty store still gets every stage from it;
  4. an unreachable server: the build still succeeds from local work, with one clear warning.

The bundle target is the repo's own `targets:qwen3_moe_layer` (targets/BUILD), with its tree taken from
the local copy of the pinned 0.26.0 sdist (the `vllm_0_26_0` fixture, sha256-verified) instead of the
fetch process, so that the test's traffic goes to 127.0.0.1 only and the counted processes are exactly
the stage processes A0..A7. The stages' cache keys are the same either way (same tree digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from pants_workspace import REPO, PantsRun, Workspace

pytestmark = pytest.mark.pants

STAGES = ["A0", "A1", "A2", "A3", "A4", "A5", "A6", "A7"]
BUNDLE = "bundles_out/Qwen3MoeDecoderLayer.py"
TARGET = "targets:qwen3_moe_layer"
SERVER = REPO / "cache" / "server.sh"
PANTS_TIMEOUT = 420  # one build; the whole module stays well under CI's budget on 2 cores
LAUNCHER_WARNING = re.compile(r"^pants launcher: WARNING: remote cache \S+ is unreachable", re.M)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_file() -> str:
    """targets/BUILD with every bundle reading the local tree (third_party/vllm) instead of a fetched sdist."""
    text = (REPO / "targets/BUILD").read_text()
    text, n = re.subn(r'vllm=":vllm_0_\d+_\d+"', 'vllm=":vllm_local"', text)
    assert n and 'name="vllm_local"' in text and 'name="qwen3_moe_layer"' in text
    return text


class Server:
    """cache/server.sh with its own ports and data directory (the BuildGrid venv is shared)."""

    def __init__(self, data: Path):
        self.port, self.redis_port = _free_port(), _free_port()
        self.env = {**os.environ, "BUNDLER_CACHE_DATA": str(data), "BUNDLER_CACHE_HOST": "127.0.0.1",
                    "BUNDLER_CACHE_PORT": str(self.port), "BUNDLER_CACHE_REDIS_PORT": str(self.redis_port)}
        self.address = f"grpc://127.0.0.1:{self.port}"

    def __call__(self, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(SERVER), command], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"cache/server.sh {command} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc


@contextlib.contextmanager
def remote_cache(address: str | None, write: bool = True):
    """The one setting that turns the remote cache on for a workspace (read by ./pants)."""
    saved = {k: os.environ.get(k) for k in ("VLLM_BUNDLER_REMOTE_CACHE", "VLLM_BUNDLER_REMOTE_CACHE_WRITE")}
    os.environ.pop("VLLM_BUNDLER_REMOTE_CACHE_WRITE", None)
    if address is None:
        os.environ.pop("VLLM_BUNDLER_REMOTE_CACHE", None)
    else:
        os.environ["VLLM_BUNDLER_REMOTE_CACHE"] = address
        if not write:
            os.environ["VLLM_BUNDLER_REMOTE_CACHE_WRITE"] = "0"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _workspace(root: Path, tree: Path) -> Workspace:
    ws = Workspace(root)
    if not (ws.root / "cache").exists():  # tests/pants_workspace.py does not copy cache/ (yet)
        shutil.copytree(REPO / "cache", ws.root / "cache", ignore=shutil.ignore_patterns("__pycache__"))
    ws.add_tree("third_party/vllm", tree)
    ws.write("targets/BUILD", _build_file())
    return ws


def _build(ws: Workspace, store: Path, address: str | None, write: bool) -> PantsRun:
    with remote_cache(address, write):
        return ws.pants(f"--local-store-dir={store}", "package", TARGET, timeout=PANTS_TIMEOUT)


def _sha(ws: Workspace) -> str:
    return hashlib.sha256((ws.root / BUNDLE).read_bytes()).hexdigest()


def _show(run: PantsRun) -> str:
    counters = {k: v for k, v in run.counters.items() if k.startswith(("remote_cache", "local_"))}
    return f"exit {run.returncode}, counters {counters}\n{run.stderr[-4000:]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("cache-data"))
    try:
        srv("start", timeout=600)  # the first run on a fresh machine installs BuildGrid and redis-server
        yield srv
    finally:
        subprocess.run([str(SERVER), "stop"], env=srv.env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def builds(tmp_path_factory, server, vllm_0_26_0):
    base = tmp_path_factory.mktemp("remote")
    # Both clones are copied before either builds: same sources, different absolute paths.
    ws_a = _workspace(base / "clone-a", vllm_0_26_0)
    ws_b = _workspace(base / "elsewhere" / "clone-b", vllm_0_26_0)
    a = _build(ws_a, base / "store-a", server.address, write=True)
    b = _build(ws_b, base / "store-b", server.address, write=False) if a.returncode == 0 else None
    return {"base": base, "ws_a": ws_a, "ws_b": ws_b, "a": a, "b": b}


def test_writer_runs_every_stage_and_writes_it(builds):
    a = builds["a"]
    assert a.returncode == 0, _show(a)
    assert LAUNCHER_WARNING.search(a.stderr) is None, _show(a)
    # An empty local store: each stage process ran here, and nothing but the stages ran.
    assert a.executed_stages == STAGES, _show(a)
    assert a.counters["remote_cache_requests"] == len(STAGES), _show(a)
    assert a.counters["remote_cache_requests_cached"] == 0, _show(a)
    assert a.counters["remote_cache_write_attempts"] == len(STAGES), _show(a)
    assert a.counters["remote_cache_write_successes"] == len(STAGES), _show(a)
    assert a.counters["remote_cache_write_errors"] == 0, _show(a)


def test_fresh_clone_gets_every_stage_from_the_remote_cache(builds):
    a, b = builds["a"], builds["b"]
    assert a.returncode == 0, _show(a)
    assert b.returncode == 0, _show(b)
    assert builds["ws_a"].root.resolve() != builds["ws_b"].root.resolve()
    assert b.counters["local_cache_requests_cached"] == 0, _show(b)  # the local store was empty
    assert b.counters["remote_cache_requests"] == len(STAGES), _show(b)
    assert b.counters["remote_cache_requests_cached"] == len(STAGES), _show(b)
    assert b.counters["remote_cache_speculation_remote_completed_first"] == len(STAGES), _show(b)
    assert b.counters["remote_cache_speculation_local_completed_first"] == 0, _show(b)
    assert b.counters["remote_cache_read_errors"] == 0, _show(b)
    assert b.counters["remote_cache_write_attempts"] == 0, _show(b)  # reads only


def test_bundle_is_byte_identical_local_vs_remote_and_across_clones(builds):
    a, b = builds["a"], builds["b"]
    assert a.returncode == 0 and b is not None and b.returncode == 0
    (path_a, size_a, sha_a), = a.wrote()
    (path_b, size_b, sha_b), = b.wrote()
    assert path_a == path_b == BUNDLE
    assert (size_a, sha_a) == (size_b, sha_b)
    assert _sha(builds["ws_a"]) == _sha(builds["ws_b"]) == sha_a
    assert (builds["ws_a"].root / BUNDLE).read_bytes() == (builds["ws_b"].root / BUNDLE).read_bytes()


def test_restarted_server_still_serves_earlier_builds(builds, server):
    assert builds["a"].returncode == 0, _show(builds["a"])
    server("stop")
    assert subprocess.run([str(SERVER), "status"], env=server.env, capture_output=True).returncode == 3
    server("start", timeout=300)
    run = _build(builds["ws_b"], builds["base"] / "store-c", server.address, write=False)
    assert run.returncode == 0, _show(run)
    assert run.counters["remote_cache_requests_cached"] == len(STAGES), _show(run)
    (_, _, sha), = run.wrote()
    assert sha == _sha(builds["ws_a"])


def test_unreachable_server_builds_locally_with_one_warning(builds):
    assert builds["a"].returncode == 0, _show(builds["a"])
    ws = builds["ws_a"]
    before = _sha(ws)
    # Real local work: an edit outside the closure makes A1 run again (see test_pants_caching.py).
    path = ws.root / "third_party/vllm/vllm/entrypoints/cli/main.py"
    path.write_text(path.read_text() + f"\n# edit {uuid.uuid4().hex}\n")
    dead = f"grpc://127.0.0.1:{_free_port()}"  # nothing listens there
    run = _build(ws, builds["base"] / "store-a", dead, write=True)
    assert run.returncode == 0, _show(run)
    assert run.executed_stages == ["A1"], _show(run)
    assert len(LAUNCHER_WARNING.findall(run.stderr)) == 1, _show(run)
    assert dead in run.stderr
    assert "Failed to read from remote cache" not in run.stderr, _show(run)
    assert "Failed to write to remote cache" not in run.stderr, _show(run)
    assert run.counters.get("remote_cache_requests", 0) == 0, _show(run)
    assert _sha(ws) == before
