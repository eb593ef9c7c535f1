"""Each stage process takes only the bundler_lib modules it imports (rules/stage_sources.py)."""

import ast
import sys
from pathlib import Path

from rules.stage_sources import STAGE_MODULES, stage_sources

ROOT = Path(__file__).resolve().parents[1]
FILES = {str(p.relative_to(ROOT)): p.read_bytes() for p in (ROOT / "bundler_lib").rglob("*.py")}


def test_each_stage_takes_its_import_closure_only():
    got = {s: set(stage_sources(FILES, s)) for s in STAGE_MODULES}
    every = {"bundler_lib/__init__.py", "bundler_lib/__main__.py", "bundler_lib/errors.py"}
    for s, files in got.items():
        assert every <= files, s
    assert "bundler_lib/cuda/emit.py" in got["collect-cuda"] and "bundler_lib/cuda/emit.py" not in got["bind"]
    assert "bundler_lib/example/cli.py" in got["example"]
    assert not any(f.startswith("bundler_lib/example/") for s, fs in got.items() if s != "example" for f in fs)
    assert "bundler_lib/graph/engine.py" in got["graph"] and "bundler_lib/graph/engine.py" not in got["package"]
    assert "bundler_lib/package/reachability.py" in got["package"] and "bundler_lib/package/reachability.py" not in got["graph"]
    assert "bundler_lib/common/contract.py" in got["bind"]   # through the one loader of A1.graph.json
    # no stage takes explain, diff or sdist (tools, not stages)
    assert not any({"bundler_lib/explain.py", "bundler_lib/diff.py", "bundler_lib/sdist.py"} & fs for fs in got.values())


def test_the_closure_is_what_the_stage_really_imports():
    """Importing each stage's module in a fresh interpreter loads no bundler_lib module outside its closure."""
    import subprocess
    for s, mod in STAGE_MODULES.items():
        code = (f"import sys, bundler_lib.__main__, {mod}; "
                "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('bundler_lib'))))")
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        files = set(stage_sources(FILES, s))
        for m in out.stdout.split():
            base = m.replace(".", "/")
            assert base + ".py" in files or base + "/__init__.py" in files, (s, m)
