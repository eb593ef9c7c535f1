"""benchmarks/zoo_gpu.py on stand-in bundles (CPU): one row per bundle, cold/warm/model size, resumable rows,
the model-aware count from A6.model.json. The GPU run itself is recorded in benchmarks/results/*-zoo-gpu-*.json."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo_gpu  # noqa: E402

OK = "def invocation_example(small=False):\n    return {'small': small}\n"
FAILS = "def invocation_example(small=False):\n    raise RuntimeError('no template for this layer')\n"


def _bundle(d: Path, name: str, text: str, model: str | None):
    (d / f"{name}.py").write_text(text)
    a = d / "artifacts" / f"targets.zoo.{name}"
    a.mkdir(parents=True)
    (a / "A6.model.json").write_text(json.dumps({"symbol": name, "template": "decoder_layer", "status": "ok",
                                                 "model_name": model}))


def test_rows_summary_and_resume(tmp_path):
    d = tmp_path / "zoo"
    d.mkdir()
    _bundle(d, "GoodLayer", OK, "org/good")
    _bundle(d, "BadLayer", FAILS, "org/bad")
    _bundle(d, "GenericLayer", OK, None)
    (d / "GoodLayer.kernelbench.py").write_text("raise SystemExit('not a bundle')\n")
    out = tmp_path / "out"
    assert zoo_gpu.main([str(d), str(out), "--jobs", "2", "--full-jobs", "1"]) == 0
    res = json.loads((out / "zoo-gpu.json").read_text())
    rows = {r["symbol"]: r for r in res["rows"]}
    assert set(rows) == {"GoodLayer", "BadLayer", "GenericLayer"}
    assert rows["GoodLayer"]["small_cold"]["ok"] and rows["GoodLayer"]["small_warm"]["ok"] and rows["GoodLayer"]["full"]["ok"]
    assert not rows["BadLayer"]["small_cold"]["ok"] and "no template for this layer" in rows["BadLayer"]["small_cold"]["error"]
    assert rows["BadLayer"]["full"] is None and rows["BadLayer"]["small_warm"] is None
    assert [r["model_aware"] for r in (rows["GoodLayer"], rows["BadLayer"], rows["GenericLayer"])] == [True, True, False]
    assert res["summary"] == {"bundles": 3, "small_ok": 2, "full_ok": 2, "model_aware": 2,
                              "model_aware_small_and_full_ok": 1, "full_not_run": 0}
    # a second run resumes: finished rows are kept as they are (the bundle is not run again)
    (d / "GoodLayer.py").write_text(FAILS)
    assert zoo_gpu.main([str(d), str(out)]) == 0
    again = {r["symbol"]: r for r in json.loads((out / "zoo-gpu.json").read_text())["rows"]}
    assert again["GoodLayer"]["small_cold"]["ok"]


def test_a_variant_bundle_reads_its_own_targets_record(tmp_path):
    """Several variants of one symbol (LlamaDecoderLayer__llama, __llama_eagle): each bundle's record is its target's."""
    for variant, model in (("llama", "org/llama"), ("llama_eagle", None)):
        a = tmp_path / "artifacts" / f"targets.zoo.vllm_0_26_0.LlamaDecoderLayer__{variant}"
        a.mkdir(parents=True)
        (a / "A6.model.json").write_text(json.dumps({"symbol": "LlamaDecoderLayer", "model_name": model}))
    assert zoo_gpu.model_record(tmp_path / "LlamaDecoderLayer__llama.py")["model_name"] == "org/llama"
    assert zoo_gpu.model_record(tmp_path / "LlamaDecoderLayer__llama_eagle.py")["model_name"] is None
    assert zoo_gpu.model_record(tmp_path / "OtherLayer.py") == {}


def test_no_bundles_is_one_line_and_exit_2(tmp_path, capsys):
    assert zoo_gpu.main([str(tmp_path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().out.startswith(f"error: no bundles in {tmp_path}")


# A stand-in for tools/parity.py: rows by the bundle's name, as the harness writes them (--json), its exit code.
PARITY_STAND_IN = """
import json, sys
from pathlib import Path
bundle, out = Path(sys.argv[1]), Path(sys.argv[sys.argv.index("--json") + 1])
cases = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--case"]
if "Unmapped" in bundle.stem:
    print("parity: UnmappedLayer.py: vLLM parameter mlp.mystery.weight (3, 3) has no transformers counterpart")
    sys.exit(2)
status = "no reference" if "NoRef" in bundle.stem else "ok"
rows = [{"case": c, "status": status, "bundle_rel_l2": 0.004, "hf_bf16_rel_l2": 0.005, "ratio": 0.8,
         "control_rel_l2": 0.3, "extra": 1} for c in cases]
