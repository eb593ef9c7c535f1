"""Turn the reached nodes into A1.graph.json: emission order, sections, renames, edits."""

from __future__ import annotations

import ast
import re
import heapq

from .blocks import emptied_block_edits
from .imports_scan import raising_stub
from .engine import Engine as Graph, Node

_FORCE_RENAME = {"__getattr__", "__dir__", "__setattr__", "__all__"}


def _node_id(n: Node) -> str:
    return f"{n.file}::{n.name}"


def order(g: Graph, root: Node) -> list[Node]:
    """Topological order: import-time dependencies are hard constraints; otherwise DFS post-order."""
    post: dict[tuple, int] = {}
    seen = set()
    stack = [(root.key, iter(sorted(root.deps, key=_sort_key(g))))]
    seen.add(root.key)
    while stack:
        key, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            post[key] = len(post)
            continue
        if nxt not in seen:
            seen.add(nxt)
            stack.append((nxt, iter(sorted(g.nodes[nxt].deps, key=_sort_key(g)))))
    for k in sorted(g.nodes, key=_sort_key(g)):   # anything reached another way (roots of several stmts)
        if k not in post:
            post[k] = len(post)
    # Kahn on hard edges, priority = post-order index. Hard: X needs Y at import time, so X comes after
    # Y, after everything Y can reach (Y may be called), and after the statements completing Y (`Y.a = v`),
    # except where that would contradict a path back to X.
    keys = sorted(g.nodes, key=lambda k: post[k])
    bit = {k: 1 << i for i, k in enumerate(keys)}
    closure = _closure(g, keys, bit)
    needs_at_import = _closure(g, keys, bit, importtime_only=True)
    hard: dict[tuple, set] = {}
    directs: dict[tuple, set] = {}
    for k, n in g.nodes.items():
        need = 0
        direct = set()
        for d, it in n.deps.items():
            if not it or d == k:
                continue
            direct.add(d)
            if n.kind != "attached":   # statements completing X do not wait for each other
                for a in g.nodes[d].attached:
                    need |= bit[a]
            if d in n.calls:   # its body runs now: whatever it can reach must exist
                dn = g.nodes[d]
                if dn.ctor_deps is not None and n.kind == "attached":
                    # `X.a = X(...)` completing class X: what creating X needed is there already
                    for c in dn.ctor_deps:
                        need |= bit[c]
                else:
                    need |= closure[d]
                    for a in dn.attached:
                        need |= closure[a]
        hard[k] = direct | {x for x in keys if need & bit[x] and x != k and not (needs_at_import[x] & bit[k])}
        directs[k] = direct
    indeg = {k: len(hard[k]) for k in keys}
    dleft = {k: len(directs[k]) for k in keys}
    users: dict[tuple, list] = {k: [] for k in keys}
    for k in keys:
        for d in hard[k]:
            users[d].append(k)
    heap = [(post[k], k) for k in keys if indeg[k] == 0]
    heapq.heapify(heap)
    out, done = [], set()
    while len(out) < len(keys):
        if not heap:
            # a cycle: break it where no import-time need of the node itself is left unmet, if possible
            k = min((x for x in keys if x not in done), key=lambda x: (dleft[x], post[x]))
            if dleft[k]:
                g.notes.append(f"import-time dependency cycle: {_node_id(g.nodes[k])} is emitted before "
                               "some definitions it needs at import time")
        else:
            _, k = heapq.heappop(heap)
            if k in done:
                continue
        done.add(k)
        out.append(g.nodes[k])
        for u in users[k]:
            indeg[u] -= 1
            if k in directs[u]:
                dleft[u] -= 1
            if indeg[u] == 0 and u not in done:
                heapq.heappush(heap, (post[u], u))
    return out


def _succ(g: Graph, k, importtime_only: bool = False) -> list:
    """Dependencies, plus the statements that complete a definition (reaching X reaches `X.a = v`)."""
    n = g.nodes[k]
    if importtime_only:
        return sorted(d for d, it in n.deps.items() if it)
    return sorted(set(n.deps) | set(n.attached))


