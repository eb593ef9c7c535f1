"""`python -m bundler_lib explain <target | artifacts dir | bundle>`: why is this definition in my bundle?

--why NAME   the shortest path of A1's edges from the target symbol (or an example root) to NAME, each
             edge with the file and line of the reference and its kind
--pruned     the branches A1 removed, with the guard that decided each
--top [N]    the definitions and the files that carry the most inlined lines
Always writes closure.html (a treemap of the inlined lines, the why-path on click) into the artifacts dir.

A1.graph.json's edges are [from, to] only: the line and kind of each edge are found here, with `ast`, in
the from-definition's inlined text (A2.inline.py / A3.triton.py), mapped back to the original file."""

from __future__ import annotations

import ast
import json
import re
from collections import deque
from pathlib import Path

from bundler_lib.closure_artifacts import Block, extra_roots, find_tree, load_blocks, resolve, symbol_id

REGISTRATION = re.compile(r"(direct_register_custom_op|register_custom_op|torch\.library\.|\.register_fake|"
                          r"\.register_kernel|register_op|\.impl$|\.define$|custom_op$)")
KIND_RANK = {"decorator": 0, "base class": 1, "registration": 2, "call": 3, "attribute read": 4,
             "annotation": 5, "reference": 6, "name string": 7}
EXAMPLE = "invocation_example()"


def _dotted(n: ast.AST) -> str:
    if isinstance(n, ast.Name):
        return n.id
    if isinstance(n, ast.Attribute):
        return _dotted(n.value) + "." + n.attr
    if isinstance(n, ast.Call):
        return _dotted(n.func)
    return ""


def _refs(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """(line in the parsed text, kind) of every reference to one of `names`."""
    parent: dict[ast.AST, ast.AST] = {}
    for p in ast.walk(tree):
        for c in ast.iter_child_nodes(p):
            parent[c] = p
    ctx: dict[ast.AST, str] = {}
    for p in ast.walk(tree):
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for dec in p.decorator_list:
                for x in ast.walk(dec):
                    ctx.setdefault(x, "decorator")
        if isinstance(p, ast.ClassDef):
            for base in p.bases + [k.value for k in p.keywords]:
                for x in ast.walk(base):
                    ctx.setdefault(x, "base class")
        if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)):
            anns = [a.annotation for a in p.args.args + p.args.kwonlyargs + p.args.posonlyargs if a.annotation]
            anns += [p.returns] if p.returns else []
            for an in anns:
                for x in ast.walk(an):
                    ctx.setdefault(x, "annotation")
        if isinstance(p, ast.AnnAssign):
            for x in ast.walk(p.annotation):
                ctx.setdefault(x, "annotation")
        if isinstance(p, ast.Call) and REGISTRATION.search(_dotted(p.func)):
            for arg in p.args + [k.value for k in p.keywords]:
                for x in ast.walk(arg):
                    ctx.setdefault(x, "registration")
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id in names:
            hit = n
        elif isinstance(n, ast.Attribute) and n.attr in names:
            hit = n
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in names:
            hit = n       # string annotations, getattr(x, "name"), registries by name
        else:
            continue
        kind = "name string" if isinstance(hit, ast.Constant) else ctx.get(hit)
        if kind is None:
            par = parent.get(hit)
            if isinstance(par, ast.Call) and par.func is hit:
                kind = "call"
            elif isinstance(hit, ast.Attribute):
                kind = "call" if isinstance(par, ast.Call) and par.func is hit else "attribute read"
            elif isinstance(par, ast.Attribute) and par.value is hit:
                kind = "attribute read"
            else:
                kind = "reference"
        out.append((hit.lineno, kind))
    return out


