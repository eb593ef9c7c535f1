"""A5's stage: read the sections A2-A4 wrote (and A3's data section), merge them, apply the rewrites of this
package in order, check what binding must not leave behind, write A5.module.py and A5.bindmap.json."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import libcst as cst

from bundler_lib.artifacts import read_json, write_json, write_text
from bundler_lib.bind.anchors import DATA_SENTINEL, rewrite_anchors
from bundler_lib.bind.decorators import LAZY_DECORATORS, lazy_import_time_decorators
from bundler_lib.bind.leftovers import Leftovers, defined_at_top
from bundler_lib.bind.namespaces import bundle_namespaces, namespace_key, namespace_map, registered_namespaces
from bundler_lib.bind.rewrite import drop_unused_stubs, rewrite
from bundler_lib.bind.signatures import entry_module, public_signatures
from bundler_lib.common.collector import without_cycle_collection
from bundler_lib.common.contract import load_graph
from bundler_lib.common.data_anchors import DATA_JSON, DATA_PY, SECTION_NAMES
from bundler_lib.errors import StageError


STAGE = "A5 bind"


def _load_json(inputs: Path, name: str, required: bool = True):
    p = inputs / name
    if not p.exists():
        if required:
            raise StageError(STAGE, str(p), "not found", f"run the stage that writes {name} first")
        return None
    try:
        return read_json(p)
    except ValueError as e:
        raise StageError(STAGE, str(p), f"not valid JSON ({e})", f"re-run the stage that writes {name}") from None


def _load_text(inputs: Path, name: str, required: bool = True) -> str:
    p = inputs / name
    if not p.exists() and not required:
        return ""
    if not p.exists():
        raise StageError(STAGE, str(p), "not found", f"run the stage that writes {name} first")
    return p.read_text(encoding="utf-8")


def _stmt_list(value, source: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise StageError(STAGE, source, "is not a list of import statements", "re-run that stage")
    out = []
    for v in value:
        if isinstance(v, dict):
            v = v.get("stmt") or v.get("statement") or v.get("import")
        if not isinstance(v, str) or not v.strip():
            raise StageError(STAGE, source, f"entry {v!r} is not an import statement", "re-run that stage")
        v = v.strip("\n")
        if not re.match(r"^\s*(import|from|try:|if |def )", v):
            v = f"import {v.strip()}"  # a bare module name
        try:
            ast.parse(v)
        except SyntaxError as e:
            raise StageError(STAGE, source, f"entry {v!r} does not parse ({e.msg})", "re-run that stage") from None
        out.append(v)
    return out


def merge_imports(*lists: list[str]) -> list[str]:
    """Union, deduplicated; `from __future__` first, then `import x`, then `from x import y`
    (each sorted), then compound statements (try/except guards, the function of an embedded replacement) in
    first-seen order."""
    seen, uniq = set(), []
    for lst in lists:
        for s in lst:
            key = "\n".join(l.rstrip() for l in s.strip("\n").splitlines())
            if key not in seen:
                seen.add(key)
                uniq.append(key)

    def kind(s):
        if s.startswith("from __future__"):
            return 0
        if "\n" in s:
            return 3
        return 1 if s.startswith("import ") else 2

    simple = sorted((s for s in uniq if kind(s) < 3), key=lambda s: (kind(s), s))
    return simple + [s for s in uniq if kind(s) == 3]


def bind(graph: dict, a2_text: str, a2m: dict, a3_text: str, a3m: dict, a4_text: str, a4m: dict,
         data_text: str = "", datam: dict | None = None) -> tuple[str, dict]:
    datam = datam or {}
    imports = merge_imports(_stmt_list(a4m.get("imports"), "A4.manifest.json imports"),
                            _stmt_list(a3m.get("imports"), "A3.manifest.json imports"),
                            _stmt_list(datam.get("imports"), "A3.data.json imports"),
                            _stmt_list(a2m.get("external_reqs"), "A2.manifest.json external_reqs"))
    module_text = _merged_module(imports, a2_text, a3_text, a4_text, data_text)
    wrappers, stubs, cuda_ns = _a4_wrappers(a4m)
    pyops = _python_custom_ops(graph)
    try:
        registered = registered_namespaces(module_text)
        ns_key = namespace_key(graph.get("symbol") or "", module_text, data_text,
                               {**(graph.get("variant") or {}), "model_facts": graph.get("model_facts"),
                                "model_config_sha256": graph.get("model_config_sha256")})
        ns_map = bundle_namespaces(registered, ns_key)
        out_text, counts = rewrite(module_text, wrappers, pyops, cuda_ns, stubs, ns_map)
    except SyntaxError as e:
        raise StageError(STAGE, "merged A4+A3+A2 module", f"does not parse ({e.msg} at line {e.lineno})",
                         "check the section artifacts; each must parse on its own") from None
    except cst.ParserSyntaxError as e:
        raise StageError(STAGE, "merged A4+A3+A2 module", f"does not parse ({e.message} at line {e.raw_line})",
                         "check the section artifacts; each must parse on its own") from None

    out_text, dropped_stubs = drop_unused_stubs(out_text, [wrappers[k] for k in sorted(stubs)])
    out_text, per_file, left = _insert_data_section(out_text, data_text, datam, counts)
    out_text = _lazy_decorators(out_text, imports, counts)
    tree, lv = _check_leftovers(out_text, ns_map, wrappers, pyops)
    entry, sigs = _entry_signatures(graph, out_text, tree, a2_text)

    notes = []
    if entry and not sigs:
        notes.append(f"entry symbol {entry} is not defined at module level of the merged module")
    notes += _leftover_notes(lv, left)
    notes += _data_notes(datam, per_file)
    notes += [f"{n} plain string(s) {ns!r} left as they are (not in a Library(...), getattr(torch.ops, ...) "
              f"or .namespace comparison; the namespace itself is {ns_map[ns]})" for ns, n in sorted(lv.bare.items())]
    notes += _wrapper_notes(wrappers, stubs, dropped_stubs, counts)
    bindmap = {
        "status": "ok",
        "entry_symbol": entry,
        "public_signatures": sigs,
        "rewrites": [{"from": f, "to": t, "count": c} for (f, t), c in sorted(counts.items())],
        "namespaces": namespace_map(ns_map, registered, ns_key, cuda_ns),
        "imports": imports,
        "sections": [n for n, t in (("A4", a4_text), ("A3", a3_text), ("A3.data", data_text), ("A2", a2_text))
                     if t.strip()],
        "data_files": [{"root": d["root"], "rule": d["rule"], "files": [f["path"] for f in d["files"]]}
                       for d in datam.get("data", [])],
        "notes": notes,
    }
    return out_text, bindmap


def _merged_module(imports: list[str], a2_text: str, a3_text: str, a4_text: str, data_text: str) -> str:
    """The import block, then the A4, A3 and A2 sections; the data section's place (before A2) is marked."""
    sections = []
    for name, text in (("A4", a4_text), ("A3", a3_text), ("A2", a2_text)):
        if text.strip():
            # the data section goes before A2; it is put in after the rewrites (they need not read it)
            sections.append((DATA_SENTINEL if name == "A2" else "") + text.rstrip("\n") + "\n")
    module_text = "\n".join(imports) + "\n\n\n" + "\n\n".join(sections)
    if DATA_SENTINEL not in module_text and data_text.strip():
        module_text += "\n\n" + DATA_SENTINEL
    return module_text