out.write_text(json.dumps({"bundle": str(bundle), "rows": rows[:1] if status == "no reference" else rows}))
"""


def test_parity_per_bundle_that_ran(tmp_path, monkeypatch):
    d = tmp_path / "zoo"
    d.mkdir()
    for name, text in (("GoodLayer", OK), ("NoRefLayer", OK), ("UnmappedLayer", OK), ("BadLayer", FAILS)):
        _bundle(d, name, text, "org/m")
    stand_in = tmp_path / "parity_stand_in.py"
    stand_in.write_text(PARITY_STAND_IN)
    monkeypatch.setattr(zoo_gpu, "PARITY", stand_in)
    out = tmp_path / "out"
    assert zoo_gpu.main([str(d), str(out), "--parity", "prefill:32,decode:2x64"]) == 0
    res = json.loads((out / "zoo-gpu.json").read_text())
    rows = {r["symbol"]: r for r in res["rows"]}
    good = rows["GoodLayer"]["parity"]
    assert good["status"] == "ok" and [c["case"] for c in good["cases"]] == ["prefill:32", "decode:2x64"]
    assert good["cases"][0]["ratio"] == 0.8 and "extra" not in good["cases"][0]
    assert rows["NoRefLayer"]["parity"]["status"] == "no reference"
    unmapped = rows["UnmappedLayer"]["parity"]
    assert unmapped["status"] == "error" and unmapped["rc"] == 2 and "mlp.mystery.weight" in unmapped["error"]
    assert "parity" not in rows["BadLayer"]  # its example did not run
    assert res["parity_cases"] == ["prefill:32", "decode:2x64"]
    assert {k: v for k, v in res["summary"].items() if k.startswith("parity_")} == {
        "parity_ok": 1, "parity_ok_partial": 0, "parity_FAIL": 0, "parity_no_reference": 1, "parity_error": 1}
    # resumed: a row with parity keeps it (the harness is not run again)
    stand_in.write_text("import sys; sys.exit(3)\n")
    assert zoo_gpu.main([str(d), str(out), "--parity", "prefill:32"]) == 0
    again = {r["symbol"]: r for r in json.loads((out / "zoo-gpu.json").read_text())["rows"]}
    assert again["GoodLayer"]["parity"] == good


def test_parity_case_syntax_is_checked_first(tmp_path, capsys):
    d = tmp_path / "zoo"
    d.mkdir()
    _bundle(d, "GoodLayer", OK, "org/m")
    assert zoo_gpu.main([str(d), str(tmp_path / "out"), "--parity", "sideways:3"]) == 2
    assert capsys.readouterr().out.startswith("error: --parity: --case 'sideways:3'")


def test_parity_status_of_a_bundle_from_its_cases():
    assert zoo_gpu.parity_status(["ok", "ok"]) == "ok"
    assert zoo_gpu.parity_status(["ok", "no reference"]) == "ok_partial"  # prefill compared, decode has none
    assert zoo_gpu.parity_status(["no reference"]) == "no reference"
    assert zoo_gpu.parity_status(["ok", "FAIL"]) == "FAIL"
    assert zoo_gpu.parity_status(["ok", "error"]) == "error"
    assert zoo_gpu.parity_status(["FAIL", "error"]) == "FAIL"
    assert zoo_gpu.parity_status([]) == "error"
    assert zoo_gpu.parity_status(["not applicable", "ok"]) == "ok_partial"  # a decode-only bundle refuses prefill
    assert zoo_gpu.parity_status(["not applicable", "no reference"]) == "no reference"


def test_retry_from_runs_only_what_did_not_pass(tmp_path, capsys):
    """--retry-from an earlier result: only its bundles whose example failed or whose parity was FAIL or error (the
    session's device time rarely covers the whole zoo twice); a file that is no result is one line and exit 2."""
    d = tmp_path / "zoo"
    d.mkdir()
    for name in ("GoodLayer", "BadExample", "BadParity", "NoRefLayer", "ErrorParity", "NewLayer"):
        _bundle(d, name, OK, "org/m")
    prior = tmp_path / "prior.json"
    ok = {"ok": True}
    prior.write_text(json.dumps({"rows": [
        {"symbol": "GoodLayer", "small_cold": ok, "full": ok, "parity": {"status": "ok"}},
        {"symbol": "BadExample", "small_cold": {"ok": False}, "full": None},
        {"symbol": "BadParity", "small_cold": ok, "full": ok, "parity": {"status": "FAIL"}},
        {"symbol": "NoRefLayer", "small_cold": ok, "full": ok, "parity": {"status": "no reference"}},
        {"symbol": "ErrorParity", "small_cold": ok, "full": ok, "parity": {"status": "error"}}]}))
    out = tmp_path / "out"
    assert zoo_gpu.main([str(d), str(out), "--retry-from", str(prior)]) == 0
    assert {p.stem for p in (out / "rows").glob("*.json")} == {"BadExample", "BadParity", "ErrorParity"}
    (tmp_path / "junk.json").write_text("[1, 2]")
    assert zoo_gpu.main([str(d), str(out), "--retry-from", str(tmp_path / "junk.json")]) == 2
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"error: --retry-from {tmp_path / 'junk.json'}: ")


def test_a_timeout_kills_what_the_run_started(tmp_path):
    """A bundle run past its timeout is killed with everything it started (a compiler building its CUDA ops), so
    nothing keeps writing into the shared bundle cache after the row says `timeout`."""
    import time
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    rc, _tail, wall, res = zoo_gpu._child([sys.executable, "-c", script], 3, str(tmp_path / "cache"), 100)
    assert rc == "timeout" and wall < 30 and res == {}
    pid = int(pid_file.read_text())
    time.sleep(0.5)
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"the run's child {pid} still runs ({state})"
