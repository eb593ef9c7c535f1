"""A1: locate the symbol and build its reachability graph (A1.graph.json).

Modules: index (tree modules, parsing cache, top-level bindings), locate (find the definition),
refs (names a definition reads, guard pruning, edits), guards (variant predicates), resolve (name ->
definition across imports), engine (the worklist, calling rules), the rules (classes, held, modules; vllm/ for
those that know vLLM's names, and the list of rules), predicates (the evaluator's oracle), scans (tree-wide
text scans for the memo), emit (order, sections, renames, edits).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from pathlib import Path

from bundler_lib.artifacts import write_json
from bundler_lib.common.example_roots import MLA_BACKEND, extra_roots, layer_signature, mla_only, owner_part_roots
from bundler_lib.errors import StageError
from bundler_lib.model_facts import for_model_file, for_reached_code
from bundler_lib.variant import resolve as resolve_variant, world_size

from . import augassign
from .emit import _node_id, emit_names, external_names, node_edits, order, sections
from . import memo
from .index import TreeIndex
from .locate import locate
from .resolve import Resolver
from . import vllm

STAGE = "A1 graph"


def _reach(index: TreeIndex, variant: dict, module: str, symbol: str, dataclass_annotations: bool):
    c = vllm.closure(index, variant, dataclass_annotations)
    root = c.engine.build(module, symbol)
    # what A6's example needs (data)
    sig = _signature(index, root)
    extra, when = extra_roots(symbol, root.kind, sig, world_size(variant), variant["attention_backend"])
    if extra:
        # the model's parts the example builds come from the model's module, which the layer need not reach
        c.engine.add_roots(extra, "needed by invocation_example()", when, anywhere=owner_part_roots(sig))
    c.engine.finish()
    return c, root


def _signature(index: TreeIndex, root) -> dict | None:
    """The root's `layer_signature`; a method it inherits is read from the class a base's name resolves to (in the
    module of the class naming it)."""
    resolver = Resolver(index)
    modules = {id(root.stmt): root.module}

    def find_class(name: str, within):
        t = resolver.name(modules.get(id(within), root.module), name)
        if t.kind != "node" or not t.stmts:
            return None
        modules[id(t.stmts[0].node)] = t.module
        return t.stmts[0].node

    sig = layer_signature(root.stmt, find_class, index.get(root.module).tree)
    lists = ((sig or {}).get("__init__") or {}).get("layer_lists") or {}
    for param, name in lists.items():
        t = resolver.name(root.module, name)
        if t.kind == "node" and t.stmts:
            lists[param] = f"{index.files[t.module]}::{t.stmts[0].node.name}"
    for method in (sig or {}).values():
        for part in (method.get("owner_parts") or {}).values():
            part["names"] = {n: _qualified(resolver, index, root.module, n) for n in part["names"]}
    return sig


def _qualified(resolver: Resolver, index: TreeIndex, module: str, name: str) -> str | None:
    """`file::Name` of a name a model part reads, or the dotted path of a torch import; None for anything else."""
    t = resolver.name(module, name)
    if t.kind == "node" and t.stmts:
        return f"{index.files[t.module]}::{t.name}"
    if t.kind == "external" and t.binding is not None and t.binding.module.split(".")[0] == "torch":
        return t.binding.module + (f".{t.binding.attr}" if t.binding.attr else "")
    return None


def build(tree: Path, symbol: str, hint: str | None = None, variant: dict | None = None,
          model_facts: dict | None = None, memo_dir: str | None = None) -> dict:
    """The graph; with memo_dir, reused from a previous run when nothing it read has changed (memo.py)."""
    tree = Path(tree)
    if not tree.is_dir():
        raise StageError(STAGE, f"--tree {tree}", "not a directory", "pass the extracted source tree")
    var = resolve_variant(variant)
    index = TreeIndex(tree)
    if not index.files:
        raise StageError(STAGE, f"--tree {tree}", "no Python files under it", "pass the extracted source tree")
    variant = {**var, "model_facts": model_facts or {}}
    if memo_dir:
        k = memo.key({"symbol": symbol, "hint": hint, "variant": variant})
        entry = memo.load(memo_dir, k)
        if entry is not None and memo.still_valid(entry, index, _Rescan(index, variant, symbol, hint)):
            print("A1: reused the graph of a previous run (nothing it read has changed)", file=sys.stderr)
            return entry["graph"]
        graph, scans = _build(index, variant, symbol, hint)
        memo.save(memo_dir, k, {"record": memo.record(index, scans), "graph": graph})
        return graph
    return _build(index, variant, symbol, hint)[0]


class _Rescan:
    """Recomputes one of the tree-wide scans a graph was built from (memo validation)."""

    def __init__(self, index: TreeIndex, variant: dict, symbol: str, hint: str | None):
        self.index, self.symbol, self.hint = index, symbol, hint
        self.scans = vllm.tree_scans(index)

    def __call__(self, name: str):
        if name == "locate":
            return list(locate(self.index, self.symbol, self.hint))
        return self.scans.recompute(name)


def _named_closure(g) -> tuple[set[str], list[tuple[str, str]]]:
    """A closure's definitions as `file::Name` ids, and its references between them (referrer, referred)."""
    ids = {k: [f"{n.file}::{name}" for name in n.names] for k, n in g.nodes.items()}
    return ({i for names in ids.values() for i in names},
            [(a, b) for k, n in g.nodes.items() for d in n.deps if d in ids for a in ids[k] for b in ids[d]])