def _a4_wrappers(a4m: dict) -> tuple[dict, set, dict]:
    """(wrapper of each (ns, op) A4 bundled, the ops whose wrappers are stubs, the namespace each op is registered
    under)."""
    wrappers = {}
    stubs = set()
    cuda_ns = {}
    for w in a4m.get("wrappers", []):
        op = w.get("op", "")
        if "." not in op or not w.get("wrapper"):
            raise StageError(STAGE, "A4.manifest.json wrappers", f"entry {w!r} lacks op/wrapper", "re-run A4")
        ns, name = op.split(".", 1)
        wrappers[(ns, name)] = w["wrapper"]
        if w.get("stub"):
            stubs.add((ns, name))
        elif w.get("registered_as"):
            cuda_ns[(ns, name)] = w["registered_as"].split("::", 1)[0]
    return wrappers, stubs, cuda_ns


def _python_custom_ops(graph: dict) -> dict[str, str]:
    """The Python function each torch.ops.vllm.* op A1 found calls."""
    pyops = {}
    for e in graph.get("python_custom_ops", []) or []:
        op, target = e.get("op", ""), e.get("target")
        op = op.split(".")[-1] if op.startswith(("vllm.", "torch.ops.vllm.")) else op
        if not op or not target:
            raise StageError(STAGE, "A1.graph.json python_custom_ops", f"entry {e!r} lacks op/target", "re-run A1")
        pyops[op] = target
    return pyops


