"""`python -m bundler_lib diff <target-or-bundle> <other>`: what changed between two builds of a layer.

Definitions added, removed or changed, by vLLM file (identity: file and name; text compared with the
provenance line numbers left out), with a unified diff of each changed one; CUDA ops (A4.manifest.json) and
Triton kernels (A3) added, removed or changed; guards that flipped (same file and predicate, another value or
kept branch). Several targets at once: `--pair A B` repeated, `--markdown` for a report."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from bundler_lib.closure_artifacts import load_blocks, resolve


def _json(d: Path, name: str) -> dict:
    p = d / name
    return json.loads(p.read_text()) if p.exists() else {}


def _defs(d: Path) -> dict[tuple[str, str], dict]:
    """{(file, name): definition}. Statements A1 attaches to a class are named by their line
    (`GroupShape.<68>`): they are numbered in file order instead, so that an edit above them is no change."""
    out: dict[tuple[str, str], dict] = {}
    seen: dict[tuple[str, str], int] = {}
    for b in sorted(load_blocks(d), key=lambda b: (b.file, b.line)):
        name = re.sub(r"\.<\d+>$", ".<attached>", b.name)
        base = (b.file, name)
        seen[base] = seen.get(base, 0) + 1
        key = base if seen[base] == 1 else (b.file, f"{name}#{seen[base]}")
        out[key] = {"text": b.text, "kind": b.kind, "section": b.section, "line": b.line, "lines": b.nlines}
    return out


def _ops(d: Path) -> dict[str, dict]:
    m = _json(d, "A4.manifest.json")
    sha = {f["path"]: f.get("sha256") for f in m.get("cuda_files", [])}
    units = {u["id"]: u for u in m.get("translation_units", [])}
    schema = {w["op"]: w.get("schema") for w in m.get("wrappers", [])}
    out = {}
    for op in m.get("ops", []):
        name = op.get("op") or f"{op.get('namespace', '_C')}.{op.get('name')}"
        unit = units.get(op.get("translation_unit"), {})
        files = unit.get("files", [])
        out[name] = {"schema": schema.get(name) or op.get("schema"), "kernels": sorted(op.get("kernels", [])),
                     "sources": {f: sha.get(f) for f in files}, "stub": bool(op.get("stub"))}
    for w in m.get("wrappers", []):
        out.setdefault(w["op"], {"schema": w.get("schema"), "kernels": [], "sources": {}, "stub": bool(w.get("stub"))})
    return out


def _kernels(d: Path, defs: dict) -> dict[tuple[str, str], dict]:
    m = _json(d, "A3.manifest.json")
    out = {}
    for k in m.get("kernels", []):
        text = defs.get((k["file"], k["name"]), {}).get("text", "")
        out[(k["file"], k["name"])] = {"text": text, "meta": k.get("meta", {})}
    return out


def _guards(d: Path) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for gd in _json(d, "A1.graph.json").get("guards", []):
        out.setdefault((gd["file"], gd["predicate"]), []).append(gd)
    return out


def compare(a: Path, b: Path) -> dict:
    """The differences between artifacts dirs `a` (old) and `b` (new), as data."""
    da, db = _defs(a), _defs(b)
    ka, kb = _kernels(a, da), _kernels(b, db)
    # Triton kernels are listed as kernels, not as definitions
    da = {k: v for k, v in da.items() if k not in ka}
    db = {k: v for k, v in db.items() if k not in kb}
    res: dict = {"old": str(a), "new": str(b),
                 "symbol": [_json(a, "A1.graph.json").get("symbol"), _json(b, "A1.graph.json").get("symbol")]}
    res["defs_added"] = sorted(k for k in db if k not in da)
    res["defs_removed"] = sorted(k for k in da if k not in db)
    changed = []
    for k in sorted(set(da) & set(db)):
        ta, tb = da[k]["text"], db[k]["text"]
        if ta != tb:
            diff = "".join(difflib.unified_diff(ta.splitlines(True), tb.splitlines(True),
                                                f"a/{k[0]}:{k[1]} (L{da[k]['line']})",
                                                f"b/{k[0]}:{k[1]} (L{db[k]['line']})", n=2))
            ca, cb = _code(ta), _code(tb)
            changed.append({"file": k[0], "name": k[1], "diff": diff, "old_lines": da[k]["lines"],
                            "new_lines": db[k]["lines"], "code": ca is None or ca != cb})
    res["defs_changed"] = changed
    res["defs_same"] = sum(1 for k in set(da) & set(db) if da[k]["text"] == db[k]["text"])
    res["lines"] = [sum(v["lines"] for v in da.values()), sum(v["lines"] for v in db.values())]
    oa, ob = _ops(a), _ops(b)
    res["ops_added"] = sorted(set(ob) - set(oa))
    res["ops_removed"] = sorted(set(oa) - set(ob))
    res["ops_changed"] = []
    for k in sorted(set(oa) & set(ob)):
        what = [f for f in ("schema", "kernels", "stub") if oa[k][f] != ob[k][f]]
        if oa[k]["sources"] != ob[k]["sources"]:
            sa, sb = oa[k]["sources"], ob[k]["sources"]
            parts = []
            for label, fs in (("changed", [f for f in sa if f in sb and sa[f] != sb[f]]),
                              ("only old", [f for f in sa if f not in sb]), ("only new", [f for f in sb if f not in sa])):
                if fs:
                    fs = sorted(fs)
                    parts.append(f"{label} " + ", ".join(fs[:4]) + (f" (+{len(fs) - 4} more)" if len(fs) > 4 else ""))
            what.append("sources: " + "; ".join(parts))
        if what:
            res["ops_changed"].append({"op": k, "what": what, "old": {f: oa[k][f] for f in ("schema", "kernels")},
                                       "new": {f: ob[k][f] for f in ("schema", "kernels")}})
    res["kernels_added"] = sorted(set(kb) - set(ka))
    res["kernels_removed"] = sorted(set(ka) - set(kb))
    res["kernels_changed"] = sorted(k for k in set(ka) & set(kb) if ka[k]["text"] != kb[k]["text"]
                                    or ka[k]["meta"] != kb[k]["meta"])
    res["kernel_diffs"] = [{"file": f, "name": n, "diff": "".join(difflib.unified_diff(
        ka[(f, n)]["text"].splitlines(True), kb[(f, n)]["text"].splitlines(True), f"a/{f}:{n}", f"b/{f}:{n}", n=2))}
        for f, n in res["kernels_changed"]]
    ga, gb = _guards(a), _guards(b)
    flips = []
    for k in sorted(set(ga) & set(gb)):
        for x, y in zip(ga[k], gb[k]):
            if x.get("value") != y.get("value") or x.get("kept") != y.get("kept"):
                flips.append({"file": k[0], "predicate": k[1], "old": {f: x.get(f) for f in ("line", "value", "kept")},
                              "new": {f: y.get(f) for f in ("line", "value", "kept")}})
    res["guards_flipped"] = flips
    res["guards_only_old"] = sorted(set(ga) - set(gb))
    res["guards_only_new"] = sorted(set(gb) - set(ga))
    return res


def _code(text: str) -> str | None:
    """The definition's code without comments, docstrings and layout (None when it does not parse alone)."""
    import ast
    import textwrap
    try:
        tree = ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return None
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _by_file(keys) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f, n in keys:
        out.setdefault(f, []).append(n)
    return out