def _enum_values(index: TreeIndex, name: str) -> set[str]:
    """The string values of the tree's enum class `name` (members `X = "x"`); none where the tree lacks it."""
    try:
        module, _ = locate(index, name, None)
    except StageError:
        return set()
    cls = next((n for n in ast.parse(index.text(index.files[module])).body
                if isinstance(n, ast.ClassDef) and n.name == name), None)
    return {st.value.value for st in (cls.body if cls else []) if isinstance(st, ast.Assign)
            and isinstance(st.value, ast.Constant) and isinstance(st.value.value, str)}


def _build(index: TreeIndex, variant: dict, symbol: str, hint: str | None):
    """(graph, the tree-wide scans it was built from) for the variant (with its model_facts)."""
    module, rel = locate(index, symbol, hint)
    if "activation" in variant["model_facts"]:
        members = _enum_values(index, variant["model_facts"]["activation"][1])
        variant = {**variant, "model_facts": for_model_file(variant["model_facts"], index.text(rel), members)}
    c, root = _reach(index, variant, module, symbol, False)
    facts = for_reached_code(variant["model_facts"], ((n.stmt, n.dropped) for n in c.engine.nodes.values()
                                                      if n.stmt is not None))
    if facts != variant["model_facts"]:
        variant = {**variant, "model_facts": facts}
        c, root = _reach(index, variant, module, symbol, False)
    mla_note = None
    if variant["attention_backend"] != MLA_BACKEND and mla_only(*_named_closure(c.engine)):
        # vLLM's other backends refuse use_mla: the layer is built only with an MLA backend, the Triton one here
        mla_note = (f"attention_backend {variant['attention_backend']} -> {MLA_BACKEND}: the layer's attention is "
                    "MLA only (vLLM's MLAAttention, not its Attention), which no other backend builds")
        variant = {**variant, "attention_backend": MLA_BACKEND}
        c, root = _reach(index, variant, module, symbol, False)
    readers = c.engine.annotation_readers()
    first_scans = c.scans.record
    if readers:
        # the bundle's annotations are postponed: with a reader of them in the closure, keep what every
        # dataclass field annotation names, not only ClassVar/InitVar
        c, root = _reach(index, variant, module, symbol, True)
    g = c.engine
    if mla_note:
        g.notes.append(mla_note)
    if readers:
        g.notes.append(f"the closure reads annotations at run time ({', '.join(readers)}): every dataclass's "
                       "field annotations are followed")
    augassign.settle(g)   # module-level `x += v`: after x's earlier binding, or dropped with it
    nodes = order(g, root)
    sections(g, nodes)
    emit = emit_names(g, nodes, root)
    ext = external_names(g, nodes, root.name)
    ids = _unique_ids(nodes)
    python_nodes, triton_kernels, renames = _node_entries(g, nodes, ids, emit, ext)
    edges = sorted({(ids[n.key], ids[d]) for n in nodes for d in n.deps if d in ids})
    imports, importtime, evaluated = _imports(g, nodes, ext)
    unresolved, dynamic, notes = _problems(g, symbol)
    custom = [{"op": op, "target": emit[k][g.nodes[k].name] if g.nodes[k].name in emit[k] else g.nodes[k].name}
              for op, k in sorted(c.ops.python_custom_ops.items())]
    cuda_ops = []
    for k in sorted(c.ops.cuda_ops):
        e = dict(c.ops.cuda_ops[k])
        e["call_sites"] = sorted(e["call_sites"], key=lambda s: (s["file"], s["line"]))
        cuda_ops.append(e)
    kind = "class" if root.kind == "class" else ("function" if root.kind == "function" else root.kind)
    files = sorted({n.file for n in nodes})
    graph = {
        "status": "ok",
        "symbol": symbol,
        "kind": kind,
        "def_file": rel,
        "def_line": getattr(root.stmt, "lineno", root.line),
        "root_signature": _signature(index, root),
        "variant": {k: v for k, v in variant.items() if k != "model_facts"},
        "model_facts": variant["model_facts"],
        "files": files,
        "python_nodes": python_nodes,
        "triton_kernels": triton_kernels,
        "cuda_ops": cuda_ops,
        "python_custom_ops": custom,
        "imports_external": imports,
        "imports_runtime_only": sorted(set(imports) - importtime),
        "imports_annotation_only": sorted(set(imports) - evaluated),
        "edges": [list(e) for e in edges],
        "guards": _guards(nodes),
        "renames": dict(sorted(renames.items())),
        "unresolved": unresolved,
        "dynamic_imports": dynamic,
        "notes": notes,
        "stats": {"nodes": len(nodes), "files": len(files), "lines": _inlined_lines(nodes),
                  "modules_parsed": len(index.parsed)},
    }
    return graph, {**first_scans, **c.scans.record, "locate": [module, rel]}


