"""Issue 15 cases 1, 2 and 7 through the real Pants engine: A7 imports the bundle in the bundle runtime (torch,
triton, ninja only) under bubblewrap, strict by default.

- case 1: a closure that uses packaging at import (tests/trees/minenv/tiny) builds and imports there;
- case 2: a closure file removed (the module a reached name lives in): non-zero exit, one error line naming the
  name, the previous bundle untouched, no WROTE line; `import_check="report"` writes it, ok_with_failures;
- case 7: a closure file whose module-level code writes files outside the check's folder and connects to a
  server on this machine: nothing lands, nothing connects (asserted on the files and on the server).
"""

import hashlib
import json
import shutil
import socket
import threading
import uuid
from pathlib import Path

import pytest

from pants_workspace import Workspace

pytestmark = pytest.mark.pants

TINY = Path(__file__).parent / "trees" / "minenv" / "tiny"

BUILD = """
vllm_source_tree(name="tiny", root="third_party/tiny")
monolithic_bundle(name="tiny_layer", symbol="TinyLayer", vllm=":tiny")
monolithic_bundle(name="tiny_layer_report", symbol="TinyLayer", vllm=":tiny", import_check="report",
                  output_path="report/TinyLayer.py")
monolithic_bundle(name="sneaky", symbol="Sneaky", vllm=":tiny")
"""

SNEAKY = '''\
import socket

import torch

OUTSIDE = {outside!r}


def _write(path):
    try:
        with open(path, "w") as f:
            f.write("written by the tree's module-level code")
        return "written"
    except OSError as e:
        return type(e).__name__


WRITES = [_write(p) for p in OUTSIDE]


def _connect():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
        return "connected"
    except OSError as e:
        return type(e).__name__


CONNECT = _connect()


class Sneaky(torch.nn.Module):
    def forward(self, x):
        return x + len(WRITES) + len(CONNECT)
'''


class _Listener:
    """A TCP server on loopback that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("minenv"))
    shutil.copytree(TINY, ws.root / "third_party" / "tiny")
    ws.write("targets/BUILD", BUILD)
    return ws


def _report(ws, target):
    return json.loads((ws.root / "bundles_out" / "artifacts" / f"targets.{target}" / "A7.report.json").read_text())


def test_case1_packaging_at_import_and_case2_missing_closure_file(ws):
    run = ws.pants("package", "targets:tiny_layer")
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p for p, _, _ in run.wrote()] == ["bundles_out/TinyLayer.py"]
    bundle = ws.root / "bundles_out" / "TinyLayer.py"
    rep = _report(ws, "tiny_layer")
    assert rep["status"] == "ok" and rep["checks"]["import"] == "ok"
    assert rep["dependencies"]["runtime"] == {
        "interpreter": "bundle runtime", "isolated": "bubblewrap (read-only root, no network)",
        "installed": {"ninja": "1.13.2", "torch": "2.13.0+cpu", "triton": "3.6.0"}}
    assert rep["dependencies"]["declared"] == ["torch>=2.11", "triton", "ninja"]
    good = bundle.read_bytes()

    # case 2: the file SiluAndMul lives in is gone from the tree
    (ws.root / "third_party" / "tiny" / "vllm" / "act.py").unlink()
    run = ws.pants("package", "targets:tiny_layer")
    assert run.returncode != 0
    assert run.wrote() == [] and "WROTE" not in run.stdout
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, run.stderr[-3000:]
    assert "[A7 package]" in errors[0] and "SiluAndMul" in errors[0] and "undefined name" in errors[0]
    assert "Remedy:" in errors[0] and 'import_check="report"' in errors[0]
    assert "Traceback" not in run.stderr
    assert bundle.read_bytes() == good  # the previous bundle is untouched

    # import_check="report": today's lenient behaviour, the bundle written with the failure recorded
    run = ws.pants("package", "targets:tiny_layer_report")
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p for p, _, _ in run.wrote()] == ["bundles_out/report/TinyLayer.py"]
    rep = json.loads((ws.root / "bundles_out" / "report" / "artifacts" / "targets.tiny_layer_report" /
                      "A7.report.json").read_text())
    assert rep["status"] == "ok_with_failures"
    assert any("SiluAndMul" in u for u in rep["details"]["undefined_names"])
    shutil.copy(TINY / "vllm" / "act.py", ws.root / "third_party" / "tiny" / "vllm" / "act.py")


def test_case7_module_level_code_cannot_write_outside_or_reach_the_network(ws, tmp_path):
    tag = uuid.uuid4().hex
    outside = [str(ws.root / f"PWNED-{tag}"),        # the workspace (under /tmp: the check sees a private /tmp)
               f"/var/tmp/vllm-bundler-PWNED-{tag}",  # a writable directory outside /tmp (read-only in the check)
               str(Path.home() / f".vllm-bundler-PWNED-{tag}")]
    listener = _Listener()
    try:
        ws.write("third_party/tiny/vllm/sneaky.py", SNEAKY.format(outside=outside, port=listener.port))
        # the listener is reachable from here: the control for the assertion below
        socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()
        run = ws.pants("package", "targets:sneaky")
        accepted = listener.accepted
    finally:
        listener.close()
        landed = [p for p in outside if Path(p).exists()]
        for p in landed:
            Path(p).unlink()
    assert "Starting: A7 package: targets:sneaky" in run.stderr  # the check did run the module-level code
    assert accepted == 1, "the import check connected to a server on this machine"
    assert landed == [], f"the tree's module-level code wrote {landed}"
    # the write is contained (the module-level code caught its own errors): the build goes on and says what the
    # tree's code met, without a trace of it outside
    assert run.returncode == 0, run.stderr[-3000:]
    data = (ws.root / "bundles_out" / "Sneaky.py").read_bytes()
    rep = _report(ws, "sneaky")
    assert rep["sha256"] == hashlib.sha256(data).hexdigest() and rep["checks"]["import"] == "ok"