def _cut(diff: str, max_lines: int) -> str:
    lines = diff.rstrip("\n").split("\n")
    if max_lines and len(lines) > max_lines:
        return "\n".join(lines[:max_lines] + [f"... ({len(lines) - max_lines} more diff lines: run the command for all)"])
    return "\n".join(lines)


def render(res: dict, markdown: bool = False, diffs: bool = True, max_lines: int = 0) -> str:
    h = (lambda s: f"### {s}") if markdown else (lambda s: f"== {s}")
    li = "- " if markdown else "  "
    b = "- " if markdown else ""
    out = [f"{'## ' if markdown else ''}{res['symbol'][0]}: {res['old']} -> {res['new']}"] + ([""] if markdown else []) + [
           f"{b}definitions: {len(res['defs_added'])} added, {len(res['defs_removed'])} removed, "
           f"{len(res['defs_changed'])} changed ({sum(1 for c in res['defs_changed'] if not c.get('code', True))} "
           f"of them in docstrings/comments only), {res['defs_same']} unchanged; inlined lines "
           f"{res['lines'][0]} -> {res['lines'][1]}",
           f"{b}CUDA ops: {len(res['ops_added'])} added, {len(res['ops_removed'])} removed, {len(res['ops_changed'])} "
           f"changed; Triton kernels: {len(res['kernels_added'])} added, {len(res['kernels_removed'])} removed, "
           f"{len(res['kernels_changed'])} changed; guards flipped: {len(res['guards_flipped'])}", ""]
    for title, keys in (("definitions added", res["defs_added"]), ("definitions removed", res["defs_removed"])):
        if keys:
            out.append(h(title))
            for f, names in sorted(_by_file(keys).items()):
                out.append(f"{li}`{f}`: {', '.join(names)}" if markdown else f"{li}{f}: {', '.join(names)}")
            out.append("")
    for title, code in (("definitions changed", True), ("definitions changed in docstrings, comments or layout only", False)):
        keys = [(c["file"], c["name"]) for c in res["defs_changed"] if c.get("code", True) == code]
        if keys:
            out.append(h(title))
            for f, names in sorted(_by_file(keys).items()):
                out.append(f"{li}`{f}`: {', '.join(names)}" if markdown else f"{li}{f}: {', '.join(names)}")
            out.append("")
    for title, key in (("CUDA ops added", "ops_added"), ("CUDA ops removed", "ops_removed")):
        if res[key]:
            out += [h(title)] + [f"{li}{o}" for o in res[key]] + [""]
    if res["ops_changed"]:
        out.append(h("CUDA ops changed"))
        out += [f"{li}{c['op']}: {'; '.join(c['what'])}" for c in res["ops_changed"]] + [""]
    for title, key in (("Triton kernels added", "kernels_added"), ("Triton kernels removed", "kernels_removed"),
                       ("Triton kernels changed", "kernels_changed")):
        if res[key]:
            out += [h(title)] + [f"{li}{n} ({f})" for f, n in res[key]] + [""]
    if res["guards_flipped"]:
        out.append(h("guards flipped"))
        for g in res["guards_flipped"]:
            o, n = g["old"], g["new"]
            if o["value"] != n["value"]:
                what = f"value {o['value']!r} -> {n['value']!r}, kept {o['kept']} -> {n['kept']}"
            else:   # decided alike; what it keeps differs: the statement gained or lost a branch
                what = f"value {o['value']!r} (same), kept {o['kept']} -> {n['kept']} (its branches changed)"
            out.append(f"{li}{g['file']}:{o['line']}->{n['line']}  `{g['predicate']}`: {what}")
        out.append("")
    if diffs and (res["defs_changed"] or res.get("kernel_diffs")):
        out.append(h("unified diffs of the changed definitions and kernels"))
        # code changes first, then the kernels, then the docstring/comment-only ones
        for c in [c for c in res["defs_changed"] if c.get("code", True)] + \
                [dict(k, old_lines="", new_lines="") for k in res.get("kernel_diffs", [])] + \
                [c for c in res["defs_changed"] if not c.get("code", True)]:
            if markdown:
                size = f" ({c['old_lines']} -> {c['new_lines']} lines)" if c["old_lines"] != "" else " (kernel)"
                out += [f"<details><summary>{c['file']}: {c['name']}{size}</summary>", "", "```diff", c["diff"].rstrip("\n"), "```", "", "</details>", ""]
            else:
                out += [c["diff"].rstrip("\n"), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def summary_table(results: list[dict]) -> str:
    rows = ["| symbol | definitions +/-/changed/same | inlined lines | CUDA ops +/-/changed | Triton kernels +/-/changed "
            "| guards flipped |", "|---|---|---|---|---|---|"]
    for r in results:
        docs = sum(1 for c in r["defs_changed"] if not c.get("code", True))
        rows.append(f"| {r['symbol'][0]} | {len(r['defs_added'])} / {len(r['defs_removed'])} / "
                    f"{len(r['defs_changed'])} ({docs} docs only) / "
                    f"{r['defs_same']} | {r['lines'][0]} -> {r['lines'][1]} | {len(r['ops_added'])} / "
                    f"{len(r['ops_removed'])} / {len(r['ops_changed'])} | {len(r['kernels_added'])} / "
                    f"{len(r['kernels_removed'])} / {len(r['kernels_changed'])} | {len(r['guards_flipped'])} |")
    return "\n".join(rows) + "\n"


def run(args) -> int:
    pairs = [(args.old, args.new)] if args.old else []
    pairs += [tuple(p) for p in (args.pair or [])]
    if not pairs:
        raise SystemExit("diff: give <old> <new> or --pair OLD NEW")
    root = Path.cwd()
    results = []
    for a, b in pairs:
        res = compare(resolve(a), resolve(b))
        for k in ("old", "new"):          # paths as the user named them, relative where possible
            p = Path(res[k])
            res[k] = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
        results.append(res)
    if args.json:
        text = json.dumps(results if len(results) > 1 else results[0], indent=1, sort_keys=True, default=list) + "\n"
    else:
        parts = []
        if args.markdown and args.title:
            parts.append(f"# {args.title}\n")
            if args.preamble:
                parts.append(args.preamble.rstrip("\n") + "\n")
        if args.markdown and len(results) > 1:
            parts.append(summary_table(results))
        for res in results:
            parts.append(render(res, markdown=args.markdown, diffs=not args.no_diffs, max_lines=args.max_diff_lines))
        text = "\n".join(parts)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0


def add_arguments(p) -> None:
    p.add_argument("old", nargs="?", help="target, bundle path or artifacts dir (the old build)")
    p.add_argument("new", nargs="?", help="the same for the new build")
    p.add_argument("--pair", nargs=2, action="append", metavar=("OLD", "NEW"), help="another pair (repeatable)")
    p.add_argument("--markdown", action="store_true", help="a Markdown report")
    p.add_argument("--title", default=None, help="with --markdown: the report's title")
    p.add_argument("--preamble", default=None, help="with --markdown --title: a paragraph under the title")
    p.add_argument("--no-diffs", action="store_true", help="leave the unified diffs out")
    p.add_argument("--max-diff-lines", type=int, default=0, metavar="N", help="cut each unified diff at N lines")
    p.add_argument("--json", action="store_true", help="the differences as JSON")
    p.add_argument("-o", "--output", default=None, help="write to this file")