def _unique_ids(nodes: list) -> dict:
    """Node key -> id; ids must be unique: several statements may define the same name in one file."""
    ids = {n.key: _node_id(n) for n in nodes}
    seen: dict[str, int] = {}
    for n in nodes:
        i = ids[n.key]
        if i in seen:
            seen[i] += 1
            ids[n.key] = f"{i}#{seen[i]}"
        else:
            seen[i] = 1
    return ids


def _node_entries(g, nodes: list, ids: dict, emit: dict, ext: dict):
    """(python_nodes, triton_kernels, renames) of A1.graph.json."""
    python_nodes = []
    triton_kernels = []
    renames = {}
    for n in nodes:
        en = emit[n.key][n.name]
        entry = {"id": ids[n.key], "name": n.name, "emit_name": en, "file": n.file, "line": n.line,
                 "end_line": n.end_line, "kind": n.kind, "section": n.section,
                 "names": [{"name": k, "emit_name": v} for k, v in sorted(emit[n.key].items())],
                 "imports": sorted({ext[stmt][0] for _, stmt, _, _ in n.ext_links}),
                 "importtime_imports": sorted({ext[stmt][0] for r, stmt, _, _ in n.ext_links if r.importtime}),
                 "importtime_deps": sorted(ids[d] for d, it in n.deps.items() if it and d in ids and d != n.key),
                 "edits": node_edits(g, n, emit, ext)}
        if n.synthetic:
            args = [emit[k].get(dn, dn) for k, dn in n.synthetic["deps"]]
            text = n.synthetic["template"].replace("@@NAME@@", en)
            for i, a in enumerate(args):
                text = text.replace(f"@@{i}@@", a)
            entry["text"] = text
            entry["imports"] = sorted(set(entry["imports"]) | set(n.synthetic["imports"]))
        python_nodes.append(entry)
        if n.section == "triton":
            triton_kernels.append({"name": n.name, "emit_name": en, "file": n.file, "line": n.line,
                                   "end_line": n.end_line, "kind": n.triton or "constexpr", "id": ids[n.key]})
        for k, v in emit[n.key].items():
            if k != v:
                renames[ids[n.key] if k == n.name else f"{n.file}::{k}"] = v
    return python_nodes, triton_kernels, renames