class Closure:
    """A target's closure, read from its artifacts."""

    def __init__(self, d: Path, tree: Path | None = None, use_tree: bool = True):
        self.dir = Path(d)
        self.graph = json.loads((self.dir / "A1.graph.json").read_text())
        self.tree = find_tree(self.dir, self.graph, tree) if use_tree else None
        self.blocks = load_blocks(self.dir, self.graph, self.tree)
        self.by_id: dict[str, Block] = {}
        for b in self.blocks:
            self.by_id.setdefault(b.id, b)
        self.nodes = {n["id"]: n for n in self.graph.get("python_nodes", [])}
        self.root = symbol_id(self.graph)
        self.extra = extra_roots(self.graph)
        self.succ: dict[str, list[str]] = {}
        for a, b in self.graph.get("edges", []):
            self.succ.setdefault(a, []).append(b)
        self._parsed: dict[str, ast.AST | None] = {}
        self._attached: set[tuple[str, str]] = set()
        self._example = (self.dir / "A6.example.py").read_text().splitlines() \
            if (self.dir / "A6.example.py").exists() else []

    # --- paths -----------------------------------------------------------------------------------------
    def bfs(self) -> dict[str, tuple[str | None, str]]:
        """{node: (predecessor, how)} for every node reached from the roots; how is "edge" or "example root"."""
        prev: dict[str, tuple[str | None, str]] = {self.root: (None, "root"), EXAMPLE: (None, "root")}
        q = deque([self.root])
        order = [self.root] + [nid for nid, _, _ in self.extra]
        seen_roots = set()
        while True:
            while q:
                x = q.popleft()
                for y in self.succ.get(x, []):
                    if y not in prev:
                        prev[y] = (x, "edge")
                        q.append(y)
            # the example's roots count only where the symbol does not reach them
            nxt = [r for r in order[1:] if r not in prev and r not in seen_roots]
            if not nxt:
                # statements A1 keeps because they act on a reached definition at import time (an IR
                # provider registering on its op, `Class.attr = ...` after a class): no edge leads to them,
                # their import-time dependency does
                for nid, n in self.nodes.items():
                    if nid in prev:
                        continue
                    dep = next((d for d in n.get("importtime_deps", []) if d in prev and d != EXAMPLE), None)
                    if dep is not None:
                        prev[nid] = (dep, "attached")
                        self._attached.add((dep, nid))
                        q.append(nid)
                if not q:
                    break
                continue
            for r in nxt:
                seen_roots.add(r)
                prev[r] = (EXAMPLE, "example root")
                q.append(r)
        return prev

    def find(self, query: str) -> list[str]:
        """Node ids named by `query`: an id, a name or emit name, `Class.method` (its class), a file suffix."""
        if query in self.nodes:
            return [query]
        f, sep, name = query.rpartition("::")
        name = name.split(".")[0] if name not in {n["name"] for n in self.nodes.values()} else name
        hits = [nid for nid, n in self.nodes.items()
                if (n["name"] == name or n.get("emit_name") == name) and (not sep or n["file"].endswith(f))]
        return sorted(hits, key=lambda h: (h != self.root, h))

    def path(self, target: str, prev=None) -> list[dict] | None:
        prev = prev if prev is not None else self.bfs()
        if target not in prev:
            return None
        chain = [target]
        while prev[chain[-1]][0] is not None:
            chain.append(prev[chain[-1]][0])
        chain.reverse()
        return [self.edge(a, b) for a, b in zip(chain, chain[1:])]

    # --- one edge's line and kind ------------------------------------------------------------------------
    def _tree_of(self, b: Block):
        if b.id not in self._parsed:
            text = b.text
            try:
                self._parsed[b.id] = ast.parse(text)
            except SyntaxError:
                import textwrap
                try:
                    self._parsed[b.id] = ast.parse(textwrap.dedent(text))
                except SyntaxError:
                    self._parsed[b.id] = None
        return self._parsed[b.id]

    def _names(self, nid: str) -> set[str]:
        n = self.nodes.get(nid, {})
        names = {n.get("name", ""), n.get("emit_name", "")}
        for x in n.get("names", []):
            names.update({x.get("name", ""), x.get("emit_name", "")})
        return {x for x in names if x and "<" not in x}

    def edge(self, a: str, b: str) -> dict:
        to = self.nodes.get(b, {})
        e = {"from": a, "to": b, "to_name": to.get("name", b), "to_file": to.get("file"), "to_line": to.get("line")}
        if a == EXAMPLE:
            names = self._names(b)
            line = next((i + 1 for i, ln in enumerate(self._example)
                         if any(re.search(rf"\b{re.escape(x)}\b", ln) for x in names)), None)
            e.update(kind="example root", file="A6.example.py", line=line, exact=line is not None, ref_names=sorted(names),
                     why=next((w for nid, _, w in self.extra if nid == b), ""))
            return e
        attached = (a, b) in self._attached
        blk = self.by_id.get(b if attached else a)
        if attached:          # the reference is in the attached statement, to the definition it acts on
            b_names = self._names(a)
        if blk is None:
            e.update(kind="reference", file=self.nodes.get(a, {}).get("file"), line=self.nodes.get(a, {}).get("line"),
                     exact=False, note="no inlined text for the from-definition")
            return e
        names = b_names if attached else self._names(b)
        tree = self._tree_of(blk)
        hits = _refs(tree, names) if tree is not None else []
        if not hits:                 # generated text, or a reference A1 resolved through an import/alias
            for i, ln in enumerate(blk.text.splitlines()):
                if any(re.search(rf"\b{re.escape(x)}\b", ln) for x in names):
                    hits.append((i + 1, "reference"))
        if not hits:
            e.update(kind="reference", file=blk.file, line=blk.line, exact=False,
                     note=f"no reference to {sorted(names)} in the inlined text (A1 reached it through an import "
                          "or a resolution the text does not show)")
            return e
        spans = {x["line"] for x in blk.node.get("edits", []) if x["op"] == "span"}
        # the strongest kind first; of one kind, a reference A1 left as written (its line shows the name)
        hits.sort(key=lambda h: (h[1] == "name string", KIND_RANK.get(h[1], 9),
                                 (blk.orig_lines[h[0] - 1] if h[0] - 1 < len(blk.orig_lines) else 0) in spans, h[0]))
        ln, kind = hits[0]
        if attached:
            kind = "registration" if kind in ("decorator", "registration") else "attached statement"
            e["note"] = f"{e['to_name']} acts on it at import time (no edge in A1.graph.json; its importtime_deps)"
        orig = blk.orig_lines[ln - 1] if ln - 1 < len(blk.orig_lines) else blk.line
        e["ref_names"] = sorted(names)      # the names the reference at file:line is written with
        e.update(kind=kind, file=blk.file, line=orig, exact=bool(getattr(blk, "exact", False) or self.tree)
                 and not blk.generated, bundle_text=blk.text.splitlines()[ln - 1].strip())
        if blk.generated:
            e["note"] = "generated by A1 (the line is the node's)"
        elif orig in spans and not attached:
            rewrites = [x["text"] for x in blk.node.get("edits", []) if x["op"] == "span" and x["line"] == orig]
            ops = [f"torch.ops.vllm.{o['op']}" for o in self.graph.get("python_custom_ops", [])
                   if o.get("target") in names]
            e["rewritten"] = True
            e["original_names"] = ops + [o["op"] for o in self.graph.get("python_custom_ops", [])
                                         if o.get("target") in names]
            e["ref_names"] = sorted(set(e["ref_names"]) | set(e["original_names"]))
            e["note"] = ("A1 rewrote this reference (" + "; ".join(r[:60] for r in rewrites) + ")"
                         + (f": the file reads {', '.join(ops)}" if ops else ""))
        return e

    # --- pruned / top --------------------------------------------------------------------------------------
    def pruned(self) -> list[dict]:
        out = []
        for gd in self.graph.get("guards", []):
            kept = gd.get("kept")
            if kept in ("both", True):
                continue
            what = {"none": "the whole if (no branch kept)", "orelse": "the if-branch (else kept)",
                    "body": "the else-branch (if any; the if-branch kept)", False: "the branch"}.get(kept, str(kept))
            out.append(dict(gd, pruned=what))
        return sorted(out, key=lambda g: (g["file"], g["line"]))

    def top(self) -> tuple[list[tuple[int, Block]], list[tuple[int, str, int]]]:
        defs = sorted(((b.nlines, b) for b in self.blocks), key=lambda x: (-x[0], x[1].id))
        files: dict[str, list[int]] = {}
        for b in self.blocks:
            files.setdefault(b.file, [0, 0])
            files[b.file][0] += b.nlines
            files[b.file][1] += 1
        fl = sorted(((v[0], f, v[1]) for f, v in files.items()), key=lambda x: (-x[0], x[1]))
        return defs, fl

    def all_paths(self) -> dict[str, list[dict]]:
        prev = self.bfs()
        out = {}
        for b in self.blocks:
            p = self.path(b.id, prev)
            if p is not None:
                out[b.id] = p
        return out


