"""`python -m bundler_lib explain ...` and `python -m bundler_lib diff ...`: read-only tools over a target's
artifacts (not stages: no --out). Registered by one line in bundler_lib/__main__.py."""

from __future__ import annotations

import argparse
import sys

from bundler_lib.errors import StageError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m bundler_lib")
    sub = p.add_subparsers(dest="cmd", required=True)
    from bundler_lib import diff, explain
    explain.add_arguments(sub.add_parser("explain", help="why is a definition in the bundle; closure.html",
                                         description=explain.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    diff.add_arguments(sub.add_parser("diff", help="what changed between two builds", description=diff.__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    try:
        return (explain if args.cmd == "explain" else diff).run(args)
    except StageError as e:
        print(f"error: {e.message()}", file=sys.stderr)
        return 2
