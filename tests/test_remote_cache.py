"""The team remote cache (cache/, issue #5), proved with Pants' own counters against a real REAPI server.

One BuildGrid + Redis server (cache/server.sh) on 127.0.0.1, free ports, its data in a temp directory:
  1. workspace A (empty local store, writes on) builds `targets:qwen3_moe_layer`: every stage process
     runs and is written to the server;
  2. workspace B, at another absolute path, empty local store, reads only: every stage process is served
     by the remote cache, and the bundle has the same sha256 as A's;
  (between 1 and 2 the server is stopped and started again: B is served from what it had stored);
  3. an unreachable server: the build still succeeds from local work, with one clear warning.

The bundle target is the repo's own `targets:qwen3_moe_layer` (targets/BUILD), with its tree taken from
the local copy of the pinned 0.26.0 sdist (the `vllm_0_26_0` fixture, sha256-verified) instead of the
fetch process, so that the test's traffic goes to 127.0.0.1 only and the counted processes are exactly
the stage processes A0..A7. The stages' cache keys are the same either way (same tree digest).
"""

from __future__ import annotations

import hashlib
import json
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

# A3 is two processes (the data-file scan, then the collection): nine stage processes in all
STAGES = ["A0", "A1", "A2", "A3", "A3", "A4", "A5", "A6", "A7"]
BUNDLE = "bundles_out/Qwen3MoeDecoderLayer.py"
TARGET = "targets:qwen3_moe_layer"
SERVER = REPO / "cache" / "server.sh"
PANTS_TIMEOUT = 420  # one build; the whole module stays well under CI's budget on 2 cores
COUNTER = re.compile(r"^\s+(\w+): (\d+)$", re.M)  # Pants' --stats-log counters
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


def _pants(ws: Workspace, settings: dict[str, str], *args: str) -> PantsRun:
    """Like Workspace.pants, with the remote cache settings given explicitly (none inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "VLLM_BUNDLER_REMOTE_CACHE"))}
    env.update(settings)
    proc = subprocess.run(["./pants", "--no-pantsd", "--stats-log", *args], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=PANTS_TIMEOUT)
    counters = {k: int(v) for k, v in COUNTER.findall(proc.stderr)}
    return PantsRun(proc.returncode, proc.stdout, proc.stderr, counters)


def _workspace(root: Path, tree: Path) -> Workspace:
    ws = Workspace(root)
    if not (ws.root / "cache").exists():  # tests/pants_workspace.py does not copy cache/ (yet)
        shutil.copytree(REPO / "cache", ws.root / "cache", ignore=shutil.ignore_patterns("__pycache__"))
    ws.add_tree("third_party/vllm", tree)
    ws.write("targets/BUILD", _build_file())
    return ws


def _build(ws: Workspace, store: Path, address: str, write: bool) -> PantsRun:
    # The one setting that turns the remote cache on for a workspace (read by ./pants; cache/README.md).
    settings = {"VLLM_BUNDLER_REMOTE_CACHE": address}
    if not write:
        settings["VLLM_BUNDLER_REMOTE_CACHE_WRITE"] = "0"
    return _pants(ws, settings, f"--local-store-dir={store}", "package", TARGET)


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
    out = {"base": base, "ws_a": ws_a, "ws_b": ws_b, "b": None}
    out["a"] = _build(ws_a, base / "store-a", server.address, write=True)
    if out["a"].returncode == 0:
        # The server is restarted between the writer and the reader: B's hits come from stored data.
        out["verify_before"] = json.loads(server("verify").stdout)
        server("stop")
        out["status_stopped"] = subprocess.run([str(SERVER), "status"], env=server.env, capture_output=True).returncode
        server("start", timeout=300)
        out["verify_after"] = json.loads(server("verify").stdout)
        out["b"] = _build(ws_b, base / "store-b", server.address, write=False)
    return out


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


def test_restarted_server_still_serves_earlier_builds(builds):
    assert builds["a"].returncode == 0, _show(builds["a"])
    # Every action A wrote is answered (GetActionResult, and no blob of its result missing), before the
    # stop and after the start; and B (fresh store, see above) got every stage from the restarted server.
    assert builds["verify_before"] == {"actions": len(STAGES), "served": len(STAGES), "missing_blobs": 0}
    assert builds["status_stopped"] == 3
    assert builds["verify_after"] == builds["verify_before"]
    assert builds["b"].counters["remote_cache_requests_cached"] == len(STAGES), _show(builds["b"])


def test_unreachable_server_builds_locally_with_one_warning(builds):
    assert builds["a"].returncode == 0, _show(builds["a"])
    ws = builds["ws_a"]
    before = _sha(ws)
    # Real local work: a new module that nothing imports changes A1's input (the whole tree) and no
    # closure, so A1 runs again here and the stages after it hit the local cache.
    ws.write("third_party/vllm/vllm/_remote_cache_test.py", f"# {uuid.uuid4().hex}\n")
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


def _launcher_settings(settings: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """What the launcher's remote cache region (cache/pants-remote.sh) exports, without running Pants."""
    script = ('die() { echo "die: $*" >&2; exit 1; }; source cache/pants-remote.sh "$@"; '
              'env | grep "^PANTS_REMOTE" | sort')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "VLLM_BUNDLER_REMOTE_CACHE"))}
    return subprocess.run(["bash", "-c", script, "pants", *args], cwd=REPO, env={**env, **settings},
                          capture_output=True, text=True, timeout=30)


def test_remote_cache_is_off_by_default_and_one_setting_turns_it_on():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"grpc://127.0.0.1:{listener.getsockname()[1]}"
        for settings in ({}, {"VLLM_BUNDLER_REMOTE_CACHE": ""}, {"VLLM_BUNDLER_REMOTE_CACHE": "off"}):
            proc = _launcher_settings(settings, "package", TARGET)
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), settings
        on = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address}, "package", TARGET)
        assert on.returncode == 0 and on.stderr == "", on.stderr
        assert on.stdout.splitlines() == [
            "PANTS_REMOTE_CACHE_READ=true", "PANTS_REMOTE_CACHE_WARNINGS=first_only", "PANTS_REMOTE_CACHE_WRITE=true",
            "PANTS_REMOTE_INSTANCE_NAME=", f"PANTS_REMOTE_STORE_ADDRESS={address}"]
        read_only = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address.removeprefix("grpc://"),
                                        "VLLM_BUNDLER_REMOTE_CACHE_WRITE": "0"}, "package", TARGET)
        assert "PANTS_REMOTE_CACHE_WRITE=false" in read_only.stdout.splitlines()
        assert f"PANTS_REMOTE_STORE_ADDRESS={address}" in read_only.stdout.splitlines()
        # `./pants --toolchain-python` (used by ./run-tests) neither probes nor warns.
        quiet = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": "grpc://127.0.0.1:1"}, "--toolchain-python")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    bad = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": "https://cache.example:443"}, "package", TARGET)
    assert bad.returncode == 1 and "is not grpc://HOST:PORT" in bad.stderr
