"""`python -m bundler_lib <stage> ...`: run one stage outside Pants (the rules run exactly this)."""

import argparse
import json
import sys
from pathlib import Path

from bundler_lib.errors import StageError

STAGES = {
    # stage: (aliases, help)
    "license": (["A0", "a0"], "A0: check the tree's license, write A0.license.json"),
    "graph": (["A1", "a1"], "A1: locate the symbol and build its reachability graph"),
    "collect-python": (["A2", "a2"], "A2: slice the Python closure verbatim"),
    "collect-triton": (["A3", "a3"], "A3: collect the @triton.jit kernels"),
    "collect-cuda": (["A4", "a4"], "A4: embed the CUDA sources of the compiled ops"),
    "bind": (["A5", "a5"], "A5: merge A2/A3/A4 and rewire op call sites"),
    "example": (["A6", "a6"], "A6: write the model-aware invocation_example()"),
    "package": (["A7", "a7"], "A7: compose, write atomically and verify the bundle"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bundler_lib", description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)
    s = {name: sub.add_parser(name, aliases=al, help=h) for name, (al, h) in STAGES.items()}

    s["license"].add_argument("--tree", type=Path, required=True)

    s["graph"].add_argument("--tree", type=Path, required=True)
    s["graph"].add_argument("--symbol", required=True)
    s["graph"].add_argument("--hint", default=None, help="symbol_file_hint: path in the tree")
    s["graph"].add_argument("--variant", default="{}", help="JSON object of variant choices")
    s["graph"].add_argument("--model-config", type=Path, default=None,
                            help="the target model's config.json: branches it decides are pruned")

    for name in ("collect-python", "collect-triton", "collect-cuda"):
        s[name].add_argument("--tree", type=Path, required=True)
        s[name].add_argument("--graph", type=Path, required=True, help="A1.graph.json")

    s["collect-triton"].add_argument("--scan-data-reads", action="store_true",
                                     help="only find the data files the reached code reads next to its module: "
                                          "write A3.data_reads.json")
    s["collect-triton"].add_argument("--model-config", type=Path, default=None,
                                     help="with --scan-data-reads: the model's config.json (selects e.g. the fused "
                                          "MoE configs of its E and N)")
    s["collect-triton"].add_argument("--data-reads", type=Path, default=None,
                                     help="A3.data_reads.json of the scan: embed the files it selects (A3.data.py)")
    s["collect-triton"].add_argument("--moe-configs", type=Path, default=None,
                                     help="a directory of the target's tuned fused-MoE configs (its moe_configs, at "
                                          "their workspace paths): embedded beside vLLM's")
    s["collect-cuda"].add_argument("--stub-op", action="append", default=[], metavar="PATTERN",
                                   help="op pattern (e.g. '_C.*quant*') that may be stubbed when it cannot be embedded")

    s["bind"].add_argument("--inputs", type=Path, required=True,
                           help="directory holding A1.graph.json and the A2, A3, A4 artifacts")

    s["example"].add_argument("--graph", type=Path, required=True, help="A1.graph.json")
    s["example"].add_argument("--model", default=None, help="model id, e.g. Qwen/Qwen3-30B-A3B")
    s["example"].add_argument("--model-config", type=Path, default=None, help="its config.json")
    s["example"].add_argument("--workload", choices=["prefill", "decode"], default=None)
    s["example"].add_argument("--tree", type=Path, default=None,
                              help="the vLLM files A6 reads: the graph's, and the config registry's")

    s["package"].add_argument("--inputs", type=Path, required=True,
                              help="directory holding A0.license.json, A1.graph.json, A5.module.py, A6.example.py")
    s["package"].add_argument("--bundle-name", required=True, help="file name of the bundle, e.g. RMSNorm.py")
    s["package"].add_argument("--import-check", choices=["required", "report"], default="required",
                              help="required (strict): an import failure, a run-time undefined name, a definition "
                                   "or import nothing reaches fails A7; report: recorded in A7.report.json, the "
                                   "bundle is written")
    s["package"].add_argument("--unreachable", choices=["report", "error"], default=None,
                              help="override --import-check for definitions or imports nothing reaches")
    s["package"].add_argument("--runtime-python", type=Path, default=None,
                              help="interpreter of the bundle runtime (torch, triton, ninja only) the import check "
                                   "runs in; default: this interpreter")

    for sp in s.values():
        sp.add_argument("--out", type=Path, required=True, help="directory the artifacts go to")
    return p


def _canonical(stage: str) -> str:
    for name, (aliases, _) in STAGES.items():
        if stage == name or stage in aliases:
            return name
    raise AssertionError(stage)


def main(argv=None) -> int:
    if (sys.argv[1:] if argv is None else list(argv))[:1] in (["explain"], ["diff"]): return __import__("bundler_lib.inspect_cli", fromlist=["main"]).main(argv)  # noqa: E501,E701
    args = _parser().parse_args(argv)
    stage = _canonical(args.stage)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if stage == "license":
            from bundler_lib import license as m
            m.run(tree=args.tree, out=args.out)
        elif stage == "graph":
            from bundler_lib import graph as m
            try:
                variant = json.loads(args.variant)
            except json.JSONDecodeError as e:
                raise StageError("A1 graph", "--variant", f"not valid JSON ({e})", "pass a JSON object") from None
            try:
                m.run(tree=args.tree, out=args.out, symbol=args.symbol, hint=args.hint, variant=variant,
                      model_config=args.model_config)
            except StageError as e:
                if e.input.startswith("symbol "):  # not found: perhaps in a file that is not UTF-8
                    _refuse_undecodable_definition(args.tree, args.symbol)
                raise
        elif stage == "collect-python":
            from bundler_lib import collect_python as m
            m.run(tree=args.tree, graph=args.graph, out=args.out)
        elif stage == "collect-triton":
            from bundler_lib import collect_triton as m
            if args.scan_data_reads and args.data_reads is not None:
                raise StageError("A3 collect-triton", "--data-reads", "given with --scan-data-reads",
                                 "run the scan first, then the collection with --data-reads")
            if args.scan_data_reads:
                m.scan_data_reads(tree=args.tree, graph=args.graph, out=args.out, model_config=args.model_config)
            else:
                m.run(tree=args.tree, graph=args.graph, out=args.out, data_reads=args.data_reads,
                      moe_configs=args.moe_configs)
        elif stage == "collect-cuda":
            from bundler_lib import collect_cuda as m
            m.run(tree=args.tree, graph=args.graph, out=args.out, stub_ops=tuple(args.stub_op))
        elif stage == "bind":
            from bundler_lib import bind as m
            m.run(inputs=args.inputs, out=args.out)
        elif stage == "example":
            from bundler_lib import example as m
            m.run(graph=args.graph, model=args.model, model_config=args.model_config,
                  workload=args.workload, out=args.out, tree=args.tree)
        elif stage == "package":
            from bundler_lib import package as m
            strict = args.import_check == "required"
            m.run(inputs=args.inputs, out=args.out, bundle_name=args.bundle_name,
                  allow_import_failure=not strict, strict_undefined_names=strict,
                  unreachable=args.unreachable or ("error" if strict else "report"),
                  runtime_python=args.runtime_python)
    except StageError as e:
        print(f"error: {e.message()}", file=sys.stderr)
        return 2
    return 0


def _refuse_undecodable_definition(tree: Path, symbol: str) -> None:
    """A1 skips files that are not UTF-8; when the symbol is defined in one, say so (file and byte offset)
    instead of reporting a misspelt symbol."""
    import re

    pat = re.compile(rb"^(?:class|def|async\s+def)\s+" + re.escape(symbol.encode()) + rb"\b", re.M)
    for path in sorted(Path(tree).rglob("*.py")):
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            if pat.search(data):
                rel = path.relative_to(tree).as_posix()
                raise StageError("A1 graph", f"{rel} (defines {symbol})",
                                 f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}",
                                 "save the file as UTF-8 (fix or remove that byte)") from None


if __name__ == "__main__":
    sys.exit(main())
