"""The team remote cache (cache/, issues #5 and #15), proved with Pants' own counters against a real REAPI
server with its real authorization (JWT tokens and per-instance ACLs; no localhost exemption).

One BuildGrid + Redis server (cache/server.sh) on 127.0.0.1, free ports, its data in a temp directory:
  1. workspace A (empty local store, a writer token) builds `targets:qwen3_moe_layer`: every stage
     process runs and is written to the server;
  2. workspace B, at another absolute path, empty local store, no token (the default: read only): every
     stage process is served by the remote cache, and the bundle has the same sha256 as A's;
  (between 1 and 2 the server is stopped and started again: B is served from what it had stored);
  3. an unreachable server: the build still succeeds from local work, with one clear warning;
  4. Pants forced to write without a token: the server refuses, Pants counts the error, nothing is stored;
  5. an attacker holding a writer token replaces the bundle in A7's cached result: a fresh clone must not
     write that payload (the defence is write_out's sha256 check against A7.report.json).
A second server, with no builds, takes plain REAPI clients (grpc and BuildGrid's protos, in BuildGrid's
venv): no token, a bad or expired token, or a token on the anonymous instance cannot write; the issued
token can; and `status`/`verify` with Redis killed.

The bundle target is the repo's own `targets:qwen3_moe_layer` (targets/BUILD), with its tree taken from
the local copy of the pinned 0.26.0 sdist (the `vllm_0_26_0` fixture, sha256-verified) instead of the
fetch process, so that the test's traffic goes to 127.0.0.1 only and the counted processes are exactly
the stage processes A0..A7. The stages' cache keys are the same either way (same tree digest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
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
        self.data = data
        self.port, self.redis_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_CACHE_")}
        self.env = {**env, "BUNDLER_CACHE_DATA": str(data), "BUNDLER_CACHE_HOST": "127.0.0.1",
                    "BUNDLER_CACHE_PORT": str(self.port), "BUNDLER_CACHE_REDIS_PORT": str(self.redis_port)}
        self.address = f"grpc://127.0.0.1:{self.port}"

    def run(self, *args: str, timeout: int = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(SERVER), *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=stdin)

    def __call__(self, command: str, timeout: int = 120) -> subprocess.CompletedProcess:
        proc = self.run(command, timeout=timeout)
        assert proc.returncode == 0, f"cache/server.sh {command} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def token_file(self, name: str) -> Path:
        """A writer token issued by `cache/server.sh issue-token`, in a file of its own (mode 0600)."""
        proc = self.run("issue-token", "--writer", name)
        assert proc.returncode == 0 and proc.stdout.count(".") == 2, proc.stderr
        path = self.data.parent / f"{self.data.name}-{name}.token"
        path.write_text(proc.stdout)
        path.chmod(0o600)
        return path

    def client(self, op: str, **args) -> dict:
        """A plain REAPI client (REAPI_CLIENT below) run with BuildGrid's Python; returns its JSON answer."""
        proc = self.run("python", "-", op, json.dumps({"address": f"127.0.0.1:{self.port}",
                                                       "redis_port": self.redis_port, **args}),
                        stdin=REAPI_CLIENT, timeout=300)
        assert proc.returncode == 0, f"REAPI client {op} failed:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)