def _closure(g: Graph, keys: list, bit: dict, importtime_only: bool = False) -> dict:
    """Transitive closure (bitsets, excluding self unless on a cycle) via Tarjan's SCCs."""
    index, low, on, stack, sccs = {}, {}, set(), [], []
    counter = [0]
    for root in keys:
        if root in index:
            continue
        work = [(root, iter(_succ(g, root, importtime_only)))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(_succ(g, w, importtime_only))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop(); on.discard(x); comp.append(x)
                    if x == v:
                        break
                sccs.append(comp)
    # sccs come out in reverse topological order (dependencies first)
    comp_of = {}
    for i, c in enumerate(sccs):
        for x in c:
            comp_of[x] = i
    creach = []
    for i, c in enumerate(sccs):
        r = 0
        for x in c:
            r |= bit[x]
        inner = r if len(c) > 1 else 0
        out = inner
        for x in c:
            for d in _succ(g, x, importtime_only):
                j = comp_of[d]
                if j != i:
                    out |= creach[j][0] | creach[j][1]
        creach.append((out, r))
    return {x: creach[comp_of[x]][0] for x in keys}


def _sort_key(g: Graph):
    return lambda k: (g.nodes[k].file, g.nodes[k].line, k[1])


def sections(g: Graph, nodes: list[Node]) -> None:
    """Mark jitted helpers vs kernels, and pull the import-time deps of triton nodes into that section."""
    jit = {n.key for n in nodes if n.triton}
    called_from_python = set()
    for n in nodes:
        if n.key in jit:
            continue
        for d in n.deps:
            if d in jit:
                called_from_python.add(d)
    for n in nodes:
        if n.key in jit:
            n.triton = "kernel" if n.key in called_from_python else "helper"
    # the import-time deps of triton nodes, and module-level values read by kernels, go with them
    tri = set(jit)
    changed = True
    while changed:
        changed = False
        for k in list(tri):
            n = g.nodes[k]
            for d, it in n.deps.items():
                dn = g.nodes[d]
                if d in tri:
                    continue
                if it or (k in jit and dn.kind in ("assign", "block", "synthetic")):
                    tri.add(d)
                    changed = True
                    if d in n.calls:   # runs at import time: all it can reach goes first too
                        stack = [d]
                        while stack:
                            x = stack.pop()
                            for y in _succ(g, x):
                                if y not in tri:
                                    tri.add(y)
                                    stack.append(y)
            for a in n.attached:
                if a not in tri:
                    tri.add(a)
                    changed = True
    for n in nodes:
        n.section = "triton" if n.key in tri else "python"
        if n.key in tri and not n.triton:
            n.triton = "constexpr"


def emit_names(g: Graph, nodes: list[Node], root: Node) -> dict[tuple, dict[str, str]]:
    """{node key: {defined name: emit name}}; collisions get `<name>_<module tail>`, deterministic."""
    by_name: dict[str, list[Node]] = {}
    for n in nodes:
        if n.kind == "attached":
            continue
        for nm in n.names:
            by_name.setdefault(nm, []).append(n)
    ext_names = {bound for bound, _ in g.externals.values()}
    taken = set(by_name) | ext_names
    out: dict[tuple, dict[str, str]] = {n.key: {nm: nm for nm in n.names} for n in nodes}
    for nm in sorted(by_name):
        group = by_name[nm]
        modules = sorted({n.module for n in group}, key=lambda m: (m != root.module, g.index.files[m]))
        keep = None if (nm in _FORCE_RENAME or nm in ext_names) else modules[0]
        if nm == root.name and root.module in modules:
            keep = root.module   # the target keeps its name; a clashing import gets an alias instead
        for m in modules:
            if m == keep:
                continue
            parts = m.split(".")
            i = 1
            new = f"{nm}_{parts[-1]}" if not nm.startswith("__") else f"_{parts[-1]}{nm}"
            while new in taken and i < len(parts):
                i += 1
                tail = "_".join(parts[-i:])
                new = f"{nm}_{tail}" if not nm.startswith("__") else f"_{tail}{nm}"
            k = 2
            base = new
            while new in taken:
                new = f"{base}_{k}"
                k += 1
            taken.add(new)
            for n in group:
                if n.module == m:
                    out[n.key][nm] = new
    return out


def _def_name_edits(n: Node, names: dict[str, str], lines: list[str]) -> list[dict]:
    """Rename the definitions a node makes (def/class name, assignment targets)."""
    edits = []
    ren = {k: v for k, v in names.items() if k != v}
    if not ren or n.stmt is None:
        return edits

    def visit(x: ast.AST):
        if isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if x.name in ren:
                ln = x.lineno
                raw = lines[ln - 1].encode()
                kw = b"class" if isinstance(x, ast.ClassDef) else b"def"
                pos = raw.find(kw + b" ", x.col_offset)
                if pos >= 0:
                    start = raw.find(x.name.encode(), pos + len(kw))
                    edits.append({"op": "span", "line": ln, "col": start, "end_line": ln,
                                  "end_col": start + len(x.name.encode()), "text": ren[x.name]})
            return
        if isinstance(x, ast.ExceptHandler) and x.name in ren:   # `except E as name:` (ast gives no position)
            pat = re.compile(rb"\bas\s+(" + re.escape(x.name.encode()) + rb")\s*:")
            for ln in range(x.type.end_lineno if x.type else x.lineno, x.body[0].lineno):
                m = pat.search(lines[ln - 1].encode())
                if m:
                    edits.append({"op": "span", "line": ln, "col": m.start(1), "end_line": ln, "end_col": m.end(1),
                                  "text": ren[x.name]})
                    break
        if isinstance(x, ast.Name) and isinstance(x.ctx, ast.Store) and x.id in ren:
            edits.append({"op": "span", "line": x.lineno, "col": x.col_offset, "end_line": x.end_lineno,
                          "end_col": x.end_col_offset, "text": ren[x.id]})
        for c in ast.iter_child_nodes(x):
            visit(c)

    visit(n.stmt)
    return edits


def _dict_entry_edits(n: Node, lines: list[str]) -> list[dict]:
    """Delete the entries of a keyed dict that nothing asked for (whole lines only)."""
    items = list(n.entries.items())
    edits = []
    value = n.stmt.value
    for i, (key, (k, v)) in enumerate(items):
        if key in n.entries_kept:
            continue
        own_line = lines[k.lineno - 1].encode()[:k.col_offset].strip() == b""
        if i + 1 < len(items):
            nk = items[i + 1][1][0]
            end = nk.lineno - 1
            while end > v.end_lineno and (not lines[end - 1].strip() or lines[end - 1].strip().startswith("#")):
                end -= 1   # comments above the next entry belong to it
        else:
            end = value.end_lineno - 1
        if not own_line or end < v.end_lineno or k.lineno <= value.lineno:
            continue
        prev_end = items[i - 1][1][1].end_lineno if i else value.lineno
        a = k.lineno
        while a - 1 > prev_end and lines[a - 2].strip().startswith("#"):
            a -= 1
        edits.append({"op": "delete", "line": a, "end_line": end})
    return edits


def _dropped_member_edits(n: Node, lines: list[str]) -> list[dict]:
    """Delete the class-body members left out (with the comment lines right above each)."""
    edits = []
    body = n.stmt.body
    kept = [st for st in body if id(st) not in n.dropped]
    prev_end = n.stmt.lineno
    for st in body:
        a = min([st.lineno] + [d.lineno for d in getattr(st, "decorator_list", [])])
        if id(st) in n.dropped:
            # with the comment lines right above it
            while a - 1 > prev_end and lines[a - 2].strip().startswith("#"):
                a -= 1
            edits.append({"op": "delete", "line": a, "end_line": st.end_lineno})
        prev_end = st.end_lineno
    if not kept:
        first = min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
        edits.append({"op": "pass", "line": first, "end_line": first, "indent": body[0].col_offset})
    return edits


def _global_edits(g: Graph, n: Node, emit: dict[tuple, dict[str, str]]) -> list[dict]:
    """`global x` statements of the node naming renamed module globals, renamed."""
    edits = []
    for sub in ast.walk(n.stmt):
        if isinstance(sub, ast.Global):
            mod_ren = {}
            for nm in sub.names:
                t = g.res.name(n.module, nm)
                if t.kind == "node":
                    k = (t.module, t.stmts[-1].idx)
                    if k in emit:
                        mod_ren[nm] = emit[k].get(nm, nm)
            if any(mod_ren.get(x, x) != x for x in sub.names):
                edits.append({"op": "span", "line": sub.lineno, "col": sub.col_offset,
                              "end_line": sub.end_lineno, "end_col": sub.end_col_offset,
                              "text": "global " + ", ".join(mod_ren.get(x, x) for x in sub.names)})
    return edits


def _failing_import(n: Node, e: dict) -> dict:
    """A failing import (graph/imports_scan.py): functions raising ImportError for the names it binds that the
    closure reads (all of them outside a module-level block), then its ModuleNotFoundError."""
    pad = "\n" + " " * e["col"]
    stubs = [raising_stub(name, f"{what!r} + ' is compiled vLLM code, not in the bundle'", pad)
             for name, what in e["stubs"].items() if n.kind != "block" or name in n.wanted]
    return {k: v for k, v in e.items() if k != "stubs"} | {"text": pad.join(stubs + [e["text"]])}


def node_edits(g: Graph, n: Node, emit: dict[tuple, dict[str, str]], ext: dict) -> list[dict]:
    info = g.index.get(n.module)
    edits = [_failing_import(n, e) if "stubs" in e else e
             for sc in ([n.scan] if n.scan else []) + n.scans for e in sc.edits] + list(n.extra_edits)
    if n.entries is not None:
        edits += _dict_entry_edits(n, g.index.get(n.module).lines)
    if n.dropped and isinstance(n.stmt, ast.ClassDef):
        edits += _dropped_member_edits(n, info.lines)
    elif n.dropped:   # a block's assignments nothing read (an emptied body gets its `pass` below)
        edits += [{"op": "delete", "line": min([st.lineno] + [d.lineno for d in getattr(st, "decorator_list", [])]),
                   "end_line": st.end_lineno} for st in n.dropped.values()]   # a decorated member with its decorators
    for ref, stmt, bound, _ in n.ext_links:
        new = ext[stmt][1]
        if new != ref.name:
            nd = ref.nodes[0]
            edits.append({"op": "span", "line": nd.lineno, "col": nd.col_offset, "end_line": nd.end_lineno,
                          "end_col": nd.end_col_offset, "text": new})
    edits += _def_name_edits(n, emit[n.key], info.lines)
    done = set()
    for ref, key, dname, used in n.links:
        dynamic = dname.startswith("@getattr:")
        if dynamic:
            dname = dname.split(":", 1)[1]
        new = emit[key].get(dname, dname)
        if dynamic:
            attr = ref.attrs[used - 1] if used else ref.name
            used_nodes = ref.nodes[used] if used else ref.nodes[0]
            text = f"{new}({attr!r})"
        else:
            used_nodes = ref.nodes[used]
            text = new
        old = ".".join([ref.name] + ref.attrs[:used])
        if text == old:
            continue
        first = ref.nodes[0]
        span = (first.lineno, first.col_offset, used_nodes.end_lineno, used_nodes.end_col_offset)
        if span in done:
            continue
        done.add(span)
        edits.append({"op": "span", "line": span[0], "col": span[1], "end_line": span[2],
                      "end_col": span[3], "text": text})
    for ref, op, key, dname in n.op_links:
        new = emit[key].get(dname, dname)
        last = ref.nodes[4] if len(ref.attrs) > 3 and ref.attrs[3] == "default" else ref.nodes[3]
        first = ref.nodes[0]
        edits.append({"op": "span", "line": first.lineno, "col": first.col_offset, "end_line": last.end_lineno,
                      "end_col": last.end_col_offset, "text": new})
    # `global x` statements naming renamed module globals
    if n.stmt is not None and any("global " in ln for ln in info.lines[n.line - 1:n.end_line]):
        edits += _global_edits(g, n, emit)
    # a block whose statements the edits all removed keeps a `pass`
    edits += emptied_block_edits(n.stmt, info.lines, edits)
    # drop exact duplicates, keep deterministic order
    uniq = []
    seen = set()
    for e in edits:
        k = tuple(sorted(e.items()))
        if k not in seen:
            seen.add(k)
            uniq.append(e)
    uniq.sort(key=lambda e: (e["line"], e.get("col", -1), e["op"]))
    return uniq


def external_names(g: Graph, nodes: list[Node], root_name: str = "") -> dict[str, tuple[str, str]]:
    """{original import statement: (emitted statement, emitted bound name)}; names bound to different
    objects by different modules get an alias (deterministic: first user in emission order keeps it)."""
    first_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for _, stmt, _, _ in n.ext_links:
            first_use.setdefault(stmt, i)
    by_bound: dict[str, list[str]] = {}
    for stmt, (bound, obj) in g.externals.items():
        by_bound.setdefault(bound, []).append(stmt)
    out = {}
    taken = {nm for n in nodes for nm in n.names} | set(by_bound)
    for bound, stmts in sorted(by_bound.items()):
        stmts.sort(key=lambda s: (first_use.get(s, 1 << 30), s))
        keep_obj = g.externals[stmts[0]][1]
        if bound == root_name:
            keep_obj = None   # never shadow the target symbol
        for stmt in stmts:
            obj = g.externals[stmt][1]
            if obj == keep_obj:
                out[stmt] = (stmt, bound)
                continue
            alias = f"{bound}_" + obj.replace(".", "_").strip("_")
            while alias in taken:
                alias += "_"
            taken.add(alias)
            if stmt.startswith("from "):
                base = stmt.split(" as ")[0]
                new = f"{base} as {alias}"
            else:
                new = f"import {stmt.split()[1]} as {alias}"
            g.notes.append(f"external name {bound!r} is bound to {keep_obj or 'the target'} and to {obj}: "
                           f"the latter is imported as {alias}")
            out[stmt] = (new, alias)
    return out