def _insert_data_section(out_text: str, data_text: str, datam: dict, counts: dict) -> tuple[str, dict, list]:
    """Rewrites the module-directory anchors of the modules whose data A3 embedded, then puts the data section in.
    Returns (text, anchors rewritten per file, anchors left)."""
    anchors = datam.get("anchors") or []
    dirs = {a["file"]: a["dir"] for a in anchors}
    out_text, anchor_counts, per_file, left = rewrite_anchors(out_text, dirs)
    for k, v in anchor_counts.items():
        counts[k] = counts.get(k, 0) + v
    expected: dict[str, int] = {}
    for a in anchors:
        expected[a["file"]] = expected.get(a["file"], 0) + 1
    if per_file != expected:
        raise StageError(STAGE, "A3.data.json anchors",
                         f"A3 found {expected} module-directory anchor(s) per file, the merged module has "
                         f"{per_file}", "run A3 (--scan-data-reads and the collection) from the same A1 graph "
                         "as A2")
    if data_text.strip():
        if not anchors:
            raise StageError(STAGE, "A3.data.py", "a data section without anchors to rewrite", "re-run A3")
        taken = defined_at_top(out_text, SECTION_NAMES)
        if taken:
            raise StageError(STAGE, "A3.data.py", f"its names are already defined in the module: {', '.join(taken)}",
                             "report a bundler bug (rename the data helpers in bundler_lib/common/data_anchors.py)")
    out_text = out_text.replace(DATA_SENTINEL, (data_text.rstrip("\n") + "\n\n\n") if data_text.strip() else "")
    return out_text, per_file, left


def _lazy_decorators(out_text: str, imports: list[str], counts: dict) -> str:
    """Defers the decorators that would run vLLM code at import; their helpers go after the import block."""
    out_text, lazy = lazy_import_time_decorators(out_text)
    if not lazy:
        return out_text
    helpers = [LAZY_DECORATORS[name] for name in sorted(lazy)]
    taken = defined_at_top(out_text, {h for h, _ in helpers})
    if taken:
        raise StageError(STAGE, "merged module", f"{', '.join(taken)} already defined in it",
                         "report a bundler bug (rename the helpers in bundler_lib/bind/decorators.py)")
    head = "\n".join(imports) + "\n\n\n"
    if not out_text.startswith(head):
        raise StageError(STAGE, "merged module", "the import block changed while binding", "report a bundler bug")
    out_text = head + "".join(d.lstrip("\n") + "\n\n" for _, d in helpers) + out_text[len(head):]
    for name, n in lazy.items():
        counts[(f"@{name} (run at import)", LAZY_DECORATORS[name][0])] = n
    return out_text


def _check_leftovers(out_text: str, ns_map: dict, wrappers: dict, pyops: dict) -> tuple[ast.Module, Leftovers]:
    """Parses the bound module; fails on a namespace, vLLM import or compiled-op reference binding left behind."""
    try:
        tree = ast.parse(out_text, "A5.module.py")
    except SyntaxError as e:
        raise StageError(STAGE, f"A5.module.py:{e.lineno}", f"does not parse ({e.msg})", "report a bundler bug") from None
    lv = Leftovers(out_text, ns_map)
    lv.visit(tree)
    if lv.namespaces:
        what, line = lv.namespaces[0]
        raise StageError(STAGE, f"A5.module.py:{line}",
                         f"{what} still names a namespace the bundle registers ({', '.join(sorted(ns_map))}) after "
                         "binding: two bundles, or a bundle and vLLM, would share it in one process",
                         "spell it as torch.ops.<ns>.<op>, getattr(torch.ops, \"<ns>\"), \"<ns>::<op>\" or "
                         "Library(\"<ns>\", ...), which A5 rewrites (or extend bundler_lib/bind/rewrite.py's Rewriter)")
    if lv.imports:
        what, line = lv.imports[0]
        raise StageError(STAGE, f"A5.module.py:{line}", f"a vLLM import remains after binding: {what}"
                         + (f" (and {len(lv.imports) - 1} more)" if len(lv.imports) > 1 else ""),
                         "A2 must inline what it imports (rerun A1/A2), or the name must be listed in the graph")
    if lv.ops:
        ops = sorted({o for o, _ in lv.ops})
        op, line = lv.ops[0]
        raise StageError(STAGE, f"A5.module.py:{line}",
                         f"unbound compiled-op reference(s) remain: {', '.join(ops)}; A4 bundled "
                         f"{', '.join(f'{n}.{o}' for n, o in wrappers) or 'no ops'}, python_custom_ops: "
                         f"{', '.join(pyops) or 'none'}",
                         "A1 must list the op in cuda_ops (or python_custom_ops for torch.ops.vllm.*) so that A4/A5 "
                         "can bundle and rewire it")
    return tree, lv