# A plain REAPI v2 client: grpc and BuildGrid's generated protos, nothing of Pants. Ops:
#   attempt  {instance, token}: every write a cache client can make (BatchUpdateBlobs, ByteStream Write,
#            UpdateActionResult of a new action), then reads back as an anonymous reader: which calls were
#            refused (gRPC code names) and whether the action result is now served.
#   poison   {token, bundle, marker}: find the cached action whose output directory holds `bundle` (A7),
#            replace that file with the original plus a marker line, upload blobs and the altered result
#            to the "writers" instance with the token (as an attacker holding a token would).
REAPI_CLIENT = r'''
import hashlib, json, sys, uuid
import grpc, redis
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc

op, args = sys.argv[1], json.loads(sys.argv[2])
channel = grpc.insecure_channel(args["address"])
ac, cas = re_grpc.ActionCacheStub(channel), re_grpc.ContentAddressableStorageStub(channel)
bs = bytestream_pb2_grpc.ByteStreamStub(channel)

def digest(data):
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))

def meta(token):
    return [("authorization", "Bearer " + token)] if token else []

def code(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name

def read(d):
    (resp,) = cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(instance_name="", digests=[d]), timeout=60).responses
    assert resp.status.code == 0, resp.status
    return resp.data

if op == "attempt":
    inst, md = args["instance"], meta(args.get("token"))
    blob = b"blob " + uuid.uuid4().bytes
    streamed = b"streamed " + uuid.uuid4().bytes
    action = digest(b"action " + uuid.uuid4().bytes)
    result = re_pb2.ActionResult(exit_code=0, output_files=[re_pb2.OutputFile(path="out.py", digest=digest(blob))])
    d = digest(streamed)
    resource = "/".join(p for p in (inst, "uploads", str(uuid.uuid4()), "blobs", d.hash, str(d.size_bytes)) if p)
    out = {
        "BatchUpdateBlobs": code(lambda: cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(
            instance_name=inst, requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(blob), data=blob)]),
            metadata=md, timeout=30)),
        "Write": code(lambda: bs.Write(iter([bytestream_pb2.WriteRequest(
            resource_name=resource, data=streamed, finish_write=True)]), metadata=md, timeout=30)),
        "UpdateActionResult": code(lambda: ac.UpdateActionResult(re_pb2.UpdateActionResultRequest(
            instance_name=inst, action_digest=action, action_result=result), metadata=md, timeout=30)),
    }
    missing = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(instance_name="", blob_digests=[digest(blob), d]), timeout=30)
    out["blobs_stored"] = 2 - len(missing.missing_blob_digests)
    out["served_to_readers"] = code(lambda: ac.GetActionResult(re_pb2.GetActionResultRequest(
        instance_name="", action_digest=action), timeout=30))
    print(json.dumps(out))

elif op == "poison":
    md, name = meta(args["token"]), args["bundle"]
    keys = sorted(k.decode() for k in redis.Redis(port=args["redis_port"]).scan_iter("action-cache.*"))
    hits = []
    for key in keys:
        h, _, size = key.removeprefix("action-cache.").rpartition("_")
        action = re_pb2.Digest(hash=h, size_bytes=int(size))
        result = ac.GetActionResult(re_pb2.GetActionResultRequest(instance_name="", action_digest=action), timeout=30)
        for i, out_dir in enumerate(result.output_directories):
            tree = re_pb2.Tree.FromString(read(out_dir.tree_digest))
            for j, node in enumerate(tree.root.files):
                if node.name == name:
                    hits.append((action, result, i, tree, j))
    assert len(hits) == 1, f"{len(hits)} cached results hold {name}"
    action, result, i, tree, j = hits[0]
    original = read(tree.root.files[j].digest)
    payload = original + ("\n" + args["marker"] + "\n").encode()
    tree.root.files[j].digest.CopyFrom(digest(payload))
    root, tree_blob = tree.root.SerializeToString(), tree.SerializeToString()
    blobs = [payload, root, tree_blob]
    resp = cas.BatchUpdateBlobs(re_pb2.BatchUpdateBlobsRequest(instance_name="writers", requests=[
        re_pb2.BatchUpdateBlobsRequest.Request(digest=digest(b), data=b) for b in blobs]), metadata=md, timeout=60)
    assert all(r.status.code == 0 for r in resp.responses), resp
    result.output_directories[i].tree_digest.CopyFrom(digest(tree_blob))
    if result.output_directories[i].HasField("root_directory_digest"):
        result.output_directories[i].root_directory_digest.CopyFrom(digest(root))
    ac.UpdateActionResult(re_pb2.UpdateActionResultRequest(instance_name="writers", action_digest=action,
                                                           action_result=result), metadata=md, timeout=60)
    served = ac.GetActionResult(re_pb2.GetActionResultRequest(instance_name="", action_digest=action), timeout=30)
    print(json.dumps({"action": action.hash, "served_tree": served.output_directories[i].tree_digest.hash,
                      "poisoned_tree": digest(tree_blob).hash,
                      "original_sha256": hashlib.sha256(original).hexdigest(),
                      "payload_sha256": hashlib.sha256(payload).hexdigest()}))
'''


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
    ws.write_targets(_build_file())
    return ws


def _build(ws: Workspace, store: Path, address: str, token: Path | None = None, *args: str) -> PantsRun:
    # The one setting that turns the remote cache on for a workspace (read by ./pants; cache/README.md),
    # and for a writer the file holding its token.
    settings = {"VLLM_BUNDLER_REMOTE_CACHE": address}
    if token is not None:
        settings["VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE"] = str(token)
    return _pants(ws, settings, f"--local-store-dir={store}", *args, "package", TARGET)


def _sha(ws: Workspace) -> str:
    return hashlib.sha256((ws.root / BUNDLE).read_bytes()).hexdigest()


