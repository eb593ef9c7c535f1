"""Read a target's stage artifacts back into definitions (shared by `explain` and `diff`).

A definition is one inlined block of `A2.inline.py` (Python section) or `A3.triton.py` (Triton section): its
node in `A1.graph.json`, its text as the bundle carries it, and, for every line of that text, the line of the
original vLLM file it comes from. The tree itself is not among the artifacts: the original line numbers are
rebuilt from the block's provenance comment (`# --- Inlined from <path>:L<a>-L<b>`) and the node's `edits`
(the same replay as `bundler_lib/common/edits.py`, kept here so that this read-only tool does not depend on A1's
internals)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bundler_lib.errors import StageError

PROV = re.compile(r"^# --- Inlined from (?P<file>\S+):L(?P<a>\d+)-L(?P<b>\d+) \((?P<lic>[^)]*)\) ---$")
GENERATED = "# (generated for "
WRAP = re.compile(r"^try:  # needs .* at import time; skipped when missing$")
WRAP_TAIL = ["except (ImportError, NameError, AttributeError):", "    pass"]
EXTRA_ROOTS = re.compile(r"^extra roots \((?P<why>[^)]*\)?)\): (?P<ids>.*?)(?:; not in this tree: .*)?$")
STAGE = "explain"


@dataclass
class Block:
    """One inlined definition."""
    id: str
    name: str
    emit_name: str
    file: str
    line: int
    end_line: int
    kind: str
    section: str                  # "python" (A2) or "triton" (A3)
    text: str                     # the block's code as the bundle carries it (no provenance, no file header)
    orig_lines: list[int]         # per line of `text`: its line in the original file (exact unless `approx`)
    artifact: str                 # A2.inline.py / A3.triton.py
    artifact_line: int            # line of `text`'s first line in that artifact
    generated: bool = False       # written by A1 (a node with "text"): its lines do not come from the file
    node: dict = field(default_factory=dict, repr=False)

    @property
    def nlines(self) -> int:
        return self.text.count("\n")


def resolve(arg: str, root: Path | None = None) -> Path:
    """The artifacts directory named by `arg`: the directory itself, a bundle path (bundles_out/X.py, found
    through the A7.report.json that names it), or a target (`qwen3_moe_layer`, `targets:qwen3_moe_layer`,
    `targets/vllm_0_33_0:qwen3_moe_layer`: its BUILD's `output_path` says where its artifacts are)."""
    root = Path.cwd() if root is None else Path(root)
    p = Path(arg)
    cand = p if p.is_absolute() else root / p
    if cand.is_dir() and (cand / "A1.graph.json").exists():
        return cand
    if cand.is_file() and cand.suffix == ".py":
        import hashlib
        digest = hashlib.sha256(cand.read_bytes()).hexdigest()
        hits = []
        for rep in sorted((cand.parent / "artifacts").glob("*/A7.report.json")):
            try:
                r = json.loads(rep.read_text())
            except ValueError:
                continue
            if Path(str(r.get("path", ""))).name == cand.name:
                hits.append((r.get("sha256") == digest, rep.parent))
        hits.sort(key=lambda h: not h[0])
        if hits:
            return hits[0][1]
        raise StageError(STAGE, arg, "no A7.report.json beside it names this bundle",
                         "pass its artifacts directory (bundles_out/artifacts/<target>)")
    spec, _, name = arg.rpartition(":")
    name = name or arg
    out_dir = "bundles_out"
    if spec:
        build = root / spec / "BUILD"
        if build.exists():
            text = build.read_text()
            for m in re.finditer(r"monolithic_bundle\((.*?)\n\)", text, re.S):
                body = m.group(1)
                if re.search(rf"\bname\s*=\s*[\"']{re.escape(name)}[\"']", body):
                    op = re.search(r"\boutput_path\s*=\s*[\"']([^\"']+)[\"']", body)
                    if op and "/" in op.group(1):
                        out_dir = str(Path("bundles_out") / Path(op.group(1)).parent)
    # artifacts/<the target's directory, / as .>.<name>/ (a bare name is a target of targets/BUILD)
    d = root / out_dir / "artifacts" / f"{(spec or 'targets').replace('/', '.')}.{name}"
    if (d / "A1.graph.json").exists():
        return d
    raise StageError(STAGE, arg, f"no artifacts found (looked for {d.relative_to(root) if d.is_relative_to(root) else d})",
                     "build it first (./pants package <target>) or pass the artifacts directory")


def _load_json(d: Path, name: str, required: bool = True) -> dict:
    p = d / name
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        if required:
            raise StageError(STAGE, str(p), "missing", "build the target with ./pants package") from None
        return {}


def line_map(a: int, b: int, edits: list[dict], out_lines: list[str],
             src: list[str] | None = None) -> tuple[list[int], bool]:
    """For each line of a block's text (`out_lines`, the result of applying `edits` to lines a..b of the
    original file), the original line it comes from. Returns (lines, exact): a blank-line run that A1's
    delete edits drop after a deleted statement is not known without the file; it is inferred (black's
    spacing: one line inside a block) and `exact` is False when the total did not confirm it."""
    alive: dict[int, int] = {i: 1 for i in range(a, b + 1)}       # line -> number of output lines it gives
    removed: set[int] = set()
    for e in edits:
        if e["op"] in ("delete", "pass"):
            removed.update(range(e["line"], e["end_line"] + 1))
    for e in sorted((e for e in edits if e["op"] == "span"), key=lambda e: (e["line"], e["col"]), reverse=True):
        s, t = e["line"], e["end_line"]
        if s < a or t > b or any(i in removed for i in range(s, t + 1)) or alive.get(s) is None or alive.get(t) is None:
            continue
        alive[s] = 1 + e["text"].count("\n")
        for i in range(s + 1, t + 1):
            alive[i] = None
    for e in edits:
        if e["op"] == "delete":
            for i in range(e["line"], e["end_line"] + 1):
                if i in alive:
                    alive[i] = None
    for e in edits:
        if e["op"] == "pass":
            if e["line"] in alive:
                alive[e["line"]] = 1       # `pass` replaces the statement's first line, deleted or not
            for i in range(e["line"] + 1, e["end_line"] + 1):
                if i in alive:
                    alive[i] = None
    cands = [i for i in sorted(alive) if alive[i] is not None]
    # points where a blank run may have been dropped: the first surviving line after a delete edit
    after_delete = set()
    for e in edits:
        if e["op"] == "delete":
            nxt = next((i for i in cands if i > e["end_line"]), None)
            if nxt is not None:
                after_delete.add(nxt)
    expanded = sum(alive[i] for i in cands)
    if src is not None and b <= len(src):
        return _exact_map(a, b, edits, alive, cands, src), True
    extra = expanded - len(out_lines)
    result: list[int] = []
    k = 0
    exact = extra == 0
    while k < len(cands) and len(result) < len(out_lines):
        i = cands[k]
        j = len(result)
        if extra > 0 and i in after_delete and j > 0 and not out_lines[j - 1].strip() and out_lines[j].strip():
            # A1 dropped a blank run here (how long is not known without the file): black's one line
            later = sum(1 for x in cands[k + 1:] if x in after_delete)
            skip = extra if later == 0 else min(1, extra)
            k += skip
            extra -= skip
            continue
        result.extend([i] * alive[i])
        k += 1
    if len(result) < len(out_lines):
        exact = False
        result.extend([result[-1] if result else a] * (len(out_lines) - len(result)))
    return result[: len(out_lines)], exact


def _exact_map(a: int, b: int, edits: list[dict], alive: dict, cands: list[int], src: list[str]) -> list[int]:
    """The replay of common/edits.py with the file's text: which blank lines a delete took with it."""
    passed = {i for e in edits if e["op"] == "pass" for i in range(e["line"] + 1, e["end_line"] + 1)}
    pass_lines = {e["line"] for e in edits if e["op"] == "pass"}
    buf = {i: (src[i - 1] if ((alive.get(i) is not None and i not in pass_lines) or i in passed) else None)
           for i in range(a, b + 1)}
    for e in sorted((e for e in edits if e["op"] == "delete"), key=lambda e: e["line"]):
        before = next((buf[i] for i in range(e["line"] - 1, a - 1, -1) if buf.get(i) is not None), None)
        if before is None or before.strip():
            continue
        i = e["end_line"] + 1
        while i <= b and (buf.get(i) is None or not buf[i].strip()):
            buf[i] = None
            i += 1
    for i in pass_lines:
        if i in buf:
            buf[i] = "pass"
    return [i for i in sorted(buf) if buf[i] is not None and i not in passed for _ in range(alive[i])]


def _split_blocks(text: str) -> list[tuple[re.Match, int, list[str]]]:
    """[(provenance match, 1-based artifact line of the provenance comment, lines after it)]."""
    lines = text.split("\n")
    out = []
    cur = None
    for idx, ln in enumerate(lines):
        m = PROV.match(ln)
        if m:
            cur = (m, idx + 1, [])
            out.append(cur)
        elif cur is not None:
            cur[2].append(ln)
    return out


def _is_header(ln: str) -> bool:
    s = ln.strip()
    return s.startswith("#") and ("SPDX" in s or "opyright" in s)


def load_blocks(d: Path, graph: dict | None = None, tree: Path | None = None) -> list[Block]:
    """Every inlined definition of the artifacts directory `d`, A3's Triton section first (final order).
    With `tree` (the vLLM tree the target was built from) each line's original number is exact; without it,
    inferred from the provenance and the edits (`Block.exact` False where a dropped blank run made it a guess)."""
    g = graph if graph is not None else _load_json(d, "A1.graph.json")
    srcs: dict[str, list[str] | None] = {}

    def src_of(f: str):
        if tree is None:
            return None
        if f not in srcs:
            try:
                srcs[f] = (Path(tree) / f).read_text(encoding="utf-8").splitlines()
            except (FileNotFoundError, UnicodeDecodeError):
                srcs[f] = None
        return srcs[f]
    nodes = {n["id"]: n for n in g.get("python_nodes", [])}
    by_span: dict[tuple, list[dict]] = {}
    for n in g.get("python_nodes", []):
        by_span.setdefault((n["file"], n["line"], n["end_line"]), []).append(n)
    blocks: list[Block] = []
    for artifact, section, manifest, key in (("A3.triton.py", "triton", "A3.manifest.json", "topo_order"),
                                             ("A2.inline.py", "python", "A2.manifest.json", "topo_order")):
        p = d / artifact
        if not p.exists():
            continue
        order = _load_json(d, manifest, required=False).get(key, [])
        raw = _split_blocks(p.read_text())
        for idx, (m, prov_line, rest) in enumerate(raw):
            f, a, b = m["file"], int(m["a"]), int(m["b"])
            node = nodes.get(order[idx]) if idx < len(order) else None
            if node is None or (node["file"], node["line"], node["end_line"]) != (f, a, b):
                same = by_span.get((f, a, b), [])
                node = same.pop(0) if same else {"id": f"{f}::<L{a}>", "name": f"<L{a}>", "emit_name": f"<L{a}>",
                                                 "file": f, "line": a, "end_line": b, "kind": "unknown", "edits": []}
            while rest and rest[-1] == "":      # the blank lines that join blocks
                rest.pop()
            first = prov_line + 1
            generated = False
            if rest and rest[0].startswith(GENERATED):
                rest = rest[1:]
                first += 1
                generated = True
            while rest and _is_header(rest[0]):
                rest = rest[1:]
                first += 1
            body = rest
            wrapped = bool(body) and WRAP.match(body[0]) is not None and body[-2:] == WRAP_TAIL
            inner = body[1:-2] if wrapped else body
            inner_plain = [ln[4:] if ln.startswith("    ") else ln for ln in inner] if wrapped else inner
            if generated:
                omap, exact = [a] * len(inner_plain), True
            else:
                omap, exact = line_map(a, b, node.get("edits", []), inner_plain, src_of(f))
            if wrapped:
                omap = [a] + omap + [b, b]
            blocks.append(Block(id=node["id"], name=node["name"], emit_name=node.get("emit_name", node["name"]),
                                file=f, line=a, end_line=b, kind=node.get("kind", "unknown"), section=section,
                                text="\n".join(body) + "\n", orig_lines=omap, artifact=artifact,
                                artifact_line=first, generated=generated, node=node))
            blocks[-1].exact = exact  # type: ignore[attr-defined]
    return blocks


def extra_roots(g: dict) -> list[tuple[str, str, str]]:
    """The roots A1 added beyond the symbol, from its notes: [(node id, root as written, why)]."""
    ids = {n["id"] for n in g.get("python_nodes", [])}
    out = []
    for note in g.get("notes", []):
        m = EXTRA_ROOTS.match(note)
        if not m:
            continue
        for r in (x.strip() for x in m["ids"].split(",")):
            if not r:
                continue
            f, _, name = r.partition("::")
            nid = r if r in ids else f"{f}::{name.split('.')[0]}"
            if nid in ids:
                out.append((nid, r, m["why"]))
    return out


def symbol_id(g: dict) -> str:
    return f"{g.get('def_file')}::{g.get('symbol')}"


def _tree_matches(d: Path, g: dict, tree: Path) -> bool:
    """Whether `tree` is the tree these artifacts were built from: every inlined line is where the exact
    line map puts it (lines an edit rewrote aside)."""
    if not (tree / str(g.get("def_file", ""))).is_file():
        return False
    try:
        blocks = load_blocks(d, g, tree)
    except (OSError, ValueError, IndexError):
        return False
    cache: dict[str, list[str]] = {}
    seen = bad = 0
    for b in blocks:
        if b.generated or WRAP.match(b.text.split("\n", 1)[0]):
            continue
        if b.file not in cache:
            try:
                cache[b.file] = (tree / b.file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                return False
        src = cache[b.file]
        touched = {e["line"] for e in b.node.get("edits", []) if e["op"] in ("span", "pass")}
        for ln, o in zip(b.text.splitlines(), b.orig_lines):
            if ln.strip() and o not in touched:
                seen += 1
                bad += o > len(src) or src[o - 1].strip() != ln.strip()
    return seen > 0 and bad == 0


def find_tree(d: Path, g: dict, given: Path | None = None) -> Path | None:
    """The vLLM tree the artifacts come from, when it is on this machine: `given`, else the pinned sdists the
    build extracted (`$VLLM_BUNDLER_CACHE/sdist/*`, default ~/.cache/vllm-bundler) and third_party/vllm;
    a tree is taken only if every inlined line matches it."""
    import os
    if given is not None:
        return Path(given) if _tree_matches(d, g, Path(given)) else None
    cache = Path(os.environ.get("VLLM_BUNDLER_CACHE", Path.home() / ".cache" / "vllm-bundler"))
    cands = sorted(p for p in (cache / "sdist").glob("vllm-*") if p.is_dir()) + [Path("third_party/vllm")]
    for t in cands:
        if t.is_dir() and _tree_matches(d, g, t):
            return t
    return None