def _entry_signatures(graph: dict, out_text: str, tree: ast.Module, a2_text: str) -> tuple[str | None, dict]:
    """(the entry symbol's name in the bundle, its public signatures), which binding must not have changed."""
    symbol = graph.get("symbol")
    entry = symbol
    for n in graph.get("python_nodes", []):
        if n.get("name") == symbol and n.get("file") == graph.get("def_file"):
            entry = n.get("emit_name") or symbol
    sigs = public_signatures(entry_module(out_text, entry, tree), entry)
    before = public_signatures(entry_module(a2_text, entry), entry) if a2_text.strip() else {}
    if before and before != sigs:
        raise StageError(STAGE, f"symbol {entry}", "its public signatures changed while binding",
                         "report a bundler bug")
    return entry, sigs


def _leftover_notes(lv: Leftovers, left: list) -> list[str]:
    notes = []
    for what, line in lv.probes:
        notes.append(f"A5.module.py:{line}: {what} stays: an optional-module probe inside try/except ImportError "
                     "(without vLLM it takes the except branch)")
    for line, f, src in left:
        notes.append(f"`{src}` (block from {f}) is left as is: A3 embedded no data for that module, so it "
                     "names the bundle's directory")
    return notes


def _data_notes(datam: dict, per_file: dict) -> list[str]:
    if not datam.get("anchors"):
        return []
    notes = [f"data files: {datam.get('files', 0)} embedded ({datam.get('bytes', 0)} bytes, key "
             f"{str(datam.get('key', ''))[:16]}); module-directory anchors rewritten: "
             + ", ".join(f"{f} ({n})" for f, n in sorted(per_file.items()))]
    for n in datam.get("notes", []):
        notes.append(f"A3 data: {n}")
    return notes


def _wrapper_notes(wrappers: dict, stubs: set, dropped_stubs: list[str], counts: dict) -> list[str]:
    notes = []
    if stubs:
        notes.append("ops not bundled (A1 marked them optional; their wrappers raise NotImplementedError): "
                     + ", ".join(sorted(f"{n}.{o}" for n, o in stubs)))
    if dropped_stubs:
        notes.append("stub wrappers nothing names any more (their getattr lookups took the default), left out: "
                     + ", ".join(dropped_stubs))
    unused = sorted(f"{ns}.{op}" for (ns, op), w in wrappers.items()
                    if not any(to == w for (_, to) in counts) and w not in dropped_stubs)
    if unused:
        notes.append("A4 wrappers with no call site left to rewire (kept, callable): " + ", ".join(unused))
    return notes


@without_cycle_collection  # the collector was a quarter of the stage's CPU time (2 MB bundle: 5.6 -> 4.2 s)
def run(inputs: Path, out: Path) -> dict:
    inputs = Path(inputs)
    graph = load_graph(inputs / "A1.graph.json", STAGE)
    a2m = _load_json(inputs, "A2.manifest.json")
    a3m = _load_json(inputs, "A3.manifest.json")
    a4m = _load_json(inputs, "A4.manifest.json")
    datam = _load_json(inputs, DATA_JSON, required=False)  # absent: artifacts of an older A3
    text, bindmap = bind(graph, _load_text(inputs, "A2.inline.py"), a2m, _load_text(inputs, "A3.triton.py"), a3m,
                         _load_text(inputs, "A4.cuda.py"), a4m,
                         _load_text(inputs, DATA_PY, required=False), datam)
    out = Path(out)
    write_text(out / "A5.module.py", text)
    write_json(out / "A5.bindmap.json", bindmap)
    return bindmap