def _show(run: PantsRun) -> str:
    counters = {k: v for k, v in run.counters.items() if k.startswith(("remote_cache", "local_"))}
    return f"exit {run.returncode}, counters {counters}\n{run.stderr[-4000:]}"


def _running_server(tmp_path_factory, name: str):
    srv = Server(tmp_path_factory.mktemp(name) / "data")
    try:
        srv("start", timeout=600)  # the first run on a fresh machine installs BuildGrid and redis-server
        yield srv
    finally:
        subprocess.run([str(SERVER), "stop"], env=srv.env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _running_server(tmp_path_factory, "cache")


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """A server that no build uses: plain REAPI clients and a killed Redis."""
    yield from _running_server(tmp_path_factory, "bare")


@pytest.fixture(scope="module")
def builds(tmp_path_factory, server, vllm_0_26_0):
    base = tmp_path_factory.mktemp("remote")
    # Both clones are copied before either builds: same sources, different absolute paths.
    ws_a = _workspace(base / "clone-a", vllm_0_26_0)
    ws_b = _workspace(base / "elsewhere" / "clone-b", vllm_0_26_0)
    out = {"base": base, "ws_a": ws_a, "ws_b": ws_b, "b": None, "server": server, "vllm": vllm_0_26_0}
    out["a"] = _build(ws_a, base / "store-a", server.address, server.token_file("ci"))
    if out["a"].returncode == 0:
        # The server is restarted between the writer and the reader: B's hits come from stored data.
        out["verify_before"] = json.loads(server("verify").stdout)
        server("stop")
        out["status_stopped"] = subprocess.run([str(SERVER), "status"], env=server.env, capture_output=True).returncode
        server("start", timeout=300)
        out["verify_after"] = json.loads(server("verify").stdout)
        out["b"] = _build(ws_b, base / "store-b", server.address)  # no token: the default, read only
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
    run = _build(ws, builds["base"] / "store-a", dead, builds["server"].token_file("ci-2"))
    assert run.returncode == 0, _show(run)
    assert run.executed_stages == ["A1"], _show(run)
    assert len(LAUNCHER_WARNING.findall(run.stderr)) == 1, _show(run)
    assert dead in run.stderr
    assert "Failed to read from remote cache" not in run.stderr, _show(run)
    assert "Failed to write to remote cache" not in run.stderr, _show(run)
    assert run.counters.get("remote_cache_requests", 0) == 0, _show(run)
    assert _sha(ws) == before


def test_pants_without_a_token_is_refused_by_the_server(builds):
    """Pants made to write (--remote-cache-write) with no token: the server refuses, nothing is stored."""
    assert builds["b"] is not None and builds["b"].returncode == 0, _show(builds["a"])
    server, ws = builds["server"], builds["ws_b"]
    # A new module nothing imports: A1 runs again here (a new action to write), the stages after it hit.
    ws.write("third_party/vllm/vllm/_remote_cache_refused.py", f"# {uuid.uuid4().hex}\n")
    run = _build(ws, builds["base"] / "store-b", server.address, None, "--remote-cache-write")
    assert run.returncode == 0, _show(run)  # a refused write is a warning: the build goes on
    assert run.executed_stages == ["A1"], _show(run)
    assert run.counters["remote_cache_write_attempts"] == 1, _show(run)
    assert run.counters.get("remote_cache_write_successes", 0) == 0, _show(run)
    assert run.counters["remote_cache_write_errors"] == 1, _show(run)
    assert "Failed to write to remote cache" in run.stderr and "nauthenticated" in run.stderr, _show(run)
    assert json.loads(server("verify").stdout)["actions"] == len(STAGES)  # A's nine, nothing more


class PoisonWritten(AssertionError):
    """The poisoned bundle reached the workspace: the one failure the xfail below expects."""


def test_poisoned_cached_result_does_not_reach_the_written_bundle(builds):
    """A token holder replaces the bundle inside A7's cached result; a fresh clone must not write it."""
    a = builds["a"]
    assert a.returncode == 0, _show(a)
    server = builds["server"]
    marker = f"__poisoned__ = {uuid.uuid4().hex!r}"
    poison = server.client("poison", token=server.token_file("attacker").read_text().strip(),
                           bundle=Path(BUNDLE).name, marker=marker)
    assert poison["served_tree"] == poison["poisoned_tree"], poison  # readers are now served the payload
    assert poison["original_sha256"] == _sha(builds["ws_a"]), poison
    ws_c = _workspace(builds["base"] / "third" / "clone-c", builds["vllm"])
    run = _build(ws_c, builds["base"] / "store-c", server.address)
    bundle = ws_c.root / BUNDLE
    if bundle.exists() and marker.encode() in bundle.read_bytes():
        raise PoisonWritten("the payload was written\n" + _show(run))
    assert poison["payload_sha256"] not in [sha for _, _, sha in run.wrote()], _show(run)
    if run.returncode == 0:  # rebuilt rather than refused: the true bundle
        assert _sha(ws_c) == _sha(builds["ws_a"]), _show(run)
    else:  # refused loudly, nothing written
        assert not bundle.exists(), _show(run)


def _launcher_settings(settings: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """What the launcher's remote cache region (cache/pants-remote.sh) exports, without running Pants."""
    script = ('die() { echo "die: $*" >&2; exit 1; }; source cache/pants-remote.sh "$@"; '
              'env | grep "^PANTS_REMOTE" | sort')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "VLLM_BUNDLER_REMOTE_CACHE"))}
    return subprocess.run(["bash", "-c", script, "pants", *args], cwd=REPO, env={**env, **settings},
                          capture_output=True, text=True, timeout=30)


