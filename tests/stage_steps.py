"""A0 to A7 in-process, as the Pants rules chain them, for tests that build one bundle of the real tree."""

import json
from pathlib import Path

from bundler_lib.__main__ import main


def build_bundle(tree: Path, out: Path, symbol: str, model: str, model_config: Path, runtime_python: Path,
                 variant: dict | None = None, hint: str | None = None) -> dict:
    """The bundle `out/<symbol>.py` with the arguments rules/package.py gives each stage (A1 decided by the model
    config and the variant; `hint`, the symbol's file); returns A7's report."""
    tree, graph = str(tree), str(out / "A1.graph.json")
    steps = [["license", "--tree", tree],
             ["graph", "--tree", tree, "--symbol", symbol, "--variant", json.dumps(variant or {}, sort_keys=True),
              "--model-config", str(model_config)] + (["--hint", hint] if hint else []),
             ["collect-python", "--tree", tree, "--graph", graph],
             ["collect-triton", "--tree", tree, "--graph", graph],
             ["collect-cuda", "--tree", tree, "--graph", graph],
             ["bind", "--inputs", str(out)],
             ["example", "--graph", graph, "--tree", tree, "--model", model, "--model-config", str(model_config)],
             ["package", "--inputs", str(out), "--bundle-name", f"{symbol}.py", "--runtime-python",
              str(runtime_python)]]
    for argv in steps:
        assert main(argv + ["--out", str(out)]) == 0, argv[0]
    return json.loads((out / "A7.report.json").read_text())