def _guards(nodes: list) -> list[dict]:
    guards = []
    for n in nodes:
        for sc in ([n.scan] if n.scan else []) + n.scans:
            for gd in sc.guards:
                guards.append({"file": n.file, "line": gd.line, "end_line": gd.end_line,
                               "predicate": gd.predicate, "value": gd.value, "kept": gd.kept,
                               **({"assumes": gd.assumes} if gd.assumes else {})})
    guards = sorted({tuple(sorted(x.items())) for x in guards})
    return [dict(x) for x in guards]


def _imports(g, nodes: list, ext: dict) -> tuple[list, set, set]:
    """(every external import, those executed at import time, those evaluated at all)."""
    synthetic = {i for n in nodes if n.synthetic for i in n.synthetic["imports"]}
    imports = sorted({v[0] for v in ext.values()} | synthetic)
    importtime = {ext[stmt][0] for n in nodes for ref, stmt, _, _ in n.ext_links if ref.importtime}
    importtime |= synthetic
    evaluated = {ext[stmt][0] for n in nodes for ref, stmt, _, _ in n.ext_links if id(ref) not in g.lazy_refs}
    evaluated |= synthetic
    return imports, importtime, evaluated


def _problems(g, symbol: str) -> tuple[list, list, list]:
    """(unresolved references, dynamic imports, notes); an unresolved reference needed at import time fails."""
    notes = sorted(set(g.notes))
    unresolved = sorted({tuple(sorted(u.items())) for u in g.unresolved})
    unresolved = [dict(u) for u in unresolved]
    fatal = [u for u in unresolved if u["importtime"]]
    if fatal:
        listing = "; ".join(f"{u['file']}:{u['line']}: {u['name']} ({u['reason']})" for u in fatal[:10])
        raise StageError(STAGE, f"symbol {symbol!r}", f"repo-local references needed at import time do not "
                         f"resolve: {listing}", "fix the reference in the tree, or report it as a resolver gap")
    dynamic = [dict(x) for x in sorted({tuple(sorted(d.items())) for d in g.dynamic})]
    for d in dynamic:
        notes.append(f"dynamic import {'at import time ' if d['importtime'] else ''}not followed: "
                     f"{d['call']} at {d['file']}:{d['line']}")
    for u in unresolved:
        notes.append(f"unresolved {'import-time' if u['importtime'] else 'run-time'} reference "
                     f"{u['name']} at {u['file']}:{u['line']}: {u['reason']}")
    return unresolved, dynamic, notes


def _inlined_lines(nodes: list) -> int:
    """The lines of the tree inlined: each node's, less its class-body members left out."""
    return sum(n.end_line - n.line + 1 - sum(
        st.end_lineno - min([st.lineno] + [d.lineno for d in getattr(st, "decorator_list", [])]) + 1
        for st in n.dropped.values()) for n in nodes if n.stmt is not None)


def run(tree: Path, out: Path, symbol: str, hint: str | None = None, variant: dict | None = None,
        model_config: Path | None = None) -> dict:
    from bundler_lib import model_facts
    graph = build(tree, symbol, hint, variant, model_facts.load(model_config), os.environ.get(memo.ENV) or None)
    if model_config is not None:  # which model the example builds: A5 keys the bundle's namespaces on it too
        graph["model_config_sha256"] = hashlib.sha256(Path(model_config).read_bytes()).hexdigest()
    write_json(Path(out) / "A1.graph.json", graph)
    return graph