def test_remote_cache_is_off_by_default_and_one_setting_turns_it_on(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"grpc://127.0.0.1:{listener.getsockname()[1]}"
        for settings in ({}, {"VLLM_BUNDLER_REMOTE_CACHE": ""}, {"VLLM_BUNDLER_REMOTE_CACHE": "off"}):
            proc = _launcher_settings(settings, "package", TARGET)
            assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), settings
        # The one setting: read, anonymously, from instance ""; never write.
        on = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address}, "package", TARGET)
        assert on.returncode == 0 and on.stderr == "", on.stderr
        assert on.stdout.splitlines() == [
            "PANTS_REMOTE_CACHE_READ=true", "PANTS_REMOTE_CACHE_WARNINGS=first_only", "PANTS_REMOTE_CACHE_WRITE=false",
            "PANTS_REMOTE_INSTANCE_NAME=", f"PANTS_REMOTE_STORE_ADDRESS={address}"]
        # A token file: write too, on instance "writers", the token sent as "authorization: Bearer ...".
        token = tmp_path / "token"
        token.write_text("header.payload.signature\n")
        writer = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address,
                                     "VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE": str(token)}, "package", TARGET)
        assert writer.returncode == 0 and writer.stderr == "", writer.stderr
        assert writer.stdout.splitlines() == [
            "PANTS_REMOTE_CACHE_READ=true", "PANTS_REMOTE_CACHE_WARNINGS=first_only", "PANTS_REMOTE_CACHE_WRITE=true",
            "PANTS_REMOTE_INSTANCE_NAME=writers", f"PANTS_REMOTE_OAUTH_BEARER_TOKEN_PATH={token.resolve()}",
            f"PANTS_REMOTE_STORE_ADDRESS={address}"]
        # ... unless told to only read.
        read_only = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address.removeprefix("grpc://"),
                                        "VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE": str(token),
                                        "VLLM_BUNDLER_REMOTE_CACHE_WRITE": "0"}, "package", TARGET)
        assert "PANTS_REMOTE_CACHE_WRITE=false" in read_only.stdout.splitlines()
        assert "PANTS_REMOTE_INSTANCE_NAME=" in read_only.stdout.splitlines()
        assert "PANTS_REMOTE_OAUTH_BEARER_TOKEN_PATH" not in read_only.stdout
        assert f"PANTS_REMOTE_STORE_ADDRESS={address}" in read_only.stdout.splitlines()
        # Asking to write without a token: one warning line, read only.
        no_token = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address, "VLLM_BUNDLER_REMOTE_CACHE_WRITE": "1"},
                                      "package", TARGET)
        assert no_token.returncode == 0 and len(no_token.stderr.splitlines()) == 1, no_token.stderr
        assert "needs a token" in no_token.stderr and "PANTS_REMOTE_CACHE_WRITE=false" in no_token.stdout
        # A named token file that is not there is a configuration error, not a silent reader.
        missing = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address,
                                      "VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE": str(tmp_path / "nope")}, "package", TARGET)
        assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1, missing.stderr
        assert "VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE" in missing.stderr
        # TLS: grpcs:// and the CA that signed the server's certificate.
        ca = tmp_path / "ca.pem"
        ca.write_text("-----BEGIN CERTIFICATE-----\n")
        tls = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": address.replace("grpc://", "grpcs://"),
                                  "VLLM_BUNDLER_REMOTE_CACHE_CA": str(ca)}, "package", TARGET)
        assert tls.returncode == 0, tls.stderr
        assert f"PANTS_REMOTE_CA_CERTS_PATH={ca.resolve()}" in tls.stdout.splitlines()
        assert f"PANTS_REMOTE_STORE_ADDRESS={address.replace('grpc://', 'grpcs://')}" in tls.stdout.splitlines()
        # `./pants --toolchain-python` (used by ./run-tests) neither probes nor warns.
        quiet = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": "grpc://127.0.0.1:1"}, "--toolchain-python")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    bad = _launcher_settings({"VLLM_BUNDLER_REMOTE_CACHE": "https://cache.example:443"}, "package", TARGET)
    assert bad.returncode == 1 and "is not grpc://HOST:PORT" in bad.stderr


