"""The mutation run: apply each named one-line mutation of `mutations.py` to the rules of A1, A2, A5 and A7, run
the tests that cover it (`pytest -x -q`, only those), restore the file, and report which mutations the tests
killed (a test failed) and which survived (every selected test passed).

    $(./pants --toolchain-python) tests/mutations/run.py [--only NAME ...] [--list] [--no-record]

Not part of ./run-tests (pytest collects only test_*.py; nothing here is one). The result is recorded in
benchmarks/results/<date>-mutations-<n>.json (a new file every run). The file under mutation is restored in a
`finally` (Ctrl-C included); a run killed outright leaves `.restore.json` here, which the next run restores
first. Exit status: 0 when every mutation was killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.mutations.mutations import MUTATIONS, Mutation  # noqa: E402

PENDING = Path(__file__).resolve().parent / ".restore.json"
RESULTS = ROOT / "benchmarks" / "results"


def restore_pending() -> None:
    """A previous run killed outright left a file mutated: put its text back."""
    if PENDING.exists():
        saved = json.loads(PENDING.read_text())
        (ROOT / saved["file"]).write_text(saved["text"])
        PENDING.unlink()
        print(f"restored {saved['file']} left mutated by an interrupted run", file=sys.stderr)


def check(m: Mutation) -> str:
    """The file's text; fails when the snippet does not occur exactly once or the mutant does not parse."""
    text = (ROOT / m.file).read_text()
    n = text.count(m.old)
    if n != 1:
        raise SystemExit(f"mutation {m.name}: the snippet occurs {n} times in {m.file} (must be once): {m.old!r}")
    if m.old == m.new:
        raise SystemExit(f"mutation {m.name}: the replacement equals the snippet")
    mutated = text.replace(m.old, m.new)
    try:
        ast.parse(mutated)
    except SyntaxError as e:
        raise SystemExit(f"mutation {m.name}: the mutant of {m.file} does not parse: {e}")
    return text


def apply_and_test(m: Mutation, timeout: int) -> dict:
    text = check(m)
    path = ROOT / m.file
    PENDING.write_text(json.dumps({"file": m.file, "text": text}))
    t0 = time.monotonic()
    try:
        path.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        try:
            p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                "-p", "no:warnings", *m.tests], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=timeout)
            rc, tail = p.returncode, (p.stdout + p.stderr).strip().splitlines()
        except subprocess.TimeoutExpired:
            rc, tail = -1, ["timed out"]
    finally:
        path.write_text(text)
        PENDING.unlink(missing_ok=True)
    secs = round(time.monotonic() - t0, 1)
    # pytest: 0 all passed (survived), 1 a test failed (killed); anything else (no tests collected, an
    # interrupted or broken run) is an error, neither killed nor survived.
    outcome = {0: "survived", 1: "killed"}.get(rc, "error")
    failed = [ln.split(" ", 1)[1].split(" - ")[0] for ln in tail if ln.startswith("FAILED ")]
    return {"name": m.name, "stage": m.stage, "file": m.file, "outcome": outcome, "rc": rc, "tests": m.tests,
            "failed_test": failed[0] if failed else None, "seconds": secs,
            "tail": tail[-3:] if outcome != "killed" else []}


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def record(results: list[dict], started: str, seconds: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = started[:10]
    n = 1
    while (RESULTS / f"{day}-mutations-{n}.json").exists():
        n += 1
    out = RESULTS / f"{day}-mutations-{n}.json"
    summary = {"date": started, "commit": _commit(), "count": len(results),
               "killed": sum(r["outcome"] == "killed" for r in results),
               "survived": [r["name"] for r in results if r["outcome"] == "survived"],
               "errors": [r["name"] for r in results if r["outcome"] == "error"],
               "seconds": round(seconds, 1), "python": sys.version.split()[0], "mutations": results}
    with open(out, "x") as f:   # never overwrite an earlier run
        json.dump(summary, f, indent=1)
        f.write("\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run only this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations (and check each applies) and exit")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per mutation's tests")
    ap.add_argument("--no-record", action="store_true", help="do not write benchmarks/results/")
    a = ap.parse_args(argv)
    names = [m.name for m in MUTATIONS]
    if len(set(names)) != len(names):
        raise SystemExit("mutation names must be unique")
    unknown = set(a.only) - set(names)
    if unknown:
        raise SystemExit(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    restore_pending()
    chosen = [m for m in MUTATIONS if not a.only or m.name in a.only]
    if a.list:
        for m in chosen:
            check(m)
            print(f"{m.name:34} {m.stage}  {m.file}  -> {' '.join(m.tests)}")
        print(f"{len(chosen)} mutations")
        return 0
    for m in chosen:
        check(m)
    # SIGTERM ends the run as Ctrl-C does: through the finally that restores the file
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    results = []
    for i, m in enumerate(chosen, 1):
        r = apply_and_test(m, a.timeout)
        results.append(r)
        print(f"[{i}/{len(chosen)}] {r['outcome']:8} {m.name:34} {r['seconds']:6.1f}s  {r['failed_test'] or ''}"
              + ("" if r["outcome"] == "killed" else "  " + " | ".join(r["tail"])), flush=True)
    killed = sum(r["outcome"] == "killed" for r in results)
    print(f"{killed}/{len(results)} killed in {time.monotonic() - t0:.0f}s")
    if not a.no_record:
        print(f"recorded in {record(results, started, time.monotonic() - t0).relative_to(ROOT)}")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