def format_path(c: Closure, target: str, path: list[dict]) -> str:
    lines = [f"why {target} ({len(path)} edge{'s' if len(path) != 1 else ''}):"]
    src = c.graph.get("symbol")
    lines.append(f"  {src}  [target symbol, {c.graph.get('def_file')}:{c.graph.get('def_line')}]"
                 if not path or path[0]["from"] != EXAMPLE else f"  {EXAMPLE}  [the bundle's example]")
    for e in path:
        where = f"{e['file']}:{e['line']}" + ("" if e.get("exact", True) else " (~)")
        lines.append(f"  -> {e['to_name']}  [{e['kind']} at {where}]" + (f"  {e['bundle_text'][:80]}"
                                                                            if e.get("bundle_text") else ""))
        if e.get("note"):
            lines.append(f"       note: {e['note']}")
    return "\n".join(lines)


def run(args) -> int:
    d = resolve(args.target)
    c = Closure(d, tree=args.tree, use_tree=not args.no_tree)
    out: list[str] = [f"{c.graph.get('symbol')}: {d}  ({len(c.blocks)} definitions, "
                      f"{sum(b.nlines for b in c.blocks)} inlined lines; lines "
                      f"{'exact, from ' + str(c.tree) if c.tree else 'from provenance and edits (~ where inferred)'})"]
    rc = 0
    for q in args.why or []:
        ids = c.find(q)
        if not ids:
            out.append(f"why {q}: not in this bundle's closure")
            rc = 1
            continue
        prev = c.bfs()
        for nid in ids:
            p = c.path(nid, prev)
            out.append(format_path(c, nid, p) if p is not None else f"why {nid}: no path from the roots in A1's edges")
            if args.json:
                out.append(json.dumps(p, indent=1))
    if args.pruned:
        pr = c.pruned()
        out.append(f"pruned branches ({len(pr)}):")
        for g in pr:
            out.append(f"  {g['file']}:{g['line']}-{g['end_line']}  if {g['predicate']}  -> {g['value']!r}: "
                       f"pruned {g['pruned']}" + (f"  [assumes {g['assumes']}]" if g.get("assumes") else ""))
    if args.top is not None:
        n = args.top
        defs, files = c.top()
        out.append(f"top {n} definitions by inlined lines:")
        out += [f"  {k:6d}  {b.name}  ({b.file}:{b.line}, {b.section})" for k, b in defs[:n]]
        out.append(f"top {n} files by inlined lines:")
        out += [f"  {k:6d}  {f}  ({m} definitions)" for k, f, m in files[:n]]
    from bundler_lib.explain_html import write_html
    html = Path(args.html) if args.html else d / "closure.html"
    write_html(c, html)
    out.append(f"wrote {html}")
    print("\n".join(out))
    return rc


def add_arguments(p) -> None:
    p.add_argument("target", help="artifacts dir, bundle path (bundles_out/X.py) or target (qwen3_moe_layer, "
                                  "targets/vllm_0_33_0:qwen3_moe_layer)")
    p.add_argument("--why", action="append", metavar="DEFINITION",
                   help="print the shortest path from the symbol to it (name, emit name, file::name)")
    p.add_argument("--pruned", action="store_true", help="list the pruned branches and their guards")
    p.add_argument("--top", type=int, nargs="?", const=15, default=None, metavar="N",
                   help="the N definitions and files with the most inlined lines (15)")
    p.add_argument("--html", default=None, help="where to write the treemap (default <artifacts>/closure.html)")
    p.add_argument("--tree", type=Path, default=None,
                   help="the vLLM tree it was built from (found in the sdist cache when absent): exact lines")
    p.add_argument("--no-tree", action="store_true", help="infer lines from the artifacts only")
    p.add_argument("--json", action="store_true", help="with --why: the path as JSON too")