def _jwt(secret: str, claims: dict) -> str:
    """An HS256 JSON Web Token made with the standard library (as any client could make one)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


REFUSED = {"BatchUpdateBlobs": "UNAUTHENTICATED", "Write": "UNAUTHENTICATED", "UpdateActionResult": "UNAUTHENTICATED",
           "blobs_stored": 0, "served_to_readers": "NOT_FOUND"}


def test_without_the_writer_token_no_client_can_write(bare_server):
    secret_file = bare_server.data / "jwt-secret"
    # The secret was generated at the first start, in the data directory, for this user only.
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert not secret_file.resolve().is_relative_to(REPO)
    secret, now = secret_file.read_text().strip(), int(time.time())
    good = {"sub": "writer:mallory", "aud": "vllm-bundler-cache", "iat": now, "exp": now + 3600}
    issued = bare_server.token_file("ci").read_text().strip()
    cases = {
        "no token, anonymous instance": ("", None),
        "no token, writers instance": ("writers", None),
        "valid token sent to the anonymous instance": ("", issued),
        "token signed with another secret": ("writers", _jwt("not-the-secret", good)),
        "expired token": ("writers", _jwt(secret, {**good, "iat": now - 7200, "exp": now - 3600})),
        "token without expiry": ("writers", _jwt(secret, {k: v for k, v in good.items() if k != "exp"})),
        "token for another audience": ("writers", _jwt(secret, {**good, "aud": "someone-else"})),
        "token whose subject is not a writer": ("writers", _jwt(secret, {**good, "sub": "reader:mallory"})),
        "not a token": ("writers", "Bearer-nonsense"),
    }
    for case, (instance, token) in cases.items():
        answer = bare_server.client("attempt", instance=instance, token=token)
        assert answer == REFUSED, f"{case}: {answer}"
    verify = bare_server("verify")
    assert json.loads(verify.stdout) == {"actions": 0, "served": 0, "missing_blobs": 0}


def test_the_issued_writer_token_can_write_and_readers_are_served(bare_server):
    token = bare_server.token_file("ci-writer").read_text().strip()
    answer = bare_server.client("attempt", instance="writers", token=token)
    assert answer == {"BatchUpdateBlobs": "OK", "Write": "OK", "UpdateActionResult": "OK", "blobs_stored": 2,
                      "served_to_readers": "OK"}, answer
    assert json.loads(bare_server("verify").stdout)["served"] >= 1
    # issue-token refuses a bad name in one line
    bad = bare_server.run("issue-token", "--writer", "a b")
    assert bad.returncode != 0 and bad.stdout == "" and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_status_and_verify_say_redis_is_down_in_one_line(bare_server):
    assert bare_server.run("status").returncode == 0
    pid = int((bare_server.data / "run" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    try:
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        status = bare_server.run("status")
        assert status.returncode == 1, status
        assert "Redis is down" in status.stdout and len(status.stdout.splitlines()) == 1, status.stdout
        verify = bare_server.run("verify")
        assert verify.returncode != 0 and verify.stdout == "", verify
        assert len(verify.stderr.splitlines()) == 1 and "Redis is down" in verify.stderr, verify.stderr
        # verify.py itself, asked directly: one line too, no traceback
        direct = bare_server.run("python", str(REPO / "cache" / "verify.py"), f"127.0.0.1:{bare_server.port}",
                                 "127.0.0.1", str(bare_server.redis_port))
        assert direct.returncode == 1 and direct.stdout == "", direct
        assert len(direct.stderr.splitlines()) == 1 and "Redis on 127.0.0.1" in direct.stderr, direct.stderr
        assert "Traceback" not in verify.stderr + direct.stderr
    finally:
        bare_server("start")  # Redis again (BuildGrid still runs)
    assert bare_server.run("status").returncode == 0
    assert bare_server.run("verify").returncode == 0
